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

/// One parameter's optimizer state.
struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

/// AdamW over a fixed list of named parameters.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    /// Updates applied (the `t` of bias correction).
    steps: u64,
}

impl AdamW {
    /// An optimizer over `params` (name, tensor; shallow clones are taken, so updates
    /// reach the model).
    pub fn new<'a>(
        config: AdamWConfig,
        params: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    ) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, p)| Slot {
                name: name.to_string(),
                param: p.shallow_clone(),
                exp_avg: p.zeros_like().detach(),
                exp_avg_sq: p.zeros_like().detach(),
                decay: decays(name),
            })
            .collect();
        AdamW {
            config,
            slots,
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

    fn grads(&self) -> impl Iterator<Item = Tensor> + '_ {
        self.slots.iter().filter_map(|s| {
            let g = s.param.grad();
            g.defined().then_some(g)
        })
    }

    /// Global L2 norm of all gradients (NaN or inf when any value is).
    pub fn grad_norm(&self) -> f64 {
        let norms: Vec<Tensor> = self
            .grads()
            .map(|g| g.norm_scalaropt_dtype(2, Kind::Float))
            .collect();
        if norms.is_empty() {
            return 0.0;
        }
        Tensor::stack(&norms, 0).norm().double_value(&[])
    }

    /// Number of NaN or infinite gradient values.
    pub fn count_nonfinite_grads(&self) -> u64 {
        let counts: Vec<Tensor> = self
            .grads()
            .map(|g| g.isfinite().logical_not().sum(Kind::Int64))
            .collect();
        if counts.is_empty() {
            return 0;
        }
        Tensor::stack(&counts, 0)
            .sum(Kind::Int64)
            .int64_value(&[])
            .max(0) as u64
    }

    /// Replace NaN and infinite gradient values by zero.
    pub fn zero_nonfinite_grads(&mut self) {
        for mut g in self.grads() {
            let _ = g.nan_to_num_(0.0, 0.0, 0.0);
        }
    }

    /// Multiply every gradient by `factor` (clipping, unscaling).
    pub fn scale_grads(&mut self, factor: f64) {
        if factor == 1.0 {
            return;
        }
        for mut g in self.grads() {
            let _ = g.g_mul_scalar_(factor);
        }
    }

    /// Zero the gradients (step 9).
    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            slot.param.zero_grad();
        }
    }

    /// One AdamW update with learning rate `lr` (steps 8).
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                if slot.decay && c.weight_decay != 0.0 {
                    let _ = slot.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                // m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2, as lerps (one
                // temporary, g^2); then p -= step_size * m / (sqrt(v) / c2 + eps).
                let _ = slot.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                let _ = slot.exp_avg_sq.lerp_(&grad.square(), 1.0 - c.beta2);
                let mut denom = slot.exp_avg_sq.sqrt();
                let _ = denom.g_div_scalar_(bias2_sqrt).g_add_scalar_(c.eps);
                let mut update = slot.exp_avg.g_div(&denom);
                let _ = slot.param.g_sub_(&update.g_mul_scalar_(step_size));
            }
        });
    }

    /// The state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`) for a
    /// safetensors checkpoint; the step count goes to the JSON state.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.slots.len() * 2);
        for s in &self.slots {
            out.push((format!("exp_avg.{}", s.name), s.exp_avg.shallow_clone()));
            out.push((
                format!("exp_avg_sq.{}", s.name),
                s.exp_avg_sq.shallow_clone(),
            ));
        }
        out
    }

    /// Restore the state written by [`AdamW::state_tensors`].
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], steps: u64) -> Result<(), String> {
        let find = |key: &str| tensors.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        tch::no_grad(|| {
            for s in &mut self.slots {
                for (prefix, dst) in [
                    ("exp_avg", &mut s.exp_avg),
                    ("exp_avg_sq", &mut s.exp_avg_sq),
                ] {
                    let key = format!("{prefix}.{}", s.name);
                    let src =
                        find(&key).ok_or_else(|| format!("optimizer state has no tensor {key}"))?;
                    if src.size() != dst.size() {
                        return Err(format!(
                            "optimizer state {key} has shape {:?}, the parameter {:?}",
                            src.size(),
                            dst.size()
                        ));
                    }
                    dst.copy_(src);
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
