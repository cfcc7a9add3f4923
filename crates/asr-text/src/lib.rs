//! Transcript normalization, CTC vocabularies (HF vocab.json), label encoding, greedy CTC decoding, WER/CER.
