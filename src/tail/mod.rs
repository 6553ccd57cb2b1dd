//! The tailer: discovers files from the configured paths and globs, follows each, and hands
//! their lines to a [`Sink`]. It knows nothing of parsing or metrics.
//!
//! One thread polls every file: every 250 ms while it grows, backing off to 1 s while it is
//! idle, and at once again while a burst exceeds one poll's budget. Polls due close together
//! share one wake-up: on virtual machines a wake-up costs more CPU than parsing a hundred
//! lines, so batching is what keeps following a busy log near 1 µs of CPU per line. It
//! forgets files that stay deleted.
//!
//! The globs are expanded again every few seconds for new runs, in [`Tailer::run`] by a
//! scanner thread of its own: a walk of a huge or slow tree never holds up the polling of
//! the files already followed, and each walk is bounded ([`discover`]). A file is keyed by
//! device and inode, not by path: reached by two paths (a symlinked run directory), it is
//! followed once, under the first path found (a path without symbolic links first). A file
//! the sink refused (run limit, name taken) is offered again at the next scan after a run
//! was forgotten; the refused set holds only paths the last scan matched. A one-run source
//! ([`Source::one_run`]) follows its files one at a time, oldest first, each newer one
//! taking the run over ([`FileEvent::Replaced`]) once the one before is read and quiet. [`Tailer::run`]
//! sleeps on a [`Waker`]: its stop is seen between two files' polls and ends a sleep at once,
//! and the scanner notifies it when an expansion is ready. Tests drive it with
//! [`Tailer::poll_once`] or [`Tailer::poll_at`] (an explicit `now`), which scan inline, or
//! run it on a manual waker and wake it cycle by cycle, instead of sleeping.

pub mod discover;
pub mod follow;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use discover::FileId;
pub use follow::{FileEvent, Follower};

use crate::clock::{unix_now, Waker};

/// One configured source: a path or glob, with an optional run-name prefix and a tag the
/// tailer does not look at but hands to [`Sink::open`] with each file the source finds (the
/// program's tag is the log format).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source<T> {
    pub run: Option<String>,
    pub path: String,
    pub tag: T,
    /// Follow files whose symbolic links lead out of the pattern's base directory
    /// ([`discover::base_dir`]); refused by default.
    pub follow_symlinks_outside: bool,
    /// Every file the pattern matches is one run, named `run`: its files are followed one at
    /// a time, oldest first, each newer one taking over once the one before is read and no
    /// longer written ([`TailOptions::handoff_quiet`]): a restarted job's new log continues
    /// the run instead of starting another.
    pub one_run: bool,
}

/// Receives lines per run; `T` is the tag of the sources ([`Source::tag`]).
pub trait Sink<T> {
    /// A new file was found for `run` by a source tagged `tag`. Returning false refuses it
    /// (a cap was reached).
    fn open(&mut self, run: &str, path: &Path, tag: &T) -> bool;
    /// One line, read at `time` (unix seconds).
    fn line(&mut self, run: &str, line: &[u8], time: f64);
    fn too_long(&mut self, run: &str);
    /// One poll read `bytes` (> 0) of the run's file, a partial last line included.
    fn read(&mut self, _run: &str, _bytes: u64) {}
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
    /// Directory entries one expansion of one glob reads at most.
    pub max_scan_entries: usize,
    /// A file of a [`Source::one_run`] source unwritten this long (by its modification
    /// time) hands its run over to a newer file of the source.
    pub handoff_quiet: Duration,
}

/// Polls due within this much of the earliest one are taken in the same wake-up.
const COALESCE: Duration = Duration::from_millis(50);

/// Bytes one poll reads from one file at most.
const POLL_BUDGET: u64 = 256 * 1024;

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            max_line_bytes: 1 << 20,
            rescan: Duration::from_secs(5),
            forget_after: Duration::from_secs(3600),
            active_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(1),
            max_scan_entries: discover::MAX_SCAN_ENTRIES,
            handoff_quiet: Duration::from_secs(30),
        }
    }
}

struct Tracked<T> {
    run: String,
    /// The source that found it: a reload that keeps the source keeps the file.
    source: Source<T>,
    follower: Follower,
    /// The file the scan found at the path, until the follower opens one.
    found_id: Option<FileId>,
    next: Instant,
    delay: Duration,
    /// Until the first end of file, lines are stamped with the file's mtime, not now:
    /// state rebuilt after a restart must not look fresh.
    catching_up: bool,
    missing_since: Option<Instant>,
}

/// One source's expansion, by index (`None`: the pattern does not compile).
type Expanded = (usize, Option<discover::Expansion>);

/// Follows every file of every source.
pub struct Tailer<T> {
    sources: Arc<Vec<Source<T>>>,
    opts: TailOptions,
    files: BTreeMap<PathBuf, Tracked<T>>,
    /// Which followed path has each open file.
    owners: HashMap<FileId, PathBuf>,
    /// Per source.
    scan_state: Vec<ScanState>,
    last_scan: Option<Instant>,
    /// New sources handed in while running (a config reload), taken at the next poll.
    pending: SourcesSlot<T>,
}

/// Where a running tailer's new sources are put: see [`Tailer::sources_slot`].
pub type SourcesSlot<T> = Arc<Mutex<Option<Vec<Source<T>>>>>;

#[derive(Default)]
struct ScanState {
    scanned: bool,
    /// Paths the sink refused, among those the last expansion matched.
    refused: BTreeSet<PathBuf>,
    /// A run was forgotten since: the sink may take a refused path now.
    retry_refused: bool,
    /// An expansion hit the entry bound (warned once).
    bounded: bool,
    /// Files of a one-run source that a newer file took the run over from: never read again
    /// while the pattern matches them.
    replaced: BTreeSet<PathBuf>,
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Tailer<T> {
    pub fn new(sources: Vec<Source<T>>, opts: TailOptions) -> Self {
        let scan_state = sources.iter().map(|_| ScanState::default()).collect();
        Tailer {
            sources: Arc::new(sources),
            opts,
            files: BTreeMap::new(),
            owners: HashMap::new(),
            scan_state,
            last_scan: None,
            pending: Default::default(),
        }
    }

    /// A slot through which another thread gives this tailer new sources: they replace the
    /// current ones (as [`Tailer::set_sources`]) at its next poll.
    pub fn sources_slot(&self) -> SourcesSlot<T> {
        self.pending.clone()
    }

    /// Replaces the sources. Files found by a source that is still configured go on as they
    /// were; the others stop being followed and their runs are forgotten. The next poll
    /// scans the new sources.
    pub fn set_sources(&mut self, sources: Vec<Source<T>>, sink: &mut dyn Sink<T>) {
        let gone: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, t)| !sources.contains(&t.source))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(t) = self.files.remove(&p) {
                self.owners.retain(|_, owner| *owner != p);
                sink.forget(&t.run);
            }
        }
        self.scan_state = sources.iter().map(|_| ScanState::default()).collect();
        self.sources = Arc::new(sources);
        self.last_scan = None;
    }

    /// New sources put in the slot since the last call (a reload), applied.
    fn take_pending(&mut self, sink: &mut dyn Sink<T>) -> bool {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match pending {
            Some(sources) => {
                self.set_sources(sources, sink);
                true
            }
            None => false,
        }
    }

    /// Number of files followed.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Number of refused paths remembered (each matched by the last scan).
    pub fn refused_count(&self) -> usize {
        self.scan_state.iter().map(|s| s.refused.len()).sum()
    }

    /// Expands the globs and starts following new files.
    pub fn scan(&mut self, sink: &mut dyn Sink<T>) {
        self.scan_at(sink, Instant::now());
    }

    fn scan_at(&mut self, sink: &mut dyn Sink<T>, now: Instant) {
        let never = AtomicBool::new(false);
        for i in 0..self.sources.len() {
            let exp = discover::expand(&self.sources[i].path, self.opts.max_scan_entries, &never);
            self.apply_expansion(sink, i, exp.ok(), now);
        }
    }

    fn scan_due(&self, now: Instant) -> bool {
        self.last_scan
            .is_none_or(|t| now.duration_since(t) >= self.opts.rescan)
    }

    /// Starts following what the expansion of source `i` found and is not followed yet
    /// (`None`: the pattern does not compile, which config validation rules out).
    fn apply_expansion(
        &mut self,
        sink: &mut dyn Sink<T>,
        i: usize,
        exp: Option<discover::Expansion>,
        now: Instant,
    ) {
        self.last_scan = Some(now);
        let Some(exp) = exp else {
            return;
        };
        let src = &self.sources[i];
        let state = &mut self.scan_state[i];
        if !std::mem::replace(&mut state.scanned, true) && exp.found.iter().all(|f| f.id.is_none())
        {
            tracing::warn!(path = %src.path, "no file matches this log path yet; it is followed when one appears");
        }
        if exp.truncated && !std::mem::replace(&mut state.bounded, true) {
            tracing::warn!(path = %src.path, max_entries = self.opts.max_scan_entries, "a scan of this glob stopped at its bound of directory entries; files past it are not found");
        }
        let retry = std::mem::take(&mut state.retry_refused);
        let old_refused = std::mem::take(&mut state.refused);
        let mut taken: HashSet<FileId> = self
            .files
            .values()
            .filter_map(|t| t.follower.id().or(t.found_id))
            .collect();
        let mut found = exp.found;
        // a path without symbolic links names the run before one through a link
        found.sort_by(|a, b| (a.via_link, &a.path).cmp(&(b.via_link, &b.path)));
        if src.one_run {
            // the run's files in the order they were written
            found.sort_by_cached_key(|f| (mtime(&f.path), f.via_link, f.path.clone()));
            let matched: BTreeSet<&PathBuf> = found.iter().map(|f| &f.path).collect();
            state.replaced.retain(|p| matched.contains(p));
        }
        for f in found {
            if self.files.contains_key(&f.path) {
                continue;
            }
            if f.id.is_some_and(|id| taken.contains(&id)) {
                continue; // another path to a file followed already
            }
            if old_refused.contains(&f.path) && !retry {
                state.refused.insert(f.path);
                continue;
            }
            let (run, altered) = if src.one_run {
                (src.run.clone().unwrap_or_default(), false)
            } else {
                discover::run_name_checked(src.run.as_deref(), &src.path, &f.path)
            };
            if src.one_run {
                if state.replaced.contains(&f.path) {
                    continue;
                }
                let holder = self
                    .files
                    .iter()
                    .find(|(_, t)| t.run == run && t.source == *src)
                    .map(|(p, t)| (p.clone(), t.catching_up));
                if let Some((held, catching_up)) = holder {
                    if catching_up || !hands_over(&held, &f.path, self.opts.handoff_quiet) {
                        continue; // offered again at the next scan
                    }
                    if let Some(mut t) = self.files.remove(&held) {
                        self.owners.retain(|_, owner| *owner != held);
                        taken.retain(|id| Some(*id) != t.follower.id().or(t.found_id));
                        // its last line, unended, is the last the file will have
                        let mut adapter = Adapter {
                            run: &t.run,
                            sink,
                            time: unix_now(),
                        };
                        t.follower.flush_partial(&mut adapter);
                    }
                    tracing::info!(run, from = %held.display(), to = %f.path.display(), "the run goes on in a newer file");
                    sink.event(&run, &FileEvent::Replaced { by: f.path.clone() });
                    state.replaced.insert(held);
                }
            }
            if !sink.open(&run, &f.path, &src.tag) {
                state.refused.insert(f.path);
                continue;
            }
            if altered {
                tracing::warn!(run, path = %f.path.display(), max_bytes = discover::MAX_RUN_NAME_BYTES, "the file's name holds control characters or is too long for a run name; the run is named with them replaced, cut and a hash of the whole name");
            }
            if let Some(id) = f.id {
                taken.insert(id);
            }
            let mut follower = Follower::new(&f.path, self.opts.max_line_bytes);
            if !src.follow_symlinks_outside {
                follower = follower.confined_to(discover::base_dir(&src.path));
            }
            self.files.insert(
                f.path,
                Tracked {
                    run,
                    source: src.clone(),
                    follower,
                    found_id: f.id,
                    next: now,
                    delay: self.opts.active_delay,
                    catching_up: true,
                    missing_since: None,
                },
            );
        }
    }

    /// Polls every file that is due, scans if due. Returns when the next poll is due.
    pub fn poll_once(&mut self, sink: &mut dyn Sink<T>) -> Instant {
        self.poll_at(sink, Instant::now())
    }

    /// [`Tailer::poll_once`] as if it were `now`: what is due, and how long a file has been
    /// gone, are reckoned from `now` (a test steps time with it; give each call a `now` no
    /// earlier than the last).
    pub fn poll_at(&mut self, sink: &mut dyn Sink<T>, now: Instant) -> Instant {
        self.take_pending(sink);
        if self.scan_due(now) {
            self.scan_at(sink, now);
        }
        let next_scan = self.last_scan.map(|t| t + self.opts.rescan).unwrap_or(now);
        self.poll_files(sink, now, &|| false)
            .map_or(next_scan, |n| n.min(next_scan))
    }

    /// Polls every file that is due at `now`, until `stopped`. Returns when the next poll is
    /// due.
    fn poll_files(
        &mut self,
        sink: &mut dyn Sink<T>,
        now: Instant,
        stopped: &dyn Fn() -> bool,
    ) -> Option<Instant> {
        let mut forget = Vec::new();
        for (path, t) in self.files.iter_mut() {
            if stopped() {
                break;
            }
            if t.next > now + COALESCE {
                continue;
            }
            let before = t.follower.id();
            let polled = {
                let owners = &self.owners;
                let taken = |id| owners.get(&id).is_some_and(|p| p != path);
                poll_file(t, sink, POLL_BUDGET, &taken)
            };
            let after = t.follower.id();
            if before != after {
                if let Some(b) = before {
                    if self.owners.get(&b) == Some(path) {
                        self.owners.remove(&b);
                    }
                }
                if let Some(a) = after {
                    self.owners.insert(a, path.clone());
                    t.found_id = None;
                }
            }
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
                self.owners.retain(|_, owner| *owner != p);
                sink.forget(&t.run);
                for s in &mut self.scan_state {
                    s.retry_refused = true;
                }
            }
        }
        self.files.values().map(|t| t.next).min()
    }

    /// Follows until `waker` is stopped, the globs expanded by a scanner thread. A sleep lasts
    /// at most the longest poll interval; the scanner's notification ends it at once. Each
    /// sleep asked for is one cycle of `waker`, and so is each pass with nothing to wait
    /// for on a manual waker.
    pub fn run(&mut self, sink: &mut dyn Sink<T>, waker: &Arc<Waker>) {
        let mut scanner = Scanner::spawn(&self.sources, self.opts, waker);
        while !waker.is_stopped() {
            if self.take_pending(sink) {
                // the old scanner's expansions index the old sources: start afresh
                scanner = Scanner::spawn(&self.sources, self.opts, waker);
            }
            let now = Instant::now();
            match &scanner {
                Some(s) => {
                    while let Ok((i, exp)) = s.results.try_recv() {
                        self.apply_expansion(sink, i, exp, now);
                    }
                }
                // no thread to be had: scan here
                None if self.scan_due(now) => self.scan_at(sink, now),
                None => {}
            }
            let next = self
                .poll_files(sink, Instant::now(), &|| waker.is_stopped())
                .unwrap_or(now + self.opts.max_delay);
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(self.opts.max_delay);
            if (!wait.is_zero() || waker.is_manual()) && !waker.is_stopped() {
                waker.sleep_until(Instant::now() + wait);
            }
        }
    }

    /// Reads every file to its end once, partial last lines included (one-shot mode).
    pub fn read_to_end(&mut self, sink: &mut dyn Sink<T>) {
        self.scan(sink);
        for t in self.files.values_mut() {
            // to the size the file has now: a file written faster than it is read ends too
            let size = std::fs::metadata(t.follower.path()).map_or(0, |m| m.len());
            let mut left = size.saturating_add(POLL_BUDGET);
            // until a read finds nothing: a short read is not proof of the end on every filesystem
            loop {
                let bytes = poll_file(t, sink, POLL_BUDGET, &|_| false).bytes;
                left = left.saturating_sub(bytes);
                if bytes == 0 || left == 0 {
                    break;
                }
            }
            let mut adapter = Adapter {
                run: &t.run,
                sink,
                time: 0.0,
            };
            t.follower.flush_partial(&mut adapter);
        }
    }
}

/// The scanner thread of [`Tailer::run`]: expands every glob each rescan interval and hands
/// each expansion over as soon as it is done, notifying the tailer's waker. Dropping it stops it,
/// mid-walk too.
struct Scanner {
    results: mpsc::Receiver<Expanded>,
    stop: Arc<AtomicBool>,
    /// Dropped with the scanner: ends its wait between scans at once.
    _wake: mpsc::Sender<()>,
}

impl Scanner {
    fn spawn<T: Send + Sync + 'static>(
        sources: &Arc<Vec<Source<T>>>,
        opts: TailOptions,
        waker: &Arc<Waker>,
    ) -> Option<Scanner> {
        let (tx, results) = mpsc::sync_channel(sources.len().max(1));
        let (wake, woken) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let tailer = waker.clone();
        let (sources, flag) = (sources.clone(), stop.clone());
        std::thread::Builder::new()
            .name("tail-scan".into())
            .spawn(move || loop {
                for (i, src) in sources.iter().enumerate() {
                    let exp = discover::expand(&src.path, opts.max_scan_entries, &flag);
                    if flag.load(Ordering::Relaxed) || tx.send((i, exp.ok())).is_err() {
                        return;
                    }
                    tailer.notify();
                }
                if woken.recv_timeout(opts.rescan) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
            })
            .ok()?;
        Some(Scanner {
            results,
            stop,
            _wake: wake,
        })
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A file's modification time (`None`: it cannot be read).
fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `newer` takes a one-run source's run over from `held`: it was written after
/// `held`, and `held` has not been written for `quiet` (a file still written is a second
/// writer, not a restart, and keeps the run).
fn hands_over(held: &Path, newer: &Path, quiet: Duration) -> bool {
    let (Some(h), Some(n)) = (mtime(held), mtime(newer)) else {
        return false;
    };
    n > h
        && SystemTime::now()
            .duration_since(h)
            .is_ok_and(|d| d >= quiet)
}

fn poll_file<T>(
    t: &mut Tracked<T>,
    sink: &mut dyn Sink<T>,
    budget: u64,
    taken: &dyn Fn(FileId) -> bool,
) -> follow::Polled {
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
    let polled = t.follower.poll_unless(&mut adapter, budget, taken);
    if polled.bytes > 0 {
        sink.read(&t.run, polled.bytes);
    }
    if !polled.more {
        t.catching_up = false;
    }
    polled
}

struct Adapter<'a, T> {
    run: &'a str,
    sink: &'a mut dyn Sink<T>,
    time: f64,
}

impl<T> follow::LineSink for Adapter<'_, T> {
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
