#!/usr/bin/env python3
"""Generate the small test corpora under fixtures/ with espeak-ng, sox, flac, lame, ffmpeg.

    tools/make-corpus-fixtures.py            # rewrites fixtures/{librispeech,commonvoice,csv,jsonl}

Each corpus has clean rows (short, clearly spoken everyday sentences; the packer and a
tiny overfitting model use them too) and planted defects, at least one per finding code
of `asr-data validate` that the layout allows. Every planted defect is listed in the
PLANTED tables below, written to DEFECTS.md beside each corpus, and asserted by
crates/asr-validate/tests/fixtures.rs with its exact code and id.

Needs espeak-ng, sox, flac, lame and ffmpeg (tools/install-system-deps.sh); only the
Python standard library. The output is small (a few MB) and committed; rerun this script
only to change the fixtures (encoder versions may change the bytes, not the content).
"""
from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
TMP = Path(tempfile.mkdtemp(prefix="asr-fixtures-"))

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "a cup of warm tea helps me sleep",
    "the train leaves the station at noon",
    "please close the door when you leave",
    "my brother plays the piano every evening",
    "the children are reading in the library",
    "we walked along the river after dinner",
    "the weather is cold and windy today",
    "he bought fresh bread at the market",
    "the garden is full of yellow flowers",
    "our teacher told us a funny story",
    "the old man sat on a wooden bench",
    "it is raining in the city again",
    "the cat is sleeping on the sofa",
    "they painted the kitchen light blue",
    "the bus was late this morning",
    "i left my keys on the kitchen table",
    "the ship sailed across the calm sea",
    "she wrote a long letter to her friend",
    "the music was too loud at the party",
    "we need more milk and some eggs",
    "the dog ran quickly across the field",
    "the sun rises early in the summer",
    "he fixed the broken chair yesterday",
    "the students finished their homework",
    "a small bird sang outside my window",
    "the doctor will see you now",
    "turn left at the next corner",
    "the lamp on the desk is very bright",
    "it's a fine day for a walk",
    "don't forget to water the plants",
]

CJK_SENTENCES = [
    "今天天气很好",
    "我喜欢喝绿茶",
    "他每天早上跑步",
    "这本书非常有意思",
    "我们明天去公园",
    "妈妈在厨房做饭",
    "火车马上就要到了",
    "请把窗户打开",
    "学生们在教室里学习",
    "晚上我们一起看电影",
]


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def speak(text: str, voice: str = "en-us", speed: int = 160) -> Path:
    """espeak-ng to a 22.05 kHz WAV in TMP; returns its path."""
    key = hashlib.sha1(f"{voice}|{speed}|{text}".encode()).hexdigest()[:16]
    out = TMP / f"speak-{key}.wav"
    if not out.exists():
        run("espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text)
    return out


def sox(src: Path | None, dst: Path, rate: int = 16000, bits: int = 16, channels: int = 1,
        encoding: str | None = None, effects: tuple[str, ...] = ()) -> None:
    """Converts `src` (or silence when None) to `dst`, format from its extension; no
    dither, so reruns give the same samples."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    inp = ["-n"] if src is None else [str(src)]
    width = [] if dst.suffix == ".ogg" else ["-b", str(bits)]
    enc = ["-e", encoding] if encoding else []
    run("sox", "-D", *inp, "-r", str(rate), *width, *enc, "-c", str(channels), str(dst), *effects)


def mp3(src: Path, dst: Path, rate: int = 48000, channels: int = 1, tool: str = "lame") -> None:
    """MP3 at `rate`: lame writes a Xing/LAME header and no ID3 tag; ffmpeg writes an
    ID3v2 tag and a Lavc Xing header (both layouts are probed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if tool == "lame":
        wav = TMP / f"{dst.stem}-{rate}.wav"
        sox(src, wav, rate=rate, channels=channels)
        # lame picks its output rate from the bitrate: 64 kbps mono / 128 kbps stereo keep
        # 48 kHz. --resample (used for 8 kHz) makes lame skip the Info header, so that
        # clip is measured by walking its frames.
        if rate >= 44100:
            run("lame", "--quiet", "-b", "64" if channels == 1 else "128", str(wav), str(dst))
        else:
            run("lame", "--quiet", "-b", "32", "--resample", str(rate / 1000).rstrip("0").rstrip("."), str(wav), str(dst))
    else:
        run("ffmpeg", "-loglevel", "error", "-y", "-i", str(src), "-ar", str(rate), "-ac", str(channels),
            "-c:a", "libmp3lame", "-b:a", "48k", "-map_metadata", "-1", str(dst))


def flac_with_garbage_body(src: Path, dst: Path) -> None:
    """A FLAC whose metadata (STREAMINFO etc.) is intact and whose audio frames are
    replaced by deterministic garbage: the header probe accepts it, only decoding fails."""
    data = src.read_bytes()
    pos = 4
    while True:
        last = data[pos] & 0x80
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        pos += 4 + length
        if last:
            break
    rng = random.Random(7)
    body = bytes(rng.randrange(256) for _ in range(len(data) - pos))
    dst.write_bytes(data[:pos] + body)


def truncate(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def defects_md(title: str, planted: list[tuple[str, str, str]], notes: str) -> str:
    lines = [f"# {title}", "", "Generated by `tools/make-corpus-fixtures.py`. " + notes, "",
             "| code | id | how |", "|---|---|---|"]
    lines += [f"| `{code}` | `{uid}` | {how} |" for code, uid, how in planted]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# LibriSpeech
# --------------------------------------------------------------------------------------

LS_PLANTED = [
    ("missing_audio", "1002-2003-0004", "transcript line, no FLAC file"),
    ("orphan_audio", "1002-2003-0099", "FLAC file, no transcript line"),
    ("duplicate_id", "1001-2001-0004", "the id appears twice in 1001-2001.trans.txt"),
    ("bad_id", "1001-2009-0002", "listed (and stored) in chapter folder 1001/2002"),
    ("unreadable_transcript", "1002-2003-0005", "transcript bytes are not UTF-8"),
    ("metadata_mismatch", "1005-2007-0000", "speaker 1005 is missing from SPEAKERS.TXT"),
    ("metadata_mismatch", "1001-2006-0000", "SPEAKERS.TXT puts speaker 1001 in train-clean-100, found in test-clean"),
    ("undecodable_audio", "1003-2004-0003", "random bytes named .flac (header probe fails)"),
    ("undecodable_audio", "1004-2005-0003", "valid STREAMINFO, garbage frames: only --deep finds it"),
    ("empty_audio", "1003-2004-0004", "0-byte file"),
    ("sample_rate", "1002-2003-0006", "8 kHz FLAC"),
    ("multichannel", "1002-2003-0007", "stereo FLAC"),
    ("silent_audio", "1004-2005-0004", "digital silence (--deep)"),
    ("clipped_audio", "1004-2005-0005", "speech amplified by 25 dB (--deep)"),
    ("too_short", "1001-2001-0005", "0.3 s clip"),
    ("too_long", "1001-2001-0007", "21 s clip (speech then silence)"),
    ("empty_transcript", "1001-2001-0006", "id with no text"),
    ("mixed_case", "1002-2003-0008", "lower-case transcript in an upper-case corpus"),
    ("punctuation", "1003-2004-0005", "commas, full stop and question mark"),
    ("unusual_char", "1004-2005-0006", "a dollar sign and digits"),
    ("whitespace", "1001-2002-0003", "double spaces and a trailing space"),
    ("ctc_infeasible", "1001-2002-0004", "0.5 s of audio for 60 characters"),
    ("speech_rate", "1002-2003-0009", "3 s of speech transcribed as one word"),
    ("split_leakage", "1004-2005-0007", "test-clean sentence equal to train 1001-2001-0000"),
    ("speaker_overlap", "1001-2006-0000", "speaker 1001 of train-clean-100 also in test-clean"),
    ("duplicate_audio", "1003-2004-0006", "byte copy of 1003-2004-0000 (--deep)"),
]


def librispeech() -> None:
    root = FIXTURES / "librispeech" / "LibriSpeech"
    shutil.rmtree(FIXTURES / "librispeech", ignore_errors=True)
    sentences = iter(SENTENCES)
    # (subset, speaker, chapter) -> list of (utt number, transcript line text or None, audio action)
    trans: dict[tuple[str, str, str], list[str]] = {}

    def clean(subset: str, spk: str, chap: str, n: int, text: str | None = None) -> str:
        text = text or next(sentences)
        uid = f"{spk}-{chap}-{n:04d}"
        sox(speak(text), root / subset / spk / chap / f"{uid}.flac")
        trans.setdefault((subset, spk, chap), []).append(f"{uid} {text.upper()}")
        return text

    first_train = clean("train-clean-100", "1001", "2001", 0)
    for n in range(1, 4):
        clean("train-clean-100", "1001", "2001", n)
    for n in range(0, 3):
        clean("train-clean-100", "1001", "2002", n)
    for n in range(0, 4):
        clean("train-clean-100", "1002", "2003", n)
    for n in range(0, 3):
        clean("dev-clean", "1003", "2004", n)
    for n in range(0, 3):
        clean("test-clean", "1004", "2005", n)

    def d(subset: str, spk: str, chap: str) -> Path:
        return root / subset / spk / chap

    t = trans
    tr1 = ("train-clean-100", "1001", "2001")
    tr2 = ("train-clean-100", "1001", "2002")
    tr3 = ("train-clean-100", "1002", "2003")
    dv = ("dev-clean", "1003", "2004")
    ts = ("test-clean", "1004", "2005")
    # duplicate_id: 1001-2001-0004 twice.
    text = next(sentences)
    sox(speak(text), d(*tr1) / "1001-2001-0004.flac")
    t[tr1] += [f"1001-2001-0004 {text.upper()}", "1001-2001-0004 A SECOND LINE FOR THE SAME ID"]
    # too_short: 0.3 s.
    sox(speak("yes"), d(*tr1) / "1001-2001-0005.flac", effects=("trim", "0.05", "0.3"))
    t[tr1].append("1001-2001-0005 YES")
    # empty_transcript.
    sox(speak(next(sentences)), d(*tr1) / "1001-2001-0006.flac")
    t[tr1].append("1001-2001-0006")
    # too_long: 21 s.
    text = next(sentences)
    sox(speak(text), d(*tr1) / "1001-2001-0007.flac", effects=("pad", "0", "19"))
    t[tr1].append(f"1001-2001-0007 {text.upper()}")
    # bad_id: misfiled in chapter 2002.
    text = next(sentences)
    sox(speak(text), d(*tr2) / "1001-2009-0002.flac")
    t[tr2].append(f"1001-2009-0002 {text.upper()}")
    # whitespace.
    text = next(sentences)
    sox(speak(text), d(*tr2) / "1001-2002-0003.flac")
    t[tr2].append("1001-2002-0003 " + text.upper().replace(" ", "  ", 2) + " ")
    # ctc_infeasible: 0.5 s for 60 characters.
    sox(speak("hello"), d(*tr2) / "1001-2002-0004.flac", effects=("trim", "0", "0.5"))
    t[tr2].append("1001-2002-0004 THIS TRANSCRIPT IS FAR TOO LONG FOR HALF A SECOND OF AUDIO")
    # missing_audio.
    t[tr3].append("1002-2003-0004 THIS LINE HAS NO AUDIO FILE")
    # orphan_audio.
    sox(speak(next(sentences)), d(*tr3) / "1002-2003-0099.flac")
    # unreadable_transcript (filled in below as bytes).
    sox(speak(next(sentences)), d(*tr3) / "1002-2003-0005.flac")
    # sample_rate 8 kHz.
    text = next(sentences)
    sox(speak(text), d(*tr3) / "1002-2003-0006.flac", rate=8000)
    t[tr3].append(f"1002-2003-0006 {text.upper()}")
    # multichannel.
    text = next(sentences)
    sox(speak(text), d(*tr3) / "1002-2003-0007.flac", channels=2)
    t[tr3].append(f"1002-2003-0007 {text.upper()}")
    # mixed_case.
    text = next(sentences)
    sox(speak(text), d(*tr3) / "1002-2003-0008.flac")
    t[tr3].append(f"1002-2003-0008 {text}")
    # speech_rate: a full sentence transcribed as one word.
    sox(speak(next(sentences)), d(*tr3) / "1002-2003-0009.flac", effects=("pad", "0", "0.5"))
    t[tr3].append("1002-2003-0009 NO")
    # undecodable (header probe fails): random bytes.
    noise = random.Random(3)
    write(d(*dv) / "1003-2004-0003.flac", bytes(noise.randrange(256) for _ in range(3000)))
    t[dv].append("1003-2004-0003 THIS FILE IS NOT AUDIO AT ALL")
    # empty_audio: 0 bytes.
    write(d(*dv) / "1003-2004-0004.flac", b"")
    t[dv].append("1003-2004-0004 THIS FILE IS EMPTY")
    # punctuation.
    sox(speak("hello world how are you"), d(*dv) / "1003-2004-0005.flac")
    t[dv].append("1003-2004-0005 HELLO, WORLD. HOW ARE YOU?")
    # duplicate_audio: byte copy of 1003-2004-0000.
    shutil.copy(d(*dv) / "1003-2004-0000.flac", d(*dv) / "1003-2004-0006.flac")
    t[dv].append("1003-2004-0006 THE SAME RECORDING UNDER ANOTHER NAME")
    # undecodable (only --deep): garbage frames behind a valid header.
    text = next(sentences)
    good = TMP / "good.flac"
    sox(speak(text), good)
    flac_with_garbage_body(good, d(*ts) / "1004-2005-0003.flac")
    t[ts].append(f"1004-2005-0003 {text.upper()}")
    # silent_audio.
    sox(None, d(*ts) / "1004-2005-0004.flac", effects=("trim", "0", "2"))
    t[ts].append("1004-2005-0004 NOTHING CAN BE HEARD HERE")
    # clipped_audio.
    text = next(sentences)
    sox(speak(text), d(*ts) / "1004-2005-0005.flac", effects=("gain", "25"))
    t[ts].append(f"1004-2005-0005 {text.upper()}")
    # unusual_char.
    sox(speak("the room costs fifty dollars tonight"), d(*ts) / "1004-2005-0006.flac")
    t[ts].append("1004-2005-0006 THE ROOM COSTS $50 TONIGHT")
    # split_leakage: the first train sentence read again in test.
    sox(speak(first_train, speed=150), d(*ts) / "1004-2005-0007.flac")
    t[ts].append(f"1004-2005-0007 {first_train.upper()}")
    # speaker_overlap: train speaker 1001 in test-clean.
    text = next(sentences)
    sox(speak(text), d("test-clean", "1001", "2006") / "1001-2006-0000.flac")
    t[("test-clean", "1001", "2006")] = [f"1001-2006-0000 {text.upper()}"]
    # metadata_mismatch: speaker 1005 not in SPEAKERS.TXT.
    text = next(sentences)
    sox(speak(text), d("train-clean-100", "1005", "2007") / "1005-2007-0000.flac")
    t[("train-clean-100", "1005", "2007")] = [f"1005-2007-0000 {text.upper()}"]

    for (subset, spk, chap), lines in t.items():
        body = ("\n".join(lines) + "\n").encode()
        if (subset, spk, chap) == tr3:
            body += b"1002-2003-0005 THE \xff\xfe BYTES ARE NOT TEXT\n"
        write(d(subset, spk, chap) / f"{spk}-{chap}.trans.txt", body)

    write(root / "SPEAKERS.TXT", "\n".join([
        "; Speaker information for the fixture corpus (LibriSpeech format)",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
        "1001 | F | train-clean-100  |  0.50 | Fixture Reader One",
        "1002 | M | train-clean-100  |  0.50 | Fixture Reader Two",
        "1003 | F | dev-clean        |  0.20 | Fixture Reader Three",
        "1004 | M | test-clean       |  0.30 | Fixture|Reader Four",
        "",
    ]))
    write(root / "CHAPTERS.TXT", "\n".join([
        "; Chapter information for the fixture corpus (LibriSpeech format)",
        ";ID    |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE | PROJECT TITLE",
        "2001   | 1001 |  0.30 | train-clean-100  | 1    | 11    | One       | Fixture",
        "2002   | 1001 |  0.20 | train-clean-100  | 2    | 12    | Two       | Fixture",
        "2003   | 1002 |  0.50 | train-clean-100  | 3    | 13    | Three     | Fixture",
        "2004   | 1003 |  0.20 | dev-clean        | 4    | 14    | Four      | Fixture",
        "2005   | 1004 |  0.30 | test-clean       | 5    | 15    | Five      | Fixture",
        "2006   | 1001 |  0.10 | test-clean       | 6    | 16    | Six       | Fixture",
        "2007   | 1005 |  0.10 | train-clean-100  | 7    | 17    | Seven     | Fixture",
        "",
    ]))
    write(FIXTURES / "librispeech" / "DEFECTS.md", defects_md(
        "LibriSpeech fixture: planted defects", LS_PLANTED,
        "Subsets train-clean-100, dev-clean, test-clean; every other utterance is clean "
        "(upper case, LibriSpeech style, 16 kHz FLAC)."))


# --------------------------------------------------------------------------------------
# Common Voice
# --------------------------------------------------------------------------------------

CV_PLANTED = [
    ("missing_audio", "common_voice_en_900", "train.tsv row, no clip"),
    ("orphan_audio", "common_voice_en_901", "clip in no TSV"),
    ("duplicate_id", "common_voice_en_11", "in train.tsv and again in dev.tsv"),
    ("unreadable_transcript", "common_voice_en_12", "dev.tsv row with a missing column"),
    ("metadata_mismatch", "common_voice_en_13", "test.tsv clip also in invalidated.tsv"),
    ("metadata_mismatch", "common_voice_en_14", "clip_durations.tsv says 9 s, the clip is ~2 s"),
    ("undecodable_audio", "common_voice_en_15", "MP3 cut at 40% of its bytes (--deep)"),
    ("sample_rate", "common_voice_en_16", "8 kHz MP3"),
    ("multichannel", "common_voice_en_17", "stereo MP3"),
    ("split_leakage", "common_voice_en_18", "dev sentence equal (after normalization) to train common_voice_en_1"),
    ("speaker_overlap", "common_voice_en_19", "train client_id c1 also in test.tsv"),
    ("empty_transcript", "common_voice_en_20", "empty sentence field"),
]

CV_HEADER_NEW = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
                 "down_votes", "age", "gender", "accents", "variant", "locale", "segment"]
CV_HEADER_OLD = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent"]


def commonvoice() -> None:
    root = FIXTURES / "commonvoice"
    shutil.rmtree(root, ignore_errors=True)
    clips = root / "clips"
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "\"Close the door,\" she said quietly.",
        "It's a “quiet” street in the morning.",
        "My brother plays the piano every evening.",
        "We walked along the river after dinner.",
        "The weather is cold and windy today.",
        "He bought fresh bread at the market.",
        "The garden is full of yellow flowers.",
        "Our teacher told us a funny story.",
        "The old man sat on a wooden bench.",
        "The cat is sleeping on the sofa.",
        "The bus was late this morning.",
    ]
    rows: dict[str, list[dict[str, str]]] = {"train": [], "dev": [], "test": [], "validated": [],
                                             "invalidated": [], "other": []}
    durations: list[tuple[str, int]] = []

    def clip(n: int, text: str, client: str, split: str, rate: int = 48000, channels: int = 1,
             speak_text: str | None = None) -> dict[str, str]:
        name = f"common_voice_en_{n}.mp3"
        wav = speak(speak_text or text.replace("“", "").replace("”", "").replace("\"", ""))
        mp3(wav, clips / name, rate=rate, channels=channels)
        row = {"client_id": client, "path": name, "sentence_id": f"s{n}", "sentence": text,
               "sentence_domain": "", "up_votes": "2", "down_votes": "0", "age": "", "gender": "",
               "accents": "", "accent": "", "variant": "", "locale": "en", "segment": ""}
        rows[split].append(row)
        if split in ("train", "dev", "test"):
            rows["validated"].append(row)
        durations.append((name, int(round(float(subprocess.check_output(
            ["soxi", "-D", str(wav)]).decode().strip()) * 1000))))
        return row

    # Clean rows: train c1/c2, dev c3, test c4.
    for n, text in enumerate(sentences[:8], start=1):
        clip(n, text, "c1" if n <= 4 else "c2", "train")
    clip(9, sentences[8], "c3", "dev")
    clip(10, sentences[9], "c3", "dev")
    clip(21, sentences[10], "c4", "test")
    clip(22, sentences[11], "c4", "test")
    # duplicate_id: common_voice_en_11 in train and dev.
    r = clip(11, "She wrote a long letter to her friend.", "c2", "train")
    rows["dev"].append(dict(r, client_id="c3"))
    # unreadable_transcript: dev row with a missing column (written specially below).
    clip(12, "The ship sailed across the calm sea.", "c3", "dev")
    # metadata_mismatch: test clip in invalidated.tsv.
    r = clip(13, "The doctor will see you now.", "c4", "test")
    rows["invalidated"].append(r)
    # metadata_mismatch: declared duration 9 s (fixed below).
    clip(14, "Turn left at the next corner.", "c4", "test")
    # undecodable_audio: truncated MP3.
    clip(15, "The lamp on the desk is very bright.", "c2", "train")
    truncate(clips / "common_voice_en_15.mp3", clips / "common_voice_en_15.mp3", 0.4)
    # sample_rate and multichannel.
    clip(16, "Don't forget to water the plants.", "c2", "train", rate=8000)
    clip(17, "The sun rises early in the summer.", "c2", "train", channels=2)
    # split_leakage: dev sentence equal to train common_voice_en_1 after normalization.
    clip(18, "the quick brown fox jumps over the lazy dog", "c3", "dev",
         speak_text="the quick brown fox, jumps over the lazy dog")
    # speaker_overlap: train client c1 in test.
    clip(19, "A small bird sang outside my window.", "c1", "test")
    # empty_transcript.
    clip(20, "", "c4", "test", speak_text="the children are reading")
    # missing_audio: a train row whose clip does not exist.
    r = clip(900, "This clip was never uploaded.", "c2", "train")
    (clips / r["path"]).unlink()
    # orphan_audio: a clip in no TSV.
    mp3(speak("nobody listed this clip"), clips / "common_voice_en_901.mp3")
    # other.tsv: a clip not yet validated (not part of the corpus).
    mp3(speak("waiting for votes"), clips / "common_voice_en_30.mp3")
    rows["other"].append({"client_id": "c5", "path": "common_voice_en_30.mp3", "sentence": "Waiting for votes.",
                          "up_votes": "0", "down_votes": "0", "age": "", "gender": "", "accent": ""})

    def tsv(name: str, header: list[str], special: str = "") -> None:
        lines = ["\t".join(header)]
        for row in rows[name]:
            if name == "dev" and row["path"] == "common_voice_en_12.mp3":
                # Drop the sentence column: a row with one field too few.
                lines.append("\t".join(row.get(h, "") for h in header if h != "sentence"))
                continue
            lines.append("\t".join(row.get(h, "") for h in header))
        write(root / f"{name}.tsv", "\n".join(lines) + "\n" + special)

    # Newer header (sentence_id, sentence_domain, accents, variant, ...) for train and
    # validated; the older one (accent, no locale) for dev, test, invalidated, other.
    tsv("train", CV_HEADER_NEW)
    tsv("validated", CV_HEADER_NEW)
    for name in ("dev", "test", "invalidated", "other"):
        tsv(name, CV_HEADER_OLD)
    write(root / "reported.tsv", "sentence_id\tsentence\tlocale\treason\ns7\tHe bought fresh bread at the market.\ten\tgrammar\n")
    durations = [(n, 9000 if n == "common_voice_en_14.mp3" else ms) for n, ms in durations]
    write(root / "clip_durations.tsv", "clip\tduration[ms]\n" + "".join(f"{n}\t{ms}\n" for n, ms in durations))
    write(root / "DEFECTS.md", defects_md(
        "Common Voice fixture: planted defects", CV_PLANTED,
        "48 kHz mono MP3 clips (lame, with an Info header; the 8 kHz one without, measured by a frame walk); train/dev/test.tsv are the splits, validated/invalidated/"
        "other.tsv cross-checks. Sentences keep Common Voice's case and punctuation (with `\"` and "
        "curly quotes), so `mixed_case` and `punctuation` warnings are expected on clean rows."))


# --------------------------------------------------------------------------------------
# CSV manifests: Kaggle's Common Voice layout and a CJK `file,<transcript>` manifest
# --------------------------------------------------------------------------------------

KAGGLE_PLANTED = [
    ("missing_audio", "cv-valid-train/sample-000050", "row whose MP3 does not exist"),
    ("orphan_audio", "sample-000099", "MP3 in cv-valid-train/cv-valid-train/ on no row"),
    ("duplicate_id", "cv-valid-train/sample-000007", "the same filename on two rows"),
    ("unreadable_transcript", "-", "cv-valid-train.csv line 13: a row with 3 fields"),
    ("whitespace", "cv-valid-train/sample-000008", "leading and trailing spaces"),
    ("split_leakage", "cv-valid-test/sample-000001", "test text equal to train sample-000001"),
]

CJK_PLANTED = [
    ("punctuation", "wavs/cjk_08", "full-width comma and full stop"),
    ("unusual_char", "wavs/cjk_09", "an emoji"),
    ("ctc_infeasible", "wavs/cjk_10", "0.4 s of audio for 30 characters"),
    ("missing_audio", "wavs/cjk_11", "row whose FLAC does not exist"),
]


def csv_manifests() -> None:
    root = FIXTURES / "csv"
    shutil.rmtree(root, ignore_errors=True)
    kaggle = root / "kaggle"
    header = "filename,text,up_votes,down_votes,age,gender,accent,duration"
    train = [header]
    for n in range(0, 8):
        text = SENTENCES[n + 8]
        name = f"cv-valid-train/sample-{n:06d}.mp3"
        mp3(speak(text, voice="en-gb"), kaggle / "cv-valid-train" / name, tool="ffmpeg")
        train.append(f"{name},{text},2,0,,,,")
    train.append(f"cv-valid-train/sample-000007.mp3,{SENTENCES[15]},1,0,,,,")  # duplicate_id
    mp3(speak(SENTENCES[16], voice="en-gb"), kaggle / "cv-valid-train" / "cv-valid-train/sample-000008.mp3", tool="ffmpeg")
    train.append(f"cv-valid-train/sample-000008.mp3,\"  {SENTENCES[16]} \",1,0,twenties,male,us,")
    train.append(f"cv-valid-train/sample-000050.mp3,{SENTENCES[17]},1,0,,,,")  # missing_audio
    train.append("cv-valid-train/sample-000051.mp3,a row with too few fields")  # unreadable
    mp3(speak("an orphan clip", voice="en-gb"), kaggle / "cv-valid-train" / "cv-valid-train/sample-000099.mp3", tool="ffmpeg")
    write(kaggle / "cv-valid-train.csv", "\n".join(train) + "\n")
    test = [header]
    for n, text in enumerate([SENTENCES[20], SENTENCES[9], SENTENCES[21]]):
        name = f"cv-valid-test/sample-{n:06d}.mp3"
        mp3(speak(text, voice="en-us", speed=150), kaggle / "cv-valid-test" / name, tool="ffmpeg")
        test.append(f"{name},{text},1,0,,,,")
    write(kaggle / "cv-valid-test.csv", "\n".join(test) + "\n")
    write(kaggle / "DEFECTS.md", defects_md(
        "Kaggle Common Voice CSV fixture: planted defects", KAGGLE_PLANTED,
        "Kaggle's layout: `cv-valid-train.csv` lists `cv-valid-train/sample-N.mp3`, stored under "
        "`cv-valid-train/cv-valid-train/` (48 kHz MP3 written by ffmpeg, with an ID3v2 tag)."))

    cjk = root / "cjk"
    rows = ["file,转写"]
    for n, text in enumerate(CJK_SENTENCES[:8]):
        sox(speak(text, voice="cmn", speed=170), cjk / "wavs" / f"cjk_{n:02d}.flac")
        rows.append(f"wavs/cjk_{n:02d}.flac,{text}")
    sox(speak("你好世界", voice="cmn", speed=170), cjk / "wavs" / "cjk_08.flac")
    rows.append("wavs/cjk_08.flac,\"你好，世界。\"")
    sox(speak(CJK_SENTENCES[8], voice="cmn", speed=170), cjk / "wavs" / "cjk_09.flac")
    rows.append(f"wavs/cjk_09.flac,{CJK_SENTENCES[8]}😀")
    sox(speak("你好", voice="cmn"), cjk / "wavs" / "cjk_10.flac", effects=("trim", "0", "0.4"))
    rows.append("wavs/cjk_10.flac," + "".join(CJK_SENTENCES[9:10] * 3) + "我们一起看电影")
    rows.append(f"wavs/cjk_11.flac,{CJK_SENTENCES[9]}")
    write(cjk / "manifest" / "train.csv", "\n".join(rows) + "\n")
    write(cjk / "DEFECTS.md", defects_md(
        "CJK CSV fixture: planted defects", CJK_PLANTED,
        "`manifest/train.csv` has the header `file,转写` (the transcript column has a non-Latin "
        "name) and paths relative to the manifest folder's parent; 16 kHz FLAC, Mandarin "
        "by espeak-ng's cmn voice."))


# --------------------------------------------------------------------------------------
# JSON-lines
# --------------------------------------------------------------------------------------

JSONL_PLANTED = [
    ("metadata_mismatch", "audio/clip_08", "declared duration 5.0 s, the clip is ~2 s"),
    ("unreadable_transcript", "-", "manifest.jsonl line 10: not JSON"),
    ("missing_audio", "audio/clip_09", "no such file"),
    ("empty_audio", "audio/clip_10", "WAV with a header and no samples"),
]


def jsonl() -> None:
    root = FIXTURES / "jsonl"
    shutil.rmtree(root, ignore_errors=True)
    lines = []
    # Clean: a mix of WAV encodings and Ogg Vorbis.
    formats = [("wav", 16, "signed-integer"), ("wav", 24, "signed-integer"), ("wav", 32, "floating-point"),
               ("ogg", 16, None), ("wav", 16, "signed-integer"), ("ogg", 16, None), ("wav", 8, "unsigned-integer"),
               ("wav", 16, "signed-integer")]
    for n, (ext, bits, enc) in enumerate(formats):
        text = SENTENCES[24 + n]
        path = root / "audio" / f"clip_{n:02d}.{ext}"
        sox(speak(text, voice="en-us+f3"), path, bits=bits, encoding=enc)
        dur = float(subprocess.check_output(["soxi", "-D", str(path)]).decode().strip())
        lines.append(f'{{"audio_filepath": "audio/clip_{n:02d}.{ext}", "text": "{text}", "duration": {dur:.3f}}}')
    sox(speak(SENTENCES[3], voice="en-us+f3"), root / "audio" / "clip_08.wav")
    lines.append('{"audio_filepath": "audio/clip_08.wav", "text": "%s", "duration": 5.0}' % SENTENCES[3])
    lines.append('{"audio_filepath": "audio/clip_09.wav", "text": "%s", "duration": 2.0}' % SENTENCES[4])
    lines.append('{"audio_filepath": "audio/clip_10.wav", "text": "%s", "duration": 2.0}' % SENTENCES[5])
    lines.insert(9, '{"audio_filepath": "audio/clip_11.wav", "text": unquoted text}')
    run("sox", "-n", "-r", "16000", "-b", "16", "-c", "1", str(root / "audio" / "clip_10.wav"), "trim", "0", "0")
    write(root / "manifest.jsonl", "\n".join(lines) + "\n")
    write(root / "DEFECTS.md", defects_md(
        "JSON-lines fixture: planted defects", JSONL_PLANTED,
        "NeMo-style `manifest.jsonl` (`audio_filepath`, `text`, `duration`); clips are 16 kHz WAV "
        "(8-bit unsigned, 16/24-bit signed, 32-bit float) and Ogg Vorbis."))


def main() -> None:
    for tool in ("espeak-ng", "sox", "soxi", "flac", "lame", "ffmpeg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run tools/install-system-deps.sh")
    try:
        librispeech()
        commonvoice()
        csv_manifests()
        jsonl()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    total = sum(f.stat().st_size for d in ("librispeech", "commonvoice", "csv", "jsonl")
                for f in (FIXTURES / d).rglob("*") if f.is_file())
    print(f"fixtures written: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
