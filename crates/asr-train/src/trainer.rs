//! The training loop of `asr-train run`, for every task ([`crate::task`]: CTC for
//! wav2vec2 / HuBERT, seq2seq for Whisper; the task follows the model).
//!
//! Per optimizer step: for each of `grad_accum` batches, libtorch is seeded from
//! (seed, step, batch) for dropout and LayerDrop and a ChaCha generator from the same
//! for SpecAugment, the batch goes forward (under autocast on CUDA), per-utterance
//! losses are computed, and the explosion guard's nine steps run (see
//! [`crate::guard`]). Every `eval_every` steps the eval split is decoded (CTC: greedy;
//! Whisper: generation); a better headline metric (WER; for Whisper `--metric`, by
//! default CER for scripts written without spaces) saves `best/` (a Hugging Face
//! folder); `patience` evaluations without improvement stop the run. Checkpoints every `save_every` steps allow `--resume`
//! to continue exactly (same batches, same random draws, same guard state).
//!
//! Outputs in the run folder: `config.json` (resolved configuration),
//! `metrics.jsonl`, `training_curves.png`, `checkpoints/`, `best/`,
//! `predictions_<split>.jsonl`, `final_results.json`, `quarantine.txt`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asr_model::precision::Precision;
use asr_model::{CtcModel, ModelSpec};
use asr_text::Vocab;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

use crate::checkpoint::{self, BestEval, TrainState, CHECKPOINT_FORMAT_VERSION};
use crate::config::{PrecisionChoice, TrainConfig};
use crate::data::{plan_epoch, Batch, Batching, DataPosition, Loader, UtteranceSource};
use crate::distributed::{self, Distributed, StepAccumulator};
use crate::eval::{self, FinalResults, SplitResult};
use crate::guard::{ExplosionGuard, GuardEvent, LossEvent, NonFiniteDecision, NormDecision};
use crate::metrics::{
    read_metrics, EvalRecord, EventRecord, MetricsRecord, MetricsWriter, Quarantine, StepRecord,
};
use crate::model_card::{self, CardFacts, CardResult};
use crate::optim::{AdamW, AdamWConfig, LossScaler};
use crate::plot::draw_run_curves;
use crate::task::{Forward, Task};

/// The data a run trains and evaluates on.
pub struct TrainData {
    /// The vocabulary the labels were encoded with.
    pub vocab: Vocab,
    /// Splits by name.
    pub splits: BTreeMap<String, Arc<dyn UtteranceSource>>,
    /// The role (`train`, `dev`, `test`) of each split that has one, as the shard
    /// manifest records it; [`TrainData::select`] resolves a role to its splits.
    pub roles: BTreeMap<String, String>,
    /// Where the data came from (for messages).
    pub origin: String,
}

impl TrainData {
    /// The split names a selector means: the split of that exact name when there is
    /// one, else every split whose role is the selector (`train` selects
    /// `train-clean-100` and `train-clean-360`), in name order. Empty when none.
    pub fn select(&self, selector: &str) -> Vec<String> {
        if self.splits.contains_key(selector) {
            return vec![selector.to_string()];
        }
        self.splits
            .keys()
            .filter(|name| self.roles.get(*name).map(String::as_str) == Some(selector))
            .cloned()
            .collect()
    }

    /// The utterances a selector means, as one source; `None` when it selects nothing.
    pub fn source(&self, selector: &str) -> Option<Arc<dyn UtteranceSource>> {
        let mut sources: Vec<Arc<dyn UtteranceSource>> = self
            .select(selector)
            .iter()
            .filter_map(|name| self.splits.get(name).cloned())
            .collect();
        match sources.len() {
            0 => None,
            1 => sources.pop(),
            _ => Some(Arc::new(crate::data::ConcatSource::new(sources))),
        }
    }

    /// The split names of several selectors, each once, in the order given.
    pub fn select_all(&self, selectors: &[String]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for selector in selectors {
            for name in self.select(selector) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// "train-clean-100 (train), dev-clean (dev), ...": the splits, for messages.
    pub fn describe_splits(&self) -> String {
        self.splits
            .keys()
            .map(|name| match self.roles.get(name) {
                Some(role) if role != name => format!("{name} ({role})"),
                _ => name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A training run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration cannot run.
    #[error("{0}")]
    Config(String),
    /// The shards' vocabulary is not the model's.
    #[error(
        "the vocabulary of {data} differs from the model's ({model}): {diff}\n\
         hint: pack the data with the model's vocab.json (asr-data pack --vocab {model}/vocab.json), \
         or train a new CTC head on the data's vocabulary with --reinit-head"
    )]
    VocabMismatch {
        /// The data's origin.
        data: String,
        /// The model folder.
        model: String,
        /// The differences, naming tokens.
        diff: String,
    },
    /// Reading data failed.
    #[error("data: {0}")]
    Data(#[from] crate::data::DataError),
    /// The model failed.
    #[error("model: {0}")]
    Model(#[from] asr_model::ModelError),
    /// Choosing the device failed.
    #[error("device: {0}")]
    Device(#[from] asr_model::DeviceError),
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A checkpoint could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// metrics.jsonl could not be written.
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The run did not train: (almost) every update was skipped, or every training
    /// utterance was left out. The outputs are written; the message says why.
    #[error("{0}")]
    NoProgress(String),
    /// Data parallelism failed: a rank died or hung, or the ranks diverged.
    #[error("{0}")]
    Distributed(String),
    /// Another output file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Test and benchmark hooks into the loop.
#[derive(Default)]
pub struct Hooks {
    /// Called after each backward pass with the step (1-based) and the model (CTC
    /// runs); tests use it to plant NaN gradients.
    #[allow(clippy::type_complexity)]
    pub after_backward: Option<Box<dyn FnMut(u64, &CtcModel)>>,
    /// Keep the run quiet on stderr (no progress bar, no log lines).
    pub quiet: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run folder.
    pub out: PathBuf,
    /// Optimizer steps done.
    pub steps: u64,
    /// Why the loop ended.
    pub stop_reason: String,
    /// Best eval result.
    pub best: Option<BestEval>,
    /// Final results (also in final_results.json).
    pub results: FinalResults,
    /// Training audio seconds per wall-clock second of step time (this process).
    pub audio_s_per_s: f64,
    /// Fraction of step time spent waiting for batches (this process).
    pub data_wait_fraction: f64,
    /// Optimizer steps per second of step time (this process).
    pub steps_per_s: f64,
    /// Utterances left out of training after repeated bad losses.
    pub left_out: Vec<String>,
}

/// Wall-clock training time: this process's since the loop started, plus what a
/// resumed checkpoint had accumulated.
struct Clock {
    started: Instant,
    before_s: f64,
}

impl Clock {
    fn elapsed_s(&self) -> f64 {
        self.before_s + self.started.elapsed().as_secs_f64()
    }
}

/// A mix of the seed and step for per-step random streams.
fn step_seed(seed: u64, step: u64, micro: u32) -> u64 {
    // SplitMix64 finalizer over the combined value.
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(u64::from(micro).wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn resolve_precision(choice: PrecisionChoice, device: Device) -> Result<Precision, TrainError> {
    Ok(match (choice, device) {
        (PrecisionChoice::Auto, Device::Cuda(_)) => Precision::Bf16,
        (PrecisionChoice::Auto, _) | (PrecisionChoice::F32, _) => Precision::F32,
        (PrecisionChoice::Bf16, _) => Precision::Bf16,
        (PrecisionChoice::Fp16, Device::Cuda(_)) => Precision::F16,
        (PrecisionChoice::Fp16, _) => {
            return Err(TrainError::Config(
                "precision fp16 needs a CUDA device (use f32 or bf16 on the CPU)".into(),
            ))
        }
    })
}

/// Build the model `config.model` names, checked against (or re-headed for) `vocab`.
pub fn build_model(
    config: &TrainConfig,
    vocab: &Vocab,
    data_origin: &str,
    device: Device,
) -> Result<CtcModel, TrainError> {
    tch::manual_seed(config.seed as i64);
    let spec = ModelSpec::parse(&config.model)?;
    let pretrained = matches!(spec, ModelSpec::Pretrained(_));
    let mut model = match spec {
        ModelSpec::Pretrained(dir) => {
            let mut model = CtcModel::from_pretrained(&dir, device)?;
            if config.reinit_head {
                model.reinit_head(vocab);
            } else {
                let model_vocab = asr_model::read_vocab(&dir)?;
                if let Some(diff) = model_vocab.diff(vocab) {
                    return Err(TrainError::VocabMismatch {
                        data: data_origin.to_string(),
                        model: dir.display().to_string(),
                        diff: format!("model vs data: {diff}"),
                    });
                }
                model.check_vocab(vocab)?;
            }
            model
        }
        _ => CtcModel::load(&config.model, Some(vocab), device)?,
    };
    apply_model_settings(&mut model, &config.model_set)?;
    // Frozen by default only when fine-tuning pretrained weights (see TrainConfig).
    if config.freeze_feature_encoder.unwrap_or(pretrained) {
        model.freeze_feature_encoder();
    }
    Ok(model)
}

/// Applies `model_set` (`KEY=VALUE` with the model config's field names, see
/// [`TrainConfig::model_set`]) to a built model.
pub fn apply_model_settings(model: &mut CtcModel, settings: &[String]) -> Result<(), TrainError> {
    if settings.is_empty() {
        return Ok(());
    }
    let mut value: serde_json::Value = serde_json::from_str(&model.config().to_json_string())
        .map_err(|e| TrainError::Config(format!("model config: {e}")))?;
    let Some(fields) = value.as_object_mut() else {
        return Err(TrainError::Config(
            "model config is not a JSON object".into(),
        ));
    };
    for setting in settings {
        let Some((key, raw)) = setting.split_once('=') else {
            return Err(TrainError::Config(format!(
                "model_set \"{setting}\": expected KEY=VALUE, e.g. mask_time_prob=0"
            )));
        };
        let (key, raw) = (key.trim(), raw.trim());
        if !fields.contains_key(key) {
            return Err(TrainError::Config(format!(
                "model_set \"{setting}\": the model config has no field \"{key}\""
            )));
        }
        let parsed = serde_json::from_str(raw)
            .unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
        fields.insert(key.to_string(), parsed);
    }
    let changed = asr_model::Config::from_json_str(&value.to_string(), Path::new("model_set"))?;
    model.update_config(|config| *config = changed)?;
    Ok(())
}

struct Progress {
    bar: Option<ProgressBar>,
    log_every: u64,
    quiet: bool,
}

impl Progress {
    fn new(total: u64, start: u64, log_every: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} step {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(start);
            bar
        });
        Progress {
            bar,
            log_every: log_every.max(1),
            quiet,
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn step(&self, record: &StepRecord, total: u64) {
        let loss = record
            .loss
            .map_or("skipped".to_string(), |l| format!("{l:.4}"));
        let text = format!(
            "loss {loss} lr {:.2e} grad_norm {} audio_s/s {:.1}",
            record.lr,
            record
                .grad_norm
                .map_or("-".to_string(), |n| format!("{n:.3}")),
            record.audio_s_per_s
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(record.step);
                bar.set_message(text);
            }
            None if !self.quiet && record.step % self.log_every == 0 => {
                eprintln!(
                    "step {}/{total} epoch {:.2} {text}",
                    record.step, record.epoch
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn next_position(batch: &Batch) -> DataPosition {
    if batch.position.batch + 1 >= batch.batches_in_epoch {
        DataPosition {
            epoch: batch.position.epoch + 1,
            batch: 0,
        }
    } else {
        DataPosition {
            epoch: batch.position.epoch,
            batch: batch.position.batch + 1,
        }
    }
}

fn epoch_fraction(position: DataPosition, batches_in_epoch: usize) -> f64 {
    position.epoch as f64 + position.batch as f64 / batches_in_epoch.max(1) as f64
}

/// The training utterances `config` selects, as one source.
fn train_source(
    config: &TrainConfig,
    data: &TrainData,
) -> Result<Arc<dyn UtteranceSource>, TrainError> {
    data.source(&config.train_split).ok_or_else(|| {
        TrainError::Config(format!(
            "{} has no split named {:?} and none whose role is {:?} to train on (splits: {}); choose one with --train-split",
            data.origin,
            config.train_split,
            config.train_split,
            data.describe_splits()
        ))
    })
}

/// The utterances evaluated during training; `None` when the user turned evaluation
/// off with `eval_split = "none"` (or empty). A selector that selects nothing else is
/// an error: training without the evaluation asked for would pick `best/` blindly.
fn eval_source(
    config: &TrainConfig,
    data: &TrainData,
) -> Result<Option<Arc<dyn UtteranceSource>>, TrainError> {
    if let Some(source) = data.source(&config.eval_split) {
        return Ok(Some(source));
    }
    let selector = config.eval_split.trim();
    if selector.is_empty() || selector.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Err(TrainError::Config(format!(
        "--eval-split {:?}: {} has no split of that name and none whose role is {:?} (splits: {}); \
         choose one of those, or pass --eval-split none to train without evaluation (best/ is \
         then the last weights)",
        config.eval_split,
        data.origin,
        config.eval_split,
        data.describe_splits()
    )))
}

/// Positions of the utterances a run trains on: at least one frame long, and within
/// `max_samples` when given.
fn included_utterances(
    index: &[crate::data::UtteranceInfo],
    min_samples: u64,
    max_samples: Option<u64>,
) -> Vec<usize> {
    (0..index.len())
        .filter(|&i| {
            let n = index[i].num_samples;
            n >= min_samples && max_samples.is_none_or(|m| n <= m)
        })
        .collect()
}

fn train_batching(config: &TrainConfig, normalize: bool) -> Batching {
    Batching {
        batch_seconds: config.batch_seconds,
        max_utterances: config.max_batch_utterances,
        shuffle: true,
        seed: config.seed,
        rank: config.rank,
        world_size: config.world_size,
        normalize,
    }
}

/// The utterance ids of each batch of training epoch `epoch`, in the order [`run`]
/// trains on them with this configuration (`min_samples`: the model's
/// [`asr_model::Config::min_num_samples`]). Benchmarks use it to feed another trainer
/// exactly the same batches.
pub fn training_batches(
    config: &TrainConfig,
    data: &TrainData,
    min_samples: u64,
    epoch: u64,
) -> Result<Vec<Vec<String>>, TrainError> {
    let source = train_source(config, data)?;
    let batching = train_batching(config, true);
    let max_samples = max_duration_samples(config);
    Ok(plan_ids(
        source.as_ref(),
        min_samples,
        max_samples,
        &batching,
        epoch,
    ))
}

/// [`training_batches`] for the model of `task` (as [`build_task`] builds it): for a
/// Whisper model, the utterances with labels, each clip counting as 30 s.
pub fn task_training_batches(
    config: &TrainConfig,
    data: &TrainData,
    task: &Task,
    epoch: u64,
) -> Result<Vec<Vec<String>>, TrainError> {
    let source = task.train_source(train_source(config, data)?);
    let batching = train_batching(config, task.normalize_audio());
    let max_samples = plan_max_samples(config, task);
    Ok(plan_ids(
        source.as_ref(),
        task.min_samples(),
        max_samples,
        &batching,
        epoch,
    ))
}

/// The model of `config` with its task, for training on `data` (see [`Task::build`]).
pub fn build_task(
    config: &TrainConfig,
    data: &TrainData,
    device: Device,
    log: &dyn Fn(&str),
) -> Result<Task, TrainError> {
    let source = train_source(config, data)?;
    Task::build(config, data, source.as_ref(), device, log)
}

/// `--max-duration-s` in samples.
fn max_duration_samples(config: &TrainConfig) -> Option<u64> {
    config
        .max_duration_s
        .map(|s| (s * f64::from(crate::data::SAMPLE_RATE_HZ)) as u64)
}

/// The length cap of the batch plan: `--max-duration-s` for CTC; none for seq2seq,
/// whose labels already left the longer clips out (and whose clips all count as 30 s).
fn plan_max_samples(config: &TrainConfig, task: &Task) -> Option<u64> {
    match task {
        Task::Ctc(_) => max_duration_samples(config),
        Task::Seq2Seq(_) => None,
    }
}

/// The ids of each batch of `epoch` of the utterances of `source` within the lengths.
fn plan_ids(
    source: &dyn UtteranceSource,
    min_samples: u64,
    max_samples: Option<u64>,
    batching: &Batching,
    epoch: u64,
) -> Vec<Vec<String>> {
    let index = source.index();
    let included = included_utterances(index, min_samples.max(1), max_samples);
    let lengths: Vec<u64> = included.iter().map(|&i| index[i].num_samples).collect();
    plan_epoch(&lengths, batching, epoch)
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .map(|m| index[included[m]].id.clone())
                .collect()
        })
        .collect()
}

/// Train as `config` says on `data`; see the module documentation.
pub fn run(
    config: &TrainConfig,
    data: TrainData,
    mut hooks: Hooks,
) -> Result<RunSummary, TrainError> {
    config
        .validate()
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let (config, dist) = distributed::join(config)?;
    // Rank 0 speaks for the job; the others report only their errors.
    hooks.quiet |= !dist.is_main();
    distributed::catch_stop_signals();
    Trainer::new(&config, data, hooks, dist)?.train()
}

/// What a checkpoint records of the run's progress besides the model, optimizer,
/// guard and loss-scaler state.
struct RunState {
    step: u64,
    position: DataPosition,
    best: Option<BestEval>,
    evals_without_improvement: u32,
    quarantine: Quarantine,
    train_audio_s: f64,
    elapsed_before_s: f64,
}

impl RunState {
    fn fresh() -> RunState {
        RunState {
            step: 0,
            position: DataPosition::default(),
            best: None,
            evals_without_improvement: 0,
            quarantine: Quarantine::default(),
            train_audio_s: 0.0,
            elapsed_before_s: 0.0,
        }
    }
}

/// The fixed shape of a run: which utterances, how batched, how many steps.
struct TrainingPlan {
    /// Positions in the training source's index of the utterances trained on.
    included: Vec<usize>,
    batching: Batching,
    batches_per_epoch: usize,
    total_steps: u64,
    warmup_steps: u64,
    schedule: crate::schedule::LrSchedule,
    save_every: u64,
    eval_batch_seconds: f64,
}

impl TrainingPlan {
    fn new(
        config: &TrainConfig,
        data: &TrainData,
        source: &dyn UtteranceSource,
        task: &Task,
        log: &dyn Fn(&str),
    ) -> Result<TrainingPlan, TrainError> {
        let max_samples = plan_max_samples(config, task);
        let index = source.index();
        let included = included_utterances(index, task.min_samples(), max_samples);
        let left_out = index.len() - included.len();
        if left_out > 0 {
            log(&format!(
                "left out {left_out} of {} training utterances (shorter than one frame, or above max_duration_s)",
                index.len()
            ));
        }
        refuse_clips_beyond_a_batch(config, &data.origin, index, &included)?;
        let batching = train_batching(config, task.normalize_audio());
        let lengths: Vec<u64> = included.iter().map(|&i| index[i].num_samples).collect();
        let batches_per_epoch = plan_epoch(&lengths, &batching, 0).len();
        if batches_per_epoch == 0 {
            return Err(TrainError::Config(format!(
                "no training batch: split {:?} of {} has {} usable utterances",
                config.train_split,
                data.origin,
                included.len()
            )));
        }
        let total_steps = config.max_steps.unwrap_or_else(|| {
            (u64::from(config.epochs) * batches_per_epoch as u64)
                .div_ceil(u64::from(config.grad_accum))
        });
        let warmup_steps = config
            .warmup_steps
            .unwrap_or((config.warmup_ratio * total_steps as f64).round() as u64);
        Ok(TrainingPlan {
            included,
            batching,
            batches_per_epoch,
            total_steps,
            warmup_steps,
            schedule: crate::schedule::LrSchedule {
                peak_lr: config.lr,
                warmup_steps,
                total_steps,
                decay: config.decay,
                min_lr_ratio: config.min_lr_ratio,
            },
            save_every: config.save_every.unwrap_or(config.eval_every),
            eval_batch_seconds: config
                .eval_batch_seconds
                .unwrap_or(2.0 * config.batch_seconds),
        })
    }
}

/// Fails naming the training clips longer than `batch_seconds`: batches cap padded
/// audio at that, but a longer clip gets a batch of its own beyond the cap (a 600 s
/// clip asked libtorch for 14 GB and panicked). Leaving them out is the user's call
/// (`--max-duration-s`), so that no data goes missing silently.
fn refuse_clips_beyond_a_batch(
    config: &TrainConfig,
    origin: &str,
    index: &[crate::data::UtteranceInfo],
    included: &[usize],
) -> Result<(), TrainError> {
    let rate = f64::from(crate::data::SAMPLE_RATE_HZ);
    let cap = config.batch_seconds;
    let too_long: Vec<String> = included
        .iter()
        .map(|&i| &index[i])
        .filter(|u| u.num_samples as f64 / rate > cap)
        .map(|u| format!("{} ({:.1} s)", u.id, u.num_samples as f64 / rate))
        .collect();
    if too_long.is_empty() {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "{} training clip(s) of {origin} are longer than --batch-seconds {cap} (the padded audio \
         a batch may hold), so each would be a batch beyond that memory budget: {}; leave them \
         out with --max-duration-s {cap} (or less), split the recordings before packing, or \
         raise --batch-seconds if memory allows",
        too_long.len(),
        abbreviate(&too_long)
    )))
}

/// Step time, data wait and audio of this process (not continued across resume).
#[derive(Default)]
struct Throughput {
    step_time: Duration,
    wait: Duration,
    steps: u64,
    audio_s: f64,
}

impl Throughput {
    fn audio_s_per_s(&self) -> f64 {
        self.audio_s / self.step_time.as_secs_f64().max(1e-9)
    }

    fn data_wait_fraction(&self) -> f64 {
        self.wait.as_secs_f64() / self.step_time.as_secs_f64().max(1e-9)
    }

    fn steps_per_s(&self) -> f64 {
        self.steps as f64 / self.step_time.as_secs_f64().max(1e-9)
    }
}

/// Steps 4-9 of an optimizer step, as they went.
#[derive(Default)]
struct Update {
    grad_norm: Option<f64>,
    updated: bool,
    clipped: bool,
    lr: f64,
}

/// Settings that come from the model and the device.
struct Runtime {
    device: Device,
    precision: Precision,
    threads: usize,
}

/// A training run in progress: the model, its optimizer and guard, the data plan and
/// what the run has done so far. [`run`] builds one ([`Trainer::new`]: run folder,
/// model, resume) and drives it ([`Trainer::train`]: steps, evaluations, checkpoints,
/// then [`Trainer::finish`]).
struct Trainer<'a> {
    config: &'a TrainConfig,
    data: TrainData,
    hooks: Hooks,
    out: PathBuf,
    runtime: Runtime,
    task: Task,
    optimizer: AdamW,
    guard: ExplosionGuard,
    scaler: Option<LossScaler>,
    plan: TrainingPlan,
    train_source: Arc<dyn UtteranceSource>,
    eval_source: Option<Arc<dyn UtteranceSource>>,
    state: RunState,
    metrics: MetricsWriter,
    progress: Progress,
    clock: Clock,
    throughput: Throughput,
    loader: Option<Loader>,
    last_saved: u64,
    last_eval: u64,
    batches_in_epoch: usize,
    run_started: Instant,
    dist: Distributed,
    /// A rank received SIGTERM or SIGUSR1: save and stop after this step.
    stop_requested: bool,
    /// Several ranks: one's clock passed `max_minutes` at the end of the last step.
    out_of_time: bool,
}

impl<'a> Trainer<'a> {
    /// Check the configuration, prepare the run folder, build the model and plan, and
    /// restore the last checkpoint on `--resume`.
    fn new(
        config: &'a TrainConfig,
        data: TrainData,
        hooks: Hooks,
        mut dist: Distributed,
    ) -> Result<Self, TrainError> {
        config
            .validate()
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let run_started = Instant::now();
        let quiet = hooks.quiet;
        let log = move |text: &str| {
            if !quiet {
                eprintln!("{text}");
            }
        };
        let train_source = train_source(config, &data)?;
        let eval_source = eval_source(config, &data)?;
        let checkpoints = if dist.is_main() {
            open_run_folder(config)?
        } else {
            distributed::peer_checkpoints(config)?
        };
        let mut runtime = Runtime::new(config)?;
        runtime.device = dist.use_device(runtime.device, &config.device)?;
        let task = Task::build(config, &data, train_source.as_ref(), runtime.device, &log)?;
        let train_source = task.train_source(train_source);
        let plan = TrainingPlan::new(config, &data, train_source.as_ref(), &task, &log)?;
        let mut optimizer = AdamW::new(adamw_config(config), task.trainable_parameters());
        let mut guard = ExplosionGuard::new(config.guard.clone());
        let mut scaler = (runtime.precision == Precision::F16).then(LossScaler::default);
        let state = if checkpoints.is_empty() {
            if config.resume {
                log(&format!(
                    "no checkpoint in {}: starting a new run",
                    config.out.display()
                ));
            }
            RunState::fresh()
        } else {
            let mut parts = Restorable {
                params: task.params(),
                optimizer: &mut optimizer,
                guard: &mut guard,
                scaler: &mut scaler,
            };
            resume_from(&checkpoints, config, &mut parts, &log)?
        };
        let metrics = if dist.is_main() {
            open_outputs(config, state.step)?
        } else {
            MetricsWriter::discard()
        };
        Ok(Trainer {
            out: config.out.clone(),
            task,
            optimizer,
            guard,
            scaler,
            batches_in_epoch: plan.batches_per_epoch,
            progress: Progress::new(plan.total_steps, state.step, config.log_every, quiet),
            last_saved: state.step,
            last_eval: state.step,
            clock: Clock {
                started: Instant::now(),
                before_s: state.elapsed_before_s,
            },
            runtime,
            plan,
            train_source,
            eval_source,
            state,
            metrics,
            throughput: Throughput::default(),
            loader: None,
            run_started,
            config,
            data,
            hooks,
            dist,
            stop_requested: false,
            out_of_time: false,
        })
    }

    fn log(&self, text: &str) {
        if !self.hooks.quiet {
            eprintln!("{text}");
        }
    }

    /// The loop: optimizer steps until a stop condition, evaluating and saving on
    /// schedule; then [`Trainer::finish`].
    fn train(mut self) -> Result<RunSummary, TrainError> {
        self.log(&format!(
            "training {} ({}, {} parameters, {} trainable) on {:?} in {}, {} utterances in {} batches per epoch, {} steps ({} warm-up), {} threads",
            self.config.model,
            self.task.name(),
            self.task.params().num_parameters(),
            optimizer_param_count(&self.task),
            self.runtime.device,
            self.runtime.precision,
            self.plan.included.len(),
            self.plan.batches_per_epoch,
            self.plan.total_steps,
            self.plan.warmup_steps,
            self.runtime.threads,
        ));
        self.loader = Some(Loader::start(
            self.train_source.clone(),
            self.plan.included.clone(),
            self.plan.batching,
            self.state.position,
            self.config.prefetch_batches,
        ));
        self.check_training_data_left()?;
        let stop_reason: String = loop {
            if let Some(reason) = self.stop_condition() {
                break reason.into();
            }
            self.train_step()?;
            if self.stop_requested {
                return self.stop_on_signal();
            }
            if self.evaluate_and_save()? {
                self.progress.line(&format!(
                    "early stopping: {} evaluations without a better WER",
                    self.state.evals_without_improvement
                ));
                break "early_stopping".into();
            }
        };
        self.progress.finish();
        self.loader = None;
        self.finish(stop_reason)
    }

    /// SIGTERM or SIGUSR1 reached a rank: a checkpoint of this step (rank 0), then a clean
    /// exit on every rank; `--resume` continues the run.
    fn stop_on_signal(mut self) -> Result<RunSummary, TrainError> {
        self.progress.finish();
        self.loader = None;
        self.metrics.flush()?;
        if self.last_saved != self.state.step {
            self.save_checkpoint()?;
        }
        let signal = distributed::stop_signal().unwrap_or("a signal on another rank");
        self.log(&format!(
            "stopped by {signal} after step {}: checkpoint saved in {}; continue with --resume",
            self.state.step,
            checkpoint::checkpoints_dir(&self.out).display()
        ));
        Ok(self.peer_summary("signal".to_string()))
    }

    /// Why the loop must stop before the next step, if it must.
    fn stop_condition(&self) -> Option<&'static str> {
        if self.state.step >= self.plan.total_steps {
            return Some("max_steps");
        }
        let max_s = self.config.max_minutes.map(|m| m * 60.0);
        // Several ranks decide on the time limit together (see `share_step`).
        let own_clock = self.dist.world_size() == 1
            && max_s.is_some_and(|limit| self.clock.elapsed_s() >= limit);
        if own_clock || self.out_of_time {
            self.progress.line(&format!(
                "time limit: {:.1} minutes of training",
                self.clock.elapsed_s() / 60.0
            ));
            return Some("max_minutes");
        }
        if self.config.max_steps.is_none()
            && self.state.position.epoch >= u64::from(self.config.epochs)
        {
            return Some("epochs");
        }
        None
    }

    /// The next training batch, without the utterances left out of the run (a batch
    /// of those only is passed over); moves the data position past it. The plan stays
    /// the same (a function of seed and epoch), so `--resume` finds the same batches.
    fn next_batch(&mut self) -> Result<Batch, TrainError> {
        let loader = self
            .loader
            .as_mut()
            .ok_or_else(|| TrainError::Config("the data loader is not running".into()))?;
        let threshold = self.config.guard.quarantine_after;
        loop {
            let batch = loader.next_batch()?;
            self.state.position = next_position(&batch);
            self.batches_in_epoch = batch.batches_in_epoch;
            let quarantine = &self.state.quarantine;
            if let Some(batch) = batch.retain(|id| !quarantine.is_left_out(id, threshold)) {
                return Ok(batch);
            }
        }
    }

    /// Fails when every training utterance is left out (nothing to train on), after
    /// writing `quarantine.txt`.
    fn check_training_data_left(&self) -> Result<(), TrainError> {
        let threshold = self.config.guard.quarantine_after;
        let index = self.train_source.index();
        let quarantine = &self.state.quarantine;
        if !self
            .plan
            .included
            .iter()
            .all(|&i| quarantine.is_left_out(&index[i].id, threshold))
        {
            return Ok(());
        }
        let path = self.out.join("quarantine.txt");
        if self.dist.is_main() {
            quarantine.write(&path, threshold).map_err(io_err(&path))?;
        }
        Err(TrainError::NoProgress(format!(
            "every training utterance of {} was left out of the run after {threshold} bad losses each \
             (labels that need more CTC frames than the audio gives, or non-finite losses): {}. \
             Nothing is left to train on. Check them with asr-data validate (ctc_infeasible), fix or \
             exclude them (asr-data pack --exclude {}), and start again",
            self.data.origin,
            abbreviate(&quarantine.left_out(threshold)),
            path.display()
        )))
    }

    /// One optimizer step: `grad_accum` micro-batches forward and backward, then the
    /// guard's steps 4-9 and the step's records.
    fn train_step(&mut self) -> Result<(), TrainError> {
        let started = Instant::now();
        let this_step = self.state.step + 1;
        let mut acc = StepAccumulator::default();
        for micro in 0..self.config.grad_accum {
            let batch = self.next_batch()?;
            acc.utterances += batch.len() as u64;
            acc.audio_s += batch.audio_s;
            self.micro_batch(&batch, micro, this_step, &mut acc)?;
        }
        acc.stop = distributed::stop_signal().is_some();
        let max_s = self.config.max_minutes.map(|m| m * 60.0);
        acc.out_of_time = max_s.is_some_and(|limit| self.clock.elapsed_s() >= limit);
        let mut acc = self.share_step(this_step, acc)?;
        self.stop_requested = acc.stop;
        self.out_of_time = acc.out_of_time;
        let update = self.apply_update(this_step, &mut acc);
        self.optimizer.zero_grad();
        self.state.step = this_step;
        self.record_step(started, acc, update)
    }

    /// Data parallelism: every rank's step totals and events, and the gradients
    /// averaged over the ranks (see [`crate::distributed`]); one process: `acc` as is.
    fn share_step(
        &mut self,
        this_step: u64,
        acc: StepAccumulator,
    ) -> Result<StepAccumulator, TrainError> {
        let acc = self.dist.share_step(acc, &mut self.guard, this_step)?;
        if acc.backward_batches > 0 {
            self.dist
                .average_gradients(&mut self.optimizer, this_step)?;
        }
        Ok(acc)
    }

    /// Forward one micro-batch (seeded from the step) and its per-utterance losses.
    fn forward(&self, batch: &Batch, micro: u32) -> Result<Forward, TrainError> {
        let seed = step_seed(
            self.config.seed,
            self.state.step,
            self.dist.micro_index(micro),
        );
        tch::manual_seed(seed as i64);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EC_A0C);
        self.task.forward(batch, self.runtime.precision, &mut rng)
    }

    /// One micro-batch: forward, the per-utterance loss check (step 2: bad losses are
    /// masked out, named in events), backward over the rest.
    fn micro_batch(
        &mut self,
        batch: &Batch,
        micro: u32,
        this_step: u64,
        acc: &mut StepAccumulator,
    ) -> Result<(), TrainError> {
        let fwd = self.forward(batch, micro)?;
        let before = self.guard.state().counts;
        let check = self.guard.check_losses(&fwd.normalized, &fwd.feasible);
        let after = self.guard.state().counts;
        acc.nonfinite_rows += after.nonfinite_loss - before.nonfinite_loss;
        acc.high_rows += after.high_loss - before.high_loss;
        for LossEvent { event, culprits } in check.events {
            acc.events.push(EventRecord {
                step: this_step,
                event,
                ids: batch.ids.clone(),
                culprits: culprits.iter().map(|&i| batch.ids[i].clone()).collect(),
            });
        }
        if check.keep.is_empty() {
            return Ok(());
        }
        let loss = self
            .task
            .kept_loss(fwd, &check.keep, self.runtime.precision)?;
        // The value backwarded (before loss scaling and accumulation) is the one recorded.
        let batch_loss = loss.double_value(&[]);
        let scale = self.scaler.as_ref().map_or(1.0, |s| s.scale);
        let scaled = loss * (scale / f64::from(self.config.grad_accum));
        scaled.backward();
        if let (Some(hook), Some(model)) =
            (self.hooks.after_backward.as_mut(), self.task.ctc_model())
        {
            hook(this_step, model);
        }
        acc.losses_sum += batch_loss;
        acc.backward_batches += 1;
        acc.ids
            .extend(check.keep.iter().map(|&i| batch.ids[i].clone()));
        Ok(())
    }

    /// Steps 4-9 after the micro-batches: unscale (fp16), non-finite gradients, the
    /// norm check, clipping and the update.
    fn apply_update(&mut self, this_step: u64, acc: &mut StepAccumulator) -> Update {
        let mut update = Update::default();
        if acc.backward_batches == 0 {
            self.guard.end_skipped_step();
            return update;
        }
        if let Some(s) = self.scaler.as_mut() {
            self.optimizer.scale_grads(1.0 / s.scale);
            let overflow = !self.optimizer.grad_norm().is_finite();
            if !s.update(overflow) {
                self.guard.end_skipped_step();
                return update;
            }
        }
        let mut norm = self.optimizer.grad_norm();
        if !norm.is_finite() {
            let count = self.optimizer.count_nonfinite_grads();
            match self.guard.check_nonfinite_grads(count) {
                NonFiniteDecision::Clean => {}
                NonFiniteDecision::Zero(event) => {
                    self.optimizer.zero_nonfinite_grads();
                    norm = self.optimizer.grad_norm();
                    acc.events.push(batch_event(this_step, event, &acc.ids));
                }
                NonFiniteDecision::Skip(event) => {
                    acc.events.push(batch_event(this_step, event, &acc.ids));
                    self.guard.end_skipped_step();
                    update.grad_norm = Some(norm);
                    return update;
                }
            }
        }
        update.grad_norm = Some(norm);
        match self.guard.check_grad_norm(norm) {
            NormDecision::Skip(event) => {
                acc.events.push(batch_event(this_step, event, &acc.ids));
            }
            NormDecision::Update {
                clip_coef,
                lr_scale,
                recovery,
                ..
            } => {
                if clip_coef < 1.0 {
                    self.optimizer.scale_grads(clip_coef);
                    update.clipped = true;
                }
                update.lr = self.plan.schedule.lr(self.state.step) * lr_scale;
                self.optimizer.step(update.lr);
                update.updated = true;
                if let Some(event) = recovery {
                    acc.events.push(batch_event(this_step, event, &acc.ids));
                }
            }
        }
        update
    }

    /// The step's record and events in `metrics.jsonl`, the quarantine counts and the
    /// progress display.
    fn record_step(
        &mut self,
        started: Instant,
        acc: StepAccumulator,
        update: Update,
    ) -> Result<(), TrainError> {
        let elapsed = started.elapsed();
        let waited = self
            .loader
            .as_mut()
            .map_or(Duration::ZERO, Loader::take_wait);
        self.throughput.step_time += elapsed;
        self.throughput.wait += waited;
        self.throughput.steps += 1;
        self.throughput.audio_s += acc.audio_s;
        self.state.train_audio_s += acc.audio_s;
        let step = self.state.step;
        let record = StepRecord {
            step,
            epoch: epoch_fraction(self.state.position, self.batches_in_epoch),
            loss: (acc.backward_batches > 0)
                .then(|| acc.losses_sum / f64::from(acc.backward_batches)),
            lr: update.lr,
            grad_norm: update.grad_norm,
            updated: update.updated,
            clipped: update.clipped,
            lr_scale: self.guard.lr_scale(),
            utterances: acc.utterances,
            audio_s: acc.audio_s,
            audio_s_per_s: acc.audio_s / elapsed.as_secs_f64().max(1e-9),
            step_time_s: elapsed.as_secs_f64(),
            data_wait_s: waited.as_secs_f64(),
            comm_s: self.dist.take_comm_s(),
            loss_scale: self.scaler.as_ref().map(|s| s.scale),
            events: acc
                .events
                .iter()
                .map(|e| e.event.name().to_string())
                .collect(),
            elapsed_s: Some(self.clock.elapsed_s()),
        };
        self.metrics.write(&MetricsRecord::Step(record.clone()))?;
        for event in &acc.events {
            self.record_event(event)?;
        }
        self.progress.step(&record, self.plan.total_steps);
        if acc.events.iter().any(|e| !e.culprits.is_empty()) {
            self.check_training_data_left()?;
        }
        Ok(())
    }

    /// One event: `metrics.jsonl`, the quarantine counts, a log line, and one more when
    /// a culprit is left out of the run from now on.
    fn record_event(&mut self, event: &EventRecord) -> Result<(), TrainError> {
        let threshold = self.config.guard.quarantine_after;
        let was_out: Vec<bool> = event
            .culprits
            .iter()
            .map(|id| self.state.quarantine.is_left_out(id, threshold))
            .collect();
        self.state.quarantine.record(event);
        self.metrics.write(&MetricsRecord::Event(event.clone()))?;
        let culprits = if event.culprits.is_empty() {
            String::new()
        } else {
            format!(" culprits {}", abbreviate(&event.culprits))
        };
        self.progress.line(&format!(
            "step {}: {} {}{culprits}",
            event.step,
            event.event.name(),
            serde_json::to_string(&event.event).unwrap_or_default()
        ));
        for (id, was_out) in event.culprits.iter().zip(was_out) {
            if !was_out && self.state.quarantine.is_left_out(id, threshold) {
                self.progress.line(&format!(
                    "step {}: {id} is left out of the rest of the run (its loss was bad {threshold} times; see quarantine.txt)",
                    event.step
                ));
            }
        }
        Ok(())
    }

    /// Evaluation (best model, early stopping) and checkpoint when due after a step.
    /// Returns whether early stopping ends the run.
    fn evaluate_and_save(&mut self) -> Result<bool, TrainError> {
        let step = self.state.step;
        let mut stop_early = false;
        let eval_due = self.config.eval_every > 0 && step % self.config.eval_every == 0;
        if eval_due && self.eval_source.is_some() {
            let record = self.evaluate()?;
            if let Some(patience) = self.config.patience {
                stop_early = !record.best && self.state.evals_without_improvement >= patience;
            }
        }
        self.metrics.flush()?;
        let save_every = self.plan.save_every;
        if save_every > 0 && step % save_every == 0 {
            self.save_checkpoint()?;
        }
        Ok(stop_early)
    }

    /// Decode the eval split, keep `best/` when the headline metric improved (see
    /// [`Task::metric`]), record it.
    fn evaluate(&mut self) -> Result<EvalRecord, TrainError> {
        let Some(source) = self.eval_source.clone() else {
            return Err(TrainError::Config("no eval split to evaluate".into()));
        };
        let step = self.state.step;
        let output = self.dist.evaluate(
            step,
            source,
            self.config.eval_max_utterances,
            |source, limit| {
                self.task.evaluate(
                    source,
                    limit,
                    self.plan.eval_batch_seconds,
                    self.runtime.precision,
                )
            },
        )?;
        self.last_eval = step;
        let (wer, cer) = (output.rates.wer(), output.rates.cer());
        let metric = self.task.metric(&output);
        let improved = self
            .state
            .best
            .is_none_or(|b| improves(metric, (wer, cer), (b.wer, b.cer)));
        if improved {
            self.state.best = Some(BestEval { step, wer, cer });
            self.state.evals_without_improvement = 0;
            if self.dist.is_main() {
                save_best(&self.task, &self.best_dir())?;
            }
        } else {
            self.state.evals_without_improvement += 1;
        }
        let record = EvalRecord {
            step,
            epoch: epoch_fraction(self.state.position, self.batches_in_epoch),
            split: self.config.eval_split.clone(),
            wer,
            cer,
            loss: output.loss,
            utterances: output.rates.utterances,
            blank_fraction: output.blank_fraction,
            best: improved,
            eval_time_s: output.seconds,
            elapsed_s: Some(self.clock.elapsed_s()),
        };
        self.metrics.write(&MetricsRecord::Eval(record.clone()))?;
        if improved {
            self.write_model_card(vec![CardResult {
                split: record.split.clone(),
                wer,
                cer,
            }])?;
        }
        self.progress.line(&format!(
            "eval step {step}: {} WER {wer:.4} CER {cer:.4} loss {} ({} utterances){}",
            self.config.eval_split,
            output.loss.map_or("-".to_string(), |l| format!("{l:.4}")),
            output.rates.utterances,
            if improved { ", best so far" } else { "" }
        ));
        self.watch_blank_collapse(output.blank_fraction)?;
        Ok(record)
    }

    /// Warn (and record an event) when nearly all eval outputs of a CTC model are empty
    /// after warm-up.
    fn watch_blank_collapse(&mut self, blank_fraction: f64) -> Result<(), TrainError> {
        if self.task.ctc_model().is_none()
            || self.state.step <= self.plan.warmup_steps
            || blank_fraction < self.config.watchdog_blank_fraction
        {
            return Ok(());
        }
        let event = EventRecord {
            step: self.state.step,
            event: GuardEvent::BlankCollapse { blank_fraction },
            ids: Vec::new(),
            culprits: Vec::new(),
        };
        self.metrics.write(&MetricsRecord::Event(event))?;
        self.progress.line(&format!(
            "warning: {:.0}% of the eval outputs are empty after warm-up (blank collapse). Usual causes: \
             a learning rate too high or too low for the model, a vocabulary that does not match the \
             model's head (check the vocab.json used to pack), or utterances with more labels than \
             frames (asr-data validate reports ctc_infeasible)",
            100.0 * blank_fraction
        ));
        Ok(())
    }

    /// `best/README.md` from the records so far and `results`.
    fn write_model_card(&mut self, results: Vec<CardResult>) -> Result<(), TrainError> {
        if !self.dist.is_main() {
            return Ok(()); // rank 0 alone writes run outputs
        }
        self.metrics.flush()?;
        let records = read_metrics(&self.out.join("metrics.jsonl"))?;
        let model_type = self.task.model_type();
        let facts = CardFacts {
            records: &records,
            results: &results,
            model_type: &model_type,
            task: self.task.name(),
        };
        let dir = self.best_dir();
        model_card::write(&dir, self.config, &facts).map_err(io_err(&dir))
    }

    /// The card of the final `best/`: its results on the final splits, else those of
    /// its evaluation on the eval split.
    fn write_final_model_card(&mut self, results: &FinalResults) -> Result<(), TrainError> {
        let mut card: Vec<CardResult> = results
            .splits
            .iter()
            .map(|(split, r)| CardResult {
                split: split.clone(),
                wer: r.wer,
                cer: r.cer,
            })
            .collect();
        if let (true, Some(best)) = (card.is_empty(), self.state.best) {
            card.push(CardResult {
                split: self.config.eval_split.clone(),
                wer: best.wer,
                cer: best.cer,
            });
        }
        self.write_model_card(card)
    }

    fn best_dir(&self) -> PathBuf {
        self.out.join("best")
    }

    /// Write a checkpoint of the current state.
    fn save_checkpoint(&mut self) -> Result<(), TrainError> {
        if !self.dist.is_main() {
            self.last_saved = self.state.step;
            return Ok(());
        }
        let state = TrainState {
            format_version: CHECKPOINT_FORMAT_VERSION,
            step: self.state.step,
            optimizer_steps: self.optimizer.steps(),
            data_position: self.state.position,
            guard: self.guard.state().clone(),
            loss_scaler: self.scaler.clone(),
            best: self.state.best,
            evals_without_improvement: self.state.evals_without_improvement,
            quarantine: self.state.quarantine.clone(),
            train_audio_s: self.state.train_audio_s,
            elapsed_s: self.clock.elapsed_s(),
            seed: self.config.seed,
            world_size: (self.dist.world_size() > 1).then_some(self.dist.world_size()),
        };
        let tensors = self
            .task
            .params()
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.tensor.shallow_clone()))
            .collect();
        checkpoint::save(
            &self.out,
            &state,
            tensors,
            self.optimizer.state_tensors(),
            self.config.keep_checkpoints,
        )?;
        self.last_saved = self.state.step;
        Ok(())
    }

    /// After the loop: the last evaluation and checkpoint, the best model on the final
    /// splits, `quarantine.txt`, `final_results.json`, the curves and the summary.
    fn finish(mut self, stop_reason: String) -> Result<RunSummary, TrainError> {
        let step = self.state.step;
        let params = self.task.trainable_parameters();
        let tensors: Vec<&tch::Tensor> = params.iter().map(|(_, t)| *t).collect();
        self.dist.check_same_weights(&tensors, step)?;
        drop(params);
        if self.eval_source.is_some() && (self.last_eval != step || self.state.best.is_none()) {
            self.evaluate()?;
        }
        if !self.dist.is_main() {
            // Rank 0 writes best/ first; then each rank decodes its share of the final
            // splits (rank 0 writes the whole).
            self.optimizer = AdamW::new(
                adamw_config(self.config),
                Vec::<(&str, &tch::Tensor)>::new(),
            );
            self.dist.barrier(step)?;
            self.evaluate_final_splits()?;
            return Ok(self.peer_summary(stop_reason));
        }
        if self.eval_source.is_none() {
            // Nothing to choose with: the final weights are the best.
            save_best(&self.task, &self.best_dir())?;
        }
        self.metrics.flush()?;
        if self.last_saved != step {
            self.save_checkpoint()?;
        }
        let updates = self.optimizer.steps();
        // Free the optimizer moments before evaluating.
        self.optimizer = AdamW::new(
            adamw_config(self.config),
            Vec::<(&str, &tch::Tensor)>::new(),
        );
        self.dist.barrier(step)?;
        let splits = self.evaluate_final_splits()?;
        let results = self.write_results(splits, &stop_reason)?;
        self.write_final_model_card(&results)?;
        let summary = RunSummary {
            out: self.out.clone(),
            steps: step,
            stop_reason,
            best: self.state.best,
            audio_s_per_s: self.throughput.audio_s_per_s(),
            data_wait_fraction: self.throughput.data_wait_fraction(),
            steps_per_s: self.throughput.steps_per_s(),
            left_out: self
                .state
                .quarantine
                .left_out(self.config.guard.quarantine_after)
                .iter()
                .map(|s| s.to_string())
                .collect(),
            results,
        };
        if !self.hooks.quiet {
            eprintln!("{}", summary_table(&summary, self.run_started.elapsed()));
        }
        self.check_progress(updates)?;
        Ok(summary)
    }

    /// What a rank other than 0 reports: rank 0 evaluates and writes the results.
    fn peer_summary(&self, stop_reason: String) -> RunSummary {
        RunSummary {
            out: self.out.clone(),
            steps: self.state.step,
            stop_reason,
            best: self.state.best,
            audio_s_per_s: self.throughput.audio_s_per_s(),
            data_wait_fraction: self.throughput.data_wait_fraction(),
            steps_per_s: self.throughput.steps_per_s(),
            left_out: Vec::new(),
            results: FinalResults {
                splits: BTreeMap::new(),
                model: self.best_dir().display().to_string(),
                best_step: self.state.best.map(|b| b.step),
                steps: Some(self.state.step),
                stop_reason: None,
                events: Some(self.guard.state().counts),
                quarantined: None,
                train_audio_s_per_s: None,
                data_wait_fraction: None,
                left_out: None,
            },
        }
    }

    /// Fails when the model was updated in fewer than half of the run's steps (none
    /// included): such a run did not train, whatever its WER says. Skipped steps are
    /// normal now and then (an explosion, fp16 overflow at the start); a majority is
    /// not.
    fn check_progress(&self, updates: u64) -> Result<(), TrainError> {
        let steps = self.state.step;
        if updates > 0 && updates * 2 >= steps {
            return Ok(());
        }
        let c = self.guard.state().counts;
        Err(TrainError::NoProgress(format!(
            "the model was updated in {updates} of {steps} optimizer steps: the run did not train \
             (outputs written to {out}). Skipped: {} non-finite and {} high utterance losses, \
             {} steps with non-finite gradients, {} explosions, {} skipped updates (events with \
             their utterance ids in {out}/metrics.jsonl). Usual causes: every utterance of a batch \
             with labels longer than its audio allows (asr-data validate reports ctc_infeasible), \
             a --max-loss or --grad-norm-limit below the model's normal values, or a learning rate \
             or weight decay that makes the weights non-finite",
            c.nonfinite_loss,
            c.high_loss,
            c.nonfinite_grads,
            c.explosions,
            c.skipped_updates,
            out = self.out.display(),
        )))
    }

    /// The best weights (or the last when none was saved) on every final split present,
    /// with their predictions written by rank 0. Each split is shared across the ranks
    /// as the periodic evaluation is (every rank gets the whole result).
    fn evaluate_final_splits(&self) -> Result<BTreeMap<String, SplitResult>, TrainError> {
        let best_dir = self.best_dir();
        if best_dir.join("model.safetensors").is_file() {
            let tensors = asr_model::read_weights(&best_dir.join("model.safetensors"))?;
            checkpoint::restore_model(self.task.params(), &tensors, &best_dir)?;
        }
        let mut splits = BTreeMap::new();
        for split in &self.data.select_all(&self.config.final_splits) {
            let Some(source) = self.data.splits.get(split) else {
                continue;
            };
            let output =
                self.dist
                    .evaluate(self.state.step, source.clone(), None, |source, limit| {
                        self.task.evaluate(
                            source,
                            limit,
                            self.plan.eval_batch_seconds,
                            self.runtime.precision,
                        )
                    })?;
            if !self.dist.is_main() {
                // Peers are quiet otherwise: one line saying what this rank decoded.
                eprintln!(
                    "rank {} of {}: final evaluation of {split}: decoded {} of {} utterances",
                    self.dist.rank(),
                    self.dist.world_size(),
                    self.dist.share_len(output.predictions.len()),
                    output.predictions.len()
                );
                continue;
            }
            let path = self.out.join(format!("predictions_{split}.jsonl"));
            eval::write_predictions(&path, &output.predictions).map_err(io_err(&path))?;
            let mut result = output.result();
            if let Task::Seq2Seq(_) = self.task {
                result.metric = Some(self.task.metric(&output).to_string());
            }
            splits.insert(split.clone(), result);
        }
        Ok(splits)
    }

    /// `quarantine.txt`, `final_results.json` and `training_curves.png`.
    fn write_results(
        &self,
        splits: BTreeMap<String, SplitResult>,
        stop_reason: &str,
    ) -> Result<FinalResults, TrainError> {
        let threshold = self.config.guard.quarantine_after;
        let quarantine = &self.state.quarantine;
        let quarantine_path = self.out.join("quarantine.txt");
        quarantine
            .write(&quarantine_path, threshold)
            .map_err(io_err(&quarantine_path))?;
        let results = FinalResults {
            splits,
            model: self.best_dir().display().to_string(),
            best_step: self.state.best.map(|b| b.step),
            steps: Some(self.state.step),
            stop_reason: Some(stop_reason.to_string()),
            events: Some(self.guard.state().counts),
            quarantined: Some(
                quarantine
                    .ids(threshold)
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            train_audio_s_per_s: Some(self.throughput.audio_s_per_s()),
            data_wait_fraction: Some(self.throughput.data_wait_fraction()),
            left_out: self.task.left_out_counts(),
        };
        let results_path = self.out.join("final_results.json");
        eval::write_final_results(&results_path, &results).map_err(io_err(&results_path))?;
        let records = read_metrics(&self.out.join("metrics.jsonl"))?;
        let png = self.out.join("training_curves.png");
        if let Err(e) = draw_run_curves(&records, &model_card::run_name(self.config), &png) {
            self.log(&format!("warning: {e}"));
        }
        Ok(results)
    }
}

impl Runtime {
    /// Threads, device and precision from the configuration.
    fn new(config: &TrainConfig) -> Result<Runtime, TrainError> {
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        tch::set_num_threads(threads as i32);
        let device = asr_model::device::select(
            config
                .device
                .parse()
                .map_err(|e: asr_model::DeviceError| TrainError::Config(e.to_string()))?,
        )?;
        Ok(Runtime {
            device,
            precision: resolve_precision(config.precision, device)?,
            threads,
        })
    }
}

fn adamw_config(config: &TrainConfig) -> AdamWConfig {
    AdamWConfig {
        beta1: config.adam_beta1,
        beta2: config.adam_beta2,
        eps: config.adam_eps,
        weight_decay: config.weight_decay,
    }
}

/// "a, b, c and 4 more": ids for a message.
fn abbreviate<S: AsRef<str>>(ids: &[S]) -> String {
    const SHOWN: usize = 5;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

/// Refuse a folder that holds a run unless resuming, and one whose run cannot be
/// resumed (outputs but no checkpoint: starting over would overwrite them); create
/// it. Returns the checkpoints to resume from, newest first (none for a new run).
fn open_run_folder(config: &TrainConfig) -> Result<Vec<PathBuf>, TrainError> {
    let out = &config.out;
    let checkpoints = checkpoint::list(out)?;
    if !config.resume && (!checkpoints.is_empty() || out.join("metrics.jsonl").exists()) {
        return Err(TrainError::Config(format!(
            "{} already holds a run; pass --resume to continue it, or choose another --out",
            out.display()
        )));
    }
    if config.resume && checkpoints.is_empty() {
        let outputs: Vec<&str> = ["metrics.jsonl", "best", "final_results.json"]
            .into_iter()
            .filter(|name| out.join(name).exists())
            .collect();
        if !outputs.is_empty() {
            return Err(TrainError::Config(format!(
                "--resume: {} holds a run's outputs ({}) but no checkpoint to continue from \
                 ({} is empty or missing), and starting over there would overwrite them; \
                 choose another --out for a new run, or remove {} to start again there",
                out.display(),
                outputs.join(", "),
                checkpoint::checkpoints_dir(out).display(),
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    if !config.resume {
        return Ok(Vec::new());
    }
    Ok(checkpoints.into_iter().rev().map(|(_, dir)| dir).collect())
}

/// What a checkpoint is restored into.
struct Restorable<'m> {
    params: &'m asr_model::ParamStore,
    optimizer: &'m mut AdamW,
    guard: &'m mut ExplosionGuard,
    scaler: &'m mut Option<LossScaler>,
}

/// Restore the newest checkpoint that reads back whole (`checkpoints` newest first):
/// a damaged one (truncated or garbled files) is passed over with a warning naming
/// it. Fails only when none is valid.
fn resume_from(
    checkpoints: &[PathBuf],
    config: &TrainConfig,
    parts: &mut Restorable,
    log: &dyn Fn(&str),
) -> Result<RunState, TrainError> {
    let mut damaged = Vec::new();
    for dir in checkpoints {
        let restored = checkpoint::load(dir)
            .map_err(TrainError::from)
            .and_then(|loaded| restore(&loaded, config, parts));
        match restored {
            Ok(state) => {
                log(&format!(
                    "resuming from {} (step {})",
                    dir.display(),
                    state.step
                ));
                return Ok(state);
            }
            Err(TrainError::Checkpoint(e)) => {
                log(&format!(
                    "warning: checkpoint {} is damaged ({e}); trying the one before it",
                    dir.display()
                ));
                damaged.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Err(TrainError::Config(format!(
        "--resume: no valid checkpoint in {}: {}; remove the damaged checkpoints to start \
         again there (the run folder's other outputs would be overwritten), or choose another --out",
        checkpoint::checkpoints_dir(&config.out).display(),
        damaged.join("; ")
    )))
}

/// Put a checkpoint's state into the model, optimizer, guard and scaler; the run's
/// progress it records.
fn restore(
    loaded: &checkpoint::Loaded,
    config: &TrainConfig,
    parts: &mut Restorable,
) -> Result<RunState, TrainError> {
    let Restorable {
        params,
        optimizer,
        guard,
        scaler,
    } = parts;
    let s = &loaded.state;
    distributed::check_resumed_world_size(s.world_size, config, &loaded.dir)?;
    if s.seed != config.seed {
        return Err(TrainError::Config(format!(
            "{} was trained with seed {}, not {}: a resumed run must keep its seed",
            loaded.dir.display(),
            s.seed,
            config.seed
        )));
    }
    checkpoint::restore_model(params, &loaded.model, &loaded.dir)?;
    optimizer
        .load_state(&loaded.optimizer, s.optimizer_steps)
        .map_err(|reason| checkpoint::CheckpointError::Invalid {
            path: loaded.dir.clone(),
            reason,
        })?;
    **guard = ExplosionGuard::with_state(config.guard.clone(), s.guard.clone());
    if scaler.is_some() {
        **scaler = Some(s.loss_scaler.clone().unwrap_or_default());
    }
    Ok(RunState {
        step: s.step,
        position: s.data_position,
        best: s.best,
        evals_without_improvement: s.evals_without_improvement,
        quarantine: s.quarantine.clone(),
        train_audio_s: s.train_audio_s,
        elapsed_before_s: s.elapsed_s,
    })
}

/// Write the resolved `config.json` and open `metrics.jsonl` (keeping the records up
/// to `step` on resume) and, unless turned off, the TensorBoard event files.
fn open_outputs(config: &TrainConfig, step: u64) -> Result<MetricsWriter, TrainError> {
    let config_path = config.out.join("config.json");
    let config_json = serde_json::to_string_pretty(config).unwrap_or_default();
    std::fs::write(&config_path, config_json.clone() + "\n").map_err(io_err(&config_path))?;
    let metrics_path = config.out.join("metrics.jsonl");
    let mut metrics = MetricsWriter::open(&metrics_path, (step > 0).then_some(step))?;
    if config.tensorboard {
        let runs = config.out.join(crate::tensorboard::RUNS_DIR);
        let text = format!("```json\n{config_json}\n```");
        let kept = read_metrics(&metrics_path)?;
        let events = crate::tensorboard::EventWriter::open(&runs, step, &text, &kept)
            .map_err(io_err(&runs))?;
        metrics.attach_tensorboard(events);
    }
    Ok(metrics)
}

fn optimizer_param_count(task: &Task) -> i64 {
    task.trainable_parameters()
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

fn batch_event(step: u64, event: GuardEvent, ids: &[String]) -> EventRecord {
    EventRecord {
        step,
        event,
        ids: ids.to_vec(),
        culprits: Vec::new(),
    }
}

/// Whether `(wer, cer)` is better than `best` by `metric` (`wer` or `cer`; ties go to
/// the other rate).
fn improves(metric: &str, (wer, cer): (f64, f64), best: (f64, f64)) -> bool {
    if metric == "cer" {
        cer < best.1 || (cer == best.1 && wer < best.0)
    } else {
        wer < best.0 || (wer == best.0 && cer < best.1)
    }
}

fn save_best(task: &Task, best_dir: &Path) -> Result<(), TrainError> {
    let parent = best_dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(".best.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    task.save_pretrained(&tmp)?;
    if best_dir.exists() {
        std::fs::remove_dir_all(best_dir).map_err(io_err(best_dir))?;
    }
    std::fs::rename(&tmp, best_dir).map_err(io_err(best_dir))?;
    Ok(())
}

/// The end-of-run table (printed to stderr).
pub fn summary_table(summary: &RunSummary, wall: Duration) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "\nrun finished ({}) after {} steps in {:.1} s: {:.1} audio s/s, {:.2} steps/s, {:.2}% of step time waiting for data\n",
        summary.stop_reason,
        summary.steps,
        wall.as_secs_f64(),
        summary.audio_s_per_s,
        summary.steps_per_s,
        100.0 * summary.data_wait_fraction
    ));
    if let Some(best) = summary.best {
        s.push_str(&format!(
            "best eval WER {:.4} (CER {:.4}) at step {}\n",
            best.wer, best.cer, best.step
        ));
    }
    s.push_str(&crate::eval::split_table(&summary.results.splits, true));
    if let Some(c) = summary.results.events {
        s.push_str(&format!(
            "events: {} non-finite losses, {} high losses, {} non-finite gradient steps ({} values), {} explosions, {} skipped updates, {} recoveries, {} clipped\n",
            c.nonfinite_loss, c.high_loss, c.nonfinite_grads, c.nonfinite_grad_values, c.explosions,
            c.skipped_updates, c.recoveries, c.clipped
        ));
    }
    if !summary.left_out.is_empty() {
        s.push_str(&format!(
            "{} utterances left out of training after repeated bad losses: {}\n",
            summary.left_out.len(),
            abbreviate(&summary.left_out)
        ));
    }
    if let Some(q) = &summary.results.quarantined {
        if !q.is_empty() {
            s.push_str(&format!(
                "{} utterances were in batches with repeated events, listed in {}/quarantine.txt: review them before excluding them with asr-data pack --exclude (a gradient event names its whole batch, so in a corpus of one batch the list names every utterance)\n",
                q.len(),
                summary.out.display()
            ));
        }
    }
    s.push_str(&format!("outputs in {}", summary.out.display()));
    s
}

#[cfg(test)]
mod split_selection_tests {
    use super::*;
    use crate::data::{MemorySource, Utterance};

    fn source(ids: &[&str]) -> Arc<dyn UtteranceSource> {
        Arc::new(MemorySource::new(
            ids.iter()
                .map(|id| Utterance {
                    id: id.to_string(),
                    audio: vec![0.0; 400],
                    labels: vec![1],
                    text: "a".into(),
                })
                .collect(),
        ))
    }

    fn librispeech_like() -> TrainData {
        let mut splits = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (name, role, ids) in [
            ("train-clean-100", "train", &["a1", "a2"][..]),
            ("train-other-500", "train", &["b1"][..]),
            ("dev-clean", "dev", &["c1"][..]),
            ("test-clean", "test", &["d1"][..]),
            ("test-other", "test", &["e1"][..]),
        ] {
            splits.insert(name.to_string(), source(ids));
            roles.insert(name.to_string(), role.to_string());
        }
        splits.insert("extra".to_string(), source(&["f1"]));
        TrainData {
            vocab: Vocab::from_chars("a".chars()),
            splits,
            roles,
            origin: "test".into(),
        }
    }

    #[test]
    fn a_role_selects_every_split_with_that_role() {
        let data = librispeech_like();
        assert_eq!(data.select("train"), ["train-clean-100", "train-other-500"]);
        let train = data.source("train").unwrap();
        let ids: Vec<&str> = train.index().iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2", "b1"]);
        assert_eq!(train.load(2).unwrap().id, "b1");
    }

    #[test]
    fn a_name_selects_that_split_only() {
        let data = librispeech_like();
        assert_eq!(data.select("test-other"), ["test-other"]);
        assert_eq!(data.select("extra"), ["extra"]);
        assert!(data.select("validation").is_empty());
        assert!(data.source("validation").is_none());
    }

    #[test]
    fn final_splits_expand_roles_once_each_in_order() {
        let data = librispeech_like();
        let names = data.select_all(&["test".into(), "dev".into(), "test-clean".into()]);
        assert_eq!(names, ["test-clean", "test-other", "dev-clean"]);
        assert!(data.describe_splits().contains("test-other (test)"));
    }
}
