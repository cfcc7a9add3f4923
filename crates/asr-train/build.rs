//! Build script of asr-train: records an rpath to the libtorch that torch-sys linked
//! against, so that `asr-train` and the test binaries find `libtorch_cpu.so` with no
//! environment variable (link arguments of a dependency do not propagate, so this
//! repeats asr-model's line).
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report where libtorch is \
             (run tools/install-libtorch.sh, or set LIBTORCH)"
        );
    };
    let lib = PathBuf::from(lib);
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
