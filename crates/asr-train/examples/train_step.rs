//! One optimizer step of the training loop on a fixed random batch (forward, CTC loss,
//! backward, global grad norm, clipping, AdamW), timed per phase; for profiling the
//! step without the data pipeline (`perf record` this binary).
//!
//!     cargo run --release -p asr-train --example train_step -- CONFIG_JSON BATCH SECONDS STEPS THREADS
//!
//! CONFIG_JSON is a model config.json or a preset name. Prints per-phase medians and
//! one tab-separated summary line: `asr-train batch seconds threads median_step_s min_step_s`.
use std::time::Instant;

use asr_model::rand::SeedableRng;
use asr_model::CtcModel;
use asr_train::optim::{AdamW, AdamWConfig};
use tch::{Device, Kind, Tensor};

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The settings the asr-train binary applies at start-up.
    asr_train::runtime::reexec_with_openmp_settings();
    asr_train::runtime::keep_freed_memory();
    let spec: String = arg(1, "tiny".to_string());
    let (batch, seconds, steps, threads): (i64, f64, usize, i32) =
        (arg(2, 12), arg(3, 3.3), arg(4, 4), arg(5, 2));
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let vocab = asr_text::Vocab::from_chars("abcdefghijklmnopqrstuvwxyz'".chars());
    let model = CtcModel::load(&spec, Some(&vocab), Device::Cpu)?;
    let samples = (seconds * 16_000.0) as i64;
    let input = Tensor::randn([batch, samples], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint_low(
        3,
        vocab.len() as i64,
        [batch, 50],
        (Kind::Int64, Device::Cpu),
    );
    let lengths = vec![samples; batch as usize];
    let mut optimizer = AdamW::new(
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        model.trainable_parameters(),
    );
    let (mut fwd, mut bwd, mut opt, mut total) = (vec![], vec![], vec![], vec![]);
    for step in 0..=steps {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step as u64);
        let t0 = Instant::now();
        let output = model.forward_padded(&input, &lengths, true, Some(&mut rng))?;
        let loss = model.ctc_loss(&output, &labels)?;
        let _ = loss.double_value(&[]);
        let t1 = Instant::now();
        loss.backward();
        drop(output);
        let t2 = Instant::now();
        let norm = optimizer.grad_norm();
        if norm > 1.0 {
            optimizer.scale_grads(1.0 / norm);
        }
        optimizer.step(1e-4);
        optimizer.zero_grad();
        let t3 = Instant::now();
        if step > 0 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            opt.push((t3 - t2).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
    }
    eprintln!(
        "forward+loss {:.3} s, backward {:.3} s, norm+clip+adamw {:.3} s (medians)",
        median(&mut fwd),
        median(&mut bwd),
        median(&mut opt)
    );
    let m = median(&mut total);
    println!(
        "asr-train\t{batch}\t{seconds}\t{threads}\t{m:.4}\t{:.4}",
        total[0]
    );
    Ok(())
}
