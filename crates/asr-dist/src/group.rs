//! A c10d process group and its collectives on tch tensors.
use crate::ffi;
use crate::{DistError, Rendezvous};
use std::cell::Cell;
use std::ffi::{c_char, c_int, CString};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// The c10d backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `ProcessGroupGloo`: CPU tensors, TCP between the ranks.
    Gloo,
    /// Gloo for CPU tensors plus `ProcessGroupNCCL` for CUDA tensors on
    /// `cuda:LOCAL_RANK` (torch's `"cpu:gloo,cuda:nccl"`): see
    /// [`ProcessGroup::attach_nccl`].
    Nccl,
}

/// One process's membership of the job's process group.
///
/// Every rank must call the same collectives in the same order with tensors of the same
/// shape and dtype (as with torch.distributed). Each call blocks until the collective is
/// done on this rank. A collective that fails (a peer died: "Connection closed by peer";
/// a peer stalled past the timeout: "Timed out waiting ...") returns
/// [`DistError::Collective`] and closes this rank's Gloo connections at once, so that the
/// ranks waiting on this one fail too instead of at their timeout; only
/// [`ProcessGroup::missing_ranks`] (through the store) works after that, and the job
/// should end.
///
/// With world size 1 there is no store and no Gloo context: every collective returns at
/// once and leaves its tensors as they are (all_gather returns the input).
pub struct ProcessGroup {
    rank: usize,
    world_size: usize,
    timeout: Duration,
    inner: Option<NonNull<ffi::AsrDistGroup>>,
    /// Calls of [`ProcessGroup::missing_ranks`] so far (each uses fresh store keys).
    roll_calls: Cell<u64>,
    /// Time spent in collectives, for [`ProcessGroup::take_comm_time`].
    comm_time: Cell<Duration>,
    /// The CUDA device of the attached NCCL backend, if any.
    nccl_device: Option<usize>,
}

// SAFETY: the handle is owned by this value alone, and c10d's process group may be used
// from any thread one call at a time; the type is not Sync (its Cells), so calls never
// overlap.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// The world-size-1 group: no store, collectives are no-ops.
    pub fn single() -> Self {
        ProcessGroup {
            rank: 0,
            world_size: 1,
            timeout: Duration::ZERO,
            inner: None,
            roll_calls: Cell::new(0),
            comm_time: Cell::new(Duration::ZERO),
            nccl_device: None,
        }
    }

    /// Joins the job: rank 0 serves a `c10d::TCPStore` at `MASTER_ADDR:MASTER_PORT` and
    /// waits for the other ranks; they connect to it (retrying until `timeout`); under
    /// torchrun, whose agent already serves that store, every rank connects; then the
    /// Gloo process group connects every pair of ranks. `timeout` bounds the rendezvous
    /// and every later collective.
    ///
    /// Gloo's network interface is chosen as torch does: `GLOO_SOCKET_IFNAME` (a
    /// comma-separated list of interfaces) if set, else the address this machine's host
    /// name resolves to, else loopback.
    ///
    /// [`Backend::Nccl`] then attaches NCCL on `cuda:LOCAL_RANK`
    /// ([`ProcessGroup::attach_nccl`]).
    pub fn new(rdzv: &Rendezvous, backend: Backend, timeout: Duration) -> Result<Self, DistError> {
        let mut group = Self::new_gloo(rdzv, timeout)?;
        if backend == Backend::Nccl {
            group.attach_nccl(rdzv.local_rank)?;
        }
        Ok(group)
    }

    fn new_gloo(rdzv: &Rendezvous, timeout: Duration) -> Result<Self, DistError> {
        if rdzv.world_size <= 1 {
            return Ok(Self::single());
        }
        let fail = |message: String| DistError::Rendezvous {
            rank: rdzv.rank,
            world_size: rdzv.world_size,
            addr: rdzv.master_addr.clone(),
            port: rdzv.master_port,
            timeout,
            message,
        };
        let host = CString::new(rdzv.master_addr.as_str())
            .map_err(|_| fail("MASTER_ADDR holds a NUL byte".into()))?;
        let ifnames = std::env::var("GLOO_SOCKET_IFNAME")
            .ok()
            .filter(|s| !s.is_empty());
        let ifnames = ifnames
            .map(CString::new)
            .transpose()
            .map_err(|_| fail("GLOO_SOCKET_IFNAME holds a NUL byte".into()))?;
        let (rank, world) = (c_int_of(rdzv.rank), c_int_of(rdzv.world_size));
        let timeout_ms = i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: the strings live across the call; the shim catches every exception.
        let handle = unsafe {
            ffi::asr_dist_gloo_new(
                host.as_ptr(),
                rdzv.master_port,
                rank,
                world,
                c_int::from(rdzv.rank == 0 && !rdzv.agent_store),
                timeout_ms,
                ifnames.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                &mut err,
            )
        };
        match NonNull::new(handle) {
            Some(inner) => Ok(ProcessGroup {
                rank: rdzv.rank,
                world_size: rdzv.world_size,
                timeout,
                inner: Some(inner),
                roll_calls: Cell::new(0),
                comm_time: Cell::new(Duration::ZERO),
                nccl_device: None,
            }),
            None => Err(fail(ffi::take_error(err))),
        }
    }

    /// Attaches NCCL (`c10d::ProcessGroupNCCL`) beside Gloo: from now on CUDA tensors on
    /// `cuda:device_index` go through NCCL, CPU tensors still through Gloo (torch's
    /// `"cpu:gloo,cuda:nccl"`). Torch's rule is one GPU per rank, `device_index` =
    /// `LOCAL_RANK`; it becomes this process's current CUDA device. With world size 1
    /// nothing is attached (there is nothing to exchange).
    ///
    /// The process group comes from the side library `libasr_dist_nccl.so` (see the
    /// [`crate::nccl`] module), which `tools/install-libtorch.sh --cuda` builds; without
    /// it, or without a GPU, this returns [`DistError::Nccl`] saying why. NCCL's own
    /// variables (`NCCL_SOCKET_IFNAME`, `NCCL_DEBUG`...) are read by NCCL itself.
    /// `TORCH_NCCL_BLOCKING_WAIT` is set to 1 unless already set, so that a collective
    /// blocks until done and a dead or stalled peer fails it at the group's timeout.
    pub fn attach_nccl(&mut self, device_index: usize) -> Result<(), DistError> {
        let Some(group) = self.inner else {
            return Ok(());
        };
        let fail = |message: String| DistError::Nccl {
            rank: self.rank,
            world_size: self.world_size,
            device_index,
            message,
        };
        let make = crate::nccl::constructor().map_err(fail)?;
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: group is live; `make` is the side library's constructor (checked ABI).
        let status = unsafe {
            ffi::asr_dist_attach_nccl(group.as_ptr(), make, c_int_of(device_index), &mut err)
        };
        if status != 0 {
            return Err(fail(ffi::take_error(err)));
        }
        self.nccl_device = Some(device_index);
        Ok(())
    }

    /// The backends this group uses: Gloo, plus NCCL once attached ([`Backend::Nccl`]).
    pub fn backend(&self) -> Backend {
        if self.nccl_device.is_some() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// True on rank 0.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Sums `tensor` over the ranks, in place: every rank ends with the sum.
    pub fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<(), DistError> {
        let Some(group) = self.inner else {
            return Ok(());
        };
        self.check_dense("all_reduce", tensor)?;
        // SAFETY: group is live; the tensor outlives the (blocking) call.
        self.call("all_reduce", |err| unsafe {
            ffi::asr_dist_all_reduce_sum(group.as_ptr(), tensor.as_ptr(), err)
        })
    }

    /// Averages `tensor` over the ranks, in place: the sum of [`Self::all_reduce_sum`]
    /// divided by the world size (on floating-point tensors).
    pub fn all_reduce_mean(&self, tensor: &mut Tensor) -> Result<(), DistError> {
        if self.world_size <= 1 {
            return Ok(());
        }
        if !tensor.is_floating_point() {
            return Err(DistError::Tensor {
                op: "all_reduce_mean",
                problem: format!("{:?} is not a floating-point kind", tensor.kind()),
            });
        }
        self.all_reduce_sum(tensor)?;
        let _ = tensor.g_div_scalar_(self.world_size as f64);
        Ok(())
    }

    /// Averages several tensors over the ranks, in place, with one collective on a flat
    /// buffer: the gradient all-reduce of data parallelism (DDP's buckets, as one bucket).
    /// The tensors must share one floating-point kind; they may have any shape and strides.
    /// Runs without autograd, so parameters' `.grad()` tensors can be passed directly.
    pub fn all_reduce_mean_flat(&self, tensors: &mut [Tensor]) -> Result<(), DistError> {
        if self.world_size <= 1 || tensors.is_empty() {
            return Ok(());
        }
        let kind = tensors[0].kind();
        if !tensors[0].is_floating_point() || tensors.iter().any(|t| t.kind() != kind) {
            let kinds: Vec<String> = tensors.iter().map(|t| format!("{:?}", t.kind())).collect();
            return Err(DistError::Tensor {
                op: "all_reduce_mean_flat",
                problem: format!(
                    "the tensors must share one floating-point kind, not {}",
                    kinds.join(", ")
                ),
            });
        }
        let mut flat = tch::no_grad(|| {
            let pieces: Vec<Tensor> = tensors.iter().map(|t| t.detach().reshape([-1])).collect();
            Tensor::cat(&pieces, 0)
        });
        self.all_reduce_sum(&mut flat)?;
        tch::no_grad(|| {
            let _ = flat.g_div_scalar_(self.world_size as f64);
            let mut offset = 0i64;
            for tensor in tensors.iter_mut() {
                let n = tensor.numel() as i64;
                let piece = flat.narrow(0, offset, n).view_as(tensor);
                tensor.copy_(&piece);
                offset += n;
            }
        });
        Ok(())
    }

    /// The time spent in collectives since the last call (the first: since the group was
    /// made), and starts counting again: a training step's communication time.
    pub fn take_comm_time(&self) -> Duration {
        self.comm_time.replace(Duration::ZERO)
    }

    /// Copies rank `root`'s `tensor` into every rank's `tensor`, in place.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistError> {
        if root >= self.world_size {
            return Err(DistError::Tensor {
                op: "broadcast",
                problem: format!(
                    "root rank {root} is not below the world size {}",
                    self.world_size
                ),
            });
        }
        let Some(group) = self.inner else {
            return Ok(());
        };
        self.check_dense("broadcast", tensor)?;
        // SAFETY: as in all_reduce_sum.
        self.call("broadcast", |err| unsafe {
            ffi::asr_dist_broadcast(group.as_ptr(), tensor.as_ptr(), c_int_of(root), err)
        })
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        let Some(group) = self.inner else {
            return Ok(());
        };
        // SAFETY: group is live.
        self.call("barrier", |err| unsafe {
            ffi::asr_dist_barrier(group.as_ptr(), err)
        })
    }

    /// After a collective failed: which ranks are gone. Every surviving rank calls it (the
    /// same number of times on each); each one announces itself in the job's TCPStore,
    /// which outlives the broken Gloo connections, and waits up to `timeout` for the
    /// others. Returns the ranks that did not announce themselves (dead, or hung), the same
    /// list on every survivor that waited the whole `timeout`. Then each rank waits until
    /// every rank that announced itself has finished its own wait, and the store's host
    /// (rank 0) gives a survivor that has not come yet `timeout` more (at most 2 ×
    /// `timeout` in all), so the host does not leave with the store while a survivor that
    /// noticed the failure late still needs it. An error means the store itself is gone:
    /// its host (rank 0, or torchrun's agent) died.
    pub fn missing_ranks(&self, timeout: Duration) -> Result<Vec<usize>, DistError> {
        let Some(group) = self.inner else {
            return Ok(Vec::new());
        };
        let call = self.roll_calls.get();
        self.roll_calls.set(call + 1);
        let prefix = CString::new(format!("asr-dist/roll-call/{call}/")).expect("no NUL byte");
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let mut present = vec![0u8; self.world_size];
        // SAFETY: group is live; `present` has world_size bytes.
        self.call("roll call", |err| unsafe {
            ffi::asr_dist_roll_call(
                group.as_ptr(),
                prefix.as_ptr(),
                c_int_of(self.rank),
                c_int_of(self.world_size),
                timeout_ms,
                present.as_mut_ptr(),
                err,
            )
        })
        .map_err(|e| match e {
            DistError::Collective {
                op,
                rank,
                world_size,
                timeout,
                message,
            } => DistError::Collective {
                op,
                rank,
                world_size,
                timeout,
                message: format!(
                    "the job's store cannot be reached, so its host (rank 0, or torchrun's \
                     agent) is probably gone: {message}"
                ),
            },
            other => other,
        })?;
        Ok((0..self.world_size).filter(|&r| present[r] == 0).collect())
    }

    /// Every rank's `tensor` (same shape and dtype on every rank), in rank order.
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>, DistError> {
        let Some(group) = self.inner else {
            return Ok(vec![tensor.shallow_clone()]);
        };
        self.check_dense("all_gather", tensor)?;
        let outputs: Vec<Tensor> = (0..self.world_size).map(|_| tensor.empty_like()).collect();
        let pointers: Vec<*const torch_sys::C_tensor> =
            outputs.iter().map(|t| t.as_ptr()).collect();
        // SAFETY: group is live; input and outputs outlive the (blocking) call.
        self.call("all_gather", |err| unsafe {
            ffi::asr_dist_all_gather(
                group.as_ptr(),
                tensor.as_ptr(),
                pointers.as_ptr(),
                c_int_of(pointers.len()),
                err,
            )
        })?;
        Ok(outputs)
    }

    /// Every rank's list of `i64` (lengths may differ between ranks), in rank order: for
    /// example the ids of the utterances each rank skipped. Two collectives: the lengths,
    /// then the lists padded to the longest.
    pub fn all_gather_i64(&self, values: &[i64]) -> Result<Vec<Vec<i64>>, DistError> {
        if self.inner.is_none() {
            return Ok(vec![values.to_vec()]);
        }
        let length = Tensor::from_slice(&[values.len() as i64]);
        let lengths: Vec<usize> = self
            .all_gather(&length)?
            .iter()
            .map(|t| usize::try_from(t.int64_value(&[0])).unwrap_or(0))
            .collect();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if longest == 0 {
            return Ok(vec![Vec::new(); self.world_size]);
        }
        let padded = Tensor::zeros([longest as i64], (Kind::Int64, Device::Cpu));
        if !values.is_empty() {
            padded
                .narrow(0, 0, values.len() as i64)
                .copy_(&Tensor::from_slice(values));
        }
        let gathered = self.all_gather(&padded)?;
        Ok(gathered
            .iter()
            .zip(&lengths)
            .map(|(t, &n)| Vec::<i64>::try_from(t.narrow(0, 0, n as i64)).unwrap_or_default())
            .collect())
    }

    fn call(
        &self,
        op: &'static str,
        body: impl FnOnce(*mut *mut c_char) -> i32,
    ) -> Result<(), DistError> {
        let mut err: *mut c_char = ptr::null_mut();
        let start = Instant::now();
        let status = body(&mut err);
        self.comm_time.set(self.comm_time.get() + start.elapsed());
        if status == 0 {
            return Ok(());
        }
        if let Some(group) = self.inner {
            // SAFETY: group is live; the shim catches everything (nothing to report here).
            let mut ignored: *mut c_char = ptr::null_mut();
            if unsafe { ffi::asr_dist_close_backend(group.as_ptr(), &mut ignored) } != 0 {
                let _ = ffi::take_error(ignored);
            }
        }
        Err(DistError::Collective {
            op,
            rank: self.rank,
            world_size: self.world_size,
            timeout: self.timeout,
            message: ffi::take_error(err),
        })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(group) = self.inner.take() {
            // SAFETY: the handle came from asr_dist_gloo_new and is freed once.
            unsafe { ffi::asr_dist_group_free(group.as_ptr()) };
        }
    }
}

fn c_int_of(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl ProcessGroup {
    /// The collectives take dense contiguous tensors: on the CPU (Gloo), or on the CUDA
    /// device of the attached NCCL backend.
    fn check_dense(&self, op: &'static str, tensor: &Tensor) -> Result<(), DistError> {
        if !tensor.is_contiguous() {
            return Err(DistError::Tensor {
                op,
                problem: "the tensor is not contiguous (call .contiguous() first)".into(),
            });
        }
        let device = tensor.device();
        let problem = match (device, self.nccl_device) {
            (Device::Cpu, _) => return Ok(()),
            (Device::Cuda(i), Some(nccl)) if i == nccl => return Ok(()),
            (Device::Cuda(i), Some(nccl)) => {
                format!("the tensor is on cuda:{i}, and this rank's NCCL backend on cuda:{nccl}")
            }
            (Device::Cuda(_), None) => format!(
                "{device:?} tensor, but no NCCL backend is attached (ProcessGroup::attach_nccl)"
            ),
            _ => format!("the backends here take CPU or CUDA tensors, not {device:?}"),
        };
        Err(DistError::Tensor { op, problem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_size_one_collectives_are_no_ops() {
        let mut group =
            ProcessGroup::new(&Rendezvous::single(), Backend::Nccl, Duration::from_secs(1))
                .unwrap();
        // Nothing to attach with one rank: no side library is needed.
        group.attach_nccl(0).unwrap();
        assert_eq!(group.backend(), Backend::Gloo);
        assert_eq!(
            (group.rank(), group.world_size(), group.is_main()),
            (0, 1, true)
        );
        let mut t = Tensor::from_slice(&[1.5f32, -2.0]);
        group.all_reduce_sum(&mut t).unwrap();
        group.all_reduce_mean(&mut t).unwrap();
        group.broadcast(&mut t, 0).unwrap();
        group.barrier().unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.5, -2.0]);
        let gathered = group.all_gather(&t).unwrap();
        assert_eq!(gathered.len(), 1);
        assert_eq!(Vec::<f32>::try_from(&gathered[0]).unwrap(), vec![1.5, -2.0]);
        assert_eq!(group.all_gather_i64(&[7, 9]).unwrap(), vec![vec![7, 9]]);
        assert!(group
            .missing_ranks(Duration::from_secs(1))
            .unwrap()
            .is_empty());
        let err = group.broadcast(&mut t, 1).unwrap_err().to_string();
        assert!(err.contains("root rank 1"), "{err}");
    }
}
