//! `asr-train eval` on a Whisper folder: greedy generation on shard splits, scored by
//! WER or CER.
//!
//! Each utterance's 16 kHz samples go through the model's feature extractor (a clip over
//! 30 s is scored on its first 30 s, as the extractor cuts it; pack with
//! `--max-duration 30` to leave such clips out), batches of `batch_seconds / 30` clips
//! are generated with the forced prompt, and the tokens are decoded without special
//! tokens.
//!
//! **Normalization** ([`metric_text`]): the reference (the shard's `text`, already
//! normalized by the pack's policy) and the hypothesis are normalized the same way
//! before scoring, with asr-text's `lower` preset in NFKC: full-width forms folded
//! (`Ａ１` to `A1`), Unicode punctuation of both widths removed (apostrophes inside
//! words and the read-aloud `% & @ #` kept, dashes become spaces), lower case,
//! whitespace collapsed. `predictions_<split>.jsonl` holds the normalized texts, so that
//! `asr-train score` on them gives the same rates.
//!
//! **Metric** ([`MetricChoice`]): both WER and CER are reported; the split's headline
//! metric (`metric` in `final_results.json`) is CER when most letters of its references
//! are of scripts written without spaces (Chinese, Japanese, Thai...:
//! [`asr_text::prefers_cer`]), WER otherwise; `--metric wer|cer` overrides.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use asr_text::{char_edits, normalize, word_edits, ErrorRates, NormalizePolicy, Preset};

use tch::{Kind, Tensor};

use super::labels::utterance_text_labels;
use super::transcribe::WINDOW_SAMPLES;
use super::WhisperBundle;
use crate::commands::{split_names, EvalOptions};
use crate::data::{Utterance, UtteranceSource};
use crate::eval::{EvalOutput, FinalResults, Prediction};
use crate::trainer::{TrainData, TrainError};

/// Which error rate is a split's headline metric.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MetricChoice {
    /// CER for references mostly in scripts written without spaces, WER otherwise.
    #[default]
    Auto,
    /// Word error rate.
    Wer,
    /// Character error rate.
    Cer,
}

impl MetricChoice {
    /// `wer` or `cer` for a split whose normalized references are `references`.
    pub fn resolve<'a>(self, references: impl Iterator<Item = &'a str>) -> &'static str {
        match self {
            MetricChoice::Wer => "wer",
            MetricChoice::Cer => "cer",
            MetricChoice::Auto => {
                let text: String = references.collect::<Vec<_>>().join(" ");
                if asr_text::prefers_cer(&text) {
                    "cer"
                } else {
                    "wer"
                }
            }
        }
    }
}

/// The normalization applied to references and hypotheses before scoring (see the
/// module documentation).
pub fn metric_policy() -> NormalizePolicy {
    NormalizePolicy {
        unicode: asr_text::UnicodeForm::Nfkc,
        ..Preset::Lower.policy()
    }
}

/// `text` normalized by [`metric_policy`].
pub fn metric_text(text: &str) -> String {
    normalize(text, &metric_policy())
}

/// `asr-train eval --model WHISPER_DIR`: predictions and rates of every selected split.
pub fn eval_shards(
    data: &TrainData,
    options: &EvalOptions,
    bundle: &WhisperBundle,
) -> Result<FinalResults, TrainError> {
    let prompt = bundle.prompt(
        options.generation.language.as_deref(),
        options.generation.task,
    )?;
    let names = split_names(data, &options.splits)?;
    let mut splits = BTreeMap::new();
    for name in names {
        let source =
            data.splits.get(&name).cloned().ok_or_else(|| {
                TrainError::Config(format!("{} has no split {name:?}", data.origin))
            })?;
        let output = evaluate(bundle, source, &prompt, options.batch_seconds, None)?;
        let mut result = output.result();
        result.metric = Some(
            options
                .metric
                .resolve(output.predictions.iter().map(|p| p.reference.as_str()))
                .to_string(),
        );
        if let Some(out) = &options.out {
            let path = out.join(format!("predictions_{name}.jsonl"));
            crate::eval::write_predictions(&path, &output.predictions)
                .map_err(|source| TrainError::Io { path, source })?;
        }
        splits.insert(name, result);
    }
    Ok(FinalResults {
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
    })
}

/// Generates every utterance of `source` (its first `limit` when given) in index order
/// and scores it.
pub fn evaluate(
    bundle: &WhisperBundle,
    source: Arc<dyn UtteranceSource>,
    prompt: &[i64],
    batch_seconds: f64,
    limit: Option<usize>,
) -> Result<EvalOutput, TrainError> {
    let started = Instant::now();
    let per_batch = ((batch_seconds / 30.0).floor() as usize).max(1);
    let count = limit.map_or(source.index().len(), |l| l.min(source.index().len()));
    let mut predictions = Vec::with_capacity(count);
    let mut cut = 0usize;
    let mut loss = TokenLoss::default();
    let indices: Vec<usize> = (0..count).collect();
    for batch in indices.chunks(per_batch) {
        let utterances = batch
            .iter()
            .map(|&i| source.load(i))
            .collect::<Result<Vec<_>, _>>()?;
        cut += utterances
            .iter()
            .filter(|u| u.audio.len() > WINDOW_SAMPLES)
            .count();
        let clips: Vec<&[f32]> = utterances.iter().map(|u| u.audio.as_slice()).collect();
        let features = bundle
            .features
            .extract(&clips)
            .map_err(|e| TrainError::Config(e.to_string()))?
            .input_features;
        loss.add_batch(bundle, &features, &utterances, prompt)?;
        let texts = bundle.generate_from_features(&features, prompt)?;
        for (u, text) in utterances.into_iter().zip(texts) {
            predictions.push(prediction(u.id, &u.text, &text));
        }
    }
    if cut > 0 {
        eprintln!(
            "warning: {cut} of {count} utterances are longer than 30 s and were scored on their \
             first 30 s (Whisper's window); pack with --max-duration 30 to leave them out"
        );
    }
    let mut output = scored(predictions, started.elapsed().as_secs_f64());
    output.loss = (loss.tokens > 0).then(|| loss.sum / loss.tokens as f64);
    output.loss_sum = loss.sum;
    output.loss_count = loss.tokens;
    Ok(output)
}

/// The eval loss: transformers' training loss with teacher forcing (the reference's
/// labels, built as the training labels are, shifted right into the decoder), summed
/// over every label token of the split and divided by their count, so that the split's
/// loss is one token mean whatever its batches (transformers' `eval_loss` is the mean
/// of its batches' token means, weighted by batch size). Utterances whose labels the
/// training would leave out (an empty text, over 448 tokens) add nothing.
#[derive(Default)]
struct TokenLoss {
    sum: f64,
    tokens: usize,
}

impl TokenLoss {
    fn add_batch(
        &mut self,
        bundle: &WhisperBundle,
        features: &Tensor,
        utterances: &[Utterance],
        prompt: &[i64],
    ) -> Result<(), TrainError> {
        let model = &bundle.model;
        let prefix: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
        let max_target = model.config().max_target_positions as usize;
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (row, u) in utterances.iter().enumerate() {
            if let Ok(ids) =
                utterance_text_labels(&bundle.tokenizer, &prefix, &u.id, &u.text, max_target)?
            {
                rows.push(row as i64);
                labels.push(ids);
            }
        }
        let width = labels.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            return Ok(());
        }
        let mut flat = vec![asr_model::IGNORE_LABEL; labels.len() * width];
        for (row, ids) in flat.chunks_mut(width).zip(&labels) {
            row[..ids.len()].copy_from_slice(ids);
        }
        let device = model.device();
        let labels = Tensor::from_slice(&flat)
            .view([rows.len() as i64, width as i64])
            .to_device(device);
        let features = features
            .index_select(0, &Tensor::from_slice(&rows))
            .to_device(device);
        let sums = tch::no_grad(|| -> Result<Tensor, TrainError> {
            let decoder_input_ids = model.shift_tokens_right(&labels)?;
            let logits = model.forward_t(&features, &decoder_input_ids, None, false)?;
            Ok(model.row_losses(&logits, &labels).0)
        })?;
        self.sum += sums.sum(Kind::Double).double_value(&[]);
        self.tokens += flat
            .iter()
            .filter(|&&id| id != asr_model::IGNORE_LABEL)
            .count();
        Ok(())
    }
}

/// One prediction, both texts normalized by [`metric_text`].
pub fn prediction(id: String, reference: &str, hypothesis: &str) -> Prediction {
    let reference = metric_text(reference);
    let hypothesis = metric_text(hypothesis);
    Prediction {
        wer: word_edits(&reference, &hypothesis).rate(),
        cer: char_edits(&reference, &hypothesis).rate(),
        id,
        reference,
        hypothesis,
    }
}

fn scored(predictions: Vec<Prediction>, seconds: f64) -> EvalOutput {
    let mut rates = ErrorRates::default();
    for p in &predictions {
        rates.add(&p.reference, &p.hypothesis);
    }
    let blanks = predictions
        .iter()
        .filter(|p| p.hypothesis.is_empty())
        .count();
    EvalOutput {
        rates,
        loss: None,
        loss_sum: 0.0,
        loss_count: 0,
        blank_fraction: if predictions.is_empty() {
            0.0
        } else {
            blanks as f64 / predictions.len() as f64
        },
        predictions,
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_hypotheses_are_normalized_alike() {
        assert_eq!(metric_text("Hello, World!  It's"), "hello world it's");
        assert_eq!(metric_text("今天，天气很好。"), "今天天气很好");
        assert_eq!(metric_text("ＡＢＣ１２３"), "abc123");
        let p = prediction("a".into(), "HELLO WORLD", "Hello, world.");
        assert_eq!((p.wer, p.cer), (0.0, 0.0));
    }

    #[test]
    fn the_metric_follows_the_script_unless_overridden() {
        let zh = ["今天天气很好", "我们去公园"];
        let en = ["the cat sat", "on the mat"];
        assert_eq!(MetricChoice::Auto.resolve(zh.iter().copied()), "cer");
        assert_eq!(MetricChoice::Auto.resolve(en.iter().copied()), "wer");
        assert_eq!(MetricChoice::Wer.resolve(zh.iter().copied()), "wer");
        assert_eq!(MetricChoice::Cer.resolve(en.iter().copied()), "cer");
    }
}
