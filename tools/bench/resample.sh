#!/usr/bin/env bash
# Resampling throughput on one core: asr-audio (rubato FFT) beside libsoxr (python-soxr,
# default HQ quality) in the same run, 5 s clips, 48/44.1/22.05/8 kHz -> 16 kHz.
#   tools/bench/resample.sh [ROUNDS]
# Prints `engine rate audio_s elapsed_s audio_s_per_s` lines, best of ROUNDS (default 3)
# per engine and rate, and the ratio rubato / soxr.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
rounds=${1:-3}
py=$(tools/venv.sh bench-resample tools/bench/resample/requirements.txt)
cargo build --quiet --release -p asr-audio --example resample_throughput
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for _ in $(seq "$rounds"); do
    taskset -c 0 target/release/examples/resample_throughput 5 600 >>"$results"
    taskset -c 0 "$py" tools/bench/resample/soxr_throughput.py 5 600 >>"$results"
done
"$py" - "$results" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    engine, rate, audio_s, elapsed, speed = line.split("\t")
    key = (engine, int(rate))
    best[key] = max(best.get(key, 0.0), float(speed))
print(f"{'rate_hz':>8} {'rubato audio-s/s':>17} {'soxr-hq audio-s/s':>18} {'ratio':>6}")
for rate in (48000, 44100, 22050, 8000):
    r, s = best[("rubato-fft", rate)], best[("soxr-hq", rate)]
    print(f"{rate:>8} {r:>17.0f} {s:>18.0f} {r / s:>6.2f}")
PY
