//! The size-capped, atomic, deterministic shard writer.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Int16Builder, Int32Builder, ListBuilder, StringBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, SchemaRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{ShardInfo, SplitInfo};
use crate::schema::{shard_schema, AudioDtype, ITEM, SAMPLE_RATE_HZ};
use crate::ShardError;

/// Rows per Arrow record batch unless told otherwise: small enough that decoding one batch
/// to reach a row is cheap, large enough that per-batch metadata is negligible.
pub const DEFAULT_ROWS_PER_BATCH: usize = 64;

/// Upper bound of one record batch's bytes beyond its rows' data: the message header
/// (flatbuffer, under 1 KiB for this schema), 64-byte padding of each of its ~22 buffers
/// and the first offset of each variable-size column.
const BATCH_OVERHEAD_BYTES: u64 = 4_096;
/// The end-of-stream marker.
const EOS_BYTES: u64 = 8;

/// How shards are cut and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardWriterOptions {
    /// Size cap of one shard file in bytes. A shard is closed before a row would take it
    /// past the cap; a single row larger than the cap gets a shard of its own.
    pub shard_size_bytes: u64,
    /// Rows per record batch (the last batch of a shard may hold fewer).
    pub rows_per_batch: usize,
    /// Stored sample type.
    pub audio_dtype: AudioDtype,
    /// The vocabulary as HF `vocab.json` text, stored in each shard's schema metadata.
    pub vocab_json: String,
    /// File name stem before the shard number: `shard` gives `shard-00000.arrow`; a
    /// `--part K/N` pack uses `shard-K-of-N` (see [`crate::part_tag`]).
    pub file_prefix: String,
}

impl ShardWriterOptions {
    /// Options with the given cap and vocabulary, int16 audio, 64-row batches and the
    /// `shard` prefix.
    pub fn new(shard_size_bytes: u64, vocab_json: impl Into<String>) -> Self {
        ShardWriterOptions {
            shard_size_bytes,
            rows_per_batch: DEFAULT_ROWS_PER_BATCH,
            audio_dtype: AudioDtype::Int16,
            vocab_json: vocab_json.into(),
            file_prefix: "shard".to_string(),
        }
    }
}

/// A row to write, borrowed. Audio is 16 kHz mono in [-1, 1].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// Utterance id.
    pub id: &'a str,
    /// 16 kHz mono samples in [-1, 1] (int16 storage clamps and rounds `x * 32768`).
    pub audio: &'a [f32],
    /// Normalized transcript.
    pub text: &'a str,
    /// CTC labels of `text`.
    pub labels: &'a [i32],
    /// Speaker id, if known.
    pub speaker: Option<&'a str>,
    /// Audio path relative to the dataset root.
    pub source: &'a str,
}

/// Bytes written to a shard between two requests to the kernel to start writing them to
/// disk (see [`HashingFile`]).
const WRITEBACK_CHUNK_BYTES: u64 = 4 << 20;

/// The audio of a row as handed to [`ShardWriter::write_samples`]: float, or int16 already.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    /// 16 kHz mono in [-1, 1]. Int16 shards store [`quantize_i16`]`(x)`.
    F32(&'a [f32]),
    /// 16 kHz mono int16: samples quantized by the caller with [`quantize_i16_into`] (so
    /// the work can be done on the decoding threads) or a 16-bit source's own samples.
    /// Float32 shards store `x / 32768`.
    I16(&'a [i16]),
}

impl Samples<'_> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Samples::F32(x) => x.len(),
            Samples::I16(x) => x.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A row to write whose audio is given as [`Samples`]: the general form of [`RowRef`].
#[derive(Debug, Clone, Copy)]
pub struct SamplesRowRef<'a> {
    /// Utterance id.
    pub id: &'a str,
    /// 16 kHz mono audio.
    pub audio: Samples<'a>,
    /// Normalized transcript.
    pub text: &'a str,
    /// CTC labels of `text`.
    pub labels: &'a [i32],
    /// Speaker id, if known.
    pub speaker: Option<&'a str>,
    /// Audio path relative to the dataset root.
    pub source: &'a str,
}

impl<'a> From<RowRef<'a>> for SamplesRowRef<'a> {
    fn from(row: RowRef<'a>) -> Self {
        SamplesRowRef {
            id: row.id,
            audio: Samples::F32(row.audio),
            text: row.text,
            labels: row.labels,
            speaker: row.speaker,
            source: row.source,
        }
    }
}

/// Quantizes float samples in [-1, 1] to int16 as int16 shards store them (see
/// [`quantize_i16`]), into `out` (cleared first).
pub fn quantize_i16_into(samples: &[f32], out: &mut Vec<i16>) {
    out.clear();
    out.reserve(samples.len());
    out.extend(samples.iter().map(|&x| quantize_i16(x)));
}

/// A file writer that counts and hashes what goes through it, and asks the kernel to
/// start writing each [`WRITEBACK_CHUNK_BYTES`] to disk as soon as they are written.
///
/// Why: a shard is fsynced before it is renamed (so a crash never leaves a torn shard
/// under its final name). Without a nudge, Linux keeps the whole shard dirty in the page
/// cache until that fsync (background writeback starts only at 10% of memory or after 30
/// s), so the fsyncs at the end of a pack waited for every byte at once: 0.3 to 0.5 s of
/// idle CPUs at the end of a 2 s pack of 215 MB here. `sync_file_range(WRITE)` starts the
/// writeback of what was written without waiting for it, so the disk works while the
/// decoders do, and the final fsync finds little left to write. It is a hint: errors are
/// ignored (the fsync reports real ones), and other systems only get the fsync.
struct HashingFile {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    /// Offset up to which writeback was requested.
    writeback_requested: u64,
}

impl HashingFile {
    fn new(file: File) -> Self {
        HashingFile {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
            writeback_requested: 0,
        }
    }

    /// Starts the writeback of the bytes written since the last request, once they amount
    /// to a chunk.
    fn request_writeback(&mut self) -> std::io::Result<()> {
        if self.bytes - self.writeback_requested < WRITEBACK_CHUNK_BYTES {
            return Ok(());
        }
        self.inner.flush()?;
        start_writeback(
            self.inner.get_ref(),
            self.writeback_requested,
            self.bytes - self.writeback_requested,
        );
        self.writeback_requested = self.bytes;
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without
/// waiting (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no
    // memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the fsync before the rename does all the work.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        self.request_writeback()?;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum AudioBuilder {
    Int16(ListBuilder<Int16Builder>),
    Float32(ListBuilder<Float32Builder>),
}

/// Column builders of the record batch being filled.
struct BatchBuilder {
    id: StringBuilder,
    audio: AudioBuilder,
    num_samples: UInt32Builder,
    text: StringBuilder,
    labels: ListBuilder<Int32Builder>,
    speaker: StringBuilder,
    source: StringBuilder,
    rows: usize,
    estimated_bytes: u64,
    scratch_i16: Vec<i16>,
}

impl BatchBuilder {
    fn new(dtype: AudioDtype) -> Self {
        let audio = match dtype {
            AudioDtype::Int16 => AudioBuilder::Int16(
                ListBuilder::new(Int16Builder::new()).with_field(Arc::new(Field::new(
                    ITEM,
                    DataType::Int16,
                    false,
                ))),
            ),
            AudioDtype::Float32 => AudioBuilder::Float32(
                ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
                    ITEM,
                    DataType::Float32,
                    false,
                ))),
            ),
        };
        BatchBuilder {
            id: StringBuilder::new(),
            audio,
            num_samples: UInt32Builder::new(),
            text: StringBuilder::new(),
            labels: ListBuilder::new(Int32Builder::new()).with_field(Arc::new(Field::new(
                ITEM,
                DataType::Int32,
                false,
            ))),
            speaker: StringBuilder::new(),
            source: StringBuilder::new(),
            rows: 0,
            estimated_bytes: 0,
            scratch_i16: Vec::new(),
        }
    }

    fn push(&mut self, row: &SamplesRowRef<'_>, num_samples: u32, estimated_bytes: u64) {
        self.id.append_value(row.id);
        match (&mut self.audio, row.audio) {
            (AudioBuilder::Int16(builder), Samples::F32(audio)) => {
                quantize_i16_into(audio, &mut self.scratch_i16);
                builder.values().append_slice(&self.scratch_i16);
                builder.append(true);
            }
            (AudioBuilder::Int16(builder), Samples::I16(audio)) => {
                builder.values().append_slice(audio);
                builder.append(true);
            }
            (AudioBuilder::Float32(builder), Samples::F32(audio)) => {
                builder.values().append_slice(audio);
                builder.append(true);
            }
            (AudioBuilder::Float32(builder), Samples::I16(audio)) => {
                let values = builder.values();
                for &x in audio {
                    values.append_value(f32::from(x) / 32_768.0);
                }
                builder.append(true);
            }
        }
        self.num_samples.append_value(num_samples);
        self.text.append_value(row.text);
        self.labels.values().append_slice(row.labels);
        self.labels.append(true);
        self.speaker.append_option(row.speaker);
        self.source.append_value(row.source);
        self.rows += 1;
        self.estimated_bytes += estimated_bytes;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let audio: ArrayRef = match &mut self.audio {
            AudioBuilder::Int16(b) => Arc::new(b.finish()),
            AudioBuilder::Float32(b) => Arc::new(b.finish()),
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            audio,
            Arc::new(self.num_samples.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.speaker.finish()),
            Arc::new(self.source.finish()),
        ];
        self.rows = 0;
        self.estimated_bytes = 0;
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

/// `x * 32768`, rounded half to even (as numpy does) and clamped to the int16 range (NaN
/// becomes 0).
///
/// Written without `round_ties_even` (a libm call on baseline x86-64, 12% of a pack's
/// time): adding 1.5 * 2^23 to an f32 of magnitude below 2^22 leaves the integer, rounded
/// half to even by the FPU's default mode, in the low mantissa bits. The loop vectorizes.
pub fn quantize_i16(x: f32) -> i16 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    if x.is_nan() {
        return 0;
    }
    let scaled = (x * 32_768.0).clamp(-32_768.0, 32_767.0) + MAGIC;
    (scaled.to_bits() as i32 - MAGIC.to_bits() as i32) as i16
}

/// An upper bound of the bytes a row adds to a record batch.
fn row_bytes_bound(row: &SamplesRowRef<'_>, dtype: AudioDtype) -> u64 {
    let data = row.id.len()
        + row.audio.len() * dtype.sample_bytes()
        + row.text.len()
        + row.labels.len() * 4
        + row.speaker.map_or(0, str::len)
        + row.source.len();
    // Six i32 offsets, the u32 sample count, one byte of validity bits.
    (data + 6 * 4 + 4 + 1) as u64
}

/// The shard being written.
struct OpenShard {
    index: usize,
    temp_path: PathBuf,
    final_path: PathBuf,
    writer: StreamWriter<HashingFile>,
    rows: u64,
    num_samples: u64,
    first_id: String,
    last_id: String,
}

/// The first line of a split's progress journal: the options the shards were written with.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct JournalHeader {
    format_version: u32,
    options: ShardWriterOptions,
}

/// Writes one split's rows, in order, into size-capped shards
/// `<out>/<split>/<prefix>-NNNNN.arrow`.
///
/// Each shard is written as `.<prefix>-NNNNN.arrow.partial` in the same folder, fsynced,
/// then renamed (and the folder fsynced): no reader ever sees a half-written shard under its
/// final name. After each rename the shard's [`ShardInfo`] is appended to a hidden progress
/// journal (`.<prefix>.progress.jsonl`), which [`ShardWriter::resume`] reads to carry on
/// after an interruption.
///
/// Output is deterministic: record batches hold [`ShardWriterOptions::rows_per_batch`] rows
/// (fewer only at the end of a shard), shard boundaries depend only on the rows, and the
/// Arrow IPC stream carries no timestamps, so the same rows give byte-identical files.
pub struct ShardWriter {
    split: String,
    split_dir: PathBuf,
    options: ShardWriterOptions,
    schema: SchemaRef,
    batch: BatchBuilder,
    current: Option<OpenShard>,
    completed: Vec<ShardInfo>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("split_dir", &self.split_dir)
            .field("completed", &self.completed.len())
            .finish()
    }
}

impl ShardWriter {
    /// Starts writing split `split` under `out_dir` from scratch: forgets any progress
    /// journal and removes stale temporary files of this prefix (left by a killed writer).
    /// Final shards of an earlier run are replaced as new ones are written, and those past
    /// the new run's last shard are removed by [`finish`](Self::finish).
    pub fn create(
        out_dir: &Path,
        split: &str,
        options: ShardWriterOptions,
    ) -> Result<Self, ShardError> {
        let mut writer = Self::new_empty(out_dir, split, options)?;
        writer.reset_journal()?;
        Ok(writer)
    }

    /// Like [`create`](Self::create), but keeps the shards an interrupted run completed
    /// with the same options: those listed in the progress journal whose files still have
    /// the recorded size and sha256. The caller must then write only the rows after
    /// [`rows_completed`](Self::rows_completed) (the row after
    /// [`last_completed_id`](Self::last_completed_id)), in the same order as before. When
    /// the journal is missing, was written with other options, or a file does not verify,
    /// this starts from scratch for the shards from that one on.
    pub fn resume(
        out_dir: &Path,
        split: &str,
        options: ShardWriterOptions,
    ) -> Result<Self, ShardError> {
        let mut writer = Self::new_empty(out_dir, split, options)?;
        let journal = writer.journal_path();
        let text = match fs::read_to_string(&journal) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                writer.reset_journal()?;
                return Ok(writer);
            }
            Err(e) => return Err(ShardError::io(&journal, e)),
        };
        let mut lines = text.lines();
        let header_ok = lines
            .next()
            .and_then(|line| serde_json::from_str::<JournalHeader>(line).ok())
            .is_some_and(|header| header == writer.journal_header());
        let mut kept = Vec::new();
        if header_ok {
            for line in lines {
                // A torn last line (killed mid-append) ends the usable journal.
                let Ok(info) = serde_json::from_str::<ShardInfo>(line) else {
                    break;
                };
                if info.file != writer.relative_shard_path(kept.len())
                    || !shard_file_matches(&out_dir.join(&info.file), &info)?
                {
                    break;
                }
                kept.push(info);
            }
        }
        writer.reset_journal()?;
        for info in kept {
            writer.append_journal(&info)?;
            writer.completed.push(info);
        }
        Ok(writer)
    }

    fn new_empty(
        out_dir: &Path,
        split: &str,
        options: ShardWriterOptions,
    ) -> Result<Self, ShardError> {
        if options.rows_per_batch == 0 {
            return Err(ShardError::InvalidRow {
                id: String::new(),
                message: "rows_per_batch must be at least 1".to_string(),
            });
        }
        if split.is_empty() || split.contains(['/', '\\']) || split.starts_with('.') {
            return Err(ShardError::invalid(
                out_dir.join(split),
                format!("invalid split name {split:?}"),
            ));
        }
        let split_dir = out_dir.join(split);
        fs::create_dir_all(&split_dir).map_err(|e| ShardError::io(&split_dir, e))?;
        remove_stale_temp_files(&split_dir, &options.file_prefix)?;
        let schema = shard_schema(options.audio_dtype, &options.vocab_json);
        Ok(ShardWriter {
            split: split.to_string(),
            split_dir,
            batch: BatchBuilder::new(options.audio_dtype),
            options,
            schema,
            current: None,
            completed: Vec::new(),
        })
    }

    fn journal_path(&self) -> PathBuf {
        self.split_dir
            .join(format!(".{}.progress.jsonl", self.options.file_prefix))
    }

    fn journal_header(&self) -> JournalHeader {
        JournalHeader {
            format_version: crate::FORMAT_VERSION,
            options: self.options.clone(),
        }
    }

    fn reset_journal(&mut self) -> Result<(), ShardError> {
        let path = self.journal_path();
        let mut line =
            serde_json::to_string(&self.journal_header()).expect("journal header serializes");
        line.push('\n');
        write_atomically(&path, line.as_bytes())
    }

    fn append_journal(&self, info: &ShardInfo) -> Result<(), ShardError> {
        let path = self.journal_path();
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| ShardError::io(&path, e))?;
        let mut line = serde_json::to_string(info).expect("shard info serializes");
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| ShardError::io(&path, e))
    }

    fn shard_file_name(&self, index: usize) -> String {
        format!("{}-{index:05}.arrow", self.options.file_prefix)
    }

    fn relative_shard_path(&self, index: usize) -> String {
        format!("{}/{}", self.split, self.shard_file_name(index))
    }

    /// Shards completed so far (including those kept by [`resume`](Self::resume)).
    pub fn completed(&self) -> &[ShardInfo] {
        &self.completed
    }

    /// Rows in completed shards.
    pub fn rows_completed(&self) -> u64 {
        self.completed.iter().map(|s| s.rows).sum()
    }

    /// The id of the last row of the last completed shard.
    pub fn last_completed_id(&self) -> Option<&str> {
        self.completed.last().map(|s| s.last_id.as_str())
    }

    /// Appends one row. May close the current shard first (if this row would take it past
    /// the cap) and may write a record batch.
    pub fn write(&mut self, row: RowRef<'_>) -> Result<(), ShardError> {
        self.write_samples(row.into())
    }

    /// Appends one row whose audio may be int16 already (see [`Samples`]): the same
    /// bytes as [`write`](Self::write) with the float samples the int16 ones were
    /// quantized from.
    pub fn write_samples(&mut self, row: SamplesRowRef<'_>) -> Result<(), ShardError> {
        let num_samples = u32::try_from(row.audio.len()).map_err(|_| ShardError::InvalidRow {
            id: row.id.to_string(),
            message: format!("{} samples do not fit a u32", row.audio.len()),
        })?;
        let row_bytes = row_bytes_bound(&row, self.options.audio_dtype);
        if let Some(shard) = &self.current {
            let written = shard.writer.get_ref().bytes;
            let projected =
                written + self.batch.estimated_bytes + BATCH_OVERHEAD_BYTES + row_bytes + EOS_BYTES;
            if projected > self.options.shard_size_bytes {
                self.close_shard()?;
            }
        }
        if self.current.is_none() {
            self.open_shard()?;
        }
        let shard = self.current.as_mut().expect("a shard is open");
        if shard.rows == 0 {
            shard.first_id = row.id.to_string();
        }
        shard.last_id.clear();
        shard.last_id.push_str(row.id);
        shard.rows += 1;
        shard.num_samples += u64::from(num_samples);
        self.batch.push(&row, num_samples, row_bytes);
        if self.batch.rows >= self.options.rows_per_batch {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn open_shard(&mut self) -> Result<(), ShardError> {
        let index = self.completed.len();
        let name = self.shard_file_name(index);
        let final_path = self.split_dir.join(&name);
        let temp_path = self.split_dir.join(format!(".{name}.partial"));
        let file = File::create(&temp_path).map_err(|e| ShardError::io(&temp_path, e))?;
        let sink = HashingFile::new(file);
        let writer = StreamWriter::try_new_with_options(sink, &self.schema, write_options())
            .map_err(|e| ShardError::arrow(&temp_path, e))?;
        self.current = Some(OpenShard {
            index,
            temp_path,
            final_path,
            writer,
            rows: 0,
            num_samples: 0,
            first_id: String::new(),
            last_id: String::new(),
        });
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), ShardError> {
        if self.batch.rows == 0 {
            return Ok(());
        }
        let shard = self
            .current
            .as_mut()
            .expect("rows pending imply an open shard");
        let batch = self
            .batch
            .finish(&self.schema)
            .map_err(|e| ShardError::arrow(&shard.temp_path, e))?;
        shard
            .writer
            .write(&batch)
            .map_err(|e| ShardError::arrow(&shard.temp_path, e))
    }

    fn close_shard(&mut self) -> Result<(), ShardError> {
        self.flush_batch()?;
        let Some(mut shard) = self.current.take() else {
            return Ok(());
        };
        shard
            .writer
            .finish()
            .map_err(|e| ShardError::arrow(&shard.temp_path, e))?;
        let sink = shard
            .writer
            .into_inner()
            .map_err(|e| ShardError::arrow(&shard.temp_path, e))?;
        let HashingFile {
            inner,
            hasher,
            bytes,
            ..
        } = sink;
        let file = inner
            .into_inner()
            .map_err(|e| ShardError::io(&shard.temp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ShardError::io(&shard.temp_path, e))?;
        drop(file);
        fs::rename(&shard.temp_path, &shard.final_path)
            .map_err(|e| ShardError::io(&shard.final_path, e))?;
        sync_dir(&self.split_dir)?;
        let info = ShardInfo {
            file: self.relative_shard_path(shard.index),
            rows: shard.rows,
            num_samples: shard.num_samples,
            seconds: shard.num_samples as f64 / f64::from(SAMPLE_RATE_HZ),
            bytes,
            sha256: hex(&hasher.finalize()),
            first_id: shard.first_id,
            last_id: shard.last_id,
        };
        self.append_journal(&info)?;
        self.completed.push(info);
        Ok(())
    }

    /// Closes the last shard, removes final shards of this prefix left by an earlier run
    /// past the last one written, and returns the split's summary for the manifest.
    pub fn finish(mut self) -> Result<SplitInfo, ShardError> {
        self.close_shard()?;
        remove_shards_from(
            &self.split_dir,
            &self.options.file_prefix,
            self.completed.len(),
        )?;
        Ok(SplitInfo::from_shards(std::mem::take(&mut self.completed)))
    }

    /// The split this writer writes.
    pub fn split(&self) -> &str {
        &self.split
    }
}

fn write_options() -> IpcWriteOptions {
    // 64-byte alignment (arrow's default) keeps every buffer aligned for zero-copy reads
    // from a memory map, in Rust and in pyarrow.
    IpcWriteOptions::default()
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// True when `path` has the size and sha256 recorded in `info`.
fn shard_file_matches(path: &Path, info: &ShardInfo) -> Result<bool, ShardError> {
    match fs::metadata(path) {
        Ok(meta) if meta.len() == info.bytes => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ShardError::io(path, e)),
    }
    Ok(crate::verify::sha256_file(path)? == info.sha256)
}

/// Removes `.<prefix>-*.partial` files left by a killed writer.
fn remove_stale_temp_files(dir: &Path, prefix: &str) -> Result<(), ShardError> {
    let start = format!(".{prefix}-");
    for entry in fs::read_dir(dir).map_err(|e| ShardError::io(dir, e))? {
        let entry = entry.map_err(|e| ShardError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&start) && name.ends_with(".arrow.partial") {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| ShardError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Removes `<prefix>-NNNNN.arrow` with `NNNNN >= first_index`.
fn remove_shards_from(dir: &Path, prefix: &str, first_index: usize) -> Result<(), ShardError> {
    let start = format!("{prefix}-");
    for entry in fs::read_dir(dir).map_err(|e| ShardError::io(dir, e))? {
        let entry = entry.map_err(|e| ShardError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(number) = name
            .strip_prefix(&start)
            .and_then(|rest| rest.strip_suffix(".arrow"))
        else {
            continue;
        };
        if number.len() == 5 && number.bytes().all(|b| b.is_ascii_digit()) {
            let index: usize = number.parse().unwrap_or(0);
            if index >= first_index {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| ShardError::io(&path, e))?;
            }
        }
    }
    Ok(())
}

/// fsyncs a folder so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ShardError> {
    match File::open(dir) {
        Ok(handle) => handle.sync_all().map_err(|e| ShardError::io(dir, e)),
        Err(e) => Err(ShardError::io(dir, e)),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsync and rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ShardError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.partial"));
    let mut file = File::create(&temp).map_err(|e| ShardError::io(&temp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ShardError::io(&temp, e))?;
    drop(file);
    fs::rename(&temp, path).map_err(|e| ShardError::io(path, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::quantize_i16;

    #[test]
    fn quantize_matches_round_half_even_and_clamps() {
        let mut x = -1.2f32;
        while x < 1.2 {
            let want = (x * 32_768.0).round_ties_even().clamp(-32_768.0, 32_767.0) as i16;
            assert_eq!(quantize_i16(x), want, "{x}");
            x += 0.000_013_7;
        }
        for (x, want) in [
            (0.5 / 32_768.0, 0),
            (1.5 / 32_768.0, 2),
            (2.5 / 32_768.0, 2),
            (-0.5 / 32_768.0, 0),
            (-1.5 / 32_768.0, -2),
            (1.0, 32_767),
            (-1.0, -32_768),
            (7.0, 32_767),
            (f32::INFINITY, 32_767),
            (f32::NEG_INFINITY, -32_768),
            (f32::NAN, 0),
        ] {
            assert_eq!(quantize_i16(x), want, "{x}");
        }
    }
}
