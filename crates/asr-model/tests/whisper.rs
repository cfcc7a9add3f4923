//! Whisper against transformers: the fixtures under `fixtures/whisper/models/` were made
//! by `tools/make-whisper-model-fixtures.py` with transformers 5.23 / torch 2.11 (eager
//! attention, float32, CPU). `multilingual` has the real 51,865-token vocabulary and a
//! 1500-position encoder; `mel128` takes 128 mels and caps generation at its 12 decoder
//! positions.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use asr_model::whisper::{GenerationConfig, WhisperConfig, WhisperModel};
use asr_model::{read_weights, write_safetensors, ModelError};
use tch::{Device, Kind, Tensor};

const MODELS: [&str; 2] = ["multilingual", "mel128"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/whisper/models")
}

fn expected(name: &str) -> HashMap<String, Tensor> {
    read_weights(&fixtures().join(name).join("expected.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn load(name: &str) -> WhisperModel {
    WhisperModel::from_pretrained(&fixtures().join(name), Device::Cpu).unwrap()
}

fn features(exp: &HashMap<String, Tensor>) -> Tensor {
    exp["input_features"].to_kind(Kind::Float)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Rows of transformers' `generate` output, right padding (pad == EOS) removed.
fn unpadded_rows(generated: &Tensor, pad: i64) -> Vec<Vec<i64>> {
    let rows: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(generated).unwrap();
    rows.into_iter()
        .map(|mut row| {
            while row.last() == Some(&pad) {
                row.pop();
            }
            row
        })
        .collect()
}

#[test]
fn logits_of_a_padded_batch_match_transformers() {
    for name in MODELS {
        let model = load(name);
        let exp = expected(name);
        let logits = tch::no_grad(|| {
            model.forward_t(
                &features(&exp),
                &exp["decoder_input_ids"],
                Some(&exp["decoder_attention_mask"]),
                false,
            )
        })
        .unwrap();
        let diff = max_abs_diff(&logits, &exp["logits"]);
        println!("{name}: max |logits - transformers| = {diff:.2e}");
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}

#[test]
fn loss_and_gradients_from_labels_match_transformers() {
    for name in MODELS {
        let model = load(name);
        let exp = expected(name);
        let (_, loss) = model
            .forward_labels(&features(&exp), &exp["labels"], false)
            .unwrap();
        let want = exp["loss"].double_value(&[0]);
        let got = loss.double_value(&[]);
        println!("{name}: loss {got:.6} vs transformers {want:.6}");
        assert!((got - want).abs() < 1e-4, "{name}: {got} vs {want}");
        let (logits, _) = model
            .forward_labels(&features(&exp), &exp["labels"], false)
            .unwrap();
        let (sums, counts) = tch::no_grad(|| model.row_losses(&logits, &exp["labels"]));
        let total = sums.sum(Kind::Double).double_value(&[]);
        let tokens = counts.sum(Kind::Int64).int64_value(&[]);
        let label_tokens = if name == "mel128" { [8, 5] } else { [7, 5] };
        assert_eq!(Vec::<i64>::try_from(&counts).unwrap(), label_tokens);
        assert!(
            (total / tokens as f64 - want).abs() < 1e-4,
            "{name}: row losses"
        );
        loss.backward();
        let mut checked = 0;
        for (key, want) in &exp {
            let Some(param) = key.strip_prefix("grad.") else {
                continue;
            };
            let grad = model.params().get(param).unwrap().grad();
            let diff = max_abs_diff(&grad, want);
            let largest = want.abs().max().double_value(&[]);
            let scale = largest.max(1.0);
            println!("{name}: {param}: max |grad diff| = {diff:.2e} (max |grad| {largest:.2e})");
            assert!(diff < 1e-4 * scale, "{name}: {param}: {diff}");
            checked += 1;
        }
        assert!(checked >= 8, "{name}: {checked} gradients in the fixture");
    }
}

#[test]
fn greedy_generation_matches_transformers_generate() {
    for name in MODELS {
        let model = load(name);
        let exp = expected(name);
        let generation = model.generation_config();
        let (language, task) = match name {
            "multilingual" => ("zh", "transcribe"),
            _ => ("en", "transcribe"),
        };
        let prompt = generation.prompt_ids(Some(language), Some(task)).unwrap();
        let want_prompt = Vec::<Vec<i64>>::try_from(&exp["prompt_ids"]).unwrap();
        assert_eq!(prompt, want_prompt[0], "{name}: prompt");
        let got = model
            .generate_greedy(&features(&exp), &prompt, generation)
            .unwrap();
        let want = unpadded_rows(&exp["generated"], generation.pad_token_id);
        println!("{name}: generated {got:?}");
        assert_eq!(got, want, "{name}");
        // The fixture has one row stopping at EOS and one running to the length cap.
        let full = exp["generated"].size()[1] as usize;
        assert!(
            got[0].len() < full && got[1].len() == full,
            "{name}: {got:?}"
        );
    }
}

#[test]
fn generation_stops_at_max_length_and_max_target_positions() {
    let model = load("mel128");
    let exp = expected("mel128");
    let mut generation = model.generation_config().clone();
    let prompt = generation.prompt_ids(Some("en"), None).unwrap();
    assert_eq!(prompt.len(), 4);
    // max_length 448 in the file: capped by the 12 decoder positions.
    assert_eq!(generation.length_cap(4, 12), 12);
    generation.max_length = 3;
    let rows = model
        .generate_greedy(&features(&exp), &prompt, &generation)
        .unwrap();
    let want = unpadded_rows(&exp["generated"], generation.pad_token_id);
    for (row, want) in rows.iter().zip(&want) {
        assert!(row.len() <= 3);
        assert_eq!(row[..], want[..row.len()]);
    }
    assert_eq!(rows[1].len(), 3);
}

#[test]
fn a_rust_saved_folder_loads_back_with_the_same_outputs() {
    let model = load("mel128");
    let exp = expected("mel128");
    let dir = tempfile::tempdir().unwrap();
    model.save_pretrained(dir.path()).unwrap();
    let names: Vec<String> = read_weights(&dir.path().join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        !names.iter().any(|n| n == "proj_out.weight"),
        "tied proj_out saved"
    );
    assert!(names
        .iter()
        .any(|n| n == "model.encoder.embed_positions.weight"));
    let back = WhisperModel::from_pretrained(dir.path(), Device::Cpu).unwrap();
    assert_eq!(back.generation_config(), model.generation_config());
    assert_eq!(back.config(), model.config());
    let run = |m: &WhisperModel| {
        tch::no_grad(|| m.forward_t(&features(&exp), &exp["decoder_input_ids"], None, false))
            .unwrap()
    };
    assert_eq!(max_abs_diff(&run(&model), &run(&back)), 0.0);
}

/// The tokenizer and preprocessor files of the folder a model came from go with it.
#[test]
fn save_pretrained_copies_the_processor_files() {
    let source = tempfile::tempdir().unwrap();
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(
            fixtures().join("mel128").join(file),
            source.path().join(file),
        )
        .unwrap();
    }
    std::fs::write(source.path().join("tokenizer.json"), "{\"model\": {}}").unwrap();
    std::fs::write(
        source.path().join("preprocessor_config.json"),
        "{\"feature_size\": 128}",
    )
    .unwrap();
    let model = WhisperModel::from_pretrained(source.path(), Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();
    model.save_pretrained(out.path()).unwrap();
    for file in [
        "tokenizer.json",
        "preprocessor_config.json",
        "config.json",
        "generation_config.json",
    ] {
        assert!(out.path().join(file).is_file(), "{file} not written");
    }
    assert!(!out.path().join("vocab.json").exists());
    // Saving over the source folder keeps its files.
    model.save_pretrained(source.path()).unwrap();
    assert!(source.path().join("tokenizer.json").is_file());
}

/// Checkpoints as users have them: sharded safetensors (large-v2), a bare
/// `WhisperModel` state dict plus a stored `proj_out.weight`.
#[test]
fn sharded_and_bare_checkpoints_load() {
    let exp = expected("mel128");
    let source = fixtures().join("mel128");
    let tensors = read_weights(&source.join("model.safetensors")).unwrap();
    let reference = load("mel128");
    let logits = |m: &WhisperModel| {
        tch::no_grad(|| m.forward_t(&features(&exp), &exp["decoder_input_ids"], None, false))
            .unwrap()
    };
    let want = logits(&reference);

    let sharded = tempfile::tempdir().unwrap();
    std::fs::copy(
        source.join("config.json"),
        sharded.path().join("config.json"),
    )
    .unwrap();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let part: Vec<(String, Tensor)> = part
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        write_safetensors(&sharded.path().join(file), &part).unwrap();
        for (n, _) in &part {
            map.insert(n.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let model = WhisperModel::from_pretrained(sharded.path(), Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&logits(&model), &want), 0.0);

    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(source.join("config.json"), bare.path().join("config.json")).unwrap();
    let mut stripped: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.trim_start_matches("model.").to_string(),
                t.shallow_clone(),
            )
        })
        .collect();
    let embed = &tensors
        .iter()
        .find(|(n, _)| n == "model.decoder.embed_tokens.weight")
        .unwrap()
        .1;
    stripped.push(("proj_out.weight".into(), embed.shallow_clone()));
    write_safetensors(&bare.path().join("model.safetensors"), &stripped).unwrap();
    let model = WhisperModel::from_pretrained(bare.path(), Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&logits(&model), &want), 0.0);
    assert_eq!(model.load_report().unwrap().ignored, ["proj_out.weight"]);
}

/// A half-precision checkpoint loads into the float32 model.
#[test]
fn fp16_checkpoint_loads_as_float32() {
    let exp = expected("mel128");
    let source = fixtures().join("mel128");
    let tensors = read_weights(&source.join("model.safetensors")).unwrap();
    let logits = |m: &WhisperModel| {
        tch::no_grad(|| m.forward_t(&features(&exp), &exp["decoder_input_ids"], None, false))
            .unwrap()
    };
    let want = logits(&load("mel128"));
    let half = tempfile::tempdir().unwrap();
    std::fs::copy(source.join("config.json"), half.path().join("config.json")).unwrap();
    let fp16: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_kind(Kind::Half)))
        .collect();
    write_safetensors(&half.path().join("model.safetensors"), &fp16).unwrap();
    let model = WhisperModel::from_pretrained(half.path(), Device::Cpu).unwrap();
    let weight = model
        .params()
        .get("model.decoder.embed_tokens.weight")
        .unwrap();
    assert_eq!(weight.kind(), Kind::Float);
    assert!(max_abs_diff(&logits(&model), &want) < 0.05);
}

/// `pytorch_model.bin` from `torch.save(model.state_dict())`: an OrderedDict whose tied
/// `proj_out.weight` shares its storage with the token embedding.
#[test]
fn pytorch_model_bin_loads_like_safetensors() {
    let exp = expected("mel128");
    let run = |m: &WhisperModel| {
        tch::no_grad(|| m.forward_t(&features(&exp), &exp["decoder_input_ids"], None, false))
            .unwrap()
    };
    let bin = load("mel128-bin");
    assert!(bin
        .load_report()
        .unwrap()
        .weights_file
        .ends_with("pytorch_model.bin"));
    assert_eq!(bin.load_report().unwrap().ignored, ["proj_out.weight"]);
    assert_eq!(max_abs_diff(&run(&bin), &run(&load("mel128"))), 0.0);
}

#[test]
fn bad_inputs_and_checkpoints_are_clear_errors() {
    let model = load("mel128");
    // 80 mels into a 128-mel model.
    let wrong = Tensor::zeros([1, 80, 200], (Kind::Float, Device::Cpu));
    let err = model.encode(&wrong, false).unwrap_err().to_string();
    assert!(err.contains("[batch, 128, 200]"), "{err}");
    // Labels longer than the decoder positions.
    let feats = Tensor::zeros([1, 128, 200], (Kind::Float, Device::Cpu));
    let labels = Tensor::zeros([1, 13], (Kind::Int64, Device::Cpu));
    let err = model
        .forward_labels(&feats, &labels, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_target_positions = 12"), "{err}");
    // Token ids outside the vocabulary.
    let ids = Tensor::from_slice(&[91i64, 96]).view([1, 2]);
    let err = model
        .forward_t(&feats, &ids, None, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    // A language the model does not have.
    let err = model
        .generation_config()
        .prompt_ids(Some("xx"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'xx'") && err.contains("en"), "{err}");
    // A checkpoint missing a tensor names it.
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("mel128");
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).unwrap();
    let tensors: Vec<(String, Tensor)> = read_weights(&source.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "model.decoder.layers.1.fc2.bias")
        .collect();
    write_safetensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    let err = WhisperModel::from_pretrained(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::WeightsMismatch { .. }));
    assert!(
        err.to_string().contains("model.decoder.layers.1.fc2.bias"),
        "{err}"
    );
}

#[test]
fn random_init_is_transformers_shaped() {
    tch::manual_seed(0);
    let config = WhisperConfig {
        d_model: 16,
        encoder_layers: 1,
        decoder_layers: 1,
        encoder_attention_heads: 2,
        decoder_attention_heads: 2,
        encoder_ffn_dim: 32,
        decoder_ffn_dim: 32,
        max_source_positions: 50,
        max_target_positions: 20,
        vocab_size: 100,
        decoder_start_token_id: 98,
        pad_token_id: Some(99),
        bos_token_id: Some(99),
        eos_token_id: Some(99.into()),
        begin_suppress_tokens: Some(vec![99]),
        ..WhisperConfig::default()
    };
    let model = WhisperModel::from_config(config, Device::Cpu).unwrap();
    let get = |n: &str| model.params().get(n).unwrap().shallow_clone();
    // The pad row of the token embedding is zero; the encoder positions are sinusoids.
    assert_eq!(
        get("model.decoder.embed_tokens.weight")
            .get(99)
            .abs()
            .sum(Kind::Float)
            .double_value(&[]),
        0.0
    );
    let positions = get("model.encoder.embed_positions.weight");
    assert_eq!(positions.double_value(&[0, 8]), 1.0); // cos(0)
    assert!(!positions.requires_grad());
    assert!(model
        .params()
        .get("model.encoder.layers.0.self_attn.k_proj.bias")
        .is_none());
    let names: Vec<&str> = model
        .trainable_parameters()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert!(!names.contains(&"model.encoder.embed_positions.weight"));
    let prompt = GenerationConfig::from_model_config(model.config())
        .prompt_ids(None, None)
        .unwrap();
    assert_eq!(prompt, [98]);
}

/// SpecAugment zeroes whole frames and whole mel bands, reproducibly from the generator,
/// and only when `apply_spec_augment` is set.
#[test]
fn spec_augment_masks_frames_and_bands() {
    use asr_model::rand::SeedableRng;
    let exp = expected("mel128");
    let feats = features(&exp);
    let mut model = load("mel128");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let same = model.spec_augment(&feats, &mut rng).unwrap();
    assert_eq!(
        max_abs_diff(&same, &feats),
        0.0,
        "masked without apply_spec_augment"
    );

    let mut config = model.config().clone();
    config.apply_spec_augment = true;
    config.mask_time_prob = 0.2;
    config.mask_feature_prob = 0.1;
    config.mask_feature_length = 4;
    let dir = tempfile::tempdir().unwrap();
    model.save_pretrained(dir.path()).unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_json_string()).unwrap();
    model = WhisperModel::from_pretrained(dir.path(), Device::Cpu).unwrap();
    let masked = |seed| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        model.spec_augment(&feats, &mut rng).unwrap()
    };
    let (a, b) = (masked(7), masked(7));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    let zero = a.eq(0.0);
    // Whole frames: columns zero over all 128 bands; whole bands: rows zero over all frames.
    let frames = zero.all_dims(1, false).sum(Kind::Int64).int64_value(&[]);
    let bands = zero.all_dims(2, false).sum(Kind::Int64).int64_value(&[]);
    assert!(
        (2 * 2 * 10..=2 * 200).contains(&frames),
        "{frames} masked frames"
    );
    assert!(bands >= 2 * 4, "{bands} masked bands");
    let kept = a.ne(0.0).logical_and(&feats.ne(0.0));
    assert_eq!(
        max_abs_diff(&a.masked_select(&kept), &feats.masked_select(&kept)),
        0.0
    );
}
