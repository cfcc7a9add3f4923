//! Resampling to 16 kHz keeps what speech needs and removes what would alias:
//! a 1 kHz tone comes out with its amplitude, frequency and timing (SNR >= 60 dB against the
//! exact sine, resampler delay removed), tones above 8 kHz are attenuated by >= 60 dB, and
//! the output holds `round(n * 16000 / rate)` samples.

use std::f64::consts::PI;

use asr_audio::resample::{resample_to_16k, resampled_len, Resampler16k};
use proptest::prelude::*;

/// `seconds` of a sine of `freq_hz` and `amplitude` at `rate_hz`.
fn sine(freq_hz: f64, amplitude: f64, rate_hz: u32, seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate_hz)).round() as usize;
    (0..n)
        .map(|i| (amplitude * (2.0 * PI * freq_hz * i as f64 / f64::from(rate_hz)).sin()) as f32)
        .collect()
}

/// Output samples more than 0.1 s away from both edges.
fn middle(len: usize) -> std::ops::Range<usize> {
    1_600..len.saturating_sub(1_600)
}

/// SNR in dB of `output` (at 16 kHz) against the exact sine, away from the edges.
fn snr_db(output: &[f32], freq_hz: f64, amplitude: f64) -> f64 {
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for i in middle(output.len()) {
        let want = amplitude * (2.0 * PI * freq_hz * i as f64 / 16_000.0).sin();
        signal += want * want;
        noise += (f64::from(output[i]) - want).powi(2);
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// RMS of `output` away from the edges, in dB relative to a sine of `amplitude`.
fn level_db(output: &[f32], amplitude: f64) -> f64 {
    let range = middle(output.len());
    let count = range.len() as f64;
    let power: f64 = output[range]
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        / count;
    let reference = amplitude * amplitude / 2.0;
    10.0 * (power.max(1e-30) / reference).log10()
}

const RATES_HZ: [u32; 4] = [48_000, 44_100, 22_050, 8_000];

#[test]
fn one_khz_sine_keeps_amplitude_frequency_and_timing() {
    for rate in RATES_HZ {
        let input = sine(1_000.0, 0.5, rate, 2.0);
        let output = resample_to_16k(input, rate).unwrap();
        assert_eq!(output.len(), 32_000, "{rate} Hz");
        let snr = snr_db(&output, 1_000.0, 0.5);
        eprintln!("{rate} Hz -> 16 kHz: 1 kHz SNR {snr:.1} dB");
        assert!(snr >= 60.0, "{rate} Hz -> 16 kHz: SNR {snr:.1} dB < 60 dB");
    }
}

#[test]
fn speech_band_tones_pass_within_a_tenth_of_a_db() {
    // The pass band reaches well into the band wav2vec2 models listen to.
    for rate in [48_000, 44_100, 22_050] {
        for freq in [100.0, 3_000.0, 6_000.0] {
            let output = resample_to_16k(sine(freq, 0.5, rate, 1.0), rate).unwrap();
            let level = level_db(&output, 0.5);
            assert!(
                level.abs() < 0.1,
                "{rate} Hz, {freq} Hz tone: level {level:.3} dB"
            );
        }
    }
}

#[test]
fn tones_above_8_khz_are_attenuated_by_60_db() {
    for rate in [48_000u32, 44_100, 22_050] {
        let nyquist_in = f64::from(rate) / 2.0;
        for freq in [8_500.0, 9_000.0, 10_000.0, 12_000.0, 15_000.0, 20_000.0] {
            if freq >= nyquist_in {
                continue;
            }
            let output = resample_to_16k(sine(freq, 0.5, rate, 1.0), rate).unwrap();
            let level = level_db(&output, 0.5);
            eprintln!("{rate} Hz, {freq} Hz tone: {level:.1} dB");
            assert!(
                level <= -60.0,
                "{rate} Hz, {freq} Hz tone: only attenuated to {level:.1} dB"
            );
        }
    }
}

#[test]
fn odd_rates_use_the_sinc_fallback_with_the_same_quality() {
    // 44,101 Hz has no small common factor with 16 kHz.
    let rate = 44_101;
    let mut resampler = Resampler16k::new(rate).unwrap();
    assert!(format!("{resampler:?}").contains("sinc"));
    let output = resampler.process(&sine(1_000.0, 0.5, rate, 2.0)).unwrap();
    assert_eq!(output.len(), resampled_len(2 * 44_101, rate));
    let snr = snr_db(&output, 1_000.0, 0.5);
    eprintln!("{rate} Hz (sinc path): 1 kHz SNR {snr:.1} dB");
    assert!(snr >= 60.0, "SNR {snr:.1} dB");
    let aliased = resampler.process(&sine(10_000.0, 0.5, rate, 1.0)).unwrap();
    assert!(level_db(&aliased, 0.5) <= -60.0);
}

#[test]
fn sixteen_khz_input_passes_through_untouched() {
    let input = sine(1_234.5, 0.7, 16_000, 0.5);
    let output = resample_to_16k(input.clone(), 16_000).unwrap();
    assert_eq!(output, input);
    let mut resampler = Resampler16k::new(16_000).unwrap();
    assert_eq!(resampler.process(&input).unwrap(), input);
}

#[test]
fn a_reused_resampler_gives_the_same_output_as_a_fresh_one() {
    let first = sine(440.0, 0.3, 48_000, 0.7);
    let second = sine(1_000.0, 0.5, 48_000, 0.3);
    let mut reused = Resampler16k::new(48_000).unwrap();
    reused.process(&first).unwrap();
    let again = reused.process(&second).unwrap();
    let fresh = Resampler16k::new(48_000).unwrap().process(&second).unwrap();
    assert_eq!(again, fresh);
}

#[test]
fn empty_and_tiny_clips() {
    for rate in [8_000, 22_050, 44_100, 48_000, 44_101] {
        assert!(resample_to_16k(Vec::new(), rate).unwrap().is_empty());
        for n in 1..8 {
            let out = resample_to_16k(vec![0.25; n], rate).unwrap();
            assert_eq!(out.len(), resampled_len(n, rate), "{rate} Hz, {n} samples");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn output_length_is_rounded_ratio(
        n in 0usize..40_000,
        rate in prop::sample::select(vec![
            8_000u32, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
        ]),
    ) {
        let out = resample_to_16k(vec![0.1; n], rate).unwrap();
        let exact = n as f64 * 16_000.0 / f64::from(rate);
        prop_assert!((out.len() as f64 - exact).abs() <= 1.0);
        prop_assert_eq!(out.len(), resampled_len(n, rate));
    }
}
