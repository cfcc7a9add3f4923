//! Memory-mapped random access to one shard.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int16Type, Int32Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::convert::fb_to_schema;
use arrow_ipc::reader::read_record_batch;
use arrow_ipc::{root_as_message, MessageHeader, MetadataVersion};
use arrow_schema::SchemaRef;
use memmap2::Mmap;

use crate::schema::{
    check_schema, AudioDtype, COL_AUDIO, COL_ID, COL_LABELS, COL_NUM_SAMPLES, COL_SOURCE,
    COL_SPEAKER, COL_TEXT, META_VOCAB,
};
use crate::{ShardError, ShardRow};

/// One row's id and length, read without touching its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIndex {
    /// Utterance id.
    pub id: String,
    /// Samples at 16 kHz.
    pub num_samples: u32,
}

/// Where one record batch lies in the file.
#[derive(Debug, Clone, Copy)]
struct BatchBlock {
    /// Offset of the flatbuffer message header.
    meta_offset: usize,
    meta_len: usize,
    /// Offset and length of the message body (the buffers).
    body_offset: usize,
    body_len: usize,
    /// Index of the batch's first row in the shard.
    first_row: usize,
    rows: usize,
}

/// Random access to one shard (an Arrow IPC stream file), memory-mapped.
///
/// Opening maps the file and walks its message headers (a few hundred bytes per record
/// batch), so it is cheap whatever the shard's size; batches are decoded zero-copy from the
/// map on demand. Shards are immutable once renamed into place: do not modify a shard
/// while a reader has it open.
pub struct ShardReader {
    path: PathBuf,
    map: Arc<Mmap>,
    schema: SchemaRef,
    dtype: AudioDtype,
    version: MetadataVersion,
    blocks: Vec<BatchBlock>,
    num_rows: usize,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader")
            .field("path", &self.path)
            .field("num_rows", &self.num_rows)
            .field("batches", &self.blocks.len())
            .finish()
    }
}

/// The IPC continuation marker that starts every message (format >= 0.15).
const CONTINUATION: u32 = 0xFFFF_FFFF;

impl ShardReader {
    /// Maps `path` and indexes its record batches.
    pub fn open(path: &Path) -> Result<Self, ShardError> {
        let file = File::open(path).map_err(|e| ShardError::io(path, e))?;
        // SAFETY: shards are written once under a temporary name and renamed into place;
        // nothing writes a final shard in place. A file truncated by another process while
        // mapped would fault, as with any mmap reader (pyarrow included).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ShardError::io(path, e))?;
        let map = Arc::new(map);
        let bytes: &[u8] = &map;
        let mut offset = 0usize;
        let mut schema: Option<(SchemaRef, MetadataVersion)> = None;
        let mut blocks = Vec::new();
        let mut num_rows = 0usize;
        let mut saw_eos = false;
        while offset < bytes.len() {
            let word = read_u32(bytes, offset)
                .ok_or_else(|| ShardError::invalid(path, format!("truncated at byte {offset}")))?;
            let (meta_len, header_len) = if word == CONTINUATION {
                let len = read_u32(bytes, offset + 4).ok_or_else(|| {
                    ShardError::invalid(path, format!("truncated at byte {offset}"))
                })?;
                (len as usize, 8)
            } else {
                (word as usize, 4)
            };
            if meta_len == 0 {
                saw_eos = true;
                break;
            }
            let meta_offset = offset + header_len;
            let meta = bytes
                .get(meta_offset..meta_offset + meta_len)
                .ok_or_else(|| {
                    ShardError::invalid(path, format!("message at byte {offset} is truncated"))
                })?;
            let message = root_as_message(meta).map_err(|e| {
                ShardError::invalid(path, format!("bad message header at byte {offset}: {e}"))
            })?;
            let body_len = usize::try_from(message.bodyLength()).map_err(|_| {
                ShardError::invalid(path, format!("negative body length at byte {offset}"))
            })?;
            let body_offset = meta_offset + meta_len;
            if body_offset + body_len > bytes.len() {
                return Err(ShardError::invalid(
                    path,
                    format!("message body at byte {body_offset} runs past the end of the file"),
                ));
            }
            match message.header_type() {
                MessageHeader::Schema => {
                    if schema.is_some() {
                        return Err(ShardError::invalid(path, "more than one schema message"));
                    }
                    let fb = message
                        .header_as_schema()
                        .ok_or_else(|| ShardError::invalid(path, "unreadable schema message"))?;
                    schema = Some((Arc::new(fb_to_schema(fb)), message.version()));
                }
                MessageHeader::RecordBatch => {
                    let batch = message.header_as_record_batch().ok_or_else(|| {
                        ShardError::invalid(path, "unreadable record batch message")
                    })?;
                    let rows = usize::try_from(batch.length())
                        .map_err(|_| ShardError::invalid(path, "negative record batch length"))?;
                    blocks.push(BatchBlock {
                        meta_offset,
                        meta_len,
                        body_offset,
                        body_len,
                        first_row: num_rows,
                        rows,
                    });
                    num_rows += rows;
                }
                other => {
                    return Err(ShardError::invalid(
                        path,
                        format!("unexpected IPC message {other:?} (shards have no dictionaries)"),
                    ))
                }
            }
            offset = body_offset + body_len;
        }
        let Some((schema, version)) = schema else {
            return Err(ShardError::invalid(
                path,
                "no schema message (not an Arrow IPC stream)",
            ));
        };
        if !saw_eos {
            return Err(ShardError::invalid(
                path,
                "no end-of-stream marker (incomplete file)",
            ));
        }
        let dtype = check_schema(&schema).map_err(|m| ShardError::invalid(path, m))?;
        Ok(ShardReader {
            path: path.to_path_buf(),
            map,
            schema,
            dtype,
            version,
            blocks,
            num_rows,
        })
    }

    /// The shard's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes (as mapped).
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Number of rows in the shard.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of record batches in the shard.
    pub fn num_batches(&self) -> usize {
        self.blocks.len()
    }

    /// The stored audio sample type.
    pub fn audio_dtype(&self) -> AudioDtype {
        self.dtype
    }

    /// The Arrow schema, with its `asr.*` metadata.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The vocabulary stored in the schema metadata (`asr.vocab`).
    pub fn vocab(&self) -> Result<asr_text::Vocab, ShardError> {
        let json = self
            .schema
            .metadata()
            .get(META_VOCAB)
            .ok_or_else(|| ShardError::invalid(&self.path, "no asr.vocab metadata"))?;
        asr_text::Vocab::from_json_str(json).map_err(|source| ShardError::Vocab {
            path: self.path.clone(),
            source,
        })
    }

    /// Decodes record batch `index`, only the columns in `projection` (all when `None`),
    /// zero-copy from the map.
    fn decode_batch(
        &self,
        index: usize,
        projection: Option<&[usize]>,
    ) -> Result<RecordBatch, ShardError> {
        let block = self.blocks[index];
        let meta = &self.map[block.meta_offset..block.meta_offset + block.meta_len];
        let message = root_as_message(meta)
            .map_err(|e| ShardError::invalid(&self.path, format!("bad message header: {e}")))?;
        let batch = message
            .header_as_record_batch()
            .ok_or_else(|| ShardError::invalid(&self.path, "unreadable record batch message"))?;
        let body = self.body_buffer(block);
        read_record_batch(
            &body,
            batch,
            Arc::clone(&self.schema),
            &HashMap::new(),
            projection,
            &self.version,
        )
        .map_err(|e| ShardError::arrow(&self.path, e))
    }

    /// The body of a batch as an Arrow buffer that borrows the map (kept alive by an Arc).
    fn body_buffer(&self, block: BatchBlock) -> Buffer {
        let slice = &self.map[block.body_offset..block.body_offset + block.body_len];
        let Some(ptr) = NonNull::new(slice.as_ptr().cast_mut()) else {
            return Buffer::from_vec(Vec::<u8>::new());
        };
        let owner: Arc<dyn arrow_buffer::alloc::Allocation> = self.map.clone();
        // SAFETY: `ptr..ptr + len` lies inside the map, which `owner` keeps alive and which
        // is never written through (read-only mapping).
        unsafe { Buffer::from_custom_allocation(ptr, slice.len(), owner) }
    }

    /// `(id, num_samples)` of every row, in order, decoding only those two columns: the
    /// audio pages of the file are not read.
    pub fn index(&self) -> Result<Vec<RowIndex>, ShardError> {
        let mut out = Vec::with_capacity(self.num_rows);
        for index in 0..self.blocks.len() {
            let batch = self.decode_batch(index, Some(&[COL_ID, COL_NUM_SAMPLES]))?;
            let ids = batch.column(0).as_string::<i32>();
            let lengths = batch.column(1).as_primitive::<UInt32Type>();
            for row in 0..batch.num_rows() {
                out.push(RowIndex {
                    id: ids.value(row).to_string(),
                    num_samples: lengths.value(row),
                });
            }
        }
        Ok(out)
    }

    /// The `text` of every row, in order, decoding that column alone (no audio read).
    pub fn texts(&self) -> Result<Vec<String>, ShardError> {
        let mut out = Vec::with_capacity(self.num_rows);
        for index in 0..self.blocks.len() {
            let batch = self.decode_batch(index, Some(&[COL_TEXT]))?;
            let texts = batch.column(0).as_string::<i32>();
            out.extend((0..batch.num_rows()).map(|row| texts.value(row).to_string()));
        }
        Ok(out)
    }

    /// Row `i`, decoded (audio as f32 in [-1, 1]).
    pub fn row(&self, i: usize) -> Result<ShardRow, ShardError> {
        if i >= self.num_rows {
            return Err(ShardError::RowOutOfRange {
                path: self.path.clone(),
                row: i,
                num_rows: self.num_rows,
            });
        }
        let block = self.blocks.partition_point(|b| b.first_row + b.rows <= i);
        let batch = self.decode_batch(block, None)?;
        self.row_of(&batch, i - self.blocks[block].first_row)
    }

    /// All rows in order, one record batch decoded at a time.
    pub fn rows(&self) -> impl Iterator<Item = Result<ShardRow, ShardError>> + '_ {
        (0..self.blocks.len()).flat_map(move |index| {
            let rows: Vec<Result<ShardRow, ShardError>> = match self.decode_batch(index, None) {
                Ok(batch) => (0..batch.num_rows())
                    .map(|row| self.row_of(&batch, row))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            rows
        })
    }

    /// Decodes row `row` of a full (unprojected) batch.
    fn row_of(&self, batch: &RecordBatch, row: usize) -> Result<ShardRow, ShardError> {
        let ids = batch.column(COL_ID).as_string::<i32>();
        let audio_list = batch.column(COL_AUDIO).as_list::<i32>();
        let num_samples = batch
            .column(COL_NUM_SAMPLES)
            .as_primitive::<UInt32Type>()
            .value(row);
        let texts = batch.column(COL_TEXT).as_string::<i32>();
        let labels_list = batch.column(COL_LABELS).as_list::<i32>();
        let speakers = batch.column(COL_SPEAKER).as_string::<i32>();
        let sources = batch.column(COL_SOURCE).as_string::<i32>();
        let audio_values = audio_list.value(row);
        let audio: Vec<f32> = match self.dtype {
            AudioDtype::Int16 => audio_values
                .as_primitive::<Int16Type>()
                .values()
                .iter()
                .map(|&s| f32::from(s) / 32_768.0)
                .collect(),
            AudioDtype::Float32 => audio_values.as_primitive::<Float32Type>().values().to_vec(),
        };
        if audio.len() != num_samples as usize {
            return Err(ShardError::invalid(
                &self.path,
                format!(
                    "row {:?}: num_samples is {num_samples} but audio holds {} samples",
                    ids.value(row),
                    audio.len()
                ),
            ));
        }
        let labels = labels_list
            .value(row)
            .as_primitive::<Int32Type>()
            .values()
            .to_vec();
        Ok(ShardRow {
            id: ids.value(row).to_string(),
            audio,
            num_samples,
            text: texts.value(row).to_string(),
            labels,
            speaker: (!speakers.is_null(row)).then(|| speakers.value(row).to_string()),
            source: sources.value(row).to_string(),
        })
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
