//! The wav2vec2 family: `Wav2Vec2ForCTC` and `HubertForCTC` (transformers'
//! `models/wav2vec2/` and `models/hubert/`), with their config, CTC decoding and the
//! processor files of their Hugging Face folders.
pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod hf_files;
pub(crate) mod model;
pub(crate) mod modeling;
