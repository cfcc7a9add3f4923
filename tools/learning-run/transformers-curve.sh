#!/usr/bin/env bash
# The reference configuration trained by transformers' Trainer on the learning run's own
# corpus and batches, for an equal-data comparison with `run.sh --recipe reference`
# (issue 7: the same configuration should reach the same CER in no more wall time).
#
#   tools/learning-run/transformers-curve.sh [--minutes M] [--save-every S] [--out DIR]
#
# Defaults: 10 minutes, a checkpoint every 2.5 minutes, out/transformers-curve. The batch
# plan is asr-train's for tools/learning-run/reference.toml (seed 0, 40 s batches), the
# learning-rate schedule the same (150 warm-up steps, linear decay over 2,300 steps),
# 2 threads, f32, in the venv of tools/bench/train-vs-transformers (torch 2.11.0,
# transformers 5.23.0). Each checkpoint is scored on dev-clean with `asr-train eval`
# afterwards, so both engines are measured by the same WER/CER code; the table gives
# wall minutes of training (the Trainer's own start-up and data preparation excluded,
# as asr-train's elapsed time excludes its start-up).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

minutes=10 every=2.5 out=out/transformers-curve
while [[ $# -gt 0 ]]; do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --save-every) every=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

./tools/install-libtorch.sh
py=$(tools/venv.sh bench-train tools/bench/train-vs-transformers/requirements.txt)
cargo build --quiet --release --locked -p asr-data -p asr-train --example batch_plan
cache=${ASR_CORPUS_CACHE:-$HOME/.cache/asr-toolkit/corpora}
shards=$cache/synth-2h-packed
tools/cached-corpus.sh 2.2 "$cache/synth-2h" "$shards"

rm -rf "$out"
mkdir -p "$out"
# The Trainer does well under one step per second here: plan that many steps at most
# (the plan repeats if it runs out; the schedule's horizon stays 2,300).
plan_steps=$(python3 -c "print(min(2300, int($minutes * 60) + 10))")
target/release/examples/batch_plan --config tools/learning-run/reference.toml \
    --shards "$shards" --max-steps "$plan_steps" >"$out/plan.jsonl"
split=$(python3 - "$shards/manifest.json" <<'PY'
import json, sys
splits = json.load(open(sys.argv[1]))["splits"]
print(next(n for n, s in splits.items() if s.get("role") == "train"))
PY
)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
"$py" tools/bench/train-vs-transformers/hf_trainer.py --shards "$shards" --split "$split" \
    --config tools/learning-run/reference-model.json --plan "$out/plan.jsonl" \
    --steps "$plan_steps" --schedule-steps 2300 --threads 2 --device cpu --seed 0 \
    --steps-out "$out/steps.jsonl" --max-minutes "$minutes" \
    --save-every-minutes "$every" --save-dir "$out/checkpoints"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "transformers Trainer, reference configuration (wall minutes, step, dev WER, CER):"
for ckpt in "$out"/checkpoints/min-*; do
    target/release/asr-train eval --shards "$shards" --model "$ckpt" --splits dev \
        --device cpu --threads 2 --json >"$ckpt/eval.json"
    python3 - "$ckpt" <<'PY'
import json, os, sys
saved = json.load(open(os.path.join(sys.argv[1], "saved.json")))
dev = next(iter(json.load(open(os.path.join(sys.argv[1], "eval.json")))["splits"].values()))
print(f"  {saved['elapsed_s'] / 60:6.1f}  {saved['step']:>5}  {dev['wer']:.3f}  {dev['cer']:.3f}")
PY
done
