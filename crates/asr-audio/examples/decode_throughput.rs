//! Per-core throughput of decoding + downmixing + resampling to 16 kHz, the audio half of
//! `asr-data pack`, on one thread, with the time of each stage.
//!
//! `cargo run --release -p asr-audio --example decode_throughput -- DIR_OR_FILE... [--rounds N]`
//!
//! Walks the given folders for `.flac`, `.wav`, `.mp3` and `.ogg` files (sorted), reads
//! each file into memory once (so the page cache is warm and reading is not timed), then
//! decodes them all `N` times (default 1) and prints audio seconds, seconds spent decoding
//! and resampling, and audio seconds per second for each. Compare with the one-process
//! soundfile + soxr floor of `tools/bench/pack.sh` (run both under `taskset -c 0`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use asr_audio::decode::{decode_file_into, downmix_to_mono_into, DecodedAudio};
use asr_audio::resample::Resampler16k;

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            collect(&child, out);
        }
    } else if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("flac" | "wav" | "mp3" | "ogg")
    ) {
        out.push(path.to_path_buf());
    }
}

fn main() {
    let mut rounds = 1usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
        } else {
            collect(Path::new(&arg), &mut files);
        }
    }
    if files.is_empty() {
        eprintln!("usage: decode_throughput DIR_OR_FILE... [--rounds N]");
        std::process::exit(2);
    }
    // Warm the page cache.
    for file in &files {
        let _ = std::fs::read(file);
    }
    let mut decoded = DecodedAudio::default();
    let mut mono = Vec::new();
    let mut resampled = Vec::new();
    let mut resamplers: Vec<Resampler16k> = Vec::new();
    for _ in 0..rounds {
        let (mut decode_t, mut resample_t) = (Duration::ZERO, Duration::ZERO);
        let mut audio_s = 0.0;
        for file in &files {
            let start = Instant::now();
            if let Err(e) = decode_file_into(file, &mut decoded) {
                eprintln!("{}: {e}", file.display());
                continue;
            }
            downmix_to_mono_into(&decoded.samples, usize::from(decoded.channels), &mut mono);
            let middle = Instant::now();
            let rate = decoded.sample_rate_hz;
            let index = match resamplers.iter().position(|r| r.sample_rate_hz() == rate) {
                Some(i) => i,
                None => {
                    resamplers.push(Resampler16k::new(rate).expect("a resampler"));
                    resamplers.len() - 1
                }
            };
            resamplers[index]
                .process_into(&mono, &mut resampled)
                .expect("resampling");
            resample_t += middle.elapsed();
            decode_t += middle - start;
            audio_s += decoded.duration_s();
        }
        let total = (decode_t + resample_t).as_secs_f64();
        println!(
            "files {}  audio {audio_s:.1} s  decode {:.3} s ({:.0} audio-s/s)  resample {:.3} s ({:.0} audio-s/s)  total {total:.3} s ({:.0} audio-s/s)",
            files.len(),
            decode_t.as_secs_f64(),
            audio_s / decode_t.as_secs_f64(),
            resample_t.as_secs_f64(),
            audio_s / resample_t.as_secs_f64().max(1e-9),
            audio_s / total
        );
    }
}
