//! Learning-rate schedule: linear warm-up, then linear or cosine decay (or constant).
//!
//! The rate of optimizer step `s` (0-based) is `peak * (s + 1) / warmup_steps` during
//! warm-up, so the first update already moves the weights (transformers' schedulers
//! give step 0 a rate of exactly 0), then decays from `peak` at `warmup_steps` to
//! `peak * min_lr_ratio` at `total_steps`, and stays there.

use serde::{Deserialize, Serialize};

/// The decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DecayKind {
    /// Linear to the final rate (transformers' `linear`).
    #[default]
    Linear,
    /// Half a cosine to the final rate (transformers' `cosine`).
    Cosine,
    /// No decay.
    Constant,
}

/// A learning-rate schedule; [`LrSchedule::lr`] is a pure function of the step, so
/// nothing but the step needs saving for resume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Rate at the end of warm-up.
    pub peak_lr: f64,
    /// Optimizer steps of linear warm-up.
    pub warmup_steps: u64,
    /// Optimizer steps of the whole run (warm-up included).
    pub total_steps: u64,
    /// Shape of the decay.
    pub decay: DecayKind,
    /// Final rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let floor = self.peak_lr * self.min_lr_ratio;
        let span = self.total_steps.saturating_sub(self.warmup_steps);
        if span == 0 {
            return self.peak_lr;
        }
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let factor = match self.decay {
            DecayKind::Linear => 1.0 - progress,
            DecayKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            DecayKind::Constant => 1.0,
        };
        floor + (self.peak_lr - floor) * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: DecayKind) -> LrSchedule {
        LrSchedule {
            peak_lr: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            decay,
            min_lr_ratio: 0.0,
        }
    }

    #[test]
    fn warmup_is_linear_and_starts_above_zero() {
        let s = schedule(DecayKind::Linear);
        assert!((s.lr(0) - 1e-4).abs() < 1e-15);
        assert!((s.lr(4) - 5e-4).abs() < 1e-15);
        assert!((s.lr(9) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn linear_and_cosine_decay_to_the_floor() {
        let s = schedule(DecayKind::Linear);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        assert!((s.lr(60) - 5e-4).abs() < 1e-15);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
        let c = schedule(DecayKind::Cosine);
        assert!((c.lr(60) - 5e-4).abs() < 1e-15);
        assert!((c.lr(35) - 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())).abs() < 1e-15);
        let floor = LrSchedule {
            min_lr_ratio: 0.1,
            ..c
        };
        assert!((floor.lr(110) - 1e-4).abs() < 1e-15);
        let constant = schedule(DecayKind::Constant);
        assert_eq!(constant.lr(100), 1e-3);
    }

    #[test]
    fn no_warmup_and_no_decay_span() {
        let s = LrSchedule {
            peak_lr: 2.0,
            warmup_steps: 0,
            total_steps: 0,
            decay: DecayKind::Linear,
            min_lr_ratio: 0.0,
        };
        assert_eq!(s.lr(0), 2.0);
        assert_eq!(s.lr(7), 2.0);
    }
}
