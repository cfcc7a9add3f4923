//! Data-parallel plumbing on PyTorch's own distributed engine, c10d (the engine under
//! torch DDP and torchrun), which ships inside the libtorch we install.
//!
//! - [`Rendezvous`]: who this process is (rank, world size, local rank) and where rank 0
//!   waits, from torchrun's `env://` variables or Slurm's.
//! - [`ProcessGroup`]: rendezvous through `c10d::TCPStore` (rank 0 serves it) and a Gloo
//!   process group (`c10d::ProcessGroupGloo`, CPU tensors; plus `ProcessGroupNCCL` for
//!   CUDA tensors once [`ProcessGroup::attach_nccl`]ed, from the side library of
//!   [`nccl`]), with the collectives a
//!   data-parallel trainer needs: [`ProcessGroup::all_reduce_sum`] (average with
//!   [`ProcessGroup::all_reduce_mean`]), [`ProcessGroup::broadcast`],
//!   [`ProcessGroup::barrier`], [`ProcessGroup::all_gather`], the variable-length
//!   [`ProcessGroup::all_gather_i64`] (culprit ids), the gradient average on one flat
//!   buffer [`ProcessGroup::all_reduce_mean_flat`], the time spent communicating
//!   ([`ProcessGroup::take_comm_time`]) and, after a failure, which ranks are gone
//!   ([`ProcessGroup::missing_ranks`]). World size 1 is the same code with no store and
//!   collectives that return at once.
//!
//! - [`launch::run_local_workers`]: `--nproc-per-node N` on one machine, as
//!   `torchrun --standalone`: N workers, signals passed on, the first failure stops the job.
//!
//! The C++ side is one file, `csrc/c10d_shim.cpp`, of `extern "C"` wrappers that catch
//! every C++ exception and hand its message back: a dead or stalled peer makes a
//! collective return [`DistError::Collective`], never unwind into Rust or hang past the
//! process group's timeout.
mod ffi;
mod group;
pub mod launch;
pub mod nccl;
pub mod rendezvous;

pub use group::{Backend, ProcessGroup};
pub use rendezvous::{Launcher, Rendezvous};

use std::time::Duration;

/// Errors of the launcher environment, the rendezvous and the collectives.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A launcher variable is missing, malformed or inconsistent with another.
    #[error("{}", env_message(variable, value, problem))]
    Env {
        variable: String,
        value: String,
        problem: String,
    },
    /// Rank 0's store could not be served or reached, or the ranks did not all arrive.
    #[error(
        "rendezvous of rank {rank} of {world_size} at {addr}:{port} failed (timeout {timeout:?}): \
         {message}; check MASTER_ADDR/MASTER_PORT, that every rank was started, and \
         GLOO_SOCKET_IFNAME on machines with several network interfaces"
    )]
    Rendezvous {
        rank: usize,
        world_size: usize,
        addr: String,
        port: u16,
        timeout: Duration,
        message: String,
    },
    /// A collective failed: a peer died or stalled past the timeout. The process group is
    /// unusable afterwards; the job should end.
    #[error(
        "{op} failed on rank {rank} of {world_size}: {message} (a peer process died, or did \
         not take part within the {timeout:?} timeout)"
    )]
    Collective {
        op: &'static str,
        rank: usize,
        world_size: usize,
        timeout: Duration,
        message: String,
    },
    /// The NCCL backend could not be attached: its side library is missing, or
    /// ProcessGroupNCCL refused (no GPU, a bad device).
    #[error("NCCL backend of rank {rank} of {world_size} on cuda:{device_index}: {message}")]
    Nccl {
        rank: usize,
        world_size: usize,
        device_index: usize,
        message: String,
    },
    /// A tensor that the collective cannot take (the caller's mistake, nothing was sent).
    #[error("{op}: {problem}")]
    Tensor { op: &'static str, problem: String },
}

fn env_message(variable: &str, value: &str, problem: &str) -> String {
    if value.is_empty() {
        format!("{variable} {problem}")
    } else {
        format!("{variable}={value} {problem}")
    }
}
