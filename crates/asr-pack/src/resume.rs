//! What a re-run may keep from an earlier pack into the same folder.
//!
//! A shard an earlier run completed is kept only when every row in it, and every row
//! before it in its split, comes from the same inputs as now: the same id, split,
//! normalized text, labels, speaker and source, and the same audio file (path, size,
//! modification time and, on Unix, change time). Each run records its rows' fingerprints
//! in `.pack-inputs-<prefix>.jsonl` beside the shards (headed by the fingerprint of the
//! options that change the output) before it writes a shard, so the record always
//! describes the shards the progress journals list, even after `kill -9`. Edit one
//! transcript or re-encode one file and the split holding it is rewritten.
//!
//! A finished pack (its manifest written) is not an interrupted one: packing into it
//! again is refused unless `overwrite` is set; then the manifest is removed first (so a
//! run interrupted while replacing it is resumed, not taken as finished) and the shards
//! of unchanged inputs are kept as above.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use asr_corpus::Utterance;
use asr_shards::{Manifest, PartSpec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PackError;

/// What a packed row is made of: everything its fingerprint covers.
pub(crate) struct RowInputs<'a> {
    pub utterance: &'a Utterance,
    pub split: &'a str,
    pub text: &'a str,
    pub labels: &'a [i32],
}

/// One line of the inputs journal (after its header line, the options' fingerprint).
#[derive(Serialize, Deserialize)]
struct Entry {
    split: String,
    id: String,
    fp: String,
}

/// The journal's path for the shards of `file_prefix` (`shard` or `shard-K-of-N`).
pub(crate) fn journal_path(out: &Path, file_prefix: &str) -> PathBuf {
    out.join(format!(".pack-inputs-{file_prefix}.jsonl"))
}

/// Refuses to pack into a folder that holds a finished pack of the same part, unless
/// `overwrite`. Called before any work, so a refused run costs nothing.
pub(crate) fn refuse_finished(
    out: &Path,
    part: Option<PartSpec>,
    overwrite: bool,
) -> Result<(), PackError> {
    let manifest = out.join(Manifest::file_name_for(part));
    if !overwrite && manifest.exists() {
        return Err(PackError::Finished { manifest });
    }
    Ok(())
}

/// Removes the manifest of a finished pack about to be replaced; true when there was one.
/// Called just before the first shard is touched, so a run that stops earlier (unknown
/// characters, nothing to pack) leaves the finished pack whole.
pub(crate) fn forget_finished(out: &Path, part: Option<PartSpec>) -> Result<bool, PackError> {
    let manifest = out.join(Manifest::file_name_for(part));
    match fs::remove_file(&manifest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PackError::Io {
            path: manifest,
            source,
        }),
    }
}

/// The fingerprint of each row, in order (the audio files are looked at in parallel).
pub(crate) fn fingerprints(rows: &[RowInputs<'_>]) -> Vec<String> {
    rows.par_iter().with_min_len(64).map(fingerprint).collect()
}

fn fingerprint(row: &RowInputs<'_>) -> String {
    let u = row.utterance;
    let mut hasher = Sha256::new();
    let audio_path = u.audio_path.to_string_lossy();
    for part in [
        u.id.as_str(),
        row.split,
        row.text,
        u.speaker.as_deref().unwrap_or(""),
        u.source.as_str(),
        audio_path.as_ref(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    for label in row.labels {
        hasher.update(label.to_le_bytes());
    }
    match fs::metadata(&u.audio_path) {
        Ok(meta) => {
            hasher.update(meta.len().to_le_bytes());
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            hasher.update(mtime.to_le_bytes());
            #[cfg(unix)]
            {
                // Changed by every write, and not settable (unlike mtime: `touch -d`,
                // `cp -p`), so a file rewritten with the same size and mtime still counts.
                use std::os::unix::fs::MetadataExt;
                hasher.update(meta.ctime().to_le_bytes());
                hasher.update(meta.ctime_nsec().to_le_bytes());
                hasher.update(meta.ino().to_le_bytes());
            }
        }
        Err(_) => hasher.update(b"unreadable"),
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The rows of an earlier run, per split in writing order: `(id, fingerprint)`.
#[derive(Default)]
pub(crate) struct Previous {
    splits: HashMap<String, Vec<(String, String)>>,
}

impl Previous {
    /// The journal at `path` if it was written with options of fingerprint `options`;
    /// empty (nothing can be kept) when it is missing, unreadable or from other options.
    pub(crate) fn read(path: &Path, options: &str) -> Previous {
        let Ok(text) = fs::read_to_string(path) else {
            return Previous::default();
        };
        let mut lines = text.lines();
        if lines.next() != Some(options) {
            return Previous::default();
        }
        let mut splits: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for line in lines {
            let Ok(entry) = serde_json::from_str::<Entry>(line) else {
                // A torn journal keeps nothing: it is written whole before any shard.
                return Previous::default();
            };
            splits
                .entry(entry.split)
                .or_default()
                .push((entry.id, entry.fp));
        }
        Previous { splits }
    }

    /// True when the first rows of `split` now (`current`, `(id, fingerprint)` in
    /// writing order) are the first rows the earlier run wrote, fingerprints and all.
    pub(crate) fn prefix_matches<'a>(
        &self,
        split: &str,
        current: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) -> bool {
        let Some(before) = self.splits.get(split) else {
            return false;
        };
        before.len() >= current.len()
            && current
                .zip(before)
                .all(|((id, fp), (was_id, was_fp))| id == was_id && fp == was_fp)
    }
}

/// Records this run's rows (`(split, id, fingerprint)` in writing order) atomically, under
/// the options' fingerprint: written before any shard of this run.
pub(crate) fn write_journal<'a>(
    path: &Path,
    options: &str,
    rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<(), PackError> {
    let io = |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = format!("{options}\n");
    for (split, id, fp) in rows {
        let entry = Entry {
            split: split.to_string(),
            id: id.to_string(),
            fp: fp.to_string(),
        };
        text.push_str(&serde_json::to_string(&entry).expect("journal entry serializes"));
        text.push('\n');
    }
    let temp = path.with_extension("jsonl.partial");
    let mut file = File::create(&temp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&temp, path).map_err(io)
}
