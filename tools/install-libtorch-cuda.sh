#!/usr/bin/env bash
# The CUDA half of libtorch 2.11.0, added to the CPU layout that install-libtorch.sh made
# (run as `tools/install-libtorch.sh --cuda`, which calls this with its folders):
#   tools/install-libtorch-cuda.sh LIBTORCH_DIR WHEELS_DIR [--resolve-only]
#
# 1. The pins come from the wheels themselves (tools/libtorch-cuda-pins.py): the torch
#    wheel's Requires-Dist gives nvidia-cudnn-cu13, -cusparselt-cu13, -nccl-cu13 and
#    -nvshmem-cu13 at exact versions, and cuda-toolkit[cublas,cudart,...]==13.0.2, whose
#    own METADATA (its small wheel is downloaded) pins each nvidia-* library wheel, plus
#    the header-only nvidia-cuda-crt and -cccl that the NCCL shim's build needs.
# 2. Each of those wheels is downloaded with `pip download --no-deps` at its pin (about
#    3 GB in all; kept in WHEELS_DIR), and the torch wheel's CUDA libraries
#    (libtorch_cuda.so, libc10_cuda.so, libtorch_nvshmem.so, libtorch_cuda_linalg.so,
#    libcaffe2_nvrtc.so) are taken from the torch wheel already there.
# 3. Every shared library goes into LIBTORCH_DIR/lib beside libtorch_cpu.so. The wheel's
#    libraries find each other through their run path `$ORIGIN`, and asr-model finds
#    libtorch_cuda.so through the binaries' run path (that same lib/), so `--device cuda`
#    needs no LD_LIBRARY_PATH. The empty libtorch.so of the CPU layout stays: the same
#    binaries still run on machines without a GPU. The headers (CUDA runtime, CRT, CCCL,
#    NCCL's nccl.h, cuDNN...) go to LIBTORCH_DIR/cuda-include, and the pins to
#    LIBTORCH_DIR/cuda-version, which makes a second run a no-op.
# 4. tools/build-nccl-shim.sh then builds asr-dist's NCCL backend, libasr_dist_nccl.so,
#    into LIBTORCH_DIR/lib (install-libtorch.sh runs it after this script).
# `--resolve-only` prints the pins and stops (a few kB downloaded). Needs python3 with pip
# and unzip; no Python environment is made.
set -euo pipefail
dest=$1 wheels=$2 mode=${3:-install}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$(command -v python3 || true)
[[ -n $python ]] || { echo "error: python3 with pip is needed to download the CUDA wheels" >&2; exit 2; }

torch_wheel=$(ls "$wheels"/torch-2.11.0-cp312-*.whl 2>/dev/null | head -n 1)
[[ -n $torch_wheel ]] || { echo "error: no torch 2.11.0 wheel in $wheels: run tools/install-libtorch.sh first" >&2; exit 2; }
# Every glibc baseline up to the torch wheel's own (manylinux_2_28): the nvidia wheels
# use several (NCCL 2.28.9 is manylinux_2_18).
platforms=(--platform any --platform manylinux2014_x86_64)
for glibc in $(seq 17 28); do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
download() {
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        "${platforms[@]}" -d "$wheels" "$@"
}

# 1. Resolve.
toolkit=$("$python" "$repo/tools/libtorch-cuda-pins.py" "$torch_wheel" | grep '^cuda-toolkit' || true)
[[ -n $toolkit ]] || { echo "error: $torch_wheel names no cuda-toolkit dependency" >&2; exit 1; }
download "${toolkit/\[*\]/}"
toolkit_wheel=$(ls "$wheels"/cuda_toolkit-"${toolkit##*==}"-*.whl | head -n 1)
mapfile -t pins < <("$python" "$repo/tools/libtorch-cuda-pins.py" "$torch_wheel" "$toolkit_wheel")
if [[ $mode == --resolve-only ]]; then
    printf '%s\n' "${pins[@]}"
    exit 0
fi
if [[ -f $dest/cuda-version && $(cat "$dest/cuda-version") == "$(printf '%s\n' "${pins[@]}")" \
      && -f $dest/lib/libtorch_cuda.so ]]; then
    echo "libtorch CUDA libraries already installed in $dest/lib"
    exit 0
fi

# 2. Download.
echo "downloading ${#pins[@]} CUDA library wheels (about 3 GB) into $wheels" >&2
download "${pins[@]}"

# 3. Unpack into a partial folder, then move into place.
tmp=$(mktemp -d "$dest/.cuda-partial.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib" "$tmp/include"
unzip -q -o "$torch_wheel" 'torch/lib/libtorch_cuda.so' 'torch/lib/libc10_cuda.so' \
    'torch/lib/libtorch_nvshmem.so' 'torch/lib/libtorch_cuda_linalg.so' \
    'torch/lib/libcaffe2_nvrtc.so' -d "$tmp/torch"
mv "$tmp"/torch/torch/lib/* "$tmp/lib/"
for pin in "${pins[@]}"; do
    name=${pin%%==*} version=${pin##*==}
    # Wheel file names spell the project with underscores; the `.*` pins match any
    # build of that release.
    pattern="${name//-/_}-${version%.\*}"
    wheel=$(ls "$wheels"/$pattern*.whl 2>/dev/null | sort | tail -n 1)
    [[ -n $wheel ]] || { echo "error: pip downloaded no wheel for $pin into $wheels" >&2; exit 1; }
    rm -rf "$tmp/unpack"
    unzip -q -o "$wheel" 'nvidia/*' -d "$tmp/unpack"
    find "$tmp/unpack/nvidia" -path '*/lib/*' -name '*.so*' \( -type f -o -type l \) \
        -exec cp -a -t "$tmp/lib/" {} +
    find "$tmp/unpack/nvidia" -type d -name include -prune \
        -exec cp -a -t "$tmp/include/" {}/. \;
done
rm -rf "$tmp/unpack" "$tmp/torch"
for needed in libtorch_cuda.so libcudnn.so.9 libnccl.so.2 libcublas.so.13 libcublasLt.so.13 \
              libcusparseLt.so.0 libnvshmem_host.so.3 libcufile.so.0; do
    [[ -e $tmp/lib/$needed ]] || { echo "error: $needed is missing after unpacking the wheels" >&2; exit 1; }
done
for header in nccl.h crt/host_config.h cccl/nv/target; do
    [[ -e $tmp/include/$header ]] || { echo "error: $header is missing after unpacking the wheels" >&2; exit 1; }
done
# Every library libtorch_cuda.so names must now resolve from lib/ or the system.
# (libcuda.so.1 is the driver's, present on GPU machines only.)
missing=$(cd "$tmp/lib" && LD_LIBRARY_PATH="$tmp/lib:$dest/lib" ldd libtorch_cuda.so \
    | grep 'not found' | grep -v 'libcuda\.so\.1' || true)
[[ -z $missing ]] || { echo "error: libtorch_cuda.so still misses: $missing" >&2; exit 1; }

# Replace, never overwrite in place: running programs may have these files mapped.
cp -a --remove-destination "$tmp"/lib/. "$dest/lib/"
rm -rf "$dest/cuda-include"
mv "$tmp/include" "$dest/cuda-include"
printf '%s\n' "${pins[@]}" >"$dest/cuda-version"
echo "libtorch CUDA libraries installed in $dest/lib ($(du -sh "$dest/lib" | cut -f1) in all)"
