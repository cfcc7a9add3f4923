#!/usr/bin/env bash
# Install the CPU layout of libtorch 2.11.0 (the version tch 0.24.0 is built for) into a
# per-user cache, using only the Python package registry:
#   - the torch==2.11.0 wheel, without its dependencies, gives lib/ and include/;
#   - libtorch_cpu.so needs libcudart.so.13 and libcupti.so.13 even on a CPU-only machine,
#     so the small nvidia-cuda-runtime and nvidia-cuda-cupti wheels are unpacked beside it;
#   - the wheel's libtorch.so needs libtorch_cuda.so (450 MB, plus cuBLAS/cuDNN at run
#     time). The CPU layout replaces it by an empty libtorch.so, as the official CPU
#     libtorch ships; on a CUDA machine asr-model loads libtorch_cuda.so from the library
#     path at start-up instead (see asr-model's `device` module).
# Idempotent: when the cache already holds a complete install it only refreshes the
# `.libtorch` link in the repository, which `.cargo/config.toml` points LIBTORCH at.
# Either way it then runs tools/install-dist-headers.sh: the Gloo headers that asr-dist's
# c10d shim needs beside libtorch's own (the wheel ships none).
#
# `--cuda` then adds the CUDA half (libtorch_cuda, cuDNN, cuBLAS, NCCL... at the versions
# the torch wheel pins) with tools/install-libtorch-cuda.sh, and builds asr-dist's NCCL
# backend (libasr_dist_nccl.so, for several ranks on CUDA) with tools/build-nccl-shim.sh;
# `--cuda-resolve-only` prints those pins and installs nothing of them.
#
# Environment: ASR_TOOLKIT_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/asr-toolkit).
set -euo pipefail
cuda=""
for arg in "$@"; do
    case $arg in
        --cuda) cuda=install ;;
        --cuda-resolve-only) cuda=--resolve-only ;;
        *) echo "usage: tools/install-libtorch.sh [--cuda | --cuda-resolve-only]" >&2; exit 2 ;;
    esac
done

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ASR_TOOLKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asr-toolkit}
dest=$cache/libtorch-$TORCH_VERSION

link_repo() {
    ln -sfn "$dest" "$repo/.libtorch"
    "$repo/tools/install-dist-headers.sh"
    if [[ -n $cuda ]]; then
        "$repo/tools/install-libtorch-cuda.sh" "$dest" "$cache/wheels" "$cuda"
    fi
    if [[ $cuda == install ]]; then
        "$repo/tools/build-nccl-shim.sh" "$dest"
    fi
}

if [[ -f $dest/build-version && $(cat "$dest/build-version") == "$TORCH_VERSION" && -f $dest/lib/libtorch_cpu.so ]]; then
    link_repo
    echo "libtorch $TORCH_VERSION already installed in $dest"
    exit 0
fi

for tool in unzip gcc; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' is needed to install libtorch (apt-get install $tool)" >&2; exit 2; }
done
python=$(command -v python3 || true)
[[ -n $python ]] || { echo "error: python3 with pip is needed to download the torch wheel" >&2; exit 2; }

wheels=$cache/wheels
mkdir -p "$wheels"
# The wheel's libraries are the same for every CPython version: pin one so that the
# download does not depend on the local interpreter.
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 \
    -d "$wheels" "torch==$TORCH_VERSION"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$wheels" "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"

tmp=$(mktemp -d "$cache/.libtorch-partial.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
torch_wheel=$(ls "$wheels"/torch-"$TORCH_VERSION"-cp312-*.whl | head -n 1)
unzip -q "$torch_wheel" 'torch/include/*' 'torch/lib/libtorch_cpu.so' 'torch/lib/libc10.so' \
    'torch/lib/libgomp.so.1' 'torch/lib/libshm.so' -d "$tmp/wheel"
mkdir -p "$tmp/out"
mv "$tmp/wheel/torch/include" "$tmp/wheel/torch/lib" "$tmp/out/"
for wheel in "$wheels"/nvidia_cuda_runtime-"$CUDART_VERSION"-*.whl "$wheels"/nvidia_cuda_cupti-"$CUPTI_VERSION"-*.whl; do
    unzip -q -o "$wheel" 'nvidia/cu13/lib/libcudart.so.13' 'nvidia/cu13/lib/libcupti.so.13' -d "$tmp/nvidia" 2>/dev/null || true
done
cp "$tmp/nvidia/nvidia/cu13/lib/libcudart.so.13" "$tmp/nvidia/nvidia/cu13/lib/libcupti.so.13" "$tmp/out/lib/"
# The empty libtorch.so of the CPU layout (see the header).
echo 'void asr_toolkit_libtorch_cpu_layout(void) {}' >"$tmp/stub.c"
gcc -shared -fPIC -o "$tmp/out/lib/libtorch.so" -Wl,-soname,libtorch.so "$tmp/stub.c"
echo "$TORCH_VERSION" >"$tmp/out/build-version"

rm -rf "$dest"
mv "$tmp/out" "$dest"
link_repo
echo "libtorch $TORCH_VERSION installed in $dest"
