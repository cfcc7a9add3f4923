//! Loading the NCCL backend, `libasr_dist_nccl.so`, at run time.
//!
//! `c10d::ProcessGroupNCCL` lives in `libtorch_cuda.so`, which the binaries do not link
//! (they link libtorch's CPU layout, so that one binary runs everywhere). A small side
//! library, built from `csrc/nccl_shim.cpp` by `tools/install-libtorch.sh --cuda` (through
//! `tools/build-nccl-shim.sh`) into the libtorch `lib/` folder, links it and constructs
//! the process group; it is loaded here with `dlopen` the first time a group attaches
//! NCCL, and its constructor is handed to the Gloo shim, which keeps the backend.
//!
//! Where it is looked for: `ASR_DIST_NCCL_LIB`, a full path, when set (and nowhere else);
//! otherwise, in order,
//! 1. beside the `libtorch_cuda.so` this process already loaded (asr-model's device
//!    selection loads it for `--device cuda`, from `ASR_LIBTORCH_CUDA` or the library
//!    path);
//! 2. the library path (`LD_LIBRARY_PATH`, the executable's run path: the libtorch it
//!    was linked against). Loading it there loads its `libtorch_cuda.so` too.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::ffi::NcclNew;

/// Environment variable naming the `libasr_dist_nccl.so` to load.
pub const NCCL_LIBRARY_ENV: &str = "ASR_DIST_NCCL_LIB";

/// The side library's file name.
pub const NCCL_LIBRARY: &str = "libasr_dist_nccl.so";

/// The C interface version this crate speaks (`asr_dist_nccl_abi_version`).
const ABI_VERSION: c_int = 1;

static LOADED: OnceLock<Result<NcclNew, String>> = OnceLock::new();

/// `asr_dist_nccl_new` of the side library, loaded once per process; the error lists
/// every place tried and says how to build the library.
pub(crate) fn constructor() -> Result<NcclNew, String> {
    LOADED.get_or_init(load).clone()
}

fn load() -> Result<NcclNew, String> {
    let mut tried = Vec::new();
    for candidate in candidates() {
        match open(&candidate) {
            Ok(make) => return Ok(make),
            Err(message) => tried.push(format!("  {candidate}: {message}")),
        }
    }
    Err(format!(
        "the NCCL backend {NCCL_LIBRARY} could not be loaded; tried:\n{}\nIt is built by \
         tools/install-libtorch.sh --cuda (into the libtorch lib/ folder, beside \
         libtorch_cuda.so); or set {NCCL_LIBRARY_ENV} to its path. Without it, several ranks \
         train on the CPU only (--device cpu, Gloo)",
        tried.join("\n")
    ))
}

fn candidates() -> Vec<String> {
    if let Some(path) = std::env::var_os(NCCL_LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return vec![path.to_string_lossy().into_owned()];
    }
    let mut candidates = Vec::new();
    if let Some(dir) = loaded_library_dir("libtorch_cuda.so") {
        candidates.push(dir.join(NCCL_LIBRARY).to_string_lossy().into_owned());
    }
    candidates.push(NCCL_LIBRARY.to_string());
    candidates.dedup();
    candidates
}

/// Opens one candidate and checks that it speaks this crate's interface.
fn open(name: &str) -> Result<NcclNew, String> {
    let c_name = CString::new(name).map_err(|_| "the name holds a NUL byte".to_string())?;
    // SAFETY: valid C strings; the handle is never closed (the process group's code
    // must stay mapped as long as the process runs).
    unsafe {
        let handle = libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(dl_error());
        }
        let version = libc::dlsym(handle, c"asr_dist_nccl_abi_version".as_ptr());
        let make = libc::dlsym(handle, c"asr_dist_nccl_new".as_ptr());
        if version.is_null() || make.is_null() {
            return Err("not an asr-dist NCCL backend (symbols missing)".into());
        }
        let version: unsafe extern "C" fn() -> c_int = std::mem::transmute(version);
        let found = version();
        if found != ABI_VERSION {
            return Err(format!(
                "built from another asr-dist (interface {found}, this program needs \
                 {ABI_VERSION}): rebuild it with tools/install-libtorch.sh --cuda"
            ));
        }
        Ok(std::mem::transmute::<*mut c_void, NcclNew>(make))
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a valid C string owned by libc.
    unsafe {
        let message = libc::dlerror();
        if message.is_null() {
            "dlopen failed".to_string()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        }
    }
}

/// The folder of an already loaded shared library whose file name is `file`.
fn loaded_library_dir(file: &str) -> Option<PathBuf> {
    struct Search<'a> {
        file: &'a str,
        found: Option<PathBuf>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is our Search.
        let search = unsafe { &mut *(data as *mut Search) };
        let name = unsafe { (*info).dlpi_name };
        if name.is_null() {
            return 0;
        }
        let path = PathBuf::from(
            unsafe { CStr::from_ptr(name as *const c_char) }
                .to_string_lossy()
                .into_owned(),
        );
        if path.file_name().is_some_and(|f| f == search.file) {
            search.found = path.parent().map(PathBuf::from);
            return 1;
        }
        0
    }
    let mut search = Search { file, found: None };
    // SAFETY: `visit` only reads the loader's records and writes `search`.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut search as *mut Search as *mut c_void) };
    search.found.filter(|dir| !dir.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_folder_of_a_loaded_library() {
        // libc10.so is linked by every binary of this crate (through tch).
        let dir = loaded_library_dir("libc10.so").expect("libc10.so is loaded");
        assert!(dir.join("libc10.so").is_file(), "{}", dir.display());
        assert!(loaded_library_dir("libnot-loaded-here.so").is_none());
    }
}
