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
# No incremental compilation of the workspace crates: CI builds from a clean clone, where
# incremental state is only extra work (query caches, 256 codegen units per crate); a
# caller's own CARGO_INCREMENTAL wins.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
cargo test --workspace --locked
# The demo (about 10 minutes of training on 2 threads) runs beside the three Python-side
# checks, which spend most of their time setting up venvs; a fixed thread count keeps its
# result independent of the load.
demo_log=$(mktemp)
DEMO_BIN_DIR=${CARGO_TARGET_DIR:-$repo/target}/debug ./tools/demo-test.sh > "$demo_log" 2>&1 &
demo_pid=$!
trap 'kill "$demo_pid" 2>/dev/null || true; rm -f "$demo_log"' EXIT
./tools/interop-test.sh
./tools/ecosystem-test.sh
./tools/dist-torchrun-test.sh
demo_status=0
wait "$demo_pid" || demo_status=$?
cat "$demo_log"
exit "$demo_status"
