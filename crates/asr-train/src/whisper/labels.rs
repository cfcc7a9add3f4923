//! The label side of Whisper training: labels tokenized at load time, the utterances
//! left out with their reason, and the training source the loop batches
//! ([`LabeledSource`]).
//!
//! **Labels are tokenized at load time** from the shards' `text` column, not by
//! `asr-data pack`: the shards stay model-independent (one pack serves CTC models and
//! every Whisper version, whose token ids differ: never hard-code them), the pack
//! command keeps no tokenizer dependency on the data side, and tokenizing a corpus of
//! thousands of sentences with the `tokenizers` crate takes well under a second.
//!
//! A label row is what transformers' fixed collator feeds the model: the tokenizer's
//! `prefix + text + <|endoftext|>` with the leading `<|startoftranscript|>` stripped
//! (the decoder input, `decoder_start` + labels shifted right, adds it back). Rows are
//! padded with -100, which the loss ignores (pad == eos in Whisper, so padding cannot be
//! told from eos by id).
//!
//! Utterances that do not fit are **left out and counted with their reason**, never
//! truncated: audio over 30 s (the encoder sees 30 s; the rest would be cut off while
//! its words stay in the label) and labels over `max_target_positions` (448) tokens.

use std::collections::BTreeMap;
use std::sync::Arc;

use asr_model::whisper::{strip_decoder_start, WhisperTokenizer};

use super::transcribe::WINDOW_SAMPLES;
use crate::data::{DataError, Utterance, UtteranceInfo, UtteranceSource};
use crate::trainer::TrainError;

/// The label id the loss ignores.
pub const IGNORE: i64 = -100;

/// Why an utterance was left out of seq2seq training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Longer than Whisper's 30-s window.
    AudioOver30s,
    /// More label tokens than the decoder has positions.
    LabelsTooLong,
    /// The text is empty, so the label would be the prompt and `<|endoftext|>` alone.
    EmptyText,
    /// Longer than the run's `--max-duration-s`.
    OverMaxDuration,
}

impl SkipReason {
    /// The name in reports and metrics (`audio_over_30s`, `labels_too_long`, `empty_text`).
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::AudioOver30s => "audio_over_30s",
            SkipReason::LabelsTooLong => "labels_too_long",
            SkipReason::EmptyText => "empty_text",
            SkipReason::OverMaxDuration => "over_max_duration",
        }
    }
}

/// An utterance left out, with what made it so (seconds or tokens).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// Utterance id.
    pub id: String,
    /// Why.
    pub reason: SkipReason,
    /// A sentence naming the measure and the limit.
    pub detail: String,
}

/// The tokenized labels of a split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSet {
    /// `(index in the source, labels)` of the utterances kept, in source order.
    pub kept: Vec<(usize, Vec<i64>)>,
    /// The utterances left out, in source order.
    pub skipped: Vec<Skipped>,
}

impl LabelSet {
    /// Count of left-out utterances per reason name.
    pub fn skip_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.skipped {
            *counts.entry(s.reason.name()).or_insert(0) += 1;
        }
        counts
    }
}

/// One utterance's training labels for the decoder `prefix` (as
/// [`WhisperTokenizer::prefix`] builds it), or why it is left out.
pub fn utterance_labels(
    tokenizer: &WhisperTokenizer,
    prefix: &[u32],
    id: &str,
    num_samples: u64,
    text: &str,
    max_target_positions: usize,
) -> Result<Result<Vec<i64>, Skipped>, TrainError> {
    let skip = |reason, detail: String| {
        Ok(Err(Skipped {
            id: id.to_string(),
            reason,
            detail,
        }))
    };
    if num_samples > WINDOW_SAMPLES as u64 {
        let seconds = num_samples as f64 / 16_000.0;
        return skip(
            SkipReason::AudioOver30s,
            format!("{seconds:.2} s of audio; Whisper's window is 30 s"),
        );
    }
    utterance_text_labels(tokenizer, prefix, id, text, max_target_positions)
}

/// [`utterance_labels`] without the audio check.
pub(crate) fn utterance_text_labels(
    tokenizer: &WhisperTokenizer,
    prefix: &[u32],
    id: &str,
    text: &str,
    max_target_positions: usize,
) -> Result<Result<Vec<i64>, Skipped>, TrainError> {
    let skip = |reason, detail: String| {
        Ok(Err(Skipped {
            id: id.to_string(),
            reason,
            detail,
        }))
    };
    if text.trim().is_empty() {
        return skip(SkipReason::EmptyText, "the transcript is empty".into());
    }
    let ids = tokenizer
        .labels(prefix, text)
        .map_err(|e| TrainError::Config(format!("utterance {id:?}: {e}")))?;
    let labels = strip_decoder_start(&ids, tokenizer.special_tokens().start_of_transcript);
    if labels.len() > max_target_positions {
        return skip(
            SkipReason::LabelsTooLong,
            format!(
                "{} label tokens; the decoder has {max_target_positions} positions",
                labels.len()
            ),
        );
    }
    Ok(Ok(labels.iter().map(|&i| i64::from(i)).collect()))
}

/// The labels of every utterance of `source` (its texts read through
/// [`UtteranceSource::texts`], which reads no audio from shards); utterances longer
/// than `max_samples` (the run's `--max-duration-s`) are left out too.
pub fn tokenize_source(
    tokenizer: &WhisperTokenizer,
    prefix: &[u32],
    source: &dyn UtteranceSource,
    max_target_positions: usize,
    max_samples: Option<u64>,
) -> Result<LabelSet, TrainError> {
    tokenize_source_in(
        tokenizer,
        prefix,
        source,
        max_target_positions,
        max_samples,
        WINDOW_SAMPLES as u64,
    )
}

/// [`tokenize_source`] for a model whose input window is `window` samples (30 s for
/// every Whisper checkpoint; shorter for the `whisper-micro` test preset).
pub fn tokenize_source_in(
    tokenizer: &WhisperTokenizer,
    prefix: &[u32],
    source: &dyn UtteranceSource,
    max_target_positions: usize,
    max_samples: Option<u64>,
    window: u64,
) -> Result<LabelSet, TrainError> {
    let mut set = LabelSet::default();
    let texts = source.texts()?;
    for (i, (info, text)) in source.index().iter().zip(&texts).enumerate() {
        if info.num_samples > window {
            set.skipped.push(Skipped {
                id: info.id.clone(),
                reason: SkipReason::AudioOver30s,
                detail: format!(
                    "{:.2} s of audio; the model's window is {:.0} s",
                    info.num_samples as f64 / 16_000.0,
                    window as f64 / 16_000.0
                ),
            });
            continue;
        }
        if let Some(max) = max_samples.filter(|&m| info.num_samples > m) {
            set.skipped.push(Skipped {
                id: info.id.clone(),
                reason: SkipReason::OverMaxDuration,
                detail: format!(
                    "{:.2} s of audio; --max-duration-s is {:.2} s",
                    info.num_samples as f64 / 16_000.0,
                    max as f64 / 16_000.0
                ),
            });
            continue;
        }
        match utterance_text_labels(tokenizer, prefix, &info.id, text, max_target_positions)? {
            Ok(labels) => set.kept.push((i, labels)),
            Err(skipped) => set.skipped.push(skipped),
        }
    }
    Ok(set)
}

/// The utterances of a split that have labels, each with its Whisper label ids in
/// [`Utterance::labels`] and listed in [`UtteranceSource::index`] as one full 30-s
/// window long: every Whisper input is 30 s of (padded) features, so the batch planner
/// counts each clip as 30 s of padded audio (`--batch-seconds 60` holds 2 clips) and its
/// length-sorting has nothing to sort (batches are a seeded shuffle, as transformers'
/// random sampler gives). The audio itself is returned as read (its true length).
pub struct LabeledSource {
    inner: Arc<dyn UtteranceSource>,
    kept: Vec<(usize, Vec<i64>)>,
    infos: Vec<UtteranceInfo>,
}

impl LabeledSource {
    /// The kept utterances of `labels` (tokenized from `inner`), for a model whose
    /// input window is `window` samples.
    pub fn new(inner: Arc<dyn UtteranceSource>, labels: &LabelSet, window: u64) -> LabeledSource {
        let infos = labels
            .kept
            .iter()
            .map(|(i, _)| UtteranceInfo {
                id: inner.index()[*i].id.clone(),
                num_samples: window,
            })
            .collect();
        LabeledSource {
            inner,
            kept: labels.kept.clone(),
            infos,
        }
    }
}

impl UtteranceSource for LabeledSource {
    fn index(&self) -> &[UtteranceInfo] {
        &self.infos
    }

    fn load(&self, i: usize) -> Result<Utterance, DataError> {
        let (at, labels) = self
            .kept
            .get(i)
            .ok_or_else(|| DataError(format!("no utterance {i}")))?;
        let utterance = self.inner.load(*at)?;
        Ok(Utterance {
            labels: labels.iter().map(|&l| l as i32).collect(),
            ..utterance
        })
    }
}

/// Label rows padded with [`IGNORE`] to the longest: the flat `[B * L]` ids and `L`.
pub fn pad_labels(rows: &[&[i64]]) -> (Vec<i64>, usize) {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(IGNORE, width - row.len()));
    }
    (flat, width)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use asr_model::whisper::Task;

    use super::*;
    use crate::data::{MemorySource, Utterance};

    fn fixtures() -> &'static Path {
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/whisper/tokenizer"
        ))
    }

    fn tokenizer() -> WhisperTokenizer {
        WhisperTokenizer::from_file(&fixtures().join("tokenizer.json")).unwrap()
    }

    #[test]
    fn labels_are_transformers_ids_without_the_decoder_start() {
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("expected.json")).unwrap(),
        )
        .unwrap();
        let tokenizer = tokenizer();
        for case in expected["cases"].as_array().unwrap() {
            let task: Option<Task> = case["task"].as_str().map(|t| t.parse().unwrap());
            let language = case["language"].as_str();
            let prefix = tokenizer.prefix(language, task, false).unwrap();
            let text = case["text"].as_str().unwrap();
            let want: Vec<i64> = case["labels"].as_array().unwrap()[1..]
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let got = utterance_labels(&tokenizer, &prefix, "u", 16_000, text, 448)
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn long_audio_long_labels_and_empty_texts_are_left_out_and_counted() {
        let tokenizer = tokenizer();
        let prefix = tokenizer
            .prefix(Some("zh"), Some(Task::Transcribe), false)
            .unwrap();
        let utterance = |id: &str, seconds: f64, text: &str| Utterance {
            id: id.into(),
            audio: vec![0.0; (seconds * 16_000.0) as usize],
            labels: Vec::new(),
            text: text.into(),
        };
        let source = MemorySource::new(vec![
            utterance("ok", 3.0, "今天天气很好"),
            utterance("long-audio", 30.5, "今天天气很好"),
            utterance("edge", 30.0, "今天天气很好"),
            utterance("long-text", 10.0, &"今天天气很好".repeat(200)),
            utterance("empty", 2.0, "  "),
        ]);
        let set = tokenize_source(&tokenizer, &prefix, &source, 448, None).unwrap();
        let kept: Vec<usize> = set.kept.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, [0, 2]);
        let skipped: Vec<(&str, SkipReason)> = set
            .skipped
            .iter()
            .map(|s| (s.id.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                ("long-audio", SkipReason::AudioOver30s),
                ("long-text", SkipReason::LabelsTooLong),
                ("empty", SkipReason::EmptyText),
            ]
        );
        assert!(
            set.skipped[0].detail.contains("30.50 s"),
            "{}",
            set.skipped[0].detail
        );
        let counts = set.skip_counts();
        assert_eq!(counts["audio_over_30s"], 1);
        assert_eq!(counts["labels_too_long"], 1);
        // Kept labels end with <|endoftext|> and start with the language token.
        let eot = i64::from(tokenizer.special_tokens().end_of_text);
        assert_eq!(set.kept[0].1.last(), Some(&eot));
        assert_eq!(
            set.kept[0].1[0],
            i64::from(tokenizer.language_id("zh").unwrap())
        );
    }

    #[test]
    fn rows_are_padded_with_the_ignored_label() {
        let (flat, width) = pad_labels(&[&[1, 2, 3], &[4]]);
        assert_eq!(width, 3);
        assert_eq!(flat, [1, 2, 3, 4, IGNORE, IGNORE]);
        assert_eq!(pad_labels(&[]), (Vec::new(), 0));
    }
}
