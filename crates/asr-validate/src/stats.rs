//! Corpus statistics: hours per split, duration distribution and histogram, per-speaker
//! counts, sample rates, codecs, channels, characters per second, transcript lengths.
//!
//! The per-utterance table is a polars `DataFrame` (eager `polars-core` only, no lazy
//! engine: a small feature set keeps the cold build cheap); group-bys give the per-split,
//! per-speaker and per-format tables, and `ChunkQuantile` the distributions (linear
//! interpolation between order statistics, numpy's default).

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// Label of the split column for utterances without a split.
pub const NO_SPLIT: &str = "(none)";
/// Label for an unknown sample rate / codec / channel count (audio that did not probe).
pub const UNKNOWN: &str = "unknown";

/// Duration histogram bin edges in seconds; the last bin is open-ended.
pub const HISTOGRAM_EDGES_S: [f64; 11] =
    [0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0];

/// min / p5 / median / mean / p95 / max of a quantity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Smallest value.
    pub min: f64,
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub median: f64,
    /// Mean.
    pub mean: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest value.
    pub max: f64,
}

/// One split's totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    /// Split name as the corpus names it (`(none)` without one).
    pub split: String,
    /// `train`, `dev` or `test`, when the name says.
    pub role: Option<String>,
    /// Utterances.
    pub utterances: u64,
    /// Hours of audio (utterances of unknown duration count 0).
    pub hours: f64,
    /// Distinct speakers.
    pub speakers: u64,
}

/// One speaker's totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeakerStats {
    /// Speaker id.
    pub speaker: String,
    /// Utterances.
    pub utterances: u64,
    /// Seconds of audio.
    pub seconds: f64,
}

/// One histogram bin `[from_s, to_s)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramBin {
    /// Lower edge (inclusive), seconds.
    pub from_s: f64,
    /// Upper edge (exclusive), seconds; `null` for the open last bin.
    pub to_s: Option<f64>,
    /// Utterances in the bin.
    pub count: u64,
}

/// All statistics of a validation report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Utterances read.
    pub utterances: u64,
    /// Utterances whose duration is known (header or decode).
    pub utterances_with_duration: u64,
    /// Total hours of audio.
    pub total_hours: f64,
    /// Files fully decoded (0 without `--deep`: the header-only mode decodes nothing).
    pub files_decoded: u64,
    /// Per split, in order of first appearance.
    pub splits: Vec<SplitStats>,
    /// Durations in seconds.
    pub duration_s: Option<Distribution>,
    /// Duration histogram.
    pub duration_histogram: Vec<HistogramBin>,
    /// Distinct speakers (utterances without a speaker are not counted).
    pub speaker_count: u64,
    /// Per speaker, most utterances first.
    pub speakers: Vec<SpeakerStats>,
    /// Files per sample rate (Hz, as a string key).
    pub sample_rates_hz: BTreeMap<String, u64>,
    /// Files per codec (`flac`, `pcm_s16le`, `mp3`, ...).
    pub codecs: BTreeMap<String, u64>,
    /// Files per channel count.
    pub channels: BTreeMap<String, u64>,
    /// Characters (non-space) per second of audio.
    pub chars_per_second: Option<Distribution>,
    /// Transcript length in characters (non-space, normalized).
    pub transcript_chars: Option<Distribution>,
    /// Transcript length in words.
    pub transcript_words: Option<Distribution>,
}

/// One utterance's row of the statistics table.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatRow {
    pub(crate) split: Option<String>,
    pub(crate) speaker: Option<String>,
    pub(crate) duration_s: Option<f64>,
    pub(crate) sample_rate_hz: Option<u32>,
    pub(crate) codec: Option<String>,
    pub(crate) channels: Option<u16>,
    pub(crate) chars: usize,
    pub(crate) words: usize,
}

/// The `q` quantile of sorted values by linear interpolation (numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn distribution(ca: &Float64Chunked) -> PolarsResult<Option<Distribution>> {
    let (Some(min), Some(max), Some(mean)) = (ca.min(), ca.max(), ca.mean()) else {
        return Ok(None);
    };
    let q = |p: f64| -> PolarsResult<f64> {
        Ok(ca.quantile(p, QuantileMethod::Linear)?.unwrap_or(f64::NAN))
    };
    Ok(Some(Distribution {
        min,
        p5: q(0.05)?,
        median: q(0.5)?,
        mean,
        p95: q(0.95)?,
        max,
    }))
}

/// `key -> count` of a string column (nulls as [`UNKNOWN`]).
#[allow(deprecated)] // polars-core's eager group-by aggregations; the lazy engine is not worth its build
fn counts(df: &DataFrame, key: &str) -> PolarsResult<BTreeMap<String, u64>> {
    let grouped = df.group_by([key])?.select(["one"]).sum()?;
    let keys = grouped.column(key)?.str()?;
    let sums = grouped.column("one_sum")?.u32()?;
    Ok(keys
        .iter()
        .zip(sums.iter())
        .map(|(k, n)| (k.unwrap_or(UNKNOWN).to_owned(), u64::from(n.unwrap_or(0))))
        .collect())
}

/// Builds the statistics from the per-utterance rows.
#[allow(deprecated)]
pub(crate) fn compute(rows: &[StatRow], files_decoded: u64) -> PolarsResult<Stats> {
    let n = rows.len();
    let df = DataFrame::new_infer_height(vec![
        Column::new(
            "split".into(),
            rows.iter()
                .map(|r| r.split.clone().unwrap_or_else(|| NO_SPLIT.into()))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "speaker".into(),
            rows.iter().map(|r| r.speaker.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "duration_s".into(),
            rows.iter().map(|r| r.duration_s).collect::<Vec<_>>(),
        ),
        Column::new(
            "sample_rate".into(),
            rows.iter()
                .map(|r| r.sample_rate_hz.map(|s| s.to_string()))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "codec".into(),
            rows.iter().map(|r| r.codec.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "channels".into(),
            rows.iter()
                .map(|r| r.channels.map(|c| c.to_string()))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "chars".into(),
            rows.iter().map(|r| r.chars as f64).collect::<Vec<_>>(),
        ),
        Column::new(
            "words".into(),
            rows.iter().map(|r| r.words as f64).collect::<Vec<_>>(),
        ),
        Column::new(
            "chars_per_s".into(),
            rows.iter()
                .map(|r| {
                    r.duration_s
                        .filter(|d| *d > 0.0 && r.chars > 0)
                        .map(|d| r.chars as f64 / d)
                })
                .collect::<Vec<_>>(),
        ),
        Column::new("one".into(), vec![1u32; n]),
    ])?;
    let durations = df.column("duration_s")?.f64()?;
    let total_s = durations.sum().unwrap_or(0.0);

    // Per split, in order of first appearance.
    let by_split = df.group_by_stable(["split"])?;
    let split_seconds = by_split.select(["duration_s"]).sum()?;
    let split_counts = df.group_by_stable(["split"])?.select(["one"]).sum()?;
    let split_speakers = df
        .group_by_stable(["split"])?
        .select(["speaker"])
        .n_unique()?;
    let mut splits = Vec::new();
    let names = split_seconds.column("split")?.str()?;
    let seconds = split_seconds.column("duration_s_sum")?.f64()?;
    let count_of: BTreeMap<&str, u32> = split_counts
        .column("split")?
        .str()?
        .iter()
        .zip(split_counts.column("one_sum")?.u32()?.iter())
        .filter_map(|(k, v)| Some((k?, v?)))
        .collect();
    let speakers_of: BTreeMap<&str, u64> = split_speakers
        .column("split")?
        .str()?
        .iter()
        .zip(
            split_speakers
                .column("speaker_n_unique")?
                .as_materialized_series()
                .cast(&DataType::UInt64)?
                .u64()?
                .iter(),
        )
        .filter_map(|(k, v)| Some((k?, v?)))
        .collect();
    for (name, secs) in names.iter().zip(seconds.iter()) {
        let name = name.unwrap_or(NO_SPLIT);
        // n_unique counts a null speaker as one value; do not count "no speaker".
        let has_null_speaker = rows
            .iter()
            .any(|r| r.speaker.is_none() && r.split.as_deref().unwrap_or(NO_SPLIT) == name);
        let speakers = speakers_of
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(u64::from(has_null_speaker));
        splits.push(SplitStats {
            split: name.to_owned(),
            role: asr_corpus::SplitRole::of(name).map(|r| r.as_str().to_owned()),
            utterances: u64::from(count_of.get(name).copied().unwrap_or(0)),
            hours: secs.unwrap_or(0.0) / 3600.0,
            speakers,
        });
    }

    // Per speaker, most utterances first.
    let with_speaker = df.drop_nulls(Some(&["speaker".to_string()]))?;
    let mut speakers = Vec::new();
    if with_speaker.height() > 0 {
        let secs = with_speaker
            .group_by(["speaker"])?
            .select(["duration_s"])
            .sum()?;
        let cnts = with_speaker.group_by(["speaker"])?.select(["one"]).sum()?;
        let count_of: BTreeMap<&str, u32> = cnts
            .column("speaker")?
            .str()?
            .iter()
            .zip(cnts.column("one_sum")?.u32()?.iter())
            .filter_map(|(k, v)| Some((k?, v?)))
            .collect();
        for (s, sec) in secs
            .column("speaker")?
            .str()?
            .iter()
            .zip(secs.column("duration_s_sum")?.f64()?.iter())
        {
            let Some(s) = s else { continue };
            speakers.push(SpeakerStats {
                speaker: s.to_owned(),
                utterances: u64::from(count_of.get(s).copied().unwrap_or(0)),
                seconds: sec.unwrap_or(0.0),
            });
        }
        speakers.sort_by(|a, b| {
            b.utterances
                .cmp(&a.utterances)
                .then_with(|| a.speaker.cmp(&b.speaker))
        });
    }

    let mut histogram: Vec<HistogramBin> = HISTOGRAM_EDGES_S
        .iter()
        .enumerate()
        .map(|(i, &from)| HistogramBin {
            from_s: from,
            to_s: HISTOGRAM_EDGES_S.get(i + 1).copied(),
            count: 0,
        })
        .collect();
    for d in durations.iter().flatten() {
        let bin = HISTOGRAM_EDGES_S
            .iter()
            .rposition(|&edge| d >= edge)
            .unwrap_or(0);
        histogram[bin].count += 1;
    }

    Ok(Stats {
        utterances: n as u64,
        utterances_with_duration: (durations.len() - durations.null_count()) as u64,
        total_hours: total_s / 3600.0,
        files_decoded,
        splits,
        duration_s: distribution(durations)?,
        duration_histogram: histogram,
        speaker_count: speakers.len() as u64,
        speakers,
        sample_rates_hz: counts(&df, "sample_rate")?,
        codecs: counts(&df, "codec")?,
        channels: counts(&df, "channels")?,
        chars_per_second: distribution(df.column("chars_per_s")?.f64()?)?,
        transcript_chars: distribution(df.column("chars")?.f64()?)?,
        transcript_words: distribution(df.column("words")?.f64()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(split: &str, speaker: Option<&str>, d: Option<f64>, chars: usize) -> StatRow {
        StatRow {
            split: Some(split.into()),
            speaker: speaker.map(Into::into),
            duration_s: d,
            sample_rate_hz: d.map(|_| 16_000),
            codec: d.map(|_| "flac".into()),
            channels: d.map(|_| 1),
            chars,
            words: chars / 5,
        }
    }

    #[test]
    fn stats_of_a_small_table() {
        let rows = vec![
            row("train", Some("a"), Some(1.0), 10),
            row("train", Some("a"), Some(3.0), 30),
            row("train", Some("b"), Some(2.0), 20),
            row("test", None, Some(4.5), 45),
            row("test", Some("c"), None, 5),
        ];
        let s = compute(&rows, 0).unwrap();
        assert_eq!(s.utterances, 5);
        assert_eq!(s.utterances_with_duration, 4);
        assert!((s.total_hours - 10.5 / 3600.0).abs() < 1e-12);
        assert_eq!(s.splits.len(), 2);
        assert_eq!(s.splits[0].split, "train");
        assert_eq!(s.splits[0].utterances, 3);
        assert_eq!(s.splits[0].speakers, 2);
        assert!((s.splits[0].hours - 6.0 / 3600.0).abs() < 1e-12);
        assert_eq!(s.splits[1].speakers, 1);
        let d = s.duration_s.unwrap();
        assert_eq!((d.min, d.max, d.mean), (1.0, 4.5, 2.625));
        assert!((d.median - 2.5).abs() < 1e-12);
        assert!((d.p5 - 1.15).abs() < 1e-12, "{}", d.p5);
        assert_eq!(s.speakers[0].speaker, "a");
        assert_eq!(s.speakers[0].utterances, 2);
        assert_eq!(s.speaker_count, 3);
        assert_eq!(s.sample_rates_hz.get("16000"), Some(&4));
        assert_eq!(s.sample_rates_hz.get(UNKNOWN), Some(&1));
        let counts: Vec<u64> = s.duration_histogram.iter().map(|b| b.count).collect();
        assert_eq!(&counts[..4], &[0, 1, 2, 1]);
        assert_eq!(s.chars_per_second.unwrap().median, 10.0);
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.5], 0.05), 1.15);
    }
}
