//! Writes the 16 kHz int16 samples that `asr-data pack` stores for some audio files,
//! joined end to end, as raw little-endian int16:
//! `cargo run -p asr-pack --example pcm16 -- OUT.i16 FILE...`
//!
//! Each file is decoded, downmixed to mono and resampled to 16 kHz by asr-audio, then
//! quantized to int16 by asr-shards, the steps the packer takes for one clip. Used by
//! `tools/make-whisper-fixtures.py` so that the Python reference and the Rust tests see
//! the very samples a shard holds.

use std::error::Error;
use std::path::Path;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, files)) = args.split_first() else {
        return Err("usage: pcm16 OUT.i16 FILE...".into());
    };
    let mut joined = Vec::new();
    for file in files {
        joined.extend(clip_at_16k(Path::new(file))?);
    }
    let mut pcm = Vec::new();
    asr_shards::quantize_i16_into(&joined, &mut pcm);
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(out, bytes).map_err(|e| format!("{out}: {e}"))?;
    eprintln!("{out}: {} samples at 16 kHz", pcm.len());
    Ok(())
}

/// One file as mono f32 samples at 16 kHz.
fn clip_at_16k(path: &Path) -> Result<Vec<f32>, Box<dyn Error>> {
    let audio = asr_audio::decode_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut mono = Vec::new();
    asr_audio::downmix_to_mono_into(&audio.samples, usize::from(audio.channels), &mut mono);
    Ok(asr_audio::resample::resample_to_16k(
        mono,
        audio.sample_rate_hz,
    )?)
}
