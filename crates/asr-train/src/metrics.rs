//! `metrics.jsonl`: one JSON object per line, told apart by `kind`
//! (schema: `schemas/train-metrics.schema.json`).
//!
//! - `step`: one per optimizer step: `loss`, `lr`, `grad_norm`, throughput
//!   (`audio_s_per_s`), time spent waiting for data, and the names of the step's events;
//! - `event`: one per guard event (`event` name, `step`, the values involved, the `ids`
//!   of the batch and, for loss events, the `culprits` whose own loss was bad);
//! - `eval`: one per evaluation (`split`, `wer`, `cer`, `blank_fraction`, ...).
//!
//! JSON has no NaN or infinity: such values are written as the strings `"NaN"`,
//! `"inf"` and `"-inf"`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::guard::GuardEvent;
use crate::tensorboard::EventWriter;

/// Serde helpers for `f64` values that may be NaN or infinite.
pub mod float {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write a finite number as a number, anything else as a string.
    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            s.serialize_f64(*value)
        } else if value.is_nan() {
            s.serialize_str("NaN")
        } else if *value > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    /// Read what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"NaN\", \"inf\" or \"-inf\", got {other:?}"
                ))),
            },
        }
    }

    /// The same for optional values.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Write `None` as null, a value as [`super::serialize`] does.
        pub fn serialize<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        /// Read what [`serialize`] wrote.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] f64);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done, this one included (1-based).
    pub step: u64,
    /// Epochs done, fractional.
    pub epoch: f64,
    /// Mean training loss of the step's batches that were not skipped (per the model's
    /// `ctc_loss_reduction`), or null when all were skipped.
    #[serde(with = "float::option")]
    pub loss: Option<f64>,
    /// Learning rate used (schedule x guard scale); 0 when the update was skipped.
    pub lr: f64,
    /// Global gradient norm before clipping, null when no backward happened.
    #[serde(with = "float::option")]
    pub grad_norm: Option<f64>,
    /// Whether the update was applied.
    pub updated: bool,
    /// Whether the gradients were clipped.
    pub clipped: bool,
    /// Learning-rate scale of the explosion guard.
    pub lr_scale: f64,
    /// Utterances in the step.
    pub utterances: u64,
    /// Audio in the step (seconds, unpadded).
    pub audio_s: f64,
    /// Audio seconds per wall-clock second over this step.
    pub audio_s_per_s: f64,
    /// Wall-clock time of the step (seconds).
    pub step_time_s: f64,
    /// Part of it spent waiting for the data loader (seconds).
    pub data_wait_s: f64,
    /// Seconds of the step spent in collectives (gradient all-reduce, step totals);
    /// absent in one-process runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_s: Option<f64>,
    /// Loss scale of fp16 dynamic loss scaling, when used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// Names of the events of this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Wall-clock seconds of training when the step ended: since the run started,
    /// evaluations included, continued across `--resume` (a learning curve's x axis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
}

/// One guard event with its context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The optimizer step it happened in (1-based).
    pub step: u64,
    /// The event and its values (`event` names it).
    #[serde(flatten)]
    pub event: GuardEvent,
    /// Utterance ids of the batch involved.
    pub ids: Vec<String>,
    /// For loss events: the utterances whose own loss was non-finite or too high.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub culprits: Vec<String>,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimizer steps done when evaluating.
    pub step: u64,
    /// Epochs done, fractional.
    pub epoch: f64,
    /// The split evaluated.
    pub split: String,
    /// Word error rate (fraction).
    pub wer: f64,
    /// Character error rate (fraction).
    pub cer: f64,
    /// Mean loss over the split.
    #[serde(with = "float::option")]
    pub loss: Option<f64>,
    /// Utterances evaluated.
    pub utterances: u64,
    /// Fraction of utterances decoded to an empty string.
    pub blank_fraction: f64,
    /// Whether this is the best evaluation so far.
    pub best: bool,
    /// Seconds the evaluation took.
    pub eval_time_s: f64,
    /// Wall-clock seconds of training when the evaluation ended (see
    /// [`StepRecord::elapsed_s`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// An optimizer step.
    Step(StepRecord),
    /// A guard event.
    Event(EventRecord),
    /// An evaluation.
    Eval(EvalRecord),
}

impl MetricsRecord {
    /// The optimizer step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            MetricsRecord::Step(r) => r.step,
            MetricsRecord::Event(r) => r.step,
            MetricsRecord::Eval(r) => r.step,
        }
    }
}

/// Writing or reading `metrics.jsonl` failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a metrics record.
    #[error("{path}:{line}: not a metrics record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// Appends records to `metrics.jsonl`, flushing after every step so that a crash
/// loses nothing and `tail -f` works.
pub struct MetricsWriter {
    path: PathBuf,
    /// `None`: a writer that keeps nothing (ranks other than 0 of a data-parallel run).
    out: Option<BufWriter<File>>,
    /// TensorBoard event files that receive the same records.
    tensorboard: Option<EventWriter>,
}

impl MetricsWriter {
    /// Create the file, or on resume keep the records of steps up to `keep_until_step`
    /// and drop later ones (they will be written again).
    pub fn open(path: &Path, keep_until_step: Option<u64>) -> Result<Self, MetricsError> {
        let io = |source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let kept = match keep_until_step {
            Some(step) if path.exists() => read_metrics(path)?
                .into_iter()
                .filter(|r| r.step() <= step)
                .collect(),
            _ => Vec::new(),
        };
        let file = File::create(path).map_err(io)?;
        let mut writer = MetricsWriter {
            path: path.to_path_buf(),
            out: Some(BufWriter::new(file)),
            tensorboard: None,
        };
        for record in &kept {
            writer.write(record)?;
        }
        writer.flush()?;
        Ok(writer)
    }

    /// Send every record written from now on to TensorBoard event files too.
    pub fn attach_tensorboard(&mut self, writer: EventWriter) {
        self.tensorboard = Some(writer);
    }

    /// A writer that writes nothing: the records of a rank that is not rank 0.
    pub fn discard() -> Self {
        MetricsWriter {
            path: PathBuf::new(),
            out: None,
            tensorboard: None,
        }
    }

    /// Append one record.
    pub fn write(&mut self, record: &MetricsRecord) -> Result<(), MetricsError> {
        if let Some(tb) = &mut self.tensorboard {
            tb.write(record).map_err(|source| MetricsError::Io {
                path: tb.path().to_path_buf(),
                source,
            })?;
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let line = serde_json::to_string(record).map_err(|e| MetricsError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        writeln!(out, "{line}").map_err(|source| MetricsError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flush to disk.
    pub fn flush(&mut self) -> Result<(), MetricsError> {
        if let Some(tb) = &mut self.tensorboard {
            tb.flush().map_err(|source| MetricsError::Io {
                path: tb.path().to_path_buf(),
                source,
            })?;
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        out.flush().map_err(|source| MetricsError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Read every record of a `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRecord>, MetricsError> {
    let file = File::open(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| MetricsError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Counts how often each utterance was involved in guard events; the ids at or above
/// the threshold go to `quarantine.txt` (one id per line, sorted), ready for
/// `asr-data pack --exclude`.
///
/// An utterance is counted once per event it is implicated in: as a culprit when its
/// own loss was bad (then the rest of the batch is not counted), else as a member of
/// the batch. Batches are reshuffled every epoch, so an innocent neighbour rarely
/// shares several events with a bad utterance.
///
/// Culprit counts are also kept apart: an utterance named culprit in at least the
/// threshold's number of events is left out of the rest of the run
/// ([`Quarantine::is_left_out`]): that is evidence against the utterance itself,
/// whereas a batch member of a gradient event may be innocent (in a corpus of one
/// batch, every utterance shares every event). Both counts are in checkpoints, so
/// `--resume` leaves out the same utterances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    counts: BTreeMap<String, u32>,
    /// Events in which each utterance was named culprit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    culprits: BTreeMap<String, u32>,
}

impl Quarantine {
    /// Count the utterances an event implicates.
    pub fn record(&mut self, record: &EventRecord) {
        if !record.event.implicates_batch() {
            return;
        }
        let ids = if record.culprits.is_empty() {
            &record.ids
        } else {
            &record.culprits
        };
        for id in ids {
            *self.counts.entry(id.clone()).or_default() += 1;
        }
        for id in &record.culprits {
            *self.culprits.entry(id.clone()).or_default() += 1;
        }
    }

    /// Whether the utterance was named culprit in at least `threshold` events (at
    /// least one), and so is left out of the rest of the run.
    pub fn is_left_out(&self, id: &str, threshold: u32) -> bool {
        self.culprits
            .get(id)
            .is_some_and(|&n| n >= threshold.max(1))
    }

    /// The utterances left out of the run ([`Quarantine::is_left_out`]), sorted.
    pub fn left_out(&self, threshold: u32) -> Vec<&str> {
        self.culprits
            .keys()
            .filter(|id| self.is_left_out(id, threshold))
            .map(String::as_str)
            .collect()
    }

    /// Ids involved in at least `threshold` events, sorted.
    pub fn ids(&self, threshold: u32) -> Vec<&str> {
        self.counts
            .iter()
            .filter(|(_, &n)| n >= threshold)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Event count of an id.
    pub fn count(&self, id: &str) -> u32 {
        self.counts.get(id).copied().unwrap_or(0)
    }

    /// Write `quarantine.txt` (written even when empty, so its absence never means
    /// "not checked").
    pub fn write(&self, path: &Path, threshold: u32) -> std::io::Result<()> {
        let mut text = String::new();
        for id in self.ids(threshold) {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(path, text)
    }
}

/// A step record for tests: an update of 4 utterances with the given step, epoch, loss
/// and gradient norm, everything else fixed.
#[cfg(test)]
pub(crate) fn test_step(
    step: u64,
    epoch: f64,
    loss: Option<f64>,
    grad_norm: Option<f64>,
) -> MetricsRecord {
    MetricsRecord::Step(StepRecord {
        step,
        epoch,
        loss,
        lr: 1e-4,
        grad_norm,
        updated: true,
        clipped: false,
        lr_scale: 1.0,
        utterances: 4,
        audio_s: 10.0,
        audio_s_per_s: 100.0,
        step_time_s: 0.1,
        data_wait_s: 0.0,
        comm_s: None,
        loss_scale: None,
        events: vec![],
        elapsed_s: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, loss: Option<f64>) -> MetricsRecord {
        test_step(step, 0.5, loss, Some(f64::INFINITY))
    }

    #[test]
    fn records_round_trip_with_non_finite_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let event = MetricsRecord::Event(EventRecord {
            step: 2,
            event: GuardEvent::NonfiniteLoss {
                loss: f64::INFINITY,
            },
            ids: vec!["a".into(), "b".into()],
            culprits: vec!["b".into()],
        });
        {
            let mut w = MetricsWriter::open(&path, None).unwrap();
            w.write(&step(1, Some(2.5))).unwrap();
            w.write(&event).unwrap();
            w.write(&step(2, None)).unwrap();
            w.flush().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(r#""kind":"step""#) && lines[0].contains(r#""grad_norm":"inf""#));
        assert!(
            lines[1].contains(r#""event":"nonfinite_loss""#)
                && lines[1].contains(r#""loss":"inf""#)
                && lines[1].contains(r#""ids":["a","b"]"#),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(r#""loss":null"#));
        let back = read_metrics(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], step(1, Some(2.5)));
        // Resume at step 1 drops what came after it.
        drop(MetricsWriter::open(&path, Some(1)).unwrap());
        assert_eq!(read_metrics(&path).unwrap(), vec![step(1, Some(2.5))]);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"kind\":\"nope\"}\n").unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1"), "{err}");
    }

    #[test]
    fn quarantine_counts_culprits_or_batches() {
        let mut q = Quarantine::default();
        let event = |ids: &[&str], culprits: &[&str]| EventRecord {
            step: 1,
            event: GuardEvent::NonfiniteLoss { loss: f64::NAN },
            ids: ids.iter().map(|s| s.to_string()).collect(),
            culprits: culprits.iter().map(|s| s.to_string()).collect(),
        };
        q.record(&event(&["a", "bad"], &["bad"]));
        q.record(&event(&["c", "bad"], &["bad"]));
        q.record(&event(&["a", "d"], &[]));
        q.record(&EventRecord {
            event: GuardEvent::Recovery { lr_scale: 1.0 },
            ..event(&["a"], &[])
        });
        assert_eq!(q.ids(2), vec!["bad"]);
        assert_eq!(q.count("a"), 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.txt");
        q.write(&path, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bad\n");
        // Only culprits are left out of the run: "a" is now in two events too, but as
        // a member of the batch.
        q.record(&event(&["a", "e"], &[]));
        assert_eq!(q.ids(2), vec!["a", "bad"]);
        assert_eq!(q.left_out(2), vec!["bad"]);
        assert!(q.is_left_out("bad", 2) && !q.is_left_out("bad", 3));
        assert!(!q.is_left_out("a", 1));
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Quarantine>(&json).unwrap(), q);
        // Checkpoints written before culprits were counted apart still load.
        let old: Quarantine = serde_json::from_str(r#"{"counts":{"x":3}}"#).unwrap();
        assert_eq!((old.count("x"), old.left_out(1).len()), (3, 0));
    }
}
