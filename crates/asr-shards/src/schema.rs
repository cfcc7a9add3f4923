//! The Arrow schema of a shard: column names and types are a contract with the trainer and
//! with Python readers (documented in `schemas/shard-format.md`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// Sample rate of every shard's audio, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// Version of the shard format and manifest written by this crate. Bumped when a reader of
/// the previous version could misread the new files.
pub const FORMAT_VERSION: u32 = 1;

/// Schema metadata key: the audio sample rate in Hz, as a decimal string (`"16000"`).
pub const META_SAMPLE_RATE: &str = "asr.sample_rate";
/// Schema metadata key: the vocabulary as HF `vocab.json` text (token -> id).
pub const META_VOCAB: &str = "asr.vocab";
/// Schema metadata key: [`FORMAT_VERSION`] as a decimal string.
pub const META_FORMAT_VERSION: &str = "asr.format_version";

/// How audio samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioDtype {
    /// `list<int16>`, samples scaled by 32768, rounded half to even and clamped (the default: half the size).
    #[default]
    Int16,
    /// `list<float32>`, samples as decoded.
    Float32,
}

impl AudioDtype {
    /// The manifest / command-line name: `int16` or `float32`.
    pub fn name(self) -> &'static str {
        match self {
            AudioDtype::Int16 => "int16",
            AudioDtype::Float32 => "float32",
        }
    }

    /// Bytes per stored sample.
    pub fn sample_bytes(self) -> usize {
        match self {
            AudioDtype::Int16 => 2,
            AudioDtype::Float32 => 4,
        }
    }

    fn element_type(self) -> DataType {
        match self {
            AudioDtype::Int16 => DataType::Int16,
            AudioDtype::Float32 => DataType::Float32,
        }
    }
}

impl std::str::FromStr for AudioDtype {
    type Err = String;

    /// Accepts `int16`/`i16` and `float32`/`f32`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "int16" | "i16" => Ok(AudioDtype::Int16),
            "float32" | "f32" => Ok(AudioDtype::Float32),
            other => Err(format!(
                "unknown audio dtype {other:?}: expected int16 (i16) or float32 (f32)"
            )),
        }
    }
}

/// Column names, in schema order.
pub(crate) const COLUMNS: [&str; 7] = [
    "id",
    "audio",
    "num_samples",
    "text",
    "labels",
    "speaker",
    "source",
];
pub(crate) const COL_ID: usize = 0;
pub(crate) const COL_AUDIO: usize = 1;
pub(crate) const COL_NUM_SAMPLES: usize = 2;
pub(crate) const COL_TEXT: usize = 3;
pub(crate) const COL_LABELS: usize = 4;
pub(crate) const COL_SPEAKER: usize = 5;
pub(crate) const COL_SOURCE: usize = 6;

/// The list item field name, as pyarrow writes it.
pub(crate) const ITEM: &str = "item";

/// The shard schema for `dtype`, with metadata `asr.sample_rate`, `asr.vocab` (the
/// vocabulary's HF `vocab.json` text) and `asr.format_version`.
pub fn shard_schema(dtype: AudioDtype, vocab_json: &str) -> SchemaRef {
    let fields = vec![
        Field::new(COLUMNS[COL_ID], DataType::Utf8, false),
        Field::new(
            COLUMNS[COL_AUDIO],
            DataType::List(Arc::new(Field::new(ITEM, dtype.element_type(), false))),
            false,
        ),
        Field::new(COLUMNS[COL_NUM_SAMPLES], DataType::UInt32, false),
        Field::new(COLUMNS[COL_TEXT], DataType::Utf8, false),
        Field::new(
            COLUMNS[COL_LABELS],
            DataType::List(Arc::new(Field::new(ITEM, DataType::Int32, false))),
            false,
        ),
        Field::new(COLUMNS[COL_SPEAKER], DataType::Utf8, true),
        Field::new(COLUMNS[COL_SOURCE], DataType::Utf8, false),
    ];
    let metadata = HashMap::from([
        (META_SAMPLE_RATE.to_string(), SAMPLE_RATE_HZ.to_string()),
        (META_VOCAB.to_string(), vocab_json.to_string()),
        (META_FORMAT_VERSION.to_string(), FORMAT_VERSION.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Checks that `schema` is a shard schema and returns its audio dtype; the error says which
/// column or key is wrong.
pub(crate) fn check_schema(schema: &Schema) -> Result<AudioDtype, String> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names != COLUMNS {
        return Err(format!("columns are {names:?}, expected {COLUMNS:?}"));
    }
    let dtype = match schema.field(COL_AUDIO).data_type() {
        DataType::List(item) if item.data_type() == &DataType::Int16 => AudioDtype::Int16,
        DataType::List(item) if item.data_type() == &DataType::Float32 => AudioDtype::Float32,
        other => {
            return Err(format!(
                "column audio is {other}, expected list<int16> or list<float32>"
            ))
        }
    };
    let expected = shard_schema(dtype, "");
    for (index, field) in schema.fields().iter().enumerate() {
        let want = expected.field(index);
        if field.data_type() != want.data_type() {
            return Err(format!(
                "column {} is {}, expected {}",
                field.name(),
                field.data_type(),
                want.data_type()
            ));
        }
    }
    let metadata = schema.metadata();
    match metadata.get(META_FORMAT_VERSION) {
        Some(v) if v.parse::<u32>().is_ok_and(|v| v <= FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "format version {v} is newer than this reader ({FORMAT_VERSION})"
            ))
        }
        None => return Err(format!("schema metadata has no {META_FORMAT_VERSION}")),
    }
    match metadata.get(META_SAMPLE_RATE) {
        Some(v) if v == &SAMPLE_RATE_HZ.to_string() => {}
        other => {
            return Err(format!(
                "{META_SAMPLE_RATE} is {other:?}, expected \"{SAMPLE_RATE_HZ}\""
            ))
        }
    }
    if !metadata.contains_key(META_VOCAB) {
        return Err(format!("schema metadata has no {META_VOCAB}"));
    }
    Ok(dtype)
}
