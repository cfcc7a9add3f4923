//! Split assignment, part selection and the data-built vocabulary: pure functions of the
//! row (and seed), so every part of a `--part K/N` pack agrees on every row.

use std::collections::{BTreeSet, HashMap};

use asr_corpus::Utterance;
use asr_text::{NormalizePolicy, Vocab};
use sha2::{Digest, Sha256};

use crate::PackOptions;

/// Validation findings that leave a row out, per id: `(code, message)`.
pub(crate) type Reasons<'a> = HashMap<&'a str, (&'static str, &'a str)>;

/// The split `u` is packed under, or why it is left out before decoding (`code`,
/// `message`): listed in `--exclude`, a validation finding in `reasons`, or in no split
/// of a dataset that has splits.
pub(crate) fn assign(
    u: &Utterance,
    options: &PackOptions,
    reasons: &Reasons<'_>,
    dataset_has_splits: bool,
) -> Result<String, (&'static str, String)> {
    if options.exclude.contains(&u.id) {
        return Err(("excluded", "listed in --exclude".into()));
    }
    if let Some((code, message)) = reasons.get(u.id.as_str()) {
        return Err((code, message.to_string()));
    }
    match &options.split {
        SplitPlan::Ratios { ratios, seed } => Ok(split_of_id(ratios, *seed, &u.id).to_string()),
        SplitPlan::FromDataset => match &u.split {
            Some(name) => Ok(split_name(name)),
            None if dataset_has_splits => Err((
                "no_split",
                "the dataset has splits but this row is in none; use --split to assign seeded splits".into(),
            )),
            None => Ok("train".to_string()),
        },
    }
}

/// The vocabulary built from the data: `[PAD] [UNK] |` and every non-space character of
/// the transcripts normalized by `policy` (by default NFC, case kept).
pub(crate) fn data_vocab<'a>(
    transcripts: impl Iterator<Item = &'a str>,
    policy: &NormalizePolicy,
) -> Vocab {
    let mut chars = BTreeSet::new();
    for text in transcripts {
        chars.extend(
            asr_text::normalize(text, policy)
                .chars()
                .filter(|c| !c.is_whitespace()),
        );
    }
    Vocab::from_chars(chars)
}

/// The split name a corpus split is packed under: the dataset's own name (LibriSpeech's
/// `train-clean-100`, `dev-other`; Common Voice's `train`, `dev`, `test`), made safe for
/// a folder name. Keeping names apart matters: `test-clean` and `test-other` are reported
/// separately in every paper. The manifest records each split's role (train, dev, test;
/// see [`asr_corpus::SplitRole::of`]) so that consumers can also select "all training splits".
fn split_name(corpus_split: &str) -> String {
    let safe: String = corpus_split
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with(['.', '-']) {
        format!("split{safe}")
    } else {
        safe
    }
}

/// How rows are assigned to splits.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitPlan {
    /// The dataset's own splits, mapped to `train`/`dev`/`test` by
    /// [`asr_corpus::SplitRole`] (other names kept as they are). Rows of a dataset with
    /// no splits at all go to `train`.
    FromDataset,
    /// Seeded ratios: each id goes to a split by a hash of the seed and the id.
    Ratios {
        /// Split names and their shares (positive, summing to 1 within 1e-6).
        ratios: Vec<(String, f64)>,
        /// The seed.
        seed: u64,
    },
}

impl SplitPlan {
    /// Parses `train=0.9,dev=0.05,test=0.05` with a seed.
    pub fn parse_ratios(spec: &str, seed: u64) -> Result<SplitPlan, String> {
        let mut ratios = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid split {part:?}: expected NAME=RATIO"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "invalid split name {name:?}: use letters, digits, - and _"
                ));
            }
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("invalid ratio in {part:?}"))?;
            if !(value > 0.0 && value <= 1.0) {
                return Err(format!("ratio of {name} must be in (0, 1], got {value}"));
            }
            if ratios.iter().any(|(n, _): &(String, f64)| n == name) {
                return Err(format!("split {name} given twice"));
            }
            ratios.push((name.to_string(), value));
        }
        let total: f64 = ratios.iter().map(|(_, v)| v).sum();
        if ratios.is_empty() || (total - 1.0).abs() > 1e-6 {
            return Err(format!(
                "split ratios must sum to 1, got {total} in {spec:?}"
            ));
        }
        Ok(SplitPlan::Ratios { ratios, seed })
    }
}

/// A stable 64-bit hash of `salt` and `id` (the first 8 bytes of SHA-256): the same on
/// every machine, Rust version and run.
pub fn stable_hash(salt: &str, id: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update([0u8]);
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The split `id` falls in under seeded `ratios`: `hash(seed, id)` mapped to [0, 1) and
/// looked up in the cumulative ratios.
pub fn split_of_id<'a>(ratios: &'a [(String, f64)], seed: u64, id: &str) -> &'a str {
    let unit = (stable_hash(&format!("split:{seed}"), id) >> 11) as f64 / (1u64 << 53) as f64;
    let mut cumulative = 0.0;
    for (name, ratio) in ratios {
        cumulative += ratio;
        if unit < cumulative {
            return name;
        }
    }
    ratios.last().map_or("train", |(name, _)| name.as_str())
}

/// True when `id` belongs to part `index` of `count`.
pub(crate) fn in_part(id: &str, index: u32, count: u32) -> bool {
    stable_hash("part", id) % u64::from(count) == u64::from(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_parse_and_validate() {
        let plan = SplitPlan::parse_ratios("train=0.9, dev=0.05,test=0.05", 42).unwrap();
        assert_eq!(
            plan,
            SplitPlan::Ratios {
                ratios: vec![
                    ("train".into(), 0.9),
                    ("dev".into(), 0.05),
                    ("test".into(), 0.05)
                ],
                seed: 42
            }
        );
        assert!(SplitPlan::parse_ratios("train=0.9,dev=0.2", 1).is_err());
        assert!(SplitPlan::parse_ratios("train", 1).is_err());
        assert!(SplitPlan::parse_ratios("train=x", 1).is_err());
        assert!(SplitPlan::parse_ratios("a/b=1", 1).is_err());
        assert!(SplitPlan::parse_ratios("train=0.5,train=0.5", 1).is_err());
    }

    #[test]
    fn seeded_split_is_stable_per_id_and_follows_the_ratios() {
        let ratios = vec![
            ("train".to_string(), 0.8),
            ("dev".to_string(), 0.1),
            ("test".to_string(), 0.1),
        ];
        let ids: Vec<String> = (0..20_000).map(|i| format!("utt-{i}")).collect();
        let mut counts = std::collections::HashMap::new();
        for id in &ids {
            let split = split_of_id(&ratios, 7, id);
            assert_eq!(split, split_of_id(&ratios, 7, id));
            *counts.entry(split).or_insert(0usize) += 1;
        }
        let train = counts["train"] as f64 / ids.len() as f64;
        assert!((train - 0.8).abs() < 0.02, "{counts:?}");
        // Another seed moves ids around.
        let moved = ids
            .iter()
            .filter(|id| split_of_id(&ratios, 7, id) != split_of_id(&ratios, 8, id))
            .count();
        assert!(moved > 1_000);
    }

    #[test]
    fn parts_are_disjoint_and_cover_every_id() {
        for i in 0..1_000 {
            let id = format!("x{i}");
            let owners = (0..4).filter(|&k| in_part(&id, k, 4)).count();
            assert_eq!(owners, 1);
        }
    }
}
