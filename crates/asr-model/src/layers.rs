//! Layers shared by the model families (transformers' `nn.Linear`, `nn.LayerNorm`,
//! `ACT2FN` activations and the multi-head split of its attention modules), so that
//! wav2vec2/HuBERT and Whisper compute them one way.
use tch::Tensor;

use crate::params::{Init, Scope};
use crate::wav2vec2::config::Activation;

impl Activation {
    /// Applies the activation (transformers' `ACT2FN[name]`).
    pub(crate) fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => x.gelu("none"),
            Activation::GeluNew | Activation::GeluPytorchTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
            Activation::Selu => x.selu(),
            Activation::Silu | Activation::Swish => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// `nn.Linear`.
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer with transformers' generic init: normal(0, std) weight, zero bias.
    pub(crate) fn new(scope: &Scope, in_dim: i64, out_dim: i64, std: f64) -> Linear {
        Linear {
            weight: scope.param("weight", &[out_dim, in_dim], Init::Normal(std)),
            bias: Some(scope.param("bias", &[out_dim], Init::Zeros)),
        }
    }

    /// `nn.Linear(in, out, bias=False)` with normal(0, std) weight.
    pub(crate) fn new_no_bias(scope: &Scope, in_dim: i64, out_dim: i64, std: f64) -> Linear {
        Linear {
            weight: scope.param("weight", &[out_dim, in_dim], Init::Normal(std)),
            bias: None,
        }
    }

    /// A linear layer with uniform(+-1/sqrt(in)) weight and bias (wav2vec2's feature projection).
    pub(crate) fn new_uniform(scope: &Scope, in_dim: i64, out_dim: i64) -> Linear {
        let k = (1.0 / in_dim as f64).sqrt();
        Linear {
            weight: scope.param("weight", &[out_dim, in_dim], Init::Uniform(-k, k)),
            bias: Some(scope.param("bias", &[out_dim], Init::Uniform(-k, k))),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// `nn.LayerNorm(dim, eps)` over the last dimension.
pub(crate) struct LayerNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(scope: &Scope, dim: i64, eps: f64) -> LayerNorm {
        LayerNorm {
            weight: scope.param("weight", &[dim], Init::Ones),
            bias: scope.param("bias", &[dim], Init::Zeros),
            dim,
            eps,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// PyTorch's default eps of `nn.LayerNorm` / `nn.GroupNorm` / `nn.BatchNorm1d`, used
/// where transformers does not pass `config.layer_norm_eps`.
pub(crate) const TORCH_NORM_EPS: f64 = 1e-5;

/// `[B, T, heads * head_dim]` to `[B, heads, T, head_dim]` (transformers'
/// `view(...).transpose(1, 2)` before attention).
pub(crate) fn split_heads(x: &Tensor, num_heads: i64) -> Tensor {
    let size = x.size();
    let (batch, frames, width) = (size[0], size[1], size[2]);
    x.view([batch, frames, num_heads, width / num_heads])
        .transpose(1, 2)
}

/// `[B, heads, T, head_dim]` back to `[B, T, heads * head_dim]`.
pub(crate) fn merge_heads(x: &Tensor) -> Tensor {
    let size = x.size();
    let (batch, heads, frames, head_dim) = (size[0], size[1], size[2], size[3]);
    x.transpose(1, 2).reshape([batch, frames, heads * head_dim])
}
