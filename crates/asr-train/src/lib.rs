//! CTC fine-tuning loop with explosion handling, evaluation and checkpoints.

pub mod config;
pub mod data;
pub mod guard;
pub mod metrics;
pub mod plot;
pub mod schedule;
pub mod score;
