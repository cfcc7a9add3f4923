//! The text normalization options `validate` and `pack` share, so that `validate
//! --normalize X` previews exactly what `pack --normalize X` will store.

use asr_text::{CaseFold, IgnoreRegex, NormalizeSpec, Preset, UnicodeForm};

/// `--normalize PRESET` and the options that override its choices.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Text normalization")]
pub struct NormalizeArgs {
    /// Normalization preset. none: NFC and whitespace only (pack also folds case and
    /// apostrophes to a one-case --vocab); upper: English CTC (upper case, punctuation
    /// removed, apostrophes kept inside words, dashes split words); lower: the same in
    /// lower case (Common Voice / Hugging Face recipes); cjk: NFKC (full-width to
    /// half-width), punctuation of both widths removed, Latin kept and upper-cased.
    /// Digits and symbols ($, €) are never removed or spelled out: validate reports them.
    #[arg(long, value_name = "PRESET", default_value = "none", value_parser = parse_preset)]
    pub normalize: Preset,
    /// Case folding instead of the preset's: upper, lower or keep.
    #[arg(long, value_name = "CASE", value_parser = parse_case)]
    pub case: Option<CaseFold>,
    /// Unicode form instead of the preset's: nfc, or nfkc (also folds full-width letters,
    /// digits and marks to half-width).
    #[arg(long, value_name = "FORM", value_parser = parse_unicode)]
    pub unicode: Option<UnicodeForm>,
    /// Characters to remove instead of the preset's punctuation, e.g. ',?.!;:"“”'
    /// (Hugging Face's chars_to_ignore; spaces in the list are ignored). Removed characters
    /// leave nothing behind; '' removes none.
    #[arg(long, value_name = "CHARS")]
    pub chars_to_ignore: Option<String>,
    /// Also remove every match of this regular expression (Hugging Face's
    /// chars_to_ignore_regex; Rust regex syntax), e.g. '\[[a-z]+\]' for noise tags.
    #[arg(long, value_name = "REGEX", value_parser = IgnoreRegex::new)]
    pub ignore_regex: Option<IgnoreRegex>,
}

impl NormalizeArgs {
    /// The library's normalization request.
    pub fn spec(&self) -> NormalizeSpec {
        NormalizeSpec {
            preset: self.normalize,
            case: self.case,
            unicode: self.unicode,
            ignore_chars: self.chars_to_ignore.clone(),
            ignore_regex: self.ignore_regex.clone(),
        }
    }
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

fn parse_case(s: &str) -> Result<CaseFold, String> {
    s.parse()
}

fn parse_unicode(s: &str) -> Result<UnicodeForm, String> {
    s.parse()
}
