//! Evaluation: greedy CTC decoding of a split, WER and CER (jiwer conventions, corpus
//! level), the CTC loss, and the files a run writes about it:
//! `predictions_<split>.jsonl` (schema `schemas/train-predictions.schema.json`) and
//! `final_results.json` (schema `schemas/train-final-results.schema.json`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use asr_model::precision::{Autocast, Precision};
use asr_model::{CtcModel, ModelError};
use asr_text::{char_edits, word_edits, ErrorRates, Vocab};
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::config::LossReduction;
use crate::data::{plan_epoch, Batch, Batching, DataError, DataPosition, UtteranceSource};
use crate::guard::EventCounts;

/// One line of `predictions_<split>.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Utterance id.
    pub id: String,
    /// Reference transcript (the shard's normalized text).
    pub reference: String,
    /// Greedy CTC hypothesis.
    pub hypothesis: String,
    /// This utterance's word error rate.
    pub wer: f64,
    /// This utterance's character error rate.
    pub cer: f64,
}

/// Scores of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitResult {
    /// Word error rate (fraction).
    pub wer: f64,
    /// Character error rate (fraction).
    pub cer: f64,
    /// Utterances evaluated.
    pub utterances: u64,
    /// Word substitutions.
    pub substitutions: u64,
    /// Word deletions.
    pub deletions: u64,
    /// Word insertions.
    pub insertions: u64,
    /// Reference words.
    pub reference_words: u64,
    /// Reference characters.
    pub reference_chars: u64,
    /// Mean per-utterance CTC loss (normalized as the training reduction), when finite.
    #[serde(with = "crate::metrics::float::option")]
    pub loss: Option<f64>,
    /// Fraction of utterances decoded to nothing.
    pub blank_fraction: f64,
    /// The split's headline metric, `wer` or `cer` (Whisper evaluation: chosen by the
    /// references' script or `--metric`); absent for CTC, which reports both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// What an evaluation produced.
#[derive(Debug, Clone)]
pub struct EvalOutput {
    /// Accumulated edit counts.
    pub rates: ErrorRates,
    /// Mean loss (see [`SplitResult::loss`]).
    pub loss: Option<f64>,
    /// The finite losses behind `loss`: their sum and number (to merge evaluations).
    pub loss_sum: f64,
    pub loss_count: usize,
    /// Predictions in the source's order.
    pub predictions: Vec<Prediction>,
    /// Fraction of empty hypotheses.
    pub blank_fraction: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl EvalOutput {
    /// The summary written to `final_results.json`.
    pub fn result(&self) -> SplitResult {
        SplitResult {
            wer: self.rates.wer(),
            cer: self.rates.cer(),
            utterances: self.rates.utterances,
            substitutions: self.rates.words.substitutions,
            deletions: self.rates.words.deletions,
            insertions: self.rates.words.insertions,
            reference_words: self.rates.words.reference_len(),
            reference_chars: self.rates.chars.reference_len(),
            loss: self.loss,
            blank_fraction: self.blank_fraction,
            metric: None,
        }
    }
}

/// The per-split WER/CER table printed by `run` and `eval`: one line per split, the name
/// column as wide as the longest split name, and the blank-output percentage when
/// `with_blank`.
pub fn split_table(splits: &BTreeMap<String, SplitResult>, with_blank: bool) -> String {
    let w = splits.keys().map(String::len).max().unwrap_or(0).max(10);
    let mut s = format!(
        "{:<w$} {:>8} {:>8} {:>11}",
        "split", "WER", "CER", "utterances"
    );
    s.push_str(if with_blank { "    blank\n" } else { "\n" });
    for (split, r) in splits {
        s.push_str(&format!(
            "{:<w$} {:>8.4} {:>8.4} {:>11}",
            split, r.wer, r.cer, r.utterances
        ));
        if with_blank {
            s.push_str(&format!(" {:>7.1}%", 100.0 * r.blank_fraction));
        }
        s.push('\n');
    }
    s
}

/// `final_results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalResults {
    /// Per evaluated split.
    pub splits: BTreeMap<String, SplitResult>,
    /// The model evaluated (`best/` of the run, or the `--model` given).
    pub model: String,
    /// Step of the best eval WER (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_step: Option<u64>,
    /// Optimizer steps run (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Why training stopped: `max_steps`, `epochs`, `early_stopping` or `max_minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Explosion-guard event counts (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventCounts>,
    /// Ids written to quarantine.txt (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<Vec<String>>,
    /// Training throughput in audio seconds per second (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_audio_s_per_s: Option<f64>,
    /// Fraction of training step time spent waiting for data (training runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_wait_fraction: Option<f64>,
    /// Training utterances left out before training, by reason (`audio_over_30s`,
    /// `labels_too_long`, `empty_text`, `over_max_duration`: seq2seq runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<BTreeMap<String, usize>>,
}

/// How evaluation computes its loss.
#[derive(Debug, Clone, Copy)]
pub struct LossSettings {
    /// Reduction (for normalizing per-utterance losses).
    pub reduction: LossReduction,
    /// Zero infinite losses.
    pub zero_infinity: bool,
}

/// Per-utterance CTC losses `[B]` (float32) of a forward output against padded labels
/// `[B, L]` (padding -100), as transformers' loss computes them before reduction.
/// A label outside the logits' vocabulary (other than the -100 padding) is an error:
/// libtorch's CTC loss would read past the logits.
pub fn ctc_losses(
    model: &CtcModel,
    logits: &Tensor,
    output_lengths: &[i64],
    labels: &Tensor,
    label_lengths: &[i64],
    zero_infinity: bool,
) -> Result<Tensor, ModelError> {
    let vocab_size = logits.size().last().copied().unwrap_or(0);
    check_label_tensor(labels, vocab_size)?;
    let blank = model.config().pad_token_id.unwrap_or(0);
    let log_probs = logits.log_softmax(-1, Kind::Float).transpose(0, 1);
    let targets = labels.clamp_min(0);
    let device = logits.device();
    let input_lengths = Tensor::from_slice(output_lengths).to_device(device);
    let target_lengths = Tensor::from_slice(label_lengths).to_device(device);
    Tensor::f_ctc_loss_tensor(
        &log_probs,
        &targets,
        &input_lengths,
        &target_lengths,
        blank,
        Reduction::None,
        zero_infinity,
    )
    .map_err(ModelError::Torch)
}

/// Every label of `[B, L]` is -100 (padding) or within `0..vocab_size`; the error names
/// the first other one and its utterance's position in the batch.
fn check_label_tensor(labels: &Tensor, vocab_size: i64) -> Result<(), ModelError> {
    if labels.numel() == 0 {
        return Ok(());
    }
    let labels = labels.to_kind(Kind::Int64);
    let bad = labels
        .ne(crate::data::PAD_LABEL)
        .logical_and(&labels.lt(0).logical_or(&labels.ge(vocab_size)));
    if bad.any().int64_value(&[]) == 0 {
        return Ok(());
    }
    let first = bad.nonzero().get(0);
    let (b, j) = (first.int64_value(&[0]), first.int64_value(&[1]));
    Err(ModelError::Input(format!(
        "utterance {b} of the batch: label id {} is outside the vocabulary of {vocab_size} \
         tokens (only -100 marks padding)",
        labels.int64_value(&[b, j])
    )))
}

/// The batch's labels against the model's vocabulary, naming the utterance.
fn check_batch_labels(batch: &Batch, vocab_size: i64) -> Result<(), DataError> {
    for (id, labels) in batch.ids.iter().zip(&batch.label_ids) {
        if let Some(bad) = labels
            .iter()
            .find(|&&l| l < 0 || i64::from(l) >= vocab_size)
        {
            return Err(DataError(format!(
                "utterance {id:?}: label id {bad} is outside the model's vocabulary of \
                 {vocab_size} tokens; the data was encoded with another vocabulary or is damaged"
            )));
        }
    }
    Ok(())
}

/// Reduce per-utterance losses as the configured reduction does (tensor, for backward).
pub fn reduce_losses(losses: &Tensor, label_lengths: &[i64], reduction: LossReduction) -> Tensor {
    match reduction {
        LossReduction::Sum => losses.sum(Kind::Float),
        LossReduction::Mean => {
            let lengths: Vec<f32> = label_lengths.iter().map(|&l| l.max(1) as f32).collect();
            let lengths = Tensor::from_slice(&lengths).to_device(losses.device());
            (losses / lengths).mean(Kind::Float)
        }
    }
}

/// Per-utterance losses normalized as the reduction does (for reports).
pub fn normalized_losses(
    losses: &[f64],
    label_lengths: &[i64],
    reduction: LossReduction,
) -> Vec<f64> {
    losses
        .iter()
        .zip(label_lengths)
        .map(|(&l, &n)| match reduction {
            LossReduction::Sum => l,
            LossReduction::Mean => l / n.max(1) as f64,
        })
        .collect()
}

/// The batch's tensors on the model's device: input values `[B, T]`, labels `[B, L]`.
pub fn batch_tensors(batch: &Batch, device: tch::Device) -> (Tensor, Tensor) {
    let b = batch.len() as i64;
    let input = Tensor::from_slice(&batch.input_values)
        .view([b, batch.max_samples as i64])
        .to_device(device);
    let labels = Tensor::from_slice(&batch.labels)
        .view([b, batch.max_labels as i64])
        .to_device(device);
    (input, labels)
}

/// Evaluate `source` (its first `limit` utterances when given, in index order), with
/// batches of at most `batch_seconds` of padded audio read by a helper thread.
pub fn evaluate(
    model: &CtcModel,
    vocab: &Vocab,
    source: Arc<dyn UtteranceSource>,
    limit: Option<usize>,
    batch_seconds: f64,
    precision: Precision,
    loss: LossSettings,
) -> Result<EvalOutput, DataError> {
    let started = Instant::now();
    let min_samples = model.config().min_num_samples().max(1) as u64;
    let count = limit.map_or(source.index().len(), |l| l.min(source.index().len()));
    let mut too_short = Vec::new();
    let included: Vec<usize> = (0..count)
        .filter(|&i| {
            let ok = source.index()[i].num_samples >= min_samples;
            if !ok {
                too_short.push(i);
            }
            ok
        })
        .collect();
    let lengths: Vec<u64> = included
        .iter()
        .map(|&i| source.index()[i].num_samples)
        .collect();
    let plan = plan_epoch(
        &lengths,
        &Batching {
            batch_seconds,
            max_utterances: None,
            shuffle: false,
            seed: 0,
            rank: 0,
            world_size: 1,
            normalize: true,
        },
        0,
    );
    let mut by_index: Vec<Option<Prediction>> = vec![None; count];
    // Utterances too short for one frame decode to nothing.
    for i in too_short {
        let u = source.load(i)?;
        by_index[i] = Some(prediction(u.id, u.text, String::new()));
    }
    let mut loss_sum = 0.0;
    let mut loss_count = 0usize;
    let (tx, rx) = crossbeam_channel::bounded::<Result<(Vec<usize>, Batch), DataError>>(2);
    let device = model.device();
    std::thread::scope(|scope| -> Result<(), DataError> {
        let source = source.as_ref();
        let plan = &plan;
        let included = &included;
        scope.spawn(move || {
            for (b, members) in plan.iter().enumerate() {
                let members: Vec<usize> = members.iter().map(|&m| included[m]).collect();
                let batch = Batch::assemble(
                    source,
                    &members,
                    DataPosition { epoch: 0, batch: b },
                    plan.len(),
                    true,
                );
                let failed = batch.is_err();
                if tx.send(batch.map(|x| (members, x))).is_err() || failed {
                    return;
                }
            }
        });
        for received in rx.iter() {
            let (members, batch) = received?;
            check_batch_labels(&batch, model.config().vocab_size)?;
            let (input, labels) = batch_tensors(&batch, device);
            let label_lengths: Vec<i64> = batch.label_ids.iter().map(|l| l.len() as i64).collect();
            let (hypotheses, losses) = tch::no_grad(|| -> Result<_, DataError> {
                let _autocast = Autocast::enter(device, precision);
                let output = model
                    .forward_padded(&input, &batch.lengths, false, None)
                    .map_err(|e| DataError(e.to_string()))?;
                let losses = ctc_losses(
                    model,
                    &output.logits,
                    &output.output_lengths,
                    &labels,
                    &label_lengths,
                    loss.zero_infinity,
                )
                .map_err(|e| DataError(e.to_string()))?;
                let losses =
                    Vec::<f64>::try_from(&losses.to_kind(Kind::Double).to_device(tch::Device::Cpu))
                        .map_err(|e| DataError(e.to_string()))?;
                Ok((model.greedy_decode(&output, vocab), losses))
            })?;
            for l in normalized_losses(&losses, &label_lengths, loss.reduction) {
                if l.is_finite() {
                    loss_sum += l;
                    loss_count += 1;
                }
            }
            for ((&i, hypothesis), (id, reference)) in members
                .iter()
                .zip(hypotheses)
                .zip(batch.ids.into_iter().zip(batch.texts))
            {
                by_index[i] = Some(prediction(id, reference, hypothesis));
            }
        }
        Ok(())
    })?;
    let predictions: Vec<Prediction> = by_index.into_iter().flatten().collect();
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
        blank_fraction: if predictions.is_empty() {
            0.0
        } else {
            blanks as f64 / predictions.len() as f64
        },
        predictions,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn prediction(id: String, reference: String, hypothesis: String) -> Prediction {
    let wer = word_edits(&reference, &hypothesis).rate();
    let cer = char_edits(&reference, &hypothesis).rate();
    Prediction {
        id,
        reference,
        hypothesis,
        wer,
        cer,
    }
}

/// Write `predictions_<split>.jsonl`.
pub fn write_predictions(path: &Path, predictions: &[Prediction]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for p in predictions {
        serde_json::to_writer(&mut out, p)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Write `final_results.json`.
pub fn write_final_results(path: &Path, results: &FinalResults) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    std::fs::write(path, json + "\n")
}
