//! State-of-the-world ADS, one stream: the per-type protocol state machine (Envoy
//! `xds_protocol` "ACK/NACK and resource type instance version", "when to send an update",
//! "resource hints"; gRFC A27), kept free of I/O so it can be tested directly.
//!
//! Per resource type it tracks the subscribed names (wildcard for LDS/CDS when the client never
//! named anything, or named `*`), the last nonce sent, and the version of each resource sent:
//! - a request whose `response_nonce` is not the last nonce sent is **stale** and ignored;
//! - `error_detail` set ⇒ NACK (recorded with its message), otherwise ⇒ ACK of `version_info`;
//! - a new subscription (first request of a type, a newly named resource, wildcard turned on) is
//!   answered at once, re-sending newly named resources even if sent before;
//! - LDS/CDS responses carry every subscribed resource, and are sent only when that set or a
//!   version in it changed (a resource that disappears is thereby deleted);
//! - RDS/EDS responses carry only the subscribed resources whose version changed (or that were
//!   just named); absent names are simply not sent.
//!
//! EDS is per client where a DestinationRule's `localityLbSetting` asks for it: the stream keeps
//! the locality and labels of the node (first request) and takes each load assignment from
//! [`Snapshot::get_for`], so its versions — and the response `version_info` — are those of what
//! this client was sent (istiod likewise reshapes EDS per proxy). LDS likewise: gRPC's own
//! clients ([`NodeInfo::is_grpc`]) get Listeners in gRPC's form
//! ([`grpc_server_form`](crate::translate::peer_authn::grpc_server_form)).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use envoy_types::pb::envoy::config::core::v3::ControlPlane as ControlPlaneId;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::status::{ClientHandle, NackRecord, NodeInfo};
use crate::cache::{set_version, Entry, Snapshot};
use crate::translate::locality::ClientLocality;
use crate::translate::ResourceType;

/// Identifier sent in `DiscoveryResponse.control_plane`.
pub(crate) const CONTROL_PLANE_ID: &str = "mesh-control-plane";

#[derive(Debug, Default)]
struct TypeState {
    names: BTreeSet<String>,
    wildcard: bool,
    ever_named: bool,
    /// Nonce of the last response sent on this stream for this type.
    nonce: Option<String>,
    /// `version_info` of the last response sent.
    version: String,
    /// Name → version of what the client was last sent (LDS/CDS: exactly the last full set).
    sent: BTreeMap<String, String>,
}

/// Protocol state of one ADS stream.
#[derive(Debug)]
pub(crate) struct StreamState {
    stream_id: u64,
    next_nonce: u64,
    node_seen: bool,
    /// The node's locality and labels (empty until a request carries the node).
    client: ClientLocality,
    /// Whether the node is one of gRPC's own clients ([`NodeInfo::is_grpc`]).
    grpc: bool,
    types: HashMap<ResourceType, TypeState>,
}

impl StreamState {
    pub fn new(stream_id: u64) -> Self {
        StreamState {
            stream_id,
            next_nonce: 0,
            node_seen: false,
            client: ClientLocality::default(),
            grpc: false,
            types: HashMap::new(),
        }
    }

    /// Handles one request; returns the response to send, if any.
    pub fn on_request(
        &mut self,
        req: &DiscoveryRequest,
        snap: &Snapshot,
        client: &ClientHandle,
    ) -> Option<DiscoveryResponse> {
        if !self.node_seen {
            if let Some(node) = &req.node {
                self.node_seen = true;
                self.client = ClientLocality::from_node(node);
                let info = NodeInfo::from_node(node);
                self.grpc = info.is_grpc();
                tracing::info!(
                    stream = self.stream_id,
                    node = %info.id,
                    user_agent = %info.user_agent_name,
                    "ads client connected"
                );
                client.update(|c| c.node = info);
            }
        }
        let Some(ty) = ResourceType::from_type_url(&req.type_url) else {
            tracing::debug!(stream = self.stream_id, type_url = %req.type_url, "unsupported type");
            return None;
        };
        let st = self.types.entry(ty).or_default();
        if let Some(nonce) = &st.nonce {
            if !req.response_nonce.is_empty() && &req.response_nonce != nonce {
                tracing::debug!(stream = self.stream_id, ty = ty.short_name(), "stale nonce");
                return None;
            }
            if &req.response_nonce == nonce {
                match &req.error_detail {
                    Some(err) => {
                        tracing::warn!(
                            stream = self.stream_id,
                            ty = ty.short_name(),
                            version = %st.version,
                            error = %err.message,
                            "nack"
                        );
                        let record = NackRecord {
                            accepted_version: req.version_info.clone(),
                            rejected_version: st.version.clone(),
                            nonce: nonce.clone(),
                            code: err.code,
                            message: err.message.clone(),
                            at: tokio::time::Instant::now(),
                        };
                        client.update_type(ty, |t| {
                            t.nack = Some(record);
                            t.nacks += 1;
                        });
                    }
                    None => {
                        let v = req.version_info.clone();
                        client.update_type(ty, |t| {
                            t.acked_version = Some(v);
                            t.nack = None;
                        });
                    }
                }
            }
        }

        // Subscriptions (Envoy xds_protocol "how the client specifies what resources to return").
        let explicit_wildcard = req.resource_names.iter().any(|n| n == "*");
        let wildcard = ty.is_full_state()
            && (explicit_wildcard || (req.resource_names.is_empty() && !st.ever_named));
        st.ever_named |= !req.resource_names.is_empty();
        let names: BTreeSet<String> = req
            .resource_names
            .iter()
            .filter(|n| n.as_str() != "*")
            .cloned()
            .collect();
        let mut added: BTreeSet<String> = names.difference(&st.names).cloned().collect();
        let first = st.nonce.is_none();
        let wildcard_on = wildcard && !st.wildcard;
        if wildcard_on {
            added.extend(snap.wildcard_names(ty).iter().cloned());
        }
        st.names = names;
        st.wildcard = wildcard;
        let (subscribed, wc) = (st.names.iter().cloned().collect(), st.wildcard);
        client.update_type(ty, |t| {
            t.subscribed = subscribed;
            t.wildcard = wc;
        });
        self.respond(ty, snap, &added, first || wildcard_on, client)
    }

    /// The responses a new snapshot calls for, in make-before-break order.
    pub fn on_snapshot(
        &mut self,
        snap: &Snapshot,
        client: &ClientHandle,
    ) -> Vec<DiscoveryResponse> {
        ResourceType::PUSH_ORDER
            .into_iter()
            .filter_map(|ty| self.respond(ty, snap, &BTreeSet::new(), false, client))
            .collect()
    }

    fn respond(
        &mut self,
        ty: ResourceType,
        snap: &Snapshot,
        added: &BTreeSet<String>,
        force: bool,
        client: &ClientHandle,
    ) -> Option<DiscoveryResponse> {
        let st = self.types.get_mut(&ty)?;
        let mut wanted: BTreeSet<&str> = st.names.iter().map(String::as_str).collect();
        if st.wildcard {
            wanted.extend(snap.wildcard_names(ty).iter().map(String::as_str));
        }
        let (node, grpc) = (&self.client, self.grpc);
        let desired: Vec<(&str, Cow<'_, Entry>)> = wanted
            .into_iter()
            .filter_map(|n| snap.get_for(ty, n, node, grpc).map(|e| (n, e)))
            .collect();

        let to_send: Vec<(&str, Cow<'_, Entry>)> = if ty.is_full_state() {
            let unchanged = desired.len() == st.sent.len()
                && desired
                    .iter()
                    .all(|(n, e)| st.sent.get(*n) == Some(&e.version));
            if unchanged && !force && added.is_empty() {
                return None;
            }
            st.sent = desired
                .iter()
                .map(|(n, e)| (n.to_string(), e.version.clone()))
                .collect();
            desired
        } else {
            // Forget what is no longer subscribed or no longer exists, so it is sent again if it
            // comes back.
            let present: BTreeSet<&str> = desired.iter().map(|(n, _)| *n).collect();
            st.sent.retain(|n, _| present.contains(n.as_str()));
            let changed: Vec<_> = desired
                .into_iter()
                .filter(|(n, e)| added.contains(*n) || st.sent.get(*n) != Some(&e.version))
                .collect();
            if changed.is_empty() {
                return None;
            }
            for (n, e) in &changed {
                st.sent.insert(n.to_string(), e.version.clone());
            }
            changed
        };

        self.next_nonce += 1;
        let nonce = format!("{}-{}", self.stream_id, self.next_nonce);
        let version = set_version(st.sent.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        st.nonce = Some(nonce.clone());
        st.version = version.clone();
        let resources: Vec<_> = to_send.iter().map(|(_, e)| e.any.clone()).collect();
        tracing::debug!(
            stream = self.stream_id,
            ty = ty.short_name(),
            %version,
            %nonce,
            count = resources.len(),
            "send"
        );
        let (v, n) = (version.clone(), nonce.clone());
        client.update_type(ty, |t| {
            t.sent_version = Some(v);
            t.sent_nonce = Some(n);
            t.responses += 1;
        });
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: ty.type_url().to_string(),
            nonce,
            control_plane: Some(ControlPlaneId {
                identifier: CONTROL_PLANE_ID.to_string(),
            }),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::status::ClientRegistry;
    use crate::translate::translate;
    use envoy_types::pb::google::rpc::Status as RpcStatus;

    const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: s }\nspec:\n  hosts: [a, b]\n  ports: [{ number: 80, name: http }]\n  endpoints: [{ address: 10.0.0.1 }]\n";

    fn snap(yaml: &str) -> Snapshot {
        Snapshot::build(translate(&crate::load_str("t", yaml).unwrap().0))
    }

    fn req(ty: ResourceType, names: &[&str], nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ty.type_url().into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn names(r: &DiscoveryResponse) -> usize {
        r.resources.len()
    }

    #[test]
    fn wildcard_then_explicit_then_empty_unsubscribes() {
        let registry = ClientRegistry::default();
        let client = registry.open(1);
        let s = snap(SE);
        let mut st = StreamState::new(1);
        // Legacy wildcard: empty names on the first request.
        let r = st
            .on_request(&req(ResourceType::Cluster, &[], ""), &s, &client)
            .unwrap();
        assert_eq!(names(&r), 2);
        // ACK with the same (empty) names: still wildcard, nothing new to send.
        assert!(st
            .on_request(&req(ResourceType::Cluster, &[], &r.nonce), &s, &client)
            .is_none());
        // Listener: explicit names; once named, an empty list means "none".
        let r = st
            .on_request(&req(ResourceType::Listener, &["a:80"], ""), &s, &client)
            .unwrap();
        assert_eq!(names(&r), 1);
        let r = st
            .on_request(&req(ResourceType::Listener, &[], &r.nonce), &s, &client)
            .unwrap();
        assert_eq!(names(&r), 0, "empty LDS response deletes the listener");
        // Explicit `*`: both API listeners and the endpoint's inbound (A36) listener.
        let r = st
            .on_request(&req(ResourceType::Listener, &["*"], &r.nonce), &s, &client)
            .unwrap();
        assert_eq!(names(&r), 3);
    }

    #[test]
    fn eds_resends_on_resubscribe_and_only_changed_on_push() {
        let registry = ClientRegistry::default();
        let client = registry.open(1);
        let s1 = snap(SE);
        let (ca, cb) = ("outbound|80||a", "outbound|80||b");
        let mut st = StreamState::new(1);
        let r = st
            .on_request(&req(ResourceType::Endpoint, &[ca, cb], ""), &s1, &client)
            .unwrap();
        assert_eq!(names(&r), 2);
        // Unsubscribe b, then subscribe again: b is re-sent although unchanged.
        let r2 = st.on_request(&req(ResourceType::Endpoint, &[ca], &r.nonce), &s1, &client);
        assert!(r2.is_none());
        let r3 = st
            .on_request(
                &req(ResourceType::Endpoint, &[ca, cb], &r.nonce),
                &s1,
                &client,
            )
            .unwrap();
        assert_eq!(names(&r3), 1);
        // Same snapshot again: nothing.
        assert!(st.on_snapshot(&s1, &client).is_empty());
        // NACK: recorded, nothing re-sent.
        let mut nack = req(ResourceType::Endpoint, &[ca, cb], &r3.nonce);
        nack.error_detail = Some(RpcStatus {
            code: 3,
            message: "bad".into(),
            details: vec![],
        });
        assert!(st.on_request(&nack, &s1, &client).is_none());
        let rec = registry.snapshot()[0].types[&ResourceType::Endpoint].clone();
        assert_eq!(rec.nack.unwrap().message, "bad");
        assert_eq!(rec.nacks, 1);
    }

    #[test]
    fn eds_is_reshaped_per_node_locality_with_its_own_version() {
        use envoy_types::pb::envoy::config::core::v3::{Locality, Node};
        use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
        use prost::Message;
        let yaml = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: s }\nspec:\n  hosts: [a]\n  ports: [{ number: 80, name: http }]\n  endpoints:\n  - { address: 10.0.0.1, locality: r1/z1 }\n  - { address: 10.0.0.2, locality: r2/z1 }\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: a }\nspec:\n  host: a\n  trafficPolicy:\n    outlierDetection: { consecutive5xxErrors: 1 }\n";
        let s = snap(yaml);
        let registry = ClientRegistry::default();
        let eds = |region: Option<&str>, id: u64| {
            let client = registry.open(id);
            let mut st = StreamState::new(id);
            let mut r = req(ResourceType::Endpoint, &["outbound|80||a"], "");
            r.node = Some(Node {
                id: format!("n{id}"),
                locality: region.map(|r| Locality {
                    region: r.into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let resp = st.on_request(&r, &s, &client).unwrap();
            let cla = ClusterLoadAssignment::decode(resp.resources[0].value.as_slice()).unwrap();
            let first = cla.endpoints.iter().find(|e| e.priority == 0).unwrap();
            (resp.version_info, first.locality.clone().unwrap().region)
        };
        let (v1, p0_r1) = eds(Some("r1"), 1);
        let (v2, p0_r2) = eds(Some("r2"), 2);
        let (v3, p0_r1_again) = eds(Some("r1"), 3);
        let (shared, _) = eds(None, 4);
        assert_eq!((p0_r1.as_str(), p0_r2.as_str()), ("r1", "r2"));
        assert_eq!(p0_r1_again, "r1");
        assert_ne!(v1, v2, "different content, different version");
        assert_eq!(v1, v3, "same locality, same version");
        assert_ne!(v1, shared);
        assert_ne!(v2, shared);
        let recorded = registry.snapshot();
        assert!(
            recorded.iter().any(|c| c.node.locality == "r2"),
            "{recorded:?}"
        );
    }

    #[test]
    fn grpc_clients_get_a_permissive_listener_without_its_tls_chain() {
        use envoy_types::pb::envoy::config::core::v3::Node;
        use envoy_types::pb::envoy::config::listener::v3::Listener;
        use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
        use prost::Message;
        let yaml = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: { name: w, namespace: d }\nspec: { address: 10.0.0.1, ports: { grpc: 8080 }, labels: { app: w } }\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: default, namespace: istio-system }\nspec: { mtls: { mode: PERMISSIVE } }\n";
        let s = snap(yaml);
        let name = "xds.istio.io/grpc/lds/inbound/10.0.0.1:8080";
        let registry = ClientRegistry::default();
        let lds = |id: u64, node: Node| {
            let client = registry.open(id);
            let mut st = StreamState::new(id);
            let mut r = req(ResourceType::Listener, &[name], "");
            r.node = Some(node);
            let resp = st.on_request(&r, &s, &client).unwrap();
            let l = Listener::decode(resp.resources[0].value.as_slice()).unwrap();
            let chains: Vec<String> = l.filter_chains.into_iter().map(|c| c.name).collect();
            (resp.version_info, chains)
        };
        let generator = Struct {
            fields: [(
                "GENERATOR".to_string(),
                Value {
                    kind: Some(Kind::StringValue("grpc".into())),
                },
            )]
            .into(),
        };
        let ours = Node {
            id: "mesh".into(),
            user_agent_name: "mesh-core".into(),
            ..Default::default()
        };
        let by_metadata = Node {
            id: "istio-bootstrap".into(),
            metadata: Some(generator),
            ..Default::default()
        };
        let by_user_agent = Node {
            id: "grpc-go".into(),
            user_agent_name: "grpc-go".into(),
            ..Default::default()
        };
        let (v_ours, ours) = lds(1, ours);
        assert_eq!(ours, ["inbound-mtls", "inbound-plaintext"]);
        for (id, node) in [(2, by_metadata), (3, by_user_agent)] {
            let (v, chains) = lds(id, node);
            assert_eq!(chains, ["inbound-plaintext"], "client {id}");
            assert_ne!(v, v_ours, "different content, different version");
        }
    }
}
