//! Data parallelism for the training loop: one process per rank, on PyTorch's c10d
//! through [`asr_dist`]. One process is the world-size-1 case of the same code: every
//! exchange below returns at once there.
//!
//! - **Rendezvous**: rank and world size come from torchrun's `env://` variables or
//!   Slurm's ([`asr_dist::Rendezvous::from_env`]); `asr-train run --nproc-per-node N`
//!   starts N local workers that get them. `--dist-timeout` bounds the rendezvous and
//!   every collective.
//! - **Data**: every rank plans the same epoch (same seed). With W ranks and `grad_accum`
//!   A, global step k is the plan's batches `k·A·W .. (k+1)·A·W` (counted within the
//!   epoch, continuing into the next as one process does): rank r's micro-batch m is
//!   batch `(k·A + m)·W + r`, i.e. rank r takes batches r, r + W, r + 2W... of the plan
//!   ([`crate::data::plan_epoch`]). The last `batches % W` batches of each epoch are left
//!   out (every rank must do the same number of steps); no batch is seen twice in an
//!   epoch. `--batch-seconds` is per rank: the global batch is W × A × one rank's batch.
//!   A micro-batch is seeded (dropout, SpecAugment) by its place in the global step,
//!   `m·W + r`, so W ranks draw what one process with `grad_accum` A·W draws.
//! - **Devices**: on the CPU every exchange goes through Gloo. On CUDA, rank r trains on
//!   cuda:LOCAL_RANK and the gradient all-reduce goes through NCCL
//!   ([`Distributed::use_device`]); the small CPU exchanges below stay on Gloo.
//! - **Gradients**: each rank's micro-batch losses are scaled by 1/A (as one process
//!   does), and the flat gradient buffer is averaged over the ranks (one all-reduce):
//!   the gradient is the mean over the A·W micro-batches, exactly as one process with
//!   `grad_accum` A·W computes it.
//! - **Decisions**: after the micro-batches the ranks exchange what their step did
//!   ([`StepAccumulator`]: losses, utterances, masked rows and their events, culprit ids,
//!   a stop request); every rank merges the same list, so the guard's state, the
//!   quarantine, the step's loss and the stop decision are the same everywhere. The
//!   gradient norm, non-finite and explosion checks run on the averaged gradients, hence
//!   on identical values.
//! - **Outputs**: only rank 0 writes (metrics.jsonl, checkpoints, best/, plots,
//!   quarantine.txt, final results); step records add `comm_s`. Checkpoints record the
//!   world size; `--resume` with another one is refused (the data position is per rank).
//! - **Preemption**: SIGTERM or SIGUSR1 (Slurm's `--signal=USR1@120`) on any rank asks
//!   for a stop; the request travels with the step's exchange, so every rank stops after
//!   the same step, rank 0 saves a checkpoint there, and every rank exits 0. `--resume`
//!   continues. One process does the same.
//! - **Faults**: a collective that fails (a peer died, or hung past `--dist-timeout`)
//!   ends the job with an error naming the step and the missing ranks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asr_dist::{Backend, DistError, ProcessGroup, Rendezvous};
use asr_text::ErrorRates;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::TrainConfig;
use crate::data::{DataError, Utterance, UtteranceInfo, UtteranceSource};
use crate::eval::{EvalOutput, Prediction};
use crate::guard::ExplosionGuard;
use crate::metrics::EventRecord;
use crate::optim::AdamW;
use crate::trainer::TrainError;

/// What the micro-batches of one optimizer step add up to: this rank's, then (after
/// [`Distributed::share_step`]) every rank's.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct StepAccumulator {
    pub events: Vec<EventRecord>,
    pub losses_sum: f64,
    pub backward_batches: u32,
    pub utterances: u64,
    pub audio_s: f64,
    /// Ids of the utterances whose loss went backward.
    pub ids: Vec<String>,
    /// Utterance losses masked out as non-finite (or infeasible) in this step.
    pub nonfinite_rows: u64,
    /// Utterance losses masked out as above `max_loss` in this step.
    pub high_rows: u64,
    /// This rank asks the job to stop after this step (SIGTERM, SIGUSR1).
    pub stop: bool,
    /// This rank's clock passed `max_minutes` (the ranks' clocks differ a little: the
    /// first to pass it stops them all after the same step).
    pub out_of_time: bool,
}

/// This process's place in the job and its process group.
pub(crate) struct Distributed {
    group: ProcessGroup,
    timeout: Duration,
    /// This rank's place on its machine: its GPU is cuda:LOCAL_RANK.
    local_rank: usize,
}

/// Joins the job the launcher describes (world size 1 when none did): `config` with
/// its rank and world size set from the launcher, and the process group.
pub(crate) fn join(config: &TrainConfig) -> Result<(TrainConfig, Distributed), TrainError> {
    let rdzv = Rendezvous::from_env().map_err(|e| TrainError::Config(e.to_string()))?;
    let mut config = config.clone();
    if config.world_size != 1 && config.world_size != rdzv.world_size {
        return Err(TrainError::Config(format!(
            "--world-size {} but the launcher started {} process(es): start the ranks with \
             asr-train run --nproc-per-node N, torchrun --no-python or srun, which set RANK and \
             WORLD_SIZE (or MASTER_ADDR/MASTER_PORT) for each",
            config.world_size, rdzv.world_size
        )));
    }
    config.rank = rdzv.rank;
    config.world_size = rdzv.world_size;
    let timeout = Duration::from_secs_f64(config.dist_timeout_s);
    let group = if rdzv.world_size > 1 {
        ProcessGroup::new(&rdzv, Backend::Gloo, timeout)
            .map_err(|e| TrainError::Distributed(e.to_string()))?
    } else {
        ProcessGroup::single()
    };
    Ok((
        config,
        Distributed {
            group,
            timeout,
            local_rank: rdzv.local_rank,
        },
    ))
}

impl Distributed {
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// True on rank 0, the rank that writes the run's outputs.
    pub fn is_main(&self) -> bool {
        self.group.is_main()
    }

    /// The place of this rank's micro-batch `micro` in the global step (its seed).
    pub fn micro_index(&self, micro: u32) -> u32 {
        micro_index(micro, self.rank(), self.world_size())
    }

    /// Exchanges the step's accumulators and returns every rank's merged (the same on
    /// every rank); the peers' masked rows are counted into `guard` so that its state
    /// stays the same on every rank.
    pub fn share_step(
        &self,
        local: StepAccumulator,
        guard: &mut ExplosionGuard,
        step: u64,
    ) -> Result<StepAccumulator, TrainError> {
        if self.world_size() == 1 {
            return Ok(local);
        }
        let bytes = serde_json::to_vec(&local)
            .map_err(|e| TrainError::Distributed(format!("step {step}: {e}")))?;
        let gathered = self
            .group
            .all_gather_i64(&pack(&bytes))
            .map_err(|e| self.failure(e, step))?;
        let mut merged = StepAccumulator::default();
        for (rank, words) in gathered.iter().enumerate() {
            let share: StepAccumulator = serde_json::from_slice(&unpack(words)).map_err(|e| {
                TrainError::Distributed(format!("step {step}: rank {rank}'s step record: {e}"))
            })?;
            if rank != self.rank() {
                guard.absorb_peer_loss_checks(share.nonfinite_rows, share.high_rows);
            }
            merged.events.extend(share.events);
            merged.losses_sum += share.losses_sum;
            merged.backward_batches += share.backward_batches;
            merged.utterances += share.utterances;
            merged.audio_s += share.audio_s;
            merged.ids.extend(share.ids);
            merged.nonfinite_rows += share.nonfinite_rows;
            merged.high_rows += share.high_rows;
            merged.stop |= share.stop;
            merged.out_of_time |= share.out_of_time;
        }
        Ok(merged)
    }

    /// Averages the gradients over the ranks, in place on the optimizer's flat buffer.
    pub fn average_gradients(&self, optimizer: &mut AdamW, step: u64) -> Result<(), TrainError> {
        if self.world_size() == 1 {
            return Ok(());
        }
        self.group
            .all_reduce_mean(optimizer.flat_grad_mut())
            .map_err(|e| self.failure(e, step))
    }

    /// Waits until every rank is here (after rank 0 wrote something the others read).
    pub fn barrier(&self, step: u64) -> Result<(), TrainError> {
        self.group.barrier().map_err(|e| self.failure(e, step))
    }

    /// Seconds spent in collectives since the last call; `None` with one process.
    pub fn take_comm_s(&self) -> Option<f64> {
        let spent = self.group.take_comm_time();
        (self.world_size() > 1).then_some(spent.as_secs_f64())
    }

    /// Fails unless every rank holds the same weights (sum and sum of squares of each
    /// tensor, compared exactly): data parallelism keeps them bit-identical.
    pub fn check_same_weights(&self, params: &[&Tensor], step: u64) -> Result<(), TrainError> {
        if self.world_size() == 1 {
            return Ok(());
        }
        let sums: Vec<f64> = tch::no_grad(|| {
            params
                .iter()
                .flat_map(|p| {
                    let p = p.to_kind(Kind::Double);
                    [p.sum(Kind::Double), p.square().sum(Kind::Double)]
                })
                .map(|t| t.double_value(&[]))
                .collect()
        });
        let gathered = self
            .group
            .all_gather(&Tensor::from_slice(&sums))
            .map_err(|e| self.failure(e, step))?;
        let mine = &gathered[self.rank()];
        for (rank, theirs) in gathered.iter().enumerate() {
            if !theirs.equal(mine) {
                return Err(TrainError::Distributed(format!(
                    "after step {step} the weights of rank {rank} differ from rank {}'s: the \
                     ranks diverged (a bug: please report it with the run's config.json)",
                    self.rank()
                )));
            }
        }
        Ok(())
    }

    /// The error of a failed collective at `step`: names the ranks that are gone (asked
    /// through the job's store) and says how to continue.
    fn failure(&self, error: DistError, step: u64) -> TrainError {
        let roll_call = self.timeout.min(Duration::from_secs(10));
        let missing = match self.group.missing_ranks(roll_call) {
            Ok(ranks) if ranks.is_empty() => "every rank still answers".to_string(),
            Ok(ranks) => format!(
                "rank(s) {} did not answer (dead, or hung)",
                ranks
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => format!("the other ranks cannot be asked ({e})"),
        };
        TrainError::Distributed(format!(
            "rank {} of {} stopped at step {step}: {missing}: {error}. The last checkpoint is \
             valid: fix the cause and --resume with the same number of ranks",
            self.rank(),
            self.world_size()
        ))
    }
}

/// Rank r's share of an evaluation: utterances r, r + W, r + 2W... of the first `limit`
/// of the source.
struct ShareOfSource {
    inner: Arc<dyn UtteranceSource>,
    picks: Vec<usize>,
    index: Vec<UtteranceInfo>,
}

impl UtteranceSource for ShareOfSource {
    fn index(&self) -> &[UtteranceInfo] {
        &self.index
    }

    fn load(&self, i: usize) -> Result<Utterance, DataError> {
        self.inner.load(self.picks[i])
    }
}

/// One rank's evaluation, as the ranks exchange it.
#[derive(Serialize, Deserialize)]
struct EvalShare {
    /// (position in the source, prediction), in source order.
    predictions: Vec<(usize, Prediction)>,
    loss_sum: f64,
    loss_count: usize,
}

impl Distributed {
    /// Evaluation split across the ranks: each decodes its share of the first `limit`
    /// utterances of `source` with `evaluate`, and every rank gets the whole: the
    /// predictions in source order, WER/CER from their summed edit counts, the loss from
    /// the summed losses. Equal to one rank's evaluation (the loss up to rounding).
    pub fn evaluate(
        &self,
        step: u64,
        source: Arc<dyn UtteranceSource>,
        limit: Option<usize>,
        evaluate: impl FnOnce(Arc<dyn UtteranceSource>, Option<usize>) -> Result<EvalOutput, DataError>,
    ) -> Result<EvalOutput, TrainError> {
        let world = self.world_size();
        if world == 1 {
            return Ok(evaluate(source, limit)?);
        }
        let started = std::time::Instant::now();
        let count = limit.map_or(source.index().len(), |l| l.min(source.index().len()));
        let share = share_of(source, count, self.rank(), world);
        let picks = share.picks.clone();
        let output = evaluate(Arc::new(share), None)?;
        let mine = EvalShare {
            predictions: picks.into_iter().zip(output.predictions).collect(),
            loss_sum: output.loss_sum,
            loss_count: output.loss_count,
        };
        let bytes = serde_json::to_vec(&mine)
            .map_err(|e| TrainError::Distributed(format!("step {step}: {e}")))?;
        let gathered = self
            .group
            .all_gather_i64(&pack(&bytes))
            .map_err(|e| self.failure(e, step))?;
        let mut predictions = Vec::with_capacity(count);
        let (mut loss_sum, mut loss_count) = (0.0, 0);
        for (rank, words) in gathered.iter().enumerate() {
            let share: EvalShare = serde_json::from_slice(&unpack(words)).map_err(|e| {
                TrainError::Distributed(format!("step {step}: rank {rank}'s evaluation: {e}"))
            })?;
            predictions.extend(share.predictions);
            loss_sum += share.loss_sum;
            loss_count += share.loss_count;
        }
        predictions.sort_by_key(|(i, _)| *i);
        let predictions: Vec<Prediction> = predictions.into_iter().map(|(_, p)| p).collect();
        let mut rates = ErrorRates::default();
        for p in &predictions {
            rates.add(&p.reference, &p.hypothesis);
        }
        let blanks = predictions
            .iter()
            .filter(|p| p.hypothesis.is_empty())
            .count();
        Ok(EvalOutput {
            rates,
            loss: (loss_count > 0).then(|| loss_sum / loss_count as f64),
            loss_sum,
            loss_count,
            blank_fraction: blanks as f64 / predictions.len().max(1) as f64,
            predictions,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

impl Distributed {
    /// How many of `count` utterances this rank decodes in [`Distributed::evaluate`].
    pub fn share_len(&self, count: usize) -> usize {
        (self.rank()..count).step_by(self.world_size()).count()
    }
}

/// Utterances `rank`, `rank + world`... of the first `count` of `source`.
fn share_of(
    source: Arc<dyn UtteranceSource>,
    count: usize,
    rank: usize,
    world: usize,
) -> ShareOfSource {
    let count = count.min(source.index().len());
    let picks: Vec<usize> = (rank..count).step_by(world).collect();
    let index = picks.iter().map(|&i| source.index()[i].clone()).collect();
    ShareOfSource {
        inner: source,
        picks,
        index,
    }
}

/// The stop signal that arrived (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_stop_signal(signal: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
}

/// SIGTERM and SIGUSR1 from now on ask for a checkpoint and a clean exit at the next step
/// boundary instead of ending the process.
pub(crate) fn catch_stop_signals() {
    for signal in [libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: installs a handler that only does an atomic store.
        unsafe {
            libc::signal(
                signal,
                note_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// The name of the stop signal that arrived, if one did.
pub(crate) fn stop_signal() -> Option<&'static str> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGUSR1 => Some("SIGUSR1"),
        _ => Some("a signal"),
    }
}

/// A rank other than 0: the checkpoints to resume from, newest first (rank 0 checks
/// and prepares the run folder; this one only reads it).
pub(crate) fn peer_checkpoints(config: &TrainConfig) -> Result<Vec<PathBuf>, TrainError> {
    if !config.resume {
        return Ok(Vec::new());
    }
    let checkpoints = crate::checkpoint::list(&config.out)?;
    Ok(checkpoints.into_iter().rev().map(|(_, dir)| dir).collect())
}

impl Distributed {
    /// The device this rank trains on, from the one `--device` selected: one process
    /// keeps it; several ranks on CUDA take one GPU each, cuda:LOCAL_RANK (as torch's
    /// DDP), and attach NCCL there for the gradient all-reduce (CPU exchanges stay on
    /// Gloo). `requested` is the `--device` text.
    pub fn use_device(&mut self, selected: Device, requested: &str) -> Result<Device, TrainError> {
        if self.world_size() == 1 || selected == Device::Cpu {
            return Ok(selected);
        }
        let world = self.world_size();
        if let Ok(asr_model::device::DeviceRequest::Cuda(Some(index))) = requested.parse() {
            return Err(TrainError::Config(format!(
                "--device cuda:{index} with {world} ranks: each rank takes cuda:LOCAL_RANK; \
                 pass --device cuda, and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )));
        }
        let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        if self.local_rank >= count {
            return Err(TrainError::Config(format!(
                "rank {} has LOCAL_RANK {} but this machine shows {count} CUDA device(s): \
                 start at most {count} rank(s) per machine (--nproc-per-node), or check \
                 CUDA_VISIBLE_DEVICES",
                self.rank(),
                self.local_rank
            )));
        }
        self.group
            .attach_nccl(self.local_rank)
            .map_err(|e| TrainError::Distributed(e.to_string()))?;
        Ok(Device::Cuda(self.local_rank))
    }
}

/// Refuses to resume a checkpoint of `saved` ranks (absent: 1) with another number: the
/// data position is each rank's place in its slice of the epoch plan.
pub(crate) fn check_resumed_world_size(
    saved: Option<usize>,
    config: &TrainConfig,
    dir: &Path,
) -> Result<(), TrainError> {
    let saved = saved.unwrap_or(1);
    if saved == config.world_size {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "{} was saved by a run of {saved} rank(s), and this one has {}: the data position \
         cannot be carried over to another number of ranks. Resume with {saved} (asr-train run \
         --nproc-per-node {saved}, torchrun --nproc-per-node {saved}, srun -n {saved}), or start \
         a new run from its weights in another folder (--model {}/best --out NEW)",
        dir.display(),
        config.world_size,
        config.out.display()
    )))
}

/// Rank `rank`'s micro-batch `micro` of a step is the global step's micro-batch
/// `micro·W + rank` (see the module documentation).
fn micro_index(micro: u32, rank: usize, world_size: usize) -> u32 {
    micro * world_size as u32 + rank as u32
}

/// Bytes as little-endian `i64` words, their count first.
fn pack(bytes: &[u8]) -> Vec<i64> {
    let mut words = Vec::with_capacity(1 + bytes.len().div_ceil(8));
    words.push(bytes.len() as i64);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        words.push(i64::from_le_bytes(word));
    }
    words
}

/// The bytes [`pack`] packed.
fn unpack(words: &[i64]) -> Vec<u8> {
    let Some((&len, rest)) = words.split_first() else {
        return Vec::new();
    };
    let mut bytes: Vec<u8> = rest.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.truncate(len.max(0) as usize);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_survive_packing_into_words() {
        for text in ["", "a", "12345678", "123456789", "{\"events\":[]}"] {
            assert_eq!(unpack(&pack(text.as_bytes())), text.as_bytes());
        }
    }

    #[test]
    fn micro_batches_are_numbered_as_one_process_with_more_accumulation() {
        // Two ranks with grad_accum 2 draw the seeds 0..4 of one process with 4, once each.
        let mut seen: Vec<u32> = (0..2)
            .flat_map(|rank| (0..2).map(move |micro| micro_index(micro, rank, 2)))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert_eq!(micro_index(3, 0, 1), 3);
    }
}
