//! `--model org/name[@revision]` (issue 15): `eval`, `transcribe` and `run` load a
//! model from a Hugging Face cache laid out as huggingface_hub lays it out (blobs,
//! snapshot symlinks, refs), offline; a missing model is an error that lists where it
//! was looked for. No test touches the network (HF_HUB_OFFLINE=1 throughout).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use asr_text::UnkPolicy;
use serde_json::Value;

// The tests here run asr-train in child processes: no libtorch state to serialize.
#[allow(dead_code)]
mod common;
use common::{fixture_dir, speech, write_pack};

const MAIN: &str = "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
const V2: &str = "9e8d7c6b5a49382716051f2e3d4c5b6a79881726";

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// Puts fixture model `name` into `cache` as snapshot `commit` of `org/name`, the way
/// huggingface_hub does: each file's content under `blobs/<etag>`, the snapshot's
/// files relative symlinks to them, and `refs/<branch>` holding the commit hash.
fn cache_model(cache: &Path, fixture: &str, commit: &str, branch: Option<&str>) {
    let repo = cache.join("models--org--name");
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in ["config.json", "model.safetensors", "vocab.json"] {
        let bytes = std::fs::read(model_dir(fixture).join(file)).unwrap();
        // huggingface_hub names blobs by etag (sha256 for LFS files, git sha1 else);
        // any unique name shows the links are followed.
        let etag = format!("{fixture}-{file}-{}", bytes.len());
        std::fs::write(repo.join("blobs").join(&etag), bytes).unwrap();
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&etag), snapshot.join(file))
            .unwrap();
    }
    if let Some(branch) = branch {
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join(branch), commit).unwrap();
    }
}

/// asr-train with only the given Hugging Face variables set, offline.
fn asr_train(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asr-train"));
    for var in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
    ] {
        command.env_remove(var);
    }
    for (var, value) in env {
        command.env(var, value);
    }
    command
        .env("HF_HUB_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A pack of the six fixture clips, transcribed in the fixture models' vocabulary
/// (letters A-I).
fn pack(dir: &Path) {
    let (mut utterances, _) = speech();
    let vocab = asr_model::read_vocab(&model_dir("w2v2-base")).unwrap();
    let texts = ["A BAD CAB", "HIDE", "BEACH", "FIG", "CHAFE", "DIG"];
    for (u, text) in utterances.iter_mut().zip(texts) {
        u.text = text.to_string();
        u.labels = vocab.encode(text, UnkPolicy::Error).unwrap();
    }
    write_pack(dir, &utterances, &vocab, &vocab);
}

/// `eval --json`'s per-split results (the `model` field names the argument).
fn eval_splits(shards: &Path, model: &str, env: &[(&str, &Path)]) -> Value {
    let shards = shards.to_str().unwrap();
    let args = [
        "eval",
        "--shards",
        shards,
        "--model",
        model,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--precision",
        "f32",
        "--json",
    ];
    let results: Value = serde_json::from_str(&ok(asr_train(&args, env))).unwrap();
    results["splits"].clone()
}

fn transcribe(model: &str, env: &[(&str, &Path)]) -> String {
    let clip = fixture_dir().join("utt-00.wav");
    let args = [
        "transcribe",
        "--model",
        model,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--precision",
        "f32",
        clip.to_str().unwrap(),
    ];
    ok(asr_train(&args, env))
}

fn folder(name: &str) -> String {
    model_dir(name).to_str().unwrap().to_string()
}

#[test]
fn eval_and_transcribe_load_a_hub_id_from_the_cache_offline() {
    let cache = tempfile::tempdir().unwrap();
    cache_model(cache.path(), "w2v2-base", MAIN, Some("main"));
    let shards = tempfile::tempdir().unwrap();
    pack(shards.path());
    let env = [("HF_HUB_CACHE", cache.path())];

    let by_id = eval_splits(shards.path(), "org/name", &env);
    assert_eq!(
        by_id,
        eval_splits(shards.path(), &folder("w2v2-base"), &env)
    );
    assert!(by_id["train"]["loss"].as_f64().is_some(), "{by_id}");
    assert_eq!(
        transcribe("org/name", &env),
        transcribe(&folder("w2v2-base"), &env)
    );
}

#[test]
fn a_revision_is_a_branch_in_refs_or_a_commit_hash() {
    let cache = tempfile::tempdir().unwrap();
    cache_model(cache.path(), "w2v2-base", MAIN, Some("main"));
    cache_model(cache.path(), "w2v2-large", V2, Some("v2"));
    let shards = tempfile::tempdir().unwrap();
    pack(shards.path());
    let env = [("HF_HUB_CACHE", cache.path())];

    let base = eval_splits(shards.path(), &folder("w2v2-base"), &env);
    let large = eval_splits(shards.path(), &folder("w2v2-large"), &env);
    assert_ne!(
        base, large,
        "the two fixtures must tell the revisions apart"
    );
    for (spec, expected) in [
        ("org/name".to_string(), &base),
        ("org/name@main".to_string(), &base),
        ("org/name@v2".to_string(), &large),
        (format!("org/name@{V2}"), &large),
        (format!("org/name@{MAIN}"), &base),
    ] {
        assert_eq!(&eval_splits(shards.path(), &spec, &env), expected, "{spec}");
    }
}

#[test]
fn hf_home_is_the_cache_parent_when_hf_hub_cache_is_unset() {
    let home = tempfile::tempdir().unwrap();
    cache_model(&home.path().join("hub"), "w2v2-base", MAIN, Some("main"));
    let env = [("HF_HOME", home.path())];
    assert_eq!(
        transcribe("org/name", &env),
        transcribe(&folder("w2v2-base"), &env)
    );
}

#[test]
fn run_fine_tunes_a_hub_id() {
    let cache = tempfile::tempdir().unwrap();
    cache_model(cache.path(), "w2v2-base", MAIN, Some("main"));
    let shards = tempfile::tempdir().unwrap();
    pack(shards.path());
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let args = [
        "run",
        "--shards",
        shards.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--model",
        "org/name",
        "--device",
        "cpu",
        "--precision",
        "f32",
        "--threads",
        "1",
        "--max-steps",
        "1",
        "--batch-seconds",
        "4",
        "--eval-every",
        "0",
        "--final-splits",
        "dev",
    ];
    ok(asr_train(&args, &[("HF_HUB_CACHE", cache.path())]));
    assert!(run.join("best/model.safetensors").is_file());
}

#[test]
fn a_missing_model_names_every_place_looked_at() {
    let cache = tempfile::tempdir().unwrap();
    cache_model(cache.path(), "w2v2-base", MAIN, Some("main"));
    let env = [("HF_HUB_CACHE", cache.path())];
    let repo = cache.path().join("models--org--name");
    let clip = fixture_dir().join("utt-00.wav");
    let clip = clip.to_str().unwrap();
    for (spec, missing) in [
        ("org/absent", vec![cache.path().join("models--org--absent")]),
        (
            "org/name@v9",
            vec![repo.join("refs/v9"), repo.join("snapshots/v9")],
        ),
    ] {
        let output = asr_train(
            &["transcribe", "--model", spec, "--device", "cpu", clip],
            &env,
        );
        assert!(!output.status.success());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            err.contains(&format!("model {spec}: not in the cache")),
            "{err}"
        );
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
        assert!(
            err.contains(&format!(
                "local folder {}: not found",
                &spec[..spec.find('@').unwrap_or(spec.len())]
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "cache {} (from HF_HUB_CACHE)",
                cache.path().display()
            )),
            "{err}"
        );
        for path in missing {
            assert!(
                err.contains(&format!("{}: not found", path.display())),
                "{err}"
            );
        }
        assert!(err.contains("hint:"), "{err}");
    }
    // `run` says the same.
    let shards = tempfile::tempdir().unwrap();
    pack(shards.path());
    let out = shards.path().join("run");
    let args = [
        "run",
        "--shards",
        shards.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        "org/absent",
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    let output = asr_train(&args, &env);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("model org/absent: not in the cache"), "{err}");
}
