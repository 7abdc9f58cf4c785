//! CSDS on the client: `envoy.service.status.v3.ClientStatusDiscoveryService`, so a status tool
//! (`grpcdebug`, Envoy's `csds` clients) can read which xDS resources this client holds and in
//! what state (gRFC A40; the design notes' XDS-SEMANTICS.md, row 38).
//!
//! [`CsdsService`] answers from [`mesh_core::cache::ResourceCache::dump`]: one
//! `ClientConfig.GenericXdsConfig` per cached resource, with its type URL, name, the
//! `version_info` of the response that last delivered it and its `ClientResourceStatus`:
//!
//! | cache status | CSDS `client_status` | `error_state` |
//! |---|---|---|
//! | `Requested` | `REQUESTED` | none |
//! | `Acked` | `ACKED` | none |
//! | `Nacked(e)` | `NACKED` | `details`: the validation error, naming resource and field |
//! | `DoesNotExist` | `DOES_NOT_EXIST` | none |
//!
//! The client's `Node` (from the bootstrap) is included, as A40 asks. Like gRPC's own CSDS
//! services, a request's `node_matchers` are refused with `INVALID_ARGUMENT` (a client only
//! has its own config to report), and the streaming method answers each request on the stream
//! with the state at that moment.
//!
//! Every entry also carries `xds_config` — the resource exactly as received, as an `Any` of its
//! type — and `last_updated`; a NACKed entry's `error_state` names the rejected response's
//! `version_info` and when it was rejected (`last_update_attempt`), while `version_info` and
//! `xds_config` stay those of the last accepted value, which the client keeps using (A88).
//!
//! Known gaps against A40 / A88:
//! - `is_static_resource` and `client_scope` (A71) are not filled in.
//! - `RECEIVED_ERROR` / `TIMEOUT` (A88) are never reported: the cache has no such states.
//! - A NACK is attached to the resources that failed validation, not to every resource of the
//!   rejected response (row 38 says "attach error to all resources in that response").

use std::{pin::Pin, sync::Arc};

use envoy_types::pb::envoy::{
    admin::v3::{ClientResourceStatus, UpdateFailureState},
    config::core::v3::Node,
    service::status::v3::{
        client_config::GenericXdsConfig,
        client_status_discovery_service_server::{
            ClientStatusDiscoveryService, ClientStatusDiscoveryServiceServer,
        },
        ClientConfig, ClientStatusRequest, ClientStatusResponse,
    },
};
use mesh_core::{
    cache::{Entry, ResourceStatus},
    mesh::Mesh,
    model::{ResourceType, XdsResource},
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// The CSDS service of one mesh client: reports the mesh's cached xDS resources and the
/// client's node.
#[derive(Clone, Debug)]
pub struct CsdsService {
    mesh: Mesh,
    node: Arc<Node>,
}

/// The response stream of [`CsdsService`]'s `StreamClientStatus`.
pub type ClientStatusStream =
    Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send + 'static>>;

impl CsdsService {
    /// A CSDS service over `mesh`'s cache, reporting `node` (usually
    /// `mesh_core::bootstrap::Bootstrap::node.to_proto()`) as the client's identity.
    pub fn new(mesh: Mesh, node: Node) -> Self {
        CsdsService {
            mesh,
            node: Arc::new(node),
        }
    }

    /// The service wrapped for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> ClientStatusDiscoveryServiceServer<Self> {
        ClientStatusDiscoveryServiceServer::new(self)
    }

    /// The client's status now: the node and every cached resource, sorted by type then name.
    pub fn client_config(&self) -> ClientConfig {
        let state = self.mesh.cache().dump();
        let mut generic_xds_configs = Vec::new();
        push_all(&mut generic_xds_configs, &state.listeners);
        push_all(&mut generic_xds_configs, &state.routes);
        push_all(&mut generic_xds_configs, &state.clusters);
        push_all(&mut generic_xds_configs, &state.endpoints);
        ClientConfig {
            node: Some((*self.node).clone()),
            generic_xds_configs,
            ..Default::default()
        }
    }

    fn answer(&self, request: &ClientStatusRequest) -> Result<ClientStatusResponse, Status> {
        if !request.node_matchers.is_empty() {
            return Err(Status::invalid_argument(
                "csds: node_matchers are not supported",
            ));
        }
        Ok(ClientStatusResponse {
            config: vec![self.client_config()],
        })
    }
}

/// Appends one `GenericXdsConfig` per entry of one resource type's map.
fn push_all<R: XdsResource>(
    out: &mut Vec<GenericXdsConfig>,
    map: &std::collections::BTreeMap<Arc<str>, Entry<R>>,
) {
    out.extend(
        map.iter()
            .map(|(name, entry)| generic(R::RESOURCE_TYPE, name, entry)),
    );
}

/// One resource's CSDS entry.
fn generic<R>(ty: ResourceType, name: &str, entry: &Entry<R>) -> GenericXdsConfig {
    let (client_status, error_state) = match &entry.status {
        ResourceStatus::Requested => (ClientResourceStatus::Requested, None),
        ResourceStatus::Acked => (ClientResourceStatus::Acked, None),
        ResourceStatus::DoesNotExist => (ClientResourceStatus::DoesNotExist, None),
        ResourceStatus::Nacked(e) => (
            ClientResourceStatus::Nacked,
            Some(UpdateFailureState {
                details: e.to_string(),
                version_info: entry
                    .failed
                    .as_ref()
                    .map(|f| f.version.to_string())
                    .unwrap_or_default(),
                last_update_attempt: entry.failed.as_ref().map(|f| timestamp(f.at)),
                ..Default::default()
            }),
        ),
    };
    GenericXdsConfig {
        type_url: ty.type_url().to_owned(),
        name: name.to_owned(),
        version_info: entry.version.to_string(),
        xds_config: entry
            .raw
            .as_ref()
            .map(|raw| envoy_types::pb::google::protobuf::Any {
                type_url: ty.type_url().to_owned(),
                value: raw.to_vec(),
            }),
        last_updated: entry.updated_at.map(timestamp),
        client_status: client_status as i32,
        error_state,
        ..Default::default()
    }
}

/// A wall-clock time as a protobuf `Timestamp` (times before the epoch read as the epoch).
fn timestamp(t: std::time::SystemTime) -> envoy_types::pb::google::protobuf::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    envoy_types::pb::google::protobuf::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[tonic::async_trait]
impl ClientStatusDiscoveryService for CsdsService {
    type StreamClientStatusStream = ClientStatusStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<Self::StreamClientStatusStream>, Status> {
        let this = self.clone();
        let answers = request
            .into_inner()
            .map(move |req| req.and_then(|r| this.answer(&r)));
        Ok(Response::new(Box::pin(answers)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        self.answer(request.get_ref()).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::{
        cache::ResourceCache,
        model::{ModelError, RouteConfiguration},
    };

    fn service(cache: ResourceCache) -> CsdsService {
        CsdsService::new(
            Mesh::from_cache(cache),
            Node {
                id: "node-1".into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn each_cache_status_maps_to_its_csds_status() {
        let cache = ResourceCache::new();
        cache.request::<RouteConfiguration>("requested");
        cache.remove::<RouteConfiguration>("gone");
        cache.reject::<RouteConfiguration>(
            "bad",
            ModelError::invalid(
                ResourceType::RouteConfiguration,
                "bad",
                "virtual_hosts[0].domains",
                "is empty",
            ),
        );
        let config = service(cache).client_config();
        assert_eq!(config.node.as_ref().map(|n| n.id.as_str()), Some("node-1"));
        let by_name = |n: &str| {
            config
                .generic_xds_configs
                .iter()
                .find(|g| g.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let requested = by_name("requested");
        assert_eq!(
            requested.client_status,
            ClientResourceStatus::Requested as i32
        );
        assert_eq!(
            requested.type_url,
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
        );
        assert!(requested.error_state.is_none());
        assert_eq!(
            by_name("gone").client_status,
            ClientResourceStatus::DoesNotExist as i32
        );
        let bad = by_name("bad");
        assert_eq!(bad.client_status, ClientResourceStatus::Nacked as i32);
        let details = &bad.error_state.as_ref().expect("error_state").details;
        assert!(details.contains("virtual_hosts[0].domains"), "{details}");
        assert_eq!(config.generic_xds_configs.len(), 3);
    }

    #[tokio::test]
    async fn node_matchers_are_refused() {
        let svc = service(ResourceCache::new());
        let req = ClientStatusRequest {
            node_matchers: vec![Default::default()],
            ..Default::default()
        };
        let err = svc
            .fetch_client_status(Request::new(req))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let ok = svc
            .fetch_client_status(Request::new(ClientStatusRequest::default()))
            .await
            .expect("plain request answered");
        assert_eq!(ok.get_ref().config.len(), 1);
    }
}
