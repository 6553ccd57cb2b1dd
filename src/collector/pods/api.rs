//! The kubelet's pod-resources API, v1 (`proto/podresources/v1/api.proto`, vendored): the
//! messages `List` needs, written by hand with prost's derive so that the build needs no
//! `protoc`, and the one call, made over the kubelet's unix socket with tonic.
//!
//! Only the fields the daemon reads are declared; protobuf skips the others on decode
//! (CPU ids, memory, dynamic resources). A unit test checks every declared field number
//! against the vendored file, so the two cannot drift apart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// `v1.ListPodResourcesRequest`: empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodResourcesRequest {}

/// `v1.ListPodResourcesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodResourcesResponse {
    #[prost(message, repeated, tag = "1")]
    pub pod_resources: Vec<PodResources>,
}

/// `v1.PodResources`: a pod and its containers' resources.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodResources {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(message, repeated, tag = "3")]
    pub containers: Vec<ContainerResources>,
}

/// `v1.ContainerResources`: one container's devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerResources {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub devices: Vec<ContainerDevices>,
}

/// `v1.ContainerDevices`: the devices of one resource (`nvidia.com/gpu`) given to a
/// container; the NVIDIA device plugin's ids are GPU or MIG UUIDs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerDevices {
    #[prost(string, tag = "1")]
    pub resource_name: String,
    #[prost(string, repeated, tag = "2")]
    pub device_ids: Vec<String>,
    #[prost(message, optional, tag = "3")]
    pub topology: Option<TopologyInfo>,
}

/// `v1.TopologyInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopologyInfo {
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<NumaNode>,
}

/// `v1.NUMANode`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NumaNode {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// The method's gRPC path.
pub const LIST_PATH: &str = "/v1.PodResourcesLister/List";

/// The largest response read: dcgm-exporter's limit, ample for a node's pods.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why a `List` call failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("List: {0}")]
    Status(#[from] tonic::Status),
    #[error("List: no answer within {0:?}")]
    Timeout(Duration),
}

/// Opens a gRPC channel on the unix socket at `path`. The URI is a placeholder that tonic
/// requires (its host is the `:authority`, `localhost` as grpc-go sends on a unix socket);
/// every connection goes to the socket.
pub async fn connect(path: &Path, timeout: Duration) -> Result<Channel, ListError> {
    let socket: PathBuf = path.to_path_buf();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(connector)
        .await
        .map_err(|source| ListError::Connect {
            path: path.display().to_string(),
            source,
        })
}

/// Calls `v1.PodResourcesLister/List` over the socket at `path`, within `timeout` in all.
pub async fn list(path: &Path, timeout: Duration) -> Result<ListPodResourcesResponse, ListError> {
    let call = async {
        let channel = connect(path, timeout).await?;
        let mut grpc =
            tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
        grpc.ready().await.map_err(|source| ListError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let codec =
            tonic_prost::ProstCodec::<ListPodResourcesRequest, ListPodResourcesResponse>::default();
        let response = grpc
            .unary(
                tonic::Request::new(ListPodResourcesRequest {}),
                PathAndQuery::from_static(LIST_PATH),
                codec,
            )
            .await?;
        Ok(response.into_inner())
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(ListError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The vendored proto, the source of truth for the field numbers.
    const PROTO: &str = include_str!("../../../proto/podresources/v1/api.proto");

    /// `(message, field) -> (number, wire type)` for every field of every message of the
    /// proto, from its `[repeated] TYPE name = N;` lines.
    fn proto_fields() -> std::collections::BTreeMap<(String, String), (u32, u8)> {
        let mut out = std::collections::BTreeMap::new();
        let mut message: Option<String> = None;
        for line in PROTO.lines().map(str::trim) {
            if line.starts_with("//") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("message ") {
                let name = rest.split_whitespace().next().unwrap();
                message = (!rest.contains('}')).then(|| name.to_string());
                continue;
            }
            if line.starts_with('}') {
                message = None;
                continue;
            }
            let (Some(m), Some(decl)) = (&message, line.strip_suffix(';')) else {
                continue;
            };
            let Some((lhs, n)) = decl.split_once(" = ") else {
                continue;
            };
            let words: Vec<&str> = lhs.split_whitespace().collect();
            let (ty, name) = match words.as_slice() {
                ["repeated", ty, name] | [ty, name] => (*ty, *name),
                _ => panic!("unexpected field line: {line}"),
            };
            let wire = match ty {
                "int64" | "uint64" | "int32" | "uint32" | "bool" => 0,
                _ => 2,
            };
            let key = (m.clone(), name.to_string());
            out.insert(key, (n.trim().parse().unwrap(), wire));
        }
        out
    }

    /// The field number and wire type of the first field in an encoding.
    fn first_key(bytes: &[u8]) -> (u32, u8) {
        let mut key = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            key |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        ((key >> 3) as u32, (key & 7) as u8)
    }

    /// Each hand-written field, encoded alone, carries the number and wire type the
    /// vendored proto gives the field of that name.
    #[test]
    fn the_field_numbers_are_the_vendored_protos() {
        let proto = proto_fields();
        assert!(proto.len() > 20, "{proto:?}");
        let one = ContainerDevices::default;
        let cases: Vec<(&str, &str, Vec<u8>)> = vec![
            (
                "ListPodResourcesResponse",
                "pod_resources",
                ListPodResourcesResponse {
                    pod_resources: vec![PodResources::default()],
                }
                .encode_to_vec(),
            ),
            (
                "PodResources",
                "name",
                PodResources {
                    name: "p".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "PodResources",
                "namespace",
                PodResources {
                    namespace: "n".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "PodResources",
                "containers",
                PodResources {
                    containers: vec![ContainerResources::default()],
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "ContainerResources",
                "name",
                ContainerResources {
                    name: "c".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "ContainerResources",
                "devices",
                ContainerResources {
                    devices: vec![one()],
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "ContainerDevices",
                "resource_name",
                ContainerDevices {
                    resource_name: "r".into(),
                    ..one()
                }
                .encode_to_vec(),
            ),
            (
                "ContainerDevices",
                "device_ids",
                ContainerDevices {
                    device_ids: vec!["d".into()],
                    ..one()
                }
                .encode_to_vec(),
            ),
            (
                "ContainerDevices",
                "topology",
                ContainerDevices {
                    topology: Some(TopologyInfo::default()),
                    ..one()
                }
                .encode_to_vec(),
            ),
            (
                "TopologyInfo",
                "nodes",
                TopologyInfo {
                    nodes: vec![NumaNode::default()],
                }
                .encode_to_vec(),
            ),
            ("NUMANode", "ID", NumaNode { id: 1 }.encode_to_vec()),
        ];
        for (message, field, bytes) in cases {
            let want = proto
                .get(&(message.to_string(), field.to_string()))
                .unwrap_or_else(|| panic!("{message}.{field} is not in the vendored proto"));
            assert_eq!(first_key(&bytes), *want, "{message}.{field}");
        }
    }

    /// A response as the kubelet encodes it, with the fields the daemon does not declare
    /// (CPU ids, memory), decodes to the declared ones.
    #[test]
    fn undeclared_fields_are_skipped() {
        // ContainerResources { name: "c" (1), cpu_ids: [3] (3, packed), devices (2) }
        let device = ContainerDevices {
            resource_name: "nvidia.com/gpu".into(),
            device_ids: vec!["GPU-1".into()],
            topology: None,
        }
        .encode_to_vec();
        let mut container = vec![0x0a, 1, b'c', 0x1a, 1, 3, 0x12, device.len() as u8];
        container.extend_from_slice(&device);
        let decoded = ContainerResources::decode(container.as_slice()).unwrap();
        assert_eq!(decoded.name, "c");
        assert_eq!(decoded.devices[0].device_ids, ["GPU-1"]);
    }
}
