//! [`WhisperModel`]: transformers' `WhisperForConditionalGeneration` with its parameter
//! names, loaded from and saved to Hugging Face folders.
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::RngCore;
use tch::{Device, Kind, Reduction, Tensor};

use super::config::WhisperConfig;
use super::generate::GenerationConfig;
use super::modeling::{Decoder, Encoder, LayerCache, SelfMask};
use crate::error::ModelError;
use crate::masking::compute_mask_indices;
use crate::params::{ParamStore, Role, Scope};
use crate::weights::{self, LoadReport};
use crate::IGNORE_LABEL;

/// Files of a Whisper folder besides the config and weights that
/// [`WhisperModel::save_pretrained`] copies from the folder the model was loaded from:
/// the tokenizer's and the feature extractor's.
pub const PROCESSOR_FILES: [&str; 9] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
    "added_tokens.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "processor_config.json",
];

/// The tied output projection: in checkpoints that store it, it is the same tensor as
/// `model.decoder.embed_tokens.weight`.
const PROJ_OUT: &str = "proj_out.weight";

/// `WhisperForConditionalGeneration`: log-mel features and decoder token ids to logits.
pub struct WhisperModel {
    config: WhisperConfig,
    generation: GenerationConfig,
    device: Device,
    store: ParamStore,
    encoder: Encoder,
    decoder: Decoder,
    load_report: Option<LoadReport>,
    source_dir: Option<PathBuf>,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("d_model", &self.config.d_model)
            .field("vocab_size", &self.config.vocab_size)
            .field("parameters", &self.store.num_parameters())
            .finish()
    }
}

impl WhisperModel {
    /// A model with transformers' random init (seed libtorch with `tch::manual_seed`).
    pub fn from_config(config: WhisperConfig, device: Device) -> Result<WhisperModel, ModelError> {
        WhisperModel::build(config, device, true)
    }

    fn build(
        config: WhisperConfig,
        device: Device,
        random: bool,
    ) -> Result<WhisperModel, ModelError> {
        config
            .validate()
            .map_err(|reason| ModelError::ConfigInvalid {
                path: PathBuf::from("<config>"),
                reason,
            })?;
        let store = RefCell::new(ParamStore::default());
        let root = Scope::root(&store, device, random);
        let base = root.sub("model");
        let encoder = Encoder::new(&base.sub("encoder"), &config);
        let decoder = Decoder::new(&base.sub("decoder"), &config);
        Ok(WhisperModel {
            generation: GenerationConfig::from_model_config(&config),
            config,
            device,
            store: store.into_inner(),
            encoder,
            decoder,
            load_report: None,
            source_dir: None,
        })
    }

    /// Loads a Hugging Face folder: config.json, the weights (`model.safetensors`, a
    /// sharded `model.safetensors.index.json`, or `pytorch_model.bin`), and
    /// generation_config.json when present.
    pub fn from_pretrained(dir: &Path, device: Device) -> Result<WhisperModel, ModelError> {
        let config_path = weights::config_json(
            dir,
            "Whisper",
            "config.json and model.safetensors (or pytorch_model.bin)",
        )?;
        let config = WhisperConfig::from_json_file(&config_path)?;
        let weights_path = weights::find_weights(dir)?;
        let mut model = WhisperModel::build(config, device, false)?;
        let tensors = weights::read_tensor_file(&weights_path)?;
        model.load_report = Some(load_into(&model.store, tensors, &weights_path)?);
        let generation_path = dir.join("generation_config.json");
        if generation_path.is_file() {
            model.generation =
                GenerationConfig::from_json_file_for(&generation_path, &model.config)?;
        }
        model.source_dir = Some(dir.to_path_buf());
        Ok(model)
    }

    /// The config.
    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// The generation settings (generation_config.json, or derived from config.json).
    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation
    }

    /// Replaces the generation settings (saved by [`WhisperModel::save_pretrained`]).
    pub fn set_generation_config(&mut self, generation: GenerationConfig) {
        self.generation = generation;
    }

    /// The device the tensors live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// What loading did (ignored tensors), for models from a folder.
    pub fn load_report(&self) -> Option<&LoadReport> {
        self.load_report.as_ref()
    }

    /// Every parameter and buffer, by HF name, in state_dict order.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The parameters to optimize (the encoder's fixed positions are a buffer).
    pub fn trainable_parameters(&self) -> Vec<(&str, &Tensor)> {
        self.store
            .entries()
            .iter()
            .filter(|e| e.role == Role::Parameter && e.tensor.requires_grad())
            .map(|e| (e.name.as_str(), &e.tensor))
            .collect()
    }

    /// Encoder hidden states `[B, max_source_positions, d]` of log-mel features
    /// `[B, num_mel_bins, 2 * max_source_positions]`.
    pub fn encode(&self, input_features: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let size = input_features.size();
        let want = [self.config.num_mel_bins, self.config.input_frames()];
        if size.len() != 3 || size[1..] != want {
            return Err(ModelError::Input(format!(
                "input_features has shape {size:?}; this Whisper model takes [batch, {}, {}] \
                 (pad or cut the audio to 30 s before computing log-mel features)",
                want[0], want[1]
            )));
        }
        let features = input_features.to_device(self.device).to_kind(Kind::Float);
        Ok(self.encoder.forward(&features, &self.config, train))
    }

    /// Logits `[B, T, vocab]` of `decoder_input_ids` `[B, T]` given the encoder output;
    /// `decoder_attention_mask` `[B, T]` (1 = token, 0 = padding) masks padded keys.
    pub fn decode(
        &self,
        encoder_hidden: &Tensor,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let ids = self.check_ids(decoder_input_ids, "decoder_input_ids")?;
        let steps = ids.size()[1];
        let mut caches = self.decoder.new_caches(encoder_hidden);
        let mask = decoder_attention_mask.map(|m| {
            let causal = Tensor::ones([steps, steps], (Kind::Bool, self.device)).tril(0);
            let keys = m.to_device(self.device).ne(0).view([-1, 1, 1, steps]);
            causal.view([1, 1, steps, steps]).logical_and(&keys)
        });
        let mask = match &mask {
            Some(mask) => SelfMask::Explicit(mask),
            None => SelfMask::Causal,
        };
        Ok(self
            .decoder
            .forward(&ids, 0, &mask, &mut caches, &self.config, train))
    }

    /// `forward(input_features, decoder_input_ids, decoder_attention_mask)`: logits.
    pub fn forward_t(
        &self,
        input_features: &Tensor,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let encoder_hidden = self.encode(input_features, train)?;
        self.decode(
            &encoder_hidden,
            decoder_input_ids,
            decoder_attention_mask,
            train,
        )
    }

    /// transformers' `shift_tokens_right(labels, pad_token_id, decoder_start_token_id)`:
    /// the decoder inputs of labels, with `-100` read as the pad token.
    pub fn shift_tokens_right(&self, labels: &Tensor) -> Result<Tensor, ModelError> {
        let pad = self.config.pad_token_id.ok_or_else(|| {
            ModelError::Input(
                "config.json has no pad_token_id, needed to shift labels into decoder inputs"
                    .into(),
            )
        })?;
        let size = labels.size();
        let start = Tensor::full(
            [size[0], 1],
            self.config.decoder_start_token_id,
            (Kind::Int64, labels.device()),
        );
        let shifted = Tensor::cat(&[start, labels.narrow(1, 0, size[1] - 1)], 1);
        Ok(shifted.masked_fill(&shifted.eq(IGNORE_LABEL), pad))
    }

    /// transformers' loss: mean cross-entropy over the labels that are not `-100`.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        logits
            .to_kind(Kind::Float)
            .view([-1, self.config.vocab_size])
            .cross_entropy_loss::<Tensor>(
                &labels.to_device(logits.device()).view([-1]),
                None,
                Reduction::Mean,
                IGNORE_LABEL,
                0.0,
            )
    }

    /// transformers' `_mask_input_features` (SpecAugment), for training: when
    /// `apply_spec_augment`, spans of input frames (`mask_time_*`) and of mel bands
    /// (`mask_feature_*`) are set to 0, drawn from `rng` with the span rules of
    /// [`crate::masking::compute_mask_indices`]. Returns the features unchanged otherwise.
    pub fn spec_augment(
        &self,
        input_features: &Tensor,
        rng: &mut dyn RngCore,
    ) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let mut features = input_features.to_device(self.device);
        if !c.apply_spec_augment {
            return Ok(features);
        }
        let size = features.size();
        let (batch, mels, frames) = (size[0] as usize, size[1], size[2]);
        let masks = |axis: i64, prob: f64, length: i64, min: i64, rng: &mut dyn RngCore| {
            compute_mask_indices(batch, axis, prob, length, None, min, rng)
                .map_err(|e| ModelError::Input(format!("SpecAugment: {e}")))
                .map(|rows| {
                    let flat: Vec<bool> = rows.concat();
                    Tensor::from_slice(&flat)
                        .view([batch as i64, axis])
                        .to_device(self.device)
                })
        };
        if c.mask_time_prob > 0.0 {
            let mask = masks(
                frames,
                c.mask_time_prob,
                c.mask_time_length,
                c.mask_time_min_masks,
                rng,
            )?;
            features = features.masked_fill(&mask.unsqueeze(1), 0.0);
        }
        if c.mask_feature_prob > 0.0 {
            let mask = masks(
                mels,
                c.mask_feature_prob,
                c.mask_feature_length,
                c.mask_feature_min_masks,
                rng,
            )?;
            features = features.masked_fill(&mask.unsqueeze(2), 0.0);
        }
        Ok(features)
    }

    /// Per-row sums of the token cross-entropies and per-row counts of labels that are
    /// not `-100` (both `[B]`): [`WhisperModel::loss`] is `sums.sum() / counts.sum()`, so
    /// a training loop can leave rows out (an exploding utterance) and keep
    /// transformers' mean over the tokens of the rows kept.
    pub fn row_losses(&self, logits: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
        let labels = labels.to_device(logits.device());
        let size = labels.size();
        let valid = labels.ne(IGNORE_LABEL);
        let tokens = logits
            .to_kind(Kind::Float)
            .view([-1, self.config.vocab_size])
            .cross_entropy_loss::<Tensor>(
                &labels.view([-1]),
                None,
                Reduction::None,
                IGNORE_LABEL,
                0.0,
            )
            .view([size[0], size[1]]);
        let sums = tokens.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let counts = valid.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        (sums, counts)
    }

    /// `forward(input_features, labels=labels)`: decoder inputs are the labels shifted
    /// right; returns the logits and the loss.
    pub fn forward_labels(
        &self,
        input_features: &Tensor,
        labels: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let labels = labels.to_device(self.device).to_kind(Kind::Int64);
        if labels.dim() != 2 || labels.size()[1] > self.config.max_target_positions {
            return Err(ModelError::Input(format!(
                "labels of shape {:?}: Whisper takes [batch, at most max_target_positions = {}] labels",
                labels.size(),
                self.config.max_target_positions
            )));
        }
        let decoder_input_ids = self.shift_tokens_right(&labels)?;
        let logits = self.forward_t(input_features, &decoder_input_ids, None, train)?;
        let loss = self.loss(&logits, &labels);
        Ok((logits, loss))
    }

    /// Token ids checked against the vocabulary and the decoder positions.
    pub(crate) fn check_ids(&self, ids: &Tensor, what: &str) -> Result<Tensor, ModelError> {
        let size = ids.size();
        if size.len() != 2 || size[1] < 1 || size[1] > self.config.max_target_positions {
            return Err(ModelError::Input(format!(
                "{what} has shape {size:?}; Whisper takes [batch, 1..={}] token ids (max_target_positions)",
                self.config.max_target_positions
            )));
        }
        let ids = ids.to_device(self.device).to_kind(Kind::Int64);
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= self.config.vocab_size {
            return Err(ModelError::Input(format!(
                "{what} holds token ids in {lo}..={hi}, outside the vocabulary 0..{}",
                self.config.vocab_size
            )));
        }
        Ok(ids)
    }

    pub(crate) fn decoder_caches(&self, encoder_hidden: &Tensor) -> Vec<LayerCache> {
        self.decoder.new_caches(encoder_hidden)
    }

    pub(crate) fn decoder_step(
        &self,
        ids: &Tensor,
        past: i64,
        caches: &mut [LayerCache],
    ) -> Tensor {
        let mask = if past == 0 {
            SelfMask::Causal
        } else {
            SelfMask::None
        };
        self.decoder
            .forward(ids, past, &mask, caches, &self.config, false)
    }

    /// Writes a folder transformers loads as `WhisperForConditionalGeneration`:
    /// config.json, generation_config.json, model.safetensors (the tied `proj_out` is
    /// not stored, as transformers does), and the tokenizer and preprocessor files of the
    /// folder the model came from, when it had them.
    pub fn save_pretrained(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
        };
        let tensors: Vec<(String, Tensor)> = self
            .store
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.tensor.shallow_clone()))
            .collect();
        weights::write_safetensors(&dir.join("model.safetensors"), &tensors)?;
        write("config.json", self.config.to_json_string())?;
        write("generation_config.json", self.generation.to_json_string())?;
        if let Some(source) = &self.source_dir {
            copy_processor_files(source, dir)?;
        }
        Ok(())
    }
}

/// Copies [`PROCESSOR_FILES`] present in `from` to `to` (nothing when they are the same
/// folder).
fn copy_processor_files(from: &Path, to: &Path) -> Result<(), ModelError> {
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    for name in PROCESSOR_FILES {
        let src = from.join(name);
        if src.is_file() {
            std::fs::copy(&src, to.join(name)).map_err(|source| ModelError::Io {
                path: src.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Copies checkpoint tensors into the store by name. A bare `WhisperModel` checkpoint
/// (keys `encoder.*` / `decoder.*`) gets the `model.` prefix, as transformers does;
/// `proj_out.weight` is the tied embedding and is ignored. Any missing, unexpected or
/// misshapen tensor is an error listing them all.
fn load_into(
    store: &ParamStore,
    tensors: Vec<(String, Tensor)>,
    source: &Path,
) -> Result<LoadReport, ModelError> {
    let add_prefix = !tensors.iter().any(|(n, _)| n.starts_with("model."));
    let mut by_name: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let name = if add_prefix && name != PROJ_OUT {
            format!("model.{name}")
        } else {
            name
        };
        by_name.insert(name, tensor);
    }
    let mut problems = Vec::new();
    for entry in store.entries() {
        let Some(src) = by_name.remove(&entry.name) else {
            problems.push(format!(
                "missing tensor {} {:?}",
                entry.name,
                entry.tensor.size()
            ));
            continue;
        };
        if src.size() != entry.tensor.size() {
            problems.push(format!(
                "shape mismatch for {}: checkpoint {:?}, config {:?}",
                entry.name,
                src.size(),
                entry.tensor.size()
            ));
            continue;
        }
        tch::no_grad(|| entry.tensor.shallow_clone().f_copy_(&src)).map_err(|e| {
            ModelError::WeightsFormat {
                path: source.to_path_buf(),
                reason: format!("{}: {e}", entry.name),
            }
        })?;
    }
    let mut ignored: Vec<String> = by_name.into_keys().collect();
    ignored.sort();
    for name in ignored.iter().filter(|n| n.as_str() != PROJ_OUT) {
        problems.push(format!(
            "unexpected tensor {name} (the config describes no such parameter)"
        ));
    }
    if !problems.is_empty() {
        return Err(ModelError::WeightsMismatch {
            path: source.to_path_buf(),
            problems,
        });
    }
    Ok(LoadReport {
        weights_file: source.to_path_buf(),
        newly_initialized: Vec::new(),
        ignored,
    })
}
