#!/usr/bin/env bash
# CPU benchmark of the asr-train loop: steps/s, audio seconds per second, median step
# time and the fraction of step time spent waiting for the data loader.
#   tools/bench/train.sh [HOURS] [STEPS] [THREADS] [BATCH_SECONDS]
# Defaults: a 0.5 h synthetic corpus (tools/make-corpus.py, cached under
# ~/.cache/asr-toolkit/bench), 60 optimizer steps, 2 threads, 40 s batches.
#
# Model: the configuration issue 7 compares with transformers (wav2vec2 from scratch,
# hidden 256, 4 layers, 4 heads, FFN 1024, conv dims 128x5 + 256x2, layer-norm feature
# encoder, stable layer norm, SpecAugment time masks 0.05), AdamW, length-bucketed
# batches. Two runs in the same invocation:
#   prefetch   the default loader (a background thread, 4 batches ahead);
#   inline     the peer: a queue of one batch, so loading overlaps with at most one step.
# The first 3 steps of each run are warm-up and not counted.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
hours=${1:-0.5}
steps=${2:-60}
threads=${3:-2}
batch_seconds=${4:-40}

cache=${ASR_BENCH_CACHE:-$HOME/.cache/asr-toolkit/bench}
corpus="$cache/train-librispeech-$hours"
shards="$cache/train-shards-$hours"
cargo build --quiet --release -p asr-data -p asr-train
tools/cached-corpus.sh "$hours" "$corpus" "$shards"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/model.json" <<'JSON'
{
  "model_type": "wav2vec2",
  "hidden_size": 256,
  "num_hidden_layers": 4,
  "num_attention_heads": 4,
  "intermediate_size": 1024,
  "conv_dim": [128, 128, 128, 128, 128, 256, 256],
  "conv_stride": [5, 2, 2, 2, 2, 2, 2],
  "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
  "conv_bias": true,
  "feat_extract_norm": "layer",
  "do_stable_layer_norm": true,
  "num_conv_pos_embeddings": 128,
  "num_conv_pos_embedding_groups": 16,
  "mask_time_prob": 0.05,
  "layerdrop": 0.0,
  "ctc_loss_reduction": "mean"
}
JSON

run() {
    local name=$1 prefetch=$2
    /usr/bin/time -f "%M" -o "$work/$name.rss" \
        target/release/asr-train run --shards "$shards" --model "$work/model.json" \
        --out "$work/$name" --device cpu --threads "$threads" --max-steps "$steps" \
        --batch-seconds "$batch_seconds" --lr 1e-3 --warmup-steps 10 \
        --freeze-feature-encoder=false --eval-every 0 --final-splits dev \
        --prefetch-batches "$prefetch" --log-every 20 2> "$work/$name.log" \
        || { cat "$work/$name.log" >&2; exit 1; }
}
run prefetch 4
run inline 1

python3 - "$work" "$threads" <<'PY'
import json, statistics, sys
work, threads = sys.argv[1], sys.argv[2]
print(f"asr-train CPU benchmark, {threads} threads (steps after 3 warm-up steps)")
print(f"{'run':<9} {'steps/s':>8} {'audio s/s':>10} {'median step s':>14} {'data wait':>10} {'peak RSS MB':>12}")
for name in ["prefetch", "inline"]:
    steps = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl")]
    steps = [s for s in steps if s["kind"] == "step"][3:]
    total = sum(s["step_time_s"] for s in steps)
    wait = sum(s["data_wait_s"] for s in steps)
    audio = sum(s["audio_s"] for s in steps)
    rss = int(open(f"{work}/{name}.rss").read().split()[-1]) / 1024
    med = statistics.median(s["step_time_s"] for s in steps)
    print(f"{name:<9} {len(steps)/total:>8.3f} {audio/total:>10.1f} {med:>14.3f} {100*wait/total:>9.2f}% {rss:>12.0f}")
PY
