//! `--nproc-per-node N` on one machine, as `torchrun --standalone` does: this process
//! becomes a launcher that starts N workers and supervises them.
//!
//! - Worker r gets `RANK=r`, `LOCAL_RANK=r`, `WORLD_SIZE=N`, `LOCAL_WORLD_SIZE=N`,
//!   `MASTER_ADDR=127.0.0.1` and `MASTER_PORT` (the launcher's own `MASTER_PORT` if set,
//!   else a free port), so [`crate::Rendezvous::from_env`] reads them as under torchrun.
//! - SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to the launcher are passed on to
//!   every worker once (the workers run in a process group of their own, so a Ctrl-C in
//!   the terminal reaches them only through the launcher). What a worker does with them is
//!   its own business (e.g. save a checkpoint at the next step and exit 0).
//! - When a worker fails (non-zero exit, or killed by a signal), the others get SIGTERM,
//!   and SIGKILL after `grace`; the launcher's exit code is that first failure's (128 +
//!   signal number for a signal), as torchrun reports the first failure. When every worker
//!   exits 0, so does the launcher.
use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Signals passed on to the workers.
const FORWARDED: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Bit `s` set: signal `s` arrived and is not passed on yet.
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn note_signal(signal: libc::c_int) {
    // Async-signal-safe: one atomic operation.
    PENDING.fetch_or(1 << signal, Ordering::SeqCst);
}

/// The first worker that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFailure {
    /// Its rank.
    pub rank: usize,
    /// Its exit status, in words ("exit status: 3", "signal: 9 (SIGKILL)").
    pub status: String,
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOutcome {
    /// The launcher's exit code: 0, or the first failure's.
    pub exit_code: i32,
    /// The first worker that failed, if any.
    pub first_failure: Option<WorkerFailure>,
}

/// Runs `nproc` workers of `program args` (see the module documentation) and waits for
/// them. Errors only when a worker cannot be started (the ones already started are
/// stopped first).
pub fn run_local_workers(
    nproc: usize,
    program: &Path,
    args: &[OsString],
    grace: Duration,
) -> io::Result<LaunchOutcome> {
    let port = match std::env::var("MASTER_PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
    {
        Some(port) => port,
        None => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
    };
    for signal in FORWARDED {
        // SAFETY: installs a handler that only does an atomic or.
        unsafe {
            libc::signal(
                signal,
                note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    let mut workers: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        match spawn_worker(program, args, rank, nproc, port) {
            Ok(child) => workers.push(Some(child)),
            Err(e) => {
                signal_all(&workers, libc::SIGKILL);
                for child in workers.iter_mut().flatten() {
                    let _ = child.wait();
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("starting worker {rank} ({}): {e}", program.display()),
                ));
            }
        }
    }
    Ok(supervise(workers, grace))
}

fn spawn_worker(
    program: &Path,
    args: &[OsString],
    rank: usize,
    nproc: usize,
    port: u16,
) -> io::Result<Child> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", nproc.to_string())
        .env("LOCAL_WORLD_SIZE", nproc.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env_remove("TORCHELASTIC_USE_AGENT_STORE")
        .process_group(0);
    command.spawn()
}

/// Waits for every worker, passing signals on, and stops the job at the first failure.
fn supervise(mut workers: Vec<Option<Child>>, grace: Duration) -> LaunchOutcome {
    let mut first_failure: Option<(usize, ExitStatus)> = None;
    let mut kill_at: Option<Instant> = None;
    let (mut terminated, mut killed) = (false, false);
    while workers.iter().any(Option::is_some) {
        let pending = PENDING.swap(0, Ordering::SeqCst);
        for signal in FORWARDED {
            if pending & (1 << signal) != 0 {
                signal_all(&workers, signal);
            }
        }
        for (rank, slot) in workers.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            *slot = None;
            if !status.success() && first_failure.is_none() {
                eprintln!(
                    "asr-dist: worker rank {rank} failed ({status}); stopping the other workers"
                );
                first_failure = Some((rank, status));
                kill_at = Some(Instant::now() + grace);
            }
        }
        if first_failure.is_some() && !terminated {
            signal_all(&workers, libc::SIGTERM);
            terminated = true;
        }
        if !killed && kill_at.is_some_and(|at| Instant::now() >= at) {
            signal_all(&workers, libc::SIGKILL);
            killed = true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let exit_code = first_failure
        .as_ref()
        .map_or(0, |(_, status)| exit_code_of(status));
    LaunchOutcome {
        exit_code,
        first_failure: first_failure.map(|(rank, status)| WorkerFailure {
            rank,
            status: status.to_string(),
        }),
    }
}

fn signal_all(workers: &[Option<Child>], signal: libc::c_int) {
    for child in workers.iter().flatten() {
        // SAFETY: kill(2) on a child we have not reaped yet (its pid is still ours).
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    }
}

/// A shell's convention: the exit code, or 128 + the signal number.
fn exit_code_of(status: &ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}
