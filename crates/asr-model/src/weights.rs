//! Weights in and out: `model.safetensors` (and sharded `*.index.json`),
//! `pytorch_model.bin`, with Hugging Face's key renames, name and shape checks.
//!
//! Loading copies each checkpoint tensor into the model's existing float32 tensor
//! (`copy_` converts fp16/bf16 checkpoints), so the model's dtype never follows the
//! file's (one of tch's `VarStore::load` traps, see tch-loading.md).
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use crate::error::ModelError;
use crate::params::ParamStore;

/// The weight files looked for in a model folder, in order of preference.
pub const WEIGHT_FILES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// What loading a checkpoint did beyond copying matching tensors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The weights file (or index) read.
    pub weights_file: PathBuf,
    /// Model tensors absent from the checkpoint and left at their random init, as
    /// transformers does: the CTC head of a pretraining-only checkpoint
    /// (wav2vec2-base, XLS-R), `masked_spec_embed` when the checkpoint had no masking.
    pub newly_initialized: Vec<String>,
    /// Checkpoint tensors the CTC model has no use for (the quantizer and projections
    /// of `Wav2Vec2ForPreTraining`), ignored; sorted by name.
    pub ignored: Vec<String>,
}

/// Finds the weights file of a model folder.
pub fn find_weights(dir: &Path) -> Result<PathBuf, ModelError> {
    WEIGHT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| ModelError::MissingFile {
            path: dir.to_path_buf(),
            what: format!("no weights: none of {} in this folder", WEIGHT_FILES.join(", ")),
            hint: "pass the folder that holds the checkpoint, or a config.json file to start from random weights"
                .into(),
        })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Double => Dtype::F64,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// Reads every tensor of a `.safetensors` file as CPU tensors (memory-mapped, one copy
/// per tensor).
pub(crate) fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the map is read-only and dropped before this function returns; a file
    // truncated by another process meanwhile is the usual mmap caveat.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format_error = |reason: String| ModelError::WeightsFormat {
        path: path.to_path_buf(),
        reason,
    };
    let tensors = SafeTensors::deserialize(&mmap)
        .map_err(|e| format_error(format!("not a valid safetensors file: {e:?}")))?;
    let mut out = Vec::with_capacity(tensors.len());
    for (name, view) in tensors.tensors() {
        let kind = kind_of(view.dtype())
            .ok_or_else(|| format_error(format!("{name}: unsupported dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|d| *d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| format_error(format!("{name}: {e}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Reads a sharded checkpoint through its `*.index.json` (`weight_map`: name -> shard).
fn read_sharded(index: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let format_error = |reason: String| ModelError::WeightsFormat {
        path: index.to_path_buf(),
        reason,
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format_error(format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format_error("no \"weight_map\" object".into()))?;
    let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for shard in shards {
        out.extend(read_tensor_file(&dir.join(shard))?);
    }
    Ok(out)
}

/// Reads a weights file of any supported kind, by name.
pub(crate) fn read_tensor_file(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".index.json") {
        read_sharded(path)
    } else if name.ends_with(".safetensors") {
        read_safetensors(path)
    } else {
        crate::pickle::read_pytorch_bin(path)
    }
}

/// The checkpoint name a model tensor is stored under, after transformers' renames on
/// load: `weight_g`/`weight_v` (old `torch.nn.utils.weight_norm`) are the
/// `parametrizations.weight.original0/1` of the new parametrization API, and
/// `LayerNorm.gamma/beta` are `weight/bias`.
fn canonical_name(name: &str) -> String {
    let renamed = if let Some(stem) = name.strip_suffix(".weight_g") {
        format!("{stem}.parametrizations.weight.original0")
    } else if let Some(stem) = name.strip_suffix(".weight_v") {
        format!("{stem}.parametrizations.weight.original1")
    } else if let Some(stem) = name.strip_suffix("LayerNorm.gamma") {
        format!("{stem}LayerNorm.weight")
    } else if let Some(stem) = name.strip_suffix("LayerNorm.beta") {
        format!("{stem}LayerNorm.bias")
    } else {
        name.to_string()
    };
    renamed
}

/// Checkpoint tensors of `Wav2Vec2ForPreTraining` a CTC model does not have.
const PRETRAINING_ONLY: [&str; 3] = ["quantizer.", "project_hid.", "project_q."];

/// Copies checkpoint tensors into the store, by name, after renames. `prefix` is the
/// base model's (`wav2vec2` / `hubert`); a bare base-model checkpoint (keys without it)
/// gets it added, as transformers does.
pub(crate) fn load_into(
    store: &ParamStore,
    tensors: Vec<(String, Tensor)>,
    prefix: &str,
    source: &Path,
) -> Result<LoadReport, ModelError> {
    let dotted = format!("{prefix}.");
    let add_prefix = !tensors
        .iter()
        .any(|(n, _)| n.starts_with(&dotted) || n.starts_with("lm_head."))
        && tensors
            .iter()
            .any(|(n, _)| n.starts_with("feature_extractor."));
    let mut by_name: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    let mut order = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let name = canonical_name(&name);
        let name = if add_prefix {
            format!("{dotted}{name}")
        } else {
            name
        };
        order.push(name.clone());
        by_name.insert(name, tensor);
    }

    let mut problems = Vec::new();
    let mut newly_initialized = Vec::new();
    let masked_spec_embed = format!("{dotted}masked_spec_embed");
    let head_missing =
        !by_name.contains_key("lm_head.weight") && !by_name.contains_key("lm_head.bias");
    for entry in store.entries() {
        match by_name.get(&entry.name) {
            Some(src) => {
                let want = entry.tensor.size();
                if src.size() != want {
                    problems.push(format!(
                        "shape mismatch for {}: checkpoint {:?}, config {:?}",
                        entry.name,
                        src.size(),
                        want
                    ));
                    continue;
                }
                tch::no_grad(|| {
                    let mut dst = entry.tensor.shallow_clone();
                    dst.f_copy_(src)
                })
                .map_err(|e| ModelError::WeightsFormat {
                    path: source.to_path_buf(),
                    reason: format!("{}: {e}", entry.name),
                })?;
            }
            None => {
                let tolerated = entry.name == masked_spec_embed
                    || (head_missing && entry.name.starts_with("lm_head."))
                    || entry.name.ends_with(".num_batches_tracked");
                if tolerated {
                    newly_initialized.push(entry.name.clone());
                } else {
                    problems.push(format!(
                        "missing tensor {} {:?}",
                        entry.name,
                        entry.tensor.size()
                    ));
                }
            }
        }
    }
    let mut ignored = Vec::new();
    for name in &order {
        if store.entry(name).is_some() {
            continue;
        }
        if name == &masked_spec_embed || PRETRAINING_ONLY.iter().any(|p| name.starts_with(p)) {
            ignored.push(name.clone());
        } else {
            problems.push(format!(
                "unexpected tensor {name} (the config describes no such parameter)"
            ));
        }
    }
    if !problems.is_empty() {
        const SHOWN: usize = 30;
        let total = problems.len();
        problems.truncate(SHOWN);
        if total > SHOWN {
            problems.push(format!("... and {} more", total - SHOWN));
        }
        return Err(ModelError::WeightsMismatch {
            path: source.to_path_buf(),
            problems,
        });
    }
    ignored.sort();
    Ok(LoadReport {
        weights_file: source.to_path_buf(),
        newly_initialized,
        ignored,
    })
}

/// A tensor's bytes, ready for safetensors.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn raw(tensor: &Tensor, name: &str) -> Result<RawTensor, ModelError> {
    let tensor = tensor.detach().to_device(Device::Cpu).contiguous();
    let kind = tensor.kind();
    let dtype = dtype_of(kind)
        .ok_or_else(|| ModelError::Input(format!("{name}: cannot save dtype {kind:?}")))?;
    let numel = tensor.numel();
    let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
    tensor.f_copy_data_u8(&mut data, numel)?;
    let shape = tensor.size().iter().map(|d| *d as usize).collect();
    Ok(RawTensor { dtype, shape, data })
}

/// Writes `tensors` to a `.safetensors` file with `{"format": "pt"}` metadata (what
/// transformers writes and expects), through a temporary file renamed into place.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), ModelError> {
    let mut raws = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        raws.push((name.clone(), raw(tensor, name)?));
    }
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let tmp = path.with_extension("safetensors.partial");
    safetensors::tensor::serialize_to_file(
        raws.iter().map(|(n, r)| (n.as_str(), r)),
        &metadata,
        &tmp,
    )
    .map_err(|e| ModelError::WeightsFormat {
        path: tmp.clone(),
        reason: format!("{e:?}"),
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The store's tensors to save (parameters and buffers) under their HF names, less
/// `masked_spec_embed` when the config no longer masks (transformers would not expect it).
pub(crate) fn state_dict(
    store: &ParamStore,
    keep_masked_spec_embed: bool,
) -> Vec<(String, Tensor)> {
    store
        .entries()
        .iter()
        .filter(|e| keep_masked_spec_embed || !e.name.ends_with(".masked_spec_embed"))
        .map(|e| (e.name.clone(), e.tensor.shallow_clone()))
        .collect()
}

/// `dir/config.json`, or an error naming the folder and what a model folder holds
/// (`holds`, e.g. "config.json and model.safetensors or pytorch_model.bin").
pub(crate) fn config_json(
    dir: &Path,
    family: &str,
    holds: &str,
) -> Result<std::path::PathBuf, ModelError> {
    let path = dir.join("config.json");
    if path.is_file() {
        return Ok(path);
    }
    Err(ModelError::MissingFile {
        path: dir.to_path_buf(),
        what: "no config.json in this folder".into(),
        hint: format!("a {family} model folder holds {holds}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_old_weight_norm_and_gamma() {
        assert_eq!(
            canonical_name("wav2vec2.encoder.pos_conv_embed.conv.weight_g"),
            "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
        );
        assert_eq!(
            canonical_name("wav2vec2.encoder.pos_conv_embed.conv.weight_v"),
            "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1"
        );
        assert_eq!(canonical_name("a.LayerNorm.gamma"), "a.LayerNorm.weight");
        assert_eq!(canonical_name("lm_head.weight"), "lm_head.weight");
    }
}
