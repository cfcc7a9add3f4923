//! The JSON report (`asr-data validate --json`) validates against
//! `schemas/validate-report.schema.json`, for every fixture layout, header-only and deep.

use std::path::{Path, PathBuf};

use asr_corpus::{read_corpus, ReadOptions};
use asr_validate::{validate, ValidateOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("schemas/validate-report.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

#[test]
fn reports_follow_the_schema() {
    let validator = validator();
    for dataset in [
        "fixtures/librispeech",
        "fixtures/commonvoice",
        "fixtures/csv/kaggle",
        "fixtures/csv/cjk/manifest/train.csv",
        "fixtures/jsonl",
    ] {
        for deep in [false, true] {
            let corpus = read_corpus(&repo().join(dataset), &ReadOptions::default()).unwrap();
            let opts = ValidateOptions {
                deep,
                ..ValidateOptions::default()
            };
            let (report, _) = validate(&corpus, &opts, &|_| {}).unwrap();
            let json: serde_json::Value = serde_json::from_str(&report.to_json_pretty()).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{dataset} (deep={deep}): {errors:#?}");
            for key in ["findings", "stats", "vocab"] {
                assert!(json.get(key).is_some(), "{dataset}: no top-level {key}");
            }
            // Round trip: the JSON reads back into the same report.
            let back: asr_validate::Report = serde_json::from_value(json).unwrap();
            assert_eq!(back.findings, report.findings);
        }
    }
}

#[test]
fn the_schema_rejects_what_it_should() {
    let validator = validator();
    let corpus = read_corpus(&repo().join("fixtures/jsonl"), &ReadOptions::default()).unwrap();
    let (report, _) = validate(&corpus, &ValidateOptions::default(), &|_| {}).unwrap();
    let good: serde_json::Value = serde_json::from_str(&report.to_json_pretty()).unwrap();
    assert!(validator.is_valid(&good));
    let mut bad = good.clone();
    bad["findings"][0]["code"] = "not_a_code".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = good.clone();
    bad.as_object_mut().unwrap().remove("vocab");
    assert!(!validator.is_valid(&bad));
    let mut bad = good;
    bad["findings"][0]["severity"] = "fatal".into();
    assert!(!validator.is_valid(&bad));
}
