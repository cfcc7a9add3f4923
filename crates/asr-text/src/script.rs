//! Which metric fits a language: scripts written without spaces between words are
//! scored by character error rate, since their "words" are whole sentences.

/// True for characters of scripts usually written without spaces between words: Han,
/// Hiragana, Katakana, Thai, Lao, Khmer, Myanmar and Tibetan.
fn is_unspaced_script(c: char) -> bool {
    matches!(u32::from(c),
        0x3040..=0x30FF     // Hiragana, Katakana
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // half-width Katakana
        | 0x20000..=0x3134F // CJK extensions B..G
        | 0x0E00..=0x0EFF   // Thai, Lao
        | 0x0F00..=0x0FFF   // Tibetan
        | 0x1000..=0x109F   // Myanmar
        | 0x1780..=0x17FF   // Khmer
    )
}

/// True when most letters of `text` belong to scripts written without spaces (CJK,
/// Thai, ...), so that CER, not WER, is the meaningful metric.
pub fn prefers_cer(text: &str) -> bool {
    let (mut unspaced, mut letters) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        unspaced += usize::from(is_unspaced_script(c));
    }
    letters > 0 && unspaced * 2 > letters
}

#[cfg(test)]
mod tests {
    use super::prefers_cer;

    #[test]
    fn detects_unspaced_scripts() {
        assert!(prefers_cer("今天天气很好"));
        assert!(prefers_cer("これはペンです"));
        assert!(prefers_cer("สวัสดีครับ"));
        assert!(!prefers_cer("HELLO WORLD"));
        assert!(!prefers_cer("Привет мир"));
        assert!(!prefers_cer(""));
        assert!(!prefers_cer("123 !!"));
    }
}
