//! Audio: `missing_audio`, `undecodable_audio`, `empty_audio`, `sample_rate`,
//! `multichannel`, `too_short`, `too_long`, a declared duration that disagrees with the
//! audio (`metadata_mismatch`), and with `--deep` `silent_audio` and `clipped_audio`.

use std::collections::BTreeMap;

use super::{audio_finding, dataset_finding, example, secs, Ctx};
use crate::audio_pass::{DeepOutcome, ProbeOutcome};
use crate::finding::{Code, Finding, Severity};

/// A declared duration may differ from the audio's by this many seconds...
const DURATION_TOLERANCE_S: f64 = 0.2;
/// ...or this fraction of it, whichever is larger, before it is a mismatch.
const DURATION_TOLERANCE_FRACTION: f64 = 0.05;

pub(crate) fn check(ctx: &Ctx<'_>) -> Vec<Finding> {
    let opts = ctx.opts;
    let mut out = Vec::new();
    let mut off_rate: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, (u, facts, _)) in ctx.rows().enumerate() {
        let info = match &facts.probe {
            ProbeOutcome::Missing => {
                out.push(audio_finding(
                    u,
                    Code::MissingAudio,
                    Severity::Error,
                    format!("audio file not found (listed at {})", u.origin),
                ));
                continue;
            }
            ProbeOutcome::Empty(why) => {
                out.push(audio_finding(
                    u,
                    Code::EmptyAudio,
                    Severity::Error,
                    format!("{why}; re-export or drop the row"),
                ));
                continue;
            }
            ProbeOutcome::Broken(why) => {
                out.push(audio_finding(
                    u,
                    Code::UndecodableAudio,
                    Severity::Error,
                    why.clone(),
                ));
                continue;
            }
            ProbeOutcome::Ok(info) => info,
        };
        if let Some(problem) = &info.header_problem {
            out.push(audio_finding(
                u,
                Code::UndecodableAudio,
                Severity::Error,
                problem.clone(),
            ));
        } else if !info.codec.is_decodable() || info.rf64 {
            let what = if info.rf64 {
                "RF64 WAV"
            } else {
                info.codec.as_str()
            };
            out.push(audio_finding(
                u,
                Code::UndecodableAudio,
                Severity::Error,
                format!(
                    "{what} audio cannot be decoded by this toolkit; convert it to FLAC or WAV"
                ),
            ));
        }
        if let DeepOutcome::Failed(why) = &facts.deep {
            out.push(audio_finding(
                u,
                Code::UndecodableAudio,
                Severity::Error,
                why.clone(),
            ));
        }
        let duration = facts.duration_s();
        let empty = match &facts.deep {
            DeepOutcome::Ok { stats, .. } => stats.num_frames == 0,
            _ => info.num_frames == Some(0),
        };
        if empty {
            out.push(audio_finding(
                u,
                Code::EmptyAudio,
                Severity::Error,
                "the audio has no samples".into(),
            ));
            continue;
        }
        if info.sample_rate_hz != opts.target_sample_rate_hz {
            off_rate.entry(info.sample_rate_hz).or_default().push(i);
        }
        if info.sample_rate_hz < opts.target_sample_rate_hz {
            out.push(audio_finding(
                u,
                Code::SampleRate,
                Severity::Warning,
                format!(
                    "{} Hz audio: upsampling to {} Hz cannot restore the missing band; a model trained on {} Hz speech will hear it as muffled",
                    info.sample_rate_hz, opts.target_sample_rate_hz, opts.target_sample_rate_hz
                ),
            ));
        }
        if info.channels > 1 {
            out.push(audio_finding(
                u,
                Code::Multichannel,
                Severity::Warning,
                format!("{} channels: pack mixes them down to mono; check that they hold the same speech", info.channels),
            ));
        }
        if let Some(d) = duration {
            if d < opts.min_duration_s {
                out.push(audio_finding(
                    u,
                    Code::TooShort,
                    Severity::Warning,
                    format!(
                        "{} is shorter than the minimum {}",
                        secs(d),
                        secs(opts.min_duration_s)
                    ),
                ));
            }
            if d > opts.max_duration_s {
                out.push(audio_finding(
                    u,
                    Code::TooLong,
                    Severity::Warning,
                    format!(
                        "{} is longer than the maximum {}: long clips dominate GPU memory; split or filter them",
                        secs(d),
                        secs(opts.max_duration_s)
                    ),
                ));
            }
            if let Some(declared) = u.declared_duration_s {
                let tolerance = DURATION_TOLERANCE_S.max(DURATION_TOLERANCE_FRACTION * d);
                if (declared - d).abs() > tolerance {
                    out.push(audio_finding(
                        u,
                        Code::MetadataMismatch,
                        Severity::Warning,
                        format!(
                            "{} declares {} but the audio lasts {}: wrong row, or a re-encoded clip",
                            u.origin,
                            secs(declared),
                            secs(d)
                        ),
                    ));
                }
            }
        }
        if let DeepOutcome::Ok { stats, .. } = &facts.deep {
            let rms_dbfs = stats.rms_dbfs();
            if rms_dbfs < opts.silence_dbfs {
                out.push(audio_finding(
                    u,
                    Code::SilentAudio,
                    Severity::Error,
                    format!(
                        "no speech signal: RMS {} dBFS, peak {} dBFS (threshold {} dBFS) for a transcript of {} characters",
                        db(rms_dbfs),
                        db(stats.peak_dbfs()),
                        opts.silence_dbfs,
                        u.transcript.chars().filter(|c| !c.is_whitespace()).count()
                    ),
                ));
            }
            if stats.clipped_fraction > opts.clipped_fraction {
                out.push(audio_finding(
                    u,
                    Code::ClippedAudio,
                    Severity::Warning,
                    format!(
                        "{:.2}% of samples at full scale (threshold {:.2}%): the recording is clipped/distorted",
                        100.0 * stats.clipped_fraction,
                        100.0 * opts.clipped_fraction
                    ),
                ));
            }
        }
    }
    if !off_rate.is_empty() {
        let count: usize = off_rate.values().map(Vec::len).sum();
        let rates: Vec<String> = off_rate
            .iter()
            .map(|(r, v)| format!("{r} Hz x{}", v.len()))
            .collect();
        let examples = off_rate
            .values()
            .flat_map(|v| v.iter().take(opts.max_examples))
            .take(opts.max_examples)
            .map(|&i| {
                let u = &ctx.corpus.utterances[i];
                example(
                    u,
                    ctx.facts[i]
                        .info()
                        .map(|info| format!("{} Hz", info.sample_rate_hz)),
                )
            })
            .collect();
        out.push(dataset_finding(
            Code::SampleRate,
            Severity::Info,
            format!(
                "{count} files are not at {} Hz ({}); pack resamples them to {} Hz",
                opts.target_sample_rate_hz,
                rates.join(", "),
                opts.target_sample_rate_hz
            ),
            count as u64,
            examples,
        ));
    }
    out
}

fn db(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-inf".into()
    }
}
