#!/usr/bin/env bash
# Build libasr_dist_nccl.so, asr-dist's NCCL backend, into the CUDA layout of libtorch:
#   tools/build-nccl-shim.sh LIBTORCH_DIR
# (tools/install-libtorch.sh --cuda runs it after laying out the CUDA libraries).
#
# The library is crates/asr-dist/csrc/nccl_shim.cpp, one C function that constructs
# c10d::ProcessGroupNCCL. It links libtorch_cuda.so, so it cannot be part of the binaries
# (they link the CPU layout and run on machines without a GPU); asr-dist dlopen()s it
# when several ranks train on CUDA. It is compiled with the system's C++ compiler against
# LIBTORCH_DIR/include (the torch wheel's headers) and LIBTORCH_DIR/cuda-include (the CUDA
# runtime, CRT and CCCL headers and NCCL 2.28.9's nccl.h, from the wheels the torch wheel
# pins), and installed as LIBTORCH_DIR/lib/libasr_dist_nccl.so with run path $ORIGIN.
# About 45 s of CPU. Rebuilt only when the source (with shim_errors.h) or this script
# changed: the sha256 of them is kept beside it. Then `ldd -r` must resolve every
# symbol but the GPU driver's.
#
# Environment: CXX (default c++).
set -euo pipefail
dest=${1:?usage: tools/build-nccl-shim.sh LIBTORCH_DIR}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source_file=$repo/crates/asr-dist/csrc/nccl_shim.cpp
lib=$dest/lib/libasr_dist_nccl.so
cxx=${CXX:-c++}

for needed in lib/libtorch_cuda.so lib/libc10_cuda.so cuda-include/nccl.h \
              cuda-include/crt/host_config.h cuda-include/cccl/nv/target; do
    [[ -e $dest/$needed ]] || { echo "error: $dest/$needed is missing: run tools/install-libtorch.sh --cuda" >&2; exit 2; }
done
command -v "$cxx" >/dev/null || { echo "error: no C++ compiler '$cxx' (apt-get install g++, or set CXX)" >&2; exit 2; }

stamp=$(cat "$source_file" "$(dirname "$source_file")/shim_errors.h" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
if [[ -f $lib && -f $lib.sha256 && $(cat "$lib.sha256") == "$stamp" ]]; then
    echo "libasr_dist_nccl.so is up to date in $dest/lib"
    exit 0
fi

tmp=$(mktemp -d "$dest/.nccl-shim.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# -w: the CUDA headers warn about std::hardware_destructive_interference_size; its value
# (64 on x86_64) is part of the layouts checked by the shim's static_asserts.
"$cxx" -std=c++17 -O2 -fPIC -shared -w -D_GLIBCXX_USE_CXX11_ABI=1 -DUSE_C10D_NCCL -DUSE_CUDA \
    -I"$dest/include" -I"$dest/include/torch/csrc/api/include" \
    -I"$dest/cuda-include" -I"$dest/cuda-include/cccl" \
    "$source_file" -o "$tmp/libasr_dist_nccl.so" \
    -L"$dest/lib" -Wl,-rpath,'$ORIGIN' -Wl,--no-undefined -Wl,--no-as-needed \
    -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10

# Every symbol must resolve from lib/ or the system (libcuda.so.1, the driver, is loaded
# by the CUDA runtime at run time, on GPU machines only).
unresolved=$(cd "$tmp" && LD_LIBRARY_PATH="$dest/lib" ldd -r libasr_dist_nccl.so 2>&1 \
    | grep -E 'not found|undefined symbol' | grep -v 'libcuda\.so\.1' || true)
[[ -z $unresolved ]] || { echo "error: libasr_dist_nccl.so does not resolve: $unresolved" >&2; exit 1; }

# Replace, never overwrite in place: a running job may have the old file mapped.
mv -f "$tmp/libasr_dist_nccl.so" "$lib"
echo "$stamp" >"$lib.sha256"
echo "libasr_dist_nccl.so built into $dest/lib"
