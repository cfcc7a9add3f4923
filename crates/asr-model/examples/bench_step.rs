//! One training step (forward, CTC loss, backward) of the `base` preset, timed; the
//! Rust side of `tools/bench/model-step.sh`, which runs transformers on the same batch
//! shape beside it.
//!
//!     cargo run --release -p asr-model --example bench_step -- BATCH SECONDS STEPS THREADS
//!
//! Prints one tab-separated line: `asr-model batch seconds threads median_step_s min_step_s`.
use std::time::Instant;

use asr_model::rand::SeedableRng;
use asr_model::{CtcModel, Preset};
use tch::{Device, Kind, Tensor};

fn arg(n: usize, default: i64) -> i64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (batch, seconds, steps, threads) = (arg(1, 2), arg(2, 4), arg(3, 4), arg(4, 2));
    tch::set_num_threads(threads as i32);
    tch::set_num_interop_threads(1);
    tch::manual_seed(0);
    let mut config = Preset::Base.config(32);
    config.layerdrop = 0.0; // every step runs all 12 layers, as in the Python peer
    let model = CtcModel::from_config(config, Device::Cpu)?;
    let samples = seconds * 16_000;
    let input = Tensor::randn([batch, samples], (Kind::Float, Device::Cpu));
    let labels = Tensor::randint_low(3, 32, [batch, 50], (Kind::Int64, Device::Cpu));
    let lengths = vec![samples; batch as usize];
    let mut times = Vec::new();
    for step in 0..=steps {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step as u64);
        let start = Instant::now();
        let output = model.forward_padded(&input, &lengths, true, Some(&mut rng))?;
        let loss = model.ctc_loss(&output, &labels)?;
        loss.backward();
        for (_, p) in model.trainable_parameters() {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
        if step > 0 {
            times.push(start.elapsed().as_secs_f64()); // step 0 is warm-up
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "asr-model\t{batch}\t{seconds}\t{threads}\t{median:.4}\t{:.4}",
        times[0]
    );
    Ok(())
}
