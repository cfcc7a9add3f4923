//! Directory walking that reports unreadable folders and symlink loops as issues.

use std::path::{Path, PathBuf};

use crate::{IssueKind, ReadIssue};

/// Files found under a root, sorted by path, and the problems met on the way.
pub(crate) struct Listing {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) issues: Vec<ReadIssue>,
}

/// Lists the files under `root` (following symlinks, at most `max_depth` levels down)
/// for which `keep` is true. Loops and unreadable entries become `unreadable_path` issues.
pub(crate) fn walk(root: &Path, max_depth: usize, keep: impl Fn(&Path) -> bool) -> Listing {
    let mut files = Vec::new();
    let mut issues = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .max_depth(max_depth)
        .sort_by_file_name();
    for entry in walker {
        match entry {
            Ok(entry) => {
                if entry.file_type().is_file() && keep(entry.path()) {
                    files.push(entry.into_path());
                }
            }
            Err(err) => {
                let path = err.path().unwrap_or(root).to_path_buf();
                let message = match err.loop_ancestor() {
                    Some(ancestor) => format!(
                        "symlink loop: {} points back to its ancestor {}; the loop was not followed",
                        path.display(),
                        ancestor.display()
                    ),
                    None => match err.io_error() {
                        Some(io) if io.kind() == std::io::ErrorKind::NotFound => {
                            format!("dangling symlink or vanished file: {io}")
                        }
                        Some(io) => format!("cannot read: {io}"),
                        None => err.to_string(),
                    },
                };
                issues.push(ReadIssue::new(
                    IssueKind::UnreadablePath,
                    None,
                    path,
                    None,
                    message,
                ));
            }
        }
    }
    Listing { files, issues }
}
