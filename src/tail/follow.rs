//! Follows one file by path: reads what is appended, splits it into lines, and notices
//! rotation (a new file at the path, by device and inode), truncation (size below our
//! offset: copytruncate) and deletion.
//!
//! Polling only: it works on NFS and Lustre, where inotify never fires. A rotated file is
//! read to its end before the new one is opened, so no line is lost or read twice. Lines
//! split on `\n` and on `\r` (tqdm redraws); a partial last line waits for its end; a line
//! longer than the limit is dropped as it streams, never buffered whole.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What happened to the file, reported beside the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    Opened,
    /// A different file now sits at the path; the old one was read to its end.
    Rotated,
    /// The file shrank below what we had read: we start again from its beginning.
    Truncated,
    /// The path no longer exists.
    Deleted,
    /// The path cannot be read (permission denied, a directory, an I/O error).
    Error(String),
}

/// Receives what a [`Follower`] reads.
pub trait LineSink {
    fn line(&mut self, line: &[u8]);
    /// A line over the limit was dropped.
    fn too_long(&mut self);
    fn event(&mut self, event: FileEvent);
}

/// One followed path.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    id: Option<(u64, u64)>,
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
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.file.is_some() {
                    // renamed away or deleted: what was written before is still ours
                    self.check_truncation(sink);
                    let polled = self.read(sink, u64::MAX);
                    self.flush_partial(sink);
                    self.close();
                    sink.event(FileEvent::Deleted);
                    self.missing = true;
                    return polled;
                }
                // never seen yet: not an event, it may appear later
                self.missing = true;
                return Polled::default();
            }
            Err(e) => {
                self.error(sink, e.to_string());
                return Polled::default();
            }
        };
        self.missing = false;
        if meta.is_dir() {
            if self.file.is_some() {
                self.read(sink, u64::MAX);
                self.flush_partial(sink);
                self.close();
            }
            self.error(sink, "is a directory".into());
            return Polled::default();
        }
        let id = (meta.dev(), meta.ino());
        if self.file.is_some() && self.id != Some(id) {
            self.check_truncation(sink);
            self.read(sink, u64::MAX);
            self.flush_partial(sink);
            self.close();
            if let Err(e) = self.open() {
                self.error(sink, e.to_string());
                return Polled::default();
            }
            sink.event(FileEvent::Rotated);
        } else if self.file.is_none() {
            if let Err(e) = self.open() {
                self.error(sink, e.to_string());
                return Polled::default();
            }
            sink.event(FileEvent::Opened);
        } else {
            self.check_truncation(sink);
        }
        self.last_error = None;
        self.read(sink, budget)
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

    fn open(&mut self) -> io::Result<()> {
        let f = File::open(&self.path)?;
        // the path may have changed between stat and open: trust the handle
        let m = f.metadata()?;
        if m.is_dir() {
            return Err(io::Error::other("is a directory"));
        }
        self.id = Some((m.dev(), m.ino()));
        self.file = Some(f);
        self.offset = 0;
        self.head.clear();
        self.partial.clear();
        self.discarding = false;
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
            sink.event(FileEvent::Truncated);
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
    }

    fn error(&mut self, sink: &mut dyn LineSink, msg: String) {
        if self.last_error.as_deref() != Some(msg.as_str()) {
            sink.event(FileEvent::Error(msg.clone()));
            self.last_error = Some(msg);
        }
    }

    fn read(&mut self, sink: &mut dyn LineSink, budget: u64) -> Polled {
        let mut polled = Polled::default();
        let Some(mut file) = self.file.take() else {
            return polled;
        };
        loop {
            if polled.bytes >= budget {
                polled.more = true;
                break;
            }
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error(sink, e.to_string());
                    break;
                }
            };
            if self.head.len() < HEAD_BYTES {
                let take = (HEAD_BYTES - self.head.len()).min(n);
                self.head.extend_from_slice(&self.buf[..take]);
            }
            self.offset += n as u64;
            polled.bytes += n as u64;
            let buf = std::mem::take(&mut self.buf);
            self.split(&buf[..n], sink);
            let short = n < buf.len();
            self.buf = buf;
            if short {
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
        assert_eq!(c.events, [FileEvent::Opened, FileEvent::Truncated]);
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
