//! Structure: the readers' issues as findings (`orphan_audio`, `duplicate_id`, `bad_id`,
//! `unreadable_transcript`, `metadata_mismatch`, `unreadable_path`); `missing_audio` comes
//! from the audio pass (a file that is not there), for every layout alike.

use asr_corpus::IssueKind;

use super::Ctx;
use crate::finding::{Code, Finding, Severity};

/// The code and severity of a reader issue kind.
pub(crate) fn classify(kind: IssueKind) -> (Code, Severity) {
    match kind {
        IssueKind::MissingAudio => (Code::MissingAudio, Severity::Error),
        IssueKind::OrphanAudio => (Code::OrphanAudio, Severity::Warning),
        IssueKind::DuplicateId => (Code::DuplicateId, Severity::Error),
        IssueKind::BadId => (Code::BadId, Severity::Error),
        IssueKind::UnreadableTranscript => (Code::UnreadableTranscript, Severity::Error),
        IssueKind::MetadataMismatch => (Code::MetadataMismatch, Severity::Warning),
        IssueKind::UnreadablePath => (Code::UnreadablePath, Severity::Error),
    }
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Vec<Finding> {
    ctx.corpus
        .issues
        .iter()
        .map(|issue| {
            let (code, severity) = classify(issue.kind);
            Finding::new(
                code,
                severity,
                issue.id.clone(),
                Some(issue.path.display().to_string()),
                issue.line,
                issue.message.clone(),
            )
        })
        .collect()
}
