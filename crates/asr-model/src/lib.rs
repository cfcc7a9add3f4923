//! wav2vec2 / HuBERT CTC and Whisper seq2seq models in tch with Hugging Face checkpoint parity.
//!
//! [`CtcModel`] is transformers' `Wav2Vec2ForCTC` / `HubertForCTC` (transformers
//! 5.23.0) module for module, with the checkpoint's parameter names, so a local Hugging
//! Face folder (config.json + model.safetensors or pytorch_model.bin, vocab.json) loads
//! as is and [`CtcModel::save_pretrained`] writes a folder transformers loads back. The
//! fixtures under `fixtures/models/` (made by `tools/make-model-fixtures.py` with
//! transformers) pin the outputs, loss and gradients to transformers'.
//!
//! ```no_run
//! use asr_model::{device, CtcModel};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = device::select("auto".parse()?)?;
//! let dir = std::path::Path::new("wav2vec2-base-960h");
//! let model = CtcModel::from_pretrained(dir, device)?;
//! let vocab = asr_model::read_vocab(dir)?;
//! let audio = tch::Tensor::zeros([1, 16_000], (tch::Kind::Float, device));
//! let output = tch::no_grad(|| model.forward_t(&audio, None, false, None))?;
//! println!("{}", model.greedy_decode(&output, &vocab)[0]);
//! # Ok(()) }
//! ```
//!
//! Training-loop contract: call [`CtcModel::forward_padded`] (or `forward_t`) with
//! `train = true` and a per-step random generator for SpecAugment, then
//! [`CtcModel::ctc_loss`]; seed libtorch with `tch::manual_seed` per step for dropout
//! and LayerDrop; update [`CtcModel::trainable_parameters`] (HF names, state_dict
//! order) under `tch::no_grad`. Mixed precision: [`precision::Autocast`].
//!
//! Whisper: [`whisper::WhisperModel`] is transformers' `WhisperForConditionalGeneration`
//! with its parameter names (loads `model.safetensors`, sharded checkpoints and
//! `pytorch_model.bin`; saves folders transformers loads), with the loss of
//! `forward(labels=...)` and batched greedy generation with a KV cache
//! ([`whisper::WhisperModel::generate_greedy`]); the fixtures under
//! `fixtures/whisper/models/` (made by `tools/make-whisper-model-fixtures.py`) pin its
//! logits, loss, gradients and generated ids to transformers'.
//!
//! One module per model family, as transformers' `models/` folder: `wav2vec2/`
//! (wav2vec2 and HuBERT) and [`whisper`], sharing the layers of `layers.rs`.
//!
//! Only this crate and asr-train link libtorch; see [`device`] for how the CPU-linked
//! binaries use CUDA.

pub mod device;
mod error;
pub mod hub;
mod layers;
pub mod masking;
mod params;
mod pickle;
pub mod precision;
mod wav2vec2;
mod weights;
pub mod whisper;

pub use error::{DeviceError, ModelError};
pub use params::{NamedTensor, ParamStore, Role};
pub use wav2vec2::config::{
    Activation, Config, CtcLossReduction, FeatExtractNorm, ModelType, Preset,
};
pub use wav2vec2::decode::{greedy_decode, greedy_ids};
pub use wav2vec2::hf_files::SAMPLE_RATE_HZ;
pub use wav2vec2::model::{read_vocab, BatchPadding, CtcModel, CtcOutput, ModelSpec, IGNORE_LABEL};
pub use weights::{write_safetensors, LoadReport, WEIGHT_FILES};

/// The `rand` version the masking API takes generators from (the one tch uses).
pub use rand;
/// The tch version this crate is built on.
pub use tch;

/// Reads every tensor of a weights file (`.safetensors`, `pytorch_model.bin`, or a
/// sharded `*.index.json`) as CPU tensors of the file's dtype, in file order. For
/// inspecting checkpoints; models load through [`CtcModel::from_pretrained`].
pub fn read_weights(path: &std::path::Path) -> Result<Vec<(String, tch::Tensor)>, ModelError> {
    weights::read_tensor_file(path)
}

/// Unit tests that draw from libtorch's global generator (random init, `randn`) hold
/// [`test_rng::seeded`]: test threads share the generator, so each such test locks it
/// and seeds it to draw the same numbers whatever runs beside it.
#[cfg(test)]
pub(crate) mod test_rng {
    use std::sync::{Mutex, MutexGuard};

    static TORCH_RNG: Mutex<()> = Mutex::new(());

    /// Locks libtorch's generator for the calling test and seeds it with `seed`.
    pub(crate) fn seeded(seed: i64) -> MutexGuard<'static, ()> {
        let guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed);
        guard
    }
}
