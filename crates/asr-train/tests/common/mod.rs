//! What the asr-train test binaries share: the six fixture utterances, the lock that
//! runs their libtorch work one test at a time, and a pack writer.

use std::path::{Path, PathBuf};

use asr_shards::{AudioDtype, Manifest, RowRef, ShardWriter, ShardWriterOptions};
use asr_text::{UnkPolicy, Vocab};
use asr_train::data::Utterance;

/// libtorch's random generator and thread count are process-wide: runs in parallel
/// test threads would draw from one generator, so every test trains alone.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speech")
}

/// The six fixture utterances, their vocabulary built from the transcripts.
pub fn speech() -> (Vec<Utterance>, Vocab) {
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

/// A pack of `train` (all six) and `dev` (the first three) whose shard schemas carry
/// `shard_vocab` and whose manifest carries `vocab`.
pub fn write_pack(dir: &Path, utterances: &[Utterance], vocab: &Vocab, shard_vocab: &Vocab) {
    let mut manifest = Manifest::new(vocab, AudioDtype::Int16, None);
    for (split, rows) in [("train", utterances), ("dev", &utterances[..3])] {
        let options = ShardWriterOptions::new(1 << 20, shard_vocab.to_json_string());
        let mut writer = ShardWriter::create(dir, split, options).unwrap();
        for u in rows {
            writer
                .write(RowRef {
                    id: &u.id,
                    audio: &u.audio,
                    text: &u.text,
                    labels: &u.labels,
                    speaker: None,
                    source: "fixture",
                })
                .unwrap();
        }
        manifest
            .splits
            .insert(split.to_string(), writer.finish().unwrap());
    }
    manifest.write(dir).unwrap();
}
