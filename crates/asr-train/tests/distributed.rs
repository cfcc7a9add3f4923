//! Data-parallel training (issue 13) on the CPU with Gloo: `asr-train run
//! --nproc-per-node 2` against one process that accumulates the same micro-batches.
//! Every run is a real job of the `asr-train` binary (two ranks, TCP on 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::Tensor;

mod common;
use common::{serial, speech, write_pack};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_asr-train")
}

/// The fixture pack: `train` (six utterances), `dev` (three).
fn shards(dir: &Path) -> PathBuf {
    let shards = dir.join("shards");
    let (utterances, vocab) = speech();
    write_pack(&shards, &utterances, &vocab, &vocab);
    shards
}

/// A short tiny-model run: one utterance per micro-batch (six per epoch), a checkpoint
/// every step; `extra` adds the flags under test.
fn run(shards: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(exe());
    command
        .arg("run")
        .arg("--shards")
        .arg(shards)
        .arg("--out")
        .arg(out)
        .args([
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--precision",
            "f32",
            "--threads",
            "1",
            "--seed",
            "11",
            "--lr",
            "3e-3",
            "--warmup-steps",
            "0",
            "--batch-seconds",
            "4",
            "--max-batch-utterances",
            "1",
            "--eval-every",
            "0",
            "--save-every",
            "1",
            "--final-splits",
            "dev",
            "--dist-timeout",
            "60",
        ])
        .args(extra);
    for variable in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        command.env_remove(variable);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn weights(run: &Path, step: u64) -> Vec<(String, Tensor)> {
    let path = run.join(format!("checkpoints/step-{step:08}/model.safetensors"));
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The largest relative difference ||a - b|| / ||a|| over the tensors.
fn max_relative_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|((name_a, ta), (name_b, tb))| {
            assert_eq!(name_a, name_b);
            let norm = ta.norm().double_value(&[]).max(1e-12);
            (ta - tb).norm().double_value(&[]) / norm
        })
        .fold(0.0, f64::max)
}

fn step_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "step")
        .collect()
}

#[test]
fn two_ranks_end_with_the_weights_of_one_rank_accumulating_their_micro_batches() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));

    let single = run(&shards, &one, &["--max-steps", "3", "--grad-accum", "2"]);
    assert!(single.status.success(), "{}", stderr(&single));
    let pair = run(
        &shards,
        &two,
        &["--max-steps", "3", "--nproc-per-node", "2"],
    );
    // Each rank also checks at the end that the other holds the same weights.
    assert!(pair.status.success(), "{}", stderr(&pair));

    let (w1, w2) = (weights(&one, 3), weights(&two, 3));
    let difference = max_relative_difference(&w1, &w2);
    assert!(difference <= 1e-5, "relative difference {difference}");
    // The weights did move: a step changes them far beyond the tolerance.
    let moved = max_relative_difference(&weights(&one, 2), &w1);
    assert!(moved > 1e-3, "a step moved the weights by {moved} only");

    // Rank 0's records: the same global steps (two utterances each), with comm_s.
    let (r1, r2) = (step_records(&one), step_records(&two));
    assert_eq!(r1.len(), 3);
    assert_eq!(r2.len(), 3);
    for (a, b) in r1.iter().zip(&r2) {
        assert_eq!(a["utterances"], 2);
        assert_eq!(b["utterances"], 2);
        let (la, lb) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        assert!((la - lb).abs() <= 1e-5 * la.abs(), "loss {la} vs {lb}");
        assert!(b["comm_s"].as_f64().unwrap() >= 0.0, "{b}");
        assert!(a.get("comm_s").is_none(), "{a}");
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(two.join("checkpoints/step-00000003/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["world_size"], 2);
}
