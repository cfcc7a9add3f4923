//! Saves models with `CtcModel::save_pretrained` for `tools/make-model-fixtures.py
//! --check-export`, which loads each folder in transformers and compares logits.
//!
//!     cargo run -p asr-model --example export_fixtures -- OUT_DIR
//!
//! Writes `OUT_DIR/<name>/` (a Hugging Face folder) and `OUT_DIR/<name>.rust.safetensors`
//! (`input_values`, `attention_mask`, and the `logits` this crate computes for them)
//! for every model fixture, a `tiny` preset and a HuBERT config from random weights,
//! a fixture with masking switched off, and one with a re-initialized head.
use std::path::{Path, PathBuf};

use asr_model::{read_weights, write_safetensors, Config, CtcModel, ModelType};
use asr_text::Vocab;
use tch::{Device, Kind, Tensor};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn export(
    out: &Path,
    name: &str,
    model: &CtcModel,
    vocab: &Vocab,
    inputs: &Tensor,
    mask: &Tensor,
) -> Result<()> {
    model.save_pretrained(&out.join(name), vocab)?;
    let output = tch::no_grad(|| model.forward_t(inputs, Some(mask), false, None))?;
    let tensors = vec![
        ("input_values".to_string(), inputs.shallow_clone()),
        ("attention_mask".to_string(), mask.shallow_clone()),
        ("logits".to_string(), output.logits),
    ];
    write_safetensors(&out.join(format!("{name}.rust.safetensors")), &tensors)?;
    println!("exported {name}");
    Ok(())
}

fn random_batch(lengths: &[i64]) -> (Tensor, Tensor) {
    let max = lengths.iter().copied().max().unwrap_or(0);
    let inputs = Tensor::randn([lengths.len() as i64, max], (Kind::Float, Device::Cpu));
    let positions = Tensor::arange(max, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let mask = positions
        .lt_tensor(&Tensor::from_slice(lengths).unsqueeze(1))
        .to_kind(Kind::Int64);
    (&inputs * &mask, mask)
}

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: export_fixtures OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let device = Device::Cpu;
    for name in [
        "w2v2-base",
        "w2v2-large",
        "w2v2-mms",
        "hubert",
        "hubert-large-bn",
        "w2v2-base-bin",
    ] {
        let dir = fixtures().join(name);
        let model = CtcModel::from_pretrained(&dir, device)?;
        let vocab = asr_model::read_vocab(&dir)?;
        let expected = read_weights(&fixtures().join("w2v2-base/expected.safetensors"))?;
        let get = |key: &str| {
            expected
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, t)| t.shallow_clone())
        };
        let (inputs, mask) = (
            get("input_values").ok_or("no input_values")?,
            get("attention_mask").ok_or("no mask")?,
        );
        export(&out, name, &model, &vocab, &inputs, &mask)?;
    }
    let vocab = asr_model::read_vocab(&fixtures().join("w2v2-base"))?;

    tch::manual_seed(0);
    let tiny = CtcModel::from_preset("tiny", &vocab, device)?;
    let (inputs, mask) = random_batch(&[8000, 6000]);
    export(&out, "tiny-preset", &tiny, &vocab, &inputs, &mask)?;

    let hubert_config = Config {
        model_type: ModelType::Hubert,
        vocab_size: vocab.len() as i64,
        hidden_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 96,
        conv_dim: vec![24, 24, 24],
        conv_stride: vec![5, 2, 2],
        conv_kernel: vec![10, 3, 3],
        num_conv_pos_embeddings: 9,
        num_conv_pos_embedding_groups: 3,
        feat_extract_norm: asr_model::FeatExtractNorm::Layer,
        do_stable_layer_norm: true,
        ..Config::default()
    };
    let hubert = CtcModel::from_config(hubert_config, device)?;
    let (inputs, mask) = random_batch(&[1500, 900]);
    export(&out, "hubert-config", &hubert, &vocab, &inputs, &mask)?;

    let mut unmasked = CtcModel::from_pretrained(&fixtures().join("w2v2-large"), device)?;
    unmasked.update_config(|c| {
        c.mask_time_prob = 0.0;
        c.mask_feature_prob = 0.0;
        c.layerdrop = 0.0;
    })?;
    export(
        &out,
        "w2v2-large-no-masking",
        &unmasked,
        &vocab,
        &inputs,
        &mask,
    )?;

    let mut reinit = CtcModel::from_pretrained(&fixtures().join("hubert"), device)?;
    let small_vocab = Vocab::from_chars("xyz".chars());
    reinit.reinit_head(&small_vocab);
    export(
        &out,
        "hubert-reinit-head",
        &reinit,
        &small_vocab,
        &inputs,
        &mask,
    )?;
    Ok(())
}
