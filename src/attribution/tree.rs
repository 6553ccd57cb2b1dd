//! A run's local process tree, for the actions on alerts: the processes attributed to the run
//! (its log's holders, its GPU compute processes), their descendants (dataloader workers,
//! compile workers), and the local launcher above them (torchrun's agent, `deepspeed`,
//! `accelerate launch`), which must be paused with its children or it sees them as failed.
//!
//! Never in a tree: PID 1, this daemon and its own ancestors (a shell that started both the
//! daemon and a trainer is not the trainer's). Each process is named by its PID and start
//! time, so that a PID reused after an exit is never signalled in its stead.
//!
//! [`build`] is pure, over a process table; [`read_table`] reads that table from the procfs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::procfs::Procfs;

/// One process of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ppid: u32,
    pub start_time: u64,
    /// `argv` joined with spaces (empty for a kernel thread).
    pub cmdline: String,
}

/// A process table: PID → entry.
pub type Table = BTreeMap<u32, Entry>;

/// One member of a run's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub pid: u32,
    pub start_time: u64,
    /// A launcher above the attributed processes (not itself attributed).
    pub launcher: bool,
}

/// Words of a command line that mark a process launcher. A launcher's children are the
/// ranks; signalling a rank but not its launcher makes the launcher tear the job down.
const LAUNCHERS: [&str; 8] = [
    "torchrun",
    "torch.distributed.run",
    "torch.distributed.launch",
    "deepspeed",
    "accelerate",
    "swift",
    "lightning",
    "mpirun",
];

/// Whether a command line is a launcher's: one of [`LAUNCHERS`] as the basename of one of
/// its first three arguments (`torchrun ...`, `python -m torch.distributed.run ...`,
/// `/usr/bin/python3 /opt/venv/bin/deepspeed ...`).
pub fn is_launcher(cmdline: &str) -> bool {
    cmdline.split(' ').take(3).any(|arg| {
        let base = arg.rsplit('/').next().unwrap_or(arg);
        LAUNCHERS.contains(&base)
    })
}

/// The tree of `roots` in `table`: the roots, their descendants and the launchers directly
/// above them (a chain of launchers: `swift sft` → `torchrun` → ranks), without PID 1,
/// `own_pid` and `own_pid`'s ancestors. Launchers first, then by PID.
pub fn build(table: &Table, roots: &[u32], own_pid: u32) -> Vec<Member> {
    let mut excluded: BTreeSet<u32> = BTreeSet::from([0, 1, own_pid]);
    let mut p = own_pid;
    while let Some(e) = table.get(&p) {
        if !excluded.insert(e.ppid) {
            break;
        }
        p = e.ppid;
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, e) in table {
        children.entry(e.ppid).or_default().push(pid);
    }
    let mut members: BTreeMap<u32, bool> = BTreeMap::new();
    let mut stack: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| table.contains_key(p))
        .collect();
    while let Some(pid) = stack.pop() {
        if excluded.contains(&pid) || members.contains_key(&pid) {
            continue;
        }
        members.insert(pid, false);
        stack.extend(children.get(&pid).into_iter().flatten().copied());
    }
    for &root in roots {
        let mut p = root;
        while let Some(parent) = table.get(&p).map(|e| e.ppid) {
            let Some(pe) = table.get(&parent) else { break };
            if excluded.contains(&parent) || !is_launcher(&pe.cmdline) {
                break;
            }
            members.entry(parent).or_insert(true);
            p = parent;
        }
    }
    let mut out: Vec<Member> = members
        .into_iter()
        .filter_map(|(pid, launcher)| {
            table.get(&pid).map(|e| Member {
                pid,
                start_time: e.start_time,
                launcher,
            })
        })
        .collect();
    out.sort_by_key(|m| (!m.launcher, m.pid));
    out
}

/// Reads every process's `stat` and `cmdline` from `procfs`; processes that exit meanwhile
/// are left out.
pub fn read_table(procfs: &Procfs) -> std::io::Result<Table> {
    let mut out = Table::new();
    for pid in procfs.pids()? {
        let Ok(st) = procfs.stat(pid) else { continue };
        let cmdline = procfs
            .cmdline(pid)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .replace('\0', " ")
            })
            .unwrap_or_default();
        out.insert(
            pid,
            Entry {
                ppid: st.ppid,
                start_time: st.start_time,
                cmdline,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(u32, u32, &str)]) -> Table {
        rows.iter()
            .map(|&(pid, ppid, cmd)| {
                (
                    pid,
                    Entry {
                        ppid,
                        start_time: u64::from(pid) * 10,
                        cmdline: cmd.into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn launchers_are_known_by_their_command() {
        assert!(is_launcher(
            "/opt/venv/bin/python3 /opt/venv/bin/torchrun --nproc 8 t.py"
        ));
        assert!(is_launcher("python -m torch.distributed.run t.py"));
        assert!(is_launcher(
            "/usr/bin/python3 /usr/local/bin/deepspeed t.py"
        ));
        assert!(is_launcher("torchrun t.py"));
        assert!(!is_launcher("python train.py --launcher torchrun"));
        assert!(!is_launcher("bash -c python train.py"));
        assert!(!is_launcher(""));
    }

    #[test]
    fn ranks_their_children_and_the_launcher_chain_but_not_the_shell_above() {
        let t = table(&[
            (1, 0, "/sbin/init"),
            (100, 1, "bash"),
            (200, 100, "swift sft --model x"),
            (
                300,
                200,
                "/usr/bin/python /usr/bin/torchrun --nproc 2 sft.py",
            ),
            (301, 300, "python sft.py"),
            (302, 300, "python sft.py"),
            (310, 301, "python sft.py"), // a dataloader worker
            (400, 100, "python other.py"),
        ]);
        let m = build(&t, &[301, 302], 9999);
        let pids: Vec<(u32, bool)> = m.iter().map(|m| (m.pid, m.launcher)).collect();
        assert_eq!(
            pids,
            [
                (200, true),
                (300, true),
                (301, false),
                (302, false),
                (310, false)
            ]
        );
        assert_eq!(m[0].start_time, 2000);
    }

    #[test]
    fn never_pid_1_the_daemon_or_its_ancestors() {
        let t = table(&[
            (1, 0, "torchrun"),
            (50, 1, "torchrun --standalone t.py"),
            (60, 50, "gpu-train-exporter"),
            (70, 50, "python t.py"),
            (80, 60, "child of the daemon"),
        ]);
        // the daemon (60) holds the log itself, and its launcher-looking parent is its own
        assert_eq!(
            build(&t, &[70, 60, 1], 60)
                .iter()
                .map(|m| m.pid)
                .collect::<Vec<_>>(),
            [70]
        );
        // a root that has exited is nothing
        assert!(build(&t, &[12345], 60).is_empty());
    }

    #[test]
    fn reads_this_process_and_its_parent() {
        let t = read_table(&Procfs::default()).unwrap();
        let me = &t[&std::process::id()];
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(!me.cmdline.is_empty());
    }
}
