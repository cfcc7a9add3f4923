//! The keys of a Hugging Face Whisper `config.json` (transformers 5.23
//! `configuration_whisper.py`, `WhisperConfig`): field names are the JSON keys and every
//! default is `WhisperConfig`'s, so a config.json that omits a key means here what it
//! means there. Keys this crate does not use (classifier, `median_filter_width`,
//! `transformers_version`, ...) are kept in [`WhisperConfig::extra`] and written back.
//!
//! `scale_embedding` is read and written back but, as in transformers 5.23 (whose
//! encoder and decoder compute `embed_scale` and never apply it), changes nothing.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ModelError;
use crate::wav2vec2::config::Activation;

/// A Whisper `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhisperConfig {
    /// Always `"whisper"`.
    pub model_type: String,
    /// Tokens of the vocabulary (51,865 multilingual, 51,864 English-only, 51,866 large-v3).
    pub vocab_size: i64,
    /// Mel bands of the input features (80, or 128 for large-v3).
    pub num_mel_bins: i64,
    /// Width of the model.
    pub d_model: i64,
    /// Encoder layers.
    pub encoder_layers: i64,
    /// Encoder attention heads.
    pub encoder_attention_heads: i64,
    /// Decoder layers.
    pub decoder_layers: i64,
    /// Decoder attention heads.
    pub decoder_attention_heads: i64,
    /// Width of the encoder feed-forward layers.
    pub encoder_ffn_dim: i64,
    /// Width of the decoder feed-forward layers.
    pub decoder_ffn_dim: i64,
    /// LayerDrop probability of encoder layers in training.
    pub encoder_layerdrop: f64,
    /// LayerDrop probability of decoder layers in training.
    pub decoder_layerdrop: f64,
    /// The first decoder token (`<|startoftranscript|>`).
    pub decoder_start_token_id: i64,
    /// Activation of the feed-forward layers (the conv stem always uses erf GELU).
    pub activation_function: Activation,
    /// Dropout after attention and feed-forward blocks and on the embeddings.
    pub dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Dropout inside the feed-forward layers.
    pub activation_dropout: f64,
    /// Standard deviation of the random init.
    pub init_std: f64,
    /// Read and written back; unused by transformers 5.23's forward, so here too.
    pub scale_embedding: bool,
    /// Encoder positions: the input has `2 * max_source_positions` frames (1500 -> 3000).
    pub max_source_positions: i64,
    /// Learned decoder positions: the longest decoder sequence (448).
    pub max_target_positions: i64,
    /// Padding token (== EOS in Whisper).
    pub pad_token_id: Option<i64>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token(s): an integer or a list.
    pub eos_token_id: Option<Value>,
    /// Tokens suppressed at every generation step (older checkpoints keep them here
    /// rather than in generation_config.json).
    pub suppress_tokens: Option<Vec<i64>>,
    /// Tokens suppressed at the first generated step.
    pub begin_suppress_tokens: Option<Vec<i64>>,
    /// SpecAugment on the input features in training
    /// ([`crate::whisper::WhisperModel::spec_augment`]).
    pub apply_spec_augment: bool,
    /// Fraction of input frames masked (as spans) when `apply_spec_augment`.
    pub mask_time_prob: f64,
    /// Frames per time span.
    pub mask_time_length: i64,
    /// Least time spans per utterance.
    pub mask_time_min_masks: i64,
    /// Fraction of mel bands masked when `apply_spec_augment`.
    pub mask_feature_prob: f64,
    /// Mel bands per feature span.
    pub mask_feature_length: i64,
    /// Least feature spans per utterance.
    pub mask_feature_min_masks: i64,
    /// `["WhisperForConditionalGeneration"]`.
    pub architectures: Option<Vec<String>>,
    /// Every other key, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for WhisperConfig {
    /// transformers' `WhisperConfig()` (whisper-tiny's shape).
    fn default() -> Self {
        WhisperConfig {
            model_type: "whisper".into(),
            vocab_size: 51865,
            num_mel_bins: 80,
            d_model: 384,
            encoder_layers: 4,
            encoder_attention_heads: 6,
            decoder_layers: 4,
            decoder_attention_heads: 6,
            encoder_ffn_dim: 1536,
            decoder_ffn_dim: 1536,
            encoder_layerdrop: 0.0,
            decoder_layerdrop: 0.0,
            decoder_start_token_id: 50257,
            activation_function: Activation::Gelu,
            dropout: 0.0,
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            init_std: 0.02,
            scale_embedding: false,
            max_source_positions: 1500,
            max_target_positions: 448,
            pad_token_id: Some(50256),
            bos_token_id: Some(50256),
            eos_token_id: Some(Value::from(50256)),
            suppress_tokens: None,
            begin_suppress_tokens: Some(vec![220, 50256]),
            apply_spec_augment: false,
            mask_time_prob: 0.05,
            mask_time_length: 10,
            mask_time_min_masks: 2,
            mask_feature_prob: 0.0,
            mask_feature_length: 10,
            mask_feature_min_masks: 0,
            architectures: None,
            extra: BTreeMap::new(),
        }
    }
}

/// The class transformers builds from a saved folder.
pub const WHISPER_CLASS: &str = "WhisperForConditionalGeneration";

impl WhisperConfig {
    /// Parses config.json text; `origin` names the file in errors.
    pub fn from_json_str(json: &str, origin: &Path) -> Result<WhisperConfig, ModelError> {
        let config: WhisperConfig =
            serde_json::from_str(json).map_err(|source| match bad_key(json) {
                Some((key, reason)) => ModelError::ConfigInvalid {
                    path: origin.to_path_buf(),
                    reason: format!("\"{key}\": {reason}"),
                },
                None => ModelError::ConfigParse {
                    path: origin.to_path_buf(),
                    source,
                },
            })?;
        config
            .validate()
            .map_err(|reason| ModelError::ConfigInvalid {
                path: origin.to_path_buf(),
                reason,
            })?;
        Ok(config)
    }

    /// Reads and checks a config.json file.
    pub fn from_json_file(path: &Path) -> Result<WhisperConfig, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        WhisperConfig::from_json_str(&text, path)
    }

    /// The config as transformers writes it, naming the generation class.
    pub fn to_json_string(&self) -> String {
        let mut config = self.clone();
        config.architectures = Some(vec![WHISPER_CLASS.to_string()]);
        config
            .extra
            .entry("is_encoder_decoder".into())
            .or_insert(Value::Bool(true));
        config
            .extra
            .entry("tie_word_embeddings".into())
            .or_insert(Value::Bool(true));
        serde_json::to_string_pretty(&config).unwrap_or_default()
    }

    /// The end-of-sequence ids (`eos_token_id` as an integer or a list).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        eos_ids(self.eos_token_id.as_ref())
    }

    /// Input frames the encoder takes: `2 * max_source_positions` (3000).
    pub fn input_frames(&self) -> i64 {
        2 * self.max_source_positions
    }

    /// Checks that the config describes a model that can be built.
    pub fn validate(&self) -> Result<(), String> {
        if self.model_type != "whisper" {
            return Err(format!(
                "model_type is \"{}\", not \"whisper\": this is not a Whisper config",
                self.model_type
            ));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("num_mel_bins", self.num_mel_bins),
            ("d_model", self.d_model),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("max_source_positions", self.max_source_positions),
            ("max_target_positions", self.max_target_positions),
        ];
        for (key, value) in positive {
            if !(1..=1 << 24).contains(&value) {
                return Err(format!("{key} must be between 1 and 2^24, got {value}"));
            }
        }
        for (key, value) in [
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
        ] {
            if !(0..=1024).contains(&value) {
                return Err(format!("{key} must be between 0 and 1024, got {value}"));
            }
        }
        for (key, heads) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if self.d_model % heads != 0 {
                return Err(format!(
                    "d_model {} is not divisible by {key} {heads}",
                    self.d_model
                ));
            }
        }
        if self.d_model % 2 != 0 {
            return Err(format!(
                "d_model must be even for the sinusoidal positions, got {}",
                self.d_model
            ));
        }
        let ids = [("decoder_start_token_id", Some(self.decoder_start_token_id))]
            .into_iter()
            .chain([("pad_token_id", self.pad_token_id)])
            .chain(
                self.eos_token_ids()
                    .into_iter()
                    .map(|e| ("eos_token_id", Some(e))),
            );
        for (key, id) in ids {
            if let Some(id) = id {
                if !(0..self.vocab_size).contains(&id) {
                    return Err(format!(
                        "{key} {id} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The first key of a JSON object that does not deserialize on its own, with serde's
/// reason (serde's own error does not name keys of a struct with a flattened map).
fn bad_key(json: &str) -> Option<(String, String)> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
        return None;
    };
    map.into_iter().find_map(|(key, value)| {
        let single = Value::Object([(key.clone(), value)].into_iter().collect());
        serde_json::from_value::<WhisperConfig>(single)
            .err()
            .map(|e| (key, e.to_string()))
    })
}

/// Token ids from an `eos_token_id` value (an integer, a list, or null).
pub(crate) fn eos_ids(value: Option<&Value>) -> Vec<i64> {
    match value {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_transformers_and_unknown_keys_round_trip() {
        let json = r#"{"model_type": "whisper", "d_model": 12, "median_filter_width": 7,
                       "eos_token_id": [50257, 50256]}"#;
        let config = WhisperConfig::from_json_str(json, Path::new("config.json")).unwrap();
        assert_eq!(config.max_target_positions, 448);
        assert_eq!(config.eos_token_ids(), [50257, 50256]);
        let back: Value = serde_json::from_str(&config.to_json_string()).unwrap();
        assert_eq!(back["median_filter_width"], 7);
        assert_eq!(back["architectures"][0], WHISPER_CLASS);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let path = Path::new("whisper/config.json");
        for (json, needle) in [
            (r#"{"model_type": "wav2vec2"}"#, "not a Whisper config"),
            (
                r#"{"d_model": 10, "encoder_attention_heads": 4}"#,
                "not divisible",
            ),
            (r#"{"vocab_size": 100}"#, "decoder_start_token_id 50257"),
            (r#"{"d_model": "big"}"#, "\"d_model\": invalid type"),
        ] {
            let err = WhisperConfig::from_json_str(json, path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) && err.contains("config.json"), "{err}");
        }
    }
}
