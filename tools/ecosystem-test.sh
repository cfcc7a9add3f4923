#!/usr/bin/env bash
# Ecosystem test of asr-train's outputs: a tiny real training run on the LibriSpeech
# fixture (the `tiny` preset, a few steps), then the pinned venv of
# tests/ecosystem/requirements.txt reads them as users' tools do:
# - tensorboard's EventAccumulator reads RUN/runs/ and its scalars equal metrics.jsonl's;
#   a run resumed from an earlier checkpoint has every step once;
# - huggingface_hub's ModelCard.load / metadata_load parse best/README.md and its
#   model-index holds final_results.json's WER and CER.
#   tools/ecosystem-test.sh
# Prints `N passed, M failed` and exits non-zero on any failure.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=$(tools/venv.sh ecosystem tests/ecosystem/requirements.txt)
# The whole workspace with every target: the unit graph `cargo test --workspace` (run
# before this by tools/test.sh) has just built, so nothing is compiled again. Building
# only `-p asr-data -p asr-train` would unify features differently and compile polars,
# arrow and tch a second time (about 7 minutes here).
cargo build --quiet --locked --workspace --all-targets
bin=${CARGO_TARGET_DIR:-$repo/target}/debug
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin/asr-data" pack fixtures/librispeech --out "$out/shards" --max-duration 20 >/dev/null 2>&1
train() {
    "$bin/asr-train" run --shards "$out/shards" --model tiny --device cpu --threads 2 \
        --batch-seconds 30 --eval-split dev --eval-max-utterances 4 --final-splits dev \
        --lr 1e-3 --warmup-steps 2 --keep-checkpoints 5 "$@" 2>>"$out/train.log"
}
# A run of 6 steps, evaluated and saved every 2; then its checkpoints of steps 4 and 6
# are removed, as if it had stopped after step 5 with step 2 saved last, and it resumes:
# the event files held steps 3-6 of the first session, which must not appear twice.
train --out "$out/run" --max-steps 6 --eval-every 2 --save-every 2
cp "$out/run/metrics.jsonl" "$out/first-metrics.jsonl"
rm -rf "$out/run/checkpoints/step-00000004" "$out/run/checkpoints/step-00000006"
train --out "$out/run" --max-steps 6 --eval-every 2 --save-every 2 --resume
# --no-tensorboard: no runs/ folder.
train --out "$out/quiet-run" --max-steps 1 --eval-every 0 --no-tensorboard
HF_HUB_OFFLINE=1 HF_HOME="$out/hf" "$py" tests/ecosystem/test_outputs.py "$out"
