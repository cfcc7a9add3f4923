#!/usr/bin/env bash
# Python interop test of the shard format: writes small packs with the Rust writer
# (int16 and float32, several shards per split) and opens them with pyarrow and Hugging
# Face datasets in the pinned venv of tests/interop/requirements.txt.
#   tools/interop-test.sh
# Prints `N passed, M failed` and exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=$(tools/venv.sh interop tests/interop/requirements.txt)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The whole workspace with every target, the unit graph `cargo test --workspace` (run
# before this by tools/test.sh) has just built, so nothing is compiled again.
# `cargo run -p asr-shards --example ...` would unify features for asr-shards alone and
# compile arrow and its dependencies a second time, which cost CI about 7 minutes.
cargo build --quiet --locked --workspace --all-targets
"${CARGO_TARGET_DIR:-$repo/target}/debug/examples/write_interop_shards" "$out/packs" >/dev/null
HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 HF_HOME="$out/hf" HF_DATASETS_DISABLE_PROGRESS_BARS=1 \
    "$py" tests/interop/test_shards_pyarrow.py "$out/packs"
