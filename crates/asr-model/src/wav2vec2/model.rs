//! `CtcModel`: `Wav2Vec2ForCTC` / `HubertForCTC` (the base model plus dropout and the
//! `lm_head` linear layer), its forward pass, CTC loss, and folder I/O.
use std::cell::RefCell;
use std::path::{Path, PathBuf};

use asr_text::Vocab;
use rand::RngCore;
use tch::{Device, Kind, Reduction, Tensor};

use super::config::{Config, CtcLossReduction, ModelType, Preset};
use super::modeling::{Encoder, FeatureEncoder, FeatureProjection};
use crate::error::ModelError;
use crate::layers::Linear;
use crate::masking::compute_mask_indices;
use crate::params::{Init, ParamStore, Role, Scope};
use crate::weights::{self, LoadReport};

/// Label value ignored by the CTC loss (padding of label batches), as in transformers.
pub const IGNORE_LABEL: i64 = -100;

/// Output of a forward pass.
#[derive(Debug)]
pub struct CtcOutput {
    /// Unnormalized scores `[batch, frames, vocab_size]` (bf16 under bf16 autocast).
    pub logits: Tensor,
    /// Valid frames of each utterance (the rest of `frames` is padding).
    pub output_lengths: Vec<i64>,
}

/// How [`CtcModel::forward_padded`] runs a padded batch in training, a run-time
/// setting of the model ([`CtcModel::set_training_padding`]). Inference
/// (`train == false`) always runs [`BatchPadding::PerClip`], so that a clip's logits,
/// transcript and WER do not depend on the other clips of its batch.
///
/// Only group-norm feature encoders (`feat_extract_norm = "group"`: wav2vec2-base,
/// HuBERT-base) and HuBERT's `conv_pos_batch_norm` in inference see a difference:
/// layer-norm models get the attention mask either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchPadding {
    /// Every clip computed as if it ran alone (the default): the first conv's group
    /// norm takes its statistics over the clip's own samples, padded frames are zeroed
    /// and masked out of attention, for every architecture. A clip alone is exactly
    /// what transformers computes for it (its ASR pipeline runs one file at a time),
    /// and fairseq pretrained these models on batches cropped to equal length, so the
    /// group norm never saw padding there either.
    ///
    /// Measured (`examples/batch_padding.rs`, 2 shared CPU cores): per-clip statistics
    /// cost within the noise of a batched forward or training step (base front end,
    /// 4 clips of 1.5-4 s: inference +9% and -3% in two runs, training step -5%); 300
    /// steps of a small group-norm model gave the same held-out loss under both
    /// settings (2.296 against 2.295, both still on the blank plateau). The default
    /// follows consistency with evaluation, not a measured gain.
    #[default]
    PerClip,
    /// What transformers' `Trainer` does with a batch from the feature extractor:
    /// group-norm models get zero-padded audio and no attention mask, so the group
    /// norm's statistics span the padded row and a clip's output depends on the
    /// padding its batch gives it.
    Transformers,
}

/// A model argument resolved: what `--model` may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A Hugging Face folder: config.json plus weights.
    Pretrained(PathBuf),
    /// A config.json file: that architecture from random weights.
    ConfigFile(PathBuf),
    /// A built-in preset from random weights.
    Preset(Preset),
}

impl ModelSpec {
    /// Resolves `spec`: an existing folder is a pretrained model, an existing `.json`
    /// file a config, `org/name[@revision]` a Hugging Face Hub model (its snapshot in
    /// the cache, downloaded if need be: [`crate::hub`]), anything else must be a
    /// preset name.
    pub fn parse(spec: &str) -> Result<ModelSpec, ModelError> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(ModelSpec::Pretrained(path.to_path_buf()));
        }
        if path.is_file() {
            return if path.extension().is_some_and(|e| e == "json") {
                Ok(ModelSpec::ConfigFile(path.to_path_buf()))
            } else {
                Err(ModelError::BadModelSpec {
                    spec: spec.to_string(),
                    known: preset_names(),
                })
            };
        }
        if let Some(id) = crate::hub::HubId::parse(spec) {
            return crate::hub::resolve(&id, &crate::hub::HubEnv::from_env())
                .map(ModelSpec::Pretrained);
        }
        match Preset::from_name(spec) {
            Some(preset) => Ok(ModelSpec::Preset(preset)),
            None if spec.contains('/') || spec.contains('.') => Err(ModelError::BadModelSpec {
                spec: spec.to_string(),
                known: preset_names(),
            }),
            None => Err(ModelError::UnknownPreset {
                name: spec.to_string(),
                known: preset_names(),
            }),
        }
    }
}

fn preset_names() -> String {
    Preset::ALL
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A wav2vec2 or HuBERT model with a CTC head, holding its tensors under their
/// Hugging Face names.
///
/// Randomness: dropout and LayerDrop draw from libtorch's generator (seed it with
/// `tch::manual_seed` before each step to reproduce a step); SpecAugment masks draw
/// only from the generator passed to the forward call.
pub struct CtcModel {
    config: Config,
    device: Device,
    store: ParamStore,
    feature_extractor: FeatureEncoder,
    feature_projection: FeatureProjection,
    masked_spec_embed: Option<Tensor>,
    encoder: Encoder,
    lm_head: Linear,
    feature_encoder_frozen: bool,
    training_padding: BatchPadding,
    load_report: Option<LoadReport>,
}

impl std::fmt::Debug for CtcModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtcModel")
            .field("model_type", &self.config.model_type)
            .field("device", &self.device)
            .field("parameters", &self.store.num_parameters())
            .finish()
    }
}

impl CtcModel {
    /// Builds the architecture `config` describes with random weights (transformers'
    /// init scheme, drawn from libtorch's generator: `tch::manual_seed` first for
    /// reproducible weights).
    pub fn from_config(config: Config, device: Device) -> Result<CtcModel, ModelError> {
        CtcModel::build(config, device, true)
    }

    /// Builds the modules; `random` false leaves parameters uninitialized for a
    /// checkpoint to fill.
    fn build(config: Config, device: Device, random: bool) -> Result<CtcModel, ModelError> {
        config
            .validate()
            .map_err(|reason| ModelError::ConfigInvalid {
                path: PathBuf::from("<config>"),
                reason,
            })?;
        let store = RefCell::new(ParamStore::default());
        let root = Scope::root(&store, device, random);
        let base = root.sub(config.model_type.prefix());
        // Registration order is transformers' state_dict order.
        let masked_spec_embed = config.has_masked_spec_embed().then(|| {
            base.param(
                "masked_spec_embed",
                &[config.hidden_size],
                Init::Uniform(0.0, 1.0),
            )
        });
        let feature_extractor = FeatureEncoder::new(&base.sub("feature_extractor"), &config);
        let feature_projection = FeatureProjection::new(&base.sub("feature_projection"), &config);
        let encoder = Encoder::new(&base.sub("encoder"), &config);
        let lm_head = Linear::new(
            &root.sub("lm_head"),
            config.hidden_size,
            config.vocab_size,
            config.initializer_range,
        );
        Ok(CtcModel {
            config,
            device,
            store: store.into_inner(),
            feature_extractor,
            feature_projection,
            masked_spec_embed,
            encoder,
            lm_head,
            feature_encoder_frozen: false,
            training_padding: BatchPadding::default(),
            load_report: None,
        })
    }

    /// A preset (`tiny`, `small`, `base`) from random weights, its head sized for `vocab` and its
    /// blank set to the vocabulary's pad token.
    pub fn from_preset(name: &str, vocab: &Vocab, device: Device) -> Result<CtcModel, ModelError> {
        let preset = Preset::from_name(name).ok_or_else(|| ModelError::UnknownPreset {
            name: name.to_string(),
            known: preset_names(),
        })?;
        let mut config = preset.config(vocab.len() as i64);
        config.pad_token_id = Some(i64::from(vocab.blank_id()));
        CtcModel::from_config(config, device)
    }

    /// Loads a Hugging Face model folder: `config.json` plus `model.safetensors`,
    /// `pytorch_model.bin`, or a sharded index of either. Every model tensor must be in
    /// the checkpoint with the configured shape, except the CTC head of a
    /// pretraining-only checkpoint and `masked_spec_embed`, which keep their random
    /// init (listed in [`CtcModel::load_report`]); unknown checkpoint tensors are an
    /// error, except the pretraining quantizer and projections.
    pub fn from_pretrained(dir: &Path, device: Device) -> Result<CtcModel, ModelError> {
        let config_path = weights::config_json(
            dir,
            "Hugging Face",
            "config.json and model.safetensors or pytorch_model.bin",
        )?;
        let config = Config::from_json_file(&config_path)?;
        let weights_path = weights::find_weights(dir)?;
        let mut model = CtcModel::build(config, device, false)?;
        let tensors = weights::read_tensor_file(&weights_path)?;
        let report = weights::load_into(
            &model.store,
            tensors,
            model.config.model_type.prefix(),
            &weights_path,
        )?;
        for name in &report.newly_initialized {
            model.store.reinitialize(name);
        }
        model.load_report = Some(report);
        Ok(model)
    }

    /// Builds the model a `--model` argument names (see [`ModelSpec::parse`]). Random
    /// models (preset or config file) need `vocab` to size their head; a config file's
    /// own `vocab_size` and `pad_token_id` are replaced by the vocabulary's.
    pub fn load(spec: &str, vocab: Option<&Vocab>, device: Device) -> Result<CtcModel, ModelError> {
        match ModelSpec::parse(spec)? {
            ModelSpec::Pretrained(dir) => CtcModel::from_pretrained(&dir, device),
            ModelSpec::ConfigFile(path) => {
                let mut config = Config::from_json_file(&path)?;
                if let Some(vocab) = vocab {
                    config.vocab_size = vocab.len() as i64;
                    config.pad_token_id = Some(i64::from(vocab.blank_id()));
                }
                CtcModel::from_config(config, device)
            }
            ModelSpec::Preset(preset) => match vocab {
                Some(vocab) => CtcModel::from_preset(preset.name(), vocab, device),
                None => CtcModel::from_config(preset.config(Config::default().vocab_size), device),
            },
        }
    }

    /// The configuration (config.json).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the tensors live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// What loading the checkpoint reported (None for random models).
    pub fn load_report(&self) -> Option<&LoadReport> {
        self.load_report.as_ref()
    }

    /// Frames for an utterance of `num_samples` samples (0 when too short).
    pub fn num_frames(&self, num_samples: i64) -> i64 {
        self.config.num_frames(num_samples)
    }

    /// Every tensor (parameters and buffers) under its HF name, in state_dict order.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The learned parameters that currently require gradients (the feature encoder's
    /// are excluded once frozen), with their HF names, in state_dict order. Gradients
    /// are `tensor.grad()` after `backward`; update values under `tch::no_grad`.
    pub fn trainable_parameters(&self) -> Vec<(&str, &Tensor)> {
        self.store
            .entries()
            .iter()
            .filter(|e| e.role == Role::Parameter && e.tensor.requires_grad())
            .map(|e| (e.name.as_str(), &e.tensor))
            .collect()
    }

    /// Stops gradients of the convolutional feature encoder (transformers'
    /// `freeze_feature_encoder`), the usual setting when fine-tuning.
    pub fn freeze_feature_encoder(&mut self) {
        let prefix = format!("{}.feature_extractor.", self.config.model_type.prefix());
        for entry in self.store.entries() {
            if entry.name.starts_with(&prefix) {
                let _ = entry.tensor.shallow_clone().set_requires_grad(false);
            }
        }
        self.feature_encoder_frozen = true;
    }

    /// Changes the run-time settings of the config (dropouts, `layerdrop`, SpecAugment
    /// `mask_*`, `apply_spec_augment`, `ctc_loss_reduction`, `ctc_zero_infinity`),
    /// as transformers' `from_pretrained(..., mask_time_prob=...)` overrides do. Fields
    /// that shape the network (sizes, norms, activations, vocabulary) cannot change on a
    /// built model and give an error naming the field. Turning masking on for a
    /// checkpoint saved without it creates `masked_spec_embed` (uniform init), as
    /// transformers does; turning it off removes that tensor.
    pub fn update_config(&mut self, change: impl FnOnce(&mut Config)) -> Result<(), ModelError> {
        let mut config = self.config.clone();
        change(&mut config);
        let invalid = |reason: String| ModelError::ConfigInvalid {
            path: PathBuf::from("<config update>"),
            reason,
        };
        config.validate().map_err(invalid)?;
        let before = super::config::architecture(&self.config);
        let after = super::config::architecture(&config);
        if let Some((name, _)) = before
            .iter()
            .zip(&after)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a)
        {
            return Err(invalid(format!(
                "{name} shapes the network and cannot change on a built model"
            )));
        }
        if config.has_masked_spec_embed() && self.masked_spec_embed.is_none() {
            let name = format!("{}.masked_spec_embed", config.model_type.prefix());
            let init = Init::Uniform(0.0, 1.0);
            let embed = init
                .make(&[config.hidden_size], self.device)
                .set_requires_grad(true);
            self.store.insert(0, name, embed.shallow_clone(), init);
            self.masked_spec_embed = Some(embed);
        }
        if !config.has_masked_spec_embed() && self.masked_spec_embed.is_some() {
            // Masking turned off: transformers builds such a model without the tensor
            // (and saves none), so drop it here too; checkpoints and exports then agree
            // with the config.
            let name = format!("{}.masked_spec_embed", config.model_type.prefix());
            self.store.remove(&name);
            self.masked_spec_embed = None;
        }
        self.config = config;
        Ok(())
    }

    /// Sets how [`CtcModel::forward_padded`] runs padded batches in training (see
    /// [`BatchPadding`]; default [`BatchPadding::PerClip`]). Inference is always per clip.
    pub fn set_training_padding(&mut self, padding: BatchPadding) {
        self.training_padding = padding;
    }

    /// How padded batches run in training ([`CtcModel::set_training_padding`]).
    pub fn training_padding(&self) -> BatchPadding {
        self.training_padding
    }

    /// Whether [`CtcModel::freeze_feature_encoder`] was called.
    pub fn is_feature_encoder_frozen(&self) -> bool {
        self.feature_encoder_frozen
    }

    /// Replaces the CTC head by a freshly initialized one sized for `vocab` (normal(0,
    /// `initializer_range`) weight, zero bias) and sets `pad_token_id` to its blank:
    /// for fine-tuning on a vocabulary other than the checkpoint's (`--reinit-head`).
    pub fn reinit_head(&mut self, vocab: &Vocab) {
        let vocab_size = vocab.len() as i64;
        let h = self.config.hidden_size;
        let std = self.config.initializer_range;
        let weight = Init::Normal(std)
            .make(&[vocab_size, h], self.device)
            .set_requires_grad(true);
        let bias = Init::Zeros
            .make(&[vocab_size], self.device)
            .set_requires_grad(true);
        self.store.replace("lm_head.weight", weight.shallow_clone());
        self.store.replace("lm_head.bias", bias.shallow_clone());
        self.lm_head = Linear {
            weight,
            bias: Some(bias),
        };
        self.config.vocab_size = vocab_size;
        self.config.pad_token_id = Some(i64::from(vocab.blank_id()));
    }

    /// Checks that `vocab` fits the head: as many tokens as `vocab_size` and its pad
    /// token at `pad_token_id`. (Token-by-token equality with the checkpoint's own
    /// vocab.json is `Vocab::diff`'s job.)
    pub fn check_vocab(&self, vocab: &Vocab) -> Result<(), ModelError> {
        let blank = i64::from(vocab.blank_id());
        if vocab.len() as i64 != self.config.vocab_size || Some(blank) != self.config.pad_token_id {
            return Err(ModelError::Vocab(format!(
                "the vocabulary has {} tokens with its pad (blank) token at id {blank}, but the model's head \
                 has vocab_size {} and pad_token_id {:?}\nhint: use the model's own vocab.json, or start a \
                 new head with --reinit-head",
                vocab.len(),
                self.config.vocab_size,
                self.config.pad_token_id
            )));
        }
        Ok(())
    }

    /// Forward pass exactly as transformers' `Wav2Vec2ForCTC.forward` /
    /// `HubertForCTC.forward`: `input_values` `[B, T]` (float, normalized audio),
    /// `attention_mask` `[B, T]` (1 on samples, 0 on padding; right padding) or None.
    ///
    /// With a mask, padded frames are zeroed and excluded from attention and
    /// `output_lengths` follow the mask; without one every sample counts. As in
    /// transformers, a group-norm feature encoder takes its statistics over the whole
    /// padded row even with a mask, so a padded clip's logits differ slightly from the
    /// clip alone: [`CtcModel::forward_padded`] runs each clip as if alone. `train`
    /// enables dropout and LayerDrop; SpecAugment masks are applied when `train` and a
    /// generator is given (and the config asks for them). As in transformers, wav2vec2
    /// draws time masks within each utterance's valid frames when a mask is given,
    /// HuBERT over the whole padded length.
    pub fn forward_t(
        &self,
        input_values: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
        masking: Option<&mut dyn RngCore>,
    ) -> Result<CtcOutput, ModelError> {
        let (batch, samples) = input_dims(input_values)?;
        let lengths = match attention_mask {
            Some(mask) => {
                if mask.size() != [batch, samples] {
                    return Err(ModelError::Input(format!(
                        "attention_mask has shape {:?}, input_values {:?}",
                        mask.size(),
                        [batch, samples]
                    )));
                }
                let sums = mask
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Int64)
                    .sum_dim_intlist(-1, false, Kind::Int64);
                Vec::<i64>::try_from(&sums).map_err(ModelError::Torch)?
            }
            None => vec![samples; batch as usize],
        };
        let spans_within_lengths =
            attention_mask.is_some() && self.config.model_type == ModelType::Wav2Vec2;
        self.forward_inner(
            input_values,
            &lengths,
            Padding {
                mask_model: attention_mask.is_some(),
                per_clip: false,
                spans_within_lengths,
            },
            train,
            masking,
        )
    }

    /// Forward pass over a right-padded batch with known lengths, the way training,
    /// evaluation and transcription should call it. `output_lengths`, and so the CTC
    /// loss and decoding, follow the true lengths; SpecAugment spans are drawn within
    /// each utterance's valid frames.
    ///
    /// In inference (`train == false`), and in training under the default
    /// [`BatchPadding::PerClip`], every clip gets the logits it gets alone (within
    /// float rounding, 1e-5 on the fixtures), whatever its batch: the padded frames are
    /// zeroed and masked out of attention for every architecture, and a group-norm
    /// feature encoder takes its statistics over each clip's own samples. This departs
    /// from a batched transformers call for group-norm models, whose feature extractor
    /// sends no attention mask ([`Config::uses_attention_mask`]) and whose group norm
    /// then spans the padding; it equals transformers on each clip alone.
    /// [`BatchPadding::Transformers`] keeps transformers' batched behaviour in
    /// training.
    pub fn forward_padded(
        &self,
        input_values: &Tensor,
        lengths: &[i64],
        train: bool,
        masking: Option<&mut dyn RngCore>,
    ) -> Result<CtcOutput, ModelError> {
        let (batch, _) = input_dims(input_values)?;
        if lengths.len() as i64 != batch {
            return Err(ModelError::Input(format!(
                "{} lengths for a batch of {batch}",
                lengths.len()
            )));
        }
        let per_clip = !train || self.training_padding == BatchPadding::PerClip;
        self.forward_inner(
            input_values,
            lengths,
            Padding {
                mask_model: per_clip || self.config.uses_attention_mask(),
                per_clip,
                spans_within_lengths: true,
            },
            train,
            masking,
        )
    }

    fn forward_inner(
        &self,
        input_values: &Tensor,
        lengths: &[i64],
        padding: Padding,
        train: bool,
        masking: Option<&mut dyn RngCore>,
    ) -> Result<CtcOutput, ModelError> {
        let Padding {
            mask_model,
            per_clip,
            spans_within_lengths,
        } = padding;
        let (batch, samples) = input_dims(input_values)?;
        let min_samples = self.config.min_num_samples();
        for (i, length) in lengths.iter().enumerate() {
            if *length > samples {
                return Err(ModelError::Input(format!(
                    "utterance {i} has length {length}, longer than the padded batch ({samples} samples)"
                )));
            }
            if *length < min_samples {
                return Err(ModelError::Input(format!(
                    "utterance {i} has {length} samples; the feature encoder needs at least {min_samples} \
                     for one frame"
                )));
            }
        }
        let frames = self.config.num_frames(samples);
        let frame_lengths: Vec<i64> = lengths.iter().map(|l| self.config.num_frames(*l)).collect();
        let padded = frame_lengths.iter().any(|l| *l < frames);
        let frame_mask = (mask_model && padded).then(|| {
            let lengths = Tensor::from_slice(&frame_lengths)
                .to_device(self.device)
                .unsqueeze(1);
            Tensor::arange(frames, (Kind::Int64, self.device))
                .unsqueeze(0)
                .lt_tensor(&lengths)
        });

        let input = input_values.to_device(self.device);
        let input = if input.kind() == Kind::Float {
            input
        } else {
            input.to_kind(Kind::Float)
        };
        // Wav2Vec2Model.forward
        let features = self
            .feature_extractor
            .forward(&input, per_clip.then_some(lengths));
        let mut hidden = self
            .feature_projection
            .forward(&features, &self.config, train);
        if let (true, Some(rng)) = (train, masking) {
            let span_lengths = spans_within_lengths.then_some(frame_lengths.as_slice());
            hidden = self.mask_hidden_states(hidden, span_lengths, rng)?;
        }
        let hidden =
            self.encoder
                .forward(&hidden, frame_mask.as_ref(), per_clip, &self.config, train);
        // Wav2Vec2ForCTC.forward
        let hidden = hidden.dropout(self.config.final_dropout, train);
        let logits = self.lm_head.forward(&hidden);
        debug_assert_eq!(logits.size()[..2], [batch, frames]);
        Ok(CtcOutput {
            logits,
            output_lengths: frame_lengths,
        })
    }

    /// `Wav2Vec2Model._mask_hidden_states`: time spans replaced by the learned
    /// `masked_spec_embed`, then feature (channel) spans zeroed for all frames.
    fn mask_hidden_states(
        &self,
        hidden: Tensor,
        span_lengths: Option<&[i64]>,
        rng: &mut dyn RngCore,
    ) -> Result<Tensor, ModelError> {
        let config = &self.config;
        if !config.apply_spec_augment {
            return Ok(hidden);
        }
        let size = hidden.size();
        let (batch, frames, channels) = (size[0], size[1], size[2]);
        let mut hidden = hidden;
        if config.mask_time_prob > 0.0 {
            let masks = compute_mask_indices(
                batch as usize,
                frames,
                config.mask_time_prob,
                config.mask_time_length,
                span_lengths,
                config.mask_time_min_masks,
                rng,
            )
            .map_err(|e| ModelError::Input(format!("time masking: {e}")))?;
            let mask = bool_tensor(&masks, self.device).unsqueeze(-1);
            if let Some(embed) = &self.masked_spec_embed {
                let embed = embed.to_kind(hidden.kind()).expand_as(&hidden);
                hidden = embed.where_self(&mask, &hidden);
            }
        }
        if config.mask_feature_prob > 0.0 {
            let masks = compute_mask_indices(
                batch as usize,
                channels,
                config.mask_feature_prob,
                config.mask_feature_length,
                None,
                config.mask_feature_min_masks,
                rng,
            )
            .map_err(|e| ModelError::Input(format!("feature masking: {e}")))?;
            let mask = bool_tensor(&masks, self.device).unsqueeze(1);
            hidden = hidden.masked_fill(&mask, 0.0);
        }
        Ok(hidden)
    }

    /// CTC loss of a forward output against `labels` `[B, L]` (integer ids, padded with
    /// -100), as transformers' `ForCTCLoss`: positions equal to -100 or to the blank are
    /// dropped, log-softmax in float32, blank = `pad_token_id`, reduction
    /// `ctc_loss_reduction` (`sum`: summed over the batch; `mean`: each loss divided by
    /// its label length, then averaged) and `ctc_zero_infinity`.
    pub fn ctc_loss(&self, output: &CtcOutput, labels: &Tensor) -> Result<Tensor, ModelError> {
        let (losses, target_lengths) = self.ctc_losses_and_lengths(output, labels)?;
        Ok(match self.config.ctc_loss_reduction {
            CtcLossReduction::Sum => losses.sum(Kind::Float),
            // What libtorch's Reduction::Mean does.
            CtcLossReduction::Mean => {
                let lengths = target_lengths.clamp_min(1).to_kind(Kind::Float);
                (losses / lengths).mean(Kind::Float)
            }
        })
    }

    /// Per-utterance CTC losses `[B]` (float32, no reduction, `ctc_zero_infinity`
    /// applied): the terms [`CtcModel::ctc_loss`] reduces, for finding the utterances
    /// behind a bad batch.
    pub fn ctc_losses(&self, output: &CtcOutput, labels: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.ctc_losses_and_lengths(output, labels)?.0)
    }

    fn ctc_losses_and_lengths(
        &self,
        output: &CtcOutput,
        labels: &Tensor,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let blank = self.config.blank_id()?;
        let size = labels.size();
        let batch = output.output_lengths.len() as i64;
        if size.len() != 2 || size[0] != batch {
            return Err(ModelError::Input(format!(
                "labels have shape {size:?}; expected [{batch}, max_label_length]"
            )));
        }
        if !matches!(
            labels.kind(),
            Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
        ) {
            return Err(ModelError::Input(format!(
                "labels must be integers, got {:?}",
                labels.kind()
            )));
        }
        let labels = labels.to_device(self.device).to_kind(Kind::Int64);
        let keep = labels.ne(IGNORE_LABEL).logical_and(&labels.ne(blank));
        if labels.numel() > 0 {
            let max = labels.max().int64_value(&[]);
            if max >= self.config.vocab_size {
                return Err(ModelError::Input(format!(
                    "label value {max} is outside the vocabulary of {} tokens",
                    self.config.vocab_size
                )));
            }
            let invalid = labels
                .lt(0)
                .logical_and(&labels.ne(IGNORE_LABEL))
                .any()
                .int64_value(&[]);
            if invalid != 0 {
                return Err(ModelError::Input(
                    "negative label value; only -100 marks padding".into(),
                ));
            }
        }
        let target_lengths = keep.sum_dim_intlist(-1, false, Kind::Int64);
        let targets = labels.masked_select(&keep);
        let log_probs = output.logits.log_softmax(-1, Kind::Float).transpose(0, 1);
        let input_lengths = Tensor::from_slice(&output.output_lengths);
        let losses = Tensor::f_ctc_loss_tensor(
            &log_probs,
            &targets,
            &input_lengths,
            &target_lengths,
            blank,
            Reduction::None,
            self.config.ctc_zero_infinity,
        )?;
        Ok((losses, target_lengths))
    }

    /// Greedy CTC transcripts of a forward output (argmax per frame within
    /// `output_lengths`, repeats collapsed, blanks dropped, `|` to spaces).
    pub fn greedy_decode(&self, output: &CtcOutput, vocab: &Vocab) -> Vec<String> {
        super::decode::greedy_decode(&output.logits, &output.output_lengths, vocab)
    }

    /// Writes a Hugging Face folder that transformers loads with
    /// `AutoModelForCTC.from_pretrained` / `Wav2Vec2Processor.from_pretrained`:
    /// config.json, model.safetensors, vocab.json, preprocessor_config.json,
    /// tokenizer_config.json and special_tokens_map.json. `vocab` must fit the head.
    pub fn save_pretrained(&self, dir: &Path, vocab: &Vocab) -> Result<(), ModelError> {
        self.check_vocab(vocab)?;
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
        };
        weights::write_safetensors(
            &dir.join("model.safetensors"),
            &weights::state_dict(&self.store, self.config.has_masked_spec_embed()),
        )?;
        write("config.json", self.config.to_json_string())?;
        vocab.write_json(&dir.join("vocab.json"))?;
        let files = super::hf_files::processor_files(&self.config, vocab);
        for (name, value) in files {
            write(
                name,
                serde_json::to_string_pretty(&value).unwrap_or_default(),
            )?;
        }
        Ok(())
    }
}

/// How a forward pass treats the padding of its batch.
#[derive(Debug, Clone, Copy)]
struct Padding {
    /// Zero the padded frames and mask them out of attention.
    mask_model: bool,
    /// Compute every clip as if alone: group-norm statistics per clip, padded frames
    /// zeroed again after the positional conv's batch norm.
    per_clip: bool,
    /// Draw SpecAugment time spans within each clip's valid frames.
    spans_within_lengths: bool,
}

fn input_dims(input_values: &Tensor) -> Result<(i64, i64), ModelError> {
    match input_values.size().as_slice() {
        [batch, samples] if *batch > 0 => Ok((*batch, *samples)),
        other => Err(ModelError::Input(format!(
            "input_values must be [batch, samples], got shape {other:?}"
        ))),
    }
}

fn bool_tensor(rows: &[Vec<bool>], device: Device) -> Tensor {
    let width = rows.first().map_or(0, Vec::len) as i64;
    let flat: Vec<bool> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat)
        .view([rows.len() as i64, width])
        .to_device(device)
}

/// Reads the `vocab.json` of a model folder.
pub fn read_vocab(dir: &Path) -> Result<Vocab, ModelError> {
    let path = dir.join("vocab.json");
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            path: dir.to_path_buf(),
            what: "no vocab.json in this folder".into(),
            hint: "copy the tokenizer's vocab.json next to config.json, or pass --vocab".into(),
        });
    }
    Ok(Vocab::from_json_file(&path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn small_config() -> Config {
        Config {
            vocab_size: 5,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            conv_dim: vec![8],
            conv_stride: vec![5],
            conv_kernel: vec![10],
            num_conv_pos_embeddings: 4,
            num_conv_pos_embedding_groups: 2,
            mask_time_prob: 0.25,
            mask_time_length: 1,
            mask_time_min_masks: 0,
            mask_feature_prob: 0.25,
            mask_feature_length: 2,
            ..Config::default()
        }
    }

    /// Masking changes the hidden states only at masked frames (set to
    /// `masked_spec_embed`) and masked channels (zeroed), in the expected numbers.
    #[test]
    fn spec_augment_touches_only_masked_frames_and_channels() {
        let _rng = crate::test_rng::seeded(0);
        let model = CtcModel::from_config(small_config(), Device::Cpu).unwrap();
        let embed = model.masked_spec_embed.as_ref().unwrap().detach();
        for seed in 0..20 {
            let hidden = Tensor::randn([2, 40, 16], (Kind::Float, Device::Cpu)) + 3.0;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let masked = tch::no_grad(|| {
                model.mask_hidden_states(hidden.shallow_clone(), Some(&[40, 30]), &mut rng)
            })
            .unwrap();
            for b in 0..2i64 {
                let (h, m) = (hidden.get(b), masked.get(b));
                // Channels zeroed on every frame.
                let zero_channels: Vec<i64> = (0..16)
                    .filter(|c| m.select(1, *c).abs().max().double_value(&[]) == 0.0)
                    .collect();
                // 0.25 * 16 / 2 = 2 spans of 2 channels (+ epsilon rounding): 2 or 3 spans, overlapping allowed.
                assert!((2..=6).contains(&zero_channels.len()), "{zero_channels:?}");
                let keep: Vec<i64> = (0..16).filter(|c| !zero_channels.contains(c)).collect();
                let keep = Tensor::from_slice(&keep);
                let (h, m, e) = (
                    h.index_select(1, &keep),
                    m.index_select(1, &keep),
                    embed.index_select(0, &keep),
                );
                let mut masked_frames = 0;
                for t in 0..40 {
                    let (ht, mt) = (h.get(t), m.get(t));
                    if mt.equal(&ht) {
                        continue;
                    }
                    assert!(
                        mt.equal(&e),
                        "frame {t} changed but is not masked_spec_embed"
                    );
                    assert!(b == 0 || t < 30, "masked a padding frame {t}");
                    masked_frames += 1;
                }
                // Span length 1, no overlap possible: floor(0.25 * len + epsilon) frames.
                let len = if b == 0 { 40 } else { 30 };
                let expected = (0.25 * len as f64) as i64;
                assert!(
                    masked_frames == expected || masked_frames == expected + 1,
                    "{masked_frames} for {len}"
                );
            }
        }
    }

    #[test]
    fn no_masking_without_a_generator_or_in_eval() {
        let _rng = crate::test_rng::seeded(0);
        let model = CtcModel::from_config(small_config(), Device::Cpu).unwrap();
        let input = Tensor::randn([1, 400], (Kind::Float, Device::Cpu));
        let mut config_model = model;
        config_model
            .update_config(|c| {
                c.hidden_dropout = 0.0;
                c.attention_dropout = 0.0;
                c.activation_dropout = 0.0;
                c.final_dropout = 0.0;
                c.layerdrop = 0.0;
            })
            .unwrap();
        let eval = tch::no_grad(|| config_model.forward_t(&input, None, false, None)).unwrap();
        let train_no_rng =
            tch::no_grad(|| config_model.forward_t(&input, None, true, None)).unwrap();
        assert!(eval.logits.equal(&train_no_rng.logits));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let eval_rng =
            tch::no_grad(|| config_model.forward_t(&input, None, false, Some(&mut rng))).unwrap();
        assert!(eval.logits.equal(&eval_rng.logits));
    }
}
