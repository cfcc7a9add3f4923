//! Prints the training batches `asr-train run` would use with the same flags, one JSON
//! line per batch (`{"ids": [...]}`), in training order: epoch 0, then 1, ... until
//! `--max-steps` batches (default: one epoch). `tools/bench/train-vs-transformers.sh`
//! feeds these batches to transformers' Trainer so that both engines train on exactly
//! the same batches. For a Whisper model (a folder, or a preset with `--tokenizer`)
//! the plan is that of the seq2seq task: the utterances with labels (the others are
//! left out with their reason, logged on stderr), each clip counting as 30 s, so a
//! batch holds `min(--max-batch-utterances, floor(--batch-seconds / 30))` clips.
//!
//!     cargo run --release -p asr-train --example batch_plan -- --shards DIR --model MODEL \
//!         --batch-seconds 40 --seed 42 --max-steps 20
use asr_train::config::RunArgs;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.run.resolve()?;
    let shards = config
        .shards
        .clone()
        .ok_or_else(|| anyhow::anyhow!("pass --shards DIR"))?;
    let data = asr_train::shards::open_shards(&shards)?;
    let log = |line: &str| eprintln!("{line}");
    let task = asr_train::trainer::build_task(&config, &data, tch::Device::Cpu, &log)?;
    let mut printed = 0u64;
    let mut epoch = 0u64;
    loop {
        let batches = asr_train::trainer::task_training_batches(&config, &data, &task, epoch)?;
        anyhow::ensure!(!batches.is_empty(), "no training batch");
        for ids in batches {
            println!("{}", serde_json::json!({ "ids": ids }));
            printed += 1;
            if config.max_steps.is_some_and(|m| printed >= m) {
                return Ok(());
            }
        }
        if config.max_steps.is_none() {
            return Ok(());
        }
        epoch += 1;
    }
}
