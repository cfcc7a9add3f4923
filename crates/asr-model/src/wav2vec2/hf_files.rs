//! The processor files of a Hugging Face model folder, so that
//! `Wav2Vec2Processor.from_pretrained(dir)` gives the feature extractor and CTC
//! tokenizer that match the model.
//!
//! Written in the transformers 4.x layout (`preprocessor_config.json`,
//! `tokenizer_config.json`, `special_tokens_map.json`), which transformers 5 reads too.
//! `bos_token`/`eos_token` are null unless the vocabulary holds `<s>`/`</s>`, so the
//! tokenizer has exactly the model's `vocab_size` tokens (transformers otherwise
//! appends them as added tokens).
use asr_text::Vocab;
use serde_json::{json, Value};

use super::config::Config;

/// Audio rate the feature extractor declares; wav2vec2/HuBERT checkpoints are 16 kHz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// `(file name, JSON)` for preprocessor_config.json, tokenizer_config.json and
/// special_tokens_map.json.
pub(crate) fn processor_files(config: &Config, vocab: &Vocab) -> Vec<(&'static str, Value)> {
    let token = |id: Option<u32>| id.and_then(|id| vocab.token(id)).map(str::to_string);
    let pad = token(Some(vocab.blank_id()));
    let unk = token(vocab.unk_id());
    let bos = vocab.id("<s>").map(|_| "<s>".to_string());
    let eos = vocab.id("</s>").map(|_| "</s>".to_string());
    let preprocessor = json!({
        "do_normalize": true,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "Wav2Vec2Processor",
        "return_attention_mask": config.uses_attention_mask(),
        "sampling_rate": SAMPLE_RATE_HZ,
    });
    let tokenizer = json!({
        "tokenizer_class": "Wav2Vec2CTCTokenizer",
        "processor_class": "Wav2Vec2Processor",
        "pad_token": pad,
        "unk_token": unk,
        "bos_token": bos,
        "eos_token": eos,
        "word_delimiter_token": vocab.word_delimiter(),
        "replace_word_delimiter_char": " ",
        "do_lower_case": false,
        "target_lang": null,
    });
    let special = json!({
        "pad_token": pad,
        "unk_token": unk,
        "bos_token": bos,
        "eos_token": eos,
    });
    vec![
        ("preprocessor_config.json", preprocessor),
        ("tokenizer_config.json", tokenizer),
        ("special_tokens_map.json", special),
    ]
}
