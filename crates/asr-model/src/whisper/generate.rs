//! Greedy generation for Whisper, as transformers 5.23's `WhisperForConditionalGeneration
//! .generate` does it for 30-second inputs (`generation_whisper.py`) with `num_beams = 1`,
//! `do_sample = False` and no timestamps:
//!
//! - the forced prompt is `decoder_start_token_id`, then the language token, the task
//!   token and `<|notimestamps|>` (`_retrieve_init_tokens`): from `language`/`task`
//!   arguments looked up in `lang_to_id`/`task_to_id`, else from `forced_decoder_ids`;
//! - `suppress_tokens` get -inf at every step, `begin_suppress_tokens` at the first
//!   generated step only;
//! - the next token is the first index of the maximum (`argmax`);
//! - a row stops at an EOS token and then emits pad; generation ends when every row has
//!   stopped or the sequence reaches the length cap: `min(max_length + prompt length,
//!   max_target_positions)` (`_set_max_new_tokens_and_length`; the prompt counts up to
//!   `max_target_positions / 2 - 1` tokens), or `prompt + max_new_tokens` when that is set
//!   (capped at `max_target_positions` too, where transformers raises an error);
//! - the result per row is the generated tokens without the prompt and without the EOS
//!   (transformers then right-pads rows with pad to a tensor).
//!
//! Keys and values are cached: the self-attention's grow by one position per step, the
//! cross-attention's are computed once per utterance. Beam search, sampling,
//! temperature fallback, timestamps and language detection are not implemented.
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use tch::{Kind, Tensor};

use super::config::{eos_ids, WhisperConfig};
use super::model::WhisperModel;
use crate::error::ModelError;

/// The generation settings of a Whisper folder (generation_config.json).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// First decoder token (`<|startoftranscript|>`).
    pub decoder_start_token_id: i64,
    /// Tokens that end a row.
    pub eos_token_ids: Vec<i64>,
    /// Token emitted by rows that have ended (== EOS in Whisper).
    pub pad_token_id: i64,
    /// Generated tokens allowed beyond the prompt, before the `max_target_positions` cap.
    pub max_length: i64,
    /// When set, the number of tokens to generate after the prompt (overrides `max_length`).
    pub max_new_tokens: Option<i64>,
    /// Suppressed at every step.
    pub suppress_tokens: Vec<i64>,
    /// Suppressed at the first generated step.
    pub begin_suppress_tokens: Vec<i64>,
    /// `"<|zh|>"` -> token id.
    pub lang_to_id: BTreeMap<String, i64>,
    /// `"transcribe"`/`"translate"` -> token id.
    pub task_to_id: BTreeMap<String, i64>,
    /// `<|notimestamps|>`.
    pub no_timestamps_token_id: Option<i64>,
    /// `(position, token)` pairs of older checkpoints (`forced_decoder_ids`).
    pub forced_decoder_ids: Vec<(i64, Option<i64>)>,
    /// The language generation uses when none is given (`language`: `zh` or `<|zh|>`),
    /// as transformers' `generate` reads `generation_config.language`.
    pub language: Option<String>,
    /// The task used when none is given (`task`: `transcribe` or `translate`).
    pub task: Option<String>,
    /// The JSON read, written back with the fields above updated.
    json: Map<String, Value>,
}

fn ids(value: Option<&Value>) -> Vec<i64> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

fn id_map(value: Option<&Value>) -> BTreeMap<String, i64> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

impl GenerationConfig {
    /// What transformers' `GenerationConfig.from_model_config` takes from config.json
    /// (token ids, suppress lists), with `max_length` = `max_target_positions` (448).
    pub fn from_model_config(config: &WhisperConfig) -> GenerationConfig {
        let mut json = Map::new();
        json.insert(
            "decoder_start_token_id".into(),
            config.decoder_start_token_id.into(),
        );
        for (key, value) in [
            ("pad_token_id", config.pad_token_id),
            ("bos_token_id", config.bos_token_id),
        ] {
            if let Some(v) = value {
                json.insert(key.into(), v.into());
            }
        }
        if let Some(eos) = &config.eos_token_id {
            json.insert("eos_token_id".into(), eos.clone());
        }
        for (key, value) in [
            ("suppress_tokens", &config.suppress_tokens),
            ("begin_suppress_tokens", &config.begin_suppress_tokens),
        ] {
            if let Some(v) = value {
                json.insert(key.into(), v.clone().into());
            }
        }
        json.insert("max_length".into(), config.max_target_positions.into());
        GenerationConfig::from_json(json, config)
    }

    fn from_json(mut json: Map<String, Value>, config: &WhisperConfig) -> GenerationConfig {
        // Not written back: with it set, transformers' GenerationConfig.from_pretrained
        // drops every key it has no default for (lang_to_id, task_to_id, ...).
        json.remove("_from_model_config");
        let eos = eos_ids(json.get("eos_token_id"));
        let eos_token_ids = if eos.is_empty() {
            config.eos_token_ids()
        } else {
            eos
        };
        let forced_decoder_ids = json
            .get("forced_decoder_ids")
            .and_then(Value::as_array)
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_i64()?, p.get(1)?.as_i64())))
                    .collect()
            })
            .unwrap_or_default();
        GenerationConfig {
            decoder_start_token_id: json
                .get("decoder_start_token_id")
                .and_then(Value::as_i64)
                .unwrap_or(config.decoder_start_token_id),
            pad_token_id: json
                .get("pad_token_id")
                .and_then(Value::as_i64)
                .or(config.pad_token_id)
                .or(eos_token_ids.first().copied())
                .unwrap_or(0),
            eos_token_ids,
            max_length: json
                .get("max_length")
                .and_then(Value::as_i64)
                .unwrap_or(config.max_target_positions),
            max_new_tokens: json.get("max_new_tokens").and_then(Value::as_i64),
            suppress_tokens: ids(json.get("suppress_tokens")),
            begin_suppress_tokens: ids(json.get("begin_suppress_tokens")),
            lang_to_id: id_map(json.get("lang_to_id")),
            task_to_id: id_map(json.get("task_to_id")),
            no_timestamps_token_id: json.get("no_timestamps_token_id").and_then(Value::as_i64),
            forced_decoder_ids,
            language: json
                .get("language")
                .and_then(Value::as_str)
                .map(String::from),
            task: json.get("task").and_then(Value::as_str).map(String::from),
            json,
        }
    }

    /// Reads generation_config.json; `config` fills the token ids it lacks.
    pub fn from_json_file_for(
        path: &Path,
        config: &WhisperConfig,
    ) -> Result<GenerationConfig, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: Map<String, Value> =
            serde_json::from_str(&text).map_err(|source| ModelError::ConfigParse {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(GenerationConfig::from_json(json, config))
    }

    /// The JSON to save, the fields of this struct written over the JSON read (less
    /// `_from_model_config`, see `from_json`).
    pub fn to_json_string(&self) -> String {
        let mut json = self.json.clone();
        json.insert(
            "decoder_start_token_id".into(),
            self.decoder_start_token_id.into(),
        );
        json.insert("pad_token_id".into(), self.pad_token_id.into());
        let eos: Value = match self.eos_token_ids.as_slice() {
            [one] => (*one).into(),
            many => many.to_vec().into(),
        };
        json.insert("eos_token_id".into(), eos);
        json.insert("max_length".into(), self.max_length.into());
        json.insert(
            "suppress_tokens".into(),
            self.suppress_tokens.clone().into(),
        );
        json.insert(
            "begin_suppress_tokens".into(),
            self.begin_suppress_tokens.clone().into(),
        );
        // The prompt's token tables (a preset sets them from its tokenizer).
        for (key, map) in [
            ("lang_to_id", &self.lang_to_id),
            ("task_to_id", &self.task_to_id),
        ] {
            if !map.is_empty() {
                let entries = map.iter().map(|(k, v)| (k.clone(), Value::from(*v)));
                json.insert(key.into(), Value::Object(entries.collect()));
            }
        }
        if let Some(id) = self.no_timestamps_token_id {
            json.insert("no_timestamps_token_id".into(), id.into());
        }
        for (key, value) in [("language", &self.language), ("task", &self.task)] {
            match value {
                Some(v) => json.insert(key.into(), v.clone().into()),
                None => json.remove(key),
            };
        }
        serde_json::to_string_pretty(&Value::Object(json)).unwrap_or_default()
    }

    /// The forced prompt for `language` (a code such as `zh`, or `<|zh|>`) and `task`
    /// (`transcribe`/`translate`), as transformers' `_retrieve_init_tokens` builds it;
    /// each left out falls back to this config's `language` / `task`.
    pub fn prompt_ids(
        &self,
        language: Option<&str>,
        task: Option<&str>,
    ) -> Result<Vec<i64>, ModelError> {
        let language = language.or(self.language.as_deref());
        let task = task.or(self.task.as_deref());
        let mut tokens: Vec<Option<i64>> = vec![Some(self.decoder_start_token_id)];
        if language.is_none() && task.is_none() {
            let mut forced = self.forced_decoder_ids.clone();
            forced.sort_by_key(|(i, _)| *i);
            for (i, id) in forced {
                if i as usize == tokens.len() {
                    tokens.push(id);
                }
            }
        }
        if let Some(language) = language {
            let id = self.language_id(language)?;
            if tokens.len() > 1 {
                tokens[1] = Some(id);
            } else {
                tokens.push(Some(id));
            }
        } else if !self.lang_to_id.is_empty() && tokens.get(1).copied().flatten().is_none() {
            return Err(ModelError::Input(format!(
                "this model is multilingual and no language was given: pass a language (one of {}); \
                 language detection is not implemented",
                self.language_codes()
            )));
        }
        let task_ids: Vec<i64> = self.task_to_id.values().copied().collect();
        if let Some(task) = task {
            let id =
                *self.task_to_id.get(task).ok_or_else(|| {
                    ModelError::Input(format!(
                    "task '{task}' is not in this model's generation_config.json task_to_id ({})",
                    self.task_to_id.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
                })?;
            tokens.retain(|t| !t.is_some_and(|t| task_ids.contains(&t)));
            tokens.push(Some(id));
        } else if language.is_some() && !tokens.iter().flatten().any(|t| task_ids.contains(t)) {
            if let Some(id) = self.task_to_id.get("transcribe") {
                tokens.push(Some(*id));
            }
        }
        if let Some(id) = self.no_timestamps_token_id {
            if tokens.last().copied().flatten() != Some(id) {
                tokens.push(Some(id));
            }
        }
        Ok(tokens.into_iter().flatten().collect())
    }

    fn language_id(&self, language: &str) -> Result<i64, ModelError> {
        let key = if language.starts_with("<|") {
            language.to_string()
        } else {
            format!("<|{}|>", language.to_lowercase())
        };
        self.lang_to_id.get(&key).copied().ok_or_else(|| {
            ModelError::Input(format!(
                "language '{language}' is not in this model's generation_config.json lang_to_id; \
                 languages: {}",
                self.language_codes()
            ))
        })
    }

    fn language_codes(&self) -> String {
        let codes: Vec<&str> = self
            .lang_to_id
            .keys()
            .map(|k| k.trim_start_matches("<|").trim_end_matches("|>"))
            .collect();
        if codes.is_empty() {
            "none listed".into()
        } else {
            codes.join(", ")
        }
    }

    /// The total sequence length generation stops at, for a prompt of `prompt_len`.
    pub fn length_cap(&self, prompt_len: i64, max_target_positions: i64) -> i64 {
        match self.max_new_tokens {
            Some(new) => prompt_len + new.min(max_target_positions - prompt_len),
            None => {
                let counted = prompt_len.min(max_target_positions / 2 - 1);
                (self.max_length + counted).min(max_target_positions)
            }
        }
    }
}

impl GenerationConfig {
    /// Reads generation_config.json with the defaults of a model whose config is not at
    /// hand (token ids missing from the file stay Whisper's defaults).
    pub fn from_json_file(path: &Path) -> Result<GenerationConfig, ModelError> {
        GenerationConfig::from_json_file_for(path, &WhisperConfig::default())
    }
}

/// Sets the logits of `tokens` (those inside the vocabulary) to -inf.
fn suppress(scores: &Tensor, tokens: &[i64], vocab: i64) -> Tensor {
    let kept: Vec<i64> = tokens
        .iter()
        .copied()
        .filter(|t| (0..vocab).contains(t))
        .collect();
    if kept.is_empty() {
        return scores.shallow_clone();
    }
    let index = Tensor::from_slice(&kept).to_device(scores.device());
    scores.index_fill(1, &index, f64::NEG_INFINITY)
}

impl WhisperModel {
    /// Batched greedy decoding of log-mel features `[B, mels, frames]` after the forced
    /// `prompt` (see the module doc); returns each row's generated tokens, without the
    /// prompt and the EOS.
    pub fn generate_greedy(
        &self,
        input_features: &Tensor,
        prompt: &[i64],
        generation: &GenerationConfig,
    ) -> Result<Vec<Vec<i64>>, ModelError> {
        let max_target = self.config().max_target_positions;
        let prompt_len = prompt.len() as i64;
        if prompt.is_empty() || prompt_len >= max_target {
            return Err(ModelError::Input(format!(
                "the decoder prompt has {prompt_len} tokens; it needs 1 to {} (max_target_positions {max_target})",
                max_target - 1
            )));
        }
        tch::no_grad(|| {
            let encoder_hidden = self.encode(input_features, false)?;
            let batch = encoder_hidden.size()[0];
            let prompt_ids = Tensor::from_slice(prompt)
                .view([1, prompt_len])
                .repeat([batch, 1]);
            let prompt_ids = self.check_ids(&prompt_ids, "the decoder prompt")?;
            let mut caches = self.decoder_caches(&encoder_hidden);
            let logits = self.decoder_step(&prompt_ids, 0, &mut caches);
            let cap = generation.length_cap(prompt_len, max_target);
            Ok(self.greedy_loop(logits, &mut caches, prompt_len, cap, generation))
        })
    }

    fn greedy_loop(
        &self,
        mut logits: Tensor,
        caches: &mut [super::modeling::LayerCache],
        prompt_len: i64,
        cap: i64,
        generation: &GenerationConfig,
    ) -> Vec<Vec<i64>> {
        let vocab = self.config().vocab_size;
        let batch = logits.size()[0] as usize;
        let mut rows: Vec<Vec<i64>> = vec![Vec::new(); batch];
        let mut finished = vec![false; batch];
        let mut length = prompt_len;
        while length < cap {
            let last = logits.select(1, -1).to_kind(Kind::Float);
            let mut scores = suppress(&last, &generation.suppress_tokens, vocab);
            if length == prompt_len {
                scores = suppress(&scores, &generation.begin_suppress_tokens, vocab);
            }
            let best = Vec::<i64>::try_from(scores.argmax(-1, false).to_device(tch::Device::Cpu))
                .unwrap_or_default();
            let mut next = Vec::with_capacity(batch);
            for (b, &token) in best.iter().enumerate() {
                if finished[b] {
                    next.push(generation.pad_token_id);
                } else if generation.eos_token_ids.contains(&token) {
                    finished[b] = true;
                    next.push(token);
                } else {
                    rows[b].push(token);
                    next.push(token);
                }
            }
            length += 1;
            if finished.iter().all(|&f| f) || length >= cap {
                break;
            }
            let ids = Tensor::from_slice(&next)
                .view([batch as i64, 1])
                .to_device(self.device());
            logits = self.decoder_step(&ids, length - 1, caches);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(extra: Value) -> GenerationConfig {
        let mut json: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "decoder_start_token_id": 50258, "eos_token_id": 50257, "pad_token_id": 50257,
            "lang_to_id": {"<|en|>": 50259, "<|zh|>": 50260},
            "task_to_id": {"translate": 50358, "transcribe": 50359},
            "no_timestamps_token_id": 50363, "max_length": 448,
        }))
        .unwrap();
        json.extend(serde_json::from_value::<Map<String, Value>>(extra).unwrap());
        GenerationConfig::from_json(json, &WhisperConfig::default())
    }

    /// Expected prompts computed with transformers 5.23's `_retrieve_init_tokens`.
    #[test]
    fn prompts_match_transformers() {
        let hub = generation(serde_json::json!({"forced_decoder_ids": [[1, null], [2, 50359]]}));
        let p = |g: &GenerationConfig, l, t| g.prompt_ids(l, t).unwrap();
        assert_eq!(p(&hub, Some("zh"), None), [50258, 50260, 50359, 50363]);
        assert_eq!(
            p(&hub, Some("en"), Some("translate")),
            [50258, 50259, 50358, 50363]
        );
        assert_eq!(
            p(&hub, Some("<|zh|>"), Some("translate")),
            [50258, 50260, 50358, 50363]
        );
        // No language given and none forced: transformers would detect it; an error here.
        let err = hub.prompt_ids(None, None).unwrap_err().to_string();
        assert!(
            err.contains("pass a language") && err.contains("zh"),
            "{err}"
        );
        let forced =
            generation(serde_json::json!({"forced_decoder_ids": [[1, 50260], [2, 50358]]}));
        assert_eq!(p(&forced, None, None), [50258, 50260, 50358, 50363]);
        assert_eq!(p(&forced, Some("en"), None), [50258, 50259, 50359, 50363]);
        let english = GenerationConfig::from_json(
            serde_json::from_value(serde_json::json!({
                "decoder_start_token_id": 50257, "forced_decoder_ids": [[1, 50362]],
                "no_timestamps_token_id": 50362,
            }))
            .unwrap(),
            &WhisperConfig::default(),
        );
        assert_eq!(p(&english, None, None), [50257, 50362]);
    }

    #[test]
    fn length_cap_follows_transformers() {
        let g = generation(serde_json::json!({}));
        // max_length 448 + a 4-token prompt, capped at 448 decoder positions.
        assert_eq!(g.length_cap(4, 448), 448);
        let short = generation(serde_json::json!({"max_length": 10}));
        assert_eq!(short.length_cap(4, 448), 14);
        let new = generation(serde_json::json!({"max_new_tokens": 500}));
        assert_eq!(new.length_cap(4, 448), 448);
    }

    #[test]
    fn saved_json_drops_from_model_config() {
        let g = generation(serde_json::json!({"_from_model_config": true}));
        let saved: Value = serde_json::from_str(&g.to_json_string()).unwrap();
        assert!(saved.get("_from_model_config").is_none());
        assert_eq!(saved["lang_to_id"]["<|zh|>"], 50260);
    }
}
