//! Splits: `split_leakage` (the same normalized transcript in train and dev/test, or in
//! dev and test), `speaker_overlap` (a speaker in two of train/dev/test where the corpus
//! promises disjoint speakers) and, with `--deep`, `duplicate_audio` (identical decoded
//! audio under two ids).
//!
//! Splits are compared by role ([`asr_corpus::SplitRole`]): `train-clean-100` and
//! `train-other-500` are both training data. Leakage ignores transcripts shorter than
//! [`MIN_LEAK_CHARS`] characters ("yes", "thank you" legitimately recur).

use std::collections::{BTreeMap, HashMap};

use asr_corpus::SplitRole;

use super::{audio_finding, text_finding, Ctx};
use crate::audio_pass::DeepOutcome;
use crate::finding::{Code, Finding, Severity};

/// Transcripts with fewer non-space characters than this are not checked for leakage.
pub const MIN_LEAK_CHARS: usize = 10;

pub(crate) fn check(ctx: &Ctx<'_>) -> Vec<Finding> {
    let mut out = leakage(ctx);
    if ctx.corpus.speakers_disjoint {
        out.extend(speaker_overlap(ctx));
    }
    out.extend(duplicate_audio(ctx));
    out
}

fn role(split: &Option<String>) -> Option<SplitRole> {
    split.as_deref().and_then(SplitRole::of)
}

fn leakage(ctx: &Ctx<'_>) -> Vec<Finding> {
    // First utterance of each (key, role).
    let mut first: HashMap<(&str, SplitRole), usize> = HashMap::new();
    for (i, (u, _, t)) in ctx.rows().enumerate() {
        if let Some(r) = role(&u.split) {
            if t.leak_key.chars().filter(|c| *c != ' ').count() >= MIN_LEAK_CHARS {
                first.entry((t.leak_key.as_str(), r)).or_insert(i);
            }
        }
    }
    let mut out = Vec::new();
    for (u, _, t) in ctx.rows() {
        let Some(r) = role(&u.split) else { continue };
        let earlier_roles: &[SplitRole] = match r {
            SplitRole::Train => continue,
            SplitRole::Dev => &[SplitRole::Train],
            SplitRole::Test => &[SplitRole::Train, SplitRole::Dev],
        };
        for other_role in earlier_roles {
            if let Some(&j) = first.get(&(t.leak_key.as_str(), *other_role)) {
                let other = &ctx.corpus.utterances[j];
                out.push(text_finding(
                    u,
                    Code::SplitLeakage,
                    Severity::Warning,
                    format!(
                        "the same sentence as {} in {} ({:?}): {} WER on it measures memory, not recognition; move one of them",
                        other.id,
                        other.split.as_deref().unwrap_or("?"),
                        t.normalized,
                        u.split.as_deref().unwrap_or("?")
                    ),
                ));
                break;
            }
        }
    }
    out
}

fn speaker_overlap(ctx: &Ctx<'_>) -> Vec<Finding> {
    // speaker -> role -> (utterance count, first utterance, split name)
    let mut by_speaker: BTreeMap<&str, BTreeMap<SplitRole, (u64, usize)>> = BTreeMap::new();
    for (i, u) in ctx.corpus.utterances.iter().enumerate() {
        if let (Some(s), Some(r)) = (u.speaker.as_deref(), role(&u.split)) {
            let e = by_speaker.entry(s).or_default().entry(r).or_insert((0, i));
            e.0 += 1;
        }
    }
    let mut out = Vec::new();
    for (speaker, roles) in &by_speaker {
        if roles.len() < 2 {
            continue;
        }
        // Report on the later split(s): dev when also in train, test when also in train/dev.
        let first_role = *roles.keys().next().unwrap_or(&SplitRole::Train);
        let (first_count, first_i) = roles[&first_role];
        for (r, (count, i)) in roles.iter().skip(1) {
            let u = &ctx.corpus.utterances[*i];
            let here = u.split.as_deref().unwrap_or(r.as_str());
            let there = ctx.corpus.utterances[first_i]
                .split
                .as_deref()
                .unwrap_or(first_role.as_str());
            out.push(text_finding(
                u,
                Code::SpeakerOverlap,
                Severity::Warning,
                format!(
                    "speaker {speaker} has {count} utterance(s) in {here} and {first_count} in {there}; this corpus promises speaker-disjoint splits, so {here} results would flatter the model"
                ),
            ));
        }
    }
    out
}

fn duplicate_audio(ctx: &Ctx<'_>) -> Vec<Finding> {
    let mut first: HashMap<u128, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, (u, facts, t)) in ctx.rows().enumerate() {
        let DeepOutcome::Ok { stats, .. } = &facts.deep else {
            continue;
        };
        if stats.num_frames == 0 {
            continue;
        }
        match first.get(&stats.content_hash) {
            None => {
                first.insert(stats.content_hash, i);
            }
            Some(&j) => {
                let other = &ctx.corpus.utterances[j];
                let same_text = ctx.texts[j].leak_key == t.leak_key;
                let (severity, what) = if same_text {
                    (
                        Severity::Warning,
                        "with the same transcript: a duplicated row".to_string(),
                    )
                } else {
                    (
                        Severity::Error,
                        format!(
                            "but different transcripts ({:?} vs {:?}): at least one label is wrong",
                            t.normalized, ctx.texts[j].normalized
                        ),
                    )
                };
                out.push(audio_finding(
                    u,
                    Code::DuplicateAudio,
                    severity,
                    format!(
                        "decoded audio identical to {} ({}) {what}",
                        other.id,
                        other.audio_path.display()
                    ),
                ));
            }
        }
    }
    out
}
