//! Mixed precision: libtorch autocast for one device type, in bf16 or fp16.
//!
//! tch 0.24's `tch::autocast` only switches CUDA autocast, only in its default dtype
//! (float16), and does nothing on the CPU. This module calls ATen's per-device
//! switches (`at::autocast::set_autocast_enabled/set_autocast_dtype`, through the small
//! C shim in `csrc/autocast.cpp`) so that the forward pass runs under the same policy
//! as `torch.autocast(device_type, dtype=...)` in PyTorch: convolutions, linear layers
//! and attention in the low-precision type, norms, softmax and the CTC loss in float32.
//! Weights stay float32 (master weights); gradients arrive in float32.
//!
//! Use it around the forward pass and the loss, not the backward pass, as PyTorch
//! recommends:
//! ```no_run
//! # use asr_model::precision::{Autocast, Precision};
//! # let device = tch::Device::Cpu;
//! let output = {
//!     let _autocast = Autocast::enter(device, Precision::Bf16);
//!     // model.forward_t(...), model.ctc_loss(...)
//! };
//! ```
//! fp16 needs dynamic loss scaling in the training loop (bf16 does not).
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use tch::Device;

extern "C" {
    fn asr_autocast_is_enabled(device_type: i8) -> i32;
    fn asr_autocast_set_enabled(device_type: i8, enabled: i32) -> i32;
    fn asr_autocast_get_dtype(device_type: i8) -> i8;
    fn asr_autocast_set_dtype(device_type: i8, scalar_type: i8) -> i32;
    fn asr_autocast_increment_nesting() -> i32;
    fn asr_autocast_decrement_nesting() -> i32;
    fn asr_autocast_clear_cache() -> i32;
}

// c10::DeviceType and c10::ScalarType values (c10/core/DeviceType.h, ScalarType.h).
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
const SCALAR_HALF: i8 = 5;
const SCALAR_FLOAT: i8 = 6;
const SCALAR_BFLOAT16: i8 = 15;

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Plain float32, no autocast.
    #[default]
    F32,
    /// bfloat16 autocast (CUDA and CPU); no loss scaling needed.
    Bf16,
    /// float16 autocast (CUDA); needs dynamic loss scaling.
    F16,
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" | "no" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => Ok(Precision::F16),
            _ => Err(format!("unknown precision '{s}': use f32, bf16 or fp16")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "fp16",
        })
    }
}

impl Precision {
    fn scalar_type(self) -> Option<i8> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(SCALAR_BFLOAT16),
            Precision::F16 => Some(SCALAR_HALF),
        }
    }
}

fn device_type(device: Device) -> Option<i8> {
    match device {
        Device::Cpu => Some(DEVICE_CPU),
        Device::Cuda(_) => Some(DEVICE_CUDA),
        _ => None,
    }
}

/// Autocast switched on for one device type while the guard lives; the previous state
/// (enabled flag and dtype) comes back on drop. Guards nest.
/// ATen's autocast state is per thread, so the guard cannot leave its thread.
#[must_use = "autocast is only on while the guard lives"]
pub struct Autocast {
    device_type: Option<i8>,
    previous_enabled: bool,
    previous_dtype: i8,
    _not_send: PhantomData<*const ()>,
}

impl Autocast {
    /// Enters autocast for `device`'s type in `precision`; `Precision::F32` (and
    /// devices other than CPU/CUDA) give a guard that changes nothing.
    pub fn enter(device: Device, precision: Precision) -> Autocast {
        let (Some(dtype), Some(device_type)) = (precision.scalar_type(), device_type(device))
        else {
            return Autocast {
                device_type: None,
                previous_enabled: false,
                previous_dtype: SCALAR_FLOAT,
                _not_send: PhantomData,
            };
        };
        // SAFETY: plain C calls into ATen's thread-local autocast state; the shim
        // catches C++ exceptions.
        unsafe {
            let previous_enabled = asr_autocast_is_enabled(device_type) == 1;
            let previous_dtype = asr_autocast_get_dtype(device_type);
            asr_autocast_set_dtype(device_type, dtype);
            asr_autocast_set_enabled(device_type, 1);
            asr_autocast_increment_nesting();
            Autocast {
                device_type: Some(device_type),
                previous_enabled,
                previous_dtype,
                _not_send: PhantomData,
            }
        }
    }

    /// Whether autocast is currently on for `device`'s type (any guard, any thread
    /// state set by libtorch).
    pub fn is_enabled(device: Device) -> bool {
        match device_type(device) {
            // SAFETY: see `enter`.
            Some(d) => unsafe { asr_autocast_is_enabled(d) == 1 },
            None => false,
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        if let Some(device_type) = self.device_type {
            // SAFETY: see `enter`.
            unsafe {
                if asr_autocast_decrement_nesting() == 0 {
                    asr_autocast_clear_cache();
                }
                asr_autocast_set_enabled(device_type, i32::from(self.previous_enabled));
                asr_autocast_set_dtype(device_type, self.previous_dtype);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn cpu_bf16_autocast_runs_matmul_in_bf16_and_restores_state() {
        assert!(!Autocast::is_enabled(Device::Cpu));
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        {
            let _guard = Autocast::enter(Device::Cpu, Precision::Bf16);
            assert!(Autocast::is_enabled(Device::Cpu));
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            // Reductions stay in float32.
            assert_eq!(a.log_softmax(-1, Kind::Float).kind(), Kind::Float);
        }
        assert!(!Autocast::is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        // The CPU default dtype is bfloat16: the constants above match c10's.
        // SAFETY: plain call, see `Autocast::enter`.
        assert_eq!(
            unsafe { asr_autocast_get_dtype(DEVICE_CPU) },
            SCALAR_BFLOAT16
        );
    }

    #[test]
    fn f32_is_a_no_op() {
        let _guard = Autocast::enter(Device::Cpu, Precision::F32);
        assert!(!Autocast::is_enabled(Device::Cpu));
    }
}
