//! Shards written by `asr-data pack` as the trainer's data: every split of the
//! manifest becomes an [`UtteranceSource`] over its memory-mapped shard files, indexed
//! by id and length without reading audio.
//!
//! What is checked, and when:
//! - **On open**, every shard against its manifest entry: file size, row count, audio
//!   dtype and the vocabulary stored in its schema (`asr_shards::check_against_manifest`).
//!   A shard packed with another vocabulary would otherwise train the wrong tokens
//!   silently. These checks read headers only.
//! - **Each row read**: its label ids must lie in the vocabulary (a damaged or foreign
//!   shard would otherwise reach libtorch's CTC loss with ids past the logits).
//! - **In the background**, the sha256 of every shard against the manifest
//!   ([`Checksums`]): when a row of a shard is first read, a low-priority thread hashes
//!   that file while training goes on (shards never read, e.g. of splits not used, are
//!   not hashed). Once a mismatch is found, the next row read fails with the file named
//!   (so the run stops at the next step), and [`Checksums::wait`] reports it when the
//!   command ends, so a mismatch found after the last step still fails the run.
//!   `--no-verify-shards` turns the hashing off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use asr_shards::{AudioDtype, Manifest, ShardError, ShardInfo, ShardReader};
use asr_text::Vocab;

use crate::data::{DataError, Utterance, UtteranceInfo, UtteranceSource};
use crate::trainer::TrainData;

/// The rows of one split, across its shard files.
pub struct ShardSource {
    readers: Vec<ShardReader>,
    infos: Vec<UtteranceInfo>,
    /// (reader, row) of each entry of `infos`.
    locations: Vec<(u32, u32)>,
    /// Label ids must be below this.
    vocab_size: usize,
    /// Background checksum verification (shared by every split of the pack).
    checksums: Checksums,
    /// Pack-wide index of `readers[0]` for `checksums`.
    first_shard: usize,
}

/// What a shard must match: its manifest entry, the pack's dtype and vocabulary.
struct Expected<'a> {
    shards: &'a [ShardInfo],
    dtype: Option<AudioDtype>,
    vocab: &'a Vocab,
    /// Pack-wide index of the first shard.
    first_shard: usize,
}

impl ShardSource {
    /// Open the shard files of one split, in order, with no manifest to check them
    /// against: labels are checked against `vocab` only.
    pub fn open(paths: &[PathBuf], vocab: &Vocab) -> Result<ShardSource, ShardError> {
        Self::open_checked(paths, None, vocab, Checksums::off())
    }

    fn open_checked(
        paths: &[PathBuf],
        expected: Option<&Expected<'_>>,
        vocab: &Vocab,
        checksums: Checksums,
    ) -> Result<ShardSource, ShardError> {
        let mut readers = Vec::with_capacity(paths.len());
        let mut infos = Vec::new();
        let mut locations = Vec::new();
        for (r, path) in paths.iter().enumerate() {
            let reader = ShardReader::open(path)?;
            if let Some(expected) = expected {
                let shard = &expected.shards[r];
                asr_shards::check_against_manifest(&reader, shard, expected.dtype, expected.vocab)
                    .map_err(|problem| ShardError::InvalidShard {
                        path: path.clone(),
                        message: format!(
                            "{problem}; the manifest lists it as {} (check the pack with \
                             `asr-data inspect`, then re-pack or re-merge it)",
                            shard.file
                        ),
                    })?;
            }
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
            vocab_size: vocab.len(),
            checksums,
            first_shard: expected.map_or(0, |e| e.first_shard),
        })
    }
}

/// The first label id of a row outside `0..vocab_size`, as an error naming the shard,
/// the row and the id.
pub fn check_labels(
    labels: &[i32],
    vocab_size: usize,
    path: &Path,
    row: usize,
    id: &str,
) -> Result<(), DataError> {
    match labels.iter().find(|&&l| l < 0 || l as usize >= vocab_size) {
        None => Ok(()),
        Some(bad) => Err(DataError(format!(
            "{}: row {row} (utterance {id:?}): label id {bad} is outside the vocabulary of \
             {vocab_size} tokens (ids 0..={}); the shard is damaged or was written with \
             another vocabulary: check it with `asr-data inspect` and re-pack the data",
            path.display(),
            vocab_size.saturating_sub(1)
        ))),
    }
}

impl UtteranceSource for ShardSource {
    fn index(&self) -> &[UtteranceInfo] {
        &self.infos
    }

    fn texts(&self) -> Result<Vec<String>, DataError> {
        let per_reader = self
            .readers
            .iter()
            .map(|r| r.texts().map_err(|e| DataError(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .locations
            .iter()
            .map(|&(r, row)| per_reader[r as usize][row as usize].clone())
            .collect())
    }

    fn load(&self, i: usize) -> Result<Utterance, DataError> {
        if let Some(failure) = self.checksums.failure() {
            return Err(DataError(failure.to_string()));
        }
        let &(r, row) = self
            .locations
            .get(i)
            .ok_or_else(|| DataError(format!("no utterance {i}")))?;
        self.checksums.request(self.first_shard + r as usize);
        let reader = &self.readers[r as usize];
        let decoded = reader
            .row(row as usize)
            .map_err(|e| DataError(e.to_string()))?;
        check_labels(
            &decoded.labels,
            self.vocab_size,
            reader.path(),
            row as usize,
            &decoded.id,
        )?;
        Ok(Utterance {
            id: decoded.id,
            audio: decoded.audio,
            labels: decoded.labels,
            text: decoded.text,
        })
    }
}

/// Whether [`open_shards_with`] hashes the shards in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Verify every shard's sha256 against the manifest on a background thread.
    Background,
    /// Do not hash (`--no-verify-shards`); the on-open checks still run.
    Off,
}

struct ChecksumState {
    /// Every shard of the pack (path, manifest entry), by pack-wide index.
    shards: Vec<(PathBuf, ShardInfo)>,
    /// Whether each shard was handed to the hashing thread.
    requested: Vec<AtomicBool>,
    /// The first mismatch, as a message naming the file.
    failure: OnceLock<String>,
    /// Shards requested and not hashed yet.
    pending: Mutex<usize>,
    hashed: Condvar,
}

impl ChecksumState {
    fn finish_one(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending = pending.saturating_sub(1);
        self.hashed.notify_all();
    }
}

/// The sha256 verification of a pack's shards, each hashed on a low-priority thread
/// when it is first read (see the module docs). Clones share one verification; the
/// thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct Checksums {
    state: Arc<ChecksumState>,
    /// To the hashing thread; `None` when verification is off.
    queue: Option<crossbeam_channel::Sender<usize>>,
}

impl Checksums {
    /// No verification: nothing fails, [`Checksums::wait`] returns at once.
    pub fn off() -> Checksums {
        Checksums {
            state: Arc::new(ChecksumState {
                shards: Vec::new(),
                requested: Vec::new(),
                failure: OnceLock::new(),
                pending: Mutex::new(0),
                hashed: Condvar::new(),
            }),
            queue: None,
        }
    }

    /// Verification of `shards` (path, manifest entry), indexed as given; each is
    /// hashed once [`Checksums::request`] names it.
    pub fn start(shards: Vec<(PathBuf, ShardInfo)>) -> Checksums {
        let requested = shards.iter().map(|_| AtomicBool::new(false)).collect();
        let state = Arc::new(ChecksumState {
            shards,
            requested,
            failure: OnceLock::new(),
            pending: Mutex::new(0),
            hashed: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<usize>();
        let worker = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("asr-shard-sha256".into())
            .spawn(move || {
                lower_thread_priority();
                for index in rx {
                    if worker.failure.get().is_none() {
                        let (path, shard) = &worker.shards[index];
                        if let Some(problem) = checksum_problem(path, shard) {
                            let _ = worker.failure.set(problem);
                        }
                    }
                    worker.finish_one();
                }
            });
        if let Err(e) = spawned {
            let _ = state
                .failure
                .set(format!("cannot start the shard checksum thread: {e}"));
        }
        Checksums {
            state,
            queue: Some(tx),
        }
    }

    /// Queue shard `index` for hashing unless it already was (cheap: one atomic swap).
    pub fn request(&self, index: usize) {
        let Some(queue) = &self.queue else {
            return;
        };
        let Some(flag) = self.state.requested.get(index) else {
            return;
        };
        if flag.swap(true, Ordering::Relaxed) {
            return;
        }
        *self.state.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if queue.send(index).is_err() {
            self.state.finish_one();
        }
    }

    /// The mismatch found so far, if any.
    pub fn failure(&self) -> Option<&str> {
        self.state.failure.get().map(String::as_str)
    }

    /// Block until every shard requested so far is hashed; the first mismatch as an
    /// error.
    pub fn wait(&self) -> Result<(), DataError> {
        let mut pending = self.state.pending.lock().unwrap_or_else(|e| e.into_inner());
        while *pending > 0 && self.failure().is_none() {
            pending = self
                .state
                .hashed
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        match self.failure() {
            Some(problem) => Err(DataError(problem.to_string())),
            None => Ok(()),
        }
    }
}

/// What is wrong with a shard's bytes, naming the file; `None` when its sha256 is the
/// manifest's.
fn checksum_problem(path: &Path, shard: &ShardInfo) -> Option<String> {
    let hint = "the file is damaged or was replaced: check the pack with `asr-data inspect` \
                and re-pack it (or pass --no-verify-shards to use it anyway)";
    match asr_shards::sha256_file(path) {
        Ok(sha) if sha == shard.sha256 => None,
        Ok(sha) => Some(format!(
            "{}: sha256 {sha} differs from the manifest's {}; {hint}",
            path.display(),
            shard.sha256
        )),
        Err(e) => Some(format!("{e}; {hint}")),
    }
}

/// Hashing competes with training for the cores: run it at the lowest priority.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no arguments; setpriority on this thread's id only
        // changes its scheduling niceness (failure leaves it as it was).
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}

/// Open a shard folder (its `manifest.json`) as training data, with the checksums
/// verified in the background ([`open_shards_with`]).
pub fn open_shards(dir: &Path) -> Result<TrainData, ShardError> {
    open_shards_with(dir, ChecksumMode::Background).map(|(data, _)| data)
}

/// Open a shard folder as training data: the manifest's vocabulary and one source per
/// split, each shard checked against the manifest (see the module docs). The returned
/// [`Checksums`] reports the background sha256 verification.
pub fn open_shards_with(
    dir: &Path,
    mode: ChecksumMode,
) -> Result<(TrainData, Checksums), ShardError> {
    let manifest = Manifest::load(dir)?;
    let vocab = manifest.vocab()?;
    let mut all_shards = Vec::new();
    for split in manifest.splits() {
        let info = manifest.split(split).map(|s| s.shards.as_slice());
        for (path, shard) in manifest
            .shard_paths(split)
            .into_iter()
            .zip(info.unwrap_or(&[]))
        {
            all_shards.push((path, shard.clone()));
        }
    }
    let checksums = match mode {
        ChecksumMode::Background => Checksums::start(all_shards),
        ChecksumMode::Off => Checksums::off(),
    };
    let mut splits: BTreeMap<String, Arc<dyn UtteranceSource>> = BTreeMap::new();
    let mut roles = BTreeMap::new();
    let mut first_shard = 0;
    for split in manifest.splits() {
        let info = manifest.split(split);
        let expected = Expected {
            shards: info.map(|s| s.shards.as_slice()).unwrap_or(&[]),
            dtype: Some(manifest.audio_dtype),
            vocab: &vocab,
            first_shard,
        };
        first_shard += expected.shards.len();
        let source = ShardSource::open_checked(
            &manifest.shard_paths(split),
            Some(&expected),
            &vocab,
            checksums.clone(),
        )?;
        splits.insert(split.to_string(), Arc::new(source));
        if let Some(role) = info.and_then(|info| info.role.clone()) {
            roles.insert(split.to_string(), role);
        }
    }
    let data = TrainData {
        vocab,
        splits,
        roles,
        origin: format!("the shards in {}", dir.display()),
    };
    Ok((data, checksums))
}
