//! Duplicate ids: one policy in validate and pack. The first row with an id is kept; each
//! later row is a `duplicate_id` error at its own line naming the first; the audio a
//! later row names is not reported as `orphan_audio` (a row names it).

use std::fs;
use std::path::Path;

use asr_corpus::{read_corpus, ReadOptions};
use asr_validate::{validate, Code, Report, ValidateOptions};

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn report(path: &Path) -> Report {
    let corpus = read_corpus(path, &ReadOptions::default()).unwrap();
    validate(&corpus, &ValidateOptions::default(), &|_| {})
        .unwrap()
        .0
}

#[test]
fn a_manifest_id_used_twice_keeps_the_first_and_its_second_audio_is_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    for clip in ["a1", "a2", "b"] {
        write(&dir.path().join(format!("wavs/{clip}.wav")), b"not audio");
    }
    write(
        &dir.path().join("m.csv"),
        "id,path,text\nu1,wavs/a1.wav,first\nu2,wavs/b.wav,other\nu1,wavs/a2.wav,second\n",
    );
    let report = report(&dir.path().join("m.csv"));
    let duplicates: Vec<_> = report.with_code(Code::DuplicateId).collect();
    assert_eq!(duplicates.len(), 1, "{duplicates:#?}");
    let d = duplicates[0];
    assert_eq!(d.id.as_deref(), Some("u1"));
    assert_eq!(d.line, Some(4));
    assert!(
        d.message.contains("m.csv:2")
            && d.message.contains("kept")
            && d.message.contains("skipped"),
        "{}",
        d.message
    );
    let orphans: Vec<_> = report.with_code(Code::OrphanAudio).collect();
    assert!(orphans.is_empty(), "{orphans:#?}");
}

#[test]
fn a_librispeech_id_in_two_chapters_names_both_and_reports_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let subset = dir.path().join("LibriSpeech/train-clean-100");
    write(&subset.join("1/10/1-10-0000.flac"), b"x");
    write(&subset.join("1/10/1-10.trans.txt"), "1-10-0000 HELLO\n");
    // The same id again, with its own audio, in another chapter's transcript.
    write(&subset.join("1/11/1-10-0000.flac"), b"x");
    write(
        &subset.join("1/11/1-11.trans.txt"),
        "1-10-0000 HELLO AGAIN\n",
    );
    let report = report(&dir.path().join("LibriSpeech"));
    let duplicates: Vec<_> = report.with_code(Code::DuplicateId).collect();
    assert_eq!(duplicates.len(), 1, "{duplicates:#?}");
    assert!(duplicates[0]
        .path
        .as_deref()
        .unwrap()
        .ends_with("1-11.trans.txt"));
    assert!(
        duplicates[0].message.contains("1-10.trans.txt:1"),
        "{}",
        duplicates[0].message
    );
    let orphans: Vec<_> = report.with_code(Code::OrphanAudio).collect();
    assert!(orphans.is_empty(), "{orphans:#?}");
}
