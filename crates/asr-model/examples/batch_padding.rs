//! What per-clip batches cost and what they change in training, for group-norm
//! feature encoders (wav2vec2-base, HuBERT-base); see `asr_model::BatchPadding`.
//!
//!     cargo run --release -p asr-model --example batch_padding -- time [REPS] [THREADS]
//!     cargo run --release -p asr-model --example batch_padding -- time-front-end [REPS] [THREADS]
//!     cargo run --release -p asr-model --example batch_padding -- train [STEPS] [THREADS]
//!
//! `time`: the `base` preset (random weights) on a batch of 4 clips of 4, 3, 2.5 and
//! 1.5 s. Median seconds of an inference forward per clip (`forward_padded`, train
//! false) against transformers' batched forward (group norm over the padded rows, no
//! attention mask: `forward_t` without a mask), and of a training step (forward, CTC
//! loss, backward) under `BatchPadding::PerClip` and `BatchPadding::Transformers`.
//!
//! `train`: a small model with a group-norm feature encoder (5 convs of 16 channels,
//! 100 frames per second, 2 pre-LN layers of width 64) trained from one seed on
//! synthetic "speech": each token a tone burst of its own pitch, 2 to 5 tokens per
//! clip, clips of about 0.2-1 s in batches of 8 whose lengths differ, so that much of
//! each batch is padding. The same data, init and AdamW steps under both paddings;
//! then held-out CTC loss and token error rate, decoded per clip (as `eval` and
//! `transcribe` run) and, for the transformers-trained model, also as it was trained
//! (padded statistics).
use std::time::Instant;

use asr_model::rand::{Rng, SeedableRng};
use asr_model::{BatchPadding, Config, CtcModel, FeatExtractNorm, Preset};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn arg(n: usize, default: i64) -> i64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Median seconds of `a` and of `b` over `reps` runs each after one warm-up run,
/// interleaved so that load from other processes affects both alike.
fn timed_pair(
    reps: i64,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<(f64, f64)> {
    a()?;
    b()?;
    let (mut times_a, mut times_b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        a()?;
        times_a.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        b()?;
        times_b.push(start.elapsed().as_secs_f64());
    }
    Ok((median(times_a), median(times_b)))
}

/// One training step (forward, CTC loss, backward; gradients cleared).
fn train_step(model: &CtcModel, input: &Tensor, lengths: &[i64], labels: &Tensor) -> Result<()> {
    tch::manual_seed(1);
    let output = model.forward_padded(input, lengths, true, None)?;
    model.ctc_loss(&output, labels)?.backward();
    for (_, p) in model.trainable_parameters() {
        let mut grad = p.grad();
        if grad.defined() {
            let _ = grad.zero_();
        }
    }
    Ok(())
}

/// A zero-padded batch `[B, max]` of unit-variance noise clips of `lengths` samples.
fn noise_batch(lengths: &[i64]) -> Tensor {
    let max = *lengths.iter().max().unwrap_or(&1);
    let batch = Tensor::zeros([lengths.len() as i64, max], (Kind::Float, Device::Cpu));
    for (i, &len) in lengths.iter().enumerate() {
        let clip = Tensor::randn([len], (Kind::Float, Device::Cpu));
        let mut row = batch.get(i as i64).narrow(0, 0, len);
        row.copy_(&clip);
    }
    batch
}

/// `front_end`: the base conv stack only (no transformer layers, width 64), where the
/// group norm's share of the work is largest.
fn time_base(reps: i64, front_end: bool) -> Result<()> {
    tch::manual_seed(0);
    let mut config = Preset::Base.config(32);
    config.layerdrop = 0.0;
    if front_end {
        config.num_hidden_layers = 0;
        config.hidden_size = 64;
        config.num_attention_heads = 4;
        config.num_conv_pos_embedding_groups = 4;
    }
    let what = if front_end { "base front end" } else { "base" };
    let per_clip_model = CtcModel::from_config(config.clone(), Device::Cpu)?;
    tch::manual_seed(0);
    let mut padded_model = CtcModel::from_config(config, Device::Cpu)?;
    padded_model.set_training_padding(BatchPadding::Transformers);
    let lengths = [64_000i64, 48_000, 40_000, 24_000];
    let input = noise_batch(&lengths);
    let labels = Tensor::randint_low(3, 32, [4, 20], (Kind::Int64, Device::Cpu));
    let (per_clip, padded) = timed_pair(
        reps,
        || {
            tch::no_grad(|| per_clip_model.forward_padded(&input, &lengths, false, None))?;
            Ok(())
        },
        || {
            tch::no_grad(|| padded_model.forward_t(&input, None, false, None))?;
            Ok(())
        },
    )?;
    println!(
        "inference forward, {what}, 4 clips (4/3/2.5/1.5 s): per-clip {per_clip:.3} s, padded statistics {padded:.3} s ({:+.1}%)",
        100.0 * (per_clip / padded - 1.0)
    );
    let (per_clip, padded) = timed_pair(
        reps,
        || train_step(&per_clip_model, &input, &lengths, &labels),
        || train_step(&padded_model, &input, &lengths, &labels),
    )?;
    println!(
        "training step, {what}, same batch: per-clip {per_clip:.3} s, transformers padding {padded:.3} s ({:+.1}%)",
        100.0 * (per_clip / padded - 1.0)
    );
    Ok(())
}

const TOKENS: i64 = 6; // ids 1..=6; 0 is the blank

/// One synthetic clip: its samples (normalized) and its token ids.
fn clip(rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<i64>) {
    let n = rng.gen_range(2..=5);
    let mut audio = Vec::new();
    let mut labels = Vec::new();
    let gain = rng.gen_range(0.3f32..1.0);
    for _ in 0..n {
        let token = rng.gen_range(1..=TOKENS);
        labels.push(token);
        let silence = rng.gen_range(80..480);
        audio.extend((0..silence).map(|_| rng.gen_range(-0.02f32..0.02)));
        let pitch = 250.0 + 180.0 * token as f32;
        let burst = rng.gen_range(800..1_600);
        audio.extend((0..burst).map(|t| {
            let phase = 2.0 * std::f32::consts::PI * pitch * t as f32 / 16_000.0;
            gain * phase.sin() + rng.gen_range(-0.05f32..0.05)
        }));
    }
    audio.extend((0..rng.gen_range(80..480)).map(|_| rng.gen_range(-0.02f32..0.02)));
    let mean = audio.iter().sum::<f32>() / audio.len() as f32;
    let var = audio.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / audio.len() as f32;
    let inv = 1.0 / (var + 1e-7).sqrt();
    (audio.iter().map(|x| (x - mean) * inv).collect(), labels)
}

struct Batch {
    input: Tensor,
    lengths: Vec<i64>,
    labels: Tensor,
    label_ids: Vec<Vec<i64>>,
}

fn batch(rng: &mut ChaCha8Rng, size: usize) -> Batch {
    let clips: Vec<_> = (0..size).map(|_| clip(rng)).collect();
    let max = clips.iter().map(|c| c.0.len()).max().unwrap_or(1);
    let max_labels = clips.iter().map(|c| c.1.len()).max().unwrap_or(1);
    let mut flat = vec![0f32; size * max];
    let mut labels = vec![-100i64; size * max_labels];
    for (i, (audio, ids)) in clips.iter().enumerate() {
        flat[i * max..i * max + audio.len()].copy_from_slice(audio);
        labels[i * max_labels..i * max_labels + ids.len()].copy_from_slice(ids);
    }
    Batch {
        input: Tensor::from_slice(&flat).view([size as i64, max as i64]),
        lengths: clips.iter().map(|c| c.0.len() as i64).collect(),
        labels: Tensor::from_slice(&labels).view([size as i64, max_labels as i64]),
        label_ids: clips.into_iter().map(|c| c.1).collect(),
    }
}

fn small_group_norm_config() -> Config {
    Config {
        vocab_size: TOKENS + 1,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        conv_dim: vec![16; 5],
        conv_kernel: vec![10, 3, 3, 3, 2],
        conv_stride: vec![5, 2, 2, 2, 2],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 4,
        feat_extract_norm: FeatExtractNorm::Group,
        do_stable_layer_norm: true,
        hidden_dropout: 0.0,
        activation_dropout: 0.0,
        attention_dropout: 0.0,
        final_dropout: 0.0,
        layerdrop: 0.0,
        mask_time_prob: 0.0,
        ctc_loss_reduction: asr_model::CtcLossReduction::Mean,
        ..Config::default()
    }
}

fn edit_distance(a: &[i64], b: &[i64]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(x != y));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Mean CTC loss and token error rate of `model` on `held_out`; `as_trained_padded`
/// runs transformers' batched forward instead of the per-clip one.
fn evaluate(model: &CtcModel, held_out: &[Batch], as_trained_padded: bool) -> Result<(f64, f64)> {
    let (mut loss, mut errors, mut tokens) = (0.0, 0, 0);
    for b in held_out {
        let output = tch::no_grad(|| {
            if as_trained_padded {
                let mut out = model.forward_t(&b.input, None, false, None)?;
                out.output_lengths = b.lengths.iter().map(|l| model.num_frames(*l)).collect();
                Ok(out)
            } else {
                model.forward_padded(&b.input, &b.lengths, false, None)
            }
        })?;
        loss += model.ctc_loss(&output, &b.labels)?.double_value(&[]);
        for (ids, reference) in asr_model::greedy_ids(&output.logits, &output.output_lengths)
            .iter()
            .zip(&b.label_ids)
        {
            let mut hyp: Vec<i64> = ids.clone();
            hyp.dedup();
            hyp.retain(|t| *t != 0);
            errors += edit_distance(&hyp, reference);
            tokens += reference.len();
        }
    }
    Ok((loss / held_out.len() as f64, errors as f64 / tokens as f64))
}

/// AdamW (lr 2e-3, betas 0.9/0.98, weight decay 0.01) for `steps` steps on fresh
/// batches drawn from a fixed seed.
fn train(padding: BatchPadding, steps: i64, held_out: &[Batch]) -> Result<()> {
    tch::manual_seed(0);
    let mut model = CtcModel::from_config(small_group_norm_config(), Device::Cpu)?;
    model.set_training_padding(padding);
    let params: Vec<Tensor> = model
        .trainable_parameters()
        .iter()
        .map(|(_, p)| p.shallow_clone())
        .collect();
    let mut m: Vec<Tensor> = params.iter().map(Tensor::zeros_like).collect();
    let mut v: Vec<Tensor> = params.iter().map(Tensor::zeros_like).collect();
    let mut data = ChaCha8Rng::seed_from_u64(1);
    let (lr, b1, b2, wd) = (5e-3, 0.9, 0.98, 0.01);
    let start = Instant::now();
    for step in 1..=steps {
        let b = batch(&mut data, 8);
        let output = model.forward_padded(&b.input, &b.lengths, true, None)?;
        let loss = model.ctc_loss(&output, &b.labels)?;
        loss.backward();
        tch::no_grad(|| {
            let warm = (step as f64 / 50.0).min(1.0);
            for ((p, m), v) in params.iter().zip(&mut m).zip(&mut v) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + g.square() * (1.0 - b2);
                let m_hat = &*m / (1.0 - b1.powi(step as i32));
                let v_hat = &*v / (1.0 - b2.powi(step as i32));
                let update = m_hat / (v_hat.sqrt() + 1e-8) + p * wd;
                let mut p = p.shallow_clone();
                let _ = p.g_sub_(&(update * (lr * warm)));
                let _ = g.zero_();
            }
        });
        if step % 100 == 0 || step == steps {
            let (eval_loss, ter) = evaluate(&model, held_out, false)?;
            println!(
                "{padding:?}\tstep {step}\ttrain loss {:.3}\theld-out loss {eval_loss:.3}\tTER {ter:.3}\t{:.0} s",
                loss.double_value(&[]),
                start.elapsed().as_secs_f64()
            );
        }
    }
    if padding == BatchPadding::Transformers {
        let (eval_loss, ter) = evaluate(&model, held_out, true)?;
        println!("{padding:?}\tdecoded as trained (padded statistics)\theld-out loss {eval_loss:.3}\tTER {ter:.3}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "time".into());
    tch::set_num_threads(arg(3, 2) as i32);
    tch::set_num_interop_threads(1);
    match mode.as_str() {
        "time" => time_base(arg(2, 3), false),
        "time-front-end" => time_base(arg(2, 5), true),
        "train" => {
            let mut rng = ChaCha8Rng::seed_from_u64(99);
            let held_out: Vec<Batch> = (0..8).map(|_| batch(&mut rng, 8)).collect();
            for padding in [BatchPadding::PerClip, BatchPadding::Transformers] {
                train(padding, arg(2, 400), &held_out)?;
            }
            Ok(())
        }
        other => Err(format!("unknown mode {other}: time, time-front-end or train").into()),
    }
}
