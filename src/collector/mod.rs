//! Collectors: GPUs through NVML ([`gpu`]), the host through sysinfo ([`host`]) and, on a
//! Kubernetes node, the pod each GPU is allocated to through the kubelet ([`pods`]).
//!
//! Each samples in a background thread on its own interval and keeps the latest values as
//! plain data, so a scrape only formats what is cached and never waits on the hardware. The
//! rest of the program reads [`gpu::GpuSnapshot`], [`host::HostSnapshot`] and
//! [`pods::PodsSnapshot`]; only `gpu/nvml/` sees nvml-wrapper, only `host.rs` sysinfo and
//! only `pods/api.rs` tonic.

use std::path::PathBuf;
use std::time::Duration;

use crate::clock::Waker;
use crate::expose::{Encoder, Kind};

pub mod gpu;
pub mod host;
pub mod pods;

pub use gpu::{GpuCollector, GpuProcess, GpuSample, GpuSnapshot};
pub use host::{HostCollector, HostSnapshot};
pub use pods::{PodsCollector, PodsSnapshot};

/// Settings of the GPU collector.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuOptions {
    /// The NVML library to load; `None` is nvml-wrapper's default (`libnvidia-ml.so.1`).
    pub library: Option<PathBuf>,
    pub interval: Duration,
    /// How often a family found unsupported on a GPU (`NotSupported`, `NO_PERMISSION`) is
    /// asked again: drivers and MIG or permission changes can bring it.
    pub reprobe: Duration,
    /// The kernel log read for the XIDs NVML does not deliver (`--gpu.kmsg`); `None`: off.
    pub kmsg: Option<PathBuf>,
    /// The procfs the compute processes' names are read from (`--path.procfs`, the same
    /// as attribution's), else NVML's name for them.
    pub procfs: PathBuf,
}

/// Settings of the host collector.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOptions {
    pub interval: Duration,
}

/// Settings of the pods collector.
#[derive(Debug, Clone, PartialEq)]
pub struct PodsOptions {
    /// The kubelet's pod-resources socket.
    pub socket: PathBuf,
    pub interval: Duration,
}

/// What every collector offers the scrape: its name (the `collector` label), its families,
/// and how its last cycle went. node_exporter's collector registry is the model: the scrape
/// walks the registered list ([`registry`]), and one collector failing fails only its own
/// families, reported by `gpu_train_exporter_collector_success{collector}`.
pub trait Collector: Send + Sync {
    /// The `collector` label value.
    fn name(&self) -> &'static str;
    /// Writes the collector's families from its latest cached sample.
    fn encode(&self, enc: &mut Encoder<'_>);
    /// Whether the last cycle produced its data (for the GPU collector: NVML is up).
    fn success(&self) -> bool;
    /// How long the last cycle took, once one has finished.
    fn cycle_seconds(&self) -> Option<f64>;
    /// Failed calls so far, by call.
    fn errors(&self) -> Vec<(&'static str, u64)>;
    /// Families of the collector's own state written once before the list's (NVML up).
    fn encode_status(&self, _enc: &mut Encoder<'_>) {}
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }
    fn encode(&self, enc: &mut Encoder<'_>) {
        GpuCollector::encode(self, enc)
    }
    fn success(&self) -> bool {
        self.snapshot().nvml_up
    }
    fn cycle_seconds(&self) -> Option<f64> {
        self.snapshot().cycle_seconds
    }
    fn errors(&self) -> Vec<(&'static str, u64)> {
        GpuCollector::errors(self)
    }
    fn encode_status(&self, enc: &mut Encoder<'_>) {
        enc.family(
            "gpu_train_exporter_nvml_up",
            "1 if NVML was loaded and initialised, 0 if GPU metrics are unavailable.",
            Kind::Gauge,
        );
        let up = if self.success() { 1.0 } else { 0.0 };
        enc.sample("gpu_train_exporter_nvml_up", &[], up);
    }
}

impl Collector for HostCollector {
    fn name(&self) -> &'static str {
        "host"
    }
    fn encode(&self, enc: &mut Encoder<'_>) {
        HostCollector::encode(self, enc)
    }
    fn success(&self) -> bool {
        self.snapshot().cycle_seconds.is_some()
    }
    fn cycle_seconds(&self) -> Option<f64> {
        self.snapshot().cycle_seconds
    }
    fn errors(&self) -> Vec<(&'static str, u64)> {
        HostCollector::errors(self)
    }
}

impl Collector for PodsCollector {
    fn name(&self) -> &'static str {
        "pods"
    }
    fn encode(&self, enc: &mut Encoder<'_>) {
        PodsCollector::encode(self, enc)
    }
    fn success(&self) -> bool {
        self.snapshot().ok
    }
    fn cycle_seconds(&self) -> Option<f64> {
        self.snapshot().cycle_seconds
    }
    fn errors(&self) -> Vec<(&'static str, u64)> {
        PodsCollector::errors(self)
    }
}

/// The registry: the collectors that are on, in the order their families are written. The
/// one place a collector is listed; a new one adds a line here.
pub fn registry<'a>(
    gpu: Option<&'a GpuCollector>,
    host: Option<&'a HostCollector>,
    pods: Option<&'a PodsCollector>,
) -> Vec<&'a dyn Collector> {
    let mut list: Vec<&dyn Collector> = Vec::new();
    if let Some(g) = gpu {
        list.push(g);
    }
    if let Some(h) = host {
        list.push(h);
    }
    if let Some(p) = pods {
        list.push(p);
    }
    list
}

/// Writes every collector's families, then their own: success, NVML availability, cycle
/// durations and errors.
pub fn encode_all(enc: &mut Encoder<'_>, collectors: &[&dyn Collector]) {
    for c in collectors {
        c.encode(enc);
    }
    for c in collectors {
        c.encode_status(enc);
    }
    if !collectors.is_empty() {
        enc.family(
            "gpu_train_exporter_collector_success",
            "1 if the collector's last cycle produced its data, 0 if it failed (its families are then absent or stale).",
            Kind::Gauge,
        );
        for c in collectors {
            let ok = if c.success() { 1.0 } else { 0.0 };
            enc.sample(
                "gpu_train_exporter_collector_success",
                &[("collector", c.name())],
                ok,
            );
        }
    }
    let durations: Vec<(&str, f64)> = collectors
        .iter()
        .filter_map(|c| Some((c.name(), c.cycle_seconds()?)))
        .collect();
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
    let errors: Vec<(&str, &str, u64)> = collectors
        .iter()
        .flat_map(|c| c.errors().into_iter().map(|(call, n)| (c.name(), call, n)))
        .collect();
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

/// A collector's background thread: told to stop when dropped, stopped and joined by
/// [`Worker::stop`].
#[derive(Debug)]
pub struct Worker {
    waker: std::sync::Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a thread named `name`, waiting on a production [`Waker`]. `None`,
    /// logged, if no thread can be started.
    pub fn spawn(name: &str, body: impl FnOnce(&Waker) + Send + 'static) -> Option<Worker> {
        Self::spawn_with(name, std::sync::Arc::new(Waker::new()), body)
    }

    /// As [`Worker::spawn`], waiting on `waker` (a test's manual one).
    pub fn spawn_with(
        name: &str,
        waker: std::sync::Arc<Waker>,
        body: impl FnOnce(&Waker) + Send + 'static,
    ) -> Option<Worker> {
        let signal = waker.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&signal))
            .map_err(|e| tracing::warn!("{name} metrics absent: cannot start a thread: {e}"))
            .ok()
            .map(|t| Worker {
                waker,
                thread: Some(t),
            })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.waker.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.waker.stop();
    }
}
