//! Greedy CTC decoding: the best token per frame, then `Vocab::decode_ctc` (repeats
//! collapsed, blanks and special tokens dropped, the word delimiter read as a space).
use asr_text::Vocab;
use tch::{Device, Kind, Tensor};

/// Argmax token ids per utterance, each cut to its valid frames.
/// `logits`: `[batch, frames, vocab]`; `output_lengths`: valid frames per utterance.
pub fn greedy_ids(logits: &Tensor, output_lengths: &[i64]) -> Vec<Vec<i64>> {
    let best = logits
        .detach()
        .argmax(-1, false)
        .to_device(Device::Cpu)
        .to_kind(Kind::Int64);
    let size = best.size();
    let (batch, frames) = (size[0], size[1]);
    let flat = Vec::<i64>::try_from(&best.reshape([-1])).unwrap_or_default();
    (0..batch as usize)
        .map(|b| {
            let length = output_lengths
                .get(b)
                .copied()
                .unwrap_or(frames)
                .clamp(0, frames) as usize;
            let start = b * frames as usize;
            flat.get(start..start + length)
                .map(<[i64]>::to_vec)
                .unwrap_or_default()
        })
        .collect()
}

/// Greedy transcripts, one per utterance.
pub fn greedy_decode(logits: &Tensor, output_lengths: &[i64], vocab: &Vocab) -> Vec<String> {
    greedy_ids(logits, output_lengths)
        .iter()
        .map(|ids| vocab.decode_ctc(ids))
        .collect()
}
