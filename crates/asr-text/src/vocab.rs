//! CTC vocabularies in the Hugging Face `Wav2Vec2CTCTokenizer` `vocab.json` format: a
//! JSON object from token to id, one token per character plus special tokens.
//!
//! Conventions, as transformers' tokenizer has them:
//! - the padding token (`[PAD]` or `<pad>`) is the CTC blank;
//! - `|` is the word delimiter: a space in the text is the label of `|`;
//! - the unknown token is `[UNK]` or `<unk>`;
//! - `<s>` and `</s>` (present in wav2vec2-base-960h's vocabulary) are never produced
//!   by encoding and are dropped by decoding.
//!
//! Ids must run from 0 to len-1 without gaps or duplicates: a CTC head has one output
//! per id, so a gap would be an output no token names.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{EncodeError, TextError};
use crate::normalize::{normalize, NormalizePolicy};

/// Padding / CTC blank token names, in order of preference.
const PAD_TOKENS: [&str; 2] = ["[PAD]", "<pad>"];
/// Unknown token names, in order of preference.
const UNK_TOKENS: [&str; 2] = ["[UNK]", "<unk>"];
/// Sentence boundary tokens: never encoded, dropped on decoding.
const BOUNDARY_TOKENS: [&str; 2] = ["<s>", "</s>"];
/// The word delimiter token.
const WORD_DELIMITER: &str = "|";

/// What to do with a character the vocabulary does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnkPolicy {
    /// Refuse the transcript (the row is reported and not packed).
    #[default]
    Error,
    /// Encode it as the unknown token.
    Map,
    /// Leave it out (and collapse the whitespace around it).
    Drop,
}

impl FromStr for UnkPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(UnkPolicy::Error),
            "map" => Ok(UnkPolicy::Map),
            "drop" => Ok(UnkPolicy::Drop),
            other => Err(format!(
                "unknown policy '{other}': expected error, map or drop"
            )),
        }
    }
}

impl fmt::Display for UnkPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnkPolicy::Error => "error",
            UnkPolicy::Map => "map",
            UnkPolicy::Drop => "drop",
        })
    }
}

/// The letter case of a vocabulary's single-character tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterCase {
    /// Only upper-case letters.
    Upper,
    /// Only lower-case letters.
    Lower,
    /// Both.
    Mixed,
    /// No cased letter at all (CJK, Arabic, ...).
    Caseless,
}

/// A CTC vocabulary; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    index: HashMap<String, u32>,
    blank_id: u32,
    unk_id: Option<u32>,
    delimiter_id: Option<u32>,
}

/// How two vocabularies differ; `Display` names the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabDiff {
    /// Sizes of the two vocabularies.
    pub sizes: (usize, usize),
    /// Tokens only in the first.
    pub only_in_first: Vec<String>,
    /// Tokens only in the second.
    pub only_in_second: Vec<String>,
    /// Tokens in both with different ids: (token, first id, second id).
    pub different_ids: Vec<(String, u32, u32)>,
}

impl fmt::Display for VocabDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 12;
        fn list(items: &[String]) -> String {
            let mut shown: Vec<String> =
                items.iter().take(SHOWN).map(|t| format!("{t:?}")).collect();
            if items.len() > SHOWN {
                shown.push(format!("and {} more", items.len() - SHOWN));
            }
            shown.join(", ")
        }
        let mut parts = Vec::new();
        if self.sizes.0 != self.sizes.1 {
            parts.push(format!("{} tokens vs {}", self.sizes.0, self.sizes.1));
        }
        if !self.only_in_first.is_empty() {
            parts.push(format!("only in the first: {}", list(&self.only_in_first)));
        }
        if !self.only_in_second.is_empty() {
            parts.push(format!(
                "only in the second: {}",
                list(&self.only_in_second)
            ));
        }
        if !self.different_ids.is_empty() {
            let moved: Vec<String> = self
                .different_ids
                .iter()
                .map(|(t, a, b)| format!("{t:?} is {a} vs {b}"))
                .collect();
            parts.push(format!("different ids: {}", list(&moved)));
        }
        f.write_str(&parts.join("; "))
    }
}

/// A transcript prepared for a CTC model: its normalized text and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The normalized transcript (after dropping characters, under [`UnkPolicy::Drop`]).
    pub text: String,
    /// One label per character of `text`, a space being the word delimiter.
    pub labels: Vec<i32>,
    /// The distinct characters that were not in the vocabulary (mapped or dropped).
    pub unknown: Vec<char>,
}

impl Vocab {
    /// Build a vocabulary from tokens in id order. The token list must hold a padding
    /// token (`[PAD]` or `<pad>`) and no duplicate.
    pub fn from_tokens(tokens: Vec<String>) -> Result<Vocab, TextError> {
        Self::from_tokens_with_origin(tokens, "vocabulary")
    }

    fn from_tokens_with_origin(tokens: Vec<String>, origin: &str) -> Result<Vocab, TextError> {
        let invalid = |reason: String| TextError::InvalidVocab {
            origin: origin.to_owned(),
            reason,
        };
        if tokens.len() > u32::MAX as usize {
            return Err(invalid("too many tokens".into()));
        }
        let mut index = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            if let Some(previous) = index.insert(token.clone(), id as u32) {
                return Err(invalid(format!(
                    "token {token:?} appears twice (ids {previous} and {id})"
                )));
            }
        }
        let find = |names: &[&str]| names.iter().find_map(|name| index.get(*name).copied());
        let blank_id = find(&PAD_TOKENS).ok_or_else(|| {
            invalid("no padding token ([PAD] or <pad>): CTC needs it as the blank label".to_owned())
        })?;
        let unk_id = find(&UNK_TOKENS);
        let delimiter_id = index.get(WORD_DELIMITER).copied();
        Ok(Vocab {
            tokens,
            index,
            blank_id,
            unk_id,
            delimiter_id,
        })
    }

    /// A vocabulary built from the characters of a corpus: `[PAD]` = 0 (the CTC blank),
    /// `[UNK]` = 1, `|` = 2 (the word delimiter), then every distinct character except
    /// whitespace, in code-point order (so the same characters always give the same ids).
    pub fn from_chars<I: IntoIterator<Item = char>>(chars: I) -> Vocab {
        let distinct: BTreeSet<char> = chars.into_iter().filter(|c| !c.is_whitespace()).collect();
        let mut tokens: Vec<String> = vec!["[PAD]".into(), "[UNK]".into(), WORD_DELIMITER.into()];
        for c in distinct {
            let token = c.to_string();
            // A corpus may contain '|' itself: it is the delimiter already.
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
        Self::from_tokens(tokens).expect("built-in special tokens are valid")
    }

    /// Parse a `vocab.json` text. `origin` names it in errors (a path, usually).
    pub fn from_json_str_with_origin(json: &str, origin: &str) -> Result<Vocab, TextError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|source| TextError::Json {
                origin: origin.to_owned(),
                source,
            })?;
        let invalid = |reason: String| TextError::InvalidVocab {
            origin: origin.to_owned(),
            reason,
        };
        let object = value
            .as_object()
            .ok_or_else(|| invalid("expected a JSON object from token to id".into()))?;
        if !object.is_empty() && object.values().all(|v| v.is_object()) {
            let languages: Vec<&str> = object.keys().map(String::as_str).take(5).collect();
            return Err(invalid(format!(
                "this is a multi-language vocabulary (languages {}...): save the one language to train as its own vocab.json",
                languages.join(", ")
            )));
        }
        let mut slots: Vec<Option<String>> = vec![None; object.len()];
        for (token, id) in object {
            let id = id.as_u64().ok_or_else(|| {
                invalid(format!(
                    "token {token:?} has id {id}, not a non-negative integer"
                ))
            })?;
            let slot = usize::try_from(id)
                .ok()
                .and_then(|i| slots.get_mut(i))
                .ok_or_else(|| {
                    invalid(format!(
                        "token {token:?} has id {id}, but the {} tokens must have ids 0..{}",
                        object.len(),
                        object.len().saturating_sub(1)
                    ))
                })?;
            if let Some(other) = slot {
                return Err(invalid(format!(
                    "tokens {other:?} and {token:?} both have id {id}"
                )));
            }
            *slot = Some(token.clone());
        }
        // Every id is in range and none is shared, so every slot is filled.
        let tokens = slots.into_iter().flatten().collect();
        Self::from_tokens_with_origin(tokens, origin)
    }

    /// Parse a `vocab.json` text.
    pub fn from_json_str(json: &str) -> Result<Vocab, TextError> {
        Self::from_json_str_with_origin(json, "vocab.json")
    }

    /// Read a `vocab.json` file.
    pub fn from_json_file(path: &Path) -> Result<Vocab, TextError> {
        let text = std::fs::read_to_string(path).map_err(|source| TextError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str_with_origin(&text, &path.display().to_string())
    }

    /// The `vocab.json` text: one `"token": id` per line, in id order.
    pub fn to_json_string(&self) -> String {
        let mut out = String::from("{\n");
        for (id, token) in self.tokens.iter().enumerate() {
            let key = serde_json::to_string(token).expect("strings always serialize");
            let comma = if id + 1 < self.tokens.len() { "," } else { "" };
            out.push_str(&format!("  {key}: {id}{comma}\n"));
        }
        out.push_str("}\n");
        out
    }

    /// Write the `vocab.json` file.
    pub fn write_json(&self, path: &Path) -> Result<(), TextError> {
        std::fs::write(path, self.to_json_string()).map_err(|source| TextError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The number of tokens (the CTC head's output size).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true: a vocabulary holds at least its padding token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// The token of an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The tokens, in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The CTC blank: the padding token's id.
    pub fn blank_id(&self) -> u32 {
        self.blank_id
    }

    /// The unknown token's id, if the vocabulary has one.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// The word delimiter token.
    pub fn word_delimiter(&self) -> &str {
        WORD_DELIMITER
    }

    /// The letter case of the single-character tokens.
    pub fn letter_case(&self) -> LetterCase {
        let (mut upper, mut lower) = (false, false);
        for token in &self.tokens {
            let mut chars = token.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                upper |= c.is_uppercase();
                lower |= c.is_lowercase();
            }
        }
        match (upper, lower) {
            (true, false) => LetterCase::Upper,
            (false, true) => LetterCase::Lower,
            (true, true) => LetterCase::Mixed,
            (false, false) => LetterCase::Caseless,
        }
    }

    fn is_special(&self, id: u32) -> bool {
        id == self.blank_id
            || self
                .token(id)
                .is_some_and(|t| BOUNDARY_TOKENS.contains(&t) || PAD_TOKENS.contains(&t))
    }

    /// Encode normalized text: one label per character, each run of spaces as one word
    /// delimiter. Characters not in the vocabulary follow `unk`; under
    /// [`UnkPolicy::Drop`] they are skipped (use [`Vocab::prepare`] to also get the text
    /// that matches the labels).
    pub fn encode(&self, text: &str, unk: UnkPolicy) -> Result<Vec<i32>, EncodeError> {
        self.prepare_normalized(text, unk).map(|p| p.labels)
    }

    /// Normalize a raw transcript with `policy`, then encode it. The returned text is the
    /// one the labels spell (characters dropped under [`UnkPolicy::Drop`] are gone from
    /// both; under [`UnkPolicy::Map`] the text keeps the original character while the
    /// label is the unknown token).
    pub fn prepare(
        &self,
        raw: &str,
        policy: &NormalizePolicy,
        unk: UnkPolicy,
    ) -> Result<Prepared, EncodeError> {
        self.prepare_normalized(&normalize(raw, policy), unk)
    }

    fn prepare_normalized(&self, text: &str, unk: UnkPolicy) -> Result<Prepared, EncodeError> {
        let mut labels = Vec::with_capacity(text.len());
        let mut kept = String::with_capacity(text.len());
        let mut unknown: Vec<char> = Vec::new();
        let mut pending_space = false;
        let mut buf = [0u8; 4];
        for (position, c) in text.chars().enumerate() {
            if c.is_whitespace() {
                pending_space = !kept.is_empty();
                continue;
            }
            let id = match self.index.get(&*c.encode_utf8(&mut buf)) {
                Some(&id) => Some(id),
                None => {
                    if !unknown.contains(&c) {
                        unknown.push(c);
                    }
                    match unk {
                        UnkPolicy::Error => {
                            return Err(EncodeError::UnknownCharacter {
                                character: c,
                                position,
                            })
                        }
                        UnkPolicy::Map => Some(
                            self.unk_id
                                .ok_or(EncodeError::NoUnknownToken { character: c })?,
                        ),
                        UnkPolicy::Drop => None,
                    }
                }
            };
            let Some(id) = id else { continue };
            if pending_space {
                pending_space = false;
                let delimiter = match (self.delimiter_id, unk) {
                    (Some(delimiter), _) => Some(delimiter),
                    // A vocabulary without `|` cannot spell a space.
                    (None, UnkPolicy::Error) => {
                        return Err(EncodeError::UnknownCharacter {
                            character: ' ',
                            position: position.saturating_sub(1),
                        })
                    }
                    (None, UnkPolicy::Map) => Some(
                        self.unk_id
                            .ok_or(EncodeError::NoUnknownToken { character: ' ' })?,
                    ),
                    (None, UnkPolicy::Drop) => None,
                };
                if let Some(delimiter) = delimiter {
                    labels.push(delimiter as i32);
                    kept.push(' ');
                }
            }
            labels.push(id as i32);
            kept.push(c);
        }
        Ok(Prepared {
            text: kept,
            labels,
            unknown,
        })
    }

    /// Greedy CTC decoding of a frame-wise best path: collapse repeated ids, drop blanks
    /// and sentence-boundary tokens, turn word delimiters into spaces, collapse spaces
    /// and trim. Ids outside the vocabulary are skipped. The unknown token is kept as
    /// its own text (`[UNK]`), as transformers' `batch_decode` does.
    pub fn decode_ctc(&self, ids: &[i64]) -> String {
        let mut out = String::new();
        let mut previous: Option<i64> = None;
        let mut pending_space = false;
        for &id in ids {
            if previous == Some(id) {
                continue;
            }
            previous = Some(id);
            let Ok(id) = u32::try_from(id) else { continue };
            self.push_token(id, &mut out, &mut pending_space);
        }
        out
    }

    /// Labels back to text without collapsing repeats (the inverse of [`Vocab::encode`]
    /// for text without unknown characters).
    pub fn decode_labels(&self, labels: &[i32]) -> String {
        let mut out = String::new();
        let mut pending_space = false;
        for &id in labels {
            let Ok(id) = u32::try_from(id) else { continue };
            self.push_token(id, &mut out, &mut pending_space);
        }
        out
    }

    fn push_token(&self, id: u32, out: &mut String, pending_space: &mut bool) {
        if self.is_special(id) {
            return;
        }
        let Some(token) = self.token(id) else { return };
        if Some(id) == self.delimiter_id {
            *pending_space = !out.is_empty();
            return;
        }
        if *pending_space {
            out.push(' ');
            *pending_space = false;
        }
        out.push_str(token);
    }

    /// How this vocabulary differs from `other` (tokens and ids); `None` when equal.
    pub fn diff(&self, other: &Vocab) -> Option<VocabDiff> {
        if self.tokens == other.tokens {
            return None;
        }
        let only_in_first = self
            .tokens
            .iter()
            .filter(|t| !other.index.contains_key(*t))
            .cloned()
            .collect();
        let only_in_second = other
            .tokens
            .iter()
            .filter(|t| !self.index.contains_key(*t))
            .cloned()
            .collect();
        let different_ids = self
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(id, t)| {
                let theirs = *other.index.get(t)?;
                (theirs != id as u32).then(|| (t.clone(), id as u32, theirs))
            })
            .collect();
        Some(VocabDiff {
            sizes: (self.len(), other.len()),
            only_in_first,
            only_in_second,
            different_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// facebook/wav2vec2-base-960h's vocabulary.
    pub(crate) const BASE_960H: &str = r#"{"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9, "I": 10, "H": 11, "S": 12, "R": 13, "D": 14, "L": 15, "U": 16, "M": 17, "W": 18, "C": 19, "F": 20, "G": 21, "Y": 22, "P": 23, "B": 24, "V": 25, "K": 26, "'": 27, "X": 28, "J": 29, "Q": 30, "Z": 31}"#;

    #[test]
    fn reads_a_pretrained_vocabulary() {
        let vocab = Vocab::from_json_str(BASE_960H).unwrap();
        assert_eq!(vocab.len(), 32);
        assert_eq!(vocab.blank_id(), 0);
        assert_eq!(vocab.unk_id(), Some(3));
        assert_eq!(vocab.id("|"), Some(4));
        assert_eq!(vocab.letter_case(), LetterCase::Upper);
        let policy = NormalizePolicy::for_vocab(&vocab);
        assert_eq!(policy.case, crate::CaseFold::Upper);
        assert!(policy.fold_apostrophes);
    }

    #[test]
    fn json_round_trip_keeps_ids() {
        let vocab = Vocab::from_json_str(BASE_960H).unwrap();
        let again = Vocab::from_json_str(&vocab.to_json_string()).unwrap();
        assert_eq!(vocab, again);
    }

    #[test]
    fn built_vocabulary_has_the_documented_layout() {
        let vocab = Vocab::from_chars("hello world".chars());
        assert_eq!(
            vocab.tokens(),
            ["[PAD]", "[UNK]", "|", "d", "e", "h", "l", "o", "r", "w"]
        );
        assert_eq!(vocab.blank_id(), 0);
        assert_eq!(vocab.letter_case(), LetterCase::Lower);
    }

    #[test]
    fn encodes_spaces_as_delimiters_and_handles_unknowns() {
        let vocab = Vocab::from_json_str(BASE_960H).unwrap();
        assert_eq!(
            vocab.encode("HI  A", UnkPolicy::Error).unwrap(),
            [11, 10, 4, 7]
        );
        assert_eq!(
            vocab.encode("HI!", UnkPolicy::Error),
            Err(EncodeError::UnknownCharacter {
                character: '!',
                position: 2
            })
        );
        assert_eq!(vocab.encode("HI!", UnkPolicy::Map).unwrap(), [11, 10, 3]);
        let dropped = vocab
            .prepare(
                "hi , there",
                &NormalizePolicy::for_vocab(&vocab),
                UnkPolicy::Drop,
            )
            .unwrap();
        assert_eq!(dropped.text, "HI THERE");
        assert_eq!(dropped.unknown, [',']);
        assert_eq!(vocab.decode_labels(&dropped.labels), dropped.text);
    }

    #[test]
    fn greedy_decoding_collapses_repeats_and_drops_blanks() {
        let vocab = Vocab::from_json_str(BASE_960H).unwrap();
        // H H <pad> E L L <pad> L O | | W <s> O
        let ids = [11, 11, 0, 5, 15, 15, 0, 15, 8, 4, 4, 18, 1, 8];
        assert_eq!(vocab.decode_ctc(&ids), "HELLO WO");
        assert_eq!(vocab.decode_ctc(&[4, 0, 4, 6, 4]), "T");
        assert_eq!(vocab.decode_ctc(&[]), "");
        assert_eq!(vocab.decode_ctc(&[-1, 99, 6]), "T");
    }

    #[test]
    fn rejects_broken_vocabularies_with_reasons() {
        let err = |json: &str| Vocab::from_json_str(json).unwrap_err().to_string();
        assert!(err(r#"{"a": 0, "b": 0, "<pad>": 2}"#).contains("both have id 0"));
        assert!(err(r#"{"a": 0, "<pad>": 5}"#).contains("must have ids 0..1"));
        assert!(err(r#"{"a": 0, "b": 1}"#).contains("no padding token"));
        assert!(err(r#"{"en": {"a": 0}, "fr": {"a": 0}}"#).contains("multi-language"));
        assert!(err(r#"["a"]"#).contains("expected a JSON object"));
        assert!(err("{").contains("not valid JSON"));
    }

    #[test]
    fn diff_names_the_tokens() {
        let a = Vocab::from_chars("abc".chars());
        let b = Vocab::from_chars("abd".chars());
        let diff = a.diff(&b).unwrap();
        assert_eq!(diff.only_in_first, ["c"]);
        assert_eq!(diff.only_in_second, ["d"]);
        assert!(diff.to_string().contains("only in the first: \"c\""));
        assert!(a.diff(&a.clone()).is_none());
    }
}
