//! Build script of asr-model.
//!
//! 1. Records an rpath to the libtorch that torch-sys linked against, so that binaries
//!    and tests built from this crate find `libtorch_cpu.so` with no environment variable
//!    (`DEP_TCH_LIBTORCH_LIB` is only visible here because we depend on torch-sys
//!    directly).
//! 2. Compiles `csrc/autocast.cpp`, a few `extern "C"` wrappers over ATen's per-device
//!    autocast switches: tch 0.24 only exposes CUDA autocast in float16, and bf16
//!    mixed precision needs `set_autocast_dtype`.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => PathBuf::from(lib),
        Err(_) => panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report where libtorch is \
             (run tools/install-libtorch.sh, or set LIBTORCH)"
        ),
    };
    let lib = lib.canonicalize().unwrap_or(lib);
    // Binaries and test executables of this package (and of packages that link it:
    // link args of a dependency do not propagate, so asr-train repeats this line).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // Exposed to dependents' build scripts as DEP_ASR_MODEL_LIBTORCH_LIB.
    println!("cargo:libtorch_lib={}", lib.display());

    let root = lib
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| lib.clone());
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("asr_model_autocast");
}
