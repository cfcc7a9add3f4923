//! Whisper (sequence-to-sequence) models in `asr-train`: which `--model` is a Whisper
//! model ([`ModelKind`]), a Whisper folder loaded with everything generation needs
//! ([`WhisperBundle`]: model, tokenizer, feature extractor, generation settings), the
//! `whisper-tiny` preset, and the `transcribe` ([`transcribe`]) and `eval` ([`eval`])
//! commands on Whisper folders. `asr-train run` trains them in the same loop as CTC
//! models, with the seq2seq task of [`crate::task`]; the label side (tokenized at load
//! time, over-long clips and labels left out and counted) is in [`labels`].
//!
//! **Dispatch.** A folder whose `config.json` has `"model_type": "whisper"`, such a
//! `config.json` file, or the preset name `whisper-tiny` is a Whisper model; anything
//! else is a CTC model, resolved as before by [`asr_model::ModelSpec`].
//!
//! **Folder contents.** `config.json` and the weights (as [`WhisperModel`] loads them),
//! `tokenizer.json` (required: the `tokenizers`-crate file transformers saves; a folder
//! without one is refused with a hint to copy it from the base checkpoint),
//! `generation_config.json` (optional: derived from config.json as transformers does)
//! and `preprocessor_config.json` (optional: Whisper's defaults with the model's
//! `num_mel_bins`).
//!
//! **The `whisper-tiny` preset** is openai/whisper-tiny's shape (4 + 4 layers, d 384,
//! 80 mels, 51,865 tokens) from random weights. Random weights come with no tokenizer,
//! so the preset takes a multilingual Whisper `tokenizer.json` given by the caller (any
//! Whisper checkpoint's, or the one `tools/make-whisper-fixtures.py` writes under
//! `fixtures/whisper/tokenizer/`); the token ids of the config and generation settings
//! (decoder start, end of text, languages, tasks) are looked up in it by name.
//! **`whisper-micro`** is the same with a toy shape for tests and quick trials on a
//! CPU: d 64, 2 + 2 layers, 4 heads, FFN 256, and a **5-s input window** (250 encoder
//! positions, `chunk_length` 5 in its preprocessor_config.json) instead of 30 s, which
//! makes its encoder 36 times cheaper; clips over 5 s are left out of its training.

pub mod eval;
pub mod labels;
pub mod transcribe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use asr_model::whisper::{
    FeatureConfig, GenerationConfig, Task, WhisperConfig, WhisperFeatureExtractor, WhisperModel,
    WhisperTokenizer,
};
use asr_model::{CtcModel, ModelError};

use crate::trainer::TrainError;

/// The preset name of a random-weight Whisper model of openai/whisper-tiny's shape.
pub const WHISPER_TINY: &str = "whisper-tiny";

/// The preset name of a toy random-weight Whisper model (tests, CPU trials).
pub const WHISPER_MICRO: &str = "whisper-micro";

/// Whether `name` is a Whisper preset.
pub fn is_preset(name: &str) -> bool {
    name == WHISPER_TINY || name == WHISPER_MICRO
}

/// What kind of model a `--model` argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// wav2vec2 / HuBERT with a CTC head (everything that is not Whisper).
    Ctc,
    /// Whisper: encoder-decoder, scored by generation.
    Whisper,
}

impl ModelKind {
    /// The kind of `spec` (a folder, a config.json, or a preset name): Whisper when the
    /// folder's or file's config has `"model_type": "whisper"` or the name is
    /// `whisper-tiny`; CTC otherwise (including unreadable configs, which the CTC loader
    /// then reports with its own message).
    pub fn of(spec: &str) -> ModelKind {
        let path = Path::new(spec);
        let config = if path.is_dir() {
            path.join("config.json")
        } else if path.is_file() {
            path.to_path_buf()
        } else if is_preset(spec) {
            return ModelKind::Whisper;
        } else {
            return ModelKind::Ctc;
        };
        let model_type = std::fs::read_to_string(&config)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|json| json.get("model_type")?.as_str().map(str::to_string));
        match model_type.as_deref() {
            Some("whisper") => ModelKind::Whisper,
            _ => ModelKind::Ctc,
        }
    }
}

/// A model of either kind, as `--model` resolves it.
pub enum AnyModel {
    /// A CTC model.
    Ctc(Box<CtcModel>),
    /// A Whisper model with its tokenizer, features and generation settings.
    Whisper(Box<WhisperBundle>),
}

impl AnyModel {
    /// Loads the model folder `dir` of either kind on `device` (a CTC folder as
    /// [`CtcModel::from_pretrained`] does).
    pub fn from_pretrained(dir: &Path, device: tch::Device) -> Result<AnyModel, TrainError> {
        match ModelKind::of(&dir.to_string_lossy()) {
            ModelKind::Ctc => Ok(AnyModel::Ctc(Box::new(CtcModel::from_pretrained(
                dir, device,
            )?))),
            ModelKind::Whisper => Ok(AnyModel::Whisper(Box::new(WhisperBundle::from_pretrained(
                dir, device,
            )?))),
        }
    }

    /// The task the model trains on: `ctc` or `seq2seq`.
    pub fn task(&self) -> &'static str {
        match self {
            AnyModel::Ctc(_) => "ctc",
            AnyModel::Whisper(_) => "seq2seq",
        }
    }
}

/// A Whisper folder loaded for generation.
pub struct WhisperBundle {
    /// The model (its generation settings inside).
    pub model: WhisperModel,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: WhisperTokenizer,
    /// The log-mel front end (`preprocessor_config.json` or the defaults).
    pub features: WhisperFeatureExtractor,
    /// Where the model came from (for messages and results).
    pub origin: PathBuf,
    /// The tokenizer file of a preset (saved beside its weights).
    pub tokenizer_file: Option<PathBuf>,
}

impl WhisperBundle {
    /// Loads a Whisper folder (see the module documentation for the files it reads).
    pub fn from_pretrained(dir: &Path, device: tch::Device) -> Result<WhisperBundle, TrainError> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(TrainError::Model(ModelError::MissingFile {
                path: tokenizer_path,
                what: "a Whisper model folder needs tokenizer.json to turn token ids into text"
                    .into(),
                hint: "copy tokenizer.json from the checkpoint this model was trained from \
                       (e.g. the Hub folder of openai/whisper-small)"
                    .into(),
            }));
        }
        let tokenizer = WhisperTokenizer::from_file(&tokenizer_path)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let model = WhisperModel::from_pretrained(dir, device)?;
        let features = feature_extractor(dir, model.config().num_mel_bins)?;
        check_vocab(&model, &tokenizer, dir)?;
        Ok(WhisperBundle {
            model,
            tokenizer,
            features,
            origin: dir.to_path_buf(),
            tokenizer_file: None,
        })
    }

    /// The `whisper-tiny` or `whisper-micro` preset from random weights (seed libtorch
    /// first), with the tokenizer at `tokenizer_json` (see the module documentation).
    pub fn preset(
        name: &str,
        tokenizer_json: &Path,
        device: tch::Device,
    ) -> Result<WhisperBundle, TrainError> {
        if !is_preset(name) {
            return Err(TrainError::Config(format!(
                "unknown Whisper preset {name:?}: the presets are {WHISPER_TINY} and {WHISPER_MICRO}"
            )));
        }
        let tokenizer = WhisperTokenizer::from_file(tokenizer_json)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let special = tokenizer.special_tokens();
        let eos = i64::from(special.end_of_text);
        let config = WhisperConfig {
            vocab_size: tokenizer.vocab_size() as i64,
            decoder_start_token_id: i64::from(special.start_of_transcript),
            pad_token_id: Some(eos),
            bos_token_id: Some(eos),
            eos_token_id: Some(eos.into()),
            begin_suppress_tokens: Some(vec![tokenizer.token_id("Ġ").map_or(220, i64::from), eos]),
            ..WhisperConfig::default()
        };
        let config = if name == WHISPER_MICRO {
            micro_shape(config)
        } else {
            config
        };
        let mut model = WhisperModel::from_config(config, device)?;
        let mut generation = GenerationConfig::from_model_config(model.config());
        generation.lang_to_id = language_tokens(tokenizer_json, &tokenizer)?;
        generation.task_to_id = BTreeMap::from([
            ("transcribe".to_string(), i64::from(special.transcribe)),
            ("translate".to_string(), i64::from(special.translate)),
        ]);
        generation.no_timestamps_token_id = Some(i64::from(special.no_timestamps));
        model.set_generation_config(generation);
        let mut feature_config = FeatureConfig::with_mel_bins(model.config().num_mel_bins);
        feature_config.chunk_length =
            2 * model.config().max_source_positions * feature_config.hop_length
                / i64::from(feature_config.sampling_rate);
        let features = WhisperFeatureExtractor::new(feature_config)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(WhisperBundle {
            model,
            tokenizer,
            features,
            origin: PathBuf::from(name),
            tokenizer_file: Some(tokenizer_json.to_path_buf()),
        })
    }

    /// Writes a complete Hugging Face Whisper folder: the model's files (config,
    /// generation config, weights, and the processor files of the folder it came from)
    /// and, for a preset, its tokenizer.json and a preprocessor_config.json.
    pub fn save_pretrained(&self, dir: &Path) -> Result<(), TrainError> {
        self.model.save_pretrained(dir)?;
        if let Some(file) = &self.tokenizer_file {
            let to = dir.join("tokenizer.json");
            std::fs::copy(file, &to).map_err(|source| TrainError::Io { path: to, source })?;
        }
        let path = dir.join("preprocessor_config.json");
        if !path.is_file() {
            let mut json = serde_json::to_value(self.features.config())
                .map_err(|e| TrainError::Config(format!("preprocessor config: {e}")))?;
            json["feature_extractor_type"] = "WhisperFeatureExtractor".into();
            json["n_samples"] = self.features.config().n_samples().into();
            json["nb_max_frames"] = self.features.config().n_frames().into();
            json["return_attention_mask"] = false.into();
            let text = serde_json::to_string_pretty(&json).unwrap_or_default();
            std::fs::write(&path, text).map_err(|source| TrainError::Io { path, source })?;
        }
        Ok(())
    }

    /// The forced decoder prompt for `language` / `task` (from generation_config.json
    /// when not given); a multilingual model with no language is an error naming
    /// `--language`.
    pub fn prompt(
        &self,
        language: Option<&str>,
        task: Option<Task>,
    ) -> Result<Vec<i64>, TrainError> {
        let task = task.map(|t| match t {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        });
        self.model
            .generation_config()
            .prompt_ids(language, task)
            .map_err(|e| {
                TrainError::Config(format!(
                    "{} (--language / --task): {}",
                    self.origin.display(),
                    crate::commands::error_chain(&e)
                ))
            })
    }

    /// Greedy transcripts of 16 kHz clips (each cut or padded to 30 s), one forward
    /// pass for all of them.
    pub fn generate_texts(
        &self,
        clips: &[&[f32]],
        prompt: &[i64],
    ) -> Result<Vec<String>, TrainError> {
        let features = self
            .features
            .extract(clips)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        self.generate_from_features(&features.input_features, prompt)
    }

    /// Greedy transcripts of log-mel features `[B, mels, frames]`.
    pub fn generate_from_features(
        &self,
        features: &tch::Tensor,
        prompt: &[i64],
    ) -> Result<Vec<String>, TrainError> {
        let input = features.to_device(self.model.device());
        let rows = self
            .model
            .generate_greedy(&input, prompt, self.model.generation_config())?;
        rows.iter()
            .map(|ids| {
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                self.tokenizer
                    .decode(&ids, true)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| TrainError::Config(e.to_string()))
            })
            .collect()
    }
}

/// The `whisper-micro` shape of a `whisper-tiny` config.
fn micro_shape(config: WhisperConfig) -> WhisperConfig {
    WhisperConfig {
        d_model: 64,
        encoder_layers: 2,
        decoder_layers: 2,
        encoder_attention_heads: 4,
        decoder_attention_heads: 4,
        encoder_ffn_dim: 256,
        decoder_ffn_dim: 256,
        max_source_positions: 250,
        ..config
    }
}

/// `dir/preprocessor_config.json` when present, else Whisper's defaults with `mel_bins`.
fn feature_extractor(dir: &Path, mel_bins: i64) -> Result<WhisperFeatureExtractor, TrainError> {
    let path = dir.join("preprocessor_config.json");
    let config = if path.is_file() {
        FeatureConfig::from_json_file(&path).map_err(|e| TrainError::Config(e.to_string()))?
    } else {
        FeatureConfig::with_mel_bins(mel_bins)
    };
    if config.feature_size != mel_bins {
        return Err(TrainError::Config(format!(
            "{}: feature_size {} differs from the model's num_mel_bins {mel_bins}",
            path.display(),
            config.feature_size
        )));
    }
    WhisperFeatureExtractor::new(config).map_err(|e| TrainError::Config(e.to_string()))
}

/// The tokenizer's ids all fit the model's embedding.
fn check_vocab(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    dir: &Path,
) -> Result<(), TrainError> {
    let (model_size, tokens) = (model.config().vocab_size, tokenizer.vocab_size() as i64);
    if tokens > model_size {
        return Err(TrainError::Config(format!(
            "{}: tokenizer.json has {tokens} tokens but the model only {model_size}: the tokenizer \
             belongs to another Whisper version",
            dir.display()
        )));
    }
    Ok(())
}

/// The `<|xx|>` language tokens of a Whisper `tokenizer.json` (2-3 lower-case letters:
/// `<|en|>`, `<|haw|>`), by name -> id.
fn language_tokens(
    path: &Path,
    tokenizer: &WhisperTokenizer,
) -> Result<BTreeMap<String, i64>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    let mut languages = BTreeMap::new();
    for token in json["added_tokens"].as_array().into_iter().flatten() {
        let Some(content) = token["content"].as_str() else {
            continue;
        };
        let Some(code) = content
            .strip_prefix("<|")
            .and_then(|c| c.strip_suffix("|>"))
        else {
            continue;
        };
        if (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_lowercase()) {
            if let Some(id) = tokenizer.token_id(content) {
                languages.insert(content.to_string(), i64::from(id));
            }
        }
    }
    Ok(languages)
}
