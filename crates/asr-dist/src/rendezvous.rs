//! Who this process is in a job, and where rank 0 waits: read from the launcher's
//! environment, as PyTorch's `env://` does.
//!
//! Precedence:
//! 1. **torchrun / env://**: when `RANK` or `WORLD_SIZE` is set, both are required, and
//!    `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` are read as torch
//!    does. A missing `LOCAL_RANK` / `LOCAL_WORLD_SIZE` means "all ranks on this machine"
//!    (`RANK` / `WORLD_SIZE`), which is what a hand-made single-machine launch means;
//!    torchrun always sets both. `MASTER_ADDR` and `MASTER_PORT` are required when
//!    `WORLD_SIZE` > 1.
//! 2. **Slurm `srun`**: when `SLURM_PROCID` and `SLURM_NTASKS` are set (and no `RANK` /
//!    `WORLD_SIZE`): rank, world size and `SLURM_LOCALID`; the local world size is this
//!    node's entry of `SLURM_TASKS_PER_NODE` (e.g. `4(x2),2`) at `SLURM_NODEID`.
//!    `MASTER_ADDR` is taken from the environment if set, else the first host of
//!    `SLURM_STEP_NODELIST` (or `SLURM_JOB_NODELIST`), where Slurm places task 0.
//!    `MASTER_PORT` from the environment, else 29500 (torch's default port: set
//!    `MASTER_PORT` when several jobs share a node). Run the ranks with `srun`: a batch
//!    script itself also has `SLURM_PROCID`=0 but is not one of the tasks.
//! 3. Nothing set: a single process, world size 1.
//!
//! Every inconsistency is an error naming the variable and its value.
use crate::DistError;

/// torch's default `MASTER_PORT`, used under Slurm when none is set.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// Which launcher the values came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Nothing set: one process.
    Single,
    /// torchrun or any launcher that sets the `env://` variables.
    Torch,
    /// Slurm's `srun`.
    Slurm,
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes in the job.
    pub world_size: usize,
    /// Rank among the processes on this machine (picks `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// Number of processes on this machine.
    pub local_world_size: usize,
    /// Host of rank 0's `TCPStore` (unused when `world_size` is 1).
    pub master_addr: String,
    /// Port of rank 0's `TCPStore` (unused when `world_size` is 1).
    pub master_port: u16,
    /// Where the values came from.
    pub launcher: Launcher,
    /// `TORCHELASTIC_USE_AGENT_STORE=True`: torchrun's agent already serves the store at
    /// `MASTER_ADDR:MASTER_PORT`, so rank 0 connects to it like the others instead of
    /// serving one (as `torch.distributed`'s `env://` does).
    pub agent_store: bool,
}

impl Rendezvous {
    /// The one-process case: rank 0 of 1.
    pub fn single() -> Self {
        Rendezvous {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            master_addr: "127.0.0.1".to_string(),
            master_port: DEFAULT_MASTER_PORT,
            launcher: Launcher::Single,
            agent_store: false,
        }
    }

    /// Reads the process environment (see the module documentation).
    pub fn from_env() -> Result<Self, DistError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Rendezvous::from_env`], with the variables given by `get` (for tests and for
    /// launchers that pass them another way).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        let vars = Vars { get: &get };
        if vars.is_set("RANK") || vars.is_set("WORLD_SIZE") {
            from_torch(&vars)
        } else if vars.is_set("SLURM_PROCID") && vars.is_set("SLURM_NTASKS") {
            from_slurm(&vars)
        } else {
            Ok(Self::single())
        }
    }

    /// True for rank 0, the rank that writes the run's outputs.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    fn check(self, vars: [&str; 4]) -> Result<Self, DistError> {
        let [rank, world, local_rank, local_world] = vars;
        if self.rank >= self.world_size {
            return Err(env_error(
                rank,
                &self.rank.to_string(),
                format!("must be below {world}={}", self.world_size),
            ));
        }
        if self.local_world_size > self.world_size {
            return Err(env_error(
                local_world,
                &self.local_world_size.to_string(),
                format!("must not exceed {world}={}", self.world_size),
            ));
        }
        if self.local_rank >= self.local_world_size {
            return Err(env_error(
                local_rank,
                &self.local_rank.to_string(),
                format!("must be below {local_world}={}", self.local_world_size),
            ));
        }
        Ok(self)
    }
}

struct Vars<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn value(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn is_set(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    fn required(&self, name: &str, why: &str) -> Result<String, DistError> {
        self.value(name)
            .ok_or_else(|| env_error(name, "", format!("is not set ({why})")))
    }

    fn number(&self, name: &str, why: &str) -> Result<usize, DistError> {
        parse_number(name, &self.required(name, why)?)
    }

    fn number_or(&self, name: &str, default: usize) -> Result<usize, DistError> {
        self.value(name)
            .map_or(Ok(default), |v| parse_number(name, &v))
    }

    fn port_or(&self, name: &str, default: Option<u16>) -> Result<u16, DistError> {
        let Some(text) = self.value(name) else {
            return default.ok_or_else(|| {
                env_error(name, "", "is not set (needed when WORLD_SIZE > 1)".into())
            });
        };
        match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(env_error(name, &text, "is not a TCP port (1-65535)".into())),
        }
    }
}

fn parse_number(name: &str, text: &str) -> Result<usize, DistError> {
    text.parse::<usize>()
        .map_err(|_| env_error(name, text, "is not a non-negative whole number".into()))
}

fn env_error(variable: &str, value: &str, problem: String) -> DistError {
    DistError::Env {
        variable: variable.to_string(),
        value: value.to_string(),
        problem,
    }
}

fn from_torch(vars: &Vars) -> Result<Rendezvous, DistError> {
    let why = "RANK and WORLD_SIZE go together";
    let rank = vars.number("RANK", why)?;
    let world_size = vars.number("WORLD_SIZE", why)?;
    if world_size == 0 {
        return Err(env_error("WORLD_SIZE", "0", "must be at least 1".into()));
    }
    let local_rank = vars.number_or("LOCAL_RANK", rank)?;
    let local_world_size = vars.number_or("LOCAL_WORLD_SIZE", world_size)?;
    let (master_addr, master_port) = if world_size > 1 {
        let addr = vars.required(
            "MASTER_ADDR",
            "needed when WORLD_SIZE > 1: the host of rank 0",
        )?;
        (addr, vars.port_or("MASTER_PORT", None)?)
    } else {
        let addr = vars
            .value("MASTER_ADDR")
            .unwrap_or_else(|| "127.0.0.1".to_string());
        (
            addr,
            vars.port_or("MASTER_PORT", Some(DEFAULT_MASTER_PORT))?,
        )
    };
    let rdzv = Rendezvous {
        rank,
        world_size,
        local_rank,
        local_world_size,
        master_addr,
        master_port,
        launcher: Launcher::Torch,
        agent_store: vars.value("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
    };
    rdzv.check(["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"])
}

fn from_slurm(vars: &Vars) -> Result<Rendezvous, DistError> {
    let rank = vars.number("SLURM_PROCID", "set by srun")?;
    let world_size = vars.number("SLURM_NTASKS", "set by srun")?;
    if world_size == 0 {
        return Err(env_error("SLURM_NTASKS", "0", "must be at least 1".into()));
    }
    let local_rank = vars.number("SLURM_LOCALID", "set by srun for each task")?;
    let node = vars.number_or("SLURM_NODEID", 0)?;
    let local_world_size = match vars.value("SLURM_TASKS_PER_NODE") {
        Some(text) => tasks_on_node(&text, node).ok_or_else(|| {
            env_error(
                "SLURM_TASKS_PER_NODE",
                &text,
                format!("has no entry for SLURM_NODEID={node}"),
            )
        })?,
        None => world_size,
    };
    let master_addr = match vars.value("MASTER_ADDR") {
        Some(addr) => addr,
        None => {
            let (name, list) = [
                "SLURM_STEP_NODELIST",
                "SLURM_JOB_NODELIST",
                "SLURM_NODELIST",
            ]
            .iter()
            .find_map(|name| vars.value(name).map(|list| (*name, list)))
            .ok_or_else(|| {
                env_error(
                    "MASTER_ADDR",
                    "",
                    "is not set, and neither is SLURM_JOB_NODELIST".into(),
                )
            })?;
            first_host(&list)
                .ok_or_else(|| env_error(name, &list, "is not a Slurm host list".into()))?
        }
    };
    let rdzv = Rendezvous {
        rank,
        world_size,
        local_rank,
        local_world_size,
        master_addr,
        master_port: vars.port_or("MASTER_PORT", Some(DEFAULT_MASTER_PORT))?,
        launcher: Launcher::Slurm,
        agent_store: false,
    };
    rdzv.check([
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_LOCALID",
        "SLURM_TASKS_PER_NODE",
    ])
}

/// Entry `node` of a Slurm tasks-per-node list such as `4(x2),2` (= 4,4,2).
fn tasks_on_node(list: &str, node: usize) -> Option<usize> {
    let mut seen = 0;
    for entry in list.split(',') {
        let (count, repeat) = match entry.split_once("(x") {
            Some((count, rest)) => (count, rest.strip_suffix(')')?.parse::<usize>().ok()?),
            None => (entry, 1),
        };
        let count = count.trim().parse::<usize>().ok()?;
        if node < seen + repeat {
            return Some(count);
        }
        seen += repeat;
    }
    None
}

/// The first host of a Slurm host list: `node[01-04,07],gpu5` -> `node01`,
/// `rack[1-2]-n[3-4]` -> `rack1-n3`, `a1,a2` -> `a1`.
pub fn first_host(list: &str) -> Option<String> {
    let mut host = String::new();
    let mut chars = list.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '[' => {
                let inside: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let first = inside.split([',', '-']).next()?.trim();
                if first.is_empty() {
                    return None;
                }
                host.push_str(first);
            }
            ']' => return None,
            c => host.push(c),
        }
    }
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Rendezvous, DistError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Rendezvous::from_lookup(|name| map.get(name).cloned())
    }

    fn message(vars: &[(&str, &str)]) -> String {
        parse(vars).expect_err("expected an error").to_string()
    }

    #[test]
    fn nothing_set_is_one_process() {
        assert_eq!(
            parse(&[("PATH", "/usr/bin")]).unwrap(),
            Rendezvous::single()
        );
    }

    #[test]
    fn torchrun_variables_are_read() {
        let rdzv = parse(&[
            ("RANK", "5"),
            ("WORLD_SIZE", "16"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "8"),
            ("MASTER_ADDR", "node-a"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            // Slurm's are ignored when torchrun's are present (torchrun inside srun).
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
        ])
        .unwrap();
        assert_eq!(
            rdzv,
            Rendezvous {
                rank: 5,
                world_size: 16,
                local_rank: 1,
                local_world_size: 8,
                master_addr: "node-a".into(),
                master_port: 29400,
                launcher: Launcher::Torch,
                agent_store: true,
            }
        );
        assert!(!rdzv.is_main());
    }

    #[test]
    fn hand_launch_without_local_variables_is_one_machine() {
        let rdzv = parse(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "3"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!((rdzv.local_rank, rdzv.local_world_size), (2, 3));
    }

    #[test]
    fn torchrun_world_size_one_needs_no_master() {
        let rdzv = parse(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap();
        assert_eq!((rdzv.world_size, rdzv.launcher), (1, Launcher::Torch));
    }

    #[test]
    fn inconsistent_torch_values_name_the_variable() {
        let m = message(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]);
        assert!(m.contains("RANK=2") && m.contains("WORLD_SIZE=2"), "{m}");
        let m = message(&[("RANK", "0")]);
        assert!(m.contains("WORLD_SIZE") && m.contains("not set"), "{m}");
        let m = message(&[("RANK", "one"), ("WORLD_SIZE", "2")]);
        assert!(m.contains("RANK=one") && m.contains("whole number"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "0")]);
        assert!(m.contains("WORLD_SIZE=0"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]);
        assert!(m.contains("MASTER_ADDR") && m.contains("not set"), "{m}");
        let m = message(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]);
        assert!(m.contains("MASTER_PORT") && m.contains("not set"), "{m}");
        let m = message(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "70000"),
        ]);
        assert!(
            m.contains("MASTER_PORT=70000") && m.contains("TCP port"),
            "{m}"
        );
        let m = message(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "2"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]);
        assert!(
            m.contains("LOCAL_RANK=2") && m.contains("LOCAL_WORLD_SIZE=2"),
            "{m}"
        );
        let m = message(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_WORLD_SIZE", "4"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]);
        assert!(m.contains("LOCAL_WORLD_SIZE=4"), "{m}");
    }

    fn slurm(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars = vec![
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "10"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "2"),
            ("SLURM_TASKS_PER_NODE", "4(x2),2"),
            ("SLURM_JOB_NODELIST", "gpu[07-09,12],cpu1"),
        ];
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn slurm_variables_are_read() {
        let rdzv = parse(&slurm(&[])).unwrap();
        assert_eq!(
            rdzv,
            Rendezvous {
                rank: 5,
                world_size: 10,
                local_rank: 1,
                local_world_size: 2,
                master_addr: "gpu07".into(),
                master_port: DEFAULT_MASTER_PORT,
                launcher: Launcher::Slurm,
                agent_store: false,
            }
        );
        let rdzv = parse(&slurm(&[
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "40000"),
            ("SLURM_STEP_NODELIST", "gpu09"),
        ]))
        .unwrap();
        assert_eq!(
            (rdzv.master_addr.as_str(), rdzv.master_port),
            ("10.0.0.1", 40000)
        );
        let rdzv = parse(&slurm(&[("SLURM_STEP_NODELIST", "gpu[09-12]")])).unwrap();
        assert_eq!(rdzv.master_addr, "gpu09");
    }

    #[test]
    fn inconsistent_slurm_values_name_the_variable() {
        let m = message(&slurm(&[("SLURM_NODEID", "3")]));
        assert!(
            m.contains("SLURM_TASKS_PER_NODE=4(x2),2") && m.contains("SLURM_NODEID=3"),
            "{m}"
        );
        let m = message(&slurm(&[("SLURM_LOCALID", "2")]));
        assert!(m.contains("SLURM_LOCALID=2"), "{m}");
        let m = message(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
            ("MASTER_ADDR", "h"),
        ]);
        assert!(
            m.contains("SLURM_PROCID=3") && m.contains("SLURM_NTASKS=2"),
            "{m}"
        );
        let m = message(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")]);
        assert!(m.contains("SLURM_LOCALID") && m.contains("not set"), "{m}");
        let m = message(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_LOCALID", "0"),
        ]);
        assert!(
            m.contains("MASTER_ADDR") && m.contains("SLURM_JOB_NODELIST"),
            "{m}"
        );
    }

    #[test]
    fn slurm_host_lists() {
        assert_eq!(first_host("node[01-04,07],gpu5").as_deref(), Some("node01"));
        assert_eq!(first_host("rack[1-2]-n[3-4]").as_deref(), Some("rack1-n3"));
        assert_eq!(first_host("a1,a2").as_deref(), Some("a1"));
        assert_eq!(first_host("single").as_deref(), Some("single"));
        assert_eq!(first_host("n[]"), None);
        assert_eq!(first_host(""), None);
        assert_eq!(tasks_on_node("4(x2),2", 1), Some(4));
        assert_eq!(tasks_on_node("4(x2),2", 2), Some(2));
        assert_eq!(tasks_on_node("4(x2),2", 3), None);
        assert_eq!(tasks_on_node("8", 0), Some(8));
    }
}
