#!/usr/bin/env bash
# `asr-data pack` beside its peers, in one run, on two generated corpora of ~1.9 h
# (2,040 utterances): 16 kHz FLAC in LibriSpeech layout and the same sentences/voices as
# 48 kHz MP3 in Common Voice layout (tools/make-corpus.py, cached in
# ~/.cache/asr-toolkit/bench/). Peers (tools/bench/pack/peers.py, own venv): Hugging Face
# datasets with torchcodec decoding, datasets with soundfile + soxr in map, lhotse
# to_shar, and the one-process soundfile + soxr floor on one core.
#   tools/bench/pack.sh
# Prints wall time, audio-seconds per second and peak RSS (process tree) per tool, the
# ratios of issue 4's targets, and pack's peak RSS at a second, smaller corpus size.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
cache=${ASR_BENCH_CACHE:-$HOME/.cache/asr-toolkit/bench}
flac=$cache/validate-librispeech
mp3=$cache/pack-commonvoice
if [[ ! -d $flac/LibriSpeech/train-clean ]]; then
    python3 tools/make-corpus.py --hours 1.7 --out "$flac" >&2
fi
if [[ ! -f $mp3/train.tsv ]]; then
    python3 tools/make-corpus.py --hours 1.7 --layout commonvoice --out "$mp3" >&2
fi
py=$(tools/venv.sh bench-pack tools/bench/pack/requirements.txt)
# torchcodec's PyPI wheel links CUDA's NPP, shipped as a wheel but not on the loader path.
LD_LIBRARY_PATH=$("$py" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
cargo build --quiet --release -p asr-data
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" tools/bench/pack/driver.py target/release/asr-data tools/bench/pack/peers.py \
    "$flac/LibriSpeech" "$mp3" "$flac/LibriSpeech/test-clean" "$out"
