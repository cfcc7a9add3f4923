//! Shards written by `asr-data pack` as the trainer's data: every split of the
//! manifest becomes an [`UtteranceSource`] over its memory-mapped shard files, indexed
//! by id and length without reading audio.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use asr_shards::{Manifest, ShardError, ShardReader};

use crate::data::{DataError, Utterance, UtteranceInfo, UtteranceSource};
use crate::trainer::TrainData;

/// The rows of one split, across its shard files.
pub struct ShardSource {
    readers: Vec<ShardReader>,
    infos: Vec<UtteranceInfo>,
    /// (reader, row) of each entry of `infos`.
    locations: Vec<(u32, u32)>,
}

impl ShardSource {
    /// Open the shard files of one split, in order.
    pub fn open(paths: &[std::path::PathBuf]) -> Result<ShardSource, ShardError> {
        let mut readers = Vec::with_capacity(paths.len());
        let mut infos = Vec::new();
        let mut locations = Vec::new();
        for (r, path) in paths.iter().enumerate() {
            let reader = ShardReader::open(path)?;
            for (row, entry) in reader.index()?.into_iter().enumerate() {
                infos.push(UtteranceInfo {
                    id: entry.id,
                    num_samples: u64::from(entry.num_samples),
                });
                locations.push((r as u32, row as u32));
            }
            readers.push(reader);
        }
        Ok(ShardSource {
            readers,
            infos,
            locations,
        })
    }
}

impl UtteranceSource for ShardSource {
    fn index(&self) -> &[UtteranceInfo] {
        &self.infos
    }

    fn load(&self, i: usize) -> Result<Utterance, DataError> {
        let &(r, row) = self
            .locations
            .get(i)
            .ok_or_else(|| DataError(format!("no utterance {i}")))?;
        let row = self.readers[r as usize]
            .row(row as usize)
            .map_err(|e| DataError(e.to_string()))?;
        Ok(Utterance {
            id: row.id,
            audio: row.audio,
            labels: row.labels,
            text: row.text,
        })
    }
}

/// Open a shard folder (its `manifest.json`) as training data: the manifest's
/// vocabulary and one source per split.
pub fn open_shards(dir: &Path) -> Result<TrainData, ShardError> {
    let manifest = Manifest::load(dir)?;
    let vocab = manifest.vocab()?;
    let mut splits: BTreeMap<String, Arc<dyn UtteranceSource>> = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for split in manifest.splits() {
        let source = ShardSource::open(&manifest.shard_paths(split))?;
        splits.insert(split.to_string(), Arc::new(source));
        if let Some(role) = manifest.split(split).and_then(|info| info.role.clone()) {
            roles.insert(split.to_string(), role);
        }
    }
    Ok(TrainData {
        vocab,
        splits,
        roles,
        origin: format!("the shards in {}", dir.display()),
    })
}
