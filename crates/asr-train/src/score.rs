//! `asr-train score`: WER and CER of a hypothesis file against a reference file.
//!
//! Two file layouts are read:
//! - **Kaldi** `id text` lines (`1089-134686-0000 HE HOPED THERE WOULD BE STEW`), paired
//!   by id in whatever order the two files list them; a line holding only an id is an
//!   empty transcript (a decoder that produced nothing);
//! - **lines**: one utterance per line, paired by line number; an empty line is an
//!   empty transcript.
//!
//! [`Pairing::Auto`] picks Kaldi when, in both files, every line's first token is
//! unique, looks like an utterance id (holds a digit, `-`, `_` or `.`, as LibriSpeech,
//! Common Voice and most Kaldi ids do) and the two files list the same ids. When the
//! first tokens are unique in both files and look like ids (in both files, or in one
//! when neither file is a single line), but the two files list different ids, it is an
//! error naming the ids missing on each side: pairing by line would score the ids as
//! words. Otherwise lines. Pass
//! `--pairing kaldi` or `--pairing lines` to decide instead.
//!
//! A trailing newline at the end of a file ends the last line, it does not add an empty
//! utterance; Windows line ends (`\r\n`) are accepted. Text is scored as it is (no case
//! folding, no punctuation removal), with jiwer's conventions (see `asr_text`): words
//! are separated by whitespace, characters are counted after trimming, a corpus rate is
//! total edits over total reference units, and an empty reference scores the number of
//! inserted units.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use asr_text::{EditCounts, ErrorRates};
use serde::{Deserialize, Serialize};

/// How reference and hypothesis lines are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pairing {
    /// Kaldi when both files look like `id text` lines with the same ids, else lines.
    #[default]
    Auto,
    /// `id text` lines paired by id.
    Kaldi,
    /// One utterance per line, paired by line number.
    Lines,
}

impl fmt::Display for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pairing::Auto => "auto",
            Pairing::Kaldi => "kaldi",
            Pairing::Lines => "lines",
        })
    }
}

/// Scoring failed: a file could not be read or the two files do not pair up.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not UTF-8 text.
    #[error("{path}:{line}: not valid UTF-8 text")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The first line (1-based) that is not UTF-8.
        line: usize,
    },
    /// In lines pairing, the two files have different numbers of lines.
    #[error(
        "{reference} has {reference_lines} lines but {hypothesis} has {hypothesis_lines}: \
         one-utterance-per-line files are paired by line number (hint: for `id text` \
         lines pass --pairing kaldi)"
    )]
    LineCountMismatch {
        /// The reference file.
        reference: PathBuf,
        /// Its line count.
        reference_lines: usize,
        /// The hypothesis file.
        hypothesis: PathBuf,
        /// Its line count.
        hypothesis_lines: usize,
    },
    /// In Kaldi pairing, a line has no id.
    #[error("{path}:{line}: empty line where an `id text` line was expected")]
    MissingId {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
    },
    /// In Kaldi pairing, an id appears twice in one file.
    #[error("{path}:{line}: id {id:?} already appeared on line {first_line}")]
    DuplicateId {
        /// The file.
        path: PathBuf,
        /// The line of the second occurrence (1-based).
        line: usize,
        /// The line of the first occurrence (1-based).
        first_line: usize,
        /// The id.
        id: String,
    },
    /// In auto pairing, both files look like `id text` lines but their ids differ.
    #[error(
        "{reference} and {hypothesis} look like `id text` files, but their ids differ: \
         ids of the reference missing from the hypothesis: {}; ids of the hypothesis \
         missing from the reference: {} (hint: make both files list the same ids, or pass \
         --pairing lines if they hold one utterance per line, whose first words are text)",
        id_list(missing_in_hypothesis),
        id_list(missing_in_reference)
    )]
    IdsDiffer {
        /// The reference file.
        reference: PathBuf,
        /// The hypothesis file.
        hypothesis: PathBuf,
        /// Reference ids the hypothesis lacks.
        missing_in_hypothesis: MissingIds,
        /// Hypothesis ids the reference lacks.
        missing_in_reference: MissingIds,
    },
    /// In Kaldi pairing, an id is in one file only.
    #[error("{path}:{line}: id {id:?} has no line in {other}")]
    UnpairedId {
        /// The file holding the id.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The id.
        id: String,
        /// The file that lacks it.
        other: PathBuf,
    },
}

/// The ids of both files, where they differ: how many, and the first few in file order.
type MissingIds = (usize, Vec<String>);

/// The result of scoring: corpus-level word and character error rates with S/D/I.
///
/// Serialized by `asr-train score --json` (schema: `schemas/score.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// Word error rate: word edits over reference words (a fraction).
    pub wer: f64,
    /// Character error rate: character edits over reference characters (a fraction).
    pub cer: f64,
    /// Substituted words.
    pub substitutions: u64,
    /// Deleted words (in the reference, missing from the hypothesis).
    pub deletions: u64,
    /// Inserted words (in the hypothesis only).
    pub insertions: u64,
    /// Correct words.
    pub hits: u64,
    /// Words in the references.
    pub reference_words: u64,
    /// Words in the hypotheses.
    pub hypothesis_words: u64,
    /// Substituted characters.
    pub char_substitutions: u64,
    /// Deleted characters.
    pub char_deletions: u64,
    /// Inserted characters.
    pub char_insertions: u64,
    /// Characters in the references (inner spaces included).
    pub reference_chars: u64,
    /// Utterance pairs scored.
    pub utterances: u64,
    /// Utterances whose hypothesis differs from the reference (sentence error count).
    pub utterances_with_errors: u64,
    /// How the lines were paired (`kaldi` or `lines`).
    pub pairing: Pairing,
}

impl ScoreReport {
    /// The report of accumulated rates.
    pub fn from_rates(rates: &ErrorRates, utterances_with_errors: u64, pairing: Pairing) -> Self {
        let w: EditCounts = rates.words;
        let c: EditCounts = rates.chars;
        ScoreReport {
            wer: rates.wer(),
            cer: rates.cer(),
            substitutions: w.substitutions,
            deletions: w.deletions,
            insertions: w.insertions,
            hits: w.hits,
            reference_words: w.reference_len(),
            hypothesis_words: w.hypothesis_len(),
            char_substitutions: c.substitutions,
            char_deletions: c.deletions,
            char_insertions: c.insertions,
            reference_chars: c.reference_len(),
            utterances: rates.utterances,
            utterances_with_errors,
            pairing,
        }
    }
}

impl fmt::Display for ScoreReport {
    /// The human summary: one line per rate, then counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "WER {:.4}  ({} errors / {} reference words: {} substitutions, {} deletions, {} insertions)",
            self.wer,
            self.substitutions + self.deletions + self.insertions,
            self.reference_words,
            self.substitutions,
            self.deletions,
            self.insertions
        )?;
        writeln!(
            f,
            "CER {:.4}  ({} errors / {} reference characters: {} substitutions, {} deletions, {} insertions)",
            self.cer,
            self.char_substitutions + self.char_deletions + self.char_insertions,
            self.reference_chars,
            self.char_substitutions,
            self.char_deletions,
            self.char_insertions
        )?;
        write!(
            f,
            "{} utterances ({} with errors), paired by {}",
            self.utterances,
            self.utterances_with_errors,
            match self.pairing {
                Pairing::Kaldi => "id",
                _ => "line",
            }
        )
    }
}

/// One line of a transcript file.
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    text: &'a str,
}

fn read_text(path: &Path) -> Result<String, ScoreError> {
    let bytes = std::fs::read(path).map_err(|source| ScoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ScoreError::NotUtf8 {
            path: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
        }
    })
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<Line<'_>> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| Line {
            number: i + 1,
            text: l.strip_suffix('\r').unwrap_or(l),
        })
        .collect();
    // A final newline ends the last line; it does not start an empty utterance.
    if text.ends_with('\n') || text.is_empty() {
        lines.pop();
    }
    lines
}

/// Split an `id text` line into its id and its transcript (possibly empty).
fn split_id(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let id_end = line.find(char::is_whitespace).unwrap_or(line.len());
    if id_end == 0 {
        return None;
    }
    Some((&line[..id_end], line[id_end..].trim()))
}

fn looks_like_id(token: &str) -> bool {
    token
        .chars()
        .any(|c| c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The first tokens of a file's lines, in order, when each line has one and none
/// repeats (the file could be `id text` lines), with whether every one looks like an
/// utterance id ([`looks_like_id`]); `None` otherwise.
fn first_tokens<'a>(lines: &[Line<'a>]) -> Option<(Vec<&'a str>, bool)> {
    let mut seen = HashSet::with_capacity(lines.len());
    let mut ids = Vec::with_capacity(lines.len());
    for line in lines {
        let (id, _) = split_id(line.text)?;
        if !seen.insert(id) {
            return None;
        }
        ids.push(id);
    }
    let id_like = !ids.is_empty() && ids.iter().all(|id| looks_like_id(id));
    Some((ids, id_like))
}

/// Which pairing [`Pairing::Auto`] chooses for these two files (see the module
/// documentation); an error when they look like `id text` files whose ids differ.
fn detect(
    reference: &[Line<'_>],
    reference_path: &Path,
    hypothesis: &[Line<'_>],
    hypothesis_path: &Path,
) -> Result<Pairing, ScoreError> {
    if reference.is_empty() {
        return Ok(Pairing::Lines);
    }
    let (Some((r, r_like)), Some((h, h_like))) =
        (first_tokens(reference), first_tokens(hypothesis))
    else {
        return Ok(Pairing::Lines);
    };
    let (r_set, h_set): (HashSet<&str>, HashSet<&str>) =
        (r.iter().copied().collect(), h.iter().copied().collect());
    if r_set == h_set {
        return Ok(if r_like {
            Pairing::Kaldi
        } else {
            Pairing::Lines
        });
    }
    // Both could be `id text` files and their first tokens look like ids (in both, or
    // in one when neither file is a single line, where a hyphenated first word is
    // common): pairing by line would score the ids as words.
    let several_lines = reference.len() > 1 && hypothesis.len() > 1;
    if (r_like && h_like) || ((r_like || h_like) && several_lines) {
        let missing = |ids: &[&str], other: &HashSet<&str>| -> (usize, Vec<String>) {
            let all: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| !other.contains(id))
                .collect();
            let first = all
                .iter()
                .take(MISSING_IDS_SHOWN)
                .map(|id| id.to_string())
                .collect();
            (all.len(), first)
        };
        return Err(ScoreError::IdsDiffer {
            reference: reference_path.to_path_buf(),
            hypothesis: hypothesis_path.to_path_buf(),
            missing_in_hypothesis: missing(&r, &h_set),
            missing_in_reference: missing(&h, &r_set),
        });
    }
    Ok(Pairing::Lines)
}

/// Ids listed per side in [`ScoreError::IdsDiffer`].
const MISSING_IDS_SHOWN: usize = 5;

fn id_list((count, first): &(usize, Vec<String>)) -> String {
    let more = if *count > first.len() { ", ..." } else { "" };
    format!("{count} ({}{more})", first.join(", "))
}

/// A reference/hypothesis pair of transcripts, with the utterance id when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredPair {
    /// The utterance id (Kaldi pairing) or the line number (lines pairing).
    pub id: String,
    /// The reference transcript.
    pub reference: String,
    /// The hypothesis transcript.
    pub hypothesis: String,
}

/// Pair the lines of two transcript files (see the module documentation).
pub fn pair_files(
    reference_path: &Path,
    hypothesis_path: &Path,
    pairing: Pairing,
) -> Result<(Vec<ScoredPair>, Pairing), ScoreError> {
    let reference_text = read_text(reference_path)?;
    let hypothesis_text = read_text(hypothesis_path)?;
    let reference = split_lines(&reference_text);
    let hypothesis = split_lines(&hypothesis_text);
    let pairing = match pairing {
        Pairing::Auto => detect(&reference, reference_path, &hypothesis, hypothesis_path)?,
        other => other,
    };
    let pairs = match pairing {
        Pairing::Kaldi => pair_by_id(&reference, reference_path, &hypothesis, hypothesis_path)?,
        _ => {
            if reference.len() != hypothesis.len() {
                return Err(ScoreError::LineCountMismatch {
                    reference: reference_path.to_path_buf(),
                    reference_lines: reference.len(),
                    hypothesis: hypothesis_path.to_path_buf(),
                    hypothesis_lines: hypothesis.len(),
                });
            }
            reference
                .iter()
                .zip(&hypothesis)
                .map(|(r, h)| ScoredPair {
                    id: r.number.to_string(),
                    reference: r.text.to_string(),
                    hypothesis: h.text.to_string(),
                })
                .collect()
        }
    };
    Ok((pairs, pairing))
}

fn index_by_id<'a>(
    lines: &[Line<'a>],
    path: &Path,
) -> Result<HashMap<&'a str, (usize, &'a str)>, ScoreError> {
    let mut map = HashMap::with_capacity(lines.len());
    for line in lines {
        let Some((id, text)) = split_id(line.text) else {
            return Err(ScoreError::MissingId {
                path: path.to_path_buf(),
                line: line.number,
            });
        };
        if let Some(&(first_line, _)) = map.get(id) {
            return Err(ScoreError::DuplicateId {
                path: path.to_path_buf(),
                line: line.number,
                first_line,
                id: id.to_string(),
            });
        }
        map.insert(id, (line.number, text));
    }
    Ok(map)
}

fn pair_by_id(
    reference: &[Line<'_>],
    reference_path: &Path,
    hypothesis: &[Line<'_>],
    hypothesis_path: &Path,
) -> Result<Vec<ScoredPair>, ScoreError> {
    let refs = index_by_id(reference, reference_path)?;
    let hyps = index_by_id(hypothesis, hypothesis_path)?;
    // Hypothesis ids with no reference are an error too, reported at their line.
    let mut extra: Vec<(&str, usize)> = hyps
        .iter()
        .filter(|(id, _)| !refs.contains_key(*id))
        .map(|(id, (line, _))| (*id, *line))
        .collect();
    extra.sort_by_key(|&(_, line)| line);
    if let Some(&(id, line)) = extra.first() {
        return Err(ScoreError::UnpairedId {
            path: hypothesis_path.to_path_buf(),
            line,
            id: id.to_string(),
            other: reference_path.to_path_buf(),
        });
    }
    let mut pairs = Vec::with_capacity(reference.len());
    for line in reference {
        let Some((id, text)) = split_id(line.text) else {
            continue; // index_by_id already rejected it
        };
        let Some(&(_, hypothesis_text)) = hyps.get(id) else {
            return Err(ScoreError::UnpairedId {
                path: reference_path.to_path_buf(),
                line: line.number,
                id: id.to_string(),
                other: hypothesis_path.to_path_buf(),
            });
        };
        pairs.push(ScoredPair {
            id: id.to_string(),
            reference: text.to_string(),
            hypothesis: hypothesis_text.to_string(),
        });
    }
    Ok(pairs)
}

/// Score pairs of transcripts.
pub fn score_pairs(pairs: &[ScoredPair], pairing: Pairing) -> ScoreReport {
    let mut rates = ErrorRates::default();
    let mut with_errors = 0;
    for pair in pairs {
        let before = rates;
        rates.add(&pair.reference, &pair.hypothesis);
        if rates.words.errors() != before.words.errors()
            || rates.chars.errors() != before.chars.errors()
        {
            with_errors += 1;
        }
    }
    ScoreReport::from_rates(&rates, with_errors, pairing)
}

/// Score a hypothesis file against a reference file (`asr-train score`).
pub fn score_files(
    reference: &Path,
    hypothesis: &Path,
    pairing: Pairing,
) -> Result<ScoreReport, ScoreError> {
    let (pairs, pairing) = pair_files(reference, hypothesis, pairing)?;
    Ok(score_pairs(&pairs, pairing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn score(reference: &str, hypothesis: &str, pairing: Pairing) -> ScoreReport {
        let dir = tempfile::tempdir().unwrap();
        let r = write(dir.path(), "ref.txt", reference);
        let h = write(dir.path(), "hyp.txt", hypothesis);
        score_files(&r, &h, pairing).unwrap()
    }

    #[test]
    fn hand_computed_lines() {
        // Line 1: "the cat sat" vs "the cat sat down": 1 insertion.
        // Line 2: "on the mat" vs "on a mat": 1 substitution.
        // Line 3: "hello" vs "": 1 deletion.
        // 3 errors over 7 reference words.
        let report = score(
            "the cat sat\non the mat\nhello\n",
            "the cat sat down\non a mat\n\n",
            Pairing::Auto,
        );
        assert_eq!(report.pairing, Pairing::Lines);
        assert_eq!(report.reference_words, 7);
        assert_eq!(
            (report.substitutions, report.deletions, report.insertions),
            (1, 1, 1)
        );
        assert!((report.wer - 3.0 / 7.0).abs() < 1e-12);
        // Characters: "the cat sat" (11) + "on the mat" (10) + "hello" (5) = 26.
        // Line 1: 5 inserted (" down"); line 2: "the"->"a": 1 sub + 2 del; line 3: 5 del.
        assert_eq!(report.reference_chars, 26);
        assert_eq!(
            (
                report.char_substitutions,
                report.char_deletions,
                report.char_insertions
            ),
            (1, 7, 5)
        );
        assert!((report.cer - 13.0 / 26.0).abs() < 1e-12);
        assert_eq!(report.utterances, 3);
        assert_eq!(report.utterances_with_errors, 3);
    }

    #[test]
    fn kaldi_pairs_by_id_in_any_order() {
        let report = score(
            "utt-1 A B C\nutt-2 D E\n",
            "utt-2 D E\nutt-1 A X C\n",
            Pairing::Auto,
        );
        assert_eq!(report.pairing, Pairing::Kaldi);
        assert_eq!(report.reference_words, 5);
        assert_eq!(report.substitutions, 1);
        assert!((report.wer - 0.2).abs() < 1e-12);
        assert_eq!(report.utterances_with_errors, 1);
    }

    #[test]
    fn kaldi_line_with_only_an_id_is_an_empty_hypothesis() {
        let report = score("u_1 A B\nu_2 C\n", "u_1 A B\nu_2\n", Pairing::Kaldi);
        assert_eq!(report.deletions, 1);
        assert!((report.wer - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn empty_references_follow_jiwer() {
        // jiwer: an empty reference with an empty hypothesis is 0, with words it
        // counts the insertions (the rate is the number of edits when no reference
        // unit exists).
        let report = score("\n", "\n", Pairing::Lines);
        assert_eq!(report.wer, 0.0);
        assert_eq!(report.cer, 0.0);
        let report = score("\n", "a b\n", Pairing::Lines);
        assert_eq!(report.insertions, 2);
        assert_eq!(report.wer, 2.0);
        assert_eq!(report.cer, 3.0);
        // Mixed corpus: the empty reference adds its insertions to the total.
        let report = score("a b\n\n", "a b\nc\n", Pairing::Lines);
        assert!((report.wer - 0.5).abs() < 1e-12);
        assert_eq!(report.reference_words, 2);
    }

    #[test]
    fn kaldi_files_with_different_ids_are_an_error_naming_them() {
        // The case: auto pairing used to fall back to lines and score the ids
        // as words (WER 0.30).
        let dir = tempfile::tempdir().unwrap();
        let r = write(
            dir.path(),
            "ref.txt",
            "a HELLO WORLD\nb GOOD DAY\nc SEE YOU\n",
        );
        let h = write(
            dir.path(),
            "hyp.txt",
            "u1 HELLO WORLD\nu2 GOOD DAY\nu3 SEE YOU\n",
        );
        let err = score_files(&r, &h, Pairing::Auto).unwrap_err().to_string();
        for part in [
            "ref.txt",
            "hyp.txt",
            "3 (a, b, c)",
            "3 (u1, u2, u3)",
            "--pairing lines",
        ] {
            assert!(err.contains(part), "{part:?} in {err}");
        }
        // Id-like on both sides, one utterance missing from the hypothesis: named, in
        // file order, at most five per side.
        let ids: Vec<String> = (0..8).map(|i| format!("utt-{i} WORD")).collect();
        let r = write(dir.path(), "ref.txt", &(ids.join("\n") + "\n"));
        let h = write(dir.path(), "hyp.txt", &(ids[..1].join("\n") + "\n"));
        let err = score_files(&r, &h, Pairing::Auto).unwrap_err().to_string();
        assert!(
            err.contains("7 (utt-1, utt-2, utt-3, utt-4, utt-5, ...)") && err.contains(": 0 ()"),
            "{err}"
        );
        // Pairing by line stays available when asked for.
        let report = score_files(&r, &r, Pairing::Lines).unwrap();
        assert_eq!(report.wer, 0.0);
        // Same ids in another order still pair by id.
        let h = write(
            dir.path(),
            "hyp.txt",
            "u3 SEE YOU\nu1 HELLO WORLD\nu2 GOOD DAY\n",
        );
        let r = write(
            dir.path(),
            "ref.txt",
            "u1 HELLO WORLD\nu2 GOOD DAY\nu3 SEE YOU\n",
        );
        let report = score_files(&r, &h, Pairing::Auto).unwrap();
        assert_eq!((report.pairing, report.wer), (Pairing::Kaldi, 0.0));
    }

    #[test]
    fn text_looking_lines_are_not_taken_for_ids() {
        // The first words are unique and equal in both files, but are words, not ids.
        let report = score(
            "hello world\ngoodbye moon\n",
            "hello word\ngoodbye moon\n",
            Pairing::Auto,
        );
        assert_eq!(report.pairing, Pairing::Lines);
        assert_eq!(report.reference_words, 4);
        assert_eq!(report.substitutions, 1);
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        let report = score("a b\r\nc d", "a b\r\nc x\n", Pairing::Lines);
        assert_eq!(report.utterances, 2);
        assert_eq!(report.substitutions, 1);
    }

    #[test]
    fn mismatches_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let r = write(dir.path(), "ref.txt", "a\nb\n");
        let h = write(dir.path(), "hyp.txt", "a\n");
        let err = score_files(&r, &h, Pairing::Lines).unwrap_err().to_string();
        assert!(
            err.contains("has 2 lines") && err.contains("has 1"),
            "{err}"
        );

        let r = write(dir.path(), "ref.txt", "u1 a\nu2 b\n");
        let h = write(dir.path(), "hyp.txt", "u1 a\nu3 b\n");
        let err = score_files(&r, &h, Pairing::Kaldi).unwrap_err().to_string();
        assert!(err.contains("hyp.txt:2") && err.contains("\"u3\""), "{err}");

        let h = write(dir.path(), "hyp.txt", "u1 a\nu1 b\n");
        let err = score_files(&r, &h, Pairing::Kaldi).unwrap_err().to_string();
        assert!(err.contains("hyp.txt:2") && err.contains("line 1"), "{err}");

        let h = write(dir.path(), "hyp.txt", "u1 a\n");
        let err = score_files(&r, &h, Pairing::Kaldi).unwrap_err().to_string();
        assert!(err.contains("ref.txt:2") && err.contains("\"u2\""), "{err}");

        std::fs::write(dir.path().join("bad.txt"), b"ok\n\xff\xfe\n").unwrap();
        let err = score_files(&dir.path().join("bad.txt"), &h, Pairing::Lines)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.txt:2"), "{err}");
    }

    #[test]
    fn agrees_with_recorded_jiwer_outputs() {
        // Each fixture line: reference, hypothesis, words/chars as [hits, S, D, I] and
        // the per-utterance wer/cer, as printed by jiwer (tools/make-text-fixtures.py).
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text/jiwer_cases.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let (mut refs, mut hyps) = (String::new(), String::new());
        let (mut word_errors, mut word_refs) = (0u64, 0u64);
        let mut checked = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let r = case["reference"].as_str().unwrap();
            let h = case["hypothesis"].as_str().unwrap();
            if r.contains('\n') || h.contains('\n') {
                continue;
            }
            let report = score(&format!("{r}\n"), &format!("{h}\n"), Pairing::Lines);
            let counts = |key: &str| -> Vec<u64> {
                case[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            };
            let words = counts("words");
            assert_eq!(
                vec![
                    report.hits,
                    report.substitutions,
                    report.deletions,
                    report.insertions
                ],
                words,
                "{case}"
            );
            let chars = counts("chars");
            assert_eq!(
                vec![
                    report.reference_chars - report.char_substitutions - report.char_deletions,
                    report.char_substitutions,
                    report.char_deletions,
                    report.char_insertions
                ],
                chars,
                "{case}"
            );
            assert!(
                (report.wer - case["wer"].as_f64().unwrap()).abs() < 1e-9,
                "{case}"
            );
            assert!(
                (report.cer - case["cer"].as_f64().unwrap()).abs() < 1e-9,
                "{case}"
            );
            refs.push_str(&format!("{r}\n"));
            hyps.push_str(&format!("{h}\n"));
            word_errors += words[1] + words[2] + words[3];
            word_refs += words[0] + words[1] + words[2];
            checked += 1;
        }
        assert!(
            checked > 100,
            "only {checked} jiwer cases read from {}",
            path.display()
        );
        // The whole file as one corpus: total edits over total reference words.
        let corpus = score(&refs, &hyps, Pairing::Lines);
        assert_eq!(corpus.utterances, checked);
        assert!((corpus.wer - word_errors as f64 / word_refs as f64).abs() < 1e-12);
    }
}
