//! `asr-train transcribe` on a Whisper folder.
//!
//! Each file is decoded, mixed to mono and resampled to 16 kHz as for CTC models, then
//! cut into **consecutive 30-second windows with no overlap** (a 65 s file gives three:
//! 0-30 s, 30-60 s, 60-65 s; the last one is padded with silence as Whisper pads every
//! input). The windows of all files are generated together, in batches of
//! `batch_seconds / 30` windows (at least one). A file's window texts are joined in
//! order by [`join_windows`]: with one space, except where the text on either side of
//! the join is in a script written without spaces (Chinese, Japanese, Thai...), where
//! they are joined directly. A word cut by a window boundary comes out as two pieces:
//! there is no overlap to stitch it.

use std::path::PathBuf;

use asr_model::whisper::Task;

use super::WhisperBundle;
use crate::trainer::TrainError;
use crate::transcribe::load_audio_16k;

/// Samples per Whisper window (30 s at 16 kHz).
pub const WINDOW_SAMPLES: usize = 480_000;

/// The `(start, end)` sample ranges of consecutive 30-s windows over `num_samples`
/// samples; one (empty) window for an empty clip.
pub fn plan_windows(num_samples: usize) -> Vec<(usize, usize)> {
    if num_samples == 0 {
        return vec![(0, 0)];
    }
    (0..num_samples.div_ceil(WINDOW_SAMPLES))
        .map(|k| {
            (
                k * WINDOW_SAMPLES,
                ((k + 1) * WINDOW_SAMPLES).min(num_samples),
            )
        })
        .collect()
}

/// True for a character of a script written without spaces between words.
fn unspaced(c: char) -> bool {
    asr_text::prefers_cer(c.encode_utf8(&mut [0; 4]))
}

/// A file's window texts in order, empty ones left out, joined with a space except
/// where the character before or after the join is of an unspaced script.
pub fn join_windows(texts: &[String]) -> String {
    let mut out = String::new();
    for text in texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let left = out.chars().next_back();
        let right = text.chars().next();
        if let (Some(l), Some(r)) = (left, right) {
            if !unspaced(l) && !unspaced(r) {
                out.push(' ');
            }
        }
        out.push_str(text);
    }
    out
}

/// Language and task of generation (`--language`, `--task`); `None` takes them from
/// generation_config.json.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationChoice {
    /// A Whisper language code (`en`, `zh`) or token (`<|zh|>`).
    pub language: Option<String>,
    /// `transcribe` or `translate`.
    pub task: Option<Task>,
}

/// One result per file, in input order: its text, or why it could not be transcribed.
/// A bad `--language` / `--task` fails the whole call before any file is read.
pub fn transcribe_files(
    bundle: &WhisperBundle,
    paths: &[PathBuf],
    choice: &GenerationChoice,
    batch_seconds: f64,
) -> Result<Vec<Result<String, String>>, TrainError> {
    let prompt = bundle.prompt(choice.language.as_deref(), choice.task)?;
    let per_batch = ((batch_seconds / 30.0).floor() as usize).max(1);
    let mut results: Vec<Result<String, String>> = Vec::with_capacity(paths.len());
    let mut audio: Vec<Vec<f32>> = Vec::with_capacity(paths.len());
    for path in paths {
        match load_audio_16k(path) {
            Ok(samples) if samples.is_empty() => {
                results.push(Err(format!("{}: the file holds no audio", path.display())));
                audio.push(Vec::new());
            }
            Ok(samples) => {
                results.push(Ok(String::new()));
                audio.push(samples);
            }
            Err(e) => {
                results.push(Err(format!("{}: {e}", path.display())));
                audio.push(Vec::new());
            }
        }
    }
    // (file, window) pairs of the files that decoded.
    let windows: Vec<(usize, (usize, usize))> = audio
        .iter()
        .enumerate()
        .filter(|(f, samples)| results[*f].is_ok() && !samples.is_empty())
        .flat_map(|(f, samples)| plan_windows(samples.len()).into_iter().map(move |w| (f, w)))
        .collect();
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); paths.len()];
    for batch in windows.chunks(per_batch) {
        let clips: Vec<&[f32]> = batch.iter().map(|&(f, (s, e))| &audio[f][s..e]).collect();
        for (&(f, _), text) in batch.iter().zip(bundle.generate_texts(&clips, &prompt)?) {
            texts[f].push(text);
        }
    }
    for (result, texts) in results.iter_mut().zip(texts) {
        if let Ok(text) = result {
            *text = join_windows(&texts);
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_65_second_clip_is_three_consecutive_windows() {
        let windows = plan_windows(65 * 16_000);
        assert_eq!(
            windows,
            [(0, 480_000), (480_000, 960_000), (960_000, 1_040_000)]
        );
        assert_eq!(plan_windows(480_000), [(0, 480_000)]);
        assert_eq!(plan_windows(480_001).len(), 2);
        assert_eq!(plan_windows(16_000), [(0, 16_000)]);
    }

    #[test]
    fn windows_join_with_a_space_except_in_unspaced_scripts() {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(
            join_windows(&s(&[" hello world", "again ", ""])),
            "hello world again"
        );
        assert_eq!(join_windows(&s(&["今天天气", "很好"])), "今天天气很好");
        assert_eq!(
            join_windows(&s(&["我们用", "Python 写"])),
            "我们用Python 写"
        );
        assert_eq!(join_windows(&s(&["", "  "])), "");
    }
}
