//! Checksum verification and the `inspect` summary of a packed folder.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;
use crate::reader::ShardReader;
use crate::writer::hex;
use crate::ShardError;

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ShardError> {
    let mut file = File::open(path).map_err(|e| ShardError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ShardError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The check of one shard against the manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardCheck {
    /// Split name.
    pub split: String,
    /// Path relative to the pack folder.
    pub file: String,
    /// Rows the manifest lists.
    pub rows: u64,
    /// What is wrong, `None` when the file has the recorded size, sha256, row count and
    /// vocabulary.
    pub problem: Option<String>,
}

/// Every shard of a pack checked against its manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// One entry per shard listed in the manifest.
    pub shards: Vec<ShardCheck>,
}

impl VerifyReport {
    /// True when every shard checked out.
    pub fn ok(&self) -> bool {
        self.shards.iter().all(|s| s.problem.is_none())
    }

    /// The shards with a problem.
    pub fn failures(&self) -> impl Iterator<Item = &ShardCheck> {
        self.shards.iter().filter(|s| s.problem.is_some())
    }
}

/// Checks every shard listed in `<dir>/manifest.json`: present, same size and sha256 as
/// recorded, readable as a shard, same row count, same vocabulary as the manifest.
/// Problems are reported per shard; only an unreadable manifest is an error.
pub fn verify(dir: &Path) -> Result<VerifyReport, ShardError> {
    let manifest = Manifest::load(dir)?;
    verify_manifest(&manifest)
}

fn verify_manifest(manifest: &Manifest) -> Result<VerifyReport, ShardError> {
    let vocab = manifest.vocab()?;
    let mut shards = Vec::new();
    for split in manifest.splits() {
        let info = &manifest.splits[split];
        for shard in &info.shards {
            let path = manifest.dir().join(&shard.file);
            let problem = check_shard(&path, shard, &vocab).err();
            shards.push(ShardCheck {
                split: split.to_string(),
                file: shard.file.clone(),
                rows: shard.rows,
                problem,
            });
        }
    }
    Ok(VerifyReport { shards })
}

fn check_shard(
    path: &Path,
    shard: &crate::ShardInfo,
    vocab: &asr_text::Vocab,
) -> Result<(), String> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if bytes != shard.bytes {
        return Err(format!("size {bytes} bytes, manifest says {}", shard.bytes));
    }
    let sha = sha256_file(path).map_err(|e| e.to_string())?;
    if sha != shard.sha256 {
        return Err(format!(
            "sha256 mismatch: file {sha}, manifest {} (the file is damaged or was replaced)",
            shard.sha256
        ));
    }
    let reader = ShardReader::open(path).map_err(|e| e.to_string())?;
    check_against_manifest(&reader, shard, None, vocab)
}

/// Checks what an open shard says about itself against its manifest entry, without
/// reading any row: the file size, row count, audio dtype (when `dtype` is given) and
/// the vocabulary of its schema. The column layout was checked by
/// [`ShardReader::open`]. The message says what differs; the caller names the file.
/// Cheap enough to run on every shard a trainer opens (the sha256 is not part of it).
pub fn check_against_manifest(
    reader: &ShardReader,
    shard: &crate::ShardInfo,
    dtype: Option<crate::AudioDtype>,
    vocab: &asr_text::Vocab,
) -> Result<(), String> {
    if reader.file_len() != shard.bytes {
        return Err(format!(
            "size {} bytes, manifest says {}",
            reader.file_len(),
            shard.bytes
        ));
    }
    if reader.num_rows() as u64 != shard.rows {
        return Err(format!(
            "{} rows, manifest says {}",
            reader.num_rows(),
            shard.rows
        ));
    }
    if let Some(dtype) = dtype.filter(|d| *d != reader.audio_dtype()) {
        return Err(format!(
            "audio stored as {}, manifest says {}",
            reader.audio_dtype().name(),
            dtype.name()
        ));
    }
    let shard_vocab = reader.vocab().map_err(|e| e.to_string())?;
    if let Some(diff) = vocab.diff(&shard_vocab) {
        return Err(format!("vocabulary differs from the manifest's: {diff}"));
    }
    Ok(())
}

/// A row decoded back for `inspect`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRow {
    /// Split name.
    pub split: String,
    /// Utterance id.
    pub id: String,
    /// Duration in seconds.
    pub duration_s: f64,
    /// The stored normalized transcript.
    pub text: String,
    /// The labels decoded back with the vocabulary.
    pub decoded: String,
    /// Whether `decoded` equals `text` (differs when `--unk map/drop` changed the text's
    /// characters, or when something is wrong).
    pub matches: bool,
    /// Peak absolute sample value in [0, 1].
    pub peak: f32,
}

/// Split summary line for `inspect`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    /// Split name.
    pub name: String,
    /// Rows.
    pub rows: u64,
    /// Audio hours.
    pub hours: f64,
    /// Shard files.
    pub shards: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

/// What `asr-data inspect SHARDS` shows: the manifest's summary, the checksum
/// verification, and a few rows per split decoded back to text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectReport {
    /// Format version.
    pub format_version: u32,
    /// Stored sample type (`int16`/`float32`).
    pub audio_dtype: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Vocabulary tokens in id order.
    pub vocab_tokens: Vec<String>,
    /// Per split totals.
    pub splits: Vec<SplitSummary>,
    /// Rows left out, total.
    pub skipped_total: u64,
    /// Rows left out per code.
    pub skipped_by_code: std::collections::BTreeMap<String, u64>,
    /// Checksum verification of every shard.
    pub verify: VerifyReport,
    /// Decoded sample rows.
    pub samples: Vec<SampleRow>,
}

/// Summarizes the pack in `dir`, verifies every shard, and decodes the first
/// `rows_per_split` rows of each split back to text.
pub fn inspect(dir: &Path, rows_per_split: usize) -> Result<InspectReport, ShardError> {
    let manifest = Manifest::load(dir)?;
    let vocab = manifest.vocab()?;
    let verify = verify_manifest(&manifest)?;
    let mut splits = Vec::new();
    let mut samples = Vec::new();
    for name in manifest.splits() {
        let info = &manifest.splits[name];
        splits.push(SplitSummary {
            name: name.to_string(),
            rows: info.rows,
            hours: info.seconds / 3600.0,
            shards: info.shards.len(),
            bytes: info.bytes,
        });
        let mut wanted = rows_per_split;
        for path in manifest.shard_paths(name) {
            if wanted == 0 {
                break;
            }
            let Ok(reader) = ShardReader::open(&path) else {
                continue; // reported by verify
            };
            for row in reader.rows().take(wanted) {
                let row = row?;
                let decoded = vocab.decode_labels(&row.labels);
                let peak = row.audio.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
                samples.push(SampleRow {
                    split: name.to_string(),
                    duration_s: row.duration_s(),
                    matches: decoded == row.text,
                    id: row.id,
                    text: row.text,
                    decoded,
                    peak,
                });
                wanted -= 1;
            }
        }
    }
    Ok(InspectReport {
        format_version: manifest.format_version,
        audio_dtype: manifest.audio_dtype.name().to_string(),
        vocab_size: vocab.len(),
        vocab_tokens: vocab.tokens().to_vec(),
        splits,
        skipped_total: manifest.skipped.total,
        skipped_by_code: manifest.skipped.by_code.clone(),
        verify,
        samples,
    })
}

impl std::fmt::Display for InspectReport {
    /// The human summary `asr-data inspect` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "format {} · 16 kHz {} audio · vocabulary of {} tokens",
            self.format_version, self.audio_dtype, self.vocab_size
        )?;
        writeln!(f, "  {}", self.vocab_tokens.join(" "))?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>7} {:>11}",
            "split", "rows", "hours", "shards", "MB"
        )?;
        for s in &self.splits {
            writeln!(
                f,
                "{:<12} {:>9} {:>9.3} {:>7} {:>11.1}",
                s.name,
                s.rows,
                s.hours,
                s.shards,
                s.bytes as f64 / 1e6
            )?;
        }
        if self.skipped_total > 0 {
            let codes: Vec<String> = self
                .skipped_by_code
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            writeln!(
                f,
                "skipped      {:>9}  ({})",
                self.skipped_total,
                codes.join(", ")
            )?;
        }
        writeln!(f)?;
        let failures: Vec<_> = self.verify.failures().collect();
        if failures.is_empty() {
            writeln!(
                f,
                "checksums: all {} shards verified (size, sha256, rows, vocabulary)",
                self.verify.shards.len()
            )?;
        } else {
            writeln!(
                f,
                "checksums: {} of {} shards FAILED",
                failures.len(),
                self.verify.shards.len()
            )?;
            for check in failures {
                writeln!(
                    f,
                    "  error: {}: {}",
                    check.file,
                    check.problem.as_deref().unwrap_or("")
                )?;
            }
        }
        if !self.samples.is_empty() {
            writeln!(f)?;
            writeln!(f, "sample rows (labels decoded back with the vocabulary):")?;
            for row in &self.samples {
                writeln!(
                    f,
                    "  [{}] {} ({:.2} s, peak {:.2})",
                    row.split, row.id, row.duration_s, row.peak
                )?;
                writeln!(f, "    text:   {}", row.text)?;
                if row.matches {
                    writeln!(f, "    labels: {} (same)", row.decoded)?;
                } else {
                    writeln!(f, "    labels: {} (DIFFERS)", row.decoded)?;
                }
            }
        }
        Ok(())
    }
}
