#!/usr/bin/env python3
"""The Python peer of `asr-data validate` for the benchmark: the same checks on a
LibriSpeech tree with the tools a Python user would reach for.

    peer.py LIBRISPEECH_ROOT [--deep | --decode-only]

- reads every `*.trans.txt` (ids, transcripts) and lists the audio files (orphans);
- header-only: `soundfile.info` on every file (duration, rate, channels, format);
  `--deep`: `soundfile.read` (libsndfile decode to float32) plus peak, RMS, clipped
  fraction and a content hash (duplicates);
- text checks: empty, whitespace, punctuation and unusual characters (unicodedata
  categories), mixed case, CTC feasibility (wav2vec2 frame count), speech rate against
  the median, split leakage, speaker overlap;
- statistics with pandas: hours per split, duration quantiles and histogram, per-speaker
  counts, sample rates, formats, characters per second; the character vocabulary.

`--decode-only` is the floor: `soundfile.read` of every file and nothing else.

Prints a one-line summary on stdout and `work_s=<seconds>` (time after the imports) on
stderr, which the benchmark driver reads.
"""
from __future__ import annotations

import time

T_IMPORT = time.perf_counter()

import hashlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import unicodedata  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile as sf  # noqa: E402

CONV = [(10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)]


def wav2vec2_frames(n: int) -> int:
    for k, s in CONV:
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


def ctc_min_frames(text: str) -> int:
    count, prev = 0, None
    for i, word in enumerate(text.split()):
        if i:
            count += 1
            prev = " "
        for c in word:
            count += 1 + (prev == c)
            prev = c
    return count


def role(split: str) -> str | None:
    tokens = split.lower().replace("_", "-").split("-")
    for t in reversed(tokens):
        if t in ("train", "dev", "test"):
            return t
    return None


def decode_only(root: str) -> None:
    """The floor: libsndfile decoding every FLAC to float32, nothing else."""
    start = time.perf_counter()
    frames = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".flac"):
                data, _ = sf.read(os.path.join(dirpath, name), dtype="float32")
                frames += data.shape[0]
    work = time.perf_counter() - start
    print(f"decoded {frames} frames")
    print(f"work_s={work:.6f} import_s={start - T_IMPORT:.6f}", file=sys.stderr)


def main() -> None:
    root = sys.argv[1]
    if "--decode-only" in sys.argv[2:]:
        decode_only(root)
        return
    deep = "--deep" in sys.argv[2:]
    start = time.perf_counter()
    if os.path.isdir(os.path.join(root, "LibriSpeech")):
        root = os.path.join(root, "LibriSpeech")
    findings: list[tuple[str, str, str]] = []
    rows = []
    audio_files = set()
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".flac"):
                audio_files.add(os.path.join(dirpath, name))
    claimed = set()
    seen = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".trans.txt"):
                continue
            rel = os.path.relpath(dirpath, root).split(os.sep)
            subset, speaker, chapter = (rel + ["", "", ""])[:3] if len(rel) >= 3 else ("", *rel[-2:])
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                for n, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8").rstrip("\r\n")
                    except UnicodeDecodeError:
                        findings.append(("unreadable_transcript", "", f"{path}:{n}"))
                        continue
                    if not line.strip():
                        continue
                    uid, _, text = line.partition(" ")
                    if not uid.startswith(f"{speaker}-{chapter}-"):
                        findings.append(("bad_id", uid, path))
                    if uid in seen:
                        findings.append(("duplicate_id", uid, path))
                        continue
                    seen[uid] = path
                    audio = os.path.join(dirpath, uid + ".flac")
                    claimed.add(audio)
                    rows.append((uid, audio, text, speaker, subset))
    for f in sorted(audio_files - claimed):
        findings.append(("orphan_audio", os.path.basename(f)[:-5], f))

    records = []
    hashes = {}
    for uid, audio, text, speaker, subset in rows:
        rec = {"id": uid, "split": subset, "speaker": speaker, "text": text, "duration": None,
               "rate": None, "channels": None, "format": None}
        try:
            if deep:
                data, rate = sf.read(audio, dtype="float32", always_2d=True)
                rec["rate"], rec["channels"] = rate, data.shape[1]
                rec["duration"] = data.shape[0] / rate
                rec["format"] = "decoded"
                if data.size == 0:
                    findings.append(("empty_audio", uid, audio))
                else:
                    a = np.abs(data)
                    rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64))))
                    if rms < 1e-3:
                        findings.append(("silent_audio", uid, audio))
                    if float(np.mean(a >= 0.999)) > 0.001:
                        findings.append(("clipped_audio", uid, audio))
                    h = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
                    if h in hashes:
                        findings.append(("duplicate_audio", uid, audio))
                    hashes.setdefault(h, uid)
            else:
                info = sf.info(audio)
                rec["rate"], rec["channels"] = info.samplerate, info.channels
                rec["duration"] = info.frames / info.samplerate
                rec["format"] = f"{info.format}/{info.subtype}"
                if info.frames == 0:
                    findings.append(("empty_audio", uid, audio))
        except FileNotFoundError:
            findings.append(("missing_audio", uid, audio))
        except Exception as e:  # libsndfile: not audio, corrupt
            findings.append(("missing_audio" if not os.path.exists(audio) else "undecodable_audio", uid, str(e)))
        if rec["rate"] is not None:
            if rec["rate"] < 16000:
                findings.append(("sample_rate", uid, audio))
            if rec["channels"] > 1:
                findings.append(("multichannel", uid, audio))
            if rec["duration"] < 0.5:
                findings.append(("too_short", uid, audio))
            if rec["duration"] > 20:
                findings.append(("too_long", uid, audio))
        records.append(rec)

    df = pd.DataFrame.from_records(records)
    norm = df["text"].map(lambda t: " ".join(unicodedata.normalize("NFC", t).split()))
    df["chars"] = norm.map(lambda t: len(t.replace(" ", "")))
    vocab = Counter()
    cases = Counter()
    punct_utts = 0
    for uid, raw, t in zip(df["id"], df["text"], norm):
        if not t:
            findings.append(("empty_transcript", uid, ""))
            continue
        if raw != raw.strip() or "  " in raw:
            findings.append(("whitespace", uid, ""))
        cats = [unicodedata.category(c) for c in t]
        if any(c[0] in "NS" or c in ("Cc", "Cf", "Co", "Cn") for c in cats):
            findings.append(("unusual_char", uid, ""))
        if any(c[0] == "P" and ch != "'" for c, ch in zip(cats, t)):
            punct_utts += 1
        up, low = any(c.isupper() for c in t), any(c.islower() for c in t)
        cases[(up, low)] += 1
        vocab.update(t.replace(" ", ""))
    if punct_utts:
        findings.append(("punctuation", "", str(punct_utts)))
    if len([k for k in cases if k != (False, False)]) > 1:
        findings.append(("mixed_case", "", ""))
    dur = df["duration"]
    ok = dur.notna() & (df["chars"] > 0)
    frames = (dur[ok] * 16000).round().astype(int).map(wav2vec2_frames)
    needed = norm[ok].str.lower().map(ctc_min_frames)
    for uid in df["id"][ok][needed > frames]:
        findings.append(("ctc_infeasible", uid, ""))
    cps = df["chars"][ok] / dur[ok]
    median = cps.median()
    for uid in df["id"][ok][(cps > 3 * median) | (cps < median / 3)]:
        findings.append(("speech_rate", uid, ""))
    df["role"] = df["split"].map(role)
    key = norm.str.lower().str.replace(r"[^\w\s']", " ", regex=True).str.split().str.join(" ")
    train_keys = set(key[df["role"] == "train"])
    for uid, k, r in zip(df["id"], key, df["role"]):
        if r in ("dev", "test") and len(k.replace(" ", "")) >= 10 and k in train_keys:
            findings.append(("split_leakage", uid, ""))
    roles = df.groupby("speaker")["role"].nunique()
    for spk in roles[roles > 1].index:
        findings.append(("speaker_overlap", spk, ""))

    hours = df.groupby("split")["duration"].sum() / 3600
    quantiles = dur.quantile([0.0, 0.05, 0.5, 0.95, 1.0])
    hist = pd.cut(dur, [0, 1, 2, 4, 6, 8, 10, 15, 20, 30, 60, float("inf")], right=False).value_counts()
    per_speaker = df.groupby("speaker").agg(utts=("id", "size"), seconds=("duration", "sum"))
    rates = df["rate"].value_counts()
    formats = df["format"].value_counts()
    cps_q = cps.quantile([0.05, 0.5, 0.95])
    work = time.perf_counter() - start
    codes = Counter(code for code, _, _ in findings)
    print(f"{len(df)} utterances, {dur.sum() / 3600:.3f} h, {len(findings)} findings {dict(sorted(codes.items()))}, "
          f"splits {len(hours)}, speakers {len(per_speaker)}, rates {len(rates)}, formats {len(formats)}, "
          f"vocab {len(vocab)}, median {quantiles[0.5]:.2f} s, hist {int(hist.sum())}, cps {cps_q[0.5]:.1f}")
    print(f"work_s={work:.6f} import_s={start - T_IMPORT:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
