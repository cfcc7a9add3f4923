//! Errors of this crate.

use std::path::PathBuf;

/// Reading, parsing or writing a vocabulary failed.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not valid JSON.
    #[error("{origin}: not valid JSON: {source}")]
    Json {
        /// Where the text came from (a path, or a description).
        origin: String,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The JSON is valid but is not a usable CTC vocabulary.
    #[error("{origin}: {reason}")]
    InvalidVocab {
        /// Where the vocabulary came from.
        origin: String,
        /// What is wrong with it, in words a person can act on.
        reason: String,
    },
}

/// A transcript could not be turned into labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A character is not in the vocabulary and the policy is [`crate::UnkPolicy::Error`].
    #[error("character {character:?} (U+{code:04X}) at position {position} is not in the vocabulary", code = u32::from(*character))]
    UnknownCharacter {
        /// The character.
        character: char,
        /// Its index, in characters, in the normalized text.
        position: usize,
    },
    /// The policy is [`crate::UnkPolicy::Map`] but the vocabulary has no unknown token.
    #[error("character {character:?} is not in the vocabulary, and the vocabulary has no unknown token ([UNK] or <unk>) to map it to")]
    NoUnknownToken {
        /// The character that needed the unknown token.
        character: char,
    },
}
