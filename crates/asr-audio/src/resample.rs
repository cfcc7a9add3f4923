//! Resampling of mono audio to 16 kHz (rubato).
//!
//! # The resampler, and why
//!
//! Every rate whose ratio to 16 kHz is a small fraction, which covers all the rates speech
//! corpora ship in (8, 11.025, 22.05, 24, 32, 44.1, 48, 88.2, 96, 192 kHz...), goes through
//! rubato's synchronous FFT resampler ([`rubato::Fft`]): the input is cut into blocks of
//! `rate / gcd(rate, 16000) * k` samples, each block is transformed, multiplied by the
//! spectrum of a Blackman-Harris² windowed sinc low-pass (cut-off just below 8 kHz, as long
//! as the block) and transformed back at the output size, with overlap-add between blocks.
//! Its quality is that of a long windowed-sinc filter (the tests below check a 1 kHz tone
//! comes out with an SNR of at least 60 dB and tones above 8 kHz are attenuated by at least
//! 60 dB), and its cost is two real FFTs per block: several times cheaper than rubato's
//! asynchronous sinc interpolator, which evaluates a long dot product per output sample.
//!
//! The block is about [`BLOCK_OUTPUT_FRAMES`] output samples (rounded to the rate pair's
//! smallest block): long enough for a sharp anti-aliasing filter, short enough that a 1 s clip
//! does not pay for a long start-up delay of zeros.
//!
//! A rate whose smallest FFT block would be huge (a ratio with no small common factor, such
//! as 44,101 Hz) falls back to rubato's asynchronous sinc resampler ([`rubato::Async`]) with a
//! 256-tap Blackman-Harris² sinc and cubic interpolation, which handles any ratio at the same
//! quality, more slowly.
//!
//! Both paths remove the resampler's delay, so output sample `i` is the input signal at time
//! `i / 16000` s, and return exactly `round(n * 16000 / rate)` samples. 16 kHz input is
//! returned as it is.
//!
//! Building a resampler plans FFTs and computes filters, which costs more than resampling a
//! short clip: [`Resampler16k`] instances are reusable, and [`resample_to_16k`] keeps one per
//! input rate in a per-thread cache, so a rayon pool decoding a corpus builds each resampler
//! once per worker thread.

use std::cell::RefCell;
use std::collections::HashMap;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, FixedSync, Resampler as _, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

/// The sample rate every packed utterance is stored at, in Hz.
pub const TARGET_SAMPLE_RATE_HZ: u32 = 16_000;

/// Target size of one FFT block on the output side, in frames (see the module docs).
pub const BLOCK_OUTPUT_FRAMES: usize = 128;

/// Largest smallest-input-block (`rate / gcd(rate, 16000)`) the FFT path accepts; beyond it
/// the asynchronous sinc resampler is used.
const MAX_FFT_MIN_BLOCK_IN: usize = 2_048;

/// Sinc length of the asynchronous fallback, in taps.
const ASYNC_SINC_LEN: usize = 256;

/// Measured residual of rubato's sinc delay, in input samples (see [`sinc_lead_in`]).
const SINC_OFFSET_IN: f64 = 1.0 / 256.0;

/// Frames handed to the resampler per call.
const CHUNK_FRAMES: usize = 8_192;

/// Why audio could not be resampled.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A sample rate of zero (or otherwise unusable) was given.
    #[error("invalid input sample rate {sample_rate_hz} Hz")]
    InvalidSampleRate {
        /// The rejected rate.
        sample_rate_hz: u32,
    },
    /// rubato refused to build a resampler for this rate.
    #[error("cannot build a resampler from {sample_rate_hz} Hz to 16 kHz: {message}")]
    Construction {
        /// The input rate.
        sample_rate_hz: u32,
        /// rubato's explanation.
        message: String,
    },
    /// rubato failed while processing (a bug: buffers are sized by this module).
    #[error("resampling from {sample_rate_hz} Hz failed: {message}")]
    Process {
        /// The input rate.
        sample_rate_hz: u32,
        /// rubato's explanation.
        message: String,
    },
}

/// The number of samples `num_samples` input samples at `sample_rate_hz` become at 16 kHz:
/// `round(num_samples * 16000 / sample_rate_hz)`, halves rounded up.
pub fn resampled_len(num_samples: usize, sample_rate_hz: u32) -> usize {
    if sample_rate_hz == 0 {
        return 0;
    }
    let rate = u128::from(sample_rate_hz);
    let scaled = num_samples as u128 * u128::from(TARGET_SAMPLE_RATE_HZ);
    ((2 * scaled + rate) / (2 * rate)) as usize
}

/// Which rubato resampler a [`Resampler16k`] drives.
enum Engine {
    /// The input is already at 16 kHz.
    Passthrough,
    /// Synchronous FFT resampler (rates with a small ratio to 16 kHz).
    Fft(Box<rubato::Fft<f32>>),
    /// Asynchronous sinc resampler (any other rate).
    Sinc(Box<Async<f32>>),
}

/// A reusable mono resampler from one input rate to 16 kHz.
///
/// Keep one per input rate and thread (as [`resample_to_16k`] does): building it plans FFTs
/// and computes the filter.
pub struct Resampler16k {
    sample_rate_hz: u32,
    engine: Engine,
    /// Zeros fed before the clip so the sinc path's delay is a whole number of output
    /// samples (0 for the other engines).
    lead_in: usize,
    /// Output samples to drop at the start (the resampler's delay).
    delay: usize,
    /// Output scratch, reused between calls.
    scratch: Vec<f32>,
    /// Input chunk scratch, reused between calls.
    input_chunk: Vec<f32>,
}

impl std::fmt::Debug for Resampler16k {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.engine {
            Engine::Passthrough => "passthrough",
            Engine::Fft(_) => "fft",
            Engine::Sinc(_) => "sinc",
        };
        f.debug_struct("Resampler16k")
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("engine", &kind)
            .finish()
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// For the sinc path: rubato's sinc is centred `ASYNC_SINC_LEN / 2` input samples late, a
/// fractional number of output samples. Feeding `lead_in` zeros first makes the total delay
/// `(ASYNC_SINC_LEN / 2 + lead_in) * 16000 / rate - 1` within 0.0003 output samples of a
/// whole number, which is then dropped (the `- 1`: rubato's first output is one output step
/// into its window; the quality tests measure the alignment). Returns `(lead_in, delay_in_output_samples)`.
fn sinc_lead_in(rate_in: usize) -> (usize, usize) {
    let rate_out = TARGET_SAMPLE_RATE_HZ as usize;
    let mut best = (0usize, f64::MAX, 0usize);
    for lead_in in 0..rate_in.min(50_000) {
        let delay = ((ASYNC_SINC_LEN / 2 + lead_in) as f64 - SINC_OFFSET_IN) * rate_out as f64
            / rate_in as f64;
        let error = (delay - delay.round()).abs();
        if error < best.1 {
            // rubato's first sinc output is one output step past the window start.
            best = (lead_in, error, (delay.round() as usize).saturating_sub(1));
            if error < 0.000_3 {
                break;
            }
        }
    }
    (best.0, best.2)
}

impl Resampler16k {
    /// Builds a resampler from `sample_rate_hz` to 16 kHz.
    pub fn new(sample_rate_hz: u32) -> Result<Self, ResampleError> {
        if sample_rate_hz == 0 {
            return Err(ResampleError::InvalidSampleRate { sample_rate_hz });
        }
        let construction = |e: rubato::ResamplerConstructionError| ResampleError::Construction {
            sample_rate_hz,
            message: e.to_string(),
        };
        let rate_in = sample_rate_hz as usize;
        let rate_out = TARGET_SAMPLE_RATE_HZ as usize;
        let engine = if sample_rate_hz == TARGET_SAMPLE_RATE_HZ {
            Engine::Passthrough
        } else if rate_in / gcd(rate_in, rate_out) <= MAX_FFT_MIN_BLOCK_IN {
            // One FFT block is `k` of the rate pair's smallest blocks (`rate / gcd` input,
            // `16000 / gcd` output samples), `k` a power of two so the FFT lengths factor
            // into small primes (a length with a factor such as 13 is several times slower),
            // giving about BLOCK_OUTPUT_FRAMES output samples. rubato derives the block from
            // `chunk / sub_chunks`, so both are given as exact multiples of it.
            let divisor = gcd(rate_in, rate_out);
            let (min_in, min_out) = (rate_in / divisor, rate_out / divisor);
            let mut k = (BLOCK_OUTPUT_FRAMES / min_out).max(1).next_power_of_two();
            // rubato centres its filter at `block_in / 2` (integer division): an odd block
            // would shift the output by half an input sample.
            if (min_in * k) % 2 == 1 {
                k *= 2;
            }
            let block_in = min_in * k;
            let sub_chunks = (CHUNK_FRAMES / block_in).max(1);
            let fft = rubato::Fft::<f32>::new_custom(
                rate_in,
                rate_out,
                block_in * sub_chunks,
                sub_chunks,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(construction)?;
            Engine::Fft(Box::new(fft))
        } else {
            let params = SincInterpolationParameters {
                sinc_len: ASYNC_SINC_LEN,
                f_cutoff: None,
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Cubic,
                window: WindowFunction::BlackmanHarris2,
            };
            let sinc = Async::<f32>::new_sinc(
                rate_out as f64 / rate_in as f64,
                1.0,
                &params,
                CHUNK_FRAMES,
                1,
                FixedAsync::Input,
            )
            .map_err(construction)?;
            Engine::Sinc(Box::new(sinc))
        };
        let (lead_in, delay) = match &engine {
            Engine::Sinc(_) => sinc_lead_in(rate_in),
            _ => (0, 0),
        };
        Ok(Resampler16k {
            sample_rate_hz,
            engine,
            lead_in,
            delay,
            scratch: Vec::new(),
            input_chunk: Vec::new(),
        })
    }

    /// The input rate this resampler converts from, in Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    /// Resamples a whole mono clip to 16 kHz, delay removed, exactly
    /// [`resampled_len`]`(input.len())` samples long.
    pub fn process(&mut self, input: &[f32]) -> Result<Vec<f32>, ResampleError> {
        let mut out = Vec::new();
        self.process_into(input, &mut out)?;
        Ok(out)
    }

    /// Like [`process`](Self::process), writing into `out` (cleared first) to reuse its
    /// allocation.
    pub fn process_into(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        out.clear();
        let sample_rate_hz = self.sample_rate_hz;
        let (resampler, lead_in, delay): (&mut dyn rubato::Resampler<f32>, usize, usize) =
            match &mut self.engine {
                Engine::Passthrough => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                Engine::Fft(fft) => {
                    let delay = fft.output_delay();
                    (fft.as_mut(), 0, delay)
                }
                Engine::Sinc(sinc) => (sinc.as_mut(), self.lead_in, self.delay),
            };
        let want = resampled_len(input.len(), sample_rate_hz);
        if input.is_empty() {
            return Ok(());
        }
        let process_error = |message: String| ResampleError::Process {
            sample_rate_hz,
            message,
        };
        resampler.reset();
        // Drive rubato chunk by chunk: the lead-in zeros (sinc path), the clip, then zeros
        // until `delay + want` samples have come out; the first `delay` are dropped.
        let total_out = delay + want;
        let chunk_in = resampler.input_frames_max();
        self.input_chunk.clear();
        self.input_chunk.resize(chunk_in, 0.0);
        self.scratch.clear();
        let mut produced = 0usize;
        let mut position = 0usize; // index into the virtual input: lead_in zeros, then `input`
        let virtual_len = lead_in + input.len();
        while produced < total_out {
            let need = resampler.input_frames_next();
            let available = virtual_len.saturating_sub(position).min(need);
            // Fill the chunk from the virtual input; the rest is rubato's zero padding.
            let chunk = &mut self.input_chunk[..need.max(1)];
            let zeros = lead_in.saturating_sub(position).min(available);
            chunk[..zeros].fill(0.0);
            let from = position + zeros - lead_in;
            chunk[zeros..available].copy_from_slice(&input[from..from + available - zeros]);
            position += available;
            let out_next = resampler.output_frames_next();
            let start = self.scratch.len();
            self.scratch.resize(start + out_next, 0.0);
            let buffer_in = InterleavedSlice::new(&self.input_chunk[..], 1, chunk_in)
                .map_err(|e| process_error(e.to_string()))?;
            let mut buffer_out = InterleavedSlice::new_mut(&mut self.scratch[start..], 1, out_next)
                .map_err(|e| process_error(e.to_string()))?;
            let indexing = rubato::Indexing {
                input_offset: 0,
                output_offset: 0,
                partial_len: Some(available),
                active_channels_mask: None,
            };
            let (_, written) = resampler
                .process_into_buffer(&buffer_in, &mut buffer_out, Some(&indexing))
                .map_err(|e| process_error(e.to_string()))?;
            self.scratch.truncate(start + written);
            produced += written;
        }
        out.extend_from_slice(&self.scratch[delay..total_out]);
        Ok(())
    }
}

thread_local! {
    /// One resampler per input rate, per thread.
    static CACHE: RefCell<HashMap<u32, Resampler16k>> = RefCell::new(HashMap::new());
}

/// Resamples a mono clip at `sample_rate_hz` to 16 kHz with a per-thread cached
/// [`Resampler16k`]; 16 kHz input is moved through untouched.
pub fn resample_to_16k(samples: Vec<f32>, sample_rate_hz: u32) -> Result<Vec<f32>, ResampleError> {
    if sample_rate_hz == TARGET_SAMPLE_RATE_HZ {
        return Ok(samples);
    }
    let mut out = Vec::new();
    resample_to_16k_into(&samples, sample_rate_hz, &mut out)?;
    Ok(out)
}

/// Like [`resample_to_16k`], writing into `out` (cleared first) to reuse its allocation;
/// 16 kHz input is copied.
pub fn resample_to_16k_into(
    samples: &[f32],
    sample_rate_hz: u32,
    out: &mut Vec<f32>,
) -> Result<(), ResampleError> {
    if sample_rate_hz == TARGET_SAMPLE_RATE_HZ {
        out.clear();
        out.extend_from_slice(samples);
        return Ok(());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let resampler = match cache.entry(sample_rate_hz) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Resampler16k::new(sample_rate_hz)?)
            }
        };
        resampler.process_into(samples, out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampled_len_rounds_half_up() {
        assert_eq!(resampled_len(48_000, 48_000), 16_000);
        assert_eq!(resampled_len(3, 48_000), 1);
        assert_eq!(resampled_len(1, 48_000), 0);
        // 3 * 16000 / 32000 = 1.5 -> 2
        assert_eq!(resampled_len(3, 32_000), 2);
        assert_eq!(resampled_len(441, 44_100), 160);
        assert_eq!(resampled_len(10, 0), 0);
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(matches!(
            Resampler16k::new(0),
            Err(ResampleError::InvalidSampleRate { .. })
        ));
    }
}
