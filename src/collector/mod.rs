//! Hardware collectors: GPUs through NVML ([`gpu`]) and the host through sysinfo ([`host`]).
//!
//! Each samples in a background thread on its own interval and keeps the latest values as
//! plain data, so a scrape only formats what is cached and never waits on the hardware. The
//! rest of the program reads [`gpu::GpuSnapshot`] and [`host::HostSnapshot`]; only
//! `gpu/nvml.rs` sees nvml-wrapper and only `host.rs` sees sysinfo.

use std::path::PathBuf;
use std::time::Duration;

use crate::expose::{Encoder, Kind};

pub mod gpu;
pub mod host;

pub use gpu::{GpuCollector, GpuProcess, GpuSample, GpuSnapshot};
pub use host::{HostCollector, HostSnapshot};

/// Settings of the GPU collector.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuOptions {
    /// The NVML library to load; `None` is nvml-wrapper's default (`libnvidia-ml.so.1`).
    pub library: Option<PathBuf>,
    pub interval: Duration,
}

/// Settings of the host collector.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOptions {
    pub interval: Duration,
}

/// Unix time now, in seconds.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes the collectors' own families: NVML availability, cycle durations and errors.
pub fn encode_self(
    enc: &mut Encoder<'_>,
    gpu: Option<&GpuCollector>,
    host: Option<&HostCollector>,
) {
    let gpu_snap = gpu.map(|g| g.snapshot());
    let host_snap = host.map(|h| h.snapshot());
    if let Some(s) = &gpu_snap {
        enc.family(
            "gpu_train_exporter_nvml_up",
            "1 if NVML was loaded and initialised, 0 if GPU metrics are unavailable.",
            Kind::Gauge,
        );
        enc.sample(
            "gpu_train_exporter_nvml_up",
            &[],
            if s.nvml_up { 1.0 } else { 0.0 },
        );
    }
    let mut durations: Vec<(&str, f64)> = Vec::new();
    if let Some(d) = gpu_snap.as_ref().and_then(|s| s.cycle_seconds) {
        durations.push(("gpu", d));
    }
    if let Some(d) = host_snap.as_ref().and_then(|s| s.cycle_seconds) {
        durations.push(("host", d));
    }
    if !durations.is_empty() {
        enc.family(
            "gpu_train_exporter_collector_duration_seconds",
            "Time the collector's last sampling cycle took.",
            Kind::Gauge,
        );
        for (c, d) in durations {
            enc.sample(
                "gpu_train_exporter_collector_duration_seconds",
                &[("collector", c)],
                d,
            );
        }
    }
    let mut errors: Vec<(&str, &str, u64)> = Vec::new();
    if let Some(g) = gpu {
        errors.extend(g.errors().into_iter().map(|(c, n)| ("gpu", c, n)));
    }
    if let Some(h) = host {
        errors.extend(h.errors().into_iter().map(|(c, n)| ("host", c, n)));
    }
    if !errors.is_empty() {
        enc.family(
            "gpu_train_exporter_collector_errors_total",
            "Failed calls by collector and call (NVML function or sysinfo call); unsupported features are not errors.",
            Kind::Counter,
        );
        for (c, call, n) in errors {
            enc.sample(
                "gpu_train_exporter_collector_errors_total",
                &[("collector", c), ("call", call)],
                n as f64,
            );
        }
    }
}

/// The stop signal of a collector's threads: a flag to check, and a sleep that a stop ends
/// at once (so a sampling loop wakes once per interval, not every few milliseconds).
#[derive(Debug, Default)]
pub struct Stop {
    flag: std::sync::atomic::AtomicBool,
    lock: std::sync::Mutex<()>,
    wake: std::sync::Condvar,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Relaxed);
        let _guard = crate::training::lock(&self.lock);
        self.wake.notify_all();
    }

    /// Sleeps until `deadline`; false if the stop came first.
    pub fn sleep_until(&self, deadline: std::time::Instant) -> bool {
        let mut guard = crate::training::lock(&self.lock);
        loop {
            if self.is_set() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            guard = match self.wake.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// A collector's background thread: told to stop when dropped, stopped and joined by
/// [`Worker::stop`].
#[derive(Debug)]
pub struct Worker {
    stop: std::sync::Arc<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a thread named `name`. `None`, logged, if no thread can be started.
    pub fn spawn(name: &str, body: impl FnOnce(&Stop) + Send + 'static) -> Option<Worker> {
        let stop = std::sync::Arc::new(Stop::default());
        let signal = stop.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&signal))
            .map_err(|e| tracing::warn!("{name} metrics absent: cannot start a thread: {e}"))
            .ok()
            .map(|t| Worker {
                stop,
                thread: Some(t),
            })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.set();
    }
}
