//! Signal statistics of decoded audio for `--deep` validation: peak, RMS, the fraction of
//! clipped samples, and a content hash that finds identical audio under two names.

use xxhash_rust::xxh3::Xxh3;

use crate::decode::DecodedAudio;

/// A sample at or above this magnitude counts as clipped: within 0.01 dB of full scale,
/// which is where a 16-bit sample of 32767 lands.
pub const CLIP_LEVEL: f32 = 0.999;

/// Statistics over all channels of a decoded clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalStats {
    /// Frames (samples per channel).
    pub num_frames: u64,
    /// Largest absolute sample value (1.0 is full scale).
    pub peak: f32,
    /// Root mean square over all samples.
    pub rms: f32,
    /// Fraction of samples at or above [`CLIP_LEVEL`].
    pub clipped_fraction: f64,
    /// 128-bit xxh3 of the decoded samples, channel count and sample rate: equal for
    /// clips whose decoded audio is identical.
    pub content_hash: u128,
}

impl SignalStats {
    /// Computes the statistics of `audio` in one pass over the samples (eight lanes the
    /// compiler vectorises, flushed to `f64` every block so long clips keep precision)
    /// and one hash over their bytes.
    pub fn of(audio: &DecodedAudio) -> SignalStats {
        const LANES: usize = 8;
        const BLOCK: usize = 4096;
        let samples = &audio.samples;
        let mut peak = 0.0f32;
        let mut clipped = 0u64;
        let mut sum_sq = 0.0f64;
        for block in samples.chunks(BLOCK) {
            let mut lane_sq = [0.0f32; LANES];
            let mut lane_peak = [0.0f32; LANES];
            let mut lane_clip = [0u32; LANES];
            let mut frames = block.chunks_exact(LANES);
            for f in &mut frames {
                for l in 0..LANES {
                    let x = f[l];
                    let a = x.abs();
                    lane_sq[l] += x * x;
                    lane_peak[l] = if a > lane_peak[l] { a } else { lane_peak[l] };
                    lane_clip[l] += u32::from(a >= CLIP_LEVEL);
                }
            }
            for (l, &x) in frames.remainder().iter().enumerate() {
                let a = x.abs();
                lane_sq[l] += x * x;
                lane_peak[l] = lane_peak[l].max(a);
                lane_clip[l] += u32::from(a >= CLIP_LEVEL);
            }
            sum_sq += lane_sq.iter().map(|&v| f64::from(v)).sum::<f64>();
            peak = lane_peak.iter().fold(peak, |p, &v| p.max(v));
            clipped += lane_clip.iter().map(|&c| u64::from(c)).sum::<u64>();
        }
        let mut hasher = Xxh3::new();
        hasher.update(&audio.channels.to_le_bytes());
        hasher.update(&audio.sample_rate_hz.to_le_bytes());
        // Native-endian sample bytes: the hash compares clips within one run.
        hasher.update(bytemuck::cast_slice(samples));
        let n = samples.len();
        SignalStats {
            num_frames: audio.num_frames() as u64,
            peak,
            rms: if n == 0 {
                0.0
            } else {
                (sum_sq / n as f64).sqrt() as f32
            },
            clipped_fraction: if n == 0 {
                0.0
            } else {
                clipped as f64 / n as f64
            },
            content_hash: hasher.digest128(),
        }
    }

    /// Peak in dBFS (`-inf` for digital silence).
    pub fn peak_dbfs(&self) -> f64 {
        20.0 * f64::from(self.peak).log10()
    }

    /// RMS level in dBFS (`-inf` for digital silence).
    pub fn rms_dbfs(&self) -> f64 {
        20.0 * f64::from(self.rms).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(samples: Vec<f32>) -> DecodedAudio {
        DecodedAudio {
            samples,
            channels: 1,
            sample_rate_hz: 16_000,
        }
    }

    #[test]
    fn full_scale_sine_has_rms_of_minus_3_db() {
        let s: Vec<f32> = (0..16_000)
            .map(|i| (i as f32 * 0.0625).sin() * 0.5)
            .collect();
        let st = SignalStats::of(&audio(s));
        assert!((st.rms_dbfs() - (-9.03)).abs() < 0.1, "{}", st.rms_dbfs());
        assert!((st.peak - 0.5).abs() < 1e-3);
        assert_eq!(st.clipped_fraction, 0.0);
    }

    #[test]
    fn clipping_and_hash() {
        let mut s = vec![0.1f32; 1000];
        s[..10].fill(1.0);
        let a = SignalStats::of(&audio(s.clone()));
        assert!((a.clipped_fraction - 0.01).abs() < 1e-12);
        let b = SignalStats::of(&audio(s.clone()));
        assert_eq!(a.content_hash, b.content_hash);
        s[999] = 0.2;
        assert_ne!(a.content_hash, SignalStats::of(&audio(s)).content_hash);
        let silent = SignalStats::of(&audio(vec![0.0; 100]));
        assert_eq!(silent.rms_dbfs(), f64::NEG_INFINITY);
    }
}
