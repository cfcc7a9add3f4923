//! Format auto-detection: what layout a dataset path has.

use std::path::Path;

use crate::manifest::{is_manifest, manifests_in};
use crate::{commonvoice, CorpusError, Format};

/// Detects the layout of `path`:
/// - a file: CSV/TSV by `.csv`/`.tsv`, JSON-lines by `.jsonl`/`.json`/`.ndjson`;
/// - a folder with `clips/` and a Common Voice TSV: Common Voice;
/// - a folder with a `LibriSpeech/` folder: LibriSpeech;
/// - a folder with CSV/TSV manifests (or else JSON-lines manifests) directly in it;
/// - a folder with `*.trans.txt` files at most four levels down: LibriSpeech.
///
/// Anything else is [`CorpusError::UnknownLayout`], saying what the folder holds.
pub fn detect_format(path: &Path) -> Result<Format, CorpusError> {
    let meta = std::fs::metadata(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        if is_manifest(path, Format::Csv) {
            return Ok(Format::Csv);
        }
        if is_manifest(path, Format::Jsonl) {
            return Ok(Format::Jsonl);
        }
        return Err(CorpusError::UnknownLayout {
            path: path.to_path_buf(),
            reason: "a file that is not a .csv, .tsv or .jsonl manifest".into(),
        });
    }
    if commonvoice::looks_like_release(path) {
        return Ok(Format::CommonVoice);
    }
    if path.join("LibriSpeech").is_dir() {
        return Ok(Format::LibriSpeech);
    }
    // Manifests in the folder itself win over a (slower) search for transcripts below.
    if !manifests_in(path, Format::Csv).is_empty() {
        return Ok(Format::Csv);
    }
    if !manifests_in(path, Format::Jsonl).is_empty() {
        return Ok(Format::Jsonl);
    }
    if has_trans_txt(path) {
        return Ok(Format::LibriSpeech);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|source| CorpusError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .count();
    Err(CorpusError::UnknownLayout {
        path: path.to_path_buf(),
        reason: if entries == 0 {
            "the folder is empty".into()
        } else {
            format!("{entries} entries, but no clips/ + *.tsv (Common Voice), no *.trans.txt (LibriSpeech) and no .csv/.tsv/.jsonl manifest")
        },
    })
}

fn has_trans_txt(path: &Path) -> bool {
    walkdir::WalkDir::new(path)
        .follow_links(true)
        .max_depth(4)
        .into_iter()
        .flatten()
        .any(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".trans.txt"))
}
