//! asr-data: validate, pack, inspect and merge speech corpora.

fn main() {}
