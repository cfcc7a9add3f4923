//! The checks: facts about the corpus (reader issues, audio facts, transcript facts) in,
//! findings out. One module per family of codes, as DESIGN.md groups them.

pub(crate) mod alignment;
pub(crate) mod audio;
pub(crate) mod splits;
pub(crate) mod structure;
pub(crate) mod text;

use asr_corpus::{Corpus, Utterance};

use crate::audio_pass::AudioFacts;
use crate::finding::{Code, Example, Finding, Severity};
use crate::ValidateOptions;

/// Everything the checks read.
pub(crate) struct Ctx<'a> {
    pub(crate) corpus: &'a Corpus,
    pub(crate) facts: &'a [AudioFacts],
    pub(crate) texts: &'a [text::TextFacts],
    pub(crate) opts: &'a ValidateOptions,
}

impl Ctx<'_> {
    /// The utterances with their facts.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&Utterance, &AudioFacts, &text::TextFacts)> {
        self.corpus
            .utterances
            .iter()
            .zip(self.facts)
            .zip(self.texts)
            .map(|((u, f), t)| (u, f, t))
    }
}

/// A finding about an utterance's audio file.
pub(crate) fn audio_finding(
    u: &Utterance,
    code: Code,
    severity: Severity,
    message: String,
) -> Finding {
    Finding::new(
        code,
        severity,
        Some(u.id.clone()),
        Some(u.audio_path.display().to_string()),
        None,
        message,
    )
}

/// A finding about an utterance's transcript (located at its transcript/manifest line).
pub(crate) fn text_finding(
    u: &Utterance,
    code: Code,
    severity: Severity,
    message: String,
) -> Finding {
    let line = (u.origin.line > 0).then_some(u.origin.line);
    Finding::new(
        code,
        severity,
        Some(u.id.clone()),
        Some(u.origin.file.display().to_string()),
        line,
        message,
    )
}

/// An example naming an utterance.
pub(crate) fn example(u: &Utterance, detail: Option<String>) -> Example {
    Example {
        id: u.id.clone(),
        path: u.origin.to_string(),
        detail,
    }
}

/// A dataset-level finding with examples.
pub(crate) fn dataset_finding(
    code: Code,
    severity: Severity,
    message: String,
    count: u64,
    examples: Vec<Example>,
) -> Finding {
    Finding {
        code,
        severity,
        id: None,
        path: None,
        line: None,
        message,
        examples,
        count: Some(count),
    }
}

/// Runs every check.
pub(crate) fn run_all(ctx: &Ctx<'_>) -> Vec<Finding> {
    let mut findings = structure::check(ctx);
    findings.extend(audio::check(ctx));
    findings.extend(text::check(ctx));
    findings.extend(alignment::check(ctx));
    findings.extend(splits::check(ctx));
    findings
}

/// Formats seconds for messages.
pub(crate) fn secs(s: f64) -> String {
    format!("{s:.2} s")
}
