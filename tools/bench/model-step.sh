#!/usr/bin/env bash
# One CTC training step (forward + loss + backward) of the wav2vec2-base shape on the
# CPU: asr-model (tch, release build) beside transformers (PyTorch 2.11, the same
# libtorch build) in the same run, same batch shape, same thread count, both in
# training mode with SpecAugment and dropout, LayerDrop off, the feature encoder trained.
#   tools/bench/model-step.sh [BATCH] [SECONDS] [STEPS] [THREADS] [ROUNDS]
# Defaults: 2 utterances of 4 s, 4 timed steps after one warm-up, 2 threads, 2 rounds.
# The engines alternate round by round so that background load hits both alike.
# Prints each run (median and fastest step, seconds), then per engine the median of
# the run medians and the fastest step, and the ratios asr-model / transformers.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
batch=${1:-2}
seconds=${2:-4}
steps=${3:-4}
threads=${4:-2}
rounds=${5:-2}
py=$(tools/venv.sh model-fixtures tools/requirements-model-fixtures.txt)
cargo build --quiet --release -p asr-model --example bench_step
results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo "engine batch seconds threads median_step_s fastest_step_s"
for _ in $(seq "$rounds"); do
    target/release/examples/bench_step "$batch" "$seconds" "$steps" "$threads" | tee -a "$results"
    "$py" tools/bench/model-step/transformers_step.py "$batch" "$seconds" "$steps" "$threads" | tee -a "$results"
done
"$py" - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split("\t")
    runs.setdefault(f[0], []).append((float(f[4]), float(f[5])))
summary = {k: (statistics.median(m for m, _ in v), min(b for _, b in v)) for k, v in runs.items()}
(rm, rb), (tm, tb) = summary["asr-model"], summary["transformers"]
print(f"asr-model:    median {rm:.3f} s, fastest {rb:.3f} s per step")
print(f"transformers: median {tm:.3f} s, fastest {tb:.3f} s per step")
print(f"ratio asr-model / transformers: median {rm / tm:.2f}, fastest {rb / tb:.2f}")
PY
