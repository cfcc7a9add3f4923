//! Whisper label ids against transformers' `WhisperTokenizer` (5.23):
//! `fixtures/whisper/tokenizer/` holds the multilingual tokenizer.json converted by
//! `tools/make-whisper-fixtures.py` from openai-whisper's BPE ranks, and the labels and
//! decodes transformers gives (each also checked there against openai-whisper's own
//! tiktoken tokenizer) for English, Simplified and Traditional Chinese, code-switched
//! zh/en, and half- and full-width punctuation.
use std::path::{Path, PathBuf};

use asr_model::whisper::{strip_decoder_start, Task, TokenizerError, WhisperTokenizer};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/whisper/tokenizer")
}

fn tokenizer() -> WhisperTokenizer {
    WhisperTokenizer::from_pretrained(&fixtures()).unwrap()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn labels_match_transformers_for_english_chinese_and_code_switched_text() {
    let tok = tokenizer();
    let expected = expected();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let task = case["task"].as_str().map(|t| t.parse::<Task>().unwrap());
        let prefix = tok.prefix(case["language"].as_str(), task, false).unwrap();
        let labels = tok.labels(&prefix, text).unwrap();
        assert_eq!(labels, ids(&case["labels"]), "labels of {text:?}");
        assert_eq!(
            tok.decode(&labels, true).unwrap(),
            case["decoded"].as_str().unwrap()
        );
    }
}

#[test]
fn decoding_generated_ids_drops_timestamps_and_prompts_as_transformers_does() {
    let tok = tokenizer();
    for case in expected()["decode_cases"].as_array().unwrap() {
        let skip = case["skip_special_tokens"].as_bool().unwrap();
        let text = tok.decode(&ids(&case["ids"]), skip).unwrap();
        assert_eq!(
            text,
            case["text"].as_str().unwrap(),
            "skip_special_tokens={skip}"
        );
    }
}

#[test]
fn the_multilingual_vocabulary_has_51865_ids_and_named_control_tokens() {
    let tok = tokenizer();
    assert_eq!(
        tok.vocab_size() as u64,
        expected()["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.vocab_size(), 51865);
    let special = tok.special_tokens();
    for (name, id) in [
        ("<|endoftext|>", special.end_of_text),
        ("<|startoftranscript|>", special.start_of_transcript),
        ("<|transcribe|>", special.transcribe),
        ("<|translate|>", special.translate),
        ("<|notimestamps|>", special.no_timestamps),
        ("<|startofprev|>", special.start_of_prev),
    ] {
        assert_eq!(tok.token_id(name), Some(id), "{name}");
    }
    let zh = tok.language_id("ZH").unwrap();
    assert_eq!(tok.token_id("<|zh|>"), Some(zh));
    let with_timestamps = tok
        .prefix(Some("zh"), Some(Task::Transcribe), true)
        .unwrap();
    assert_eq!(
        with_timestamps,
        [special.start_of_transcript, zh, special.transcribe]
    );
}

#[test]
fn prefix_ids_come_from_the_file_not_from_constants() {
    // Swap two control tokens' names in a copy of tokenizer.json: the prefix must follow.
    let path = fixtures().join("tokenizer.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for token in json["added_tokens"].as_array_mut().unwrap() {
        let swapped = match token["content"].as_str().unwrap() {
            "<|transcribe|>" => "<|translate|>",
            "<|translate|>" => "<|transcribe|>",
            _ => continue,
        };
        token["content"] = Value::from(swapped);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    let swapped = WhisperTokenizer::from_pretrained(dir.path()).unwrap();
    let original = tokenizer();
    let a = original
        .prefix(Some("en"), Some(Task::Transcribe), false)
        .unwrap();
    let b = swapped
        .prefix(Some("en"), Some(Task::Transcribe), false)
        .unwrap();
    assert_eq!(b[2], original.special_tokens().translate);
    assert_ne!(a, b);
}

#[test]
fn training_targets_lose_the_leading_decoder_start_token_only() {
    let tok = tokenizer();
    let sot = tok.special_tokens().start_of_transcript;
    let prefix = tok
        .prefix(Some("zh"), Some(Task::Transcribe), false)
        .unwrap();
    let labels = tok.labels(&prefix, "你好").unwrap();
    assert_eq!(labels[0], sot);
    assert_eq!(strip_decoder_start(&labels, sot), &labels[1..]);
    // Already stripped: nothing more goes.
    assert_eq!(strip_decoder_start(&labels[1..], sot), &labels[1..]);
    assert!(strip_decoder_start(&[], sot).is_empty());
}

#[test]
fn unknown_languages_and_missing_files_are_clear_errors() {
    let tok = tokenizer();
    let err = tok
        .prefix(Some("klingon"), Some(Task::Transcribe), false)
        .unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnknownLanguage { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("use a Whisper language code"),
        "{err}"
    );
    assert!(tok.language_id("").is_err());
    assert!("transcribe ".parse::<Task>().is_err());

    let dir = tempfile::tempdir().unwrap();
    let err = WhisperTokenizer::from_pretrained(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), r#"{"version": "1.0"}"#).unwrap();
    assert!(WhisperTokenizer::from_pretrained(dir.path()).is_err());
}
