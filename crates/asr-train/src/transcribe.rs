//! `asr-train transcribe`: greedy CTC transcripts of audio files in any format
//! `asr-audio` decodes (FLAC, WAV, MP3, Ogg/Vorbis), mixed to mono and resampled to
//! 16 kHz as `asr-data pack` does, normalized as in training.
//!
//! Files up to one window long ([`Windowing::chunk_length_s`], 30 s by default) are
//! decoded one by one, then run in length-sorted batches capped by padded seconds;
//! results come back in input order. A file that cannot be decoded, or is too short for
//! one frame, gets an error of its own and does not stop the others.
//!
//! **Long files** are run in overlapping windows, as the transformers ASR pipeline's
//! `chunk_length_s` / `stride_length_s` do, so that memory stays bounded whatever the
//! length (the attention of one window, not of the whole file): the clip is normalized
//! as a whole, cut into windows of `chunk_length_s` that overlap by `stride_length_s`
//! on each side, each window keeps the logits of its centre part (its first and last
//! `stride_length_s` are context only, except at the ends of the file), the kept
//! logits are joined and decoded greedily as one sequence. Windows start on frame
//! boundaries (multiples of the feature encoder's stride), so a frame of the joined
//! logits is the same frame of the whole clip; with a model whose outputs depend only
//! on nearby audio they are equal to the whole clip's. Unlike the pipeline, which
//! normalizes each chunk on its own, the normalization is over the whole file, as for
//! a file decoded in one piece. Windows are batched up to `batch_seconds`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use asr_model::precision::{Autocast, Precision};
use asr_model::{CtcModel, CtcOutput};
use asr_text::Vocab;
use tch::{Kind, Tensor};

use crate::data::{
    normalize_into, plan_epoch, Batch, Batching, DataPosition, MemorySource, Utterance,
    UtteranceSource, SAMPLE_RATE_HZ,
};
use crate::eval::batch_tensors;

/// How long files are cut into windows (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Windowing {
    /// Window length in seconds; files up to this long are decoded in one piece.
    pub chunk_length_s: f64,
    /// Context on each side of a window whose logits are dropped, in seconds.
    pub stride_length_s: f64,
}

impl Default for Windowing {
    /// 30 s windows with 5 s of context on each side (20 s kept per window).
    fn default() -> Self {
        Windowing {
            chunk_length_s: 30.0,
            stride_length_s: 5.0,
        }
    }
}

impl Windowing {
    /// Finite, `chunk_length_s` > 0, `stride_length_s` >= 0, and a window longer than
    /// its two strides; the message names the flags.
    pub fn validate(&self) -> Result<(), String> {
        let (chunk, stride) = (self.chunk_length_s, self.stride_length_s);
        if !(chunk.is_finite() && chunk > 0.0) {
            return Err(format!(
                "--chunk-length-s must be a finite number > 0, got {chunk}"
            ));
        }
        if !(stride.is_finite() && stride >= 0.0) {
            return Err(format!(
                "--stride-length-s must be a finite number >= 0, got {stride}"
            ));
        }
        if chunk <= 2.0 * stride {
            return Err(format!(
                "--chunk-length-s ({chunk}) must be more than twice --stride-length-s ({stride}): \
                 each window keeps its centre, chunk - 2 x stride"
            ));
        }
        Ok(())
    }

    /// (window, stride) in samples for `model`: the window rounded down and the stride
    /// rounded up to whole frames, the stride at least the encoder's receptive field
    /// (so a kept frame never needs audio past its window).
    pub fn samples(&self, model: &CtcModel) -> Result<(usize, usize), String> {
        self.validate()?;
        let hop = model.config().inputs_to_logits_ratio().max(1) as usize;
        let receptive = model.config().min_num_samples().max(1) as usize;
        let rate = f64::from(SAMPLE_RATE_HZ);
        let chunk = (self.chunk_length_s * rate).round() as usize / hop * hop;
        let stride = ((self.stride_length_s * rate).round() as usize).max(receptive);
        let stride = stride.div_ceil(hop) * hop;
        if chunk <= 2 * stride || chunk < receptive {
            return Err(format!(
                "--chunk-length-s {} is too short for --stride-length-s {} with this model \
                 (frames of {hop} samples, receptive field {receptive} samples)",
                self.chunk_length_s, self.stride_length_s
            ));
        }
        Ok((chunk, stride))
    }
}

/// One window of a long file: its samples, and the frames of the whole clip it
/// contributes (`keep_from..keep_to`, in frames of the whole clip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First sample (a multiple of the frame hop).
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
    /// First kept frame of the whole clip.
    pub keep_from: i64,
    /// One past the last kept frame of the whole clip.
    pub keep_to: i64,
}

/// The windows of a clip of `num_samples` samples, `total_frames` frames: windows of
/// `chunk` samples starting every `chunk - 2 * stride` samples, the last one moved back
/// to end at the clip's end (so no window is longer than `chunk`), each keeping the frames
/// from where the previous one stopped to `stride` before its own end (the last: to the
/// end). `chunk` and `stride` are multiples of `hop`, `chunk > 2 * stride`. One window
/// when the clip fits.
pub fn plan_windows(
    num_samples: usize,
    chunk: usize,
    stride: usize,
    hop: usize,
    total_frames: i64,
) -> Vec<Window> {
    if num_samples <= chunk {
        return vec![Window {
            start: 0,
            end: num_samples,
            keep_from: 0,
            keep_to: total_frames,
        }];
    }
    let step = chunk - 2 * stride;
    // The last window starts on a frame boundary at most `chunk` before the end.
    let last_start = (num_samples - chunk).div_ceil(hop) * hop;
    let mut windows: Vec<Window> = Vec::new();
    for k in 0.. {
        let start = (k * step).min(last_start);
        let last = start == last_start;
        let keep_from = windows.last().map_or(0, |w| w.keep_to);
        let (end, keep_to) = if last {
            (num_samples, total_frames)
        } else {
            (start + chunk, ((start + chunk - stride) / hop) as i64)
        };
        windows.push(Window {
            start,
            end,
            keep_from,
            keep_to,
        });
        if last {
            break;
        }
    }
    windows
}

/// The logits `[frames, vocab]` (float32, CPU) of a whole normalized clip computed
/// window by window (see the module documentation), at most `per_batch` windows per
/// forward pass.
pub fn windowed_logits(
    model: &CtcModel,
    normalized: &[f32],
    windows: &[Window],
    per_batch: usize,
    precision: Precision,
) -> Result<Tensor, String> {
    let hop = model.config().inputs_to_logits_ratio().max(1) as usize;
    let device = model.device();
    let mut parts = Vec::with_capacity(windows.len());
    for windows in same_length_batches(windows, per_batch) {
        let len = windows[0].end - windows[0].start;
        let mut input = Vec::with_capacity(len * windows.len());
        for w in windows {
            input.extend_from_slice(&normalized[w.start..w.end]);
        }
        let input = Tensor::from_slice(&input)
            .view([windows.len() as i64, len as i64])
            .to_device(device);
        let logits = tch::no_grad(|| {
            let _autocast = Autocast::enter(device, precision);
            model
                .forward_padded(&input, &vec![len as i64; windows.len()], false, None)
                .map(|o| o.logits.to_kind(Kind::Float).to_device(tch::Device::Cpu))
                .map_err(|e| e.to_string())
        })?;
        let frames = logits.size()[1];
        for (b, w) in windows.iter().enumerate() {
            let offset = (w.start / hop) as i64;
            let (from, to) = (w.keep_from - offset, w.keep_to - offset);
            if from < 0 || to < from || to > frames {
                return Err(format!(
                    "window at sample {} ({frames} frames) does not hold frames {}..{}",
                    w.start, w.keep_from, w.keep_to
                ));
            }
            parts.push(logits.get(b as i64).narrow(0, from, to - from));
        }
    }
    Ok(Tensor::cat(&parts, 0))
}

/// Consecutive windows of equal length, at most `per_batch` (at least 1) together, so
/// that a batch needs no padding.
fn same_length_batches(windows: &[Window], per_batch: usize) -> Vec<&[Window]> {
    let mut batches = Vec::new();
    let mut rest = windows;
    while let Some(first) = rest.first() {
        let len = first.end - first.start;
        let take = rest
            .iter()
            .take(per_batch.max(1))
            .take_while(|w| w.end - w.start == len)
            .count();
        let (batch, tail) = rest.split_at(take);
        batches.push(batch);
        rest = tail;
    }
    batches
}

/// Transcribe one clip longer than a window (see the module documentation).
pub fn transcribe_long(
    model: &CtcModel,
    vocab: &Vocab,
    audio: &[f32],
    windowing: &Windowing,
    batch_seconds: f64,
    precision: Precision,
) -> Result<String, String> {
    let (chunk, stride) = windowing.samples(model)?;
    let hop = model.config().inputs_to_logits_ratio().max(1) as usize;
    let total = model.num_frames(audio.len() as i64);
    let windows = plan_windows(audio.len(), chunk, stride, hop, total);
    let mut normalized = vec![0f32; audio.len()];
    normalize_into(audio, &mut normalized);
    let per_batch = (batch_seconds * f64::from(SAMPLE_RATE_HZ) / chunk as f64).floor() as usize;
    let logits = windowed_logits(model, &normalized, &windows, per_batch, precision)?;
    let frames = logits.size()[0];
    let output = CtcOutput {
        logits: logits.unsqueeze(0),
        output_lengths: vec![frames],
    };
    Ok(model
        .greedy_decode(&output, vocab)
        .pop()
        .unwrap_or_default())
}

/// Decode an audio file to 16 kHz mono samples.
pub fn load_audio_16k(path: &Path) -> Result<Vec<f32>, String> {
    let decoded = asr_audio::decode_file(path).map_err(|e| e.to_string())?;
    let mono = decoded.to_mono();
    if decoded.sample_rate_hz == crate::data::SAMPLE_RATE_HZ {
        return Ok(mono);
    }
    asr_audio::resample::resample_to_16k(mono, decoded.sample_rate_hz).map_err(|e| e.to_string())
}

/// Transcribe `paths` (see the module documentation); one result per path, in order.
pub fn transcribe_files(
    model: &CtcModel,
    vocab: &Vocab,
    paths: &[PathBuf],
    batch_seconds: f64,
    windowing: &Windowing,
    precision: Precision,
) -> Vec<Result<String, String>> {
    let min_samples = model.config().min_num_samples().max(1) as usize;
    let window_samples = windowing.samples(model).map(|(chunk, _)| chunk);
    let mut results: Vec<Option<Result<String, String>>> = vec![None; paths.len()];
    let mut utterances = Vec::new();
    let mut owners = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let named = |e: String| format!("{}: {e}", path.display());
        match load_audio_16k(path) {
            Ok(audio) if audio.len() < min_samples => {
                results[i] = Some(Err(named(format!(
                    "{} samples at 16 kHz, shorter than one frame ({min_samples})",
                    audio.len()
                ))));
            }
            Ok(audio) if !matches!(window_samples, Ok(w) if audio.len() <= w) => {
                // Long files one at a time, so that their audio is dropped after.
                results[i] = Some(
                    transcribe_long(model, vocab, &audio, windowing, batch_seconds, precision)
                        .map_err(named),
                );
            }
            Ok(audio) => {
                utterances.push(Utterance {
                    id: path.display().to_string(),
                    audio,
                    labels: Vec::new(),
                    text: String::new(),
                });
                owners.push(i);
            }
            Err(e) => results[i] = Some(Err(named(e))),
        }
    }
    let decoded = transcribe_batched(model, vocab, utterances, batch_seconds, precision);
    for (m, result) in decoded.into_iter().enumerate() {
        let i = owners[m];
        results[i] = Some(result.map_err(|e| format!("{}: {e}", paths[i].display())));
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not transcribed".into())))
        .collect()
}

/// Clips that fit one window, in length-sorted batches; one result per clip, in order.
fn transcribe_batched(
    model: &CtcModel,
    vocab: &Vocab,
    utterances: Vec<Utterance>,
    batch_seconds: f64,
    precision: Precision,
) -> Vec<Result<String, String>> {
    let mut results: Vec<Result<String, String>> = vec![Err(String::new()); utterances.len()];
    let source: Arc<dyn UtteranceSource> = Arc::new(MemorySource::new(utterances));
    let lengths: Vec<u64> = source.index().iter().map(|u| u.num_samples).collect();
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
    let device = model.device();
    for members in plan {
        let decoded = Batch::assemble(source.as_ref(), &members, DataPosition::default(), 1, true)
            .map_err(|e| e.to_string())
            .and_then(|batch| {
                let (input, _) = batch_tensors(&batch, device);
                tch::no_grad(|| {
                    let _autocast = Autocast::enter(device, precision);
                    model
                        .forward_padded(&input, &batch.lengths, false, None)
                        .map(|output| model.greedy_decode(&output, vocab))
                        .map_err(|e| e.to_string())
                })
            });
        for (k, &m) in members.iter().enumerate() {
            results[m] = match &decoded {
                Ok(texts) => Ok(texts[k].clone()),
                Err(e) => Err(e.clone()),
            };
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept frames tile the clip exactly, in order, and every window but the last is
    /// `chunk` long with at least `stride` of context on each side of what it keeps.
    fn check_plan(num_samples: usize, chunk: usize, stride: usize, hop: usize) {
        let total = ((num_samples - 40) / hop + 1) as i64;
        let windows = plan_windows(num_samples, chunk, stride, hop, total);
        assert_eq!(windows[0].keep_from, 0);
        assert_eq!(windows.last().unwrap().keep_to, total);
        assert_eq!(windows.last().unwrap().end, num_samples);
        for pair in windows.windows(2) {
            assert_eq!(pair[0].keep_to, pair[1].keep_from, "{windows:?}");
        }
        for (k, w) in windows.iter().enumerate() {
            assert!(w.end - w.start <= chunk, "{w:?}");
            assert_eq!(w.start % hop, 0);
            assert!(w.keep_from < w.keep_to, "{windows:?}");
            let first = (w.start / hop) as i64;
            if k > 0 {
                assert!(w.keep_from - first >= (stride / hop) as i64, "{windows:?}");
            }
            if k + 1 < windows.len() {
                assert_eq!(w.end - w.start, chunk);
                let after = (w.end / hop) as i64 - w.keep_to;
                assert!(after >= (stride / hop) as i64, "{windows:?}");
            }
        }
    }

    #[test]
    fn windows_tile_the_clip_with_context_on_both_sides() {
        let (chunk, stride, hop) = (480_000, 80_000, 320);
        check_plan(480_000 * 4 + 12_345, chunk, stride, hop);
        check_plan(480_001, chunk, stride, hop);
        check_plan(57_600_000, chunk, stride, hop); // one hour
        for n in (8_000..40_000).step_by(997) {
            check_plan(n, 8_000, 1_600, 20);
        }
        // A clip that fits is one window, kept whole.
        let one = plan_windows(480_000, chunk, stride, hop, 1499);
        assert_eq!(
            one,
            vec![Window {
                start: 0,
                end: 480_000,
                keep_from: 0,
                keep_to: 1499
            }]
        );
        // One hour at the defaults: 180 windows of 30 s (20 s kept each), not one.
        let hour = plan_windows(57_600_000, chunk, stride, hop, 179_999);
        assert_eq!(hour.len(), 180);
    }

    #[test]
    fn windowing_options_are_checked() {
        assert!(Windowing::default().validate().is_ok());
        let bad = |chunk, stride| {
            Windowing {
                chunk_length_s: chunk,
                stride_length_s: stride,
            }
            .validate()
            .unwrap_err()
        };
        assert!(bad(f64::NAN, 1.0).contains("--chunk-length-s"));
        assert!(bad(10.0, -1.0).contains("--stride-length-s"));
        assert!(bad(10.0, 5.0).contains("more than twice"));
    }
}
