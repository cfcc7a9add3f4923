#!/usr/bin/env python3
"""Write fixtures/text/jiwer_cases.jsonl: random reference/hypothesis pairs over a tiny
word list (so that many alignments tie) with the counts jiwer 4.0.0 gives them.
asr-text's tests check that its WER/CER agree with jiwer on every pair.

Run: python "$(tools/venv.sh jiwer tools/requirements/jiwer.txt)" tools/make-text-fixtures.py
"""
import json
import random
from pathlib import Path

import jiwer

WORDS = ["a", "b", "c", "ab", "the", "cat", "sat", "on", "mat", "é", "日本"]


def sentence(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 7)))


def main():
    rng = random.Random(20261124)
    out = Path(__file__).resolve().parent.parent / "fixtures" / "text" / "jiwer_cases.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for _ in range(400):
            ref, hyp = sentence(rng), sentence(rng)
            if rng.random() < 0.3:
                hyp = ref.replace(rng.choice(WORDS), rng.choice(WORDS), 1)
            w = jiwer.process_words(ref, hyp)
            c = jiwer.process_characters(ref, hyp)
            f.write(json.dumps({
                "reference": ref,
                "hypothesis": hyp,
                "words": [w.hits, w.substitutions, w.deletions, w.insertions],
                "wer": w.wer,
                "chars": [c.hits, c.substitutions, c.deletions, c.insertions],
                "cer": c.cer,
            }, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
