//! The local launcher (`--nproc-per-node N`) with small shell workers: the variables each
//! worker gets, the first failure stopping the job and giving its exit code, and signals
//! passed on. One launch at a time: the launcher's signal handling is per process.
use asr_dist::launch::{run_local_workers, LaunchOutcome, WorkerFailure};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

static ONE_LAUNCH_AT_A_TIME: Mutex<()> = Mutex::new(());

fn launch(nproc: usize, script: &str, dir: &Path) -> (LaunchOutcome, Duration) {
    let args: Vec<OsString> = vec![
        "-c".into(),
        script.into(),
        "worker".into(),
        dir.as_os_str().to_owned(),
    ];
    let start = Instant::now();
    let outcome =
        run_local_workers(nproc, Path::new("sh"), &args, Duration::from_secs(5)).expect("launch");
    (outcome, start.elapsed())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("asr-dist-launch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn each_worker_gets_its_rank_and_the_rendezvous_variables() {
    let _one = ONE_LAUNCH_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("env");
    let script = r#"echo "$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT" > "$1/$RANK""#;
    let (outcome, _) = launch(3, script, &dir);
    assert_eq!(
        outcome,
        LaunchOutcome {
            exit_code: 0,
            first_failure: None
        }
    );
    let lines: Vec<String> = (0..3)
        .map(|r| std::fs::read_to_string(dir.join(r.to_string())).unwrap())
        .collect();
    let port = lines[0].split_whitespace().last().unwrap().to_string();
    assert!(port.parse::<u16>().unwrap() > 0);
    for (r, line) in lines.iter().enumerate() {
        assert_eq!(line.trim(), format!("{r} {r} 3 3 127.0.0.1 {port}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_worker_stops_the_others_and_gives_the_exit_code() {
    let _one = ONE_LAUNCH_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("fail");
    // Rank 1 fails at once; the others would run for a minute.
    let script = r#"if [ "$RANK" = 1 ]; then exit 3; fi; exec sleep 60"#;
    let (outcome, elapsed) = launch(3, script, &dir);
    assert_eq!(
        outcome,
        LaunchOutcome {
            exit_code: 3,
            first_failure: Some(WorkerFailure {
                rank: 1,
                status: "exit status: 3".into()
            }),
        }
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the others were not stopped: {elapsed:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_worker_killed_by_a_signal_gives_128_plus_its_number() {
    let _one = ONE_LAUNCH_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("kill");
    let script = r#"if [ "$RANK" = 0 ]; then kill -9 $$; fi; exec sleep 60"#;
    let (outcome, elapsed) = launch(2, script, &dir);
    assert_eq!(outcome.exit_code, 137, "{outcome:?}");
    assert_eq!(outcome.first_failure.unwrap().rank, 0);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_signal_to_the_launcher_reaches_every_worker() {
    let _one = ONE_LAUNCH_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("signal");
    // Each worker saves "a checkpoint" on SIGUSR1 (Slurm's preemption warning) and exits 0;
    // without the signal it gives up after 30 s with status 4.
    let script = r#"trap 'echo saved > "$1/saved$RANK"; exit 0' USR1; echo > "$1/ready$RANK"; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 4"#;
    let ready: Vec<PathBuf> = (0..2).map(|r| dir.join(format!("ready{r}"))).collect();
    let sender = thread::spawn(move || {
        let start = Instant::now();
        while !ready.iter().all(|p| p.exists()) && start.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) on this very process; the launcher has installed its handler
        // before starting the workers that wrote the ready files.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
    });
    let (outcome, _) = launch(2, script, &dir);
    sender.join().unwrap();
    assert_eq!(
        outcome,
        LaunchOutcome {
            exit_code: 0,
            first_failure: None
        }
    );
    for r in 0..2 {
        assert!(
            dir.join(format!("saved{r}")).exists(),
            "worker {r} did not get SIGUSR1"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
