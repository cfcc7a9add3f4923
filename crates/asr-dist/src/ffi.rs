//! The C functions of `csrc/c10d_shim.cpp`. Tensors are tch's `at::Tensor*`
//! (`Tensor::as_ptr`). Every function catches C++ exceptions: -1 (or null) and a
//! malloc'd message in `err`, freed with `asr_dist_free_string`.
use std::ffi::{c_char, c_int, c_void, CStr};
use torch_sys::C_tensor;

/// Opaque handle: the store and the process group.
#[repr(C)]
pub struct AsrDistGroup {
    _private: [u8; 0],
}

/// `asr_dist_nccl_new` of libasr_dist_nccl.so (`csrc/nccl_shim.cpp`): (borrowed
/// `c10d::Store*`, rank, world size, CUDA device, timeout in ms, err) -> an owned
/// `c10d::Backend*`, or null.
pub type NcclNew = unsafe extern "C" fn(
    store: *mut c_void,
    rank: c_int,
    world_size: c_int,
    device_index: c_int,
    timeout_ms: i64,
    err: *mut *mut c_char,
) -> *mut c_void;

extern "C" {
    pub fn asr_dist_free_string(s: *mut c_char);
    pub fn asr_dist_gloo_new(
        host: *const c_char,
        port: u16,
        rank: c_int,
        world_size: c_int,
        serve: c_int,
        timeout_ms: i64,
        ifnames: *const c_char,
        err: *mut *mut c_char,
    ) -> *mut AsrDistGroup;
    pub fn asr_dist_group_free(group: *mut AsrDistGroup);
    pub fn asr_dist_attach_nccl(
        group: *mut AsrDistGroup,
        make: NcclNew,
        device_index: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn asr_dist_close_backend(group: *mut AsrDistGroup, err: *mut *mut c_char) -> c_int;
    pub fn asr_dist_all_reduce_sum(
        group: *mut AsrDistGroup,
        tensor: *const C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn asr_dist_broadcast(
        group: *mut AsrDistGroup,
        tensor: *const C_tensor,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn asr_dist_all_gather(
        group: *mut AsrDistGroup,
        input: *const C_tensor,
        outputs: *const *const C_tensor,
        n_outputs: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn asr_dist_roll_call(
        group: *mut AsrDistGroup,
        prefix: *const c_char,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        present: *mut u8,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn asr_dist_barrier(group: *mut AsrDistGroup, err: *mut *mut c_char) -> c_int;
}

/// Takes ownership of a message from the shim.
pub fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error (no message from c10d)".to_string();
    }
    // SAFETY: the shim malloc'd a NUL-terminated copy; we free it once, here.
    let message = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { asr_dist_free_string(err) };
    message
}
