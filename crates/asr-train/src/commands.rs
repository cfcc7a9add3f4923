//! The subcommands other than `run`, as library functions the binary calls:
//! `eval` (WER/CER and predictions of a model on shard splits) and `transcribe`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use asr_model::precision::Precision;
use asr_model::CtcModel;
use asr_text::Vocab;

use crate::config::{
    check_float, check_threads, LossReduction, PrecisionChoice, Range, MAX_THREADS,
};
use crate::eval::{self, FinalResults, LossSettings};
use crate::trainer::{TrainData, TrainError};
use crate::transcribe::Windowing;
use crate::whisper::eval::MetricChoice;
use crate::whisper::transcribe::GenerationChoice;
use crate::whisper::{ModelKind, WhisperBundle};

/// What `asr-train eval` needs.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Hugging Face model folder (e.g. `RUN/best`) or Hub id (`org/name[@revision]`).
    pub model: PathBuf,
    /// Splits to evaluate (empty: every split of the shards).
    pub splits: Vec<String>,
    /// Where to write `predictions_<split>.jsonl` and `final_results.json`, if anywhere.
    pub out: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// Forward precision.
    pub precision: PrecisionChoice,
    /// Padded seconds per batch.
    pub batch_seconds: f64,
    /// libtorch threads.
    pub threads: Option<usize>,
    /// Whisper models: language and task (`--language`, `--task`).
    pub generation: GenerationChoice,
    /// Whisper models: the headline metric (`--metric`).
    pub metric: MetricChoice,
}

impl EvalOptions {
    /// `batch_seconds` finite and > 0, `threads` within `1..=MAX_THREADS`.
    pub fn validate(&self) -> Result<(), TrainError> {
        check_float("batch_seconds", self.batch_seconds, Range::Positive)
            .and_then(|()| check_threads(self.threads))
            .map_err(|e| TrainError::Config(e.to_string()))
    }
}

/// What `asr-train transcribe` needs besides the files.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// Forward precision.
    pub precision: PrecisionChoice,
    /// Padded seconds per batch.
    pub batch_seconds: f64,
    /// libtorch threads.
    pub threads: Option<usize>,
    /// How files longer than a window are cut (CTC models; Whisper models use
    /// consecutive 30-s windows).
    pub windowing: Windowing,
    /// Whisper models: language and task (`--language`, `--task`).
    pub generation: GenerationChoice,
}

impl TranscribeOptions {
    /// `batch_seconds` finite and > 0, `threads` within `1..=MAX_THREADS`, windowing
    /// lengths in range.
    pub fn validate(&self) -> Result<(), TrainError> {
        check_float("batch_seconds", self.batch_seconds, Range::Positive)
            .and_then(|()| check_threads(self.threads))
            .map_err(|e| TrainError::Config(e.to_string()))?;
        self.windowing.validate().map_err(TrainError::Config)
    }
}

fn set_threads(threads: Option<usize>) {
    // Validated by the callers: 1..=MAX_THREADS.
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(n.clamp(1, MAX_THREADS) as i32);
}

/// An error and its sources as one line, each source once: a source whose text the
/// message already holds (`path: No such file (os error 2)` wrapping the same I/O
/// error) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

fn precision_for(choice: PrecisionChoice, device: tch::Device) -> Precision {
    match (choice, device) {
        (PrecisionChoice::Auto, tch::Device::Cuda(_)) | (PrecisionChoice::Bf16, _) => {
            Precision::Bf16
        }
        (PrecisionChoice::Fp16, tch::Device::Cuda(_)) => Precision::F16,
        _ => Precision::F32,
    }
}

/// Load a model folder (or a Hub id, resolved through the Hugging Face cache) with its
/// vocabulary on the requested device.
pub fn load_model(dir: &Path, device: &str) -> Result<(CtcModel, Vocab, tch::Device), TrainError> {
    let device = asr_model::device::select(
        device
            .parse()
            .map_err(|e: asr_model::DeviceError| TrainError::Config(e.to_string()))?,
    )?;
    let dir = &asr_model::hub::resolve_folder(dir)?;
    let model = CtcModel::from_pretrained(dir, device)?;
    let vocab = asr_model::read_vocab(dir)?;
    model.check_vocab(&vocab)?;
    Ok((model, vocab, device))
}

/// The split names a list of `--splits` selectors means (every split when empty); a
/// selector that selects nothing is an error listing the splits.
pub(crate) fn split_names(
    data: &TrainData,
    selectors: &[String],
) -> Result<Vec<String>, TrainError> {
    if selectors.is_empty() {
        return Ok(data.splits.keys().cloned().collect());
    }
    if let Some(missing) = selectors.iter().find(|s| data.select(s).is_empty()) {
        return Err(TrainError::Config(format!(
            "{} has no split named {missing:?} and none whose role is {missing:?} (splits: {})",
            data.origin,
            data.describe_splits()
        )));
    }
    Ok(data.select_all(selectors))
}

/// `--language`, `--task` and `--metric` are for Whisper models: an error naming them
/// when given for a CTC model.
fn check_ctc_options(
    generation: &GenerationChoice,
    metric: MetricChoice,
) -> Result<(), TrainError> {
    if *generation != GenerationChoice::default() || metric != MetricChoice::Auto {
        return Err(TrainError::Config(
            "--language, --task and --metric apply to Whisper models only; this model is a \
             CTC model (wav2vec2 / HuBERT), which reports both WER and CER"
                .into(),
        ));
    }
    Ok(())
}

/// A Whisper folder on the requested device.
fn load_whisper(dir: &Path, device: &str) -> Result<WhisperBundle, TrainError> {
    let device = asr_model::device::select(
        device
            .parse()
            .map_err(|e: asr_model::DeviceError| TrainError::Config(e.to_string()))?,
    )?;
    WhisperBundle::from_pretrained(dir, device)
}

/// `asr-train eval`: evaluate a model (CTC or Whisper) on shard splits.
pub fn eval_shards(data: &TrainData, options: &EvalOptions) -> Result<FinalResults, TrainError> {
    options.validate()?;
    set_threads(options.threads);
    // A Hub id resolves to its snapshot folder first, so that its config decides the kind.
    let model_dir = asr_model::hub::resolve_folder(&options.model)?;
    if ModelKind::of(&model_dir.to_string_lossy()) == ModelKind::Whisper {
        let bundle = load_whisper(&model_dir, &options.device)?;
        create_out(options)?;
        let results = crate::whisper::eval::eval_shards(data, options, &bundle)?;
        return write_final(options, results);
    }
    check_ctc_options(&options.generation, options.metric)?;
    let (model, vocab, device) = load_model(&model_dir, &options.device)?;
    if let Some(diff) = vocab.diff(&data.vocab) {
        return Err(TrainError::VocabMismatch {
            data: data.origin.clone(),
            model: options.model.display().to_string(),
            diff: format!("model vs data: {diff}"),
        });
    }
    let precision = precision_for(options.precision, device);
    let loss = LossSettings {
        reduction: match model.config().ctc_loss_reduction {
            asr_model::CtcLossReduction::Sum => LossReduction::Sum,
            asr_model::CtcLossReduction::Mean => LossReduction::Mean,
        },
        zero_infinity: model.config().ctc_zero_infinity,
    };
    let names = split_names(data, &options.splits)?;
    create_out(options)?;
    let mut splits = BTreeMap::new();
    for name in names {
        let source = data.splits.get(&name).ok_or_else(|| {
            TrainError::Config(format!(
                "{} has no split {name:?} (splits: {})",
                data.origin,
                data.splits.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let output = eval::evaluate(
            &model,
            &vocab,
            source.clone(),
            None,
            options.batch_seconds,
            precision,
            loss,
        )?;
        if let Some(out) = &options.out {
            let path = out.join(format!("predictions_{name}.jsonl"));
            eval::write_predictions(&path, &output.predictions)
                .map_err(|source| TrainError::Io { path, source })?;
        }
        splits.insert(name, output.result());
    }
    let results = FinalResults {
        splits,
        model: options.model.display().to_string(),
        best_step: None,
        steps: None,
        stop_reason: None,
        events: None,
        quarantined: None,
        train_audio_s_per_s: None,
        data_wait_fraction: None,
        left_out: None,
    };
    write_final(options, results)
}

fn create_out(options: &EvalOptions) -> Result<(), TrainError> {
    match &options.out {
        Some(out) => std::fs::create_dir_all(out).map_err(|source| TrainError::Io {
            path: out.clone(),
            source,
        }),
        None => Ok(()),
    }
}

/// Writes `final_results.json` when `--out` was given.
fn write_final(options: &EvalOptions, results: FinalResults) -> Result<FinalResults, TrainError> {
    if let Some(out) = &options.out {
        let path = out.join("final_results.json");
        eval::write_final_results(&path, &results)
            .map_err(|source| TrainError::Io { path, source })?;
    }
    Ok(results)
}

/// `asr-train transcribe`: one result per file, in order.
pub fn transcribe(
    model_dir: &Path,
    paths: &[PathBuf],
    options: &TranscribeOptions,
) -> Result<Vec<Result<String, String>>, TrainError> {
    options.validate()?;
    set_threads(options.threads);
    let model_dir = &asr_model::hub::resolve_folder(model_dir)?;
    if ModelKind::of(&model_dir.to_string_lossy()) == ModelKind::Whisper {
        let bundle = load_whisper(model_dir, &options.device)?;
        return crate::whisper::transcribe::transcribe_files(
            &bundle,
            paths,
            &options.generation,
            options.batch_seconds,
        );
    }
    check_ctc_options(&options.generation, MetricChoice::Auto)?;
    let (model, vocab, device) = load_model(model_dir, &options.device)?;
    let precision = precision_for(options.precision, device);
    options
        .windowing
        .samples(&model)
        .map_err(TrainError::Config)?;
    Ok(crate::transcribe::transcribe_files(
        &model,
        &vocab,
        paths,
        options.batch_seconds,
        &options.windowing,
        precision,
    ))
}
