//! The procfs reader: every read of another process's `/proc/PID/...` goes through a
//! [`Procfs`] rooted at the configured `--path.procfs` (`/proc`, or a host's procfs mounted
//! elsewhere in a container), so that one flag decides which machine's processes are seen.
//! Run attribution reads descriptors, names and environments through it; the GPU collector
//! reads the names of the compute processes NVML reports.
//!
//! Reading is apart from parsing: [`parse_comm`] is pure. The one read outside a root is
//! [`own_fd_target`], which asks about a descriptor of this very process.
//!
//! It imports nothing of the crate, so any module may use it without an import circle.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

/// A procfs mounted at `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    /// The procfs of the machine we run on, `/proc`.
    fn default() -> Self {
        Procfs::new("/proc")
    }
}

impl Procfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Procfs { root: root.into() }
    }

    /// Where it is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// The PIDs listed, in directory order. `Err` when the procfs itself cannot be listed.
    pub fn pids(&self) -> io::Result<impl Iterator<Item = u32>> {
        Ok(std::fs::read_dir(&self.root)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())))
    }

    /// `PID/comm`: the executable name, at most 15 bytes ([`parse_comm`]).
    pub fn comm(&self, pid: u32) -> io::Result<String> {
        std::fs::read(self.pid_dir(pid).join("comm")).map(|b| parse_comm(&b))
    }

    /// The process's command: the basename of its `argv[0]` (`PID/cmdline`,
    /// [`parse_argv0`]), else its `comm`. `comm` is only the first 15 bytes of the main
    /// thread's name, which PyTorch 2.3-2.4 renames `pt_main_thread`.
    pub fn command(&self, pid: u32) -> io::Result<String> {
        match self.cmdline(pid).map(|b| parse_argv0(&b)) {
            Ok(Some(name)) => Ok(name),
            // a kernel thread or a zombie has an empty cmdline; a missing one, no process
            _ => self.comm(pid),
        }
    }

    /// `sys/kernel/hostname`: this machine's host name, without its newline.
    pub fn hostname(&self) -> io::Result<String> {
        std::fs::read(self.root.join("sys/kernel/hostname")).map(|b| parse_comm(&b))
    }

    /// `PID/stat`, parsed ([`parse_stat`]).
    pub fn stat(&self, pid: u32) -> io::Result<Stat> {
        let b = std::fs::read(self.pid_dir(pid).join("stat"))?;
        parse_stat(&b).ok_or_else(|| io::Error::other("unreadable stat line"))
    }

    /// `PID/cmdline`, raw: NUL-separated arguments (empty for a kernel thread or a zombie).
    pub fn cmdline(&self, pid: u32) -> io::Result<Vec<u8>> {
        std::fs::read(self.pid_dir(pid).join("cmdline"))
    }

    /// `PID/environ`, raw: NUL-separated `KEY=value` entries.
    pub fn environ(&self, pid: u32) -> io::Result<Vec<u8>> {
        std::fs::read(self.pid_dir(pid).join("environ"))
    }

    /// The open descriptors in `PID/fd`. `Err` (`PermissionDenied` for another user's
    /// process without `CAP_SYS_PTRACE`) when the directory cannot be listed.
    pub fn fds(&self, pid: u32) -> io::Result<impl Iterator<Item = Fd>> {
        Ok(std::fs::read_dir(self.pid_dir(pid).join("fd"))?
            .flatten()
            .map(|e| Fd { path: e.path() }))
    }
}

/// One open descriptor of a process, `PID/fd/N`.
#[derive(Debug, Clone)]
pub struct Fd {
    path: PathBuf,
}

impl Fd {
    /// The link text: the path opened, in the process's mount namespace (`/x (deleted)`
    /// once unlinked; `socket:[N]`, `pipe:[N]` for what is not a file).
    pub fn target(&self) -> io::Result<PathBuf> {
        std::fs::read_link(&self.path)
    }

    /// The open file's own metadata (device and inode), whatever its path has become.
    pub fn metadata(&self) -> io::Result<Metadata> {
        std::fs::metadata(&self.path)
    }
}

/// What `PID/stat` says of a process that the actions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `T` (stopped), `t`, `Z` ...
    pub state: u8,
    pub ppid: u32,
    /// Clock ticks after boot at which it started: with the PID, names one process for good
    /// (a PID alone may be reused).
    pub start_time: u64,
}

/// Parses a `PID/stat` line. The command name (field 2) is in parentheses and may itself
/// hold spaces and parentheses, so the fields are counted after its last `)`.
pub fn parse_stat(b: &[u8]) -> Option<Stat> {
    let close = b.iter().rposition(|&c| c == b')')?;
    let rest = std::str::from_utf8(&b[close + 1..]).ok()?;
    let mut f = rest.split_ascii_whitespace();
    // after the name: state (3), ppid (4), ... starttime (22)
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    let start_time = f.nth(17)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        start_time,
    })
}

/// The basename of `argv[0]` in a `/proc/PID/cmdline` (NUL-separated arguments); `None`
/// when it is empty. Invalid UTF-8 decoded lossily.
pub fn parse_argv0(b: &[u8]) -> Option<String> {
    let argv0 = b.split(|c| *c == 0).next()?;
    // a process that rewrote its argv may leave it space-separated
    let argv0 = argv0.split(|c| *c == b' ').next()?;
    let base = argv0.rsplit(|c| *c == b'/').next()?;
    (!base.is_empty()).then(|| String::from_utf8_lossy(base).into_owned())
}

/// `/proc/PID/comm`: the name without its newline; invalid UTF-8 decoded lossily.
pub fn parse_comm(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.trim_end_matches('\n').to_string()
}

/// What this process's descriptor `fd` refers to now (`/proc/self/fd/N`). It is about us,
/// so it reads the procfs we run under, never the configured root.
pub fn own_fd_target(fd: i32) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = b"4242 (pt_main (x) y) T 17 4242 4242 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 3 0 987654 1000 10 18446744073709551615\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'T',
                ppid: 17,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat(b"12 (x) S 1"), None);
        assert_eq!(parse_stat(b"garbage"), None);
        let own = Procfs::default().stat(std::process::id()).unwrap();
        assert_eq!(own.ppid, std::os::unix::process::parent_id());
        assert!(own.start_time > 0);
    }

    #[test]
    fn reads_from_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("4242");
        std::fs::create_dir_all(p.join("fd")).unwrap();
        std::fs::write(p.join("comm"), "trainer\n").unwrap();
        std::fs::write(p.join("environ"), b"A=1\0B=2\0").unwrap();
        let log = dir.path().join("train.log");
        std::fs::write(&log, "").unwrap();
        std::os::unix::fs::symlink(&log, p.join("fd").join("3")).unwrap();
        std::fs::create_dir(dir.path().join("self")).unwrap();
        let procfs = Procfs::new(dir.path());
        assert_eq!(procfs.pids().unwrap().collect::<Vec<_>>(), [4242]);
        assert_eq!(procfs.comm(4242).unwrap(), "trainer");
        assert_eq!(procfs.environ(4242).unwrap(), b"A=1\0B=2\0");
        assert!(procfs.hostname().is_err());
        std::fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/hostname"), "node7\n").unwrap();
        assert_eq!(procfs.hostname().unwrap(), "node7");
        let fds: Vec<Fd> = procfs.fds(4242).unwrap().collect();
        assert_eq!(fds.len(), 1);
        assert_eq!(fds[0].target().unwrap(), log);
        assert!(fds[0].metadata().unwrap().is_file());
        // a PID of the real /proc (ours) is not under this root
        assert!(procfs.comm(std::process::id()).is_err());
        assert!(Procfs::new(dir.path().join("nope")).pids().is_err());
    }

    #[test]
    fn argv0_is_the_basename_of_the_first_argument() {
        assert_eq!(
            parse_argv0(b"/opt/venv/bin/python3\0-u\0train.py\0").as_deref(),
            Some("python3")
        );
        assert_eq!(
            parse_argv0(b"torchrun\0--nproc-per-node=8\0").as_deref(),
            Some("torchrun")
        );
        assert_eq!(
            parse_argv0(b"python train.py --lr 1e-4").as_deref(),
            Some("python")
        );
        assert_eq!(parse_argv0(b""), None);
        assert_eq!(parse_argv0(b"\0"), None);
        assert_eq!(parse_argv0(b"/usr/bin/\0"), None);
    }

    #[test]
    fn comm_loses_its_newline() {
        assert_eq!(parse_comm(b"python3\n"), "python3");
        assert_eq!(parse_comm(b"pt_main_thread"), "pt_main_thread");
    }
}
