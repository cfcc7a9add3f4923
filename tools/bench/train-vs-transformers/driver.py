"""Driver of tools/bench/train-vs-transformers.sh: runs `asr-train run` and transformers'
Trainer (hf_trainer.py) on the same batch plan, alternating which goes first round by
round, and measures both the same way from outside:

- wall time per step: between the moments the driver sees the record of the first timed
  step and of the last one appear (asr-train's metrics.jsonl, the Trainer's step log;
  polled every 10 ms), so it covers everything the training loop does between steps;
- CPU seconds (user + system, all threads) over the same window, from /proc/PID/stat;
- peak resident memory of the whole process (wait4's ru_maxrss); on CUDA, the peak
  memory nvidia-smi reports for the process (context included).

The first `--warmup` steps of each run are not timed. Audio seconds are those of the
plan's batches (the same for both engines).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat; after the ")" they are 12 and 13.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def gpu_memory_mb(pid):
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def step_records(path, offset):
    """New complete step records of a JSONL file from byte `offset`."""
    try:
        with open(path) as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind("\n")
    if end < 0:
        return [], offset
    records = []
    for line in data[: end + 1].splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("kind") == "step":
            records.append(r)
    return records, offset + len(data[: end + 1].encode())


def step_losses(path):
    """Training loss per step: asr-train's step records, the Trainer's loss records."""
    losses = {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("kind") == "loss" or (r.get("kind") == "step" and "loss" in r):
                if isinstance(r.get("loss"), (int, float)):
                    losses[r["step"]] = r["loss"]
    return [losses[k] for k in sorted(losses)]


def run_engine(name, command, records_path, steps, warmup, device, log_path):
    """Runs one engine and measures it; returns a result dict."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        offset = 0
        seen = {}
        gpu_peak = 0.0
        last_gpu_poll = 0.0
        status = None
        while True:
            now = time.time()
            records, offset = step_records(records_path, offset)
            if records:
                cpu = cpu_seconds(proc.pid)
                for r in records:
                    seen[r["step"]] = (now, cpu, r)
            if device == "cuda" and now - last_gpu_poll > 0.5:
                m = gpu_memory_mb(proc.pid)
                if m is not None:
                    gpu_peak = max(gpu_peak, m)
                last_gpu_poll = now
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            time.sleep(0.01)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)}); its log: {log_path}")
    first, last = warmup, steps
    if first not in seen or last not in seen:
        sys.exit(f"{name} did not report steps {first} and {last}; its log: {log_path}")
    (t0, c0, _), (t1, c1, _) = seen[first], seen[last]
    timed = [seen[s][2] for s in range(first + 1, last + 1)]
    result = {
        "engine": name,
        "timed_steps": last - first,
        "wall_s": t1 - t0,
        "cpu_s": (c1 - c0) if c0 is not None and c1 is not None else None,
        "peak_rss_mb": rusage.ru_maxrss / 1024,
        "process_cpu_s": rusage.ru_utime + rusage.ru_stime,
    }
    if device == "cuda":
        result["peak_gpu_mb"] = gpu_peak
        allocated = [r.get("cuda_max_allocated_mb") for r in timed if r.get("cuda_max_allocated_mb")]
        if allocated:
            result["torch_max_allocated_mb"] = max(allocated)
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--asr-train", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--shards", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--config", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-seconds", type=float, default=40.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--json-out")
    a = p.parse_args()

    with open(a.plan) as f:
        plan = [json.loads(line)["ids"] for line in f if line.strip()][: a.steps]
    with open(os.path.join(a.shards, "manifest.json")) as f:
        manifest = json.load(f)
    lengths = {}
    import pyarrow as pa  # only for the utterance lengths

    for shard in manifest["splits"][a.split]["shards"]:
        with pa.memory_map(os.path.join(a.shards, shard["file"])) as source:
            table = pa.ipc.open_stream(source).read_all().select(["id", "num_samples"])
        lengths.update(zip(table.column("id").to_pylist(), table.column("num_samples").to_pylist()))
    audio_per_step = [sum(lengths[i] for i in batch) / 16000 for batch in plan]
    timed_audio_s = sum(audio_per_step[a.warmup : a.steps])
    padded_per_step = [len(b) * max(lengths[i] for i in b) / 16000 for b in plan]

    work = tempfile.mkdtemp(prefix="train-vs-transformers-")
    precision = "bf16" if a.device == "cuda" else "f32"
    results = []
    for r in range(a.rounds):
        order = ["asr-train", "transformers"] if r % 2 == 0 else ["transformers", "asr-train"]
        for engine in order:
            tag = f"{engine}-{r}"
            if engine == "asr-train":
                out = os.path.join(work, tag)
                records = os.path.join(out, "metrics.jsonl")
                command = [
                    a.asr_train, "run", "--shards", a.shards, "--model", a.config, "--out", out,
                    "--device", a.device, "--precision", precision, "--threads", str(a.threads),
                    "--train-split", a.split, "--max-steps", str(a.steps),
                    "--batch-seconds", str(a.batch_seconds), "--lr", str(a.lr),
                    "--warmup-steps", str(a.warmup_steps), "--weight-decay", "0.005",
                    "--eval-every", "0", "--eval-split", "none", "--final-splits", "none",
                    "--log-every", "1",
                ]
            else:
                records = os.path.join(work, f"{tag}.steps.jsonl")
                command = [
                    a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_trainer.py"),
                    "--shards", a.shards, "--split", a.split, "--config", a.config, "--plan", a.plan,
                    "--steps", str(a.steps), "--threads", str(a.threads), "--device", a.device,
                    "--lr", str(a.lr), "--warmup-steps", str(a.warmup_steps), "--steps-out", records,
                ]
            load_before = os.getloadavg()[0]
            res = run_engine(engine, command, records, a.steps, a.warmup, a.device,
                             os.path.join(work, f"{tag}.log"))
            res["losses"] = step_losses(records)
            res["round"] = r
            res["load_average_1min_before"] = load_before
            res["audio_s"] = timed_audio_s
            res["s_per_step"] = res["wall_s"] / res["timed_steps"]
            res["audio_s_per_s"] = timed_audio_s / res["wall_s"]
            if res["cpu_s"] is not None:
                res["cpu_s_per_audio_s"] = res["cpu_s"] / timed_audio_s
            results.append(res)
            cpu = f"{res['cpu_s']:.1f}" if res["cpu_s"] is not None else "-"
            extra = f" peak GPU {res['peak_gpu_mb']:.0f} MB" if a.device == "cuda" else ""
            print(
                f"round {r} {engine:<12} {res['s_per_step']:.3f} s/step  {res['audio_s_per_s']:.1f} audio s/s  "
                f"CPU {cpu} s for {res['timed_steps']} steps  peak RSS {res['peak_rss_mb']:.0f} MB{extra}  "
                f"(load {load_before:.2f})",
                flush=True,
            )

    def summary(engine):
        rs = [x for x in results if x["engine"] == engine]
        s = {
            "s_per_step": statistics.median(x["s_per_step"] for x in rs),
            "audio_s_per_s": statistics.median(x["audio_s_per_s"] for x in rs),
            "cpu_s_per_audio_s": statistics.median(x["cpu_s_per_audio_s"] for x in rs if "cpu_s_per_audio_s" in x)
            if any("cpu_s_per_audio_s" in x for x in rs) else None,
            "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
        }
        if a.device == "cuda":
            s["peak_gpu_mb"] = max(x.get("peak_gpu_mb", 0.0) for x in rs)
        return s

    ours, theirs = summary("asr-train"), summary("transformers")
    print()
    print(f"{a.device}, {precision}, {a.threads} threads, {a.steps} steps of ~{a.batch_seconds:g} s batches "
          f"({a.warmup} untimed), {a.rounds} rounds; timed audio {timed_audio_s:.0f} s "
          f"(padded {sum(padded_per_step[a.warmup:]):.0f} s); medians over rounds, peak memory max")
    header = f"{'engine':<13} {'s/step':>8} {'audio s/s':>10} {'CPU s/audio s':>14} {'peak RSS MB':>12}"
    if a.device == "cuda":
        header += f" {'peak GPU MB':>12}"
    print(header)
    for name, s in [("asr-train", ours), ("transformers", theirs)]:
        cpu = f"{s['cpu_s_per_audio_s']:.3f}" if s["cpu_s_per_audio_s"] is not None else "-"
        line = f"{name:<13} {s['s_per_step']:>8.3f} {s['audio_s_per_s']:>10.1f} {cpu:>14} {s['peak_rss_mb']:>12.0f}"
        if a.device == "cuda":
            line += f" {s['peak_gpu_mb']:>12.0f}"
        print(line)
    # Same batches, same recipe, different random initial weights: the loss curves should
    # agree up to that noise. Mean training loss per tenth of the run, round 0.
    print("training loss, mean per tenth of the steps (round 0):")
    for engine in ("asr-train", "transformers"):
        losses = next(x["losses"] for x in results if x["engine"] == engine and x["round"] == 0)
        n = max(1, len(losses) // 10)
        means = [statistics.mean(losses[i : i + n]) for i in range(0, len(losses), n)]
        print(f"  {engine:<13} " + " ".join(f"{m:.3f}" for m in means))
    speedup = ours["audio_s_per_s"] / theirs["audio_s_per_s"]
    mem = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    print(f"asr-train / transformers: throughput x{speedup:.2f}, peak RSS x{mem:.2f}", end="")
    if ours["cpu_s_per_audio_s"] and theirs["cpu_s_per_audio_s"]:
        print(f", CPU time per audio second x{ours['cpu_s_per_audio_s'] / theirs['cpu_s_per_audio_s']:.2f}", end="")
    if a.device == "cuda" and theirs.get("peak_gpu_mb"):
        print(f", peak GPU memory x{ours['peak_gpu_mb'] / theirs['peak_gpu_mb']:.2f}", end="")
    print()
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({
                "device": a.device, "precision": precision, "threads": a.threads, "steps": a.steps,
                "untimed_steps": a.warmup, "rounds": a.rounds, "batch_seconds": a.batch_seconds,
                "timed_audio_s": timed_audio_s, "runs": results,
                "summary": {"asr-train": ours, "transformers": theirs,
                            "throughput_ratio": speedup, "peak_rss_ratio": mem},
            }, f, indent=2)
            f.write("\n")
        print(f"results written to {a.json_out}")


if __name__ == "__main__":
    main()
