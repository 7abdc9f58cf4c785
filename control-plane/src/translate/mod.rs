//! Istio model → Envoy v3 xDS, in the form istiod's proxyless-gRPC generator emits
//! (istio/istio `pilot/pkg/networking/grpcgen/{lds,rds,cds}.go` and the shared VirtualService
//! route translation `pilot/pkg/networking/core/route/route.go`).
//!
//! For every service `host:port` (ServiceEntry hosts × ports):
//! - a **Listener** named `host:port`: an `api_listener` whose HttpConnectionManager uses `rds`
//!   over ADS (`route_config_name` = `host:port`) with HTTP filters fault then router (router last),
//!   each carrying a `typed_config` (gRFC A27/A39; INTEROP.md; istiod grpcgen `supportedFilters`);
//! - a **RouteConfiguration** `host:port` with one virtual host whose domains are the host, its
//!   Kubernetes short names, each with and without `:port` (gRFC A27 matches the channel authority
//!   against them); routes come from the VirtualServices for the host, in order, one route per
//!   `match` entry, catch-all routes moved last (istio `SortVHostRoutes`), then a default
//!   `prefix: "/"` route to the service's default cluster unless a VirtualService catch-all
//!   already ends the list; a rule's `fault` becomes the route's `typed_per_filter_config`
//!   ([`fault`]), its `retries` / `timeout` the RouteAction's `retry_policy` /
//!   `max_stream_duration` + `timeout` ([`retry`]);
//! - **Clusters** `outbound|port|subset|host` (subset empty for the default cluster, one per
//!   DestinationRule subset) of type EDS over ADS with `service_name` = the cluster name, and
//!   for DestinationRule `tls` an `UpstreamTlsContext` naming certificate provider instances
//!   (gRFC A29; [`tls`]);
//! - one **ClusterLoadAssignment** per cluster: endpoints filtered by the subset's labels, grouped
//!   by their locality (ServiceEntry `endpoints[].locality`, WorkloadEntry `locality`; none is
//!   the empty locality), each locality with `load_balancing_weight` = its endpoint count (gRFC
//!   A27: a locality without a weight is ignored, so grpcio would fail every call with "contains
//!   no localities"; istiod weighs by the endpoints' summed weight). Clusters whose
//!   DestinationRule `localityLbSetting` reshapes EDS per client also get a
//!   [`locality::LocalityPlan`], which the ADS stream applies for each client's `Node` locality.
//!
//! For every workload an AuthorizationPolicy selects, per port, an inbound **server Listener**
//! (gRFC A36) whose HttpConnectionManager runs the DENY then the ALLOW RBAC filter then the
//! router, as istiod's grpcgen emits it ([`authz`]).
//!
//! **Which form is emitted.** One form, the **gRPC-safe** one
//! (INTEROP.md, last section), served to every client: no Envoy-only LB policies (no RANDOM,
//! MAGLEV, MURMUR_HASH_2), no matcher-wrapped or RBAC filters on client listeners, only the fault
//! filter and the router, fault/retry/timeout in the shapes gRPC reads (row 11, 12, 14 of
//! XDS-SEMANTICS.md). It is checked against grpcio 1.85.1 by `tests/tests/grpcio_interop.rs`,
//! which also asserts that no grpcio NACK is recorded. Richer Envoy forms for our own library may
//! be added later as a separate variant; gRPC's own clients must then keep receiving this form and
//! are recognised by node metadata `GENERATOR: grpc` (what istiod keys its grpcgen generator on)
//! or by `user_agent_name` (`gRPC Python`, `grpc-go`, `grpc-java`, …) — both recorded per stream
//! in [`NodeInfo`](crate::NodeInfo). One exception exists: a PERMISSIVE server Listener carries
//! Envoy's `tls` + `raw_buffer` chain pair, which mesh-grpc's server serves on one port but a gRPC
//! server without certificate providers NACKs; gRPC clients get it without the `tls` chain
//! ([`peer_authn::grpc_server_form`], applied per stream; checked by
//! `tests/tests/grpcio_mtls_interop.rs`).

pub mod authz;
mod cluster;
pub mod fault;
pub mod jwt;
mod listener;
mod load_balancer;
pub mod locality;
mod outlier;
pub mod peer_authn;
pub mod retry;
mod route;
pub mod tls;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier, AggregatedConfigSource, ApiVersion, ConfigSource,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;

use crate::registry::Registry;
use crate::source::MeshConfig;

pub use cluster::cluster_name;
pub use tls::DEFAULT_TRUST_DOMAIN;

/// The four xDS resource types this control plane serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// `envoy.config.listener.v3.Listener` (LDS).
    Listener,
    /// `envoy.config.route.v3.RouteConfiguration` (RDS).
    Route,
    /// `envoy.config.cluster.v3.Cluster` (CDS).
    Cluster,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
    Endpoint,
}

impl ResourceType {
    /// All types, in make-before-break push order (Envoy xds_protocol "eventual consistency
    /// considerations": CDS, EDS, LDS, RDS).
    pub const PUSH_ORDER: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    /// The v3 type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
        }
    }

    /// The type for a v3 (or, per gRFC A30, v2) type URL.
    pub fn from_type_url(url: &str) -> Option<Self> {
        let name = url.strip_prefix("type.googleapis.com/")?;
        Some(match name {
            "envoy.config.listener.v3.Listener" | "envoy.api.v2.Listener" => ResourceType::Listener,
            "envoy.config.route.v3.RouteConfiguration" | "envoy.api.v2.RouteConfiguration" => {
                ResourceType::Route
            }
            "envoy.config.cluster.v3.Cluster" | "envoy.api.v2.Cluster" => ResourceType::Cluster,
            "envoy.config.endpoint.v3.ClusterLoadAssignment"
            | "envoy.api.v2.ClusterLoadAssignment" => ResourceType::Endpoint,
            _ => return None,
        })
    }

    /// Short name (`LDS`, `RDS`, `CDS`, `EDS`).
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
        }
    }

    /// True for the types whose SotW responses must carry every subscribed resource (and where
    /// wildcard subscriptions exist): LDS and CDS (Envoy xds_protocol).
    pub fn is_full_state(self) -> bool {
        matches!(self, ResourceType::Listener | ResourceType::Cluster)
    }
}

/// Everything translated from one [`MeshConfig`], as envoy-types protos, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XdsResources {
    /// Listeners, one per service `host:port` (canonical names only).
    pub listeners: Vec<Listener>,
    /// Other listener names a client may request (Kubernetes short names such as
    /// `reviews:9080`) → the canonical listener name. Served as copies renamed to the alias, the
    /// way istiod duplicates listeners per requested name.
    pub listener_aliases: BTreeMap<String, String>,
    /// Route configurations, one per service `host:port`.
    pub routes: Vec<RouteConfiguration>,
    /// Clusters `outbound|port|subset|host`.
    pub clusters: Vec<Cluster>,
    /// Cluster load assignments, one per cluster.
    pub endpoints: Vec<ClusterLoadAssignment>,
    /// Cluster name → how its assignment is reshaped per client locality (only clusters where
    /// some client could see a difference).
    pub locality_plans: BTreeMap<String, locality::LocalityPlan>,
}

impl XdsResources {
    /// The listener a client requesting `name` gets: the canonical listener, or a copy of it
    /// renamed to `name` when `name` is an alias.
    pub fn listener(&self, name: &str) -> Option<Listener> {
        let canonical = self
            .listener_aliases
            .get(name)
            .map(String::as_str)
            .unwrap_or(name);
        let mut l = self.listeners.iter().find(|l| l.name == canonical)?.clone();
        l.name = name.to_string();
        Some(l)
    }

    /// The route configuration named `name`.
    pub fn route(&self, name: &str) -> Option<&RouteConfiguration> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The load assignment of cluster `name`.
    pub fn endpoint(&self, name: &str) -> Option<&ClusterLoadAssignment> {
        self.endpoints.iter().find(|e| e.cluster_name == name)
    }

    /// Every canonical resource of type `ty` as `(name, Any)`.
    pub fn resources_any(&self, ty: ResourceType) -> Vec<(String, Any)> {
        match ty {
            ResourceType::Listener => self
                .listeners
                .iter()
                .map(|r| (r.name.clone(), to_any(r)))
                .collect(),
            ResourceType::Route => self
                .routes
                .iter()
                .map(|r| (r.name.clone(), to_any(r)))
                .collect(),
            ResourceType::Cluster => self
                .clusters
                .iter()
                .map(|r| (r.name.clone(), to_any(r)))
                .collect(),
            ResourceType::Endpoint => self
                .endpoints
                .iter()
                .map(|r| (r.cluster_name.clone(), to_any(r)))
                .collect(),
        }
    }
}

/// Packs a message into a `google.protobuf.Any` (envoy-types' own `Any`, the one
/// `DiscoveryResponse.resources` holds).
pub fn to_any<T: prost::Name>(msg: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: prost::Message::encode_to_vec(msg),
    }
}

/// Converts an envoy-types `Any` into a `prost_types::Any` (same wire format).
pub fn to_prost_any(any: &Any) -> prost_types::Any {
    prost_types::Any {
        type_url: any.type_url.clone(),
        value: any.value.clone(),
    }
}

/// A `std::time::Duration` as a protobuf `Duration` (saturating at `i64::MAX` seconds).
pub(crate) fn pb_duration(d: std::time::Duration) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// `ConfigSource { ads: {} }`, v3.
pub(crate) fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// Settings of the translation that do not come from the YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateOptions {
    /// The trust domain service accounts' SPIFFE IDs are written in (ISTIO_MUTUAL's expected
    /// SANs): the control plane CA's, Istio's `meshConfig.trustDomain`. Default
    /// [`DEFAULT_TRUST_DOMAIN`].
    pub trust_domain: String,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
        }
    }
}

/// Translates a configuration into xDS resources with the default [`TranslateOptions`]. Never
/// fails: the configuration was validated when loaded; unresolvable destinations still produce
/// the cluster name istiod would use.
pub fn translate(config: &MeshConfig) -> XdsResources {
    translate_with(config, &TranslateOptions::default())
}

/// [`translate`] with explicit options.
pub fn translate_with(config: &MeshConfig, options: &TranslateOptions) -> XdsResources {
    let registry = Registry::build(config);
    let mut out = XdsResources::default();
    for svc in registry.services() {
        let dr = cluster::destination_rule_for(config, &registry, &svc.host);
        let vss = route::virtual_services_for(config, &registry, &svc.host);
        for port in &svc.ports {
            let (l, aliases) = listener::listener(svc, port);
            out.listener_aliases
                .extend(aliases.into_iter().map(|a| (a, l.name.clone())));
            out.listeners.push(l);
            out.routes.push(route::route_configuration(
                config, &registry, svc, port, &vss,
            ));
            for (c, cla, plan) in cluster::clusters(svc, port, dr, &options.trust_domain) {
                if let Some(plan) = plan {
                    out.locality_plans.insert(c.name.clone(), plan);
                }
                out.clusters.push(c);
                out.endpoints.push(cla);
            }
        }
    }
    // A short name shared by two services is ambiguous; neither gets it.
    let canonical: std::collections::BTreeSet<String> =
        out.listeners.iter().map(|l| l.name.clone()).collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for svc in registry.services() {
        for port in &svc.ports {
            for alias in listener::aliases(&svc.host, port.number) {
                *counts.entry(alias).or_default() += 1;
            }
        }
    }
    out.listener_aliases
        .retain(|alias, _| counts.get(alias) == Some(&1) && !canonical.contains(alias));
    // Inbound listeners with the RBAC filters of the AuthorizationPolicies (see [`authz`]).
    for (l, alias) in authz::server_listeners(config, &registry) {
        out.listener_aliases.insert(alias, l.name.clone());
        out.listeners.push(l);
    }
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out
}
