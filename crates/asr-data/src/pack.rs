//! `asr-data pack DATASET --out SHARDS`: 16 kHz audio and CTC labels in size-capped Arrow
//! shards (the work is `asr_pack::pack`; this module parses flags, shows progress and
//! prints the summary).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use asr_corpus::{read_corpus, Format, ReadOptions};
use asr_pack::{pack, PackError, PackOptions, Progress, SplitPlan};
use asr_shards::{AudioDtype, PartSpec};
use asr_text::{UnkPolicy, Vocab};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::out::outln;
use crate::validate::FormatArg;

/// Arguments of `asr-data pack`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: SHARDS/<split>/shard-NNNNN.arrow (Arrow IPC streams, schemas/shard-format.md), SHARDS/skipped.jsonl, SHARDS/normalized.jsonl (rows whose text normalization changed: id, before, after), SHARDS/manifest.json (written last, with the normalization policy).\nRe-running with the same inputs resumes an interrupted pack and gives byte-identical files; shards whose rows' inputs (text, audio file size and times) changed are rewritten. A finished pack (manifest written) is not resumed: packing into it again needs --overwrite.\nExit status: 0 packed, 1 transcripts with characters outside the vocabulary under --unk error (nothing written), 2 usage or I/O failure."
)]
pub struct Args {
    /// Dataset: anything `asr-data validate` reads.
    pub dataset: PathBuf,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Corpus layout.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Manifest column (CSV) or key (JSON-lines) holding the audio path [default: detected].
    #[arg(long, value_name = "NAME")]
    pub audio_col: Option<String>,
    /// Manifest column or key holding the transcript [default: detected].
    #[arg(long, value_name = "NAME")]
    pub text_col: Option<String>,
    /// Vocabulary to encode with (HF vocab.json, e.g. the pretrained model's) [default:
    /// built from the packed transcripts: [PAD], [UNK], |, characters].
    #[arg(long, value_name = "FILE")]
    pub vocab: Option<PathBuf>,
    /// Characters outside the vocabulary: error (stop, list every row), map (to the
    /// unknown token) or drop. Affected rows are listed in unknown_chars.jsonl.
    #[arg(long, value_name = "POLICY", default_value = "error", value_parser = parse_unk)]
    pub unk: UnkPolicy,
    /// Seeded splits instead of the dataset's, e.g. train=0.9,dev=0.05,test=0.05 (stable
    /// per id).
    #[arg(long, value_name = "NAME=RATIO,...")]
    pub split: Option<String>,
    /// Seed of --split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leave out clips shorter than this many seconds (too_short).
    #[arg(long, value_name = "SECONDS")]
    pub min_duration: Option<f64>,
    /// Leave out clips longer than this many seconds (too_long).
    #[arg(long, value_name = "SECONDS")]
    pub max_duration: Option<f64>,
    /// File of ids to leave out: one id per line (spaces inside an id are kept; text after
    /// a tab is ignored; blank lines and # comments skipped), e.g. asr-train's
    /// quarantine.txt. Ids that match no row are listed in a warning.
    #[arg(long, value_name = "FILE")]
    pub exclude: Option<PathBuf>,
    /// Shard size cap, e.g. 256MB, 1GiB, 500000 (bytes).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub shard_size: u64,
    /// Stored sample type: i16 (int16, default) or f32 (float32).
    #[arg(long, value_name = "DTYPE", default_value = "i16", value_parser = parse_dtype)]
    pub audio_dtype: AudioDtype,
    /// Pack only part K of N (K from 0), for Slurm arrays / Kubernetes indexed Jobs; then
    /// `asr-data merge SHARDS`. Without --vocab every part builds the same vocabulary, from
    /// all parts' transcripts.
    #[arg(long, value_name = "K/N", value_parser = parse_part)]
    pub part: Option<PartSpec>,
    /// Decoding threads, 1 to 1024 [default: one per core].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=asr_pack::MAX_THREADS as i64))]
    pub threads: Option<u16>,
    /// Utterances decoded ahead of the writer (bounds memory).
    #[arg(long, value_name = "N", default_value_t = asr_pack::DEFAULT_IN_FLIGHT)]
    pub in_flight: usize,
    /// Rewrite everything instead of resuming an interrupted pack.
    #[arg(long)]
    pub no_resume: bool,
    /// Replace the finished pack in --out (without it, packing into a folder that holds a
    /// finished pack is refused). Shards of rows whose inputs are unchanged are kept
    /// unless --no-resume.
    #[arg(long)]
    pub overwrite: bool,
    /// Print where the wall time went (planning, decoding and writing, finishing; the
    /// writer's busy and waiting time; the decoding threads' busy time), on stderr.
    #[arg(long)]
    pub timings: bool,
    /// Text normalization (recorded in the manifest; the rows it changed are listed in
    /// normalized.jsonl with their text before and after).
    #[command(flatten)]
    pub normalize: crate::normalize_args::NormalizeArgs,
}

fn format_of(arg: FormatArg) -> Option<Format> {
    match arg {
        FormatArg::Auto => None,
        FormatArg::Librispeech => Some(Format::LibriSpeech),
        FormatArg::Commonvoice => Some(Format::CommonVoice),
        FormatArg::Csv => Some(Format::Csv),
        FormatArg::Jsonl => Some(Format::Jsonl),
    }
}

fn parse_unk(s: &str) -> Result<UnkPolicy, String> {
    s.parse()
}

fn parse_dtype(s: &str) -> Result<AudioDtype, String> {
    s.parse()
}

fn parse_part(s: &str) -> Result<PartSpec, String> {
    s.parse()
}

/// Parses `256MB`, `1GiB`, `500k`, `1000` (bytes). Decimal units are powers of 1000,
/// binary (`KiB`, `MiB`, `GiB`) powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 256MB or 1GiB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("invalid size unit {other:?} in {s:?}")),
    };
    let bytes = (value * factor).round();
    if !(1.0..=1e15).contains(&bytes) {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}

/// A progress bar with files/s and the real-time factor (audio seconds per second), on a
/// terminal only.
struct Bar {
    bar: ProgressBar,
    audio_s: std::sync::Mutex<f64>,
    start: std::time::Instant,
}

impl Progress for Bar {
    fn start(&self, total_rows: u64) {
        self.bar.set_length(total_rows);
    }

    fn row_done(&self, audio_s: f64) {
        let mut total = self.audio_s.lock().unwrap_or_else(|e| e.into_inner());
        *total += audio_s;
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.inc(1);
        self.bar.set_message(format!(
            "{:.0} files/s  {:.0}x real time",
            self.bar.position() as f64 / elapsed,
            *total / elapsed
        ));
    }
}

/// Warns (stderr) about `--exclude` ids that name no row of the corpus: a typo, or a list
/// made for another dataset, would otherwise exclude nothing without a word.
fn warn_unmatched_excludes(
    path: &std::path::Path,
    exclude: &std::collections::HashSet<String>,
    corpus: &asr_corpus::Corpus,
) {
    let known: std::collections::HashSet<&str> =
        corpus.utterances.iter().map(|u| u.id.as_str()).collect();
    let mut unmatched: Vec<&str> = exclude
        .iter()
        .map(String::as_str)
        .filter(|id| !known.contains(id))
        .collect();
    if unmatched.is_empty() {
        return;
    }
    unmatched.sort_unstable();
    let shown: Vec<String> = unmatched
        .iter()
        .take(10)
        .map(|id| format!("{id:?}"))
        .collect();
    eprintln!(
        "warning: {} of the {} ids in --exclude {} match no row of the dataset: {}{}",
        unmatched.len(),
        exclude.len(),
        path.display(),
        shown.join(", "),
        if unmatched.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    );
}

/// The library's options from the command line (`--exclude` ids matching no row are
/// warned about here).
fn pack_options(args: &Args, corpus: &asr_corpus::Corpus) -> anyhow::Result<PackOptions> {
    let mut options = PackOptions::new(&args.out);
    options.shard_size_bytes = args.shard_size;
    options.audio_dtype = args.audio_dtype;
    options.unk = args.unk;
    options.normalize = args.normalize.spec();
    options.threads = args.threads.map_or(0, usize::from);
    options.in_flight = args.in_flight;
    options.part = args.part;
    options.resume = !args.no_resume;
    options.overwrite = args.overwrite;
    if let Some(path) = &args.vocab {
        options.vocab = Some(
            Vocab::from_json_file(path)
                .with_context(|| format!("reading --vocab {}", path.display()))?,
        );
    }
    if let Some(spec) = &args.split {
        options.split = SplitPlan::parse_ratios(spec, args.seed).map_err(anyhow::Error::msg)?;
    }
    if let Some(min) = args.min_duration {
        options.min_duration_s = min;
    }
    if let Some(max) = args.max_duration {
        options.max_duration_s = max;
    }
    if let Some(path) = &args.exclude {
        options.exclude = asr_pack::read_exclude_file(path)?;
        warn_unmatched_excludes(path, &options.exclude, corpus);
    }
    Ok(options)
}

/// A progress bar on a terminal, hidden otherwise.
fn progress_bar() -> Bar {
    let bar = ProgressBar::new(0);
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} packing [{bar:30}] {pos}/{len} files  {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    Bar {
        bar,
        audio_s: std::sync::Mutex::new(0.0),
        start: std::time::Instant::now(),
    }
}

/// Runs `asr-data pack`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let read_options = ReadOptions {
        format: format_of(args.format),
        audio_col: args.audio_col.clone(),
        text_col: args.text_col.clone(),
    };
    let corpus = read_corpus(&args.dataset, &read_options)?;
    let options = pack_options(&args, &corpus)?;
    let progress = progress_bar();
    let result = pack(&corpus, &options, &progress);
    progress.bar.finish_and_clear();
    let summary = match result {
        Ok(summary) => summary,
        Err(PackError::UnknownCharacters { rows }) => {
            eprintln!(
                "error: {} transcripts have characters outside the vocabulary (--unk error); nothing was written:",
                rows.len()
            );
            for row in &rows {
                eprintln!(
                    "  {}: {}   ({})",
                    row.id,
                    row.characters.join(" "),
                    row.normalized
                );
            }
            eprintln!("hint: --unk map encodes them as the unknown token, --unk drop removes them; or use a vocabulary that has them");
            return Ok(ExitCode::from(1));
        }
        Err(PackError::NothingToPack { total, skipped }) => {
            eprintln!("error: nothing to pack: all {total} rows were left out:");
            for row in skipped.iter().take(20) {
                eprintln!("  {} [{}] {}", row.id, row.code, row.message);
            }
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    print_counts(&args, &summary)?;
    print_notes(&args, &summary)?;
    Ok(ExitCode::SUCCESS)
}

/// The summary's first lines: rows and hours per split, the vocabulary, rows in and
/// skipped.
fn print_counts(args: &Args, summary: &asr_pack::PackSummary) -> anyhow::Result<()> {
    let m = &summary.manifest;
    outln!(
        "packed {} rows, {:.2} h of 16 kHz {} audio, into {}",
        m.total_rows(),
        m.total_seconds() / 3600.0,
        m.audio_dtype.name(),
        args.out.display()
    )?;
    let width = m.splits().iter().map(|name| name.len()).max().unwrap_or(0);
    for name in m.splits() {
        let s = &m.splits[name];
        outln!(
            "  {name:<width$} {:>8} rows {:>9.3} h {:>4} shards {:>10.1} MB",
            s.rows,
            s.seconds / 3600.0,
            s.shards.len(),
            s.bytes as f64 / 1e6
        )?;
    }
    outln!(
        "vocabulary: {} tokens{}",
        m.vocab().map(|v| v.len()).unwrap_or(0),
        if args.vocab.is_some() {
            " (--vocab)"
        } else if m.part.is_some() {
            " (built from the data of all parts, the same in every part)"
        } else {
            " (built from the data)"
        }
    )?;
    let packed: u64 = m.splits.values().map(|s| s.rows).sum();
    // An unreadable file or folder is one row in and one skipped entry.
    outln!(
        "rows in: {} = {packed} packed + {} skipped",
        summary.rows_in,
        summary.skipped.len()
    )?;
    if summary.skipped.is_empty() {
        outln!("skipped: none")?;
    } else {
        let counts: Vec<String> = summary
            .skipped_by_code()
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        outln!(
            "skipped: {} rows ({}), listed in {}",
            summary.skipped.len(),
            counts.join(", "),
            args.out.join(&m.skipped.file).display()
        )?;
    }
    Ok(())
}

/// The summary's last lines: normalization, unknown characters, resume, speed, timings
/// and the merge hint.
fn print_notes(args: &Args, summary: &asr_pack::PackSummary) -> anyhow::Result<()> {
    let m = &summary.manifest;
    if let Some(n) = &m.normalization {
        match &n.file {
            Some(file) => outln!(
                "normalization {}: {} rows changed, listed with their text before and after in {}",
                n.preset,
                n.changed_rows,
                args.out.join(file).display()
            )?,
            None => outln!("normalization {}: no row changed", n.preset)?,
        }
    }
    if !summary.unknown_chars.is_empty() {
        outln!(
            "characters outside the vocabulary ({}): {} rows, listed in unknown_chars.jsonl",
            args.unk,
            summary.unknown_chars.len()
        )?;
    }
    if summary.replaced_finished {
        outln!(
            "replaced the finished pack in {} (--overwrite); {} rows kept, their inputs unchanged",
            args.out.display(),
            summary.resumed_rows
        )?;
    } else if summary.resumed_rows > 0 {
        outln!(
            "resumed: {} rows kept from an interrupted run (same inputs and options)",
            summary.resumed_rows
        )?;
    }
    outln!(
        "decoded {} files, {:.1} audio-s in {:.1} s ({:.0}x real time)",
        summary.decoded_rows,
        summary.decoded_audio_s,
        summary.wall_s,
        summary.decoded_audio_s / summary.wall_s.max(1e-9)
    )?;
    if args.timings {
        let t = &summary.timings;
        eprintln!(
            "timings: plan {:.3} s, decode+write {:.3} s (writer busy {:.3} s, waiting {:.3} s; \
             {} decoding threads busy {:.3} thread-s), finish {:.3} s",
            t.plan_s,
            t.decode_write_s,
            t.writer_busy_s,
            t.writer_wait_s,
            t.threads,
            t.decode_busy_s,
            t.finish_s
        );
    }
    if let Some(part) = m.part {
        outln!(
            "part {part}: join the parts with `asr-data merge {}`",
            args.out.display()
        )?;
    }
    Ok(())
}
