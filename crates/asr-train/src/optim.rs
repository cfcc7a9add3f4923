//! AdamW (decoupled weight decay, Loshchilov & Hutter), written here so that its state
//! is ours to checkpoint, plus gradient utilities (global norm, non-finite count and
//! zeroing, clipping) and fp16 dynamic loss scaling.
//!
//! Parameter groups follow transformers' `Trainer`: weight decay applies to every
//! parameter except biases and normalization weights (`*.bias`, layer/group/batch-norm
//! `weight`s), and to nothing else. The update is PyTorch's `torch.optim.AdamW` with
//! `amsgrad=False`: `p -= lr * wd * p` (decay group), `m = b1 m + (1-b1) g`,
//! `v = b2 v + (1-b2) g^2`, `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// AdamW settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Exponential decay of the first moment.
    pub beta1: f64,
    /// Exponential decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay of the decay group.
    pub weight_decay: f64,
}

/// Whether a parameter is in the weight-decay group: not biases, not normalization
/// weights. transformers' `Trainer` excludes biases and `nn.LayerNorm` parameters; here
/// every `*layer_norm*` / `*norm.*` weight is excluded, which also spares the group norm
/// of group-norm feature encoders (named `conv_layers.0.layer_norm`), a difference that
/// only matters when the feature encoder is trained.
pub fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower.ends_with(".bias")
        || lower.contains("layer_norm")
        || lower.contains("layernorm")
        || lower.contains(".norm.")
        || lower.ends_with("norm.weight"))
}

/// Where one parameter lives in the flat buffers.
struct Slot {
    name: String,
    param: Tensor,
    shape: Vec<i64>,
    offset: i64,
    numel: i64,
    decay: bool,
}

/// AdamW over a fixed list of named parameters.
///
/// The parameters are moved into one flat buffer (the decay group first, then the
/// no-decay group), each parameter becoming a view of its slice, and after the first
/// backward pass their gradients become views of one flat gradient buffer that
/// autograd then accumulates into in place. The global norm, clipping, non-finite
/// checks, zeroing and the AdamW update are then a handful of operations over a few
/// million contiguous values instead of ten small operations per parameter tensor,
/// which matters on a CPU where every operation is a parallel region that waits for
/// its slowest thread. Parameters keep their identity (the model's tensors are the
/// same objects), so the model sees updates without copies.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    /// Every parameter's values: the decay group in `[0, decay_numel)`, then the rest.
    flat_param: Tensor,
    /// Every parameter's gradient, same layout.
    flat_grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay_numel: i64,
    /// Updates applied (the `t` of bias correction).
    steps: u64,
}

impl AdamW {
    /// An optimizer over `params` (name, tensor). Each parameter's storage moves into
    /// the optimizer's flat buffer (values kept, `requires_grad` kept): every handle
    /// to the same tensor, the model's included, sees the updates.
    pub fn new<'a>(
        config: AdamWConfig,
        params: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    ) -> Self {
        let params: Vec<(&str, &Tensor)> = params.into_iter().collect();
        let mut ordered: Vec<(&str, &Tensor, bool)> = Vec::with_capacity(params.len());
        for want_decay in [true, false] {
            for (name, p) in &params {
                if decays(name) == want_decay {
                    ordered.push((name, p, want_decay));
                }
            }
        }
        let (kind, device) = params
            .first()
            .map_or((Kind::Float, tch::Device::Cpu), |(_, p)| {
                (p.kind(), p.device())
            });
        let total: i64 = ordered.iter().map(|(_, p, _)| p.numel() as i64).sum();
        let flat_param = Tensor::zeros([total], (kind, device));
        let mut slots = Vec::with_capacity(ordered.len());
        let mut offset = 0i64;
        let mut decay_numel = 0i64;
        tch::no_grad(|| {
            for (name, p, decay) in ordered {
                let numel = p.numel() as i64;
                let shape = p.size();
                let mut view = flat_param.narrow(0, offset, numel).view(shape.as_slice());
                view.copy_(p);
                let mut param = p.shallow_clone();
                param.set_data(&view);
                if decay {
                    decay_numel += numel;
                }
                slots.push(Slot {
                    name: name.to_string(),
                    param,
                    shape,
                    offset,
                    numel,
                    decay,
                });
                offset += numel;
            }
        });
        AdamW {
            config,
            slots,
            flat_grad: flat_param.zeros_like(),
            exp_avg: flat_param.zeros_like(),
            exp_avg_sq: flat_param.zeros_like(),
            flat_param,
            decay_numel,
            steps: 0,
        }
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Names of the parameters in the decay group and in the no-decay group.
    pub fn groups(&self) -> (Vec<&str>, Vec<&str>) {
        let decay = self
            .slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.name.as_str())
            .collect();
        let no_decay = self
            .slots
            .iter()
            .filter(|s| !s.decay)
            .map(|s| s.name.as_str())
            .collect();
        (decay, no_decay)
    }

    fn slice(flat: &Tensor, slot: &Slot) -> Tensor {
        flat.narrow(0, slot.offset, slot.numel)
            .view(slot.shape.as_slice())
    }

    /// Makes every parameter's gradient a view of the flat gradient buffer: a gradient
    /// autograd created as a separate tensor (the first backward pass) is copied in
    /// and its storage moved there; later passes accumulate into it in place.
    fn adopt_grads(&mut self) {
        let flat_ptr = self.flat_grad.data_ptr() as usize;
        let elt = self.flat_grad.kind().elt_size_in_bytes();
        tch::no_grad(|| {
            for slot in &self.slots {
                let mut grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                let want = flat_ptr + slot.offset as usize * elt;
                if grad.data_ptr() as usize == want {
                    continue;
                }
                let mut view = Self::slice(&self.flat_grad, slot);
                view.copy_(&grad);
                grad.set_data(&view);
            }
        });
    }

    /// The flat buffer every parameter's gradient is a view of (after the backward
    /// passes of a step): the data-parallel all-reduce averages it in place.
    pub fn flat_grad_mut(&mut self) -> &mut Tensor {
        self.adopt_grads();
        &mut self.flat_grad
    }

    /// Global L2 norm of all gradients (NaN or inf when any value is).
    pub fn grad_norm(&mut self) -> f64 {
        self.adopt_grads();
        if self.slots.is_empty() {
            return 0.0;
        }
        tch::no_grad(|| {
            self.flat_grad
                .norm_scalaropt_dtype(2, Kind::Float)
                .double_value(&[])
        })
    }

    /// Number of NaN or infinite gradient values.
    pub fn count_nonfinite_grads(&mut self) -> u64 {
        self.adopt_grads();
        if self.slots.is_empty() {
            return 0;
        }
        tch::no_grad(|| {
            self.flat_grad
                .isfinite()
                .logical_not()
                .sum(Kind::Int64)
                .int64_value(&[])
                .max(0) as u64
        })
    }

    /// Replace NaN and infinite gradient values by zero.
    pub fn zero_nonfinite_grads(&mut self) {
        self.adopt_grads();
        tch::no_grad(|| {
            let _ = self.flat_grad.nan_to_num_(0.0, 0.0, 0.0);
        });
    }

    /// Multiply every gradient by `factor` (clipping, unscaling).
    pub fn scale_grads(&mut self, factor: f64) {
        if factor == 1.0 {
            return;
        }
        self.adopt_grads();
        tch::no_grad(|| {
            let _ = self.flat_grad.g_mul_scalar_(factor);
        });
    }

    /// Zero the gradients (step 9).
    pub fn zero_grad(&mut self) {
        self.adopt_grads();
        tch::no_grad(|| {
            let _ = self.flat_grad.zero_();
        });
    }

    /// One AdamW update with learning rate `lr` (step 8). Parameters that received no
    /// gradient count as having a zero one (as with PyTorch's
    /// `zero_grad(set_to_none=False)`).
    pub fn step(&mut self, lr: f64) {
        self.adopt_grads();
        self.steps += 1;
        let t = self.steps as i32;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            if c.weight_decay != 0.0 && self.decay_numel > 0 {
                let _ = self
                    .flat_param
                    .narrow(0, 0, self.decay_numel)
                    .g_mul_scalar_(1.0 - lr * c.weight_decay);
            }
            // m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2, as lerps; then
            // p -= step_size * m / (sqrt(v) / c2 + eps).
            let grad = &self.flat_grad;
            let _ = self.exp_avg.lerp_(grad, 1.0 - c.beta1);
            let _ = self.exp_avg_sq.lerp_(&grad.square(), 1.0 - c.beta2);
            let mut denom = self.exp_avg_sq.sqrt();
            let _ = denom.g_div_scalar_(bias2_sqrt).g_add_scalar_(c.eps);
            let mut update = self.exp_avg.g_div(&denom);
            let _ = self.flat_param.g_sub_(&update.g_mul_scalar_(step_size));
        });
    }

    /// The state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`) for a
    /// safetensors checkpoint; the step count goes to the JSON state.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.slots.len() * 2);
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), Self::slice(&self.exp_avg, s)));
            out.push((
                format!("exp_avg_sq.{}", s.name),
                Self::slice(&self.exp_avg_sq, s),
            ));
        }
        out
    }

    /// Restore the state written by [`AdamW::state_tensors`].
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: u64) -> Result<(), String> {
        let find = |key: &str| tensors.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        tch::no_grad(|| {
            for s in &self.slots {
                for (prefix, flat) in [("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)]
                {
                    let key = format!("{prefix}.{}", s.name);
                    let src =
                        find(&key).ok_or_else(|| format!("optimizer state has no tensor {key}"))?;
                    if src.size() != s.shape {
                        return Err(format!(
                            "optimizer state {key} has shape {:?}, the parameter {:?}",
                            src.size(),
                            s.shape
                        ));
                    }
                    Self::slice(flat, s).copy_(src);
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}

/// fp16 dynamic loss scaling (PyTorch's `GradScaler` defaults: start at 2^16, halve on
/// overflow, double after 2000 overflow-free steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Current scale.
    pub scale: f64,
    /// Overflow-free steps since the last change.
    pub good_steps: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: 65_536.0,
            good_steps: 0,
        }
    }
}

impl LossScaler {
    /// After unscaling: `overflow` tells whether any gradient was non-finite. Returns
    /// whether the update may proceed.
    pub fn update(&mut self, overflow: bool) -> bool {
        if overflow {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            false
        } else {
            self.good_steps += 1;
            if self.good_steps >= 2000 {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_groups_follow_the_trainer() {
        assert!(decays("wav2vec2.encoder.layers.0.attention.q_proj.weight"));
        assert!(decays("lm_head.weight"));
        assert!(!decays("lm_head.bias"));
        assert!(!decays("wav2vec2.encoder.layers.0.layer_norm.weight"));
        assert!(!decays("wav2vec2.encoder.layer_norm.weight"));
        assert!(!decays(
            "wav2vec2.feature_extractor.conv_layers.0.layer_norm.weight"
        ));
        assert!(!decays("wav2vec2.feature_projection.layer_norm.weight"));
        assert!(decays("wav2vec2.masked_spec_embed"));
        assert!(decays("wav2vec2.encoder.pos_conv_embed.conv.weight_v"));
    }

    #[test]
    fn matches_hand_computed_adamw_steps() {
        // One scalar parameter p = 1 with gradient 0.5 at each step, lr 0.1, wd 0.1.
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            [("w.weight", &p)],
        );
        let (mut want, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for t in 1..=3 {
            opt.zero_grad();
            let loss = (&p * 0.5).sum(Kind::Float);
            loss.backward();
            assert!((opt.grad_norm() - 0.5).abs() < 1e-7);
            opt.step(0.1);
            want *= 1.0 - 0.1 * 0.1;
            m = 0.9 * m + 0.1 * 0.5;
            v = 0.999 * v + 0.001 * 0.25;
            let mhat = m / (1.0 - 0.9f64.powi(t));
            let denom = (v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8;
            want -= 0.1 * mhat / denom;
            let got = p.double_value(&[0]);
            assert!((got - want).abs() < 1e-6, "step {t}: {got} vs {want}");
        }
        assert_eq!(opt.steps(), 3);
    }

    #[test]
    fn nonfinite_grads_are_counted_zeroed_and_state_round_trips() {
        let p = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            [("x.weight", &p)],
        );
        let loss = (&p * Tensor::from_slice(&[f32::NAN, 1.0, f32::INFINITY])).sum(Kind::Float);
        loss.backward();
        assert_eq!(opt.count_nonfinite_grads(), 2);
        assert!(opt.grad_norm().is_nan());
        opt.zero_nonfinite_grads();
        assert_eq!(opt.count_nonfinite_grads(), 0);
        assert!((opt.grad_norm() - 1.0).abs() < 1e-7);
        opt.scale_grads(0.5);
        assert!((opt.grad_norm() - 0.5).abs() < 1e-7);
        opt.step(0.01);
        let state = opt.state_tensors();
        let q = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).set_requires_grad(true);
        let mut other = AdamW::new(opt.config, [("x.weight", &q)]);
        other.load_state(&state, opt.steps()).unwrap();
        assert_eq!(other.steps(), 1);
        assert!(other.state_tensors()[0].1.equal(&state[0].1));
        assert!(other
            .load_state(&[], 1)
            .unwrap_err()
            .contains("exp_avg.x.weight"));
    }

    #[test]
    fn loss_scaler_backs_off_and_grows() {
        let mut s = LossScaler::default();
        assert!(!s.update(true));
        assert_eq!(s.scale, 32_768.0);
        for _ in 0..2000 {
            assert!(s.update(false));
        }
        assert_eq!(s.scale, 65_536.0);
    }
}
