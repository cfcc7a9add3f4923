//! Whisper (`WhisperForConditionalGeneration`), as transformers' `models/whisper/`
//! folder has it: the log-mel front end ([`features`]) and the byte-level BPE tokenizer
//! ([`tokenizer`]) beside the model.

pub mod features;
pub mod tokenizer;

pub use features::{FeatureConfig, FeatureError, WhisperFeatureExtractor, WhisperFeatures};
pub use tokenizer::{strip_decoder_start, SpecialTokens, Task, TokenizerError, WhisperTokenizer};
