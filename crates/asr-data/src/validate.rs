//! `asr-data validate DATASET`: read a corpus in any supported layout, check it, print a
//! summary, optionally write the JSON report and a CTC vocabulary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use asr_corpus::{read_corpus, Format, ReadOptions};
use asr_validate::{render, validate, RenderOptions, ValidateOptions};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::out::{out, outln};

/// Corpus layout on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Detect from the path (default).
    Auto,
    /// LibriSpeech tree (`*.trans.txt`).
    Librispeech,
    /// Common Voice release folder (`clips/` + TSVs).
    Commonvoice,
    /// CSV/TSV manifest(s).
    Csv,
    /// JSON-lines manifest(s).
    Jsonl,
}

impl FormatArg {
    fn format(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Librispeech => Some(Format::LibriSpeech),
            FormatArg::Commonvoice => Some(Format::CommonVoice),
            FormatArg::Csv => Some(Format::Csv),
            FormatArg::Jsonl => Some(Format::Jsonl),
        }
    }
}

/// Arguments of `asr-data validate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 no errors (warnings allowed), 1 the data has errors, 2 usage or I/O failure."
)]
pub struct Args {
    /// Dataset: a LibriSpeech root or subset, a Common Voice release folder, a CSV/TSV or
    /// JSON-lines manifest, or a folder of manifests.
    pub dataset: PathBuf,
    /// Corpus layout.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Manifest column (CSV) or key (JSON-lines) holding the audio path [default: detected].
    #[arg(long, value_name = "NAME")]
    pub audio_col: Option<String>,
    /// Manifest column or key holding the transcript [default: detected].
    #[arg(long, value_name = "NAME")]
    pub text_col: Option<String>,
    /// Decode every file: silence, clipping, truncation, corrupt frames, duplicate audio.
    #[arg(long)]
    pub deep: bool,
    /// Write the full report as JSON (schemas/validate-report.schema.json). Refused when
    /// FILE is one of the files read (the manifest, a transcript, an audio file).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the corpus's characters as a CTC vocab.json (HF Wav2Vec2CTCTokenizer format).
    /// Refused, like --json, when FILE is one of the files read.
    #[arg(long, value_name = "FILE")]
    pub vocab_out: Option<PathBuf>,
    /// Clips shorter than this many seconds are `too_short`.
    #[arg(long, value_name = "SECONDS", default_value_t = ValidateOptions::default().min_duration_s)]
    pub min_duration: f64,
    /// Clips longer than this many seconds are `too_long`.
    #[arg(long, value_name = "SECONDS", default_value_t = ValidateOptions::default().max_duration_s)]
    pub max_duration: f64,
    /// Findings listed per code in the summary (the JSON report has all).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub examples: usize,
    /// Print the time spent reading, probing/decoding, checking (stderr), excluding
    /// process start-up.
    #[arg(long)]
    pub timings: bool,
    /// Only the counts line and the result, no statistics.
    #[arg(long, short)]
    pub quiet: bool,
    /// Text normalization: the same options as `pack`, so that the findings, statistics
    /// and --vocab-out preview what pack will store.
    #[command(flatten)]
    pub normalize: crate::normalize_args::NormalizeArgs,
}

/// Runs `asr-data validate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let read_opts = ReadOptions {
        format: args.format.format(),
        audio_col: args.audio_col.clone(),
        text_col: args.text_col.clone(),
    };
    let corpus = read_corpus(&args.dataset, &read_opts)?;
    let read_s = start.elapsed().as_secs_f64();
    check_outputs(&args, &corpus)?;

    let opts = ValidateOptions {
        deep: args.deep,
        min_duration_s: args.min_duration,
        max_duration_s: args.max_duration,
        normalize: args.normalize.spec().policy(None),
        ..ValidateOptions::default()
    };
    let bar = progress_bar(corpus.utterances.len() as u64, args.deep);
    let (report, timings) = validate(&corpus, &opts, &|n| bar.inc(n))?;
    bar.finish_and_clear();

    let start = Instant::now();
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json_pretty() + "\n")
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    if let Some(path) = &args.vocab_out {
        report
            .ctc_vocab()
            .write_json(path)
            .with_context(|| format!("cannot write the vocabulary to {}", path.display()))?;
    }
    let write_s = start.elapsed().as_secs_f64();

    if args.quiet {
        outln!(
            "{}: {} utterances, {} errors, {} warnings, {} info",
            report.dataset.path,
            report.stats.utterances,
            report.summary.errors,
            report.summary.warnings,
            report.summary.infos
        )?;
    } else {
        out!(
            "{}",
            render(
                &report,
                &RenderOptions {
                    examples_per_code: args.examples,
                    ..RenderOptions::default()
                }
            )
        )?;
    }
    if let Some(path) = &args.json {
        outln!("\nJSON report: {}", path.display())?;
    }
    if let Some(path) = &args.vocab_out {
        outln!(
            "Vocabulary: {} ({} tokens)",
            path.display(),
            report.ctc_vocab().len()
        )?;
    }
    let spec = args.normalize.spec();
    if !spec.is_default() {
        let preset_only = spec
            == asr_text::NormalizeSpec {
                preset: spec.preset,
                ..asr_text::NormalizeSpec::default()
            };
        outln!(
            "Text normalization: findings and vocabulary are of the text `pack --normalize {}`{} stores",
            spec.preset,
            if preset_only { "" } else { " with the same options" }
        )?;
    }
    let code = if report.has_errors() { 1 } else { 0 };
    outln!(
        "\nResult: {} -> exit {code}",
        if report.has_errors() {
            format!(
                "{} errors in {} utterances",
                report.summary.errors, report.summary.utterances_with_errors
            )
        } else {
            "no errors".to_owned()
        }
    )?;
    if args.timings {
        let files = report.stats.utterances as f64;
        let work = read_s + timings.audio_s + timings.checks_s + timings.stats_s;
        let audio_s = report.stats.total_hours * 3600.0;
        eprintln!(
            "timings: read {:.4} s, {} {:.4} s, checks {:.4} s, stats {:.4} s, write {:.4} s; work {:.4} s = {:.0} files/s, {:.0} audio-s/s",
            read_s,
            if args.deep { "decode" } else { "probe" },
            timings.audio_s,
            timings.checks_s,
            timings.stats_s,
            write_s,
            work,
            files / work.max(1e-9),
            audio_s / work.max(1e-9)
        );
    }
    Ok(ExitCode::from(code))
}

/// Refuses `--json` or `--vocab-out` paths that name a file this run reads (the dataset's
/// manifest, a transcript file, an audio file) or each other: writing the report there
/// would destroy an input. Checked before validating, so nothing is written.
fn check_outputs(args: &Args, corpus: &asr_corpus::Corpus) -> anyhow::Result<()> {
    let outputs = [("--json", &args.json), ("--vocab-out", &args.vocab_out)];
    for (option, path) in outputs {
        let Some(path) = path else { continue };
        if let Some(input) = input_at(path, &args.dataset, corpus) {
            anyhow::bail!(
                "{option} {}: that is {}, an input of this run, and writing there would destroy it; choose another path",
                path.display(),
                input.display()
            );
        }
    }
    if let (Some(json), Some(vocab)) = (&args.json, &args.vocab_out) {
        if json == vocab || same_file(json, vocab) {
            anyhow::bail!(
                "--json and --vocab-out both name {}: give them different paths",
                json.display()
            );
        }
    }
    Ok(())
}

/// The input file `path` is (the same file, whatever the spelling or links), if any.
fn input_at<'a>(
    path: &Path,
    dataset: &'a Path,
    corpus: &'a asr_corpus::Corpus,
) -> Option<&'a Path> {
    if !path.exists() {
        return None; // a new file is not an input
    }
    if same_file(path, dataset) {
        return Some(dataset);
    }
    if let Some(read) = corpus.files_read.iter().find(|f| same_file(path, f)) {
        return Some(read);
    }
    // Audio files: only those with the same name are compared (a stat each).
    let name = path.file_name()?;
    corpus
        .utterances
        .iter()
        .map(|u| u.audio_path.as_path())
        .filter(|audio| audio.file_name() == Some(name))
        .find(|audio| same_file(path, audio))
}

/// True when `a` and `b` are the same existing file (device and inode on Unix; the
/// canonical paths elsewhere).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (pipes, CI, files).
fn progress_bar(total: u64, deep: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let verb = if deep { "decoding" } else { "probing" };
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{verb} [{{bar:40}}] {{pos}}/{{len}} files  {{rate}}  eta {{eta}}"
    )) {
        bar.set_style(style.progress_chars("=> ").with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} files/s", state.per_sec());
            },
        ));
    }
    bar
}
