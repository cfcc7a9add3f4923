//! The audio pass: every utterance's file probed (header only) or, with `--deep`, fully
//! decoded, in parallel with rayon. Produces facts; the checks turn facts into findings.

use std::sync::atomic::{AtomicU64, Ordering};

use asr_audio::{AudioInfo, DecodeError, DecodedAudio, ProbeError, SignalStats};
use asr_corpus::Utterance;
use rayon::prelude::*;

/// What the header probe said.
#[derive(Clone, Debug)]
pub(crate) enum ProbeOutcome {
    /// Headers read.
    Ok(AudioInfo),
    /// No such file.
    Missing,
    /// A 0-byte (or too short) file.
    Empty(String),
    /// Not audio, or a malformed header, or unreadable.
    Broken(String),
}

/// What the full decode said (`--deep` only).
#[derive(Clone, Debug)]
pub(crate) enum DeepOutcome {
    /// Not decoded (header-only mode, or the probe already failed).
    Skipped,
    /// Decoded cleanly.
    Ok {
        /// Decoded duration in seconds.
        duration_s: f64,
        /// Signal statistics.
        stats: SignalStats,
    },
    /// Decoding failed; the message says where and why.
    Failed(String),
}

/// Audio facts of one utterance.
#[derive(Clone, Debug)]
pub(crate) struct AudioFacts {
    pub(crate) probe: ProbeOutcome,
    pub(crate) deep: DeepOutcome,
}

impl AudioFacts {
    /// The header info, when the probe worked.
    pub(crate) fn info(&self) -> Option<&AudioInfo> {
        match &self.probe {
            ProbeOutcome::Ok(info) => Some(info),
            _ => None,
        }
    }

    /// Best known duration: decoded when decoded, else the header's.
    pub(crate) fn duration_s(&self) -> Option<f64> {
        match &self.deep {
            DeepOutcome::Ok { duration_s, .. } => Some(*duration_s),
            _ => self.info().and_then(AudioInfo::duration_s),
        }
    }
}

fn probe_outcome(err: ProbeError) -> ProbeOutcome {
    match &err {
        e if e.is_not_found() => ProbeOutcome::Missing,
        ProbeError::TooShort { .. } => ProbeOutcome::Empty(err.to_string()),
        _ => ProbeOutcome::Broken(err.to_string()),
    }
}

/// Probes (and with `deep`, decodes) every utterance's audio. `progress` is called with 1
/// after each file. Returns the facts in utterance order and the number of files decoded.
pub(crate) fn run(
    utterances: &[Utterance],
    deep: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> (Vec<AudioFacts>, u64) {
    let decoded = AtomicU64::new(0);
    let facts = utterances
        .par_iter()
        .with_min_len(16)
        .map_init(DecodedAudio::default, |buffer, u| {
            let probe = match asr_audio::probe_file(&u.audio_path) {
                Ok(info) => ProbeOutcome::Ok(info),
                Err(e) => probe_outcome(e),
            };
            let deep = match (&probe, deep) {
                (ProbeOutcome::Ok(info), true) => {
                    decoded.fetch_add(1, Ordering::Relaxed);
                    match asr_audio::decode_probed_into(&u.audio_path, info, buffer) {
                        Ok(()) => DeepOutcome::Ok {
                            duration_s: buffer.duration_s(),
                            stats: SignalStats::of(buffer),
                        },
                        Err(DecodeError::Probe(e)) => DeepOutcome::Failed(e.to_string()),
                        Err(e) => DeepOutcome::Failed(e.to_string()),
                    }
                }
                _ => DeepOutcome::Skipped,
            };
            // Large clips should not pin memory in every worker.
            if buffer.samples.capacity() > 16 << 20 {
                *buffer = DecodedAudio::default();
            }
            progress(1);
            AudioFacts { probe, deep }
        })
        .collect();
    (facts, decoded.into_inner())
}
