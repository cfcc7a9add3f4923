//! `asr-dist-check`: run it as every rank of a job (`torchrun --no-python`, `srun`, or by
//! hand with the `env://` variables) before a long training run, to check that the ranks
//! meet and that all_reduce, broadcast, all_gather and barrier give the right results.
//! Prints one line per round and rank; exits non-zero on the first failure.
//!
//! ```text
//! asr-dist-check [--rounds N] [--numel N] [--timeout-secs S] [--nproc-per-node N]
//!                [--device cpu|cuda]
//! ```
//!
//! With `--nproc-per-node N` it starts N local workers of itself (asr_dist::launch).
//! With `--device cuda` the all-reduce, broadcast and flat mean run on `cuda:LOCAL_RANK`
//! through NCCL (`libasr_dist_nccl.so`, built by `tools/install-libtorch.sh --cuda`); the
//! all-gather of ids stays on the CPU (Gloo), as in training.
//!
//! For tests: `ASR_DIST_CHECK_ROLL_CALL_DELAY_MS=MS` makes this rank wait MS ms after a
//! failed round before it joins the roll call (a rank that notices the failure late).
use asr_dist::{Backend, ProcessGroup, Rendezvous};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

struct Options {
    /// `--device cuda`: the tensors on cuda:LOCAL_RANK, through NCCL.
    cuda: bool,
    rounds: usize,
    numel: i64,
    timeout: Duration,
    /// `--nproc-per-node N`: launch N local workers instead of being one.
    nproc: Option<usize>,
    /// The arguments for those workers (all but `--nproc-per-node N`).
    worker_args: Vec<OsString>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        cuda: false,
        rounds: 1,
        numel: 1024,
        timeout: Duration::from_secs(60),
        nproc: None,
        worker_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--device" {
            options.cuda = match value.as_str() {
                "cpu" => false,
                "cuda" => true,
                _ => return Err(format!("--device {value}: cpu or cuda")),
            };
            options.worker_args.extend([flag.into(), value.into()]);
            continue;
        }
        let number = value
            .parse::<u64>()
            .map_err(|_| format!("{flag} {value}: not a whole number"))?;
        if flag == "--nproc-per-node" && number > 0 {
            options.nproc = Some(number as usize);
            continue;
        }
        options
            .worker_args
            .extend([flag.clone().into(), value.clone().into()]);
        match flag.as_str() {
            "--rounds" => options.rounds = number as usize,
            "--numel" if number > 0 => options.numel = number as i64,
            "--timeout-secs" if number > 0 => options.timeout = Duration::from_secs(number),
            _ => return Err(format!("unknown option or bad value: {flag} {value} (options: --rounds N, --numel N, --timeout-secs S, --nproc-per-node N, --device cpu|cuda)")),
        }
    }
    Ok(options)
}

/// One round of every collective; returns the line to print, or what disagreed.
fn round(group: &ProcessGroup, k: usize, numel: i64, device: Device) -> Result<String, String> {
    let (rank, world) = (group.rank(), group.world_size());
    let mut summed = Tensor::full([numel], (rank + 1) as f64, (Kind::Float, device));
    group
        .all_reduce_sum(&mut summed)
        .map_err(|e| e.to_string())?;
    let sum = summed.max().double_value(&[]);
    let want_sum = (world * (world + 1) / 2) as f64;
    if sum != want_sum || summed.min().double_value(&[]) != want_sum {
        return Err(format!(
            "all_reduce gave {sum}, expected {want_sum} everywhere"
        ));
    }
    let root = k % world;
    let mine = if rank == root {
        (root * 10 + k) as f64
    } else {
        -1.0
    };
    let mut shared = Tensor::full([numel], mine, (Kind::Float, device));
    group
        .broadcast(&mut shared, root)
        .map_err(|e| e.to_string())?;
    let got = shared.min().double_value(&[]);
    if got != (root * 10 + k) as f64 || shared.max().double_value(&[]) != got {
        return Err(format!("broadcast from rank {root} gave {got}"));
    }
    let ids: Vec<i64> = (0..=rank).map(|i| (rank * 100 + i + k) as i64).collect();
    let gathered = group.all_gather_i64(&ids).map_err(|e| e.to_string())?;
    let want: Vec<Vec<i64>> = (0..world)
        .map(|r| (0..=r).map(|i| (r * 100 + i + k) as i64).collect())
        .collect();
    if gathered != want {
        return Err(format!("all_gather gave {gathered:?}, expected {want:?}"));
    }
    let means = flat_mean(group, device)?;
    group.barrier().map_err(|e| e.to_string())?;
    Ok(format!(
        "rank {rank} round {k}: all_reduce={sum} broadcast={got} all_gather={gathered:?} \
         flat_mean=[{}, {}]",
        means[0], means[1]
    ))
}

/// Two "gradients" (one of them a transposed, non-contiguous view) averaged in one flat
/// all-reduce: rank r holds r+1 and 2(r+1).
fn flat_mean(group: &ProcessGroup, device: Device) -> Result<[f64; 2], String> {
    let (rank, world) = (group.rank() as f64, group.world_size() as f64);
    let options = (Kind::Float, device);
    let mut grads = [
        Tensor::full([3], rank + 1.0, options),
        Tensor::full([2, 3], 2.0 * (rank + 1.0), options).transpose(0, 1),
    ];
    group
        .all_reduce_mean_flat(&mut grads)
        .map_err(|e| e.to_string())?;
    let want = [(world + 1.0) / 2.0, world + 1.0];
    for (grad, want) in grads.iter().zip(want) {
        let (low, high) = (grad.min().double_value(&[]), grad.max().double_value(&[]));
        if low != want || high != want {
            return Err(format!(
                "all_reduce_mean_flat gave {low}..{high}, expected {want}"
            ));
        }
    }
    Ok(want)
}

/// After a failed round: which ranks are gone, in words.
fn roll_call(group: &ProcessGroup, wait: Duration) -> String {
    match group.missing_ranks(wait) {
        Ok(missing) if missing.is_empty() => "every rank answered the roll call after it".into(),
        Ok(missing) => {
            let ranks: Vec<String> = missing.iter().map(|r| r.to_string()).collect();
            format!(
                "missing rank(s) (dead or hung, no answer to the roll call within {wait:?}): {}",
                ranks.join(", ")
            )
        }
        Err(e) => e.to_string(),
    }
}

/// Joins the job and runs the rounds. After a failed round the surviving ranks hold a roll
/// call in the job's store, which names the ranks that are gone.
fn run(options: &Options) -> Result<(), String> {
    let rdzv = Rendezvous::from_env().map_err(|e| e.to_string())?;
    let (backend, device) = if options.cuda {
        (Backend::Nccl, Device::Cuda(rdzv.local_rank))
    } else {
        (Backend::Gloo, Device::Cpu)
    };
    let group = ProcessGroup::new(&rdzv, backend, options.timeout).map_err(|e| e.to_string())?;
    println!(
        "rank {} of {}: joined {}:{} ({backend:?}, {device:?})",
        rdzv.rank, rdzv.world_size, rdzv.master_addr, rdzv.master_port
    );
    for k in 0..options.rounds {
        match round(&group, k, options.numel, device) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                if let Some(ms) = std::env::var("ASR_DIST_CHECK_ROLL_CALL_DELAY_MS")
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                let who = roll_call(&group, options.timeout.min(Duration::from_secs(5)));
                return Err(format!("{e}\n{who}"));
            }
        }
    }
    println!(
        "rank {} of {}: {} rounds agree, comm_s={:.4}",
        rdzv.rank,
        rdzv.world_size,
        options.rounds,
        group.take_comm_time().as_secs_f64()
    );
    Ok(())
}

/// The launcher: N workers of this program; its exit code is the first failure's.
fn launch(nproc: usize, args: &[OsString]) -> ExitCode {
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            eprintln!("error: cannot find this program to start its workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match asr_dist::launch::run_local_workers(nproc, &program, args, Duration::from_secs(30)) {
        Ok(outcome) => ExitCode::from(outcome.exit_code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(nproc) = options.nproc {
        return launch(nproc, &options.worker_args);
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
