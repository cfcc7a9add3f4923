#!/usr/bin/env bash
# Data parallelism on this CPU: 2 ranks x 1 thread (`asr-train run --nproc-per-node 2
# --threads 1`, gradients averaged by c10d Gloo) against 1 rank x 2 threads at the same
# global batch, same steps, same micro-batches; plus the data loader alone.
#
#   tools/bench/dist.sh [--steps N] [--rounds R] [--batch-seconds S] [--shards DIR]
#       [--split NAME] [--config FILE] [--loader-epochs E]
#
# Peers (alternating, round by round):
#   ddp    2 ranks, 1 thread each, --batch-seconds S per rank (global batch 2 x S);
#   accum  1 rank, 2 threads, --batch-seconds S and --grad-accum 2 (global batch 2 x S).
# The 1-rank peer accumulates two micro-batches rather than taking one batch of 2 x S:
# with the same seed, rank r of 2 takes plan batches r, r + 2, ... and one rank with
# --grad-accum 2 takes the same batches in the same steps (the equivalence test in
# crates/asr-train/tests/distributed.rs checks that both end with the same weights), so
# both peers compute exactly the same padded tensors and the comparison isolates where
# the two cores go: two processes on one core each plus an all-reduce, against one
# process whose intra-op parallelism spreads each op over two cores. A batch of 2 x S
# would be cut differently (other lengths, other padding) and compare other work.
#
# Per run, over the steps after the first 3 (warm-up): steps/s and audio seconds per
# second (from rank 0's metrics.jsonl: audio_s is summed over the ranks, step_time_s is
# rank 0's wall time of the step), median and mean comm_s per step (seconds in the
# gradient all-reduce and the step-record exchange), the share of step time it takes,
# CPU seconds (user + system, all processes) per audio second, and the whole run's wall
# time. The load average is printed before and after every run.
#
# Then the loader alone (crates/asr-train/examples/loader_bench.rs) with 1 and 2 loader
# threads, for --loader-epochs epochs after a warm-up epoch.
#
# Defaults: 20 steps, 2 rounds, 20 s per rank, tools/learning-run/reference-model.json
# (issue 7's wav2vec2: hidden 256, 4 layers), 10 loader epochs, and the 0.5 h synthetic
# corpus of tools/cached-corpus.sh. Run it on a quiet machine: both peers need both cores
# (on a shared machine, serialize benchmarks with `flock LOCKFILE tools/bench/dist.sh`).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

steps=20 rounds=2 batch_seconds=20 shards="" split="" loader_epochs=10
config=tools/learning-run/reference-model.json
while [[ $# -gt 0 ]]; do
    case $1 in
        --steps) steps=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --batch-seconds) batch_seconds=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --split) split=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --loader-epochs) loader_epochs=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

cargo build --quiet --release -p asr-train --bins
cargo build --quiet --release -p asr-train --example loader_bench
release="${CARGO_TARGET_DIR:-target}/release"
for built in "$release/asr-train" "$release/examples/loader_bench"; do
    [[ -x $built ]] || { echo "error: cargo build did not produce $built" >&2; exit 1; }
done

if [[ -z $shards ]]; then
    cache=${ASR_BENCH_CACHE:-$HOME/.cache/asr-toolkit/bench}
    shards="$cache/train-shards-0.5"
    # asr-data (polars) is built only when the corpus still has to be packed.
    [[ -f $shards/manifest.json ]] || cargo build --quiet --release -p asr-data
    tools/cached-corpus.sh 0.5 "$cache/train-librispeech-0.5" "$shards"
fi
if [[ -z $split ]]; then
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
echo "$(nproc) cores; $steps steps per run, $rounds rounds, $batch_seconds s per micro-batch, split $split"

run() {
    local name=$1 round=$2
    shift 2
    local out="$work/$name-$round"
    echo "load before $name round $round: $(cut -d' ' -f1-3 /proc/loadavg)"
    /usr/bin/time -f "%e %U %S %M" -o "$out.time" \
        "$release/asr-train" run --shards "$shards" --model "$config" --out "$out" \
        --device cpu --train-split "$split" --max-steps "$steps" \
        --batch-seconds "$batch_seconds" --lr 1e-3 --warmup-steps 10 \
        --eval-every 0 --eval-split none --final-splits none --log-every 1 \
        --no-verify-shards "$@" 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
    echo "load after  $name round $round: $(cut -d' ' -f1-3 /proc/loadavg)"
}
for round in $(seq 1 "$rounds"); do
    run ddp "$round" --nproc-per-node 2 --threads 1
    run accum "$round" --threads 2 --grad-accum 2
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
print(f"{'run':<9} {'steps/s':>8} {'audio s/s':>10} {'med step s':>11} {'med comm_s':>11}"
      f" {'mean comm_s':>12} {'comm %':>7} {'CPU s/audio s':>14} {'run wall s':>11}")
for round in range(1, rounds + 1):
    for name in ["ddp", "accum"]:
        base = f"{work}/{name}-{round}"
        steps = [json.loads(l) for l in open(f"{base}/metrics.jsonl")]
        steps = [s for s in steps if s["kind"] == "step"]
        audio_all = sum(s["audio_s"] for s in steps)
        timed = steps[3:]
        total = sum(s["step_time_s"] for s in timed)
        audio = sum(s["audio_s"] for s in timed)
        comm = [s.get("comm_s", 0.0) for s in timed]
        wall, user, sys_, _rss = open(f"{base}.time").read().split()[-4:]
        cpu = float(user) + float(sys_)
        print(f"{name + '-' + str(round):<9} {len(timed)/total:>8.3f} {audio/total:>10.1f}"
              f" {statistics.median(s['step_time_s'] for s in timed):>11.3f}"
              f" {statistics.median(comm):>11.4f} {statistics.mean(comm):>12.4f}"
              f" {100*sum(comm)/total:>6.1f}% {cpu/audio_all:>14.3f} {float(wall):>11.1f}")
PY

for threads in 1 2; do
    echo "load before loader x$threads: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$release/examples/loader_bench" --shards "$shards" --split "$split" --threads "$threads" \
        --epochs "$loader_epochs" --phases
    echo "load after  loader x$threads: $(cut -d' ' -f1-3 /proc/loadavg)"
done
