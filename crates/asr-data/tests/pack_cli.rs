//! `asr-data pack` as a user runs it: killed with SIGKILL mid-way and run again, it ends
//! with exactly the files of an uninterrupted run; a finished pack is not resumed; parts
//! merge; hostile input (a FIFO, a piped WAV, absurd --threads, a closed stdout) gets an
//! answer, not a hang or a panic; `inspect` and `merge` wiring.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asr-data");

/// Writes a 16-bit mono WAV.
fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    fs::write(path, wav_bytes(rate, samples)).unwrap();
}

/// A 16-bit mono WAV's bytes.
fn wav_bytes(rate: u32, samples: &[i16]) -> Vec<u8> {
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
    bytes
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
    // With --vocab, and without: then every part builds the same vocabulary, although
    // only one part has the row with q, u, z and j.
    let bare = tmp.path().join("shards-no-vocab");
    let rare = tmp.path().join("corpus/rare.jsonl");
    let rows = fs::read_to_string(&manifest).unwrap()
        + "{\"id\": \"rare\", \"audio_filepath\": \"audio/clip0000.wav\", \"text\": \"quiz jazz\"}\n";
    fs::write(&rare, rows).unwrap();
    for (out, vocab, rows) in [(&out, Some(&vocab), 40), (&bare, None, 41)] {
        let input = if vocab.is_some() { &manifest } else { &rare };
        for k in 0..3 {
            let status = Command::new(BIN)
                .args(pack_args(input, out))
                .args(["--part", &format!("{k}/3")])
                .args(vocab.map(|v| format!("--vocab={}", v.display())))
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "{}",
                String::from_utf8_lossy(&status.stderr)
            );
        }
        assert!(out.join("manifest-000-of-003.json").exists());
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
        assert!(text.contains(&format!("{rows} rows")), "{text}");
    }
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs asr-data, failing the test if it has not finished within 60 s (a hang).
fn run_with_deadline(args: &[String]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("asr-data {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn a_finished_pack_is_refused_not_resumed_and_overwrite_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(&tmp.path().join("corpus"), 12);
    let out = tmp.path().join("shards");
    let first = run_with_deadline(&pack_args(&manifest, &out));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let files = all_files(&out);

    let again = run_with_deadline(&pack_args(&manifest, &out));
    let (stdout, stderr) = (text(&again.stdout), text(&again.stderr));
    assert_eq!(again.status.code(), Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains("resumed"), "{stdout}");
    assert!(
        stderr.contains("finished pack") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(all_files(&out), files, "a refused run changed files");

    // An edited transcript, then --overwrite: the new text is packed.
    let edited = fs::read_to_string(&manifest)
        .unwrap()
        .replacen("alpha alpha", "echo echo", 1);
    fs::write(&manifest, edited).unwrap();
    let mut args = pack_args(&manifest, &out);
    args.push("--overwrite".into());
    let replaced = run_with_deadline(&args);
    let stdout = text(&replaced.stdout);
    assert!(replaced.status.success(), "{}", text(&replaced.stderr));
    assert!(!stdout.contains("resumed"), "{stdout}");
    assert!(stdout.contains("replaced the finished pack"), "{stdout}");
    let inspect = run_with_deadline(&strings(&[
        "inspect",
        &out.display().to_string(),
        "--rows",
        "100",
    ]));
    let shown = text(&inspect.stdout);
    assert!(shown.contains("echo echo"), "{shown}");
    assert!(!shown.contains("alpha alpha"), "{shown}");
}

/// A WAV as `ffmpeg -i x -f wav -` writes it: RIFF and data sizes 0xFFFFFFFF. Validate and
/// pack both take it whole (2.5 s at 44.1 kHz).
#[test]
fn a_piped_wav_with_unknown_sizes_is_packed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let rate = 44_100;
    let frames = rate as usize * 5 / 2 + 7;
    let samples: Vec<i16> = (0..frames).map(|k| ((k * 31) % 16_000) as i16).collect();
    let mut bytes = wav_bytes(rate, &samples);
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(tmp.path().join("piped.wav"), bytes).unwrap();
    let manifest = tmp.path().join("m.jsonl");
    fs::write(
        &manifest,
        "{\"audio_filepath\": \"piped.wav\", \"text\": \"a piped clip\"}\n",
    )
    .unwrap();
    let out = tmp.path().join("shards");
    let pack = run_with_deadline(&strings(&[
        "pack",
        &manifest.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]));
    let stdout = text(&pack.stdout);
    assert!(pack.status.success(), "{stdout}{}", text(&pack.stderr));
    assert!(stdout.contains("packed 1 rows"), "{stdout}");
    assert!(stdout.contains("skipped: none"), "{stdout}");
    let packed = fs::read_to_string(out.join("manifest.json")).unwrap();
    let manifest_json: serde_json::Value = serde_json::from_str(&packed).unwrap();
    let seconds = manifest_json["splits"]["train"]["seconds"]
        .as_f64()
        .unwrap();
    assert!(
        (seconds - frames as f64 / f64::from(rate)).abs() < 1e-3,
        "{seconds}"
    );
}

/// A manifest row naming a FIFO: validate and pack finish, name it, and leave it out
/// (opening a FIFO for reading would wait forever for a writer).
#[cfg(unix)]
#[test]
fn a_fifo_named_by_a_manifest_is_skipped_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(tmp.path(), 3);
    let fifo = tmp.path().join("audio/fifo.wav");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut rows = fs::read_to_string(&manifest).unwrap();
    rows.push_str("{\"audio_filepath\": \"audio/fifo.wav\", \"text\": \"a pipe\"}\n");
    fs::write(&manifest, rows).unwrap();

    let validate = run_with_deadline(&strings(&["validate", &manifest.display().to_string()]));
    let stdout = text(&validate.stdout);
    assert_eq!(validate.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FIFO"), "{stdout}");
    let out = tmp.path().join("shards");
    let pack = run_with_deadline(&strings(&[
        "pack",
        &manifest.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]));
    assert!(pack.status.success(), "{}", text(&pack.stderr));
    assert!(text(&pack.stdout).contains("packed 3 rows"));
    let skipped = fs::read_to_string(out.join("skipped.jsonl")).unwrap();
    assert!(
        skipped.contains("audio/fifo") && skipped.contains("FIFO"),
        "{skipped}"
    );
}

#[test]
fn threads_must_be_between_1_and_1024() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(tmp.path(), 2);
    for bad in ["0", "100000", "-3"] {
        let mut args = pack_args(&manifest, &tmp.path().join("out"));
        let j = args.iter().position(|a| a == "-j").unwrap();
        args[j + 1] = bad.to_string();
        args[j] = "--threads".to_string();
        if bad.starts_with('-') {
            args[j] = format!("--threads={bad}");
            args.remove(j + 1);
        }
        let run = run_with_deadline(&args);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "--threads {bad}: {stderr}");
        assert!(stderr.contains("--threads"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `asr-data inspect SHARDS | head -1`: the reader goes away; inspect stops printing
/// quietly and keeps its exit status (0: the shards verify), as Unix tools do.
#[cfg(unix)]
#[test]
fn inspect_into_a_closed_pipe_exits_quietly() {
    use std::os::fd::FromRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(&tmp.path().join("corpus"), 12);
    let out = tmp.path().join("shards");
    assert!(run_with_deadline(&pack_args(&manifest, &out))
        .status
        .success());
    for extra in [&[][..], &["--json"][..]] {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe { libc::close(fds[0]) }; // the reader is gone before anything is written
        let writer = unsafe { std::fs::File::from_raw_fd(fds[1]) };
        let run = Command::new(BIN)
            .args(["inspect", &out.display().to_string()])
            .args(extra)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(0), "{extra:?}: {stderr}");
        assert!(stderr.is_empty(), "{extra:?}: {stderr}");
    }
}

/// `--exclude`: one id per line (spaces inside kept); ids matching no row are named.
#[test]
fn exclude_takes_whole_lines_and_names_ids_that_match_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = make_corpus(tmp.path(), 3);
    let rows = fs::read_to_string(&manifest).unwrap().replace(
        "\"audio_filepath\": \"audio/clip0001.wav\"",
        "\"id\": \"clip one\", \"audio_filepath\": \"audio/clip0001.wav\"",
    );
    fs::write(&manifest, rows).unwrap();
    let list = tmp.path().join("exclude.txt");
    fs::write(&list, "clip one\nno such clip\n").unwrap();
    let out = tmp.path().join("shards");
    let run = run_with_deadline(&strings(&[
        "pack",
        &manifest.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--exclude",
        &list.display().to_string(),
    ]));
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{stderr}");
    assert!(stdout.contains("packed 2 rows"), "{stdout}");
    assert!(stdout.contains("excluded 1"), "{stdout}");
    assert!(
        stderr.contains("1 of the 2 ids") && stderr.contains("\"no such clip\""),
        "{stderr}"
    );
}
