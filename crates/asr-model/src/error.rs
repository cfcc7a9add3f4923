//! Errors of asr-model: each names the file, tensor or input at fault and, where
//! there is one, what to do about it.
use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong building, loading, running or saving a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// config.json is not valid JSON or has a key of the wrong type or value.
    #[error("{}: not a valid model config: {source}", path.display())]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The JSON error (with line and column).
        source: serde_json::Error,
    },
    /// config.json parses but describes a model that cannot be built.
    #[error("{}: {reason}", path.display())]
    ConfigInvalid {
        /// The config file (or `<preset>` / `<config>` for configs built in code).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The config has no `pad_token_id`, so there is no CTC blank.
    #[error("config has no pad_token_id: the CTC blank is the pad token; set pad_token_id in config.json")]
    NoBlank,
    /// A model folder lacks a file it needs.
    #[error("{}: {what}\nhint: {hint}", path.display())]
    MissingFile {
        /// The folder or file looked for.
        path: PathBuf,
        /// What is missing.
        what: String,
        /// What to do.
        hint: String,
    },
    /// A weights file is damaged or in a format this crate does not read.
    #[error("{}: {reason}", path.display())]
    WeightsFormat {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `pytorch_model.bin` in the pre-1.6 (non-zip) PyTorch format.
    #[error(
        "{}: legacy (pre-1.6, non-zip) PyTorch checkpoint format, which asr-model does not read\n\
         hint: re-save it with torch >= 1.6 (`torch.save(torch.load(f), f)`), or convert it once to \
         model.safetensors: python -c \"import torch; from safetensors.torch import save_file; \
         save_file({{k: v.contiguous() for k, v in torch.load('pytorch_model.bin').items()}}, \
         'model.safetensors', metadata={{'format': 'pt'}})\"",
        path.display()
    )]
    LegacyCheckpoint {
        /// The weights file.
        path: PathBuf,
    },
    /// The checkpoint's tensors do not match the model the config describes.
    #[error("{}: the weights do not match config.json:\n{}", path.display(), problems.join("\n"))]
    WeightsMismatch {
        /// The weights file (or folder, for sharded checkpoints).
        path: PathBuf,
        /// One line per problem: missing tensors, unexpected tensors, wrong shapes.
        problems: Vec<String>,
    },
    /// An unknown preset name.
    #[error("unknown model preset '{name}'; presets: {known}")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The preset names.
        known: String,
    },
    /// A model argument that is neither a preset, a config.json nor a model folder.
    #[error("{spec}: not a model folder (config.json + weights), a config.json file, or a preset ({known})")]
    BadModelSpec {
        /// The argument.
        spec: String,
        /// The preset names.
        known: String,
    },
    /// A Hugging Face Hub id (`org/name[@revision]`) that is neither in the cache nor
    /// downloadable.
    #[error("model {id}: {why}; looked up:\n  {}\nhint: {hint}", looked_up.join("\n  "))]
    HubModelNotFound {
        /// The id as given.
        id: String,
        /// Why nothing was found.
        why: String,
        /// Each place looked at, with what was (not) there.
        looked_up: Vec<String>,
        /// What to do.
        hint: String,
    },
    /// A forward or loss input of the wrong shape, type or content.
    #[error("invalid model input: {0}")]
    Input(String),
    /// A vocabulary that does not fit the model's head.
    #[error("vocabulary mismatch: {0}")]
    Vocab(String),
    /// The vocabulary file could not be read or written.
    #[error(transparent)]
    Text(#[from] asr_text::TextError),
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Errors of device selection ([`crate::device::select`]).
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The request string is not `auto`, `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device '{0}': use auto, cpu, cuda or cuda:N")]
    Parse(String),
    /// CUDA was asked for but libtorch_cuda.so could not be loaded.
    #[error(
        "CUDA was requested but libtorch's CUDA library could not be loaded:\n{tried}\n\
         hint: this binary links the CPU part of libtorch 2.11.0; on a CUDA machine put the \
         torch/lib folder of a torch==2.11.0 CUDA wheel (pip install torch==2.11.0) on \
         LD_LIBRARY_PATH, or set ASR_LIBTORCH_CUDA to its libtorch_cuda.so; or run with \
         --device cpu"
    )]
    CudaLibrary {
        /// What was tried and the loader's messages.
        tried: String,
    },
    /// libtorch_cuda loaded but no usable GPU is visible.
    #[error(
        "CUDA was requested but no CUDA device is available (libtorch_cuda loaded from {library}; \
         driver missing, CUDA_VISIBLE_DEVICES empty, or no GPU)\nhint: run nvidia-smi, or use --device cpu"
    )]
    NoCudaDevice {
        /// Where libtorch_cuda.so was loaded from.
        library: String,
    },
    /// `cuda:N` names a GPU that does not exist.
    #[error("cuda:{index} requested but only {count} CUDA device(s) are visible")]
    BadCudaIndex {
        /// The index asked for.
        index: usize,
        /// The number of visible devices.
        count: usize,
    },
}
