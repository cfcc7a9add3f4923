//! The Whisper family: `WhisperForConditionalGeneration` (transformers'
//! `models/whisper/`), its config, and greedy generation with a KV cache.
pub mod config;
pub mod generate;
pub mod model;
mod modeling;

pub use config::WhisperConfig;
pub use generate::GenerationConfig;
pub use model::WhisperModel;
