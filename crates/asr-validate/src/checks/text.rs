//! Text: `empty_transcript`, `whitespace`, `unusual_char` per utterance; `mixed_case` and
//! `punctuation` for the corpus as a whole (they are properties of the corpus's
//! vocabulary: one lower-case transcript among upper-case ones adds 26 CTC labels).
//!
//! Choices: the apostrophe `'` (and the typographic ones that normalization folds into it)
//! is a letter of English CTC vocabularies, not punctuation. `unusual_char` covers digits
//! (CTC models are trained on spelled-out numbers), symbols and emoji, control, format
//! and private-use characters, and U+FFFD (a decoding accident); zero-width joiners, which
//! Persian and Indic scripts need, are not unusual.

use std::collections::BTreeMap;

use asr_text::{normalize, CaseFold, NormalizePolicy};
use unicode_general_category::{get_general_category, GeneralCategory as G};

use super::{dataset_finding, example, text_finding, Ctx};
use crate::finding::{Code, Finding, Severity};

/// What the checks need to know about one transcript, computed once.
#[derive(Clone, Debug, Default)]
pub(crate) struct TextFacts {
    /// Normalized by the run's policy ([`crate::ValidateOptions::normalize`]; by default
    /// NFC, whitespace collapsed and trimmed).
    pub(crate) normalized: String,
    /// Lower case, punctuation removed, whitespace collapsed: equal keys are the same
    /// sentence for split leakage.
    pub(crate) leak_key: String,
    /// Non-whitespace characters of `normalized`.
    pub(crate) chars: usize,
    /// Has an upper-case (or title-case) letter.
    pub(crate) has_upper: bool,
    /// Has a lower-case letter.
    pub(crate) has_lower: bool,
    /// Punctuation characters found (distinct, in order of appearance).
    pub(crate) punctuation: Vec<char>,
    /// Unusual characters found (distinct, in order of appearance).
    pub(crate) unusual: Vec<char>,
    /// What is odd about the whitespace, if anything.
    pub(crate) whitespace: Vec<&'static str>,
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`')
}

/// True for punctuation (Unicode `P*`) other than apostrophes.
pub(crate) fn is_punctuation(c: char) -> bool {
    !is_apostrophe(c)
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

/// True for characters a transcript should not hold (see the module docs).
pub(crate) fn is_unusual(c: char) -> bool {
    if is_apostrophe(c) || c == '\u{200C}' || c == '\u{200D}' {
        return false;
    }
    c == '\u{FFFD}'
        || matches!(
            get_general_category(c),
            G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
                | G::MathSymbol
                | G::CurrencySymbol
                | G::ModifierSymbol
                | G::OtherSymbol
                | G::Control
                | G::Format
                | G::PrivateUse
                | G::Unassigned
                | G::Surrogate
        )
}

impl TextFacts {
    /// Analyses one raw transcript, normalized by `policy`.
    pub(crate) fn of(raw: &str, policy: &NormalizePolicy) -> TextFacts {
        let normalized = normalize(raw, policy);
        let mut facts = TextFacts {
            chars: normalized.chars().filter(|c| *c != ' ').count(),
            ..TextFacts::default()
        };
        for c in normalized.chars() {
            if c.is_uppercase() || get_general_category(c) == G::TitlecaseLetter {
                facts.has_upper = true;
            } else if c.is_lowercase() && c.is_alphabetic() {
                facts.has_lower = true;
            }
            if is_punctuation(c) && !facts.punctuation.contains(&c) {
                facts.punctuation.push(c);
            }
            if is_unusual(c) && !facts.unusual.contains(&c) {
                facts.unusual.push(c);
            }
        }
        if raw.starts_with(char::is_whitespace) && !raw.trim().is_empty() {
            facts.whitespace.push("leading whitespace");
        }
        if raw.ends_with(char::is_whitespace) && !raw.trim().is_empty() {
            facts.whitespace.push("trailing whitespace");
        }
        if raw.trim().contains("  ") {
            facts.whitespace.push("repeated spaces");
        }
        if raw.chars().any(|c| c.is_whitespace() && c != ' ') {
            facts
                .whitespace
                .push("tabs, line breaks or non-breaking/ideographic spaces");
        }
        let lower = normalize(
            raw,
            &NormalizePolicy {
                case: CaseFold::Lower,
                fold_apostrophes: true,
                ..NormalizePolicy::default()
            },
        );
        let stripped: String = lower
            .chars()
            .map(|c| if is_punctuation(c) { ' ' } else { c })
            .collect();
        facts.leak_key = stripped.split_whitespace().collect::<Vec<_>>().join(" ");
        facts.normalized = normalized;
        facts
    }
}

/// `U+0024 '$'` style names for messages.
pub(crate) fn describe_chars(chars: &[char]) -> String {
    chars
        .iter()
        .map(|&c| {
            if c.is_control() || get_general_category(c) == G::Format {
                format!("U+{:04X}", u32::from(c))
            } else {
                format!("{c:?} (U+{:04X})", u32::from(c))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Vec<Finding> {
    let max = ctx.opts.max_examples;
    let mut out = Vec::new();
    let mut punct_counts: BTreeMap<char, u64> = BTreeMap::new();
    let mut punct_examples = Vec::new();
    let mut punct_utts = 0u64;
    let (mut upper_only, mut lower_only, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (u, _, t)) in ctx.rows().enumerate() {
        if t.normalized.is_empty() {
            out.push(text_finding(
                u,
                Code::EmptyTranscript,
                Severity::Error,
                "empty transcript: CTC would learn to emit nothing for this speech".into(),
            ));
            continue;
        }
        if !t.whitespace.is_empty() {
            out.push(text_finding(
                u,
                Code::Whitespace,
                Severity::Info,
                format!(
                    "{} (pack collapses whitespace; fix it at the source)",
                    t.whitespace.join(", ")
                ),
            ));
        }
        if !t.unusual.is_empty() {
            out.push(text_finding(
                u,
                Code::UnusualChar,
                Severity::Warning,
                format!(
                    "unusual characters {} in {:?}: spell numbers and symbols out as spoken words",
                    describe_chars(&t.unusual),
                    t.normalized
                ),
            ));
        }
        if !t.punctuation.is_empty() {
            punct_utts += 1;
            for c in t.normalized.chars().filter(|&c| is_punctuation(c)) {
                *punct_counts.entry(c).or_default() += 1;
            }
            if punct_examples.len() < max {
                punct_examples.push(example(u, Some(t.normalized.clone())));
            }
        }
        match (t.has_upper, t.has_lower) {
            (true, false) => upper_only.push(i),
            (false, true) => lower_only.push(i),
            (true, true) => both.push(i),
            (false, false) => {}
        }
    }
    if punct_utts > 0 {
        let chars: Vec<String> = punct_counts
            .iter()
            .map(|(c, n)| format!("{c:?} x{n}"))
            .collect();
        out.push(dataset_finding(
            Code::Punctuation,
            Severity::Warning,
            format!(
                "{punct_utts} transcripts contain punctuation ({}); each mark becomes a CTC label the audio never says: strip it (pack --normalize upper|lower|cjk does), or keep only what the model's vocabulary has",
                chars.join(", ")
            ),
            punct_utts,
            punct_examples,
        ));
    }
    let cased = upper_only.len() + lower_only.len() + both.len();
    let kinds = [
        !upper_only.is_empty(),
        !lower_only.is_empty(),
        !both.is_empty(),
    ]
    .iter()
    .filter(|&&k| k)
    .count();
    if kinds > 1 || !both.is_empty() {
        // Examples: the minority style(s); when every transcript mixes cases, those.
        let mut groups = [
            (&upper_only, "upper case"),
            (&lower_only, "lower case"),
            (&both, "mixed case"),
        ];
        groups.sort_by_key(|(v, _)| v.len());
        let majority = groups
            .iter()
            .rev()
            .find(|(v, _)| !v.is_empty())
            .map(|(_, n)| *n)
            .unwrap_or("");
        let minority: Vec<(usize, &str)> = if kinds == 1 {
            both.iter().map(|&i| (i, "mixed case")).collect()
        } else {
            groups
                .iter()
                .filter(|(_, name)| *name != majority)
                .flat_map(|(v, name)| v.iter().map(move |&i| (i, *name)))
                .collect()
        };
        let examples = minority
            .iter()
            .take(max)
            .map(|&(i, style)| {
                example(
                    &ctx.corpus.utterances[i],
                    Some(format!("{style}: {}", ctx.texts[i].normalized)),
                )
            })
            .collect();
        out.push(dataset_finding(
            Code::MixedCase,
            Severity::Warning,
            format!(
                "transcripts mix letter case ({} upper case, {} lower case, {} both, of {cased}): 'A' and 'a' become two CTC labels; fold case to the model vocabulary's (pack does, for a vocabulary of one case, or with --normalize upper|lower)",
                upper_only.len(),
                lower_only.len(),
                both.len()
            ),
            if kinds == 1 { both.len() as u64 } else { (cased - groups.iter().map(|(v, _)| v.len()).max().unwrap_or(0)) as u64 },
            examples,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_characters() {
        assert!(is_punctuation(','));
        assert!(is_punctuation('。'));
        assert!(is_punctuation('"'));
        assert!(!is_punctuation('\''));
        assert!(!is_punctuation('’'));
        assert!(is_unusual('$'));
        assert!(is_unusual('5'));
        assert!(is_unusual('😀'));
        assert!(is_unusual('\u{FFFD}'));
        assert!(!is_unusual('é'));
        assert!(!is_unusual('\u{0301}'));
        assert!(!is_unusual('你'));
    }

    #[test]
    fn facts_of_a_transcript() {
        let t = TextFacts::of("  Hello,  World ", &NormalizePolicy::default());
        assert_eq!(t.normalized, "Hello, World");
        assert_eq!(t.leak_key, "hello world");
        assert!(t.has_upper && t.has_lower);
        assert_eq!(t.punctuation, vec![',']);
        assert_eq!(
            t.whitespace,
            vec![
                "leading whitespace",
                "trailing whitespace",
                "repeated spaces"
            ]
        );
        assert_eq!(t.chars, 11);
        let cjk = TextFacts::of("你好，世界。", &NormalizePolicy::default());
        assert!(!cjk.has_upper && !cjk.has_lower);
        assert_eq!(cjk.leak_key, "你好 世界");
    }
}
