//! `asr-train run` on Whisper models (the seq2seq task in the one training loop): a toy
//! random Whisper with the real multilingual tokenizer overfits ten fixture clips in
//! English and Mandarin, scored by generation; utterances that do not fit are left out
//! and counted by reason; `--resume` continues exactly; the recorded step loss is
//! transformers' token-mean cross-entropy of the batch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use asr_shards::{AudioDtype, Manifest, RowRef, ShardWriter, ShardWriterOptions};
use asr_text::{UnkPolicy, Vocab};
use asr_train::config::{PrecisionChoice, TrainConfig};
use asr_train::data::{MemorySource, Utterance, UtteranceSource};
use asr_train::metrics::{read_metrics, MetricsRecord};
use asr_train::trainer::{run, Hooks, TrainData};
use asr_train::whisper::{WhisperBundle, WHISPER_MICRO};
use tch::{Device, Kind, Tensor};

#[allow(dead_code)]
mod common;
use common::{serial, speech};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer_json() -> PathBuf {
    repo().join("fixtures/whisper/tokenizer/tokenizer.json")
}

/// Five English fixture clips (`ONE TWO`, ...) and five Mandarin ones from the CJK CSV
/// fixture (`今天天气很好`, ...), 1-4 s each.
fn ten_clips() -> (Vec<Utterance>, Vec<Utterance>) {
    let (english, _) = speech();
    let csv = std::fs::read_to_string(repo().join("fixtures/csv/cjk/manifest/train.csv")).unwrap();
    let mandarin = csv
        .lines()
        .skip(1)
        .take(5)
        .map(|line| {
            let (file, text) = line.split_once(',').unwrap();
            let audio =
                asr_audio::decode_file(&repo().join("fixtures/csv/cjk").join(file)).unwrap();
            assert_eq!(audio.sample_rate_hz, 16_000);
            Utterance {
                id: file.trim_end_matches(".flac").replace('/', "-"),
                audio: audio.to_mono(),
                labels: Vec::new(),
                text: text.to_string(),
            }
        })
        .collect();
    (english.into_iter().take(5).collect(), mandarin)
}

/// CTC labels of the shards (the pack's vocabulary; Whisper ignores them).
fn with_ctc_labels(utterances: &[Utterance], vocab: &Vocab) -> Vec<Utterance> {
    utterances
        .iter()
        .map(|u| Utterance {
            labels: vocab.encode(&u.text, UnkPolicy::Error).unwrap(),
            ..u.clone()
        })
        .collect()
}

/// A pack, written as `asr-data pack` writes it, with the given splits.
fn write_splits(dir: &Path, splits: &[(&str, &[Utterance])]) {
    let vocab = Vocab::from_chars(
        splits
            .iter()
            .flat_map(|(_, rows)| rows.iter().flat_map(|u| u.text.chars())),
    );
    let mut manifest = Manifest::new(&vocab, AudioDtype::Int16, None);
    for (split, rows) in splits {
        let options = ShardWriterOptions::new(1 << 22, vocab.to_json_string());
        let mut writer = ShardWriter::create(dir, split, options).unwrap();
        for u in with_ctc_labels(rows, &vocab) {
            writer
                .write(RowRef {
                    id: &u.id,
                    audio: &u.audio,
                    text: &u.text,
                    labels: &u.labels,
                    speaker: None,
                    source: "fixture",
                })
                .unwrap();
        }
        manifest
            .splits
            .insert(split.to_string(), writer.finish().unwrap());
    }
    manifest.write(dir).unwrap();
}

fn asr_train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_asr-train"))
        .args(args)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn step_losses(run: &Path) -> Vec<f64> {
    read_metrics(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => s.loss,
            _ => None,
        })
        .collect()
}

/// The overfit run's flags (`--lr` can be changed to check that the test fails when
/// training does not happen).
fn overfit_args<'a>(
    shards: &'a str,
    out: &'a str,
    tokenizer: &'a str,
    lr: &'a str,
) -> Vec<&'a str> {
    vec![
        "run",
        "--shards",
        shards,
        "--out",
        out,
        "--model",
        WHISPER_MICRO,
        "--tokenizer",
        tokenizer,
        "--language",
        "zh",
        "--task",
        "transcribe",
        "--device",
        "cpu",
        "--precision",
        "f32",
        "--threads",
        "2",
        "--seed",
        "3",
        "--batch-seconds",
        "300",
        "--max-batch-utterances",
        "10",
        "--max-steps",
        "120",
        "--lr",
        lr,
        "--warmup-steps",
        "10",
        "--weight-decay",
        "0",
        "--eval-every",
        "60",
        "--train-split",
        "train",
        "--eval-split",
        "zh",
        "--final-splits",
        "zh,en",
        "--log-every",
        "20",
    ]
}

/// Issue 14, 6(a): a toy Whisper (d 64, 2 + 2 layers) from random weights with the real
/// 51,865-token multilingual tokenizer fits ten clips (five Mandarin, five English) to
/// CER <= 0.1 by generation; the Mandarin split is scored by CER, the English one by
/// WER. `best/` is a complete Hugging Face Whisper folder that `asr-train eval` loads.
#[test]
fn a_toy_whisper_overfits_ten_clips_in_mandarin_and_english() {
    let _serial = serial(); // the other tests' libtorch work would slow this run down
    let tokenizer = tokenizer_json().display().to_string();
    let (english, mandarin) = ten_clips();
    let all: Vec<Utterance> = english.iter().chain(&mandarin).cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    write_splits(
        &shards,
        &[("train", &all), ("zh", &mandarin), ("en", &english)],
    );
    let out = dir.path().join("run");
    let (shards_s, out_s) = (shards.to_str().unwrap(), out.to_str().unwrap());
    let lr = std::env::var("WHISPER_OVERFIT_LR").unwrap_or_else(|_| "3e-3".into());
    let output = asr_train(&overfit_args(shards_s, out_s, &tokenizer, &lr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("seq2seq"), "{stderr}");
    let results = read_json(&out.join("final_results.json"));
    let zh = &results["splits"]["zh"];
    let en = &results["splits"]["en"];
    assert_eq!(zh["metric"], "cer", "{results}");
    assert_eq!(en["metric"], "wer", "{results}");
    for split in [zh, en] {
        assert!(split["cer"].as_f64().unwrap() <= 0.1, "{results}\n{stderr}");
    }
    let losses = step_losses(&out);
    assert_eq!(losses.len(), 120);
    assert!(losses[119] < losses[0] / 10.0, "{losses:?}");
    let best = out.join("best");
    for file in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "model.safetensors",
        "README.md",
    ] {
        assert!(best.join(file).is_file(), "best/ has no {file}");
    }
    let card = std::fs::read_to_string(best.join("README.md")).unwrap();
    assert!(
        card.contains("- \"whisper\"") && card.contains("- \"seq2seq\""),
        "{card}"
    );
    assert!(out.join("training_curves.png").is_file());
    // best/ is a Whisper folder that eval loads, with the same result.
    let again = dir.path().join("eval");
    let output = asr_train(&[
        "eval",
        "--shards",
        shards_s,
        "--model",
        best.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--device",
        "cpu",
        "--splits",
        "zh",
        "--language",
        "zh",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let evaluated = read_json(&again.join("final_results.json"));
    assert_eq!(evaluated["splits"]["zh"]["cer"], zh["cer"]);
}

fn memory_data(train: Vec<Utterance>, dev: Vec<Utterance>) -> TrainData {
    let mut splits: BTreeMap<String, Arc<dyn UtteranceSource>> = BTreeMap::new();
    splits.insert("train".into(), Arc::new(MemorySource::new(train)));
    splits.insert("dev".into(), Arc::new(MemorySource::new(dev)));
    TrainData {
        vocab: Vocab::from_chars("A".chars()),
        splits,
        roles: Default::default(),
        origin: "test data".into(),
    }
}

fn whisper_config(out: &Path, max_steps: u64) -> TrainConfig {
    TrainConfig {
        out: out.to_path_buf(),
        model: WHISPER_MICRO.into(),
        tokenizer: Some(tokenizer_json()),
        language: Some("zh".into()),
        device: "cpu".into(),
        precision: PrecisionChoice::F32,
        max_steps: Some(max_steps),
        batch_seconds: 60.0,
        lr: 1e-3,
        warmup_steps: Some(2),
        eval_every: 0,
        threads: Some(2),
        // No generation: a model this young generates up to 448 tokens per clip.
        eval_split: "none".into(),
        final_splits: Vec::new(),
        tensorboard: false,
        seed: 7,
        ..TrainConfig::default()
    }
}

fn quiet() -> Hooks {
    Hooks {
        quiet: std::env::var_os("WHISPER_TRAIN_LOUD").is_none(),
        ..Hooks::default()
    }
}

/// Clips over 30 s, labels over 448 tokens and empty texts are left out before training
/// (never truncated), counted by reason in final_results.json.
#[test]
fn utterances_that_do_not_fit_whisper_are_left_out_and_counted_by_reason() {
    let _serial = serial();
    let (english, mandarin) = ten_clips();
    let mut train: Vec<Utterance> = english[..2].to_vec();
    let long_audio: Vec<f32> = english[0]
        .audio
        .iter()
        .cycle()
        .take(16_000 * 31)
        .copied()
        .collect();
    train.push(Utterance {
        id: "long-audio".into(),
        audio: long_audio,
        ..mandarin[0].clone()
    });
    train.push(Utterance {
        id: "long-text".into(),
        text: mandarin[0].text.repeat(150),
        ..mandarin[0].clone()
    });
    train.push(Utterance {
        id: "empty".into(),
        text: " ".into(),
        ..mandarin[1].clone()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let summary = run(
        &whisper_config(&out, 1),
        memory_data(train, english[..1].to_vec()),
        quiet(),
    )
    .unwrap();
    let left_out = summary.results.left_out.unwrap();
    let expected: BTreeMap<String, usize> = [
        ("audio_over_30s", 1),
        ("labels_too_long", 1),
        ("empty_text", 1),
    ]
    .into_iter()
    .map(|(r, n)| (r.to_string(), n))
    .collect();
    assert_eq!(left_out, expected);
    let written = read_json(&out.join("final_results.json"));
    assert_eq!(written["left_out"]["audio_over_30s"], 1);
    // The two clips that fit were trained on, in one batch (each counts as 30 s).
    let records = read_metrics(&out.join("metrics.jsonl")).unwrap();
    let step = records
        .iter()
        .find_map(|r| match r {
            MetricsRecord::Step(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(step.utterances, 2);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn checkpoint_weights(run: &Path, step: u64) -> Vec<(String, Tensor)> {
    let path = run.join(format!("checkpoints/step-{step:08}/model.safetensors"));
    let mut weights = asr_model::read_weights(&path).unwrap();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

/// A Whisper run killed after step 2 and resumed ends with the same weights and losses
/// as the run that was not interrupted.
#[test]
fn a_resumed_whisper_run_continues_exactly() {
    let _serial = serial();
    let (english, mandarin) = ten_clips();
    let train: Vec<Utterance> = english[..3].iter().chain(&mandarin[..3]).cloned().collect();
    let data = || memory_data(train.clone(), english[..1].to_vec());
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let mut c = whisper_config(&full, 4);
    c.save_every = Some(2);
    c.max_batch_utterances = Some(3);
    run(&c, data(), quiet()).unwrap();
    let half = dir.path().join("half");
    copy_dir(
        &full.join("checkpoints/step-00000002"),
        &half.join("checkpoints/step-00000002"),
    );
    std::fs::copy(full.join("metrics.jsonl"), half.join("metrics.jsonl")).unwrap();
    let c2 = TrainConfig {
        out: half.clone(),
        resume: true,
        ..c.clone()
    };
    run(&c2, data(), quiet()).unwrap();
    assert_eq!(step_losses(&full), step_losses(&half));
    let (a, b) = (checkpoint_weights(&full, 4), checkpoint_weights(&half, 4));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs after resume");
    }
}

/// The loss recorded for a step (and backwarded) is transformers' Whisper loss: the
/// cross-entropy summed over every label token of the batch that is not -100, divided
/// by their count (not the mean of the rows' means), with the decoder fed the labels
/// shifted right behind <|startoftranscript|>. Computed here by hand from the logits.
#[test]
fn the_step_loss_is_the_token_mean_cross_entropy_of_the_batch() {
    let _serial = serial();
    let (english, mandarin) = ten_clips();
    // Rows of different label lengths, so that a mean of row means would differ.
    let long = Utterance {
        text: mandarin[3].text.repeat(4),
        ..mandarin[3].clone()
    };
    let train = vec![english[0].clone(), long];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // Ten steps first: a model this young gives every token nearly the same loss, and
    // a mean of row means would then equal the token mean.
    let mut c = whisper_config(&out, 10);
    c.lr = 5e-3;
    c.save_every = Some(9);
    run(
        &c,
        memory_data(train.clone(), english[..1].to_vec()),
        quiet(),
    )
    .unwrap();
    let recorded = step_losses(&out)[9];
    // The weights step 10 started from.
    tch::manual_seed(0);
    let bundle = WhisperBundle::preset(WHISPER_MICRO, &tokenizer_json(), Device::Cpu).unwrap();
    let checkpoint = out.join("checkpoints/step-00000009");
    let weights = asr_model::read_weights(&checkpoint.join("model.safetensors")).unwrap();
    asr_train::checkpoint::restore_model(bundle.model.params(), &weights, &checkpoint).unwrap();
    let prompt = bundle.prompt(Some("zh"), None).unwrap();
    let prefix: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
    let (mut token_sum, mut tokens, mut row_means) = (0.0f64, 0usize, Vec::new());
    for u in &train {
        let ids = bundle.tokenizer.labels(&prefix, &u.text).unwrap();
        // Decoder input: <|startoftranscript|> + labels[..-1]; labels: ids without it.
        let labels: Vec<i64> = ids[1..].iter().map(|&i| i64::from(i)).collect();
        let inputs: Vec<i64> = ids[..ids.len() - 1].iter().map(|&i| i64::from(i)).collect();
        let features = bundle.features.extract(&[&u.audio]).unwrap().input_features;
        let logits = tch::no_grad(|| {
            bundle
                .model
                .forward_t(
                    &features,
                    &Tensor::from_slice(&inputs).view([1, -1]),
                    None,
                    false,
                )
                .unwrap()
        });
        let log_probs = logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double);
        let mut row = 0.0;
        for (t, &label) in labels.iter().enumerate() {
            row -= log_probs.double_value(&[0, t as i64, label]);
        }
        token_sum += row;
        tokens += labels.len();
        row_means.push(row / labels.len() as f64);
    }
    let token_mean = token_sum / tokens as f64;
    let mean_of_means = row_means.iter().sum::<f64>() / row_means.len() as f64;
    assert!(
        (recorded - token_mean).abs() < 1e-4 * token_mean,
        "recorded {recorded}, token mean {token_mean}"
    );
    assert!(
        (mean_of_means - token_mean).abs() > 1e-2,
        "the rows' losses must differ: {row_means:?}"
    );
}

/// `whisper-micro` from random weights (seeded) saved as a Hugging Face folder whose
/// generation_config.json caps generation at `max_length` 3 tokens: a model this young
/// would otherwise generate up to 448 tokens per clip in each evaluation.
fn micro_folder(dir: &Path) -> PathBuf {
    tch::manual_seed(11);
    let bundle = WhisperBundle::preset(WHISPER_MICRO, &tokenizer_json(), Device::Cpu).unwrap();
    let folder = dir.join("micro");
    bundle.save_pretrained(&folder).unwrap();
    let path = folder.join("generation_config.json");
    let mut generation = read_json(&path);
    generation["max_length"] = 3.into();
    std::fs::write(&path, generation.to_string()).unwrap();
    folder
}

/// The eval records of a seq2seq run carry transformers' `eval_loss`: the token-mean
/// cross-entropy of the eval split with teacher forcing. It equals the training loss
/// of the same clips taken by hand from the saved best/ weights, and it drops as the
/// model fits them.
#[test]
fn whisper_eval_records_carry_the_teacher_forced_token_mean_loss() {
    let _serial = serial();
    let (_, mandarin) = ten_clips();
    let clips = vec![mandarin[0].clone(), mandarin[1].clone()];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut c = whisper_config(&out, 8);
    c.model = micro_folder(dir.path()).display().to_string();
    c.tokenizer = None;
    c.lr = 5e-3;
    c.eval_every = 4;
    c.eval_split = "dev".into();
    let data = memory_data(clips.clone(), clips.clone());
    run(&c, data, quiet()).unwrap();
    let evals: Vec<_> = read_metrics(&out.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            MetricsRecord::Eval(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(evals.len(), 2, "{evals:?}");
    let losses: Vec<f64> = evals.iter().map(|e| e.loss.expect("eval loss")).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[1] < losses[0], "the eval loss must drop: {losses:?}");
    // By hand, from the weights best/ holds: those of the last eval that improved.
    let best_loss = evals.iter().rev().find(|e| e.best).unwrap().loss.unwrap();
    let best = out.join("best");
    let bundle = WhisperBundle::from_pretrained(&best, Device::Cpu).unwrap();
    let prompt = bundle.prompt(Some("zh"), None).unwrap();
    let prefix: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
    let (mut sum, mut tokens) = (0.0f64, 0usize);
    for u in &clips {
        let ids = bundle.tokenizer.labels(&prefix, &u.text).unwrap();
        let labels =
            Tensor::from_slice(&ids[1..].iter().map(|&i| i64::from(i)).collect::<Vec<_>>())
                .view([1, -1]);
        let features = bundle.features.extract(&[&u.audio]).unwrap().input_features;
        let loss = tch::no_grad(|| {
            bundle
                .model
                .forward_labels(&features, &labels, false)
                .unwrap()
                .1
        });
        sum += loss.double_value(&[]) * (ids.len() - 1) as f64;
        tokens += ids.len() - 1;
    }
    let by_hand = sum / tokens as f64;
    assert!(
        (best_loss - by_hand).abs() < 1e-4 * by_hand,
        "eval loss {best_loss} vs by hand {by_hand}"
    );
}

/// A Whisper trained with `--language zh` saves the language and task in best/'s
/// generation_config.json (as transformers' fine-tuning guide sets them), so that
/// `asr-train eval` of best/ without `--language` generates in Mandarin.
#[test]
fn best_of_a_multilingual_whisper_remembers_its_language() {
    let _serial = serial();
    let (_, mandarin) = ten_clips();
    let clips = vec![mandarin[0].clone()];
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    write_splits(&shards, &[("train", &clips), ("dev", &clips)]);
    let out = dir.path().join("run");
    let mut c = whisper_config(&out, 2);
    c.model = micro_folder(dir.path()).display().to_string();
    c.tokenizer = None;
    c.eval_every = 2;
    c.eval_split = "dev".into();
    let data = asr_train::shards::open_shards(&shards).unwrap();
    run(&c, data, quiet()).unwrap();
    let generation = read_json(&out.join("best/generation_config.json"));
    assert_eq!(generation["language"], "zh", "{generation}");
    assert_eq!(generation["task"], "transcribe", "{generation}");
    let again = dir.path().join("eval");
    let output = asr_train(&[
        "eval",
        "--shards",
        shards.to_str().unwrap(),
        "--model",
        out.join("best").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--device",
        "cpu",
        "--splits",
        "dev",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let evaluated = read_json(&again.join("final_results.json"));
    assert_eq!(evaluated["splits"]["dev"]["utterances"], 1, "{evaluated}");
}

/// A Whisper row whose loss is not finite (a float clip with NaN samples, as a
/// corrupted float WAV gives) is masked out as for CTC: the step goes on with the other
/// rows, a finite update, no non-finite gradient, and after two such steps the row is
/// quarantined.
#[test]
fn a_whisper_row_with_a_nonfinite_loss_is_masked_and_the_step_goes_on() {
    let _serial = serial();
    let (english, mandarin) = ten_clips();
    let mut poisoned = mandarin[0].clone();
    poisoned.audio.fill(f32::NAN);
    let victim = poisoned.id.clone();
    let train = vec![english[0].clone(), poisoned, mandarin[1].clone()];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut c = whisper_config(&out, 3);
    c.batch_seconds = 90.0; // the whole corpus in one batch
    let summary = run(&c, memory_data(train, english[..1].to_vec()), quiet()).unwrap();
    let records = read_metrics(&out.join("metrics.jsonl")).unwrap();
    let steps: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let events: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let masked: Vec<_> = events
        .iter()
        .filter(|e| e.event.name() == "nonfinite_loss")
        .collect();
    assert_eq!(
        masked.iter().map(|e| e.step).collect::<Vec<_>>(),
        [1, 2],
        "{events:?}"
    );
    assert!(masked.iter().all(|e| e.culprits == [victim.clone()]));
    assert!(
        events.iter().all(|e| e.event.name() != "nonfinite_grads"),
        "masking must leave no NaN gradient: {events:?}"
    );
    assert!(steps.iter().all(|s| s.updated), "{steps:?}");
    assert!(steps.iter().all(|s| s.loss.is_some_and(f64::is_finite)));
    assert!(steps
        .iter()
        .all(|s| s.grad_norm.is_some_and(f64::is_finite)));
    assert_eq!(
        steps.iter().map(|s| s.utterances).collect::<Vec<_>>(),
        [3, 3, 2]
    );
    assert_eq!(summary.left_out, std::slice::from_ref(&victim));
    assert_eq!(
        std::fs::read_to_string(out.join("quarantine.txt")).unwrap(),
        format!("{victim}\n")
    );
}

/// `--precision bf16` trains a Whisper on the CPU (autocast): a few steps with finite,
/// falling losses; `--precision fp16` is refused on the CPU with the way out.
#[test]
fn whisper_trains_in_bf16_on_the_cpu_and_fp16_is_refused_there() {
    let _serial = serial();
    let (english, mandarin) = ten_clips();
    let train = vec![english[0].clone(), mandarin[0].clone()];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bf16");
    let mut c = whisper_config(&out, 4);
    c.precision = PrecisionChoice::Bf16;
    c.lr = 5e-3;
    run(
        &c,
        memory_data(train.clone(), english[..1].to_vec()),
        quiet(),
    )
    .unwrap();
    let losses = step_losses(&out);
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // Measured: 10.88, 10.42, 10.10, 9.88.
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
    assert!(losses[3] < losses[0] - 0.5, "{losses:?}");
    let mut c = whisper_config(&dir.path().join("fp16"), 1);
    c.precision = PrecisionChoice::Fp16;
    let err = run(&c, memory_data(train, english[..1].to_vec()), quiet())
        .expect_err("fp16 on the CPU")
        .to_string();
    assert!(err.contains("fp16") && err.contains("bf16"), "{err}");
}
