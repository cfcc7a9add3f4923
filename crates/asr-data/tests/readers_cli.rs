//! `asr-data validate` / `pack` on data shaped like users' mistakes (issue 12): a
//! header-only CSV is an error naming the file; a ragged CSV's bad rows are counted and
//! listed by pack, not "skipped: none"; an unterminated quote is an error at its line.

use std::fs;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_asr-data");

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 1 s, 16 kHz, 16-bit mono WAV.
fn wav(path: &Path) {
    let samples: Vec<i16> = (0..16_000)
        .map(|i| ((i as f32 * 0.05).sin() * 3000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [16_000u32, 32_000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2u16, 16] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b).unwrap();
}

#[test]
fn a_header_only_csv_does_not_validate() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("empty.csv");
    fs::write(&csv, "path,text\n").unwrap();
    let (code, stdout, stderr) = run(&["validate", csv.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("empty.csv") && stderr.contains("no rows"),
        "{stderr}"
    );
}

#[test]
fn pack_lists_ragged_rows_instead_of_skipped_none() {
    let dir = tempfile::tempdir().unwrap();
    wav(&dir.path().join("wavs/a.wav"));
    fs::write(
        dir.path().join("m.csv"),
        "path,text\nwavs/a.wav,hello\nwavs/b.wav,x,y,z\nwavs/c.wav\n",
    )
    .unwrap();
    let out = dir.path().join("shards");
    let (code, stdout, stderr) = run(&[
        "pack",
        dir.path().join("m.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("skipped: none"), "{stdout}");
    assert!(stdout.contains("skipped: 2 rows"), "{stdout}");
    let listed = fs::read_to_string(out.join("skipped.jsonl")).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("\"line\":3") && listed.contains("\"line\":4"),
        "{listed}"
    );
}

#[test]
fn an_unterminated_quote_is_an_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("q.csv");
    fs::write(
        &csv,
        "path,text\na.wav,fine\nb.wav,\"oops\nc.wav,lost\nd.wav,lost too\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["validate", csv.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("q.csv:3") && stderr.contains("never closed"),
        "{stderr}"
    );
}
