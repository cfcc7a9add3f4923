//! Row accounting over every reader: each input row (transcript line, TSV/CSV row,
//! JSON line) is either packed or listed in `skipped.jsonl` with its code and
//! `file:line`, and the counts add up in `skipped.jsonl`, the manifest and the summary.
//! `asr-data validate` reports the same rows as findings with the same codes.
//!
//! The corpora are built the way users' data goes wrong: ragged CSV rows (4 fields under
//! a 2-column header, 1 field), a Latin-1 line, a JSON line that is not JSON, a JSON
//! object without its text key, a line with no id, a duplicated id, a transcript file
//! that is a dangling symlink, a folder that cannot be opened.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use asr_corpus::{read_corpus, Corpus, ReadOptions};
use asr_pack::{pack, NoProgress, PackOptions};
use asr_shards::Manifest;
use asr_validate::{validate, ValidateOptions};

/// A 1 s, 16 kHz, 16-bit mono WAV of a quiet tone.
fn wav(path: &Path) {
    let samples: Vec<i16> = (0..16_000)
        .map(|i| ((i as f32 * 0.05).sin() * 3000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    bytes.extend_from_slice(&32_000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A row the reader must lose, and how it must be listed.
struct Lost {
    file: &'static str,
    line: u64,
    code: &'static str,
}

/// What a corpus must give: input rows, and the rows (by file name and line) lost with
/// their codes. Every other row is clean and must be packed.
struct Expect {
    rows: usize,
    lost: Vec<Lost>,
    /// Files or folders that cannot be read at all (file name, code).
    lost_files: Vec<(&'static str, &'static str)>,
}

fn lost(file: &'static str, line: u64, code: &'static str) -> Lost {
    Lost { file, line, code }
}

/// Packs `corpus` and checks the accounting; then checks validate's findings.
fn check(name: &str, corpus: &Corpus, expect: &Expect) {
    let out = tempfile::tempdir().unwrap();
    let summary = pack(corpus, &PackOptions::new(out.path()), &NoProgress)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let manifest = Manifest::load(out.path()).unwrap();
    let skipped: Vec<serde_json::Value> = fs::read_to_string(out.path().join("skipped.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let packed: u64 = manifest.splits.values().map(|s| s.rows).sum();
    let listed = |v: &serde_json::Value| -> (String, Option<u64>, String) {
        let file = v["file"].as_str().unwrap_or_default();
        let file_name = Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            file_name,
            v["line"].as_u64(),
            v["code"].as_str().unwrap().to_string(),
        )
    };
    let rows_skipped = skipped.iter().filter(|v| v["line"].is_u64()).count();
    assert_eq!(
        packed as usize + rows_skipped,
        expect.rows,
        "{name}: {} rows in, {packed} packed + {rows_skipped} skipped: rows vanished\nskipped.jsonl: {skipped:#?}",
        expect.rows
    );
    assert_eq!(
        skipped.len(),
        rows_skipped + expect.lost_files.len(),
        "{name}: {skipped:#?}"
    );
    assert_eq!(manifest.skipped.total as usize, skipped.len(), "{name}");
    assert_eq!(
        manifest.skipped.by_code.values().sum::<u64>() as usize,
        skipped.len(),
        "{name}"
    );
    assert_eq!(summary.skipped.len(), skipped.len(), "{name}");
    let got: BTreeSet<(String, Option<u64>, String)> = skipped.iter().map(listed).collect();
    for l in &expect.lost {
        let want = (l.file.to_string(), Some(l.line), l.code.to_string());
        assert!(
            got.contains(&want),
            "{name}: {want:?} not listed in {got:#?}"
        );
    }
    for (file, code) in &expect.lost_files {
        assert!(
            got.iter()
                .any(|(f, line, c)| f == file && line.is_none() && c == code),
            "{name}: {file} ({code}) not listed in {got:#?}"
        );
    }
    assert_eq!(
        packed as usize,
        expect.rows - expect.lost.len(),
        "{name}: clean rows were not all packed: {got:#?}"
    );

    // validate: the same rows, with the same codes and lines.
    let (report, _) = validate(corpus, &ValidateOptions::default(), &|_| {}).unwrap();
    for l in &expect.lost {
        assert!(
            report.findings.iter().any(|f| f.code.as_str() == l.code
                && f.line == Some(l.line)
                && f.path.as_deref().is_some_and(|p| p.ends_with(l.file))),
            "{name}: validate does not report {} at {}:{}\n{:#?}",
            l.code,
            l.file,
            l.line,
            report.findings
        );
    }
}

fn read(path: &Path) -> Corpus {
    read_corpus(path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn librispeech_rows_are_packed_or_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let chapter = tmp.path().join("LibriSpeech/train-clean-100/1/10");
    for utt in ["1-10-0000", "1-10-0001", "1-10-0002", "1-10-0004"] {
        wav(&chapter.join(format!("{utt}.wav")));
    }
    let mut trans = b"1-10-0000 HELLO WORLD\n1-10-0001 GOOD DAY\n".to_vec();
    trans.extend_from_slice(b"1-10-0002 CAF\xC9 AU LAIT\n"); // line 3: Latin-1
    trans.extend_from_slice(b" LEADING SPACE NO ID\n"); // line 4
    trans.extend_from_slice(b"1-10-0000 HELLO AGAIN\n"); // line 5: duplicate id
    trans.extend_from_slice(b"\n1-10-0004 LAST ONE\n"); // blank line, then line 7
    fs::write(chapter.join("1-10.trans.txt"), trans).unwrap();
    // A transcript file that is a dangling symlink, and a speaker folder that is one.
    let other = tmp.path().join("LibriSpeech/train-clean-100/1/11");
    fs::create_dir_all(&other).unwrap();
    wav(&other.join("1-11-0000.wav"));
    std::os::unix::fs::symlink(tmp.path().join("gone.txt"), other.join("1-11.trans.txt")).unwrap();
    std::os::unix::fs::symlink(
        tmp.path().join("gone-dir"),
        tmp.path().join("LibriSpeech/train-clean-100/2"),
    )
    .unwrap();
    let corpus = read(&tmp.path().join("LibriSpeech"));
    check(
        "librispeech",
        &corpus,
        &Expect {
            rows: 6,
            lost: vec![
                lost("1-10.trans.txt", 3, "unreadable_transcript"),
                lost("1-10.trans.txt", 4, "unreadable_transcript"),
                lost("1-10.trans.txt", 5, "duplicate_id"),
            ],
            lost_files: vec![
                ("1-11.trans.txt", "unreadable_path"),
                ("2", "unreadable_path"),
            ],
        },
    );
}

#[test]
fn common_voice_rows_are_packed_or_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for clip in ["a", "b", "c", "d", "e", "f"] {
        wav(&root.join(format!("clips/{clip}.wav")));
    }
    let mut train = b"client_id\tpath\tsentence\n".to_vec();
    train.extend_from_slice(b"s1\ta.wav\thello there\n"); // 2
    train.extend_from_slice(b"s1\tb.wav\n"); // 3: a field short
    train.extend_from_slice(b"s1\tc.wav\tcaf\xe9 noir\n"); // 4: Latin-1
    train.extend_from_slice(b"s1\td.wav\tgood day\n"); // 5
    fs::write(root.join("train.tsv"), train).unwrap();
    let dev = "client_id\tpath\tsentence\ns2\te.wav\tgood evening\ns2\ta.wav\thello again\n";
    fs::write(root.join("dev.tsv"), dev).unwrap();
    fs::write(root.join("test.tsv"), "client_id\tpath\tsentence\n").unwrap();
    let corpus = read(root);
    check(
        "commonvoice",
        &corpus,
        &Expect {
            rows: 6,
            lost: vec![
                lost("train.tsv", 3, "unreadable_transcript"),
                lost("train.tsv", 4, "unreadable_transcript"),
                lost("dev.tsv", 3, "duplicate_id"),
            ],
            lost_files: vec![],
        },
    );
}

#[test]
fn csv_rows_are_packed_or_listed() {
    let tmp = tempfile::tempdir().unwrap();
    for clip in ["a", "b", "f"] {
        wav(&tmp.path().join(format!("wavs/{clip}.wav")));
    }
    let mut csv = b"path,text\n".to_vec();
    csv.extend_from_slice(b"wavs/a.wav,hello there\n"); // 2
    csv.extend_from_slice(b"wavs/c.wav,one,two,three\n"); // 3: 4 fields
    csv.extend_from_slice(b"wavs/d.wav\n"); // 4: 1 field
    csv.extend_from_slice(b"wavs/e.wav,caf\xe9 cr\xe8me\n"); // 5: Latin-1
    csv.extend_from_slice(b"wavs/b.wav,good day\n"); // 6
    csv.extend_from_slice(b"wavs/a.wav,hello again\n"); // 7: duplicate id
    csv.extend_from_slice(b"wavs/f.wav,\"quoted, with a comma\"\n"); // 8
    fs::write(tmp.path().join("train.csv"), csv).unwrap();
    let corpus = read(&tmp.path().join("train.csv"));
    check(
        "csv",
        &corpus,
        &Expect {
            rows: 7,
            lost: vec![
                lost("train.csv", 3, "unreadable_transcript"),
                lost("train.csv", 4, "unreadable_transcript"),
                lost("train.csv", 5, "unreadable_transcript"),
                lost("train.csv", 7, "duplicate_id"),
            ],
            lost_files: vec![],
        },
    );
}

#[test]
fn jsonl_rows_are_packed_or_listed() {
    let tmp = tempfile::tempdir().unwrap();
    for clip in ["a", "b"] {
        wav(&tmp.path().join(format!("audio/{clip}.wav")));
    }
    let lines = [
        r#"{"audio_filepath": "audio/a.wav", "text": "hello there"}"#,
        r#"{"audio_filepath": "audio/c.wav", "text": "broken"#, // 2: not JSON
        r#"{"audio_filepath": "audio/d.wav", "duration": 1.0}"#, // 3: no text key
        r#"{"audio_filepath": "audio/b.wav", "text": "good day"}"#,
        r#"{"audio_filepath": "audio/a.wav", "text": "hello again"}"#, // 5: duplicate
    ];
    fs::write(tmp.path().join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    let corpus = read(&tmp.path().join("train.jsonl"));
    check(
        "jsonl",
        &corpus,
        &Expect {
            rows: 5,
            lost: vec![
                lost("train.jsonl", 2, "unreadable_transcript"),
                lost("train.jsonl", 3, "unreadable_transcript"),
                lost("train.jsonl", 5, "duplicate_id"),
            ],
            lost_files: vec![],
        },
    );
}

/// Rows in, as the summary counts them, equal packed plus skipped rows.
#[test]
fn the_summary_counts_rows_in() {
    let tmp = tempfile::tempdir().unwrap();
    wav(&tmp.path().join("wavs/a.wav"));
    fs::write(
        tmp.path().join("m.csv"),
        "path,text\nwavs/a.wav,hello\nwavs/b.wav,x,y,z\n",
    )
    .unwrap();
    let corpus = read(&tmp.path().join("m.csv"));
    let out = tempfile::tempdir().unwrap();
    let summary = pack(&corpus, &PackOptions::new(out.path()), &NoProgress).unwrap();
    assert_eq!(summary.rows_in, 2);
    assert_eq!(
        summary.manifest.total_rows() + summary.skipped.len() as u64,
        2
    );
    assert_eq!(summary.skipped[0].line, Some(3));
}

/// A transcript file the user cannot read (permission denied) is listed, not dropped.
/// Root reads any file, so the test says so and stops when it runs as root.
#[test]
fn an_unreadable_transcript_file_is_listed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let subset = tmp.path().join("LibriSpeech/train-clean-100");
    for (chapter, id) in [("1/10", "1-10-0000"), ("1/11", "1-11-0000")] {
        wav(&subset.join(chapter).join(format!("{id}.wav")));
        let prefix = id.rsplit_once('-').unwrap().0;
        fs::write(
            subset.join(chapter).join(format!("{prefix}.trans.txt")),
            format!("{id} HELLO\n"),
        )
        .unwrap();
    }
    let locked = subset.join("1/11/1-11.trans.txt");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&locked).is_ok() {
        eprintln!("skipped: running as root, which can read a file with mode 000");
        return;
    }
    let corpus = read(&tmp.path().join("LibriSpeech"));
    check(
        "unreadable",
        &corpus,
        &Expect {
            rows: 1,
            lost: vec![],
            lost_files: vec![("1-11.trans.txt", "unreadable_transcript")],
        },
    );
}

/// `asr-data pack DATA --out DATA`: the next read of DATA takes the same rows, not the
/// pack's own `manifest.json` / `skipped.jsonl` / `unknown_chars.jsonl`, and says which
/// files it left out.
#[test]
fn packing_into_the_dataset_folder_does_not_feed_the_next_read() {
    let tmp = tempfile::tempdir().unwrap();
    wav(&tmp.path().join("audio/a.wav"));
    let lines = [
        r#"{"audio_filepath": "audio/a.wav", "text": "hello there"}"#,
        r#"{"audio_filepath": "audio/gone.wav", "text": "missing"}"#,
    ];
    fs::write(tmp.path().join("train.jsonl"), lines.join("\n") + "\n").unwrap();
    let before = read(tmp.path());
    pack(&before, &PackOptions::new(tmp.path()), &NoProgress).unwrap();
    assert!(tmp.path().join("manifest.json").is_file());
    assert!(tmp.path().join("skipped.jsonl").is_file());
    let after = read(tmp.path());
    assert_eq!(after.utterances, before.utterances);
    assert_eq!(after.issues, before.issues);
    assert_eq!(after.files_read, [tmp.path().join("train.jsonl")]);
    let ignored: Vec<String> = after
        .ignored
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        ignored,
        [
            ".pack-decode-skips-shard.jsonl",
            ".pack-inputs-shard.jsonl",
            "manifest.json",
            "skipped.jsonl"
        ],
        "{ignored:?}"
    );
    // validate says so.
    let (report, _) = validate(&after, &ValidateOptions::default(), &|_| {}).unwrap();
    let summary = asr_validate::render(&report, &asr_validate::RenderOptions::default());
    assert!(
        summary.contains("not read:") && summary.contains("manifest.json"),
        "{summary}"
    );
}
