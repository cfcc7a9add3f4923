//! Common Voice release folders: `clips/*.mp3` with `train.tsv`, `dev.tsv`, `test.tsv`,
//! `validated.tsv`, `invalidated.tsv`, `other.tsv`, `reported.tsv`, `clip_durations.tsv`.
//!
//! Which rows are the corpus: the rows of `train.tsv`, `dev.tsv` and `test.tsv`, with
//! that split (these are Common Voice's official, speaker-disjoint splits, and what
//! `asr-data pack` packs). A release without those three files is read from
//! `validated.tsv` with no split. The other TSVs are read for cross-checks only:
//! a split row missing from `validated.tsv`, or listed in `invalidated.tsv`, or whose
//! sentence differs from `validated.tsv`'s, is a `metadata_mismatch`; a clip listed by no
//! TSV at all is `orphan_audio`; `clip_durations.tsv` (milliseconds) gives each clip's
//! declared duration, which validation compares with the audio.
//!
//! TSVs are read with no quote processing (sentences contain `"` and other quote
//! characters that are text, not CSV quoting): one row per line, fields split on tabs.
//! Columns are found by name in the header, so the variants of different releases
//! (`accent` vs `accents`, added `variant`, `locale`, `segment`, `sentence_id`,
//! `sentence_domain`) all read; `path` and `sentence` are required, `client_id` is the
//! speaker.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::lines::{split_lines, LineIssues};
use crate::walk::walk;
use crate::{
    duplicate_message, is_audio_path, Corpus, CorpusError, Effect, Format, IssueKind, Origin,
    ReadIssue, Utterance,
};

/// The split TSVs, in the order they are read.
pub const SPLIT_FILES: [&str; 3] = ["train", "dev", "test"];
/// TSVs that list clips and are read for cross-checks.
pub const CHECK_FILES: [&str; 3] = ["validated", "invalidated", "other"];

/// One parsed row of a clip TSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipRow {
    /// 1-based line in the TSV.
    pub line: u64,
    /// The `path` column (clip file name, usually with `.mp3`).
    pub path: String,
    /// The `sentence` column, verbatim.
    pub sentence: String,
    /// The `client_id` column, when present and non-empty.
    pub client_id: Option<String>,
}

/// Parses a Common Voice clip TSV (header + rows, tab-separated, no quoting). Returns the
/// rows that parse; row problems (wrong field count, invalid UTF-8) go to `issues` with
/// their line, as skipped rows. `Err` names the file and line when the header cannot be
/// used (no `path` or `sentence` column, not text): every row of the file would be lost.
pub fn parse_clip_tsv(
    path: &Path,
    bytes: &[u8],
    issues: &mut Vec<ReadIssue>,
) -> Result<Vec<ClipRow>, CorpusError> {
    let mut rows = Vec::new();
    let mut line_issues = LineIssues::new(path);
    let mut lines = split_lines(bytes);
    let header_error = |line: u64, message: String| CorpusError::Manifest {
        path: path.to_path_buf(),
        line,
        message,
    };
    let header = loop {
        match lines.next() {
            None => {
                line_issues.push(issues, None, 1, "empty TSV: no header row".into());
                line_issues.finish(issues);
                return Ok(rows);
            }
            Some((_, Ok(h))) if h.trim().is_empty() => continue,
            Some((n, Ok(h))) => break (n, h),
            Some((n, Err(problem))) => return Err(header_error(n, format!("header: {problem}"))),
        }
    };
    let columns: Vec<&str> = header.1.split('\t').map(str::trim).collect();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(path_col), Some(sentence_col)) = (find("path"), find("sentence")) else {
        return Err(header_error(
            header.0,
            format!(
                "header has no {} column (columns: {}): none of its rows can be read\nhint: Common Voice TSVs need `path` (the clip) and `sentence` (its transcript); restore the column from the release",
                if find("path").is_none() {
                    "`path`"
                } else {
                    "`sentence`"
                },
                columns.join(", ")
            ),
        ));
    };
    let client_col = find("client_id");
    for (number, line) in lines {
        let text = match line {
            Ok(t) => t,
            Err(problem) => {
                line_issues.push_row(issues, None, number, problem.to_string());
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split('\t').collect();
        if fields.len() != columns.len() {
            let id = fields.get(path_col).map(|p| clip_id(p));
            line_issues.push_row(
                issues,
                id,
                number,
                format!(
                    "row has {} tab-separated fields, the header has {}",
                    fields.len(),
                    columns.len()
                ),
            );
            continue;
        }
        let clip = fields[path_col].trim();
        if clip.is_empty() {
            line_issues.push_row(issues, None, number, "empty `path` field".into());
            continue;
        }
        rows.push(ClipRow {
            line: number,
            path: clip.to_owned(),
            sentence: fields[sentence_col].to_owned(),
            client_id: client_col
                .map(|c| fields[c].trim().to_owned())
                .filter(|c| !c.is_empty()),
        });
    }
    line_issues.finish(issues);
    Ok(rows)
}

/// The utterance id of a clip: its file name without extension.
pub fn clip_id(clip: &str) -> String {
    let name = clip.rsplit(['/', '\\']).next().unwrap_or(clip);
    match name.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && crate::AUDIO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) =>
        {
            stem.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// True when `dir` looks like a Common Voice release (a `clips` folder and a clip TSV).
pub fn looks_like_release(dir: &Path) -> bool {
    dir.join("clips").is_dir()
        && SPLIT_FILES
            .iter()
            .chain(CHECK_FILES.iter())
            .any(|f| dir.join(format!("{f}.tsv")).is_file())
}

/// Reads a Common Voice release folder (see the module docs).
pub fn read(path: &Path) -> Result<Corpus, CorpusError> {
    if !path.is_dir() || !looks_like_release(path) {
        return Err(CorpusError::WrongFormat {
            path: path.to_path_buf(),
            format: Format::CommonVoice,
            reason:
                "expected a folder with clips/ and train.tsv, dev.tsv, test.tsv or validated.tsv"
                    .into(),
        });
    }
    let root = path.to_path_buf();
    let clips_dir = root.join("clips");
    let mut issues = Vec::new();
    let mut files_read = Vec::new();
    let mut splits: Vec<(&str, PathBuf, Vec<ClipRow>)> = Vec::new();
    for name in SPLIT_FILES {
        if let Some((file, rows)) = read_tsv(&root, name, true, &mut issues, &mut files_read)? {
            splits.push((name, file, rows));
        }
    }
    let mut checks: HashMap<&str, (PathBuf, Vec<ClipRow>)> = HashMap::new();
    for name in CHECK_FILES {
        let is_source = name == "validated" && splits.is_empty();
        if let Some(read) = read_tsv(&root, name, is_source, &mut issues, &mut files_read)? {
            checks.insert(name, read);
        }
    }
    let durations = read_clip_durations(&root, &mut issues, &mut files_read);

    // Every clip any TSV mentions (for orphans), by file name.
    let mut listed: HashSet<String> = HashSet::new();
    for (_, _, rows) in &splits {
        listed.extend(rows.iter().map(|r| r.path.clone()));
    }
    for (_, rows) in checks.values() {
        listed.extend(rows.iter().map(|r| r.path.clone()));
    }

    let validated: Option<HashMap<&str, &ClipRow>> = checks
        .get("validated")
        .map(|(_, rows)| rows.iter().map(|r| (r.path.as_str(), r)).collect());
    let invalidated: Option<HashSet<&str>> = checks
        .get("invalidated")
        .map(|(_, rows)| rows.iter().map(|r| r.path.as_str()).collect());

    let sources: Vec<(Option<&str>, &PathBuf, &Vec<ClipRow>)> = if splits.is_empty() {
        match checks.get("validated") {
            Some((file, rows)) => vec![(None, file, rows)],
            None => Vec::new(),
        }
    } else {
        splits
            .iter()
            .map(|(name, file, rows)| (Some(*name), file, rows))
            .collect()
    };
    let mut utterances = Vec::new();
    let mut first_seen: HashMap<String, Origin> = HashMap::new();
    for (split, file, rows) in sources {
        for row in rows {
            let id = clip_id(&row.path);
            let origin = Origin {
                file: file.clone(),
                line: row.line,
            };
            if let Some(first) = first_seen.get(&id) {
                issues.push(
                    ReadIssue::new(
                        IssueKind::DuplicateId,
                        Some(id.clone()),
                        file,
                        Some(row.line),
                        duplicate_message(&id, first),
                    )
                    .with_effect(Effect::RowSkipped),
                );
                continue;
            }
            first_seen.insert(id.clone(), origin.clone());
            if split.is_some() {
                cross_check_row(
                    row,
                    &id,
                    file,
                    validated.as_ref(),
                    invalidated.as_ref(),
                    &mut issues,
                );
            }
            let audio_path = resolve_clip(&clips_dir, &row.path);
            let name = audio_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            utterances.push(Utterance {
                id,
                source: format!("clips/{name}"),
                declared_duration_s: durations
                    .get(&name)
                    .or_else(|| durations.get(&row.path))
                    .copied(),
                audio_path,
                transcript: row.sentence.clone(),
                speaker: row.client_id.clone(),
                split: split.map(str::to_owned),
                origin,
            });
        }
    }

    orphan_clips(&clips_dir, &listed, &mut issues);
    Ok(Corpus {
        format: Format::CommonVoice,
        root,
        utterances,
        issues,
        speakers_disjoint: true,
        files_read,
        ignored: Vec::new(),
    })
}

/// Cross-checks a split row against validated.tsv (present, same sentence) and
/// invalidated.tsv (absent): `metadata_mismatch` issues.
fn cross_check_row(
    row: &ClipRow,
    id: &str,
    file: &Path,
    validated: Option<&HashMap<&str, &ClipRow>>,
    invalidated: Option<&HashSet<&str>>,
    issues: &mut Vec<ReadIssue>,
) {
    if let Some(validated) = validated {
        match validated.get(row.path.as_str()) {
            None => issues.push(ReadIssue::new(
                IssueKind::MetadataMismatch,
                Some(id.to_owned()),
                file,
                Some(row.line),
                format!(
                    "clip {} is in {} but not in validated.tsv",
                    row.path,
                    file_name(file)
                ),
            )),
            Some(v) if v.sentence != row.sentence => issues.push(ReadIssue::new(
                IssueKind::MetadataMismatch,
                Some(id.to_owned()),
                file,
                Some(row.line),
                format!(
                    "sentence differs from validated.tsv line {}: {:?} vs {:?}",
                    v.line, row.sentence, v.sentence
                ),
            )),
            Some(_) => {}
        }
    }
    if invalidated.is_some_and(|inv| inv.contains(row.path.as_str())) {
        issues.push(ReadIssue::new(
            IssueKind::MetadataMismatch,
            Some(id.to_owned()),
            file,
            Some(row.line),
            format!(
                "clip {} is in {} and also in invalidated.tsv (voted as wrong)",
                row.path,
                file_name(file)
            ),
        ));
    }
}

/// Clips in `clips/` that no TSV lists: `orphan_audio`.
fn orphan_clips(clips_dir: &Path, listed: &HashSet<String>, issues: &mut Vec<ReadIssue>) {
    let listing = walk(clips_dir, 1, is_audio_path, |_| false);
    issues.extend(listing.issues);
    for clip in &listing.files {
        let name = clip
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = clip
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !listed.contains(&name) && !listed.contains(&stem) {
            issues.push(ReadIssue::new(
                IssueKind::OrphanAudio,
                Some(stem),
                clip,
                None,
                "clip listed in no TSV of the release: it will not be used",
            ));
        }
    }
}

/// Reads `<root>/<name>.tsv` when it exists. A file whose rows are corpus rows
/// (`is_source`: a split TSV, or validated.tsv without splits) that cannot be used is an
/// error (a header without `path`/`sentence`) or a file-level loss (I/O); a file read
/// only for cross-checks gives issues that lose no row.
fn read_tsv(
    root: &Path,
    name: &str,
    is_source: bool,
    issues: &mut Vec<ReadIssue>,
    files_read: &mut Vec<PathBuf>,
) -> Result<Option<(PathBuf, Vec<ClipRow>)>, CorpusError> {
    let file = root.join(format!("{name}.tsv"));
    let before = issues.len();
    let read = match std::fs::read(&file) {
        Ok(bytes) => {
            files_read.push(file.clone());
            match parse_clip_tsv(&file, &bytes, issues) {
                Ok(rows) => Some((file, rows)),
                Err(e) if is_source => return Err(e),
                Err(e) => {
                    let line = match &e {
                        CorpusError::Manifest { line, .. } => Some(*line),
                        _ => None,
                    };
                    let message = match e {
                        CorpusError::Manifest { message, .. } => message,
                        other => other.to_string(),
                    };
                    issues.push(ReadIssue::new(
                        IssueKind::UnreadableTranscript,
                        None,
                        &file,
                        line,
                        format!("{message}; the file is not used for cross-checks"),
                    ));
                    None
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            issues.push(
                ReadIssue::new(
                    IssueKind::UnreadableTranscript,
                    None,
                    &file,
                    None,
                    format!("cannot read: {e}"),
                )
                .with_effect(if is_source {
                    Effect::FileSkipped
                } else {
                    Effect::None
                }),
            );
            None
        }
    };
    if !is_source {
        // Rows of a file read for cross-checks are not corpus rows.
        for issue in &mut issues[before..] {
            issue.effect = Effect::None;
        }
    }
    Ok(read)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The clip file: `clips/<path>`, or `clips/<path>.mp3` for early releases whose `path`
/// column has no extension.
fn resolve_clip(clips_dir: &Path, clip: &str) -> PathBuf {
    let direct = clips_dir.join(clip);
    if Path::new(clip).extension().is_none() {
        let with_ext = clips_dir.join(format!("{clip}.mp3"));
        if !direct.is_file() && with_ext.is_file() {
            return with_ext;
        }
    }
    direct
}

/// `clip_durations.tsv`: `clip<TAB>duration[ms]`, as seconds by clip file name.
fn read_clip_durations(
    root: &Path,
    issues: &mut Vec<ReadIssue>,
    files_read: &mut Vec<PathBuf>,
) -> HashMap<String, f64> {
    let file = root.join("clip_durations.tsv");
    let mut out = HashMap::new();
    let Ok(bytes) = std::fs::read(&file) else {
        return out;
    };
    files_read.push(file.clone());
    let mut line_issues = LineIssues::new(&file);
    for (number, line) in split_lines(&bytes).skip(1) {
        match line {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                let mut fields = text.split('\t');
                let parsed = match (fields.next(), fields.next()) {
                    (Some(clip), Some(ms)) => ms.trim().parse::<f64>().ok().map(|ms| (clip, ms)),
                    _ => None,
                };
                match parsed {
                    Some((clip, ms)) if ms.is_finite() && ms >= 0.0 => {
                        out.insert(clip.trim().to_owned(), ms / 1000.0);
                    }
                    _ => line_issues.push(
                        issues,
                        None,
                        number,
                        "expected `clip<TAB>milliseconds`".into(),
                    ),
                }
            }
            Err(problem) => line_issues.push(issues, None, number, problem.to_string()),
        }
    }
    line_issues.finish(issues);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_text_and_columns_are_found_by_name() {
        let tsv = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\n\
                   c1\ta.mp3\ts1\t\"Hello,\" she said.\t\t2\n\
                   c2\tb.mp3\ts2\tIt's “fine”\t\t2\n";
        let mut issues = Vec::new();
        let rows = parse_clip_tsv(Path::new("train.tsv"), tsv.as_bytes(), &mut issues).unwrap();
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(rows[0].sentence, "\"Hello,\" she said.");
        assert_eq!(rows[1].sentence, "It's “fine”");
        assert_eq!(rows[1].client_id.as_deref(), Some("c2"));
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn short_rows_are_skipped_rows_and_missing_columns_are_errors() {
        let mut issues = Vec::new();
        let rows = parse_clip_tsv(
            Path::new("dev.tsv"),
            b"client_id\tpath\tsentence\nc1\ta.mp3\n",
            &mut issues,
        )
        .unwrap();
        assert!(rows.is_empty());
        assert_eq!(issues[0].line, Some(2));
        assert_eq!(issues[0].id.as_deref(), Some("a"));
        assert_eq!(issues[0].effect, Effect::RowSkipped);
        let mut issues = Vec::new();
        let err = parse_clip_tsv(
            Path::new("dev.tsv"),
            b"client_id\tfile\tsentence\n",
            &mut issues,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("dev.tsv:1") && err.contains("no `path` column"),
            "{err}"
        );
    }

    #[test]
    fn clip_ids() {
        assert_eq!(clip_id("common_voice_en_1.mp3"), "common_voice_en_1");
        assert_eq!(clip_id("abc"), "abc");
        assert_eq!(clip_id("x.y.mp3"), "x.y");
    }
}
