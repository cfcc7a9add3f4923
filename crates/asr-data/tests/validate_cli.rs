//! `asr-data validate` wiring: exit codes, output format, `--json`, `--vocab-out`, and no
//! progress bar when the output is not a terminal. Behaviour is tested in asr-validate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn asr_data(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asr-data"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run asr-data")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A clean manifest: the fixture's clean JSON-lines rows, with absolute paths.
fn clean_manifest(dir: &Path) -> PathBuf {
    let audio = repo().join("fixtures/jsonl/audio").canonicalize().unwrap();
    let rows: String = [
        ("clip_00.wav", "he fixed the broken chair yesterday"),
        ("clip_01.wav", "the students finished their homework"),
        ("clip_03.ogg", "the doctor will see you now"),
    ]
    .iter()
    .map(|(f, t)| {
        format!(
            "{{\"audio_filepath\": \"{}\", \"text\": \"{t}\"}}\n",
            audio.join(f).display()
        )
    })
    .collect();
    let path = dir.join("clean.jsonl");
    std::fs::write(&path, rows).unwrap();
    path
}

#[test]
fn clean_data_exits_0_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = clean_manifest(dir.path());
    let out = asr_data(&["validate", manifest.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for section in [
        "3 utterances",
        "Duration (s)",
        "Sample rates",
        "Codecs",
        "Vocabulary",
        "Result: no errors -> exit 0",
    ] {
        assert!(
            stdout.contains(section),
            "missing {section:?} in:\n{stdout}"
        );
    }
    // Piped: no progress bar, no terminal control sequences.
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains('\r') && !all.contains('\u{1b}'), "{all:?}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn data_errors_exit_1_with_counts_per_code() {
    let out = asr_data(&["validate", "fixtures/librispeech", "--examples", "1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("missing_audio"), "{stdout}");
    assert!(stdout.contains("1002-2003-0004"), "{stdout}");
    assert!(stdout.contains("-> exit 1"), "{stdout}");
    let quiet = asr_data(&["validate", "fixtures/librispeech", "--quiet"]);
    assert_eq!(quiet.status.code(), Some(1));
    assert!(
        text(&quiet.stdout)
            .lines()
            .next()
            .unwrap()
            .contains("40 utterances, 8 errors"),
        "{}",
        text(&quiet.stdout)
    );
}

#[test]
fn usage_and_io_failures_exit_2() {
    let missing = asr_data(&["validate", "no/such/dataset"]);
    assert_eq!(missing.status.code(), Some(2));
    let err = text(&missing.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("no/such/dataset"),
        "{err}"
    );
    // The cause is said once, not once per layer of the error chain.
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    let bad_flag = asr_data(&["validate", "fixtures/jsonl", "--format", "parquet"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    let no_args = asr_data(&["validate"]);
    assert_eq!(no_args.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let empty = asr_data(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        text(&empty.stderr).contains("hint:"),
        "{}",
        text(&empty.stderr)
    );
    let unwritable = asr_data(&[
        "validate",
        "fixtures/jsonl",
        "--json",
        "/no/such/dir/report.json",
    ]);
    assert_eq!(unwritable.status.code(), Some(2));
    assert!(
        text(&unwritable.stderr).contains("report.json"),
        "{}",
        text(&unwritable.stderr)
    );
    assert_eq!(
        text(&unwritable.stderr).matches("(os error 2)").count(),
        1,
        "{}",
        text(&unwritable.stderr)
    );
    let wrong_col = asr_data(&[
        "validate",
        "fixtures/csv/cjk/manifest/train.csv",
        "--text-col",
        "text",
    ]);
    assert_eq!(wrong_col.status.code(), Some(2));
    assert!(
        text(&wrong_col.stderr).contains("train.csv:1"),
        "{}",
        text(&wrong_col.stderr)
    );
}

#[test]
fn json_report_and_vocab_out() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let vocab = dir.path().join("vocab.json");
    let out = asr_data(&[
        "validate",
        "fixtures/csv/cjk/manifest/train.csv",
        "--json",
        json.to_str().unwrap(),
        "--vocab-out",
        vocab.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["code"] == "ctc_infeasible" && f["id"] == "wavs/cjk_10"));
    assert_eq!(report["vocab"]["天"], 4);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/validate-report.schema.json")).unwrap(),
    )
    .unwrap();
    assert!(jsonschema::is_valid(&schema, &report));
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vocab).unwrap()).unwrap();
    assert_eq!(vocab["[PAD]"], 0);
    assert_eq!(vocab["[UNK]"], 1);
    assert_eq!(vocab["|"], 2);
    assert!(vocab.get("天").is_some() && vocab.get("你").is_some());
    assert_eq!(
        vocab.as_object().unwrap().len(),
        3 + report["vocab"].as_object().unwrap().len()
    );
}

#[test]
fn format_flag_and_columns() {
    let out = asr_data(&[
        "validate",
        "fixtures/csv/kaggle",
        "--format",
        "csv",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("13 utterances"),
        "{}",
        text(&out.stdout)
    );
    let wrong = asr_data(&["validate", "fixtures/csv/kaggle", "--format", "librispeech"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong.stdout));
    let deep = asr_data(&[
        "validate",
        "fixtures/commonvoice",
        "--deep",
        "--quiet",
        "--timings",
    ]);
    assert_eq!(deep.status.code(), Some(1));
    assert!(
        text(&deep.stderr).contains("timings: read"),
        "{}",
        text(&deep.stderr)
    );
}

/// `--json` or `--vocab-out` naming an input (the manifest, a transcript file, an audio
/// file, even by another spelling) is refused before anything is written; the input is
/// left as it was.
#[test]
fn outputs_that_name_an_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = clean_manifest(dir.path());
    let librispeech = dir.path().join("LibriSpeech");
    let chapter = librispeech.join("dev-clean/1003");
    std::fs::create_dir_all(&chapter).unwrap();
    let source = repo().join("fixtures/librispeech/LibriSpeech/dev-clean/1003");
    for entry in std::fs::read_dir(&source).unwrap() {
        let from = entry.unwrap().path();
        let to = chapter.join(from.file_name().unwrap());
        if from.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            for inner in std::fs::read_dir(&from).unwrap() {
                let inner = inner.unwrap().path();
                std::fs::copy(&inner, to.join(inner.file_name().unwrap())).unwrap();
            }
        } else {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let transcript = std::fs::read_dir(chapter.read_dir().unwrap().next().unwrap().unwrap().path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".trans.txt"))
        .unwrap();
    // A copy: on a build without the check, the test must not destroy a fixture.
    let audio = dir.path().join("clip.wav");
    std::fs::copy(repo().join("fixtures/jsonl/audio/clip_00.wav"), &audio).unwrap();
    let with_audio = dir.path().join("audio.jsonl");
    std::fs::write(
        &with_audio,
        "{\"audio_filepath\": \"clip.wav\", \"text\": \"a clip\"}\n",
    )
    .unwrap();
    let by_another_name = dir.path().join(".").join("clean.jsonl");
    let cases: [(&Path, &str, &Path); 4] = [
        (&manifest, "--json", &manifest),
        (&manifest, "--vocab-out", &by_another_name),
        (&with_audio, "--json", &audio),
        (&librispeech, "--vocab-out", &transcript),
    ];
    for (dataset, option, output) in cases {
        let before = std::fs::read(output).unwrap();
        let out = asr_data(&[
            "validate",
            dataset.to_str().unwrap(),
            option,
            output.to_str().unwrap(),
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option} {output:?}: {stderr}");
        assert!(
            stderr.contains(option) && stderr.contains("an input of this run"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(output).unwrap(), before, "{output:?} changed");
    }
}
