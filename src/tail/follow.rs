//! Follows one file by path: reads what is appended, splits it into lines, and notices
//! rotation (a new file at the path, by device and inode), truncation (size below our
//! offset: copytruncate) and deletion.
//!
//! Polling only: it works on NFS and Lustre, where inotify never fires. A rotated file is
//! read to its end before the new one is opened, so no line is lost or read twice. Lines
//! split on `\n` and on `\r` (tqdm redraws); a partial last line waits for its end; a line
//! longer than the limit is dropped as it streams, never buffered whole.
//!
//! Only regular files are read: a FIFO would block `open(2)` forever, `/dev/zero` never
//! ends, a block device is a whole disk, and a procfs or sysfs file (size 0, new content at
//! every read) would be read again at every poll. Such a path is reported once as an
//! [`FileEvent::Error`] and never opened (or opened non-blocking and closed when it changed
//! under us). A follower may be confined to a directory: a path whose symbolic links
//! resolve outside it is refused the same way. Every read is bounded by the poll's budget,
//! the drain of a rotated or deleted file too (up to the size it had when it was found
//! gone), so a poll always ends. After a truncation, the NUL bytes that a writer without
//! `O_APPEND` leaves in the hole before its next line are skipped.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use super::discover::FileId;

/// What happened to the file, reported beside the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    Opened,
    /// A different file now sits at the path; the old one was read to its end.
    Rotated,
    /// The file shrank below what we had read, or its first bytes changed: we start again
    /// from its beginning. `repeated`: another truncation of this file was reported less
    /// than [`TRUNCATION_LOG_INTERVAL`] before, so the sink need not log this one (Lightning
    /// rewrites its metrics.csv at every flush; a hostile writer can truncate in a loop).
    Truncated {
        repeated: bool,
    },
    /// The path no longer exists (or now names a file that another path already follows).
    Deleted,
    /// The path cannot be read (permission denied, a directory, not a regular file, a
    /// pseudo-file, a symbolic link out of the log directory, an I/O error). Reported once
    /// per distinct error.
    Error(String),
    /// The run goes on in a newer file of its one-run source (a restarted job's new log),
    /// read from its start; the file before it is no longer followed.
    Replaced {
        by: PathBuf,
    },
}

/// Truncations of one file closer together than this are reported as `repeated`.
pub const TRUNCATION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Receives what a [`Follower`] reads.
pub trait LineSink {
    fn line(&mut self, line: &[u8]);
    /// A line over the limit was dropped.
    fn too_long(&mut self);
    fn event(&mut self, event: FileEvent);
}

/// Why a file of this type is not followed, if it is not a regular file.
pub fn not_regular(meta: &fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "is a directory"
    } else if t.is_fifo() {
        "not a regular file: a FIFO"
    } else if t.is_char_device() {
        "not a regular file: a character device"
    } else if t.is_block_device() {
        "not a regular file: a block device"
    } else if t.is_socket() {
        "not a regular file: a socket"
    } else {
        "not a regular file"
    })
}

/// The pseudo filesystem `file` is on, if it is one: its files have no size and new content
/// at each read (`/proc/uptime`), or, in sysfs, a fixed size that is not their content.
fn pseudo_fs(file: &File) -> Option<&'static str> {
    let st = rustix::fs::fstatfs(file).ok()?;
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
    let magic = st.f_type as u64 & 0xffff_ffff;
    Some(match magic {
        0x9fa0 => "procfs",
        0x6265_6572 => "sysfs",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0x7363_6673 => "securityfs",
        0x0027_e0eb => "cgroupfs",
        0x6367_7270 => "cgroup2fs",
        0x6265_6570 => "configfs",
        0xde5e_81e4 => "efivarfs",
        _ => return None,
    })
}

/// One followed path.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    id: Option<FileId>,
    offset: u64,
    partial: Vec<u8>,
    discarding: bool,
    max_line: usize,
    buf: Box<[u8]>,
    missing: bool,
    last_error: Option<String>,
    /// The file's first bytes as we read them: a copytruncate followed by enough new writes
    /// to pass our offset is noticed because the head changed.
    head: Vec<u8>,
    /// (size, mtime) at the last check: the head is re-read only when they change.
    last_stamp: (u64, i64, i64),
    /// The directory the file must resolve into; `None`: anywhere.
    confine: Option<PathBuf>,
    /// The open file is no longer the one at the path: it is read up to `end`, then closed.
    drain: Option<Drain>,
    /// The next open reports `Rotated` (a drained file was replaced), not `Opened`.
    rotated: bool,
    /// Leading NUL bytes are dropped until another byte comes (a truncation's hole).
    skip_nul: bool,
    /// When a truncation was last reported as not repeated.
    truncation_logged: Option<Instant>,
}

struct Drain {
    end: u64,
    then: Then,
}

enum Then {
    Deleted,
    Refused(String),
    Reopen,
}

const HEAD_BYTES: usize = 256;

/// How much one poll read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub bytes: u64,
    /// The poll stopped at its budget, not at the end of the file.
    pub more: bool,
}

impl Follower {
    pub fn new(path: impl Into<PathBuf>, max_line: usize) -> Self {
        Follower {
            path: path.into(),
            file: None,
            id: None,
            offset: 0,
            partial: Vec::new(),
            discarding: false,
            max_line,
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            missing: false,
            last_error: None,
            head: Vec::new(),
            last_stamp: (0, 0, 0),
            confine: None,
            drain: None,
            rotated: false,
            skip_nul: false,
            truncation_logged: None,
        }
    }

    /// Refuses a file that, symbolic links resolved, is not inside `dir`.
    pub fn confined_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.confine = Some(dir.into());
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device and inode of the file open now.
    pub fn id(&self) -> Option<FileId> {
        self.id
    }

    /// Bytes read from the current file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the path was missing at the last poll.
    pub fn is_missing(&self) -> bool {
        self.missing
    }

    /// Checks the path and reads up to `budget` new bytes.
    pub fn poll(&mut self, sink: &mut dyn LineSink, budget: u64) -> Polled {
        self.poll_unless(sink, budget, &|_| false)
    }

    /// [`poll`](Self::poll), where a file for which `taken` holds (another path's follower
    /// reads it) counts as absent: one file is followed once, whatever the paths to it.
    pub fn poll_unless(
        &mut self,
        sink: &mut dyn LineSink,
        budget: u64,
        taken: &dyn Fn(FileId) -> bool,
    ) -> Polled {
        let mut polled = Polled::default();
        // at most three rounds: a drain to finish, the file at the path, a new file opened
        loop {
            if let Some(end) = self.drain.as_ref().map(|d| d.end) {
                let p = self.read(sink, budget.saturating_sub(polled.bytes), end);
                polled.bytes += p.bytes;
                if p.more {
                    polled.more = true;
                    return polled;
                }
                let then = self.drain.take().map(|d| d.then);
                self.flush_partial(sink);
                self.close();
                match then {
                    Some(Then::Deleted) => {
                        sink.event(FileEvent::Deleted);
                        self.missing = true;
                        return polled;
                    }
                    Some(Then::Refused(why)) => {
                        self.error(sink, why);
                        return polled;
                    }
                    Some(Then::Reopen) | None => self.rotated = true,
                }
            }
            let meta = match fs::metadata(&self.path) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    self.error(sink, e.to_string());
                    return polled;
                }
            };
            let meta = meta.filter(|m| {
                let id = (m.dev(), m.ino());
                self.id == Some(id) || !taken(id)
            });
            let Some(meta) = meta else {
                if self.file.is_some() {
                    // renamed away or deleted: what was written before is still ours
                    self.start_drain(sink, Then::Deleted);
                    continue;
                }
                // never seen yet: not an event, it may appear later
                self.missing = true;
                return polled;
            };
            self.missing = false;
            if let Some(why) = not_regular(&meta) {
                if self.file.is_some() {
                    self.start_drain(sink, Then::Refused(why.into()));
                    continue;
                }
                self.error(sink, why.into());
                return polled;
            }
            let id = (meta.dev(), meta.ino());
            if self.file.is_some() && self.id != Some(id) {
                self.start_drain(sink, Then::Reopen);
                continue;
            }
            if self.file.is_none() {
                if let Err(why) = self.open() {
                    self.error(sink, why);
                    return polled;
                }
                let rotated = std::mem::take(&mut self.rotated);
                sink.event(if rotated {
                    FileEvent::Rotated
                } else {
                    FileEvent::Opened
                });
            } else {
                self.check_truncation(sink);
            }
            self.last_error = None;
            let p = self.read(sink, budget.saturating_sub(polled.bytes), u64::MAX);
            polled.bytes += p.bytes;
            polled.more = p.more;
            return polled;
        }
    }

    /// Emits a held partial line: at the end of a one-shot read, or when its file is gone.
    pub fn flush_partial(&mut self, sink: &mut dyn LineSink) {
        if self.discarding {
            self.discarding = false;
            sink.too_long();
        } else if !self.partial.is_empty() {
            sink.line(&self.partial);
        }
        self.partial.clear();
    }

    /// The open file is no longer the one at the path: read it up to its size now, then
    /// `then`.
    fn start_drain(&mut self, sink: &mut dyn LineSink, then: Then) {
        self.check_truncation(sink);
        let size = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        self.drain = Some(Drain {
            end: size.max(self.offset),
            then,
        });
    }

    /// Opens the path: a regular file, not on a pseudo filesystem, inside the confining
    /// directory. Non-blocking, so that a FIFO put there since the check cannot block.
    fn open(&mut self) -> Result<(), String> {
        let inside = match &self.confine {
            Some(dir) => Some(resolve_inside(&self.path, dir)?),
            None => None,
        };
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(&self.path)
            .map_err(|e| e.to_string())?;
        // the path may have changed between stat and open: trust the handle
        let m = f.metadata().map_err(|e| e.to_string())?;
        if let Some(why) = not_regular(&m) {
            return Err(why.into());
        }
        if let Some(fs) = pseudo_fs(&f) {
            return Err(format!(
                "a {fs} pseudo-file: its size is not its content, so it cannot be followed"
            ));
        }
        if let Some(dir) = inside {
            // what was opened, whatever the links became since they were resolved
            if let Ok(real) = crate::procfs::own_fd_target(fd(&f)) {
                if !real.starts_with(&dir) {
                    return Err(outside(&real, &dir));
                }
            }
        }
        self.id = Some((m.dev(), m.ino()));
        self.file = Some(f);
        self.offset = 0;
        self.head.clear();
        self.partial.clear();
        self.discarding = false;
        self.skip_nul = true;
        Ok(())
    }

    /// Notices that the open file was truncated (copytruncate) — its size fell below our
    /// offset, or it changed size and its first bytes are no longer the ones we read — and
    /// starts again from its beginning.
    fn check_truncation(&mut self, sink: &mut dyn LineSink) {
        let Some(meta) = self.file.as_ref().and_then(|f| f.metadata().ok()) else {
            return;
        };
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec());
        if meta.len() < self.offset || (stamp != self.last_stamp && self.head_changed()) {
            if let Some(f) = self.file.as_mut() {
                use std::io::Seek;
                if let Err(e) = f.seek(io::SeekFrom::Start(0)) {
                    self.error(sink, e.to_string());
                    return;
                }
            }
            self.offset = 0;
            self.head.clear();
            self.partial.clear();
            self.discarding = false;
            self.skip_nul = true;
            let now = Instant::now();
            let repeated = self
                .truncation_logged
                .is_some_and(|t| now.duration_since(t) < TRUNCATION_LOG_INTERVAL);
            if !repeated {
                self.truncation_logged = Some(now);
            }
            sink.event(FileEvent::Truncated { repeated });
        }
        self.last_stamp = stamp;
    }

    fn head_changed(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(f) = self.file.as_ref() else {
            return false;
        };
        if self.head.is_empty() {
            return false;
        }
        let mut now = [0u8; HEAD_BYTES];
        let n = self.head.len();
        match f.read_at(&mut now[..n], 0) {
            Ok(got) => got < n || now[..n] != self.head[..],
            Err(_) => false,
        }
    }

    fn close(&mut self) {
        self.file = None;
        self.id = None;
        self.offset = 0;
        self.drain = None;
    }

    fn error(&mut self, sink: &mut dyn LineSink, msg: String) {
        if self.last_error.as_deref() != Some(msg.as_str()) {
            sink.event(FileEvent::Error(msg.clone()));
            self.last_error = Some(msg);
        }
    }

    /// Skips a hole at the offset (sparse NULs after a truncation) without reading it.
    fn skip_hole(&mut self, file: &File) {
        let Ok(data) = rustix::fs::seek(file, rustix::fs::SeekFrom::Data(self.offset)) else {
            return; // in a hole up to the end, or SEEK_DATA unsupported: read it
        };
        if data <= self.offset {
            return;
        }
        // a hole reads as zeros: that is what the file's head is
        if self.head.len() as u64 == self.offset {
            let n = (data.min(HEAD_BYTES as u64) - self.offset.min(HEAD_BYTES as u64)) as usize;
            self.head.resize(self.head.len() + n, 0);
        }
        self.offset = data;
    }

    /// Reads up to `budget` bytes, and not past offset `end`.
    fn read(&mut self, sink: &mut dyn LineSink, budget: u64, end: u64) -> Polled {
        let mut polled = Polled::default();
        let Some(mut file) = self.file.take() else {
            return polled;
        };
        if self.skip_nul {
            self.skip_hole(&file);
        }
        loop {
            if self.offset >= end {
                break;
            }
            if polled.bytes >= budget {
                polled.more = true;
                break;
            }
            let want = (end - self.offset).min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error(sink, e.to_string());
                    break;
                }
            };
            if self.head.len() < HEAD_BYTES && self.head.len() as u64 == self.offset {
                let take = (HEAD_BYTES - self.head.len()).min(n);
                self.head.extend_from_slice(&self.buf[..take]);
            }
            self.offset += n as u64;
            polled.bytes += n as u64;
            let buf = std::mem::take(&mut self.buf);
            let mut data = &buf[..n];
            if self.skip_nul {
                let start = data.iter().position(|&b| b != 0).unwrap_or(data.len());
                data = &data[start..];
                self.skip_nul = data.is_empty();
            }
            self.split(data, sink);
            self.buf = buf;
            if n < want {
                // a short read of a regular file is its end for now: spare the empty read
                break;
            }
        }
        self.file = Some(file);
        polled
    }

    fn split(&mut self, mut data: &[u8], sink: &mut dyn LineSink) {
        while !data.is_empty() {
            match memchr::memchr2(b'\n', b'\r', data) {
                Some(i) => {
                    let seg = &data[..i];
                    if self.discarding {
                        self.discarding = false;
                        sink.too_long();
                    } else if self.partial.is_empty() {
                        if seg.len() > self.max_line {
                            sink.too_long();
                        } else if !seg.is_empty() {
                            sink.line(seg);
                        }
                    } else if self.partial.len() + seg.len() > self.max_line {
                        self.partial.clear();
                        sink.too_long();
                    } else {
                        self.partial.extend_from_slice(seg);
                        sink.line(&self.partial);
                        self.partial.clear();
                    }
                    data = &data[i + 1..];
                }
                None => {
                    if !self.discarding {
                        if self.partial.len() + data.len() > self.max_line {
                            self.partial = Vec::new();
                            self.discarding = true;
                        } else {
                            self.partial.extend_from_slice(data);
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// Checks that `path`, every symbolic link resolved, is inside `dir`; returns `dir` resolved.
fn resolve_inside(path: &Path, dir: &Path) -> Result<PathBuf, String> {
    let dir = fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let real = fs::canonicalize(path).map_err(|e| e.to_string())?;
    if real.starts_with(&dir) {
        Ok(dir)
    } else {
        Err(outside(&real, &dir))
    }
}

fn outside(real: &Path, dir: &Path) -> String {
    format!(
        "resolves to {}, outside {} (follow_symlinks_outside: true follows it)",
        real.display(),
        dir.display()
    )
}

fn fd(f: &File) -> i32 {
    use std::os::fd::AsRawFd;
    f.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Default)]
    struct Collect {
        lines: Vec<String>,
        too_long: usize,
        events: Vec<FileEvent>,
    }
    impl LineSink for Collect {
        fn line(&mut self, l: &[u8]) {
            self.lines.push(String::from_utf8_lossy(l).into_owned());
        }
        fn too_long(&mut self) {
            self.too_long += 1;
        }
        fn event(&mut self, e: FileEvent) {
            self.events.push(e);
        }
    }

    #[test]
    fn splits_on_cr_and_lf_and_holds_partials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"one\r\ntwo\rthree\nfou").unwrap();
        let mut fol = Follower::new(&p, 1024);
        let mut c = Collect::default();
        fol.poll(&mut c, u64::MAX);
        assert_eq!(c.lines, ["one", "two", "three"]);
        f.write_all(b"r\n").unwrap();
        fol.poll(&mut c, u64::MAX);
        assert_eq!(c.lines, ["one", "two", "three", "four"]);
        assert_eq!(c.events, [FileEvent::Opened]);
    }

    #[test]
    fn an_in_place_rewrite_is_read_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        std::fs::write(&p, "epoch,step\r\n0,1\r\n").unwrap();
        let mut fol = Follower::new(&p, 1024);
        let mut c = Collect::default();
        fol.poll(&mut c, u64::MAX);
        let ino = std::fs::metadata(&p).unwrap().ino();
        // Lightning's CSVLogger: rewritten whole, longer, same inode
        std::fs::write(&p, "epoch,step,val\r\n0,1,\r\n0,2,0.5\r\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
        fol.poll(&mut c, u64::MAX);
        assert_eq!(
            c.lines,
            ["epoch,step", "0,1", "epoch,step,val", "0,1,", "0,2,0.5"]
        );
        assert_eq!(
            c.events,
            [FileEvent::Opened, FileEvent::Truncated { repeated: false }]
        );
    }

    #[test]
    fn long_lines_are_dropped_while_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut f = File::create(&p).unwrap();
        let mut fol = Follower::new(&p, 10);
        let mut c = Collect::default();
        f.write_all(b"ok\n0123456789ABC").unwrap();
        fol.poll(&mut c, u64::MAX);
        f.write_all(b"DEF\nafter\n").unwrap();
        fol.poll(&mut c, u64::MAX);
        assert_eq!(c.lines, ["ok", "after"]);
        assert_eq!(c.too_long, 1);
        assert!(fol.partial.capacity() <= 64);
    }
}
