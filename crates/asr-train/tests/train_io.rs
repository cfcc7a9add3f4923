//! Hostile input to `asr-train`: damaged or foreign shards, labels outside the
//! vocabulary, numbers out of range, and long audio in `transcribe` (issue 12).
//! Shards are written with the asr-shards writer, as `asr-data pack` does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use asr_model::CtcModel;
use asr_shards::Manifest;
use asr_text::Vocab;
use asr_train::config::{LossReduction, PrecisionChoice, TrainConfig};
use asr_train::data::{MemorySource, Utterance, UtteranceSource};
use asr_train::eval::{evaluate, LossSettings};
use asr_train::shards::{open_shards, open_shards_with, ChecksumMode};
use asr_train::transcribe::{plan_windows, transcribe_files, windowed_logits, Windowing};
use tch::{Device, Tensor};

mod common;
use common::{fixture_dir, serial, speech, write_pack};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_asr-train")
}

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn shard_file(dir: &Path, split: &str) -> PathBuf {
    let manifest = Manifest::load(dir).unwrap();
    dir.join(&manifest.split(split).unwrap().shards[0].file)
}

fn asr_train(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn quick_run_args<'a>(shards: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--shards",
        shards,
        "--out",
        out,
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--precision",
        "f32",
        "--threads",
        "1",
        "--max-steps",
        "2",
        "--batch-seconds",
        "4",
        "--eval-every",
        "0",
        "--final-splits",
        "dev",
    ]
}

#[test]
fn run_with_a_flipped_byte_in_a_shard_fails_naming_the_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let (utterances, vocab) = speech();
    write_pack(&shards, &utterances, &vocab, &vocab);
    // A bit flipped in the middle of the train shard (audio samples): the shard still
    // decodes, only its checksum tells.
    let victim = shard_file(&shards, "train");
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&victim, bytes).unwrap();

    let out = dir.path().join("run");
    let (s, o) = (shards.to_str().unwrap(), out.to_str().unwrap());
    let output = asr_train(&quick_run_args(s, o));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name) && err.contains("sha256") && err.contains("--no-verify-shards"),
        "{err}"
    );

    // The opt-out trains on it anyway.
    let out = dir.path().join("run-unverified");
    let o = out.to_str().unwrap();
    let mut args = quick_run_args(s, o);
    args.push("--no-verify-shards");
    let output = asr_train(&args);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_shard_packed_with_another_vocabulary_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (utterances, vocab) = speech();
    // Two tokens swapped: same size, same tokens, other ids.
    let mut tokens = vocab.tokens().to_vec();
    let n = tokens.len();
    tokens.swap(n - 1, n - 2);
    let swapped = Vocab::from_tokens(tokens).unwrap();
    assert!(vocab.diff(&swapped).is_some());
    write_pack(dir.path(), &utterances, &vocab, &swapped);
    let err = match open_shards_with(dir.path(), ChecksumMode::Off) {
        Ok(_) => panic!("a shard with a swapped vocabulary was accepted"),
        Err(e) => e.to_string(),
    };
    // Splits open in manifest order, train first.
    let shard = shard_file(dir.path(), "train");
    assert!(
        err.contains(shard.to_str().unwrap()) && err.contains("vocabulary differs"),
        "{err}"
    );
    let (a, b) = (&vocab.tokens()[n - 1], &vocab.tokens()[n - 2]);
    assert!(
        err.contains("different ids") && err.contains(a.as_str()) && err.contains(b.as_str()),
        "{err}"
    );
}

/// The labels: 99999, -5 and the vocabulary size itself.
fn poisoned(vocab: &Vocab) -> (Vec<Utterance>, [i32; 3]) {
    let (mut utterances, _) = speech();
    let bad = [99_999, -5, vocab.len() as i32];
    for (u, label) in utterances.iter_mut().skip(1).zip(bad) {
        u.labels[0] = label;
    }
    (utterances, bad)
}

#[test]
fn out_of_range_labels_in_a_shard_are_an_error_naming_file_row_and_id() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (_, vocab) = speech();
    let (utterances, bad) = poisoned(&vocab);
    write_pack(dir.path(), &utterances, &vocab, &vocab);
    let data = open_shards(dir.path()).unwrap();
    let train = data.source("train").unwrap();
    let shard = shard_file(dir.path(), "train");
    assert!(train.load(0).is_ok());
    for (row, label) in [(1, bad[0]), (2, bad[1]), (3, bad[2])] {
        let err = train.load(row).unwrap_err().to_string();
        let id = &utterances[row].id;
        assert!(
            err.contains(shard.to_str().unwrap())
                && err.contains(&format!("row {row}"))
                && err.contains(&format!("{id:?}"))
                && err.contains(&format!("label id {label} ")),
            "{err}"
        );
    }

    // Training on them stops with that error instead of a gradient norm of 5e11.
    let out = dir.path().join("run");
    let config = TrainConfig {
        out: out.clone(),
        device: "cpu".into(),
        precision: PrecisionChoice::F32,
        max_steps: Some(2),
        batch_seconds: 40.0,
        eval_every: 0,
        threads: Some(1),
        final_splits: vec!["dev".into()],
        ..TrainConfig::default()
    };
    let hooks = asr_train::trainer::Hooks {
        quiet: true,
        ..Default::default()
    };
    let err = asr_train::trainer::run(&config, data, hooks)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is outside the vocabulary"), "{err}");
}

#[test]
fn evaluation_refuses_labels_outside_the_models_vocabulary() {
    // Not through shards: eval's CTC loss itself must not hand them to libtorch (an
    // out-of-bounds read), nor clamp -5 to the blank.
    let _serial = serial();
    tch::manual_seed(0);
    let (_, vocab) = speech();
    let model = CtcModel::from_preset("tiny", &vocab, Device::Cpu).unwrap();
    let loss = LossSettings {
        reduction: LossReduction::Mean,
        zero_infinity: false,
    };
    let (utterances, bad) = poisoned(&vocab);
    for (k, label) in bad.iter().enumerate() {
        let u = utterances[k + 1].clone();
        let id = u.id.clone();
        let source: Arc<dyn UtteranceSource> = Arc::new(MemorySource::new(vec![u]));
        let err = match evaluate(
            &model,
            &vocab,
            source,
            None,
            40.0,
            asr_model::precision::Precision::F32,
            loss,
        ) {
            Ok(_) => panic!("label {label} was evaluated"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("{id:?}")) && err.contains(&format!("label id {label} ")),
            "{err}"
        );
    }
    // And the loss function called directly (the trainer's path) refuses them too.
    let output = model
        .forward_t(
            &Tensor::zeros([1, 16_000], tch::kind::FLOAT_CPU),
            None,
            false,
            None,
        )
        .unwrap();
    for label in bad {
        let labels = Tensor::from_slice(&[3i64, label.into()]).view([1, 2]);
        let err = asr_train::eval::ctc_losses(
            &model,
            &output.logits,
            &output.output_lengths,
            &labels,
            &[2],
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(&format!("label id {label} ")), "{err}");
    }
}

#[test]
fn out_of_range_numbers_and_thread_counts_are_usage_errors_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    let (utterances, vocab) = speech();
    write_pack(&shards, &utterances, &vocab, &vocab);
    let s = shards.to_str().unwrap();
    let model = model_dir("w2v2-large");
    let m = model.to_str().unwrap();
    let wav = fixture_dir().join("utt-00.wav");
    let w = wav.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "--shards", s, "--weight-decay", "nan"],
            "weight_decay (--weight-decay) must be a finite number >= 0, got NaN",
        ),
        (
            vec!["run", "--shards", s, "--threads", "0"],
            "threads (--threads) must be between 1 and 1024",
        ),
        (
            vec!["run", "--shards", s, "--threads", "100000"],
            "threads (--threads) must be between 1 and 1024",
        ),
        (
            vec!["eval", "--shards", s, "--model", m, "--threads", "0"],
            "threads (--threads) must be between 1 and 1024",
        ),
        (
            vec![
                "eval",
                "--shards",
                s,
                "--model",
                m,
                "--batch-seconds",
                "nan",
            ],
            "batch_seconds (--batch-seconds) must be a finite number > 0",
        ),
        (
            vec!["transcribe", "--model", m, w, "--threads", "100000"],
            "threads (--threads) must be between 1 and 1024",
        ),
        (
            vec!["transcribe", "--model", m, w, "--batch-seconds=-1"],
            "batch_seconds (--batch-seconds) must be a finite number > 0",
        ),
        (
            vec!["transcribe", "--model", m, w, "--chunk-length-s", "inf"],
            "--chunk-length-s must be a finite number > 0",
        ),
        (
            vec!["transcribe", "--model", m, w, "--stride-length-s", "20"],
            "more than twice --stride-length-s",
        ),
    ];
    for (args, expected) in cases {
        let output = asr_train(&args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn chained_errors_name_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let m = missing.to_str().unwrap();
    let cases = [
        (vec!["score", "--ref", m, "--hyp", m], "(os error 2)"),
        (vec!["run", "--config", m], "(os error 2)"),
        (vec!["run", "--shards", m], "(os error 2)"),
        (
            vec!["transcribe", "--model", m, m],
            "no config.json in this folder",
        ),
    ];
    for (args, cause) in cases {
        let output = asr_train(&args);
        let err = stderr(&output);
        assert!(!output.status.success(), "{args:?}");
        assert_eq!(
            err.matches(cause).count(),
            1,
            "{args:?}: the cause is repeated: {err}"
        );
        assert!(err.contains("missing.txt"), "{args:?}: {err}");
    }
}

/// The fixture clips one after the other, `times` times: a clip of ~6.3 s per round.
fn long_clip(times: usize) -> Vec<f32> {
    let (utterances, _) = speech();
    let mut audio = Vec::new();
    for _ in 0..times {
        for u in &utterances {
            audio.extend_from_slice(&u.audio);
        }
    }
    audio
}

/// The `w2v2-large` fixture's architecture (layer-norm feature encoder, frames of 20
/// samples) without transformer layers, random weights: every output frame depends on
/// nearby audio only, so windowed logits must equal the whole clip's.
fn local_model() -> CtcModel {
    let path = model_dir("w2v2-large").join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["num_hidden_layers"] = 0.into();
    let config = asr_model::Config::from_json_str(&json.to_string(), &path).unwrap();
    tch::manual_seed(7);
    CtcModel::from_config(config, Device::Cpu).unwrap()
}

fn normalized(audio: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; audio.len()];
    asr_train::data::normalize_into(audio, &mut out);
    out
}

#[test]
fn windowed_logits_equal_the_whole_clips_for_a_local_model() {
    let _serial = serial();
    tch::set_num_threads(1);
    let model = local_model();
    let audio = normalized(&long_clip(1));
    let n = audio.len();
    let whole = tch::no_grad(|| {
        model
            .forward_padded(
                &Tensor::from_slice(&audio).view([1, n as i64]),
                &[n as i64],
                false,
                None,
            )
            .unwrap()
    });
    let whole = whole.logits.get(0);
    let windowing = Windowing {
        chunk_length_s: 1.0,
        stride_length_s: 0.2,
    };
    let (chunk, stride) = windowing.samples(&model).unwrap();
    assert_eq!((chunk, stride), (16_000, 3_200));
    let windows = plan_windows(n, chunk, stride, 20, model.num_frames(n as i64));
    assert!(windows.len() >= 8, "{windows:?}");
    for per_batch in [1, 3] {
        let joined = windowed_logits(
            &model,
            &audio,
            &windows,
            per_batch,
            asr_model::precision::Precision::F32,
        )
        .unwrap();
        assert_eq!(joined.size(), whole.size());
        let diff = (&joined - &whole).abs().max().double_value(&[]);
        assert!(
            diff < 1e-4,
            "max difference {diff} with {per_batch} per batch"
        );
    }
    // The seams matter: without the strides (keeping every window whole) the frames at
    // the window edges differ.
    let naive: Vec<Tensor> = audio
        .chunks(chunk)
        .filter(|c| c.len() >= 40)
        .map(|c| {
            let input = Tensor::from_slice(c).view([1, c.len() as i64]);
            tch::no_grad(|| model.forward_padded(&input, &[c.len() as i64], false, None))
                .unwrap()
                .logits
                .get(0)
        })
        .collect();
    let naive = Tensor::cat(&naive, 0);
    let frames = naive.size()[0].min(whole.size()[0]);
    let diff = (naive.narrow(0, 0, frames) - whole.narrow(0, 0, frames))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff > 1e-3, "the test cannot tell seams apart ({diff})");
}

/// A mono 16-bit PCM WAV file.
fn write_wav(path: &Path, samples: &[f32]) {
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    bytes.extend_from_slice(&32_000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        let v = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn long_files_are_transcribed_in_windows_and_short_ones_as_before() {
    let _serial = serial();
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.wav");
    write_wav(&long, &long_clip(2));
    let short = fixture_dir().join("utt-03.wav"); // 0.85 s: shorter than a window
    let windowing = Windowing {
        chunk_length_s: 1.0,
        stride_length_s: 0.2,
    };
    let f32 = asr_model::precision::Precision::F32;

    // A model whose frames depend on nearby audio only: the long file's windowed
    // transcript is the greedy decode of the whole clip's logits.
    let model = local_model();
    let vocab = asr_model::read_vocab(&model_dir("w2v2-large")).unwrap();
    let paths = [short.clone(), long.clone()];
    let texts = transcribe_files(&model, &vocab, &paths, 100.0, &windowing, f32);
    let whole = |path: &Path| {
        let audio = normalized(&asr_train::transcribe::load_audio_16k(path).unwrap());
        let n = audio.len() as i64;
        let output = tch::no_grad(|| {
            model.forward_padded(&Tensor::from_slice(&audio).view([1, n]), &[n], false, None)
        })
        .unwrap();
        model.greedy_decode(&output, &vocab).pop().unwrap()
    };
    assert_eq!(texts[1].as_deref().unwrap(), whole(&long));
    assert!(!texts[1].as_deref().unwrap().is_empty());
    // A file shorter than a window takes the unwindowed path: the same text.
    assert_eq!(texts[0].as_deref().unwrap(), whole(&short));

    // A real (attention) model: the long file runs in windows of at most 1 s.
    let pretrained = CtcModel::from_pretrained(&model_dir("w2v2-large"), Device::Cpu).unwrap();
    let texts = transcribe_files(&pretrained, &vocab, &paths, 100.0, &windowing, f32);
    assert!(texts.iter().all(Result::is_ok), "{texts:?}");
    let default = transcribe_files(
        &pretrained,
        &vocab,
        std::slice::from_ref(&short),
        100.0,
        &Windowing::default(),
        f32,
    );
    assert_eq!(
        texts[0], default[0],
        "a short file's text depends on windowing"
    );
    let n = asr_train::transcribe::load_audio_16k(&long).unwrap().len();
    let (chunk, stride) = windowing.samples(&pretrained).unwrap();
    let windows = plan_windows(n, chunk, stride, 20, pretrained.num_frames(n as i64));
    assert!(windows.len() > 10);
    assert!(windows.iter().all(|w| w.end - w.start <= 16_000));
}
