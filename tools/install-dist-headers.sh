#!/usr/bin/env bash
# Install the Gloo headers that asr-dist's C++ shim (crates/asr-dist/csrc/c10d_shim.cpp)
# compiles against, into the per-user cache beside libtorch, and link them into the
# repository as `.gloo-headers` (`.cargo/config.toml` points ASR_GLOO_INCLUDE at it).
#
# Why these headers: c10d's `ProcessGroupGloo.hpp` includes `gloo/*.h`, and the torch
# 2.11.0 wheel ships none of them (its libtorch_cpu.so has Gloo compiled in, from a
# late-2025 gloo). No PyPI or crates.io package ships Gloo's headers; Debian's
# `libgloo-dev` does, as a 2022 snapshot (upstream commit 5b14351). The shim is written so
# that this age does not matter: it only calls functions whose ABI does not depend on
# Gloo's own struct layouts (`ProcessGroupGloo::Options::create`, the static
# `createDeviceForInterface` / `createDefaultDevice`, which return a `shared_ptr`, the
# exported constructor, and the virtual collectives of `c10d::Backend`). The classes of
# ProcessGroupGloo.hpp hold Gloo types only behind `shared_ptr`/`unique_ptr`, so the
# object's size and the Backend vtable come from torch's own headers. Between 5b14351 and
# the 2025 gloo, `gloo::Context` lost its virtual destructor and `rendezvous::Store`
# gained a base and virtuals, so the shim never touches those types inline (no
# `setTimeout`, no `GlooStore`): see the comment at the top of the shim, which also says
# how the sizes it relies on were checked against libtorch's own allocations.
#
# Only the headers are taken (`apt-get download` + `dpkg-deb -x`, no root needed once the
# package lists are there): nothing is installed system-wide and nothing links libgloo.
# Idempotent: a complete install in the cache only refreshes the link.
#
# Environment: ASR_TOOLKIT_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/asr-toolkit);
# ASR_GLOO_DEB=path/to/libgloo-dev_<version>_amd64.deb on a machine without apt (download
# that file from Debian's package pool, pool/main/g/gloo/, yourself; `ar` and `tar`
# unpack it).
set -euo pipefail

GLOO_DEB_VERSION=0.0~git20220518.5b14351-3

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ASR_TOOLKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asr-toolkit}
dest=$cache/gloo-headers-${GLOO_DEB_VERSION//\~/_}

link_repo() {
    ln -sfn "$dest" "$repo/.gloo-headers"
}

if [[ -f $dest/include/gloo/context.h && -f $dest/version && $(cat "$dest/version") == "$GLOO_DEB_VERSION" ]]; then
    link_repo
    echo "gloo headers $GLOO_DEB_VERSION already installed in $dest"
    exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.gloo-partial.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt's download sandbox user must be able to write there.
chmod 755 "$tmp"

deb=${ASR_GLOO_DEB:-}
if [[ -z $deb ]]; then
    command -v apt-get >/dev/null || {
        echo "error: apt-get is not available: download libgloo-dev_${GLOO_DEB_VERSION}_amd64.deb from Debian's package pool and run ASR_GLOO_DEB=path/to/it $0" >&2
        exit 2
    }
    if ! apt-cache show "libgloo-dev=$GLOO_DEB_VERSION" >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq
        else
            echo "error: apt does not know libgloo-dev $GLOO_DEB_VERSION: run 'sudo apt-get update' (Debian 12 'bookworm' has it) and try again" >&2
            exit 2
        fi
    fi
    (cd "$tmp" && apt-get download -qq "libgloo-dev=$GLOO_DEB_VERSION" 2>&1 | grep -v 'unsandboxed' >&2 || true)
    deb=$(ls "$tmp"/libgloo-dev_*.deb 2>/dev/null | head -n 1)
    [[ -n $deb ]] || { echo "error: apt-get download libgloo-dev=$GLOO_DEB_VERSION failed (see above)" >&2; exit 2; }
fi

mkdir -p "$tmp/x"
if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$tmp/x"
else
    (cd "$tmp/x" && ar x "$deb" && tar -xf data.tar.*)
fi
[[ -f $tmp/x/usr/include/gloo/context.h ]] || { echo "error: $deb holds no usr/include/gloo/context.h" >&2; exit 2; }
mkdir -p "$tmp/out"
mv "$tmp/x/usr/include" "$tmp/out/include"
echo "$GLOO_DEB_VERSION" >"$tmp/out/version"

rm -rf "$dest"
mv "$tmp/out" "$dest"
link_repo
echo "gloo headers $GLOO_DEB_VERSION installed in $dest"
