//! The modules of `Wav2Vec2ForCTC` / `HubertForCTC`, one Rust struct per transformers
//! class, in the order of `modeling_wav2vec2.py` and `modeling_hubert.py`
//! (transformers 5.23.0, `src/transformers/models/wav2vec2/modeling_wav2vec2.py`).
//! Each struct cites the class it mirrors; tensor names are the `state_dict` names.
//!
//! Parameter init follows what transformers 5.23 actually produces (checked by
//! sampling its models, see `tools/make-model-fixtures.py`): linear layers normal(0,
//! `initializer_range`) with zero bias; norms one/zero; feature-encoder convs
//! `kaiming_normal`; wav2vec2's feature projection and conv biases uniform(+-1/sqrt(fan_in));
//! the weight-normed positional conv keeps PyTorch's default conv init (the
//! `_init_weights` branch for it does not reach the parametrized weight) with
//! `g = |v|` and a zero bias; `masked_spec_embed` uniform(0, 1).
use tch::{Device, Kind, Tensor};

use super::config::{Activation, Config, FeatExtractNorm, ModelType};
use crate::layers::{merge_heads, split_heads, LayerNorm, Linear, TORCH_NORM_EPS};
use crate::params::{init, Init, Scope};

/// The norm of one feature-encoder conv layer.
enum ConvNorm {
    /// `Wav2Vec2NoLayerNormConvLayer`.
    None,
    /// `Wav2Vec2LayerNormConvLayer`: layer norm over channels, per frame.
    Layer(LayerNorm),
    /// `Wav2Vec2GroupNormConvLayer`: group norm with one group per channel, i.e. each
    /// channel normalized over the time axis of the utterance: of the whole padded row
    /// in transformers, or of the clip's own frames when [`ConvLayer::forward`] is given
    /// the valid lengths (see [`group_norm_per_clip`]).
    Group {
        weight: Tensor,
        bias: Tensor,
        channels: i64,
    },
}

/// `Wav2Vec2NoLayerNormConvLayer` / `Wav2Vec2LayerNormConvLayer` /
/// `Wav2Vec2GroupNormConvLayer` (and their `Hubert*` copies).
struct ConvLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    norm: ConvNorm,
    activation: Activation,
}

impl ConvLayer {
    fn new(scope: &Scope, config: &Config, layer_id: usize) -> ConvLayer {
        let in_dim = if layer_id > 0 {
            config.conv_dim[layer_id - 1]
        } else {
            1
        };
        let out_dim = config.conv_dim[layer_id];
        let kernel = config.conv_kernel[layer_id];
        let conv = scope.sub("conv");
        let weight = conv.param("weight", &[out_dim, in_dim, kernel], Init::KaimingNormal);
        let bias = config.conv_bias.then(|| {
            let init = match config.model_type {
                // Wav2Vec2PreTrainedModel._init_weights: uniform(+-sqrt(groups / fan_in)).
                ModelType::Wav2Vec2 => {
                    let k = (1.0 / (in_dim * kernel) as f64).sqrt();
                    Init::Uniform(-k, k)
                }
                // HubertPreTrainedModel._init_weights: zeros.
                ModelType::Hubert => Init::Zeros,
            };
            conv.param("bias", &[out_dim], init)
        });
        let norm = match (config.feat_extract_norm, layer_id) {
            (FeatExtractNorm::Group, 0) => {
                let norm = scope.sub("layer_norm");
                ConvNorm::Group {
                    weight: norm.param("weight", &[out_dim], Init::Ones),
                    bias: norm.param("bias", &[out_dim], Init::Zeros),
                    channels: out_dim,
                }
            }
            (FeatExtractNorm::Group, _) => ConvNorm::None,
            (FeatExtractNorm::Layer, _) => ConvNorm::Layer(LayerNorm::new(
                &scope.sub("layer_norm"),
                out_dim,
                TORCH_NORM_EPS,
            )),
        };
        ConvLayer {
            weight,
            bias,
            stride: config.conv_stride[layer_id],
            norm,
            activation: config.feat_extract_activation,
        }
    }

    /// `x`: time-major features `[B, T, C_in]`; returns `[B, T_out, C_out]`.
    /// `clip_frames`: the valid output frames of each row, for a group norm that takes
    /// its statistics per clip; `None` takes them over the whole padded row, as
    /// transformers does. Other norms are per frame and ignore it.
    ///
    /// transformers computes `conv1d` on `[B, C, T]` and, for the layer norm over
    /// channels, transposes to `[B, T, C]` and back around it: two full copies of the
    /// activations per layer in the forward pass and more in the backward. Here the
    /// conv runs as a `conv2d` on a `[B, C, 1, T]` view of the time-major tensor, whose
    /// strides are channels-last, so oneDNN reads and writes time-major memory
    /// directly, the layer norm runs over the contiguous last axis, and the activation
    /// sees contiguous memory. Same arithmetic, no transposes materialized.
    fn forward(&self, x: &Tensor, clip_frames: Option<&[i64]>) -> Tensor {
        let x = x.unsqueeze(1).permute([0, 3, 1, 2]);
        let weight = self.weight.unsqueeze(2);
        let y = x.conv2d(
            &weight,
            self.bias.as_ref(),
            [1, self.stride],
            [0, 0],
            [1, 1],
            1,
        );
        let y = match &self.norm {
            ConvNorm::None => time_major(&y),
            ConvNorm::Layer(norm) => norm.forward(&time_major(&y)),
            // Group norm (one group per channel) normalizes each channel over time; the
            // CPU kernel handles channels-last input as it is.
            ConvNorm::Group {
                weight,
                bias,
                channels,
            } => match clip_frames {
                Some(frames) => group_norm_per_clip(&y, frames, *channels, weight, bias),
                None => time_major(&y.group_norm(
                    *channels,
                    Some(weight),
                    Some(bias),
                    TORCH_NORM_EPS,
                    true,
                )),
            },
        };
        self.activation.apply(&y)
    }
}

/// Group norm (one group per channel) of the conv output `y` `[B, C, 1, T]` with the
/// statistics of each row taken over its first `frames[b]` frames only, so that a clip
/// in a padded batch is normalized as when it runs alone. The mean and (biased)
/// variance of each clip's valid frames are read from its contiguous time-major slice
/// (float32, as autocast runs group norm), then one fused multiply-add normalizes the
/// whole batch: no copy of the activations beyond the output that the batch kernel
/// writes too. The padded tail holds scaled padding, which no valid frame reads.
/// Returns time-major `[B, T, C]`.
fn group_norm_per_clip(
    y: &Tensor,
    frames: &[i64],
    channels: i64,
    weight: &Tensor,
    bias: &Tensor,
) -> Tensor {
    let total = y.size()[3];
    if frames.iter().all(|&f| f >= total) {
        // No padding: the batch kernel computes the same statistics.
        return time_major(&y.group_norm(channels, Some(weight), Some(bias), TORCH_NORM_EPS, true));
    }
    let y = time_major(y);
    // One row per clip (`unbind`: its backward writes the batch's gradient once, where
    // narrowing the batch per clip would write a zero-filled batch per clip).
    let (means, vars): (Vec<Tensor>, Vec<Tensor>) = y
        .unbind(0)
        .iter()
        .zip(frames)
        .map(|(row, &valid)| {
            let clip = row.narrow(0, 0, valid.clamp(1, total));
            let (var, mean) =
                clip.to_kind(Kind::Float)
                    .var_mean_correction([0i64].as_slice(), 0, true);
            (mean, var)
        })
        .unzip();
    // [B, 1, C]
    let (mean, var) = (Tensor::stack(&means, 0), Tensor::stack(&vars, 0));
    let scale = (var + TORCH_NORM_EPS).rsqrt() * weight.to_kind(Kind::Float);
    let shift = bias.to_kind(Kind::Float) - &mean * &scale;
    shift.addcmul(&y, &scale)
}

/// `[B, C, 1, T]` (conv2d output) to time-major `[B, T, C]`: a view, contiguous when
/// the conv produced channels-last memory.
fn time_major(y: &Tensor) -> Tensor {
    y.permute([0, 2, 3, 1]).squeeze_dim(1)
}

/// `Wav2Vec2FeatureEncoder` / `HubertFeatureEncoder`: raw audio `[B, T]` to features
/// `[B, F, conv_dim[-1]]` (time-major: transformers returns `[B, conv_dim[-1], F]` and
/// transposes it right after).
pub(crate) struct FeatureEncoder {
    conv_layers: Vec<ConvLayer>,
}

impl FeatureEncoder {
    pub(crate) fn new(scope: &Scope, config: &Config) -> FeatureEncoder {
        let layers = scope.sub("conv_layers");
        let conv_layers = (0..config.conv_dim.len())
            .map(|i| ConvLayer::new(&layers.sub(i), config, i))
            .collect();
        FeatureEncoder { conv_layers }
    }

    /// Raw audio `[B, T]` to time-major features `[B, F, conv_dim[-1]]`.
    /// `clip_samples`: the valid samples of each row, to take the group norm's
    /// statistics per clip (see [`ConvLayer::forward`]); `None` for transformers'
    /// statistics over the padded rows.
    pub(crate) fn forward(&self, input_values: &Tensor, clip_samples: Option<&[i64]>) -> Tensor {
        let mut hidden = input_values.unsqueeze(-1);
        let mut clip_frames: Option<Vec<i64>> = clip_samples.map(<[i64]>::to_vec);
        for layer in &self.conv_layers {
            // Valid output frames of this conv: floor((len - kernel) / stride) + 1.
            let kernel = layer.weight.size()[2];
            if let Some(frames) = clip_frames.as_mut() {
                for f in frames.iter_mut() {
                    *f = if *f < kernel {
                        0
                    } else {
                        (*f - kernel) / layer.stride + 1
                    };
                }
            }
            hidden = layer.forward(&hidden, clip_frames.as_deref());
        }
        hidden
    }
}

/// `Wav2Vec2FeatureProjection` / `HubertFeatureProjection`: layer norm (always for
/// wav2vec2, `feat_proj_layer_norm` for HuBERT), linear to `hidden_size`, dropout.
pub(crate) struct FeatureProjection {
    layer_norm: Option<LayerNorm>,
    projection: Linear,
}

impl FeatureProjection {
    pub(crate) fn new(scope: &Scope, config: &Config) -> FeatureProjection {
        let conv_out = config.conv_dim[config.conv_dim.len() - 1];
        let with_norm = match config.model_type {
            ModelType::Wav2Vec2 => true,
            ModelType::Hubert => config.feat_proj_layer_norm,
        };
        let layer_norm = with_norm
            .then(|| LayerNorm::new(&scope.sub("layer_norm"), conv_out, config.layer_norm_eps));
        let projection = match config.model_type {
            ModelType::Wav2Vec2 => {
                Linear::new_uniform(&scope.sub("projection"), conv_out, config.hidden_size)
            }
            ModelType::Hubert => Linear::new(
                &scope.sub("projection"),
                conv_out,
                config.hidden_size,
                config.initializer_range,
            ),
        };
        FeatureProjection {
            layer_norm,
            projection,
        }
    }

    pub(crate) fn forward(&self, features: &Tensor, config: &Config, train: bool) -> Tensor {
        let normed = match &self.layer_norm {
            Some(norm) => norm.forward(features),
            None => features.shallow_clone(),
        };
        self.projection
            .forward(&normed)
            .dropout(config.feat_proj_dropout, train)
    }
}

/// The weight of the positional conv.
enum PosConvWeight {
    /// `nn.utils.parametrizations.weight_norm(conv, dim=2)`: `weight = g * v / |v|`,
    /// the norm taken over all dimensions but the kernel axis. `g` and `v` are the
    /// trained parameters; the weight is recomputed at every forward.
    WeightNorm { g: Tensor, v: Tensor },
    /// HuBERT with `conv_pos_batch_norm`: a plain conv weight.
    Plain(Tensor),
}

/// `nn.BatchNorm1d` with running statistics (HuBERT `conv_pos_batch_norm`).
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
}

impl BatchNorm {
    fn new(scope: &Scope, dim: i64) -> BatchNorm {
        let device = scope.device;
        BatchNorm {
            weight: scope.param("weight", &[dim], Init::Ones),
            bias: scope.param("bias", &[dim], Init::Zeros),
            running_mean: scope.buffer("running_mean", init::zeros(&[dim], device)),
            running_var: scope.buffer("running_var", init::ones(&[dim], device)),
            num_batches_tracked: scope.buffer(
                "num_batches_tracked",
                Tensor::zeros([], (Kind::Int64, device)),
            ),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let mut tracked = self.num_batches_tracked.shallow_clone();
                let _ = tracked.g_add_scalar_(1);
            });
        }
        // In training libtorch updates the running statistics in place (momentum 0.1).
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            TORCH_NORM_EPS,
            true,
        )
    }
}

/// `Wav2Vec2PositionalConvEmbedding` / `HubertPositionalConvEmbedding` with
/// `Wav2Vec2SamePadLayer`: a grouped conv over time whose output is added to the
/// hidden states.
pub(crate) struct PositionalConvEmbedding {
    weight: PosConvWeight,
    bias: Tensor,
    batch_norm: Option<BatchNorm>,
    kernel: i64,
    groups: i64,
    activation: Activation,
}

impl PositionalConvEmbedding {
    pub(crate) fn new(scope: &Scope, config: &Config) -> PositionalConvEmbedding {
        let device = scope.device;
        let hidden = config.hidden_size;
        let kernel = config.num_conv_pos_embeddings;
        let groups = config.num_conv_pos_embedding_groups;
        let dims = [hidden, hidden / groups, kernel];
        let conv = scope.sub("conv");
        let batch_norm_variant =
            config.model_type == ModelType::Hubert && config.conv_pos_batch_norm;
        let (weight, bias, batch_norm) = if batch_norm_variant {
            // HubertPositionalConvEmbedding with batch_norm: plain conv, kaiming init.
            let weight = conv.param("weight", &dims, Init::KaimingNormal);
            let bias = conv.param("bias", &[hidden], Init::Zeros);
            let batch_norm = BatchNorm::new(&scope.sub("batch_norm"), hidden);
            (PosConvWeight::Plain(weight), bias, Some(batch_norm))
        } else {
            // state_dict order of a parametrized conv: bias, then original0 (g), original1 (v).
            let bias = conv.param("bias", &[hidden], Init::Zeros);
            let v = scope
                .is_random()
                .then(|| Init::TorchDefault.make(&dims, device));
            let parametrization = conv.sub("parametrizations").sub("weight");
            let g = parametrization.param_from("original0", &[1, 1, kernel], || {
                let v = v.as_ref().map(Tensor::shallow_clone).unwrap_or_default();
                tch::no_grad(|| v.norm_scalaropt_dim(2, [0i64, 1].as_slice(), true))
            });
            let v = parametrization.param_from("original1", &dims, || v.unwrap_or_default());
            (PosConvWeight::WeightNorm { g, v }, bias, None)
        };
        PositionalConvEmbedding {
            weight,
            bias,
            batch_norm,
            kernel,
            groups,
            activation: config.feat_extract_activation,
        }
    }

    /// `[B, F, H]` -> positional embeddings `[B, F, H]`. `padding`: boolean `[B, F]`,
    /// true on padded frames, to zero them again after the batch norm (which turns
    /// zeros into its shift) so that the conv sees zeros past each clip, as it does for
    /// a clip alone; `None` keeps transformers' batched behaviour.
    pub(crate) fn forward(&self, hidden: &Tensor, padding: Option<&Tensor>, train: bool) -> Tensor {
        let mut x = hidden.transpose(1, 2);
        if let Some(norm) = &self.batch_norm {
            x = norm.forward(&x, train);
            if let Some(padding) = padding {
                x = x.masked_fill(&padding.unsqueeze(1), 0.0);
            }
        }
        let weight = match &self.weight {
            PosConvWeight::WeightNorm { g, v } => Tensor::internal_weight_norm(v, g, 2),
            PosConvWeight::Plain(w) => w.shallow_clone(),
        };
        let x = x.conv1d(
            &weight,
            Some(&self.bias),
            [1],
            [self.kernel / 2],
            [1],
            self.groups,
        );
        // Wav2Vec2SamePadLayer: an even kernel gives one frame too many.
        let x = if self.kernel % 2 == 0 {
            let frames = x.size()[2];
            x.narrow(2, 0, frames - 1)
        } else {
            x
        };
        self.activation.apply(&x).transpose(1, 2)
    }
}

/// `Wav2Vec2Attention` (bidirectional self-attention through
/// `scaled_dot_product_attention`, as transformers' default `sdpa` implementation).
struct Attention {
    k_proj: Linear,
    v_proj: Linear,
    q_proj: Linear,
    out_proj: Linear,
    num_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(scope: &Scope, config: &Config) -> Attention {
        let h = config.hidden_size;
        let std = config.initializer_range;
        Attention {
            k_proj: Linear::new(&scope.sub("k_proj"), h, h, std),
            v_proj: Linear::new(&scope.sub("v_proj"), h, h, std),
            q_proj: Linear::new(&scope.sub("q_proj"), h, h, std),
            out_proj: Linear::new(&scope.sub("out_proj"), h, h, std),
            num_heads: config.num_attention_heads,
            head_dim: h / config.num_attention_heads,
        }
    }

    /// `mask`: boolean `[B, 1, 1, F]`, true for frames that may be attended to.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, config: &Config, train: bool) -> Tensor {
        let q = split_heads(&self.q_proj.forward(x), self.num_heads);
        let k = split_heads(&self.k_proj.forward(x), self.num_heads);
        let v = split_heads(&self.v_proj.forward(x), self.num_heads);
        let scale = (self.head_dim as f64).powf(-0.5);
        let dropout = if train { config.attention_dropout } else { 0.0 };
        let out =
            Tensor::scaled_dot_product_attention(&q, &k, &v, mask, dropout, false, scale, false);
        self.out_proj.forward(&merge_heads(&out))
    }
}

/// `Wav2Vec2FeedForward`.
struct FeedForward {
    intermediate_dense: Linear,
    output_dense: Linear,
    activation: Activation,
}

impl FeedForward {
    fn new(scope: &Scope, config: &Config) -> FeedForward {
        let std = config.initializer_range;
        FeedForward {
            intermediate_dense: Linear::new(
                &scope.sub("intermediate_dense"),
                config.hidden_size,
                config.intermediate_size,
                std,
            ),
            output_dense: Linear::new(
                &scope.sub("output_dense"),
                config.intermediate_size,
                config.hidden_size,
                std,
            ),
            activation: config.hidden_act,
        }
    }

    fn forward(&self, x: &Tensor, config: &Config, train: bool) -> Tensor {
        let x = self.intermediate_dense.forward(x);
        let x = self
            .activation
            .apply(&x)
            .dropout(config.activation_dropout, train);
        self.output_dense
            .forward(&x)
            .dropout(config.hidden_dropout, train)
    }
}

/// `Wav2Vec2AttnAdapterLayer` (MMS per-language adapters, `adapter_attn_dim`).
struct AttnAdapterLayer {
    norm: LayerNorm,
    linear_1: Linear,
    linear_2: Linear,
}

impl AttnAdapterLayer {
    fn new(scope: &Scope, config: &Config, adapter_dim: i64) -> AttnAdapterLayer {
        let std = config.initializer_range;
        AttnAdapterLayer {
            norm: LayerNorm::new(&scope.sub("norm"), config.hidden_size, TORCH_NORM_EPS),
            linear_1: Linear::new(&scope.sub("linear_1"), config.hidden_size, adapter_dim, std),
            linear_2: Linear::new(&scope.sub("linear_2"), adapter_dim, config.hidden_size, std),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.linear_1.forward(&self.norm.forward(x)).relu();
        self.linear_2.forward(&x)
    }
}

/// `Wav2Vec2EncoderLayer` (post-LN, `stable == false`) and
/// `Wav2Vec2EncoderLayerStableLayerNorm` (pre-LN, `stable == true`).
struct EncoderLayer {
    attention: Attention,
    layer_norm: LayerNorm,
    feed_forward: FeedForward,
    final_layer_norm: LayerNorm,
    adapter_layer: Option<AttnAdapterLayer>,
    stable: bool,
}

impl EncoderLayer {
    fn new(scope: &Scope, config: &Config) -> EncoderLayer {
        let eps = config.layer_norm_eps;
        let h = config.hidden_size;
        let attention = Attention::new(&scope.sub("attention"), config);
        let layer_norm = LayerNorm::new(&scope.sub("layer_norm"), h, eps);
        let feed_forward = FeedForward::new(&scope.sub("feed_forward"), config);
        let final_layer_norm = LayerNorm::new(&scope.sub("final_layer_norm"), h, eps);
        let adapter_layer = match (config.do_stable_layer_norm, config.adapter_attn_dim) {
            (true, Some(dim)) => Some(AttnAdapterLayer::new(
                &scope.sub("adapter_layer"),
                config,
                dim,
            )),
            _ => None,
        };
        EncoderLayer {
            attention,
            layer_norm,
            feed_forward,
            final_layer_norm,
            adapter_layer,
            stable: config.do_stable_layer_norm,
        }
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, config: &Config, train: bool) -> Tensor {
        let p = config.hidden_dropout;
        if self.stable {
            let attn = self
                .attention
                .forward(&self.layer_norm.forward(x), mask, config, train);
            let x = x + attn.dropout(p, train);
            let x = &x
                + self
                    .feed_forward
                    .forward(&self.final_layer_norm.forward(&x), config, train);
            match &self.adapter_layer {
                Some(adapter) => &x + adapter.forward(&x),
                None => x,
            }
        } else {
            let attn = self.attention.forward(x, mask, config, train);
            let x = self.layer_norm.forward(&(x + attn.dropout(p, train)));
            let x = &x + self.feed_forward.forward(&x, config, train);
            self.final_layer_norm.forward(&x)
        }
    }
}

/// `Wav2Vec2Encoder` (post-LN: layer norm after the positional embedding) and
/// `Wav2Vec2EncoderStableLayerNorm` (pre-LN: layer norm after the last layer).
pub(crate) struct Encoder {
    pos_conv_embed: PositionalConvEmbedding,
    layer_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    stable: bool,
}

impl Encoder {
    pub(crate) fn new(scope: &Scope, config: &Config) -> Encoder {
        let pos_conv_embed = PositionalConvEmbedding::new(&scope.sub("pos_conv_embed"), config);
        let layer_norm = LayerNorm::new(
            &scope.sub("layer_norm"),
            config.hidden_size,
            config.layer_norm_eps,
        );
        let layers_scope = scope.sub("layers");
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::new(&layers_scope.sub(i), config))
            .collect();
        Encoder {
            pos_conv_embed,
            layer_norm,
            layers,
            stable: config.do_stable_layer_norm,
        }
    }

    /// `frame_mask`: boolean `[B, F]`, true on valid frames, or `None` when every frame
    /// is valid. Padded frames are zeroed before the positional conv, and masked out
    /// of attention. `per_clip`: also zero them after the positional conv's batch norm
    /// (HuBERT `conv_pos_batch_norm`), which transformers does not do.
    pub(crate) fn forward(
        &self,
        hidden: &Tensor,
        frame_mask: Option<&Tensor>,
        per_clip: bool,
        config: &Config,
        train: bool,
    ) -> Tensor {
        let padding = frame_mask.map(Tensor::logical_not);
        let mut hidden = match &padding {
            Some(padding) => hidden.masked_fill(&padding.unsqueeze(-1), 0.0),
            None => hidden.shallow_clone(),
        };
        let attention_mask = frame_mask.map(|mask| {
            let size = mask.size();
            mask.view([size[0], 1, 1, size[1]])
        });
        let padding = padding.as_ref().filter(|_| per_clip);
        let position = self.pos_conv_embed.forward(&hidden, padding, train);
        // Not `+=`: in-place ops on tensors autograd may still need are unsafe.
        hidden = &hidden + position;
        if !self.stable {
            hidden = self.layer_norm.forward(&hidden);
        }
        hidden = hidden.dropout(config.hidden_dropout, train);
        for layer in &self.layers {
            // LayerDrop: one draw of `torch.rand([])` per layer from libtorch's CPU
            // generator, as transformers does.
            let skip = train
                && config.layerdrop > 0.0
                && Tensor::rand([], (Kind::Float, Device::Cpu)).double_value(&[])
                    < config.layerdrop;
            if !skip {
                hidden = layer.forward(&hidden, attention_mask.as_ref(), config, train);
            }
        }
        if self.stable {
            hidden = self.layer_norm.forward(&hidden);
        }
        hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    use crate::params::ParamStore;

    /// The feature encoder writes time-major memory directly (no transposed copies):
    /// every conv layer's output, and so the encoder's, is a contiguous `[B, F, C]`.
    #[test]
    fn feature_encoder_output_is_contiguous_time_major() {
        let _rng = crate::test_rng::seeded(0);
        for norm in [FeatExtractNorm::Layer, FeatExtractNorm::Group] {
            let config = Config {
                conv_dim: vec![16, 16, 24],
                conv_kernel: vec![10, 3, 2],
                conv_stride: vec![5, 2, 2],
                conv_bias: true,
                feat_extract_norm: norm,
                ..Config::default()
            };
            let store = RefCell::new(ParamStore::default());
            let scope = Scope::root(&store, Device::Cpu, true);
            let encoder = FeatureEncoder::new(&scope, &config);
            let audio = Tensor::randn([3, 4000], (Kind::Float, Device::Cpu));
            let mut hidden = audio.unsqueeze(-1);
            for layer in &encoder.conv_layers {
                hidden = layer.forward(&hidden, None);
                assert!(hidden.is_contiguous(), "{norm:?}: {:?}", hidden.stride());
            }
            assert_eq!(hidden.size(), [3, config.num_frames(4000), 24]);
        }
    }
}
