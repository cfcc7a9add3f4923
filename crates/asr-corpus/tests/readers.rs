//! Readers on small corpora written into temporary folders: layouts, resolution rules,
//! and bad input (invalid UTF-8, binary garbage, missing columns, empty folders, symlink
//! loops) reported as issues or clear errors naming the file and line, never a panic.

use std::fs;
use std::path::Path;

use asr_corpus::{detect_format, read_corpus, CorpusError, Effect, Format, IssueKind, ReadOptions};

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn opts() -> ReadOptions {
    ReadOptions::default()
}

/// A tiny LibriSpeech subset: `<root>/<subset>/19/198/19-198.trans.txt` + files.
fn librispeech(root: &Path, subset: &str, lines: &[u8], audio: &[&str]) {
    let chapter = root.join(subset).join("19/198");
    write(&chapter.join("19-198.trans.txt"), lines);
    for a in audio {
        write(&chapter.join(a), b"not really audio");
    }
}

#[test]
fn librispeech_lines_ids_and_issues() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("LibriSpeech");
    librispeech(
        &root,
        "train-clean-5",
        b"19-198-0000 HELLO WORLD\r\n19-198-0001 \xC3\x28 BAD UTF8\n19-198-0002 NUL\x00HERE\n19-198-0000 DUPLICATE\n20-198-0003 WRONG SPEAKER\n",
        &["19-198-0000.flac", "19-198-0001.flac", "19-198-0002.flac", "19-198-0004.flac"],
    );
    assert_eq!(detect_format(dir.path()).unwrap(), Format::LibriSpeech);
    let corpus = read_corpus(dir.path(), &opts()).unwrap();
    assert_eq!(corpus.root, root);
    let ids: Vec<&str> = corpus.utterances.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["19-198-0000", "20-198-0003"]);
    let u = &corpus.utterances[0];
    assert_eq!(u.transcript, "HELLO WORLD");
    assert_eq!(u.source, "train-clean-5/19/198/19-198-0000.flac");
    assert_eq!(u.split.as_deref(), Some("train-clean-5"));
    assert_eq!(u.speaker.as_deref(), Some("19"));
    assert_eq!(u.origin.line, 1);
    let kinds: Vec<(IssueKind, Option<&str>, Option<u64>)> = corpus
        .issues
        .iter()
        .map(|i| (i.kind, i.id.as_deref(), i.line))
        .collect();
    assert!(
        kinds.contains(&(
            IssueKind::UnreadableTranscript,
            Some("19-198-0001"),
            Some(2)
        )),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(
            IssueKind::UnreadableTranscript,
            Some("19-198-0002"),
            Some(3)
        )),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(IssueKind::DuplicateId, Some("19-198-0000"), Some(4))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(IssueKind::BadId, Some("20-198-0003"), Some(5))),
        "{kinds:?}"
    );
    // 0004 has a file and no line; 0001/0002 have unreadable lines, so they are not orphans.
    let orphans: Vec<&str> = corpus
        .issues
        .iter()
        .filter(|i| i.kind == IssueKind::OrphanAudio)
        .filter_map(|i| i.id.as_deref())
        .collect();
    assert_eq!(orphans, ["19-198-0004"]);
    let bad_utf8 = corpus.issues.iter().find(|i| i.line == Some(2)).unwrap();
    assert!(bad_utf8.message.contains("UTF-8"), "{}", bad_utf8.message);
    assert!(bad_utf8.path.ends_with("19-198.trans.txt"));
}

#[test]
fn librispeech_single_subset_root() {
    let dir = tempfile::tempdir().unwrap();
    librispeech(
        dir.path(),
        "dev-clean",
        b"19-198-0000 A B\n",
        &["19-198-0000.flac"],
    );
    let corpus = read_corpus(&dir.path().join("dev-clean"), &opts()).unwrap();
    assert_eq!(corpus.utterances[0].split.as_deref(), Some("dev-clean"));
    assert_eq!(corpus.utterances[0].source, "19/198/19-198-0000.flac");
    assert!(corpus.issues.is_empty(), "{:?}", corpus.issues);
}

#[test]
fn binary_garbage_transcript_lists_every_line_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    librispeech(dir.path(), "train", &garbage, &[]);
    let corpus = read_corpus(dir.path(), &opts()).unwrap();
    // Every line is a row that did not become an utterance: each one is listed (pack
    // must account for all of them), none is summarised away.
    let unreadable = corpus
        .issues
        .iter()
        .filter(|i| i.kind == IssueKind::UnreadableTranscript || i.kind == IssueKind::BadId)
        .filter(|i| i.effect == Effect::RowSkipped)
        .count();
    assert!(unreadable > 21, "{unreadable} issues");
    assert_eq!(corpus.rows_read(), corpus.utterances.len() + unreadable);
}

#[cfg(unix)]
#[test]
fn symlink_loop_is_an_issue() {
    let dir = tempfile::tempdir().unwrap();
    librispeech(
        dir.path(),
        "train",
        b"19-198-0000 A B\n",
        &["19-198-0000.flac"],
    );
    std::os::unix::fs::symlink(dir.path().join("train"), dir.path().join("train/19/loop")).unwrap();
    let corpus = read_corpus(dir.path(), &opts()).unwrap();
    let issue = corpus
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::UnreadablePath)
        .expect("a loop issue");
    assert!(issue.message.contains("symlink loop"), "{}", issue.message);
    assert!(
        issue.path.ends_with("train/19/loop"),
        "{}",
        issue.path.display()
    );
    assert_eq!(corpus.utterances.len(), 1);
}

#[test]
fn empty_folder_and_missing_path_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_corpus(dir.path(), &opts()).unwrap_err();
    assert!(matches!(err, CorpusError::UnknownLayout { .. }));
    assert!(err.to_string().contains("the folder is empty"), "{err}");
    let err = read_corpus(&dir.path().join("nope"), &opts()).unwrap_err();
    assert!(matches!(err, CorpusError::Io { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
    // A LibriSpeech folder with no transcripts at all.
    fs::create_dir_all(dir.path().join("LibriSpeech/train/1/2")).unwrap();
    let err = read_corpus(
        dir.path(),
        &ReadOptions {
            format: Some(Format::LibriSpeech),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty folder"), "{err}");
}

#[test]
fn commonvoice_header_variants_and_validated_only_release() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("clips/a.mp3"), b"x");
    write(&root.join("clips/b.mp3"), b"x");
    write(&root.join("clips/orphan.mp3"), b"x");
    // Oldest layout: no extension in `path`, `accent` column; only validated.tsv.
    write(
        &root.join("validated.tsv"),
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n\
         c1\ta\t\"Quoted\" words, kept.\t2\t0\t\t\t\n\
         c2\tb.mp3\tIt's 'fine'\t2\t0\t\t\t\n",
    );
    assert_eq!(detect_format(root).unwrap(), Format::CommonVoice);
    let corpus = read_corpus(root, &opts()).unwrap();
    assert_eq!(corpus.utterances.len(), 2);
    assert_eq!(corpus.utterances[0].transcript, "\"Quoted\" words, kept.");
    assert!(corpus.utterances[0].audio_path.ends_with("clips/a.mp3"));
    assert_eq!(corpus.utterances[0].split, None);
    let orphans: Vec<_> = corpus
        .issues
        .iter()
        .filter(|i| i.kind == IssueKind::OrphanAudio)
        .collect();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].id.as_deref(), Some("orphan"));
}

#[test]
fn commonvoice_tsv_without_a_sentence_column_is_an_error_naming_the_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("clips/a.mp3"), b"x");
    write(
        &root.join("train.tsv"),
        "client_id\tpath\ttext\nc1\ta.mp3\thello\n",
    );
    write(
        &root.join("test.tsv"),
        "client_id\tpath\tsentence\nc2\ta.mp3\thello\n",
    );
    // The whole train split would be lost: an error, not a silent empty split.
    let err = read_corpus(root, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("train.tsv:1") && err.contains("`sentence`") && err.contains("text"),
        "{err}"
    );
    // A file read only for cross-checks (invalidated.tsv) may lack it: an issue.
    write(
        &root.join("train.tsv"),
        "client_id\tpath\tsentence\nc1\ta.mp3\thello\n",
    );
    write(&root.join("invalidated.tsv"), "client_id\tpath\n");
    let corpus = read_corpus(root, &opts()).unwrap();
    let issue = corpus
        .issues
        .iter()
        .find(|i| i.kind == IssueKind::UnreadableTranscript)
        .unwrap();
    assert!(issue.path.ends_with("invalidated.tsv"));
    assert_eq!(issue.effect, Effect::None);
}

#[test]
fn csv_columns_given_or_detected_and_paths_resolved_against_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("audio/one.wav"), b"x");
    write(
        &root.join("lists/data.tsv"),
        "utt\twav\ttekst\tspeaker_id\nu1\taudio/one.wav\tsome \"quoted\" words\tspk\n",
    );
    let err = read_corpus(&root.join("lists/data.tsv"), &opts()).unwrap_err();
    assert!(err.to_string().contains("data.tsv:1"), "{err}");
    let corpus = read_corpus(
        &root.join("lists/data.tsv"),
        &ReadOptions {
            text_col: Some("tekst".into()),
            ..opts()
        },
    )
    .unwrap();
    let u = &corpus.utterances[0];
    assert_eq!(u.transcript, "some \"quoted\" words");
    assert_eq!(u.audio_path, root.join("audio/one.wav"));
    assert_eq!(u.id, "audio/one");
    assert_eq!(u.speaker.as_deref(), Some("spk"));
    let err = read_corpus(
        &root.join("lists/data.tsv"),
        &ReadOptions {
            audio_col: Some("nope".into()),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[test]
fn csv_rows_with_bad_fields_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes =
        b"path,text\na.wav,good\nb.wav,caf\xE9 latin-1\nc.wav,\"multi\nline\"\nd.wav,ok\n".to_vec();
    bytes.extend_from_slice(b"e.wav,bell\x07char\n");
    write(&dir.path().join("m.csv"), &bytes);
    let corpus = read_corpus(&dir.path().join("m.csv"), &opts()).unwrap();
    let ids: Vec<&str> = corpus.utterances.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["a", "c", "d"]);
    assert_eq!(corpus.utterances[1].transcript, "multi\nline");
    assert_eq!(corpus.utterances[2].origin.line, 6);
    let lines: Vec<Option<u64>> = corpus.issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, [Some(3), Some(7)]);
}

#[test]
fn jsonl_folder_and_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("clips/x.wav"), b"x");
    write(
        &dir.path().join("train.jsonl"),
        "{\"audio_filepath\": \"clips/x.wav\", \"text\": \"hi\", \"duration\": 1.0}\n",
    );
    write(
        &dir.path().join("test.jsonl"),
        "{\"wav\": \"clips/x.wav\"}\n",
    );
    assert_eq!(detect_format(dir.path()).unwrap(), Format::Jsonl);
    let corpus = read_corpus(dir.path(), &opts()).unwrap();
    assert_eq!(corpus.utterances.len(), 1);
    assert_eq!(corpus.utterances[0].split.as_deref(), Some("train"));
    assert_eq!(corpus.utterances[0].declared_duration_s, Some(1.0));
    // test.jsonl has no usable line: an issue naming it (a lone manifest would be an error).
    let issue = &corpus.issues[0];
    assert!(issue.path.ends_with("test.jsonl"), "{issue:?}");
    let err = read_corpus(&dir.path().join("test.jsonl"), &opts()).unwrap_err();
    assert!(err.to_string().contains("test.jsonl"), "{err}");
}

#[test]
fn unknown_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("notes.txt"), "hello");
    let err = read_corpus(dir.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("--format"), "{err}");
    let err = read_corpus(&dir.path().join("notes.txt"), &opts()).unwrap_err();
    assert!(matches!(err, CorpusError::UnknownLayout { .. }));
}

#[test]
fn csv_unterminated_quote_is_an_error_at_the_line_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.csv");
    // Never closed: every later row would be one transcript.
    write(
        &path,
        "path,text\na.wav,fine\nb.wav,\"hello\nc.wav,world\nd.wav,again\n",
    );
    let err = read_corpus(&path, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("m.csv:3") && err.contains("never closed"),
        "{err}"
    );
    // Closed by a later row's quote, after swallowing rows: also an error.
    write(
        &path,
        "path,text\na.wav,\"hello\nb.wav,world\nc.wav,\"quoted\"\n",
    );
    let err = read_corpus(&path, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("m.csv:2") && err.contains("closing quote"),
        "{err}"
    );
    // A transcript that really spans lines is fine.
    write(
        &path,
        "path,text\na.wav,\"two\nlines, one row\"\nb.wav,ok\n",
    );
    let corpus = read_corpus(&path, &opts()).unwrap();
    assert_eq!(corpus.utterances.len(), 2);
}

#[test]
fn csv_duplicate_column_names_are_an_error_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.csv");
    write(&path, "path,text,speaker,text\na.wav,one,s1,two\n");
    let err = read_corpus(&path, &opts()).unwrap_err().to_string();
    assert!(
        err.contains("m.csv:1") && err.contains("\"text\"") && err.contains("columns 2, 4"),
        "{err}"
    );
    // Duplicates among columns that are not used are harmless.
    write(&path, "path,text,note,note\na.wav,one,x,y\n");
    assert_eq!(read_corpus(&path, &opts()).unwrap().utterances.len(), 1);
}

#[test]
fn header_only_manifests_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("h.csv", "path,text\n"), ("h.jsonl", "\n")] {
        let path = dir.path().join(name);
        write(&path, text);
        let err = read_corpus(&path, &opts()).unwrap_err();
        assert!(matches!(err, CorpusError::Empty { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn a_pack_written_into_the_dataset_folder_is_not_read_as_input() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("clips/x.wav"), b"x");
    write(
        &dir.path().join("train.jsonl"),
        "{\"audio_filepath\": \"clips/x.wav\", \"text\": \"hi\"}\n",
    );
    // What `asr-data pack DATA --out DATA` leaves there.
    write(
        &dir.path().join("manifest.json"),
        r#"{"format_version": 1, "sample_rate_hz": 16000, "audio_dtype": "int16",
            "vocab": {"h": 0}, "splits": {},
            "skipped": {"total": 1, "by_code": {"x": 1}, "file": "skipped.jsonl"}}"#,
    );
    write(
        &dir.path().join("skipped.jsonl"),
        "{\"id\": \"y\", \"code\": \"missing_audio\", \"message\": \"m\", \"source\": \"clips/y.wav\"}\n",
    );
    assert_eq!(detect_format(dir.path()).unwrap(), Format::Jsonl);
    let corpus = read_corpus(dir.path(), &opts()).unwrap();
    assert_eq!(corpus.files_read, [dir.path().join("train.jsonl")]);
    assert!(corpus.issues.is_empty(), "{:?}", corpus.issues);
    assert_eq!(corpus.ignored.len(), 2, "{:?}", corpus.ignored);
    // Named directly, the pack's manifest is refused with a hint.
    let err = read_corpus(&dir.path().join("manifest.json"), &opts()).unwrap_err();
    assert!(err.to_string().contains("asr-data pack"), "{err}");
}
