"""Driver of tools/bench/whisper-vs-seq2seqtrainer.sh: runs `asr-train run` and
transformers' Seq2SeqTrainer (hf_seq2seq.py) from the same Whisper folder on the same
batch plan, alternating which goes first round by round, and measures both the same way
from outside, with the CTC benchmark's measurement code
(tools/bench/train-vs-transformers/driver.py: wall time between the records of the first
and the last timed step, CPU seconds from /proc over the same window, peak RSS from
wait4).

It then checks that both trained on the same thing and learned the same way:

- per step, the utterance count and unpadded audio seconds each engine reports equal the
  plan's (so the batches, and their order, are the same);
- per step, the learning rate each engine applied agrees (relative 1e-6);
- the training loss of every step, both engines, every round: the table of round 0 and
  the largest absolute difference over all steps and rounds, which must stay within
  --loss-tolerance (exit 1 otherwise).
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# The CTC benchmark's measurement (run_engine), loaded under its own name.
_spec = importlib.util.spec_from_file_location(
    "ctc_driver", os.path.join(HERE, "..", "train-vs-transformers", "driver.py"))
ctc_driver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ctc_driver)
run_engine = ctc_driver.run_engine


def step_records(path):
    """Step number -> the last step record of a JSONL file."""
    records = {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("kind") == "step":
                records[r["step"]] = r
    return records


def plan_and_lengths(a):
    with open(a.plan) as f:
        plan = [json.loads(line)["ids"] for line in f if line.strip()][: a.steps]
    if len(plan) < a.steps:
        sys.exit(f"the plan {a.plan} has {len(plan)} batches, fewer than --steps {a.steps}")
    with open(os.path.join(a.shards, "manifest.json")) as f:
        manifest = json.load(f)
    import pyarrow as pa  # only for the utterance lengths

    lengths = {}
    for shard in manifest["splits"][a.split]["shards"]:
        with pa.memory_map(os.path.join(a.shards, shard["file"])) as source:
            table = pa.ipc.open_stream(source).read_all().select(["id", "num_samples"])
        lengths.update(zip(table.column("id").to_pylist(), table.column("num_samples").to_pylist()))
    return plan, lengths


def commands(a, engine, work, tag):
    """The command line of one run and the file its step records go to."""
    if engine == "asr-train":
        out = os.path.join(work, tag)
        return [
            a.asr_train, "run", "--shards", a.shards, "--model", a.model, "--out", out,
            "--device", "cpu", "--precision", "f32", "--threads", str(a.threads),
            "--train-split", a.split, "--max-steps", str(a.steps),
            "--batch-seconds", str(a.batch_seconds),
            "--max-batch-utterances", str(a.max_batch_utterances), "--lr", str(a.lr),
            "--warmup-steps", str(a.warmup_steps), "--weight-decay", str(a.weight_decay),
            "--language", a.language,
            "--eval-every", "0", "--eval-split", "none", "--final-splits", "none",
            "--log-every", "1",
        ], os.path.join(out, "metrics.jsonl")
    records = os.path.join(work, f"{tag}.steps.jsonl")
    return [
        a.python, os.path.join(HERE, "hf_seq2seq.py"),
        "--shards", a.shards, "--split", a.split, "--model", a.model, "--plan", a.plan,
        "--steps", str(a.steps), "--threads", str(a.threads), "--language", a.language,
        "--lr", str(a.lr), "--warmup-steps", str(a.warmup_steps),
        "--weight-decay", str(a.weight_decay), "--steps-out", records,
    ], records


def check_batches(engine, records, plan, lengths, steps):
    """Exits when a step's utterances or audio differ from the plan's."""
    for step in range(1, steps + 1):
        r = records.get(step)
        if r is None:
            sys.exit(f"{engine}: no record of step {step}")
        want_n = len(plan[step - 1])
        want_s = sum(lengths[i] for i in plan[step - 1]) / 16000
        if r.get("utterances") != want_n or abs(r.get("audio_s", -1) - want_s) > 1e-3:
            sys.exit(f"{engine}: step {step} trained on {r.get('utterances')} utterances / "
                     f"{r.get('audio_s')} s, the plan has {want_n} / {want_s:.3f} s: not the same batch")


def run_all(a, plan, lengths):
    work = tempfile.mkdtemp(prefix="whisper-vs-seq2seqtrainer-")
    timed_audio_s = sum(sum(lengths[i] for i in b) / 16000 for b in plan[a.warmup: a.steps])
    results = []
    for r in range(a.rounds):
        order = ["asr-train", "transformers"] if r % 2 == 0 else ["transformers", "asr-train"]
        for engine in order:
            tag = f"{engine}-{r}"
            command, records_path = commands(a, engine, work, tag)
            load_before = os.getloadavg()[0]
            res = run_engine(engine, command, records_path, a.steps, a.warmup, "cpu",
                             os.path.join(work, f"{tag}.log"))
            records = step_records(records_path)
            check_batches(engine, records, plan, lengths, a.steps)
            res.update(
                round=r, load_average_1min_before=load_before,
                losses=[records[s]["loss"] for s in range(1, a.steps + 1)],
                lrs=[records[s]["lr"] for s in range(1, a.steps + 1)],
                s_per_step=res["wall_s"] / res["timed_steps"],
                steps_per_s=res["timed_steps"] / res["wall_s"],
                audio_s_per_s=timed_audio_s / res["wall_s"],
            )
            results.append(res)
            cpu = f"{res['cpu_s']:.1f}" if res["cpu_s"] is not None else "-"
            print(f"round {r} {engine:<12} {res['s_per_step']:.3f} s/step  {res['steps_per_s']:.3f} steps/s  "
                  f"CPU {cpu} s for {res['timed_steps']} steps  peak RSS {res['peak_rss_mb']:.0f} MB  "
                  f"(load {load_before:.2f})", flush=True)
    return results, timed_audio_s


def compare(a, results):
    """Loss and learning-rate agreement; returns the largest loss difference."""
    ours = [x for x in results if x["engine"] == "asr-train"]
    theirs = [x for x in results if x["engine"] == "transformers"]
    for x, y in zip(ours, theirs):
        for step, (lx, ly) in enumerate(zip(x["lrs"], y["lrs"]), 1):
            if abs(lx - ly) > 1e-6 * max(abs(lx), abs(ly), 1e-12):
                sys.exit(f"step {step}: learning rate {lx} (asr-train) vs {ly} (transformers)")
    diff = max(abs(p - q) for x in ours for y in theirs for p, q in zip(x["losses"], y["losses"]))
    print("training loss per step (round 0; every round of each engine gives the same numbers "
          "up to the difference below):")
    print(f"  {'step':>4} {'lr':>10} {'asr-train':>12} {'transformers':>12} {'abs diff':>10}")
    for step, (p, q, lr) in enumerate(zip(ours[0]["losses"], theirs[0]["losses"], ours[0]["lrs"]), 1):
        print(f"  {step:>4} {lr:>10.3e} {p:>12.6f} {q:>12.6f} {abs(p - q):>10.2e}")
    print(f"max |loss difference| over {len(ours[0]['losses'])} steps x {len(ours)} x {len(theirs)} "
          f"run pairs: {diff:.2e} (tolerance {a.loss_tolerance:g})")
    return diff


def summary(results, engine):
    rs = [x for x in results if x["engine"] == engine]
    return {
        "s_per_step": statistics.median(x["s_per_step"] for x in rs),
        "steps_per_s": statistics.median(x["steps_per_s"] for x in rs),
        "audio_s_per_s": statistics.median(x["audio_s_per_s"] for x in rs),
        "cpu_s_per_step": statistics.median(x["cpu_s"] / x["timed_steps"] for x in rs if x["cpu_s"] is not None),
        "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--asr-train", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--shards", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--model", required=True, help="the Whisper folder both engines start from")
    p.add_argument("--plan", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-seconds", type=float, default=180.0)
    p.add_argument("--max-batch-utterances", type=int, default=6)
    p.add_argument("--language", default="en")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--weight-decay", type=float, default=0.005)
    p.add_argument("--loss-tolerance", type=float, default=1e-3)
    p.add_argument("--json-out")
    a = p.parse_args()

    plan, lengths = plan_and_lengths(a)
    results, timed_audio_s = run_all(a, plan, lengths)
    diff = compare(a, results)
    ours, theirs = summary(results, "asr-train"), summary(results, "transformers")
    utterances = sum(len(b) for b in plan[a.warmup:])
    print()
    print(f"cpu, f32, {a.threads} threads, {a.steps} steps ({a.warmup} untimed; timed: {utterances} "
          f"utterances, {timed_audio_s:.0f} s of audio, each padded to 30 s), {a.rounds} rounds; "
          "medians over rounds, peak RSS max")
    print(f"{'engine':<13} {'s/step':>8} {'steps/s':>8} {'audio s/s':>10} {'CPU s/step':>11} {'peak RSS MB':>12}")
    for name, s in [("asr-train", ours), ("transformers", theirs)]:
        print(f"{name:<13} {s['s_per_step']:>8.3f} {s['steps_per_s']:>8.3f} {s['audio_s_per_s']:>10.2f} "
              f"{s['cpu_s_per_step']:>11.2f} {s['peak_rss_mb']:>12.0f}")
    speedup = ours["steps_per_s"] / theirs["steps_per_s"]
    mem = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    print(f"asr-train / transformers: throughput x{speedup:.2f}, peak RSS x{mem:.2f}, "
          f"CPU time per step x{ours['cpu_s_per_step'] / theirs['cpu_s_per_step']:.2f}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"threads": a.threads, "steps": a.steps, "untimed_steps": a.warmup, "rounds": a.rounds,
                       "batch_seconds": a.batch_seconds,
                       "max_batch_utterances": a.max_batch_utterances, "timed_audio_s": timed_audio_s, "runs": results,
                       "max_abs_loss_diff": diff,
                       "summary": {"asr-train": ours, "transformers": theirs,
                                   "throughput_ratio": speedup, "peak_rss_ratio": mem}}, f, indent=2)
            f.write("\n")
        print(f"results written to {a.json_out}")
    if diff > a.loss_tolerance:
        sys.exit(f"the losses differ by {diff:.2e}, more than --loss-tolerance {a.loss_tolerance:g}")


if __name__ == "__main__":
    main()
