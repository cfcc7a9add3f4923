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

/// `asr-train run` of the tiny model on `shards` for a few steps, outside any launcher;
/// `extra` adds the flags under test (`--eval-every 0` unless it sets one).
fn command(shards: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(exe());
    command
        .arg("run")
        .arg("--shards")
        .arg(shards)
        .arg("--out")
        .arg(out)
        .args(
            "--model tiny --device cpu --precision f32 --threads 1 --lr 3e-3 \
             --warmup-steps 0 --batch-seconds 4 --final-splits dev \
             --dist-timeout 60"
                .split_whitespace(),
        )
        .args(extra);
    if !extra.contains(&"--eval-every") {
        command.args(["--eval-every", "0"]);
    }
    for variable in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        command.env_remove(variable);
    }
    command
}

fn run(shards: &Path, out: &Path, extra: &[&str]) -> Output {
    command(shards, out, extra).output().unwrap()
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

    // One utterance per micro-batch (six per epoch), a checkpoint every step.
    let flags = "--seed 11 --max-batch-utterances 1 --save-every 1 --max-steps 3";
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let single = run(
        &shards,
        &one,
        &[&flags[..], &["--grad-accum", "2"]].concat(),
    );
    assert!(single.status.success(), "{}", stderr(&single));
    let pair = run(
        &shards,
        &two,
        &[&flags[..], &["--nproc-per-node", "2"]].concat(),
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

    // The data position is per rank: one process may not resume the two ranks' run.
    let flags = "--seed 11 --max-batch-utterances 1 --save-every 1 --max-steps 4 --resume";
    let refused = run(&shards, &two, &flags.split_whitespace().collect::<Vec<_>>());
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("saved by a run of 2 rank(s)") && err.contains("--nproc-per-node 2"),
        "{err}"
    );
}

/// The fixture pack with its first utterance poisoned (its first 0.1 s only, under its
/// whole transcript: more labels than CTC frames), and its id.
fn poisoned_pack(dir: &Path) -> (PathBuf, String) {
    let shards = dir.join("shards");
    let (mut utterances, vocab) = speech();
    utterances[0].audio.truncate(1600);
    write_pack(&shards, &utterances, &vocab, &vocab);
    (shards, utterances[0].id.clone())
}

/// The batches of `rank` of two in `epoch` with two utterances a batch and `seed`.
fn rank_batches(shards: &Path, seed: u64, rank: usize, epoch: u64) -> Vec<Vec<String>> {
    let data = asr_train::shards::open_shards(shards).unwrap();
    let config = asr_train::config::TrainConfig {
        seed,
        batch_seconds: 4.0,
        max_batch_utterances: Some(2),
        rank,
        world_size: 2,
        ..Default::default()
    };
    asr_train::trainer::training_batches(&config, &data, 1, epoch).unwrap()
}

fn holds(batches: &[Vec<String>], id: &str) -> bool {
    batches.iter().any(|b| b.iter().any(|x| x == id))
}

#[test]
fn a_poisoned_row_on_rank_1_is_masked_gathered_and_left_out_by_every_rank() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (shards, victim) = poisoned_pack(dir.path());
    // A seed with which rank 1 meets the victim in epoch 0 (with another utterance in its
    // batch) and rank 0 would meet it in epoch 1.
    let seed = (1..200)
        .find(|&seed| {
            let first = rank_batches(&shards, seed, 1, 0);
            first.iter().any(|b| b.len() == 2 && b.contains(&victim))
                && holds(&rank_batches(&shards, seed, 0, 1), &victim)
        })
        .expect("no seed puts the victim on rank 1, then rank 0");
    let seed = seed.to_string();
    let out = dir.path().join("run");
    let flags = "--max-batch-utterances 2 --max-steps 2 --quarantine-after 1 --save-every 1 \
                 --nproc-per-node 2 --seed";
    let mut flags: Vec<&str> = flags.split_whitespace().collect();
    flags.push(&seed);
    let output = run(&shards, &out, &flags);
    // The run checks at the end that both ranks hold the same weights.
    assert!(output.status.success(), "{}", stderr(&output));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let masked: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "nonfinite_loss")
        .collect();
    // Rank 1's event reached rank 0's metrics, once: in epoch 1 rank 0 left the row out.
    assert_eq!(masked.len(), 1, "{records:?}");
    assert_eq!(masked[0]["step"], 1);
    assert_eq!(masked[0]["culprits"], serde_json::json!([victim]));
    // Both steps updated the model (the other rows of the step went on).
    let steps = step_records(&out);
    assert!(steps.iter().all(|s| s["updated"] == true), "{steps:?}");
    let quarantine = std::fs::read_to_string(out.join("quarantine.txt")).unwrap();
    assert_eq!(
        quarantine.lines().collect::<Vec<_>>(),
        vec![victim.as_str()]
    );
}

/// SIGTERM to a run mid-way: it saves a checkpoint at the next step boundary and exits
/// 0; `--resume` completes it.
fn sigterm_then_resume(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let out = dir.path().join("run");
    let mut args = vec![
        "--max-steps",
        "40",
        "--save-every",
        "100",
        "--max-batch-utterances",
        "1",
        "--seed",
        "11",
    ];
    args.extend_from_slice(extra);
    let child = command(&shards, &out, &args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 2 {
        assert!(std::time::Instant::now() < deadline, "no step after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a plain kill(2) of the child we started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let stopped = child.wait_with_output().unwrap();
    let err = stderr(&stopped);
    assert!(stopped.status.success(), "{err}");
    assert!(err.contains("stopped by SIGTERM after step"), "{err}");
    assert!(!out.join("final_results.json").exists());
    let saved = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect::<Vec<_>>();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let stopped_at: u64 = saved[0]["step-".len()..].parse().unwrap();
    assert!((2..40).contains(&stopped_at), "{stopped_at}");

    let mut resume = args.clone();
    resume.push("--resume");
    let resumed = run(&shards, &out, &resume);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let steps: Vec<u64> = step_records(&out)
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("final_results.json")).unwrap())
            .unwrap();
    assert_eq!(results["steps"], 40);
}

#[test]
fn sigterm_to_two_ranks_saves_a_checkpoint_exits_0_and_resume_completes() {
    let _serial = serial();
    sigterm_then_resume(&["--nproc-per-node", "2"]);
}

#[test]
fn sigterm_to_one_process_saves_a_checkpoint_exits_0_and_resume_completes() {
    let _serial = serial();
    sigterm_then_resume(&[]);
}

/// The worker of `launcher` whose `RANK` is `rank`.
fn worker_pid(launcher: u32, rank: usize) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children")).ok()?;
    children.split_whitespace().find_map(|pid| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let wanted = format!("RANK={rank}");
        environ
            .split(|&b| b == 0)
            .any(|v| v == wanted.as_bytes())
            .then(|| pid.parse().ok())?
    })
}

#[test]
fn kill_9_of_one_rank_ends_the_job_naming_it_and_resume_completes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let out = dir.path().join("run");
    let args = "--seed 11 --max-batch-utterances 1 --max-steps 40 --save-every 2 \
                --nproc-per-node 2";
    let args: Vec<&str> = args.split_whitespace().collect();
    let started = std::time::Instant::now();
    let launcher = command(&shards, &out, &args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 3 {
        assert!(started.elapsed().as_secs() < 120, "no step after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let victim = worker_pid(launcher.id(), 1).expect("rank 1's process");
    // SAFETY: a plain kill(2) of a process this test started (through the launcher).
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let killed = std::time::Instant::now();
    let ended = launcher.wait_with_output().unwrap();
    let err = stderr(&ended);
    assert!(!ended.status.success(), "{err}");
    // Within --dist-timeout (60 s), naming the rank and the step.
    assert!(killed.elapsed().as_secs() < 60, "{err}");
    assert!(err.contains("rank 1 of 2 failed"), "{err}");
    assert!(
        err.contains("rank 0 of 2 stopped at step") && err.contains("rank(s) 1 did not answer"),
        "{err}"
    );

    let mut resume = args.clone();
    resume.push("--resume");
    let resumed = run(&shards, &out, &resume);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let steps: Vec<u64> = step_records(&out)
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>());
}

/// Periodic (train split) and final (`--final-splits dev`) evaluations of two ranks: each
/// rank decodes its share, and the results equal one process's `asr-train eval` of the
/// same weights.
#[test]
fn an_evaluation_split_over_two_ranks_equals_one_process_evaluating() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    let out = dir.path().join("run");
    // Six utterances, three per rank; one utterance per eval batch, so that no padding
    // differs between the two evaluations.
    let args = "--seed 11 --max-batch-utterances 1 --max-steps 2 --eval-every 2 \
                --eval-split train --eval-batch-seconds 0.1 --nproc-per-node 2";
    let output = run(&shards, &out, &args.split_whitespace().collect::<Vec<_>>());
    assert!(output.status.success(), "{}", stderr(&output));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let evals: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "eval").collect();
    assert_eq!(evals.len(), 1, "{records:?}");
    let sharded = evals[0];

    // One process evaluates best/ (the weights of that evaluation) on the same split.
    let single = Command::new(exe())
        .arg("eval")
        .arg("--shards")
        .arg(&shards)
        .arg("--model")
        .arg(out.join("best"))
        .args("--splits train,dev --device cpu --threads 1 --batch-seconds 0.1 --json".split(' '))
        .output()
        .unwrap();
    assert!(single.status.success(), "{}", stderr(&single));
    let results: serde_json::Value = serde_json::from_slice(&single.stdout).unwrap();
    // The final evaluation of best/ on dev (three utterances: two on rank 0, one on
    // rank 1), written by rank 0.
    let final_dev = &serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(out.join("final_results.json")).unwrap(),
    )
    .unwrap()["splits"]["dev"];
    let single_dev = &results["splits"]["dev"];
    assert_eq!(final_dev["utterances"], 3, "{final_dev}");
    for key in [
        "utterances",
        "wer",
        "cer",
        "substitutions",
        "deletions",
        "insertions",
        "reference_words",
        "reference_chars",
        "blank_fraction",
    ] {
        assert_eq!(
            final_dev[key], single_dev[key],
            "{key}: {final_dev} vs {single_dev}"
        );
    }
    let (a, b) = (
        final_dev["loss"].as_f64().unwrap(),
        single_dev["loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-6 * b.abs(), "final dev loss {a} vs {b}");
    assert!(
        stderr(&output).contains("rank 1 of 2: final evaluation of dev: decoded 1 of 3 utterances"),
        "{}",
        stderr(&output)
    );
    let whole = &results["splits"]["train"];
    assert_eq!(sharded["utterances"], 6);
    assert_eq!(whole["utterances"], 6);
    assert_eq!(sharded["wer"], whole["wer"], "{sharded} vs {whole}");
    assert_eq!(sharded["cer"], whole["cer"], "{sharded} vs {whole}");
    let (a, b) = (
        sharded["loss"].as_f64().unwrap(),
        whole["loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-6 * b.abs(), "loss {a} vs {b}");
}
