//! Per-client records: who is connected (node id, cluster, user agent) and, per resource type,
//! what was subscribed, sent, ACKed and NACKed (with the client's `error_detail` message) — what
//! `/debug/config` shows and what tests inspect through
//! [`ControlPlaneHandle::client_status`](crate::ControlPlaneHandle::client_status).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, Node};
use envoy_types::pb::google::protobuf::value::Kind as ValueKind;

use crate::translate::ResourceType;

/// Disconnected clients kept for inspection (oldest dropped first).
const KEEP_DISCONNECTED: usize = 64;

/// Identity a client sent in the first request of its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `node.id`.
    pub id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// `node.user_agent_name` (e.g. `gRPC Python`, `grpc-go`).
    pub user_agent_name: String,
    /// `node.user_agent_version` (or the build version).
    pub user_agent_version: String,
    /// `node.metadata["GENERATOR"]`, which istiod uses to pick the gRPC generator.
    pub generator: Option<String>,
    /// `node.client_features`.
    pub client_features: Vec<String>,
    /// `node.locality` as Istio writes it (`region/zone/subzone`; empty when none).
    pub locality: String,
}

impl NodeInfo {
    /// Extracts what we record from a `Node`.
    pub fn from_node(node: &Node) -> Self {
        let user_agent_version = match &node.user_agent_version_type {
            Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
            Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
                .version
                .as_ref()
                .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
                .unwrap_or_default(),
            None => String::new(),
        };
        let generator = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("GENERATOR"))
            .and_then(|v| match &v.kind {
                Some(ValueKind::StringValue(s)) => Some(s.clone()),
                _ => None,
            });
        NodeInfo {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            user_agent_name: node.user_agent_name.clone(),
            user_agent_version,
            generator,
            client_features: node.client_features.clone(),
            locality: crate::translate::locality::ClientLocality::from_node(node)
                .locality
                .to_string(),
        }
    }

    /// Whether this is one of gRPC's own xDS clients, which get resources in gRPC's form
    /// ([`grpc_server_form`](crate::translate::peer_authn::grpc_server_form)): node metadata
    /// `GENERATOR: grpc` (what istiod keys its grpcgen generator on, set by Istio's proxyless
    /// bootstraps) or a gRPC user agent (`gRPC Python`, `grpc-go`, `grpc-java`, `gRPC C-core`…).
    pub fn is_grpc(&self) -> bool {
        self.generator.as_deref() == Some("grpc")
            || self
                .user_agent_name
                .to_ascii_lowercase()
                .starts_with("grpc")
    }
}

/// One NACK as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackRecord {
    /// The client's `version_info`: the last version it accepted (`""` if none).
    pub accepted_version: String,
    /// The version of the response that was rejected.
    pub rejected_version: String,
    /// The rejected response's nonce.
    pub nonce: String,
    /// `error_detail.code`.
    pub code: i32,
    /// `error_detail.message`.
    pub message: String,
    /// When it arrived.
    pub at: Instant,
}

/// What one client holds of one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// Subscribed names (sorted).
    pub subscribed: Vec<String>,
    /// True for a wildcard subscription (LDS/CDS).
    pub wildcard: bool,
    /// `version_info` of the last response sent.
    pub sent_version: Option<String>,
    /// Nonce of the last response sent.
    pub sent_nonce: Option<String>,
    /// Number of responses sent.
    pub responses: u64,
    /// Last version the client ACKed.
    pub acked_version: Option<String>,
    /// Last NACK (until a later ACK clears it).
    pub nack: Option<NackRecord>,
    /// Number of NACKs received on this stream.
    pub nacks: u64,
}

/// One ADS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    /// Stream id, unique for the life of the control plane.
    pub stream_id: u64,
    /// The node, once the first request arrived.
    pub node: NodeInfo,
    /// False once the stream ended.
    pub connected: bool,
    /// When the stream opened.
    pub connected_at: Instant,
    /// Per resource type.
    pub types: BTreeMap<ResourceType, TypeStatus>,
}

impl ClientStatus {
    /// The record for `ty`, if the client ever asked for it.
    pub fn of(&self, ty: ResourceType) -> Option<&TypeStatus> {
        self.types.get(&ty)
    }
}

/// All client records.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientRegistry {
    inner: Arc<Mutex<BTreeMap<u64, ClientStatus>>>,
}

impl ClientRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ClientStatus>> {
        // A poisoned map is still a valid map of records.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new stream.
    pub fn open(&self, stream_id: u64) -> ClientHandle {
        self.lock().insert(
            stream_id,
            ClientStatus {
                stream_id,
                node: NodeInfo::default(),
                connected: true,
                connected_at: Instant::now(),
                types: BTreeMap::new(),
            },
        );
        ClientHandle {
            stream_id,
            registry: self.clone(),
        }
    }

    /// Every record, connected ones first, then by stream id.
    pub fn snapshot(&self) -> Vec<ClientStatus> {
        let mut v: Vec<ClientStatus> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| (!c.connected, c.stream_id));
        v
    }
}

/// The record of one stream, updated by its task.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    stream_id: u64,
    registry: ClientRegistry,
}

impl ClientHandle {
    /// Applies `f` to this stream's record.
    pub fn update(&self, f: impl FnOnce(&mut ClientStatus)) {
        if let Some(c) = self.registry.lock().get_mut(&self.stream_id) {
            f(c);
        }
    }

    /// Applies `f` to this stream's record for `ty`.
    pub fn update_type(&self, ty: ResourceType, f: impl FnOnce(&mut TypeStatus)) {
        self.update(|c| f(c.types.entry(ty).or_default()));
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(c) = map.get_mut(&self.stream_id) {
            c.connected = false;
        }
        let disconnected: Vec<u64> = map
            .values()
            .filter(|c| !c.connected)
            .map(|c| c.stream_id)
            .collect();
        if disconnected.len() > KEEP_DISCONNECTED {
            for id in &disconnected[..disconnected.len() - KEEP_DISCONNECTED] {
                map.remove(id);
            }
        }
    }
}
