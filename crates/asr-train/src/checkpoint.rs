//! Checkpoints: `RUN/checkpoints/step-NNNNNNNN/` holding `model.safetensors` (every
//! model tensor under its Hugging Face name), `optimizer.safetensors` (AdamW moments)
//! and `state.json` ([`TrainState`]: step, data position, explosion-guard state, loss
//! scaler, best eval WER, early-stopping count, quarantine counts; schema
//! `schemas/train-checkpoint-state.schema.json`).
//!
//! A checkpoint is written under a temporary name and renamed when complete, so a
//! crash never leaves a half-written one under its final name; the oldest are deleted
//! beyond `keep_checkpoints`. No random-generator state is saved: every step seeds
//! libtorch and the masking generator from (seed, step), so the step, the data
//! position and the states above are all a resumed run needs to continue exactly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::data::DataPosition;
use crate::guard::GuardState;
use crate::metrics::Quarantine;
use crate::optim::LossScaler;

/// Version of the checkpoint layout.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// The JSON part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version ([`CHECKPOINT_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Updates AdamW applied (its bias-correction count).
    pub optimizer_steps: u64,
    /// Position of the next training batch.
    pub data_position: DataPosition,
    /// Explosion-guard state.
    pub guard: GuardState,
    /// fp16 loss scaler, when used.
    pub loss_scaler: Option<LossScaler>,
    /// Best eval WER so far and its step.
    pub best: Option<BestEval>,
    /// Evaluations since the best one (early stopping).
    pub evals_without_improvement: u32,
    /// Per-utterance event counts.
    pub quarantine: Quarantine,
    /// Audio seconds trained on so far.
    pub train_audio_s: f64,
    /// Wall-clock seconds of training so far (0 in checkpoints written before it was
    /// recorded).
    #[serde(default)]
    pub elapsed_s: f64,
    /// The seed of the run (a resumed run must use the same one).
    pub seed: u64,
    /// Data-parallel ranks of the run (absent: 1). The data position is per rank, so a
    /// resume must keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
}

/// The best evaluation so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestEval {
    /// Optimizer step.
    pub step: u64,
    /// Eval WER.
    pub wer: f64,
    /// Eval CER.
    pub cer: f64,
}

/// Reading or writing a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint's content is not usable.
    #[error("{path}: {reason}")]
    Invalid {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Folder holding a run's checkpoints.
pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// The checkpoints of a run, oldest first, with their steps.
pub fn list(run: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let dir = checkpoints_dir(run);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if entry.path().join("state.json").is_file() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn to_cpu(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .map(|(n, t)| (n, t.detach().to_device(Device::Cpu)))
        .collect()
}

/// Write a checkpoint and delete the oldest beyond `keep`. Returns its folder.
pub fn save(
    run: &Path,
    state: &TrainState,
    model_tensors: Vec<(String, Tensor)>,
    optimizer_tensors: Vec<(String, Tensor)>,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let final_dir = dir.join(format!("step-{:08}", state.step));
    let tmp = dir.join(format!(".tmp-step-{:08}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let write = |name: &str, tensors: Vec<(String, Tensor)>| {
        let path = tmp.join(name);
        asr_model::write_safetensors(&path, &to_cpu(tensors)).map_err(|e| {
            CheckpointError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            }
        })
    };
    write("model.safetensors", model_tensors)?;
    write("optimizer.safetensors", optimizer_tensors)?;
    let json = serde_json::to_string_pretty(state).map_err(|e| CheckpointError::Invalid {
        path: tmp.join("state.json"),
        reason: e.to_string(),
    })?;
    let state_path = tmp.join("state.json");
    std::fs::write(&state_path, json).map_err(io(&state_path))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    let all = list(run)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, old) in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(final_dir)
}

/// A checkpoint read back.
pub struct Loaded {
    /// Its folder.
    pub dir: PathBuf,
    /// The JSON state.
    pub state: TrainState,
    /// Model tensors (CPU).
    pub model: Vec<(String, Tensor)>,
    /// Optimizer tensors (CPU).
    pub optimizer: Vec<(String, Tensor)>,
}

/// Read the checkpoint in `dir`.
pub fn load(dir: &Path) -> Result<Loaded, CheckpointError> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid {
        path: state_path.clone(),
        reason: e.to_string(),
    })?;
    if state.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(CheckpointError::Invalid {
            path: state_path,
            reason: format!(
                "checkpoint format {} is not the supported {CHECKPOINT_FORMAT_VERSION}",
                state.format_version
            ),
        });
    }
    let read = |name: &str| {
        let path = dir.join(name);
        asr_model::read_weights(&path).map_err(|e| CheckpointError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    Ok(Loaded {
        dir: dir.to_path_buf(),
        state,
        model: read("model.safetensors")?,
        optimizer: read("optimizer.safetensors")?,
    })
}

/// Copy `tensors` into the model's tensors of the same names (every model tensor must
/// be there with its shape).
pub fn restore_model(
    params: &asr_model::ParamStore,
    tensors: &[(String, Tensor)],
    origin: &Path,
) -> Result<(), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: origin.to_path_buf(),
        reason,
    };
    let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    tch::no_grad(|| {
        for entry in params.entries() {
            let src = find(&entry.name)
                .ok_or_else(|| invalid(format!("no tensor {} for the model", entry.name)))?;
            if src.size() != entry.tensor.size() {
                return Err(invalid(format!(
                    "{} has shape {:?}, the model {:?}",
                    entry.name,
                    src.size(),
                    entry.tensor.size()
                )));
            }
            let mut dst = entry.tensor.shallow_clone();
            dst.f_copy_(src).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(())
    })
}
