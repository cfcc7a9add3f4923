//! The data loader alone, without a model: shards read, rows decoded, audio normalized
//! and padded into the f32 batches the training step takes, as `asr-train run`'s loader
//! thread makes them (`Batch::assemble` over the epoch plan of `plan_epoch`). Prints one
//! JSON line per run with the audio seconds prepared per second of wall time and per
//! second of CPU time (the per-core rate, which other load on the machine does not
//! inflate).
//!
//!     cargo run --release -p asr-train --example loader_bench -- --shards DIR \
//!         [--split NAME] [--threads 1] [--batch-seconds 40] [--epochs 10] [--phases]
//!
//! - `--threads N` runs N loaders side by side, each taking the next batch of the plan
//!   (as N ranks' loader threads do on one machine).
//! - The first epoch is a warm-up (the shard pages come into the page cache) and is not
//!   counted; the shards' background sha256 check is off (`--no-verify-shards`), as it
//!   runs once per shard and not per epoch.
//! - `--phases` adds a second, single-threaded pass that times the parts of a batch
//!   separately: `load` (the row read from the memory map: Arrow decode, int16 to f32,
//!   label check), `normalize` (zero mean, unit variance) and the rest (`pad`: padded
//!   buffer, labels, ids).
//! - Pinned memory is a CUDA matter: on the CPU the batch is ready when its `Vec<f32>` is.
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use asr_train::data::UtteranceSource;
use asr_train::data::{normalize_into, plan_epoch, Batch, Batching, DataPosition};
use asr_train::shards::{open_shards_with, ChecksumMode};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// Shard folder (`asr-data pack` output).
    #[arg(long)]
    shards: PathBuf,
    /// Split to read (default: the first split whose role is train).
    #[arg(long)]
    split: Option<String>,
    /// Loader threads side by side.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Padded audio per batch, seconds (as `asr-train run --batch-seconds`).
    #[arg(long, default_value_t = 40.0)]
    batch_seconds: f64,
    /// Epochs timed after the warm-up epoch.
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Also time the parts of a batch (load, normalize, pad) in a one-thread pass.
    #[arg(long)]
    phases: bool,
}

/// The batches of `epochs`, one after the other, as lists of utterance positions.
fn plans(
    source: &dyn UtteranceSource,
    batch_seconds: f64,
    epochs: std::ops::Range<u64>,
) -> Vec<Vec<usize>> {
    let lengths: Vec<u64> = source.index().iter().map(|u| u.num_samples).collect();
    let batching = Batching {
        batch_seconds,
        max_utterances: None,
        shuffle: true,
        seed: 42,
        rank: 0,
        world_size: 1,
        // wav2vec2-style zero-mean unit-variance normalization, the loader's main cost.
        normalize: true,
    };
    epochs
        .flat_map(|epoch| plan_epoch(&lengths, &batching, epoch))
        .collect()
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Assemble every batch of `plan` with `threads` threads; (audio seconds, wall s, CPU s).
fn run(
    source: &dyn UtteranceSource,
    plan: &[Vec<usize>],
    threads: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let next = AtomicUsize::new(0);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let audio = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<f64> {
                    let mut audio = 0.0;
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        let Some(members) = plan.get(b) else {
                            return Ok(audio);
                        };
                        let batch =
                            Batch::assemble(source, members, DataPosition::default(), 1, true)?;
                        audio += batch.audio_s;
                        std::hint::black_box(batch);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("loader thread panicked"))
            .sum::<anyhow::Result<f64>>()
    })?;
    Ok((audio, started.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

/// One thread, the parts of each batch timed apart: (load, normalize, whole batch).
fn phases(
    source: &dyn UtteranceSource,
    plan: &[Vec<usize>],
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let (mut load, mut normalize, mut whole) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut scratch = Vec::new();
    for members in plan {
        let started = Instant::now();
        let rows = members
            .iter()
            .map(|&i| source.load(i))
            .collect::<Result<Vec<_>, _>>()?;
        load += started.elapsed();
        let started = Instant::now();
        for row in &rows {
            scratch.resize(row.audio.len(), 0.0);
            normalize_into(&row.audio, &mut scratch);
            std::hint::black_box(&scratch);
        }
        normalize += started.elapsed();
        let started = Instant::now();
        std::hint::black_box(Batch::assemble(
            source,
            members,
            DataPosition::default(),
            1,
            true,
        )?);
        whole += started.elapsed();
    }
    Ok((load, normalize, whole))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (data, _checksums) = open_shards_with(&cli.shards, ChecksumMode::Off)?;
    let split = match &cli.split {
        Some(split) => split.clone(),
        None => data
            .roles
            .iter()
            .find(|(_, role)| role.as_str() == "train")
            .map(|(split, _)| split.clone())
            .context("no split has the role train: pass --split NAME")?,
    };
    let source: Arc<dyn UtteranceSource> = data
        .splits
        .get(&split)
        .cloned()
        .with_context(|| format!("no split {split:?} in {}", cli.shards.display()))?;
    // Warm-up: one epoch, not counted.
    let warm_up = plans(source.as_ref(), cli.batch_seconds, 0..1);
    run(source.as_ref(), &warm_up, cli.threads)?;
    let plan = plans(source.as_ref(), cli.batch_seconds, 1..1 + cli.epochs.max(1));
    let (audio, wall, cpu) = run(source.as_ref(), &plan, cli.threads)?;
    let mut record = serde_json::json!({
        "split": split,
        "threads": cli.threads,
        "batch_seconds": cli.batch_seconds,
        "batches": plan.len(),
        "audio_s": audio,
        "wall_s": wall,
        "cpu_s": cpu,
        "audio_s_per_s": audio / wall,
        "audio_s_per_s_per_thread": audio / wall / cli.threads.max(1) as f64,
        "audio_s_per_cpu_s": audio / cpu,
    });
    if cli.phases {
        let (load, normalize, whole) = phases(source.as_ref(), &plan)?;
        let per = |d: Duration| audio / d.as_secs_f64();
        record["phases"] = serde_json::json!({
            "load_s": load.as_secs_f64(),
            "normalize_s": normalize.as_secs_f64(),
            "pad_s": (whole.saturating_sub(load + normalize)).as_secs_f64(),
            "batch_s": whole.as_secs_f64(),
            "load_audio_s_per_s": per(load),
            "normalize_audio_s_per_s": per(normalize),
        });
    }
    println!("{record}");
    Ok(())
}
