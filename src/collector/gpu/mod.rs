//! GPU collector: samples every GPU through NVML in background threads and keeps the
//! latest values as plain data.
//!
//! Each GPU is sampled on a thread of its own, every interval, into a [`GpuSnapshot`]; a
//! GPU whose driver calls hang (a GSP timeout makes each wait ~45 s) does not hold back the
//! others, keeps its last-sample time, and has its values left out once they are three
//! intervals old. A scrape formats the latest snapshot and never calls NVML, so scrape
//! latency does not grow with GPU count or with a slow driver. NVML that cannot be
//! initialised (the driver not loaded yet) is tried again with a backoff, as is a GPU whose
//! handle cannot be had; XID errors arrive through an NVML event set, rebuilt when the GPUs
//! change, waited on in a thread of its own and counted, not overwritten. This file is the
//! sampling loop and the handle the rest of the program holds; the jobs sit beside it:
//! [`model`] (the snapshot, plain data), [`nvml`] (every NVML call, the only nvml-wrapper
//! user), [`wrap`] (wrapping byte counters made monotonic), [`xid`] (XID counting) and
//! [`encode`] (the exposition families).

use super::Worker;
use crate::clock::{unix_now, Waker};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::GpuOptions;
use crate::expose::Encoder;
use crate::procfs::Procfs;
use crate::sync::lock;

mod encode;
mod kmsg;
mod model;
mod nvml;
mod wrap;
mod xid;

pub use encode::encode;
pub use model::{
    GpuProcess, GpuSample, GpuSnapshot, HistoryPoint, NvLinkSample, RemappedRows, XidCount,
    CLOCK_EVENT_REASONS, HISTORY_POINTS, HISTORY_STEP_SECONDS,
};
pub use nvml::{CALLS, LIFECYCLE_CALLS};

struct Shared {
    snapshot: Mutex<Arc<GpuSnapshot>>,
    /// The last hour of utilization and memory per GPU index.
    history: Mutex<BTreeMap<u32, VecDeque<HistoryPoint>>>,
    xids: xid::Xids,
    errors: nvml::CallErrors,
}

/// Reads the GPU collector's latest snapshot; cloned to the threads that need it.
#[derive(Clone)]
pub struct GpuReader {
    shared: Arc<Shared>,
}

impl GpuReader {
    /// The latest snapshot, with the XID counts up to now.
    pub fn snapshot(&self) -> Arc<GpuSnapshot> {
        let snap = lock(&self.shared.snapshot).clone();
        let unknown = self.shared.xids.unknown();
        let Some(xids) = self.shared.xids.counts() else {
            if unknown.is_empty() {
                return snap;
            }
            let mut s = (*snap).clone();
            s.xids_unattributed = unknown;
            return Arc::new(s);
        };
        let mut s = (*snap).clone();
        s.xids = xids;
        s.xids_unattributed = unknown;
        Arc::new(s)
    }
}

/// The running GPU collector. Dropping it stops its threads.
pub struct GpuCollector {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl GpuCollector {
    /// Loads NVML and starts sampling. Never fails: without NVML it logs why once and
    /// reports `nvml_up` false. Waits (up to 10 s) for the first cycle so that the first
    /// scrape already has values.
    pub fn start(opts: GpuOptions) -> GpuCollector {
        Self::start_with(opts, Arc::new(Waker::new()))
    }

    /// As [`GpuCollector::start`], the sampling thread waiting on `waker` between cycles
    /// (a test's manual one).
    pub fn start_with(opts: GpuOptions, waker: Arc<Waker>) -> GpuCollector {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(GpuSnapshot::default())),
            history: Mutex::new(BTreeMap::new()),
            xids: xid::Xids::default(),
            errors: nvml::CallErrors::default(),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = {
            let shared = shared.clone();
            Worker::spawn_with("gpu", waker, move |stop| run(opts, &shared, stop, ready_tx))
        };
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        GpuCollector { shared, worker }
    }

    /// The latest snapshot, with the XID counts up to now.
    pub fn snapshot(&self) -> Arc<GpuSnapshot> {
        self.reader().snapshot()
    }

    /// A handle that reads the snapshots, for the threads that join them with runs.
    pub fn reader(&self) -> GpuReader {
        GpuReader {
            shared: self.shared.clone(),
        }
    }

    /// The last hour of one GPU's utilization and memory, oldest first, a point every
    /// [`HISTORY_STEP_SECONDS`].
    pub fn history(&self, index: u32) -> Vec<HistoryPoint> {
        lock(&self.shared.history)
            .get(&index)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Failed calls so far, by NVML function (every sampled function once NVML is up).
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        if !lock(&self.shared.snapshot).nvml_up {
            return Vec::new();
        }
        self.shared.errors.by_call()
    }

    /// Writes the GPU families.
    pub fn encode(&self, enc: &mut Encoder<'_>) {
        encode(enc, &self.snapshot());
    }

    /// Stops the threads and waits for them (at most one event wait, 200 ms).
    pub fn stop(self) {
        if let Some(w) = self.worker {
            w.stop();
        }
    }
}

/// Tries at initialising NVML, and at a GPU's handle: 1 s apart, doubling up to 30 s.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The wait before the next try; each call doubles the following one, up to the most.
    pub(super) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }
}

/// The first and the longest wait between two tries at initialising NVML.
const INIT_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// A GPU whose last completed sample is this many cycles old has its values left out.
const STALE_CYCLES: u64 = 3;

/// How long the first cycle waits for every GPU (later ones wait one interval), so that the
/// first scrape has values.
const FIRST_CYCLE_WAIT: Duration = Duration::from_secs(5);

/// Why a session with NVML ended.
enum End {
    Stop,
    /// NVML must be initialised again; `down`: the driver is gone (`nvml_up` 0 meanwhile),
    /// else every GPU is lost (they stay `gpu_up` 0 meanwhile).
    Reinit {
        why: String,
        down: bool,
    },
}

/// The sampling thread: initialises NVML and samples every interval until `stop`. An
/// initialisation that fails is tried again, 1 s doubling to 30 s apart, on `stop`'s waker
/// (the driver may come up after the exporter: GPU Operator nodes); so is one after a call
/// said the driver went away, or every GPU was lost. `ready` is told once the first
/// snapshot is stored, or the first initialisation failed.
fn run(opts: GpuOptions, shared: &Shared, stop: &Waker, ready: mpsc::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Backoff::new(INIT_RETRY.0, INIT_RETRY.1);
    let mut warned = false;
    let mut known: BTreeMap<u32, GpuSample> = BTreeMap::new();
    while !stop.is_stopped() {
        match nvml::Library::open(opts.library.as_deref()) {
            Err(why) => {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        "GPU metrics absent: {why}; NVML is tried again, 1 s doubling to 30 s apart"
                    );
                } else {
                    tracing::debug!("NVML still unavailable: {why}");
                }
                mark_down(shared);
            }
            Ok(lib) => {
                warned = false;
                let mut healthy = false;
                match session(
                    &lib,
                    &opts,
                    shared,
                    stop,
                    &mut ready,
                    &mut known,
                    &mut healthy,
                ) {
                    End::Stop => return,
                    End::Reinit { why, down } => {
                        tracing::warn!("NVML is initialised again: {why}");
                        if down {
                            mark_down(shared);
                        }
                    }
                }
                if healthy {
                    backoff = Backoff::new(INIT_RETRY.0, INIT_RETRY.1);
                }
            }
        }
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        stop.sleep_until(Instant::now() + backoff.next_delay());
    }
}

/// NVML is not up: the snapshot says so and holds nothing else.
fn mark_down(shared: &Shared) {
    let mut snap = lock(&shared.snapshot);
    if snap.nvml_up || !snap.gpus.is_empty() {
        *snap = Arc::new(GpuSnapshot::default());
    }
}

/// One initialised NVML: discovers the GPUs, samples each on a thread of its own every
/// interval and follows XID events, until `stop` or until NVML must be initialised again.
/// `known` carries the GPUs' identities over a re-initialisation; `healthy` is set once a
/// cycle saw a GPU up.
fn session(
    lib: &nvml::Library,
    opts: &GpuOptions,
    shared: &Shared,
    stop: &Waker,
    ready: &mut Option<mpsc::Sender<()>>,
    known: &mut BTreeMap<u32, GpuSample>,
    healthy: &mut bool,
) -> End {
    let driver_version = lib.driver_version();
    let procfs = Procfs::new(&opts.procfs);
    let gpus = match lib.discover(&shared.errors, &procfs, known, opts.reprobe) {
        Ok(g) => g,
        Err(why) => return End::Reinit { why, down: true },
    };
    tracing::info!(gpus = gpus.len(), driver = %driver_version, library = %lib.name(), "NVML initialised");
    let started_at = unix_now();
    let board = Board::new(gpus.iter().map(|g| g.identity().clone()).collect());
    let targets = Targets::default();
    let ending = AtomicBool::new(false);
    std::thread::scope(|s| {
        for (k, mut gpu) in gpus.into_iter().enumerate() {
            let (board, errors) = (&board, &shared.errors);
            let spawned = std::thread::Builder::new()
                .name(format!("gpu{}", gpu.identity().index))
                .spawn_scoped(s, move || board.serve(k, &mut gpu, errors));
            if let Err(e) = spawned {
                tracing::warn!(gpu = k, "GPU not sampled: cannot start its thread: {e}");
            }
        }
        s.spawn(|| xid_loop(lib, &targets, shared, stop, &ending));
        if let Some(path) = &opts.kmsg {
            s.spawn(|| kernel_log_xids(path, shared, stop, &ending));
        }
        let end = cycles(CycleContext {
            opts,
            shared,
            stop,
            board: &board,
            targets: &targets,
            driver_version: &driver_version,
            started_at,
            ready,
            known,
            healthy,
        });
        ending.store(true, Ordering::Relaxed);
        board.end();
        end
    })
}

/// What the cycle loop of a session works with.
struct CycleContext<'a> {
    opts: &'a GpuOptions,
    shared: &'a Shared,
    stop: &'a Waker,
    board: &'a Board,
    targets: &'a Targets,
    driver_version: &'a str,
    started_at: f64,
    ready: &'a mut Option<mpsc::Sender<()>>,
    known: &'a mut BTreeMap<u32, GpuSample>,
    healthy: &'a mut bool,
}

/// Asks every GPU for a sample each interval, waits for them until the interval ends, and
/// stores the snapshot: a GPU that did not answer keeps its last values until they are
/// [`STALE_CYCLES`] cycles old, then only its identity and the time it was last sampled.
fn cycles(c: CycleContext<'_>) -> End {
    let mut last_history: Option<Instant> = None;
    let mut cycle = 0;
    while !c.stop.is_stopped() {
        let started = Instant::now();
        cycle += 1;
        let wait = if cycle == 1 {
            c.opts.interval.max(FIRST_CYCLE_WAIT)
        } else {
            c.opts.interval
        };
        let round = c.board.round(cycle, started + wait, c.started_at);
        c.targets.set(round.handles);
        for g in &round.samples {
            if !g.uuid.is_empty() {
                c.known.insert(g.index, g.without_values());
            }
        }
        let snap = GpuSnapshot {
            nvml_up: true,
            driver_version: c.driver_version.to_string(),
            gpus: round.samples,
            sampled_at: Some(unix_now()),
            cycle_seconds: Some(started.elapsed().as_secs_f64()),
            xids: BTreeMap::new(),
            xids_unattributed: BTreeMap::new(),
        };
        if last_history.is_none_or(|t: Instant| t.elapsed().as_secs_f64() >= HISTORY_STEP_SECONDS) {
            last_history = Some(started);
            record_history(c.shared, &snap);
        }
        let any_up = snap.gpus.iter().any(|g| g.up);
        let all_lost = !snap.gpus.is_empty() && round.all_answered && !any_up;
        *lock(&c.shared.snapshot) = Arc::new(snap);
        if let Some(r) = c.ready.take() {
            let _ = r.send(());
        }
        if let Some(why) = round.reinit {
            return End::Reinit { why, down: true };
        }
        if all_lost {
            return End::Reinit {
                why: "every GPU is lost".into(),
                down: false,
            };
        }
        if any_up {
            *c.healthy = true;
        }
        c.stop.sleep_until(started + c.opts.interval);
    }
    End::Stop
}

/// The GPUs' threads and the cycle loop meet here: the loop asks for a cycle, each GPU's
/// thread samples it and leaves the result in its slot.
struct Board {
    state: Mutex<BoardState>,
    changed: Condvar,
}

struct BoardState {
    /// The cycle asked for last.
    want: u64,
    ending: bool,
    slots: Vec<Slot>,
}

struct Slot {
    /// Identity as discovered, served until a first sample completes.
    identity: GpuSample,
    /// The last completed sample and the cycle it answered.
    done: Option<(u64, GpuSample)>,
    handle: Option<usize>,
    reinit: Option<String>,
}

/// What one cycle gathered.
struct Round {
    samples: Vec<GpuSample>,
    /// `(index, handle)` of the GPUs that can be registered for XID events.
    handles: Vec<(u32, usize)>,
    reinit: Option<String>,
    /// Every GPU answered this cycle.
    all_answered: bool,
}

impl Board {
    fn new(identities: Vec<GpuSample>) -> Board {
        Board {
            state: Mutex::new(BoardState {
                want: 0,
                ending: false,
                slots: identities
                    .into_iter()
                    .map(|identity| Slot {
                        identity,
                        done: None,
                        handle: None,
                        reinit: None,
                    })
                    .collect(),
            }),
            changed: Condvar::new(),
        }
    }

    /// A GPU's thread: samples each cycle asked for, until the end.
    fn serve(&self, k: usize, gpu: &mut nvml::Gpu<'_>, errors: &nvml::CallErrors) {
        let mut seen = 0;
        loop {
            {
                let mut st = lock(&self.state);
                while st.want <= seen && !st.ending {
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.ending {
                    return;
                }
                seen = st.want;
            }
            let at = unix_now();
            let mut s = gpu.sample(errors);
            s.sampled_at = Some(at);
            let mut st = lock(&self.state);
            let slot = &mut st.slots[k];
            slot.done = Some((seen, s));
            slot.handle = gpu.event_handle();
            slot.reinit = gpu.reinit().map(String::from);
            self.changed.notify_all();
        }
    }

    /// Asks for `cycle`, waits until every GPU answered it or `deadline`, and gathers.
    fn round(&self, cycle: u64, deadline: Instant, started_at: f64) -> Round {
        let mut st = lock(&self.state);
        st.want = cycle;
        self.changed.notify_all();
        let answered = |st: &BoardState| {
            st.slots
                .iter()
                .all(|s| s.done.as_ref().is_some_and(|(c, _)| *c == cycle))
        };
        while !answered(&st) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = match self.changed.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        let all_answered = answered(&st);
        let mut round = Round {
            samples: Vec::with_capacity(st.slots.len()),
            handles: Vec::new(),
            reinit: None,
            all_answered,
        };
        for slot in &st.slots {
            let sample = match &slot.done {
                Some((c, s)) if cycle - c < STALE_CYCLES => s.clone(),
                Some((_, s)) => s.without_values(),
                None => GpuSample {
                    up: true,
                    sampled_at: Some(started_at),
                    ..slot.identity.clone()
                },
            };
            if let Some(h) = slot.handle {
                round.handles.push((sample.index, h));
            }
            if round.reinit.is_none() {
                round.reinit.clone_from(&slot.reinit);
            }
            round.samples.push(sample);
        }
        round
    }

    /// Ends the GPUs' threads (each once its current sample returns).
    fn end(&self) {
        lock(&self.state).ending = true;
        self.changed.notify_all();
    }
}

/// The GPUs to follow for XID events, and a generation that changes with them, so that
/// the event set is built again when a GPU comes, goes or gets a new handle.
#[derive(Default)]
struct Targets(Mutex<(u64, Vec<(u32, usize)>)>);

impl Targets {
    fn set(&self, handles: Vec<(u32, usize)>) {
        let mut t = lock(&self.0);
        if t.1 != handles {
            t.0 += 1;
            t.1 = handles;
        }
    }

    fn get(&self) -> (u64, Vec<(u32, usize)>) {
        lock(&self.0).clone()
    }

    fn generation(&self) -> u64 {
        lock(&self.0).0
    }
}

/// The kernel-log thread of a session: counts the `NVRM: Xid` lines of `path` on the GPU
/// of their PCI bus id (as the latest snapshot knows it), else as unattributed.
fn kernel_log_xids(path: &std::path::Path, shared: &Shared, stop: &Waker, ending: &AtomicBool) {
    let go = || !stop.is_stopped() && !ending.load(Ordering::Relaxed);
    kmsg::follow(path, &go, &mut |bus, code| {
        let snap = lock(&shared.snapshot).clone();
        let gpu = snap
            .gpus
            .iter()
            .find(|g| kmsg::parse_bus(&g.pci_bus_id) == Some(bus))
            .map(|g| g.index);
        match gpu {
            Some(gpu) => {
                if shared
                    .xids
                    .record_from(gpu, code, xid::Source::KernelLog, unix_now())
                {
                    tracing::warn!(gpu, xid = code, "XID error (kernel log)");
                }
            }
            None => {
                tracing::warn!(
                    xid = code,
                    "XID error in the kernel log for a PCI device no GPU has"
                );
                shared.xids.record_unknown(code);
            }
        }
    });
}

/// The XID thread of a session: builds an event set for the GPUs of `targets` and counts
/// its events; builds it again after a failed wait (200 ms later) or when the GPUs change.
fn xid_loop(
    lib: &nvml::Library,
    targets: &Targets,
    shared: &Shared,
    stop: &Waker,
    ending: &AtomicBool,
) {
    let go = || !stop.is_stopped() && !ending.load(Ordering::Relaxed);
    let mut warned = false;
    while go() {
        let (generation, list) = targets.get();
        let current = || go() && targets.generation() == generation;
        let events = if list.is_empty() {
            None
        } else {
            lib.xid_events(&list, &shared.errors)
        };
        match events {
            Some(mut events) => {
                xid::watch(&mut events, &shared.xids, &current, &mut warned);
                drop(events);
                std::thread::sleep(Duration::from_millis(200));
            }
            None => {
                while current() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

/// Adds a point per GPU to the last hour kept for the live page.
fn record_history(shared: &Shared, snap: &GpuSnapshot) {
    let t = snap.sampled_at.unwrap_or_else(unix_now);
    let mut history = lock(&shared.history);
    for g in &snap.gpus {
        let mem = match g.memory_in_use() {
            (Some(u), Some(total)) if total > 0 => Some(u as f64 / total as f64),
            _ => None,
        };
        let h = history.entry(g.index).or_default();
        if h.len() >= HISTORY_POINTS {
            h.pop_front();
        }
        h.push_back((t, g.utilization, mem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_doubling_to_thirty() {
        let mut b = Backoff::new(INIT_RETRY.0, INIT_RETRY.1);
        let waits: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
