//! TensorBoard event files in `RUN/runs/` (`tensorboard --logdir RUN/runs`), written
//! beside `metrics.jsonl` from the same records, under the names of transformers'
//! `Trainer`:
//!
//! - per optimizer step: `train/loss`, `train/learning_rate`, `train/grad_norm`,
//!   `train/epoch`, and ours: `train/audio_s_per_s`, `train/data_wait_s`, `train/comm_s`,
//!   `train/lr_scale` (the explosion guard's scale), `train/loss_scale` (fp16);
//! - per evaluation of the run's `--eval-split` (one split, named in the `config`
//!   text): `eval/loss`, `eval/wer`, `eval/cer`, `eval/blank_fraction`;
//! - per guard event: `events/<name>` (`events/nonfinite_loss`, `events/explosion`,
//!   ...), the number of such events in the run so far, one point per step with events;
//! - the resolved configuration as a text summary `config` (the text plugin), at the
//!   step each session started from.
//!
//! The format is TensorFlow's: a file of TFRecords (little-endian u64 length, masked
//! CRC-32C of the length, the bytes, masked CRC-32C of the bytes), each an `Event`
//! protocol buffer; the first says `brain.Event:2`. The few messages needed are encoded
//! here by hand (no protobuf compiler or crate).
//!
//! `--resume` continues from a checkpoint at step N while the files may hold later
//! steps of the interrupted session. Those are dropped: the files are rewritten into
//! one new file that keeps the events up to step N (their wall times included), so
//! every tag has one value per step. The new session also starts with a
//! `SessionLog.START` at step N + 1, which tells TensorBoard readers to drop any later
//! steps they still hold from before (its `purge_orphaned_data`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics::{MetricsRecord, StepRecord};

/// The folder of the event files in a run folder.
pub const RUNS_DIR: &str = "runs";

/// Part of an event file's name (TensorBoard reads files whose name has it).
const FILE_MARK: &str = "tfevents";

/// Writes a run's scalars into an event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Events of the current step not yet written: name -> (step, total so far).
    pending: BTreeMap<String, (u64, u64)>,
    /// Events per name since the run started (continued on resume).
    totals: BTreeMap<String, u64>,
}

impl EventWriter {
    /// Open `dir/events.out.tfevents.*` for a run that has done `start_step` steps:
    /// the events of earlier files up to that step are kept (all dropped when it is
    /// 0), the earlier files removed, and `config_text` written. `kept` are the
    /// metrics records kept up to that step (they continue the event counts).
    pub fn open(
        dir: &Path,
        start_step: u64,
        config_text: &str,
        kept: &[MetricsRecord],
    ) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let old = event_files(dir)?;
        let path = new_file_path(dir, &old);
        let mut writer = EventWriter {
            out: BufWriter::new(File::create(&path)?),
            path,
            pending: BTreeMap::new(),
            totals: BTreeMap::new(),
        };
        writer.record(&event(0, |e| put_string(e, 3, b"brain.Event:2")))?;
        if start_step > 0 {
            for file in &old {
                for record in read_records(file)? {
                    // The old header is not repeated; the rest up to the checkpoint is.
                    let info = decode_event(&record);
                    if info
                        .is_some_and(|(step, fields)| step <= start_step && fields & (1 << 3) == 0)
                    {
                        writer.record(&record)?;
                    }
                }
            }
        }
        writer.record(&event(start_step + 1, |e| {
            put_message(e, 7, &{
                let mut log = Vec::new();
                put_varint_field(&mut log, 1, 1); // SessionLog.START
                log
            })
        }))?;
        writer.write_text(start_step, "config", config_text)?;
        for record in kept {
            if let MetricsRecord::Event(e) = record {
                *writer.totals.entry(e.event.name().to_string()).or_default() += 1;
            }
        }
        writer.out.flush()?;
        for file in old {
            std::fs::remove_file(file)?;
        }
        Ok(writer)
    }

    /// The event file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add a metrics record's values.
    pub fn write(&mut self, record: &MetricsRecord) -> std::io::Result<()> {
        if self.pending.values().any(|(s, _)| *s != record.step()) {
            self.write_pending()?;
        }
        match record {
            MetricsRecord::Event(e) => {
                let name = e.event.name().to_string();
                let total = self.totals.entry(name.clone()).or_default();
                *total += 1;
                self.pending.insert(name, (e.step, *total));
                Ok(())
            }
            _ => self.write_scalars(record.step(), &scalars(record)),
        }
    }

    /// Write what is pending and flush the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let mut by_step: BTreeMap<u64, Vec<(String, f64)>> = BTreeMap::new();
        for (name, (step, total)) in pending {
            by_step
                .entry(step)
                .or_default()
                .push((format!("events/{name}"), total as f64));
        }
        for (step, values) in by_step {
            self.write_scalars(step, &values)?;
        }
        Ok(())
    }

    fn write_scalars(&mut self, step: u64, values: &[(String, f64)]) -> std::io::Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut v = Vec::new();
            put_string(&mut v, 1, tag.as_bytes());
            put_key(&mut v, 2, 5);
            v.extend_from_slice(&(*value as f32).to_le_bytes());
            put_message(&mut summary, 1, &v);
        }
        self.record(&event(step, |e| put_message(e, 5, &summary)))
    }

    /// A text summary (TensorBoard's text plugin renders it as Markdown).
    fn write_text(&mut self, step: u64, tag: &str, text: &str) -> std::io::Result<()> {
        let mut plugin = Vec::new();
        put_string(&mut plugin, 1, b"text");
        let mut metadata = Vec::new();
        put_message(&mut metadata, 1, &plugin);
        let mut dim = Vec::new();
        put_varint_field(&mut dim, 1, 1);
        let mut shape = Vec::new();
        put_message(&mut shape, 2, &dim);
        let mut tensor = Vec::new();
        put_varint_field(&mut tensor, 1, 7); // DT_STRING
        put_message(&mut tensor, 2, &shape);
        put_string(&mut tensor, 8, text.as_bytes());
        let mut value = Vec::new();
        put_string(&mut value, 1, tag.as_bytes());
        put_message(&mut value, 8, &tensor);
        put_message(&mut value, 9, &metadata);
        let mut summary = Vec::new();
        put_message(&mut summary, 1, &value);
        self.record(&event(step, |e| put_message(e, 5, &summary)))
    }

    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())
    }
}

/// The scalars of a step or evaluation record, with their tags.
pub fn scalars(record: &MetricsRecord) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut put = |tag: &str, value: Option<f64>| {
        if let Some(v) = value {
            out.push((tag.to_string(), v));
        }
    };
    match record {
        MetricsRecord::Step(s) => step_scalars(s, &mut put),
        MetricsRecord::Eval(e) => {
            put("eval/loss", e.loss);
            put("eval/wer", Some(e.wer));
            put("eval/cer", Some(e.cer));
            put("eval/blank_fraction", Some(e.blank_fraction));
        }
        MetricsRecord::Event(_) => {}
    }
    out
}

fn step_scalars(s: &StepRecord, put: &mut impl FnMut(&str, Option<f64>)) {
    put("train/loss", s.loss);
    put("train/learning_rate", Some(s.lr));
    put("train/grad_norm", s.grad_norm);
    put("train/epoch", Some(s.epoch));
    put("train/audio_s_per_s", Some(s.audio_s_per_s));
    put("train/data_wait_s", Some(s.data_wait_s));
    put("train/comm_s", s.comm_s);
    put("train/lr_scale", Some(s.lr_scale));
    put("train/loss_scale", s.loss_scale);
}

/// The event files of a folder, by name.
fn event_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("events.out.") && name.contains(FILE_MARK) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `events.out.tfevents.<unix seconds>.<host>.<pid>.<n>`, TensorFlow's naming (the
/// time sorts sessions), with `n` making it new.
fn new_file_path(dir: &Path, old: &[PathBuf]) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(['/', '\\']))
        .unwrap_or_else(|| "localhost".into());
    (0..)
        .map(|n| {
            dir.join(format!(
                "events.out.{FILE_MARK}.{secs:010}.{host}.{}.{n}",
                std::process::id()
            ))
        })
        .find(|p| !p.exists() && !old.contains(p))
        .expect("an unused name")
}

/// The records of an event file, up to the first damaged or incomplete one (a session
/// that was killed mid-write).
pub fn read_records(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path)?;
    let mut records = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 12 {
        let (len_bytes, tail) = rest.split_at(8);
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let len_crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        if len_crc != masked_crc32c(len_bytes) || len > (tail.len() as u64).saturating_sub(8) {
            break;
        }
        let len = len as usize;
        let data = &tail[4..4 + len];
        let crc = u32::from_le_bytes(tail[4 + len..8 + len].try_into().expect("4 bytes"));
        if crc != masked_crc32c(data) {
            break;
        }
        records.push(data.to_vec());
        rest = &tail[8 + len..];
    }
    Ok(records)
}

/// A field of a protocol-buffer message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of an encoded message, in order; `None` when it does not decode.
fn fields(message: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut rest = message;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let key = read_varint(&mut rest)?;
        let field = match key & 7 {
            0 => Field::Varint(read_varint(&mut rest)?),
            1 => {
                let (b, tail) = rest.split_at_checked(8)?;
                rest = tail;
                Field::Fixed64(u64::from_le_bytes(b.try_into().ok()?))
            }
            2 => {
                let len = usize::try_from(read_varint(&mut rest)?).ok()?;
                let (b, tail) = rest.split_at_checked(len)?;
                rest = tail;
                Field::Bytes(b)
            }
            5 => {
                let (b, tail) = rest.split_at_checked(4)?;
                rest = tail;
                Field::Fixed32(u32::from_le_bytes(b.try_into().ok()?))
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

/// The `step` of an encoded `Event` (field 2, 0 when absent) and the set of its
/// fields below 64 (bit n for field n); `None` when it does not decode.
pub fn decode_event(event: &[u8]) -> Option<(u64, u64)> {
    let mut step = 0;
    let mut set = 0u64;
    for (number, field) in fields(event)? {
        set |= 1u64.checked_shl(number as u32).unwrap_or(0);
        if let (2, Field::Varint(v)) = (number, field) {
            step = v;
        }
    }
    Some((step, set))
}

/// The scalars of an event file: (step, tag, value), in file order.
pub fn read_scalars(path: &Path) -> std::io::Result<Vec<(u64, String, f32)>> {
    let mut out = Vec::new();
    for record in read_records(path)? {
        let event = fields(&record).unwrap_or_default();
        let step = event.iter().find_map(|f| match f {
            (2, Field::Varint(v)) => Some(*v),
            _ => None,
        });
        for (number, field) in &event {
            let (5, Field::Bytes(summary)) = (number, field) else {
                continue;
            };
            for (_, value) in fields(summary).unwrap_or_default() {
                let Field::Bytes(value) = value else { continue };
                let value = fields(value).unwrap_or_default();
                let tag = value.iter().find_map(|f| match f {
                    (1, Field::Bytes(t)) => Some(String::from_utf8_lossy(t).into_owned()),
                    _ => None,
                });
                let simple = value.iter().find_map(|f| match f {
                    (2, Field::Fixed32(v)) => Some(f32::from_bits(*v)),
                    _ => None,
                });
                if let (Some(tag), Some(v)) = (tag, simple) {
                    out.push((step.unwrap_or(0), tag, v));
                }
            }
        }
    }
    Ok(out)
}

/// The event files of a run's `runs/` folder, by name.
pub fn run_event_files(run: &Path) -> std::io::Result<Vec<PathBuf>> {
    event_files(&run.join(RUNS_DIR))
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

/// An `Event` at `step` with the current wall time; `what` adds its payload.
fn event(step: u64, what: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut e = Vec::new();
    put_key(&mut e, 1, 1);
    e.extend_from_slice(&wall.to_le_bytes());
    put_varint_field(&mut e, 2, step);
    what(&mut e);
    e
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, field << 3 | wire);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_string(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_message(out: &mut Vec<u8>, field: u64, message: &[u8]) {
    put_string(out, field, message);
}

/// CRC-32C (Castagnoli), as TFRecord uses.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::GuardEvent;
    use crate::metrics::{EvalRecord, EventRecord};

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    fn step(step: u64, loss: f64) -> MetricsRecord {
        crate::metrics::test_step(step, step as f64 / 4.0, Some(loss), Some(3.0))
    }

    fn nonfinite(step: u64) -> MetricsRecord {
        MetricsRecord::Event(EventRecord {
            step,
            event: GuardEvent::NonfiniteLoss { loss: f64::NAN },
            ids: vec!["a".into()],
            culprits: vec![],
        })
    }

    /// (step, tags) of the summaries of a folder's event files.
    fn steps_of(dir: &Path) -> Vec<u64> {
        let mut steps = Vec::new();
        for file in event_files(dir).unwrap() {
            for r in read_records(&file).unwrap() {
                steps.push(decode_event(&r).unwrap().0);
            }
        }
        steps
    }

    #[test]
    fn resume_keeps_the_steps_up_to_the_checkpoint_once() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join(RUNS_DIR);
        let mut w = EventWriter::open(&runs, 0, "cfg", &[]).unwrap();
        for s in 1..=5 {
            w.write(&step(s, 10.0 / s as f64)).unwrap();
        }
        w.write(&nonfinite(3)).unwrap();
        w.write(&nonfinite(3)).unwrap();
        w.flush().unwrap();
        drop(w);
        // header, SessionLog at 1, config at 0, 5 steps, the events of step 3 (their
        // pending values were written at the flush)
        assert_eq!(steps_of(&runs), vec![0, 1, 0, 1, 2, 3, 4, 5, 3]);
        // Resumed from a checkpoint at step 3: steps 4 and 5 are gone, the rest kept.
        let kept = vec![step(1, 1.0), nonfinite(3), nonfinite(3)];
        let mut w = EventWriter::open(&runs, 3, "cfg", &kept).unwrap();
        w.write(&step(4, 2.0)).unwrap();
        w.write(&nonfinite(4)).unwrap();
        w.write(&MetricsRecord::Eval(EvalRecord {
            step: 4,
            epoch: 1.0,
            split: "dev".into(),
            wer: 0.5,
            cer: 0.25,
            loss: None,
            utterances: 2,
            blank_fraction: 0.0,
            best: true,
            eval_time_s: 0.1,
            elapsed_s: None,
        }))
        .unwrap();
        w.flush().unwrap();
        assert_eq!(event_files(&runs).unwrap(), vec![w.path().to_path_buf()]);
        assert_eq!(steps_of(&runs), vec![0, 1, 0, 1, 2, 3, 3, 4, 3, 4, 4, 4]);
        // The event count goes on from the two events kept.
        assert_eq!(
            scalar_values(&runs, "events/nonfinite_loss"),
            vec![2.0, 3.0]
        );
        assert_eq!(
            scalar_values(&runs, "train/loss"),
            vec![10.0, 5.0, f64::from((10.0f64 / 3.0) as f32), 2.0]
        );
    }

    /// The values of a scalar tag, in file order.
    fn scalar_values(dir: &Path, tag: &str) -> Vec<f64> {
        let mut values = Vec::new();
        for file in event_files(dir).unwrap() {
            for (_, t, v) in read_scalars(&file).unwrap() {
                if t == tag {
                    values.push(f64::from(v));
                }
            }
        }
        values
    }

    #[test]
    fn a_truncated_file_reads_up_to_its_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open(dir.path(), 0, "cfg", &[]).unwrap();
        w.write(&step(1, 1.0)).unwrap();
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        let whole = read_records(&path).unwrap().len();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(read_records(&path).unwrap().len(), whole - 1);
    }

    #[test]
    fn scalars_use_the_trainer_names() {
        let tags: Vec<String> = scalars(&step(1, 2.0)).into_iter().map(|t| t.0).collect();
        for tag in ["train/loss", "train/learning_rate", "train/grad_norm"] {
            assert!(tags.iter().any(|t| t == tag), "{tags:?}");
        }
    }
}
