//! `asr-data`: validate, pack, inspect and merge speech corpora.
//!
//! A thin binary: each subcommand lives in its own module (`validate.rs`, ...) with its
//! clap `Args` and a `run(args) -> anyhow::Result<ExitCode>` that calls one library
//! function, prints, and picks the exit code. Adding a subcommand is a module, a variant
//! of [`Command`] and a match arm. Exit codes: 0 success, 1 the data has errors, 2 usage
//! or I/O failure (clap's own usage errors exit 2 too). Standard output goes through
//! [`out`], so a closed pipe (`| head`) ends the output quietly, not in a panic.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;
mod merge;
mod normalize_args;
mod out;
mod pack;
mod validate;

/// Speech corpora from disk to CTC training data.
#[derive(Debug, Parser)]
#[command(name = "asr-data", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a corpus: problems, vocabulary, duration statistics.
    Validate(validate::Args),
    /// Pack a corpus into 16 kHz Arrow shards with CTC labels.
    Pack(pack::Args),
    /// Summarize packed shards, verify checksums, decode sample rows.
    Inspect(inspect::Args),
    /// Join the part manifests of `pack --part K/N` runs.
    Merge(merge::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Pack(args) => pack::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Merge(args) => merge::run(args),
    };
    let result = result.and_then(|code| {
        out::flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes as one line, each cause once: a cause whose text the message
/// already holds (`path: No such file or directory (os error 2)` wrapping that same I/O
/// error) is not repeated, as `{:#}` would.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
