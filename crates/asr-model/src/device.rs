//! Choosing the device, and loading libtorch's CUDA half at run time.
//!
//! The binaries link the CPU part of libtorch 2.11.0 only (`tools/install-libtorch.sh`
//! installs the torch wheel's `libtorch_cpu.so` with an empty `libtorch.so`), so the
//! same executable runs on machines without a GPU. When a CUDA device is asked for,
//! [`select`] first loads `libtorch_cuda.so` with `dlopen(RTLD_NOW | RTLD_GLOBAL)`:
//! its static initializers register the CUDA backend with the already loaded
//! `libtorch_cpu.so`, after which `tch::Cuda::is_available()` answers truthfully.
//! This must happen before the first CUDA call, which `select` guarantees when it is
//! the first thing a program does with a device.
//!
//! Where `libtorch_cuda.so` is looked for, in order:
//! 1. `ASR_LIBTORCH_CUDA`, a full path to the file, when set;
//! 2. the library path: `LD_LIBRARY_PATH`, the executable's run path (the libtorch it
//!    was linked against), the system's loader cache.
//!
//! It must come from the same torch release (2.11.0), e.g. the `torch/lib` folder of
//! `pip install torch==2.11.0`, whose own run path finds cuBLAS, cuDNN and NCCL in the
//! wheel's `nvidia/` packages.
use std::ffi::{CStr, CString};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use tch::Device;

use crate::error::DeviceError;

/// Environment variable naming the `libtorch_cuda.so` to load.
pub const CUDA_LIBRARY_ENV: &str = "ASR_LIBTORCH_CUDA";

/// What the user asked for (`--device auto|cpu|cuda|cuda:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The first CUDA device when one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device (`None`: device 0); an error when CUDA is not usable.
    Cuda(Option<usize>),
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" | "gpu" => Ok(DeviceRequest::Cuda(None)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(index)) => Ok(DeviceRequest::Cuda(Some(index))),
                _ => Err(DeviceError::Parse(s.to_string())),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(None) => f.write_str("cuda"),
            DeviceRequest::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

/// The loaded CUDA backend.
#[derive(Debug, Clone)]
pub struct CudaRuntime {
    /// Where `libtorch_cuda.so` came from (the path or the bare name resolved by the loader).
    pub library: String,
    /// Number of visible CUDA devices (0 when the driver or GPU is missing).
    pub device_count: usize,
}

static CUDA: OnceLock<Result<CudaRuntime, String>> = OnceLock::new();

/// Loads `libtorch_cuda.so` once per process (see the module docs) and reports the
/// visible devices. Later calls return the first outcome.
pub fn load_cuda() -> Result<CudaRuntime, DeviceError> {
    CUDA.get_or_init(load_cuda_uncached)
        .clone()
        .map_err(|tried| DeviceError::CudaLibrary { tried })
}

fn load_cuda_uncached() -> Result<CudaRuntime, String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(path) = std::env::var(CUDA_LIBRARY_ENV) {
        if !path.is_empty() {
            candidates.push(path);
        }
    }
    candidates.push("libtorch_cuda.so".to_string());
    let mut tried = Vec::new();
    for candidate in candidates {
        match dlopen_global(&candidate) {
            Ok(()) => {
                let device_count = if tch::Cuda::is_available() {
                    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
                } else {
                    0
                };
                return Ok(CudaRuntime {
                    library: candidate,
                    device_count,
                });
            }
            Err(message) => tried.push(format!("  {candidate}: {message}")),
        }
    }
    Err(tried.join("\n"))
}

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`; the handle is never closed (libtorch cannot
/// be unloaded once its backends are registered).
fn dlopen_global(name: &str) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|_| "the name contains a NUL byte".to_string())?;
    // SAFETY: `c_name` is a valid NUL-terminated string; dlopen and dlerror have no
    // other preconditions. The returned handle is intentionally leaked.
    unsafe {
        let handle = libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let message = libc::dlerror();
            if message.is_null() {
                Err("dlopen failed".to_string())
            } else {
                Err(CStr::from_ptr(message).to_string_lossy().into_owned())
            }
        } else {
            Ok(())
        }
    }
}

/// Resolves a request to a device, loading the CUDA backend first when CUDA is asked
/// for or `auto` is given. `auto` falls back to the CPU when CUDA cannot be loaded or
/// no GPU is visible; an explicit `cuda` request then fails with a message saying why.
pub fn select(request: DeviceRequest) -> Result<Device, DeviceError> {
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Auto => match load_cuda() {
            Ok(runtime) if runtime.device_count > 0 => Ok(Device::Cuda(0)),
            _ => Ok(Device::Cpu),
        },
        DeviceRequest::Cuda(index) => {
            let runtime = load_cuda()?;
            if runtime.device_count == 0 {
                return Err(DeviceError::NoCudaDevice {
                    library: runtime.library,
                });
            }
            let index = index.unwrap_or(0);
            if index >= runtime.device_count {
                return Err(DeviceError::BadCudaIndex {
                    index,
                    count: runtime.device_count,
                });
            }
            Ok(Device::Cuda(index))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(
            "auto".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Auto
        );
        assert_eq!("CPU".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(None)
        );
        assert_eq!(
            "cuda:1".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(Some(1))
        );
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
        assert!("tpu".parse::<DeviceRequest>().is_err());
        assert_eq!(DeviceRequest::Cuda(Some(2)).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_needs_nothing() {
        assert_eq!(select(DeviceRequest::Cpu).unwrap(), Device::Cpu);
    }
}
