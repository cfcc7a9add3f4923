//! The modules of `WhisperForConditionalGeneration`, one Rust struct per transformers
//! class of `modeling_whisper.py` (transformers 5.23.0); tensor names are the
//! `state_dict` names.
//!
//! Facts checked against that file: pre-LN encoder and decoder layers with a final
//! `layer_norm` on each stack; a conv stem `conv1` (kernel 3, stride 1, padding 1) and
//! `conv2` (kernel 3, stride 2, padding 1), each followed by erf GELU
//! (`nn.functional.gelu`, whatever `activation_function` says); fixed sinusoidal encoder
//! positions (`embed_positions`, `requires_grad_(False)`, a buffer here); learned decoder
//! positions; `k_proj` without bias; queries scaled by `head_dim ** -0.5` *before* the
//! product (attention then runs with scale 1.0); `embed_tokens` with
//! `padding_idx = pad_token_id` (no gradient flows to the pad row through the lookup).
//! Init (`_init_weights`): linear and conv weights normal(0, `init_std`), zero biases,
//! embeddings normal(0, `init_std`) with the pad row zeroed, norms one/zero.
use tch::{Device, Kind, Tensor};

use super::config::WhisperConfig;
use crate::layers::{merge_heads, split_heads, LayerNorm, Linear, TORCH_NORM_EPS};
use crate::params::{Init, Scope};

/// `sinusoids(length, channels)`: `[sin(t * inv), cos(t * inv)]` with
/// `inv = exp(-ln(10000) / (channels / 2 - 1) * i)`.
pub(crate) fn sinusoids(length: i64, channels: i64, device: Device) -> Tensor {
    let half = channels / 2;
    let increment = (10000f64).ln() / (half - 1).max(1) as f64;
    let inv = (Tensor::arange(half, (Kind::Float, device)) * -increment).exp();
    let time = Tensor::arange(length, (Kind::Float, device)).view([-1, 1]) * inv.view([1, -1]);
    Tensor::cat(&[time.sin(), time.cos()], 1)
}

/// How a self-attention call masks its keys.
pub(crate) enum SelfMask<'a> {
    /// Every query sees every key (the encoder; one decoder step against its cache).
    None,
    /// Causal, queries and keys aligned (a decoder pass with no cache).
    Causal,
    /// A boolean `[B, 1, T, S]` mask, true where a query may attend.
    Explicit(&'a Tensor),
}

/// `WhisperAttention` (eager: softmax(q * scaling @ k^T + mask) @ v).
pub(crate) struct Attention {
    k_proj: Linear,
    v_proj: Linear,
    q_proj: Linear,
    out_proj: Linear,
    num_heads: i64,
    scaling: f64,
    dropout: f64,
}

impl Attention {
    fn new(scope: &Scope, config: &WhisperConfig, num_heads: i64) -> Attention {
        let d = config.d_model;
        let std = config.init_std;
        Attention {
            k_proj: Linear::new_no_bias(&scope.sub("k_proj"), d, d, std),
            v_proj: Linear::new(&scope.sub("v_proj"), d, d, std),
            q_proj: Linear::new(&scope.sub("q_proj"), d, d, std),
            out_proj: Linear::new(&scope.sub("out_proj"), d, d, std),
            num_heads,
            scaling: ((d / num_heads) as f64).powf(-0.5),
            dropout: config.attention_dropout,
        }
    }

    /// Keys and values `[B, heads, S, head_dim]` of `states` `[B, S, d]`, contiguous
    /// (as transformers makes them): libtorch's CPU attention kernels, the backward
    /// above all, run ~15 % faster on contiguous heads than on the transposed views.
    pub(crate) fn key_values(&self, states: &Tensor) -> (Tensor, Tensor) {
        (
            split_heads(&self.k_proj.forward(states), self.num_heads).contiguous(),
            split_heads(&self.v_proj.forward(states), self.num_heads).contiguous(),
        )
    }

    /// Attends from `hidden` `[B, T, d]` to the given keys and values.
    fn attend(
        &self,
        hidden: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        mask: &SelfMask,
        train: bool,
    ) -> Tensor {
        let q = split_heads(
            &(self.q_proj.forward(hidden) * self.scaling),
            self.num_heads,
        )
        .contiguous();
        let dropout = if train { self.dropout } else { 0.0 };
        let (mask, causal) = match mask {
            SelfMask::None => (None, false),
            SelfMask::Causal => (None, true),
            SelfMask::Explicit(mask) => (Some(*mask), false),
        };
        let out = Tensor::scaled_dot_product_attention(
            &q, keys, values, mask, dropout, causal, 1.0, false,
        );
        self.out_proj.forward(&merge_heads(&out))
    }
}

/// The two feed-forward linears of a Whisper layer with their activation.
struct FeedForward {
    fc1: Linear,
    fc2: Linear,
}

impl FeedForward {
    fn new(scope: &Scope, config: &WhisperConfig, ffn_dim: i64) -> FeedForward {
        let std = config.init_std;
        FeedForward {
            fc1: Linear::new(&scope.sub("fc1"), config.d_model, ffn_dim, std),
            fc2: Linear::new(&scope.sub("fc2"), ffn_dim, config.d_model, std),
        }
    }

    fn forward(&self, x: &Tensor, config: &WhisperConfig, train: bool) -> Tensor {
        let x = config
            .activation_function
            .apply(&self.fc1.forward(x))
            .dropout(config.activation_dropout, train);
        self.fc2.forward(&x).dropout(config.dropout, train)
    }
}

fn layer_norm(scope: &Scope, config: &WhisperConfig, name: &str) -> LayerNorm {
    LayerNorm::new(&scope.sub(name), config.d_model, TORCH_NORM_EPS)
}

/// `WhisperEncoderLayer` (pre-LN).
struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    ffn: FeedForward,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn new(scope: &Scope, config: &WhisperConfig) -> EncoderLayer {
        EncoderLayer {
            self_attn: Attention::new(
                &scope.sub("self_attn"),
                config,
                config.encoder_attention_heads,
            ),
            self_attn_layer_norm: layer_norm(scope, config, "self_attn_layer_norm"),
            ffn: FeedForward::new(scope, config, config.encoder_ffn_dim),
            final_layer_norm: layer_norm(scope, config, "final_layer_norm"),
        }
    }

    fn forward(&self, x: &Tensor, config: &WhisperConfig, train: bool) -> Tensor {
        let h = self.self_attn_layer_norm.forward(x);
        let (k, v) = self.self_attn.key_values(&h);
        let h = self.self_attn.attend(&h, &k, &v, &SelfMask::None, train);
        let x = x + h.dropout(config.dropout, train);
        let h = self
            .ffn
            .forward(&self.final_layer_norm.forward(&x), config, train);
        &x + h
    }
}

/// One LayerDrop draw per layer from libtorch's CPU generator, as transformers does.
fn layer_dropped(train: bool, layerdrop: f64) -> bool {
    train
        && layerdrop > 0.0
        && Tensor::rand([], (Kind::Float, Device::Cpu)).double_value(&[]) < layerdrop
}

/// `WhisperEncoder`: log-mel features `[B, mels, 2 * max_source_positions]` to hidden
/// states `[B, max_source_positions, d]`.
pub(crate) struct Encoder {
    conv1_weight: Tensor,
    conv1_bias: Tensor,
    conv2_weight: Tensor,
    conv2_bias: Tensor,
    embed_positions: Tensor,
    layers: Vec<EncoderLayer>,
    layer_norm: LayerNorm,
}

impl Encoder {
    pub(crate) fn new(scope: &Scope, config: &WhisperConfig) -> Encoder {
        let (d, std) = (config.d_model, config.init_std);
        let conv1 = scope.sub("conv1");
        let conv2 = scope.sub("conv2");
        let conv1_weight = conv1.param("weight", &[d, config.num_mel_bins, 3], Init::Normal(std));
        let conv1_bias = conv1.param("bias", &[d], Init::Zeros);
        let conv2_weight = conv2.param("weight", &[d, d, 3], Init::Normal(std));
        let conv2_bias = conv2.param("bias", &[d], Init::Zeros);
        let positions = sinusoids(config.max_source_positions, d, scope.device);
        let embed_positions = scope.sub("embed_positions").buffer("weight", positions);
        let layers_scope = scope.sub("layers");
        let layers = (0..config.encoder_layers)
            .map(|i| EncoderLayer::new(&layers_scope.sub(i), config))
            .collect();
        Encoder {
            conv1_weight,
            conv1_bias,
            conv2_weight,
            conv2_bias,
            embed_positions,
            layers,
            layer_norm: layer_norm(scope, config, "layer_norm"),
        }
    }

    pub(crate) fn forward(&self, features: &Tensor, config: &WhisperConfig, train: bool) -> Tensor {
        let x = features
            .conv1d(&self.conv1_weight, Some(&self.conv1_bias), [1], [1], [1], 1)
            .gelu("none");
        let x = x
            .conv1d(&self.conv2_weight, Some(&self.conv2_bias), [2], [1], [1], 1)
            .gelu("none");
        let x = x.permute([0, 2, 1]) + &self.embed_positions;
        let mut x = x.dropout(config.dropout, train);
        for layer in &self.layers {
            if !layer_dropped(train, config.encoder_layerdrop) {
                x = layer.forward(&x, config, train);
            }
        }
        self.layer_norm.forward(&x)
    }
}

/// The keys and values one decoder layer keeps between generation steps: its
/// self-attention's (growing by one position per step) and its cross-attention's
/// (computed once from the encoder output).
pub(crate) struct LayerCache {
    pub(crate) self_kv: Option<(Tensor, Tensor)>,
    pub(crate) cross_kv: (Tensor, Tensor),
}

/// `WhisperDecoderLayer` (pre-LN; self-attention, cross-attention, feed-forward).
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    ffn: FeedForward,
    final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    fn new(scope: &Scope, config: &WhisperConfig) -> DecoderLayer {
        let heads = config.decoder_attention_heads;
        // Registration order is transformers' state_dict order.
        let self_attn = Attention::new(&scope.sub("self_attn"), config, heads);
        let self_attn_layer_norm = layer_norm(scope, config, "self_attn_layer_norm");
        let encoder_attn = Attention::new(&scope.sub("encoder_attn"), config, heads);
        let encoder_attn_layer_norm = layer_norm(scope, config, "encoder_attn_layer_norm");
        DecoderLayer {
            self_attn,
            self_attn_layer_norm,
            encoder_attn,
            encoder_attn_layer_norm,
            ffn: FeedForward::new(scope, config, config.decoder_ffn_dim),
            final_layer_norm: layer_norm(scope, config, "final_layer_norm"),
        }
    }

    /// `cache.self_kv`, when given, holds the keys and values of earlier positions and
    /// gets this call's appended.
    fn forward(
        &self,
        x: &Tensor,
        mask: &SelfMask,
        cache: &mut LayerCache,
        config: &WhisperConfig,
        train: bool,
    ) -> Tensor {
        let h = self.self_attn_layer_norm.forward(x);
        let (k, v) = self.self_attn.key_values(&h);
        let (k, v) = match cache.self_kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
            None => (k, v),
        };
        let a = self.self_attn.attend(&h, &k, &v, mask, train);
        cache.self_kv = Some((k, v));
        let x = x + a.dropout(config.dropout, train);
        let h = self.encoder_attn_layer_norm.forward(&x);
        let (ck, cv) = &cache.cross_kv;
        let a = self.encoder_attn.attend(&h, ck, cv, &SelfMask::None, train);
        let x = &x + a.dropout(config.dropout, train);
        let h = self
            .ffn
            .forward(&self.final_layer_norm.forward(&x), config, train);
        &x + h
    }
}

/// `WhisperDecoder` plus the tied output projection (`proj_out`, which is
/// `embed_tokens`' weight).
pub(crate) struct Decoder {
    embed_tokens: Tensor,
    embed_positions: Tensor,
    layers: Vec<DecoderLayer>,
    layer_norm: LayerNorm,
    padding_idx: i64,
}

impl Decoder {
    pub(crate) fn new(scope: &Scope, config: &WhisperConfig) -> Decoder {
        let (d, std) = (config.d_model, config.init_std);
        let padding_idx = config.pad_token_id.unwrap_or(-1);
        let embed_tokens =
            scope
                .sub("embed_tokens")
                .param_from("weight", &[config.vocab_size, d], || {
                    let weight = Init::Normal(std).make(&[config.vocab_size, d], scope.device);
                    if (0..config.vocab_size).contains(&padding_idx) {
                        let _ = weight.get(padding_idx).fill_(0.0);
                    }
                    weight
                });
        let embed_positions = scope.sub("embed_positions").param(
            "weight",
            &[config.max_target_positions, d],
            Init::Normal(std),
        );
        let layers_scope = scope.sub("layers");
        let layers = (0..config.decoder_layers)
            .map(|i| DecoderLayer::new(&layers_scope.sub(i), config))
            .collect();
        Decoder {
            embed_tokens,
            embed_positions,
            layers,
            layer_norm: layer_norm(scope, config, "layer_norm"),
            padding_idx,
        }
    }

    /// Per-layer caches holding the cross-attention keys and values of `encoder_hidden`.
    pub(crate) fn new_caches(&self, encoder_hidden: &Tensor) -> Vec<LayerCache> {
        self.layers
            .iter()
            .map(|layer| LayerCache {
                self_kv: None,
                cross_kv: layer.encoder_attn.key_values(encoder_hidden),
            })
            .collect()
    }

    /// Logits `[B, T, vocab]` of `ids` `[B, T]` at positions `past..past + T`, `past`
    /// being the positions already in the caches' self-attention keys.
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        past: i64,
        mask: &SelfMask,
        caches: &mut [LayerCache],
        config: &WhisperConfig,
        train: bool,
    ) -> Tensor {
        let steps = ids.size()[1];
        let tokens = Tensor::embedding(&self.embed_tokens, ids, self.padding_idx, false, false);
        let positions = self.embed_positions.narrow(0, past, steps);
        let mut x = (tokens + positions).dropout(config.dropout, train);
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            if !layer_dropped(train, config.decoder_layerdrop) {
                x = layer.forward(&x, mask, cache, config, train);
            }
        }
        self.layer_norm
            .forward(&x)
            .linear::<Tensor>(&self.embed_tokens, None)
    }
}
