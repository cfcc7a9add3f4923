//! asr-text against its references: jiwer's counts, and round-trip properties.

use std::path::PathBuf;

use asr_text::{char_edits, word_edits, NormalizePolicy, UnkPolicy, Vocab};
use proptest::prelude::*;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(path)
}

#[derive(serde::Deserialize)]
struct JiwerCase {
    reference: String,
    hypothesis: String,
    words: [u64; 4],
    wer: f64,
    chars: [u64; 4],
    cer: f64,
}

/// `fixtures/text/jiwer_cases.jsonl` was written by `tools/make-text-fixtures.py` with
/// jiwer 4.0.0: every pair must give the same hits, S, D, I and rates.
#[test]
fn agrees_with_jiwer_on_every_recorded_case() {
    let text = std::fs::read_to_string(fixture("text/jiwer_cases.jsonl")).unwrap();
    let mut checked = 0;
    for (line, json) in text.lines().enumerate() {
        let case: JiwerCase = serde_json::from_str(json).unwrap();
        let (r, h) = (&case.reference, &case.hypothesis);
        let w = word_edits(r, h);
        let c = char_edits(r, h);
        let context = format!("line {}: {r:?} vs {h:?}", line + 1);
        assert_eq!(
            [w.hits, w.substitutions, w.deletions, w.insertions],
            case.words,
            "words, {context}"
        );
        assert_eq!(
            [c.hits, c.substitutions, c.deletions, c.insertions],
            case.chars,
            "chars, {context}"
        );
        assert!((w.rate() - case.wer).abs() < 1e-9, "wer, {context}");
        assert!((c.rate() - case.cer).abs() < 1e-9, "cer, {context}");
        checked += 1;
    }
    assert!(checked >= 400);
}

proptest! {
    /// Encoding then decoding gives back the normalized text, for any text whose
    /// characters the vocabulary knows.
    #[test]
    fn encode_then_decode_is_identity(text in "[a-zA-Z' \\t\u{e9}\u{4e2d}\u{6587}]{0,40}") {
        let vocab = Vocab::from_chars(text.chars());
        let prepared = vocab.prepare(&text, &NormalizePolicy::default(), UnkPolicy::Error).unwrap();
        prop_assert_eq!(vocab.decode_labels(&prepared.labels), prepared.text.clone());
        prop_assert_eq!(prepared.text.split_whitespace().collect::<Vec<_>>(), text.split_whitespace().collect::<Vec<_>>());
        prop_assert!(asr_text::ctc_min_frames(&prepared.labels) == asr_text::ctc_min_frames_text(&prepared.text));
    }

    /// Any JSON text is either a vocabulary or an error, never a panic; a vocabulary
    /// survives its own serialization.
    #[test]
    fn vocab_parser_never_panics(tokens in proptest::collection::vec("\\PC{0,3}", 0..12), ids in proptest::collection::vec(0u64..14, 0..12)) {
        let object: serde_json::Map<String, serde_json::Value> = tokens.iter().cloned().zip(ids.iter().map(|&i| serde_json::Value::from(i))).collect();
        let json = serde_json::Value::Object(object).to_string();
        if let Ok(vocab) = Vocab::from_json_str(&json) {
            prop_assert_eq!(Vocab::from_json_str(&vocab.to_json_string()).unwrap(), vocab);
        }
    }

    /// Rates are never negative, and a hypothesis equal to the reference has no error.
    #[test]
    fn identical_texts_have_no_error(text in "[a-c ]{0,30}", other in "[a-c ]{0,30}") {
        prop_assert_eq!(word_edits(&text, &text).errors(), 0);
        prop_assert_eq!(char_edits(&text, &text).errors(), 0);
        let w = word_edits(&text, &other);
        prop_assert_eq!(w.reference_len() as usize, text.split_whitespace().count());
        prop_assert_eq!(w.hypothesis_len() as usize, other.split_whitespace().count());
    }
}
