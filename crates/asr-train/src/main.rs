//! `asr-train`: train, evaluate and run wav2vec2 / HuBERT CTC models on shards made by
//! `asr-data pack`, and score transcripts. A thin layer over the `asr_train` library:
//! parse arguments, call one function, print, choose the exit code (0 success, 1 the
//! command failed, 2 bad usage or input).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use asr_model::whisper::Task;
use asr_train::commands::error_chain;
use asr_train::config::{PrecisionChoice, RunArgs};
use asr_train::score::Pairing;
use asr_train::shards::{ChecksumMode, Checksums};
use asr_train::transcribe::Windowing;
use asr_train::whisper::eval::MetricChoice;
use asr_train::whisper::transcribe::GenerationChoice;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "asr-train",
    version,
    about = "Fine-tune and evaluate CTC speech recognizers (wav2vec2 / HuBERT) on packed shards; evaluate and run Whisper"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on shards (see `--config` for a TOML file of the same options).
    Run {
        #[command(flatten)]
        args: Box<RunArgs>,
        /// Do not verify the shards' sha256 checksums against the manifest (verified by
        /// default on a background thread while training starts; sizes, row counts and
        /// vocabularies are checked either way).
        #[arg(long)]
        no_verify_shards: bool,
        /// Start N local training processes (data parallelism, one rank each), as
        /// `torchrun --standalone --nproc-per-node N` does: signals are passed on, the
        /// first failure stops the job and gives its exit status. Under torchrun or srun,
        /// leave it out (they start the ranks).
        #[arg(long, value_name = "N")]
        nproc_per_node: Option<usize>,
    },
    /// WER/CER and predictions of a model on shard splits.
    Eval {
        /// Shard folder written by `asr-data pack`.
        #[arg(long, value_name = "DIR")]
        shards: PathBuf,
        /// Hugging Face model folder (e.g. RUN/best), or a Hub id org/name[@revision].
        #[arg(long, value_name = "DIR|ORG/NAME")]
        model: PathBuf,
        /// Splits to evaluate, comma-separated [default: all].
        #[arg(long, value_delimiter = ',')]
        splits: Vec<String>,
        /// Write predictions_<split>.jsonl and final_results.json here.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// auto, cpu, cuda, cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Forward precision.
        #[arg(long, value_enum, default_value = "auto")]
        precision: PrecisionChoice,
        /// Padded audio seconds per batch.
        #[arg(long, default_value_t = 200.0)]
        batch_seconds: f64,
        /// libtorch threads, 1 to 1024 [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Whisper models: language code of the speech (en, zh, ...) [default: from
        /// generation_config.json; required for multilingual models without one].
        #[arg(long, value_name = "CODE")]
        language: Option<String>,
        /// Whisper models: transcribe or translate (to English) [default: from
        /// generation_config.json, else transcribe].
        #[arg(long, value_parser = parse_task)]
        task: Option<Task>,
        /// Whisper models: headline metric; auto picks CER for scripts written without
        /// spaces (Chinese, Japanese, Thai...) and WER otherwise.
        #[arg(long, value_enum, default_value = "auto")]
        metric: MetricChoice,
        /// Print the results as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Do not verify the shards' sha256 checksums against the manifest.
        #[arg(long)]
        no_verify_shards: bool,
    },
    /// Transcribe audio files: `<path>\t<text>` per file on stdout, in input order.
    Transcribe {
        /// Hugging Face model folder (e.g. RUN/best), or a Hub id org/name[@revision].
        #[arg(long, value_name = "DIR|ORG/NAME")]
        model: PathBuf,
        /// Audio files (FLAC, WAV, MP3, Ogg/Vorbis; any rate and channel count).
        #[arg(required = true, value_name = "AUDIO")]
        audio: Vec<PathBuf>,
        /// auto, cpu, cuda, cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Forward precision.
        #[arg(long, value_enum, default_value = "auto")]
        precision: PrecisionChoice,
        /// Padded audio seconds per batch.
        #[arg(long, default_value_t = 100.0)]
        batch_seconds: f64,
        /// libtorch threads, 1 to 1024 [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Files longer than this are decoded in overlapping windows of this length,
        /// so memory stays bounded (as transformers' pipeline chunk_length_s).
        #[arg(long, default_value_t = Windowing::default().chunk_length_s, value_name = "SECONDS")]
        chunk_length_s: f64,
        /// Context on each side of a window whose logits are dropped (as the pipeline's
        /// stride_length_s); windows advance by chunk - 2 x stride.
        #[arg(long, default_value_t = Windowing::default().stride_length_s, value_name = "SECONDS")]
        stride_length_s: f64,
        /// Whisper models: language code of the speech (en, zh, ...) [default: from
        /// generation_config.json; required for multilingual models without one].
        #[arg(long, value_name = "CODE")]
        language: Option<String>,
        /// Whisper models: transcribe or translate (to English) [default: from
        /// generation_config.json, else transcribe].
        #[arg(long, value_parser = parse_task)]
        task: Option<Task>,
    },
    /// Redraw RUN/training_curves.png from RUN/metrics.jsonl (e.g. of a run in progress,
    /// which draws it only at the end).
    Plot {
        /// The run's output folder.
        #[arg(value_name = "RUN")]
        run: PathBuf,
        /// Write the image here instead [default: RUN/training_curves.png].
        #[arg(long, value_name = "PNG")]
        out: Option<PathBuf>,
    },
    /// WER and CER of a hypothesis file against a reference file.
    Score {
        /// Reference transcripts: `id text` lines or one utterance per line.
        #[arg(long = "ref", value_name = "FILE")]
        reference: PathBuf,
        /// Hypothesis transcripts, in the same layout.
        #[arg(long = "hyp", value_name = "FILE")]
        hypothesis: PathBuf,
        /// How lines are paired.
        #[arg(long, value_enum, default_value = "auto")]
        pairing: Pairing,
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn parse_task(value: &str) -> Result<Task, String> {
    value.parse()
}

/// A failure and the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

fn failed(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: error.into(),
    }
}

fn train_failure(error: asr_train::trainer::TrainError) -> Failure {
    use asr_train::trainer::TrainError as E;
    match error {
        E::Config(_) | E::VocabMismatch { .. } | E::Device(_) => usage(error),
        _ => failed(error),
    }
}

/// Open a shard folder, its sha256 checksums verified in the background unless
/// `no_verify`.
fn open_shards(
    dir: &std::path::Path,
    no_verify: bool,
) -> Result<(asr_train::trainer::TrainData, Checksums), Failure> {
    let mode = if no_verify {
        ChecksumMode::Off
    } else {
        ChecksumMode::Background
    };
    asr_train::shards::open_shards_with(dir, mode)
        .with_context(|| format!("cannot open the shards in {}", dir.display()))
        .map_err(usage)
}

/// The outcome of a command that read shards: a checksum mismatch wins over what it
/// caused (a run stopped by it) and over success (a mismatch found after the last row
/// was read still fails the command).
fn settle<T>(
    outcome: Result<T, asr_train::trainer::TrainError>,
    checksums: &Checksums,
) -> Result<T, Failure> {
    let damaged = |problem: &str| failed(anyhow::anyhow!("shard checksum: {problem}"));
    match outcome {
        Ok(value) => checksums
            .wait()
            .map(|()| value)
            .map_err(|e| damaged(&e.to_string())),
        Err(error) => match checksums.failure() {
            Some(problem) => Err(damaged(problem)),
            None => Err(train_failure(error)),
        },
    }
}

/// `asr-train transcribe`: `<path>\t<text>` per file on stdout, errors on stderr; fails
/// when any file could not be transcribed.
fn transcribe(
    model: &std::path::Path,
    audio: &[PathBuf],
    options: &asr_train::commands::TranscribeOptions,
) -> Result<(), Failure> {
    let results = asr_train::commands::transcribe(model, audio, options).map_err(train_failure)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut errors = 0;
    for (path, result) in audio.iter().zip(results) {
        match result {
            Ok(text) => writeln!(out, "{}\t{text}", path.display()).map_err(failed)?,
            Err(e) => {
                errors += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if errors > 0 {
        return Err(failed(anyhow::anyhow!(
            "{errors} of {} files could not be transcribed",
            audio.len()
        )));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run {
            args,
            no_verify_shards,
            nproc_per_node,
        } => {
            if let Some(nproc) = nproc_per_node {
                return launch_workers(nproc);
            }
            let config = args.resolve().map_err(usage)?;
            let shards = config.shards.clone().ok_or_else(|| {
                usage(anyhow::anyhow!(
                    "no shards given: pass --shards DIR (or set shards in the --config file)"
                ))
            })?;
            let (data, checksums) = open_shards(&shards, no_verify_shards)?;
            let trained =
                asr_train::trainer::run(&config, data, asr_train::trainer::Hooks::default());
            settle(trained, &checksums)?;
            Ok(())
        }
        Command::Eval {
            shards,
            model,
            splits,
            out,
            device,
            precision,
            batch_seconds,
            threads,
            language,
            task,
            metric,
            json,
            no_verify_shards,
        } => {
            let (data, checksums) = open_shards(&shards, no_verify_shards)?;
            let options = asr_train::commands::EvalOptions {
                model,
                splits,
                out,
                device,
                precision,
                batch_seconds,
                threads,
                generation: GenerationChoice { language, task },
                metric,
            };
            let results = settle(
                asr_train::commands::eval_shards(&data, &options),
                &checksums,
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&results).map_err(failed)?
                );
            } else {
                print!("{}", asr_train::eval::split_table(&results.splits, false));
                for (split, result) in &results.splits {
                    if let Some(metric) = &result.metric {
                        let value = if metric == "cer" {
                            result.cer
                        } else {
                            result.wer
                        };
                        println!("{split}: {} {value:.4}", metric.to_uppercase());
                    }
                }
            }
            Ok(())
        }
        Command::Plot { run, out } => {
            let records =
                asr_train::metrics::read_metrics(&run.join("metrics.jsonl")).map_err(usage)?;
            let png = out.unwrap_or_else(|| run.join("training_curves.png"));
            let name = std::path::absolute(&run)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            asr_train::plot::draw_run_curves(&records, &name, &png).map_err(failed)?;
            println!("{}", png.display());
            Ok(())
        }
        Command::Transcribe {
            model,
            audio,
            device,
            precision,
            batch_seconds,
            threads,
            chunk_length_s,
            stride_length_s,
            language,
            task,
        } => {
            let options = asr_train::commands::TranscribeOptions {
                device,
                precision,
                batch_seconds,
                threads,
                windowing: Windowing {
                    chunk_length_s,
                    stride_length_s,
                },
                generation: GenerationChoice { language, task },
            };
            transcribe(&model, &audio, &options)
        }
        Command::Score {
            reference,
            hypothesis,
            pairing,
            json,
        } => {
            let report =
                asr_train::score::score_files(&reference, &hypothesis, pairing).map_err(usage)?;
            if json {
                println!("{}", serde_json::to_string(&report).map_err(failed)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
    }
}

/// `asr-train run --nproc-per-node N`: this process starts N workers with the same
/// arguments but that flag, and waits for them (see `asr_dist::launch`).
fn launch_workers(nproc: usize) -> Result<(), Failure> {
    if nproc == 0 {
        return Err(usage(anyhow::anyhow!(
            "--nproc-per-node must be at least 1"
        )));
    }
    let program = std::env::current_exe()
        .context("cannot find this program to start its workers")
        .map_err(failed)?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut given = std::env::args_os().skip(1);
    while let Some(arg) = given.next() {
        if arg == "--nproc-per-node" {
            given.next();
        } else if !arg.to_string_lossy().starts_with("--nproc-per-node=") {
            args.push(arg);
        }
    }
    let outcome = asr_dist::launch::run_local_workers(
        nproc,
        &program,
        &args,
        std::time::Duration::from_secs(30),
    )
    .map_err(failed)?;
    match outcome.first_failure {
        None => Ok(()),
        Some(failure) => Err(Failure {
            code: outcome.exit_code.clamp(1, 255) as u8,
            error: anyhow::anyhow!(
                "rank {} of {nproc} failed ({}); the other ranks were stopped",
                failure.rank,
                failure.status
            ),
        }),
    }
}

fn main() -> ExitCode {
    // CPU runtime settings (see asr_train::runtime): libgomp's spin count must be in
    // the environment before libtorch loads, hence a re-exec; malloc's in-process.
    asr_train::runtime::reexec_with_openmp_settings();
    // Opt-in: ~9% faster CPU steps for ~50% more peak memory (see the module docs).
    if std::env::var_os("ASR_KEEP_FREED_MEMORY").is_some_and(|v| v == "1") {
        asr_train::runtime::keep_freed_memory();
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            ExitCode::from(code)
        }
    }
}
