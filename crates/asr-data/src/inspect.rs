//! `asr-data inspect SHARDS`: summary, checksum verification, a few rows decoded back to
//! text (`asr_shards::inspect`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::out::{out, outln};

/// Arguments of `asr-data inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 all shards verified, 1 a shard failed verification, 2 usage or I/O failure."
)]
pub struct Args {
    /// Folder written by `asr-data pack` (holds manifest.json).
    pub shards: PathBuf,
    /// Rows decoded back to text per split.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rows: usize,
    /// Print the report as JSON on stdout instead.
    #[arg(long)]
    pub json: bool,
}

/// Runs `asr-data inspect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = asr_shards::inspect(&args.shards, args.rows)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{report}")?;
    }
    Ok(if report.verify.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
