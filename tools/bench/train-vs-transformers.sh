#!/usr/bin/env bash
# asr-train beside transformers' Trainer: the same wav2vec2 configuration (issue 7's
# reference: hidden 256, 4 layers, 4 heads, FFN 1024, conv dims 128x5 + 256x2,
# layer-norm feature encoder, stable layer norm, SpecAugment time masks 0.05, from
# random weights, feature encoder trained), the same shards, the same length-sorted
# batches of ~40 s padded audio in the same order (asr-train's plan, printed by its
# batch_plan example and fed to the Trainer), the same precision (f32 on the CPU, bf16
# autocast on CUDA), the same thread count, AdamW lr 1e-3 with 150 warm-up steps, grad
# clipping at 1.0. Engines alternate round by round; the first 3 steps of each run are
# not timed. Prints seconds per step, audio seconds per second, CPU seconds per audio
# second and peak memory for both, with the ratios.
#
#   tools/bench/train-vs-transformers.sh [--device cpu|cuda] [--steps N] [--threads T]
#       [--rounds R] [--batch-seconds S] [--shards DIR] [--split NAME] [--config FILE]
#       [--json-out FILE]
#
# Defaults: cpu, 20 steps, 2 threads (cpu), 2 rounds, 40 s batches, the config
# tools/learning-run/reference-model.json, and a 0.5 h synthetic corpus generated once
# under ~/.cache/asr-toolkit/bench (tools/make-corpus.py) and packed with asr-data.
# The transformers side runs in its own venv (tools/bench/train-vs-transformers/
# requirements.txt: torch 2.11.0, transformers 5.23.0). With --device cuda the same
# runs use the GPU in bf16 and the table adds peak GPU memory (nvidia-smi, per process).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

device=cpu steps=20 threads=2 rounds=2 batch_seconds=40 shards="" split="" json_out=""
config=tools/learning-run/reference-model.json
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --batch-seconds) batch_seconds=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --split) split=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --json-out) json_out=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

py=$(tools/venv.sh bench-train tools/bench/train-vs-transformers/requirements.txt)
# The binaries this script runs (asr-data for the cached corpus, asr-train for the
# runs) and the batch_plan example: `--example` alone would build only the example.
cargo build --quiet --release -p asr-data -p asr-train --bins
cargo build --quiet --release -p asr-train --example batch_plan
release="${CARGO_TARGET_DIR:-target}/release"
for built in "$release/asr-data" "$release/asr-train" "$release/examples/batch_plan"; do
    [[ -x $built ]] || { echo "error: cargo build did not produce $built" >&2; exit 1; }
done

if [[ -z $shards ]]; then
    cache=${ASR_BENCH_CACHE:-$HOME/.cache/asr-toolkit/bench}
    shards="$cache/train-shards-0.5"
    tools/cached-corpus.sh 0.5 "$cache/train-librispeech-0.5" "$shards"
fi
if [[ -z $split ]]; then
    # The split named train, else the first whose role is train (e.g. train-clean).
    split=$(python3 - "$shards/manifest.json" <<'PY'
import json, sys
splits = json.load(open(sys.argv[1]))["splits"]
names = [n for n in splits if n == "train"] + [n for n, s in splits.items() if s.get("role") == "train"]
print(names[0] if names else "train")
PY
)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$release/examples/batch_plan" --shards "$shards" --model "$config" --train-split "$split" \
    --batch-seconds "$batch_seconds" --max-steps "$steps" >"$work/plan.jsonl"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
args=(--asr-train "$release/asr-train" --python "$py" --shards "$shards" --split "$split"
      --config "$config" --plan "$work/plan.jsonl" --steps "$steps" --threads "$threads"
      --rounds "$rounds" --device "$device" --batch-seconds "$batch_seconds")
[[ -n $json_out ]] && args+=(--json-out "$json_out")
"$py" tools/bench/train-vs-transformers/driver.py "${args[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
