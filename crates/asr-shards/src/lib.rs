//! Sharded Arrow IPC files of 16 kHz audio and CTC labels: schema, atomic writer, reader,
//! manifest.
//!
//! A packed dataset is a folder:
//!
//! ```text
//! <out>/manifest.json              written last, atomically (see [`Manifest`])
//! <out>/skipped.jsonl              rows left out, one JSON object per line, with a `code`
//! <out>/<split>/shard-00000.arrow  Arrow IPC *stream* files, capped by size
//! ```
//!
//! The column contract, the choice of the IPC stream format, the metadata keys and the
//! layout of `--part K/N` packs are documented in `schemas/shard-format.md`; the manifest's
//! JSON Schema is `schemas/shards-manifest.schema.json`.
//!
//! Writing: [`ShardWriter`] takes rows in order, cuts record batches of a fixed number of
//! rows, closes a shard before it would pass the size cap, writes each shard under a hidden
//! temporary name, fsyncs it and renames it, so a shard is visible under its final name only
//! when complete. Same rows in, same bytes out.
//!
//! Reading: [`ShardReader`] memory-maps one shard, indexes its record batches by scanning
//! message headers only, and decodes batches zero-copy from the map: [`ShardReader::index`]
//! lists `(id, num_samples)` without touching audio pages, [`ShardReader::row`] decodes one
//! row.

mod error;
mod manifest;
mod reader;
mod schema;
mod verify;
mod writer;

pub use error::ShardError;
pub use manifest::{
    merge_manifests, merge_parts, part_tag, Manifest, NormalizationInfo, PartSpec, ShardInfo,
    SkippedCounts, SplitInfo, MANIFEST_FILE, NORMALIZED_FILE, SKIPPED_FILE,
};
pub use reader::{RowIndex, ShardReader};
pub use schema::{
    shard_schema, AudioDtype, FORMAT_VERSION, META_FORMAT_VERSION, META_SAMPLE_RATE, META_VOCAB,
    SAMPLE_RATE_HZ,
};
pub use verify::{
    check_against_manifest, inspect, sha256_file, verify, InspectReport, SampleRow, ShardCheck,
    SplitSummary, VerifyReport,
};
pub use writer::{
    quantize_i16, quantize_i16_into, RowRef, Samples, SamplesRowRef, ShardWriter,
    ShardWriterOptions, DEFAULT_ROWS_PER_BATCH,
};

/// One utterance as stored in a shard, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRow {
    /// Utterance id, unique within the dataset.
    pub id: String,
    /// 16 kHz mono samples in [-1, 1], whatever the stored dtype (int16 is divided by 32768).
    pub audio: Vec<f32>,
    /// Number of samples (equals `audio.len()`).
    pub num_samples: u32,
    /// Normalized transcript.
    pub text: String,
    /// CTC label ids of `text` in the shard's vocabulary.
    pub labels: Vec<i32>,
    /// Speaker id, when the corpus has one.
    pub speaker: Option<String>,
    /// Audio path relative to the dataset root.
    pub source: String,
}

impl ShardRow {
    /// Borrows this row for [`ShardWriter::write`].
    pub fn as_row_ref(&self) -> RowRef<'_> {
        RowRef {
            id: &self.id,
            audio: &self.audio,
            text: &self.text,
            labels: &self.labels,
            speaker: self.speaker.as_deref(),
            source: &self.source,
        }
    }

    /// Duration in seconds at 16 kHz.
    pub fn duration_s(&self) -> f64 {
        f64::from(self.num_samples) / f64::from(SAMPLE_RATE_HZ)
    }
}
