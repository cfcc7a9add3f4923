//! Transcript text for CTC speech recognition: normalization, vocabularies in the
//! Hugging Face `vocab.json` format, label encoding, greedy CTC decoding, frame
//! arithmetic, and word/character error rates.
//!
//! This crate has no audio and no libtorch in it: the data side (`asr-data`) and the
//! model side (`asr-model`, `asr-train`) share it so that both encode and score text
//! the same way.

mod ctc;
mod error;
mod metrics;
mod normalize;
mod script;
mod vocab;

pub use ctc::{ctc_min_frames, ctc_min_frames_text, wav2vec2_num_frames, SAMPLES_PER_FRAME};
pub use error::{EncodeError, TextError};
pub use metrics::{char_edits, word_edits, EditCounts, ErrorRates};
pub use normalize::{
    is_apostrophe, is_ignorable_punctuation, normalize, CaseFold, IgnoreRegex, NormalizePolicy,
    NormalizeSpec, Preset, UnicodeForm,
};
pub use script::prefers_cer;
pub use vocab::{LetterCase, Prepared, UnkPolicy, Vocab, VocabDiff};
