"""Throughput of python-soxr (libsoxr, default 'HQ' quality) on one core, in audio seconds
per second, on the same kind of signal and clip sizes as
`crates/asr-audio/examples/resample_throughput.rs`. Prints one line per rate:
`soxr-hq<TAB>rate<TAB>audio_s<TAB>elapsed_s<TAB>audio_s_per_s`."""

import sys
import time

import numpy as np
import soxr


def signal(rate: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / rate
    x = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.1 * np.sin(2 * np.pi * 1850.0 * t)
    x += 0.05 * (rng.random(n) - 0.5)
    return x.astype(np.float32)


def main() -> None:
    clip_s = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    total_s = float(sys.argv[2]) if len(sys.argv) > 2 else 600.0
    clips = int(np.ceil(total_s / clip_s))
    for rate in (48000, 44100, 22050, 8000):
        clip = signal(rate, int(clip_s * rate), rate)
        soxr.resample(clip, rate, 16000)
        out_samples = 0
        start = time.perf_counter()
        for _ in range(clips):
            out_samples += len(soxr.resample(clip.copy(), rate, 16000))
        elapsed = time.perf_counter() - start
        audio_s = out_samples / 16000
        print(f"soxr-hq\t{rate}\t{audio_s:.0f}\t{elapsed:.3f}\t{audio_s / elapsed:.0f}")


if __name__ == "__main__":
    main()
