//! The task a run trains, plugged into the one training loop ([`crate::trainer`]): CTC
//! (wav2vec2 / HuBERT) or sequence-to-sequence (Whisper). The task follows the model
//! `--model` names ([`crate::whisper::ModelKind`]).
//!
//! What a task gives the loop: the training source (Whisper: the utterances with
//! labels, see [`LabeledSource`]), the per-row losses of a micro-batch for the
//! explosion guard and the loss to backward over the rows it keeps, the parameters
//! (optimizer, checkpoints, gradient all-reduce), evaluation, and `best/` as a Hugging
//! Face folder.
//!
//! **Seq2seq loss.** transformers' `WhisperForConditionalGeneration` loss: the mean
//! cross-entropy over every label token of the micro-batch that is not -100 (a token
//! mean over the batch, not a mean of row means). The guard sees each row's own token
//! mean; a row it masks out (a non-finite loss) is left out of the loss: the rows kept
//! are forwarded again on their own and their token mean backwarded, so the step goes
//! on.
//! With `--grad-accum N` the step backwards the mean of its N micro-batch losses (CTC
//! does the same); `metrics.jsonl` records that mean, which is the value backwarded.

use std::path::Path;
use std::sync::Arc;

use asr_model::precision::{Autocast, Precision};
use asr_model::{CtcModel, ParamStore};
use asr_text::{ctc_min_frames, Vocab};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::config::{LossReduction, TrainConfig};
use crate::data::{Batch, DataError, UtteranceSource};
use crate::eval::{
    self, batch_tensors, ctc_losses, normalized_losses, reduce_losses, EvalOutput, LossSettings,
};
use crate::trainer::{TrainData, TrainError};
use crate::whisper::eval::MetricChoice;
use crate::whisper::labels::{tokenize_source_in, LabelSet, LabeledSource};
use crate::whisper::{is_preset, ModelKind, WhisperBundle};

/// The model of a run with what its task needs.
pub enum Task {
    /// wav2vec2 / HuBERT with a CTC head.
    Ctc(Box<CtcTask>),
    /// Whisper, trained on token labels and evaluated by generation.
    Seq2Seq(Box<Seq2SeqTask>),
}

/// A CTC model, its vocabulary and loss settings.
pub struct CtcTask {
    /// The model.
    pub model: CtcModel,
    vocab: Vocab,
    loss: LossSettings,
}

/// A Whisper model, its forced prompt, the labels of the training split and the metric.
pub struct Seq2SeqTask {
    /// The model with its tokenizer and feature extractor.
    pub bundle: WhisperBundle,
    /// `<|startoftranscript|> <|lang|> <|task|> <|notimestamps|>`.
    pub prompt: Vec<i64>,
    /// The training split's labels and the utterances left out.
    pub labels: LabelSet,
    metric: MetricChoice,
}

/// One micro-batch forward: the per-row losses the guard checks and what the backward
/// needs.
pub struct Forward {
    /// Each row's loss as the guard sees it (CTC: per label under mean reduction;
    /// seq2seq: the row's token-mean cross-entropy).
    pub normalized: Vec<f64>,
    /// Whether each row's labels can be emitted (CTC frames; always for seq2seq).
    pub feasible: Vec<bool>,
    graph: Graph,
}

enum Graph {
    Ctc {
        logits: Tensor,
        output_lengths: Vec<i64>,
        labels: Tensor,
        label_lengths: Vec<i64>,
        losses: Tensor,
    },
    Seq2Seq {
        features: Tensor,
        logits: Tensor,
        labels: Tensor,
        sums: Tensor,
        counts: Vec<i64>,
    },
}

impl Task {
    /// The model `config.model` names, for training on `train` of `data`: a CTC model
    /// checked against the shards' vocabulary, or a Whisper model with the training
    /// labels tokenized (and the utterances left out logged by reason).
    pub fn build(
        config: &TrainConfig,
        data: &TrainData,
        train: &dyn UtteranceSource,
        device: Device,
        log: &dyn Fn(&str),
    ) -> Result<Task, TrainError> {
        if model_kind(&config.model) == ModelKind::Ctc {
            let model = crate::trainer::build_model(config, &data.vocab, &data.origin, device)?;
            let loss = ctc_loss_settings(config, &model);
            return Ok(Task::Ctc(Box::new(CtcTask {
                model,
                vocab: data.vocab.clone(),
                loss,
            })));
        }
        let task = Seq2SeqTask::build(config, train, device)?;
        log(&task.skip_summary(train.index().len()));
        Ok(Task::Seq2Seq(Box::new(task)))
    }

    /// `ctc` or `seq2seq`.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Ctc(_) => "ctc",
            Task::Seq2Seq(_) => "seq2seq",
        }
    }

    /// Every parameter and buffer by HF name (checkpoints).
    pub fn params(&self) -> &ParamStore {
        match self {
            Task::Ctc(t) => t.model.params(),
            Task::Seq2Seq(t) => t.bundle.model.params(),
        }
    }

    /// The parameters the optimizer updates (and the ranks all-reduce).
    pub fn trainable_parameters(&self) -> Vec<(&str, &Tensor)> {
        match self {
            Task::Ctc(t) => t.model.trainable_parameters(),
            Task::Seq2Seq(t) => t.bundle.model.trainable_parameters(),
        }
    }

    /// config.json's `model_type` (`wav2vec2`, `hubert`, `whisper`).
    pub fn model_type(&self) -> String {
        match self {
            Task::Ctc(t) => serde_json::to_value(t.model.config().model_type)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            Task::Seq2Seq(_) => "whisper".into(),
        }
    }

    /// Shortest clip the model takes, in samples.
    pub fn min_samples(&self) -> u64 {
        match self {
            Task::Ctc(t) => t.model.config().min_num_samples().max(1) as u64,
            Task::Seq2Seq(_) => 1,
        }
    }

    /// Whether batches hold normalized audio (wav2vec2) or the samples as read (Whisper).
    pub fn normalize_audio(&self) -> bool {
        matches!(self, Task::Ctc(_))
    }

    /// The source the loop batches: `train` itself (CTC), or its utterances with
    /// Whisper labels, each counted as a 30-s window (seq2seq, see [`LabeledSource`]).
    pub fn train_source(&self, train: Arc<dyn UtteranceSource>) -> Arc<dyn UtteranceSource> {
        match self {
            Task::Ctc(_) => train,
            Task::Seq2Seq(t) => Arc::new(LabeledSource::new(train, &t.labels, t.window())),
        }
    }

    /// Forward one micro-batch in training mode and take its per-row losses.
    pub fn forward(
        &self,
        batch: &Batch,
        precision: Precision,
        rng: &mut ChaCha8Rng,
    ) -> Result<Forward, TrainError> {
        match self {
            Task::Ctc(t) => t.forward(batch, precision, rng),
            Task::Seq2Seq(t) => t.forward(batch, precision, rng),
        }
    }

    /// The loss to backward over the rows `keep` of `fwd` (all rows: the batch loss).
    /// `fwd` is consumed: a seq2seq step with masked rows frees its graph before it
    /// forwards the kept rows again.
    pub fn kept_loss(
        &self,
        fwd: Forward,
        keep: &[usize],
        precision: Precision,
    ) -> Result<Tensor, TrainError> {
        match (self, &fwd.graph) {
            (Task::Ctc(t), Graph::Ctc { .. }) => t.kept_loss(&fwd, keep, precision),
            (Task::Seq2Seq(t), Graph::Seq2Seq { .. }) => t.kept_loss(fwd, keep, precision),
            _ => Err(TrainError::Config(
                "a forward of one task given to another".into(),
            )),
        }
    }

    /// Evaluates `source` (its first `limit` utterances): CTC greedy decoding, or
    /// Whisper generation with the run's prompt.
    pub fn evaluate(
        &self,
        source: Arc<dyn UtteranceSource>,
        limit: Option<usize>,
        batch_seconds: f64,
        precision: Precision,
    ) -> Result<EvalOutput, DataError> {
        match self {
            Task::Ctc(t) => eval::evaluate(
                &t.model,
                &t.vocab,
                source,
                limit,
                batch_seconds,
                precision,
                t.loss,
            ),
            Task::Seq2Seq(t) => {
                crate::whisper::eval::evaluate(&t.bundle, source, &t.prompt, batch_seconds, limit)
                    .map_err(|e| DataError(e.to_string()))
            }
        }
    }

    /// The metric that ranks evaluations (`wer` or `cer`) given their predictions:
    /// WER for CTC; for seq2seq, `--metric` (auto: by the references' script).
    pub fn metric(&self, output: &EvalOutput) -> &'static str {
        match self {
            Task::Ctc(_) => "wer",
            Task::Seq2Seq(t) => t
                .metric
                .resolve(output.predictions.iter().map(|p| p.reference.as_str())),
        }
    }

    /// Writes the model as a Hugging Face folder at `dir`.
    pub fn save_pretrained(&self, dir: &Path) -> Result<(), TrainError> {
        match self {
            Task::Ctc(t) => Ok(t.model.save_pretrained(dir, &t.vocab)?),
            Task::Seq2Seq(t) => t.bundle.save_pretrained(dir),
        }
    }

    /// Training utterances left out before training, by reason (seq2seq; `None` for
    /// CTC, whose pack already left them out).
    pub fn left_out_counts(&self) -> Option<std::collections::BTreeMap<String, usize>> {
        match self {
            Task::Ctc(_) => None,
            Task::Seq2Seq(t) => Some(
                t.labels
                    .skip_counts()
                    .into_iter()
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect(),
            ),
        }
    }

    /// The CTC model, for the hooks that plant faults in tests.
    pub fn ctc_model(&self) -> Option<&CtcModel> {
        match self {
            Task::Ctc(t) => Some(&t.model),
            Task::Seq2Seq(_) => None,
        }
    }
}

/// The kind of `--model`, a Hub id judged by the snapshot it resolves to.
fn model_kind(model: &str) -> ModelKind {
    match asr_model::ModelSpec::parse(model) {
        Ok(asr_model::ModelSpec::Pretrained(dir)) => ModelKind::of(&dir.to_string_lossy()),
        _ => ModelKind::of(model),
    }
}

/// The CTC loss settings: the configuration's, else the model's.
fn ctc_loss_settings(config: &TrainConfig, model: &CtcModel) -> LossSettings {
    let reduction = config
        .ctc_loss_reduction
        .unwrap_or(match model.config().ctc_loss_reduction {
            asr_model::CtcLossReduction::Sum => LossReduction::Sum,
            asr_model::CtcLossReduction::Mean => LossReduction::Mean,
        });
    LossSettings {
        reduction,
        zero_infinity: config
            .ctc_zero_infinity
            .unwrap_or(model.config().ctc_zero_infinity),
    }
}

impl CtcTask {
    fn forward(
        &self,
        batch: &Batch,
        precision: Precision,
        rng: &mut ChaCha8Rng,
    ) -> Result<Forward, TrainError> {
        let device = self.model.device();
        let (input, labels) = batch_tensors(batch, device);
        let label_lengths: Vec<i64> = batch.label_ids.iter().map(|l| l.len() as i64).collect();
        let _autocast = Autocast::enter(device, precision);
        let output = self
            .model
            .forward_padded(&input, &batch.lengths, true, Some(rng))?;
        let losses = ctc_losses(
            &self.model,
            &output.logits,
            &output.output_lengths,
            &labels,
            &label_lengths,
            self.loss.zero_infinity,
        )?;
        let values =
            Vec::<f64>::try_from(&losses.detach().to_kind(Kind::Double).to_device(Device::Cpu))?;
        let normalized = normalized_losses(&values, &label_lengths, self.loss.reduction);
        let feasible = batch
            .label_ids
            .iter()
            .zip(&output.output_lengths)
            .map(|(labels, &frames)| ctc_min_frames(labels) <= frames.max(0) as u64)
            .collect();
        Ok(Forward {
            normalized,
            feasible,
            graph: Graph::Ctc {
                logits: output.logits,
                output_lengths: output.output_lengths,
                labels,
                label_lengths,
                losses,
            },
        })
    }

    /// When some rows are masked out, the CTC loss is taken again over the logits of
    /// the others only: the CTC gradient of an infinite loss is NaN even when
    /// multiplied by zero, and the masked rows' logits must get an exact zero gradient.
    fn kept_loss(
        &self,
        fwd: &Forward,
        keep: &[usize],
        precision: Precision,
    ) -> Result<Tensor, TrainError> {
        let Graph::Ctc {
            logits,
            output_lengths,
            labels,
            label_lengths,
            losses,
        } = &fwd.graph
        else {
            return Err(TrainError::Config("not a CTC forward".into()));
        };
        let reduction = self.loss.reduction;
        if keep.len() == fwd.normalized.len() {
            return Ok(reduce_losses(losses, label_lengths, reduction));
        }
        let _autocast = Autocast::enter(self.model.device(), precision);
        let rows = row_index(keep, logits.device());
        let pick = |values: &[i64]| -> Vec<i64> { keep.iter().map(|&i| values[i]).collect() };
        let kept_lengths = pick(label_lengths);
        let losses = ctc_losses(
            &self.model,
            &logits.index_select(0, &rows),
            &pick(output_lengths),
            &labels.index_select(0, &rows.to_device(labels.device())),
            &kept_lengths,
            self.loss.zero_infinity,
        )?;
        Ok(reduce_losses(&losses, &kept_lengths, reduction))
    }
}

fn row_index(keep: &[usize], device: Device) -> Tensor {
    let rows: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
    Tensor::from_slice(&rows).to_device(device)
}

impl Seq2SeqTask {
    /// The Whisper model of `config.model` (a folder, a Hub id, or a preset with
    /// `config.tokenizer`), its prompt from `--language`/`--task`, and the labels of
    /// `train`.
    fn build(
        config: &TrainConfig,
        train: &dyn UtteranceSource,
        device: Device,
    ) -> Result<Seq2SeqTask, TrainError> {
        check_whisper_options(config)?;
        tch::manual_seed(config.seed as i64);
        let mut bundle = if is_preset(&config.model) {
            let tokenizer = config.tokenizer.as_deref().ok_or_else(|| {
                TrainError::Config(format!(
                    "--model {} starts from random weights and has no tokenizer: pass --tokenizer \
                     FILE with a multilingual Whisper tokenizer.json (any Whisper checkpoint's, \
                     or fixtures/whisper/tokenizer/tokenizer.json)",
                    config.model
                ))
            })?;
            WhisperBundle::preset(&config.model, tokenizer, device)?
        } else {
            let dir = match asr_model::ModelSpec::parse(&config.model)? {
                asr_model::ModelSpec::Pretrained(dir) => dir,
                _ => config.model.clone().into(),
            };
            WhisperBundle::from_pretrained(&dir, device)?
        };
        let task = config
            .task
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| TrainError::Config(format!("--task: {e}")))?;
        let prompt = bundle.prompt(config.language.as_deref(), task)?;
        record_language_and_task(&mut bundle, config.language.as_deref(), task);
        let prefix: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
        let max_samples = config
            .max_duration_s
            .map(|s| (s * f64::from(crate::data::SAMPLE_RATE_HZ)) as u64);
        let max_target = bundle.model.config().max_target_positions as usize;
        let window = bundle.features.config().n_samples() as u64;
        let labels = tokenize_source_in(
            &bundle.tokenizer,
            &prefix,
            train,
            max_target,
            max_samples,
            window,
        )?;
        Ok(Seq2SeqTask {
            bundle,
            prompt,
            labels,
            metric: config.metric,
        })
    }

    /// Samples of the model's input window (480,000: 30 s).
    pub fn window(&self) -> u64 {
        self.bundle.features.config().n_samples() as u64
    }

    /// "N of M training utterances left out: 2 audio_over_30s, 1 empty_text".
    pub fn skip_summary(&self, total: usize) -> String {
        let counts = self.labels.skip_counts();
        if counts.is_empty() {
            return format!("seq2seq labels: all {total} training utterances tokenized");
        }
        let reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        let examples: Vec<String> = self
            .labels
            .skipped
            .iter()
            .take(3)
            .map(|s| format!("{} ({})", s.id, s.detail))
            .collect();
        format!(
            "seq2seq labels: left out {} of {total} training utterances, never truncated: {} (e.g. {})",
            self.labels.skipped.len(),
            reasons.join(", "),
            examples.join("; ")
        )
    }

    fn forward(
        &self,
        batch: &Batch,
        precision: Precision,
        rng: &mut ChaCha8Rng,
    ) -> Result<Forward, TrainError> {
        let model = &self.bundle.model;
        let device = model.device();
        let clips: Vec<&[f32]> = (0..batch.len())
            .map(|r| {
                let start = r * batch.max_samples;
                &batch.input_values[start..start + batch.lengths[r] as usize]
            })
            .collect();
        let features = self
            .bundle
            .features
            .extract(&clips)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let features = model.spec_augment(&features.input_features.to_device(device), rng)?;
        let labels = Tensor::from_slice(&batch.labels)
            .view([batch.len() as i64, batch.max_labels as i64])
            .to_device(device);
        let _autocast = Autocast::enter(device, precision);
        let decoder_input_ids = model.shift_tokens_right(&labels)?;
        let logits = model.forward_t(&features, &decoder_input_ids, None, true)?;
        let (sums, counts) = model.row_losses(&logits, &labels);
        let counts = Vec::<i64>::try_from(&counts.to_device(Device::Cpu))?;
        let values =
            Vec::<f64>::try_from(&sums.detach().to_kind(Kind::Double).to_device(Device::Cpu))?;
        let normalized = values
            .iter()
            .zip(&counts)
            .map(|(s, &n)| s / n.max(1) as f64)
            .collect();
        Ok(Forward {
            normalized,
            feasible: vec![true; batch.len()],
            graph: Graph::Seq2Seq {
                features,
                logits,
                labels,
                sums,
                counts,
            },
        })
    }

    /// transformers' loss over the rows `keep`: their summed token cross-entropies over
    /// their token count. When rows are masked, the kept rows are forwarded again on
    /// their own (the first graph freed before): a row whose loss is not finite often
    /// has non-finite activations (NaN audio, an fp16 overflow), and backwarding a zero
    /// gradient through them would still make every weight's gradient NaN (0 x NaN).
    fn kept_loss(
        &self,
        fwd: Forward,
        keep: &[usize],
        precision: Precision,
    ) -> Result<Tensor, TrainError> {
        let rows_in = fwd.normalized.len();
        let Graph::Seq2Seq {
            features,
            logits,
            labels,
            sums,
            counts,
        } = fwd.graph
        else {
            return Err(TrainError::Config("not a seq2seq forward".into()));
        };
        let tokens: i64 = keep.iter().map(|&i| counts[i]).sum();
        if keep.len() == rows_in {
            return Ok(sums.sum(Kind::Float) / tokens.max(1) as f64);
        }
        drop((logits, sums));
        let model = &self.bundle.model;
        let rows = row_index(keep, features.device());
        let (features, labels) = (
            features.index_select(0, &rows),
            labels.index_select(0, &rows),
        );
        let _autocast = Autocast::enter(model.device(), precision);
        let decoder_input_ids = model.shift_tokens_right(&labels)?;
        let logits = model.forward_t(&features, &decoder_input_ids, None, true)?;
        let (kept_sums, _) = model.row_losses(&logits, &labels);
        Ok(kept_sums.sum(Kind::Float) / tokens.max(1) as f64)
    }
}

/// The run's `--language` / `--task` written into the model's generation config, as
/// transformers' fine-tuning guide sets `generation_config.language` and `.task`: the
/// saved folders (`best/`, checkpoints) then generate in the training language when
/// `eval`, `transcribe` or transformers' `generate` are given none. A language without
/// a task records `transcribe`, the task the prompt used.
fn record_language_and_task(
    bundle: &mut WhisperBundle,
    language: Option<&str>,
    task: Option<asr_model::whisper::Task>,
) {
    if language.is_none() && task.is_none() {
        return;
    }
    let mut generation = bundle.model.generation_config().clone();
    if let Some(language) = language {
        generation.language = Some(language.to_string());
    }
    let task = match task {
        Some(asr_model::whisper::Task::Translate) => Some("translate"),
        Some(asr_model::whisper::Task::Transcribe) => Some("transcribe"),
        None if generation.task.is_none() => Some("transcribe"),
        None => None,
    };
    if let Some(task) = task {
        generation.task = Some(task.to_string());
    }
    bundle.model.set_generation_config(generation);
}

/// Options that only CTC models take, refused for Whisper with the reason.
fn check_whisper_options(config: &TrainConfig) -> Result<(), TrainError> {
    let refused = [
        (!config.model_set.is_empty(), "--model-set"),
        (config.reinit_head, "--reinit-head"),
        (
            config.freeze_feature_encoder == Some(true),
            "--freeze-feature-encoder",
        ),
        (config.ctc_loss_reduction.is_some(), "--ctc-loss-reduction"),
        (config.ctc_zero_infinity.is_some(), "--ctc-zero-infinity"),
    ];
    if config.batch_seconds < 30.0 {
        return Err(TrainError::Config(format!(
            "--batch-seconds {}: every Whisper input is 30 s of padded features, so a batch \
             needs at least 30 (each clip counts as 30 s: --batch-seconds 60 holds 2 clips); \
             set the clips per batch with --max-batch-utterances N (transformers' \
             per_device_train_batch_size) and a --batch-seconds of at least 30 x N",
            config.batch_seconds
        )));
    }
    let given: Vec<&str> = refused
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "{} appl{} to CTC models only; --model {} is a Whisper model: leave {} out",
        given.join(", "),
        if given.len() == 1 { "ies" } else { "y" },
        config.model,
        if given.len() == 1 { "it" } else { "them" }
    )))
}
