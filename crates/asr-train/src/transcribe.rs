//! `asr-train transcribe`: greedy CTC transcripts of audio files in any format
//! `asr-audio` decodes (FLAC, WAV, MP3, Ogg/Vorbis), mixed to mono and resampled to
//! 16 kHz as `asr-data pack` does, normalized as in training.
//!
//! Files are decoded one by one, then run in length-sorted batches capped by padded
//! seconds; results come back in input order. A file that cannot be decoded, or is too
//! short for one frame, gets an error of its own and does not stop the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use asr_model::precision::Precision;
use asr_model::CtcModel;
use asr_text::Vocab;

use crate::data::{
    plan_epoch, Batch, Batching, DataPosition, MemorySource, Utterance, UtteranceSource,
};
use crate::eval::batch_tensors;

/// Decode an audio file to 16 kHz mono samples.
pub fn load_audio_16k(path: &Path) -> Result<Vec<f32>, String> {
    let decoded = asr_audio::decode_file(path).map_err(|e| e.to_string())?;
    let mono = decoded.to_mono();
    if decoded.sample_rate_hz == crate::data::SAMPLE_RATE_HZ {
        return Ok(mono);
    }
    asr_audio::resample::resample_to_16k(mono, decoded.sample_rate_hz).map_err(|e| e.to_string())
}

/// Transcribe `paths` (see the module documentation); one result per path, in order.
pub fn transcribe_files(
    model: &CtcModel,
    vocab: &Vocab,
    paths: &[PathBuf],
    batch_seconds: f64,
    precision: Precision,
) -> Vec<Result<String, String>> {
    let min_samples = model.config().min_num_samples().max(1) as usize;
    let mut results: Vec<Option<Result<String, String>>> = vec![None; paths.len()];
    let mut utterances = Vec::new();
    let mut owners = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match load_audio_16k(path) {
            Ok(audio) if audio.len() < min_samples => {
                results[i] = Some(Err(format!(
                    "{}: {} samples at 16 kHz, shorter than one frame ({min_samples})",
                    path.display(),
                    audio.len()
                )));
            }
            Ok(audio) => {
                utterances.push(Utterance {
                    id: path.display().to_string(),
                    audio,
                    labels: Vec::new(),
                    text: String::new(),
                });
                owners.push(i);
            }
            Err(e) => results[i] = Some(Err(format!("{}: {e}", path.display()))),
        }
    }
    let source: Arc<dyn UtteranceSource> = Arc::new(MemorySource::new(utterances));
    let lengths: Vec<u64> = source.index().iter().map(|u| u.num_samples).collect();
    let plan = plan_epoch(
        &lengths,
        &Batching {
            batch_seconds,
            max_utterances: None,
            shuffle: false,
            seed: 0,
            rank: 0,
            world_size: 1,
        },
        0,
    );
    let device = model.device();
    for members in plan {
        let decoded = Batch::assemble(source.as_ref(), &members, DataPosition::default(), 1)
            .map_err(|e| e.to_string())
            .and_then(|batch| {
                let (input, _) = batch_tensors(&batch, device);
                tch::no_grad(|| {
                    let _autocast = asr_model::precision::Autocast::enter(device, precision);
                    model
                        .forward_padded(&input, &batch.lengths, false, None)
                        .map(|output| model.greedy_decode(&output, vocab))
                        .map_err(|e| e.to_string())
                })
            });
        for (k, &m) in members.iter().enumerate() {
            let i = owners[m];
            results[i] = Some(match &decoded {
                Ok(texts) => Ok(texts[k].clone()),
                Err(e) => Err(format!("{}: {e}", paths[i].display())),
            });
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not transcribed".into())))
        .collect()
}
