"""Reads asr-train's outputs with the tools users open them with (see
tools/ecosystem-test.sh): tensorboard's EventAccumulator on RUN/runs/, huggingface_hub's
ModelCard on best/README.md. Prints `N passed, M failed`; exits 1 on any failure."""

import json
import math
import os
import sys
import traceback

from huggingface_hub import ModelCard, metadata_load
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

OUT = sys.argv[1]
RUN = os.path.join(OUT, "run")


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def accumulator(run):
    acc = EventAccumulator(os.path.join(run, "runs"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def close(a, b):
    # Event files hold float32.
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30)


def check_scalars(acc, rows, tag, key):
    want = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    got = [(e.step, e.value) for e in acc.Scalars(tag)]
    assert [s for s, _ in got] == [s for s, _ in want], f"{tag}: steps {got} != {want}"
    for (step, g), (_, w) in zip(got, want):
        assert close(g, w), f"{tag} at step {step}: {g} != {w}"


def test_scalars_equal_metrics_jsonl():
    rows = records(os.path.join(RUN, "metrics.jsonl"))
    steps = [r for r in rows if r["kind"] == "step"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6], [r["step"] for r in steps]
    assert evals, "no evaluation in metrics.jsonl"
    acc = accumulator(RUN)
    for tag, key in [
        ("train/loss", "loss"),
        ("train/learning_rate", "lr"),
        ("train/grad_norm", "grad_norm"),
        ("train/epoch", "epoch"),
        ("train/audio_s_per_s", "audio_s_per_s"),
        ("train/data_wait_s", "data_wait_s"),
    ]:
        check_scalars(acc, steps, tag, key)
    for tag, key in [("eval/loss", "loss"), ("eval/wer", "wer"), ("eval/cer", "cer")]:
        check_scalars(acc, evals, tag, key)
    names = sorted({r["event"] for r in rows if r["kind"] == "event"})
    for name in names:
        got = [(e.step, e.value) for e in acc.Scalars(f"events/{name}")]
        steps_with = sorted({r["step"] for r in rows if r["kind"] == "event" and r["event"] == name})
        want = [
            (s, sum(1 for r in rows if r["kind"] == "event" and r["event"] == name and r["step"] <= s))
            for s in steps_with
        ]
        assert got == want, f"events/{name}: {got} != {want}"
    config = acc.Tensors("config")
    assert config and b'"eval_split": "dev"' in config[-1].tensor_proto.string_val[0], config


def test_resume_writes_each_step_once():
    # The first session went to step 6; the resumed one restarted after step 2.
    first = [r for r in records(os.path.join(OUT, "first-metrics.jsonl")) if r["kind"] == "step"]
    assert [r["step"] for r in first] == [1, 2, 3, 4, 5, 6]
    acc = accumulator(RUN)
    for tag in ["train/loss", "train/learning_rate", "eval/wer"]:
        steps = [e.step for e in acc.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag}: steps repeated: {steps}"
    files = [f for f in os.listdir(os.path.join(RUN, "runs")) if "tfevents" in f]
    assert len(files) == 1, files


def test_no_tensorboard_writes_no_runs_folder():
    run = os.path.join(OUT, "quiet-run")
    assert os.path.exists(os.path.join(run, "metrics.jsonl"))
    assert not os.path.exists(os.path.join(run, "runs")), os.listdir(run)


def test_model_card_parses_with_the_final_results():
    path = os.path.join(RUN, "best", "README.md")
    card = ModelCard.load(path)
    meta = metadata_load(path)
    assert card.data.model_name == "run" and card.data.to_dict()["model-index"], card.data
    assert "automatic-speech-recognition" in meta["tags"], meta["tags"]
    assert "base_model" not in meta, meta  # the tiny preset: random weights
    final = json.load(open(os.path.join(RUN, "final_results.json")))
    results = meta["model-index"][0]["results"]
    by_split = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]} for r in results}
    want = {split: {"wer": r["wer"], "cer": r["cer"]} for split, r in final["splits"].items()}
    assert by_split == want, f"{by_split} != {want}"
    evals = card.data.eval_results
    assert evals and {e.metric_type for e in evals} == {"wer", "cer"}, evals
    assert "| Training Loss | Epoch | Step | Validation Loss | Wer | Cer |" in card.text
    assert "- learning_rate: 1e-3" in card.text, card.text


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    failed = 0
    for test in tests:
        try:
            test()
            print(f"ok   {test.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {test.__name__}")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
