//! `asr-data pack` on the committed fixture corpora: every row is packed or listed with its
//! code, packed rows read back with their ids, 16 kHz sample counts and labels that decode
//! to the normalized transcript; vocabularies, `--unk`, splits, parts, determinism and
//! resume.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use asr_corpus::{read_corpus, Corpus, ReadOptions};
use asr_pack::{pack, NoProgress, PackError, PackOptions, SkippedRow, SplitPlan};
use asr_shards::{merge_parts, verify, AudioDtype, Manifest, ShardReader, ShardRow};
use asr_text::{NormalizePolicy, UnkPolicy, Vocab};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

fn corpus(rel: &str) -> Corpus {
    read_corpus(&fixture(rel), &ReadOptions::default()).unwrap()
}

fn small(out: &Path) -> PackOptions {
    let mut options = PackOptions::new(out);
    options.shard_size_bytes = 300_000;
    options.rows_per_batch = 4;
    options
}

fn read_rows(manifest: &Manifest, split: &str) -> Vec<ShardRow> {
    manifest
        .shard_paths(split)
        .iter()
        .flat_map(|p| {
            ShardReader::open(p)
                .unwrap()
                .rows()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        })
        .collect()
}

fn skipped(out: &Path) -> Vec<SkippedRow> {
    fs::read_to_string(out.join("skipped.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The contract shared by every layout: each corpus row is packed xor skipped, packed rows
/// carry the right sample count and labels that decode to the normalized transcript.
fn check_round_trip(corpus: &Corpus, out: &Path) -> (Manifest, Vec<ShardRow>, Vec<SkippedRow>) {
    let manifest = Manifest::load(out).unwrap();
    assert!(verify(out).unwrap().ok());
    let vocab = manifest.vocab().unwrap();
    let policy = NormalizePolicy::for_vocab(&vocab);
    let mut packed = Vec::new();
    for split in manifest.splits() {
        packed.extend(read_rows(&manifest, split));
    }
    let skipped = skipped(out);
    let packed_ids: BTreeSet<&str> = packed.iter().map(|r| r.id.as_str()).collect();
    let skipped_ids: BTreeSet<&str> = skipped.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(packed_ids.len(), packed.len(), "no id packed twice");
    // Only a duplicated id is both packed (its first row) and skipped (the later ones).
    for row in &skipped {
        assert!(
            !packed_ids.contains(row.id.as_str()) || row.code == "duplicate_id",
            "{} packed and skipped as {}",
            row.id,
            row.code
        );
    }
    for u in &corpus.utterances {
        assert!(
            packed_ids.contains(u.id.as_str()) || skipped_ids.contains(u.id.as_str()),
            "{} silently dropped",
            u.id
        );
    }
    // Every input row is packed or listed with its file and line.
    let skipped_rows = skipped.iter().filter(|r| r.line.is_some()).count();
    assert_eq!(
        packed.len() + skipped_rows,
        corpus.rows_read(),
        "rows in = packed + skipped"
    );
    assert_eq!(manifest.skipped.total as usize, skipped.len());
    let by_id: BTreeMap<&str, &asr_corpus::Utterance> = corpus
        .utterances
        .iter()
        .map(|u| (u.id.as_str(), u))
        .collect();
    for row in &packed {
        let u = by_id[row.id.as_str()];
        assert_eq!(
            row.text,
            asr_text::normalize(&u.transcript, &policy),
            "{}",
            row.id
        );
        assert_eq!(vocab.decode_labels(&row.labels), row.text, "{}", row.id);
        assert_eq!(row.source, u.source);
        assert_eq!(row.speaker, u.speaker);
        let decoded = asr_audio::decode_file(&u.audio_path).unwrap();
        let want = asr_audio::resample::resampled_len(decoded.num_frames(), decoded.sample_rate_hz);
        assert_eq!(row.num_samples as usize, want, "{}", row.id);
        assert_eq!(row.audio.len(), want);
    }
    (manifest, packed, skipped)
}

fn codes(skipped: &[SkippedRow]) -> BTreeMap<String, String> {
    skipped
        .iter()
        .map(|r| (r.id.clone(), r.code.clone()))
        .collect()
}

#[test]
fn librispeech_round_trip_with_planted_defects_skipped_by_code() {
    let corpus = corpus("librispeech/LibriSpeech");
    let tmp = tempfile::tempdir().unwrap();
    let summary = pack(&corpus, &small(tmp.path()), &NoProgress).unwrap();
    let (manifest, packed, skipped) = check_round_trip(&corpus, tmp.path());
    // The dataset's split names are kept, with their roles.
    assert_eq!(
        manifest.splits(),
        vec!["train-clean-100", "dev-clean", "test-clean"]
    );
    let roles: Vec<Option<&str>> = manifest
        .splits()
        .iter()
        .map(|name| manifest.split(name).unwrap().role.as_deref())
        .collect();
    assert_eq!(roles, [Some("train"), Some("dev"), Some("test")]);
    assert_eq!(manifest.select_splits("train"), ["train-clean-100"]);
    assert_eq!(manifest.select_splits("dev-clean"), ["dev-clean"]);
    assert!(manifest.select_splits("other").is_empty());
    let codes = codes(&skipped);
    for (id, code) in [
        ("1002-2003-0004", "missing_audio"),
        ("1001-2001-0004", "duplicate_id"),
        ("1001-2009-0002", "bad_id"),
        ("1002-2003-0005", "unreadable_transcript"),
        ("1003-2004-0003", "undecodable_audio"),
        ("1004-2005-0003", "undecodable_audio"),
        ("1003-2004-0004", "empty_audio"),
        ("1001-2001-0006", "empty_transcript"),
        ("1001-2002-0004", "ctc_infeasible"),
    ] {
        assert_eq!(
            codes.get(id).map(String::as_str),
            Some(code),
            "{id}: {codes:?}"
        );
    }
    // Warnings do not keep a row out: the 8 kHz, stereo, too-short and too-long clips are
    // packed (no duration limits given), resampled and downmixed.
    let ids: BTreeSet<&str> = packed.iter().map(|r| r.id.as_str()).collect();
    for id in [
        "1002-2003-0006",
        "1002-2003-0007",
        "1001-2001-0005",
        "1001-2001-0007",
    ] {
        assert!(ids.contains(id), "{id}");
    }
    assert_eq!(summary.skipped.len(), skipped.len());
    assert_eq!(
        manifest.skipped.by_code.values().sum::<u64>(),
        skipped.len() as u64
    );
    // 42 transcript lines: each packed or skipped. The duplicated id keeps its first row
    // (packed) and lists the second with both locations.
    assert_eq!(packed.len() + skipped.len(), 42, "{skipped:#?}");
    assert_eq!(summary.rows_in, 42);
    assert!(ids.contains("1001-2001-0004"));
    let duplicate: Vec<&SkippedRow> = skipped
        .iter()
        .filter(|r| r.code == "duplicate_id")
        .collect();
    assert_eq!(duplicate.len(), 1, "{duplicate:#?}");
    assert!(duplicate[0]
        .file
        .as_deref()
        .unwrap()
        .ends_with("1001-2001.trans.txt"));
    assert!(
        duplicate[0].message.contains("1001-2001.trans.txt:")
            && duplicate[0].message.contains("kept"),
        "{}",
        duplicate[0].message
    );
}

#[test]
fn common_voice_mp3_at_48_khz_round_trip() {
    let corpus = corpus("commonvoice");
    let tmp = tempfile::tempdir().unwrap();
    let mut options = small(tmp.path());
    options.unk = UnkPolicy::Error;
    pack(&corpus, &options, &NoProgress).unwrap();
    let (manifest, packed, skipped) = check_round_trip(&corpus, tmp.path());
    assert!(manifest.splits().contains(&"train"));
    assert!(!packed.is_empty());
    // 24 rows in train/dev/test.tsv: each packed or skipped; common_voice_en_11 is
    // packed from train.tsv and its dev.tsv row skipped.
    assert_eq!(packed.len() + skipped.len(), 24, "{skipped:#?}");
    assert!(packed.iter().any(|r| r.id == "common_voice_en_11"));
    let codes = codes(&skipped);
    assert_eq!(codes["common_voice_en_11"], "duplicate_id");
    assert_eq!(codes["common_voice_en_900"], "missing_audio");
    assert_eq!(codes["common_voice_en_20"], "empty_transcript");
    assert_eq!(codes["common_voice_en_15"], "undecodable_audio");
}

#[test]
fn csv_and_jsonl_manifests_round_trip_including_cjk() {
    for rel in ["csv/kaggle/cv-valid-train.csv", "jsonl/manifest.jsonl"] {
        let corpus = corpus(rel);
        let tmp = tempfile::tempdir().unwrap();
        pack(&corpus, &small(tmp.path()), &NoProgress).unwrap();
        check_round_trip(&corpus, tmp.path());
    }
    let corpus = corpus("csv/cjk/manifest");
    let tmp = tempfile::tempdir().unwrap();
    pack(&corpus, &small(tmp.path()), &NoProgress).unwrap();
    let (manifest, packed, _) = check_round_trip(&corpus, tmp.path());
    let vocab = manifest.vocab().unwrap();
    assert!(
        vocab
            .tokens()
            .iter()
            .any(|t| t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))),
        "a CJK vocabulary: {:?}",
        vocab.tokens()
    );
    assert!(!packed.is_empty());
}

fn wav2vec2_vocab() -> Vocab {
    let mut tokens: Vec<String> = ["<pad>", "<s>", "</s>", "<unk>", "|"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    tokens.extend("ETAONIHSRDLUMWCFGYPBVK'XJQZ".chars().map(String::from));
    Vocab::from_tokens(tokens).unwrap()
}

#[test]
fn unknown_characters_follow_the_unk_policy_and_every_row_is_reported() {
    let corpus = corpus("librispeech/LibriSpeech");
    let tmp = tempfile::tempdir().unwrap();
    let mut options = small(tmp.path());
    options.vocab = Some(wav2vec2_vocab());
    // error: nothing written, every affected row listed ($, digits, punctuation rows).
    let error = pack(&corpus, &options, &NoProgress).unwrap_err();
    let PackError::UnknownCharacters { rows } = error else {
        panic!("{error}")
    };
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains("1004-2005-0006"), "{ids:?}"); // dollar sign and digits
    assert!(ids.contains("1003-2004-0005"), "{ids:?}"); // punctuation
    assert!(!tmp.path().join("manifest.json").exists());

    // map: packed, the characters encoded as <unk>, rows listed in unknown_chars.jsonl.
    options.unk = UnkPolicy::Map;
    let summary = pack(&corpus, &options, &NoProgress).unwrap();
    let listed: BTreeSet<String> = summary.unknown_chars.iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed, ids.iter().map(|s| s.to_string()).collect());
    let report = fs::read_to_string(tmp.path().join("unknown_chars.jsonl")).unwrap();
    assert_eq!(report.lines().count(), rows.len());
    let manifest = Manifest::load(tmp.path()).unwrap();
    let unk = wav2vec2_vocab().unk_id().unwrap() as i32;
    let mapped = read_rows(&manifest, "test-clean")
        .into_iter()
        .chain(read_rows(&manifest, "dev-clean"))
        .chain(read_rows(&manifest, "train-clean-100"))
        .find(|r| r.id == "1004-2005-0006")
        .unwrap();
    assert!(mapped.labels.contains(&unk));
    // The lower-case row was folded to the vocabulary's upper case, not mapped.
    assert!(!ids.contains("1002-2003-0008"));

    // drop: the characters are gone from text and labels alike.
    let tmp = tempfile::tempdir().unwrap();
    options.out_dir = tmp.path().to_path_buf();
    options.unk = UnkPolicy::Drop;
    pack(&corpus, &options, &NoProgress).unwrap();
    let manifest = Manifest::load(tmp.path()).unwrap();
    let vocab = manifest.vocab().unwrap();
    for split in manifest.splits() {
        for row in read_rows(&manifest, split) {
            assert!(!row.labels.contains(&unk));
            assert_eq!(vocab.decode_labels(&row.labels), row.text);
            assert!(!row.text.contains('$'));
        }
    }
}

#[test]
fn seeded_splits_are_stable_per_id_whatever_the_corpus_around_it() {
    let full = corpus("librispeech/LibriSpeech");
    let mut half = full.clone();
    half.utterances
        .retain(|u| u.id.ends_with('0') || u.id.ends_with('2'));
    half.utterances.reverse();
    let plan = SplitPlan::parse_ratios("train=0.6,dev=0.2,test=0.2", 7).unwrap();
    let split_of = |corpus: &Corpus| {
        let tmp = tempfile::tempdir().unwrap();
        let mut options = small(tmp.path());
        options.split = plan.clone();
        pack(corpus, &options, &NoProgress).unwrap();
        let manifest = Manifest::load(tmp.path()).unwrap();
        let mut map = BTreeMap::new();
        for split in manifest.splits() {
            for row in read_rows(&manifest, split) {
                map.insert(row.id, split.to_string());
            }
        }
        map
    };
    let a = split_of(&full);
    let b = split_of(&half);
    assert!(b.len() >= 5);
    for (id, split) in &b {
        assert_eq!(&a[id], split, "{id} moved");
    }
    assert_eq!(
        a.values().collect::<BTreeSet<_>>().len(),
        3,
        "all three splits used"
    );
}

#[test]
fn filters_list_their_rows_too() {
    let corpus = corpus("librispeech/LibriSpeech");
    let tmp = tempfile::tempdir().unwrap();
    let mut options = small(tmp.path());
    options.min_duration_s = 1.0;
    options.max_duration_s = 15.0;
    options.exclude = ["1001-2001-0000".to_string()].into_iter().collect();
    pack(&corpus, &options, &NoProgress).unwrap();
    let (_, packed, skipped) = check_round_trip(&corpus, tmp.path());
    let codes = codes(&skipped);
    assert_eq!(codes["1001-2001-0005"], "too_short");
    assert_eq!(codes["1001-2001-0007"], "too_long");
    assert_eq!(codes["1001-2001-0000"], "excluded");
    for row in &packed {
        let duration = row.duration_s();
        assert!((1.0..=15.0).contains(&duration), "{} {duration}", row.id);
    }
}

#[test]
fn same_inputs_give_identical_bytes_and_an_interrupted_pack_resumes_to_them() {
    let corpus = corpus("librispeech/LibriSpeech");
    let reference = tempfile::tempdir().unwrap();
    let mut options = small(reference.path());
    options.shard_size_bytes = 120_000;
    pack(&corpus, &options, &NoProgress).unwrap();
    let want = all_files(reference.path());
    assert!(
        want.keys()
            .filter(|k| k.starts_with("train-clean-100/"))
            .count()
            > 5
    );

    // The same run again, in another folder and over itself (--overwrite: a finished
    // pack is not resumed otherwise).
    let again = tempfile::tempdir().unwrap();
    options.out_dir = again.path().to_path_buf();
    pack(&corpus, &options, &NoProgress).unwrap();
    assert_eq!(all_files(again.path()), want);
    options.overwrite = true;
    let summary = pack(&corpus, &options, &NoProgress).unwrap();
    assert_eq!(
        summary.decoded_rows, 0,
        "the shards of unchanged inputs are kept"
    );
    assert_eq!(all_files(again.path()), want);
    options.overwrite = false;

    // The state a kill -9 leaves: the manifest and skipped list not yet written, the last
    // shards of train missing, a half-written temporary file, the journal one line short.
    let train = again.path().join("train-clean-100");
    fs::remove_file(again.path().join("manifest.json")).unwrap();
    fs::remove_file(again.path().join("skipped.jsonl")).unwrap();
    let journal = train.join(".shard.progress.jsonl");
    let lines: Vec<String> = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let keep = 3; // header + 2 shards
    fs::write(&journal, lines[..keep].join("\n") + "\n{\"file\":\"tr").unwrap();
    for k in keep - 1..lines.len() - 1 {
        let _ = fs::remove_file(train.join(format!("shard-{k:05}.arrow")));
    }
    fs::write(train.join(".shard-00002.arrow.partial"), b"ARROW half").unwrap();
    let summary = pack(&corpus, &options, &NoProgress).unwrap();
    assert!(summary.resumed_rows > 0);
    assert!(summary.decoded_rows > 0);
    assert_eq!(all_files(again.path()), want);
}

#[test]
fn parts_pack_disjoint_rows_that_merge_into_the_whole() {
    let corpus = corpus("librispeech/LibriSpeech");
    let whole = tempfile::tempdir().unwrap();
    pack(&corpus, &small(whole.path()), &NoProgress).unwrap();
    let whole_manifest = Manifest::load(whole.path()).unwrap();

    let parts = tempfile::tempdir().unwrap();
    for k in 0..3 {
        let mut options = small(parts.path());
        options.part = Some(format!("{k}/3").parse().unwrap());
        // Each part builds the same vocabulary only if given one: parts must agree.
        options.vocab = Some(whole_manifest.vocab().unwrap());
        pack(&corpus, &options, &NoProgress).unwrap();
    }
    assert!(!parts.path().join("manifest.json").exists());
    let merged = merge_parts(parts.path()).unwrap();
    assert!(verify(parts.path()).unwrap().ok());
    for split in whole_manifest.splits() {
        let mut want: Vec<String> = read_rows(&whole_manifest, split)
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut got: Vec<String> = read_rows(&merged, split)
            .into_iter()
            .map(|r| r.id)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{split}");
    }
    let mut want = skipped(whole.path());
    let mut got = skipped(parts.path());
    want.sort_by(|a, b| a.id.cmp(&b.id));
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
    assert_eq!(merged.skipped, whole_manifest.skipped);
}

/// Float32 shards hold the samples int16 shards quantize: the same rows, the same
/// lengths, and each int16 sample is its float sample rounded to 1/32768, whichever
/// decoding path the file took (16 kHz mono FLAC goes straight to int16; 8 kHz and stereo
/// FLAC are resampled or downmixed as float first).
#[test]
fn float32_and_int16_packs_hold_the_same_audio() {
    let corpus = corpus("librispeech");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let int16 = small(a.path());
    let mut float32 = small(b.path());
    float32.audio_dtype = AudioDtype::Float32;
    pack(&corpus, &int16, &NoProgress).unwrap();
    pack(&corpus, &float32, &NoProgress).unwrap();
    let (mi, mf) = (
        Manifest::load(a.path()).unwrap(),
        Manifest::load(b.path()).unwrap(),
    );
    assert_eq!(mi.splits(), mf.splits());
    let mut rows = 0;
    for split in mi.splits() {
        let (ri, rf) = (read_rows(&mi, split), read_rows(&mf, split));
        assert_eq!(ri.len(), rf.len(), "{split}");
        for (i, f) in ri.iter().zip(&rf) {
            assert_eq!((&i.id, i.num_samples), (&f.id, f.num_samples));
            assert_eq!(i.labels, f.labels, "{}", i.id);
            for (n, (&x, &y)) in i.audio.iter().zip(&f.audio).enumerate() {
                let q = (y * 32_768.0).round_ties_even().clamp(-32_768.0, 32_767.0) / 32_768.0;
                assert_eq!(x, q, "{} sample {n}", i.id);
            }
            rows += 1;
        }
    }
    assert!(rows > 20, "{rows} rows compared");
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// Rewrites a WAV's samples in place (the low byte of each sample flipped): the same size,
/// other audio, as a re-encode with the same settings gives.
fn reencode_wav(path: &Path) {
    let info = asr_audio::probe_file(path).unwrap();
    let width = usize::from(info.bits_per_sample.unwrap() / 8);
    let mut bytes = fs::read(path).unwrap();
    let data = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
    for sample in bytes[data..].chunks_mut(width) {
        sample[0] ^= 0x55;
    }
    fs::write(path, bytes).unwrap();
}

fn edit_transcript(manifest: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(manifest).unwrap();
    assert!(text.contains(from));
    fs::write(manifest, text.replace(from, to)).unwrap();
}

fn packed_text(out: &Path, id: &str) -> String {
    let manifest = Manifest::load(out).unwrap();
    manifest
        .splits()
        .iter()
        .flat_map(|split| read_rows(&manifest, split))
        .find(|row| row.id == id)
        .map(|row| row.text)
        .unwrap_or_else(|| panic!("{id} not packed"))
}

/// Pack a corpus, change it (edit a transcript, re-encode a clip), pack again into the same
/// folder: the new text and audio are packed, never the old shards. An interrupted pack
/// resumes only the rows whose inputs are unchanged; a finished pack is not taken for an
/// interrupted one (refused, or replaced with `overwrite`). Each result is checked against
/// a fresh pack of the changed corpus, byte for byte.
#[test]
fn re_runs_pack_edited_transcripts_and_audio_and_a_finished_pack_is_not_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_tree(&fixture("jsonl"), &data);
    let manifest = data.join("manifest.jsonl");
    let read = || read_corpus(&manifest, &ReadOptions::default()).unwrap();
    let out = tmp.path().join("shards");
    let options = small(&out);
    let fresh = |name: &str| {
        let dir = tmp.path().join(name);
        pack(&read(), &small(&dir), &NoProgress).unwrap();
        all_files(&dir)
    };
    let first = pack(&read(), &options, &NoProgress).unwrap();
    assert_eq!(first.resumed_rows, 0);
    assert!(first.manifest.splits["train"].shards.len() >= 2);

    // Interrupted (no manifest yet), then the first row's transcript is edited.
    fs::remove_file(out.join("manifest.json")).unwrap();
    edit_transcript(
        &manifest,
        "he fixed the broken chair",
        "he mended the broken chair",
    );
    pack(&read(), &options, &NoProgress).unwrap();
    assert_eq!(
        packed_text(&out, "audio/clip_00"),
        "he mended the broken chair yesterday"
    );
    assert_eq!(all_files(&out), fresh("fresh-1"));

    // Interrupted again, and a clip re-encoded to the same size.
    fs::remove_file(out.join("manifest.json")).unwrap();
    reencode_wav(&data.join("audio/clip_01.wav"));
    pack(&read(), &options, &NoProgress).unwrap();
    assert_eq!(all_files(&out), fresh("fresh-2"));

    // Unchanged and interrupted: everything is kept.
    fs::remove_file(out.join("manifest.json")).unwrap();
    let resumed = pack(&read(), &options, &NoProgress).unwrap();
    assert_eq!(resumed.decoded_rows, 0);
    assert!(!resumed.replaced_finished);

    // Finished: a re-run is refused and changes nothing.
    let before = all_files(&out);
    let err = pack(&read(), &options, &NoProgress).unwrap_err();
    assert!(matches!(err, PackError::Finished { .. }), "{err}");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(all_files(&out), before);

    // Finished and replaced after an edit: the new text, not the old shards.
    edit_transcript(&manifest, "the students finished", "the pupils finished");
    let mut overwrite = options.clone();
    overwrite.overwrite = true;
    let replaced = pack(&read(), &overwrite, &NoProgress).unwrap();
    assert!(replaced.replaced_finished);
    assert!(replaced.decoded_rows > 0);
    assert_eq!(
        packed_text(&out, "audio/clip_01"),
        "the pupils finished their homework"
    );
    assert_eq!(all_files(&out), fresh("fresh-3"));
}

/// `--part K/N` without `--vocab`: every part builds the whole corpus's vocabulary, so the
/// parts merge, into the rows and vocabulary of a one-piece pack.
#[test]
fn parts_without_a_vocabulary_share_one_and_merge() {
    let corpus = corpus("librispeech/LibriSpeech");
    let whole = tempfile::tempdir().unwrap();
    pack(&corpus, &small(whole.path()), &NoProgress).unwrap();
    let whole_manifest = Manifest::load(whole.path()).unwrap();
    let parts = tempfile::tempdir().unwrap();
    for k in 0..3 {
        let mut options = small(parts.path());
        options.part = Some(format!("{k}/3").parse().unwrap());
        pack(&corpus, &options, &NoProgress).unwrap();
    }
    let merged = merge_parts(parts.path()).unwrap();
    assert_eq!(merged.vocab().unwrap(), whole_manifest.vocab().unwrap());
    assert_eq!(merged.total_rows(), whole_manifest.total_rows());
    assert!(verify(parts.path()).unwrap().ok());
}

/// `--exclude` ids are whole lines: an id with spaces in it is left out.
#[test]
fn excluded_ids_may_contain_spaces() {
    let tmp = tempfile::tempdir().unwrap();
    let audio = fixture("jsonl/audio").canonicalize().unwrap();
    let manifest = tmp.path().join("m.jsonl");
    fs::write(
        &manifest,
        format!(
            "{{\"id\": \"spk 1 utt 1\", \"audio_filepath\": \"{0}/clip_00.wav\", \"text\": \"one\"}}\n\
             {{\"id\": \"spk 1 utt 2\", \"audio_filepath\": \"{0}/clip_01.wav\", \"text\": \"two\"}}\n",
            audio.display()
        ),
    )
    .unwrap();
    let corpus = read_corpus(&manifest, &ReadOptions::default()).unwrap();
    let list = tmp.path().join("exclude.txt");
    fs::write(
        &list,
        "# quarantined\n  spk 1 utt 2  \n\nspk 9\tno such id\n",
    )
    .unwrap();
    let mut options = small(&tmp.path().join("out"));
    options.exclude = asr_pack::read_exclude_file(&list).unwrap();
    assert_eq!(
        options.exclude,
        ["spk 1 utt 2", "spk 9"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let summary = pack(&corpus, &options, &NoProgress).unwrap();
    assert_eq!(summary.manifest.total_rows(), 1);
    assert_eq!(codes(&summary.skipped)["spk 1 utt 2"], "excluded");
}
