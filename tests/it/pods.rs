//! The pods collector end to end: a stand-in kubelet serves `v1.PodResourcesLister/List`
//! (the daemon's own v1 messages, whose field numbers a unit test checks against the
//! vendored proto) on a unix socket in a temp dir; the real daemon, on the fake NVML
//! library, maps the allocated GPUs to pods through it.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use gpu_train_exporter::collector::pods::api::{
    ContainerDevices, ContainerResources, ListPodResourcesRequest, ListPodResourcesResponse,
    PodResources, LIST_PATH,
};

use crate::gpu::Fake;
use crate::harness::fake_nvml::{machine, uuid};
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(10);

/// What the stand-in answers `List` with: pods, or an error status.
pub type Answer = Result<ListPodResourcesResponse, tonic::Code>;

/// A stand-in kubelet on `socket`, serving until dropped.
pub struct Kubelet {
    socket: PathBuf,
    answer: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Kubelet {
    pub fn start(answer: Answer) -> Kubelet {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kubelet.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let service = Service {
            answer: Arc::new(Mutex::new(answer)),
            calls: Arc::new(AtomicUsize::new(0)),
        };
        let listener = {
            let _in_rt = rt.enter();
            tokio::net::UnixListener::bind(&socket).unwrap()
        };
        let served = service.clone();
        rt.spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            tonic::transport::Server::builder()
                .serve_with_incoming(served, incoming)
                .await
        });
        Kubelet {
            socket,
            answer: service.answer,
            calls: service.calls,
            _rt: rt,
            _dir: dir,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }
}

/// The gRPC service: `List` answers, every other path is unimplemented.
#[derive(Clone)]
struct Service {
    answer: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
}

impl tower::Service<http::Request<tonic::body::Body>> for Service {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let list = List(self.clone());
        Box::pin(async move {
            if req.uri().path() != LIST_PATH {
                return Ok(tonic::Status::unimplemented(req.uri().path()).into_http());
            }
            let codec =
                tonic_prost::ProstCodec::<ListPodResourcesResponse, ListPodResourcesRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(list, req).await)
        })
    }
}

struct List(Service);

impl tonic::server::UnaryService<ListPodResourcesRequest> for List {
    type Response = ListPodResourcesResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<ListPodResourcesRequest>) -> Self::Future {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.0.answer.lock().unwrap().clone();
        std::future::ready(
            answer
                .map(tonic::Response::new)
                .map_err(|code| tonic::Status::new(code, "stand-in failure")),
        )
    }
}

/// A pod whose one container holds `devices` (resource, ids).
pub fn pod(ns: &str, name: &str, container: &str, devices: &[(&str, &[&str])]) -> PodResources {
    PodResources {
        name: name.into(),
        namespace: ns.into(),
        containers: vec![ContainerResources {
            name: container.into(),
            devices: devices
                .iter()
                .map(|(r, ids)| ContainerDevices {
                    resource_name: r.to_string(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                    topology: None,
                })
                .collect(),
        }],
    }
}

pub fn pods(list: Vec<PodResources>) -> Answer {
    Ok(ListPodResourcesResponse {
        pod_resources: list,
    })
}

fn info<'a>(gpu: &'a str, uuid: &'a str, ns: &'a str, pod: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("gpu", gpu),
        ("uuid", uuid),
        ("namespace", ns),
        ("pod", pod),
        ("container", "c"),
    ]
}

fn success(body: &str) -> Option<f64> {
    value(
        body,
        "gpu_train_exporter_collector_success",
        &[("collector", "pods")],
    )
}

fn start_daemon(socket: &str) -> Fake {
    Fake::start(
        &machine(4, 0),
        &[
            "--no-host",
            "--pods.socket",
            socket,
            "--pods.interval",
            "100ms",
        ],
    )
}

#[test]
fn gpus_map_to_the_pods_the_kubelet_allocated_them_to() {
    let (u0, u2) = (uuid(0), uuid(2));
    let kubelet = Kubelet::start(pods(vec![
        pod("ns", "p", "c", &[("nvidia.com/gpu", &[u0.as_str()])]),
        pod(
            "ns2",
            "shared",
            "c",
            &[
                (
                    "nvidia.com/gpu",
                    &[&format!("{u2}::0"), &format!("{u2}::1")],
                ),
                ("nvidia.com/mig-1g.10gb", &["MIG-aaaa"]),
                ("example.com/nic", &["eth1"]),
            ],
        ),
        pod("ns", "no-gpu", "c", &[]),
    ]));
    let f = start_daemon(kubelet.socket());
    let body = f.daemon.scrape();
    assert!(kubelet.calls() >= 1);
    assert_eq!(
        value(&body, "gpu_pod_info", &info("0", &u0, "ns", "p")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "gpu_pod_info", &info("2", &u2, "ns2", "shared")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "gpu_pod_info",
            &info("", "MIG-aaaa", "ns2", "shared")
        ),
        Some(1.0)
    );
    assert_eq!(samples(&body, "gpu_pod_info").len(), 3, "{body}");
    assert_eq!(success(&body), Some(1.0));
    if require_tool("promtool") {
        assert_eq!(promtool_check_metrics(&body), "");
    }

    // the pod goes, another takes its GPU: the next answers replace the mapping
    kubelet.set(pods(vec![pod(
        "ns",
        "q",
        "c",
        &[("nvidia.com/gpu", &[u0.as_str()])],
    )]));
    let q = info("0", &u0, "ns", "q");
    assert_eq!(
        f.daemon.wait_value("gpu_pod_info", &q, 1.0, WAIT),
        Some(1.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(samples(&body, "gpu_pod_info").len(), 1, "{body}");
}

#[test]
fn a_failing_kubelet_fails_only_the_pods_collector() {
    let kubelet = Kubelet::start(Err(tonic::Code::Unavailable));
    let f = start_daemon(kubelet.socket());
    let errors = [("collector", "pods"), ("call", "list")];
    let body = f.daemon.scrape();
    let failed = value(&body, "gpu_train_exporter_collector_errors_total", &errors);
    assert!(failed.is_some_and(|n| n >= 1.0), "{body}");
    assert_eq!(success(&body), Some(0.0));
    assert_eq!(samples(&body, "gpu_pod_info").len(), 0, "{body}");
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_collector_success",
            &[("collector", "gpu")]
        ),
        Some(1.0)
    );
    assert!(f.daemon.stderr().contains("pod mapping absent"));

    // the kubelet recovers
    let u1 = uuid(1);
    kubelet.set(pods(vec![pod(
        "ns",
        "p",
        "c",
        &[("nvidia.com/gpu", &[u1.as_str()])],
    )]));
    let p = info("1", &u1, "ns", "p");
    assert_eq!(
        f.daemon.wait_value("gpu_pod_info", &p, 1.0, WAIT),
        Some(1.0)
    );
    assert_eq!(success(&f.daemon.scrape()), Some(1.0));
}

/// Without the socket the collector is off: said once at start, before the daemon
/// listens, and no `pods` series at all (neither the mapping nor a success of 0, as for
/// a collector turned off).
#[test]
fn without_the_socket_the_mapping_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("kubelet.sock");
    let f = start_daemon(absent.to_str().unwrap());
    assert!(f.daemon.wait_log("pod mapping off", 1, WAIT));
    let body = f.daemon.scrape();
    assert_eq!(f.daemon.stderr().matches("pod mapping off").count(), 1);
    assert!(!body.contains("gpu_pod_info"), "{body}");
    assert_eq!(success(&body), None, "{body}");
    // the GPU collector's success is there: the family is written, without pods
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_collector_success",
            &[("collector", "gpu")]
        ),
        Some(1.0)
    );
    assert!(!Path::new(&absent).exists());
}
