//! Text normalization as a user meets it: a Common-Voice-like TSV with mixed case,
//! `.,?"“”—`, a dollar amount and a Chinese row with `。，？！、「」` and code-switched
//! (half- and full-width) Latin, packed with each `--normalize` preset. The stored texts
//! and the vocabulary are exactly the preset's, the manifest records the policy,
//! `normalized.jsonl` lists every changed row with its text before and after, `none`
//! keeps today's text, and `validate --normalize` previews the vocabulary pack builds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use asr_shards::{Manifest, ShardReader};

const BIN: &str = env!("CARGO_BIN_EXE_asr-data");

/// (file stem, transcript as in the TSV).
const ROWS: [(&str, &str); 5] = [
    ("cv_01", "Hello, World."),
    ("cv_02", "He said, \"Don\u{2019}t stop\u{2014}now!\""),
    ("cv_03", "\u{201C}Why?\u{201D} asked  Ann."),
    (
        "cv_04",
        "\u{300C}你好\u{300D}，我用ｉＰｈｏｎｅ和Python。真的吗？好！一、二",
    ),
    ("cv_05", "it costs $5"),
];

/// The texts each preset stores, row by row.
fn expected(preset: &str) -> [&'static str; 5] {
    match preset {
        "upper" => [
            "HELLO WORLD",
            "HE SAID DON'T STOP NOW",
            "WHY ASKED ANN",
            "你好我用ＩＰＨＯＮＥ和PYTHON真的吗好一二",
            "IT COSTS $5",
        ],
        "lower" => [
            "hello world",
            "he said don't stop now",
            "why asked ann",
            "你好我用ｉｐｈｏｎｅ和python真的吗好一二",
            "it costs $5",
        ],
        // NFKC folds the full-width Latin; a removed dash leaves no space.
        "cjk" => [
            "HELLO WORLD",
            "HE SAID DON'T STOPNOW",
            "WHY ASKED ANN",
            "你好我用IPHONE和PYTHON真的吗好一二",
            "IT COSTS $5",
        ],
        // Today's text: whitespace collapsed, nothing else.
        "none" => [
            "Hello, World.",
            "He said, \"Don\u{2019}t stop\u{2014}now!\"",
            "\u{201C}Why?\u{201D} asked Ann.",
            "\u{300C}你好\u{300D}，我用ｉＰｈｏｎｅ和Python。真的吗？好！一、二",
            "it costs $5",
        ],
        other => panic!("no expectation for {other}"),
    }
}

/// A 16-bit mono 16 kHz WAV of one second of a tone.
fn write_wav(path: &Path) {
    let samples: Vec<i16> = (0..16_000)
        .map(|k| (6_000.0 * (k as f32 * 0.06).sin()) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    bytes.extend_from_slice(&32_000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, bytes).unwrap();
}

/// The TSV corpus (`path<TAB>sentence`, Common Voice's columns) and its clips.
fn make_corpus(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("clips")).unwrap();
    let mut tsv = String::from("path\tsentence\n");
    for (stem, text) in ROWS {
        write_wav(&dir.join(format!("clips/{stem}.wav")));
        tsv.push_str(&format!("clips/{stem}.wav\t{text}\n"));
    }
    let path = dir.join("train.tsv");
    fs::write(&path, tsv).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn pack(corpus: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "pack",
        corpus.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = run(&args);
    assert!(
        output.status.success(),
        "pack {extra:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Stored text per row, in `ROWS` order (rows are found by their audio source).
fn stored_texts(out: &Path) -> Vec<String> {
    let manifest = Manifest::load(out).unwrap();
    let mut by_source = BTreeMap::new();
    for split in manifest.splits() {
        for path in manifest.shard_paths(split) {
            for row in ShardReader::open(&path).unwrap().rows() {
                let row = row.unwrap();
                by_source.insert(row.source.clone(), row.text.clone());
            }
        }
    }
    ROWS.iter()
        .map(|(stem, _)| by_source[&format!("clips/{stem}.wav")].clone())
        .collect()
}

/// The vocabulary a data-built pack of `texts` must have: `[PAD] [UNK] |` and exactly
/// their characters.
fn vocab_of(texts: &[&str]) -> BTreeSet<String> {
    let mut tokens: BTreeSet<String> = ["[PAD]", "[UNK]", "|"].map(String::from).into();
    tokens.extend(
        texts
            .iter()
            .flat_map(|t| t.chars())
            .filter(|c| *c != ' ')
            .map(String::from),
    );
    tokens
}

fn manifest_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

fn vocab_tokens(vocab: &serde_json::Value) -> BTreeSet<String> {
    vocab.as_object().unwrap().keys().cloned().collect()
}

fn schema_validates(schema_file: &str, value: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(schema_file);
    let schema: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:?}");
}

/// `normalized.jsonl` as (id, before, after), in file order.
fn changed_rows(out: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(out.join("normalized.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let field = |k: &str| v[k].as_str().unwrap().to_string();
            (field("id"), field("before"), field("after"))
        })
        .collect()
}

#[test]
fn each_preset_stores_exactly_its_text_vocabulary_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(dir.path());
    for preset in ["upper", "lower", "cjk"] {
        let out = dir.path().join(format!("packed-{preset}"));
        let output = pack(&corpus, &out, &["--normalize", preset]);
        let want = expected(preset);
        assert_eq!(stored_texts(&out), want, "--normalize {preset}");

        let manifest = manifest_json(&out);
        schema_validates("shards-manifest.schema.json", &manifest);
        assert_eq!(
            vocab_tokens(&manifest["vocab"]),
            vocab_of(&want),
            "{preset}"
        );
        // Under `lower`, "it costs $5" is already as stored: not a change.
        let changes = ROWS
            .iter()
            .zip(want)
            .filter(|((_, before), after)| before != after)
            .count();
        assert_eq!(changes, if preset == "lower" { 4 } else { 5 });
        let n = &manifest["normalization"];
        assert_eq!(n["preset"], preset);
        assert_eq!(n["changed_rows"], changes, "{preset}");
        assert_eq!(n["file"], "normalized.jsonl");
        let policy = &n["policy"];
        assert_eq!(policy["ignore_punctuation"], true);
        assert_eq!(policy["strip_edge_apostrophes"], true);
        let (case, unicode, dashes) = match preset {
            "upper" => ("upper", "nfc", true),
            "lower" => ("lower", "nfc", true),
            _ => ("upper", "nfkc", false),
        };
        assert_eq!(policy["case"], case, "{preset}");
        assert_eq!(policy["unicode"], unicode, "{preset}");
        assert_eq!(policy["dashes_to_spaces"], dashes, "{preset}");

        // Every changed row is listed once, with the TSV's text and the stored one.
        let mut listed: Vec<(String, String)> = changed_rows(&out)
            .into_iter()
            .map(|(_, before, after)| (before, after))
            .collect();
        listed.sort();
        let mut wanted: Vec<(String, String)> = ROWS
            .iter()
            .zip(want)
            .filter(|((_, before), after)| before != after)
            .map(|((_, before), after)| (before.to_string(), after.to_string()))
            .collect();
        wanted.sort();
        assert_eq!(listed, wanted, "{preset}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("normalization {preset}: {changes} rows changed")),
            "{stdout}"
        );
    }
}

#[test]
fn none_keeps_todays_text_and_lists_only_whitespace_changes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(dir.path());
    let default = dir.path().join("default");
    let none = dir.path().join("none");
    pack(&corpus, &default, &[]);
    pack(&corpus, &none, &["--normalize", "none"]);
    let want = expected("none");
    assert_eq!(stored_texts(&default), want);
    assert_eq!(stored_texts(&none), want);
    let manifest = manifest_json(&default);
    schema_validates("shards-manifest.schema.json", &manifest);
    // Every mark is still a token, as before this option existed.
    let tokens = vocab_tokens(&manifest["vocab"]);
    assert_eq!(tokens, vocab_of(&want));
    for mark in [",", ".", "\u{201C}", "\u{2014}", "。", "，", "「", "H", "h"] {
        assert!(tokens.contains(mark), "{mark} missing from {tokens:?}");
    }
    assert_eq!(manifest["normalization"]["preset"], "none");
    assert_eq!(manifest["normalization"]["policy"]["case"], "keep");
    assert_eq!(
        manifest["normalization"]["policy"]["ignore_punctuation"],
        false
    );
    // The only change under `none`: the doubled space of row 3.
    let changed = changed_rows(&default);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].1, ROWS[2].1);
    assert_eq!(changed[0].2, want[2]);
    assert_eq!(
        fs::read(default.join("manifest.json")).unwrap(),
        fs::read(none.join("manifest.json")).unwrap()
    );
}

#[test]
fn validate_with_a_preset_previews_the_vocabulary_pack_builds() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(dir.path());
    for preset in ["upper", "lower", "cjk", "none"] {
        let out = dir.path().join(format!("packed-{preset}"));
        pack(&corpus, &out, &["--normalize", preset]);
        let vocab_file = dir.path().join(format!("vocab-{preset}.json"));
        let report_file = dir.path().join(format!("report-{preset}.json"));
        let output = run(&[
            "validate",
            corpus.to_str().unwrap(),
            "--min-duration",
            "0",
            "--normalize",
            preset,
            "--vocab-out",
            vocab_file.to_str().unwrap(),
            "--json",
            report_file.to_str().unwrap(),
        ]);
        assert!(
            output.status.code() == Some(0),
            "validate --normalize {preset}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let vocab: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&vocab_file).unwrap()).unwrap();
        assert_eq!(
            vocab,
            manifest_json(&out)["vocab"],
            "validate --normalize {preset} --vocab-out differs from pack's vocabulary"
        );
        let report: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&report_file).unwrap()).unwrap();
        schema_validates("validate-report.schema.json", &report);
        let codes: BTreeSet<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap())
            .collect();
        // Punctuation and mixed case are gone under a preset; `$5` stays a finding.
        assert_eq!(codes.contains("punctuation"), preset == "none", "{codes:?}");
        assert_eq!(codes.contains("mixed_case"), preset == "none", "{codes:?}");
        assert!(codes.contains("unusual_char"), "{preset}: {codes:?}");
        if preset != "none" {
            assert_eq!(
                report["dataset"]["normalization"]["case"],
                if preset == "lower" { "lower" } else { "upper" }
            );
        }
    }
}

#[test]
fn overrides_change_the_preset_and_bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(dir.path());
    // HF-style: only the listed characters go, case kept, full-width folded.
    let out = dir.path().join("custom");
    pack(
        &corpus,
        &out,
        &[
            "--normalize",
            "upper",
            "--case",
            "keep",
            "--unicode",
            "nfkc",
            "--chars-to-ignore",
            ", . ? ! \" \u{201C} \u{201D} 。 ， ？ ！ 、 「 」",
            "--ignore-regex",
            r"\$\d+",
        ],
    );
    assert_eq!(
        stored_texts(&out),
        [
            "Hello World",
            "He said Don't stop\u{2014}now",
            "Why asked Ann",
            "你好我用iPhone和Python真的吗好一二",
            "it costs",
        ]
    );
    let policy = &manifest_json(&out)["normalization"]["policy"];
    assert_eq!(policy["ignore_regex"], r"\$\d+");
    assert_eq!(policy["ignore_punctuation"], false);

    let bad_regex = run(&[
        "pack",
        corpus.to_str().unwrap(),
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--ignore-regex",
        "[unclosed",
    ]);
    assert_eq!(bad_regex.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_regex.stderr);
    assert!(
        stderr.contains("--ignore-regex") && stderr.contains("invalid regular expression"),
        "{stderr}"
    );
    assert!(!dir.path().join("bad").exists());

    let bad_preset = run(&["validate", corpus.to_str().unwrap(), "--normalize", "title"]);
    assert_eq!(bad_preset.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_preset.stderr);
    assert!(stderr.contains("none, upper, lower or cjk"), "{stderr}");

    // A lower-case preset against an upper-case pretrained vocabulary: refused up front.
    let vocab = dir.path().join("vocab.json");
    fs::write(
        &vocab,
        r#"{"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "'": 5}"#,
    )
    .unwrap();
    let clash = run(&[
        "pack",
        corpus.to_str().unwrap(),
        "--out",
        dir.path().join("clash").to_str().unwrap(),
        "--vocab",
        vocab.to_str().unwrap(),
        "--normalize",
        "lower",
    ]);
    assert_eq!(clash.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&clash.stderr);
    assert!(stderr.contains("--case upper"), "{stderr}");
    assert!(!dir.path().join("clash").join("manifest.json").exists());
}

#[test]
fn merged_parts_keep_the_policy_and_join_the_changed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(dir.path());
    let out = dir.path().join("parts");
    for part in ["0/2", "1/2"] {
        pack(&corpus, &out, &["--normalize", "upper", "--part", part]);
    }
    let merged = run(&["merge", out.to_str().unwrap()]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let manifest = manifest_json(&out);
    assert_eq!(manifest["normalization"]["preset"], "upper");
    assert_eq!(manifest["normalization"]["changed_rows"], 5);
    let mut after: Vec<String> = changed_rows(&out).into_iter().map(|(_, _, a)| a).collect();
    after.sort();
    let mut want: Vec<String> = expected("upper").map(String::from).into();
    want.sort();
    assert_eq!(after, want);

    // Parts packed under two policies (same vocabulary) do not merge.
    let mixed = dir.path().join("mixed");
    pack(&corpus, &mixed, &["--normalize", "upper", "--part", "0/2"]);
    pack(
        &corpus,
        &mixed,
        &[
            "--normalize",
            "upper",
            "--ignore-regex",
            "ZZZ",
            "--part",
            "1/2",
        ],
    );
    let refused = run(&["merge", mixed.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("another text normalization"), "{stderr}");
    assert!(!mixed.join("manifest.json").exists());
}

#[test]
fn a_packed_row_stays_listed_when_a_later_row_of_its_id_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = make_corpus(dir.path());
    // The same clip again with another text: a duplicate id, whose later row is skipped.
    let mut tsv = fs::read_to_string(&corpus).unwrap();
    tsv.push_str("clips/cv_01.wav\tHello again.\n");
    fs::write(&corpus, tsv).unwrap();
    let out = dir.path().join("packed");
    pack(&corpus, &out, &["--normalize", "upper"]);
    let skipped = fs::read_to_string(out.join("skipped.jsonl")).unwrap();
    assert!(skipped.contains("duplicate_id"), "{skipped}");
    let changed = changed_rows(&out);
    assert_eq!(changed.len(), 5, "{changed:?}");
    assert!(changed
        .iter()
        .any(|(_, before, after)| before == "Hello, World." && after == "HELLO WORLD"));
    assert_eq!(manifest_json(&out)["normalization"]["changed_rows"], 5);
}
