//! Shards as the pack writes them and the trainer and inspect read them: round trip, size
//! cap, determinism, atomic publication, resume, manifest schema, checksums, merge.

use std::fs;
use std::path::{Path, PathBuf};

use asr_shards::{
    check_against_manifest, merge_parts, part_tag, verify, AudioDtype, Manifest, PartSpec,
    RowIndex, ShardError, ShardReader, ShardRow, ShardWriter, ShardWriterOptions, SkippedCounts,
};
use asr_text::{UnkPolicy, Vocab};

fn vocab() -> Vocab {
    Vocab::from_chars("abcdefghijklmnopqrstuvwxyz'".chars())
}

/// Deterministic rows of varied length; every third has no speaker.
fn rows(count: usize, seed: u32) -> Vec<ShardRow> {
    let vocab = vocab();
    let words = ["hello", "world", "speech", "data", "it's", "arrow", "shard"];
    (0..count)
        .map(|i| {
            let k = i as u32 + seed * 1_000;
            let num_samples = 800 + (k * 7_919) % 24_000;
            let audio: Vec<f32> = (0..num_samples)
                .map(|n| {
                    let v = ((n * 31 + k * 17) % 65_536) as f32 / 32_768.0 - 1.0;
                    v * 0.9
                })
                .collect();
            let text = (0..1 + k as usize % 5)
                .map(|w| words[(k as usize + w) % words.len()])
                .collect::<Vec<_>>()
                .join(" ");
            let labels = vocab.encode(&text, UnkPolicy::Error).unwrap();
            ShardRow {
                id: format!("utt-{seed}-{i:05}"),
                num_samples,
                audio,
                labels,
                text,
                speaker: (i % 3 != 0).then(|| format!("spk{}", i % 4)),
                source: format!("clips/utt-{i}.flac"),
            }
        })
        .collect()
}

fn options(shard_size_bytes: u64) -> ShardWriterOptions {
    let mut options = ShardWriterOptions::new(shard_size_bytes, vocab().to_json_string());
    options.rows_per_batch = 8;
    options
}

fn write_split(out: &Path, split: &str, options: ShardWriterOptions, rows: &[ShardRow]) {
    let mut writer = ShardWriter::create(out, split, options).unwrap();
    for row in rows {
        writer.write(row.as_row_ref()).unwrap();
    }
    let info = writer.finish().unwrap();
    let mut manifest = Manifest::new(&vocab(), AudioDtype::Int16, None);
    manifest.splits.insert(split.to_string(), info);
    manifest.write(out).unwrap();
}

fn read_all(paths: &[PathBuf]) -> Vec<ShardRow> {
    paths
        .iter()
        .flat_map(|p| {
            let reader = ShardReader::open(p).unwrap();
            reader.rows().collect::<Result<Vec<_>, _>>().unwrap()
        })
        .collect()
}

fn quantized(x: f32) -> f32 {
    (x * 32_768.0).round_ties_even().clamp(-32_768.0, 32_767.0) / 32_768.0
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn int16_round_trip_keeps_ids_samples_labels_and_nulls() {
    let tmp = tempfile::tempdir().unwrap();
    let input = rows(50, 1);
    write_split(tmp.path(), "train", options(200_000), &input);

    let manifest = Manifest::load(tmp.path()).unwrap();
    assert_eq!(manifest.splits(), vec!["train"]);
    assert_eq!(manifest.split("train").unwrap().rows, 50);
    let paths = manifest.shard_paths("train");
    assert!(
        paths.len() > 1,
        "a 200 kB cap splits 50 rows over several shards"
    );
    let output = read_all(&paths);
    assert_eq!(output.len(), input.len());
    let vocab = manifest.vocab().unwrap();
    assert_eq!(vocab.tokens(), self::vocab().tokens());
    for (got, want) in output.iter().zip(&input) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.num_samples, want.num_samples);
        assert_eq!(got.audio.len(), want.audio.len());
        for (g, w) in got.audio.iter().zip(&want.audio) {
            assert_eq!(*g, quantized(*w));
        }
        assert_eq!(got.labels, want.labels);
        assert_eq!(vocab.decode_labels(&got.labels), want.text);
        assert_eq!(got.text, want.text);
        assert_eq!(got.speaker, want.speaker);
        assert_eq!(got.source, want.source);
    }
    assert!(output.iter().any(|r| r.speaker.is_none()));
}

#[test]
fn float32_round_trip_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let input = rows(12, 2);
    let mut opts = options(10_000_000);
    opts.audio_dtype = AudioDtype::Float32;
    let mut writer = ShardWriter::create(tmp.path(), "dev", opts).unwrap();
    for row in &input {
        writer.write(row.as_row_ref()).unwrap();
    }
    let info = writer.finish().unwrap();
    assert_eq!(info.shards.len(), 1);
    let reader = ShardReader::open(&tmp.path().join(&info.shards[0].file)).unwrap();
    assert_eq!(reader.audio_dtype(), AudioDtype::Float32);
    let output: Vec<ShardRow> = reader.rows().collect::<Result<_, _>>().unwrap();
    assert_eq!(output, input);
}

#[test]
fn index_and_random_access_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let input = rows(30, 3);
    write_split(tmp.path(), "train", options(100_000_000), &input);
    let manifest = Manifest::load(tmp.path()).unwrap();
    let reader = ShardReader::open(&manifest.shard_paths("train")[0]).unwrap();
    assert_eq!(reader.num_rows(), 30);
    assert_eq!(
        reader.num_batches(),
        4,
        "30 rows in batches of 8: 8 + 8 + 8 + 6"
    );
    let index = reader.index().unwrap();
    let want: Vec<RowIndex> = input
        .iter()
        .map(|r| RowIndex {
            id: r.id.clone(),
            num_samples: r.num_samples,
        })
        .collect();
    assert_eq!(index, want);
    for i in [29, 0, 8, 7, 15, 16] {
        let row = reader.row(i).unwrap();
        assert_eq!(row.id, input[i].id);
        assert_eq!(row.labels, input[i].labels);
    }
    assert!(matches!(
        reader.row(30),
        Err(ShardError::RowOutOfRange { row: 30, .. })
    ));
}

#[test]
fn shards_stay_under_the_size_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let input = rows(120, 4);
    let cap = 300_000;
    write_split(tmp.path(), "train", options(cap), &input);
    let manifest = Manifest::load(tmp.path()).unwrap();
    let split = manifest.split("train").unwrap();
    assert!(split.shards.len() >= 8);
    let largest_row = input.iter().map(|r| r.audio.len() * 2 + 200).max().unwrap() as u64;
    for (n, shard) in split.shards.iter().enumerate() {
        let bytes = fs::metadata(tmp.path().join(&shard.file)).unwrap().len();
        assert_eq!(bytes, shard.bytes);
        assert!(bytes <= cap, "{} has {bytes} bytes > cap {cap}", shard.file);
        if n + 1 < split.shards.len() {
            // Closed only when the next row would not fit (bound includes batch overhead).
            assert!(
                bytes + largest_row + 4_096 + 2 * 4_096 > cap,
                "{} closed early at {bytes} bytes",
                shard.file
            );
        }
    }
    assert_eq!(split.rows, 120);
    assert_eq!(
        split.shards.iter().map(|s| s.rows).sum::<u64>(),
        120,
        "rows add up"
    );
}

#[test]
fn a_row_larger_than_the_cap_gets_a_shard_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let input = rows(6, 5);
    let cap = 20_000; // every row here has more than 1,600 bytes of audio; some exceed 20 kB
    write_split(tmp.path(), "train", options(cap), &input);
    let manifest = Manifest::load(tmp.path()).unwrap();
    let split = manifest.split("train").unwrap();
    assert_eq!(split.rows, 6);
    for shard in &split.shards {
        if shard.bytes > cap {
            assert_eq!(
                shard.rows, 1,
                "{} is over the cap with several rows",
                shard.file
            );
        }
    }
    assert_eq!(read_all(&manifest.shard_paths("train")).len(), 6);
}

#[test]
fn same_rows_give_byte_identical_shards() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let input = rows(40, 6);
    write_split(a.path(), "train", options(250_000), &input);
    write_split(b.path(), "train", options(250_000), &input);
    // And a rewrite over an existing pack.
    write_split(b.path(), "train", options(250_000), &input);
    let names = listing(&a.path().join("train"));
    assert_eq!(names, listing(&b.path().join("train")));
    for name in names.iter().filter(|n| n.ends_with(".arrow")) {
        let x = fs::read(a.path().join("train").join(name)).unwrap();
        let y = fs::read(b.path().join("train").join(name)).unwrap();
        assert!(x == y, "{name} differs between two writes");
    }
    assert_eq!(
        fs::read(a.path().join("manifest.json")).unwrap(),
        fs::read(b.path().join("manifest.json")).unwrap()
    );
}

/// Rows handed over as int16 (pack quantizes on its decoding threads, or passes a 16-bit
/// source's own samples) give the bytes of the same rows handed over as float, in both
/// audio types.
#[test]
fn int16_and_float_rows_give_the_same_shards() {
    use asr_shards::{quantize_i16_into, Samples, SamplesRowRef};
    let input = rows(30, 8);
    for dtype in [AudioDtype::Int16, AudioDtype::Float32] {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut opts = options(200_000);
        opts.audio_dtype = dtype;
        let mut float = ShardWriter::create(a.path(), "train", opts.clone()).unwrap();
        let mut int16 = ShardWriter::create(b.path(), "train", opts).unwrap();
        let mut quantized_audio = Vec::new();
        for row in &input {
            // Float32 shards of int16 input hold x / 32768: compare with float rows that
            // were quantized already.
            quantize_i16_into(&row.audio, &mut quantized_audio);
            let exact: Vec<f32> = quantized_audio
                .iter()
                .map(|&s| f32::from(s) / 32_768.0)
                .collect();
            let mut float_row = row.as_row_ref();
            float_row.audio = &exact;
            float.write(float_row).unwrap();
            let mut int16_row = SamplesRowRef::from(row.as_row_ref());
            int16_row.audio = Samples::I16(&quantized_audio);
            int16.write_samples(int16_row).unwrap();
        }
        let (x, y) = (float.finish().unwrap(), int16.finish().unwrap());
        assert_eq!(x.shards.len(), y.shards.len());
        assert!(x.shards.len() > 1, "{dtype:?}: {} shards", x.shards.len());
        for (p, q) in x.shards.iter().zip(&y.shards) {
            assert_eq!(p.sha256, q.sha256, "{dtype:?}: {} differs", p.file);
        }
    }
}

#[test]
fn a_shard_appears_under_its_final_name_only_when_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let split_dir = tmp.path().join("train");
    fs::create_dir_all(&split_dir).unwrap();
    // A temporary file left by a killed writer.
    fs::write(
        split_dir.join(".shard-00000.arrow.partial"),
        b"half a shard",
    )
    .unwrap();
    let input = rows(20, 7);
    let mut writer = ShardWriter::create(tmp.path(), "train", options(10_000_000)).unwrap();
    assert!(
        !listing(&split_dir).iter().any(|n| n.ends_with(".partial")),
        "the stale temporary file is cleaned up"
    );
    for row in &input {
        writer.write(row.as_row_ref()).unwrap();
        let names = listing(&split_dir);
        assert!(
            !names.iter().any(|n| n == "shard-00000.arrow"),
            "final name visible before completion: {names:?}"
        );
    }
    assert!(listing(&split_dir).contains(&".shard-00000.arrow.partial".to_string()));
    let info = writer.finish().unwrap();
    let names = listing(&split_dir);
    assert!(names.contains(&"shard-00000.arrow".to_string()));
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    assert_eq!(info.rows, 20);
    // A complete shard reads back; a reader refuses a truncated one.
    let path = split_dir.join("shard-00000.arrow");
    assert_eq!(ShardReader::open(&path).unwrap().num_rows(), 20);
    let bytes = fs::read(&path).unwrap();
    let truncated = tmp.path().join("truncated.arrow");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        ShardReader::open(&truncated),
        Err(ShardError::InvalidShard { .. })
    ));
    let garbage = tmp.path().join("garbage.arrow");
    fs::write(&garbage, b"PK\x03\x04 not arrow at all").unwrap();
    assert!(ShardReader::open(&garbage).is_err());
}

#[test]
fn resume_after_an_interruption_gives_the_same_bytes() {
    let input = rows(90, 8);
    let opts = options(200_000);
    let reference = tempfile::tempdir().unwrap();
    write_split(reference.path(), "train", opts.clone(), &input);

    let tmp = tempfile::tempdir().unwrap();
    {
        // Killed after 57 rows: some shards are complete, one is a temporary file.
        let mut writer = ShardWriter::create(tmp.path(), "train", opts.clone()).unwrap();
        for row in &input[..57] {
            writer.write(row.as_row_ref()).unwrap();
        }
        assert!(writer.completed().len() >= 2);
        std::mem::forget(writer);
    }
    let mut writer = ShardWriter::resume(tmp.path(), "train", opts.clone()).unwrap();
    let done = writer.rows_completed() as usize;
    assert!(done > 0 && done < 57, "kept {done} rows");
    assert_eq!(
        writer.last_completed_id(),
        Some(input[done - 1].id.as_str())
    );
    for row in &input[done..] {
        writer.write(row.as_row_ref()).unwrap();
    }
    let info = writer.finish().unwrap();
    let mut manifest = Manifest::new(&vocab(), AudioDtype::Int16, None);
    manifest.splits.insert("train".to_string(), info);
    manifest.write(tmp.path()).unwrap();

    for name in listing(&reference.path().join("train")) {
        if name.ends_with(".arrow") {
            assert_eq!(
                fs::read(reference.path().join("train").join(&name)).unwrap(),
                fs::read(tmp.path().join("train").join(&name)).unwrap(),
                "{name}"
            );
        }
    }
    assert_eq!(
        fs::read(reference.path().join("manifest.json")).unwrap(),
        fs::read(tmp.path().join("manifest.json")).unwrap()
    );

    // With other options the journal does not apply: everything is rewritten.
    let mut other = opts.clone();
    other.shard_size_bytes = 150_000;
    let writer = ShardWriter::resume(tmp.path(), "train", other).unwrap();
    assert_eq!(writer.rows_completed(), 0);
}

#[test]
fn resume_rewrites_from_a_damaged_shard_on() {
    let input = rows(60, 9);
    let opts = options(150_000);
    let tmp = tempfile::tempdir().unwrap();
    let mut writer = ShardWriter::create(tmp.path(), "train", opts.clone()).unwrap();
    for row in &input {
        writer.write(row.as_row_ref()).unwrap();
    }
    let info = writer.finish().unwrap();
    assert!(info.shards.len() >= 3);
    let victim = tmp.path().join(&info.shards[1].file);
    let mut bytes = fs::read(&victim).unwrap();
    bytes[1_000] ^= 0x01;
    fs::write(&victim, bytes).unwrap();
    let writer = ShardWriter::resume(tmp.path(), "train", opts).unwrap();
    assert_eq!(
        writer.completed().len(),
        1,
        "only the shard before the damaged one is kept"
    );
}

#[test]
fn stale_shards_past_the_end_of_a_smaller_rerun_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", options(100_000), &rows(60, 10));
    let before = listing(&tmp.path().join("train")).len();
    write_split(tmp.path(), "train", options(100_000), &rows(10, 10));
    let names = listing(&tmp.path().join("train"));
    let manifest = Manifest::load(tmp.path()).unwrap();
    let listed = manifest.split("train").unwrap().shards.len();
    let arrow_files = names.iter().filter(|n| n.ends_with(".arrow")).count();
    assert!(before > arrow_files);
    assert_eq!(arrow_files, listed, "{names:?}");
}

#[test]
fn manifest_validates_against_its_json_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let input = rows(20, 11);
    let mut writer = ShardWriter::create(tmp.path(), "train", options(150_000)).unwrap();
    for row in &input[..15] {
        writer.write(row.as_row_ref()).unwrap();
    }
    let train = writer.finish().unwrap();
    let mut writer = ShardWriter::create(tmp.path(), "test", options(150_000)).unwrap();
    for row in &input[15..] {
        writer.write(row.as_row_ref()).unwrap();
    }
    let test = writer.finish().unwrap();
    let mut manifest = Manifest::new(&vocab(), AudioDtype::Int16, None);
    manifest.splits.insert("train".into(), train);
    manifest.splits.insert("test".into(), test);
    manifest.skipped.add("too_short");
    manifest.skipped.add("too_short");
    manifest.skipped.add("undecodable_audio");
    let path = manifest.write(tmp.path()).unwrap();

    let schema: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/shards-manifest.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&written)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(written["skipped"]["by_code"]["too_short"], 2);
    assert_eq!(written["audio_dtype"], "int16");
    assert_eq!(written["vocab"]["[PAD]"], 0);

    // And the schema is not vacuous: a broken manifest fails it.
    let mut broken = written.clone();
    broken["splits"]["train"]["shards"][0]["sha256"] = "xyz".into();
    assert!(!validator.is_valid(&broken));
    let loaded = Manifest::load(tmp.path()).unwrap();
    assert_eq!(loaded.splits(), vec!["train", "test"]);
    assert_eq!(loaded.total_rows(), 20);
}

#[test]
fn verify_catches_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", options(150_000), &rows(40, 12));
    let report = verify(tmp.path()).unwrap();
    assert!(report.ok(), "{report:?}");
    let manifest = Manifest::load(tmp.path()).unwrap();
    let victim = &manifest.split("train").unwrap().shards[1];
    let path = tmp.path().join(&victim.file);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let report = verify(tmp.path()).unwrap();
    assert!(!report.ok());
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].file, victim.file);
    assert!(
        failures[0].problem.as_deref().unwrap().contains("sha256"),
        "{failures:?}"
    );
    // A missing shard is reported too.
    fs::remove_file(
        tmp.path()
            .join(&manifest.split("train").unwrap().shards[0].file),
    )
    .unwrap();
    assert_eq!(verify(tmp.path()).unwrap().failures().count(), 2);
}

#[test]
fn check_against_manifest_catches_a_swapped_vocabulary_without_reading_rows() {
    let tmp = tempfile::tempdir().unwrap();
    // The shard's schema carries a vocabulary with two tokens swapped; the manifest
    // the pack's own.
    let mut tokens = vocab().tokens().to_vec();
    let n = tokens.len();
    tokens.swap(n - 1, n - 2);
    let swapped = Vocab::from_tokens(tokens).unwrap();
    let mut opts = options(1 << 24);
    opts.vocab_json = swapped.to_json_string();
    write_split(tmp.path(), "train", opts, &rows(10, 13));
    let manifest = Manifest::load(tmp.path()).unwrap();
    let shard = &manifest.split("train").unwrap().shards[0];
    let reader = ShardReader::open(&tmp.path().join(&shard.file)).unwrap();
    let problem =
        check_against_manifest(&reader, shard, Some(AudioDtype::Int16), &vocab()).unwrap_err();
    assert!(
        problem.contains("vocabulary differs") && problem.contains("different ids"),
        "{problem}"
    );
    // verify (inspect) says the same.
    let report = verify(tmp.path()).unwrap();
    assert!(report
        .failures()
        .next()
        .unwrap()
        .problem
        .as_deref()
        .unwrap()
        .contains("vocabulary"));

    // A sound shard passes; a wrong dtype, row count or size is named.
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", options(1 << 24), &rows(10, 13));
    let manifest = Manifest::load(tmp.path()).unwrap();
    let shard = manifest.split("train").unwrap().shards[0].clone();
    let reader = ShardReader::open(&tmp.path().join(&shard.file)).unwrap();
    check_against_manifest(&reader, &shard, Some(AudioDtype::Int16), &vocab()).unwrap();
    let err = check_against_manifest(&reader, &shard, Some(AudioDtype::Float32), &vocab());
    assert!(err
        .unwrap_err()
        .contains("audio stored as int16, manifest says float32"));
    let mut fewer = shard.clone();
    fewer.rows -= 1;
    let err = check_against_manifest(&reader, &fewer, None, &vocab()).unwrap_err();
    assert!(err.contains("10 rows, manifest says 9"), "{err}");
    let mut bigger = shard;
    bigger.bytes += 1;
    let err = check_against_manifest(&reader, &bigger, None, &vocab()).unwrap_err();
    assert!(err.contains("manifest says"), "{err}");
}

fn write_part(out: &Path, part: PartSpec, rows: &[ShardRow], skipped_codes: &[&str]) {
    let mut opts = options(120_000);
    opts.file_prefix = format!("shard-{}", part_tag(part));
    let mut manifest = Manifest::new(&vocab(), AudioDtype::Int16, Some(part));
    let mut skipped_lines = String::new();
    for (split, range) in [
        ("train", 0..rows.len() - 3),
        ("test", rows.len() - 3..rows.len()),
    ] {
        let mut writer = ShardWriter::create(out, split, opts.clone()).unwrap();
        for row in &rows[range] {
            writer.write(row.as_row_ref()).unwrap();
        }
        manifest
            .splits
            .insert(split.to_string(), writer.finish().unwrap());
    }
    for code in skipped_codes {
        manifest.skipped.add(code);
        skipped_lines.push_str(&format!(
            "{{\"id\":\"x-{}\",\"code\":\"{code}\"}}\n",
            part.index
        ));
    }
    fs::write(
        out.join(Manifest::skipped_file_name_for(Some(part))),
        skipped_lines,
    )
    .unwrap();
    manifest.write(out).unwrap();
}

#[test]
fn merge_joins_part_manifests_without_name_collisions() {
    let tmp = tempfile::tempdir().unwrap();
    let part0 = rows(25, 13);
    let part1 = rows(30, 14);
    let p0 = PartSpec { index: 0, count: 2 };
    let p1: PartSpec = "1/2".parse().unwrap();
    assert_eq!(part_tag(p1), "001-of-002");
    write_part(tmp.path(), p1, &part1, &["too_long"]);
    write_part(tmp.path(), p0, &part0, &["too_short", "too_long"]);
    assert!(tmp.path().join("manifest-000-of-002.json").exists());
    assert!(!tmp.path().join("manifest.json").exists());

    let merged = merge_parts(tmp.path()).unwrap();
    assert_eq!(merged.part, None);
    let reloaded = Manifest::load(tmp.path()).unwrap();
    assert_eq!(reloaded, merged);
    assert_eq!(merged.split("train").unwrap().rows, 22 + 27);
    assert_eq!(merged.split("test").unwrap().rows, 6);
    assert_eq!(
        merged.skipped,
        SkippedCounts {
            total: 3,
            by_code: [("too_long".to_string(), 2), ("too_short".to_string(), 1)]
                .into_iter()
                .collect(),
            file: "skipped.jsonl".to_string(),
        }
    );
    let skipped = fs::read_to_string(tmp.path().join("skipped.jsonl")).unwrap();
    assert_eq!(skipped.lines().count(), 3);
    assert!(
        skipped.starts_with("{\"id\":\"x-0\""),
        "part 0 first: {skipped}"
    );
    // Part 0's rows come first, then part 1's, every shard readable.
    let ids: Vec<String> = read_all(&merged.shard_paths("train"))
        .into_iter()
        .map(|r| r.id)
        .collect();
    let want: Vec<String> = part0[..22]
        .iter()
        .chain(&part1[..27])
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(ids, want);
    assert!(merged
        .split("train")
        .unwrap()
        .shards
        .iter()
        .all(|s| s.file.starts_with("train/shard-00")));
    assert!(verify(tmp.path()).unwrap().ok());
}

#[test]
fn merge_refuses_incomplete_or_inconsistent_parts() {
    let tmp = tempfile::tempdir().unwrap();
    write_part(tmp.path(), "0/3".parse().unwrap(), &rows(10, 15), &[]);
    write_part(tmp.path(), "2/3".parse().unwrap(), &rows(10, 16), &[]);
    let error = merge_parts(tmp.path()).unwrap_err().to_string();
    assert!(error.contains("missing parts: 1/3"), "{error}");

    let other = tempfile::tempdir().unwrap();
    write_part(other.path(), "0/2".parse().unwrap(), &rows(10, 17), &[]);
    // Part 1 packed with another vocabulary.
    let part = "1/2".parse().unwrap();
    let mut manifest = Manifest::new(
        &Vocab::from_chars("xyz".chars()),
        AudioDtype::Int16,
        Some(part),
    );
    manifest.splits.insert("train".into(), Default::default());
    manifest.write(other.path()).unwrap();
    let error = merge_parts(other.path()).unwrap_err().to_string();
    assert!(error.contains("another vocabulary"), "{error}");

    assert!("3/3".parse::<PartSpec>().is_err());
    assert!("x/3".parse::<PartSpec>().is_err());
    assert!("1".parse::<PartSpec>().is_err());
}
