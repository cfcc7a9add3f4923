//! The pack pipeline: plan (validate, filter, split, encode), then decode in parallel with
//! an ordered, memory-bounded writer.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use asr_audio::decode::{downmix_to_mono_into, DecodedAudio, DecodedPcm16};
use asr_audio::resample::TARGET_SAMPLE_RATE_HZ;
use asr_audio::{DecodeError, ProbeError};
use asr_corpus::{SplitRole, Utterance};
use asr_shards::{
    part_tag, quantize_i16_into, AudioDtype, Manifest, NormalizationInfo, Samples, SamplesRowRef,
    ShardWriter, ShardWriterOptions, SKIPPED_FILE,
};
use asr_text::{CaseFold, EncodeError, LetterCase, UnkPolicy, Vocab};
use asr_validate::{Code, Severity, ValidateOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::{assign, data_vocab, in_part};
use crate::resume::{self, RowInputs};
use crate::{
    NormalizedRow, PackError, PackOptions, PackSummary, PackTimings, Progress, SkippedRow,
    UnknownCharRow,
};

/// A row that will be decoded and written.
struct Candidate<'a> {
    /// Position in the corpus (orders `skipped.jsonl`).
    order: usize,
    utterance: &'a Utterance,
    split: String,
    text: String,
    labels: Vec<i32>,
}

/// A decoded, resampled row ready for the writer, in the shards' sample type (int16 is
/// quantized on the decoding threads, so the writer only copies it).
struct Decoded {
    audio: Audio,
    source_s: f64,
}

/// 16 kHz mono samples of one row.
enum Audio {
    F32(Vec<f32>),
    I16(Vec<i16>),
}

impl Audio {
    fn len(&self) -> usize {
        match self {
            Audio::F32(x) => x.len(),
            Audio::I16(x) => x.len(),
        }
    }

    fn as_samples(&self) -> Samples<'_> {
        match self {
            Audio::F32(x) => Samples::F32(x),
            Audio::I16(x) => Samples::I16(x),
        }
    }
}

/// Files up to this size are read whole and decoded from memory; larger ones are
/// streamed from disk so a long recording does not sit in memory twice.
const MAX_IN_MEMORY_FILE_BYTES: u64 = 64 << 20;

/// A reused buffer is dropped after a file that grew it past this many bytes, so one long
/// recording does not pin its memory for the rest of the run.
const MAX_KEPT_BUFFER_BYTES: usize = 64 << 20;

/// The buffers of one decoding thread, reused from file to file: no allocation per file
/// beyond the row handed to the writer.
#[derive(Default)]
struct DecodeBuffers {
    bytes: Vec<u8>,
    decoded: DecodedAudio,
    pcm16: DecodedPcm16,
    mono: Vec<f32>,
    resampled: Vec<f32>,
}

impl DecodeBuffers {
    fn trim(&mut self) {
        fn trim<T>(v: &mut Vec<T>) {
            if v.capacity() * std::mem::size_of::<T>() > MAX_KEPT_BUFFER_BYTES {
                *v = Vec::new();
            }
        }
        trim(&mut self.bytes);
        trim(&mut self.decoded.samples);
        trim(&mut self.pcm16.samples);
        trim(&mut self.mono);
        trim(&mut self.resampled);
    }
}

thread_local! {
    static BUFFERS: RefCell<DecodeBuffers> = RefCell::new(DecodeBuffers::default());
}

/// One line of the decode-skip journal.
#[derive(Serialize, Deserialize)]
struct DecodeSkip {
    id: String,
    code: String,
    message: String,
}

pub(crate) fn run(
    corpus: &asr_corpus::Corpus,
    options: &PackOptions,
    progress: &dyn Progress,
) -> Result<PackSummary, PackError> {
    let start = Instant::now();
    check_options(options)?;
    let part = options.part;
    resume::refuse_finished(&options.out_dir, part, options.overwrite)?;
    let selected: Vec<(usize, &Utterance)> = corpus
        .utterances
        .iter()
        .enumerate()
        .filter(|(_, u)| part.is_none_or(|p| in_part(&u.id, p.index, p.count)))
        .collect();
    progress.start(selected.len() as u64);

    let report = validate_for_pack(corpus, options)?;
    let Filtered {
        mut skipped,
        kept,
        vocab,
    } = filter_and_split(corpus, &selected, &report, options);
    let Encoded {
        vocab,
        candidates,
        unknown_chars,
        normalized,
    } = encode_transcripts(kept, vocab, options, &mut skipped)?;
    for _ in 0..skipped.len() {
        progress.row_done(0.0);
    }
    let rejects = reader_rejects(corpus, options);
    let rows_in = (selected.len() + rejects.len()) as u64;
    skipped.extend(rejects);
    if candidates.is_empty() {
        skipped.sort_by_key(|(order, _)| *order);
        return Err(PackError::NothingToPack {
            total: rows_in as usize,
            skipped: skipped.into_iter().map(|(_, s)| s).collect(),
        });
    }

    let mut opened = open_writers(&vocab, &candidates, options, &mut skipped, progress)?;
    let mut timings = PackTimings {
        plan_s: start.elapsed().as_secs_f64(),
        ..PackTimings::default()
    };
    let written = decode_and_write(
        &candidates,
        &mut opened,
        options,
        &mut skipped,
        &mut timings,
        progress,
    )?;
    let finish_start = Instant::now();
    let lists = TextLists {
        unknown_chars,
        normalized,
    };
    let (manifest, skipped, lists) =
        finish_outputs(opened.writers, &vocab, options, skipped, lists)?;
    timings.finish_s = finish_start.elapsed().as_secs_f64();
    Ok(PackSummary {
        manifest,
        skipped,
        unknown_chars: lists.unknown_chars,
        normalized: lists.normalized.into_iter().map(|(_, row)| row).collect(),
        rows_in,
        resumed_rows: opened.resumed_rows,
        replaced_finished: opened.replaced_finished,
        decoded_rows: written.rows,
        decoded_audio_s: written.audio_s,
        wall_s: start.elapsed().as_secs_f64(),
        timings,
    })
}

/// Phase 1: the header-only validation whose error findings keep rows out.
fn validate_for_pack(
    corpus: &asr_corpus::Corpus,
    options: &PackOptions,
) -> Result<asr_validate::Report, PackError> {
    let validate_options = ValidateOptions {
        min_duration_s: options.min_duration_s.max(0.0),
        max_duration_s: if options.max_duration_s.is_finite() {
            options.max_duration_s
        } else {
            f64::MAX
        },
        normalize: options.normalize.policy(None),
        ..ValidateOptions::default()
    };
    let (report, _) = asr_validate::validate(corpus, &validate_options, &|_| {})?;
    Ok(report)
}

/// Rows left out, each with its position in the corpus (orders `skipped.jsonl`).
type Skipped = Vec<(usize, SkippedRow)>;

/// The `skipped.jsonl` line of utterance `u`, left out with `code`.
fn skipped_row(u: &Utterance, code: &str, message: String) -> SkippedRow {
    SkippedRow {
        id: u.id.clone(),
        code: code.to_string(),
        message,
        source: u.source.clone(),
        file: Some(u.origin.file.display().to_string()),
        line: (u.origin.line > 0).then_some(u.origin.line),
    }
}

/// The outcome of phase 2: rows left out, and rows kept with their split name.
struct Filtered<'a> {
    skipped: Skipped,
    kept: Vec<(usize, &'a Utterance, String)>,
    vocab: Vocab,
}

/// Phase 2: leave out rows with an error finding, `--exclude`d rows, rows too short or
/// too long for the limits given, and rows outside the dataset's splits; give the others
/// their split.
fn filter_and_split<'a>(
    corpus: &asr_corpus::Corpus,
    selected: &[(usize, &'a Utterance)],
    report: &asr_validate::Report,
    options: &PackOptions,
) -> Filtered<'a> {
    // Findings about rows the reader lost (a duplicate id's later row, an unreadable line
    // that kept its id) are not about the utterance of that id: the first row of a
    // duplicated id is packed.
    let lost_at: HashSet<(String, Option<u64>)> = corpus
        .lost()
        .map(|issue| (issue.path.display().to_string(), issue.line))
        .collect();
    let mut reasons: HashMap<&str, (&'static str, &str)> = HashMap::new();
    for finding in &report.findings {
        let Some(id) = finding.id.as_deref() else {
            continue;
        };
        let at = (finding.path.clone().unwrap_or_default(), finding.line);
        if finding.line.is_some() && lost_at.contains(&at) {
            continue;
        }
        let applies = finding.severity == Severity::Error
            || (finding.code == Code::TooShort && options.min_duration_s > 0.0)
            || (finding.code == Code::TooLong && options.max_duration_s.is_finite());
        if applies {
            reasons
                .entry(id)
                .or_insert((finding.code.as_str(), finding.message.as_str()));
        }
    }
    let dataset_has_splits = corpus.utterances.iter().any(|u| u.split.is_some());
    let mut skipped = Vec::new();
    let mut kept = Vec::new();
    for &(order, u) in selected {
        match assign(u, options, &reasons, dataset_has_splits) {
            Ok(split) => kept.push((order, u, split)),
            Err((code, message)) => skipped.push((order, skipped_row(u, code, message))),
        }
    }
    let vocab = pack_vocab(corpus, options, &reasons, dataset_has_splits);
    Filtered {
        skipped,
        kept,
        vocab,
    }
}

/// The outcome of phase 3.
struct Encoded<'a> {
    vocab: Vocab,
    candidates: Vec<Candidate<'a>>,
    unknown_chars: Vec<UnknownCharRow>,
    /// Rows whose text normalization changed, with their corpus order.
    normalized: Vec<(usize, NormalizedRow)>,
}

/// The per-row lists written beside the shards: `unknown_chars.jsonl` and
/// `normalized.jsonl`.
struct TextLists {
    unknown_chars: Vec<UnknownCharRow>,
    normalized: Vec<(usize, NormalizedRow)>,
}

/// The vocabulary: `--vocab`, or the characters of every row that passes the filters, in
/// any part: the parts of a `--part K/N` pack then share the whole pack's vocabulary, and
/// merge.
fn pack_vocab(
    corpus: &asr_corpus::Corpus,
    options: &PackOptions,
    reasons: &HashMap<&str, (&'static str, &str)>,
    dataset_has_splits: bool,
) -> Vocab {
    match &options.vocab {
        Some(vocab) => vocab.clone(),
        None => data_vocab(
            corpus
                .utterances
                .iter()
                .filter(|u| assign(u, options, reasons, dataset_has_splits).is_ok())
                .map(|u| u.transcript.as_str()),
            &options.normalize.policy(None),
        ),
    }
}

/// Phase 3: normalize and encode every kept row's transcript; `--unk error` refuses the
/// whole pack when any row has characters outside the vocabulary.
fn encode_transcripts<'a>(
    kept: Vec<(usize, &'a Utterance, String)>,
    vocab: Vocab,
    options: &PackOptions,
    skipped: &mut Skipped,
) -> Result<Encoded<'a>, PackError> {
    let policy = options.normalize.policy(Some(&vocab));
    let mut unknown_chars = Vec::new();
    let mut normalized_rows = Vec::new();
    let mut refused = Vec::new();
    let mut candidates = Vec::with_capacity(kept.len());
    for (order, u, split) in kept {
        match vocab.prepare(&u.transcript, &policy, options.unk) {
            Ok(prepared) => {
                if !prepared.unknown.is_empty() {
                    unknown_chars.push(UnknownCharRow {
                        id: u.id.clone(),
                        characters: prepared.unknown.iter().map(char::to_string).collect(),
                        action: options.unk.to_string(),
                        normalized: asr_text::normalize(&u.transcript, &policy),
                    });
                }
                if prepared.labels.is_empty() {
                    skipped.push((
                        order,
                        skipped_row(
                            u,
                            "empty_transcript",
                            "no characters of the vocabulary left in the transcript".into(),
                        ),
                    ));
                    continue;
                }
                let after = asr_text::normalize(&u.transcript, &policy);
                if after != u.transcript {
                    let row = NormalizedRow {
                        id: u.id.clone(),
                        before: u.transcript.clone(),
                        after,
                    };
                    normalized_rows.push((order, row));
                }
                candidates.push(Candidate {
                    order,
                    utterance: u,
                    split,
                    text: prepared.text,
                    labels: prepared.labels,
                });
            }
            Err(EncodeError::UnknownCharacter { .. }) => {
                let normalized = asr_text::normalize(&u.transcript, &policy);
                let unknown = vocab
                    .prepare(&u.transcript, &policy, UnkPolicy::Drop)
                    .map(|p| p.unknown)
                    .unwrap_or_default();
                refused.push(UnknownCharRow {
                    id: u.id.clone(),
                    characters: unknown.iter().map(char::to_string).collect(),
                    action: "error".into(),
                    normalized,
                });
            }
            Err(e) => return Err(PackError::Options(format!("{}: {e}", u.id))),
        }
    }
    if !refused.is_empty() {
        return Err(PackError::UnknownCharacters { rows: refused });
    }
    Ok(Encoded {
        vocab,
        candidates,
        unknown_chars,
        normalized: normalized_rows,
    })
}

/// Rows the reader could not turn into utterances (an unreadable transcript line, a
/// ragged manifest row, a duplicate id's later row) and files or folders it could not
/// read at all, under validate's code for them: nothing is dropped silently. A row
/// without an id belongs to the part its `file:line` hashes to.
fn reader_rejects(corpus: &asr_corpus::Corpus, options: &PackOptions) -> Skipped {
    let part = options.part;
    let mut skipped = Vec::new();
    for (i, issue) in corpus.lost().enumerate() {
        let file = issue.path.display().to_string();
        let key = match (&issue.id, issue.line) {
            (Some(id), _) => id.clone(),
            (None, Some(line)) => format!("{file}:{line}"),
            (None, None) => file.clone(),
        };
        if part.is_some_and(|p| !in_part(&key, p.index, p.count)) {
            continue;
        }
        let (code, _) = asr_validate::issue_code(issue.kind);
        skipped.push((
            corpus.utterances.len() + i,
            SkippedRow {
                id: issue.id.clone().unwrap_or_default(),
                code: code.as_str().to_string(),
                message: issue.message.clone(),
                source: String::new(),
                file: Some(file),
                line: issue.line,
            },
        ));
    }
    skipped
}

/// The writers of every split, with what a previous interrupted run left.
struct Opened {
    writers: BTreeMap<String, ShardWriter>,
    /// `out_dir` held a finished pack that this run replaces (`overwrite`).
    replaced_finished: bool,
    /// Per candidate: already written by the run being resumed.
    done: Vec<bool>,
    resumed_rows: u64,
    journal: DecodeJournal,
}

/// Phase 4: open a writer per split (resuming a previous run's completed shards when
/// they are consistent with this run), and the decode-skip journal.
fn open_writers(
    vocab: &Vocab,
    candidates: &[Candidate],
    options: &PackOptions,
    skipped: &mut Skipped,
    progress: &dyn Progress,
) -> Result<Opened, PackError> {
    let part = options.part;
    let out = &options.out_dir;
    fs::create_dir_all(out).map_err(|source| PackError::Io {
        path: out.clone(),
        source,
    })?;
    let file_prefix = match part {
        Some(p) => format!("shard-{}", part_tag(p)),
        None => "shard".to_string(),
    };
    let writer_options = ShardWriterOptions {
        shard_size_bytes: options.shard_size_bytes,
        rows_per_batch: options.rows_per_batch,
        audio_dtype: options.audio_dtype,
        vocab_json: vocab.to_json_string(),
        file_prefix: file_prefix.clone(),
    };
    let journal_path = out.join(format!(".pack-decode-skips-{file_prefix}.jsonl"));
    let fingerprint = fingerprint(options, &writer_options);
    let journaled = if options.resume {
        read_decode_journal(&journal_path, &fingerprint)
    } else {
        HashMap::new()
    };
    // Shards are kept only for rows whose inputs are unchanged (see `resume`).
    let replaced_finished = resume::forget_finished(out, part)?;
    let inputs_path = resume::journal_path(out, &file_prefix);
    let previous = if options.resume {
        resume::Previous::read(&inputs_path, &fingerprint)
    } else {
        resume::Previous::default()
    };
    let row_fingerprints = resume::fingerprints(
        &candidates
            .iter()
            .map(|c| RowInputs {
                utterance: c.utterance,
                split: &c.split,
                text: &c.text,
                labels: &c.labels,
            })
            .collect::<Vec<_>>(),
    );
    let mut split_names: Vec<String> = Vec::new();
    for c in candidates {
        if !split_names.contains(&c.split) {
            split_names.push(c.split.clone());
        }
    }
    let mut writers: BTreeMap<String, ShardWriter> = BTreeMap::new();
    let mut done = vec![false; candidates.len()];
    let mut resumed_rows = 0u64;
    for name in &split_names {
        let writer = resume_split(
            name,
            candidates,
            &journaled,
            &writer_options,
            options,
            &InputsRecord {
                previous: &previous,
                fingerprints: &row_fingerprints,
            },
            &mut done,
            &mut resumed_rows,
        )?;
        writers.insert(name.clone(), writer);
    }
    resume::write_journal(
        &inputs_path,
        &fingerprint,
        candidates
            .iter()
            .zip(&row_fingerprints)
            .map(|(c, fp)| (c.split.as_str(), c.utterance.id.as_str(), fp.as_str())),
    )?;
    // Rows left out while decoding in the run being resumed keep their entries.
    let mut journal = DecodeJournal::open(&journal_path, &fingerprint)?;
    for (i, c) in candidates.iter().enumerate() {
        if done[i] {
            if let Some(entry) = journaled.get(&c.utterance.id) {
                journal.append(entry)?;
                skipped.push((
                    c.order,
                    skipped_row(c.utterance, &entry.code, entry.message.clone()),
                ));
            }
            progress.row_done(0.0);
        }
    }
    Ok(Opened {
        writers,
        replaced_finished,
        done,
        resumed_rows,
        journal,
    })
}

/// The inputs of the run being resumed, and this run's, row by row (see `resume`).
struct InputsRecord<'a> {
    previous: &'a resume::Previous,
    /// Per candidate.
    fingerprints: &'a [String],
}

/// The writer of split `name`: resumed when a previous run completed shards of it that
/// agree with this run's rows and were made from the same inputs (marking those rows
/// `done`), else created afresh.
#[allow(clippy::too_many_arguments)]
fn resume_split(
    name: &str,
    candidates: &[Candidate],
    journaled: &HashMap<String, DecodeSkip>,
    writer_options: &ShardWriterOptions,
    options: &PackOptions,
    inputs: &InputsRecord,
    done: &mut [bool],
    resumed_rows: &mut u64,
) -> Result<ShardWriter, PackError> {
    let out = &options.out_dir;
    let mut writer = if options.resume {
        ShardWriter::resume(out, name, writer_options.clone())?
    } else {
        ShardWriter::create(out, name, writer_options.clone())?
    };
    if let Some(last) = writer.last_completed_id().map(str::to_string) {
        // The rows of this split up to the last completed shard's last row.
        let positions: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.split == name)
            .map(|(i, _)| i)
            .collect();
        let end = positions
            .iter()
            .position(|&i| candidates[i].utterance.id == last);
        let consistent = end.is_some_and(|end| {
            let written = positions[..=end]
                .iter()
                .filter(|&&i| !journaled.contains_key(&candidates[i].utterance.id))
                .count() as u64;
            written == writer.rows_completed()
                && inputs.previous.prefix_matches(
                    name,
                    positions[..=end].iter().map(|&i| {
                        (
                            candidates[i].utterance.id.as_str(),
                            inputs.fingerprints[i].as_str(),
                        )
                    }),
                )
        });
        match (consistent, end) {
            (true, Some(end)) => {
                for &i in &positions[..=end] {
                    done[i] = true;
                }
                *resumed_rows += writer.rows_completed();
            }
            _ => writer = ShardWriter::create(out, name, writer_options.clone())?,
        }
    }
    Ok(writer)
}

/// What phase 5 wrote.
struct Written {
    rows: u64,
    audio_s: f64,
}

/// Phase 5: decode the rows not yet written in parallel, and write them in order.
fn decode_and_write(
    candidates: &[Candidate],
    opened: &mut Opened,
    options: &PackOptions,
    skipped: &mut Skipped,
    timings: &mut PackTimings,
    progress: &dyn Progress,
) -> Result<Written, PackError> {
    let decode_start = Instant::now();
    let decode_busy_ns = Arc::new(AtomicU64::new(0));
    let todo: Vec<&Candidate> = candidates
        .iter()
        .zip(&opened.done)
        .filter(|(_, done)| !**done)
        .map(|(c, _)| c)
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .thread_name(|i| format!("pack-decode-{i}"))
        .build()
        .map_err(|e| PackError::Options(format!("cannot start decoding threads: {e}")))?;
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<Decoded, (String, String)>)>();
    let window = options.in_flight.max(1);
    let (min_s, max_s) = (options.min_duration_s, options.max_duration_s);
    let dtype = options.audio_dtype;
    let submit = |index: usize| {
        let path = todo[index].utterance.audio_path.clone();
        let tx = tx.clone();
        let decode_busy_ns = Arc::clone(&decode_busy_ns);
        pool.spawn(move || {
            let busy = Instant::now();
            let result = decode_one(&path, dtype, min_s, max_s);
            let busy_ns = u64::try_from(busy.elapsed().as_nanos()).unwrap_or(u64::MAX);
            decode_busy_ns.fetch_add(busy_ns, Ordering::Relaxed);
            let _ = tx.send((index, result));
        });
    };
    let mut submitted = 0usize;
    while submitted < todo.len() && submitted < window {
        submit(submitted);
        submitted += 1;
    }
    let mut pending: BTreeMap<usize, Result<Decoded, (String, String)>> = BTreeMap::new();
    let mut written = Written {
        rows: 0,
        audio_s: 0.0,
    };
    for (next, candidate) in todo.iter().enumerate() {
        let result = loop {
            if let Some(result) = pending.remove(&next) {
                break result;
            }
            let waiting = Instant::now();
            let received = rx.recv();
            timings.writer_wait_s += waiting.elapsed().as_secs_f64();
            let (index, result) =
                received.map_err(|_| PackError::Options("a decoding thread stopped".into()))?;
            pending.insert(index, result);
        };
        if submitted < todo.len() {
            submit(submitted);
            submitted += 1;
        }
        let source_s = write_one(candidate, result, opened, skipped, timings)?;
        if let Some(source_s) = source_s {
            written.rows += 1;
            written.audio_s += source_s;
        }
        progress.row_done(source_s.unwrap_or(0.0));
    }
    drop(tx);
    timings.decode_write_s = decode_start.elapsed().as_secs_f64();
    timings.decode_busy_s = decode_busy_ns.load(Ordering::Relaxed) as f64 * 1e-9;
    timings.threads = pool.current_num_threads();
    Ok(written)
}

/// Writes one decoded row (returning its source seconds), or journals and lists a row
/// whose decoding failed (returning `None`).
fn write_one(
    candidate: &Candidate,
    result: Result<Decoded, (String, String)>,
    opened: &mut Opened,
    skipped: &mut Skipped,
    timings: &mut PackTimings,
) -> Result<Option<f64>, PackError> {
    let u = candidate.utterance;
    match result {
        Ok(decoded) => {
            let writing = Instant::now();
            let writer = opened
                .writers
                .get_mut(&candidate.split)
                .expect("a writer per split");
            writer.write_samples(SamplesRowRef {
                id: &u.id,
                audio: decoded.audio.as_samples(),
                text: &candidate.text,
                labels: &candidate.labels,
                speaker: u.speaker.as_deref(),
                source: &u.source,
            })?;
            timings.writer_busy_s += writing.elapsed().as_secs_f64();
            Ok(Some(decoded.source_s))
        }
        Err((code, message)) => {
            let entry = DecodeSkip {
                id: u.id.clone(),
                code,
                message,
            };
            opened.journal.append(&entry)?;
            skipped.push((candidate.order, skipped_row(u, &entry.code, entry.message)));
            Ok(None)
        }
    }
}

/// Phase 6: close every split's last shard, then write `skipped.jsonl`,
/// `unknown_chars.jsonl` and the manifest, last.
fn finish_outputs(
    writers: BTreeMap<String, ShardWriter>,
    vocab: &Vocab,
    options: &PackOptions,
    mut skipped: Skipped,
    mut lists: TextLists,
) -> Result<(Manifest, Vec<SkippedRow>, TextLists), PackError> {
    let part = options.part;
    let out = &options.out_dir;
    // Each split's last shard is flushed, fsynced and renamed, and its folder and journal
    // fsynced: the splits do this at the same time, so the end of a pack waits for the
    // slowest split's disk writes rather than for every split's in turn.
    let mut manifest = Manifest::new(vocab, options.audio_dtype, part);
    let finished: Vec<(
        String,
        Result<asr_shards::SplitInfo, asr_shards::ShardError>,
    )> = std::thread::scope(|scope| {
        let handles: Vec<_> = writers
            .into_iter()
            .map(|(name, writer)| (name, scope.spawn(move || writer.finish())))
            .collect();
        handles
            .into_iter()
            .map(|(name, handle)| {
                let result = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (name, result)
            })
            .collect()
    });
    for (name, result) in finished {
        let mut info = result?;
        info.role = SplitRole::of(&name).map(|role| role.as_str().to_string());
        manifest.splits.insert(name, info);
    }
    skipped.sort_by_key(|(order, _)| *order);
    // Rows left out while decoding were not packed: their text is not in the shards. (By
    // position, not id: a duplicated id's later row is skipped while its first is packed.)
    let left_out: HashSet<usize> = skipped.iter().map(|(order, _)| *order).collect();
    lists
        .normalized
        .retain(|(order, _)| !left_out.contains(order));
    let skipped: Vec<SkippedRow> = skipped.into_iter().map(|(_, s)| s).collect();
    for row in &skipped {
        manifest.skipped.add(&row.code);
    }
    write_jsonl(&out.join(&manifest.skipped.file), &skipped)?;
    let info = normalization_info(vocab, options);
    manifest.normalization = Some(write_text_lists(&lists, &info, out, part)?);
    manifest.write(out)?;
    debug_assert!(manifest.skipped.file == SKIPPED_FILE || part.is_some());
    Ok((manifest, skipped, lists))
}

/// The manifest's record of the normalization applied, without its counts.
fn normalization_info(vocab: &Vocab, options: &PackOptions) -> NormalizationInfo {
    NormalizationInfo {
        preset: options.normalize.preset.name().to_string(),
        policy: options.normalize.policy(Some(vocab)),
        changed_rows: 0,
        file: None,
    }
}

/// Writes `unknown_chars.jsonl` and `normalized.jsonl` (part-tagged for a part), or
/// removes a stale one when its list is empty; returns `info` with the changed rows.
fn write_text_lists(
    lists: &TextLists,
    info: &NormalizationInfo,
    out: &Path,
    part: Option<asr_shards::PartSpec>,
) -> Result<NormalizationInfo, PackError> {
    let unknown_file = out.join(match part {
        Some(p) => format!("unknown_chars-{}.jsonl", part_tag(p)),
        None => "unknown_chars.jsonl".to_string(),
    });
    if lists.unknown_chars.is_empty() {
        let _ = fs::remove_file(&unknown_file);
    } else {
        write_jsonl(&unknown_file, &lists.unknown_chars)?;
    }
    let name = Manifest::normalized_file_name_for(part);
    let normalized_file = out.join(&name);
    let rows: Vec<&NormalizedRow> = lists.normalized.iter().map(|(_, row)| row).collect();
    if rows.is_empty() {
        let _ = fs::remove_file(&normalized_file);
    } else {
        write_jsonl(&normalized_file, &rows)?;
    }
    Ok(NormalizationInfo {
        changed_rows: rows.len() as u64,
        file: (!rows.is_empty()).then_some(name),
        ..info.clone()
    })
}

/// A case folding against a `--vocab` of the other case would turn every letter into an
/// unknown character: refused before anything is read.
fn check_normalize_fits_vocab(options: &PackOptions) -> Result<(), PackError> {
    let Some(vocab) = &options.vocab else {
        return Ok(());
    };
    let case = options.normalize.policy(Some(vocab)).case;
    let clash = match (case, vocab.letter_case()) {
        (CaseFold::Upper, LetterCase::Lower) => Some(("upper", "lower")),
        (CaseFold::Lower, LetterCase::Upper) => Some(("lower", "upper")),
        _ => None,
    };
    match clash {
        Some((folded, vocab_case)) => Err(PackError::Options(format!(
            "--normalize {} folds transcripts to {folded} case, but the --vocab is {vocab_case} case: every letter would be unknown; use --case {vocab_case} (or --normalize {vocab_case})",
            options.normalize.preset
        ))),
        None => Ok(()),
    }
}

fn check_options(options: &PackOptions) -> Result<(), PackError> {
    check_normalize_fits_vocab(options)?;
    if options.shard_size_bytes == 0 {
        return Err(PackError::Options("--shard-size must be positive".into()));
    }
    if options.threads > crate::MAX_THREADS {
        return Err(PackError::Options(format!(
            "--threads {} is more than {}: decoding threads beyond the cores only cost memory",
            options.threads,
            crate::MAX_THREADS
        )));
    }
    if options.rows_per_batch == 0 {
        return Err(PackError::Options("rows per batch must be positive".into()));
    }
    if options.min_duration_s.is_nan()
        || options.max_duration_s.is_nan()
        || options.min_duration_s > options.max_duration_s
    {
        return Err(PackError::Options(format!(
            "--min-duration {} is above --max-duration {}",
            options.min_duration_s, options.max_duration_s
        )));
    }
    Ok(())
}

/// Decode, downmix, resample to 16 kHz, quantize (int16 shards) and check the duration
/// of one file, with this thread's reused buffers.
fn decode_one(
    path: &Path,
    dtype: AudioDtype,
    min_s: f64,
    max_s: f64,
) -> Result<Decoded, (String, String)> {
    BUFFERS.with(|buffers| {
        let mut buffers = buffers.borrow_mut();
        let result = decode_with(&mut buffers, path, dtype, min_s, max_s);
        buffers.trim();
        result
    })
}

fn decode_with(
    b: &mut DecodeBuffers,
    path: &Path,
    dtype: AudioDtype,
    min_s: f64,
    max_s: f64,
) -> Result<Decoded, (String, String)> {
    let undecodable = |e: DecodeError| ("undecodable_audio".to_string(), e.to_string());
    // The file is read whole, once: the header probe and the decoder both work on the
    // bytes in memory (the validation pass probed it already, from its own open).
    let in_memory =
        read_small_file(path, &mut b.bytes).map_err(|e| undecodable(DecodeError::Probe(e)))?;
    let info = if in_memory {
        asr_audio::probe_bytes(&b.bytes).map_err(|e| undecodable(e.into()))?
    } else {
        asr_audio::probe_file(path).map_err(|e| undecodable(e.into()))?
    };
    // 16 kHz mono FLAC or 16-bit WAV going into int16 shards: its samples are the stored
    // values (the float path would convert and quantize them back to the same integers).
    if in_memory
        && dtype == AudioDtype::Int16
        && asr_audio::decodes_exactly_to_i16(&info)
        && info.channels == 1
        && info.sample_rate_hz == TARGET_SAMPLE_RATE_HZ
    {
        asr_audio::decode_bytes_i16_into(&b.bytes, &info, &mut b.pcm16).map_err(undecodable)?;
        if b.pcm16.channels == 1 && b.pcm16.sample_rate_hz == TARGET_SAMPLE_RATE_HZ {
            let source_s = b.pcm16.duration_s();
            let audio = Audio::I16(std::mem::take(&mut b.pcm16.samples));
            return check_duration(audio, source_s, min_s, max_s);
        }
        // The stream disagrees with its header: take the general path.
    }
    if in_memory {
        asr_audio::decode_bytes_into(&b.bytes, &info, &mut b.decoded).map_err(undecodable)?;
    } else {
        asr_audio::decode_probed_into(path, &info, &mut b.decoded).map_err(undecodable)?;
    }
    let source_s = b.decoded.duration_s();
    let mono: &[f32] = if b.decoded.channels == 1 {
        &b.decoded.samples
    } else {
        downmix_to_mono_into(
            &b.decoded.samples,
            usize::from(b.decoded.channels),
            &mut b.mono,
        );
        &b.mono
    };
    if mono.is_empty() {
        return Err(("empty_audio".into(), "the audio has no samples".into()));
    }
    asr_audio::resample::resample_to_16k_into(mono, b.decoded.sample_rate_hz, &mut b.resampled)
        .map_err(|e| ("undecodable_audio".to_string(), e.to_string()))?;
    let audio = match dtype {
        AudioDtype::Int16 => {
            let mut pcm = Vec::new();
            quantize_i16_into(&b.resampled, &mut pcm);
            Audio::I16(pcm)
        }
        // Handed to the writer whole (as the int16 path hands over its samples).
        AudioDtype::Float32 => Audio::F32(std::mem::take(&mut b.resampled)),
    };
    check_duration(audio, source_s, min_s, max_s)
}

/// Reads `path` whole into `bytes` (replacing its contents) when it is at most
/// [`MAX_IN_MEMORY_FILE_BYTES`]; returns false, reading nothing, for a larger file.
/// Only a regular file is opened for reading: a FIFO would block the pack forever.
fn read_small_file(path: &Path, bytes: &mut Vec<u8>) -> Result<bool, ProbeError> {
    let (mut file, len) = asr_audio::open_audio_file(path)?;
    if len > MAX_IN_MEMORY_FILE_BYTES {
        return Ok(false);
    }
    bytes.clear();
    bytes.reserve(len as usize);
    file.read_to_end(bytes)?;
    Ok(true)
}

fn check_duration(
    audio: Audio,
    source_s: f64,
    min_s: f64,
    max_s: f64,
) -> Result<Decoded, (String, String)> {
    if audio.len() == 0 {
        return Err(("empty_audio".into(), "the audio has no samples".into()));
    }
    let duration_s = audio.len() as f64 / 16_000.0;
    if duration_s < min_s {
        return Err((
            "too_short".into(),
            format!("{duration_s:.2} s is shorter than --min-duration {min_s} s"),
        ));
    }
    if duration_s > max_s {
        return Err((
            "too_long".into(),
            format!("{duration_s:.2} s is longer than --max-duration {max_s} s"),
        ));
    }
    Ok(Decoded { audio, source_s })
}

/// Everything that changes what is written: a resume journal from a run with another
/// fingerprint is ignored.
fn fingerprint(options: &PackOptions, writer: &ShardWriterOptions) -> String {
    let mut exclude: Vec<&String> = options.exclude.iter().collect();
    exclude.sort();
    let text = format!(
        "{writer:?}|{:?}|{}|{}|{:?}|{:?}|{exclude:?}",
        options.split, options.min_duration_s, options.max_duration_s, options.unk, options.part
    );
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_decode_journal(path: &Path, fingerprint: &str) -> HashMap<String, DecodeSkip> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(fingerprint) {
        return HashMap::new();
    }
    lines
        .filter_map(|line| serde_json::from_str::<DecodeSkip>(line).ok())
        .map(|entry| (entry.id.clone(), entry))
        .collect()
}

/// Append-only journal of rows left out while decoding (for resume).
struct DecodeJournal {
    path: PathBuf,
    file: File,
}

impl DecodeJournal {
    fn open(path: &Path, fingerprint: &str) -> Result<Self, PackError> {
        let io = |source| PackError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::create(path).map_err(io)?;
        writeln!(file, "{fingerprint}").map_err(io)?;
        Ok(DecodeJournal {
            path: path.to_path_buf(),
            file,
        })
    }

    fn append(&mut self, entry: &DecodeSkip) -> Result<(), PackError> {
        let line = serde_json::to_string(entry).expect("journal entry serializes");
        writeln!(self.file, "{line}").map_err(|source| PackError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes one JSON object per line, atomically (temporary file, fsync, rename).
fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), PackError> {
    let io = |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temp = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(row).expect("row serializes"));
        text.push('\n');
    }
    let mut file = File::create(&temp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&temp, path).map_err(io)
}
