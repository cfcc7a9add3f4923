#!/usr/bin/env bash
# A generated LibriSpeech-layout corpus and its shards, made once and reused by the
# benchmarks and the learning run:
#   tools/cached-corpus.sh HOURS CORPUS_DIR SHARDS_DIR
# Generates CORPUS_DIR with tools/make-corpus.py (--hours HOURS, its default seed and
# voices) unless it holds a finished one, then packs it into SHARDS_DIR with
# $CARGO_TARGET_DIR/release/asr-data (default target/; build it first) unless SHARDS_DIR
# has a manifest.
set -euo pipefail
hours=$1 corpus=$2 shards=$3
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ! -d $corpus/LibriSpeech/train-clean ]]; then
    echo "generating a $hours h corpus in $corpus (once)" >&2
    rm -rf "$corpus"
    mkdir -p "$(dirname "$corpus")"
    python3 "$repo/tools/make-corpus.py" --hours "$hours" --out "$corpus" >&2
fi
if [[ ! -f $shards/manifest.json ]]; then
    "${CARGO_TARGET_DIR:-$repo/target}/release/asr-data" pack "$corpus/LibriSpeech" --out "$shards" >&2
fi
