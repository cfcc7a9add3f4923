//! CSV/TSV and JSON-lines manifests: one row per utterance with an audio path and a
//! transcript, plus optional id, speaker, split and duration columns.
//!
//! Columns are named with `--audio-col` / `--text-col`, or detected from common names
//! ([`AUDIO_COLUMNS`], [`TEXT_COLUMNS`], any case); a manifest with exactly one column
//! besides the audio one (`file,<transcript in any script>`) uses it as the text. `.csv`
//! files are RFC 4180 CSV (quoted fields allowed); `.tsv` files are split on tabs with no
//! quote processing (quotes in sentences are text). JSON-lines (`.jsonl`, `.json`,
//! `.ndjson`) hold one object per line (NeMo style: `audio_filepath`, `text`, `duration`).
//!
//! Relative audio paths are resolved against, in order: the manifest's folder, its
//! parent, and a folder named after the manifest beside it (Kaggle's Common Voice has
//! `cv-valid-train.csv` listing `cv-valid-train/sample-000000.mp3` under a
//! `cv-valid-train/` folder); the first that holds the file wins. A folder given as the
//! dataset reads every manifest in it, each one's split taken from a `split` column or
//! its file name (`cv-valid-test.csv` is test data). Audio files in the folders a
//! manifest uses that no row lists are `orphan_audio`, checked only when every manifest
//! of the folder was read (a lone `train.csv` beside a `test.csv` sharing one `clips/`
//! would otherwise report the test clips).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::duplicate_message;
use crate::lines::{line_text, LineIssues};
use crate::{
    is_audio_path, Corpus, CorpusError, Effect, Format, IssueKind, Origin, ReadIssue, ReadOptions,
    SplitRole, Utterance,
};

/// Column names recognised as the audio path (case-insensitive), in order of preference.
pub const AUDIO_COLUMNS: [&str; 16] = [
    "audio_filepath",
    "audio_path",
    "audio_file",
    "audio",
    "filepath",
    "file_path",
    "path",
    "filename",
    "file_name",
    "file",
    "wav",
    "wav_path",
    "wav_filename",
    "clip",
    "recording",
    "audio_filename",
];
/// Column names recognised as the transcript (case-insensitive), in order of preference.
pub const TEXT_COLUMNS: [&str; 11] = [
    "text",
    "transcript",
    "transcription",
    "sentence",
    "normalized_text",
    "text_normalized",
    "label",
    "labels",
    "utterance",
    "words",
    "raw_text",
];
const ID_COLUMNS: [&str; 5] = ["id", "utt_id", "utterance_id", "uttid", "key"];
const SPEAKER_COLUMNS: [&str; 6] = [
    "speaker",
    "speaker_id",
    "client_id",
    "spk",
    "spk_id",
    "speakerid",
];
const SPLIT_COLUMNS: [&str; 3] = ["split", "subset", "set"];
const DURATION_COLUMNS: [&str; 4] = ["duration", "duration_s", "duration_seconds", "length"];

/// One manifest row, before path resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestRow {
    /// 1-based line in the manifest (the record's first line for multi-line CSV fields).
    pub line: u64,
    /// The audio path as written.
    pub audio: String,
    /// The transcript as written.
    pub text: String,
    /// The id column, when present.
    pub id: Option<String>,
    /// The speaker column, when present and non-empty.
    pub speaker: Option<String>,
    /// The split column, when present and non-empty.
    pub split: Option<String>,
    /// The duration column in seconds, when present and numeric.
    pub duration_s: Option<f64>,
}

/// Column positions (CSV) or keys (JSON) of one manifest.
#[derive(Clone, Debug)]
struct Columns<K> {
    audio: K,
    text: K,
    id: Option<K>,
    speaker: Option<K>,
    split: Option<K>,
    duration: Option<K>,
}

fn find_column(names: &[String], wanted: &[&str]) -> Option<usize> {
    wanted
        .iter()
        .find_map(|w| names.iter().position(|n| n.trim().eq_ignore_ascii_case(w)))
}

/// Maps header names to roles. `Err` carries a message naming the columns found.
fn map_columns(names: &[String], opts: &ReadOptions) -> Result<Columns<usize>, String> {
    let listed = || {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let audio = match &opts.audio_col {
        Some(want) => names
            .iter()
            .position(|n| n.trim() == want.as_str())
            .ok_or_else(|| format!("no column {want:?} (--audio-col); columns are {}", listed()))?,
        None => find_column(names, &AUDIO_COLUMNS).ok_or_else(|| {
            format!(
                "no audio path column among {}\nhint: name it with --audio-col",
                listed()
            )
        })?,
    };
    let id = find_column(names, &ID_COLUMNS);
    let speaker = find_column(names, &SPEAKER_COLUMNS);
    let split = find_column(names, &SPLIT_COLUMNS);
    let duration = find_column(names, &DURATION_COLUMNS);
    let text = match &opts.text_col {
        Some(want) => names
            .iter()
            .position(|n| n.trim() == want.as_str())
            .ok_or_else(|| format!("no column {want:?} (--text-col); columns are {}", listed()))?,
        None => match find_column(names, &TEXT_COLUMNS) {
            Some(t) => t,
            None => {
                // `file,<transcript column in any script>`: the one column left.
                let rest: Vec<usize> = (0..names.len())
                    .filter(|&i| {
                        i != audio
                            && Some(i) != id
                            && Some(i) != speaker
                            && Some(i) != split
                            && Some(i) != duration
                    })
                    .collect();
                match rest.as_slice() {
                    [only] => *only,
                    _ => {
                        return Err(format!(
                            "no transcript column among {}\nhint: name it with --text-col",
                            listed()
                        ))
                    }
                }
            }
        },
    };
    let roles = [
        ("audio", Some(audio)),
        ("transcript", Some(text)),
        ("id", id),
        ("speaker", speaker),
        ("split", split),
        ("duration", duration),
    ];
    for (role, column) in roles {
        let Some(column) = column else { continue };
        let same: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.trim().eq_ignore_ascii_case(names[column].trim()))
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if same.len() > 1 {
            return Err(format!(
                "column {:?} ({role}) appears {} times (columns {}): which one holds the {role} is ambiguous\nhint: rename or remove the duplicate column",
                names[column].trim(),
                same.len(),
                same.join(", ")
            ));
        }
    }
    Ok(Columns {
        audio,
        text,
        id,
        speaker,
        split,
        duration,
    })
}

/// A quoted CSV field that never closes, or that runs over lines which look like rows
/// of their own (an audio path in the audio column), swallows the rest of the file
/// into one transcript: `Err` naming the line where the quote opened.
fn check_quotes(
    bytes: &[u8],
    delimiter: u8,
    columns: usize,
    audio_col: usize,
) -> Result<(), (u64, String)> {
    let looks_like_row = |line: &[u8]| {
        let fields: Vec<&[u8]> = line.split(|&b| b == delimiter).collect();
        fields.len() >= columns
            && fields.get(audio_col).is_some_and(|f| {
                let f = String::from_utf8_lossy(f);
                is_audio_path(Path::new(f.trim().trim_matches('"')))
            })
    };
    let (mut line, mut open_line) = (1u64, 0u64);
    let (mut in_quote, mut field_start) = (false, true);
    let mut swallowed: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quote {
            if b == b'"' && bytes.get(i + 1) == Some(&b'"') {
                i += 1;
            } else if b == b'"' {
                in_quote = false;
                if !swallowed.is_empty() {
                    return Err((open_line, format!(
                        "the quoted field opened on this line runs to line {line} and takes in {} line(s) that look like rows of their own (first: line {}): is a closing quote missing?\nhint: close the quote, or double a quote that is part of the text (\"\")",
                        swallowed.len(), swallowed[0]
                    )));
                }
            } else if b == b'\n' {
                line += 1;
                let end = bytes[i + 1..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + 1 + p);
                if looks_like_row(&bytes[i + 1..end]) {
                    swallowed.push(line);
                }
            }
        } else if b == b'"' && field_start {
            (in_quote, open_line) = (true, line);
            swallowed.clear();
        } else if b == b'\n' {
            line += 1;
            field_start = true;
        } else if b == delimiter {
            field_start = true;
        } else if b != b'\r' {
            field_start = false;
        }
        i += 1;
    }
    if in_quote {
        return Err((open_line, format!(
            "a quote opened on this line is never closed: the {} line(s) after it would be read as one transcript\nhint: close the quote, or double a quote that is part of the text (\"\")",
            line - open_line
        )));
    }
    Ok(())
}

/// Parses a CSV (`quoting = true`) or TSV (`quoting = false`, tab-separated) manifest.
/// `Err` when the header cannot be mapped to audio and text columns; row problems go to
/// `issues`.
pub fn parse_delimited(
    path: &Path,
    bytes: &[u8],
    delimiter: u8,
    quoting: bool,
    opts: &ReadOptions,
    issues: &mut Vec<ReadIssue>,
) -> Result<Vec<ManifestRow>, CorpusError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let manifest_error = |line: u64, message: String| CorpusError::Manifest {
        path: path.to_path_buf(),
        line,
        message,
    };
    let header = match records.next() {
        None => return Err(manifest_error(1, "empty manifest: no header row".into())),
        Some(Err(e)) => return Err(manifest_error(1, format!("cannot parse the header: {e}"))),
        Some(Ok(h)) => h,
    };
    let header_line = header.position().map_or(1, |p| p.line());
    let names = header
        .iter()
        .map(|f| line_text(f).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|p| manifest_error(header_line, format!("header: {p}")))?;
    let cols = map_columns(&names, opts).map_err(|m| manifest_error(header_line, m))?;
    if quoting {
        check_quotes(bytes, delimiter, names.len(), cols.audio)
            .map_err(|(line, message)| manifest_error(line, message))?;
    }
    let mut rows = Vec::new();
    let mut line_issues = LineIssues::new(path);
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                line_issues.push_row(issues, None, line, format!("cannot parse: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1
            && record
                .get(0)
                .is_some_and(|f| f.iter().all(|b| b.is_ascii_whitespace()))
        {
            continue;
        }
        if record.len() != names.len() {
            // No id: with fields missing or extra, no column can be trusted.
            line_issues.push_row(
                issues,
                None,
                line,
                format!(
                    "row has {} fields, the header has {}",
                    record.len(),
                    names.len()
                ),
            );
            continue;
        }
        let mut fields = Vec::with_capacity(record.len());
        let mut bad = None;
        for (i, raw) in record.iter().enumerate() {
            // A transcript may span lines inside CSV quotes; newlines are text there.
            let checked = if quoting {
                line_text_multiline(raw)
            } else {
                line_text(raw)
            };
            match checked {
                Ok(t) => fields.push(t),
                Err(p) => {
                    bad = Some(format!("column {:?}: {p}", names[i]));
                    break;
                }
            }
        }
        if let Some(message) = bad {
            let id = cols
                .id
                .and_then(|c| record.get(c))
                .and_then(|f| std::str::from_utf8(f).ok())
                .map(str::to_owned);
            line_issues.push_row(issues, id, line, message);
            continue;
        }
        rows.push(row_from_fields(line, &fields, &cols));
    }
    line_issues.finish(issues);
    Ok(rows)
}

fn line_text_multiline(raw: &[u8]) -> Result<&str, crate::lines::LineProblem> {
    let text = std::str::from_utf8(raw).map_err(|e| crate::lines::LineProblem::InvalidUtf8 {
        byte: e.valid_up_to() + 1,
    })?;
    if let Some((i, c)) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(crate::lines::LineProblem::Binary {
            byte: i + 1,
            value: u32::from(c),
        });
    }
    Ok(text)
}

fn row_from_fields(line: u64, fields: &[&str], cols: &Columns<usize>) -> ManifestRow {
    let opt = |c: Option<usize>| {
        c.map(|c| fields[c].trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    ManifestRow {
        line,
        audio: fields[cols.audio].trim().to_owned(),
        text: fields[cols.text].to_owned(),
        id: opt(cols.id),
        speaker: opt(cols.speaker),
        split: opt(cols.split),
        duration_s: opt(cols.duration)
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite()),
    }
}

/// Parses a JSON-lines manifest. `Err` when no line has an audio and a text key (the
/// keys are then listed); line problems go to `issues`.
pub fn parse_jsonl(
    path: &Path,
    bytes: &[u8],
    opts: &ReadOptions,
    issues: &mut Vec<ReadIssue>,
) -> Result<Vec<ManifestRow>, CorpusError> {
    let audio_keys: Vec<String> = match &opts.audio_col {
        Some(k) => vec![k.clone()],
        None => AUDIO_COLUMNS.iter().map(|s| s.to_string()).collect(),
    };
    let text_keys: Vec<String> = match &opts.text_col {
        Some(k) => vec![k.clone()],
        None => TEXT_COLUMNS.iter().map(|s| s.to_string()).collect(),
    };
    let get_str =
        |obj: &serde_json::Map<String, serde_json::Value>, keys: &[&str]| -> Option<String> {
            keys.iter().find_map(|k| match obj.get(*k) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
        };
    let mut rows = Vec::new();
    let mut line_issues = LineIssues::new(path);
    let mut keys_seen: Vec<String> = Vec::new();
    let mut objects = 0usize;
    for (number, line) in crate::lines::split_lines(bytes) {
        let text = match line {
            Ok(t) => t,
            Err(p) => {
                line_issues.push_row(issues, None, number, p.to_string());
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(text) {
            Ok(o) => o,
            Err(e) => {
                line_issues.push_row(issues, None, number, format!("not a JSON object: {e}"));
                continue;
            }
        };
        objects += 1;
        if keys_seen.is_empty() {
            keys_seen = obj.keys().cloned().collect();
        }
        let audio_k: Vec<&str> = audio_keys.iter().map(String::as_str).collect();
        let text_k: Vec<&str> = text_keys.iter().map(String::as_str).collect();
        let id = get_str(&obj, &ID_COLUMNS);
        let (Some(audio), Some(transcript)) = (get_str(&obj, &audio_k), get_str(&obj, &text_k))
        else {
            let missing = if get_str(&obj, &audio_k).is_none() {
                "an audio path"
            } else {
                "a text"
            };
            line_issues.push_row(
                issues,
                id,
                number,
                format!(
                    "object has no {missing} key (looked for {}); keys: {}",
                    if missing == "a text" {
                        text_k.join(", ")
                    } else {
                        audio_k.join(", ")
                    },
                    obj.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        let duration_s = DURATION_COLUMNS.iter().find_map(|k| match obj.get(*k) {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        });
        rows.push(ManifestRow {
            line: number,
            audio: audio.trim().to_owned(),
            text: transcript,
            id,
            speaker: get_str(&obj, &SPEAKER_COLUMNS).filter(|s| !s.is_empty()),
            split: get_str(&obj, &SPLIT_COLUMNS).filter(|s| !s.is_empty()),
            duration_s: duration_s.filter(|d| d.is_finite()),
        });
    }
    line_issues.finish(issues);
    if rows.is_empty() && objects > 0 {
        return Err(CorpusError::Manifest {
            path: path.to_path_buf(),
            line: 1,
            message: format!(
                "no line has both an audio path and a text key; keys of the first object: {}\nhint: name them with --audio-col and --text-col",
                keys_seen.join(", ")
            ),
        });
    }
    Ok(rows)
}

/// True when `path`'s extension makes it a manifest of `format`.
pub fn is_manifest(path: &Path, format: Format) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(
        (format, ext.as_deref()),
        (Format::Csv, Some("csv" | "tsv")) | (Format::Jsonl, Some("jsonl" | "json" | "ndjson"))
    )
}

/// Manifests of `format` directly inside `dir`, sorted. In a folder that holds the
/// output of `asr-data pack`, pack's own files are not manifests.
pub(crate) fn manifests_in(dir: &Path, format: Format) -> Vec<PathBuf> {
    manifests_and_pack_files(dir, format).0
}

/// Manifests of `format` directly inside `dir`, and the pack output files (see
/// [`crate::packed`]) left out of them.
fn manifests_and_pack_files(dir: &Path, format: Format) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_manifest(p, format))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.iter().any(|p| crate::packed::is_pack_file_name(p))
        && crate::packed::is_pack_output(dir)
    {
        let (pack, manifests) = found
            .into_iter()
            .partition(|p| crate::packed::is_pack_file_name(p));
        return (manifests, pack);
    }
    (found, Vec::new())
}

/// Reads a manifest file, or every manifest of `format` in a folder (see module docs).
pub fn read(path: &Path, format: Format, opts: &ReadOptions) -> Result<Corpus, CorpusError> {
    let ToRead {
        root,
        manifests,
        whole_folder,
        ignored,
    } = manifests_to_read(path, format)?;
    let mut issues = Vec::new();
    let mut rows = RowsRead::default();
    let several = manifests.len() > 1;
    for manifest in &manifests {
        if let Some(parsed) = parse_manifest(manifest, format, opts, several, &mut issues)? {
            rows.add(manifest, parsed, &mut issues);
        }
    }
    if whole_folder {
        rows.report_orphans(&mut issues);
    }
    Ok(Corpus {
        format,
        root,
        utterances: rows.utterances,
        issues,
        speakers_disjoint: false,
        files_read: manifests,
        ignored,
    })
}

/// The manifests a path stands for.
struct ToRead {
    /// The folder `source` paths are relative to.
    root: PathBuf,
    manifests: Vec<PathBuf>,
    /// Every manifest of the folder is read (orphans can be told).
    whole_folder: bool,
    /// Pack output files left out.
    ignored: Vec<PathBuf>,
}

fn manifests_to_read(path: &Path, format: Format) -> Result<ToRead, CorpusError> {
    if path.is_dir() {
        let (found, pack_files) = manifests_and_pack_files(path, format);
        if found.is_empty() {
            return Err(CorpusError::UnknownLayout {
                path: path.to_path_buf(),
                reason: if pack_files.is_empty() {
                    format!("no {format} manifest in this folder")
                } else {
                    format!("no {format} manifest in this folder, only the output of asr-data pack (manifest.json, skipped.jsonl)")
                },
            });
        }
        return Ok(ToRead {
            root: path.to_path_buf(),
            manifests: found,
            whole_folder: true,
            ignored: pack_files,
        });
    }
    if crate::packed::is_pack_manifest(path) {
        return Err(CorpusError::WrongFormat {
            path: path.to_path_buf(),
            format,
            reason: "this is the manifest of a packed dataset (written by asr-data pack), not a list of audio files and transcripts\nhint: read packed data with asr-data inspect; validate the dataset the pack was made from".into(),
        });
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let siblings = manifests_in(
        if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &dir
        },
        format,
    );
    Ok(ToRead {
        root: dir,
        manifests: vec![path.to_path_buf()],
        whole_folder: siblings.len() <= 1,
        ignored: Vec::new(),
    })
}

/// Reads and parses one manifest. With `several` manifests, one that cannot be read or
/// whose header cannot be used is a file-level issue (`None`) rather than an error.
fn parse_manifest(
    manifest: &Path,
    format: Format,
    opts: &ReadOptions,
    several: bool,
    issues: &mut Vec<ReadIssue>,
) -> Result<Option<Vec<ManifestRow>>, CorpusError> {
    let file_lost = |line: Option<u64>, message: String| {
        ReadIssue::new(
            IssueKind::UnreadableTranscript,
            None,
            manifest,
            line,
            message,
        )
        .with_effect(Effect::FileSkipped)
    };
    let bytes = match std::fs::read(manifest) {
        Ok(b) => b,
        Err(source) if !several => {
            return Err(CorpusError::Io {
                path: manifest.to_path_buf(),
                source,
            })
        }
        Err(e) => {
            issues.push(file_lost(
                None,
                format!("cannot read manifest: {e}; its rows are skipped"),
            ));
            return Ok(None);
        }
    };
    let before = issues.len();
    let parsed = match format {
        Format::Jsonl => parse_jsonl(manifest, &bytes, opts, issues),
        _ => {
            let tsv = manifest
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
                || sniff_tab(&bytes);
            if tsv {
                parse_delimited(manifest, &bytes, b'\t', false, opts, issues)
            } else {
                parse_delimited(manifest, &bytes, b',', true, opts, issues)
            }
        }
    };
    let rows = match parsed {
        Ok(rows) => rows,
        Err(e) if several => {
            let (line, message) = match &e {
                CorpusError::Manifest { line, message, .. } => {
                    (Some(*line), format!("{message}; the manifest is skipped"))
                }
                other => (None, other.to_string()),
            };
            issues.push(file_lost(line, message));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let rows_lost = issues[before..]
        .iter()
        .any(|i| i.effect == Effect::RowSkipped);
    if several && rows.is_empty() && !rows_lost {
        issues.push(ReadIssue::new(
            IssueKind::UnreadableTranscript,
            None,
            manifest,
            None,
            "no rows: the manifest has a header and nothing else",
        ));
    }
    Ok(Some(rows))
}

/// Utterances built from manifest rows, with what the orphan check needs.
#[derive(Default)]
struct RowsRead {
    utterances: Vec<Utterance>,
    first_seen: HashMap<String, Origin>,
    /// Folders holding audio of a kept row.
    used_dirs: HashSet<PathBuf>,
    /// Audio files a row names (a duplicate's too).
    referenced: HashSet<PathBuf>,
}

impl RowsRead {
    /// Resolves `rows` of `manifest` into utterances; a later row of an id already seen
    /// is a skipped `duplicate_id` row (the first is kept).
    fn add(&mut self, manifest: &Path, rows: Vec<ManifestRow>, issues: &mut Vec<ReadIssue>) {
        let manifest_dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file_split = SplitRole::of(&stem).map(|_| stem.clone());
        let mut resolver = Resolver::new(&manifest_dir, &stem);
        for row in rows {
            let (audio_path, found) = resolver.resolve(&row.audio);
            let source = normalize_source(&row.audio);
            let id = row.id.clone().unwrap_or_else(|| strip_audio_ext(&source));
            let origin = Origin {
                file: manifest.to_path_buf(),
                line: row.line,
            };
            if found {
                // A duplicate's audio is named by its row too: not an orphan.
                self.referenced.insert(audio_path.clone());
            }
            if let Some(first) = self.first_seen.get(&id) {
                issues.push(
                    ReadIssue::new(
                        IssueKind::DuplicateId,
                        Some(id.clone()),
                        manifest,
                        Some(row.line),
                        duplicate_message(&id, first),
                    )
                    .with_effect(Effect::RowSkipped),
                );
                continue;
            }
            self.first_seen.insert(id.clone(), origin.clone());
            if found {
                if let Some(dir) = audio_path.parent() {
                    self.used_dirs.insert(dir.to_path_buf());
                }
            }
            self.utterances.push(Utterance {
                id,
                audio_path,
                source,
                transcript: row.text,
                speaker: row.speaker,
                split: row.split.or_else(|| file_split.clone()),
                declared_duration_s: row.duration_s,
                origin,
            });
        }
    }

    /// Audio files in the folders rows use that no row names: `orphan_audio`.
    fn report_orphans(&self, issues: &mut Vec<ReadIssue>) {
        let mut dirs: Vec<&PathBuf> = self.used_dirs.iter().collect();
        dirs.sort();
        for dir in dirs {
            let listing = crate::walk::walk(dir, 1, is_audio_path, |_| false);
            for file in listing.files {
                if !self.referenced.contains(&file) {
                    issues.push(ReadIssue::new(
                        IssueKind::OrphanAudio,
                        file.file_stem().map(|s| s.to_string_lossy().into_owned()),
                        &file,
                        None,
                        "audio file in a folder the manifest uses, but on no row: it will not be used",
                    ));
                }
            }
        }
    }
}

/// A header line with tabs and no commas is TSV whatever the extension.
fn sniff_tab(bytes: &[u8]) -> bool {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    first.contains(&b'\t') && !first.contains(&b',')
}

/// `./a\b.wav` -> `a/b.wav`.
fn normalize_source(raw: &str) -> String {
    let s = raw.replace('\\', "/");
    let mut s = s.as_str();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.to_owned()
}

fn strip_audio_ext(source: &str) -> String {
    match source.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && !ext.contains('/')
                && crate::AUDIO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) =>
        {
            stem.to_owned()
        }
        _ => source.to_owned(),
    }
}

/// Resolves relative audio paths against the manifest's folder, its parent, and a folder
/// named after the manifest, remembering per path prefix which base worked.
struct Resolver {
    bases: Vec<PathBuf>,
    /// Base index that worked for the last path with this parent folder.
    cache: HashMap<String, usize>,
}

impl Resolver {
    fn new(manifest_dir: &Path, stem: &str) -> Resolver {
        let mut bases = vec![manifest_dir.to_path_buf()];
        if let Some(parent) = manifest_dir.parent() {
            bases.push(parent.to_path_buf());
        }
        bases.push(manifest_dir.join(stem));
        Resolver {
            bases,
            cache: HashMap::new(),
        }
    }

    /// The resolved path and whether the file exists.
    fn resolve(&mut self, raw: &str) -> (PathBuf, bool) {
        let raw_path = Path::new(raw);
        if raw_path.is_absolute() {
            return (raw_path.to_path_buf(), raw_path.is_file());
        }
        let prefix = raw
            .rsplit_once(['/', '\\'])
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        if let Some(&i) = self.cache.get(&prefix) {
            let p = self.bases[i].join(raw_path);
            if p.is_file() {
                return (p, true);
            }
        }
        for (i, base) in self.bases.iter().enumerate() {
            let p = base.join(raw_path);
            if p.is_file() {
                self.cache.insert(prefix, i);
                return (p, true);
            }
        }
        // Not found anywhere: name it where its neighbours were found, if any were.
        let base = self.cache.get(&prefix).copied().unwrap_or(0);
        (self.bases[base].join(raw_path), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReadOptions {
        ReadOptions::default()
    }

    #[test]
    fn kaggle_header_maps_filename_and_text() {
        let csv = "filename,text,up_votes,down_votes,age,gender,accent,duration\n\
                   cv-valid-train/sample-000000.mp3,\"learn to recognize omens, and follow them\",1,0,,,,\n";
        let mut issues = Vec::new();
        let rows = parse_delimited(
            Path::new("k.csv"),
            csv.as_bytes(),
            b',',
            true,
            &opts(),
            &mut issues,
        )
        .unwrap();
        assert!(issues.is_empty());
        assert_eq!(rows[0].audio, "cv-valid-train/sample-000000.mp3");
        assert_eq!(rows[0].text, "learn to recognize omens, and follow them");
        assert_eq!(rows[0].duration_s, None);
        assert_eq!(rows[0].line, 2);
    }

    #[test]
    fn a_cjk_named_text_column_is_the_one_left() {
        let csv = "file,转写\nwavs/a.wav,今天天气很好\n";
        let mut issues = Vec::new();
        let rows = parse_delimited(
            Path::new("c.csv"),
            csv.as_bytes(),
            b',',
            true,
            &opts(),
            &mut issues,
        )
        .unwrap();
        assert_eq!(rows[0].text, "今天天气很好");
    }

    #[test]
    fn missing_audio_column_is_an_error_naming_the_columns() {
        let mut issues = Vec::new();
        let err = parse_delimited(
            Path::new("m.csv"),
            b"a,b,c\n1,2,3\n",
            b',',
            true,
            &opts(),
            &mut issues,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("m.csv:1")
                && text.contains("\"a\", \"b\", \"c\"")
                && text.contains("--audio-col"),
            "{text}"
        );
    }

    #[test]
    fn jsonl_rows_and_bad_lines() {
        let jsonl = "{\"audio_filepath\": \"a.wav\", \"text\": \"hi\", \"duration\": 1.5}\nnot json\n{\"audio_filepath\": \"b.wav\"}\n";
        let mut issues = Vec::new();
        let rows =
            parse_jsonl(Path::new("m.jsonl"), jsonl.as_bytes(), &opts(), &mut issues).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].duration_s, Some(1.5));
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].line, Some(2));
        assert_eq!(issues[1].line, Some(3));
    }

    #[test]
    fn sources_and_ids() {
        assert_eq!(normalize_source("./a\\b.wav"), "a/b.wav");
        assert_eq!(strip_audio_ext("a/b.wav"), "a/b");
        assert_eq!(strip_audio_ext("a.b/c"), "a.b/c");
    }
}
