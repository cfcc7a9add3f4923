//! The data pipeline: length-bucketed batches capped by padded audio seconds, shuffled
//! per epoch with the seed, normalized as transformers' feature extractor does, padded,
//! and prepared ahead by a background thread.
//!
//! - **Batches** ([`plan_epoch`]): utterances are sorted by length with a small random
//!   jitter drawn per epoch (so batches change between epochs but stay
//!   length-homogeneous), cut greedily into batches whose padded audio (utterances x
//!   longest, in seconds) stays within `batch_seconds`, and the batch order is shuffled.
//!   An utterance longer than the cap gets a batch of its own. The plan is a pure
//!   function of (seed, epoch), so a checkpoint stores only the epoch and the index of
//!   the next batch ([`DataPosition`]).
//! - **Ranks**: with `world_size` processes, rank r takes batches r, r + W, r + 2W...
//!   of the same plan (the remainder that would leave ranks unequal is dropped), as
//!   data-parallel training needs.
//! - **Normalization** (`do_normalize` of `Wav2Vec2FeatureExtractor`): each utterance
//!   becomes zero-mean unit-variance over its own samples, `(x - mean) / sqrt(var +
//!   1e-7)`; padding is 0.
//! - **Prefetch** ([`Loader`]): a thread reads, normalizes and pads the next batches
//!   into a bounded queue while the model computes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Sample rate of shard audio.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// Label value of padding, ignored by the CTC loss (transformers' -100).
pub const PAD_LABEL: i64 = -100;

/// What the batch planner knows of an utterance without reading its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtteranceInfo {
    /// Utterance id.
    pub id: String,
    /// Samples at 16 kHz.
    pub num_samples: u64,
}

/// An utterance as the trainer uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// Utterance id.
    pub id: String,
    /// 16 kHz mono samples in [-1, 1].
    pub audio: Vec<f32>,
    /// CTC label ids.
    pub labels: Vec<i32>,
    /// The normalized transcript (the reference for WER).
    pub text: String,
}

/// Reading an utterance failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

/// Random access to the utterances of one split.
pub trait UtteranceSource: Send + Sync {
    /// Every utterance's id and length, in a stable order.
    fn index(&self) -> &[UtteranceInfo];
    /// Read utterance `i` of [`UtteranceSource::index`].
    fn load(&self, i: usize) -> Result<Utterance, DataError>;
    /// Every utterance's transcript, in index order (by default through
    /// [`UtteranceSource::load`]; shards read the text column alone).
    fn texts(&self) -> Result<Vec<String>, DataError> {
        (0..self.index().len())
            .map(|i| self.load(i).map(|u| u.text))
            .collect()
    }
}

/// Utterances held in memory (tests, `transcribe`).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    infos: Vec<UtteranceInfo>,
    utterances: Vec<Utterance>,
}

impl MemorySource {
    /// A source over these utterances.
    pub fn new(utterances: Vec<Utterance>) -> Self {
        let infos = utterances
            .iter()
            .map(|u| UtteranceInfo {
                id: u.id.clone(),
                num_samples: u.audio.len() as u64,
            })
            .collect();
        MemorySource { infos, utterances }
    }
}

impl UtteranceSource for MemorySource {
    fn index(&self) -> &[UtteranceInfo] {
        &self.infos
    }

    fn load(&self, i: usize) -> Result<Utterance, DataError> {
        self.utterances
            .get(i)
            .cloned()
            .ok_or_else(|| DataError(format!("no utterance {i}")))
    }
}

/// Several sources read as one, in order (e.g. `train-clean-100` + `train-clean-360`
/// when a run trains on every split whose role is train).
pub struct ConcatSource {
    parts: Vec<Arc<dyn UtteranceSource>>,
    infos: Vec<UtteranceInfo>,
    /// (part, index in the part) of each entry of `infos`.
    locations: Vec<(usize, usize)>,
}

impl ConcatSource {
    /// The sources one after the other.
    pub fn new(parts: Vec<Arc<dyn UtteranceSource>>) -> Self {
        let mut infos = Vec::new();
        let mut locations = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            for (i, info) in part.index().iter().enumerate() {
                infos.push(info.clone());
                locations.push((p, i));
            }
        }
        ConcatSource {
            parts,
            infos,
            locations,
        }
    }
}

impl UtteranceSource for ConcatSource {
    fn index(&self) -> &[UtteranceInfo] {
        &self.infos
    }

    fn load(&self, i: usize) -> Result<Utterance, DataError> {
        let &(part, local) = self
            .locations
            .get(i)
            .ok_or_else(|| DataError(format!("no utterance {i}")))?;
        self.parts[part].load(local)
    }
    fn texts(&self) -> Result<Vec<String>, DataError> {
        let mut texts = Vec::with_capacity(self.infos.len());
        for part in &self.parts {
            texts.extend(part.texts()?);
        }
        Ok(texts)
    }
}

/// How batches are cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    /// Cap of utterances x longest utterance, in seconds.
    pub batch_seconds: f64,
    /// Cap of utterances per batch.
    pub max_utterances: Option<usize>,
    /// Shuffle (training) or keep length order (evaluation).
    pub shuffle: bool,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// This process's rank.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Normalize each clip to zero mean and unit variance (wav2vec2's feature
    /// extractor); `false` keeps the samples as read (Whisper computes log-mel features
    /// from the raw samples).
    pub normalize: bool,
}

/// Where the loader is: the epoch and the index of the next batch of that epoch's plan
/// (after the rank slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataPosition {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Next batch of the epoch (0-based).
    pub batch: usize,
}

/// Relative jitter of lengths when sorting a training epoch (10 %).
const LENGTH_JITTER: f64 = 0.1;

fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    // Distinct, well-mixed streams per (seed, epoch).
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch.wrapping_add(1));
    rng
}

/// The batches of one epoch for this rank: lists of positions into `lengths`
/// (samples per utterance); see the module documentation.
pub fn plan_epoch(lengths: &[u64], batching: &Batching, epoch: u64) -> Vec<Vec<usize>> {
    let cap_samples = batching.batch_seconds * f64::from(SAMPLE_RATE_HZ);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let mut rng = epoch_rng(batching.seed, epoch);
    if batching.shuffle {
        let keys: Vec<f64> = lengths
            .iter()
            .map(|&n| n as f64 * (1.0 + LENGTH_JITTER * rng.gen::<f64>()))
            .collect();
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
    } else {
        order.sort_by_key(|&i| (lengths[i], i));
    }
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0u64;
    for i in order {
        let new_longest = longest.max(lengths[i]);
        let padded = new_longest as f64 * (current.len() + 1) as f64;
        let full = batching
            .max_utterances
            .is_some_and(|m| current.len() >= m.max(1));
        if !current.is_empty() && (padded > cap_samples || full) {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(lengths[i]);
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    if batching.shuffle {
        batches.shuffle(&mut rng);
    }
    let world = batching.world_size.max(1);
    if world > 1 {
        let per_rank = batches.len() / world;
        batches = batches
            .into_iter()
            .skip(batching.rank)
            .step_by(world)
            .take(per_rank)
            .collect();
    }
    batches
}

/// Normalize `audio` to zero mean and unit variance into `out` (same length), as
/// `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm` does (mean and variance in f64).
///
/// The sums run over [`LANES`] independent f64 accumulators, which the compiler turns
/// into vector adds; one running sum would make every add wait for the one before it
/// (2.5x slower on this machine, and normalization is most of the loader's time).
pub fn normalize_into(audio: &[f32], out: &mut [f32]) {
    debug_assert_eq!(audio.len(), out.len());
    if audio.is_empty() {
        return;
    }
    let n = audio.len() as f64;
    let mean = lane_sum(audio, f64::from) / n;
    let var = lane_sum(audio, |x| {
        let d = f64::from(x) - mean;
        d * d
    }) / n;
    let inv = 1.0 / (var + 1e-7).sqrt();
    for (o, &x) in out.iter_mut().zip(audio) {
        *o = ((f64::from(x) - mean) * inv) as f32;
    }
}

/// Independent accumulators of [`lane_sum`].
const LANES: usize = 8;

/// The sum of `f` over `values`, accumulated in [`LANES`] lanes.
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f(x);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// A padded batch ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Utterance ids, in batch order.
    pub ids: Vec<String>,
    /// Reference transcripts.
    pub texts: Vec<String>,
    /// Normalized audio, `[batch, max_samples]` row-major, zero-padded.
    pub input_values: Vec<f32>,
    /// Samples of each utterance.
    pub lengths: Vec<i64>,
    /// Longest utterance (the padded width).
    pub max_samples: usize,
    /// Labels `[batch, max_labels]` row-major, padded with [`PAD_LABEL`].
    pub labels: Vec<i64>,
    /// Longest label sequence.
    pub max_labels: usize,
    /// Audio seconds in the batch (unpadded).
    pub audio_s: f64,
    /// Position of this batch.
    pub position: DataPosition,
    /// Batches in this epoch (for this rank).
    pub batches_in_epoch: usize,
    /// Labels of each utterance (kept for the CTC feasibility check).
    pub label_ids: Vec<Vec<i32>>,
}

impl Batch {
    /// Number of utterances.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The batch without the utterances `keep` rejects, re-padded to the longest one
    /// left (each row's normalization is its own, so the rows left are unchanged);
    /// `None` when no utterance is left.
    pub fn retain(self, keep: impl Fn(&str) -> bool) -> Option<Batch> {
        let rows: Vec<usize> = (0..self.len()).filter(|&r| keep(&self.ids[r])).collect();
        if rows.len() == self.len() {
            return Some(self);
        }
        if rows.is_empty() {
            return None;
        }
        let max_samples = rows
            .iter()
            .map(|&r| self.lengths[r] as usize)
            .max()
            .unwrap_or(0);
        let max_labels = rows
            .iter()
            .map(|&r| self.label_ids[r].len())
            .max()
            .unwrap_or(0);
        let mut input_values = vec![0f32; rows.len() * max_samples];
        let mut labels = vec![PAD_LABEL; rows.len() * max_labels];
        for (new, &r) in rows.iter().enumerate() {
            let n = self.lengths[r] as usize;
            let from = r * self.max_samples;
            input_values[new * max_samples..new * max_samples + n]
                .copy_from_slice(&self.input_values[from..from + n]);
            let m = self.label_ids[r].len();
            let from = r * self.max_labels;
            labels[new * max_labels..new * max_labels + m]
                .copy_from_slice(&self.labels[from..from + m]);
        }
        let pick = |values: &[String]| rows.iter().map(|&r| values[r].clone()).collect();
        let total: i64 = rows.iter().map(|&r| self.lengths[r]).sum();
        Some(Batch {
            ids: pick(&self.ids),
            texts: pick(&self.texts),
            lengths: rows.iter().map(|&r| self.lengths[r]).collect(),
            max_samples,
            input_values,
            labels,
            max_labels,
            audio_s: total as f64 / f64::from(SAMPLE_RATE_HZ),
            position: self.position,
            batches_in_epoch: self.batches_in_epoch,
            label_ids: rows.iter().map(|&r| self.label_ids[r].clone()).collect(),
        })
    }

    /// Read, normalize (when `normalize`) and pad the utterances `members` of `source`.
    pub fn assemble(
        source: &dyn UtteranceSource,
        members: &[usize],
        position: DataPosition,
        batches_in_epoch: usize,
        normalize: bool,
    ) -> Result<Batch, DataError> {
        let utterances = members
            .iter()
            .map(|&i| source.load(i))
            .collect::<Result<Vec<_>, _>>()?;
        let b = utterances.len();
        let max_samples = utterances.iter().map(|u| u.audio.len()).max().unwrap_or(0);
        let max_labels = utterances.iter().map(|u| u.labels.len()).max().unwrap_or(0);
        let mut input_values = vec![0f32; b * max_samples];
        let mut labels = vec![PAD_LABEL; b * max_labels];
        for (row, u) in utterances.iter().enumerate() {
            let start = row * max_samples;
            let samples = &mut input_values[start..start + u.audio.len()];
            if normalize {
                normalize_into(&u.audio, samples);
            } else {
                samples.copy_from_slice(&u.audio);
            }
            for (j, &l) in u.labels.iter().enumerate() {
                labels[row * max_labels + j] = i64::from(l);
            }
        }
        let total: usize = utterances.iter().map(|u| u.audio.len()).sum();
        Ok(Batch {
            ids: utterances.iter().map(|u| u.id.clone()).collect(),
            texts: utterances.iter().map(|u| u.text.clone()).collect(),
            lengths: utterances.iter().map(|u| u.audio.len() as i64).collect(),
            max_samples,
            input_values,
            labels,
            max_labels,
            audio_s: total as f64 / f64::from(SAMPLE_RATE_HZ),
            position,
            batches_in_epoch,
            label_ids: utterances.into_iter().map(|u| u.labels).collect(),
        })
    }
}

/// A training stream: the included utterances of a source, planned epoch after epoch
/// from a position, prepared by a background thread.
pub struct Loader {
    rx: Receiver<Result<Batch, DataError>>,
    handle: Option<JoinHandle<()>>,
    waited: Duration,
}

impl Loader {
    /// Start preparing batches of `included` (positions in `source.index()`) from
    /// `start`, keeping up to `prefetch` batches ready. The stream never ends by itself
    /// (epoch follows epoch); drop the loader to stop the thread.
    pub fn start(
        source: Arc<dyn UtteranceSource>,
        included: Vec<usize>,
        batching: Batching,
        start: DataPosition,
        prefetch: usize,
    ) -> Loader {
        let (tx, rx) = bounded(prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("asr-train-loader".into())
            .spawn(move || {
                let lengths: Vec<u64> = included
                    .iter()
                    .map(|&i| source.index()[i].num_samples)
                    .collect();
                let mut position = start;
                loop {
                    let plan = plan_epoch(&lengths, &batching, position.epoch);
                    if plan.is_empty() {
                        let _ = tx.send(Err(DataError(
                            "no batch to train on: the training split is empty after filtering \
                             (or has fewer batches than data-parallel ranks)"
                                .into(),
                        )));
                        return;
                    }
                    for (b, members) in plan.iter().enumerate().skip(position.batch) {
                        let members: Vec<usize> = members.iter().map(|&m| included[m]).collect();
                        let batch = Batch::assemble(
                            source.as_ref(),
                            &members,
                            DataPosition {
                                epoch: position.epoch,
                                batch: b,
                            },
                            plan.len(),
                            batching.normalize,
                        );
                        let failed = batch.is_err();
                        if tx.send(batch).is_err() || failed {
                            return;
                        }
                    }
                    position = DataPosition {
                        epoch: position.epoch + 1,
                        batch: 0,
                    };
                }
            })
            .expect("spawning the loader thread");
        Loader {
            rx,
            handle: Some(handle),
            waited: Duration::ZERO,
        }
    }

    /// The next batch, blocking until it is ready; the time blocked is added to
    /// [`Loader::take_wait`].
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        let started = Instant::now();
        let batch = match self.rx.try_recv() {
            Ok(b) => b,
            Err(_) => self
                .rx
                .recv()
                .map_err(|_| DataError("the data loader thread stopped".into()))?,
        };
        self.waited += started.elapsed();
        batch
    }

    /// Time spent waiting for batches since the last call.
    pub fn take_wait(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail; drain so that a
        // thread blocked on a full queue wakes up.
        while self.rx.try_recv().is_ok() {}
        let rx = std::mem::replace(&mut self.rx, crossbeam_channel::never());
        drop(rx);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batching(seconds: f64) -> Batching {
        Batching {
            batch_seconds: seconds,
            max_utterances: None,
            shuffle: true,
            seed: 7,
            rank: 0,
            world_size: 1,
            normalize: true,
        }
    }

    fn lengths() -> Vec<u64> {
        // 40 utterances of 1..5 s.
        (0..40u64).map(|i| 16_000 + (i * 7919 % 64_000)).collect()
    }

    #[test]
    fn batches_cover_every_utterance_once_within_the_cap() {
        let lengths = lengths();
        let plan = plan_epoch(&lengths, &batching(12.0), 0);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        for batch in &plan {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(longest * batch.len() as u64 <= 12 * 16_000, "{batch:?}");
        }
    }

    #[test]
    fn batches_are_length_homogeneous_and_vary_between_epochs() {
        let lengths = lengths();
        let b = batching(12.0);
        let a = plan_epoch(&lengths, &b, 0);
        assert_eq!(
            a,
            plan_epoch(&lengths, &b, 0),
            "same seed and epoch, same plan"
        );
        assert_ne!(a, plan_epoch(&lengths, &b, 1));
        // Padding stays small: padded audio is close to real audio.
        let real: u64 = lengths.iter().sum();
        let padded: u64 = a
            .iter()
            .map(|batch| batch.iter().map(|&i| lengths[i]).max().unwrap() * batch.len() as u64)
            .sum();
        assert!((padded as f64) < 1.2 * real as f64, "{padded} vs {real}");
    }

    #[test]
    fn long_utterances_get_their_own_batch_and_max_utterances_caps() {
        let lengths = vec![16_000, 160_000, 16_000, 16_000];
        let plan = plan_epoch(
            &lengths,
            &Batching {
                shuffle: false,
                max_utterances: Some(2),
                ..batching(5.0)
            },
            0,
        );
        assert_eq!(plan, vec![vec![0, 2], vec![3], vec![1]]);
    }

    #[test]
    fn ranks_take_disjoint_equal_slices() {
        let lengths = lengths();
        let all = plan_epoch(&lengths, &batching(6.0), 3);
        let parts: Vec<Vec<Vec<usize>>> = (0..3)
            .map(|rank| {
                plan_epoch(
                    &lengths,
                    &Batching {
                        rank,
                        world_size: 3,
                        normalize: true,
                        ..batching(6.0)
                    },
                    3,
                )
            })
            .collect();
        assert!(parts.iter().all(|p| p.len() == all.len() / 3));
        for (rank, part) in parts.iter().enumerate() {
            for (k, batch) in part.iter().enumerate() {
                assert_eq!(batch, &all[rank + 3 * k]);
            }
        }
    }

    #[test]
    fn normalization_matches_the_feature_extractor() {
        let audio: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.01).sin() * 0.3 + 0.1)
            .collect();
        let mut out = vec![0.0; audio.len()];
        normalize_into(&audio, &mut out);
        let n = out.len() as f64;
        let mean = out.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = out
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
        // Silence stays finite (the 1e-7 in the denominator).
        let mut silent = vec![1.0; 4];
        normalize_into(&[0.0; 4], &mut silent);
        assert_eq!(silent, vec![0.0; 4]);
    }

    #[test]
    fn lane_sums_normalize_as_one_running_sum_does() {
        // The feature extractor's formula with one running f64 sum, on lengths that
        // leave 0..7 samples past the last full lane.
        fn reference(audio: &[f32]) -> Vec<f32> {
            let n = audio.len() as f64;
            let mean = audio.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = audio
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + 1e-7).sqrt();
            audio
                .iter()
                .map(|&x| ((f64::from(x) - mean) * inv) as f32)
                .collect()
        }
        for len in [1, 7, 8, 9, 16_003, 160_000, 240_005] {
            let audio: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.013).sin() * 0.4 + 0.05 * ((i % 97) as f32 / 97.0))
                .collect();
            let mut out = vec![0.0; len];
            normalize_into(&audio, &mut out);
            for (i, (a, b)) in out.iter().zip(reference(&audio)).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "len {len} [{i}]: {a} {b}"
                );
            }
        }
    }

    fn utterance(id: &str, samples: usize, labels: &[i32]) -> Utterance {
        Utterance {
            id: id.into(),
            audio: (0..samples).map(|i| (i as f32 * 0.1).sin()).collect(),
            labels: labels.to_vec(),
            text: id.into(),
        }
    }

    #[test]
    fn batches_are_padded_and_the_loader_resumes_at_a_position() {
        let source: Arc<dyn UtteranceSource> = Arc::new(MemorySource::new(vec![
            utterance("a", 800, &[3, 4]),
            utterance("b", 1200, &[5]),
            utterance("c", 400, &[6, 7, 8]),
        ]));
        let b = Batching {
            shuffle: false,
            ..batching(1.0)
        };
        let batch =
            Batch::assemble(source.as_ref(), &[0, 1], DataPosition::default(), 1, true).unwrap();
        assert_eq!(batch.max_samples, 1200);
        assert_eq!(batch.lengths, vec![800, 1200]);
        assert!(batch.input_values[800..1200].iter().all(|&x| x == 0.0));
        assert_eq!(batch.labels, vec![3, 4, 5, PAD_LABEL]);
        assert!((batch.audio_s - 2000.0 / 16_000.0).abs() < 1e-12);

        // Leaving out the longest utterance re-pads to the longest one left; the rows
        // left equal a batch assembled without it.
        let without_b = batch.clone().retain(|id| id != "b").unwrap();
        assert_eq!(
            without_b,
            Batch::assemble(source.as_ref(), &[0], DataPosition::default(), 1, true).unwrap()
        );
        assert!(batch.clone().retain(|_| false).is_none());
        assert_eq!(batch.clone().retain(|_| true).unwrap(), batch);

        let mut loader =
            Loader::start(source.clone(), vec![0, 1, 2], b, DataPosition::default(), 2);
        let first: Vec<Batch> = (0..4).map(|_| loader.next_batch().unwrap()).collect();
        assert_eq!(first[0].ids, vec!["c", "a", "b"]);
        assert_eq!(first[1].position, DataPosition { epoch: 1, batch: 0 });
        drop(loader);
        let mut resumed = Loader::start(
            source,
            vec![0, 1, 2],
            b,
            DataPosition { epoch: 2, batch: 0 },
            2,
        );
        assert_eq!(resumed.next_batch().unwrap(), first[2]);
    }
}
