#!/usr/bin/env python3
"""Whisper front-end fixtures for asr-model: log-mel features and tokenizer label ids.

    python=$(tools/venv.sh whisper-fixtures tools/requirements-whisper-fixtures.txt)
    $python -m pip install --no-deps openai-whisper==20250625   # see the requirements file
    $python tools/make-whisper-fixtures.py              # (re)write fixtures/whisper/{features,tokenizer}/

Nothing is downloaded from a model hub: the tokenizer is converted from the BPE ranks
that the `openai-whisper` PyPI package ships (whisper/assets/multilingual.tiktoken).

fixtures/whisper/features/ (transformers 5.23 WhisperFeatureExtractor, numpy path):
  mel_filters.safetensors   the slaney mel banks (201 x 80 and 201 x 128, float64)
  <clip>.safetensors        samples_i16: the clip as an int16 shard stores it (16 kHz);
                            features_<mels>: (mels, 3000) float32 log-mels of
                            samples_i16 / 32768 (80 mels for libri-21s, 128 for
                            cv48k-cut: one of each keeps the files small); frame_mask:
                            the extractor's return_attention_mask output (3000 frames)
  clips: libri-21s  one 21.3 s LibriSpeech-layout flac at 16 kHz (padded to 30 s);
         cv48k-cut  the Common Voice fixture's mp3 clips (48 kHz, one 8 kHz, one stereo;
                    not the truncated one) each resampled, joined (about 46 s); the
                    first 30.5 s are stored, so the extractor cuts at 30 s.
  The samples are made by `cargo run -p asr-pack --example pcm16` (asr-audio decode and
  resample, asr-shards int16 quantization), so both sides see the very same input.

fixtures/whisper/tokenizer/:
  tokenizer.json   the multilingual Whisper tokenizer (51865 ids: 50257 BPE tokens, 99
                   languages, control tokens and 1501 timestamps) as transformers saves it
  expected.json    per case: text, language, task, the labels transformers'
                   WhisperTokenizer gives (prefix + text + <|endoftext|>) and its decode
                   with skip_special_tokens; each checked against openai-whisper's own
                   tiktoken tokenizer before it is written.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "whisper"
SAMPLE_RATE = 16_000
N_SAMPLES = 30 * SAMPLE_RATE

LIBRI_CLIP = "fixtures/librispeech/LibriSpeech/train-clean-100/1001/2001/1001-2001-0007.flac"
CV_CLIPS = "fixtures/commonvoice/clips"
# Whisper's 51865-token multilingual vocabulary has 99 language tokens (large-v3 has 100).
NUM_LANGUAGES = 99


# ---------------------------------------------------------------------------- features


def pcm16(files: list[Path]) -> np.ndarray:
    """The files' samples as `asr-data pack` stores them (int16, 16 kHz), joined."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.i16"
        cmd = ["cargo", "run", "--quiet", "-p", "asr-pack", "--example", "pcm16", "--", str(out)]
        subprocess.run(cmd + [str(f) for f in files], check=True, cwd=REPO)
        return np.fromfile(out, dtype="<i2")


def extractor(mels: int):
    """WhisperFeatureExtractor forced onto its numpy path (float64 STFT, the reference)."""
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=mels)
    fe._torch_extract_fbank_features = fe._np_extract_fbank_features
    return fe


def torch_path(mels: int, batch: list[np.ndarray]) -> np.ndarray:
    """The same features by the extractor's default torch path (float32), for the record."""
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=mels)
    return fe(batch, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]


def make_features():
    out = OUT / "features"
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {f"mel_filters_{m}": np.ascontiguousarray(extractor(m).mel_filters) for m in (80, 128)},
        str(out / "mel_filters.safetensors"),
    )
    # common_voice_en_15 is the fixture's planted truncated MP3: left out.
    cv = [p for p in sorted((REPO / CV_CLIPS).glob("*.mp3")) if p.stem != "common_voice_en_15"]
    clips = {
        "libri-21s": pcm16([REPO / LIBRI_CLIP]),
        "cv48k-cut": pcm16(cv)[: N_SAMPLES + SAMPLE_RATE // 2],
    }
    mel_bins = {"libri-21s": 80, "cv48k-cut": 128}
    waves = {name: (s.astype(np.float32) / np.float32(32768.0)) for name, s in clips.items()}
    for name, samples in clips.items():
        mels = mel_bins[name]
        got = extractor(mels)(waves[name], sampling_rate=SAMPLE_RATE, return_tensors="np", return_attention_mask=True)
        tensors = {
            "samples_i16": samples,
            f"features_{mels}": got["input_features"][0].astype(np.float32),
            "frame_mask": got["attention_mask"][0].astype(np.int32),
        }
        save_file(tensors, str(out / f"{name}.safetensors"))
        print(f"{name}: {len(samples)} samples, {int(tensors['frame_mask'].sum())} valid frames")
    check_batch_and_torch(waves, mel_bins, out)


def check_batch_and_torch(waves: dict, mel_bins: dict, out: Path):
    """A batch gives each clip its own features (per-utterance max); report torch-path gaps."""
    from safetensors.numpy import load_file

    names = list(waves)
    for mels in (80, 128):
        batch = extractor(mels)(
            [waves[n] for n in names], sampling_rate=SAMPLE_RATE, return_tensors="np"
        )["input_features"]
        torch_batch = torch_path(mels, [waves[n] for n in names])
        for i, name in enumerate(names):
            if mel_bins[name] != mels:
                continue
            single = load_file(str(out / f"{name}.safetensors"))[f"features_{mels}"]
            assert np.array_equal(batch[i], single), f"{name}: batched numpy path differs"
            gap = float(np.abs(torch_batch[i] - single).max())
            print(f"{name} {mels} mels: torch path vs numpy path max |diff| {gap:.2e}")


# --------------------------------------------------------------------------- tokenizer


def openai_tokenizer_module():
    """whisper/tokenizer.py from the openai-whisper package, loaded alone: importing the
    `whisper` package would pull in numba and torch models we do not need."""
    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        sys.exit(
            "error: openai-whisper is not installed in this environment\n"
            "hint: pip install --no-deps openai-whisper==20250625 (it ships the BPE ranks)"
        )
    path = Path(spec.origin).parent / "tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("openai_whisper_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte (the ByteLevel alphabet of tokenizer.json)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def split_by_ranks(ranks: dict[bytes, int], token: bytes, below: int) -> list[bytes]:
    """BPE of `token` using only merges ranked below `below`: the two parts it is left in
    are the merge that makes `token` (the tiktoken -> merges.txt derivation)."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < below and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def vocab_and_merges(ranks: dict[bytes, int]):
    table = byte_to_unicode()

    def show(b: bytes) -> str:
        return "".join(table[x] for x in b)

    vocab = {show(token): rank for token, rank in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = split_by_ranks(ranks, token, rank)
        if len(parts) == 2:
            merges.append((show(parts[0]), show(parts[1])))
    return vocab, merges


def convert_tokenizer(openai, directory: Path):
    """tokenizer.json for the multilingual vocabulary, as transformers' Whisper conversion
    lays it out: BPE ranks, then <|endoftext|>, <|startoftranscript|>, the languages, the
    control tokens (special), then the timestamps (added, not special)."""
    from transformers import WhisperTokenizer

    encoding = openai.get_encoding("multilingual", num_languages=NUM_LANGUAGES)
    vocab, merges = vocab_and_merges(encoding._mergeable_ranks)
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    languages = [f"<|{code}|>" for code in list(openai.LANGUAGES)[:NUM_LANGUAGES]]
    control = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    tok.add_tokens(["<|endoftext|>", "<|startoftranscript|>", *languages, *control], special_tokens=True)
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)], special_tokens=False)
    tok.save_pretrained(str(directory))
    return encoding


CASES = [
    ("en", "transcribe", "The quick brown fox jumps over the lazy dog."),
    ("en", "transcribe", " Leading space, CAPITALS and numbers: 1,234.56 in 2026!"),
    ("en", "translate", "it's we'll they're I'd -- \"quoted\" (parens) [brackets]"),
    ("zh", "transcribe", "今天天气很好，我们去公园散步吧。"),
    ("zh", "transcribe", "我們今天在臺灣學習機器翻譯與語音辨識。"),
    ("zh", "transcribe", "這個model的WER是百分之二十，CER是15%左右。"),
    ("zh", "transcribe", "我用Python寫了一個script，跑在GPU上面 OK啦"),
    ("zh", "translate", "「你好！」他說：「請問，這是什麼？」（全形括號）……"),
    ("zh", "transcribe", "ＡＢＣ１２３　全形空白與半形 space"),
    ("ja", "transcribe", "こんにちは、世界。カタカナ"),
    ("en", "transcribe", "Spaces before punctuation , stay . Don 't clean up ?"),
    ("zh", "transcribe", "emoji 😀 and accents: café, naïve, Ωmega"),
    (None, None, "no language, no task"),
]


def make_tokenizer():
    out = OUT / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    openai = openai_tokenizer_module()
    with tempfile.TemporaryDirectory() as tmp:
        encoding = convert_tokenizer(openai, Path(tmp))
        os.replace(Path(tmp) / "tokenizer.json", out / "tokenizer.json")
    from transformers import WhisperTokenizer

    tok = WhisperTokenizer(tokenizer_file=str(out / "tokenizer.json"))
    assert len(tok) == 51865, f"vocabulary size {len(tok)}, want 51865"
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 50257
    cases = []
    for language, task, text in CASES:
        # set_prefix_tokens keeps the previous language/task for a None argument
        tok.language, tok.task = language, task
        tok.set_prefix_tokens()
        labels = tok(text).input_ids
        check_against_openai(openai, encoding, language, task, text, labels)
        decoded = tok.decode(labels, skip_special_tokens=True)
        assert decoded == text, (decoded, text)
        cases.append({"language": language, "task": task, "text": text, "labels": labels, "decoded": decoded})
    decodes = decode_cases(tok)
    with open(out / "expected.json", "w", encoding="utf-8") as f:
        json.dump(
            {"vocab_size": len(tok), "cases": cases, "decode_cases": decodes}, f, ensure_ascii=False, indent=1
        )
        f.write("\n")
    print(f"tokenizer: {len(tok)} ids, {len(cases)} cases agree with openai-whisper")


def decode_cases(tok):
    """Generated-looking ids (timestamps, a <|startofprev|> prompt) and their decodes."""
    ids = tok.convert_tokens_to_ids
    text = tok(" 我們去 Taipei 101 吧", add_special_tokens=False).input_ids
    prompt = [ids("<|startofprev|>")] + tok(" earlier words", add_special_tokens=False).input_ids
    prefix = [ids("<|startoftranscript|>"), ids("<|zh|>"), ids("<|transcribe|>")]
    sequences = [
        prefix + [ids("<|notimestamps|>")] + text + [ids("<|endoftext|>")],
        prefix + [ids("<|0.00|>")] + text + [ids("<|1.52|>"), ids("<|endoftext|>")],
        prompt + prefix + [ids("<|notimestamps|>")] + text + [ids("<|endoftext|>")],
    ]
    return [
        {"ids": seq, "skip_special_tokens": skip, "text": tok.decode(seq, skip_special_tokens=skip)}
        for seq in sequences
        for skip in (True, False)
    ]


def check_against_openai(openai, encoding, language, task, text, labels):
    """openai-whisper's tiktoken tokenizer must give the same ids."""
    ref = openai.Tokenizer(encoding=encoding, num_languages=NUM_LANGUAGES, language=language, task=task)
    want = list(ref.sot_sequence_including_notimestamps) + ref.encode(text) + [ref.eot]
    assert labels == want, f"{text!r}: transformers {labels} != openai-whisper {want}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["features", "tokenizer"])
    args = parser.parse_args()
    if args.only != "tokenizer":
        make_features()
    if args.only != "features":
        make_tokenizer()


if __name__ == "__main__":
    main()
