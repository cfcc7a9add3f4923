#!/usr/bin/env bash
# Data-parallel training launched by PyTorch's own launcher (issue 13, test f):
# `torchrun --standalone --nproc-per-node 2 --no-python asr-train run ...` on the CPU
# (Gloo), with torch from the pinned venv of tools/requirements-model-fixtures.txt.
# torchrun's agent serves the TCPStore (TORCHELASTIC_USE_AGENT_STORE), the ranks join it.
#   tools/dist-torchrun-test.sh
# Exits non-zero unless the job succeeds and rank 0 wrote the run (two steps, comm_s).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=$(tools/venv.sh model-fixtures tools/requirements-model-fixtures.txt)
torchrun=$(dirname "$py")/torchrun
# The whole workspace with every target: the unit graph `cargo test --workspace` (run
# before this by tools/test.sh) has just built, so nothing is compiled again. Building
# only `-p asr-data -p asr-train` would unify features differently and compile polars,
# arrow and tch a second time (about 7 minutes here).
cargo build --quiet --locked --workspace --all-targets
bin=${CARGO_TARGET_DIR:-$repo/target}/debug
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin/asr-data" pack fixtures/librispeech/LibriSpeech --out "$out/shards" >"$out/pack.log" 2>&1 ||
    { cat "$out/pack.log"; exit 1; }
env -u RANK -u WORLD_SIZE -u MASTER_ADDR -u MASTER_PORT \
    "$torchrun" --standalone --nproc-per-node 2 --no-python \
    "$bin/asr-train" run --shards "$out/shards" --out "$out/run" --model tiny --device cpu \
    --precision f32 --threads 1 --max-steps 2 --batch-seconds 20 --max-duration-s 20 \
    --eval-every 0 --dist-timeout 60 >"$out/torchrun.log" 2>&1 ||
    { cat "$out/torchrun.log"; echo "dist-torchrun-test: torchrun job failed"; exit 1; }
"$py" - "$out/run" <<'PY'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
steps = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
         if r["kind"] == "step"]
assert [r["step"] for r in steps] == [1, 2], steps
assert all(r["comm_s"] >= 0 for r in steps), steps
state = json.loads((run / "checkpoints/step-00000002/state.json").read_text())
assert state["world_size"] == 2, state
assert json.loads((run / "final_results.json").read_text())["steps"] == 2
print("dist-torchrun-test: 2 ranks under torchrun --no-python trained 2 steps")
PY
