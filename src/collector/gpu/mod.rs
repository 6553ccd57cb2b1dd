//! GPU collector: samples every GPU through NVML in a background thread and keeps the
//! latest values as plain data.
//!
//! A thread samples every GPU each interval into a [`GpuSnapshot`]; a scrape formats the
//! latest snapshot and never calls NVML, so scrape latency does not grow with GPU count or
//! with a slow driver. XID errors arrive through an NVML event set waited on in a thread of
//! its own and are counted, not overwritten. This file is the sampling loop and the handle
//! the rest of the program holds; the jobs sit beside it: [`model`] (the snapshot, plain
//! data), [`nvml`] (every NVML call, the only nvml-wrapper user), [`xid`] (XID counting)
//! and [`encode`] (the exposition families).

use super::Worker;
use crate::clock::{unix_now, Waker};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::GpuOptions;
use crate::expose::Encoder;
use crate::procfs::Procfs;
use crate::sync::lock;

mod encode;
mod model;
mod nvml;
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
        let Some(xids) = self.shared.xids.counts() else {
            return snap;
        };
        let mut s = (*snap).clone();
        s.xids = xids;
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

/// The sampling thread: opens NVML, starts the XID thread, then samples every interval
/// until `stop`. `ready` is told once the first snapshot is stored (or NVML failed).
fn run(opts: GpuOptions, shared: &Shared, stop: &Waker, ready: mpsc::Sender<()>) {
    let lib = match nvml::Library::open(opts.library.as_deref()) {
        Ok(l) => l,
        Err(why) => {
            tracing::warn!("GPU metrics absent: {why}");
            let _ = ready.send(());
            return;
        }
    };
    let driver_version = lib.driver_version();
    let mut gpus = lib.discover(&shared.errors, Procfs::new(&opts.procfs));
    tracing::info!(gpus = gpus.len(), driver = %driver_version, library = %lib.name(), "NVML initialised");
    let targets = gpus.event_targets();
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(mut events) = lib.xid_events(&targets, &shared.errors) {
                xid::watch(&mut events, &shared.xids, stop);
            }
        });
        let mut ready = Some(ready);
        let mut last_history: Option<Instant> = None;
        while !stop.is_stopped() {
            let started = Instant::now();
            let samples = gpus.sample(&shared.errors);
            let snap = GpuSnapshot {
                nvml_up: true,
                driver_version: driver_version.clone(),
                gpus: samples,
                sampled_at: Some(unix_now()),
                cycle_seconds: Some(started.elapsed().as_secs_f64()),
                xids: BTreeMap::new(),
            };
            if last_history
                .is_none_or(|t: Instant| t.elapsed().as_secs_f64() >= HISTORY_STEP_SECONDS)
            {
                last_history = Some(started);
                record_history(shared, &snap);
            }
            *lock(&shared.snapshot) = Arc::new(snap);
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            stop.sleep_until(started + opts.interval);
        }
    });
}

/// Adds a point per GPU to the last hour kept for the live page.
fn record_history(shared: &Shared, snap: &GpuSnapshot) {
    let t = snap.sampled_at.unwrap_or_else(unix_now);
    let mut history = lock(&shared.history);
    for g in &snap.gpus {
        let mem = match (g.memory_used_bytes, g.memory_total_bytes) {
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
