#!/usr/bin/env python3
"""Benchmark driver for tools/bench/validate.sh: runs `asr-data validate` and the Python
peer (peer.py) on the same corpus in one run, warm cache, several rounds; prints min and
median of the whole-process time and of the work time (reported by each tool, excluding
process start and imports), files/s, audio-seconds/s and the ratios the targets name.

    driver.py CORPUS ASR_DATA PEER_PY ROUNDS
"""
from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import time


def run(cmd: list[str], env_extra: dict[str, str] | None = None) -> tuple[float, float, str, float]:
    """Runs `cmd`; returns (wall s, work s reported by the tool, first stdout line, CPU s)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    m = re.search(r"work (\d+\.\d+) s", p.stderr) or re.search(r"work_s=(\d+\.\d+)", p.stderr)
    if not m:
        sys.exit(f"no work time in the output of {' '.join(cmd)}:\n{p.stderr}")
    return wall, float(m.group(1)), p.stdout.strip().splitlines()[0], cpu


def main() -> None:
    corpus, asr_data, peer, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    py = sys.executable
    one_core = ["taskset", "-c", "0"]
    configs = {
        "asr-data header-only (2 threads)": ([asr_data, "validate", corpus, "-q", "--timings"], None),
        "peer header-only (soundfile.info)": ([py, peer, corpus], None),
        "asr-data --deep, 1 thread": (one_core + [asr_data, "validate", corpus, "-q", "--timings", "--deep"],
                                      {"RAYON_NUM_THREADS": "1"}),
        "asr-data --deep, 2 threads": ([asr_data, "validate", corpus, "-q", "--timings", "--deep"],
                                       {"RAYON_NUM_THREADS": "2"}),
        "peer --deep (soundfile.read), 1 core": (one_core + [py, peer, corpus, "--deep"], None),
        "floor: soundfile.read only, 1 core": (one_core + [py, peer, corpus, "--decode-only"], None),
    }
    # Files and audio seconds, from a header-only run of asr-data (the same for all).
    out = subprocess.run([asr_data, "validate", corpus, "--json", "/dev/stdout", "-q"], capture_output=True, text=True)
    files = int(re.search(r'"utterances": (\d+)', out.stdout).group(1))
    hours = float(re.search(r'"total_hours": ([\d.eE+-]+)', out.stdout).group(1))
    audio_s = hours * 3600
    print(f"corpus: {corpus}\n  {files} files, {audio_s:.0f} s of audio ({hours:.2f} h); {rounds} rounds after a warm-up run\n")
    results = {}
    for name, (cmd, env) in configs.items():
        run(cmd, env)  # warm the page cache and the binary
        walls, works, cpus = [], [], []
        for _ in range(rounds):
            wall, work, summary, cpu = run(cmd, env)
            walls.append(wall)
            works.append(work)
            cpus.append(cpu)
        results[name] = (walls, works, cpus)
        print(f"  {name}: {summary}")
    print()
    load = os.getloadavg()[0]
    print(f"load average now {load:.1f} on {os.cpu_count()} cores (other work on the machine slows wall times;"
          " CPU s is the process's user+sys time)\n")
    header = (f"{'':40} {'whole process s':>17} {'files/s':>9} {'audio-s/s':>10}   {'work s':>15} {'files/s':>9}"
              f" {'audio-s/s':>10}   {'CPU s':>6} {'audio-s/CPU-s':>13}")
    print(header)
    print(f"{'':40} {'min / median':>17} {'(min)':>9} {'(min)':>10}   {'min / median':>15} {'(min)':>9} {'(min)':>10}"
          f"   {'(min)':>6} {'(min)':>13}")
    for name, (walls, works, cpus) in results.items():
        w, k, c = min(walls), min(works), min(cpus)
        print(f"{name:40} {w:7.3f} / {statistics.median(walls):7.3f} {files / w:9.0f} {audio_s / w:10.0f}"
              f"   {k:6.3f} / {statistics.median(works):6.3f} {files / k:9.0f} {audio_s / k:10.0f}"
              f"   {c:6.3f} {audio_s / c:13.0f}")

    def best(name: str, which: int) -> float:
        return min(results[name][which])

    hw = best("peer header-only (soundfile.info)", 0) / best("asr-data header-only (2 threads)", 0)
    work_fps = files / best("asr-data header-only (2 threads)", 1)
    peer_deep = audio_s / best("peer --deep (soundfile.read), 1 core", 1)
    deep1 = audio_s / best("asr-data --deep, 1 thread", 1)
    deep2 = audio_s / best("asr-data --deep, 2 threads", 1)
    libsndfile = audio_s / best("floor: soundfile.read only, 1 core", 1)
    floor = max(peer_deep, libsndfile, 4500.0)
    print("\ntargets (issue 3):")
    print(f"  header-only, whole process: asr-data is {hw:.2f}x the peer's speed (target >= 2x)")
    print(f"  header-only, work: {work_fps:.0f} files/s (target >= 20000)")
    print(f"  --deep, 1 thread: {deep1:.0f} audio-s/s = {deep1 / peer_deep:.2f}x the peer's --deep on one core"
          f" ({peer_deep:.0f}), {deep1 / libsndfile:.2f}x libsndfile's bare decode rate on one core ({libsndfile:.0f});"
          f" target >= max(peer, libsndfile, 4500) = {floor:.0f}")
    print(f"  --deep, 2 threads: {deep2:.0f} audio-s/s = {deep2 / floor:.2f}x that per-core rate (target >= 1.8x)")
    cpu1 = audio_s / min(results["asr-data --deep, 1 thread"][2])
    print(f"  --deep decode rate per CPU-second (robust to load): asr-data {cpu1:.0f}, peer "
          f"{audio_s / min(results['peer --deep (soundfile.read), 1 core'][2]):.0f} (includes its imports)")


if __name__ == "__main__":
    main()
