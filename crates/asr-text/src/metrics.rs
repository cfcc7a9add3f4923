//! Word and character error rates with substitution / deletion / insertion counts.
//!
//! The conventions are jiwer's (4.x), which most published numbers use:
//! - words are the whitespace-separated tokens of a transcript; characters are the
//!   characters of the transcript with leading and trailing whitespace removed (inner
//!   spaces count as characters);
//! - a corpus rate is the total number of edits over the total number of reference
//!   units (not the mean of per-utterance rates), as sclite computes it too;
//! - when there is no reference unit at all, the rate is the number of edits (0 when the
//!   hypothesis is empty as well), so an empty reference with a non-empty hypothesis
//!   is not a division by zero;
//! - among the alignments with the fewest edits, the counts are those of the alignment
//!   rapidfuzz's Levenshtein `editops` (which jiwer uses) recovers, so that S/D/I agree
//!   with jiwer's, not only their sum (checked against recorded jiwer outputs in
//!   `fixtures/text/jiwer_cases.jsonl`).

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// Edit counts of an alignment between a reference and a hypothesis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditCounts {
    /// Units equal in both.
    pub hits: u64,
    /// Reference units replaced by another unit.
    pub substitutions: u64,
    /// Reference units missing from the hypothesis.
    pub deletions: u64,
    /// Hypothesis units with no reference unit.
    pub insertions: u64,
}

impl EditCounts {
    /// Units in the reference: hits + substitutions + deletions.
    pub fn reference_len(&self) -> u64 {
        self.hits + self.substitutions + self.deletions
    }

    /// Units in the hypothesis: hits + substitutions + insertions.
    pub fn hypothesis_len(&self) -> u64 {
        self.hits + self.substitutions + self.insertions
    }

    /// Substitutions + deletions + insertions.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }

    /// Errors over reference units (a fraction: 0.25, not 25); see the module
    /// documentation for an empty reference.
    pub fn rate(&self) -> f64 {
        let reference = self.reference_len();
        if reference == 0 {
            self.errors() as f64
        } else {
            self.errors() as f64 / reference as f64
        }
    }
}

impl AddAssign for EditCounts {
    fn add_assign(&mut self, other: EditCounts) {
        self.hits += other.hits;
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
    }
}

/// Align two token sequences and count the edits (see the module documentation for
/// the tie-breaking).
fn align<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> EditCounts {
    let (m, n) = (reference.len(), hypothesis.len());
    // Common prefix and suffix are hits whatever the alignment; trimming them keeps
    // the quadratic table small for the usual nearly-right hypothesis.
    let prefix = reference
        .iter()
        .zip(hypothesis)
        .take_while(|(r, h)| r == h)
        .count();
    let suffix = reference[prefix..]
        .iter()
        .rev()
        .zip(hypothesis[prefix..].iter().rev())
        .take_while(|(r, h)| r == h)
        .count();
    let r = &reference[prefix..m - suffix];
    let h = &hypothesis[prefix..n - suffix];
    let mut counts = EditCounts {
        hits: (prefix + suffix) as u64,
        ..EditCounts::default()
    };
    let (rows, cols) = (r.len() + 1, h.len() + 1);
    // dist[i * cols + j]: edit distance between r[..i] and h[..j].
    let mut dist = vec![0u32; rows * cols];
    for (j, cell) in dist.iter_mut().enumerate().take(cols) {
        *cell = j as u32;
    }
    for i in 1..rows {
        dist[i * cols] = i as u32;
        for j in 1..cols {
            let substitute = dist[(i - 1) * cols + j - 1] + u32::from(r[i - 1] != h[j - 1]);
            let delete = dist[(i - 1) * cols + j] + 1;
            let insert = dist[i * cols + j - 1] + 1;
            dist[i * cols + j] = substitute.min(delete).min(insert);
        }
    }
    // Walk back from the end as rapidfuzz's bit-parallel `editops` recovery does: a
    // deletion whenever one lies on an optimal path; otherwise an insertion when the
    // diagonal step would cost more than staying in the reference column; otherwise
    // the diagonal (a hit or a substitution).
    let (mut i, mut j) = (r.len(), h.len());
    while i > 0 && j > 0 {
        let here = dist[i * cols + j];
        if dist[(i - 1) * cols + j] + 1 == here {
            counts.deletions += 1;
            i -= 1;
            continue;
        }
        let up = j - 1;
        if up > 0 && dist[i * cols + up] + 1 == dist[(i - 1) * cols + up] {
            counts.insertions += 1;
            j = up;
            continue;
        }
        if r[i - 1] == h[j - 1] {
            counts.hits += 1;
        } else {
            counts.substitutions += 1;
        }
        i -= 1;
        j -= 1;
    }
    counts.deletions += i as u64;
    counts.insertions += j as u64;
    counts
}

/// Word-level edits between a reference and a hypothesis transcript.
pub fn word_edits(reference: &str, hypothesis: &str) -> EditCounts {
    let r: Vec<&str> = reference.split_whitespace().collect();
    let h: Vec<&str> = hypothesis.split_whitespace().collect();
    align(&r, &h)
}

/// Character-level edits between a reference and a hypothesis transcript.
pub fn char_edits(reference: &str, hypothesis: &str) -> EditCounts {
    let r: Vec<char> = reference.trim().chars().collect();
    let h: Vec<char> = hypothesis.trim().chars().collect();
    align(&r, &h)
}

/// Corpus-level word and character error rates, accumulated utterance by utterance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRates {
    /// Word edits, summed over utterances.
    pub words: EditCounts,
    /// Character edits, summed over utterances.
    pub chars: EditCounts,
    /// Utterances added.
    pub utterances: u64,
}

impl ErrorRates {
    /// Add one utterance.
    pub fn add(&mut self, reference: &str, hypothesis: &str) {
        self.words += word_edits(reference, hypothesis);
        self.chars += char_edits(reference, hypothesis);
        self.utterances += 1;
    }

    /// Word error rate (total word edits over total reference words).
    pub fn wer(&self) -> f64 {
        self.words.rate()
    }

    /// Character error rate (total character edits over total reference characters).
    pub fn cer(&self) -> f64 {
        self.chars.rate()
    }
}

impl AddAssign for ErrorRates {
    fn add_assign(&mut self, other: ErrorRates) {
        self.words += other.words;
        self.chars += other.chars;
        self.utterances += other.utterances;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(hits: u64, s: u64, d: u64, i: u64) -> EditCounts {
        EditCounts {
            hits,
            substitutions: s,
            deletions: d,
            insertions: i,
        }
    }

    #[test]
    fn textbook_cases() {
        assert_eq!(word_edits("a b c", "a b c"), counts(3, 0, 0, 0));
        assert_eq!(word_edits("a b c", "a x c"), counts(2, 1, 0, 0));
        assert_eq!(word_edits("a b c", "a c"), counts(2, 0, 1, 0));
        assert_eq!(word_edits("a b c", "a b c d"), counts(3, 0, 0, 1));
        assert!((word_edits("hello world", "hello duck").rate() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn empty_sides_follow_jiwer() {
        assert_eq!(word_edits("", ""), counts(0, 0, 0, 0));
        assert_eq!(word_edits("", "").rate(), 0.0);
        assert_eq!(word_edits("", "a b").rate(), 2.0);
        assert_eq!(word_edits("a b", "").rate(), 1.0);
        assert_eq!(char_edits(" a ", "a"), counts(1, 0, 0, 0));
    }

    /// Values printed by jiwer 4.0.0 (`process_words` / `process_characters`).
    #[test]
    fn tie_breaking_matches_jiwer() {
        let cases = [
            ("a b", "b c", counts(0, 2, 0, 0)),
            ("a b c", "b c d", counts(2, 0, 1, 1)),
            ("a b", "c a", counts(1, 0, 1, 1)),
            ("x y z", "y x z", counts(2, 0, 1, 1)),
            ("a a b", "a b b", counts(2, 1, 0, 0)),
            ("the cat sat", "cat sat on", counts(2, 0, 1, 1)),
            ("a b c d", "a x c", counts(2, 1, 1, 0)),
            ("a", "b c", counts(0, 1, 0, 1)),
            ("b c", "a", counts(0, 1, 1, 0)),
        ];
        for (r, h, want) in cases {
            assert_eq!(word_edits(r, h), want, "{r:?} vs {h:?}");
        }
        assert_eq!(char_edits("ab c", "ab  d"), counts(3, 1, 0, 1));
    }

    #[test]
    fn corpus_rate_is_total_edits_over_total_words() {
        let mut rates = ErrorRates::default();
        rates.add("a b", "a b");
        rates.add("", "c");
        assert_eq!(rates.utterances, 2);
        assert!((rates.wer() - 0.5).abs() < 1e-12);
    }
}
