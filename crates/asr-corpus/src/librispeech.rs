//! LibriSpeech: `<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` with one
//! `<speaker>-<chapter>.trans.txt` per chapter (`<id> <TRANSCRIPT>` per line).
//!
//! The root may be a `LibriSpeech/` folder holding several subsets (`train-clean-100`,
//! `dev-clean`, ...), the folder above it, or a single subset. The subset name is the
//! utterance's split. When `SPEAKERS.TXT` / `CHAPTERS.TXT` are present (in the root, or
//! beside a single subset) every speaker and chapter of the tree is cross-checked against
//! them: known, read by that speaker, in that subset.
//!
//! Checks made while reading: `bad_id` (an id that is not `<speaker>-<chapter>-<n>` of
//! the folder it sits in), `duplicate_id`, `orphan_audio` (audio no transcript line
//! names), `unreadable_transcript` (unreadable file, invalid UTF-8, binary data, a line
//! without an id), `metadata_mismatch` (SPEAKERS.TXT / CHAPTERS.TXT disagreements).
//! A transcript line whose audio file is absent still becomes an utterance; validation
//! reports it as `missing_audio`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::lines::{split_lines, LineIssues};
use crate::walk::walk;
use crate::{
    duplicate_message, is_audio_path, relative_source, Corpus, CorpusError, Effect, Format,
    IssueKind, Origin, ReadIssue, Utterance,
};

const TRANS_SUFFIX: &str = ".trans.txt";

/// Where the subsets are: a root holding subset folders, or a single subset.
#[derive(Debug)]
struct Layout {
    /// Folder that `source` paths are relative to.
    root: PathBuf,
    /// Name of the single subset when the root is one (its folder name).
    single_subset: Option<String>,
}

fn layout(path: &Path) -> Layout {
    let inner = path.join("LibriSpeech");
    let root = if inner.is_dir() {
        inner
    } else {
        path.to_path_buf()
    };
    // A single subset holds speaker folders (digits) with chapter folders holding
    // `*.trans.txt`; a LibriSpeech root holds subset folders one level higher.
    let is_subset = std::fs::read_dir(&root)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_digit())
                    && e.path().is_dir()
                    && std::fs::read_dir(e.path())
                        .is_ok_and(|chapters| chapters.flatten().any(|c| has_trans_file(&c.path())))
            })
        })
        .unwrap_or(false);
    let single_subset = is_subset.then(|| {
        root.canonicalize()
            .unwrap_or_else(|_| root.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Layout {
        root,
        single_subset,
    }
}

fn has_trans_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(TRANS_SUFFIX))
    })
}

/// Reads a LibriSpeech tree (see the module docs).
pub fn read(path: &Path) -> Result<Corpus, CorpusError> {
    if !path.is_dir() {
        return Err(CorpusError::WrongFormat {
            path: path.to_path_buf(),
            format: Format::LibriSpeech,
            reason: "expected a folder".into(),
        });
    }
    let layout = layout(path);
    let root = &layout.root;
    let depth = if layout.single_subset.is_some() { 3 } else { 4 };
    let listing = walk(
        root,
        depth,
        |p| {
            is_audio_path(p)
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(TRANS_SUFFIX))
        },
        |p| !is_audio_path(p),
    );
    let mut issues = listing.issues;
    let mut ignored = listing.ignored;
    // Pack written into the dataset root itself: its files are not the corpus's.
    if crate::packed::is_pack_output(root) {
        ignored.push(root.join("manifest.json"));
    }
    let (trans_files, audio_files): (Vec<PathBuf>, Vec<PathBuf>) =
        listing.files.into_iter().partition(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(TRANS_SUFFIX))
        });
    if trans_files.is_empty() {
        return Err(CorpusError::UnknownLayout {
            path: path.to_path_buf(),
            reason: if audio_files.is_empty() {
                "no *.trans.txt and no audio files found (empty folder?)".into()
            } else {
                format!(
                    "{} audio files but no *.trans.txt transcripts",
                    audio_files.len()
                )
            },
        });
    }
    // Audio files by folder and stem, to resolve ids and find orphans.
    let mut audio_by_dir: HashMap<PathBuf, HashMap<String, PathBuf>> = HashMap::new();
    for file in &audio_files {
        if let (Some(dir), Some(stem)) = (file.parent(), file.file_stem()) {
            audio_by_dir
                .entry(dir.to_path_buf())
                .or_default()
                .entry(stem.to_string_lossy().into_owned())
                .or_insert_with(|| file.clone());
        }
    }
    let mut utterances = Vec::new();
    let mut first_seen: HashMap<String, Origin> = HashMap::new();
    let mut claimed: HashSet<PathBuf> = HashSet::new();
    for trans in &trans_files {
        read_trans_file(
            trans,
            &layout,
            &audio_by_dir,
            &mut utterances,
            &mut issues,
            &mut first_seen,
            &mut claimed,
        );
    }
    for file in &audio_files {
        let stem_claimed = claimed.contains(file);
        if !stem_claimed {
            issues.push(ReadIssue::new(
                IssueKind::OrphanAudio,
                file.file_stem().map(|s| s.to_string_lossy().into_owned()),
                file,
                None,
                "audio file with no line in any *.trans.txt of its folder: it will not be used",
            ));
        }
    }
    let mut files_read = trans_files.clone();
    let meta_dir = match layout.single_subset {
        Some(_) => root
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.clone()),
        None => root.clone(),
    };
    cross_check_metadata(&meta_dir, &utterances, &mut issues, &mut files_read);
    Ok(Corpus {
        format: Format::LibriSpeech,
        root: root.clone(),
        utterances,
        issues,
        speakers_disjoint: true,
        files_read,
        ignored,
    })
}

/// The subset, speaker and chapter a transcript file's folder says it belongs to.
struct Place {
    subset: Option<String>,
    speaker: String,
    chapter: String,
}

fn place_of(trans: &Path, layout: &Layout) -> Place {
    let rel: Vec<String> = trans
        .strip_prefix(&layout.root)
        .unwrap_or(trans)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    // [..., subset?, speaker, chapter, file]
    let n = rel.len();
    let at = |i: usize| {
        if n > i {
            rel[n - 1 - i].clone()
        } else {
            String::new()
        }
    };
    let subset = match &layout.single_subset {
        Some(s) => Some(s.clone()),
        None if n >= 4 => Some(rel[0].clone()),
        None => None,
    };
    Place {
        subset,
        speaker: at(2),
        chapter: at(1),
    }
}

#[allow(clippy::too_many_arguments)]
fn read_trans_file(
    trans: &Path,
    layout: &Layout,
    audio_by_dir: &HashMap<PathBuf, HashMap<String, PathBuf>>,
    utterances: &mut Vec<Utterance>,
    issues: &mut Vec<ReadIssue>,
    first_seen: &mut HashMap<String, Origin>,
    claimed: &mut HashSet<PathBuf>,
) {
    let bytes = match std::fs::read(trans) {
        Ok(b) => b,
        Err(e) => {
            issues.push(
                ReadIssue::new(
                    IssueKind::UnreadableTranscript,
                    None,
                    trans,
                    None,
                    format!("cannot read transcript file: {e}; its rows are skipped"),
                )
                .with_effect(Effect::FileSkipped),
            );
            return;
        }
    };
    let dir = trans.parent().unwrap_or(Path::new("")).to_path_buf();
    let empty = HashMap::new();
    let audio_here = audio_by_dir.get(&dir).unwrap_or(&empty);
    let place = place_of(trans, layout);
    let expected_prefix = format!("{}-{}-", place.speaker, place.chapter);
    let mut line_issues = LineIssues::new(trans);
    let mut any_line = false;
    for (number, line) in split_lines(&bytes) {
        let text = match line {
            Ok(t) => t,
            Err(problem) => {
                // Keep the id when the start of the line is readable, so the audio is
                // not also reported as an orphan.
                let raw = bytes_of_line(&bytes, number);
                let id = raw.and_then(|l| {
                    let end = l
                        .iter()
                        .position(|&b| b == b' ' || b == b'\t')
                        .unwrap_or(l.len());
                    std::str::from_utf8(&l[..end])
                        .ok()
                        .filter(|s| is_librispeech_id(s))
                });
                if let Some(id) = id {
                    if let Some(path) = audio_here.get(id) {
                        claimed.insert(path.clone());
                    }
                }
                line_issues.push_row(issues, id.map(str::to_owned), number, problem.to_string());
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        any_line = true;
        let (id, transcript) = match text.split_once([' ', '\t']) {
            Some((id, rest)) => (id, rest),
            None => (text.trim_end(), ""),
        };
        if id.is_empty() {
            line_issues.push_row(
                issues,
                None,
                number,
                "line starts with a space: no utterance id".into(),
            );
            continue;
        }
        let origin = Origin {
            file: trans.to_path_buf(),
            line: number,
        };
        if !id.starts_with(&expected_prefix) || !is_librispeech_id(id) {
            issues.push(ReadIssue::new(
                IssueKind::BadId,
                Some(id.to_owned()),
                trans,
                Some(number),
                format!(
                    "id {id:?} does not match its folder {}/{}: LibriSpeech ids are <speaker>-<chapter>-<n> ({expected_prefix}NNNN here)",
                    place.speaker, place.chapter
                ),
            ));
        }
        if let Some(first) = first_seen.get(id) {
            // Its own audio (another folder's) is named by this line: not an orphan.
            if let Some(path) = audio_here.get(id) {
                claimed.insert(path.clone());
            }
            issues.push(
                ReadIssue::new(
                    IssueKind::DuplicateId,
                    Some(id.to_owned()),
                    trans,
                    Some(number),
                    duplicate_message(id, first),
                )
                .with_effect(Effect::RowSkipped),
            );
            continue;
        }
        first_seen.insert(id.to_owned(), origin.clone());
        let audio_path = match audio_here.get(id) {
            Some(p) => {
                claimed.insert(p.clone());
                p.clone()
            }
            None => dir.join(format!("{id}.flac")),
        };
        utterances.push(Utterance {
            id: id.to_owned(),
            source: relative_source(&layout.root, &audio_path),
            audio_path,
            transcript: transcript.to_owned(),
            speaker: Some(place.speaker.clone()),
            split: place.subset.clone(),
            declared_duration_s: None,
            origin,
        });
    }
    if !any_line && bytes.iter().all(|b| b.is_ascii_whitespace()) {
        line_issues.push(issues, None, 1, "transcript file is empty".into());
    }
    line_issues.finish(issues);
}

/// The raw bytes of 1-based line `number` (for salvaging an id from a bad line).
fn bytes_of_line(bytes: &[u8], number: u64) -> Option<&[u8]> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .nth(usize::try_from(number).ok()?.checked_sub(1)?)
}

/// `<digits>-<digits>-<digits>`.
pub fn is_librispeech_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A row of SPEAKERS.TXT or CHAPTERS.TXT: its line and `|`-separated columns.
struct MetaRow {
    line: u64,
    cols: Vec<String>,
}

/// Reads a LibriSpeech metadata table (`;` comments, `|` columns, at most `max_cols`
/// columns so a `|` in the last one (a name or title) is kept).
fn read_meta(
    path: &Path,
    max_cols: usize,
    issues: &mut Vec<ReadIssue>,
    files_read: &mut Vec<PathBuf>,
) -> Option<HashMap<String, MetaRow>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            issues.push(ReadIssue::new(
                IssueKind::UnreadableTranscript,
                None,
                path,
                None,
                format!("cannot read metadata file: {e}"),
            ));
            return None;
        }
    };
    files_read.push(path.to_path_buf());
    let mut rows = HashMap::new();
    let mut line_issues = LineIssues::new(path);
    for (number, line) in split_lines(&bytes) {
        let text = match line {
            Ok(t) => t,
            Err(problem) => {
                line_issues.push(issues, None, number, problem.to_string());
                continue;
            }
        };
        if text.trim().is_empty() || text.trim_start().starts_with(';') {
            continue;
        }
        let cols: Vec<String> = text
            .splitn(max_cols, '|')
            .map(|c| c.trim().to_owned())
            .collect();
        if cols.len() < 3 {
            line_issues.push(
                issues,
                None,
                number,
                format!("expected {max_cols} |-separated columns"),
            );
            continue;
        }
        rows.insert(cols[0].clone(), MetaRow { line: number, cols });
    }
    line_issues.finish(issues);
    Some(rows)
}

/// Cross-checks the tree against SPEAKERS.TXT (`ID|SEX|SUBSET|MINUTES|NAME`) and
/// CHAPTERS.TXT (`ID|READER|MINUTES|SUBSET|PROJ.|BOOK ID|CH. TITLE|PROJECT TITLE`).
fn cross_check_metadata(
    meta_dir: &Path,
    utterances: &[Utterance],
    issues: &mut Vec<ReadIssue>,
    files_read: &mut Vec<PathBuf>,
) {
    // First utterance of each speaker and chapter present in the tree.
    let mut speakers: BTreeMap<(String, Option<String>), &Utterance> = BTreeMap::new();
    let mut chapters: BTreeMap<(String, String, Option<String>), &Utterance> = BTreeMap::new();
    for u in utterances {
        let speaker = u.speaker.clone().unwrap_or_default();
        let chapter = u.id.split('-').nth(1).unwrap_or_default().to_owned();
        speakers
            .entry((speaker.clone(), u.split.clone()))
            .or_insert(u);
        chapters
            .entry((chapter, speaker, u.split.clone()))
            .or_insert(u);
    }
    let speakers_path = meta_dir.join("SPEAKERS.TXT");
    if let Some(table) = read_meta(&speakers_path, 5, issues, files_read) {
        for ((speaker, subset), u) in &speakers {
            let problem = match table.get(speaker) {
                None => Some((None, format!("speaker {speaker} is not listed in SPEAKERS.TXT"))),
                Some(row) => match (subset, row.cols.get(2)) {
                    (Some(subset), Some(listed)) if listed != subset => Some((
                        Some(row.line),
                        format!("SPEAKERS.TXT puts speaker {speaker} in {listed}, but the tree has them in {subset}"),
                    )),
                    _ => None,
                },
            };
            if let Some((line, message)) = problem {
                issues.push(ReadIssue::new(
                    IssueKind::MetadataMismatch,
                    Some(u.id.clone()),
                    &speakers_path,
                    line,
                    message,
                ));
            }
        }
    }
    let chapters_path = meta_dir.join("CHAPTERS.TXT");
    if let Some(table) = read_meta(&chapters_path, 8, issues, files_read) {
        for ((chapter, speaker, subset), u) in &chapters {
            let problem = match table.get(chapter) {
                None => Some((
                    None,
                    format!("chapter {chapter} is not listed in CHAPTERS.TXT"),
                )),
                Some(row) => {
                    if row.cols.get(1) != Some(speaker) {
                        Some((
                            Some(row.line),
                            format!(
                                "CHAPTERS.TXT says chapter {chapter} was read by {}, but it sits under speaker {speaker}",
                                row.cols.get(1).map(String::as_str).unwrap_or("?")
                            ),
                        ))
                    } else {
                        match (subset, row.cols.get(3)) {
                            (Some(subset), Some(listed)) if listed != subset => Some((
                                Some(row.line),
                                format!("CHAPTERS.TXT puts chapter {chapter} in {listed}, but the tree has it in {subset}"),
                            )),
                            _ => None,
                        }
                    }
                }
            };
            if let Some((line, message)) = problem {
                issues.push(ReadIssue::new(
                    IssueKind::MetadataMismatch,
                    Some(u.id.clone()),
                    &chapters_path,
                    line,
                    message,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librispeech_ids() {
        assert!(is_librispeech_id("19-198-0001"));
        assert!(!is_librispeech_id("19-198"));
        assert!(!is_librispeech_id("19-198-x"));
        assert!(!is_librispeech_id("19--1"));
    }
}
