#!/usr/bin/env bash
# The test command of the README: sets up what the tests need on a bare machine
# (libtorch 2.11.0 in a per-user cache, Python venvs with pyarrow/datasets for the
# interop test, tensorboard/huggingface_hub for the ecosystem test and torch for the
# torchrun launch test) and runs every test of the workspace, then the demo
# (tools/demo-test.sh: tools/demo.sh with its default seed, checked against the README's
# train-WER range), on the binaries `cargo test` has just built.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

./tools/install-libtorch.sh
cargo test --workspace --locked
./tools/interop-test.sh
./tools/ecosystem-test.sh
./tools/dist-torchrun-test.sh
DEMO_BIN_DIR=${CARGO_TARGET_DIR:-$repo/target}/debug ./tools/demo-test.sh
