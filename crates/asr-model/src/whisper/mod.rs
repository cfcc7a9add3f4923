//! Whisper (`WhisperForConditionalGeneration`), as transformers' `models/whisper/`
//! folder has it: the model and its config ([`model`], [`config`]), greedy generation
//! with a KV cache ([`generate`]), the log-mel front end ([`features`]) and the
//! byte-level BPE tokenizer ([`tokenizer`]).
pub mod config;
pub mod features;
pub mod generate;
pub mod model;
mod modeling;
pub mod tokenizer;

pub use config::WhisperConfig;
pub use features::{FeatureConfig, FeatureError, WhisperFeatureExtractor, WhisperFeatures};
pub use generate::GenerationConfig;
pub use model::WhisperModel;
pub use tokenizer::{strip_decoder_start, SpecialTokens, Task, TokenizerError, WhisperTokenizer};
