//! The Istio resources this control plane understands, as validated plain data.
//!
//! Field names follow istio/api `networking/v1alpha3` (VirtualService, DestinationRule,
//! ServiceEntry, WorkloadEntry). Only the subset listed in the crate docs is modelled; every other
//! field is reported as a [`Warning`](super::Warning) by the parser and otherwise ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub(crate) use super::authz::parse_cidr;
pub use super::authz::{
    AuthorizationPolicy, AuthzAction, AuthzRule, Condition, ConditionKey, Operation, Source,
    Values, ROOT_NAMESPACE,
};
pub use super::fault::{AbortStatus, Fault, FaultAbort, FaultDelay};
pub use super::load_balancer::{ConsistentHash, HashAlgorithm, HashKey, LoadBalancer, Warmup};
pub use super::locality::{
    matches as locality_matches, Distribute, Failover, Locality, LocalityLbSetting, LABEL_REGION,
    LABEL_SUBZONE, LABEL_ZONE,
};
pub use super::outlier::{OutlierPolicy, Resilience};
pub use super::peer_authn::{effective_mode, MtlsMode, PeerAuthentication};
pub use super::request_authn::{
    JwtRule, RemoteJwks, RequestAuthentication, DEFAULT_JWKS_TIMEOUT, EMPTY_JWKS,
};
pub use super::retry::Retries;

/// Labels as Kubernetes-style `key: value` pairs, ordered for deterministic output.
pub type Labels = BTreeMap<String, String>;

/// The whole mesh configuration: every resource from every file, in load order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshConfig {
    /// `networking.istio.io` VirtualServices.
    pub virtual_services: Vec<VirtualService>,
    /// `networking.istio.io` DestinationRules.
    pub destination_rules: Vec<DestinationRule>,
    /// `networking.istio.io` ServiceEntries.
    pub service_entries: Vec<ServiceEntry>,
    /// `networking.istio.io` WorkloadEntries.
    pub workload_entries: Vec<WorkloadEntry>,
    /// `security.istio.io` AuthorizationPolicies (ALLOW and DENY; AUDIT is skipped).
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// `security.istio.io` RequestAuthentications.
    pub request_authentications: Vec<RequestAuthentication>,
    /// `security.istio.io` PeerAuthentications.
    pub peer_authentications: Vec<PeerAuthentication>,
}

impl MeshConfig {
    /// Appends every resource of `other` to `self`.
    pub fn extend(&mut self, other: MeshConfig) {
        self.virtual_services.extend(other.virtual_services);
        self.destination_rules.extend(other.destination_rules);
        self.service_entries.extend(other.service_entries);
        self.workload_entries.extend(other.workload_entries);
        self.authorization_policies
            .extend(other.authorization_policies);
        self.request_authentications
            .extend(other.request_authentications);
        self.peer_authentications.extend(other.peer_authentications);
    }

    /// Number of resources of all kinds.
    pub fn len(&self) -> usize {
        self.virtual_services.len()
            + self.destination_rules.len()
            + self.service_entries.len()
            + self.workload_entries.len()
            + self.authorization_policies.len()
            + self.request_authentications.len()
            + self.peer_authentications.len()
    }

    /// True when the configuration holds no resource at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Kind of an Istio resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `VirtualService`.
    VirtualService,
    /// `DestinationRule`.
    DestinationRule,
    /// `ServiceEntry`.
    ServiceEntry,
    /// `WorkloadEntry`.
    WorkloadEntry,
    /// `AuthorizationPolicy` (`security.istio.io`).
    AuthorizationPolicy,
    /// `RequestAuthentication` (`security.istio.io`).
    RequestAuthentication,
    /// `PeerAuthentication` (`security.istio.io`).
    PeerAuthentication,
}

impl Kind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::PeerAuthentication => "PeerAuthentication",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a resource came from and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Resource kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// File (or in-memory source name) the resource was read from.
    pub file: Arc<str>,
    /// 1-based line where the resource's YAML document starts.
    pub line: usize,
}

impl Meta {
    /// A meta for resources built in code rather than read from YAML.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Meta {
            kind,
            name: name.into(),
            namespace: namespace.into(),
            file: Arc::from("<memory>"),
            line: 1,
        }
    }

    /// `Kind/namespace/name`, the form used in warnings and errors.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// A string matcher from `StringMatch` (istio/api `virtual_service.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    /// `exact: value`.
    Exact(String),
    /// `prefix: value`.
    Prefix(String),
    /// `regex: value` (RE2 syntax, full match).
    Regex(String),
    /// An empty matcher (`{}`): the header/parameter only has to be present.
    Present,
}

/// `VirtualService`: routing rules for one or more hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualService {
    /// Identity and origin.
    pub meta: Meta,
    /// `spec.hosts` (short names are resolved in the resource's namespace).
    pub hosts: Vec<String>,
    /// `spec.http`, in order: the first matching rule wins.
    pub http: Vec<HttpRoute>,
}

/// One `spec.http[]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// `name` (optional).
    pub name: Option<String>,
    /// `match[]`: any of them selects the rule; empty means "match everything".
    pub matches: Vec<HttpMatch>,
    /// `route[]`: the destinations, with weights.
    pub route: Vec<RouteDestination>,
    /// `fault`: delay / abort injection.
    pub fault: Option<Fault>,
    /// `retries`.
    pub retries: Option<Retries>,
    /// `timeout`.
    pub timeout: Option<std::time::Duration>,
    /// `headers`: request and response header operations.
    pub headers: Headers,
    /// `rewrite`: path and authority rewrites.
    pub rewrite: Rewrite,
}

/// `http[].headers` (istio/api `Headers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `request`.
    pub request: HeaderOperations,
    /// `response`.
    pub response: HeaderOperations,
}

/// `Headers.HeaderOperations`: names lowercased; values literal (`%%` for a `%`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOperations {
    /// `set`: overwrite or add.
    pub set: BTreeMap<String, String>,
    /// `add`: append.
    pub add: BTreeMap<String, String>,
    /// `remove`.
    pub remove: Vec<String>,
    /// `set` of `:authority` / `host` (requests only): the authority rewrite, as istiod reads it.
    pub authority: Option<String>,
}

/// `http[].rewrite` (istio/api `HTTPRewrite`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `uri`: replaces the matched prefix (or exact path).
    pub uri: Option<String>,
    /// `authority`: the host sent upstream.
    pub authority: Option<String>,
    /// `uriRegexRewrite`: (`match`, `rewrite`).
    pub uri_regex: Option<(String, String)>,
}

/// One `spec.http[].match[]` entry; all conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpMatch {
    /// `name` (optional), appended to the rule name on the emitted route.
    pub name: Option<String>,
    /// `uri`.
    pub uri: Option<StringMatch>,
    /// `ignoreUriCase`.
    pub ignore_uri_case: bool,
    /// `headers`, by header name (lowercase).
    pub headers: BTreeMap<String, StringMatch>,
    /// `queryParams`, by parameter name.
    pub query_params: BTreeMap<String, StringMatch>,
}

impl HttpMatch {
    /// True when the match accepts every request (no header/query conditions and a `/` prefix or
    /// no uri) — istio's "catch-all" (`pilot/pkg/networking/core/route` `isCatchAllRoute`).
    pub fn is_catch_all(&self) -> bool {
        self.headers.is_empty()
            && self.query_params.is_empty()
            && match &self.uri {
                None => true,
                Some(StringMatch::Prefix(p)) => p == "/" || p.is_empty(),
                Some(StringMatch::Regex(r)) => r == "*" || r == ".*",
                _ => false,
            }
    }
}

/// One `spec.http[].route[]` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDestination {
    /// `destination.host`.
    pub host: String,
    /// `destination.subset`.
    pub subset: Option<String>,
    /// `destination.port.number`.
    pub port: Option<u32>,
    /// `weight` (relative; absent means 0 unless it is the only destination).
    pub weight: Option<u32>,
}

/// `DestinationRule`: subsets and load-balancing for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRule {
    /// Identity and origin.
    pub meta: Meta,
    /// `spec.host`.
    pub host: String,
    /// `spec.trafficPolicy.loadBalancer` (`simple` or `consistentHash`).
    pub load_balancer: Option<LoadBalancer>,
    /// `spec.trafficPolicy.loadBalancer.warmup` / `warmupDurationSecs`.
    pub warmup: Option<Warmup>,
    /// `spec.trafficPolicy.loadBalancer.localityLbSetting.enabled`.
    pub locality_weighted: Option<bool>,
    /// `spec.trafficPolicy.loadBalancer.localityLbSetting`.
    pub locality_lb: Option<LocalityLbSetting>,
    /// `spec.trafficPolicy.connectionPool.http.http2MaxRequests` → the cluster's
    /// `circuit_breakers` `max_requests` (istio/istio#58052 for proxyless).
    pub max_requests: Option<u32>,
    /// `spec.trafficPolicy` connection-pool limits and `outlierDetection`.
    pub resilience: Resilience,
    /// `spec.subsets`.
    pub subsets: Vec<Subset>,
    /// `spec.trafficPolicy.tls` and `portLevelSettings[].tls`.
    pub tls: TlsPolicy,
}

/// One `spec.subsets[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    /// `name`.
    pub name: String,
    /// `labels`: an endpoint belongs to the subset when it carries all of them.
    pub labels: Labels,
    /// `trafficPolicy.loadBalancer` (overrides the rule-level policy).
    pub load_balancer: Option<LoadBalancer>,
    /// `trafficPolicy.loadBalancer.warmup` (overrides the rule-level one).
    pub warmup: Option<Warmup>,
    /// `trafficPolicy.loadBalancer.localityLbSetting.enabled` (overrides the rule-level one).
    pub locality_weighted: Option<bool>,
    /// `trafficPolicy.loadBalancer.localityLbSetting` (replaces the rule-level one).
    pub locality_lb: Option<LocalityLbSetting>,
    /// `trafficPolicy.connectionPool.http.http2MaxRequests` (overrides the rule-level one).
    pub max_requests: Option<u32>,
    /// `trafficPolicy` connection-pool limits and `outlierDetection` (see [`Resilience::or`]).
    pub resilience: Resilience,
    /// `trafficPolicy.tls` and `portLevelSettings[].tls` (override the rule's, per port).
    pub tls: TlsPolicy,
}

/// `ServiceEntry`: a service (hosts × ports) and, inline or by selector, its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Identity and origin.
    pub meta: Meta,
    /// `spec.hosts`.
    pub hosts: Vec<String>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.endpoints`.
    pub endpoints: Vec<InlineEndpoint>,
    /// `spec.workloadSelector.labels`: WorkloadEntries of the same namespace carrying all of
    /// them are endpoints too.
    pub workload_selector: Option<Labels>,
}

/// One `spec.ports[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `number`: the port clients dial (`host:number`).
    pub number: u32,
    /// `name`: the key into endpoint `ports` maps.
    pub name: String,
    /// `protocol` (informational; GRPC, HTTP, HTTP2, …).
    pub protocol: String,
    /// `targetPort`: the endpoint port when the endpoint does not map this port by name.
    pub target_port: Option<u32>,
}

/// One `spec.endpoints[]` entry of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineEndpoint {
    /// `address`: an IP address (validated; every service is resolved STATIC).
    pub address: String,
    /// `ports`: service port name → endpoint port.
    pub ports: BTreeMap<String, u32>,
    /// `labels`.
    pub labels: Labels,
    /// `locality` (`region/zone/subzone`; empty when absent).
    pub locality: Locality,
}

/// `WorkloadEntry`: one workload, selected into services by its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEntry {
    /// Identity and origin.
    pub meta: Meta,
    /// `spec.address`: an IP address (validated).
    pub address: String,
    /// `spec.labels`.
    pub labels: Labels,
    /// `spec.serviceAccount`.
    pub service_account: Option<String>,
    /// `spec.ports`: service port name → workload port.
    pub ports: BTreeMap<String, u32>,
    /// `spec.locality` (`region/zone/subzone`; empty when absent).
    pub locality: Locality,
}

/// DestinationRule `ClientTLSSettings.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plaintext.
    Disable,
    /// TLS, the server verified, no client certificate.
    Simple,
    /// TLS with a client certificate.
    Mutual,
    /// Mutual TLS with the mesh's own certificates; the server must be one of the destination's
    /// service accounts unless `subjectAltNames` says otherwise.
    IstioMutual,
}

/// DestinationRule `trafficPolicy.tls` (istio/api `ClientTLSSettings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// `mode` (absent: DISABLE).
    pub mode: TlsMode,
    /// `sni`.
    pub sni: Option<String>,
    /// `subjectAltNames`.
    pub subject_alt_names: Vec<String>,
}

/// The TLS settings of a `trafficPolicy`: its own and per port (`portLevelSettings[].tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `tls`.
    pub tls: Option<ClientTls>,
    /// `portLevelSettings[].tls` by port number.
    pub ports: BTreeMap<u32, ClientTls>,
}

impl TlsPolicy {
    /// The settings for `port`: the port's own, else the policy's.
    pub fn for_port(&self, port: u32) -> Option<&ClientTls> {
        self.ports.get(&port).or(self.tls.as_ref())
    }
}
