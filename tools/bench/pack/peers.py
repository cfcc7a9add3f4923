#!/usr/bin/env python3
"""Peers of `asr-data pack` for tools/bench/pack.sh, each doing the same job: every
utterance of a corpus decoded, resampled to 16 kHz mono, its transcript turned into
character labels, written as sharded training data.

    peers.py TOOL CORPUS OUT

TOOL:
  datasets-torchcodec  Hugging Face datasets: cast_column(Audio(sampling_rate=16000))
                       (its own torchcodec decoding and resampling), map to labels with
                       num_proc=2, save_to_disk in shards
  datasets-soxr        the same with soundfile + soxr inside map (num_proc=2)
  lhotse               CutSet.resample(16000).to_shar(...) with 2 jobs
  floor                one process: soundfile.read + soxr.resample per file, nothing
                       written (run it under taskset -c 0: the per-core floor)

CORPUS is a LibriSpeech root/subset (FLAC + *.trans.txt) or a Common Voice folder
(clips/*.mp3 + train/dev/test.tsv). Prints `work_s=<seconds> audio_s=<seconds>` on stderr
(work excludes imports and the listing of the corpus).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path


def list_corpus(root: Path) -> list[tuple[str, str, str]]:
    """(id, audio path, transcript) of every utterance."""
    rows = []
    tsvs = [root / f"{s}.tsv" for s in ("train", "dev", "test") if (root / f"{s}.tsv").exists()]
    if tsvs:
        for tsv in tsvs:
            with open(tsv, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                    path = root / "clips" / row["path"]
                    rows.append((path.stem, str(path), row["sentence"]))
        return rows
    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.partition(" ")
            rows.append((utt, str(trans.parent / f"{utt}.flac"), text))
    return rows


def vocab_of(texts: list[str]) -> dict[str, int]:
    chars = sorted({c for t in texts for c in t.upper() if c != " "})
    vocab = {"[PAD]": 0, "[UNK]": 1, "|": 2}
    for c in chars:
        vocab[c] = len(vocab)
    return vocab


def encode(text: str, vocab: dict[str, int]) -> list[int]:
    return [vocab["|"] if c == " " else vocab.get(c, 1) for c in " ".join(text.upper().split())]


def datasets_torchcodec(rows, out: Path) -> float:
    from datasets import Audio, Dataset

    vocab = vocab_of([t for _, _, t in rows])
    ds = Dataset.from_dict({"id": [r[0] for r in rows], "audio": [r[1] for r in rows],
                            "text": [r[2] for r in rows]})
    ds = ds.cast_column("audio", Audio(sampling_rate=16000))

    def prepare(example):
        audio = example["audio"]
        if isinstance(audio, dict):
            samples = audio["array"]
        else:  # torchcodec AudioDecoder (datasets >= 4)
            samples = audio.get_all_samples().data.mean(dim=0).numpy()
        return {"input_values": samples, "labels": encode(example["text"], vocab)}

    ds = ds.map(prepare, num_proc=2, remove_columns=["audio"])
    ds.save_to_disk(str(out), max_shard_size="256MB")
    return 0.0


def datasets_soxr(rows, out: Path) -> float:
    import numpy as np
    import soundfile
    import soxr
    from datasets import Dataset

    vocab = vocab_of([t for _, _, t in rows])
    ds = Dataset.from_dict({"id": [r[0] for r in rows], "path": [r[1] for r in rows],
                            "text": [r[2] for r in rows]})

    def prepare(example):
        samples, rate = soundfile.read(example["path"], dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
        if rate != 16000:
            samples = soxr.resample(samples, rate, 16000)
        pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
        return {"audio": pcm, "labels": encode(example["text"], vocab)}

    ds = ds.map(prepare, num_proc=2, remove_columns=["path"])
    ds.save_to_disk(str(out), max_shard_size="256MB")
    return 0.0


def lhotse_shar(rows, out: Path) -> float:
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    recordings = RecordingSet.from_recordings(Recording.from_file(p, recording_id=i) for i, p, _ in rows)
    supervisions = SupervisionSet.from_segments(
        SupervisionSegment(id=i, recording_id=i, start=0.0, duration=recordings[i].duration, text=t)
        for i, _, t in rows
    )
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts = cuts.resample(16000)
    out.mkdir(parents=True, exist_ok=True)
    cuts.to_shar(str(out), fields={"recording": "flac"}, num_jobs=2, shard_size=1000)
    return 0.0


def floor(rows, out: Path) -> float:
    import soundfile
    import soxr

    total = 0
    for _, path, _ in rows:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
        if rate != 16000:
            samples = soxr.resample(samples, rate, 16000)
        total += len(samples)
    return total / 16000


TOOLS = {
    "datasets-torchcodec": datasets_torchcodec,
    "datasets-soxr": datasets_soxr,
    "lhotse": lhotse_shar,
    "floor": floor,
}


def main() -> None:
    tool, corpus, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rows = list_corpus(corpus)
    import soundfile

    audio_s = sum(soundfile.info(p).duration for _, p, _ in rows)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    start = time.perf_counter()
    TOOLS[tool](rows, out)
    work = time.perf_counter() - start
    print(f"work_s={work:.3f} audio_s={audio_s:.1f} files={len(rows)}", file=sys.stderr)


if __name__ == "__main__":
    main()
