#!/usr/bin/env bash
# asr-train beside transformers' Seq2SeqTrainer on Whisper (issue 14, 6(b)): the same
# random small Whisper (tools/bench/whisper-vs-seq2seqtrainer/model.json: whisper-tiny's
# layout and 51,865-token vocabulary at d_model 128, 2 + 2 layers, no dropout), saved
# once by transformers and loaded by both engines, so the initial weights are the same;
# the same shards, labels tokenized from their text with the prefix
# <|startoftranscript|><|en|><|transcribe|><|notimestamps|>, features padded to 30 s;
# the same batches in the same order (asr-train's plan, printed by its batch_plan
# example and fed to the Trainer); AdamW lr 1e-3, weight decay 0.005, 10 warm-up steps
# then linear decay (asr-train's schedule on both sides), clipping at 1.0; f32 on the CPU,
# the same thread count. Engines alternate round by round; the first 3 steps of each run
# are not timed. Prints the loss of every step for both with the largest difference
# (exit 1 above --loss-tolerance, 1e-3), and steps per second, CPU time and peak RSS for
# both, with the ratios.
#
#   tools/bench/whisper-vs-seq2seqtrainer.sh [--steps N] [--threads T] [--rounds R]
#       [--batch-seconds S] [--max-batch-utterances N] [--shards DIR] [--split NAME]
#       [--config FILE] [--seed N] [--loss-tolerance X] [--json-out FILE]
#
# Defaults: 30 steps, 2 threads, 2 rounds, batches of 6 clips (asr-train plans a Whisper
# batch as clips of 30 s each: --batch-seconds 180 and --max-batch-utterances 6), seed 0
# for the weights, and a 1.1 h synthetic corpus
# generated once under ~/.cache/asr-toolkit/bench (tools/make-corpus.py --hours 1) and
# packed with asr-data. The transformers side runs in the venv of the CTC comparison
# (tools/bench/train-vs-transformers/requirements.txt: torch 2.11.0, transformers 5.23.0,
# accelerate, pyarrow), which also makes the model folder (make_model.py).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

steps=30 threads=2 rounds=2 batch_seconds=180 batch_utterances=6 shards="" split="" json_out="" seed=0 tolerance=1e-3
config=tools/bench/whisper-vs-seq2seqtrainer/model.json
while [[ $# -gt 0 ]]; do
    case $1 in
        --steps) steps=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --batch-seconds) batch_seconds=$2; shift 2 ;;
        --max-batch-utterances) batch_utterances=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --split) split=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --loss-tolerance) tolerance=$2; shift 2 ;;
        --json-out) json_out=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
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
    shards="$cache/train-shards-1"
    tools/cached-corpus.sh 1 "$cache/train-librispeech-1" "$shards"
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
"$py" tools/bench/whisper-vs-seq2seqtrainer/make_model.py --config "$config" --seed "$seed" \
    --tokenizer fixtures/whisper/tokenizer/tokenizer.json --out "$work/model" 2>/dev/null
"$release/examples/batch_plan" --shards "$shards" --model "$work/model" --language en --train-split "$split" \
    --batch-seconds "$batch_seconds" --max-batch-utterances "$batch_utterances" \
    --max-steps "$steps" >"$work/plan.jsonl"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
args=(--asr-train "$release/asr-train" --python "$py" --shards "$shards" --split "$split"
      --model "$work/model" --plan "$work/plan.jsonl" --steps "$steps" --threads "$threads"
      --rounds "$rounds" --batch-seconds "$batch_seconds" --max-batch-utterances "$batch_utterances"
      --loss-tolerance "$tolerance")
[[ -n $json_out ]] && args+=(--json-out "$json_out")
"$py" tools/bench/whisper-vs-seq2seqtrainer/driver.py "${args[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
