//! Frame arithmetic for CTC: how many frames a wav2vec2-style encoder produces, and how
//! many frames a label sequence needs.

/// The feature encoder's total stride: about one frame per 320 samples at 16 kHz (20 ms).
pub const SAMPLES_PER_FRAME: u64 = 320;

/// Kernel and stride of each layer of the default wav2vec2 / HuBERT feature encoder
/// (`conv_kernel` and `conv_stride` in transformers' `Wav2Vec2Config`).
const CONV_LAYERS: [(u64, u64); 7] = [(10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)];

/// Frames the default wav2vec2 / HuBERT feature encoder gives for `num_samples` at
/// 16 kHz: each convolution maps a length `n` to `(n - kernel) / stride + 1`, as
/// transformers' `_get_feat_extract_output_lengths` does. Clips shorter than 400 samples
/// give no frame at all.
pub fn wav2vec2_num_frames(num_samples: u64) -> u64 {
    let mut length = num_samples;
    for (kernel, stride) in CONV_LAYERS {
        if length < kernel {
            return 0;
        }
        length = (length - kernel) / stride + 1;
    }
    length
}

/// The fewest frames CTC needs to emit `labels`: one per label, plus one blank between
/// each pair of equal adjacent labels (`LL` in "HELLO" cannot be told from `L` without a
/// blank between). With fewer frames than this the CTC loss is infinite.
pub fn ctc_min_frames(labels: &[i32]) -> u64 {
    let repeats = labels.windows(2).filter(|pair| pair[0] == pair[1]).count();
    (labels.len() + repeats) as u64
}

/// [`ctc_min_frames`] for a normalized transcript encoded one label per character, with
/// each run of whitespace as one word delimiter (leading and trailing whitespace
/// ignored), as [`crate::Vocab::encode`] does.
pub fn ctc_min_frames_text(text: &str) -> u64 {
    let mut count = 0u64;
    let mut previous: Option<char> = None;
    for word in text.split_whitespace() {
        if previous.is_some() {
            // The delimiter between two words never equals a letter, and two delimiters
            // never touch.
            count += 1;
            previous = Some(' ');
        }
        for c in word.chars() {
            count += 1;
            if previous == Some(c) {
                count += 1;
            }
            previous = Some(c);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_transformers_formula() {
        // Known values of wav2vec2-base's `_get_feat_extract_output_lengths`.
        assert_eq!(wav2vec2_num_frames(16_000), 49);
        assert_eq!(wav2vec2_num_frames(32_000), 99);
        assert_eq!(wav2vec2_num_frames(400), 1);
        assert_eq!(wav2vec2_num_frames(399), 0);
        assert_eq!(wav2vec2_num_frames(0), 0);
    }

    #[test]
    fn about_320_samples_per_frame() {
        for seconds in [1u64, 3, 10, 30] {
            let n = seconds * 16_000;
            let frames = wav2vec2_num_frames(n);
            assert!(
                frames.abs_diff(n / SAMPLES_PER_FRAME) <= 1,
                "{n} -> {frames}"
            );
        }
    }

    #[test]
    fn repeated_labels_need_a_blank() {
        assert_eq!(ctc_min_frames(&[]), 0);
        assert_eq!(ctc_min_frames(&[1, 2, 3]), 3);
        assert_eq!(ctc_min_frames(&[1, 1, 1]), 5);
        assert_eq!(ctc_min_frames_text("HELLO WORLD"), 12);
        assert_eq!(ctc_min_frames_text("  AA   BB "), 7);
        assert_eq!(ctc_min_frames_text(""), 0);
    }
}
