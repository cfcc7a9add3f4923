//! Directory walking that reports unreadable folders and symlink loops as issues.

use std::path::{Path, PathBuf};

use crate::{Effect, IssueKind, ReadIssue};

/// Files found under a root, sorted by path, and the problems met on the way.
pub(crate) struct Listing {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) issues: Vec<ReadIssue>,
    /// Folders below the root holding the output of `asr-data pack`: not walked.
    pub(crate) ignored: Vec<PathBuf>,
}

/// Lists the files under `root` (following symlinks, at most `max_depth` levels down)
/// for which `keep` is true. Loops and unreadable entries become `unreadable_path` issues;
/// an unreadable entry for which `holds_rows` is true (a folder or transcript file of a
/// layout found by walking) is [`Effect::FileSkipped`]: its rows are lost. A loop loses
/// nothing (its target is walked anyway).
pub(crate) fn walk(
    root: &Path,
    max_depth: usize,
    keep: impl Fn(&Path) -> bool,
    holds_rows: impl Fn(&Path) -> bool,
) -> Listing {
    let mut files = Vec::new();
    let mut issues = Vec::new();
    let ignored = std::cell::RefCell::new(Vec::new());
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .max_depth(max_depth)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let pack_output =
                e.depth() > 0 && e.file_type().is_dir() && crate::packed::is_pack_output(e.path());
            if pack_output {
                ignored.borrow_mut().push(e.path().to_path_buf());
            }
            !pack_output
        });
    for entry in walker {
        match entry {
            Ok(entry) => {
                if entry.file_type().is_file() && keep(entry.path()) {
                    files.push(entry.into_path());
                }
            }
            Err(err) => {
                let path = err.path().unwrap_or(root).to_path_buf();
                let effect = if err.loop_ancestor().is_none() && holds_rows(&path) {
                    Effect::FileSkipped
                } else {
                    Effect::None
                };
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
                let message = if effect == Effect::FileSkipped {
                    format!("{message}; the transcripts in it are not read")
                } else {
                    message
                };
                issues.push(
                    ReadIssue::new(IssueKind::UnreadablePath, None, path, None, message)
                        .with_effect(effect),
                );
            }
        }
    }
    Listing {
        files,
        issues,
        ignored: ignored.into_inner(),
    }
}
