//! The run configuration of `asr-train run`: a TOML file (`--config run.toml`, schema
//! `schemas/train-config.schema.json`) whose every key is also a command-line flag
//! (`batch_seconds` is `--batch-seconds`, `[guard] max_loss` is `--max-loss`); flags
//! override the file, the file overrides the defaults. The resolved configuration is
//! written to `RUN/config.json` so that a run states what it did.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::guard::{ClipMode, GuardConfig, NonFiniteGrads};
use crate::schedule::DecayKind;
use crate::whisper::eval::MetricChoice;

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// bf16 autocast on CUDA devices that support it, float32 on the CPU.
    #[default]
    Auto,
    /// float32 everywhere.
    F32,
    /// bfloat16 autocast (CUDA; also accepted on the CPU, where it is rarely faster).
    Bf16,
    /// float16 autocast with dynamic loss scaling (CUDA only).
    Fp16,
}

/// CTC loss reduction over a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossReduction {
    /// Each utterance's loss divided by its label length, then averaged.
    Mean,
    /// Summed over the batch.
    Sum,
}

/// Everything `asr-train run` needs to know; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Shard folder written by `asr-data pack` (holds manifest.json).
    pub shards: Option<PathBuf>,
    /// Model: a Hugging Face folder, a config.json (random weights) or a preset
    /// (`tiny`, `small`, `base`).
    pub model: String,
    /// Output folder of the run.
    pub out: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Forward-pass precision.
    pub precision: PrecisionChoice,
    /// Continue from the last checkpoint in `out`.
    pub resume: bool,
    /// Split to train on: a split name (`train-clean-100`), or a role (`train`) that
    /// selects every split the shard manifest gives that role.
    pub train_split: String,
    /// Split evaluated during training (best checkpoint, early stopping): a name, or a
    /// role whose splits are evaluated together; `none` (or empty) turns evaluation off.
    /// A selector that selects nothing is an error at start.
    pub eval_split: String,
    /// Splits evaluated with the best model at the end, each reported under its own
    /// name: names or roles (`dev,test` = every dev and test split present).
    pub final_splits: Vec<String>,
    /// Seed of shuffling, initialization, dropout and masking.
    pub seed: u64,
    /// Passes over the training split (when `max_steps` is not set).
    pub epochs: u32,
    /// Optimizer steps to run; overrides `epochs`.
    pub max_steps: Option<u64>,
    /// Stop training after this many minutes of wall-clock training time (evaluations
    /// included), then finish as usual (final evaluation, best model). The learning-rate
    /// schedule still spans `max_steps` / `epochs`: set those to what fits the time.
    pub max_minutes: Option<f64>,
    /// Cap of a batch's padded audio (utterances x longest utterance), in seconds.
    pub batch_seconds: f64,
    /// Cap of a batch's utterance count.
    pub max_batch_utterances: Option<usize>,
    /// Training utterances longer than this are left out (listed in the log).
    pub max_duration_s: Option<f64>,
    /// Batches accumulated into one optimizer step.
    pub grad_accum: u32,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up optimizer steps (default: `warmup_ratio` of the run).
    pub warmup_steps: Option<u64>,
    /// Warm-up as a fraction of the run's optimizer steps.
    pub warmup_ratio: f64,
    /// Decay after warm-up.
    pub decay: DecayKind,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay (not applied to biases and norm weights).
    pub weight_decay: f64,
    /// AdamW beta1.
    pub adam_beta1: f64,
    /// AdamW beta2.
    pub adam_beta2: f64,
    /// AdamW epsilon.
    pub adam_eps: f64,
    /// Keep the convolutional feature encoder fixed. Default (unset): frozen when
    /// fine-tuning pretrained weights (an HF folder), whose feature encoder already
    /// extracts good features and is easily damaged by CTC gradients (transformers'
    /// `freeze_feature_encoder()` in its CTC recipes); trained when the model starts
    /// from random weights (a preset or a config.json), since a frozen random feature
    /// encoder cannot learn anything.
    pub freeze_feature_encoder: Option<bool>,
    /// Replace the CTC head by a new one sized for the shards' vocabulary.
    pub reinit_head: bool,
    /// Changes to the model's run-time settings, `KEY=VALUE` with Hugging Face config
    /// names (`mask_time_prob=0`, `layerdrop=0.05`, `hidden_dropout=0`), applied after
    /// loading as transformers' `from_pretrained(..., mask_time_prob=0)` does: dropouts,
    /// `layerdrop`, SpecAugment `mask_*`, `apply_spec_augment`, `ctc_*`. Fields that
    /// shape the network (sizes, norms, vocabulary) are refused. VALUE is read as JSON
    /// (a number, `true`, `"mean"`), or as a string when it is not JSON.
    pub model_set: Vec<String>,
    /// Whisper models: the language code of the speech (`zh`, `en`), which puts its
    /// token in the labels and in the generation prompt (default: from the model's
    /// generation_config.json; a multilingual model needs one).
    pub language: Option<String>,
    /// Whisper models: `transcribe` or `translate` (default: `transcribe` when a language
    /// is given, else from generation_config.json).
    pub task: Option<String>,
    /// Whisper models: the headline metric that picks `best/` and drives early
    /// stopping: `auto` (CER for scripts written without spaces, WER otherwise), `wer`
    /// or `cer`. CTC runs keep WER.
    pub metric: MetricChoice,
    /// Whisper presets (`whisper-tiny`, `whisper-micro`): the multilingual
    /// `tokenizer.json` the random-weight model uses (a Whisper folder brings its own).
    pub tokenizer: Option<PathBuf>,
    /// CTC loss reduction (default: the model's `ctc_loss_reduction`).
    pub ctc_loss_reduction: Option<LossReduction>,
    /// Zero infinite CTC losses (default: the model's `ctc_zero_infinity`).
    pub ctc_zero_infinity: Option<bool>,
    /// Evaluate every this many optimizer steps (0: only at the end).
    pub eval_every: u64,
    /// Evaluate on at most this many utterances of the eval split during training.
    pub eval_max_utterances: Option<usize>,
    /// Batch cap for evaluation, in padded seconds (default: twice `batch_seconds`).
    pub eval_batch_seconds: Option<f64>,
    /// Stop after this many evaluations without a better eval WER.
    pub patience: Option<u32>,
    /// Save a checkpoint every this many optimizer steps (default: `eval_every`).
    pub save_every: Option<u64>,
    /// Checkpoints kept (the oldest are deleted).
    pub keep_checkpoints: usize,
    /// Plain log line every this many steps when output is not a terminal.
    pub log_every: u64,
    /// libtorch intra-op threads (default: the machine's cores).
    pub threads: Option<usize>,
    /// Batches the loader thread prepares ahead.
    pub prefetch_batches: usize,
    /// This process's rank for data parallelism (torchrun's RANK).
    pub rank: usize,
    /// Number of processes for data parallelism (torchrun's WORLD_SIZE).
    pub world_size: usize,
    /// Data parallelism: seconds the rendezvous and each collective may wait for the
    /// other ranks before the job ends with an error naming the missing ones.
    pub dist_timeout_s: f64,
    /// Blank-collapse watchdog: warn when at least this fraction of eval outputs is
    /// empty after warm-up.
    pub watchdog_blank_fraction: f64,
    /// Write TensorBoard event files to `out/runs/` (`tensorboard --logdir out/runs`).
    pub tensorboard: bool,
    /// Explosion handling.
    pub guard: GuardConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            shards: None,
            model: "tiny".into(),
            out: PathBuf::from("run"),
            device: "auto".into(),
            precision: PrecisionChoice::Auto,
            resume: false,
            train_split: "train".into(),
            eval_split: "dev".into(),
            final_splits: vec!["dev".into(), "test".into()],
            seed: 42,
            epochs: 10,
            max_steps: None,
            max_minutes: None,
            batch_seconds: 100.0,
            max_batch_utterances: None,
            max_duration_s: None,
            grad_accum: 1,
            lr: 1e-4,
            warmup_steps: None,
            warmup_ratio: 0.1,
            decay: DecayKind::Linear,
            min_lr_ratio: 0.0,
            weight_decay: 0.005,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            freeze_feature_encoder: None,
            reinit_head: false,
            model_set: Vec::new(),
            language: None,
            task: None,
            metric: MetricChoice::Auto,
            tokenizer: None,
            ctc_loss_reduction: None,
            ctc_zero_infinity: None,
            eval_every: 500,
            eval_max_utterances: None,
            eval_batch_seconds: None,
            patience: None,
            save_every: None,
            keep_checkpoints: 2,
            log_every: 10,
            threads: None,
            prefetch_batches: 4,
            rank: 0,
            world_size: 1,
            dist_timeout_s: 300.0,
            watchdog_blank_fraction: 0.9,
            tensorboard: true,
            guard: GuardConfig::default(),
        }
    }
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid run configuration (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl TrainConfig {
    /// Read a TOML run configuration.
    pub fn from_toml_file(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Check every value against its documented range (the ranges of
    /// `schemas/train-config.schema.json`, plus: numbers must be finite, `threads` at
    /// most [`MAX_THREADS`], `guard.max_loss` > 0). The message names the key, its
    /// flag, the allowed range and the value given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use Range::*;
        let floats: [(&str, Option<f64>, Range); 12] = [
            ("batch_seconds", Some(self.batch_seconds), Positive),
            ("max_minutes", self.max_minutes, Positive),
            ("max_duration_s", self.max_duration_s, Positive),
            ("lr", Some(self.lr), Positive),
            ("warmup_ratio", Some(self.warmup_ratio), Closed01),
            ("min_lr_ratio", Some(self.min_lr_ratio), Closed01),
            ("weight_decay", Some(self.weight_decay), NonNegative),
            ("adam_beta1", Some(self.adam_beta1), RightOpen01),
            ("adam_beta2", Some(self.adam_beta2), RightOpen01),
            ("adam_eps", Some(self.adam_eps), Positive),
            ("eval_batch_seconds", self.eval_batch_seconds, Positive),
            (
                "watchdog_blank_fraction",
                Some(self.watchdog_blank_fraction),
                Closed01,
            ),
        ];
        for (key, value, range) in floats {
            if let Some(value) = value {
                check_float(key, value, range)?;
            }
        }
        self.guard_validate()?;
        self.validate_counts()
    }

    fn guard_validate(&self) -> Result<(), ConfigError> {
        use Range::*;
        let g = &self.guard;
        let floats: [(&str, Option<f64>, Range); 8] = [
            ("guard.max_loss", g.max_loss, Positive),
            ("guard.grad_norm_limit", g.grad_norm_limit, Positive),
            ("guard.grad_norm_factor", g.grad_norm_factor, Positive),
            ("guard.stats_beta", Some(g.stats_beta), RightOpen01),
            ("guard.lr_decay", Some(g.lr_decay), Open01),
            ("guard.lr_floor", Some(g.lr_floor), LeftOpen01),
            ("guard.max_grad_norm", Some(g.max_grad_norm), Positive),
            ("guard.clip_z", Some(g.clip_z), NonNegative),
        ];
        for (key, value, range) in floats {
            if let Some(value) = value {
                check_float(key, value, range)?;
            }
        }
        if g.quarantine_after == 0 {
            return Err(invalid_key("guard.quarantine_after", "at least 1", "0"));
        }
        Ok(())
    }

    /// The integer options' ranges.
    fn validate_counts(&self) -> Result<(), ConfigError> {
        let at_least_one: [(&str, Option<u64>); 10] = [
            ("grad_accum", Some(u64::from(self.grad_accum))),
            ("max_steps", self.max_steps),
            (
                "max_batch_utterances",
                self.max_batch_utterances.map(|n| n as u64),
            ),
            (
                "eval_max_utterances",
                self.eval_max_utterances.map(|n| n as u64),
            ),
            ("patience", self.patience.map(u64::from)),
            ("save_every", self.save_every),
            ("keep_checkpoints", Some(self.keep_checkpoints as u64)),
            ("log_every", Some(self.log_every)),
            ("prefetch_batches", Some(self.prefetch_batches as u64)),
            ("world_size", Some(self.world_size as u64)),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, v)| *v == Some(0)) {
            return Err(invalid_key(key, "at least 1", "0"));
        }
        check_threads(self.threads)?;
        if !(self.dist_timeout_s.is_finite() && self.dist_timeout_s >= 1.0) {
            return Err(ConfigError::Invalid(format!(
                "dist_timeout_s (--dist-timeout) must be at least 1 second, got {}",
                self.dist_timeout_s
            )));
        }
        if self.rank >= self.world_size {
            return Err(ConfigError::Invalid(format!(
                "rank {} is not below world_size {} (--rank, --world-size)",
                self.rank, self.world_size
            )));
        }
        if self.max_steps.is_none() && self.epochs == 0 {
            return Err(ConfigError::Invalid(
                "epochs must be at least 1 (or set max_steps)".into(),
            ));
        }
        Ok(())
    }
}

/// Most libtorch threads a command accepts. More than the machine's cores only slows
/// libtorch down; thousands of threads exhaust the process's limits. Chosen fixed
/// (not from the core count) so that a configuration file means the same on every
/// machine.
pub const MAX_THREADS: usize = 1024;

/// `threads` must be within `1..=MAX_THREADS` when given.
pub fn check_threads(threads: Option<usize>) -> Result<(), ConfigError> {
    match threads {
        Some(n) if n == 0 || n > MAX_THREADS => Err(invalid_key(
            "threads",
            &format!(
                "between 1 and {MAX_THREADS} (this machine has {} cores; omit it to use them all)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            &n.to_string(),
        )),
        _ => Ok(()),
    }
}

/// The allowed range of a float option; every range also requires a finite number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// > 0
    Positive,
    /// >= 0
    NonNegative,
    /// [0, 1]
    Closed01,
    /// [0, 1)
    RightOpen01,
    /// (0, 1)
    Open01,
    /// (0, 1]
    LeftOpen01,
}

impl Range {
    /// Whether `v` is finite and in the range.
    pub fn contains(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Range::Positive => v > 0.0,
                Range::NonNegative => v >= 0.0,
                Range::Closed01 => (0.0..=1.0).contains(&v),
                Range::RightOpen01 => (0.0..1.0).contains(&v),
                Range::Open01 => v > 0.0 && v < 1.0,
                Range::LeftOpen01 => v > 0.0 && v <= 1.0,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Positive => "a finite number > 0",
            Range::NonNegative => "a finite number >= 0",
            Range::Closed01 => "a number within [0, 1]",
            Range::RightOpen01 => "a number within [0, 1) (0 included, 1 excluded)",
            Range::Open01 => "a number within (0, 1) (0 and 1 excluded)",
            Range::LeftOpen01 => "a number within (0, 1] (0 excluded, 1 included)",
        }
    }
}

/// `key (--flag) must be RANGE, got VALUE` unless `value` is in `range`. `key` is the
/// configuration key (`guard.lr_decay`); its flag is the last part with dashes.
pub fn check_float(key: &str, value: f64, range: Range) -> Result<(), ConfigError> {
    if range.contains(value) {
        Ok(())
    } else {
        Err(invalid_key(key, range.describe(), &value.to_string()))
    }
}

fn invalid_key(key: &str, allowed: &str, got: &str) -> ConfigError {
    let flag = key.rsplit('.').next().unwrap_or(key).replace('_', "-");
    ConfigError::Invalid(format!("{key} (--{flag}) must be {allowed}, got {got}"))
}

/// Command-line flags of `asr-train run`; every key of [`TrainConfig`] has one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML run configuration; flags given here override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Shard folder written by `asr-data pack`.
    #[arg(long, value_name = "DIR")]
    pub shards: Option<PathBuf>,
    /// Hugging Face model folder, Hub id org/name[@revision], config.json, or preset
    /// (tiny, small, base) [default: tiny].
    #[arg(long, value_name = "HF_DIR|PRESET")]
    pub model: Option<String>,
    /// Output folder [default: run].
    #[arg(long, value_name = "RUN")]
    pub out: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// Forward-pass precision [default: auto].
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionChoice>,
    /// Continue from the last checkpoint in the output folder.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub resume: Option<bool>,
    /// Split to train on: a name, or a role (train) for every split with that role [default: train].
    #[arg(long)]
    pub train_split: Option<String>,
    /// Split evaluated during training: a name, or a role evaluated as one; `none` turns
    /// evaluation off [default: dev].
    #[arg(long)]
    pub eval_split: Option<String>,
    /// Splits evaluated at the end, comma-separated names or roles, each reported by name [default: dev,test].
    #[arg(long, value_delimiter = ',')]
    pub final_splits: Option<Vec<String>>,
    /// Seed [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Passes over the training split [default: 10].
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Optimizer steps; overrides --epochs.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Stop after this many minutes of training (evaluations included).
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// Padded audio seconds per batch [default: 100].
    #[arg(long)]
    pub batch_seconds: Option<f64>,
    /// Utterances per batch at most.
    #[arg(long)]
    pub max_batch_utterances: Option<usize>,
    /// Leave out training utterances longer than this (seconds).
    #[arg(long)]
    pub max_duration_s: Option<f64>,
    /// Batches per optimizer step [default: 1].
    #[arg(long)]
    pub grad_accum: Option<u32>,
    /// Peak learning rate [default: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps [default: warmup_ratio of the run].
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Warm-up fraction of the run [default: 0.1].
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Decay after warm-up [default: linear].
    #[arg(long, value_enum)]
    pub decay: Option<DecayKind>,
    /// Final learning rate as a fraction of the peak [default: 0].
    #[arg(long)]
    pub min_lr_ratio: Option<f64>,
    /// AdamW weight decay [default: 0.005].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW beta1 [default: 0.9].
    #[arg(long)]
    pub adam_beta1: Option<f64>,
    /// AdamW beta2 [default: 0.999].
    #[arg(long)]
    pub adam_beta2: Option<f64>,
    /// AdamW epsilon [default: 1e-8].
    #[arg(long)]
    pub adam_eps: Option<f64>,
    /// Keep the feature encoder fixed [default: true for pretrained weights, false for presets and config.json files].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub freeze_feature_encoder: Option<bool>,
    /// New CTC head for the shards' vocabulary.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub reinit_head: Option<bool>,
    /// Model setting KEY=VALUE, e.g. `mask_time_prob=0,hidden_dropout=0` (repeatable;
    /// replaces the config file's list).
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    pub model_set: Option<Vec<String>>,
    /// Whisper models: language code of the speech (zh, en, ...) [default: from
    /// generation_config.json].
    #[arg(long)]
    pub language: Option<String>,
    /// Whisper models: transcribe or translate [default: transcribe].
    #[arg(long)]
    pub task: Option<String>,
    /// Whisper models: metric that picks best/ and drives early stopping; auto picks
    /// CER for scripts written without spaces [default: auto].
    #[arg(long, value_enum)]
    pub metric: Option<MetricChoice>,
    /// Whisper presets: the multilingual tokenizer.json to use.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// CTC loss reduction [default: the model's].
    #[arg(long, value_enum)]
    pub ctc_loss_reduction: Option<LossReduction>,
    /// Zero infinite CTC losses [default: the model's].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ctc_zero_infinity: Option<bool>,
    /// Evaluate every N steps; 0 only at the end [default: 500].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Utterances of the eval split used during training.
    #[arg(long)]
    pub eval_max_utterances: Option<usize>,
    /// Padded seconds per eval batch [default: 2 x batch-seconds].
    #[arg(long)]
    pub eval_batch_seconds: Option<f64>,
    /// Stop after N evaluations without improvement.
    #[arg(long)]
    pub patience: Option<u32>,
    /// Checkpoint every N steps [default: eval-every].
    #[arg(long)]
    pub save_every: Option<u64>,
    /// Checkpoints kept [default: 2].
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Plain log line every N steps when piped [default: 10].
    #[arg(long)]
    pub log_every: Option<u64>,
    /// libtorch threads, 1 to 1024 [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Batches prepared ahead [default: 4].
    #[arg(long)]
    pub prefetch_batches: Option<usize>,
    /// Data-parallel rank [default: $RANK or 0].
    #[arg(long, env = "RANK")]
    pub rank: Option<usize>,
    /// Data-parallel world size [default: $WORLD_SIZE or 1].
    #[arg(long, env = "WORLD_SIZE")]
    pub world_size: Option<usize>,
    /// Data parallelism: seconds to wait for the other ranks (rendezvous, each
    /// collective) before failing with the missing ranks named [default: 300].
    #[arg(long = "dist-timeout", value_name = "SECONDS")]
    pub dist_timeout_s: Option<f64>,
    /// Blank-collapse warning threshold [default: 0.9].
    #[arg(long)]
    pub watchdog_blank_fraction: Option<f64>,
    /// TensorBoard event files in RUN/runs/ [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tensorboard: Option<bool>,
    /// No TensorBoard event files (same as `--tensorboard false`).
    #[arg(long, conflicts_with = "tensorboard")]
    pub no_tensorboard: bool,
    /// [guard] Skip batches whose loss is above this.
    #[arg(long, help_heading = "Explosion guard")]
    pub max_loss: Option<f64>,
    /// [guard] Non-finite gradient values: zero them or skip the update [default: zero].
    #[arg(long, value_enum, help_heading = "Explosion guard")]
    pub nonfinite_grads: Option<NonFiniteGrads>,
    /// [guard] Absolute gradient-norm limit (skip + lr decay above it).
    #[arg(long, help_heading = "Explosion guard")]
    pub grad_norm_limit: Option<f64>,
    /// [guard] Relative limit: k x running mean norm [default: 10].
    #[arg(long, help_heading = "Explosion guard")]
    pub grad_norm_factor: Option<f64>,
    /// [guard] Norms seen before relative limits apply [default: 20].
    #[arg(long, help_heading = "Explosion guard")]
    pub stats_warmup_steps: Option<u64>,
    /// [guard] Smoothing of running norm statistics [default: 0.98].
    #[arg(long, help_heading = "Explosion guard")]
    pub stats_beta: Option<f64>,
    /// [guard] Learning-rate factor per explosion [default: 0.5].
    #[arg(long, help_heading = "Explosion guard")]
    pub lr_decay: Option<f64>,
    /// [guard] Lowest learning-rate scale [default: 0.01].
    #[arg(long, help_heading = "Explosion guard")]
    pub lr_floor: Option<f64>,
    /// [guard] Clean steps before the rate climbs back a notch [default: 50].
    #[arg(long, help_heading = "Explosion guard")]
    pub recovery_steps: Option<u64>,
    /// [guard] Clipping: fixed, adaptive or none [default: fixed].
    #[arg(long, value_enum, help_heading = "Explosion guard")]
    pub clip: Option<ClipMode>,
    /// [guard] Fixed clipping norm [default: 1.0].
    #[arg(long, help_heading = "Explosion guard")]
    pub max_grad_norm: Option<f64>,
    /// [guard] Adaptive clipping: mean + z x std [default: 3].
    #[arg(long, help_heading = "Explosion guard")]
    pub clip_z: Option<f64>,
    /// [guard] Events before an utterance is quarantined [default: 2].
    #[arg(long, help_heading = "Explosion guard")]
    pub quarantine_after: Option<u32>,
    /// [guard] Relative-limit explosions in a row before the next is accepted and the
    /// statistics restart (0: never) [default: 5].
    #[arg(long, help_heading = "Explosion guard")]
    pub max_skips_in_a_row: Option<u32>,
}

macro_rules! set {
    ($args:ident, $cfg:expr, [$($field:ident),* $(,)?]) => {
        $( if let Some(v) = $args.$field.clone() { $cfg.$field = v; } )*
    };
}

macro_rules! set_some {
    ($args:ident, $cfg:expr, [$($field:ident),* $(,)?]) => {
        $( if let Some(v) = $args.$field.clone() { $cfg.$field = Some(v); } )*
    };
}

impl RunArgs {
    /// The configuration: defaults, then the `--config` file, then these flags.
    pub fn resolve(&self) -> Result<TrainConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => TrainConfig::from_toml_file(path)?,
            None => TrainConfig::default(),
        };
        self.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// Override `config` with every flag given.
    pub fn apply(&self, config: &mut TrainConfig) {
        let a = self;
        set_some!(
            a,
            config,
            [
                shards,
                max_steps,
                max_minutes,
                max_batch_utterances,
                max_duration_s,
                warmup_steps,
                ctc_loss_reduction,
                ctc_zero_infinity,
                language,
                task,
                tokenizer,
                eval_max_utterances,
                eval_batch_seconds,
                patience,
                save_every,
                threads,
                freeze_feature_encoder
            ]
        );
        set!(
            a,
            config,
            [
                model,
                out,
                device,
                precision,
                resume,
                train_split,
                eval_split,
                final_splits,
                seed,
                epochs,
                batch_seconds,
                grad_accum,
                lr,
                warmup_ratio,
                decay,
                min_lr_ratio,
                weight_decay,
                adam_beta1,
                adam_beta2,
                adam_eps,
                reinit_head,
                model_set,
                metric,
                eval_every,
                keep_checkpoints,
                log_every,
                prefetch_batches,
                rank,
                world_size,
                dist_timeout_s,
                watchdog_blank_fraction,
                tensorboard
            ]
        );
        set_some!(a, config.guard, [max_loss, grad_norm_limit]);
        set!(
            a,
            config.guard,
            [
                nonfinite_grads,
                stats_warmup_steps,
                stats_beta,
                lr_decay,
                lr_floor,
                recovery_steps,
                clip,
                max_grad_norm,
                clip_z,
                quarantine_after,
                max_skips_in_a_row
            ]
        );
        config.tensorboard &= !a.no_tensorboard;
        if let Some(k) = a.grad_norm_factor {
            // 0 turns the relative limit off; anything else is validated.
            config.guard.grad_norm_factor = (k != 0.0).then_some(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("run.example.toml")
    }

    fn schema() -> serde_json::Value {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/train-config.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// What the train-config schema says is wrong with `value` (nothing: empty).
    fn schema_errors(value: &serde_json::Value) -> Vec<String> {
        let schema = schema();
        let validator = jsonschema::validator_for(&schema).unwrap();
        validator
            .iter_errors(value)
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn example_config_parses_and_validates_against_the_schema() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let config: TrainConfig = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        let value: serde_json::Value = toml::from_str(&text).unwrap();
        let errors = schema_errors(&value);
        assert!(errors.is_empty(), "{errors:?}");
        // The resolved defaults validate too (written to RUN/config.json).
        let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
        let errors = schema_errors(&defaults);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn schema_lists_exactly_the_config_keys() {
        let schema = schema();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let config = serde_json::to_value(TrainConfig::default()).unwrap();
        assert_eq!(keys(&schema["properties"]), keys(&config));
        assert_eq!(
            keys(&schema["properties"]["guard"]["properties"]),
            keys(&config["guard"])
        );
        let bad = serde_json::json!({"batch_secnds": 3});
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(!validator.is_valid(&bad));
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "lr = 3e-4\nbatch_seconds = 40.0\nresume = true\n[guard]\nmax_loss = 500.0\nclip = \"adaptive\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--lr",
            "1e-3",
            "--resume=false",
            "--grad-norm-limit",
            "5",
            "--final-splits",
            "test,dev",
        ]);
        let config = cli.run.resolve().unwrap();
        assert_eq!(config.lr, 1e-3);
        assert_eq!(config.batch_seconds, 40.0);
        assert!(!config.resume);
        assert_eq!(config.guard.max_loss, Some(500.0));
        assert_eq!(config.guard.clip, ClipMode::Adaptive);
        assert_eq!(config.guard.grad_norm_limit, Some(5.0));
        assert_eq!(config.final_splits, ["test", "dev"]);
        assert_eq!(config.seed, 42);
        let cli = Cli::parse_from(["x", "--freeze-feature-encoder=false", "--reinit-head"]);
        let config = cli.run.resolve().unwrap();
        assert!(config.freeze_feature_encoder == Some(false) && config.reinit_head);
    }

    #[test]
    fn tensorboard_is_on_unless_turned_off() {
        let resolve = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?;
            Ok::<_, clap::Error>(cli.run.resolve().unwrap().tensorboard)
        };
        assert!(resolve(&[]).unwrap());
        assert!(!resolve(&["--no-tensorboard"]).unwrap());
        assert!(!resolve(&["--tensorboard", "false"]).unwrap());
        assert!(resolve(&["--tensorboard"]).unwrap());
        assert!(resolve(&["--tensorboard", "--no-tensorboard"]).is_err());
        let file: TrainConfig = toml::from_str("tensorboard = false").unwrap();
        assert!(!file.tensorboard);
    }

    #[test]
    fn learning_run_recipes_parse_and_validate() {
        // tools/learning-run/run.sh passes these files with --config; a key renamed here
        // would otherwise only fail 45 minutes into nothing.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/learning-run");
        for (recipe, model) in [
            ("small", "small"),
            ("reference", "tools/learning-run/reference-model.json"),
        ] {
            let path = dir.join(format!("{recipe}.toml"));
            let config = TrainConfig::from_toml_file(&path).unwrap();
            config.validate().unwrap();
            let value: serde_json::Value =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let errors = schema_errors(&value);
            assert!(errors.is_empty(), "{recipe}: {errors:?}");
            assert_eq!(config.model, model);
            assert_eq!((config.lr, config.warmup_steps), (1e-3, Some(150)));
            assert_eq!((config.batch_seconds, config.seed), (40.0, 0));
            assert_eq!(config.threads, Some(2));
            assert_eq!(config.final_splits, ["dev", "test-clean", "test-heldout"]);
        }
    }

    #[test]
    fn bad_files_name_the_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "lr = 1e-4\nbatch_secnds = 3\n").unwrap();
        let err = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("run.toml") && err.contains("batch_secnds") && err.contains("line 2"),
            "{err}"
        );
        std::fs::write(&path, "lr = \"fast\"\n").unwrap();
        let err = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let cli = Cli::parse_from(["x", "--grad-accum", "0"]);
        assert!(cli
            .run
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("grad_accum"));
    }
    fn resolve_err(args: &[&str]) -> String {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).run.resolve().unwrap_err().to_string()
    }

    #[test]
    fn every_float_option_must_be_finite_and_in_range() {
        // (flag, a value outside its range): NaN and infinities too for each.
        let cases: [(&str, &str, &str); 21] = [
            ("--lr", "0", "> 0"),
            ("--weight-decay", "-0.1", ">= 0"),
            ("--adam-beta1", "1", "[0, 1)"),
            ("--adam-beta2", "-0.5", "[0, 1)"),
            ("--adam-eps", "0", "> 0"),
            ("--batch-seconds", "0", "> 0"),
            ("--warmup-ratio", "1.5", "[0, 1]"),
            ("--min-lr-ratio", "-1", "[0, 1]"),
            ("--max-minutes", "0", "> 0"),
            ("--max-duration-s", "-3", "> 0"),
            ("--eval-batch-seconds", "0", "> 0"),
            ("--watchdog-blank-fraction", "2", "[0, 1]"),
            ("--max-loss", "0", "> 0"),
            ("--grad-norm-limit", "-1", "> 0"),
            ("--grad-norm-factor", "-2", "> 0"),
            ("--stats-beta", "1", "[0, 1)"),
            ("--lr-decay", "1", "(0, 1)"),
            ("--lr-floor", "0", "(0, 1]"),
            ("--max-grad-norm", "0", "> 0"),
            ("--clip-z", "-1", ">= 0"),
            ("--lr-decay", "0", "(0, 1)"),
        ];
        for (flag, bad, range) in cases {
            let key = flag.trim_start_matches("--").replace('-', "_");
            for value in [bad, "nan", "NaN", "inf", "-inf"] {
                let err = resolve_err(&[&format!("{flag}={value}")]);
                assert!(
                    err.contains(&key) && err.contains(flag) && err.contains(range),
                    "{flag}={value}: {err}"
                );
            }
        }
        // The case, and the same key in a TOML file (TOML has nan and inf).
        let err = resolve_err(&["--weight-decay", "nan"]);
        assert!(
            err.contains("weight_decay (--weight-decay) must be a finite number >= 0, got NaN"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        for (text, key) in [
            ("weight_decay = nan\n", "weight_decay"),
            ("adam_eps = inf\n", "adam_eps"),
            ("[guard]\nlr_floor = -inf\n", "guard.lr_floor (--lr-floor)"),
            ("[guard]\nquarantine_after = 0\n", "guard.quarantine_after"),
            ("keep_checkpoints = 0\n", "keep_checkpoints"),
            ("threads = 0\n", "threads"),
        ] {
            let path = dir.path().join("run.toml");
            std::fs::write(&path, text).unwrap();
            let config = TrainConfig::from_toml_file(&path).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        // Values at the edge of their range are accepted; 0 turns the relative limit off.
        let ok = Cli::parse_from([
            "x",
            "--weight-decay",
            "0",
            "--adam-beta1",
            "0",
            "--warmup-ratio",
            "1",
            "--lr-floor",
            "1",
            "--clip-z",
            "0",
            "--grad-norm-factor",
            "0",
        ]);
        let config = ok.run.resolve().unwrap();
        assert_eq!(config.guard.grad_norm_factor, None);
    }

    #[test]
    fn threads_must_be_between_one_and_the_cap() {
        for bad in ["0", "100000", &(MAX_THREADS + 1).to_string()] {
            let err = resolve_err(&["--threads", bad]);
            assert!(
                err.contains("threads (--threads) must be between 1 and 1024"),
                "{bad}: {err}"
            );
        }
        for good in ["1", "1024"] {
            let cli = Cli::parse_from(["x", "--threads", good]);
            assert!(cli.run.resolve().is_ok(), "{good}");
        }
    }
}
