//! Dataset readers (LibriSpeech, Common Voice, CSV/TSV and JSON-lines manifests) yielding one Utterance record.
