//! Hardware collectors: GPUs through NVML ([`gpu`]) and the host through sysinfo ([`host`]).
//!
//! Each samples in a background thread on its own interval and keeps the latest values as
//! plain data, so a scrape only formats what is cached and never waits on the hardware. The
//! rest of the program reads [`gpu::GpuSnapshot`] and [`host::HostSnapshot`]; only `gpu.rs`
//! sees nvml-wrapper and only `host.rs` sees sysinfo.

use std::path::PathBuf;
use std::time::Duration;

use crate::metrics::{Encoder, Kind};

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
