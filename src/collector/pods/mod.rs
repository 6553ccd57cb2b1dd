//! Pods collector: which Kubernetes pod and container each GPU is allocated to, from the
//! kubelet's pod-resources API (`v1.PodResourcesLister/List` on its unix socket), as
//! dcgm-exporter maps them. Exposed as one small mapping series per GPU and container,
//! `gpu_pod_info{gpu, uuid, namespace, pod, container}`, to be joined in PromQL with the
//! `gpu_*` series on `instance, gpu`, rather than pod labels on every GPU series.
//!
//! A thread calls `List` each interval and keeps the mapping as plain data; a scrape only
//! formats it. The NVIDIA device plugin names devices by UUID; the GPU index comes from the
//! GPU collector's snapshot ([`GpuReader`]), empty when NVML does not list the device (a
//! MIG device, or the GPU collector off). Without the socket (not on a Kubernetes node, not
//! mounted, or not reachable by the daemon's user) the collector is off, said in one log
//! line at start. Only [`api`] sees tonic.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gpu::GpuReader;
use super::{PodsOptions, Worker};
use crate::clock::Waker;
use crate::expose::{Encoder, Kind};
use crate::sync::lock;

pub mod api;

/// The longest a `List` call may take, whatever the interval.
const MAX_CALL: Duration = Duration::from_secs(10);

/// One GPU allocated to one container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodDevice {
    /// The NVML index, when NVML lists the device.
    pub gpu: Option<u32>,
    pub uuid: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// The latest mapping as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodsSnapshot {
    /// Whether the last `List` call answered.
    pub ok: bool,
    /// Sorted, without duplicates; empty unless `ok`.
    pub devices: Vec<PodDevice>,
    pub cycle_seconds: Option<f64>,
}

struct Shared {
    snapshot: Mutex<PodsSnapshot>,
    /// Failed `List` calls so far.
    errors: Mutex<u64>,
}

/// The running pods collector. Dropping it stops its thread.
pub struct PodsCollector {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl PodsCollector {
    /// Starts mapping, the first `List` answered (or failed) before it returns; `None`,
    /// logged once, when the socket does not exist.
    pub fn start(opts: PodsOptions, gpus: Option<GpuReader>) -> Option<PodsCollector> {
        Self::start_with(opts, gpus, Arc::new(Waker::new()))
    }

    /// As [`PodsCollector::start`], the thread waiting on `waker` between cycles.
    pub fn start_with(
        opts: PodsOptions,
        gpus: Option<GpuReader>,
        waker: Arc<Waker>,
    ) -> Option<PodsCollector> {
        if let Err(e) = std::fs::symlink_metadata(&opts.socket) {
            // The kubelet makes its directory root-only (0750): a non-root daemon sees
            // permission denied, which is "off" as much as an absent socket is.
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no kubelet pod-resources socket",
                _ => "cannot reach the kubelet pod-resources socket",
            };
            tracing::info!(socket = %opts.socket.display(), "pod mapping off: {why} ({e})");
            return None;
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!("pod mapping off: cannot start its runtime: {e}");
                return None;
            }
        };
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(PodsSnapshot::default()),
            errors: Mutex::new(0),
        });
        let timeout = opts.interval.min(MAX_CALL);
        cycle(&rt, &opts.socket, timeout, gpus.as_ref(), &shared);
        let worker = {
            let shared = shared.clone();
            Worker::spawn_with("pods", waker, move |stop| {
                let mut next = Instant::now() + opts.interval;
                while stop.sleep_until(next) {
                    next += opts.interval;
                    cycle(&rt, &opts.socket, timeout, gpus.as_ref(), &shared);
                }
            })
        };
        Some(PodsCollector { shared, worker })
    }

    pub fn snapshot(&self) -> PodsSnapshot {
        lock(&self.shared.snapshot).clone()
    }

    /// Failed calls so far, by call.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        vec![("list", *lock(&self.shared.errors))]
    }

    /// Writes `gpu_pod_info`.
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

/// One `List` call into the snapshot. A failure is logged when it follows a success (or
/// is the first), counted every time, and leaves no mapping: a stale one would be wrong.
fn cycle(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    timeout: Duration,
    gpus: Option<&GpuReader>,
    shared: &Shared,
) {
    let started = Instant::now();
    let answer = rt.block_on(api::list(socket, timeout));
    // the first failure after a success, or at start, is logged
    let log_failure = {
        let last = lock(&shared.snapshot);
        last.ok || last.cycle_seconds.is_none()
    };
    let snap = match answer {
        Ok(response) => {
            let index: HashMap<String, u32> = gpus
                .map(|g| {
                    g.snapshot()
                        .gpus
                        .iter()
                        .map(|s| (s.uuid.clone(), s.index))
                        .collect()
                })
                .unwrap_or_default();
            PodsSnapshot {
                ok: true,
                devices: devices(&response, &index),
                cycle_seconds: Some(started.elapsed().as_secs_f64()),
            }
        }
        Err(e) => {
            *lock(&shared.errors) += 1;
            if log_failure {
                tracing::warn!("pod mapping absent until the kubelet answers: {e}");
            }
            PodsSnapshot {
                ok: false,
                devices: Vec::new(),
                cycle_seconds: Some(started.elapsed().as_secs_f64()),
            }
        }
    };
    *lock(&shared.snapshot) = snap;
}

/// Whether a device plugin resource is an NVIDIA GPU: whole GPUs, time-sliced ones renamed
/// (`nvidia.com/gpu.shared`), and MIG devices under the device plugin's mixed strategy
/// (`nvidia.com/mig-1g.10gb`).
pub fn is_nvidia_gpu(resource: &str) -> bool {
    matches!(resource, "nvidia.com/gpu" | "nvidia.com/gpu.shared")
        || resource.starts_with("nvidia.com/mig-")
}

/// The GPUs of a `List` answer, one per device and container, with the NVML index from
/// `index` (UUID → index). A time-sliced GPU's replica id (`GPU-…::3`) is its GPU's UUID.
pub fn devices(
    response: &api::ListPodResourcesResponse,
    index: &HashMap<String, u32>,
) -> Vec<PodDevice> {
    let mut out = BTreeSet::new();
    for pod in &response.pod_resources {
        for container in &pod.containers {
            let ids = container
                .devices
                .iter()
                .filter(|d| is_nvidia_gpu(&d.resource_name))
                .flat_map(|d| &d.device_ids);
            for id in ids {
                let uuid = id.split_once("::").map_or(id.as_str(), |(u, _)| u);
                out.insert(PodDevice {
                    gpu: index.get(uuid).copied(),
                    uuid: uuid.to_string(),
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.name.clone(),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Writes `gpu_pod_info` from a snapshot; absent when no GPU is allocated.
pub fn encode(enc: &mut Encoder<'_>, s: &PodsSnapshot) {
    if s.devices.is_empty() {
        return;
    }
    enc.family(
        "gpu_pod_info",
        "1 for each GPU the kubelet allocated to a container (pod-resources API); gpu is empty when NVML does not list the device (a MIG device).",
        Kind::Gauge,
    );
    for d in &s.devices {
        let gpu = d.gpu.map(|i| i.to_string()).unwrap_or_default();
        enc.sample(
            "gpu_pod_info",
            &[
                ("gpu", gpu.as_str()),
                ("uuid", d.uuid.as_str()),
                ("namespace", d.namespace.as_str()),
                ("pod", d.pod.as_str()),
                ("container", d.container.as_str()),
            ],
            1.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::api::*;
    use super::*;

    fn pod(ns: &str, name: &str, containers: Vec<ContainerResources>) -> PodResources {
        PodResources {
            name: name.into(),
            namespace: ns.into(),
            containers,
        }
    }

    fn container(name: &str, devices: &[(&str, &[&str])]) -> ContainerResources {
        ContainerResources {
            name: name.into(),
            devices: devices
                .iter()
                .map(|(r, ids)| ContainerDevices {
                    resource_name: r.to_string(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                    topology: None,
                })
                .collect(),
        }
    }

    #[test]
    fn gpus_map_to_their_containers_with_the_nvml_index() {
        let response = ListPodResourcesResponse {
            pod_resources: vec![
                pod(
                    "train",
                    "llama-0",
                    vec![
                        container("trainer", &[("nvidia.com/gpu", &["GPU-b", "GPU-a"])]),
                        container("sidecar", &[("example.com/nic", &["eth1"])]),
                    ],
                ),
                pod(
                    "infer",
                    "serve",
                    vec![container(
                        "server",
                        &[
                            ("nvidia.com/mig-1g.10gb", &["MIG-x"]),
                            ("nvidia.com/gpu", &["GPU-c::0", "GPU-c::1"]),
                        ],
                    )],
                ),
                pod("idle", "no-gpu", vec![container("c", &[])]),
            ],
        };
        let index: HashMap<String, u32> = [("GPU-a", 0), ("GPU-b", 1), ("GPU-c", 2)]
            .into_iter()
            .map(|(u, i)| (u.to_string(), i))
            .collect();
        let all = devices(&response, &index);
        let got: Vec<(Option<u32>, &str, &str, &str, &str)> = all
            .iter()
            .map(|d| {
                let (u, n, p, c) = (&d.uuid, &d.namespace, &d.pod, &d.container);
                (d.gpu, u.as_str(), n.as_str(), p.as_str(), c.as_str())
            })
            .collect();
        assert_eq!(
            got,
            [
                (None, "MIG-x", "infer", "serve", "server"),
                (Some(0), "GPU-a", "train", "llama-0", "trainer"),
                (Some(1), "GPU-b", "train", "llama-0", "trainer"),
                (Some(2), "GPU-c", "infer", "serve", "server"),
            ]
        );
    }

    #[test]
    fn only_nvidia_gpu_resources_count() {
        assert!(is_nvidia_gpu("nvidia.com/gpu"));
        assert!(is_nvidia_gpu("nvidia.com/mig-3g.40gb"));
        assert!(is_nvidia_gpu("nvidia.com/gpu.shared"));
        assert!(!is_nvidia_gpu("nvidia.com/gpus"));
        assert!(!is_nvidia_gpu("amd.com/gpu"));
    }
}
