//! Throughput of `asr_audio::resample` on one core, in audio seconds per second.
//!
//! `cargo run --release -p asr-audio --example resample_throughput -- [SECONDS_PER_CLIP] [TOTAL_SECONDS]`
//!
//! Resamples `TOTAL_SECONDS` of a deterministic speech-band test signal, cut into clips of
//! `SECONDS_PER_CLIP` (as a corpus of utterances is), from 48, 44.1, 22.05 and 8 kHz to
//! 16 kHz, and prints one line per rate. `tools/bench/resample.sh` runs it beside soxr.

use std::time::Instant;

use asr_audio::resample::resample_to_16k;

fn signal(rate_hz: u32, num_samples: usize, seed: u64) -> Vec<f32> {
    // A few tones plus xorshift noise: cheap, deterministic, full band.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..num_samples)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = i as f32 / rate_hz as f32;
            0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 1_850.0 * t).sin()
                + 0.05 * noise
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clip_s: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let total_s: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(600.0);
    let clips = (total_s / clip_s).ceil() as usize;
    for rate in [48_000u32, 44_100, 22_050, 8_000] {
        let clip = signal(rate, (clip_s * f64::from(rate)) as usize, u64::from(rate));
        // Warm the per-thread resampler cache, as a long pack run would be.
        resample_to_16k(clip.clone(), rate).expect("resample");
        let mut out_samples = 0;
        let start = Instant::now();
        for _ in 0..clips {
            let out = resample_to_16k(clip.clone(), rate).expect("resample");
            out_samples += out.len();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let audio_s = out_samples as f64 / 16_000.0;
        println!(
            "rubato-fft\t{rate}\t{audio_s:.0}\t{elapsed:.3}\t{:.0}",
            audio_s / elapsed
        );
    }
}
