//! Saves Whisper models with `WhisperModel::save_pretrained` for
//! `tools/make-whisper-model-fixtures.py --check-export`, which loads each folder in
//! transformers and compares logits.
//!
//!     cargo run -p asr-model --example export_whisper -- OUT_DIR
//!
//! Writes `OUT_DIR/<name>/` (a Hugging Face folder) and `OUT_DIR/<name>.rust.safetensors`
//! (`input_features`, `decoder_input_ids` and the `logits` this crate computes) for
//! every Whisper fixture, the `pytorch_model.bin` one, and a whisper-tiny-shaped model
//! from random weights.
use std::path::{Path, PathBuf};

use asr_model::whisper::{WhisperConfig, WhisperModel};
use asr_model::write_safetensors;
use tch::{Device, Kind, Tensor};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/whisper/models")
}

fn export(out: &Path, name: &str, model: &WhisperModel) -> Result<()> {
    model.save_pretrained(&out.join(name))?;
    let config = model.config();
    let features = Tensor::randn(
        [2, config.num_mel_bins, config.input_frames()],
        (Kind::Float, Device::Cpu),
    ) * 0.5;
    let ids = Tensor::randint(config.vocab_size, [2, 6], (Kind::Int64, Device::Cpu));
    let logits = tch::no_grad(|| model.forward_t(&features, &ids, None, false))?;
    let tensors = vec![
        ("input_features".to_string(), features),
        ("decoder_input_ids".to_string(), ids),
        ("logits".to_string(), logits),
    ];
    write_safetensors(&out.join(format!("{name}.rust.safetensors")), &tensors)?;
    println!("exported {name}");
    Ok(())
}

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: export_whisper OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    tch::manual_seed(0);
    for name in ["multilingual", "mel128", "mel128-bin"] {
        let model = WhisperModel::from_pretrained(&fixtures().join(name), Device::Cpu)?;
        export(&out, name, &model)?;
    }
    // Random weights: the sinusoidal positions and every init are this crate's.
    let config = WhisperConfig {
        d_model: 64,
        encoder_layers: 1,
        decoder_layers: 1,
        encoder_attention_heads: 2,
        decoder_attention_heads: 2,
        encoder_ffn_dim: 128,
        decoder_ffn_dim: 128,
        ..WhisperConfig::default()
    };
    export(
        &out,
        "tiny-random",
        &WhisperModel::from_config(config, Device::Cpu)?,
    )?;
    Ok(())
}
