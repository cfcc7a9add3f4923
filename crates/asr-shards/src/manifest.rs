//! `manifest.json`: what a packed folder holds, and the merge of `--part K/N` manifests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schema::{AudioDtype, FORMAT_VERSION, SAMPLE_RATE_HZ};
use crate::writer::write_atomically;
use crate::ShardError;

/// File name of the manifest of a whole pack.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the list of rows left out of a whole pack.
pub const SKIPPED_FILE: &str = "skipped.jsonl";

/// One shard file, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Path relative to the pack folder, `/`-separated: `train/shard-00000.arrow`.
    pub file: String,
    /// Rows in the shard.
    pub rows: u64,
    /// Total 16 kHz samples in the shard.
    pub num_samples: u64,
    /// Total audio duration in seconds (`num_samples / 16000`).
    pub seconds: f64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// Id of the shard's first row.
    pub first_id: String,
    /// Id of the shard's last row.
    pub last_id: String,
}

/// One split (train-clean-100, dev, test...): totals and its shards in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SplitInfo {
    /// What the split is for, `train`, `dev` or `test`, when its name says so
    /// (`train-clean-100` is training data, `test-other` test data); `None` for names
    /// that say nothing. Consumers select by name or by role: `asr-train --train-split
    /// train` trains on every split whose role is train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Rows in the split.
    pub rows: u64,
    /// Total 16 kHz samples.
    pub num_samples: u64,
    /// Total audio duration in seconds.
    pub seconds: f64,
    /// Total bytes of its shard files.
    pub bytes: u64,
    /// Its shards, in row order.
    pub shards: Vec<ShardInfo>,
}

impl SplitInfo {
    /// Totals over `shards`.
    pub fn from_shards(shards: Vec<ShardInfo>) -> SplitInfo {
        let num_samples = shards.iter().map(|s| s.num_samples).sum();
        SplitInfo {
            role: None,
            rows: shards.iter().map(|s| s.rows).sum(),
            num_samples,
            seconds: num_samples as f64 / f64::from(SAMPLE_RATE_HZ),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        }
    }
}

/// Rows left out of the pack: their count per finding code. Each is listed with its code
/// in the `file` (JSON lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SkippedCounts {
    /// Rows left out.
    pub total: u64,
    /// Rows left out per code (`too_short`, `undecodable_audio`, `excluded`...).
    pub by_code: BTreeMap<String, u64>,
    /// The JSON-lines file that lists them, relative to the pack folder.
    pub file: String,
}

impl SkippedCounts {
    /// Counts one skipped row under `code`.
    pub fn add(&mut self, code: &str) {
        self.total += 1;
        *self.by_code.entry(code.to_string()).or_default() += 1;
    }
}

/// The transcript normalization a pack applied (`asr-data pack --normalize`), and the rows
/// it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizationInfo {
    /// The preset asked for: `none`, `upper`, `lower` or `cjk`.
    pub preset: String,
    /// The policy applied, the preset's with the command line's overrides (under `none`,
    /// case and apostrophes follow `--vocab`).
    pub policy: asr_text::NormalizePolicy,
    /// Packed rows whose stored text differs from the transcript as read.
    pub changed_rows: u64,
    /// The JSON-lines file listing each of them (`id`, `before`, `after`), relative to the
    /// pack folder; absent when no row changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// File name of the list of rows whose text normalization changed.
pub const NORMALIZED_FILE: &str = "normalized.jsonl";

/// Which of N disjoint parts a pack is (`--part K/N`, K counted from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSpec {
    /// This part, `0..count`.
    pub index: u32,
    /// Number of parts.
    pub count: u32,
}

impl std::str::FromStr for PartSpec {
    type Err = String;

    /// Parses `K/N` with `0 <= K < N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid part {s:?}: expected K/N, e.g. 0/4"))?;
        let index: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("invalid part {s:?}: K is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("invalid part {s:?}: N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "invalid part {s:?}: need 0 <= K < N (parts are counted from 0)"
            ));
        }
        Ok(PartSpec { index, count })
    }
}

impl std::fmt::Display for PartSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The tag a part's files carry, `003-of-008` (numbers zero-padded to at least 3 digits
/// and to the width of N): shards `shard-003-of-008-00000.arrow`, manifest
/// `manifest-003-of-008.json`, skipped rows `skipped-003-of-008.jsonl`. Names sort by part,
/// then shard, and never collide between parts, so all parts can write into one folder.
pub fn part_tag(part: PartSpec) -> String {
    let width = part.count.to_string().len().max(3);
    format!(
        "{:0width$}-of-{:0width$}",
        part.index,
        part.count,
        width = width
    )
}

/// What a packed folder holds; `manifest.json`, written last. Its JSON Schema is
/// `schemas/shards-manifest.schema.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the shards and this file.
    pub format_version: u32,
    /// Audio sample rate, always 16000.
    pub sample_rate_hz: u32,
    /// Stored sample type.
    pub audio_dtype: AudioDtype,
    /// The vocabulary, as HF `vocab.json` (token -> id).
    pub vocab: serde_json::Value,
    /// Splits by name.
    pub splits: BTreeMap<String, SplitInfo>,
    /// Rows left out.
    pub skipped: SkippedCounts,
    /// The text normalization applied; absent in manifests written before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<NormalizationInfo>,
    /// Set in a part manifest (`--part K/N`); absent once merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartSpec>,
    /// The folder the manifest was loaded from (not serialized).
    #[serde(skip)]
    dir: PathBuf,
}

impl Manifest {
    /// A manifest with no splits yet, for a pack of `vocab` stored as `audio_dtype`.
    pub fn new(vocab: &asr_text::Vocab, audio_dtype: AudioDtype, part: Option<PartSpec>) -> Self {
        let vocab_value = serde_json::from_str(&vocab.to_json_string())
            .unwrap_or(serde_json::Value::Object(Default::default()));
        Manifest {
            format_version: FORMAT_VERSION,
            sample_rate_hz: SAMPLE_RATE_HZ,
            audio_dtype,
            vocab: vocab_value,
            splits: BTreeMap::new(),
            skipped: SkippedCounts {
                file: Self::skipped_file_name_for(part),
                ..SkippedCounts::default()
            },
            normalization: None,
            part,
            dir: PathBuf::new(),
        }
    }

    /// `normalized.jsonl`, or `normalized-K-of-N.jsonl` for a part.
    pub fn normalized_file_name_for(part: Option<PartSpec>) -> String {
        match part {
            None => NORMALIZED_FILE.to_string(),
            Some(part) => format!("normalized-{}.jsonl", part_tag(part)),
        }
    }

    /// `manifest.json`, or `manifest-K-of-N.json` for a part.
    pub fn file_name_for(part: Option<PartSpec>) -> String {
        match part {
            None => MANIFEST_FILE.to_string(),
            Some(part) => format!("manifest-{}.json", part_tag(part)),
        }
    }

    /// `skipped.jsonl`, or `skipped-K-of-N.jsonl` for a part.
    pub fn skipped_file_name_for(part: Option<PartSpec>) -> String {
        match part {
            None => SKIPPED_FILE.to_string(),
            Some(part) => format!("skipped-{}.jsonl", part_tag(part)),
        }
    }

    /// Loads `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ShardError> {
        Self::load_file(&dir.join(MANIFEST_FILE))
    }

    /// Loads a manifest file (a whole pack's or a part's).
    pub fn load_file(path: &Path) -> Result<Manifest, ShardError> {
        let text = fs::read_to_string(path).map_err(|e| ShardError::io(path, e))?;
        let mut manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| ShardError::InvalidManifest {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(ShardError::InvalidManifest {
                path: path.to_path_buf(),
                message: format!(
                    "format version {} is newer than this program's ({FORMAT_VERSION})",
                    manifest.format_version
                ),
            });
        }
        if manifest.sample_rate_hz != SAMPLE_RATE_HZ {
            return Err(ShardError::InvalidManifest {
                path: path.to_path_buf(),
                message: format!("sample rate {} Hz, expected 16000", manifest.sample_rate_hz),
            });
        }
        manifest.dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(manifest)
    }

    /// Writes the manifest into `dir` atomically (temporary file, fsync, rename), as
    /// `manifest.json` or, for a part, `manifest-K-of-N.json`. Remembers `dir`.
    pub fn write(&mut self, dir: &Path) -> Result<PathBuf, ShardError> {
        let path = dir.join(Self::file_name_for(self.part));
        let mut text = serde_json::to_string_pretty(self).expect("manifest serializes");
        text.push('\n');
        write_atomically(&path, text.as_bytes())?;
        self.dir = dir.to_path_buf();
        Ok(path)
    }

    /// The folder the manifest was loaded from or written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The vocabulary the labels are encoded with.
    pub fn vocab(&self) -> Result<asr_text::Vocab, ShardError> {
        let json = serde_json::to_string(&self.vocab).expect("JSON value serializes");
        asr_text::Vocab::from_json_str(&json).map_err(|source| ShardError::Vocab {
            path: self.dir.join(Self::file_name_for(self.part)),
            source,
        })
    }

    /// Split names, training splits first, then dev, then test, then splits without a
    /// role; alphabetical within each group (`train-clean-100`, `train-clean-360`,
    /// `dev-clean`, `dev-other`, `test-clean`, `test-other`).
    pub fn splits(&self) -> Vec<&str> {
        // A split without a recorded role (a manifest of an older writer) ranks by its
        // name when the name is a role itself.
        let rank = |name: &str, info: &SplitInfo| match info.role.as_deref().unwrap_or(name) {
            "train" => 0u8,
            "dev" | "validation" => 1,
            "test" => 2,
            _ => 3,
        };
        let mut names: Vec<(u8, &str)> = self
            .splits
            .iter()
            .map(|(name, info)| (rank(name, info), name.as_str()))
            .collect();
        names.sort();
        names.into_iter().map(|(_, name)| name).collect()
    }

    /// The splits a selector names: the split of that exact name when there is one,
    /// else every split whose role is the selector (`train` selects `train-clean-100`
    /// and `train-other-500`), in [`Manifest::splits`] order. Empty when nothing matches.
    pub fn select_splits(&self, selector: &str) -> Vec<&str> {
        if let Some((name, _)) = self.splits.get_key_value(selector) {
            return vec![name.as_str()];
        }
        self.splits()
            .into_iter()
            .filter(|name| self.splits[*name].role.as_deref() == Some(selector))
            .collect()
    }

    /// The summary of one split.
    pub fn split(&self, name: &str) -> Option<&SplitInfo> {
        self.splits.get(name)
    }

    /// Paths of a split's shards in row order (empty for an unknown split).
    pub fn shard_paths(&self, split: &str) -> Vec<PathBuf> {
        self.splits
            .get(split)
            .map(|info| {
                info.shards
                    .iter()
                    .map(|shard| self.dir.join(&shard.file))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rows over all splits.
    pub fn total_rows(&self) -> u64 {
        self.splits.values().map(|s| s.rows).sum()
    }

    /// Audio seconds over all splits.
    pub fn total_seconds(&self) -> f64 {
        self.splits.values().map(|s| s.seconds).sum()
    }
}

/// Joins the part manifests `manifest-K-of-N.json` found in `dir` into `manifest.json`
/// (and their `skipped-K-of-N.jsonl` into `skipped.jsonl`, their
/// `normalized-K-of-N.jsonl` into `normalized.jsonl`), all written atomically.
///
/// Every part `0..N` must be present, all with the same N, format, dtype, vocabulary and
/// text normalization, and every shard they list must exist with its recorded size
/// (`verify` checks sha256).
/// Shards keep their part-tagged names; each split lists part 0's shards, then part 1's...
/// The part files stay, so a merge can be re-run.
pub fn merge_parts(dir: &Path) -> Result<Manifest, ShardError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ShardError::io(dir, e))? {
        let entry = entry.map_err(|e| ShardError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("manifest-") && name.ends_with(".json") {
            found.push(entry.path());
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(ShardError::Merge {
            message: format!(
                "no part manifests (manifest-K-of-N.json) in {}",
                dir.display()
            ),
        });
    }
    let mut parts = Vec::with_capacity(found.len());
    for path in &found {
        let manifest = Manifest::load_file(path)?;
        if manifest.part.is_none() {
            return Err(ShardError::Merge {
                message: format!("{} is not a part manifest (no `part`)", path.display()),
            });
        }
        parts.push(manifest);
    }
    let mut merged = merge_manifests(parts)?;
    for split in merged.splits.values() {
        for shard in &split.shards {
            let path = dir.join(&shard.file);
            let bytes = fs::metadata(&path)
                .map_err(|e| ShardError::io(&path, e))?
                .len();
            if bytes != shard.bytes {
                return Err(ShardError::Merge {
                    message: format!(
                        "{} has {bytes} bytes, its part manifest says {}",
                        path.display(),
                        shard.bytes
                    ),
                });
            }
        }
    }
    // Concatenate the parts' skipped rows in part order.
    let count = merged_part_count(&found)?;
    let skipped = concat_part_files(dir, count, Manifest::skipped_file_name_for)?;
    write_atomically(&dir.join(SKIPPED_FILE), &skipped)?;
    if merged
        .normalization
        .as_ref()
        .is_some_and(|n| n.file.is_some())
    {
        let normalized = concat_part_files(dir, count, Manifest::normalized_file_name_for)?;
        write_atomically(&dir.join(NORMALIZED_FILE), &normalized)?;
    }
    merged.write(dir)?;
    Ok(merged)
}

/// The JSON-lines files of parts `0..count` (named by `name_for`) joined in part order;
/// a part without the file adds nothing.
fn concat_part_files(
    dir: &Path,
    count: u32,
    name_for: fn(Option<PartSpec>) -> String,
) -> Result<Vec<u8>, ShardError> {
    let mut joined = Vec::new();
    for index in 0..count {
        let path = dir.join(name_for(Some(PartSpec { index, count })));
        match fs::read(&path) {
            Ok(bytes) => {
                joined.extend_from_slice(&bytes);
                if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                    joined.push(b'\n');
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ShardError::io(&path, e)),
        }
    }
    Ok(joined)
}

/// The normalization of merged parts: all parts must have applied the same policy; the
/// changed rows add up, listed in `normalized.jsonl`.
fn merge_normalization(parts: &[Manifest]) -> Result<Option<NormalizationInfo>, ShardError> {
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    let mut merged = first.normalization.clone();
    for part in &parts[1..] {
        let same = match (&merged, &part.normalization) {
            (Some(a), Some(b)) => a.preset == b.preset && a.policy == b.policy,
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Err(ShardError::Merge {
                message: format!(
                    "part {} was packed with another text normalization (--normalize and its options) than part {}",
                    part.part.map_or(String::new(), |p| p.to_string()),
                    first.part.map_or(String::new(), |p| p.to_string())
                ),
            });
        }
        if let (Some(m), Some(b)) = (&mut merged, &part.normalization) {
            m.changed_rows += b.changed_rows;
        }
    }
    if let Some(m) = &mut merged {
        m.file = (m.changed_rows > 0).then(|| NORMALIZED_FILE.to_string());
    }
    Ok(merged)
}

fn merged_part_count(found: &[PathBuf]) -> Result<u32, ShardError> {
    let first = Manifest::load_file(&found[0])?;
    Ok(first.part.map_or(1, |p| p.count))
}

/// Joins part manifests (any order) into one whole-pack manifest; checks they are the N
/// parts of one pack. Pure: reads and writes nothing.
pub fn merge_manifests(mut parts: Vec<Manifest>) -> Result<Manifest, ShardError> {
    let Some(first) = parts.first() else {
        return Err(ShardError::Merge {
            message: "no part manifests given".to_string(),
        });
    };
    let count = first.part.map_or(0, |p| p.count);
    let (format_version, dtype, vocab) =
        (first.format_version, first.audio_dtype, first.vocab.clone());
    let dir = first.dir.clone();
    let mut seen = vec![false; count as usize];
    for part in &parts {
        let Some(spec) = part.part else {
            return Err(ShardError::Merge {
                message: "a manifest without `part` cannot be merged".to_string(),
            });
        };
        if spec.count != count {
            return Err(ShardError::Merge {
                message: format!(
                    "part {spec} belongs to a {}-part pack, others to a {count}-part pack",
                    spec.count
                ),
            });
        }
        if std::mem::replace(&mut seen[spec.index as usize], true) {
            return Err(ShardError::Merge {
                message: format!("part {spec} appears twice"),
            });
        }
        if part.format_version != format_version || part.audio_dtype != dtype {
            return Err(ShardError::Merge {
                message: format!(
                    "part {spec} has format {} / {}, part {} has {format_version} / {}",
                    part.format_version,
                    part.audio_dtype.name(),
                    first.part.map_or(String::new(), |p| p.to_string()),
                    dtype.name()
                ),
            });
        }
        if part.vocab != vocab {
            return Err(ShardError::Merge {
                message: format!(
                    "part {spec} was packed with another vocabulary than part {}",
                    first.part.map_or(String::new(), |p| p.to_string())
                ),
            });
        }
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, seen)| !**seen)
        .map(|(index, _)| format!("{index}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Merge {
            message: format!("missing parts: {}", missing.join(", ")),
        });
    }
    parts.sort_by_key(|p| p.part.map_or(0, |s| s.index));
    let normalization = merge_normalization(&parts)?;
    let mut shards_by_split: BTreeMap<String, Vec<ShardInfo>> = BTreeMap::new();
    let mut skipped = SkippedCounts {
        file: SKIPPED_FILE.to_string(),
        ..SkippedCounts::default()
    };
    let mut roles: BTreeMap<String, String> = BTreeMap::new();
    for part in parts {
        for (name, split) in part.splits {
            if let Some(role) = split.role {
                roles.insert(name.clone(), role);
            }
            shards_by_split
                .entry(name)
                .or_default()
                .extend(split.shards);
        }
        skipped.total += part.skipped.total;
        for (code, n) in part.skipped.by_code {
            *skipped.by_code.entry(code).or_default() += n;
        }
    }
    Ok(Manifest {
        format_version,
        sample_rate_hz: SAMPLE_RATE_HZ,
        audio_dtype: dtype,
        vocab,
        splits: shards_by_split
            .into_iter()
            .map(|(name, shards)| {
                let role = roles.get(&name).cloned();
                (
                    name,
                    SplitInfo {
                        role,
                        ..SplitInfo::from_shards(shards)
                    },
                )
            })
            .collect(),
        skipped,
        normalization,
        part: None,
        dir,
    })
}
