//! Whisper folders in `asr-train`: model dispatch, what `run` needs, `transcribe`
//! in 30-s windows with `--language` / `--task`, and `eval` by generation with the
//! metric chosen by script. The model is the tiny random multilingual fixture (real
//! 51,865-token vocabulary), so its transcripts are noise: the tests check behaviour and
//! formats, not text.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use asr_text::{UnkPolicy, Vocab};
use asr_train::data::Utterance;
use asr_train::whisper::transcribe::{join_windows, plan_windows, GenerationChoice};
use asr_train::whisper::{AnyModel, ModelKind, WhisperBundle, WHISPER_TINY};
use tch::Device;

#[allow(dead_code)]
mod common;
use common::{serial, speech, write_pack};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_asr-train")
}

fn asr_train(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn whisper_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/whisper")
}

fn tokenizer_json() -> PathBuf {
    whisper_fixtures().join("tokenizer/tokenizer.json")
}

/// The tiny multilingual fixture model with the real tokenizer beside it, in `dir`.
fn whisper_dir(dir: &Path) -> PathBuf {
    let model = dir.join("whisper");
    std::fs::create_dir_all(&model).unwrap();
    let from = whisper_fixtures().join("models/multilingual");
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(from.join(file), model.join(file)).unwrap();
    }
    std::fs::copy(tokenizer_json(), model.join("tokenizer.json")).unwrap();
    model
}

fn write_wav(path: &Path, samples: &[f32]) {
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for v in [16_000u32, 32_000] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2u16, 16] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        let v = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// `seconds` of the speech fixtures' audio repeated (the clips are short).
fn speech_audio(seconds: usize) -> Vec<f32> {
    let (utterances, _) = speech();
    let all: Vec<f32> = utterances.iter().flat_map(|u| u.audio.clone()).collect();
    all.iter().copied().cycle().take(seconds * 16_000).collect()
}

#[test]
fn whisper_folders_and_the_preset_are_whisper_and_the_rest_ctc() {
    let tmp = tempfile::tempdir().unwrap();
    let model = whisper_dir(tmp.path());
    assert_eq!(ModelKind::of(model.to_str().unwrap()), ModelKind::Whisper);
    let config = model.join("config.json");
    assert_eq!(ModelKind::of(config.to_str().unwrap()), ModelKind::Whisper);
    assert_eq!(ModelKind::of(WHISPER_TINY), ModelKind::Whisper);
    assert_eq!(ModelKind::of("tiny"), ModelKind::Ctc);
    let ctc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/w2v2-base");
    assert_eq!(ModelKind::of(ctc.to_str().unwrap()), ModelKind::Ctc);
    let _serial = serial();
    let task = |dir: &Path| AnyModel::from_pretrained(dir, Device::Cpu).unwrap().task();
    assert_eq!(task(&model), "seq2seq");
    assert_eq!(task(&ctc), "ctc");
    // A Whisper folder without tokenizer.json is refused with a hint.
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let err = WhisperBundle::from_pretrained(&model, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("hint"),
        "{err}"
    );
}

#[test]
fn the_whisper_tiny_preset_takes_its_token_ids_from_the_tokenizer() {
    let _serial = serial();
    tch::manual_seed(0);
    let bundle = WhisperBundle::preset(WHISPER_TINY, &tokenizer_json(), Device::Cpu).unwrap();
    let config = bundle.model.config();
    assert_eq!(
        (config.d_model, config.encoder_layers, config.decoder_layers),
        (384, 4, 4)
    );
    let special = bundle.tokenizer.special_tokens();
    assert_eq!(
        config.decoder_start_token_id,
        i64::from(special.start_of_transcript)
    );
    let prompt = bundle.prompt(Some("zh"), None).unwrap();
    let expected = bundle
        .tokenizer
        .prefix(
            Some("zh"),
            Some(asr_model::whisper::Task::Transcribe),
            false,
        )
        .unwrap();
    assert_eq!(
        prompt,
        expected.iter().map(|&i| i64::from(i)).collect::<Vec<_>>()
    );
    let err = bundle.prompt(None, None).unwrap_err().to_string();
    assert!(err.contains("no language was given"), "{err}");
    assert!(WhisperBundle::preset("whisper-huge", &tokenizer_json(), Device::Cpu).is_err());
}

/// `run` trains Whisper models (see tests/whisper_train.rs); what it cannot guess is
/// refused before training, naming the option: the language of a multilingual model,
/// the tokenizer of a random-weight preset, a batch smaller than one 30-s window, and
/// CTC-only options.
#[test]
fn run_on_whisper_names_the_options_it_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = whisper_dir(tmp.path());
    let (utterances, vocab) = speech();
    let shards = tmp.path().join("shards");
    write_pack(&shards, &utterances, &vocab, &vocab);
    let cases: [(&str, &[&str], &str); 4] = [
        (model.to_str().unwrap(), &[], "--language"),
        (WHISPER_TINY, &["--language", "en"], "--tokenizer"),
        (
            model.to_str().unwrap(),
            &["--language", "en", "--batch-seconds", "20"],
            "--batch-seconds 20",
        ),
        (
            model.to_str().unwrap(),
            &["--language", "en", "--reinit-head"],
            "--reinit-head",
        ),
    ];
    for (spec, extra, named) in cases {
        let out = tmp.path().join("run");
        let args = [
            "run",
            "--shards",
            shards.to_str().unwrap(),
            "--model",
            spec,
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--batch-seconds",
            "60",
        ];
        let output = asr_train(&[&args[..], extra].concat());
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(named), "{named}: {}", stderr(&output));
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn a_long_file_is_transcribed_as_the_join_of_its_30_second_windows() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let model = whisper_dir(tmp.path());
    let long = speech_audio(65);
    let short = speech_audio(2);
    let (long_wav, short_wav) = (tmp.path().join("long.wav"), tmp.path().join("short.wav"));
    write_wav(&long_wav, &long);
    write_wav(&short_wav, &short);
    let bundle = WhisperBundle::from_pretrained(&model, Device::Cpu).unwrap();
    let choice = GenerationChoice {
        language: Some("en".into()),
        task: None,
    };
    let paths = [long_wav, tmp.path().join("missing.wav"), short_wav];
    let results =
        asr_train::whisper::transcribe::transcribe_files(&bundle, &paths, &choice, 60.0).unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[1].as_ref().unwrap_err().contains("missing.wav"));
    // The long file: three windows, each generated on its own, joined.
    let decoded = asr_train::transcribe::load_audio_16k(&paths[0]).unwrap();
    let windows = plan_windows(decoded.len());
    assert_eq!(windows.len(), 3);
    let prompt = bundle.prompt(Some("en"), None).unwrap();
    let texts: Vec<String> = windows
        .iter()
        .map(|&(s, e)| {
            bundle
                .generate_texts(&[&decoded[s..e]], &prompt)
                .unwrap()
                .remove(0)
        })
        .collect();
    assert_eq!(results[0].as_ref().unwrap(), &join_windows(&texts));
    let alone = bundle.generate_texts(&[&short], &prompt).unwrap().remove(0);
    assert_eq!(results[2].as_ref().unwrap(), &alone);
}

#[test]
fn transcribe_prints_one_line_per_file_and_needs_a_language_for_multilingual_models() {
    let tmp = tempfile::tempdir().unwrap();
    let model = whisper_dir(tmp.path());
    let (a, b) = (tmp.path().join("a.wav"), tmp.path().join("b.wav"));
    write_wav(&a, &speech_audio(3));
    write_wav(&b, &speech_audio(1));
    let (m, a, b) = (
        model.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    );
    let base = ["transcribe", "--model", m, "--device", "cpu"];
    let with = |extra: &[&str]| asr_train(&[&base[..], extra, &[a, b]].concat());
    let output = with(&["--language", "zh", "--task", "transcribe"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with(&format!("{a}\t")), "{stdout}");
    assert!(lines[1].starts_with(&format!("{b}\t")), "{stdout}");
    // No language: the model is multilingual and its generation config forces none.
    let output = with(&[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no language was given"),
        "{}",
        stderr(&output)
    );
    let output = with(&["--language", "xx"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("'xx'"), "{}", stderr(&output));
    let output = with(&["--language", "en", "--task", "summarize"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// The speech fixtures' audio under transcripts in `texts`' script.
fn pack_with_texts(dir: &Path, texts: &[&str]) {
    let (utterances, _) = speech();
    let vocab = Vocab::from_chars(texts.iter().flat_map(|t| t.chars()));
    let utterances: Vec<Utterance> = utterances
        .into_iter()
        .zip(texts.iter().cycle())
        .map(|(u, text)| Utterance {
            labels: vocab.encode(text, UnkPolicy::Error).unwrap(),
            text: text.to_string(),
            ..u
        })
        .collect();
    write_pack(dir, &utterances, &vocab, &vocab);
}

fn eval(shards: &Path, model: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let args = [
        "eval",
        "--shards",
        shards.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--splits",
        "dev",
    ];
    let output = asr_train(&[&args[..], extra].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(out.join("final_results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    validate("train-final-results.schema.json", &results);
    let predictions = std::fs::read_to_string(out.join("predictions_dev.jsonl")).unwrap();
    for line in predictions.lines() {
        validate(
            "train-predictions.schema.json",
            &serde_json::from_str(line).unwrap(),
        );
    }
    results
}

fn validate(schema_name: &str, value: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(schema_name);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{schema_name}: {errors:?}\n{value}");
}

#[test]
fn eval_scores_chinese_by_cer_and_english_by_wer_and_agrees_with_score() {
    let tmp = tempfile::tempdir().unwrap();
    let model = whisper_dir(tmp.path());
    let (zh, en) = (tmp.path().join("zh"), tmp.path().join("en"));
    pack_with_texts(&zh, &["今天天气很好", "我们去公园散步", "他说 OK 没问题"]);
    pack_with_texts(
        &en,
        &[
            "the cat sat on the mat",
            "hello world",
            "we went to the park",
        ],
    );
    let results = eval(
        &zh,
        &model,
        &tmp.path().join("zh-out"),
        &["--language", "zh"],
    );
    assert_eq!(results["splits"]["dev"]["metric"], "cer");
    assert_eq!(results["splits"]["dev"]["utterances"], 3);
    let overridden = eval(
        &zh,
        &model,
        &tmp.path().join("zh-wer"),
        &["--language", "zh", "--metric", "wer"],
    );
    assert_eq!(overridden["splits"]["dev"]["metric"], "wer");
    let out = tmp.path().join("en-out");
    let results = eval(&en, &model, &out, &["--language", "en"]);
    let dev = &results["splits"]["dev"];
    assert_eq!(dev["metric"], "wer");
    // The predictions, scored by `asr-train score`, give the same rates.
    let predictions = std::fs::read_to_string(out.join("predictions_dev.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = predictions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let side = |key: &str| -> String {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {}\n",
                    r["id"].as_str().unwrap(),
                    r[key].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(rows[1]["reference"], "hello world");
    let (ref_file, hyp_file) = (tmp.path().join("ref.txt"), tmp.path().join("hyp.txt"));
    std::fs::write(&ref_file, side("reference")).unwrap();
    std::fs::write(&hyp_file, side("hypothesis")).unwrap();
    let output = asr_train(&[
        "score",
        "--ref",
        ref_file.to_str().unwrap(),
        "--hyp",
        hyp_file.to_str().unwrap(),
        "--pairing",
        "kaldi",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let score: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in ["wer", "cer"] {
        let (a, b) = (score[key].as_f64().unwrap(), dev[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-12, "{key}: score {a} vs eval {b}");
    }
}

#[test]
fn language_options_on_a_ctc_model_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (utterances, vocab) = speech();
    let shards = tmp.path().join("shards");
    write_pack(&shards, &utterances, &vocab, &vocab);
    let ctc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/w2v2-base");
    let output = asr_train(&[
        "eval",
        "--shards",
        shards.to_str().unwrap(),
        "--model",
        ctc.to_str().unwrap(),
        "--language",
        "en",
        "--device",
        "cpu",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Whisper models only"),
        "{}",
        stderr(&output)
    );
}
