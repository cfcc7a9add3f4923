//! Writes two small packs for the Python interop test (`tests/interop/`):
//! `OUT/int16/` (splits train and test, train over several shards) and `OUT/float32/`, plus
//! `OUT/expected.json` with every row's values for the test to compare against.
//!
//! `cargo run -p asr-shards --example write_interop_shards -- OUT`

use std::path::PathBuf;

use asr_shards::{AudioDtype, Manifest, ShardRow, ShardWriter, ShardWriterOptions};
use asr_text::{UnkPolicy, Vocab};

fn rows(vocab: &Vocab) -> Vec<(String, ShardRow)> {
    let texts = [
        "HELLO WORLD",
        "IT'S A TEST",
        "SPEECH TO TEXT",
        "ARROW SHARDS",
        "ONE",
        "PYARROW OPENS THIS",
        "SO DO DATASETS",
        "THE END",
    ];
    (0..24usize)
        .map(|i| {
            let num_samples = 1_600 + 400 * i;
            let audio: Vec<f32> = (0..num_samples)
                .map(|n| {
                    let t = n as f32 / 16_000.0;
                    0.5 * (2.0 * std::f32::consts::PI * (200.0 + 10.0 * i as f32) * t).sin()
                })
                .collect();
            let text = texts[i % texts.len()].to_string();
            let labels = vocab
                .encode(&text, UnkPolicy::Error)
                .expect("in vocabulary");
            let split = if i < 18 { "train" } else { "test" };
            (
                split.to_string(),
                ShardRow {
                    id: format!("spk{}-utt{i:03}", i % 3),
                    num_samples: num_samples as u32,
                    audio,
                    text,
                    labels,
                    speaker: (i % 4 != 0).then(|| format!("spk{}", i % 3)),
                    source: format!("clips/utt{i:03}.mp3"),
                },
            )
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: write_interop_shards OUT")?
        .into();
    let vocab = Vocab::from_chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ'".chars());
    let rows = rows(&vocab);
    for dtype in [AudioDtype::Int16, AudioDtype::Float32] {
        let dir = out.join(dtype.name());
        let mut manifest = Manifest::new(&vocab, dtype, None);
        for split in ["train", "test"] {
            let mut options = ShardWriterOptions::new(120_000, vocab.to_json_string());
            options.audio_dtype = dtype;
            options.rows_per_batch = 4;
            let mut writer = ShardWriter::create(&dir, split, options)?;
            for (_, row) in rows.iter().filter(|(s, _)| s == split) {
                writer.write(row.as_row_ref())?;
            }
            manifest.splits.insert(split.to_string(), writer.finish()?);
        }
        manifest.write(&dir)?;
    }
    let expected: Vec<serde_json::Value> = rows
        .iter()
        .map(|(split, row)| {
            serde_json::json!({
                "split": split,
                "id": row.id,
                "num_samples": row.num_samples,
                "text": row.text,
                "labels": row.labels,
                "speaker": row.speaker,
                "source": row.source,
                "audio_f32": row.audio,
            })
        })
        .collect();
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string(&serde_json::json!({
            "vocab": serde_json::from_str::<serde_json::Value>(&vocab.to_json_string())?,
            "rows": expected,
        }))?,
    )?;
    println!("{}", out.display());
    Ok(())
}
