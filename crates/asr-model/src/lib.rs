//! wav2vec2 / HuBERT CTC models in tch with Hugging Face checkpoint parity.
