//! End-to-end tests of the training loop on real speech (six espeak-ng utterances under
//! `tests/fixtures/speech/`, made by its `make.sh`) with the `tiny` preset on the CPU.
//! One test binary, since each links libtorch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use asr_text::{UnkPolicy, Vocab};
use asr_train::config::{LossReduction, PrecisionChoice, TrainConfig};
use asr_train::data::{MemorySource, Utterance, UtteranceSource};
use asr_train::guard::ClipMode;
use asr_train::metrics::{read_metrics, MetricsRecord};
use asr_train::trainer::{run, Hooks, TrainData, TrainError};

/// libtorch's random generator and thread count are process-wide: runs in parallel
/// test threads would draw from one generator, so every test trains alone.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speech")
}

/// The six fixture utterances, their vocabulary built from the transcripts.
fn speech() -> (Vec<Utterance>, Vocab) {
    let dir = fixture_dir();
    let transcripts = std::fs::read_to_string(dir.join("transcripts.txt")).unwrap();
    let pairs: Vec<(String, String)> = transcripts
        .lines()
        .map(|l| {
            let (id, text) = l.split_once(' ').unwrap();
            (id.to_string(), text.to_string())
        })
        .collect();
    let vocab = Vocab::from_chars(pairs.iter().flat_map(|(_, t)| t.chars()));
    let utterances = pairs
        .into_iter()
        .map(|(id, text)| {
            let audio = asr_audio::decode_file(&dir.join(format!("{id}.wav"))).unwrap();
            assert_eq!(audio.sample_rate_hz, 16_000);
            Utterance {
                labels: vocab.encode(&text, UnkPolicy::Error).unwrap(),
                audio: audio.to_mono(),
                text,
                id,
            }
        })
        .collect();
    (utterances, vocab)
}

fn data(train: Vec<Utterance>, dev: Vec<Utterance>, vocab: Vocab) -> TrainData {
    let mut splits: BTreeMap<String, Arc<dyn UtteranceSource>> = BTreeMap::new();
    splits.insert("train".into(), Arc::new(MemorySource::new(train)));
    splits.insert("dev".into(), Arc::new(MemorySource::new(dev)));
    TrainData {
        vocab,
        splits,
        origin: "test data".into(),
    }
}

/// A quick configuration: tiny preset, CPU, f32, 2 threads, no eval until the end.
fn config(out: &Path, max_steps: u64) -> TrainConfig {
    let mut c = TrainConfig {
        out: out.to_path_buf(),
        model: "tiny".into(),
        device: "cpu".into(),
        precision: PrecisionChoice::F32,
        max_steps: Some(max_steps),
        batch_seconds: 4.0,
        lr: 3e-3,
        warmup_steps: Some(10),
        eval_every: 0,
        freeze_feature_encoder: false,
        threads: Some(1),
        final_splits: vec!["train".into()],
        ctc_loss_reduction: Some(LossReduction::Mean),
        ctc_zero_infinity: Some(false),
        ..TrainConfig::default()
    };
    c.guard.max_grad_norm = 5.0;
    c
}

fn quiet() -> Hooks {
    Hooks {
        quiet: true,
        ..Hooks::default()
    }
}

fn steps(records: &[MetricsRecord]) -> Vec<&asr_train::metrics::StepRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn events<'a>(records: &'a [MetricsRecord], name: &str) -> Vec<&'a asr_train::metrics::EventRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            MetricsRecord::Event(e) if e.event.name() == name => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn tiny_model_overfits_six_utterances() {
    let _serial = serial();
    let (utterances, vocab) = speech();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // The tiny architecture with its regularization off (no dropout, no SpecAugment),
    // as one does to check that a model can fit: a config.json model starts from random
    // weights with the data's vocabulary.
    let mut model_config = asr_model::Preset::Tiny.config(vocab.len() as i64);
    model_config.mask_time_prob = 0.0;
    model_config.hidden_dropout = 0.0;
    model_config.activation_dropout = 0.0;
    model_config.attention_dropout = 0.0;
    model_config.final_dropout = 0.0;
    let model_path = dir.path().join("config.json");
    std::fs::write(&model_path, model_config.to_json_string()).unwrap();
    let mut c = config(&out, 300);
    c.model = model_path.display().to_string();
    c.lr = 1e-2;
    c.warmup_steps = Some(20);
    c.decay = asr_train::schedule::DecayKind::Constant;
    c.batch_seconds = 8.0; // all six utterances in one batch
    c.eval_every = 50;
    c.final_splits = vec!["train".into(), "dev".into()];
    let summary = run(&c, data(utterances.clone(), utterances, vocab), quiet()).unwrap();
    let train = &summary.results.splits["train"];
    eprintln!(
        "overfit: {:?}, {:.2} steps/s, {:.1} audio s/s",
        summary.results.splits, summary.steps_per_s, summary.audio_s_per_s
    );
    assert!(train.wer <= 0.1, "train WER {} after {} steps", train.wer, summary.steps);
    // The outputs of a run are all there.
    for name in [
        "metrics.jsonl",
        "training_curves.png",
        "predictions_train.jsonl",
        "predictions_dev.jsonl",
        "final_results.json",
        "quarantine.txt",
        "config.json",
        "best/config.json",
        "best/model.safetensors",
        "best/vocab.json",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("final_results.json")).unwrap())
            .unwrap();
    assert_eq!(results["splits"]["train"]["utterances"], 6);
    let records = read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(steps(&records).len(), 300);
    assert!(records.iter().any(|r| matches!(r, MetricsRecord::Eval(_))));
    let predictions = std::fs::read_to_string(out.join("predictions_train.jsonl")).unwrap();
    assert_eq!(predictions.lines().count(), 6);
}

#[test]
fn infeasible_utterance_is_skipped_recorded_and_quarantined() {
    let _serial = serial();
    let (mut utterances, vocab) = speech();
    // 0.3 s of audio (14 frames) with 40 labels: CTC cannot align it, the loss is inf.
    let long_text = "HELLO SUN ".repeat(4).trim().to_string();
    utterances.push(Utterance {
        id: "too-many-labels".into(),
        audio: utterances[0].audio[..4_800].to_vec(),
        labels: vocab.encode(&long_text, UnkPolicy::Error).unwrap(),
        text: long_text,
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut c = config(&out, 30);
    c.batch_seconds = 3.0;
    let summary = run(&c, data(utterances.clone(), utterances, vocab), quiet()).unwrap();
    let records = read_metrics(&out.join("metrics.jsonl")).unwrap();
    let skipped = events(&records, "nonfinite_loss");
    assert!(skipped.len() >= 2, "{} non-finite loss events", skipped.len());
    for e in &skipped {
        assert_eq!(e.culprits, vec!["too-many-labels".to_string()]);
        assert!(e.ids.contains(&"too-many-labels".to_string()));
    }
    let quarantine = std::fs::read_to_string(out.join("quarantine.txt")).unwrap();
    assert_eq!(quarantine, "too-many-labels\n");
    assert_eq!(
        summary.results.quarantined.as_deref(),
        Some(&["too-many-labels".to_string()][..])
    );
    // Training went on with finite losses and weights.
    let losses: Vec<f64> = steps(&records).iter().filter_map(|s| s.loss).collect();
    assert!(losses.len() >= 20 && losses.iter().all(|l| l.is_finite()));
    assert!(summary.results.splits["train"].loss.is_some_and(f64::is_finite));
}

#[test]
fn low_grad_norm_limit_skips_decays_and_recovers() {
    let _serial = serial();
    let (utterances, vocab) = speech();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut c = config(&out, 30);
    c.guard.clip = ClipMode::None;
    c.guard.grad_norm_factor = None;
    c.guard.recovery_steps = 2;
    c.guard.lr_decay = 0.5;
    // Loss gradients of a fresh model are large; a limit well below them explodes on
    // the steps above it. Make a few steps explode for sure by scaling gradients up.
    c.guard.grad_norm_limit = Some(1e3);
    let hooks = Hooks {
        quiet: true,
        after_backward: Some(Box::new(|step, model| {
            if (5..=7).contains(&step) {
                tch::no_grad(|| {
                    for (_, p) in model.trainable_parameters() {
                        let mut g = p.grad();
                        if g.defined() {
                            let _ = g.g_mul_scalar_(1e6);
                        }
                    }
                });
            }
        })),
    };
    let summary = run(&c, data(utterances.clone(), utterances, vocab), hooks).unwrap();
    let records = read_metrics(&out.join("metrics.jsonl")).unwrap();
    let explosions = events(&records, "explosion");
    assert_eq!(explosions.iter().map(|e| e.step).collect::<Vec<_>>(), [5, 6, 7]);
    assert!(explosions.iter().all(|e| !e.ids.is_empty()));
    let step_records = steps(&records);
    for s in &step_records[4..7] {
        assert!(!s.updated && s.lr == 0.0, "step {} should be skipped", s.step);
    }
    assert_eq!(step_records[6].lr_scale, 0.125);
    // Two clean steps climb back a notch each time: 0.25 at step 9, 0.5 at 11, 1 at 13.
    let recoveries = events(&records, "recovery");
    assert_eq!(recoveries.iter().map(|e| e.step).collect::<Vec<_>>(), [9, 11, 13]);
    assert_eq!(step_records[12].lr_scale, 1.0);
    assert_eq!(summary.results.events.unwrap().explosions, 3);
}

#[test]
fn nan_gradients_are_zeroed_and_counted() {
    let _serial = serial();
    let (utterances, vocab) = speech();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let c = config(&out, 6);
    let hooks = Hooks {
        quiet: true,
        after_backward: Some(Box::new(|step, model| {
            if step == 3 {
                let p = model.params().get("lm_head.bias").unwrap();
                let g = p.grad();
                tch::no_grad(|| {
                    let _ = g.narrow(0, 0, 2).fill_(f64::NAN);
                });
            }
        })),
    };
    let summary = run(&c, data(utterances.clone(), utterances, vocab), hooks).unwrap();
    let records = read_metrics(&out.join("metrics.jsonl")).unwrap();
    let nan = events(&records, "nonfinite_grads");
    assert_eq!(nan.len(), 1);
    assert_eq!(nan[0].step, 3);
    let counts = summary.results.events.unwrap();
    assert_eq!((counts.nonfinite_grads, counts.nonfinite_grad_values), (1, 2));
    let s3 = steps(&records)[2];
    assert!(s3.updated && s3.grad_norm.is_some_and(f64::is_finite));
    let weights = asr_model::read_weights(&out.join("best/model.safetensors")).unwrap();
    for (name, t) in weights {
        assert!(
            t.isfinite().all().int64_value(&[]) == 1,
            "{name} has non-finite values"
        );
    }
}

#[test]
fn resume_continues_exactly() {
    let _serial = serial();
    let (utterances, vocab) = speech();
    let dir = tempfile::tempdir().unwrap();
    // One run of 8 steps, checkpoints at 4 and 8.
    let full = dir.path().join("full");
    let mut c = config(&full, 8);
    c.save_every = Some(4);
    c.eval_every = 4;
    c.keep_checkpoints = 2;
    run(&c, data(utterances.clone(), utterances.clone(), vocab.clone()), quiet()).unwrap();
    // The same run killed after step 4 (its folder as it was then, metrics beyond step
    // 4 included), then resumed.
    let half = dir.path().join("half");
    std::fs::create_dir_all(half.join("checkpoints")).unwrap();
    copy_dir(
        &full.join("checkpoints/step-00000004"),
        &half.join("checkpoints/step-00000004"),
    );
    std::fs::copy(full.join("metrics.jsonl"), half.join("metrics.jsonl")).unwrap();
    copy_dir(&full.join("best"), &half.join("best"));
    let mut c2 = config(&half, 8);
    c2.save_every = Some(4);
    c2.eval_every = 4;
    c2.resume = true;
    // Without --resume the folder is refused.
    let refused = run(
        &TrainConfig {
            resume: false,
            ..c2.clone()
        },
        data(utterances.clone(), utterances.clone(), vocab.clone()),
        quiet(),
    );
    assert!(matches!(refused, Err(TrainError::Config(m)) if m.contains("--resume")));
    run(&c2, data(utterances.clone(), utterances, vocab), quiet()).unwrap();

    let read = |run: &Path| {
        let mut w =
            asr_model::read_weights(&run.join("checkpoints/step-00000008/model.safetensors"))
                .unwrap();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    let (a, b) = (read(&full), read(&half));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    let strip = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for key in ["step_time_s", "data_wait_s", "audio_s_per_s", "eval_time_s"] {
                    v.as_object_mut().unwrap().remove(key);
                }
                v
            })
            .collect()
    };
    let ma = strip(&full.join("metrics.jsonl"));
    let mb = strip(&half.join("metrics.jsonl"));
    assert!(ma.len() >= 10);
    assert_eq!(ma, mb);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn vocabulary_mismatch_is_named_and_reinit_head_trains() {
    let _serial = serial();
    let (utterances, vocab) = speech();
    let dir = tempfile::tempdir().unwrap();
    // A "pretrained" folder whose vocabulary lacks the data's O and has a Z.
    let other = Vocab::from_chars("ABCDEGHIKLMNRSTUWXZ".chars());
    let model = asr_model::CtcModel::from_preset("tiny", &other, tch::Device::Cpu).unwrap();
    let pretrained = dir.path().join("pretrained");
    model.save_pretrained(&pretrained, &other).unwrap();
    let out = dir.path().join("run");
    let mut c = config(&out, 4);
    c.model = pretrained.display().to_string();
    let err = run(&c, data(utterances.clone(), utterances.clone(), vocab.clone()), quiet())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"O\"") && err.contains("\"Z\"") && err.contains("--reinit-head"), "{err}");
    c.reinit_head = true;
    let summary = run(&c, data(utterances.clone(), utterances, vocab.clone()), quiet()).unwrap();
    assert_eq!(summary.steps, 4);
    let saved = asr_model::read_vocab(&out.join("best")).unwrap();
    assert_eq!(saved, vocab);
}
