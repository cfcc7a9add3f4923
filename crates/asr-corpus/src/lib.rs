//! Dataset readers for speech corpora: LibriSpeech trees, Common Voice releases, CSV/TSV
//! and JSON-lines manifests, and format auto-detection. Every reader returns the same
//! [`Corpus`]: a list of [`Utterance`]s plus the [`ReadIssue`]s met while reading, so the
//! checks, the packer and the statistics never need to know which layout the data came
//! from (one module per layout, as lhotse has one recipe per corpus).
//!
//! Readers report, they do not fail: an unreadable transcript file, a line of invalid
//! UTF-8, a TSV row with a missing column, a symlink loop, an audio file no transcript
//! mentions — each becomes a [`ReadIssue`] naming the file and line, and reading goes
//! on. Each issue records its [`Effect`]: every input row is an [`Utterance`] or an issue
//! with [`Effect::RowSkipped`] (so `asr-data pack` can list it), and a file or folder
//! whose rows could not be read at all is [`Effect::FileSkipped`]. A duplicated id keeps
//! its first row; later rows are skipped `duplicate_id` rows naming the first.
//!
//! What would silently lose every row of a file is a [`CorpusError`] naming the file and
//! line: no such path, a format that cannot be detected, a manifest or Common Voice split
//! TSV without its audio or text column, a used CSV column name that appears twice, a CSV
//! quote that never closes or swallows rows, a dataset with no row at all. The output of
//! `asr-data pack` found inside a dataset ([`packed`]) is left out and listed in
//! [`Corpus::ignored`].

pub mod commonvoice;
pub mod detect;
pub mod librispeech;
mod lines;
pub mod manifest;
pub mod packed;
pub mod split;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use detect::detect_format;
pub use split::SplitRole;

/// Audio file extensions the readers look for (lower case, without the dot).
pub const AUDIO_EXTENSIONS: [&str; 5] = ["flac", "wav", "mp3", "ogg", "opus"];

/// Where a record was read from: the file and 1-based line, for messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The transcript or manifest file.
    pub file: PathBuf,
    /// 1-based line number in `file` (0 when the record has no line, e.g. a whole file).
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// One utterance of a corpus, whatever its layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    /// The corpus's id for it (LibriSpeech `19-198-0001`, Common Voice clip stem, a
    /// manifest's id column, else the manifest's audio path without extension).
    pub id: String,
    /// The audio file, resolved (joined to the dataset root or the manifest's folder).
    pub audio_path: PathBuf,
    /// The audio path relative to the dataset root, `/`-separated (as packed shards
    /// record it).
    pub source: String,
    /// The transcript exactly as written (no normalization, line ending removed).
    pub transcript: String,
    /// Speaker id, when the layout has one.
    pub speaker: Option<String>,
    /// Split or subset name as the corpus names it (`train-clean-100`, `dev`, ...);
    /// [`SplitRole::of`] maps it to train/dev/test.
    pub split: Option<String>,
    /// Duration the metadata declares (manifest column, Common Voice
    /// `clip_durations.tsv`), to be compared with the audio.
    pub declared_duration_s: Option<f64>,
    /// Where this record was read.
    pub origin: Origin,
}

/// The kind of a problem found while reading a corpus. Each maps to one finding code of
/// `asr-data validate` (`snake_case` of the variant name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// A record's audio file does not exist.
    MissingAudio,
    /// An audio file that no transcript or manifest row mentions.
    OrphanAudio,
    /// The same id twice.
    DuplicateId,
    /// An id that disagrees with where its audio lives.
    BadId,
    /// A transcript/manifest file or line that cannot be read (I/O error, invalid UTF-8,
    /// binary data, missing columns, malformed JSON).
    UnreadableTranscript,
    /// Metadata files disagree with each other or with the tree.
    MetadataMismatch,
    /// A folder or file of the dataset cannot be listed or opened (permission denied,
    /// symlink loop).
    UnreadablePath,
}

/// What a [`ReadIssue`] cost the corpus: nothing, one input row, or every row of a file.
/// Row accounting rests on it: every input row is an [`Utterance`] or an issue with
/// [`Effect::RowSkipped`], and `asr-data pack` lists both kinds of loss in
/// `skipped.jsonl`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// No row was lost (an orphan audio file, a metadata disagreement, a symlink loop
    /// whose target is read anyway, a bad line of a file read only for cross-checks).
    #[default]
    None,
    /// One input row (transcript line, manifest row) did not become an utterance.
    RowSkipped,
    /// A transcript/manifest file or a folder could not be read: its rows, however many,
    /// did not become utterances.
    FileSkipped,
}

/// A problem met while reading, with enough context for a person to act on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadIssue {
    /// What kind of problem.
    pub kind: IssueKind,
    /// The utterance id concerned, when there is one.
    pub id: Option<String>,
    /// The file concerned (transcript, manifest, audio or folder).
    pub path: PathBuf,
    /// 1-based line in `path`, when it is a text file.
    pub line: Option<u64>,
    /// What is wrong, in words.
    pub message: String,
    /// Whether a row (or a whole file's rows) was lost because of it.
    #[serde(default)]
    pub effect: Effect,
}

impl ReadIssue {
    /// A new issue.
    pub fn new(
        kind: IssueKind,
        id: Option<String>,
        path: impl Into<PathBuf>,
        line: Option<u64>,
        message: impl Into<String>,
    ) -> ReadIssue {
        ReadIssue {
            kind,
            id,
            path: path.into(),
            line,
            message: message.into(),
            effect: Effect::None,
        }
    }

    /// The same issue, recording what it cost the corpus.
    pub fn with_effect(mut self, effect: Effect) -> ReadIssue {
        self.effect = effect;
        self
    }
}

/// The corpus layouts the readers understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `<subset>/<speaker>/<chapter>/*.flac` with `*.trans.txt`.
    LibriSpeech,
    /// `clips/*.mp3` with `train.tsv`, `dev.tsv`, `test.tsv`, `validated.tsv`, ...
    CommonVoice,
    /// CSV or TSV manifest(s) with an audio and a text column.
    Csv,
    /// JSON-lines manifest(s) (`audio_filepath`, `text`, `duration`).
    Jsonl,
}

impl Format {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::LibriSpeech => "librispeech",
            Format::CommonVoice => "commonvoice",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "librispeech" => Ok(Format::LibriSpeech),
            "commonvoice" | "common-voice" | "cv" => Ok(Format::CommonVoice),
            "csv" | "tsv" => Ok(Format::Csv),
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            other => Err(format!(
                "unknown format {other:?}: expected librispeech, commonvoice, csv or jsonl"
            )),
        }
    }
}

/// A corpus as read from disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Corpus {
    /// The layout it was read as.
    pub format: Format,
    /// The dataset root: relative `source` paths are relative to it.
    pub root: PathBuf,
    /// The utterances, in reading order (file order, then line order).
    pub utterances: Vec<Utterance>,
    /// Problems met while reading.
    pub issues: Vec<ReadIssue>,
    /// True when the layout promises that no speaker appears in two of train/dev/test
    /// (LibriSpeech, Common Voice's official splits); checked by `speaker_overlap`.
    pub speakers_disjoint: bool,
    /// Transcript, manifest and metadata files that were read.
    pub files_read: Vec<PathBuf>,
    /// Files and folders inside the dataset that were deliberately not read: the output
    /// of `asr-data pack` (its `manifest.json`, `skipped.jsonl`, shard folders) when a
    /// pack was written into the dataset folder.
    #[serde(default)]
    pub ignored: Vec<PathBuf>,
}

impl Corpus {
    /// The issues that stand for lost input rows or files ([`Effect::RowSkipped`],
    /// [`Effect::FileSkipped`]), in reading order.
    pub fn lost(&self) -> impl Iterator<Item = &ReadIssue> {
        self.issues.iter().filter(|i| i.effect != Effect::None)
    }

    /// Input rows read: utterances plus rows that could not become one (rows of files
    /// that could not be read at all are not counted: nobody knows how many there were).
    pub fn rows_read(&self) -> usize {
        self.utterances.len()
            + self
                .issues
                .iter()
                .filter(|i| i.effect == Effect::RowSkipped)
                .count()
    }
}

/// How to read a dataset.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// The layout, or `None` to detect it.
    pub format: Option<Format>,
    /// Manifest column (CSV) or key (JSON-lines) holding the audio path.
    pub audio_col: Option<String>,
    /// Manifest column or key holding the transcript.
    pub text_col: Option<String>,
}

/// A dataset that cannot be read at all (as opposed to [`ReadIssue`]s inside one).
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The dataset path does not exist or cannot be opened.
    #[error("cannot read dataset {path}: {source}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The folder holds nothing the readers recognise.
    #[error("cannot tell the layout of {path}: {reason}\nhint: pass --format librispeech|commonvoice|csv|jsonl, or point at the manifest file")]
    UnknownLayout {
        /// The path given.
        path: PathBuf,
        /// What was (not) found.
        reason: String,
    },
    /// The format given does not fit the path (a file for LibriSpeech, say).
    #[error("{path} is not a {format} dataset: {reason}")]
    WrongFormat {
        /// The path given.
        path: PathBuf,
        /// The format asked for.
        format: Format,
        /// Why it does not fit.
        reason: String,
    },
    /// A dataset in which the readers found no row at all (a header-only manifest, empty
    /// transcript files).
    #[error("{path}: no rows: {reason}\nhint: check that this is the dataset you meant; a header-only manifest or empty split files give nothing to validate or pack")]
    Empty {
        /// The path given.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// A manifest whose columns cannot be mapped to audio and text.
    #[error("{path}:{line}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The 1-based line (1 for the header).
        line: u64,
        /// What is wrong, with the columns found and a hint.
        message: String,
    },
}

/// Reads a dataset in the given (or detected) layout.
pub fn read_corpus(path: &Path, opts: &ReadOptions) -> Result<Corpus, CorpusError> {
    std::fs::metadata(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(path)?,
    };
    let corpus = match format {
        Format::LibriSpeech => librispeech::read(path)?,
        Format::CommonVoice => commonvoice::read(path)?,
        Format::Csv | Format::Jsonl => manifest::read(path, format, opts)?,
    };
    if corpus.rows_read() == 0 && corpus.lost().next().is_none() {
        return Err(CorpusError::Empty {
            path: path.to_path_buf(),
            reason: format!(
                "read as {format}, {} file(s) read ({}), and not one row in them",
                corpus.files_read.len(),
                corpus
                    .files_read
                    .iter()
                    .take(3)
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(corpus)
}

/// The message of a `duplicate_id` issue: the first row with an id is kept, later ones
/// are skipped (`asr-data validate` and `asr-data pack` follow this one policy).
pub(crate) fn duplicate_message(id: &str, first: &Origin) -> String {
    format!(
        "id {id} was already used at {first}, which is kept; this row is skipped\nhint: ids must be unique: rename or remove one of the two"
    )
}

/// `path` relative to `root`, `/`-separated; the full path when it is not under `root`.
pub(crate) fn relative_source(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// True when the extension of `path` is one of [`AUDIO_EXTENSIONS`] (any case).
pub fn is_audio_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}
