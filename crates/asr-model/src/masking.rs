//! SpecAugment-style span masking (`_compute_mask_indices` in modeling_wav2vec2.py).
//!
//! The mask positions are drawn only from the random generator passed in, never from a
//! global one, so a training loop that seeds one generator per step reproduces the
//! masks without saving hidden state. The arithmetic mirrors transformers: one
//! `epsilon` per call for probabilistic rounding, `floor(prob * length / span + epsilon)`
//! spans per row (at least `min_masks`, at most what fits), span starts drawn without
//! replacement, overlapping spans merging. Only the random numbers differ from numpy's.
use rand::seq::index::sample;
use rand::{Rng, RngCore};

/// Why masks could not be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskError(pub String);

impl std::fmt::Display for MaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Number of spans for a row of `input_length` valid positions in an axis of
/// `sequence_length` (the inner `compute_num_masked_span` of transformers).
pub fn num_masked_spans(
    input_length: i64,
    sequence_length: i64,
    mask_prob: f64,
    mask_length: i64,
    min_masks: i64,
    epsilon: f64,
) -> i64 {
    let mut spans = (mask_prob * input_length as f64 / mask_length as f64 + epsilon) as i64;
    spans = spans.max(min_masks);
    if spans * mask_length > sequence_length {
        spans = sequence_length / mask_length;
    }
    if input_length - (mask_length - 1) < spans {
        spans = (input_length - (mask_length - 1)).max(0);
    }
    spans
}

/// Random span masks for a `[batch, sequence_length]` axis; `lengths` (one per row)
/// restricts each row's spans to its first `length` positions, as an attention mask
/// does in transformers. Returns one row of booleans per batch entry (true = masked).
///
/// Errors when `mask_length` is 0 or longer than the axis, as transformers raises.
pub fn compute_mask_indices(
    batch: usize,
    sequence_length: i64,
    mask_prob: f64,
    mask_length: i64,
    lengths: Option<&[i64]>,
    min_masks: i64,
    rng: &mut dyn RngCore,
) -> Result<Vec<Vec<bool>>, MaskError> {
    if mask_length < 1 {
        return Err(MaskError("mask length must be at least 1".into()));
    }
    if mask_length > sequence_length {
        return Err(MaskError(format!(
            "mask length {mask_length} is longer than the sequence ({sequence_length} positions); \
             lower mask_time_length / mask_feature_length or filter out such short utterances"
        )));
    }
    let width = usize::try_from(sequence_length).unwrap_or(0);
    let mut masks = vec![vec![false; width]; batch];
    let epsilon: f64 = rng.gen();
    let max_spans = num_masked_spans(
        sequence_length,
        sequence_length,
        mask_prob,
        mask_length,
        min_masks,
        epsilon,
    );
    if max_spans == 0 {
        return Ok(masks);
    }
    for (row, mask) in masks.iter_mut().enumerate() {
        let input_length = lengths.map_or(sequence_length, |l| l[row].clamp(0, sequence_length));
        let spans = num_masked_spans(
            input_length,
            sequence_length,
            mask_prob,
            mask_length,
            min_masks,
            epsilon,
        );
        let starts_range = usize::try_from(input_length - (mask_length - 1)).unwrap_or(0);
        let spans = usize::try_from(spans).unwrap_or(0).min(starts_range);
        // transformers pads the span list to `max_spans` with the first start (or the
        // last position when there is none): repeated spans mask nothing new, but an
        // empty row gets its last (padding) position masked.
        let starts: Vec<usize> = sample(rng, starts_range, spans).into_vec();
        let dummy = starts.first().copied().unwrap_or(width.saturating_sub(1));
        let padded = usize::try_from(max_spans)
            .unwrap_or(0)
            .saturating_sub(spans);
        for start in starts
            .iter()
            .copied()
            .chain(std::iter::repeat_n(dummy, padded))
        {
            for offset in 0..mask_length as usize {
                let position = (start + offset).min(width.saturating_sub(1));
                mask[position] = true;
            }
        }
    }
    Ok(masks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn span_counts_follow_probability() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            // Span length 1: masked positions = spans, in {floor(x), floor(x) + 1} with x = 0.1 * 200 / 1.
            let masks = compute_mask_indices(3, 200, 0.1, 1, None, 2, &mut rng).unwrap();
            for row in &masks {
                let n = row.iter().filter(|m| **m).count();
                assert!(n == 20 || n == 21, "{n}");
            }
        }
    }

    #[test]
    fn lengths_bound_the_spans() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let masks =
                compute_mask_indices(2, 100, 0.5, 4, Some(&[100, 30]), 0, &mut rng).unwrap();
            assert!(masks[1][30..].iter().all(|m| !m));
            assert!(masks[1][..30].iter().any(|m| *m));
        }
    }

    #[test]
    fn same_seed_same_masks_and_errors_for_long_spans() {
        let a = compute_mask_indices(2, 50, 0.3, 5, None, 2, &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        let b = compute_mask_indices(2, 50, 0.3, 5, None, 2, &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        assert_eq!(a, b);
        assert!(
            compute_mask_indices(1, 4, 0.3, 5, None, 2, &mut ChaCha8Rng::seed_from_u64(3)).is_err()
        );
        let none = compute_mask_indices(1, 50, 0.0, 5, None, 0, &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        assert!(none[0].iter().all(|m| !m));
    }
}
