//! The transcript normalization policy.
//!
//! What [`normalize`] does, in order:
//! 1. Unicode NFC, so that a precomposed `é` and `e` + combining acute become one
//!    character (and one CTC label);
//! 2. typographic apostrophes (`’`, `‘`, `ʼ`, `` ` ``) become `'` when the policy asks
//!    for it (the default for vocabularies that have `'` but not `’`, such as
//!    wav2vec2-base-960h's): Common Voice sentences mix both;
//! 3. case folding to the vocabulary's case;
//! 4. every run of whitespace (tabs, newlines, no-break spaces, ...) becomes one space,
//!    and leading and trailing whitespace is removed.
//!
//! Punctuation is not removed here: characters outside the vocabulary are the
//! vocabulary's business ([`crate::UnkPolicy`]), so that nothing disappears without
//! being counted.

use unicode_normalization::UnicodeNormalization;

use crate::vocab::{LetterCase, Vocab};

/// How letter case is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaseFold {
    /// Leave case as it is.
    #[default]
    Keep,
    /// Upper-case everything (wav2vec2-base-960h's vocabulary is upper case).
    Upper,
    /// Lower-case everything.
    Lower,
}

/// A transcript normalization policy; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizePolicy {
    /// Case folding.
    pub case: CaseFold,
    /// Map typographic apostrophes to `'`.
    pub fold_apostrophes: bool,
}

impl NormalizePolicy {
    /// The policy that fits a vocabulary: fold to its letter case when it has only one
    /// case, and fold typographic apostrophes when it has `'` but not `’`.
    pub fn for_vocab(vocab: &Vocab) -> Self {
        let case = match vocab.letter_case() {
            LetterCase::Upper => CaseFold::Upper,
            LetterCase::Lower => CaseFold::Lower,
            LetterCase::Mixed | LetterCase::Caseless => CaseFold::Keep,
        };
        let fold_apostrophes = vocab.id("'").is_some() && vocab.id("\u{2019}").is_none();
        NormalizePolicy {
            case,
            fold_apostrophes,
        }
    }
}

fn is_typographic_apostrophe(c: char) -> bool {
    matches!(c, '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`')
}

/// Normalize a transcript by `policy`; see the module documentation.
pub fn normalize(text: &str, policy: &NormalizePolicy) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfc() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        let c = if policy.fold_apostrophes && is_typographic_apostrophe(c) {
            '\''
        } else {
            c
        };
        match policy.case {
            CaseFold::Keep => out.push(c),
            CaseFold::Upper => out.extend(c.to_uppercase()),
            CaseFold::Lower => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_and_trims_whitespace_of_any_kind() {
        let policy = NormalizePolicy::default();
        assert_eq!(
            normalize(" \tHello\u{00A0}\u{00A0}world \n", &policy),
            "Hello world"
        );
        assert_eq!(normalize("   ", &policy), "");
    }

    #[test]
    fn composes_to_nfc() {
        let policy = NormalizePolicy::default();
        assert_eq!(normalize("cafe\u{0301}", &policy), "caf\u{e9}");
    }

    #[test]
    fn folds_case_and_apostrophes() {
        let policy = NormalizePolicy {
            case: CaseFold::Upper,
            fold_apostrophes: true,
        };
        assert_eq!(normalize("don\u{2019}t stop", &policy), "DON'T STOP");
        let lower = NormalizePolicy {
            case: CaseFold::Lower,
            fold_apostrophes: false,
        };
        assert_eq!(normalize("DON\u{2019}T", &lower), "don\u{2019}t");
    }

    #[test]
    fn caseless_scripts_pass_through() {
        let policy = NormalizePolicy {
            case: CaseFold::Upper,
            fold_apostrophes: true,
        };
        assert_eq!(normalize("今天 天气", &policy), "今天 天气");
    }
}
