//! The transcript normalization policy.
//!
//! What [`normalize`] does, in order:
//! 1. Unicode NFC, so that a precomposed `é` and `e` + combining acute become one
//!    character (and one CTC label); or NFKC, which also folds compatibility forms
//!    (full-width `Ａ１，` to `A1,`, ligatures, `…` to `...`);
//! 2. removal of every match of [`NormalizePolicy::ignore_regex`] (Hugging Face's
//!    `chars_to_ignore_regex`: matches are deleted, not replaced by a space);
//! 3. removal of the characters to ignore: [`NormalizePolicy::ignore_chars`], and with
//!    [`NormalizePolicy::ignore_punctuation`] every Unicode punctuation mark (`P*`: both
//!    widths, `.,?!"“”—` and `。，？！、「」`) except apostrophes and the marks that are
//!    read aloud (`% & @ # ‰`, see [`is_ignorable_punctuation`]). Removed characters
//!    vanish (`U.S.` becomes `US`), except dashes under
//!    [`NormalizePolicy::dashes_to_spaces`], which become a space (`well—I` is two words).
//!    Both removals see the text as written, like Hugging Face's: a `’` listed in
//!    `ignore_chars` is removed, not folded first;
//! 4. typographic apostrophes (`’`, `‘`, `ʼ`, `` ` ``) become `'` when the policy asks
//!    for it (the default for vocabularies that have `'` but not `’`, such as
//!    wav2vec2-base-960h's): Common Voice sentences mix both;
//! 5. case folding;
//! 6. every run of whitespace (tabs, newlines, no-break spaces, ...) becomes one space,
//!    and leading and trailing whitespace is removed; with
//!    [`NormalizePolicy::strip_edge_apostrophes`], apostrophes at the start or end of a
//!    word (quote marks: `'hello'`) are removed and those inside a word (`don't`) kept.
//!
//! Digits and symbols (`$`, `€`, `+`) are never removed or spelled out by a preset: that
//! is language-specific, so they stay for `asr-data validate` to report.
//!
//! The default policy (and [`Preset::None`]) removes nothing: characters outside the
//! vocabulary are then the vocabulary's business ([`crate::UnkPolicy`]), so that nothing
//! disappears without being counted.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_general_category::{get_general_category, GeneralCategory as G};
use unicode_normalization::UnicodeNormalization;

use crate::vocab::{LetterCase, Vocab};

/// How letter case is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseFold {
    /// Leave case as it is.
    #[default]
    Keep,
    /// Upper-case everything (wav2vec2-base-960h's vocabulary is upper case).
    Upper,
    /// Lower-case everything.
    Lower,
}

impl FromStr for CaseFold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "keep" => Ok(CaseFold::Keep),
            "upper" => Ok(CaseFold::Upper),
            "lower" => Ok(CaseFold::Lower),
            _ => Err(format!("invalid case {s:?}: expected upper, lower or keep")),
        }
    }
}

impl fmt::Display for CaseFold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaseFold::Keep => "keep",
            CaseFold::Upper => "upper",
            CaseFold::Lower => "lower",
        })
    }
}

/// The Unicode normalization form applied first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeForm {
    /// Canonical composition: `e` + combining acute becomes `é`; nothing else changes.
    #[default]
    Nfc,
    /// Compatibility composition: also full-width to half-width (`Ａ１，` to `A1,`),
    /// ligatures (`ﬁ` to `fi`), `…` to `...`, superscripts to digits.
    Nfkc,
}

impl FromStr for UnicodeForm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nfc" => Ok(UnicodeForm::Nfc),
            "nfkc" => Ok(UnicodeForm::Nfkc),
            _ => Err(format!("invalid Unicode form {s:?}: expected nfc or nfkc")),
        }
    }
}

impl fmt::Display for UnicodeForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnicodeForm::Nfc => "nfc",
            UnicodeForm::Nfkc => "nfkc",
        })
    }
}

/// A regular expression whose matches are removed (Hugging Face's
/// `chars_to_ignore_regex`, Rust `regex` syntax). Compared and serialized as its
/// source text.
#[derive(Debug, Clone)]
pub struct IgnoreRegex(Regex);

impl IgnoreRegex {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Self, String> {
        Regex::new(pattern)
            .map(IgnoreRegex)
            .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for IgnoreRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for IgnoreRegex {}

impl Serialize for IgnoreRegex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IgnoreRegex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        IgnoreRegex::new(&pattern).map_err(serde::de::Error::custom)
    }
}

/// A transcript normalization policy; see the module documentation. It is recorded in a
/// pack's `manifest.json` (`normalization.policy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NormalizePolicy {
    /// Unicode normalization form.
    pub unicode: UnicodeForm,
    /// Case folding.
    pub case: CaseFold,
    /// Map typographic apostrophes to `'`.
    pub fold_apostrophes: bool,
    /// Remove Unicode punctuation (see [`is_ignorable_punctuation`]).
    pub ignore_punctuation: bool,
    /// Further characters to remove (Hugging Face's `chars_to_ignore` list).
    pub ignore_chars: String,
    /// Remove every match of this expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_regex: Option<IgnoreRegex>,
    /// Removed dash punctuation (`-`, `–`, `—`) becomes a space instead of nothing.
    pub dashes_to_spaces: bool,
    /// Remove apostrophes at the start and end of words; keep those inside.
    pub strip_edge_apostrophes: bool,
}

/// A named normalization recipe (`--normalize NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// Today's behaviour: NFC, whitespace collapsed, case and apostrophes folded to a
    /// given vocabulary's (see [`NormalizePolicy::for_vocab`]); nothing removed.
    #[default]
    None,
    /// English CTC (wav2vec2-base-960h, LibriSpeech): upper case, punctuation removed,
    /// apostrophes kept inside words, dashes split words.
    Upper,
    /// Common Voice / Hugging Face recipe style: the same in lower case.
    Lower,
    /// Chinese, Japanese, Korean: NFKC (full-width Latin and digits to half-width),
    /// punctuation of both widths removed without leaving a space, Latin kept for
    /// code-switching and upper-cased (the convention of Mandarin-English code-switching
    /// corpora and recipes: WeNet, ASRU 2019, TAL_CSASR).
    Cjk,
}

impl Preset {
    /// Every preset, in the order the help lists them.
    pub const ALL: [Preset; 4] = [Preset::None, Preset::Upper, Preset::Lower, Preset::Cjk];

    /// The name on the command line and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Preset::None => "none",
            Preset::Upper => "upper",
            Preset::Lower => "lower",
            Preset::Cjk => "cjk",
        }
    }

    /// The preset's policy (for [`Preset::None`], the default policy: the vocabulary's
    /// folding is added by [`NormalizeSpec::policy`]).
    pub fn policy(self) -> NormalizePolicy {
        let english = |case| NormalizePolicy {
            unicode: UnicodeForm::Nfc,
            case,
            fold_apostrophes: true,
            ignore_punctuation: true,
            ignore_chars: String::new(),
            ignore_regex: None,
            dashes_to_spaces: true,
            strip_edge_apostrophes: true,
        };
        match self {
            Preset::None => NormalizePolicy::default(),
            Preset::Upper => english(CaseFold::Upper),
            Preset::Lower => english(CaseFold::Lower),
            Preset::Cjk => NormalizePolicy {
                unicode: UnicodeForm::Nfkc,
                dashes_to_spaces: false,
                ..english(CaseFold::Upper)
            },
        }
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| {
                format!("invalid normalization preset {s:?}: expected none, upper, lower or cjk")
            })
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for: a preset and the options that override it
/// (`--normalize`, `--case`, `--unicode`, `--chars-to-ignore`, `--ignore-regex`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizeSpec {
    /// The preset.
    pub preset: Preset,
    /// Overrides the preset's case folding.
    pub case: Option<CaseFold>,
    /// Overrides the preset's Unicode form.
    pub unicode: Option<UnicodeForm>,
    /// Replaces the preset's characters to remove (its punctuation class) by these.
    pub ignore_chars: Option<String>,
    /// Also removes every match of this expression.
    pub ignore_regex: Option<IgnoreRegex>,
}

impl NormalizeSpec {
    /// True for `none` without overrides: today's behaviour.
    pub fn is_default(&self) -> bool {
        *self == NormalizeSpec::default()
    }

    /// The policy to apply. Under [`Preset::None`] case and apostrophes follow `vocab`
    /// when one is given ([`NormalizePolicy::for_vocab`]); the overrides come last.
    pub fn policy(&self, vocab: Option<&Vocab>) -> NormalizePolicy {
        let mut policy = match (self.preset, vocab) {
            (Preset::None, Some(vocab)) => NormalizePolicy::for_vocab(vocab),
            (preset, _) => preset.policy(),
        };
        if let Some(case) = self.case {
            policy.case = case;
        }
        if let Some(unicode) = self.unicode {
            policy.unicode = unicode;
        }
        if let Some(chars) = &self.ignore_chars {
            policy.ignore_punctuation = false;
            policy.ignore_chars = chars.chars().filter(|c| !c.is_whitespace()).collect();
        }
        if let Some(regex) = &self.ignore_regex {
            policy.ignore_regex = Some(regex.clone());
        }
        policy
    }
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
            ..NormalizePolicy::default()
        }
    }

    fn ignores(&self, c: char) -> bool {
        (self.ignore_punctuation && is_ignorable_punctuation(c)) || self.ignore_chars.contains(c)
    }
}

/// True for the apostrophes: `'` and the typographic ones folded into it.
pub fn is_apostrophe(c: char) -> bool {
    c == '\'' || is_typographic_apostrophe(c)
}

fn is_typographic_apostrophe(c: char) -> bool {
    matches!(c, '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`')
}

/// True for the punctuation a preset removes: Unicode punctuation (`P*`, both widths)
/// except apostrophes and the marks read aloud (`%`, `&`, `@`, `#`, `‰` and their
/// full-width forms), which stay for `validate` to report like digits and symbols.
pub fn is_ignorable_punctuation(c: char) -> bool {
    !is_apostrophe(c)
        && !matches!(
            c,
            '%' | '&' | '@' | '#' | '\u{2030}' | '\u{FF05}' | '\u{FF06}' | '\u{FF20}' | '\u{FF03}'
        )
        && matches!(
            get_general_category(c),
            G::ClosePunctuation
                | G::ConnectorPunctuation
                | G::DashPunctuation
                | G::FinalPunctuation
                | G::InitialPunctuation
                | G::OpenPunctuation
                | G::OtherPunctuation
        )
}

/// Normalize a transcript by `policy`; see the module documentation.
pub fn normalize(text: &str, policy: &NormalizePolicy) -> String {
    let composed: String = match policy.unicode {
        UnicodeForm::Nfc => text.nfc().collect(),
        UnicodeForm::Nfkc => text.nfkc().collect(),
    };
    let kept = match &policy.ignore_regex {
        Some(regex) => regex.0.replace_all(&composed, "").into_owned(),
        None => composed,
    };
    let mut spaced = String::with_capacity(kept.len());
    for c in kept.chars() {
        if policy.ignores(c) {
            if policy.dashes_to_spaces && get_general_category(c) == G::DashPunctuation {
                spaced.push(' ');
            }
            continue;
        }
        let c = if policy.fold_apostrophes && is_typographic_apostrophe(c) {
            '\''
        } else {
            c
        };
        match policy.case {
            CaseFold::Keep => spaced.push(c),
            CaseFold::Upper => spaced.extend(c.to_uppercase()),
            CaseFold::Lower => spaced.extend(c.to_lowercase()),
        }
    }
    join_words(&spaced, policy.strip_edge_apostrophes)
}

/// Collapses whitespace into single spaces and trims; optionally strips apostrophes at
/// word edges (a word of apostrophes only disappears).
fn join_words(text: &str, strip_edge_apostrophes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(char::is_whitespace) {
        let word = if strip_edge_apostrophes {
            word.trim_matches(is_apostrophe)
        } else {
            word
        };
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
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
            ..NormalizePolicy::default()
        };
        assert_eq!(normalize("don\u{2019}t stop", &policy), "DON'T STOP");
        let lower = NormalizePolicy {
            case: CaseFold::Lower,
            ..NormalizePolicy::default()
        };
        assert_eq!(normalize("DON\u{2019}T", &lower), "don\u{2019}t");
    }

    #[test]
    fn caseless_scripts_pass_through() {
        let policy = NormalizePolicy {
            case: CaseFold::Upper,
            fold_apostrophes: true,
            ..NormalizePolicy::default()
        };
        assert_eq!(normalize("今天 天气", &policy), "今天 天气");
    }

    #[test]
    fn the_default_policy_removes_nothing() {
        let text = "He said, \u{201C}Stop\u{2014}now!\u{201D} It's $5.";
        assert_eq!(
            normalize(text, &Preset::None.policy()),
            "He said, \u{201C}Stop\u{2014}now!\u{201D} It's $5."
        );
    }

    #[test]
    fn upper_preset_keeps_letters_in_word_apostrophes_digits_and_symbols() {
        let policy = Preset::Upper.policy();
        assert_eq!(
            normalize(
                "He said, \u{201C}Don\u{2019}t stop\u{2014}now!\u{201D} \u{2018}Tis $5 or 50%?",
                &policy
            ),
            "HE SAID DON'T STOP NOW TIS $5 OR 50%"
        );
        assert_eq!(
            normalize("'quoted' words' end", &policy),
            "QUOTED WORDS END"
        );
        assert_eq!(normalize("U.S. well-known", &policy), "US WELL KNOWN");
        assert_eq!(normalize(" ... ", &policy), "");
    }

    #[test]
    fn lower_preset_is_upper_in_lower_case() {
        assert_eq!(
            normalize("Hello, World? \"Yes.\"", &Preset::Lower.policy()),
            "hello world yes"
        );
    }

    #[test]
    fn cjk_preset_removes_punctuation_of_both_widths_and_folds_full_width() {
        let policy = Preset::Cjk.policy();
        assert_eq!(
            normalize(
                "\u{300C}你好\u{300D}，我用ｉＰｈｏｎｅ和Python\u{3002}真的吗？好！一、二\u{2014}\u{2014}三\u{201C}四\u{201D}",
                &policy
            ),
            "你好我用IPHONE和PYTHON真的吗好一二三四"
        );
        assert_eq!(normalize("我说 ok, 好的", &policy), "我说 OK 好的");
    }

    #[test]
    fn overrides_replace_the_presets_choices() {
        let spec = NormalizeSpec {
            preset: Preset::Upper,
            case: Some(CaseFold::Keep),
            unicode: Some(UnicodeForm::Nfkc),
            ignore_chars: Some(", ?".into()),
            ignore_regex: Some(IgnoreRegex::new(r"\[[a-z]+\]").unwrap()),
        };
        let policy = spec.policy(None);
        assert!(!policy.ignore_punctuation);
        assert_eq!(policy.ignore_chars, ",?");
        assert_eq!(
            normalize("Ｈi, there? [noise] Yes.", &policy),
            "Hi there Yes."
        );
        // Listed characters are removed as written, before apostrophes are folded.
        let quotes = NormalizeSpec {
            preset: Preset::Upper,
            ignore_chars: Some("\u{2018}".into()),
            ..NormalizeSpec::default()
        };
        assert_eq!(
            normalize("\u{2018}Tis don\u{2019}t.", &quotes.policy(None)),
            "TIS DON'T."
        );
    }

    #[test]
    fn none_follows_the_vocabulary() {
        let vocab = Vocab::from_chars("ABC'".chars());
        let policy = NormalizeSpec::default().policy(Some(&vocab));
        assert_eq!(policy, NormalizePolicy::for_vocab(&vocab));
        assert_eq!(normalize("ab\u{2019}c, a", &policy), "AB'C, A");
        assert!(NormalizeSpec::default().is_default());
    }

    #[test]
    fn policy_round_trips_through_json() {
        let spec = NormalizeSpec {
            ignore_regex: Some(IgnoreRegex::new("[0-9]").unwrap()),
            ..NormalizeSpec::default()
        };
        for policy in Preset::ALL
            .iter()
            .map(|p| p.policy())
            .chain([spec.policy(None)])
        {
            let json = serde_json::to_string(&policy).unwrap();
            let back: NormalizePolicy = serde_json::from_str(&json).unwrap();
            assert_eq!(back, policy, "{json}");
        }
        let bad = serde_json::from_str::<NormalizePolicy>(r#"{"ignore_regex": "["}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("invalid regular expression"));
    }
}
