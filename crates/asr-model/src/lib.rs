//! wav2vec2 / HuBERT CTC models in tch with Hugging Face checkpoint parity.
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
//! Only this crate and asr-train link libtorch; see [`device`] for how the CPU-linked
//! binaries use CUDA.

mod config;
mod decode;
pub mod device;
mod error;
mod hf_files;
pub mod hub;
pub mod masking;
mod model;
mod modeling;
mod params;
mod pickle;
pub mod precision;
mod weights;

pub use config::{Activation, Config, CtcLossReduction, FeatExtractNorm, ModelType, Preset};
pub use decode::{greedy_decode, greedy_ids};
pub use error::{DeviceError, ModelError};
pub use hf_files::SAMPLE_RATE_HZ;
pub use model::{read_vocab, BatchPadding, CtcModel, CtcOutput, ModelSpec, IGNORE_LABEL};
pub use params::{NamedTensor, ParamStore, Role};
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
