//! Corpus checks, the validation report model and its statistics.
