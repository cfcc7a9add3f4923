//! Whisper's log-mel front end: transformers' `WhisperFeatureExtractor` (5.23.0,
//! `models/whisper/feature_extraction_whisper.py`) on libtorch.
//!
//! Input: mono `f32` samples at 16 kHz in [-1, 1], as the shards give them (an int16
//! shard's samples divided by 32768, see [`samples_from_i16`]). Per utterance:
//! 1. pad with zeros or cut to `chunk_length` (30 s = 480,000 samples);
//! 2. STFT: `n_fft` 400, hop 160, periodic Hann window of 400, `center` with **reflect**
//!    padding of `n_fft / 2` on both sides, one-sided; 3001 frames, the last dropped;
//! 3. power `|X|²`, then a slaney-scale, slaney-normalized mel bank from 0 to 8 kHz
//!    ([`mel_filter_bank`]);
//! 4. `log10(max(x, 1e-10))`, then `max(x, x.max() - 8)` with the max over this
//!    utterance's whole (padded) spectrogram, then `(x + 4) / 4`.
//!
//! The reference is the extractor's numpy path (`_np_extract_fbank_features`), which
//! works in float64 up to the log and in float32 after it; so does this module. Its
//! torch path (float32 throughout, taken when torch is installed) differs from its own
//! numpy path by up to 1.9e-5 (80 mels) and 4.6e-5 (128 mels) on the fixture clips;
//! this module is within 1.2e-7 of the numpy path (`tests/whisper_features.rs`).
//!
//! Padding and lengths: transformers always computes the features of the padded 30 s
//! (the padding's frames are part of the max). It returns an `attention_mask` only when
//! asked (`return_attention_mask`, default False): the sample mask taken every 160th
//! sample, i.e. frame `t` is valid when `t * 160 < len`. [`valid_frames`] gives that
//! count. `WhisperEncoder` ignores the mask: the model always sees 3000 frames.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Sample rate of Whisper's input, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// Why a feature extractor cannot be built or run.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// A `preprocessor_config.json` value this extractor does not reproduce.
    #[error("preprocessor_config.json: {field} = {value} is not supported ({why})")]
    Unsupported {
        /// The config key.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is supported instead.
        why: &'static str,
    },
    /// The config file could not be read or parsed.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// libtorch refused an operation.
    #[error("feature extraction failed in libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The keys of transformers' `preprocessor_config.json` for `WhisperFeatureExtractor`,
/// with its defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Number of mel bins: 80, or 128 for large-v3.
    #[serde(default = "default_feature_size")]
    pub feature_size: i64,
    /// Input sample rate (only 16000).
    #[serde(default = "default_sampling_rate")]
    pub sampling_rate: u32,
    /// STFT hop in samples.
    #[serde(default = "default_hop_length")]
    pub hop_length: i64,
    /// Window length in seconds that every input is padded or cut to.
    #[serde(default = "default_chunk_length")]
    pub chunk_length: i64,
    /// FFT size (and Hann window length).
    #[serde(default = "default_n_fft")]
    pub n_fft: i64,
    /// Value of the padding samples (only 0.0: silence).
    #[serde(default)]
    pub padding_value: f64,
    /// Gaussian dither added to the frames (only 0.0: deterministic features).
    #[serde(default)]
    pub dither: f64,
}

fn default_feature_size() -> i64 {
    80
}
fn default_sampling_rate() -> u32 {
    SAMPLE_RATE_HZ
}
fn default_hop_length() -> i64 {
    160
}
fn default_chunk_length() -> i64 {
    30
}
fn default_n_fft() -> i64 {
    400
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig::with_mel_bins(80)
    }
}

impl FeatureConfig {
    /// Whisper's front end with `feature_size` mel bins (80, or 128 for large-v3).
    pub fn with_mel_bins(feature_size: i64) -> Self {
        FeatureConfig {
            feature_size,
            sampling_rate: SAMPLE_RATE_HZ,
            hop_length: default_hop_length(),
            chunk_length: default_chunk_length(),
            n_fft: default_n_fft(),
            padding_value: 0.0,
            dither: 0.0,
        }
    }

    /// Reads a `preprocessor_config.json` (unknown keys, e.g. `processor_class`, ignored).
    pub fn from_json_file(path: &std::path::Path) -> Result<Self, FeatureError> {
        let config_error = |message: String| FeatureError::Config {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| config_error(format!("not a preprocessor config: {e}")))
    }

    /// Samples per input window (480,000 for 30 s at 16 kHz).
    pub fn n_samples(&self) -> i64 {
        self.chunk_length * i64::from(self.sampling_rate)
    }

    /// Frames per input window (3000): the STFT's `n_samples / hop + 1` less the last.
    pub fn n_frames(&self) -> i64 {
        self.n_samples() / self.hop_length
    }

    fn check(&self) -> Result<(), FeatureError> {
        let unsupported =
            |field, value: String, why| Err(FeatureError::Unsupported { field, value, why });
        if self.sampling_rate != SAMPLE_RATE_HZ {
            return unsupported(
                "sampling_rate",
                self.sampling_rate.to_string(),
                "Whisper takes 16000 Hz",
            );
        }
        if self.feature_size < 1 {
            return unsupported(
                "feature_size",
                self.feature_size.to_string(),
                "needs at least one mel bin",
            );
        }
        if self.n_fft < 2 || self.hop_length < 1 || self.chunk_length < 1 {
            let value = format!(
                "n_fft {}, hop_length {}, chunk_length {}",
                self.n_fft, self.hop_length, self.chunk_length
            );
            return unsupported(
                "n_fft",
                value,
                "needs n_fft >= 2, hop_length >= 1, chunk_length >= 1",
            );
        }
        if self.padding_value != 0.0 {
            return unsupported(
                "padding_value",
                self.padding_value.to_string(),
                "only 0.0 (silence)",
            );
        }
        if self.dither != 0.0 {
            return unsupported(
                "dither",
                self.dither.to_string(),
                "only 0.0: features stay deterministic",
            );
        }
        Ok(())
    }
}

/// A batch of log-mel features.
#[derive(Debug)]
pub struct WhisperFeatures {
    /// `(batch, mels, n_frames)` float32 on the CPU: transformers' `input_features`.
    pub input_features: Tensor,
    /// Per utterance, the frames that hold audio ([`valid_frames`]): transformers'
    /// `attention_mask.sum(-1)` with `return_attention_mask=True`.
    pub num_frames: Vec<i64>,
}

/// Whisper's feature extractor: the mel bank and window built once, reused per batch.
#[derive(Debug)]
pub struct WhisperFeatureExtractor {
    config: FeatureConfig,
    /// `(n_fft / 2 + 1, mels)` float64, transformers' `mel_filters`.
    mel_filters: Tensor,
    /// Periodic Hann window of `n_fft`, float64.
    window: Tensor,
}

impl WhisperFeatureExtractor {
    /// An extractor for `config`; errors on settings it does not reproduce (dither,
    /// padding value, other rates).
    pub fn new(config: FeatureConfig) -> Result<Self, FeatureError> {
        config.check()?;
        let bins = (config.n_fft / 2 + 1) as usize;
        let bank = mel_filter_bank(
            bins,
            config.feature_size as usize,
            0.0,
            8000.0,
            config.sampling_rate,
        );
        let mel_filters = Tensor::from_slice(&bank).view([bins as i64, config.feature_size]);
        let window = Tensor::hann_window_periodic(config.n_fft, true, (Kind::Double, Device::Cpu));
        Ok(WhisperFeatureExtractor {
            config,
            mel_filters,
            window,
        })
    }

    /// The default extractor with `mel_bins` mel bins (80, or 128 for large-v3).
    pub fn with_mel_bins(mel_bins: i64) -> Result<Self, FeatureError> {
        Self::new(FeatureConfig::with_mel_bins(mel_bins))
    }

    /// The configuration (what `preprocessor_config.json` holds).
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// The mel bank, `(n_fft / 2 + 1, mels)` float64.
    pub fn mel_filters(&self) -> &Tensor {
        &self.mel_filters
    }

    /// Features of a batch of utterances (16 kHz `f32` samples each), each padded or cut
    /// to the window; every utterance is normalized by its own maximum, so its features
    /// do not depend on the rest of the batch.
    pub fn extract(&self, utterances: &[&[f32]]) -> Result<WhisperFeatures, FeatureError> {
        if utterances.is_empty() {
            let shape = [0, self.config.feature_size, self.config.n_frames()];
            let input_features = Tensor::zeros(shape, (Kind::Float, Device::Cpu));
            return Ok(WhisperFeatures {
                input_features,
                num_frames: Vec::new(),
            });
        }
        let longest = utterances.iter().map(|u| u.len()).max().unwrap_or(0) as i64;
        let span = self.signal_span(longest);
        let input_features = self.log_mel(&padded_waveforms(utterances, span))?;
        let num_frames = utterances
            .iter()
            .map(|u| valid_frames(u.len() as i64, &self.config))
            .collect();
        Ok(WhisperFeatures {
            input_features,
            num_frames,
        })
    }

    /// Features of one utterance, `(mels, n_frames)`.
    pub fn extract_one(&self, samples: &[f32]) -> Result<Tensor, FeatureError> {
        Ok(self.extract(&[samples])?.input_features.f_squeeze_dim(0)?)
    }

    /// How many samples of the zero-padded window the STFT has to see, for clips of at
    /// most `longest` samples: frames that lie wholly in the zero padding have a power
    /// of exactly 0, so they are not computed but filled in ([`Self::log_mel`]), which
    /// gives the same features as transforming the whole window. A 5-s clip needs 500 of
    /// the 3,000 frames. The span reaches half a window and one sample past the clip, so
    /// the right-hand reflection (`center`) mirrors only zeros, as in the full window.
    fn signal_span(&self, longest: i64) -> i64 {
        let c = &self.config;
        let n_samples = c.n_samples();
        let half = c.n_fft / 2;
        let longest = longest.min(n_samples);
        // Frame t covers samples [t * hop - half, t * hop + half): it is all padding
        // once t * hop - half >= longest. A span of s samples gives s / hop frames once
        // the last is dropped, so frames * hop samples give all that may hold signal.
        let frames = (longest + half + c.hop_length - 1) / c.hop_length;
        let span = (longest + half + 1).max(frames * c.hop_length);
        span.min(n_samples)
    }

    /// Steps 2-4 on `(batch, span)` float64 waveforms: the first `span` samples of each
    /// zero-padded window ([`Self::signal_span`]; the whole window when `span` is
    /// `n_samples`).
    fn log_mel(&self, waveforms: &Tensor) -> Result<Tensor, FeatureError> {
        let c = &self.config;
        let n_frames = c.n_frames();
        // `center`: n_fft / 2 reflected samples on each side (numpy's and torch's
        // "reflect" both leave the edge sample out). Done here rather than by
        // `stft_center`: tch 0.24 always passes `align_to_window`, which libtorch 2.11
        // refuses together with `center = true`.
        let half = c.n_fft / 2;
        let centred = waveforms.f_reflection_pad1d([half, half])?;
        let stft = centred.f_stft(
            c.n_fft,
            c.hop_length,
            c.n_fft,
            Some(&self.window),
            false,
            true,
            true,
            false,
        )?;
        // The whole window gives n_frames + 1 frames, the last of which is dropped; a
        // shorter span gives only frames that may hold signal, the rest is zero power.
        let frames = (stft.size()[2] - 1).min(n_frames);
        // |X|^2 as re^2 + im^2: the same values to 1e-15 and ~5x faster than `abs()` (a
        // hypot per bin) then a square.
        let kept = stft.f_narrow(2, 0, frames)?;
        let power = kept
            .f_real()?
            .f_square()?
            .f_add(&kept.f_imag()?.f_square()?)?;
        // (mels, bins) @ (batch, bins, frames) -> (batch, mels, frames)
        let mel = self.mel_filters.f_tr()?.f_matmul(&power)?;
        // The frames in the padding: mel power 0, floored by the clamp below.
        let mel = if frames < n_frames {
            mel.f_constant_pad_nd([0, n_frames - frames])?
        } else {
            mel
        };
        let log_spec = mel.f_clamp_min(1e-10)?.f_log10()?.f_to_kind(Kind::Float)?;
        let max = log_spec.f_amax([1, 2], true)?;
        let floored = log_spec.f_maximum(&(max - 8.0))?;
        Ok((floored + 4.0) / 4.0)
    }
}

/// `(batch, span)` float64: each utterance's first `span` samples, zero-padded.
fn padded_waveforms(utterances: &[&[f32]], span: i64) -> Tensor {
    let mut padded = vec![0f64; utterances.len() * span as usize];
    for (row, samples) in padded.chunks_mut(span as usize).zip(utterances) {
        for (slot, &x) in row.iter_mut().zip(samples.iter()) {
            *slot = f64::from(x);
        }
    }
    Tensor::from_slice(&padded).view([utterances.len() as i64, span])
}

/// Converts int16 shard samples to the extractor's input: `x / 32768`.
pub fn samples_from_i16(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32_768.0).collect()
}

/// Frames of the padded window that hold audio for an utterance of `num_samples`:
/// `ceil(min(num_samples, n_samples) / hop)`, as transformers' frame-level
/// `attention_mask` counts them (every `hop`-th sample of the sample mask).
pub fn valid_frames(num_samples: i64, config: &FeatureConfig) -> i64 {
    let kept = num_samples.clamp(0, config.n_samples());
    let frames = (kept + config.hop_length - 1) / config.hop_length;
    frames.min(config.n_frames())
}

/// Hz to mels on the slaney scale: linear below 1 kHz, logarithmic above.
fn hertz_to_mel(freq: f64) -> f64 {
    const MIN_LOG_HERTZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    if freq >= MIN_LOG_HERTZ {
        MIN_LOG_MEL + (freq / MIN_LOG_HERTZ).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * freq / 200.0
    }
}

/// The inverse of [`hertz_to_mel`].
fn mel_to_hertz(mels: f64) -> f64 {
    const MIN_LOG_HERTZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    if mels >= MIN_LOG_MEL {
        MIN_LOG_HERTZ * ((6.4f64.ln() / 27.0) * (mels - MIN_LOG_MEL)).exp()
    } else {
        200.0 * mels / 3.0
    }
}

/// `num` evenly spaced values from `start` to `stop` inclusive, as numpy's `linspace`
/// computes them (`start + i * step`, the last set to `stop`).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| start + i as f64 * step).collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// transformers' `mel_filter_bank(num_frequency_bins, num_mel_filters, min_frequency,
/// max_frequency, sampling_rate, norm="slaney", mel_scale="slaney")`: triangular filters
/// on the FFT bins, centred at mel-spaced frequencies, each divided by half its width in
/// Hz (area normalization). Row-major `(num_frequency_bins, num_mel_filters)`.
pub fn mel_filter_bank(
    num_frequency_bins: usize,
    num_mel_filters: usize,
    min_frequency: f64,
    max_frequency: f64,
    sampling_rate_hz: u32,
) -> Vec<f64> {
    let mels = linspace(
        hertz_to_mel(min_frequency),
        hertz_to_mel(max_frequency),
        num_mel_filters + 2,
    );
    let edges: Vec<f64> = mels.into_iter().map(mel_to_hertz).collect();
    let fft_freqs = linspace(0.0, f64::from(sampling_rate_hz / 2), num_frequency_bins);
    let mut bank = vec![0f64; num_frequency_bins * num_mel_filters];
    for (bin, &freq) in fft_freqs.iter().enumerate() {
        for m in 0..num_mel_filters {
            let rising = (freq - edges[m]) / (edges[m + 1] - edges[m]);
            let falling = (edges[m + 2] - freq) / (edges[m + 2] - edges[m + 1]);
            let enorm = 2.0 / (edges[m + 2] - edges[m]);
            bank[bin * num_mel_filters + m] = rising.min(falling).max(0.0) * enorm;
        }
    }
    bank
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noisy signal: a chirp plus pseudo-random noise, in [-0.6, 0.6].
    fn signal(len: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let t = i as f32 / 16_000.0;
                0.5 * (2.0 * std::f32::consts::PI * (200.0 + 900.0 * t) * t).sin() + 0.1 * noise
            })
            .collect()
    }

    /// Transforming only the span that may hold signal gives the features of the whole
    /// zero-padded window, at the lengths where the span's edges fall: empty, shorter
    /// than a hop, frame boundaries, around the point where the reflection starts to
    /// mirror signal, and at or past 30 s (cut).
    #[test]
    fn the_signal_span_gives_the_whole_windows_features() {
        let extractor = WhisperFeatureExtractor::with_mel_bins(80).unwrap();
        let n = extractor.config().n_samples();
        let (hop, half) = (160, 200);
        let lengths = [
            0,
            1,
            hop - 1,
            hop,
            hop + 1,
            3 * hop - half,
            3 * hop - half + 1,
            16_000,
            80_123,
            n - half - 2,
            n - half - 1,
            n - half,
            n - 1,
            n,
            n + 500,
        ];
        for len in lengths {
            let samples = signal(len as usize);
            let got = extractor.extract(&[&samples]).unwrap().input_features;
            let whole = extractor
                .log_mel(&padded_waveforms(&[&samples], n))
                .unwrap();
            let diff = f64::try_from((&got - &whole).abs().max()).unwrap();
            assert!(
                diff <= 1e-6,
                "{len} samples (span {}): max |diff| {diff:e} from the whole window",
                extractor.signal_span(len)
            );
        }
        // A batch takes the span of its longest clip: the short clip's features do not
        // change.
        let (short, long) = (signal(8_000), signal(160_000));
        let batch = extractor.extract(&[&short, &long]).unwrap().input_features;
        let alone = extractor.extract_one(&short).unwrap();
        let diff = f64::try_from((batch.get(0) - alone).abs().max()).unwrap();
        assert!(diff <= 1e-6, "batched short clip: max |diff| {diff:e}");
    }
}
