//! Listener: an API listener holding an HttpConnectionManager (gRFC A27, A39).

use std::{sync::Arc, time::Duration};

use super::{FaultPolicy, JwtAuthentication, OpaqueAny, Rbac, RouteConfiguration, ServerListener};

/// A client-side (API) listener, named after the target it serves (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The listener name, e.g. `reviews.default.svc.cluster.local:9080`.
    pub name: Arc<str>,
    /// Where the route table comes from.
    pub route_source: RouteSource,
    /// HTTP filters in order; validated so that the router is last and only last.
    pub http_filters: Arc<[HttpFilter]>,
    /// `HttpConnectionManager.stream_idle_timeout`, effective: 5 min when unset (Envoy's
    /// default, [`DEFAULT_STREAM_IDLE_TIMEOUT`]), `None` when 0 (disabled). A route's
    /// `idle_timeout` overrides it ([`super::RoutePolicy::idle_timeout`]). Envoy (HTTP) only:
    /// gRPC ignores it.
    pub stream_idle_timeout: Option<Duration>,
}

/// Envoy's `HttpConnectionManager.stream_idle_timeout` when unset.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Listener {
    /// The RDS resource this listener waits for, if its routes are not inline.
    pub fn rds_name(&self) -> Option<&str> {
        match &self.route_source {
            RouteSource::Rds(name) => Some(name),
            RouteSource::Inline(_) | RouteSource::Server(_) => None,
        }
    }
}

/// `HttpConnectionManager.route_specifier`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteSource {
    /// `rds` over ADS: the name of the RouteConfiguration to subscribe to.
    Rds(Arc<str>),
    /// `route_config`, inline.
    Inline(Arc<RouteConfiguration>),
    /// Not a client listener: an inbound server listener (gRFC A36), whose requests are served
    /// by the application (`non_forwarding_action`); read by [`crate::authz`].
    Server(Arc<ServerListener>),
}

/// One entry of `HttpConnectionManager.http_filters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFilter {
    /// The filter's instance name (unique within the listener).
    pub name: Arc<str>,
    /// Its configuration, interpreted where the mesh implements the filter.
    pub config: HttpFilterConfig,
}

/// A filter configuration, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpFilterConfig {
    /// `envoy.extensions.filters.http.router.v3.Router` — the terminal filter.
    Router,
    /// `envoy.extensions.filters.http.fault.v3.HTTPFault`: the default fault policy, which
    /// routes may override by the filter's name (gRFC A33, A39).
    Fault(Arc<FaultPolicy>),
    /// `envoy.extensions.filters.http.rbac.v3.RBAC` (gRFC A41): `None` when it has no `rules`
    /// and so enforces nothing. Evaluated by [`crate::authz`].
    Rbac(Option<Arc<Rbac>>),
    /// `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication` (server listeners only):
    /// JWT request authentication, run before the RBAC filters by [`crate::authz`].
    JwtAuthn(Arc<JwtAuthentication>),
    /// An optional filter (`is_optional: true`) of a type the mesh does not implement: skipped on
    /// the request path, kept here so nothing is lost.
    Skipped(OpaqueAny),
}
