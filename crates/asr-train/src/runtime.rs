//! Process-wide settings that make libtorch fast on a CPU, applied by the `asr-train`
//! binary at start-up (the library never changes them behind a caller's back).
//!
//! Two defaults of the C runtime cost a CPU training run a third of its time or more:
//!
//! - **glibc `malloc` returns large blocks to the kernel.** Allocations above 32 MB
//!   (a 40 s batch's first conv activations are 65 MB) are `mmap`ed and unmapped when
//!   freed, so every step faults in and zeroes the same pages again (on the reference
//!   configuration, 10% of the step time). [`keep_freed_memory`] stops that
//!   (`M_MMAP_MAX = 0`, no trimming): freed memory is reused by the next step. But
//!   batches of varying shapes then fragment the heap, and peak resident memory grows:
//!   100 steps of the issue-7 reference configuration (40 s batches, 2 threads) took
//!   1.17 s per step at 5.4 GB peak RSS with it, 1.28 s at 3.5 GB without. The binary
//!   therefore applies it only when asked (`ASR_KEEP_FREED_MEMORY=1`).
//! - **OpenMP threads spin while they wait.** libgomp (libtorch's OpenMP) lets idle
//!   worker threads spin for about 300,000 iterations before sleeping, and every
//!   libtorch operation is a parallel region that ends with a barrier. On a machine
//!   whose cores are shared with other work, a spinning thread burns the time slice
//!   its sibling needs, and a worker that lost its core stalls every barrier: with 2
//!   threads on 2 busy cores a training step took 3.6 times as long as with a short
//!   spin. libgomp reads `GOMP_SPINCOUNT` only when libtorch is loaded, before `main`,
//!   so [`reexec_with_openmp_settings`] starts the binary again with it set, unless
//!   the user set `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` themselves.

use std::ffi::OsString;

/// Spin iterations of an idle OpenMP thread before it sleeps (libgomp's default is
/// 300,000; this is a few tens of microseconds: enough to catch the next operation of
/// the same step, too little to starve another process).
pub const GOMP_SPINCOUNT: &str = "10000";

/// Keeps memory freed by libtorch in the process for reuse instead of returning large
/// blocks to the kernel (glibc `mallopt`; a no-op elsewhere). Call it before the first
/// large allocation. Returns whether the settings were applied.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at
        // any time (glibc takes its own lock).
        unsafe {
            let mmap = libc::mallopt(libc::M_MMAP_MAX, 0);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            mmap == 1 && trim == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The environment to add before libgomp initializes: `GOMP_SPINCOUNT` unless the
/// user already chose a wait policy or spin count (`OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`).
pub fn openmp_settings(
    env: impl Fn(&str) -> Option<OsString>,
) -> Vec<(&'static str, &'static str)> {
    if env("OMP_WAIT_POLICY").is_some() || env("GOMP_SPINCOUNT").is_some() {
        Vec::new()
    } else {
        vec![("GOMP_SPINCOUNT", GOMP_SPINCOUNT)]
    }
}

/// Replaces the process by the same binary with the same arguments and
/// [`openmp_settings`] added to its environment, when there is anything to add (the
/// new process sees the variable set and goes on). Returns only when nothing had to
/// change or the exec failed (then the run goes on with libgomp's defaults).
pub fn reexec_with_openmp_settings() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let settings = openmp_settings(|k| std::env::var_os(k));
        if settings.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        let mut command = std::process::Command::new(&exe);
        command.arg0(arg0).args(args).envs(settings);
        // exec returns only on failure.
        let _ = command.exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_choices_win() {
        let none = |_: &str| None;
        assert_eq!(
            openmp_settings(none),
            vec![("GOMP_SPINCOUNT", GOMP_SPINCOUNT)]
        );
        for key in ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"] {
            let set = |k: &str| (k == key).then(|| OsString::from("x"));
            assert!(openmp_settings(set).is_empty(), "{key}");
        }
    }

    #[test]
    fn freed_memory_setting_applies_on_glibc() {
        assert_eq!(
            keep_freed_memory(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }
}
