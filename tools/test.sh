#!/usr/bin/env bash
# The test command of the README: sets up what the tests need on a bare machine
# (libtorch 2.11.0 in a per-user cache, Python venvs with pyarrow/datasets for the
# interop test, tensorboard/huggingface_hub for the ecosystem test and torch for the
# torchrun launch test), runs every test of the workspace, then the README's demo, which
# must end within the README's range of train WER.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

./tools/install-libtorch.sh
cargo test --workspace --locked
./tools/check-demo-build.sh
./tools/interop-test.sh
./tools/ecosystem-test.sh
./tools/dist-torchrun-test.sh
./tools/demo-test.sh
