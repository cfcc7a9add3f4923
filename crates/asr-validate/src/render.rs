//! The human summary of a report: findings per code with examples, splits, duration
//! statistics and histogram, speakers, formats, vocabulary. Plain text, 100 columns.

use std::fmt::Write;

use crate::finding::{Code, Finding, Severity};
use crate::report::Report;
use crate::stats::Distribution;

/// How much of the report the summary shows.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Findings listed per code (the rest are counted; `--json` has all).
    pub examples_per_code: usize,
    /// Speakers listed (most utterances first).
    pub speakers: usize,
    /// Vocabulary characters listed (most frequent first); 0 lists all.
    pub vocab: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            examples_per_code: 3,
            speakers: 10,
            vocab: 0,
        }
    }
}

fn dist(d: &Option<Distribution>, unit: &str) -> String {
    match d {
        Some(d) => format!(
            "min {:.2}  p5 {:.2}  median {:.2}  mean {:.2}  p95 {:.2}  max {:.2}{unit}",
            d.min, d.p5, d.median, d.mean, d.p95, d.max
        ),
        None => "n/a".into(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn finding_line(out: &mut String, f: &Finding) {
    match (&f.id, f.path.is_some()) {
        (None, false) => {
            // Dataset-level: the message, then its examples.
            let _ = writeln!(out, "      {}", truncate(&f.message, 300));
        }
        (id, _) => {
            let _ = writeln!(
                out,
                "      {}  {}",
                id.as_deref().unwrap_or("-"),
                f.location()
            );
            let _ = writeln!(out, "        {}", truncate(&f.message, 300));
        }
    }
    for e in &f.examples {
        match &e.detail {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "        e.g. {}  {}  {}",
                    e.id,
                    e.path,
                    truncate(d, 80)
                );
            }
            None => {
                let _ = writeln!(out, "        e.g. {}  {}", e.id, e.path);
            }
        }
    }
}

/// Renders the terminal summary.
pub fn render(report: &Report, opts: &RenderOptions) -> String {
    let mut out = String::new();
    let s = &report.stats;
    write_header(&mut out, report);

    if !report.findings.is_empty() {
        let _ = writeln!(out, "\nFindings");
        for severity in [Severity::Error, Severity::Warning, Severity::Info] {
            for code in Code::ALL {
                let group: Vec<&Finding> = report
                    .findings
                    .iter()
                    .filter(|f| f.code == code && f.severity == severity)
                    .collect();
                if group.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "  {:<7}  {:<22} {:>6}  {}",
                    severity.as_str(),
                    code.as_str(),
                    group.len(),
                    code.describe()
                );
                for f in group.iter().take(opts.examples_per_code) {
                    finding_line(&mut out, f);
                }
                if group.len() > opts.examples_per_code {
                    let _ = writeln!(
                        out,
                        "      ... and {} more (--json FILE lists all)",
                        group.len() - opts.examples_per_code
                    );
                }
            }
        }
    }

    if !s.splits.is_empty() {
        let _ = writeln!(out, "\nSplits");
        let _ = writeln!(
            out,
            "  {:<24} {:<6} {:>8} {:>9} {:>9}",
            "split", "role", "utts", "hours", "speakers"
        );
        for sp in &s.splits {
            let _ = writeln!(
                out,
                "  {:<24} {:<6} {:>8} {:>9.3} {:>9}",
                truncate(&sp.split, 24),
                sp.role.as_deref().unwrap_or("-"),
                sp.utterances,
                sp.hours,
                sp.speakers
            );
        }
    }

    let _ = writeln!(out, "\nDuration (s)   {}", dist(&s.duration_s, ""));
    let max_count = s
        .duration_histogram
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(0);
    if max_count > 0 {
        for b in &s.duration_histogram {
            let label = match b.to_s {
                Some(to) => format!("{:>4}-{:<4}s", b.from_s, to),
                None => format!("{:>4}+    s", b.from_s),
            };
            let width = ((b.count as f64 / max_count as f64) * 40.0).round() as usize;
            let bar = if b.count > 0 {
                "#".repeat(width.max(1))
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {label} {:>7}  {bar}", b.count);
        }
    }
    let _ = writeln!(out, "Chars/second   {}", dist(&s.chars_per_second, ""));
    let _ = writeln!(out, "Chars/utt      {}", dist(&s.transcript_chars, ""));
    let _ = writeln!(out, "Words/utt      {}", dist(&s.transcript_words, ""));

    let kv = |m: &std::collections::BTreeMap<String, u64>, unit: &str| -> String {
        let mut v: Vec<(&String, &u64)> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(k, n)| {
                if k.as_str() == crate::stats::UNKNOWN {
                    format!("{k} x{n}")
                } else {
                    format!("{k}{unit} x{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "\nSample rates   {}", kv(&s.sample_rates_hz, " Hz"));
    let _ = writeln!(out, "Codecs         {}", kv(&s.codecs, ""));
    let _ = writeln!(out, "Channels       {}", kv(&s.channels, ""));

    if s.speaker_count > 0 {
        let shown = s.speakers.len().min(opts.speakers);
        let _ = writeln!(
            out,
            "\nSpeakers       {} (top {shown} by utterances)",
            s.speaker_count
        );
        for sp in s.speakers.iter().take(shown) {
            let _ = writeln!(
                out,
                "  {:<40} {:>6} utts {:>9.1} s",
                truncate(&sp.speaker, 40),
                sp.utterances,
                sp.seconds
            );
        }
    }

    write_vocabulary(&mut out, report, opts);
    out
}

/// The dataset line, what was not read, and the counts of utterances and findings.
fn write_header(out: &mut String, report: &Report) {
    let s = &report.stats;
    let mode = if report.dataset.deep {
        "deep: every file decoded"
    } else {
        "header-only"
    };
    let _ = writeln!(
        out,
        "{} ({}, {mode})",
        report.dataset.path, report.dataset.format
    );
    for path in &report.dataset.ignored {
        let _ = writeln!(
            out,
            "  not read: {path} (output of asr-data pack, not input)"
        );
    }
    let _ = writeln!(
        out,
        "  {} utterances in {} split(s), {:.2} h of audio ({} with a known duration)",
        s.utterances,
        s.splits.len(),
        s.total_hours,
        s.utterances_with_duration
    );
    let sum = &report.summary;
    let _ = writeln!(
        out,
        "  {} findings: {} errors, {} warnings, {} info; {} utterances have errors",
        report.findings.len(),
        sum.errors,
        sum.warnings,
        sum.infos,
        sum.utterances_with_errors
    );
}

/// The vocabulary, most frequent first, up to `opts.vocab` characters.
fn write_vocabulary(out: &mut String, report: &Report, opts: &RenderOptions) {
    let mut vocab: Vec<(&String, &u64)> = report.vocab.iter().collect();
    vocab.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        out,
        "\nVocabulary     {} characters (most frequent first)",
        vocab.len()
    );
    let limit = if opts.vocab == 0 {
        vocab.len()
    } else {
        opts.vocab.min(vocab.len())
    };
    let cells: Vec<String> = vocab
        .iter()
        .take(limit)
        .map(|(c, n)| {
            let shown = if c.chars().all(|ch| ch.is_control() || ch.is_whitespace()) {
                c.escape_default().to_string()
            } else {
                (*c).clone()
            };
            format!("{shown} {n}")
        })
        .collect();
    for chunk in cells.chunks(10) {
        let _ = writeln!(
            out,
            "  {}",
            chunk
                .iter()
                .map(|c| format!("{c:<10}"))
                .collect::<String>()
                .trim_end()
        );
    }
    if limit < vocab.len() {
        let _ = writeln!(out, "  ... {} more", vocab.len() - limit);
    }
}
