//! Findings: the stable codes, their severities, and one finding's record.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a finding is. `error`s make `asr-data validate` exit 1 and keep the row out
/// of `asr-data pack`; `warning`s deserve a look; `info` is for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The row (or corpus) is broken for training.
    Error,
    /// Probably a problem; check it.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding code: stable, `snake_case` in reports. See [`Code::describe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    // structure
    /// A row's audio file does not exist.
    MissingAudio,
    /// An audio file no row mentions.
    OrphanAudio,
    /// The same id twice.
    DuplicateId,
    /// The id disagrees with the audio's path.
    BadId,
    /// A transcript/manifest file or line cannot be read.
    UnreadableTranscript,
    /// Metadata files disagree with each other or the tree.
    MetadataMismatch,
    /// A folder or file of the dataset cannot be listed (permissions, symlink loop).
    UnreadablePath,
    // audio
    /// The audio cannot be decoded (unknown format, corrupt, truncated).
    UndecodableAudio,
    /// The audio has no samples.
    EmptyAudio,
    /// The sample rate is below 16 kHz (or, dataset-level, not 16 kHz).
    SampleRate,
    /// More than one channel.
    Multichannel,
    /// Silence where speech is expected (`--deep`).
    SilentAudio,
    /// Samples at full scale (`--deep`).
    ClippedAudio,
    /// Shorter than the minimum duration.
    TooShort,
    /// Longer than the maximum duration.
    TooLong,
    // text
    /// No transcript.
    EmptyTranscript,
    /// The corpus mixes letter cases.
    MixedCase,
    /// Punctuation in transcripts.
    Punctuation,
    /// Digits, symbols, emoji, control or private-use characters.
    UnusualChar,
    /// Leading, trailing, repeated or unusual whitespace.
    Whitespace,
    // alignment
    /// The transcript needs more CTC frames than the audio gives.
    CtcInfeasible,
    /// Characters per second far from the corpus norm.
    SpeechRate,
    // splits
    /// The same normalized transcript in two splits.
    SplitLeakage,
    /// A speaker in two splits of a corpus that promises disjoint speakers.
    SpeakerOverlap,
    /// Identical decoded audio under two ids (`--deep`).
    DuplicateAudio,
}

impl Code {
    /// Every code, in report order.
    pub const ALL: [Code; 25] = [
        Code::MissingAudio,
        Code::OrphanAudio,
        Code::DuplicateId,
        Code::BadId,
        Code::UnreadableTranscript,
        Code::MetadataMismatch,
        Code::UnreadablePath,
        Code::UndecodableAudio,
        Code::EmptyAudio,
        Code::SampleRate,
        Code::Multichannel,
        Code::SilentAudio,
        Code::ClippedAudio,
        Code::TooShort,
        Code::TooLong,
        Code::EmptyTranscript,
        Code::MixedCase,
        Code::Punctuation,
        Code::UnusualChar,
        Code::Whitespace,
        Code::CtcInfeasible,
        Code::SpeechRate,
        Code::SplitLeakage,
        Code::SpeakerOverlap,
        Code::DuplicateAudio,
    ];

    /// The `snake_case` name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MissingAudio => "missing_audio",
            Code::OrphanAudio => "orphan_audio",
            Code::DuplicateId => "duplicate_id",
            Code::BadId => "bad_id",
            Code::UnreadableTranscript => "unreadable_transcript",
            Code::MetadataMismatch => "metadata_mismatch",
            Code::UnreadablePath => "unreadable_path",
            Code::UndecodableAudio => "undecodable_audio",
            Code::EmptyAudio => "empty_audio",
            Code::SampleRate => "sample_rate",
            Code::Multichannel => "multichannel",
            Code::SilentAudio => "silent_audio",
            Code::ClippedAudio => "clipped_audio",
            Code::TooShort => "too_short",
            Code::TooLong => "too_long",
            Code::EmptyTranscript => "empty_transcript",
            Code::MixedCase => "mixed_case",
            Code::Punctuation => "punctuation",
            Code::UnusualChar => "unusual_char",
            Code::Whitespace => "whitespace",
            Code::CtcInfeasible => "ctc_infeasible",
            Code::SpeechRate => "speech_rate",
            Code::SplitLeakage => "split_leakage",
            Code::SpeakerOverlap => "speaker_overlap",
            Code::DuplicateAudio => "duplicate_audio",
        }
    }

    /// One line on what the code means, for the summary's legend.
    pub fn describe(self) -> &'static str {
        match self {
            Code::MissingAudio => "audio file named by a row does not exist",
            Code::OrphanAudio => "audio file that no row uses",
            Code::DuplicateId => "the same id on two rows",
            Code::BadId => "id disagrees with where its audio lives",
            Code::UnreadableTranscript => "transcript or manifest file/line cannot be read",
            Code::MetadataMismatch => "metadata disagrees with itself, the tree or the audio",
            Code::UnreadablePath => "folder or file cannot be listed or opened",
            Code::UndecodableAudio => "audio cannot be decoded (format, corruption, truncation)",
            Code::EmptyAudio => "audio has no samples",
            Code::SampleRate => "sample rate below 16 kHz / not 16 kHz",
            Code::Multichannel => "more than one channel (pack downmixes)",
            Code::SilentAudio => "no signal where speech is expected",
            Code::ClippedAudio => "samples stuck at full scale",
            Code::TooShort => "shorter than --min-duration",
            Code::TooLong => "longer than --max-duration",
            Code::EmptyTranscript => "no transcript",
            Code::MixedCase => "corpus mixes upper and lower case",
            Code::Punctuation => "punctuation in transcripts",
            Code::UnusualChar => "digits, symbols, emoji or control characters",
            Code::Whitespace => "leading, trailing, doubled or unusual whitespace",
            Code::CtcInfeasible => "transcript longer than the CTC frames of its audio",
            Code::SpeechRate => "characters per second far from the corpus norm",
            Code::SplitLeakage => "same transcript in two splits",
            Code::SpeakerOverlap => "speaker in two splits that promise disjoint speakers",
            Code::DuplicateAudio => "identical audio under two ids",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One utterance named as an example of a dataset-level finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Utterance id.
    pub id: String,
    /// Its audio path (or transcript origin).
    pub path: String,
    /// What in it is the example (the characters, the transcript, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code.
    pub code: Code,
    /// Severity.
    pub severity: Severity,
    /// The utterance id, `null` for dataset-level findings (which list `examples`) and
    /// for problems with no utterance (an unreadable file).
    pub id: Option<String>,
    /// The file concerned: the audio for audio findings, the transcript or manifest for
    /// text and structure findings, the metadata file for metadata findings.
    pub path: Option<String>,
    /// 1-based line in `path` when it is a text file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What is wrong and what to do, in words.
    pub message: String,
    /// For dataset-level findings: a few utterances that show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    /// How many utterances a dataset-level finding concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Finding {
    /// A finding about one utterance or file.
    pub fn new(
        code: Code,
        severity: Severity,
        id: Option<String>,
        path: Option<String>,
        line: Option<u64>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            code,
            severity,
            id,
            path,
            line,
            message: message.into(),
            examples: Vec::new(),
            count: None,
        }
    }

    /// `path:line` or `path`, for display.
    pub fn location(&self) -> String {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => format!("{p}:{l}"),
            (Some(p), None) => p.clone(),
            (None, _) => String::new(),
        }
    }
}
