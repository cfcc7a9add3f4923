//! The validation report: what `--json` writes (schema:
//! `schemas/validate-report.schema.json`) and what the terminal summary renders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::finding::{Code, Finding, Severity};
use crate::stats::Stats;

/// Version of the report's JSON layout; bumped on incompatible changes.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// What was validated, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The dataset root.
    pub path: String,
    /// The layout it was read as (`librispeech`, `commonvoice`, `csv`, `jsonl`).
    pub format: String,
    /// Whether every file was decoded (`--deep`) or only probed.
    pub deep: bool,
    /// Paths inside the dataset that were not read as input: the output of `asr-data
    /// pack` written into the dataset folder (its `manifest.json`, `skipped.jsonl`,
    /// shard folders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// The normalization the transcripts were checked under (`--normalize` and its
    /// options); absent for the default (NFC, whitespace collapsed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<asr_text::NormalizePolicy>,
}

/// Counts of findings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Findings of severity `error`.
    pub errors: u64,
    /// Findings of severity `warning`.
    pub warnings: u64,
    /// Findings of severity `info`.
    pub infos: u64,
    /// Findings per code.
    pub by_code: BTreeMap<Code, u64>,
    /// Distinct utterance ids with at least one error: the rows `asr-data pack` skips.
    pub utterances_with_errors: u64,
}

/// A whole validation report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT_VERSION`].
    pub format_version: u32,
    /// What was validated.
    pub dataset: DatasetInfo,
    /// Counts.
    pub summary: Summary,
    /// Every finding, errors first, then by code and id.
    pub findings: Vec<Finding>,
    /// Corpus statistics.
    pub stats: Stats,
    /// Characters of the normalized transcripts (NFC and whitespace collapsed, or the
    /// policy in `dataset.normalization`) with their counts; whitespace is not counted.
    pub vocab: BTreeMap<String, u64>,
}

impl Report {
    /// True when any finding is an error (`asr-data validate` exits 1).
    pub fn has_errors(&self) -> bool {
        self.summary.errors > 0
    }

    /// The findings with a given code.
    pub fn with_code(&self, code: Code) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.code == code)
    }

    /// Utterance ids with at least one error finding.
    pub fn ids_with_errors(&self) -> std::collections::BTreeSet<&str> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .filter_map(|f| f.id.as_deref())
            .collect()
    }

    /// A CTC vocabulary of the corpus's characters (HF `Wav2Vec2CTCTokenizer` layout:
    /// `[PAD]` blank, `[UNK]`, `|` delimiter, then the characters in code-point order).
    pub fn ctc_vocab(&self) -> asr_text::Vocab {
        asr_text::Vocab::from_chars(self.vocab.keys().filter_map(|k| k.chars().next()))
    }

    /// Pretty JSON, as `--json` writes it.
    pub fn to_json_pretty(&self) -> String {
        // A report holds only strings, numbers, maps and lists: it always serializes.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// Sorts findings (errors first, then by code, id, path, line) and counts them.
pub(crate) fn summarize(findings: &mut [Finding]) -> Summary {
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.id, &a.path, a.line)
            .cmp(&(b.severity, b.code, &b.id, &b.path, b.line))
    });
    let mut summary = Summary::default();
    let mut with_errors = std::collections::BTreeSet::new();
    for f in findings.iter() {
        match f.severity {
            Severity::Error => {
                summary.errors += 1;
                if let Some(id) = &f.id {
                    with_errors.insert(id.clone());
                }
            }
            Severity::Warning => summary.warnings += 1,
            Severity::Info => summary.infos += 1,
        }
        *summary.by_code.entry(f.code).or_default() += 1;
    }
    summary.utterances_with_errors = with_errors.len() as u64;
    summary
}
