//! The tailer: discovers files from the configured paths and globs, follows each, and hands
//! their lines to a [`Sink`]. It knows nothing of parsing or metrics.
//!
//! One thread polls every file: every 250 ms while it grows, backing off to 1 s while it is
//! idle, and at once again while a burst exceeds one poll's budget. Polls due close together
//! share one wake-up: on virtual machines a wake-up costs more CPU than parsing a hundred
//! lines, so batching is what keeps following a busy log near 1 µs of CPU per line. It
//! re-scans the globs every few seconds for new runs and forgets files that stay deleted.
//! Tests drive it with [`Tailer::poll_once`] instead of sleeping.

pub mod discover;
pub mod follow;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use follow::{FileEvent, Follower};

use crate::parse::Format;

/// One configured source: a path or glob, with an optional run-name prefix and a format.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub run: Option<String>,
    pub path: String,
    pub format: Format,
}

/// Receives lines per run.
pub trait Sink {
    /// A new file was found for `run`. Returning false refuses it (a cap was reached).
    fn open(&mut self, run: &str, path: &Path, format: Format) -> bool;
    /// One line, read at `time` (unix seconds).
    fn line(&mut self, run: &str, line: &[u8], time: f64);
    fn too_long(&mut self, run: &str);
    fn event(&mut self, run: &str, event: &FileEvent);
    /// The file has been gone longer than the retention: drop the run.
    fn forget(&mut self, run: &str);
}

/// Tuning of the polling loop.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    pub max_line_bytes: usize,
    pub rescan: Duration,
    /// How long a deleted file's run is kept before it is forgotten.
    pub forget_after: Duration,
    /// Poll interval of a file that grew at its last poll.
    pub active_delay: Duration,
    /// Longest interval for an idle file.
    pub max_delay: Duration,
}

/// Polls due within this much of the earliest one are taken in the same wake-up.
const COALESCE: Duration = Duration::from_millis(50);

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            max_line_bytes: 1 << 20,
            rescan: Duration::from_secs(5),
            forget_after: Duration::from_secs(3600),
            active_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(1),
        }
    }
}

struct Tracked {
    run: String,
    /// The source that found it: a reload that keeps the source keeps the file.
    source: Source,
    follower: Follower,
    next: Instant,
    delay: Duration,
    /// Until the first end of file, lines are stamped with the file's mtime, not now:
    /// state rebuilt after a restart must not look fresh.
    catching_up: bool,
    missing_since: Option<Instant>,
}

/// Follows every file of every source.
pub struct Tailer {
    sources: Vec<Source>,
    opts: TailOptions,
    files: BTreeMap<PathBuf, Tracked>,
    refused: std::collections::BTreeSet<PathBuf>,
    last_scan: Option<Instant>,
    /// New sources handed in while running (a config reload), taken at the next poll.
    pending: SourcesSlot,
}

/// Where a running tailer's new sources are put: see [`Tailer::sources_slot`].
pub type SourcesSlot = Arc<Mutex<Option<Vec<Source>>>>;

impl Tailer {
    pub fn new(sources: Vec<Source>, opts: TailOptions) -> Self {
        Tailer {
            sources,
            opts,
            files: BTreeMap::new(),
            refused: Default::default(),
            last_scan: None,
            pending: Default::default(),
        }
    }

    /// A slot through which another thread gives this tailer new sources: they replace the
    /// current ones (as [`Tailer::set_sources`]) at its next poll.
    pub fn sources_slot(&self) -> SourcesSlot {
        self.pending.clone()
    }

    /// Replaces the sources. Files found by a source that is still configured go on as they
    /// were; the others stop being followed and their runs are forgotten. The next poll
    /// scans the new sources.
    pub fn set_sources(&mut self, sources: Vec<Source>, sink: &mut dyn Sink) {
        let gone: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, t)| !sources.contains(&t.source))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(t) = self.files.remove(&p) {
                sink.forget(&t.run);
            }
        }
        self.sources = sources;
        self.refused.clear();
        self.last_scan = None;
    }

    /// Number of files followed.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Expands the globs and starts following new files.
    pub fn scan(&mut self, sink: &mut dyn Sink) {
        self.scan_at(sink, Instant::now());
    }

    fn scan_at(&mut self, sink: &mut dyn Sink, now: Instant) {
        self.last_scan = Some(now);
        for src in &self.sources {
            let paths = match discover::expand(&src.path) {
                Ok(p) => p,
                Err(_) => continue, // validated at config load
            };
            for path in paths {
                if self.files.contains_key(&path) || self.refused.contains(&path) {
                    continue;
                }
                let run = discover::run_name(src.run.as_deref(), &src.path, &path);
                if !sink.open(&run, &path, src.format) {
                    self.refused.insert(path);
                    continue;
                }
                let follower = Follower::new(&path, self.opts.max_line_bytes);
                self.files.insert(
                    path,
                    Tracked {
                        run,
                        source: src.clone(),
                        follower,
                        next: now,
                        delay: self.opts.active_delay,
                        catching_up: true,
                        missing_since: None,
                    },
                );
            }
        }
    }

    /// Polls every file that is due, scans if due. Returns when the next poll is due.
    pub fn poll_once(&mut self, sink: &mut dyn Sink) -> Instant {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(sources) = pending {
            self.set_sources(sources, sink);
        }
        let now = Instant::now();
        if self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= self.opts.rescan)
        {
            self.scan_at(sink, now);
        }
        let mut forget = Vec::new();
        for (path, t) in self.files.iter_mut() {
            if t.next > now + COALESCE {
                continue;
            }
            let polled = poll_file(t, sink, 256 * 1024);
            if t.follower.is_missing() {
                let since = *t.missing_since.get_or_insert(now);
                if now.duration_since(since) >= self.opts.forget_after {
                    forget.push(path.clone());
                }
            } else {
                t.missing_since = None;
            }
            t.delay = if polled.more {
                Duration::ZERO
            } else if polled.bytes > 0 {
                self.opts.active_delay
            } else {
                (t.delay * 2).clamp(self.opts.active_delay, self.opts.max_delay)
            };
            t.next = now + t.delay;
        }
        for p in forget {
            if let Some(t) = self.files.remove(&p) {
                sink.forget(&t.run);
            }
        }
        let next_scan = self.last_scan.map(|t| t + self.opts.rescan).unwrap_or(now);
        self.files
            .values()
            .map(|t| t.next)
            .min()
            .unwrap_or(next_scan)
            .min(next_scan)
    }

    /// Follows until `stop` is set.
    pub fn run(&mut self, sink: &mut dyn Sink, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let next = self.poll_once(sink);
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(self.opts.max_delay);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }

    /// Reads every file to its end once, partial last lines included (one-shot mode).
    pub fn read_to_end(&mut self, sink: &mut dyn Sink) {
        self.scan(sink);
        for t in self.files.values_mut() {
            // until a read finds nothing: a short read is not proof of the end on every filesystem
            while poll_file(t, sink, u64::MAX).bytes > 0 {}
            let mut adapter = Adapter {
                run: &t.run,
                sink,
                time: 0.0,
            };
            t.follower.flush_partial(&mut adapter);
        }
    }
}

fn poll_file(t: &mut Tracked, sink: &mut dyn Sink, budget: u64) -> follow::Polled {
    let now = unix_now();
    let time = if t.catching_up {
        std::fs::metadata(t.follower.path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64().min(now))
            .unwrap_or(now)
    } else {
        now
    };
    let mut adapter = Adapter {
        run: &t.run,
        sink,
        time,
    };
    let polled = t.follower.poll(&mut adapter, budget);
    if !polled.more {
        t.catching_up = false;
    }
    polled
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Adapter<'a> {
    run: &'a str,
    sink: &'a mut dyn Sink,
    time: f64,
}

impl follow::LineSink for Adapter<'_> {
    fn line(&mut self, line: &[u8]) {
        self.sink.line(self.run, line, self.time);
    }
    fn too_long(&mut self) {
        self.sink.too_long(self.run);
    }
    fn event(&mut self, event: FileEvent) {
        // the sink logs it: the tailer only reports
        self.sink.event(self.run, &event);
    }
}
