//! Whisper's byte-level BPE tokenizer: a Hugging Face `tokenizer.json` read by the
//! `tokenizers` crate (the library behind transformers' fast tokenizer), with the label
//! layout of transformers' `WhisperTokenizer` (5.23.0, `models/whisper/tokenization_whisper.py`).
//!
//! Labels are `prefix + text + <|endoftext|>`, the prefix being
//! `<|startoftranscript|> [<|lang|>] [<|transcribe|> | <|translate|>] [<|notimestamps|>]`
//! ([`WhisperTokenizer::prefix`]). Every id is looked up by its token's name in the
//! file, never hard-coded: they differ between Whisper versions (large-v3 adds a 100th
//! language, `<|yue|>`, which moves `<|translate|>` and every later id up by one).
//!
//! Training targets: the model prepends the decoder-start token itself when it shifts the
//! labels right, so transformers' fixed `DataCollatorSpeechSeq2SeqWithPadding` cuts a
//! leading `<|startoftranscript|>` from the tokenized labels. Here that is
//! [`strip_decoder_start`], which the seq2seq data path calls per utterance (the HF
//! collator does it per batch when every row starts with it, the same for labels built
//! with one prefix). Padding: pad == eos in Whisper, so padded positions must be masked by
//! length (labels set to -100), never by comparing ids with the pad id.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The `tokenizer.json` file name of a Hugging Face model folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Why a tokenizer cannot be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read or parsed as a `tokenizers` JSON file.
    #[error("{path}: cannot load the tokenizer: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The tokenizers crate's explanation.
        message: String,
    },
    /// A token Whisper needs is not in the vocabulary.
    #[error("{path}: no {token} token in the tokenizer; is this a Whisper tokenizer.json?")]
    MissingToken {
        /// The file.
        path: PathBuf,
        /// The missing token.
        token: String,
    },
    /// The language has no `<|code|>` token.
    #[error("unknown language {language:?}: the tokenizer has no <|{language}|> token; use a Whisper language code such as en, zh, ja")]
    UnknownLanguage {
        /// The language asked for.
        language: String,
    },
    /// Encoding or decoding failed inside the tokenizers crate.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

/// Whisper's task token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Speech recognition in the spoken language: `<|transcribe|>`.
    Transcribe,
    /// Speech translation to English: `<|translate|>`.
    Translate,
}

impl std::str::FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transcribe" => Ok(Task::Transcribe),
            "translate" => Ok(Task::Translate),
            other => Err(format!(
                "unknown task {other:?}: use transcribe or translate"
            )),
        }
    }
}

/// The ids of Whisper's control tokens, as this tokenizer numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|startoftranscript|>`: the decoder-start token.
    pub start_of_transcript: u32,
    /// `<|endoftext|>`: eos, and pad.
    pub end_of_text: u32,
    /// `<|transcribe|>`.
    pub transcribe: u32,
    /// `<|translate|>`.
    pub translate: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|startofprev|>`: starts a previous-text prompt.
    pub start_of_prev: u32,
}

/// A Whisper tokenizer loaded from `tokenizer.json`.
pub struct WhisperTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    /// Ids of the `<|N.NN|>` timestamp tokens, which decoding leaves out.
    timestamps: HashSet<u32>,
}

impl std::fmt::Debug for WhisperTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .finish()
    }
}

impl WhisperTokenizer {
    /// Loads `dir/tokenizer.json`.
    pub fn from_pretrained(dir: &Path) -> Result<Self, TokenizerError> {
        Self::from_file(&dir.join(TOKENIZER_FILE))
    }

    /// Loads a `tokenizer.json` and finds Whisper's control tokens in it by name.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::MissingToken {
                    path: path.to_path_buf(),
                    token: token.to_string(),
                })
        };
        let special = SpecialTokens {
            start_of_transcript: id("<|startoftranscript|>")?,
            end_of_text: id("<|endoftext|>")?,
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            no_timestamps: id("<|notimestamps|>")?,
            start_of_prev: id("<|startofprev|>")?,
        };
        let timestamps = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| is_timestamp(&token.content))
            .map(|(id, _)| id)
            .collect();
        Ok(WhisperTokenizer {
            inner,
            special,
            timestamps,
        })
    }

    /// The control tokens' ids.
    pub fn special_tokens(&self) -> SpecialTokens {
        self.special
    }

    /// Number of ids, added tokens included (51865 for multilingual Whisper up to v2).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token given by its name, e.g. `<|zh|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of the language token `<|code|>` for a Whisper language code (`en`, `zh`).
    pub fn language_id(&self, code: &str) -> Result<u32, TokenizerError> {
        let code = code.to_lowercase();
        self.token_id(&format!("<|{code}|>"))
            .filter(|_| !code.is_empty() && code.chars().all(|c| c.is_ascii_alphabetic()))
            .ok_or(TokenizerError::UnknownLanguage { language: code })
    }

    /// The decoder prompt, as transformers' `WhisperTokenizer.prefix_tokens`:
    /// `<|startoftranscript|>`, then the language token if given, the task token if
    /// given, and `<|notimestamps|>` unless timestamps are predicted.
    pub fn prefix(
        &self,
        language: Option<&str>,
        task: Option<Task>,
        predict_timestamps: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut prefix = vec![self.special.start_of_transcript];
        if let Some(code) = language {
            prefix.push(self.language_id(code)?);
        }
        match task {
            Some(Task::Transcribe) => prefix.push(self.special.transcribe),
            Some(Task::Translate) => prefix.push(self.special.translate),
            None => {}
        }
        if !predict_timestamps {
            prefix.push(self.special.no_timestamps);
        }
        Ok(prefix)
    }

    /// The ids of `text` alone (no prefix, no eos).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `prefix + text + <|endoftext|>`: what transformers' tokenizer returns as
    /// `input_ids` for `text` with that prefix set. Training targets drop the leading
    /// decoder-start token: [`strip_decoder_start`].
    pub fn labels(&self, prefix: &[u32], text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut labels = prefix.to_vec();
        labels.extend(self.encode_text(text)?);
        labels.push(self.special.end_of_text);
        Ok(labels)
    }

    /// Text of `ids` as transformers' `WhisperTokenizer.decode` gives it (no offsets, no
    /// timestamps): a `<|startofprev|>` prompt is cut up to `<|startoftranscript|>` and
    /// special tokens are left out when `skip_special_tokens`; timestamp tokens always
    /// are.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let mut ids = ids;
        if skip_special_tokens && ids.contains(&self.special.start_of_prev) {
            if let Some(start) = ids
                .iter()
                .position(|&id| id == self.special.start_of_transcript)
            {
                ids = &ids[start..];
            }
        }
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !self.timestamps.contains(id))
            .collect();
        self.inner
            .decode(&kept, skip_special_tokens)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }
}

/// `labels` without a leading decoder-start token: the training target, which the
/// decoder's input (`decoder_start` + target shifted right) no longer repeats.
pub fn strip_decoder_start(labels: &[u32], decoder_start: u32) -> &[u32] {
    match labels.split_first() {
        Some((&first, rest)) if first == decoder_start => rest,
        _ => labels,
    }
}

/// `<|N.NN|>`, Whisper's timestamp tokens.
fn is_timestamp(token: &str) -> bool {
    let Some(inner) = token.strip_prefix("<|").and_then(|t| t.strip_suffix("|>")) else {
        return false;
    };
    let Some((whole, fraction)) = inner.split_once('.') else {
        return false;
    };
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.len() == 2
        && fraction.chars().all(|c| c.is_ascii_digit())
}
