//! CTC fine-tuning loop with explosion handling, evaluation and checkpoints.

pub mod score;
