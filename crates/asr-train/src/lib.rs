//! CTC fine-tuning loop with explosion handling, evaluation and checkpoints; Whisper
//! evaluation and transcription by generation ([`whisper`]).
//!
//! `asr-train run` trains a wav2vec2 / HuBERT CTC model ([`asr_model`]) on shards
//! written by `asr-data pack`; [`trainer::run`] is the loop, [`guard`] the explosion
//! handling, [`data`] the batching and prefetching, [`eval`] WER/CER evaluation,
//! [`score`] the `asr-train score` command; data parallelism over several
//! processes (torchrun, Slurm, `--nproc-per-node`) is the same loop.

pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod data;
mod distributed;
pub mod eval;
pub mod guard;
pub mod metrics;
pub mod model_card;
pub mod optim;
pub mod plot;
pub mod runtime;
pub mod schedule;
pub mod score;
pub mod shards;
pub mod task;
pub mod tensorboard;
pub mod trainer;
pub mod transcribe;
pub mod whisper;
