//! Text files as lines, with the problems of each line (invalid UTF-8, binary data)
//! reported instead of failing the whole file.

use std::path::Path;

use crate::{Effect, IssueKind, ReadIssue};

/// Why one line is not text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LineProblem {
    /// Not UTF-8; `byte` is the 1-based column of the first bad byte.
    InvalidUtf8 { byte: usize },
    /// A control character (NUL and friends) that no transcript holds.
    Binary { byte: usize, value: u32 },
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineProblem::InvalidUtf8 { byte } => {
                write!(
                    f,
                    "invalid UTF-8 at byte {byte} (is the file in another encoding?)"
                )
            }
            LineProblem::Binary { byte, value } => {
                write!(
                    f,
                    "binary data: control character U+{value:04X} at byte {byte}"
                )
            }
        }
    }
}

/// Splits `bytes` into lines on `\n` (dropping a trailing `\r` and a leading UTF-8 byte
/// order mark), each with its 1-based number and either its text or its problem. A final
/// line without a newline is a line; the empty string after a final newline is not.
pub(crate) fn split_lines(bytes: &[u8]) -> impl Iterator<Item = (u64, Result<&str, LineProblem>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !empty)
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (i as u64 + 1, line_text(line))
        })
}

/// The text of one line, or why it is not text.
pub(crate) fn line_text(line: &[u8]) -> Result<&str, LineProblem> {
    let text = std::str::from_utf8(line).map_err(|e| LineProblem::InvalidUtf8 {
        byte: e.valid_up_to() + 1,
    })?;
    if let Some((i, c)) = text
        .char_indices()
        .find(|&(_, c)| (c.is_control() && c != '\t') || c == '\u{FEFF}')
    {
        return Err(LineProblem::Binary {
            byte: i + 1,
            value: u32::from(c),
        });
    }
    Ok(text)
}

/// Collects line-level `unreadable_transcript` issues for one file. Lines that are input
/// rows ([`LineIssues::push_row`]) are all kept, each one a row that pack must list;
/// other lines (metadata tables) keep the first few and summarise the rest so a binary
/// file does not bury the report.
pub(crate) struct LineIssues<'a> {
    path: &'a Path,
    reported: usize,
    suppressed: usize,
}

/// Line issues reported one by one per file before the rest are summarised.
const MAX_LINE_ISSUES_PER_FILE: usize = 20;

impl<'a> LineIssues<'a> {
    pub(crate) fn new(path: &'a Path) -> LineIssues<'a> {
        LineIssues {
            path,
            reported: 0,
            suppressed: 0,
        }
    }

    /// An input row that could not become an utterance (always recorded, with
    /// [`Effect::RowSkipped`]).
    pub(crate) fn push_row(
        &mut self,
        issues: &mut Vec<ReadIssue>,
        id: Option<String>,
        line: u64,
        message: String,
    ) {
        issues.push(
            ReadIssue::new(
                IssueKind::UnreadableTranscript,
                id,
                self.path,
                Some(line),
                format!("{message}; the row is skipped"),
            )
            .with_effect(Effect::RowSkipped),
        );
    }

    /// A line that is not an input row (a metadata table's): the first few are recorded.
    pub(crate) fn push(
        &mut self,
        issues: &mut Vec<ReadIssue>,
        id: Option<String>,
        line: u64,
        message: String,
    ) {
        if self.reported < MAX_LINE_ISSUES_PER_FILE {
            self.reported += 1;
            issues.push(ReadIssue::new(
                IssueKind::UnreadableTranscript,
                id,
                self.path,
                Some(line),
                message,
            ));
        } else {
            self.suppressed += 1;
        }
    }

    pub(crate) fn finish(self, issues: &mut Vec<ReadIssue>) {
        if self.suppressed > 0 {
            issues.push(ReadIssue::new(
                IssueKind::UnreadableTranscript,
                None,
                self.path,
                None,
                format!(
                    "{} more unreadable lines in this file (first {} listed); is it a text file?",
                    self.suppressed, self.reported
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_crlf_bom_and_problems() {
        let got: Vec<_> = split_lines(b"\xEF\xBB\xBFa b\r\nc\xFFd\n\ne\x00f").collect();
        assert_eq!(got[0], (1, Ok("a b")));
        assert_eq!(got[1], (2, Err(LineProblem::InvalidUtf8 { byte: 2 })));
        assert_eq!(got[2], (3, Ok("")));
        assert_eq!(got[3], (4, Err(LineProblem::Binary { byte: 2, value: 0 })));
        assert_eq!(got.len(), 4);
        assert_eq!(split_lines(b"").count(), 0);
        assert_eq!(split_lines(b"x\n").count(), 1);
    }
}
