#!/usr/bin/env bash
# Proof of learning for Whisper on the CPU (issue 14, 6(c)): a small Whisper from random
# weights (tools/learning-run/whisper-model.json: whisper-tiny's layout, 80 mels, the
# multilingual 51,865-token vocabulary, at d_model 128 with 2 + 2 layers, no dropout,
# and a 10-s input window, since the corpus' clips are at most 8 s: the model of
# tools/bench/whisper-vs-seq2seqtrainer.sh with a third of its encoder positions)
# trained by `asr-train run` on a 1.1 h synthetic LibriSpeech-layout corpus
# (tools/make-corpus.py --hours 1, the benchmark's corpus: 1,020 training clips of 18
# espeak-ng voices, 60 dev clips, 60 test-clean, 60 test-heldout of 2 unseen voices;
# 1.1 to 8.0 s, median 3.3 s) for at most --minutes of wall time, evaluations
# included. Dev WER/CER by greedy generation every eval_every steps against wall time
# (metrics.jsonl, training_curves.png, and the table printed at the end), then WER/CER
# of the best checkpoint on dev, test-clean and test-heldout in final_results.json.
#
#   tools/learning-run/whisper.sh [--out DIR] [--minutes M] [--] [asr-train run flags...]
#
# Defaults: out/learning-run-whisper, 25 minutes. The recipe is
# tools/learning-run/whisper.toml (2 threads, seed 0, --language en, batches of 6 clips,
# AdamW lr 1e-3, 100 warm-up steps, linear decay over max_steps, dev every 75 steps);
# flags after `--` override it. The model folder is made by transformers from the config
# (tools/bench/whisper-vs-seq2seqtrainer/make_model.py, seed 0, in the venv of
# tools/bench/train-vs-transformers), with the tokenizer.json of fixtures/whisper.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

out="" minutes=25
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --minutes) minutes=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
out=${out:-out/learning-run-whisper}

./tools/install-libtorch.sh
py=$(tools/venv.sh bench-train tools/bench/train-vs-transformers/requirements.txt)
cargo build --quiet --release --locked -p asr-data -p asr-train
release="${CARGO_TARGET_DIR:-target}/release"

cache=${ASR_BENCH_CACHE:-$HOME/.cache/asr-toolkit/bench}
shards=$cache/train-shards-1
tools/cached-corpus.sh 1 "$cache/train-librispeech-1" "$shards"

rm -rf "$out"
mkdir -p "$out"
"$py" tools/bench/whisper-vs-seq2seqtrainer/make_model.py --config tools/learning-run/whisper-model.json \
    --tokenizer fixtures/whisper/tokenizer/tokenizer.json --seed 0 --out "$out/init" 2>/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
"$release/asr-train" run --config tools/learning-run/whisper.toml --model "$out/init" \
    --shards "$shards" --out "$out/run" --max-minutes "$minutes" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out/run" <<'PY'
import json, os, sys
run = sys.argv[1]
rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
print("evaluations by generation against wall time:")
print(f"  {'step':>5} {'wall min':>8} {'split':>8} {'clips':>5} {'WER':>6} {'CER':>6} {'loss':>7} {'eval s':>7}")
for r in rows:
    if r.get("kind") == "eval":
        loss = "-" if r.get("loss") is None else f"{r['loss']:.3f}"
        print(f"  {r['step']:>5} {r.get('elapsed_s', 0) / 60:>8.1f} {r['split']:>8} {r['utterances']:>5} "
              f"{r['wer']:>6.3f} {r['cer']:>6.3f} {loss:>7} {r['eval_time_s']:>7.1f}")
final = os.path.join(run, "final_results.json")
if os.path.exists(final):
    print(open(final).read())
PY
