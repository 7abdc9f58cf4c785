//! RouteConfiguration → VirtualHost → Route → RouteAction (gRFC A28; Envoy `route_components`).

use std::sync::Arc;

use super::{HashPolicy, HeaderMatcher, QueryParamMatcher, Regex, RetryPolicy, RoutePolicy};

/// An RDS resource (or the inline `route_config` of a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfiguration {
    /// The resource name, e.g. `outbound|9080||reviews.default.svc.cluster.local` or `9080`.
    pub name: Arc<str>,
    /// Virtual hosts, in configuration order (selection is by most specific domain, not order).
    pub virtual_hosts: Arc<[VirtualHost]>,
}

/// `envoy.config.route.v3.VirtualHost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHost {
    /// Name, for messages.
    pub name: Arc<str>,
    /// Domains as configured, lowercased: exact, `*.suffix` / `*-suffix`, `prefix.*`, or `*`.
    /// Validated: at most one wildcard, at the start or end; non-empty.
    pub domains: Arc<[Arc<str>]>,
    /// Routes; the first match wins.
    pub routes: Arc<[Route]>,
    /// `retry_policy` of the virtual host: the default for routes that set none (already
    /// folded into each [`Route::policy`] by the converter).
    pub retry_policy: Option<Arc<RetryPolicy>>,
}

/// `envoy.config.route.v3.Route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The route's name (may be empty on the wire; the converter then names it
    /// `<vhost>/<index>` so errors can always name it).
    pub name: Arc<str>,
    /// What the request must look like.
    pub matcher: RouteMatch,
    /// What to do with a matching request.
    pub action: RouteAction,
    /// Timeouts and retries (from the `RouteAction`; defaults for non-forwarding actions).
    pub policy: RoutePolicy,
    /// `RouteAction.hash_policy` (empty when unset or for non-forwarding actions); used only
    /// when the target cluster balances by hash ([`super::LbPolicy::uses_hash`]).
    pub hash_policy: Arc<[HashPolicy]>,
}

/// `envoy.config.route.v3.RouteMatch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// The path test.
    pub path: PathMatch,
    /// `case_sensitive` (default true; not applied to regex).
    pub case_sensitive: bool,
    /// All must match.
    pub headers: Arc<[HeaderMatcher]>,
    /// All must match. (gRPC ignores routes that have any; the HTTP stack honours them.)
    pub query_params: Arc<[QueryParamMatcher]>,
    /// `runtime_fraction.default_value` scaled to parts per million; `None` = always.
    pub fraction_per_million: Option<u32>,
}

impl RouteMatch {
    /// A case-sensitive path-prefix match with no header, query or fraction conditions — the
    /// common route, for building config in code.
    pub fn prefix(prefix: &str) -> RouteMatch {
        RouteMatch {
            path: PathMatch::Prefix(prefix.into()),
            case_sensitive: true,
            headers: Arc::new([]),
            query_params: Arc::new([]),
            fraction_per_million: None,
        }
    }
}

/// `RouteMatch.path_specifier`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// `prefix` (lowercased when not case sensitive).
    Prefix(Arc<str>),
    /// `path` — the whole path, query excluded (lowercased when not case sensitive).
    Exact(Arc<str>),
    /// `safe_regex` — RE2, full match over the path without the query.
    Regex(Regex),
}

/// `Route.action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to one cluster.
    Cluster(Arc<str>),
    /// Forward to one of several clusters, picked at random by weight (zero weights removed,
    /// sum validated > 0 and ≤ u32::MAX).
    WeightedClusters(Arc<[ClusterWeight]>),
    /// A route whose action the mesh does not forward (redirect, direct_response,
    /// cluster_header, …): matching requests fail with a typed error naming this reason,
    /// as gRPC does (XDS-SEMANTICS.md row 10).
    Unsupported(Arc<str>),
}

/// One `weighted_clusters.clusters` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterWeight {
    /// Cluster name.
    pub name: Arc<str>,
    /// Relative weight (> 0).
    pub weight: u32,
}
