//! Whisper log-mel features against transformers' `WhisperFeatureExtractor` (5.23, numpy
//! path): `fixtures/whisper/features/`, made by `tools/make-whisper-fixtures.py` from
//! clips decoded and resampled by asr-audio and quantized as int16 shards store them.
//!
//! Tolerance: 1e-5 absolute on the features (values around -1.5..1.5).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use asr_model::whisper::features::{mel_filter_bank, samples_from_i16, valid_frames};
use asr_model::whisper::{FeatureConfig, FeatureError, WhisperFeatureExtractor};
use tch::{Kind, Tensor};

/// One clip shorter than 30 s at 16 kHz (80 mels), one resampled from 48 kHz and cut at
/// 30 s (128 mels, as large-v3).
const CLIPS: [(&str, i64); 2] = [("libri-21s", 80), ("cv48k-cut", 128)];
const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/whisper/features")
}

fn read(name: &str) -> HashMap<String, Tensor> {
    let path = fixtures().join(format!("{name}.safetensors"));
    Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect()
}

/// The clip as the extractor takes it: int16 shard samples / 32768.
fn samples(clip: &HashMap<String, Tensor>) -> Vec<f32> {
    let pcm = Vec::<i16>::try_from(&clip["samples_i16"]).unwrap();
    samples_from_i16(&pcm)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn mel_filter_banks_match_transformers_slaney_banks() {
    let expected = read("mel_filters");
    for mels in [80usize, 128] {
        let bank = mel_filter_bank(201, mels, 0.0, 8000.0, 16_000);
        let bank = Tensor::from_slice(&bank).view([201, mels as i64]);
        let diff = max_abs_diff(&bank, &expected[&format!("mel_filters_{mels}")]);
        assert!(diff < 1e-12, "{mels} mels: bank differs by {diff:e}");
    }
}

#[test]
fn features_match_transformers_for_a_16k_clip_and_a_resampled_clip_cut_at_30s() {
    for (name, mels) in CLIPS {
        let clip = read(name);
        let samples = samples(&clip);
        let extractor = WhisperFeatureExtractor::with_mel_bins(mels).unwrap();
        let got = extractor.extract_one(&samples).unwrap();
        assert_eq!(got.size(), [mels, 3000]);
        assert_eq!(got.kind(), Kind::Float);
        let diff = max_abs_diff(&got, &clip[&format!("features_{mels}")]);
        eprintln!(
            "{name} ({} samples), {mels} mels: max |diff| {diff:.2e}",
            samples.len()
        );
        assert!(
            diff <= TOLERANCE,
            "{name} {mels} mels: max |diff| {diff:e} > {TOLERANCE:e}"
        );
    }
}

#[test]
fn a_batch_gives_each_utterance_its_own_features() {
    let short = read(CLIPS[0].0);
    let long = samples(&read(CLIPS[1].0));
    // A loud clip in the batch must not move a quiet clip's floor (max - 8).
    let loud: Vec<f32> = long.iter().map(|x| (x * 30.0).clamp(-1.0, 1.0)).collect();
    let extractor = WhisperFeatureExtractor::with_mel_bins(80).unwrap();
    let batch = extractor
        .extract(&[&samples(&short), &loud, &long])
        .unwrap();
    assert_eq!(batch.input_features.size(), [3, 80, 3000]);
    let diff = max_abs_diff(&batch.input_features.get(0), &short["features_80"]);
    assert!(diff <= TOLERANCE, "batch row 0: max |diff| {diff:e}");
    let alone = extractor.extract_one(&long).unwrap();
    assert_eq!(
        batch.input_features.get(2),
        alone,
        "batch row 2 depends on its batch"
    );
}

#[test]
fn valid_frames_count_transformers_attention_mask() {
    let extractor = WhisperFeatureExtractor::with_mel_bins(80).unwrap();
    for (name, _) in CLIPS {
        let clip = read(name);
        let samples = samples(&clip);
        let want = clip["frame_mask"].sum(Kind::Int64).int64_value(&[]);
        let batch = extractor.extract(&[&samples]).unwrap();
        assert_eq!(batch.num_frames, [want], "{name}");
    }
    let config = FeatureConfig::default();
    assert_eq!(valid_frames(0, &config), 0);
    assert_eq!(valid_frames(1, &config), 1);
    assert_eq!(valid_frames(160, &config), 1);
    assert_eq!(valid_frames(161, &config), 2);
    assert_eq!(valid_frames(10_000_000, &config), 3000);
}

#[test]
fn int16_samples_are_divided_by_32768() {
    assert_eq!(
        samples_from_i16(&[-32768, 0, 16384, 32767]),
        [-1.0, 0.0, 0.5, 32767.0 / 32768.0]
    );
}

#[test]
fn preprocessor_config_reads_transformers_keys_and_refuses_dither() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preprocessor_config.json");
    let large_v3 = r#"{"chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": 128, "hop_length": 160, "n_fft": 400, "n_samples": 480000,
        "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
        "processor_class": "WhisperProcessor", "return_attention_mask": false, "sampling_rate": 16000}"#;
    std::fs::write(&path, large_v3).unwrap();
    let config = FeatureConfig::from_json_file(&path).unwrap();
    assert_eq!(config, FeatureConfig::with_mel_bins(128));
    assert_eq!((config.n_samples(), config.n_frames()), (480_000, 3000));

    let dithered = FeatureConfig {
        dither: 1e-4,
        ..FeatureConfig::default()
    };
    let err = WhisperFeatureExtractor::new(dithered).unwrap_err();
    assert!(
        matches!(
            err,
            FeatureError::Unsupported {
                field: "dither",
                ..
            }
        ),
        "{err}"
    );
    let resampled = FeatureConfig {
        sampling_rate: 8000,
        ..FeatureConfig::default()
    };
    let err = WhisperFeatureExtractor::new(resampled).unwrap_err();
    assert!(err.to_string().contains("sampling_rate = 8000"), "{err}");

    std::fs::write(&path, "{not json").unwrap();
    let err = FeatureConfig::from_json_file(&path).unwrap_err();
    assert!(
        err.to_string().contains("preprocessor_config.json"),
        "{err}"
    );
}
