//! Build script of asr-dist: compiles `csrc/c10d_shim.cpp` (C wrappers over c10d's
//! TCPStore and ProcessGroupGloo) against the headers of the libtorch that torch-sys
//! linked, plus the Gloo headers that `tools/install-dist-headers.sh` installs
//! (`ASR_GLOO_INCLUDE`, which `.cargo/config.toml` points at `.gloo-headers/include`), and
//! records an rpath to that libtorch as asr-model does.
//!
//! The shim is one translation unit over heavy torch headers: about 25 s of CPU, once per
//! cold build.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/shim_errors.h");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=ASR_GLOO_INCLUDE");
    let lib = match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => PathBuf::from(lib),
        Err(_) => panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report where libtorch is \
             (run tools/install-libtorch.sh, or set LIBTORCH)"
        ),
    };
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());

    let gloo = gloo_include();
    let include = lib
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| lib.clone())
        .join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/c10d_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .warnings(false)
        // Debug info of the torch headers would triple the object and the compile time.
        .debug(false)
        .compile("asr_dist_c10d");
}

/// The directory holding `gloo/context.h`, or a build failure that says what to run.
fn gloo_include() -> PathBuf {
    let candidates: Vec<PathBuf> = env::var_os("ASR_GLOO_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from("/usr/include")))
        .collect();
    for dir in &candidates {
        if dir.join("gloo/context.h").is_file() {
            return dir.clone();
        }
    }
    panic!(
        "the Gloo headers are missing (looked for gloo/context.h in {}): run \
         tools/install-dist-headers.sh (tools/install-libtorch.sh runs it too), or set \
         ASR_GLOO_INCLUDE to a directory holding gloo/",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}
