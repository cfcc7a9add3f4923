//! The committed corpora under `fixtures/` (made by `tools/make-corpus-fixtures.py`):
//! every planted defect is found with its exact code and id, clean rows have no error,
//! header-only mode decodes nothing, and the JSON report follows its schema.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use asr_corpus::{read_corpus, ReadOptions};
use asr_validate::{validate, Code, Finding, Report, Severity, ValidateOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(dataset: &str, deep: bool) -> Report {
    let corpus = read_corpus(&repo().join(dataset), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{dataset}: {e}"));
    let opts = ValidateOptions {
        deep,
        ..ValidateOptions::default()
    };
    validate(&corpus, &opts, &|_| {}).expect("validate").0
}

/// Where a planted defect must show up: an utterance id (as the finding's id or, for a
/// dataset-level finding, among its examples), or a file line for problems with no id.
enum At {
    Id(&'static str),
    Line(&'static str, u64),
}

fn finds(report: &Report, code: Code, at: &At) -> bool {
    report.with_code(code).any(|f: &Finding| match at {
        At::Id(id) => f.id.as_deref() == Some(*id) || f.examples.iter().any(|e| e.id == *id),
        At::Line(file, line) => {
            f.line == Some(*line) && f.path.as_deref().is_some_and(|p| p.ends_with(file))
        }
    })
}

/// (code, where, needs --deep)
type Planted = [(Code, At, bool)];

fn check_layout(dataset: &str, planted: &Planted) {
    let shallow = run(dataset, false);
    let deep = run(dataset, true);
    assert_eq!(
        shallow.stats.files_decoded, 0,
        "header-only mode decoded files"
    );
    assert!(deep.stats.files_decoded > 0);
    for (code, at, deep_only) in planted {
        let what = match at {
            At::Id(id) => id.to_string(),
            At::Line(f, l) => format!("{f}:{l}"),
        };
        assert!(
            finds(&deep, *code, at),
            "{dataset}: --deep did not report {code} for {what}\n{:#?}",
            deep.findings
        );
        assert_eq!(
            finds(&shallow, *code, at),
            !deep_only,
            "{dataset}: header-only {} {code} for {what}",
            if *deep_only {
                "reported (it cannot know without decoding)"
            } else {
                "missed"
            }
        );
    }
    // Clean rows: every utterance not named by a planted defect has no error finding.
    let planted_ids: BTreeSet<&str> = planted
        .iter()
        .filter_map(|(_, at, _)| match at {
            At::Id(id) => Some(*id),
            At::Line(..) => None,
        })
        .collect();
    let corpus = read_corpus(&repo().join(dataset), &ReadOptions::default()).unwrap();
    let clean: Vec<&str> = corpus
        .utterances
        .iter()
        .map(|u| u.id.as_str())
        .filter(|id| !planted_ids.contains(id))
        .collect();
    assert!(
        clean.len() >= 8,
        "{dataset}: only {} clean utterances",
        clean.len()
    );
    let with_errors = deep.ids_with_errors();
    for id in &clean {
        assert!(
            !with_errors.contains(id),
            "{dataset}: clean row {id} has an error: {:#?}",
            deep.findings
                .iter()
                .filter(|f| f.id.as_deref() == Some(id))
                .collect::<Vec<_>>()
        );
    }
    // Every error names an utterance of the planted list or a planted file line.
    for f in deep
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
    {
        let known = match &f.id {
            Some(id) => planted_ids.contains(id.as_str()),
            None => planted.iter().any(|(code, at, _)| {
                *code == f.code && matches!(at, At::Line(..)) && finds(&deep, f.code, at)
            }),
        };
        assert!(known, "{dataset}: unexpected error {f:#?}");
    }
    // The DEFECTS.md table beside the corpus lists the same (code, id) pairs.
    let table_dir = repo().join(dataset);
    let table_dir = if table_dir.is_file() {
        table_dir.parent().unwrap().parent().unwrap().to_path_buf()
    } else {
        table_dir
    };
    let table = std::fs::read_to_string(table_dir.join("DEFECTS.md")).expect("DEFECTS.md");
    for (code, at, _) in planted {
        if let At::Id(id) = at {
            assert!(
                table.contains(&format!("| `{code}` | `{id}` |")),
                "{dataset}: DEFECTS.md lacks {code} {id}"
            );
        }
    }
}

#[test]
fn librispeech_planted_defects() {
    use At::Id;
    use Code::*;
    check_layout(
        "fixtures/librispeech",
        &[
            (MissingAudio, Id("1002-2003-0004"), false),
            (OrphanAudio, Id("1002-2003-0099"), false),
            (DuplicateId, Id("1001-2001-0004"), false),
            (BadId, Id("1001-2009-0002"), false),
            (UnreadableTranscript, Id("1002-2003-0005"), false),
            (MetadataMismatch, Id("1005-2007-0000"), false),
            (MetadataMismatch, Id("1001-2006-0000"), false),
            (UndecodableAudio, Id("1003-2004-0003"), false),
            (UndecodableAudio, Id("1004-2005-0003"), true),
            (EmptyAudio, Id("1003-2004-0004"), false),
            (SampleRate, Id("1002-2003-0006"), false),
            (Multichannel, Id("1002-2003-0007"), false),
            (SilentAudio, Id("1004-2005-0004"), true),
            (ClippedAudio, Id("1004-2005-0005"), true),
            (TooShort, Id("1001-2001-0005"), false),
            (TooLong, Id("1001-2001-0007"), false),
            (EmptyTranscript, Id("1001-2001-0006"), false),
            (MixedCase, Id("1002-2003-0008"), false),
            (Punctuation, Id("1003-2004-0005"), false),
            (UnusualChar, Id("1004-2005-0006"), false),
            (Whitespace, Id("1001-2002-0003"), false),
            (CtcInfeasible, Id("1001-2002-0004"), false),
            (SpeechRate, Id("1002-2003-0009"), false),
            (SplitLeakage, Id("1004-2005-0007"), false),
            (SpeakerOverlap, Id("1001-2006-0000"), false),
            (DuplicateAudio, Id("1003-2004-0006"), true),
        ],
    );
}

#[test]
fn librispeech_single_subset_and_splits() {
    let report = run("fixtures/librispeech/LibriSpeech/dev-clean", false);
    assert_eq!(report.stats.splits.len(), 1);
    assert_eq!(report.stats.splits[0].split, "dev-clean");
    assert_eq!(report.stats.splits[0].role.as_deref(), Some("dev"));
    // SPEAKERS.TXT one level up is still cross-checked: dev speakers are listed there.
    assert!(report
        .with_code(Code::MetadataMismatch)
        .all(|f| f.id.as_deref() != Some("1003-2004-0000")));
    let full = run("fixtures/librispeech", false);
    let names: Vec<&str> = full.stats.splits.iter().map(|s| s.split.as_str()).collect();
    assert_eq!(names, ["dev-clean", "test-clean", "train-clean-100"]);
}

#[test]
fn commonvoice_planted_defects() {
    use At::Id;
    use Code::*;
    check_layout(
        "fixtures/commonvoice",
        &[
            (MissingAudio, Id("common_voice_en_900"), false),
            (OrphanAudio, Id("common_voice_en_901"), false),
            (DuplicateId, Id("common_voice_en_11"), false),
            (UnreadableTranscript, Id("common_voice_en_12"), false),
            (MetadataMismatch, Id("common_voice_en_13"), false),
            (MetadataMismatch, Id("common_voice_en_14"), false),
            (UndecodableAudio, Id("common_voice_en_15"), true),
            (SampleRate, Id("common_voice_en_16"), false),
            (Multichannel, Id("common_voice_en_17"), false),
            (SplitLeakage, Id("common_voice_en_18"), false),
            (SpeakerOverlap, Id("common_voice_en_19"), false),
            (EmptyTranscript, Id("common_voice_en_20"), false),
        ],
    );
}

#[test]
fn commonvoice_reads_splits_quotes_and_durations() {
    let corpus = read_corpus(
        &repo().join("fixtures/commonvoice"),
        &ReadOptions::default(),
    )
    .unwrap();
    let u = corpus
        .utterances
        .iter()
        .find(|u| u.id == "common_voice_en_2")
        .unwrap();
    assert_eq!(u.transcript, "\"Close the door,\" she said quietly.");
    assert_eq!(u.split.as_deref(), Some("train"));
    assert_eq!(u.speaker.as_deref(), Some("c1"));
    assert_eq!(u.source, "clips/common_voice_en_2.mp3");
    assert!(u.declared_duration_s.is_some());
    let splits: BTreeSet<&str> = corpus
        .utterances
        .iter()
        .filter_map(|u| u.split.as_deref())
        .collect();
    assert_eq!(splits, BTreeSet::from(["dev", "test", "train"]));
    // Rows of other.tsv and invalidated.tsv are not utterances.
    assert!(corpus
        .utterances
        .iter()
        .all(|u| u.id != "common_voice_en_30"));
    let report = run("fixtures/commonvoice", false);
    assert_eq!(report.stats.sample_rates_hz.get("48000"), Some(&20));
}

#[test]
fn kaggle_csv_planted_defects() {
    use At::{Id, Line};
    use Code::*;
    check_layout(
        "fixtures/csv/kaggle",
        &[
            (MissingAudio, Id("cv-valid-train/sample-000050"), false),
            (OrphanAudio, Id("sample-000099"), false),
            (DuplicateId, Id("cv-valid-train/sample-000007"), false),
            (UnreadableTranscript, Line("cv-valid-train.csv", 13), false),
            (Whitespace, Id("cv-valid-train/sample-000008"), false),
            (SplitLeakage, Id("cv-valid-test/sample-000001"), false),
        ],
    );
}

#[test]
fn kaggle_paths_resolve_under_the_folder_named_after_the_manifest() {
    let corpus = read_corpus(
        &repo().join("fixtures/csv/kaggle/cv-valid-train.csv"),
        &ReadOptions::default(),
    )
    .unwrap();
    let u = &corpus.utterances[0];
    assert_eq!(u.id, "cv-valid-train/sample-000000");
    assert_eq!(u.source, "cv-valid-train/sample-000000.mp3");
    assert!(
        u.audio_path
            .ends_with("kaggle/cv-valid-train/cv-valid-train/sample-000000.mp3"),
        "{}",
        u.audio_path.display()
    );
    assert!(u.audio_path.is_file());
    assert_eq!(u.split.as_deref(), Some("cv-valid-train"));
    // A lone manifest among siblings does not report orphans (they may be the siblings').
    assert!(corpus
        .issues
        .iter()
        .all(|i| i.kind != asr_corpus::IssueKind::OrphanAudio));
}

#[test]
fn cjk_csv_planted_defects_and_vocabulary() {
    use At::Id;
    use Code::*;
    check_layout(
        "fixtures/csv/cjk/manifest/train.csv",
        &[
            (Punctuation, Id("wavs/cjk_08"), false),
            (UnusualChar, Id("wavs/cjk_09"), false),
            (CtcInfeasible, Id("wavs/cjk_10"), false),
            (MissingAudio, Id("wavs/cjk_11"), false),
        ],
    );
    let report = run("fixtures/csv/cjk/manifest/train.csv", false);
    let cjk = report
        .vocab
        .keys()
        .filter(|c| c.chars().all(|ch| ('\u{4E00}'..='\u{9FFF}').contains(&ch)))
        .count();
    assert!(
        cjk >= 50,
        "vocabulary {:?}",
        report.vocab.keys().collect::<Vec<_>>()
    );
    assert!(report
        .vocab
        .keys()
        .all(|c| !c.chars().any(|ch| ch.is_ascii_alphabetic())));
    assert_eq!(report.vocab.get("天"), Some(&4));
    let vocab = report.ctc_vocab();
    assert_eq!(vocab.token(0), Some("[PAD]"));
    assert!(vocab.id("天").is_some());
    assert_eq!(vocab.letter_case(), asr_text::LetterCase::Caseless);
    // Paths resolve against the manifest folder's parent.
    let corpus = read_corpus(
        &repo().join("fixtures/csv/cjk/manifest/train.csv"),
        &ReadOptions::default(),
    )
    .unwrap();
    assert!(corpus.utterances[0]
        .audio_path
        .ends_with("cjk/wavs/cjk_00.flac"));
    assert!(corpus.utterances[0].audio_path.is_file());
}

#[test]
fn jsonl_planted_defects() {
    use At::{Id, Line};
    use Code::*;
    check_layout(
        "fixtures/jsonl",
        &[
            (MetadataMismatch, Id("audio/clip_08"), false),
            (UnreadableTranscript, Line("manifest.jsonl", 10), false),
            (MissingAudio, Id("audio/clip_09"), false),
            (EmptyAudio, Id("audio/clip_10"), false),
        ],
    );
    let report = run("fixtures/jsonl", true);
    for codec in ["pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_f32le", "vorbis"] {
        assert!(
            report.stats.codecs.contains_key(codec),
            "{:?}",
            report.stats.codecs
        );
    }
}

#[test]
fn header_only_passes_a_valid_header_with_a_garbage_body() {
    // 1004-2005-0003.flac: a real STREAMINFO followed by random bytes. Only decoding can
    // tell, so the header-only report has no error for it and decoded no file at all.
    let shallow = run("fixtures/librispeech", false);
    assert_eq!(shallow.stats.files_decoded, 0);
    assert!(shallow
        .findings
        .iter()
        .all(|f| f.id.as_deref() != Some("1004-2005-0003") || f.severity != Severity::Error));
    let deep = run("fixtures/librispeech", true);
    let f = deep
        .with_code(Code::UndecodableAudio)
        .find(|f| f.id.as_deref() == Some("1004-2005-0003"))
        .unwrap();
    assert!(f.path.as_deref().unwrap().ends_with("1004-2005-0003.flac"));
}

#[test]
fn statistics_of_the_librispeech_fixture() {
    let r = run("fixtures/librispeech", true);
    let s = &r.stats;
    assert_eq!(s.utterances, 40);
    assert_eq!(s.speaker_count, 5);
    assert_eq!(s.codecs.get("flac"), Some(&37));
    assert_eq!(s.channels.get("2"), Some(&1));
    let d = s.duration_s.as_ref().unwrap();
    assert!(d.min > 0.29 && d.min < 0.31, "{d:?}");
    assert!(d.max > 21.0 && d.max < 21.5, "{d:?}");
    assert!(d.min <= d.p5 && d.p5 <= d.median && d.median <= d.p95 && d.p95 <= d.max);
    let hist: u64 = s.duration_histogram.iter().map(|b| b.count).sum();
    assert_eq!(hist, s.utterances_with_duration);
    let train = s
        .splits
        .iter()
        .find(|x| x.split == "train-clean-100")
        .unwrap();
    assert_eq!(train.role.as_deref(), Some("train"));
    assert_eq!(train.speakers, 3);
    let total: f64 = s.splits.iter().map(|x| x.hours).sum();
    assert!((total - s.total_hours).abs() < 1e-9);
    assert!(r.vocab.get("E").copied().unwrap_or(0) > 100);
}
