//! Host collector: the only module that uses sysinfo. It samples the few host values a
//! training dashboard shows beside the GPUs (CPU utilisation, memory, load) in a background
//! thread; node_exporter remains the tool for everything else about the host.

use super::Worker;
use crate::clock::Waker;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sysinfo::System;

use super::HostOptions;
use crate::expose::{Encoder, Kind};
use crate::sync::lock;

/// The latest host values as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSnapshot {
    /// 0–1 over all CPUs since the previous sample; `None` until two samples exist.
    pub cpu_utilization: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub load1: Option<f64>,
    pub cycle_seconds: Option<f64>,
}

/// The sysinfo calls that can fail, as labels of the errors counter.
const CALLS: [&str; 2] = ["system_new", "load_average"];

struct Shared {
    snapshot: Mutex<HostSnapshot>,
    errors: Mutex<[u64; CALLS.len()]>,
}

/// The running host collector. Dropping it stops its thread.
pub struct HostCollector {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl HostCollector {
    /// Starts sampling; the first memory and load values are read before it returns.
    pub fn start(opts: HostOptions) -> HostCollector {
        Self::start_with(opts, Arc::new(Waker::new()))
    }

    /// As [`HostCollector::start`], the sampling thread waiting on `waker` between cycles
    /// (a test's manual one).
    pub fn start_with(opts: HostOptions, waker: Arc<Waker>) -> HostCollector {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(HostSnapshot::default()),
            errors: Mutex::new([0; CALLS.len()]),
        });
        let mut sys = match System::new() {
            Ok(s) => Some(s),
            Err(e) => {
                lock(&shared.errors)[0] += 1;
                tracing::warn!("host metrics absent: {e}");
                None
            }
        };
        if let Some(sys) = &mut sys {
            cycle(sys, &shared, true);
        }
        let worker = sys.and_then(|mut sys| {
            let shared = shared.clone();
            Worker::spawn_with("host", waker, move |stop| {
                let mut next = Instant::now() + opts.interval;
                while stop.sleep_until(next) {
                    next += opts.interval;
                    cycle(&mut sys, &shared, false);
                }
            })
        });
        HostCollector { shared, worker }
    }

    pub fn snapshot(&self) -> HostSnapshot {
        lock(&self.shared.snapshot).clone()
    }

    /// Failed calls so far, by call.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        let e = lock(&self.shared.errors);
        CALLS.iter().zip(e.iter()).map(|(c, n)| (*c, *n)).collect()
    }

    /// Writes the host families.
    pub fn encode(&self, enc: &mut Encoder<'_>) {
        encode(enc, &self.snapshot());
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        if let Some(w) = self.worker {
            w.stop();
        }
    }
}

fn cycle(sys: &mut System, shared: &Shared, first: bool) {
    let started = Instant::now();
    sys.refresh_cpu_usage();
    sys.refresh_memory();
    let load1 = match System::load_average() {
        Ok(l) => Some(l.one),
        Err(e) => {
            let mut errs = lock(&shared.errors);
            if errs[1] == 0 {
                tracing::warn!("cannot read the load average (logged once): {e}");
            }
            errs[1] += 1;
            None
        }
    };
    let total = sys.total_memory();
    let snap = HostSnapshot {
        cpu_utilization: (!first).then(|| (sys.global_cpu_usage() as f64 / 100.0).clamp(0.0, 1.0)),
        memory_used_bytes: (total > 0).then(|| sys.used_memory()),
        memory_total_bytes: (total > 0).then_some(total),
        load1,
        cycle_seconds: Some(started.elapsed().as_secs_f64()),
    };
    *lock(&shared.snapshot) = snap;
}

/// Writes the host families from a snapshot; a value not known is left out.
pub fn encode(enc: &mut Encoder<'_>, s: &HostSnapshot) {
    let families: [(&str, &str, Option<f64>); 4] = [
        (
            "host_cpu_utilization_ratio",
            "Fraction of CPU time not idle, over all CPUs, since the previous sample (0-1).",
            s.cpu_utilization,
        ),
        (
            "host_memory_used_bytes",
            "Memory in use (total minus available).",
            s.memory_used_bytes.map(|v| v as f64),
        ),
        (
            "host_memory_total_bytes",
            "Memory installed.",
            s.memory_total_bytes.map(|v| v as f64),
        ),
        ("host_load1", "Load average over one minute.", s.load1),
    ];
    for (name, help, v) in families {
        if let Some(v) = v {
            enc.family(name, help, Kind::Gauge);
            enc.sample(name, &[], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The CPU utilization takes two samples: absent after the one `start` takes, present
    /// once a wake-up of the sampling thread has taken the second.
    #[test]
    fn the_second_sample_comes_at_a_wake_up() {
        let waker = Arc::new(Waker::manual());
        let opts = HostOptions {
            interval: Duration::from_secs(3600),
        };
        let host = HostCollector::start_with(opts, waker.clone());
        assert!(waker.wait_cycles(1, Duration::from_secs(10)));
        let first = host.snapshot();
        assert!(first.cycle_seconds.is_some());
        assert_eq!(first.cpu_utilization, None);
        assert!(waker.wake(1, Duration::from_secs(10)));
        let u = host.snapshot().cpu_utilization.expect("a second sample");
        assert!((0.0..=1.0).contains(&u), "{u}");
        host.stop();
    }
}
