//! `asr-data pack`: a corpus from any reader of `asr-corpus` into 16 kHz shards with CTC
//! labels (`asr-shards`), with nothing dropped silently.
//!
//! What [`pack`] does, in order:
//! 1. **Validate** the corpus header-only (`asr-validate`): every row with an error finding
//!    (missing or undecodable audio, empty transcript, `ctc_infeasible`, duplicate id...)
//!    is left out with that code; so are rows shorter/longer than `--min-duration` /
//!    `--max-duration` (`too_short`, `too_long`), rows in `--exclude` (`excluded`), and
//!    rows with no split when the dataset has splits (`no_split`).
//! 2. **Text**: each transcript is normalized ([`PackOptions::normalize`]) and encoded.
//!    By default (`--normalize none`) the policy fits the vocabulary
//!    ([`asr_text::NormalizePolicy::for_vocab`]: NFC, case folded to the vocabulary's
//!    case, typographic apostrophes folded, whitespace collapsed) and removes nothing; a
//!    preset (`upper`, `lower`, `cjk`) also removes punctuation and folds case (see
//!    [`asr_text::Preset`]). The policy is recorded in the manifest (`normalization`),
//!    and every packed row whose text it changed is listed with its text before and
//!    after in `normalized.jsonl`. Validation (phase 1) sees the same normalized text, so
//!    a transcript normalized to nothing is left out as `empty_transcript`. The
//!    vocabulary is `--vocab FILE` (e.g. a pretrained model's `vocab.json`) or built from
//!    the packed rows' normalized characters. Characters outside it follow `--unk`: `error` stops
//!    before anything is written and lists every affected row; `map` encodes them as the
//!    unknown token; `drop` removes them. Under `map`/`drop` every affected row is listed
//!    in `unknown_chars.jsonl`.
//! 3. **Splits**: the dataset's own (LibriSpeech subsets and Common Voice TSVs mapped to
//!    `train`/`dev`/`test`), or seeded ratios (`--split train=0.9,dev=0.05,test=0.05
//!    --seed 42`) decided by a hash of the seed and the id: stable per id whatever the row
//!    order or corpus size.
//! 4. **Audio**, in parallel (rayon) with an ordered writer: decode (symphonia), downmix,
//!    resample to 16 kHz (`asr_audio::resample`), store as int16 or float32. At most
//!    `in_flight` utterances are decoded ahead of the writer, so memory does not grow
//!    with the corpus. A file that fails to decode is left out (`undecodable_audio`,
//!    `empty_audio`).
//! 5. **Output**: shards per split, `skipped.jsonl` (one object per left-out row: `id`,
//!    `code`, `message`, `source`, `file`, `line`), `normalized.jsonl` (when normalization
//!    changed a packed row), then `manifest.json` last. Rows the
//!    reader could not read (ragged or non-UTF-8 lines, a later row of a duplicated id)
//!    and files it could not read at all are listed too: every input row is packed or
//!    listed ([`PackSummary::rows_in`]).
//!
//! **Resume**: shards are journaled as they complete (see `asr_shards::ShardWriter`), and
//! rows left out while decoding are journaled too (`.pack-decode-skips.jsonl`), so a re-run
//! with the same inputs and options skips the finished shards and ends with byte-identical
//! files, even after `kill -9`. A shard is kept only if the inputs of its rows (text,
//! labels, audio file size and times) are those it was written from (`.pack-inputs.jsonl`),
//! and a finished pack is never resumed: packing into it is refused unless
//! [`PackOptions::overwrite`].
//!
//! **Parts**: `--part K/N` packs the rows whose id hashes to K (of N), into part-tagged
//! files that `asr-data merge` joins (see `schemas/shard-format.md`).

mod pipeline;
mod plan;
mod resume;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use asr_shards::{AudioDtype, Manifest, PartSpec, ShardError};
use asr_text::{NormalizeSpec, UnkPolicy, Vocab};
use serde::{Deserialize, Serialize};

pub use plan::{split_of_id, stable_hash, SplitPlan};

/// Default shard size cap: 256 MiB.
pub const DEFAULT_SHARD_SIZE_BYTES: u64 = 256 << 20;
/// Most decoding threads a pack may start (`--threads`): more than the cores of any
/// machine this runs on, and few enough that a typo cannot start thousands.
pub const MAX_THREADS: usize = 1024;
/// Default number of utterances decoded ahead of the writer.
pub const DEFAULT_IN_FLIGHT: usize = 32;

/// Everything `asr-data pack` can be told.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Output folder.
    pub out_dir: PathBuf,
    /// Shard size cap in bytes.
    pub shard_size_bytes: u64,
    /// Rows per Arrow record batch.
    pub rows_per_batch: usize,
    /// Stored sample type.
    pub audio_dtype: AudioDtype,
    /// The vocabulary to encode with (`--vocab FILE`); `None` builds one from the data.
    pub vocab: Option<Vocab>,
    /// What to do with characters outside the vocabulary.
    pub unk: UnkPolicy,
    /// Text normalization (`--normalize` and its overrides); the default is `none`.
    pub normalize: NormalizeSpec,
    /// How rows are assigned to splits.
    pub split: SplitPlan,
    /// Rows shorter than this (seconds) are left out as `too_short` (0: no limit).
    pub min_duration_s: f64,
    /// Rows longer than this (seconds) are left out as `too_long` (infinite: no limit).
    pub max_duration_s: f64,
    /// Ids to leave out (`--exclude FILE`), code `excluded`.
    pub exclude: HashSet<String>,
    /// Pack only part K of N.
    pub part: Option<PartSpec>,
    /// Utterances decoded ahead of the writer (bounds memory).
    pub in_flight: usize,
    /// Decoding threads (0: one per core; at most [`MAX_THREADS`]).
    pub threads: usize,
    /// Keep shards a previous interrupted run completed with the same options and inputs.
    pub resume: bool,
    /// Replace a finished pack in `out_dir` (its manifest exists); without this, packing
    /// into one is refused ([`PackError::Finished`]).
    pub overwrite: bool,
}

impl PackOptions {
    /// Defaults: 256 MiB shards, 64-row batches, int16, data-built vocabulary, `--unk
    /// error`, the dataset's splits, no duration limits, resume on.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        PackOptions {
            out_dir: out_dir.into(),
            shard_size_bytes: DEFAULT_SHARD_SIZE_BYTES,
            rows_per_batch: asr_shards::DEFAULT_ROWS_PER_BATCH,
            audio_dtype: AudioDtype::Int16,
            vocab: None,
            unk: UnkPolicy::Error,
            normalize: NormalizeSpec::default(),
            split: SplitPlan::FromDataset,
            min_duration_s: 0.0,
            max_duration_s: f64::INFINITY,
            exclude: HashSet::new(),
            part: None,
            in_flight: DEFAULT_IN_FLIGHT,
            threads: 0,
            resume: true,
            overwrite: false,
        }
    }
}

/// One row left out of the pack: a line of `skipped.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedRow {
    /// Utterance id.
    pub id: String,
    /// Why: a finding code of `asr-data validate` (for rows the reader could not read:
    /// `unreadable_transcript`, `duplicate_id` (a later row with an id already used; the
    /// first is kept), `unreadable_path`), or `excluded`, `no_split`. `not_in_part` is
    /// never written (other parts' rows are simply not this part's).
    pub code: String,
    /// Details a person can act on.
    pub message: String,
    /// Audio path relative to the dataset root (empty for a row the reader could not
    /// read).
    pub source: String,
    /// The transcript or manifest file the row was read from (or the file or folder that
    /// could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its 1-based line in `file`; absent for a whole file that could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// A row whose transcript had characters outside the vocabulary: a line of
/// `unknown_chars.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownCharRow {
    /// Utterance id.
    pub id: String,
    /// The characters not in the vocabulary.
    pub characters: Vec<String>,
    /// `map` or `drop`.
    pub action: String,
    /// The transcript as normalized before encoding.
    pub normalized: String,
}

/// A packed row whose transcript normalization changed: a line of `normalized.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedRow {
    /// Utterance id.
    pub id: String,
    /// The transcript as read.
    pub before: String,
    /// The transcript as normalized (what is encoded, before `--unk map`/`drop`).
    pub after: String,
}

/// What a pack run did.
#[derive(Debug, Clone)]
pub struct PackSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Rows left out, in corpus order.
    pub skipped: Vec<SkippedRow>,
    /// Rows whose characters were mapped or dropped.
    pub unknown_chars: Vec<UnknownCharRow>,
    /// Packed rows whose text normalization changed, in corpus order.
    pub normalized: Vec<NormalizedRow>,
    /// Input rows (of this part): the corpus's utterances plus the rows its reader could
    /// not read, each listed in `skipped`. Packed rows plus skipped rows equal it, with
    /// one more skipped entry per file or folder that could not be read at all.
    pub rows_in: u64,
    /// Rows taken from shards an earlier run completed (resume) from the same inputs.
    pub resumed_rows: u64,
    /// True when `out_dir` held a finished pack that this run replaced (`overwrite`):
    /// then `resumed_rows` are rows of that pack whose inputs had not changed.
    pub replaced_finished: bool,
    /// Rows decoded and written in this run.
    pub decoded_rows: u64,
    /// Audio seconds decoded in this run (at the source).
    pub decoded_audio_s: f64,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Where the wall time went.
    pub timings: PackTimings,
}

/// Where a pack's wall time went, in seconds (`asr-data pack --timings`): enough to tell
/// a pack limited by its decoding threads from one limited by its writer, its disk, or
/// other programs on the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackTimings {
    /// Before decoding: validation (a header probe of every file, in parallel), transcript
    /// normalization and encoding, splits, and opening the writers (with resume checks).
    pub plan_s: f64,
    /// Decoding and writing: from the first file handed to the decoding threads to the
    /// last row written.
    pub decode_write_s: f64,
    /// After decoding: closing each split's last shard (flush, fsync, rename; the splits
    /// in parallel), then `skipped.jsonl` and the manifest.
    pub finish_s: f64,
    /// Part of `decode_write_s` the ordered writer spent on rows: record batches, sha256,
    /// file writes, and closing full shards.
    pub writer_busy_s: f64,
    /// Part of `decode_write_s` the writer spent waiting for the next row in order.
    pub writer_wait_s: f64,
    /// Wall time the decoding threads spent on files, summed over the threads. Time a
    /// thread was runnable but not running (other programs on the machine) counts too:
    /// with `threads` threads kept busy it is about `threads x decode_write_s`.
    pub decode_busy_s: f64,
    /// Decoding threads.
    pub threads: usize,
}

impl PackSummary {
    /// Skipped rows per code.
    pub fn skipped_by_code(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for row in &self.skipped {
            *counts.entry(row.code.as_str()).or_default() += 1;
        }
        counts
    }
}

/// Why a pack could not complete.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Writing or reading shards failed.
    #[error(transparent)]
    Shards(#[from] ShardError),
    /// Validation could not run.
    #[error("validation failed: {0}")]
    Validate(#[from] asr_validate::ValidateError),
    /// An I/O error on an output file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `--unk error` and transcripts hold characters the vocabulary lacks.
    #[error("{} transcripts have characters outside the vocabulary (--unk error); nothing was written. First: {}\nhint: use --unk map (encode them as the unknown token) or --unk drop, or a vocabulary that has them", rows.len(), rows.first().map(|r| format!("{}: {}", r.id, r.characters.join(" "))).unwrap_or_default())]
    UnknownCharacters {
        /// Every affected row.
        rows: Vec<UnknownCharRow>,
    },
    /// Options that cannot work together.
    #[error("{0}")]
    Options(String),
    /// The output folder holds a finished pack (of this part) and `overwrite` is off.
    #[error("{} exists: the output folder holds a finished pack, and nothing was changed; choose another --out, or pass --overwrite to replace it (shards whose inputs are unchanged are kept)", manifest.display())]
    Finished {
        /// The finished pack's manifest.
        manifest: PathBuf,
    },
    /// No row is left to pack.
    #[error("nothing to pack: all {total} rows were left out (see the skipped rows)")]
    NothingToPack {
        /// Rows in the corpus (or part).
        total: usize,
        /// The rows left out.
        skipped: Vec<SkippedRow>,
    },
}

/// Progress of a pack, reported after each row: rows done (packed or left out) of the
/// total, and audio seconds decoded so far.
pub trait Progress: Sync {
    /// Called once the total is known.
    fn start(&self, total_rows: u64);
    /// Called after each row.
    fn row_done(&self, audio_s: f64);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total_rows: u64) {}
    fn row_done(&self, _audio_s: f64) {}
}

/// Packs `corpus` into `options.out_dir` (see the crate docs).
pub fn pack(
    corpus: &asr_corpus::Corpus,
    options: &PackOptions,
    progress: &dyn Progress,
) -> Result<PackSummary, PackError> {
    pipeline::run(corpus, options, progress)
}

/// Reads an `--exclude` file: one id per line, trimmed; spaces inside an id are part of
/// it (LibriSpeech-style ids have none, but CSV and JSON-lines ids may). Text after a tab
/// is ignored (`id<TAB>reason` lines work); blank lines and `#` comments are skipped.
/// `asr-train`'s `quarantine.txt` is one id per line.
pub fn read_exclude_file(path: &Path) -> Result<HashSet<String>, PackError> {
    let text = std::fs::read_to_string(path).map_err(|source| PackError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_exclude_list(&text))
}

/// The ids of an `--exclude` file's text (see [`read_exclude_file`]).
pub fn parse_exclude_list(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| line.split('\t').next().unwrap_or("").trim())
        .filter(|id| !id.is_empty() && !id.starts_with('#'))
        .map(str::to_string)
        .collect()
}
