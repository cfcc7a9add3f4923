//! The model configuration: the keys of a Hugging Face `config.json` for
//! `Wav2Vec2ForCTC` and `HubertForCTC`.
//!
//! Field names are the `config.json` keys and every default equals the default of
//! transformers' `Wav2Vec2Config` (`configuration_wav2vec2.py`) or `HubertConfig`
//! (`configuration_hubert.py`) at transformers 5.23, so a config.json that omits a key
//! means here what it means there. Keys this crate does not use (quantizer, x-vector,
//! `id2label`, `transformers_version`, ...) are kept in [`Config::extra`] and written back
//! unchanged by [`Config::to_json_string`].
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The most parameters a config may describe: 4e9, 16 GB of float32 weights (and
/// three times that again for gradients and AdamW's moments in training), about twice
/// the largest published wav2vec2 checkpoint (XLS-R 2B, 2.2e9). Above it
/// [`Config::validate`] refuses the config rather than letting libtorch fail to
/// allocate.
pub const MAX_PARAMETERS: i64 = 4_000_000_000;

/// The largest receptive field, and total stride, of the feature encoder in samples:
/// one hour at 16 kHz. The usual encoder needs 400 samples per frame and strides 320.
pub const MAX_RECEPTIVE_FIELD: i64 = 16_000 * 3600;

/// Which transformers architecture a config describes (`model_type` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ModelType {
    /// `Wav2Vec2ForCTC`; parameters under the `wav2vec2.` prefix.
    #[default]
    #[serde(rename = "wav2vec2")]
    Wav2Vec2,
    /// `HubertForCTC`; parameters under the `hubert.` prefix.
    #[serde(rename = "hubert")]
    Hubert,
}

impl ModelType {
    /// The parameter-name prefix of the base model (`base_model_prefix` in transformers).
    pub fn prefix(self) -> &'static str {
        match self {
            ModelType::Wav2Vec2 => "wav2vec2",
            ModelType::Hubert => "hubert",
        }
    }

    /// The transformers class that loads this model (`architectures` in config.json).
    pub fn ctc_class(self) -> &'static str {
        match self {
            ModelType::Wav2Vec2 => "Wav2Vec2ForCTC",
            ModelType::Hubert => "HubertForCTC",
        }
    }
}

/// Normalization in the convolutional feature encoder (`feat_extract_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeatExtractNorm {
    /// Group norm (one group per channel) after the first conv only (wav2vec2-base).
    /// Such models are trained on unpadded or zero-padded input without an attention
    /// mask: their feature extractor has `return_attention_mask = False`.
    #[default]
    Group,
    /// Layer norm after every conv (wav2vec2-large-lv60, XLS-R, HuBERT-large); these
    /// models use the attention mask of padded batches.
    Layer,
}

/// Activation functions of transformers' `ACT2FN` that these checkpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU.
    #[default]
    Gelu,
    /// Tanh approximation of GELU (`NewGELUActivation`).
    GeluNew,
    /// Tanh approximation of GELU (`PytorchGELUTanh`).
    GeluPytorchTanh,
    /// ReLU.
    Relu,
    /// SELU.
    Selu,
    /// SiLU.
    Silu,
    /// SiLU under its other name.
    Swish,
    /// Hyperbolic tangent.
    Tanh,
}

/// How the CTC losses of a batch are reduced (`ctc_loss_reduction`), as
/// `torch.nn.functional.ctc_loss` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CtcLossReduction {
    /// Sum of the per-utterance losses (the transformers default).
    #[default]
    Sum,
    /// Each utterance's loss divided by its label length, then averaged over the batch.
    Mean,
}

/// A `Wav2Vec2Config` / `HubertConfig` as read from and written to `config.json`.
///
/// Defaults are transformers' (the wav2vec2-base shape). HuBERT-only keys
/// (`feat_proj_layer_norm`, `conv_pos_batch_norm`) are ignored for wav2vec2, as
/// transformers ignores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `wav2vec2` or `hubert`.
    pub model_type: ModelType,
    /// Size of the CTC output layer (`lm_head`): the vocabulary, blank included. Default 32.
    pub vocab_size: i64,
    /// Transformer width. Default 768.
    pub hidden_size: i64,
    /// Number of transformer layers. Default 12.
    pub num_hidden_layers: i64,
    /// Attention heads per layer. Default 12.
    pub num_attention_heads: i64,
    /// Width of the feed-forward block. Default 3072.
    pub intermediate_size: i64,
    /// Feed-forward activation. Default `gelu`.
    pub hidden_act: Activation,
    /// Dropout on residual branches and after the positional embedding. Default 0.1.
    pub hidden_dropout: f64,
    /// Dropout after the feed-forward activation. Default 0.1.
    pub activation_dropout: f64,
    /// Dropout on attention probabilities. Default 0.1.
    pub attention_dropout: f64,
    /// Dropout after the feature projection. Default 0.0.
    pub feat_proj_dropout: f64,
    /// Dropout before `lm_head`. Default 0.1.
    pub final_dropout: f64,
    /// Probability of skipping each transformer layer in training (LayerDrop). Default 0.1.
    pub layerdrop: f64,
    /// Standard deviation of the normal init of linear layers. Default 0.02.
    pub initializer_range: f64,
    /// Epsilon of the transformer's layer norms and of the feature projection's. Default 1e-5.
    pub layer_norm_eps: f64,
    /// `group` (default) or `layer`.
    pub feat_extract_norm: FeatExtractNorm,
    /// Activation in the feature encoder and the positional conv. Default `gelu`.
    pub feat_extract_activation: Activation,
    /// Output channels of each feature-encoder conv. Default `[512; 7]`.
    pub conv_dim: Vec<i64>,
    /// Stride of each feature-encoder conv. Default `[5, 2, 2, 2, 2, 2, 2]`.
    pub conv_stride: Vec<i64>,
    /// Kernel of each feature-encoder conv. Default `[10, 3, 3, 3, 3, 2, 2]`.
    pub conv_kernel: Vec<i64>,
    /// Whether the feature-encoder convs have a bias. Default false.
    pub conv_bias: bool,
    /// Kernel size of the convolutional positional embedding. Default 128.
    pub num_conv_pos_embeddings: i64,
    /// Groups of the convolutional positional embedding. Default 16.
    pub num_conv_pos_embedding_groups: i64,
    /// HuBERT only: batch norm before the positional conv instead of weight norm. Default false.
    pub conv_pos_batch_norm: bool,
    /// HuBERT only: layer norm before the feature projection (wav2vec2 always has it).
    /// Default true.
    pub feat_proj_layer_norm: bool,
    /// Pre-LN transformer ("stable layer norm", large models) instead of post-LN. Default false.
    pub do_stable_layer_norm: bool,
    /// Master switch of SpecAugment masking in training. Default true.
    pub apply_spec_augment: bool,
    /// Fraction of frames to mask along time (upper bound). Default 0.05.
    pub mask_time_prob: f64,
    /// Span length of time masks, in frames. Default 10.
    pub mask_time_length: i64,
    /// Minimum number of time-mask spans per utterance. Default 2.
    pub mask_time_min_masks: i64,
    /// Fraction of hidden channels to mask (upper bound). Default 0.0.
    pub mask_feature_prob: f64,
    /// Span length of feature masks, in channels. Default 10.
    pub mask_feature_length: i64,
    /// Minimum number of feature-mask spans. Default 0.
    pub mask_feature_min_masks: i64,
    /// `sum` (default) or `mean`.
    pub ctc_loss_reduction: CtcLossReduction,
    /// Zero infinite CTC losses (labels that cannot fit the frames) and their gradients. Default false.
    pub ctc_zero_infinity: bool,
    /// Id of the pad token, which is the CTC blank. Default 0.
    pub pad_token_id: Option<i64>,
    /// Wav2vec2 only: convolutional adapter on top of the encoder (speech
    /// encoder-decoder models). Not supported: loading such a config is an error.
    pub add_adapter: bool,
    /// Wav2vec2 only: width of the per-layer attention adapters (MMS checkpoints);
    /// `None` (default) for none.
    pub adapter_attn_dim: Option<i64>,
    /// The transformers classes the checkpoint was saved from.
    pub architectures: Option<Vec<String>>,
    /// Every other key of config.json, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model_type: ModelType::Wav2Vec2,
            vocab_size: 32,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout: 0.1,
            activation_dropout: 0.1,
            attention_dropout: 0.1,
            feat_proj_dropout: 0.0,
            final_dropout: 0.1,
            layerdrop: 0.1,
            initializer_range: 0.02,
            layer_norm_eps: 1e-5,
            feat_extract_norm: FeatExtractNorm::Group,
            feat_extract_activation: Activation::Gelu,
            conv_dim: vec![512; 7],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_bias: false,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            conv_pos_batch_norm: false,
            feat_proj_layer_norm: true,
            do_stable_layer_norm: false,
            apply_spec_augment: true,
            mask_time_prob: 0.05,
            mask_time_length: 10,
            mask_time_min_masks: 2,
            mask_feature_prob: 0.0,
            mask_feature_length: 10,
            mask_feature_min_masks: 0,
            ctc_loss_reduction: CtcLossReduction::Sum,
            ctc_zero_infinity: false,
            pad_token_id: Some(0),
            add_adapter: false,
            adapter_attn_dim: None,
            architectures: None,
            extra: BTreeMap::new(),
        }
    }
}

/// The built-in model shapes, started from random weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// About 0.35 M parameters: 7 convs of 64 channels (the standard strides, so 320
    /// samples per frame), 3 pre-LN transformer layers of width 96. For tests and the
    /// CPU demo.
    Tiny,
    /// About 3.8 M parameters: for training from scratch on a few hours of speech on a
    /// CPU. Issue 7's reference shape (hidden 256, 4 pre-LN layers of 4 heads, FFN
    /// 1024, layer-norm feature encoder) with a narrower conv front end (64, 64, 64,
    /// 128, 128, 256, 256 channels, the standard strides: 50 frames per second) and no
    /// dropout, LayerDrop or SpecAugment, which on 2 h of synthetic speech learned
    /// faster per step and ran more steps per second (README, "Proof of learning").
    /// CTC loss averaged over target lengths (`mean`), as fine-tuning recipes set it.
    Small,
    /// The wav2vec2-base shape (95 M parameters): transformers' defaults.
    Base,
}

impl Preset {
    /// Every preset, for listing in help texts.
    pub const ALL: [Preset; 3] = [Preset::Tiny, Preset::Small, Preset::Base];

    /// The preset's name (`tiny`, `small`, `base`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::Base => "base",
        }
    }

    /// Looks a preset up by name.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The preset's configuration with a CTC head of `vocab_size` outputs.
    pub fn config(self, vocab_size: i64) -> Config {
        let base = Config {
            vocab_size,
            architectures: Some(vec![ModelType::Wav2Vec2.ctc_class().to_string()]),
            ..Config::default()
        };
        match self {
            Preset::Base => base,
            // Layer-norm feature encoder and pre-LN transformer: padded batches give the
            // same outputs as unpadded ones, and training from scratch is stable. Short
            // mask spans because fixture utterances are 1-3 s (50-150 frames).
            Preset::Tiny => Config {
                hidden_size: 96,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                intermediate_size: 192,
                conv_dim: vec![64; 7],
                num_conv_pos_embeddings: 16,
                num_conv_pos_embedding_groups: 4,
                feat_extract_norm: FeatExtractNorm::Layer,
                do_stable_layer_norm: true,
                hidden_dropout: 0.05,
                activation_dropout: 0.05,
                attention_dropout: 0.05,
                final_dropout: 0.05,
                layerdrop: 0.0,
                mask_time_length: 5,
                mask_time_min_masks: 1,
                ..base
            },
            Preset::Small => Config {
                hidden_size: 256,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                intermediate_size: 1024,
                conv_dim: vec![64, 64, 64, 128, 128, 256, 256],
                conv_bias: true,
                num_conv_pos_embeddings: 64,
                num_conv_pos_embedding_groups: 16,
                feat_extract_norm: FeatExtractNorm::Layer,
                do_stable_layer_norm: true,
                hidden_dropout: 0.0,
                activation_dropout: 0.0,
                attention_dropout: 0.0,
                feat_proj_dropout: 0.0,
                final_dropout: 0.0,
                layerdrop: 0.0,
                apply_spec_augment: false,
                mask_time_prob: 0.0,
                ctc_loss_reduction: CtcLossReduction::Mean,
                ..base
            },
        }
    }
}

impl Config {
    /// Parses a config.json text; `origin` names the file in errors.
    pub fn from_json_str(json: &str, origin: &Path) -> Result<Config, ModelError> {
        let parse_error = |source| ModelError::ConfigParse {
            path: origin.to_path_buf(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(parse_error)?;
        let config: Config = match serde_json::from_value(value.clone()) {
            Ok(config) => config,
            Err(error) => {
                // serde does not say which key of a flattened struct failed: find it by
                // trying the keys one at a time.
                let culprit = value.as_object().and_then(|map| {
                    map.iter().find_map(|(key, v)| {
                        let single = serde_json::Value::Object(
                            [(key.clone(), v.clone())].into_iter().collect(),
                        );
                        serde_json::from_value::<Config>(single)
                            .err()
                            .map(|e| (key.clone(), e))
                    })
                });
                return Err(match culprit {
                    Some((key, e)) => ModelError::ConfigInvalid {
                        path: origin.to_path_buf(),
                        reason: format!("key \"{key}\": {e}"),
                    },
                    None => parse_error(error),
                });
            }
        };
        config
            .validate()
            .map_err(|reason| ModelError::ConfigInvalid {
                path: origin.to_path_buf(),
                reason,
            })?;
        Ok(config)
    }

    /// Reads and validates a config.json file.
    pub fn from_json_file(path: &Path) -> Result<Config, ModelError> {
        let json = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_json_str(&json, path)
    }

    /// The config as pretty JSON with the keys transformers expects (`model_type`,
    /// `architectures`) and every unknown key kept.
    pub fn to_json_string(&self) -> String {
        let mut config = self.clone();
        config.architectures = Some(vec![self.model_type.ctc_class().to_string()]);
        let mut value = serde_json::to_value(&config).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            // Keys of the other architecture would be stored as unknown attributes.
            let foreign: &[&str] = match self.model_type {
                ModelType::Wav2Vec2 => &["feat_proj_layer_norm", "conv_pos_batch_norm"],
                ModelType::Hubert => &["add_adapter", "adapter_attn_dim"],
            };
            for key in foreign {
                map.remove(*key);
            }
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// Checks the relations transformers relies on; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.conv_dim.len();
        if n == 0 {
            return Err("conv_dim is empty: the feature encoder needs at least one conv".into());
        }
        if self.conv_stride.len() != n || self.conv_kernel.len() != n {
            return Err(format!(
                "conv_dim, conv_stride and conv_kernel must have the same length, got {}, {} and {}",
                n,
                self.conv_stride.len(),
                self.conv_kernel.len()
            ));
        }
        for (name, values) in [
            ("conv_dim", &self.conv_dim),
            ("conv_stride", &self.conv_stride),
            ("conv_kernel", &self.conv_kernel),
        ] {
            if let Some(v) = values.iter().find(|v| **v < 1) {
                return Err(format!("{name} holds {v}; every entry must be at least 1"));
            }
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_conv_pos_embeddings", self.num_conv_pos_embeddings),
            (
                "num_conv_pos_embedding_groups",
                self.num_conv_pos_embedding_groups,
            ),
            ("mask_time_length", self.mask_time_length),
            ("mask_feature_length", self.mask_feature_length),
        ] {
            if value < 1 {
                return Err(format!("{name} is {value}; it must be at least 1"));
            }
        }
        if self.num_hidden_layers < 0
            || self.mask_time_min_masks < 0
            || self.mask_feature_min_masks < 0
        {
            return Err("num_hidden_layers, mask_time_min_masks and mask_feature_min_masks must not be negative".into());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_size % self.num_conv_pos_embedding_groups != 0 {
            return Err(format!(
                "hidden_size {} is not divisible by num_conv_pos_embedding_groups {}",
                self.hidden_size, self.num_conv_pos_embedding_groups
            ));
        }
        for (name, p) in [
            ("hidden_dropout", self.hidden_dropout),
            ("activation_dropout", self.activation_dropout),
            ("attention_dropout", self.attention_dropout),
            ("feat_proj_dropout", self.feat_proj_dropout),
            ("final_dropout", self.final_dropout),
            ("layerdrop", self.layerdrop),
            ("mask_time_prob", self.mask_time_prob),
            ("mask_feature_prob", self.mask_feature_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} is {p}; it must be between 0 and 1"));
            }
        }
        if self.layer_norm_eps <= 0.0 || !self.layer_norm_eps.is_finite() {
            return Err(format!(
                "layer_norm_eps is {}; it must be positive",
                self.layer_norm_eps
            ));
        }
        if let Some(pad) = self.pad_token_id {
            if pad < 0 || pad >= self.vocab_size {
                return Err(format!(
                    "pad_token_id (the CTC blank) is {pad}, outside the vocabulary of {} tokens",
                    self.vocab_size
                ));
            }
        }
        if self.add_adapter && self.model_type == ModelType::Wav2Vec2 {
            return Err(
                "add_adapter = true (a convolutional adapter for speech encoder-decoder \
                        models) is not supported by asr-model"
                    .into(),
            );
        }
        if let Some(dim) = self.adapter_attn_dim {
            if dim < 1 {
                return Err(format!("adapter_attn_dim is {dim}; it must be at least 1"));
            }
        }
        if !(self.initializer_range >= 0.0 && self.initializer_range.is_finite()) {
            return Err(format!(
                "initializer_range is {}; it must be a finite number, at least 0",
                self.initializer_range
            ));
        }
        self.validate_sizes()
    }

    /// Refuses shapes that no machine could hold or run: more than
    /// [`MAX_PARAMETERS`] parameters, or a feature encoder whose receptive field or
    /// stride exceeds [`MAX_RECEPTIVE_FIELD`] samples. Sizes are multiplied in f64, so
    /// absurd values cannot overflow.
    fn validate_sizes(&self) -> Result<(), String> {
        let groups = self.parameter_groups();
        let total: f64 = groups.iter().map(|(_, n)| n).sum();
        if total > MAX_PARAMETERS as f64 {
            let (culprit, largest) = groups
                .iter()
                .copied()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or(("", 0.0));
            return Err(format!(
                "this config describes a model of {total:.3e} parameters ({:.3e} bytes of float32 \
                 weights), most of them in the {culprit} ({largest:.3e}); asr-model refuses more \
                 than {MAX_PARAMETERS:.1e} (the largest published wav2vec2 checkpoint, XLS-R 2B, has \
                 2.2e9); check those sizes",
                total * 4.0,
                MAX_PARAMETERS = MAX_PARAMETERS as f64
            ));
        }
        let mut field = 1.0f64;
        for (kernel, stride) in self.conv_kernel.iter().zip(&self.conv_stride).rev() {
            field = (field - 1.0) * *stride as f64 + *kernel as f64;
        }
        let ratio: f64 = self.conv_stride.iter().map(|s| *s as f64).product();
        for (what, value) in [
            ("receptive field (the samples one frame needs)", field),
            ("total stride (the samples per frame)", ratio),
        ] {
            if value > MAX_RECEPTIVE_FIELD as f64 {
                return Err(format!(
                    "conv_kernel {:?} and conv_stride {:?} give the feature encoder a {what} of \
                     {value:.3e} samples, more than an hour of 16 kHz audio ({MAX_RECEPTIVE_FIELD}); \
                     check conv_kernel and conv_stride",
                    self.conv_kernel, self.conv_stride
                ));
            }
        }
        Ok(())
    }

    /// Parameters of the model this config describes, by part: an upper estimate (every
    /// conv counted with a bias and a norm, `masked_spec_embed` included), in f64 so that
    /// absurd sizes cannot overflow.
    fn parameter_groups(&self) -> [(&'static str, f64); 5] {
        let f = |v: i64| v as f64;
        let h = f(self.hidden_size);
        let mut conv = 0.0;
        let mut in_dim = 1.0;
        for (dim, kernel) in self.conv_dim.iter().zip(&self.conv_kernel) {
            let out = f(*dim);
            conv += out * in_dim * f(*kernel) + 3.0 * out; // weight, bias, norm
            in_dim = out;
        }
        // Feature projection (layer norm + linear) and masked_spec_embed.
        conv += 2.0 * in_dim + in_dim * h + 2.0 * h;
        let groups = f(self.num_conv_pos_embedding_groups);
        let positional = h * (h / groups) * f(self.num_conv_pos_embeddings) + 5.0 * h;
        let ffn = f(self.intermediate_size);
        let adapter = self.adapter_attn_dim.map_or(0.0, |a| {
            let a = f(a);
            2.0 * h + 2.0 * h * a + a + h
        });
        let layer = 4.0 * (h * h + h) + 4.0 * h + 2.0 * h * ffn + ffn + h;
        let layers = f(self.num_hidden_layers) * layer + 2.0 * h;
        let head = f(self.vocab_size) * (h + 1.0);
        [
            ("feature encoder (conv_dim, conv_kernel, hidden_size)", conv),
            (
                "positional conv (hidden_size, num_conv_pos_embeddings, num_conv_pos_embedding_groups)",
                positional,
            ),
            (
                "transformer layers (num_hidden_layers, hidden_size, intermediate_size)",
                layers,
            ),
            ("CTC head (vocab_size, hidden_size)", head),
            ("adapters (adapter_attn_dim)", adapter * f(self.num_hidden_layers)),
        ]
    }

    /// The CTC blank id (`pad_token_id`).
    pub fn blank_id(&self) -> Result<i64, ModelError> {
        self.pad_token_id.ok_or(ModelError::NoBlank)
    }

    /// Number of feature-encoder frames for an utterance of `num_samples` samples:
    /// `floor((len - kernel) / stride) + 1` per conv (transformers'
    /// `_get_feat_extract_output_lengths`); 0 when the audio is shorter than the
    /// encoder's receptive field (400 samples with the default convs).
    pub fn num_frames(&self, num_samples: i64) -> i64 {
        let mut length = num_samples;
        for (kernel, stride) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if length < *kernel {
                return 0;
            }
            length = (length - kernel) / stride + 1;
        }
        length
    }

    /// Fewest samples that give one frame (the encoder's receptive field).
    pub fn min_num_samples(&self) -> i64 {
        let mut length = 1;
        for (kernel, stride) in self.conv_kernel.iter().zip(&self.conv_stride).rev() {
            length = (length - 1) * stride + kernel;
        }
        length
    }

    /// Samples per frame: the product of the conv strides (320 by default).
    pub fn inputs_to_logits_ratio(&self) -> i64 {
        self.conv_stride.iter().product()
    }

    /// Whether transformers' feature extractor gives padded batches an attention mask
    /// (`return_attention_mask` is true exactly for `feat_extract_norm == "layer"`):
    /// group-norm models then normalize over the whole padded sequence. asr-model's
    /// [`crate::CtcModel::forward_padded`] masks every architecture in inference (and in
    /// training by default) and takes group-norm statistics per clip, so that a clip's
    /// output does not depend on its batch; see [`crate::BatchPadding`].
    pub fn uses_attention_mask(&self) -> bool {
        self.feat_extract_norm == FeatExtractNorm::Layer
    }

    /// Whether the model holds `masked_spec_embed` (transformers creates it only when
    /// a mask probability is positive).
    pub fn has_masked_spec_embed(&self) -> bool {
        self.mask_time_prob > 0.0 || self.mask_feature_prob > 0.0
    }
}

/// The fields that shape the network (parameter names and shapes, norms,
/// activations), as `(name, value)` pairs: these cannot change once a model is built.
pub(crate) fn architecture(config: &Config) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("model_type", json!(config.model_type)),
        ("vocab_size", json!(config.vocab_size)),
        ("hidden_size", json!(config.hidden_size)),
        ("num_hidden_layers", json!(config.num_hidden_layers)),
        ("num_attention_heads", json!(config.num_attention_heads)),
        ("intermediate_size", json!(config.intermediate_size)),
        ("hidden_act", json!(config.hidden_act)),
        ("layer_norm_eps", json!(config.layer_norm_eps)),
        ("feat_extract_norm", json!(config.feat_extract_norm)),
        (
            "feat_extract_activation",
            json!(config.feat_extract_activation),
        ),
        ("conv_dim", json!(config.conv_dim)),
        ("conv_stride", json!(config.conv_stride)),
        ("conv_kernel", json!(config.conv_kernel)),
        ("conv_bias", json!(config.conv_bias)),
        (
            "num_conv_pos_embeddings",
            json!(config.num_conv_pos_embeddings),
        ),
        (
            "num_conv_pos_embedding_groups",
            json!(config.num_conv_pos_embedding_groups),
        ),
        ("conv_pos_batch_norm", json!(config.conv_pos_batch_norm)),
        ("feat_proj_layer_norm", json!(config.feat_proj_layer_norm)),
        ("do_stable_layer_norm", json!(config.do_stable_layer_norm)),
        ("pad_token_id", json!(config.pad_token_id)),
        ("add_adapter", json!(config.add_adapter)),
        ("adapter_attn_dim", json!(config.adapter_attn_dim)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_transformers_defaults() {
        let config = Config::from_json_str("{}", Path::new("config.json")).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.inputs_to_logits_ratio(), 320);
        assert_eq!(config.min_num_samples(), 400);
        assert_eq!(config.num_frames(16_000), 49);
        assert_eq!(config.num_frames(399), 0);
        assert_eq!(config.num_frames(400), 1);
    }

    #[test]
    fn unknown_keys_round_trip() {
        let json =
            r#"{"model_type": "hubert", "id2label": {"0": "a"}, "feat_proj_layer_norm": false}"#;
        let config = Config::from_json_str(json, Path::new("c.json")).unwrap();
        assert_eq!(config.model_type, ModelType::Hubert);
        assert!(!config.feat_proj_layer_norm);
        let back: serde_json::Value = serde_json::from_str(&config.to_json_string()).unwrap();
        assert_eq!(back["id2label"]["0"], "a");
        assert_eq!(back["architectures"][0], "HubertForCTC");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err = Config::from_json_str(r#"{"feat_extract_norm": "batch"}"#, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.json") && err.contains("batch"), "{err}");
        let err = Config::from_json_str(r#"{"hidden_size": 100}"#, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_attention_heads"), "{err}");
        let err = Config::from_json_str(r#"{"model_type": "wavlm"}"#, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wavlm"), "{err}");
    }

    /// The error of loading `json` as `config.json`; it must name the file and every
    /// word of `words`.
    fn refused(json: &str, words: &[&str]) -> String {
        let err = match Config::from_json_str(json, Path::new("model/config.json")) {
            Ok(_) => panic!("{json} was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("model/config.json"), "{json}: {err}");
        for word in words {
            assert!(err.contains(word), "{json}: {err} does not say {word}");
        }
        err
    }

    /// Sizes that would make libtorch allocate terabytes (and panic) are refused when
    /// config.json is read, with the part of the model at fault and the limit.
    #[test]
    fn absurd_sizes_are_refused_before_any_allocation() {
        let err = refused(
            r#"{"hidden_size": 1000000, "num_attention_heads": 16}"#,
            &["parameters", "hidden_size", "4.0e9"],
        );
        assert!(err.contains("transformer layers"), "{err}");
        refused(
            r#"{"num_hidden_layers": 100000000}"#,
            &["num_hidden_layers", "transformer layers"],
        );
        refused(
            r#"{"intermediate_size": 1000000000}"#,
            &["intermediate_size"],
        );
        refused(r#"{"vocab_size": 100000000}"#, &["CTC head", "vocab_size"]);
        refused(
            r#"{"conv_dim": [512, 4000000], "conv_kernel": [10, 3], "conv_stride": [5, 2]}"#,
            &["feature encoder", "conv_dim"],
        );
        refused(
            r#"{"num_conv_pos_embeddings": 100000000}"#,
            &["positional conv", "num_conv_pos_embeddings"],
        );
        refused(
            r#"{"adapter_attn_dim": 9000000000}"#,
            &["adapters", "adapter_attn_dim"],
        );
        // Strides whose product overflows i64, and a receptive field beyond an hour.
        refused(
            r#"{"conv_dim": [8, 8, 8], "conv_kernel": [2, 2, 2], "conv_stride": [4000000000, 4000000000, 4000000000]}"#,
            &["conv_stride", "receptive field", "an hour"],
        );
        refused(
            r#"{"conv_dim": [8, 8, 8], "conv_kernel": [1, 1, 1], "conv_stride": [4000000000, 4000000000, 4000000000]}"#,
            &["conv_stride", "total stride"],
        );
        refused(
            r#"{"conv_dim": [8], "conv_kernel": [100000000], "conv_stride": [1]}"#,
            &["conv_kernel", "receptive field"],
        );
        // wav2vec2-large / XLS-R 1B sizes still load.
        let large = r#"{"hidden_size": 1280, "num_hidden_layers": 48, "num_attention_heads": 16,
            "intermediate_size": 5120, "feat_extract_norm": "layer", "conv_bias": true}"#;
        Config::from_json_str(large, Path::new("config.json")).unwrap();
    }

    /// Zero or negative dimensions, heads that do not divide the width, conv lists of
    /// different lengths, a non-finite init range: refused, naming config.json and the
    /// key.
    #[test]
    fn inconsistent_shapes_are_refused_with_the_key() {
        refused(r#"{"hidden_size": 0}"#, &["hidden_size", "at least 1"]);
        refused(r#"{"hidden_size": -768}"#, &["hidden_size", "at least 1"]);
        refused(
            r#"{"num_attention_heads": 0}"#,
            &["num_attention_heads", "at least 1"],
        );
        refused(r#"{"intermediate_size": -1}"#, &["intermediate_size"]);
        refused(r#"{"num_hidden_layers": -2}"#, &["num_hidden_layers"]);
        refused(r#"{"vocab_size": 0}"#, &["vocab_size"]);
        refused(
            r#"{"conv_dim": [512, -512, 512, 512, 512, 512, 512]}"#,
            &["conv_dim", "-512"],
        );
        refused(
            r#"{"conv_stride": [5, 2, 2, 2, 2, 2, 0]}"#,
            &["conv_stride", "0"],
        );
        refused(r#"{"conv_dim": []}"#, &["conv_dim", "empty"]);
        refused(
            r#"{"num_attention_heads": 7}"#,
            &["hidden_size 768", "num_attention_heads 7"],
        );
        refused(
            r#"{"num_conv_pos_embedding_groups": 5}"#,
            &["num_conv_pos_embedding_groups 5"],
        );
        refused(
            r#"{"conv_kernel": [10, 3, 3]}"#,
            &["conv_dim, conv_stride and conv_kernel", "7, 7 and 3"],
        );
        refused(r#"{"conv_stride": [5, 2]}"#, &["conv_stride", "7, 2 and 7"]);
        refused(r#"{"initializer_range": -0.02}"#, &["initializer_range"]);
        refused(r#"{"hidden_size": 1e6}"#, &["hidden_size"]);
        refused(r#"{"adapter_attn_dim": 0}"#, &["adapter_attn_dim"]);
    }

    /// The size estimate is an upper bound close to the real count: transformers'
    /// wav2vec2-base (vocab 32) has 94,396,320 parameters.
    #[test]
    fn parameter_estimate_bounds_the_real_count() {
        let estimate: f64 = Preset::Base
            .config(32)
            .parameter_groups()
            .iter()
            .map(|(_, n)| n)
            .sum();
        assert!(
            (94_396_320.0..94_396_320.0 * 1.01).contains(&estimate),
            "{estimate}"
        );
    }
}
