//! Run attribution: which processes hold each run's log file open, read from the configured
//! procfs through [`crate::procfs`] (the one module that reads `/proc`).
//!
//! A trainer started as `torchrun ... > train.log` passes the file to every worker it forks,
//! so scanning `/proc/*/fd` for descriptors whose target has the log's device and inode finds
//! the launcher and every rank. That answers "is the run still alive?" at once: when every
//! holder has exited without the end-of-training summary, the run has crashed. It also gives
//! the PIDs to join with NVML's compute processes, and (unless configured off) a run name taken
//! from the writer's environment ([`identity`]: `TORCHELASTIC_RUN_ID`, `SLURM_JOB_ID`,
//! `MASTER_ADDR:MASTER_PORT`) so that one job has one `run` label on every node. The same
//! environment names the run of every GPU compute process of the node ([`node`]), where the
//! log is written or not.
//!
//! Reading ([`Scanner::scan`]) is apart from parsing ([`identity`], [`parse_environ`],
//! [`crate::procfs::parse_comm`]), which are pure. Processes whose `/proc/PID/fd` we may not read (another user's, without
//! `CAP_SYS_PTRACE`) are skipped and counted; in Kubernetes the pod needs `hostPID: true` to
//! see the trainers' processes at all.

pub mod cycle;
pub mod identity;
pub mod node;
pub mod tree;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub use self::identity::{Ranks, MAX_ENV_RUN_BYTES};
use self::node::Identified;
use crate::procfs::{Fd, Procfs};

/// Most processes recorded per run (a launcher and its ranks fit easily).
pub const MAX_PROCESSES_PER_RUN: usize = 256;

/// One process holding a run's log open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm`: the executable name, at most 15 bytes.
    pub command: String,
    /// The run name from the first configured environment variable the process has.
    pub env_run: Option<String>,
    /// Its place in the run, from its environment.
    pub ranks: Ranks,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Holders per requested file, in the order the files were given.
    pub holders: Vec<Vec<Holder>>,
    /// Processes whose descriptors could not be read (permission denied).
    pub unreadable: u64,
}

/// Scans a procfs for processes holding files open.
#[derive(Debug, Clone)]
pub struct Scanner {
    procfs: Procfs,
    env_vars: Vec<String>,
    own_pid: u32,
    /// This node's host name, for a loopback `MASTER_ADDR`.
    host: Option<String>,
}

impl Scanner {
    /// `procfs` is `/proc` or a host's procfs mounted elsewhere; `env_vars` name the
    /// sources that may name the run, first found wins ([`identity::run_identity`]).
    pub fn new(procfs: Procfs, env_vars: Vec<String>) -> Self {
        let host = procfs.hostname().ok().filter(|h| !h.is_empty());
        Scanner {
            procfs,
            env_vars,
            own_pid: std::process::id(),
            host,
        }
    }

    /// The run name and ranks of process `pid`, from its environment.
    pub fn identify(&self, pid: u32) -> std::io::Result<(Option<String>, Ranks)> {
        let b = self.procfs.environ(pid)?;
        let env = identity::env_pairs(&b);
        let run = identity::run_identity(&env, &self.env_vars, self.host.as_deref());
        Ok((run, identity::ranks(&env)))
    }

    /// [`Scanner::identify`] for the node join: a process gone is nothing to say, any other
    /// error is an environment we could not read.
    pub fn identified(&self, pid: u32) -> Identified {
        match self.identify(pid) {
            Ok((run, ranks)) => Identified::Known(run, ranks),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Identified::Gone,
            Err(_) => Identified::Unreadable,
        }
    }

    /// Finds the processes holding each of `files` open. `Err` when the procfs itself cannot
    /// be listed (attribution is then unknown, not "no holders"). Our own process, which
    /// follows the files, is never a holder.
    pub fn scan(&self, files: &[PathBuf]) -> std::io::Result<Scan> {
        let mut ids: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
        let mut names: Vec<Vec<u8>> = Vec::new();
        for (i, f) in files.iter().enumerate() {
            if let Ok(m) = std::fs::metadata(f) {
                ids.entry((m.dev(), m.ino())).or_default().push(i);
                if let Some(n) = f.file_name() {
                    names.push(n.as_encoded_bytes().to_vec());
                }
            }
        }
        let wanted = Wanted { ids, names };
        let mut scan = Scan {
            holders: vec![Vec::new(); files.len()],
            unreadable: 0,
        };
        let pids = self.procfs.pids()?;
        if wanted.ids.is_empty() {
            return Ok(scan);
        }
        let mut found: Vec<usize> = Vec::new();
        for pid in pids {
            if pid == self.own_pid {
                continue;
            }
            found.clear();
            match self.procfs.fds(pid) {
                Ok(fds) => held_files(fds, &wanted, &mut found),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    scan.unreadable += 1;
                    continue;
                }
                // the process exited while we looked
                Err(_) => continue,
            }
            if found.is_empty() {
                continue;
            }
            let command = self.procfs.comm(pid).unwrap_or_default();
            let (env_run, ranks) = self.identify(pid).unwrap_or_default();
            found.sort_unstable();
            found.dedup();
            for &i in &found {
                let list = &mut scan.holders[i];
                if list.len() < MAX_PROCESSES_PER_RUN {
                    list.push(Holder {
                        pid,
                        command: command.clone(),
                        env_run: env_run.clone(),
                        ranks,
                    });
                }
            }
        }
        for list in &mut scan.holders {
            list.sort();
        }
        Ok(scan)
    }
}

/// The files looked for: by device and inode, and their file names.
struct Wanted {
    ids: HashMap<(u64, u64), Vec<usize>>,
    names: Vec<Vec<u8>>,
}

/// Which of the wanted files (by device and inode) a process's descriptors hold.
/// Only descriptors whose target has a wanted file name are `stat`ed: sockets, pipes and
/// other files are rejected on the link text alone. (The link text is the path in the
/// process's mount namespace, so the directory may differ from ours; the name does not.)
fn held_files(fds: impl Iterator<Item = Fd>, wanted: &Wanted, found: &mut Vec<usize>) {
    for fd in fds {
        let Ok(target) = fd.target() else {
            continue;
        };
        let t = target.as_os_str().as_encoded_bytes();
        if t.first() != Some(&b'/') {
            continue;
        }
        // a deleted file's link reads `/path (deleted)`: its name no longer matches, rightly
        let name = &t[t.iter().rposition(|&c| c == b'/').map_or(0, |p| p + 1)..];
        if !wanted.names.iter().any(|n| n.as_slice() == name) {
            continue;
        }
        let Ok(m) = fd.metadata() else {
            continue;
        };
        if let Some(idx) = wanted.ids.get(&(m.dev(), m.ino())) {
            found.extend_from_slice(idx);
        }
    }
}

/// One GPU's compute processes, as plain data from the GPU collector.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcesses {
    pub index: u32,
    pub uuid: String,
    /// (pid, GPU memory the process uses, when NVML reports it)
    pub processes: Vec<(u32, Option<u64>)>,
}

/// A GPU one of a run's processes computes on, with the lowest known rank of the run's
/// processes on it (from their environment).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunGpu {
    pub index: u32,
    pub uuid: String,
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
}

/// Joins a run's holders with the GPUs' compute processes: the GPUs its processes use and
/// the GPU memory they use in total (`None` when no process of the run is on a GPU or NVML
/// reported no memory for them).
pub fn join_gpus(holders: &[Holder], gpus: &[GpuProcesses]) -> (Vec<RunGpu>, Option<u64>) {
    let mut out = Vec::new();
    let mut memory: Option<u64> = None;
    for g in gpus {
        let mut used: Option<RunGpu> = None;
        for &(pid, mem) in &g.processes {
            let Some(h) = holders.iter().find(|h| h.pid == pid) else {
                continue;
            };
            let gpu = used.get_or_insert_with(|| RunGpu {
                index: g.index,
                uuid: g.uuid.clone(),
                rank: None,
                local_rank: None,
            });
            if h.ranks.rank.is_some() && (gpu.rank.is_none() || h.ranks.rank < gpu.rank) {
                gpu.rank = h.ranks.rank;
                gpu.local_rank = h.ranks.local_rank;
            }
            if let Some(m) = mem {
                memory = Some(memory.unwrap_or(0).saturating_add(m));
            }
        }
        out.extend(used);
    }
    out.sort();
    (out, memory)
}

/// `/proc/PID/environ` (NUL-separated `KEY=value`): the run name from the first of `vars`
/// that is set and non-empty, if it is usable (printable, at most 128 bytes); see
/// [`identity::run_identity`].
pub fn parse_environ(b: &[u8], vars: &[String]) -> Option<String> {
    identity::run_identity(&identity::env_pairs(b), vars, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::parse_comm;

    #[test]
    fn environ_picks_the_first_configured_variable() {
        let vars = vec![
            "TORCHELASTIC_RUN_ID".to_string(),
            "SLURM_JOB_ID".to_string(),
        ];
        let env = b"PATH=/bin\0SLURM_JOB_ID=4242\0TORCHELASTIC_RUN_ID=llama-7b\0";
        assert_eq!(parse_environ(env, &vars).as_deref(), Some("llama-7b"));
        let env = b"SLURM_JOB_ID=4242\0TORCHELASTIC_RUN_ID=\0";
        assert_eq!(parse_environ(env, &vars).as_deref(), Some("4242"));
        assert_eq!(parse_environ(b"PATH=/bin\0", &vars), None);
        assert_eq!(parse_environ(b"SLURM_JOB_ID=a\nb\0", &vars), None);
        assert_eq!(parse_environ(b"garbage\0\0=x\0", &vars), None);
        assert_eq!(parse_comm(b"python3\n"), "python3");
    }

    #[test]
    fn gpus_of_a_run() {
        let h = |pid| Holder {
            pid,
            command: "python".into(),
            env_run: None,
            ranks: Ranks::default(),
        };
        let gpus = [
            GpuProcesses {
                index: 1,
                uuid: "GPU-b".into(),
                processes: vec![(11, Some(2 << 30)), (99, Some(1 << 30))],
            },
            GpuProcesses {
                index: 0,
                uuid: "GPU-a".into(),
                processes: vec![(10, Some(3 << 30)), (11, None)],
            },
            GpuProcesses {
                index: 2,
                uuid: "GPU-c".into(),
                processes: vec![(99, Some(1 << 30))],
            },
        ];
        let (used, mem) = join_gpus(&[h(1), h(10), h(11)], &gpus);
        assert_eq!(
            used,
            [
                RunGpu {
                    index: 0,
                    uuid: "GPU-a".into(),
                    rank: None,
                    local_rank: None,
                },
                RunGpu {
                    index: 1,
                    uuid: "GPU-b".into(),
                    rank: None,
                    local_rank: None,
                }
            ]
        );
        assert_eq!(mem, Some(5 << 30));
        assert_eq!(join_gpus(&[h(1)], &gpus), (vec![], None));
    }

    #[test]
    fn finds_a_child_holding_the_file_and_not_ourselves() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("train.log");
        let other = dir.path().join("other.log");
        std::fs::write(&other, "").unwrap();
        let file = std::fs::File::create(&log).unwrap();
        // we hold `log` open ourselves: not a holder
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("SLURM_JOB_ID", "77")
            .stdout(file)
            .spawn()
            .unwrap();
        // `spawn` returns once exec has begun; the kernel sets the new environment up a
        // moment later, so wait for it (a positive witness) before scanning.
        let procfs = Procfs::default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !procfs
            .environ(child.id())
            .map(|b| b.windows(15).any(|w| w == b"SLURM_JOB_ID=77"))
            .unwrap_or(false)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "child never showed its environment"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let s = Scanner::new(procfs, vec!["SLURM_JOB_ID".into()]);
        let scan = s.scan(&[log.clone(), other.clone()]).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            scan.holders[0],
            [Holder {
                pid: child.id(),
                command: "sleep".into(),
                env_run: Some("77".into()),
                ranks: Ranks::default(),
            }]
        );
        assert!(scan.holders[1].is_empty());
        let scan = s.scan(&[log]).unwrap();
        assert!(scan.holders[0].is_empty());
        assert!(Scanner::new(Procfs::new(dir.path().join("nope")), vec![])
            .scan(&[other])
            .is_err());
    }
}
