//! Alignment: `ctc_infeasible` (the transcript needs more CTC frames than a wav2vec2
//! encoder gives for the audio: the loss is infinite) and `speech_rate` (characters per
//! second far from the corpus median: a cut transcript or a clip paired with the wrong
//! text).
//!
//! Frames are counted for the audio as packed (resampled to 16 kHz) with
//! `asr_text::wav2vec2_num_frames` (about one frame per 320 samples, 20 ms); the labels a
//! transcript needs with `asr_text::ctc_min_frames_text` on the lower-cased, normalized
//! transcript: one per character and word delimiter, plus one blank between equal
//! neighbours.

use asr_text::{ctc_min_frames_text, wav2vec2_num_frames};

use super::{secs, text_finding, Ctx};
use crate::finding::{Code, Finding, Severity};

/// `speech_rate` needs at least this many utterances with a duration and a transcript to
/// know the corpus's norm.
pub const MIN_UTTERANCES_FOR_RATE: usize = 10;

pub(crate) fn check(ctx: &Ctx<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut rates: Vec<(usize, f64)> = Vec::new();
    for (i, (u, facts, t)) in ctx.rows().enumerate() {
        let Some(duration) = facts.duration_s() else {
            continue;
        };
        if t.normalized.is_empty() || duration <= 0.0 {
            continue;
        }
        let samples_16k = (duration * 16_000.0).round() as u64;
        let frames = wav2vec2_num_frames(samples_16k);
        let needed = ctc_min_frames_text(&t.normalized.to_lowercase());
        if needed > frames {
            out.push(text_finding(
                u,
                Code::CtcInfeasible,
                Severity::Error,
                format!(
                    "the transcript needs at least {needed} CTC frames ({} characters and delimiters plus blanks between repeated letters) but {} of audio gives {frames} frames at 20 ms: the CTC loss is infinite; is this the transcript of this clip?",
                    t.chars + t.normalized.matches(' ').count(),
                    secs(duration)
                ),
            ));
            continue;
        }
        if t.chars > 0 {
            rates.push((i, t.chars as f64 / duration));
        }
    }
    if rates.len() >= MIN_UTTERANCES_FOR_RATE {
        let mut sorted: Vec<f64> = rates.iter().map(|&(_, r)| r).collect();
        sorted.sort_by(f64::total_cmp);
        let median = crate::stats::quantile_sorted(&sorted, 0.5);
        let factor = ctx.opts.speech_rate_factor;
        for &(i, rate) in &rates {
            let u = &ctx.corpus.utterances[i];
            let duration = ctx.facts[i].duration_s().unwrap_or(0.0);
            let hint = if rate > median * factor {
                "is the audio cut short, or the transcript of a longer clip?"
            } else if rate < median / factor {
                "is the transcript cut short, or the audio of another clip?"
            } else {
                continue;
            };
            out.push(text_finding(
                u,
                Code::SpeechRate,
                Severity::Warning,
                format!(
                    "{:.1} characters per second ({} characters in {}), the corpus median is {median:.1}: {hint}",
                    rate,
                    ctx.texts[i].chars,
                    secs(duration)
                ),
            ));
        }
    }
    out
}
