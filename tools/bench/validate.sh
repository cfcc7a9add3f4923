#!/usr/bin/env bash
# `asr-data validate` beside a Python peer (soundfile + pandas) on a LibriSpeech-layout
# corpus of ~2,040 utterances (~3 s FLAC each, 1.9 h), in one run, warm cache:
#   tools/bench/validate.sh [ROUNDS]          (default 5 rounds after a warm-up run)
# Measures header-only and --deep (1 and 2 threads) whole-process and work times (each
# tool reports its work time, excluding process start and imports), and prints min and
# median, files/s, audio-seconds/s and the ratios of issue 3's targets.
# The corpus is generated once by tools/make-corpus.py (espeak-ng + sox) and cached in
# ~/.cache/asr-toolkit/bench/validate-librispeech (override with ASR_BENCH_CORPUS).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
rounds=${1:-5}
corpus=${ASR_BENCH_CORPUS:-$HOME/.cache/asr-toolkit/bench/validate-librispeech}
if [[ ! -d $corpus/LibriSpeech/train-clean ]]; then
    echo "generating the benchmark corpus in $corpus (once, a few minutes)" >&2
    python3 tools/make-corpus.py --hours 1.7 --out "$corpus" >&2
fi
py=$(tools/venv.sh bench-validate tools/bench/validate/requirements.txt)
cargo build --quiet --release -p asr-data
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$py" tools/bench/validate/driver.py "$corpus" target/release/asr-data tools/bench/validate/peer.py "$rounds"
