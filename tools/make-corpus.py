#!/usr/bin/env python3
"""Generate a synthetic speech corpus of a requested size with espeak-ng and sox.

    tools/make-corpus.py --hours 2 --out /tmp/synth               # LibriSpeech layout, FLAC 16 kHz
    tools/make-corpus.py --hours 1.5 --layout commonvoice --out /tmp/cv   # Common Voice, MP3 48 kHz

For benchmarks and for proof-of-learning runs: the corpus is deterministic for a given
seed and size (the same arguments give the same transcripts, voices and audio), and
varied enough that a model cannot pass by memorizing a handful of sentences:

- sentences come from a small English grammar (subjects, verbs, objects, places,
  times, numbers, names, questions) with a vocabulary of several hundred words, so
  nearly every sentence is distinct;
- each "speaker" is an espeak-ng voice (an English accent plus a voice variant) with its
  own base speed and pitch; every utterance varies speed and pitch around them, adds
  leading and trailing silence, and optionally background noise at a random SNR;
- `--held-out N` speakers never appear in training: they form their own test split
  (`test-heldout`), beside a test split of seen speakers (`test-clean`) and a dev split
  (`dev-clean`) of seen speakers with different sentences.

Layouts:
- librispeech: `<out>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac`
  with `<speaker>-<chapter>.trans.txt` (upper case, no punctuation but apostrophes, as
  LibriSpeech) and VOICES.TXT (speaker -> espeak-ng voice); subsets train-clean,
  dev-clean, test-clean, test-heldout. Seen speakers are in train, dev and test-clean
  on purpose, so `asr-data validate` reports speaker_overlap for them.
- commonvoice: `<out>/clips/*.mp3` (48 kHz mono) with train.tsv, dev.tsv, test.tsv
  (held-out speakers), validated.tsv and clip_durations.tsv; sentences keep their case
  and punctuation, as Common Voice's do.

Needs espeak-ng and sox (with MP3 support for commonvoice): tools/install-system-deps.sh.
Only the Python standard library is used.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt3", "klatt4", "adam", "anika", "caleb", "david",
            "edward", "john", "linda", "max", "norbert", "paul", "robert", "steph"]

NAMES = """anna ben clara david emma frank grace henry isla jack kate leo mary nora oscar
peter quinn rosa sam tom una victor wendy xavier yara zoe alice bruno carmen dylan""".split()
ADJECTIVES = """old young small large quiet loud bright dark warm cold early late happy
tired busy careful gentle brave clever honest simple strange heavy light empty full
green yellow blue red white black brown golden silver wooden narrow wide deep shallow
short long fresh sweet bitter sharp soft rough smooth clean dirty rich poor proud calm
wild friendly lazy hungry thirsty sleepy curious famous secret ancient modern""".split()
NOUNS = """man woman child teacher doctor farmer driver baker sailor painter writer
student neighbor captain soldier nurse pilot singer cook farmer's dog cat horse bird
fish rabbit mouse fox wolf bear garden river forest mountain village city street house
kitchen window door table chair bed lamp clock book letter paper pencil bottle glass
cup plate basket box bag coat hat shoe key ring boat train car bicycle bridge road
field hill lake island beach stone tree flower apple bread cheese milk water coffee
tea soup cake orange lemon rain snow wind storm cloud sun moon star morning evening
night winter summer autumn spring market school church office station hospital library
museum theater story song picture question answer problem idea plan message game
machine engine wheel rope ladder hammer nail fence gate wall roof floor corner""".split()
PLURALS = """children people teachers doctors farmers sailors students dogs cats horses
birds fish apples flowers books letters boats trees stones houses windows streets
cups plates keys songs stories questions ideas plans machines candles shoes""".split()
VERBS_PAST = """saw found took gave made kept left brought bought sold carried painted
opened closed washed cleaned fixed broke built moved pushed pulled lifted dropped
watched followed visited helped called asked answered showed told sent wrote read
cooked baked planted picked counted carried forgot remembered liked loved hated
wanted needed borrowed returned described noticed""".split()
VERBS_INTRANSITIVE = """walked ran slept laughed waited smiled shouted danced sang
worked rested arrived stayed returned listened whispered jumped fell hurried
wandered stopped""".split()
PLACES = """near the river|by the old bridge|in the garden|at the market|under the
table|behind the house|across the street|inside the station|on the hill|beside the
lake|in the kitchen|at the school|through the forest|along the road|outside the
library|in the village|at the edge of the field|on the small island|next to the
church|under the bright moon""".replace("\n", " ").split("|")
TIMES = """yesterday|this morning|last night|on monday|on friday|after dinner|before
noon|in the evening|every day|at midnight|last winter|during the storm|early in the
morning|late at night|a week ago|on sunday afternoon|in the spring|this year""".replace(
    "\n", " ").split("|")
ADVERBS = """slowly quickly quietly carefully happily suddenly gently loudly
patiently nervously proudly calmly eagerly softly""".split()
NUMBERS = """two three four five six seven eight nine ten eleven twelve twenty thirty
forty fifty""".split() + ["a hundred", "a few", "many", "some"]
QUESTION_WORDS = ["where did", "why did", "when did", "how did"]
VERBS_BASE = """see find take paint open call visit help carry read build move watch
follow cook clean fix sell""".split()


def sentence(rng: random.Random) -> str:
    """One sentence from the grammar: plain words, apostrophes allowed, ending with `.`
    or `?` (kept for Common Voice; LibriSpeech transcripts drop punctuation)."""
    def np_() -> str:
        roll = rng.random()
        if roll < 0.2:
            return rng.choice(NAMES).capitalize()
        if roll < 0.35:
            return f"{rng.choice(NUMBERS)} {rng.choice(ADJECTIVES)} {rng.choice(PLURALS)}"
        if roll < 0.45:
            return f"{rng.choice(NAMES).capitalize()}'s {rng.choice(NOUNS)}"
        adjective = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.6 else ""
        return f"the {adjective}{rng.choice(NOUNS)}"

    form = rng.random()
    if form < 0.45:
        words = [np_(), rng.choice(VERBS_PAST), np_()]
    elif form < 0.7:
        words = [np_(), rng.choice(VERBS_INTRANSITIVE)]
        if rng.random() < 0.5:
            words.append(rng.choice(ADVERBS))
    elif form < 0.85:
        words = [rng.choice(QUESTION_WORDS), np_(), rng.choice(VERBS_BASE), np_()]
        text = " ".join(words) + "?"
        return text[0].upper() + text[1:]
    else:
        words = [np_(), "and", np_(), rng.choice(VERBS_INTRANSITIVE), "together"]
    if rng.random() < 0.5:
        words.append(rng.choice(PLACES))
    if rng.random() < 0.4:
        words.append(rng.choice(TIMES))
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


def librispeech_text(text: str) -> str:
    """LibriSpeech style: upper case, letters, apostrophes and single spaces."""
    kept = "".join(c for c in text.upper() if c.isalpha() or c in " '")
    return " ".join(kept.split())


@dataclass(frozen=True)
class Speaker:
    speaker_id: int
    voice: str
    speed_wpm: int
    pitch: int
    gender: str
    held_out: bool


@dataclass(frozen=True)
class Job:
    index: int
    speaker: Speaker
    split: str
    text: str
    out_path: str
    layout: str
    seed: int
    noise_probability: float


def make_speakers(count: int, held_out: int, rng: random.Random) -> list[Speaker]:
    voices = [f"{accent}+{variant}" for variant in VARIANTS for accent in ACCENTS]
    rng.shuffle(voices)
    speakers = []
    for i in range(count):
        voice = voices[i % len(voices)]
        variant = voice.split("+")[1]
        gender = "F" if variant.startswith("f") or variant in {"anika", "linda", "steph"} else "M"
        speakers.append(Speaker(
            speaker_id=100 + i * 7,
            voice=voice,
            speed_wpm=rng.randint(140, 185),
            pitch=rng.randint(30, 70),
            gender=gender,
            held_out=i >= count - held_out,
        ))
    return speakers


def run(args: list[str]) -> None:
    result = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.decode(errors='replace')}")


def synthesize(job: Job) -> tuple[int, float]:
    """Speak one utterance and encode it; returns (index, duration in seconds)."""
    rng = random.Random(job.seed * 1_000_003 + job.index)
    speaker = job.speaker
    speed = max(110, min(230, speaker.speed_wpm + rng.randint(-20, 20)))
    pitch = max(0, min(99, speaker.pitch + rng.randint(-8, 8)))
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        run(["espeak-ng", "-v", speaker.voice, "-s", str(speed), "-p", str(pitch),
             "-w", raw, job.text])
        lead, trail = rng.uniform(0.05, 0.35), rng.uniform(0.05, 0.4)
        rate = "16000" if job.layout == "librispeech" else "48000"
        effects = ["pad", f"{lead:.3f}", f"{trail:.3f}", "rate", "-v", rate]
        source = raw
        if rng.random() < job.noise_probability:
            padded = os.path.join(tmp, "padded.wav")
            run(["sox", raw, "-b", "16", padded, *effects])
            noise = os.path.join(tmp, "noise.wav")
            snr_volume = 10 ** (-rng.uniform(15, 35) / 20) * 0.3
            run(["sox", padded, noise, "synth", rng.choice(["whitenoise", "pinknoise", "brownnoise"]),
                 "vol", f"{snr_volume:.5f}"])
            mixed = os.path.join(tmp, "mixed.wav")
            run(["sox", "-m", padded, noise, mixed])
            source, effects = mixed, []
        out = Path(job.out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial" + out.suffix)
        run(["sox", source, "-b", "16", "-c", "1", str(partial), *effects])
        os.replace(partial, out)
    return job.index, duration_of(out)


def duration_of(path: Path) -> float:
    out = subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def plan(args: argparse.Namespace) -> tuple[list[Speaker], list[Job]]:
    rng = random.Random(args.seed)
    speakers = make_speakers(args.speakers, args.held_out, rng)
    seen = [s for s in speakers if not s.held_out]
    held = [s for s in speakers if s.held_out]
    # About 3 s per utterance on average.
    total = max(8, round(args.hours * 3600 / 3.0))
    held_count = round(total * args.held_out_fraction) if held else 0
    dev_count = round(total * args.dev_fraction)
    test_count = round(total * args.test_fraction)
    train_count = total - held_count - dev_count - test_count
    splits = (["train-clean"] * train_count + ["dev-clean"] * dev_count
              + ["test-clean"] * test_count + ["test-heldout"] * held_count)
    used: set[str] = set()
    jobs = []
    per_speaker: dict[int, int] = {}
    for index, split in enumerate(splits):
        pool = held if split == "test-heldout" else seen
        speaker = pool[index % len(pool)]
        text = sentence(rng)
        # Dev and test sentences never appear in training.
        while text.lower() in used:
            text = sentence(rng)
        used.add(text.lower())
        n = per_speaker.get(speaker.speaker_id, 0)
        per_speaker[speaker.speaker_id] = n + 1
        if args.layout == "librispeech":
            chapter = speaker.speaker_id * 10 + (0 if split.startswith("train") else 1 + ["dev-clean", "test-clean", "test-heldout"].index(split))
            name = f"{speaker.speaker_id}-{chapter}-{n:04d}.flac"
            out = args.out / "LibriSpeech" / split / str(speaker.speaker_id) / str(chapter) / name
        else:
            out = args.out / "clips" / f"common_voice_en_{args.seed}{index:07d}.mp3"
        jobs.append(Job(index, speaker, split, text, str(out), args.layout, args.seed,
                        args.noise_probability))
    return speakers, jobs


def write_librispeech_metadata(args, speakers, jobs, durations) -> None:
    root = args.out / "LibriSpeech"
    groups: dict[Path, list[tuple[str, str]]] = {}
    for job in jobs:
        path = Path(job.out_path)
        groups.setdefault(path.parent, []).append((path.stem, librispeech_text(job.text)))
    for folder, rows in groups.items():
        speaker, chapter = folder.parent.name, folder.name
        with open(folder / f"{speaker}-{chapter}.trans.txt", "w") as f:
            for utt, text in sorted(rows):
                f.write(f"{utt} {text}\n")
    # No SPEAKERS.TXT / CHAPTERS.TXT: LibriSpeech's promise one subset per speaker,
    # and this corpus puts seen speakers in train, dev and test-clean on purpose.
    with open(root / "VOICES.TXT", "w") as f:
        f.write("; speaker | sex | espeak-ng voice | held out\n")
        for s in speakers:
            f.write(f"{s.speaker_id} | {s.gender} | {s.voice} | {'yes' if s.held_out else 'no'}\n")


def write_commonvoice_metadata(args, speakers, jobs, durations) -> None:
    header = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
              "down_votes", "age", "gender", "accents", "variant", "locale", "segment"]
    by_split: dict[str, list[list[str]]] = {"train": [], "dev": [], "test": []}
    validated = []
    for job in jobs:
        client = hashlib.sha256(f"speaker-{job.speaker.speaker_id}".encode()).hexdigest()
        sentence_id = hashlib.sha256(job.text.encode()).hexdigest()[:16]
        gender = "female_feminine" if job.speaker.gender == "F" else "male_masculine"
        row = [client, Path(job.out_path).name, sentence_id, job.text, "", "2", "0",
               "thirties", gender, job.speaker.voice.split("+")[0], "", "en", ""]
        split = {"train-clean": "train", "dev-clean": "dev"}.get(job.split, "test")
        by_split[split].append(row)
        validated.append(row)
    for name, rows in [*by_split.items(), ("validated", validated)]:
        with open(args.out / f"{name}.tsv", "w") as f:
            f.write("\t".join(header) + "\n")
            for row in rows:
                f.write("\t".join(row) + "\n")
    with open(args.out / "clip_durations.tsv", "w") as f:
        f.write("clip\tduration[ms]\n")
        for job, seconds in zip(jobs, durations):
            f.write(f"{Path(job.out_path).name}\t{round(seconds * 1000)}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, required=True, help="total audio, about")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layout", choices=["librispeech", "commonvoice"], default="librispeech")
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=2, help="speakers kept for test-heldout")
    parser.add_argument("--held-out-fraction", type=float, default=0.05)
    parser.add_argument("--dev-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--noise-probability", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    for tool in ["espeak-ng", "sox", "soxi"]:
        if shutil.which(tool) is None:
            print(f"error: {tool} not found; run tools/install-system-deps.sh", file=sys.stderr)
            return 2
    if args.held_out >= args.speakers:
        print("error: --held-out must leave at least one training speaker", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    speakers, jobs = plan(args)
    durations = [0.0] * len(jobs)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done, (index, seconds) in enumerate(pool.map(synthesize, jobs, chunksize=8), 1):
            durations[index] = seconds
            if done % 200 == 0 or done == len(jobs):
                print(f"\r{done}/{len(jobs)} utterances", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.layout == "librispeech":
        write_librispeech_metadata(args, speakers, jobs, durations)
    else:
        write_commonvoice_metadata(args, speakers, jobs, durations)
    hours = sum(durations) / 3600
    print(f"{len(jobs)} utterances, {hours:.2f} h, {len(speakers)} speakers "
          f"({args.held_out} held out) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
