//! Several ranks on 127.0.0.1, each one `asr-dist-check` process launched as torchrun
//! would (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): the collectives' results, and what
//! the surviving rank reports when a peer is killed, stalls or never comes.
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const CHECK: &str = env!("CARGO_BIN_EXE_asr-dist-check");

/// A port nobody listens on now (rank 0's TCPStore binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Rank {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: thread::JoinHandle<String>,
}

fn spawn_rank(rank: usize, world: usize, port: u16, ifname: Option<&str>, args: &[&str]) -> Rank {
    spawn_rank_with(rank, world, port, ifname, args, &[])
}

fn spawn_rank_with(
    rank: usize,
    world: usize,
    port: u16,
    ifname: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Rank {
    let mut command = Command::new(CHECK);
    command.envs(env.iter().copied());
    for var in [
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GLOO_SOCKET_IFNAME",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ] {
        command.env_remove(var);
    }
    command
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("TORCH_CPP_LOG_LEVEL", "FATAL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ifname) = ifname {
        command.env("GLOO_SOCKET_IFNAME", ifname);
    }
    let mut child = command.spawn().expect("start asr-dist-check");
    let (send, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Rank {
        child,
        lines,
        stdout: Vec::new(),
        stderr,
    }
}

impl Rank {
    /// Waits for the process to end (killing it and failing the test past `limit`);
    /// returns its status, its stdout lines and its stderr.
    fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "rank did not end within {limit:?}; stdout: {:?}",
                    self.stdout
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.stdout.extend(self.lines.try_iter());
        let stderr = self.stderr.join().unwrap();
        (status, self.stdout, stderr)
    }

    /// Waits until a stdout line contains `text`.
    fn wait_for_line(&mut self, text: &str, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(text);
                self.stdout.push(line);
                if found {
                    return;
                }
            }
        }
        panic!(
            "no line with {text:?} within {limit:?}; stdout: {:?}",
            self.stdout
        );
    }
}

fn run_job(world: usize, ifname: Option<&str>) -> Vec<Vec<String>> {
    let port = free_port();
    let ranks: Vec<Rank> = (0..world)
        .map(|r| {
            spawn_rank(
                r,
                world,
                port,
                ifname,
                &["--rounds", "3", "--timeout-secs", "60"],
            )
        })
        .collect();
    ranks
        .into_iter()
        .map(|rank| {
            let (status, stdout, stderr) = rank.finish(Duration::from_secs(120));
            assert!(status.success(), "{status}: {stderr}\n{stdout:?}");
            stdout
        })
        .collect()
}

/// The line asr-dist-check prints for round `k`: the sum of rank+1 over the ranks, the
/// value broadcast from rank k % world, every rank's list (rank r sends r+1 ids), and the
/// flat mean of rank r's r+1 and 2(r+1).
fn expected_round(rank: usize, world: usize, k: usize) -> String {
    let root = k % world;
    let lists: Vec<String> = (0..world)
        .map(|r| {
            let ids: Vec<String> = (0..=r).map(|i| (r * 100 + i + k).to_string()).collect();
            format!("[{}]", ids.join(", "))
        })
        .collect();
    let world_f = world as f64;
    format!(
        "rank {rank} round {k}: all_reduce={} broadcast={} all_gather=[{}] flat_mean=[{}, {}]",
        world * (world + 1) / 2,
        root * 10 + k,
        lists.join(", "),
        (world_f + 1.0) / 2.0,
        world_f + 1.0
    )
}

fn assert_rounds(outputs: &[Vec<String>]) {
    let world = outputs.len();
    for (rank, stdout) in outputs.iter().enumerate() {
        let rounds: Vec<&String> = stdout.iter().filter(|l| l.contains(" round ")).collect();
        let expected: Vec<String> = (0..3).map(|k| expected_round(rank, world, k)).collect();
        assert_eq!(rounds, expected.iter().collect::<Vec<_>>(), "rank {rank}");
        let last = stdout.last().unwrap();
        let comm_s = last
            .strip_prefix(&format!("rank {rank} of {world}: 3 rounds agree, comm_s="))
            .unwrap_or_else(|| panic!("last line: {last}"));
        assert!(comm_s.parse::<f64>().unwrap() > 0.0, "{last}");
    }
}

#[test]
fn two_ranks_agree_on_all_reduce_broadcast_and_all_gather() {
    assert_rounds(&run_job(2, None));
}

#[test]
fn three_ranks_on_the_interface_named_by_gloo_socket_ifname() {
    assert_rounds(&run_job(3, Some("lo")));
}

/// Starts `world` ranks looping over the collectives, waits until rank `watch` has done a
/// few rounds, then kills rank `victim` with SIGKILL; returns the survivors' status and
/// stderr, and how long they took to end after the kill.
fn kill_mid_run(world: usize, watch: usize, victim: usize) -> Vec<(ExitStatus, String, Duration)> {
    kill_mid_run_with(world, watch, victim, |_| &[])
}

/// [`kill_mid_run`], with extra environment variables per rank.
fn kill_mid_run_with(
    world: usize,
    watch: usize,
    victim: usize,
    env: impl Fn(usize) -> &'static [(&'static str, &'static str)],
) -> Vec<(ExitStatus, String, Duration)> {
    let port = free_port();
    let args = [
        "--rounds",
        "1000000",
        "--numel",
        "65536",
        "--timeout-secs",
        "120",
    ];
    let mut ranks: Vec<Rank> = (0..world)
        .map(|r| spawn_rank_with(r, world, port, None, &args, env(r)))
        .collect();
    ranks[watch].wait_for_line("round 2:", Duration::from_secs(60));
    let dead = ranks.remove(victim);
    let mut dead_child = dead.child;
    dead_child.kill().unwrap();
    let killed = Instant::now();
    let _ = dead_child.wait();
    ranks
        .into_iter()
        .map(|rank| {
            let (status, _, stderr) = rank.finish(Duration::from_secs(90));
            (status, stderr, killed.elapsed())
        })
        .collect()
}

/// What a survivor must report when rank 2 of 3 was killed mid-collective.
fn assert_names_the_dead_rank(survivors: Vec<(ExitStatus, String, Duration)>) {
    for (survivor, (status, stderr, elapsed)) in [0, 1].into_iter().zip(survivors) {
        assert!(!status.success(), "rank {survivor} should fail: {stderr}");
        assert!(
            stderr.contains(&format!("failed on rank {survivor} of 3")),
            "{stderr}"
        );
        assert!(
            stderr.contains("by peer"),
            "no peer failure named: {stderr}"
        );
        assert!(
            stderr.contains("no answer to the roll call within 5s): 2\n"),
            "{stderr}"
        );
        // Far below the 120 s timeout: the closed connection is noticed at once, then the
        // roll call waits its 5 s.
        assert!(
            elapsed < Duration::from_secs(40),
            "took {elapsed:?}: {stderr}"
        );
    }
}

#[test]
fn a_rank_killed_mid_collective_fails_the_others_which_name_it() {
    assert_names_the_dead_rank(kill_mid_run(3, 0, 2));
}

/// Rank 0 serves the store. When rank 1 joins the roll call later than rank 0, even
/// later than rank 0's whole 5-s wait, rank 0 must not exit (taking the store with it)
/// while rank 1 still needs it: rank 1 then said "the job's store cannot be reached"
/// instead of naming rank 2 (a random CI failure on a loaded machine).
#[test]
fn a_survivor_late_to_the_roll_call_still_names_the_dead_rank() {
    assert_names_the_dead_rank(kill_mid_run_with(3, 0, 2, |rank| {
        if rank == 1 {
            &[("ASR_DIST_CHECK_ROLL_CALL_DELAY_MS", "6500")]
        } else {
            &[]
        }
    }));
}

#[test]
fn killing_rank_0_which_serves_the_store_fails_the_others() {
    let results = kill_mid_run(2, 1, 0);
    let (status, stderr, elapsed) = &results[0];
    assert!(!status.success(), "rank 1 should fail: {stderr}");
    assert!(stderr.contains("failed on rank 1 of 2"), "{stderr}");
    assert!(
        stderr.contains("the job's store cannot be reached"),
        "{stderr}"
    );
    assert!(
        *elapsed < Duration::from_secs(40),
        "took {elapsed:?}: {stderr}"
    );
}

#[test]
fn a_stalled_rank_makes_the_other_fail_at_the_timeout() {
    let port = free_port();
    let args = [
        "--rounds",
        "1000000",
        "--numel",
        "1024",
        "--timeout-secs",
        "8",
    ];
    let mut rank0 = spawn_rank(0, 2, port, None, &args);
    let mut rank1 = spawn_rank(1, 2, port, None, &args);
    rank0.wait_for_line("round 2:", Duration::from_secs(60));
    // Alive (its sockets stay open) but taking no part: only the timeout can tell.
    // SAFETY: a plain kill(2) on our own child's pid.
    let stopped = unsafe { libc::kill(rank1.child.id() as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(stopped, 0);
    let start = Instant::now();
    let (status, _, stderr) = rank0.finish(Duration::from_secs(90));
    let elapsed = start.elapsed();
    rank1.child.kill().unwrap();
    let _ = rank1.finish(Duration::from_secs(10));
    assert!(!status.success(), "rank 0 should fail: {stderr}");
    assert!(
        stderr.contains("failed on rank 0 of 2") && stderr.contains("Timed out"),
        "{stderr}"
    );
    assert!(stderr.contains("8s timeout"), "{stderr}");
    assert!(
        stderr.contains("no answer to the roll call within 5s): 1\n"),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

#[test]
fn a_rank_that_never_comes_fails_the_rendezvous() {
    let rank0 = spawn_rank(0, 2, free_port(), None, &["--timeout-secs", "2"]);
    let (status, stdout, stderr) = rank0.finish(Duration::from_secs(60));
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(
        stderr.contains("rendezvous of rank 0 of 2 at 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("1/2 clients joined"), "{stderr}");
    assert!(
        !stderr.contains("frame #"),
        "C++ backtrace in the message: {stderr}"
    );
}

#[test]
fn an_inconsistent_launch_names_the_variable() {
    let rank = spawn_rank(2, 2, free_port(), None, &[]);
    let (status, _, stderr) = rank.finish(Duration::from_secs(30));
    assert!(!status.success());
    assert!(
        stderr.contains("RANK=2 must be below WORLD_SIZE=2"),
        "{stderr}"
    );
}

#[test]
fn nproc_per_node_launches_workers_that_meet() {
    let output = Command::new(CHECK)
        .args([
            "--nproc-per-node",
            "2",
            "--rounds",
            "3",
            "--timeout-secs",
            "60",
        ])
        .env_remove("MASTER_PORT")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env("TORCH_CPP_LOG_LEVEL", "FATAL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: Vec<Vec<String>> = (0..2)
        .map(|r| {
            let prefix = format!("rank {r} ");
            stdout
                .lines()
                .filter(|l| l.starts_with(&prefix))
                .map(String::from)
                .collect()
        })
        .collect();
    assert_rounds(&outputs);
}

/// Two ranks of `asr-dist-check --device cuda` (NCCL on cuda:LOCAL_RANK) with `env`:
/// each rank's status, stdout and stderr.
fn run_cuda_job(env: &[(&str, &str)]) -> Vec<(ExitStatus, Vec<String>, String)> {
    let port = free_port();
    let args = ["--rounds", "3", "--timeout-secs", "60", "--device", "cuda"];
    let ranks: Vec<Rank> = (0..2)
        .map(|r| spawn_rank_with(r, 2, port, None, &args, env))
        .collect();
    ranks
        .into_iter()
        .map(|rank| rank.finish(Duration::from_secs(120)))
        .collect()
}

#[test]
fn cuda_ranks_without_the_nccl_library_name_it_and_the_command_that_builds_it() {
    let missing = "/nonexistent/lib/libasr_dist_nccl.so";
    for (rank, (status, stdout, stderr)) in run_cuda_job(&[("ASR_DIST_NCCL_LIB", missing)])
        .into_iter()
        .enumerate()
    {
        assert_eq!(status.code(), Some(1), "rank {rank}: {status}: {stderr}");
        assert!(stdout.is_empty(), "{stdout:?}");
        assert!(
            stderr.contains(&format!("NCCL backend of rank {rank} of 2 on cuda:{rank}")),
            "{stderr}"
        );
        assert!(stderr.contains(missing), "{stderr}");
        assert!(
            stderr.contains("tools/install-libtorch.sh --cuda"),
            "{stderr}"
        );
    }
}

/// The NCCL side library to test: `ASR_DIST_NCCL_LIB`, else the one in the lib/ folder
/// of the libtorch these tests link (present after tools/install-libtorch.sh --cuda).
fn nccl_library() -> Option<String> {
    if let Some(path) = std::env::var_os("ASR_DIST_NCCL_LIB").filter(|p| !p.is_empty()) {
        return Some(path.to_string_lossy().into_owned());
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let c10 = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libc10.so"))?;
    let lib = std::path::Path::new(c10).with_file_name("libasr_dist_nccl.so");
    lib.is_file().then(|| lib.to_string_lossy().into_owned())
}

/// Only where the CUDA layout is installed (else skipped, with the reason printed): two
/// ranks load the side library, which loads libtorch_cuda.so, and construct
/// ProcessGroupNCCL. Without a GPU that must be ProcessGroupNCCL's own clean error on
/// every rank (exit 1), not a crash; with two GPUs or more, the rounds must agree.
#[test]
fn cuda_ranks_construct_nccl_from_the_side_library() {
    let Some(lib) = nccl_library() else {
        eprintln!(
            "skipped: no libasr_dist_nccl.so beside the linked libtorch and no \
             ASR_DIST_NCCL_LIB (tools/install-libtorch.sh --cuda builds it)"
        );
        return;
    };
    let gpus = (0..16)
        .filter(|i| std::path::Path::new(&format!("/dev/nvidia{i}")).exists())
        .count();
    if gpus == 1 {
        eprintln!("skipped: one GPU here, and the job needs two ranks on two GPUs");
        return;
    }
    let outcomes = run_cuda_job(&[("ASR_DIST_NCCL_LIB", &lib)]);
    if gpus >= 2 {
        let outputs: Vec<Vec<String>> = outcomes
            .into_iter()
            .map(|(status, stdout, stderr)| {
                assert!(status.success(), "{status}: {stderr}\n{stdout:?}");
                stdout
            })
            .collect();
        assert_rounds(&outputs);
        return;
    }
    for (rank, (status, stdout, stderr)) in outcomes.into_iter().enumerate() {
        assert_eq!(status.code(), Some(1), "rank {rank}: {status}: {stderr}");
        assert!(stdout.is_empty(), "{stdout:?}");
        assert!(
            stderr.contains(&format!("NCCL backend of rank {rank} of 2 on cuda:{rank}")),
            "{stderr}"
        );
        assert!(
            stderr.contains("ProcessGroupNCCL is only supported with GPUs, no GPUs found"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("frame #"),
            "C++ backtrace in the message: {stderr}"
        );
    }
}
