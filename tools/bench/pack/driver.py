#!/usr/bin/env python3
"""Benchmark driver for tools/bench/pack.sh: `asr-data pack` and its peers (peers.py) on
the same corpora in one run. For each tool: whole-process wall time, audio seconds per
second, and peak RSS of the whole process tree (sampled every 20 ms from /proc, so the
worker processes of num_proc=2 / num_jobs=2 count too). Prints the ratios issue 4 names.

    driver.py ASR_DATA PEERS_PY FLAC_CORPUS MP3_CORPUS SMALL_FLAC_CORPUS OUT_DIR
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time


def tree_rss_kb(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], out: str) -> tuple[float, float, str, float]:
    """Runs cmd; returns (wall seconds, peak tree RSS in MB, output, CPU seconds of the
    whole process tree: user + system, insensitive to other load on the machine)."""
    shutil.rmtree(out, ignore_errors=True)
    cpu_before = cpu_of_children()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kb(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{stderr[-3000:]}")
    cpu = cpu_of_children() - cpu_before
    shutil.rmtree(out, ignore_errors=True)
    return wall, peak[0] / 1024, stdout + stderr, cpu


def main() -> None:
    asr_data, peers, flac, mp3, small, out = sys.argv[1:7]
    py = sys.executable
    one_core = ["taskset", "-c", "0"]
    results = {}
    for label, corpus in (("FLAC 16 kHz (LibriSpeech layout)", flac), ("MP3 48 kHz (Common Voice layout)", mp3)):
        # Audio seconds and files, from the floor run (which reads every file).
        tools = {
            "asr-data pack (2 threads)": [asr_data, "pack", corpus, "--out", f"{out}/pack"],
            "datasets + torchcodec (num_proc=2)": [py, peers, "datasets-torchcodec", corpus, f"{out}/hf"],
            "datasets + soundfile + soxr (num_proc=2)": [py, peers, "datasets-soxr", corpus, f"{out}/hf2"],
            "lhotse to_shar (2 jobs)": [py, peers, "lhotse", corpus, f"{out}/lhotse"],
            "floor: soundfile + soxr, 1 core": one_core + [py, peers, "floor", corpus, f"{out}/floor"],
        }
        run(tools["asr-data pack (2 threads)"], f"{out}/pack")  # warm the page cache
        rows = {}
        audio_s = None
        for name, cmd in tools.items():
            wall, rss, text, cpu = run(cmd, cmd[-1])
            m = re.search(r"work_s=([\d.]+) audio_s=([\d.]+)", text)
            work = float(m.group(1)) if m else wall
            if m:
                audio_s = float(m.group(2))
            rows[name] = (wall, work, rss, cpu)
        results[label] = (audio_s, rows)
        print(f"\n{label}: {corpus}, {audio_s:.0f} s of audio ({audio_s / 3600:.2f} h)")
        print(f"  {'tool':<42} {'wall s':>8} {'audio-s/s':>10} {'peak RSS MB':>12} {'CPU s':>7} {'audio-s/CPU-s':>14}")
        for name, (wall, work, rss, cpu) in rows.items():
            # The floor is per core and counts its work only (no imports, no listing).
            seconds = work if name.startswith("floor") else wall
            print(f"  {name:<42} {seconds:>8.2f} {audio_s / seconds:>10.0f} {rss:>12.0f} {cpu:>7.2f} {audio_s / cpu:>14.0f}")
        speed = {n: audio_s / (w[1] if n.startswith("floor") else w[0]) for n, w in rows.items()}
        ours = speed["asr-data pack (2 threads)"]
        floor = speed["floor: soundfile + soxr, 1 core"]
        print(f"  pack / lhotse            {ours / speed['lhotse to_shar (2 jobs)']:.2f}x")
        print(f"  pack / datasets+torchcodec {ours / speed['datasets + torchcodec (num_proc=2)']:.2f}x")
        print(f"  pack / datasets+soxr      {ours / speed['datasets + soundfile + soxr (num_proc=2)']:.2f}x")
        print(f"  pack / (2 x 1-core floor) {ours / (2 * floor):.2f}  (target >= 0.80)")
        cpu_eff = {n: audio_s / w[3] for n, w in rows.items()}
        print(f"  CPU efficiency, audio-s per CPU-s (load-insensitive): pack {cpu_eff['asr-data pack (2 threads)']:.0f}, "
              f"floor {cpu_eff['floor: soundfile + soxr, 1 core']:.0f} (includes its imports), "
              f"lhotse {cpu_eff['lhotse to_shar (2 jobs)']:.0f}, datasets+torchcodec {cpu_eff['datasets + torchcodec (num_proc=2)']:.0f}")
    # Memory at a second corpus size.
    wall, rss, _, _ = run([asr_data, "pack", small, "--out", f"{out}/pack-small"], f"{out}/pack-small")
    print(f"\nasr-data pack peak RSS: {rss:.0f} MB on {small} (small) vs "
          f"{results['FLAC 16 kHz (LibriSpeech layout)'][1]['asr-data pack (2 threads)'][2]:.0f} MB on the full FLAC corpus")


if __name__ == "__main__":
    main()
