//! `asr-data pack` as a user runs it: killed with SIGKILL mid-way and run again, it ends
//! with exactly the files of an uninterrupted run; `inspect` and `merge` wiring.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asr-data");

/// Writes a 16-bit mono WAV.
fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(44 + samples.len() * 2);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, bytes).unwrap();
}

/// A JSON-lines corpus of `count` tone clips at 44.1 kHz (resampling work for pack).
fn make_corpus(dir: &Path, count: usize) -> std::path::PathBuf {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    fs::create_dir_all(dir.join("audio")).unwrap();
    let mut manifest = String::new();
    for i in 0..count {
        let rate = 44_100;
        let n = rate as usize * (1 + i % 2);
        let freq = 150.0 + (i % 37) as f32 * 20.0;
        let samples: Vec<i16> = (0..n)
            .map(|k| {
                let t = k as f32 / rate as f32;
                (8_000.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
            })
            .collect();
        let name = format!("audio/clip{i:04}.wav");
        write_wav(&dir.join(&name), rate, &samples);
        let text = format!("{} {}", words[i % 6], words[(i / 6) % 6]);
        manifest.push_str(&format!(
            "{{\"audio_filepath\": \"{name}\", \"text\": \"{text}\", \"duration\": {}}}\n",
            n as f64 / f64::from(rate)
        ));
    }
    let path = dir.join("manifest.jsonl");
    fs::write(&path, manifest).unwrap();
    path
}

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn pack_args(manifest: &Path, out: &Path) -> Vec<String> {
    vec![
        "pack".into(),
        manifest.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--shard-size".into(),
        "150kB".into(),
        "--split".into(),
        "train=0.8,dev=0.1,test=0.1".into(),
        "-j".into(),
        "1".into(),
        "--in-flight".into(),
        "2".into(),
    ]
}

#[test]
fn kill_9_then_rerun_gives_the_bytes_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(&tmp.path().join("corpus"), 600);
    let reference = tmp.path().join("reference");
    let status = Command::new(BIN)
        .args(pack_args(&manifest, &reference))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("packed 600 rows"), "{stdout}");
    let want = all_files(&reference);

    let out = tmp.path().join("interrupted");
    let mut child = Command::new(BIN)
        .args(pack_args(&manifest, &out))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as a few shards of train are complete.
    let deadline = Instant::now() + Duration::from_secs(120);
    let train = out.join("train");
    loop {
        let complete = fs::read_dir(&train)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".arrow"))
                })
                .count()
            })
            .unwrap_or(0);
        if complete >= 3 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !out.join("manifest.json").exists(),
        "the pack finished before it could be killed: make the corpus larger"
    );
    let rerun = Command::new(BIN)
        .args(pack_args(&manifest, &out))
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let stdout = String::from_utf8_lossy(&rerun.stdout);
    assert!(stdout.contains("resumed: "), "{stdout}");
    assert_eq!(
        all_files(&out),
        want,
        "files differ from the uninterrupted run"
    );

    // inspect verifies and decodes rows back; a flipped byte makes it exit 1.
    let inspect = Command::new(BIN)
        .args(["inspect", &out.display().to_string()])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("checksums: all"), "{text}");
    assert!(text.contains("(same)"), "{text}");
    let shard = out.join("train/shard-00001.arrow");
    let mut bytes = fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&shard, bytes).unwrap();
    let inspect = Command::new(BIN)
        .args(["inspect", &out.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(inspect.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("FAILED"));
}

#[test]
fn parts_then_merge_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(&tmp.path().join("corpus"), 40);
    let out = tmp.path().join("shards");
    let vocab = tmp.path().join("vocab.json");
    fs::write(
        &vocab,
        r#"{"[PAD]": 0, "[UNK]": 1, "|": 2, "a": 3, "b": 4, "c": 5, "d": 6, "e": 7, "f": 8, "h": 9, "i": 10, "l": 11, "o": 12, "p": 13, "r": 14, "t": 15, "v": 16, "x": 17}"#,
    )
    .unwrap();
    for k in 0..2 {
        let status = Command::new(BIN)
            .args(pack_args(&manifest, &out))
            .args([
                "--part",
                &format!("{k}/2"),
                "--vocab",
                &vocab.display().to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    assert!(out.join("manifest-000-of-002.json").exists());
    let merge = Command::new(BIN)
        .args(["merge", &out.display().to_string()])
        .output()
        .unwrap();
    assert!(
        merge.status.success(),
        "{}",
        String::from_utf8_lossy(&merge.stderr)
    );
    let text = String::from_utf8_lossy(&merge.stdout);
    assert!(text.contains("40 rows"), "{text}");
    let bad = Command::new(BIN)
        .args([
            "pack",
            &manifest.display().to_string(),
            "--out",
            "x",
            "--part",
            "2/2",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
