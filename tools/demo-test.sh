#!/usr/bin/env bash
# The demo check (the last step of tools/test.sh): runs tools/demo.sh as a user does
# (default seed, 2 threads; DEMO_BIN_DIR, if set, names binaries already built) and
# fails unless its `demo result: train WER W ...` line is within the README's range,
# read from the README's marker `demo-train-wer-max: X`.
#   tools/demo-test.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
max=$(sed -n 's/.*demo-train-wer-max: \([0-9.]*\).*/\1/p' README.md | head -n 1)
if [[ -z $max ]]; then
    echo "README.md has no 'demo-train-wer-max: X' marker for the demo's range" >&2
    exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$SECONDS
./tools/demo.sh "$out/demo" > "$out/demo.log" 2>&1 || {
    tail -n 40 "$out/demo.log" >&2
    echo "tools/demo.sh failed (its last lines above)" >&2
    exit 1
}
result=$(grep '^demo result: train WER ' "$out/demo.log" | tail -n 1)
wer=$(awk '{print $5}' <<<"$result")
if [[ -z $wer ]] || ! awk -v w="$wer" -v m="$max" 'BEGIN { exit !(w <= m) }'; then
    grep -E '^(eval step|run finished|best eval)' "$out/demo.log" >&2 || true
    echo "demo: train WER '${wer:-missing}' is outside the README's range (at most $max)" >&2
    exit 1
fi
echo "$result (README: at most $max), demo took $((SECONDS - start)) s"
