//! Property tests for the transcript, TSV, CSV and JSON-lines parsers: no input makes
//! them panic, and what a writer writes reads back unchanged.

use std::path::Path;

use asr_corpus::commonvoice::parse_clip_tsv;
use asr_corpus::manifest::{parse_delimited, parse_jsonl};
use asr_corpus::{read_corpus, ReadOptions};
use proptest::prelude::*;

/// Sentences with quotes, tabs-free, in several scripts, possibly with odd whitespace.
fn sentence() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z'\"“”„«» ,.!?é你好こんにちは😀-]{0,40}").unwrap()
}

/// A field that can sit in a TSV cell: no tab, no newline, no carriage return.
fn tsv_field() -> impl Strategy<Value = String> {
    sentence().prop_map(|s| s.replace(['\t', '\n', '\r'], " "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tsv_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut issues = Vec::new();
        let rows = parse_clip_tsv(Path::new("x.tsv"), &bytes, &mut issues).unwrap_or_default();
        for row in rows {
            prop_assert!(row.line >= 2);
        }
    }

    #[test]
    fn csv_and_jsonl_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), quoting: bool) {
        let mut issues = Vec::new();
        let _ = parse_delimited(Path::new("x.csv"), &bytes, if quoting { b',' } else { b'\t' }, quoting, &ReadOptions::default(), &mut issues);
        let _ = parse_jsonl(Path::new("x.jsonl"), &bytes, &ReadOptions::default(), &mut issues);
    }

    #[test]
    fn csv_parser_never_panics_on_csv_like_text(lines in proptest::collection::vec("[a-z,\"\n\r ]{0,30}", 0..10)) {
        let text = format!("path,text\n{}", lines.join("\n"));
        let mut issues = Vec::new();
        let _ = parse_delimited(Path::new("x.csv"), text.as_bytes(), b',', true, &ReadOptions::default(), &mut issues);
    }

    #[test]
    fn tsv_round_trip(rows in proptest::collection::vec((tsv_field(), "[a-z0-9_]{1,12}", tsv_field()), 1..20)) {
        let mut text = String::from("client_id\tpath\tsentence_id\tsentence\tup_votes\n");
        for (client, path, sentence) in &rows {
            text += &format!("{client}\t{path}.mp3\tsid\t{sentence}\t2\n");
        }
        let mut issues = Vec::new();
        let parsed = parse_clip_tsv(Path::new("train.tsv"), text.as_bytes(), &mut issues).unwrap();
        prop_assert!(issues.is_empty(), "{:?}", issues);
        prop_assert_eq!(parsed.len(), rows.len());
        for (i, (row, (client, path, sentence))) in parsed.iter().zip(&rows).enumerate() {
            prop_assert_eq!(&row.sentence, sentence);
            prop_assert_eq!(&row.path, &format!("{path}.mp3"));
            prop_assert_eq!(row.client_id.clone(), Some(client.trim().to_owned()).filter(|c| !c.is_empty()));
            prop_assert_eq!(row.line, i as u64 + 2);
        }
    }

    #[test]
    fn csv_round_trip_through_a_csv_writer(rows in proptest::collection::vec(("[a-z0-9_/]{1,12}", sentence()), 1..20)) {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["filename", "text", "up_votes"]).unwrap();
        for (path, text) in &rows {
            writer.write_record([format!("{path}.wav").as_str(), text.as_str(), "1"]).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        let mut issues = Vec::new();
        let parsed = parse_delimited(Path::new("m.csv"), &bytes, b',', true, &ReadOptions::default(), &mut issues).unwrap();
        prop_assert!(issues.is_empty(), "{:?}", issues);
        prop_assert_eq!(parsed.len(), rows.len());
        for (row, (path, text)) in parsed.iter().zip(&rows) {
            prop_assert_eq!(&row.text, text);
            prop_assert_eq!(&row.audio, &format!("{path}.wav"));
        }
    }

    #[test]
    fn jsonl_round_trip(rows in proptest::collection::vec(("[a-z0-9_/]{1,12}", sentence(), 0.0f64..100.0), 1..20)) {
        let text: String = rows
            .iter()
            .map(|(p, t, d)| serde_json::json!({"audio_filepath": format!("{p}.flac"), "text": t, "duration": d}).to_string() + "\n")
            .collect();
        let mut issues = Vec::new();
        let parsed = parse_jsonl(Path::new("m.jsonl"), text.as_bytes(), &ReadOptions::default(), &mut issues).unwrap();
        prop_assert!(issues.is_empty());
        for (row, (p, t, d)) in parsed.iter().zip(&rows) {
            prop_assert_eq!(&row.text, t);
            prop_assert_eq!(&row.audio, &format!("{p}.flac"));
            // serde_json parses floats to within an ulp, not bit-exactly.
            prop_assert!((row.duration_s.unwrap() - d).abs() <= 1e-12 * d.max(1.0));
        }
    }

    #[test]
    fn librispeech_transcripts_round_trip_and_never_panic(
        texts in proptest::collection::vec("[A-Z' ]{0,30}", 1..12),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let chapter = dir.path().join("train/7/8");
        std::fs::create_dir_all(&chapter).unwrap();
        let mut body = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            body.extend_from_slice(format!("7-8-{i:04} {t}\n").as_bytes());
        }
        std::fs::write(chapter.join("7-8.trans.txt"), &body).unwrap();
        let corpus = read_corpus(dir.path(), &ReadOptions::default()).unwrap();
        let got: Vec<&str> = corpus.utterances.iter().map(|u| u.transcript.as_str()).collect();
        let want: Vec<&str> = texts.iter().map(String::as_str).collect();
        prop_assert_eq!(got, want);
        // Garbage appended: still no panic, and the good lines are still read.
        body.extend_from_slice(&garbage);
        std::fs::write(chapter.join("7-8.trans.txt"), &body).unwrap();
        let corpus = read_corpus(dir.path(), &ReadOptions::default()).unwrap();
        prop_assert!(corpus.utterances.len() >= texts.len().saturating_sub(1));
    }
}
