//! Explosion handling: a pure state machine that the training loop consults at each of
//! the nine steps of an optimizer step.
//!
//! 1. forward, per-utterance CTC losses;
//! 2. [`ExplosionGuard::check_losses`]: an utterance whose loss is non-finite, whose
//!    labels need more CTC frames than its audio gives, or whose loss (per label under
//!    mean reduction, its sum under sum reduction) is above `max_loss`, is masked out
//!    of the batch loss, which is reduced over the other utterances only; the event
//!    names it as culprit. Only when no utterance is left is the batch skipped (no
//!    backward). When every loss of a batch is bad, the model is as likely at fault as
//!    the data: only infeasible utterances are named culprits then;
//! 3. backward;
//! 4. [`ExplosionGuard::check_nonfinite_grads`]: gradient values that are NaN or
//!    infinite are zeroed (default) or make the whole update skipped; counted either way;
//! 5. the global gradient norm (after zeroing);
//! 6. [`ExplosionGuard::check_grad_norm`]: an explosion (norm above the absolute limit,
//!    or above `grad_norm_factor` times its running mean once `stats_warmup_steps`
//!    norms were seen) skips the update and multiplies the learning-rate scale by
//!    `lr_decay` (never below `lr_floor`); after `recovery_steps` clean steps in a row
//!    the scale is divided by `lr_decay` again (capped at 1), one notch at a time;
//! 7. clipping: to `max_grad_norm` (fixed), or to running mean + `clip_z` x running
//!    standard deviation (adaptive, once warmed up; fixed before), or none;
//! 8. optimizer step; 9. zero gradients (both done by the loop).
//!
//! The running statistics cover accepted norms only (an explosion does not inflate
//! them): an exact mean and variance over the first norms, then an exponential moving
//! average with `stats_beta`. When `max_skips_in_a_row` relative-limit explosions came
//! in a row, the statistics no longer describe the gradients (skipping changes nothing
//! when the same batch comes back, as in a one-batch overfit, and a lasting change of
//! regime would stop training for good): the next such norm is accepted (clipped), and
//! the statistics start again from it. The absolute limit is never relaxed. A step is clean when none of the checks above fired.
//! Everything the guard knows is in [`GuardState`], which checkpoints save.

use serde::{Deserialize, Serialize};

/// What to do with gradient values that are NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NonFiniteGrads {
    /// Replace them by zero and go on with the update.
    #[default]
    Zero,
    /// Skip the whole update.
    Skip,
}

/// How gradients are clipped (step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClipMode {
    /// Clip the global norm to `max_grad_norm`.
    #[default]
    Fixed,
    /// Clip to running mean + `clip_z` x running std (fixed until warmed up).
    Adaptive,
    /// No clipping.
    None,
}

/// Settings of the explosion guard (`[guard]` in the run configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// An utterance whose loss is above this (per label under mean reduction, its sum
    /// under sum reduction) is masked out like a non-finite one (none by default).
    pub max_loss: Option<f64>,
    /// What to do with non-finite gradient values.
    pub nonfinite_grads: NonFiniteGrads,
    /// Absolute gradient-norm limit above which the update is skipped (none by default).
    pub grad_norm_limit: Option<f64>,
    /// Relative limit: a norm above this many times its running mean is an explosion
    /// (once warmed up). `None` turns the relative test off.
    pub grad_norm_factor: Option<f64>,
    /// Accepted norms seen before the relative test and adaptive clipping apply.
    pub stats_warmup_steps: u64,
    /// Smoothing of the running norm statistics after warm-up (0..1).
    pub stats_beta: f64,
    /// Factor applied to the learning-rate scale at each explosion.
    pub lr_decay: f64,
    /// Lowest learning-rate scale explosions can push it to.
    pub lr_floor: f64,
    /// Clean steps in a row before the learning-rate scale climbs back one notch.
    pub recovery_steps: u64,
    /// Clipping mode.
    pub clip: ClipMode,
    /// Fixed clipping norm (also the adaptive mode's value before warm-up).
    pub max_grad_norm: f64,
    /// Standard deviations above the running mean for adaptive clipping.
    pub clip_z: f64,
    /// An utterance involved in at least this many events is written to
    /// `quarantine.txt`; one named culprit of this many loss events (its own loss was
    /// bad) is also left out of the rest of the run.
    pub quarantine_after: u32,
    /// Relative-limit explosions in a row after which the next one is accepted and the
    /// running statistics restart (0: skip for ever).
    pub max_skips_in_a_row: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_loss: None,
            nonfinite_grads: NonFiniteGrads::Zero,
            grad_norm_limit: None,
            grad_norm_factor: Some(10.0),
            stats_warmup_steps: 20,
            stats_beta: 0.98,
            lr_decay: 0.5,
            lr_floor: 0.01,
            recovery_steps: 50,
            clip: ClipMode::Fixed,
            max_grad_norm: 1.0,
            clip_z: 3.0,
            quarantine_after: 2,
            max_skips_in_a_row: 5,
        }
    }
}

/// Everything the guard remembers between steps (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// Multiplier of the scheduled learning rate (1 when nothing went wrong).
    pub lr_scale: f64,
    /// Clean optimizer steps since the last event.
    pub clean_steps: u64,
    /// Running mean of accepted gradient norms.
    pub norm_mean: f64,
    /// Running variance of accepted gradient norms.
    pub norm_var: f64,
    /// Accepted gradient norms seen.
    pub norm_count: u64,
    /// Explosions since the last accepted update.
    #[serde(default)]
    pub explosions_in_a_row: u64,
    /// Event counters for the end-of-run summary.
    pub counts: EventCounts,
}

impl Default for GuardState {
    fn default() -> Self {
        GuardState {
            lr_scale: 1.0,
            clean_steps: 0,
            norm_mean: 0.0,
            norm_var: 0.0,
            norm_count: 0,
            explosions_in_a_row: 0,
            counts: EventCounts::default(),
        }
    }
}

/// How many times each kind of event happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Utterance losses masked out because they were NaN or infinite (or the labels
    /// did not fit the frames).
    pub nonfinite_loss: u64,
    /// Utterance losses masked out because they were above `max_loss`.
    pub high_loss: u64,
    /// Steps with non-finite gradient values (zeroed or skipped).
    pub nonfinite_grads: u64,
    /// Non-finite gradient values seen, in all.
    pub nonfinite_grad_values: u64,
    /// Updates skipped because of an exploding gradient norm.
    pub explosions: u64,
    /// Updates skipped for any reason (non-finite gradients in skip mode, explosions).
    pub skipped_updates: u64,
    /// Learning-rate scale recoveries.
    pub recoveries: u64,
    /// Updates whose gradients were clipped.
    pub clipped: u64,
}

/// Something the guard noticed; the loop writes it to `metrics.jsonl` with the step and
/// the utterance ids of the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GuardEvent {
    /// Utterance losses were NaN or infinite (or their labels did not fit their
    /// frames): they were masked out of the batch loss, or the batch was skipped when
    /// none was left.
    NonfiniteLoss {
        /// The worst of those losses (infinite for labels that do not fit).
        #[serde(with = "crate::metrics::float")]
        loss: f64,
    },
    /// Utterance losses were above `max_loss`: masked out as above.
    HighLoss {
        /// The highest of those losses.
        loss: f64,
        /// The limit.
        max_loss: f64,
    },
    /// Gradient values were NaN or infinite.
    NonfiniteGrads {
        /// How many values.
        count: u64,
        /// `zeroed` or `skipped` (the update).
        action: NonFiniteGrads,
    },
    /// The gradient norm exploded: the update was skipped and the rate scaled down.
    Explosion {
        /// The global gradient norm.
        #[serde(with = "crate::metrics::float")]
        grad_norm: f64,
        /// The limit it crossed.
        limit: f64,
        /// The learning-rate scale from now on.
        lr_scale: f64,
    },
    /// After enough clean steps the learning-rate scale climbed back.
    Recovery {
        /// The learning-rate scale from now on.
        lr_scale: f64,
    },
    /// Watchdog (not a guard decision): nearly all eval outputs were empty after
    /// warm-up.
    BlankCollapse {
        /// Fraction of empty eval outputs.
        blank_fraction: f64,
    },
}

impl GuardEvent {
    /// The event's name as written in `metrics.jsonl`.
    pub fn name(&self) -> &'static str {
        match self {
            GuardEvent::NonfiniteLoss { .. } => "nonfinite_loss",
            GuardEvent::HighLoss { .. } => "high_loss",
            GuardEvent::NonfiniteGrads { .. } => "nonfinite_grads",
            GuardEvent::Explosion { .. } => "explosion",
            GuardEvent::Recovery { .. } => "recovery",
            GuardEvent::BlankCollapse { .. } => "blank_collapse",
        }
    }

    /// Whether the utterances of the batch are suspects (all but recoveries).
    pub fn implicates_batch(&self) -> bool {
        !matches!(
            self,
            GuardEvent::Recovery { .. } | GuardEvent::BlankCollapse { .. }
        )
    }
}

/// A loss event of one micro-batch and the utterances it blames.
#[derive(Debug, Clone, PartialEq)]
pub struct LossEvent {
    /// The event.
    pub event: GuardEvent,
    /// Positions in the batch of the utterances named culprits.
    pub culprits: Vec<usize>,
}

/// Outcome of the loss check of one micro-batch (step 2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LossCheck {
    /// Positions of the utterances whose losses go backward (none: skip the batch).
    pub keep: Vec<usize>,
    /// A non-finite-loss event and a high-loss event, when there were such losses.
    pub events: Vec<LossEvent>,
}

/// The largest value, NaN when there is one.
fn worst(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::NEG_INFINITY, |w, v| {
        if v.is_nan() || w.is_nan() {
            f64::NAN
        } else {
            w.max(v)
        }
    })
}

/// Decision after counting non-finite gradient values (step 4).
#[derive(Debug, Clone, PartialEq)]
pub enum NonFiniteDecision {
    /// All values finite.
    Clean,
    /// Zero the non-finite values and go on.
    Zero(GuardEvent),
    /// Skip the update.
    Skip(GuardEvent),
}

/// Decision after the gradient norm (steps 6 and 7).
#[derive(Debug, Clone, PartialEq)]
pub enum NormDecision {
    /// Apply the update, first scaling the gradients by `clip_coef` (1 = untouched);
    /// `lr_scale` multiplies the scheduled learning rate; `recovery` is set when the
    /// scale just climbed back.
    Update {
        /// Factor to multiply every gradient by (min(1, clip_norm / norm)).
        clip_coef: f64,
        /// The norm clipped to, when clipping applies.
        clip_norm: Option<f64>,
        /// Multiplier of the scheduled learning rate.
        lr_scale: f64,
        /// A recovery that happened at this step.
        recovery: Option<GuardEvent>,
    },
    /// Skip the update (explosion).
    Skip(GuardEvent),
}

/// The explosion guard (see the module documentation).
#[derive(Debug, Clone)]
pub struct ExplosionGuard {
    config: GuardConfig,
    state: GuardState,
    step_had_event: bool,
}

impl ExplosionGuard {
    /// A guard with fresh state.
    pub fn new(config: GuardConfig) -> Self {
        Self::with_state(config, GuardState::default())
    }

    /// A guard resuming from saved state.
    pub fn with_state(config: GuardConfig, state: GuardState) -> Self {
        ExplosionGuard {
            config,
            state,
            step_had_event: false,
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &GuardState {
        &self.state
    }

    /// The settings.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The current learning-rate scale.
    pub fn lr_scale(&self) -> f64 {
        self.state.lr_scale
    }

    fn event(&mut self) {
        self.step_had_event = true;
        self.state.clean_steps = 0;
    }

    /// Step 2 for one micro-batch: each utterance's loss as the reduction counts it
    /// (per label under mean reduction) and whether its labels fit its frames
    /// (`feasible`, same order). See the module documentation.
    pub fn check_losses(&mut self, losses: &[f64], feasible: &[bool]) -> LossCheck {
        let mut check = LossCheck::default();
        let (mut nonfinite, mut high) = (Vec::new(), Vec::new());
        for (i, (&loss, &fits)) in losses.iter().zip(feasible).enumerate() {
            if !fits || !loss.is_finite() {
                nonfinite.push(i);
            } else if self.config.max_loss.is_some_and(|m| loss > m) {
                high.push(i);
            } else {
                check.keep.push(i);
            }
        }
        // With nothing left to compare with, only labels that cannot fit are blamed.
        let blame = |positions: &[usize]| -> Vec<usize> {
            positions
                .iter()
                .copied()
                .filter(|&i| !check.keep.is_empty() || !feasible[i])
                .collect()
        };
        let mut events = Vec::new();
        if !nonfinite.is_empty() {
            self.state.counts.nonfinite_loss += nonfinite.len() as u64;
            let loss = worst(nonfinite.iter().map(|&i| {
                if feasible[i] {
                    losses[i]
                } else {
                    f64::INFINITY
                }
            }));
            events.push(LossEvent {
                event: GuardEvent::NonfiniteLoss { loss },
                culprits: blame(&nonfinite),
            });
        }
        if let (false, Some(max_loss)) = (high.is_empty(), self.config.max_loss) {
            self.state.counts.high_loss += high.len() as u64;
            let loss = worst(high.iter().map(|&i| losses[i]));
            events.push(LossEvent {
                event: GuardEvent::HighLoss { loss, max_loss },
                culprits: blame(&high),
            });
        }
        if !events.is_empty() {
            self.event();
        }
        check.events = events;
        check
    }

    /// Step 4: the number of non-finite gradient values after backward.
    pub fn check_nonfinite_grads(&mut self, count: u64) -> NonFiniteDecision {
        if count == 0 {
            return NonFiniteDecision::Clean;
        }
        self.state.counts.nonfinite_grads += 1;
        self.state.counts.nonfinite_grad_values += count;
        self.event();
        let event = GuardEvent::NonfiniteGrads {
            count,
            action: self.config.nonfinite_grads,
        };
        match self.config.nonfinite_grads {
            NonFiniteGrads::Zero => NonFiniteDecision::Zero(event),
            NonFiniteGrads::Skip => {
                self.state.counts.skipped_updates += 1;
                NonFiniteDecision::Skip(event)
            }
        }
    }

    fn warmed_up(&self) -> bool {
        self.state.norm_count >= self.config.stats_warmup_steps.max(1)
    }

    /// The norm above which an update is an explosion, if any.
    pub fn explosion_limit(&self) -> Option<f64> {
        let relative = match self.config.grad_norm_factor {
            Some(k) if self.warmed_up() => Some(k * self.state.norm_mean),
            _ => None,
        };
        match (self.config.grad_norm_limit, relative) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// Steps 6 and 7: the global gradient norm of an update about to be applied.
    /// Also ends the optimizer step for the clean-step count (call once per update
    /// that reached this point).
    pub fn check_grad_norm(&mut self, grad_norm: f64) -> NormDecision {
        let limit = self.explosion_limit();
        let mut exploded = !grad_norm.is_finite() || limit.is_some_and(|l| grad_norm > l);
        let within_absolute = self.config.grad_norm_limit.is_none_or(|a| grad_norm <= a);
        if exploded
            && grad_norm.is_finite()
            && within_absolute
            && self.config.max_skips_in_a_row > 0
            && self.state.explosions_in_a_row >= u64::from(self.config.max_skips_in_a_row)
        {
            // Only the relative limit objects, again and again: restart the statistics
            // from this norm instead of skipping for ever (module documentation).
            self.state.norm_count = 0;
            self.state.norm_mean = 0.0;
            self.state.norm_var = 0.0;
            exploded = false;
        }
        if exploded {
            self.state.explosions_in_a_row += 1;
            self.state.counts.explosions += 1;
            self.state.counts.skipped_updates += 1;
            self.state.lr_scale = (self.state.lr_scale * self.config.lr_decay)
                .max(self.config.lr_floor)
                .min(1.0);
            self.event();
            self.step_had_event = false;
            return NormDecision::Skip(GuardEvent::Explosion {
                grad_norm,
                limit: limit.unwrap_or(f64::INFINITY),
                lr_scale: self.state.lr_scale,
            });
        }
        self.state.explosions_in_a_row = 0;
        // Clipping threshold from the statistics before this norm joins them.
        let clip_norm = match self.config.clip {
            ClipMode::None => None,
            ClipMode::Fixed => Some(self.config.max_grad_norm),
            ClipMode::Adaptive if self.warmed_up() => {
                Some(self.state.norm_mean + self.config.clip_z * self.state.norm_var.sqrt())
            }
            ClipMode::Adaptive => Some(self.config.max_grad_norm),
        };
        self.observe_norm(grad_norm);
        let clip_coef = match clip_norm {
            Some(c) if grad_norm > c && grad_norm > 0.0 => {
                self.state.counts.clipped += 1;
                c / grad_norm
            }
            _ => 1.0,
        };
        let mut recovery = None;
        if self.step_had_event {
            self.step_had_event = false;
        } else {
            self.state.clean_steps += 1;
            if self.state.lr_scale < 1.0 && self.state.clean_steps >= self.config.recovery_steps {
                self.state.lr_scale = (self.state.lr_scale / self.config.lr_decay).min(1.0);
                self.state.clean_steps = 0;
                self.state.counts.recoveries += 1;
                recovery = Some(GuardEvent::Recovery {
                    lr_scale: self.state.lr_scale,
                });
            }
        }
        NormDecision::Update {
            clip_coef,
            clip_norm,
            lr_scale: self.state.lr_scale,
            recovery,
        }
    }

    /// Data parallelism: the utterance losses another rank masked out in this step
    /// (`nonfinite` non-finite or infeasible, `high` above `max_loss`), counted as if
    /// they were this rank's, so that every rank's guard state stays the same.
    pub fn absorb_peer_loss_checks(&mut self, nonfinite: u64, high: u64) {
        self.state.counts.nonfinite_loss += nonfinite;
        self.state.counts.high_loss += high;
        if nonfinite + high > 0 {
            self.event();
        }
    }

    /// Ends an optimizer step that never reached [`Self::check_grad_norm`] (every
    /// micro-batch skipped, or non-finite gradients in skip mode).
    pub fn end_skipped_step(&mut self) {
        self.step_had_event = false;
    }

    fn observe_norm(&mut self, norm: f64) {
        let s = &mut self.state;
        s.norm_count += 1;
        let alpha = (1.0 / s.norm_count as f64).max(1.0 - self.config.stats_beta);
        let delta = norm - s.norm_mean;
        s.norm_mean += alpha * delta;
        s.norm_var = (1.0 - alpha) * (s.norm_var + alpha * delta * delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(decision: NormDecision) -> (f64, f64, Option<GuardEvent>) {
        match decision {
            NormDecision::Update {
                clip_coef,
                lr_scale,
                recovery,
                ..
            } => (clip_coef, lr_scale, recovery),
            NormDecision::Skip(e) => panic!("unexpected skip: {e:?}"),
        }
    }

    #[test]
    fn bad_losses_are_masked_per_utterance_and_culprits_named() {
        let mut g = ExplosionGuard::new(GuardConfig {
            max_loss: Some(100.0),
            ..GuardConfig::default()
        });
        let all = [true; 5];
        assert_eq!(
            g.check_losses(&[3.0, 4.0], &all[..2]),
            LossCheck {
                keep: vec![0, 1],
                events: vec![]
            }
        );
        // One infinite, one NaN, one high, one infeasible (finite under zero_infinity).
        let check = g.check_losses(
            &[3.0, f64::INFINITY, f64::NAN, 121.0, 0.0],
            &[true, true, true, true, false],
        );
        assert_eq!(check.keep, vec![0]);
        assert_eq!(check.events.len(), 2);
        assert!(
            matches!(check.events[0].event, GuardEvent::NonfiniteLoss { loss } if loss.is_nan()),
            "a NaN is the worst loss"
        );
        assert_eq!(check.events[0].culprits, vec![1, 2, 4]);
        assert_eq!(
            check.events[1],
            LossEvent {
                event: GuardEvent::HighLoss {
                    loss: 121.0,
                    max_loss: 100.0
                },
                culprits: vec![3]
            }
        );
        assert_eq!(g.state().counts.nonfinite_loss, 3);
        assert_eq!(g.state().counts.high_loss, 1);
        // Every loss bad: the batch is skipped and only labels that cannot fit are
        // blamed (a model gone NaN makes every loss NaN).
        let check = g.check_losses(&[f64::NAN, f64::NAN, 0.0], &[true, true, false]);
        assert!(check.keep.is_empty());
        assert_eq!(check.events[0].culprits, vec![2]);
        match check.events[0].event {
            GuardEvent::NonfiniteLoss { loss } => assert!(loss.is_nan()),
            ref other => panic!("{other:?}"),
        }
        let check = g.check_losses(&[f64::INFINITY], &[false]);
        assert_eq!(
            check.events[0].event,
            GuardEvent::NonfiniteLoss {
                loss: f64::INFINITY
            }
        );
    }

    #[test]
    fn nonfinite_grads_are_zeroed_or_skip_per_config() {
        let mut g = ExplosionGuard::new(GuardConfig::default());
        assert_eq!(g.check_nonfinite_grads(0), NonFiniteDecision::Clean);
        assert!(matches!(
            g.check_nonfinite_grads(7),
            NonFiniteDecision::Zero(GuardEvent::NonfiniteGrads { count: 7, .. })
        ));
        let mut g = ExplosionGuard::new(GuardConfig {
            nonfinite_grads: NonFiniteGrads::Skip,
            ..GuardConfig::default()
        });
        assert!(matches!(
            g.check_nonfinite_grads(3),
            NonFiniteDecision::Skip(_)
        ));
        assert_eq!(g.state().counts.nonfinite_grad_values, 3);
        assert_eq!(g.state().counts.skipped_updates, 1);
    }

    #[test]
    fn absolute_limit_skips_decays_with_floor_and_recovers() {
        let mut g = ExplosionGuard::new(GuardConfig {
            grad_norm_limit: Some(5.0),
            grad_norm_factor: None,
            lr_decay: 0.5,
            lr_floor: 0.2,
            recovery_steps: 3,
            clip: ClipMode::None,
            ..GuardConfig::default()
        });
        assert_eq!(update(g.check_grad_norm(1.0)).1, 1.0);
        for want in [0.5, 0.25, 0.2, 0.2] {
            match g.check_grad_norm(6.0) {
                NormDecision::Skip(GuardEvent::Explosion {
                    lr_scale, limit, ..
                }) => {
                    assert_eq!(lr_scale, want);
                    assert_eq!(limit, 5.0);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(g.state().counts.explosions, 4);
        // Three clean steps climb back one notch, three more another, and so on to 1.
        let mut scales = Vec::new();
        let mut recoveries = 0;
        for _ in 0..9 {
            let (_, scale, recovery) = update(g.check_grad_norm(1.0));
            recoveries += usize::from(recovery.is_some());
            scales.push(scale);
        }
        assert_eq!(scales, [0.2, 0.2, 0.4, 0.4, 0.4, 0.8, 0.8, 0.8, 1.0]);
        assert_eq!(recoveries, 3);
    }

    #[test]
    fn relative_limit_applies_after_warmup_and_ignores_explosions_in_stats() {
        let mut g = ExplosionGuard::new(GuardConfig {
            grad_norm_factor: Some(10.0),
            stats_warmup_steps: 4,
            clip: ClipMode::None,
            ..GuardConfig::default()
        });
        // Before warm-up nothing is an explosion.
        for _ in 0..3 {
            update(g.check_grad_norm(2.0));
        }
        assert_eq!(g.explosion_limit(), None);
        update(g.check_grad_norm(2.0));
        assert_eq!(g.explosion_limit(), Some(20.0));
        assert!(matches!(g.check_grad_norm(25.0), NormDecision::Skip(_)));
        // The exploded norm did not move the mean.
        assert_eq!(g.state().norm_mean, 2.0);
        update(g.check_grad_norm(19.0));
        assert!(matches!(
            g.check_grad_norm(f64::NAN),
            NormDecision::Skip(GuardEvent::Explosion { .. })
        ));
    }

    #[test]
    fn relative_explosions_in_a_row_restart_the_statistics_instead_of_skipping_for_ever() {
        let mut g = ExplosionGuard::new(GuardConfig {
            stats_warmup_steps: 3,
            max_skips_in_a_row: 3,
            ..GuardConfig::default()
        });
        for _ in 0..3 {
            update(g.check_grad_norm(2.0));
        }
        assert_eq!(g.explosion_limit(), Some(20.0));
        // The same too-large norm every step (the same batch and weights come back).
        for _ in 0..3 {
            assert!(matches!(g.check_grad_norm(500.0), NormDecision::Skip(_)));
        }
        let (clip_coef, _, _) = update(g.check_grad_norm(500.0));
        assert!(
            (clip_coef - 1.0 / 500.0).abs() < 1e-12,
            "clipped to max_grad_norm"
        );
        assert_eq!(g.state().counts.explosions, 3);
        // The statistics restarted from 500: no relative limit until warmed up again.
        assert_eq!(g.state().norm_count, 1);
        assert_eq!(g.explosion_limit(), None);
        assert_eq!(g.state().explosions_in_a_row, 0);
        // An absolute limit is never relaxed.
        let mut g = ExplosionGuard::new(GuardConfig {
            grad_norm_limit: Some(100.0),
            max_skips_in_a_row: 2,
            ..GuardConfig::default()
        });
        for _ in 0..10 {
            assert!(matches!(g.check_grad_norm(500.0), NormDecision::Skip(_)));
        }
    }

    #[test]
    fn clipping_fixed_and_adaptive() {
        let mut g = ExplosionGuard::new(GuardConfig {
            max_grad_norm: 1.0,
            grad_norm_factor: None,
            ..GuardConfig::default()
        });
        assert_eq!(update(g.check_grad_norm(0.5)).0, 1.0);
        assert_eq!(update(g.check_grad_norm(4.0)).0, 0.25);
        assert_eq!(g.state().counts.clipped, 1);

        let mut g = ExplosionGuard::new(GuardConfig {
            clip: ClipMode::Adaptive,
            clip_z: 2.0,
            max_grad_norm: 100.0,
            stats_warmup_steps: 4,
            grad_norm_factor: None,
            ..GuardConfig::default()
        });
        for norm in [1.0, 3.0, 1.0, 3.0] {
            assert_eq!(update(g.check_grad_norm(norm)).0, 1.0);
        }
        // Exact statistics over the warm-up: mean 2, population variance 1.
        assert!((g.state().norm_mean - 2.0).abs() < 1e-12);
        assert!((g.state().norm_var - 1.0).abs() < 1e-12);
        match g.check_grad_norm(8.0) {
            NormDecision::Update {
                clip_coef,
                clip_norm,
                ..
            } => {
                assert_eq!(clip_norm, Some(4.0));
                assert_eq!(clip_coef, 0.5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_step_with_an_event_is_not_clean() {
        let mut g = ExplosionGuard::new(GuardConfig {
            grad_norm_limit: Some(5.0),
            recovery_steps: 2,
            clip: ClipMode::None,
            ..GuardConfig::default()
        });
        assert!(matches!(g.check_grad_norm(9.0), NormDecision::Skip(_)));
        update(g.check_grad_norm(1.0));
        // A zeroed non-finite gradient makes the next step not clean.
        assert!(matches!(
            g.check_nonfinite_grads(1),
            NonFiniteDecision::Zero(_)
        ));
        let (_, scale, recovery) = update(g.check_grad_norm(1.0));
        assert_eq!((scale, recovery), (0.5, None));
        update(g.check_grad_norm(1.0));
        let (_, scale, recovery) = update(g.check_grad_norm(1.0));
        assert_eq!(scale, 1.0);
        assert!(recovery.is_some());
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut g = ExplosionGuard::new(GuardConfig::default());
        update(g.check_grad_norm(0.7));
        g.check_losses(&[f64::NAN], &[true]);
        let json = serde_json::to_string(g.state()).unwrap();
        let back: GuardState = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, g.state());
    }
}
