//! Corpus validation: every check of `asr-data validate`, the report model (serde, with a
//! JSON Schema in `schemas/validate-report.schema.json`), statistics (polars) and the
//! terminal summary.
//!
//! [`validate`] takes a [`Corpus`] from any reader of `asr-corpus` and:
//! 1. probes every audio file's header in parallel (rayon), or with
//!    [`ValidateOptions::deep`] decodes every file fully (symphonia) for signal checks;
//! 2. turns reader issues, audio facts and transcript facts into [`Finding`]s with stable
//!    [`Code`]s (see DESIGN.md's list; `unreadable_path` is added for folders that cannot
//!    be listed and symlink loops);
//! 3. computes [`Stats`] and the character vocabulary.
//!
//! Header-only mode decodes nothing: `stats.files_decoded` is 0 and a file with a valid
//! header but a corrupt body passes; `--deep` finds it.

mod audio_pass;
mod checks;
pub mod finding;
pub mod render;
pub mod report;
pub mod stats;

use std::collections::BTreeMap;
use std::time::Instant;

use asr_corpus::Corpus;
use rayon::prelude::*;

pub use finding::{Code, Example, Finding, Severity};
pub use render::{render, RenderOptions};
pub use report::{DatasetInfo, Report, Summary, REPORT_FORMAT_VERSION};
pub use stats::Stats;

/// The finding code and severity a reader issue of `kind` is reported with (`asr-data
/// pack` lists the rows readers lost under the same codes).
pub fn issue_code(kind: asr_corpus::IssueKind) -> (Code, Severity) {
    checks::structure::classify(kind)
}

/// Thresholds and mode of a validation run.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Decode every file (signal checks, exact durations, truncation, duplicates).
    pub deep: bool,
    /// `too_short` below this many seconds.
    pub min_duration_s: f64,
    /// `too_long` above this many seconds.
    pub max_duration_s: f64,
    /// The rate the model expects; lower rates are `sample_rate` warnings.
    pub target_sample_rate_hz: u32,
    /// `speech_rate` when characters per second differ from the corpus median by more
    /// than this factor either way.
    pub speech_rate_factor: f64,
    /// `silent_audio` when the RMS level is below this (dBFS).
    pub silence_dbfs: f64,
    /// `clipped_audio` when more than this fraction of samples is at full scale.
    pub clipped_fraction: f64,
    /// Examples named by a dataset-level finding.
    pub max_examples: usize,
    /// How transcripts are normalized before the text checks, the statistics and the
    /// vocabulary (`--normalize`): the policy `asr-data pack` will apply, so that the
    /// report previews the pack. The default is NFC with whitespace collapsed.
    pub normalize: asr_text::NormalizePolicy,
}

impl Default for ValidateOptions {
    /// Defaults for wav2vec2-style fine-tuning: 0.5 s to 20 s clips (the range of
    /// transformers' CTC fine-tuning example), 16 kHz, speech rate within 3x of the
    /// median, silence below -60 dBFS RMS, clipping above 0.1% of samples.
    fn default() -> Self {
        ValidateOptions {
            deep: false,
            min_duration_s: 0.5,
            max_duration_s: 20.0,
            target_sample_rate_hz: 16_000,
            speech_rate_factor: 3.0,
            silence_dbfs: -60.0,
            clipped_fraction: 0.001,
            max_examples: 5,
            normalize: asr_text::NormalizePolicy::default(),
        }
    }
}

/// Where the time went (seconds), for `--timings`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Probing / decoding the audio.
    pub audio_s: f64,
    /// Transcript analysis and every check.
    pub checks_s: f64,
    /// Statistics and vocabulary.
    pub stats_s: f64,
}

/// A validation that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The statistics table failed (a bug, not a data problem).
    #[error("computing statistics failed: {0}")]
    Stats(#[from] polars::error::PolarsError),
}

/// Validates a corpus (see the crate docs). `progress` is called with 1 after each audio
/// file.
pub fn validate(
    corpus: &Corpus,
    opts: &ValidateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Report, Timings), ValidateError> {
    let start = Instant::now();
    let (facts, files_decoded) = audio_pass::run(&corpus.utterances, opts.deep, progress);
    let audio_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let texts: Vec<checks::text::TextFacts> = corpus
        .utterances
        .par_iter()
        .with_min_len(256)
        .map(|u| checks::text::TextFacts::of(&u.transcript, &opts.normalize))
        .collect();
    let ctx = checks::Ctx {
        corpus,
        facts: &facts,
        texts: &texts,
        opts,
    };
    let mut findings = checks::run_all(&ctx);
    let summary = report::summarize(&mut findings);
    let checks_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let rows: Vec<stats::StatRow> = corpus
        .utterances
        .iter()
        .zip(&facts)
        .zip(&texts)
        .map(|((u, f), t)| {
            let info = f.info();
            stats::StatRow {
                split: u.split.clone(),
                speaker: u.speaker.clone(),
                duration_s: f.duration_s(),
                sample_rate_hz: info.map(|i| i.sample_rate_hz),
                codec: info.map(|i| i.codec.as_str().to_owned()),
                channels: info.map(|i| i.channels),
                chars: t.chars,
                words: t.normalized.split_whitespace().count(),
            }
        })
        .collect();
    let stats = stats::compute(&rows, files_decoded)?;
    let mut vocab: BTreeMap<String, u64> = BTreeMap::new();
    for t in &texts {
        for c in t.normalized.chars().filter(|c| !c.is_whitespace()) {
            *vocab.entry(c.to_string()).or_default() += 1;
        }
    }
    let stats_s = start.elapsed().as_secs_f64();

    let report = Report {
        format_version: REPORT_FORMAT_VERSION,
        dataset: DatasetInfo {
            path: corpus.root.display().to_string(),
            format: corpus.format.as_str().to_owned(),
            deep: opts.deep,
            ignored: corpus
                .ignored
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            normalization: (opts.normalize != asr_text::NormalizePolicy::default())
                .then(|| opts.normalize.clone()),
        },
        summary,
        findings,
        stats,
        vocab,
    };
    Ok((
        report,
        Timings {
            audio_s,
            checks_s,
            stats_s,
        },
    ))
}
