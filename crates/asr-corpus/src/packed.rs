//! Recognising the output of `asr-data pack` inside a dataset folder, so that packing
//! into (or under) the dataset folder does not make the next read take the pack's own
//! `manifest.json`, `skipped.jsonl` and `unknown_chars.jsonl` for input manifests.
//!
//! A pack output folder is one whose `manifest.json` (or a part's
//! `manifest-K-of-N.json`) is a JSON object with pack's keys: `format_version`,
//! `sample_rate_hz`, `vocab`, `splits` and `skipped` (`schemas/shards-manifest.schema.json`).

use std::path::Path;

/// Pack manifests larger than this are not opened (pack's are a few KiB per shard).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The keys every pack manifest has.
const PACK_KEYS: [&str; 5] = [
    "format_version",
    "sample_rate_hz",
    "vocab",
    "splits",
    "skipped",
];

/// True when `file` is a manifest written by `asr-data pack`.
pub fn is_pack_manifest(file: &Path) -> bool {
    let small = std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.len() <= MAX_MANIFEST_BYTES);
    if !small {
        return false;
    }
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => PACK_KEYS.iter().all(|k| map.contains_key(*k)),
        _ => false,
    }
}

/// True when `dir` holds the output of `asr-data pack` (a whole pack or parts of one).
pub fn is_pack_output(dir: &Path) -> bool {
    if is_pack_manifest(&dir.join("manifest.json")) {
        return true;
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            is_part_manifest_name(&e.file_name().to_string_lossy()) && is_pack_manifest(&e.path())
        })
    })
}

fn is_part_manifest_name(name: &str) -> bool {
    name.strip_prefix("manifest-")
        .and_then(|rest| rest.strip_suffix(".json"))
        .is_some_and(|tag| tag.contains("-of-"))
}

/// True when `path` is one of the files `asr-data pack` writes at the top of its output
/// folder: `manifest.json`, `skipped.jsonl`, `unknown_chars.jsonl`, their part-tagged
/// forms (`manifest-003-of-008.json`, ...), and its hidden resume journals
/// (`.pack-decode-skips-shard.jsonl`).
pub fn is_pack_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    name == "manifest.json"
        || name.starts_with(".pack-")
        || is_part_manifest_name(&name)
        || ["skipped", "unknown_chars"].iter().any(|stem| {
            name == format!("{stem}.jsonl")
                || name
                    .strip_prefix(&format!("{stem}-"))
                    .and_then(|rest| rest.strip_suffix(".jsonl"))
                    .is_some_and(|tag| tag.contains("-of-"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_manifests_and_files_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_pack_output(dir.path()));
        // A NeMo-style manifest named manifest.json is not a pack's.
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"audio_filepath": "a.wav", "text": "hi"}"#,
        )
        .unwrap();
        assert!(!is_pack_output(dir.path()));
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"format_version": 1, "sample_rate_hz": 16000, "audio_dtype": "int16",
                "vocab": {}, "splits": {}, "skipped": {"total": 0, "by_code": {}, "file": "skipped.jsonl"}}"#,
        )
        .unwrap();
        assert!(is_pack_output(dir.path()));
        for name in [
            ".pack-decode-skips-shard.jsonl",
            "manifest.json",
            "skipped.jsonl",
            "unknown_chars-001-of-004.jsonl",
            "manifest-000-of-002.json",
        ] {
            assert!(is_pack_file_name(Path::new(name)), "{name}");
        }
        for name in ["manifest.jsonl", "train.jsonl", "skipped_rows.jsonl"] {
            assert!(!is_pack_file_name(Path::new(name)), "{name}");
        }
    }
}
