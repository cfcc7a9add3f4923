//! `asr-data merge SHARDS`: join the part manifests of `pack --part K/N` runs
//! (`asr_shards::merge_parts`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::out::outln;

/// Arguments of `asr-data merge`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Every part 0..N-1 must be present in SHARDS. Exit status: 0 merged, 2 otherwise."
)]
pub struct Args {
    /// Folder the parts were packed into (holds manifest-K-of-N.json files).
    pub shards: PathBuf,
}

/// Runs `asr-data merge`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let manifest = asr_shards::merge_parts(&args.shards)?;
    outln!(
        "merged into {}: {} rows, {:.2} h, {} skipped",
        args.shards.join(asr_shards::MANIFEST_FILE).display(),
        manifest.total_rows(),
        manifest.total_seconds() / 3600.0,
        manifest.skipped.total
    )?;
    for name in manifest.splits() {
        let s = &manifest.splits[name];
        outln!(
            "  {name:<10} {:>8} rows {:>4} shards",
            s.rows,
            s.shards.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
