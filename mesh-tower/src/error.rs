//! The one error type for failures the mesh makes, with a machine-readable kind.

use std::{fmt, net::SocketAddr, sync::Arc};

use mesh_core::snapshot::FaultStatus;

/// Boxed error from an inner service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong, as a stable, machine-readable kind (`as_str` gives the snake_case name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MeshErrorKind {
    /// The request's authority names no target the mesh can resolve (no listener, or it never
    /// became ready).
    NoTarget,
    /// No virtual host or route matches the request.
    NoRoute,
    /// The matching route's action is not one the mesh forwards (redirect, direct response…).
    UnsupportedRoute,
    /// The route's cluster does not exist (deleted, never sent, or rejected).
    ClusterNotFound,
    /// The cluster has no routable endpoint.
    NoHealthyEndpoint,
    /// The cluster's EDS `drop_overloads` dropped the request before an endpoint was picked
    /// (the detail names the category); not retried.
    DropOverload,
    /// Connecting to the picked endpoint failed.
    Connect,
    /// The TLS connection to the picked endpoint could not be established or verified, or the
    /// cluster's TLS settings cannot be used (the reason says which; Envoy counts a failed
    /// handshake as a connect failure, so `connect-failure` retries it, as it does this kind
    /// for every reason but the two configuration ones).
    Tls(TlsReason),
    /// The request failed after it was sent to the endpoint (reset, protocol error, …).
    Upstream,
    /// The request has no authority (no absolute URI and no `Host` header).
    MissingAuthority,
    /// The route timeout (`RouteAction.timeout`, covering every retry) elapsed.
    Timeout,
    /// One attempt's `per_try_timeout` elapsed and no retry followed.
    PerTryTimeout,
    /// The stream was idle (no response head or body frame) for the route's `idle_timeout` /
    /// the listener's `stream_idle_timeout` (Envoy; HTTP only).
    IdleTimeout,
    /// A retry was due but the cluster's `retry_budget` had no room, so the last attempt's
    /// failure stands.
    RetryBudgetExhausted,
    /// A circuit-breaker limit was reached (for the request, a retry, or an attempt's
    /// connection); the request fails fast and is not retried.
    Overflow(OverflowLimit),
    /// The route's fault filter aborted the request before it was sent (Envoy fault filter,
    /// gRFC A33), with this HTTP status or gRPC code.
    FaultAbort(FaultStatus),
}

/// Why a TLS connection failed (the `reason` of a [`MeshErrorKind::Tls`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsReason {
    /// The server's chain does not lead to the trust bundle.
    UnknownCa,
    /// The server's certificate has no SAN matching `match_subject_alt_names`.
    SanMismatch,
    /// The server's certificate is expired or not yet valid.
    Expired,
    /// The server refused the handshake (a TLS alert, e.g. it rejected our certificate).
    PeerRefused,
    /// Any other problem with the server's certificate.
    BadCertificate,
    /// The handshake failed for another reason (protocol error, connection closed).
    Handshake,
    /// The cluster's TLS context names a certificate provider instance the client was not
    /// given (gRFC A29).
    MissingProvider,
    /// The cluster's transport asks for something the mesh does not implement (SDS, inline
    /// certificates, …; see `mesh_core::model::UpstreamTransport::Unsupported`).
    UnsupportedConfig,
}

impl TlsReason {
    /// The reason's snake_case name, e.g. `san_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsReason::UnknownCa => "unknown_ca",
            TlsReason::SanMismatch => "san_mismatch",
            TlsReason::Expired => "expired",
            TlsReason::PeerRefused => "peer_refused",
            TlsReason::BadCertificate => "bad_certificate",
            TlsReason::Handshake => "handshake",
            TlsReason::MissingProvider => "missing_provider",
            TlsReason::UnsupportedConfig => "unsupported_config",
        }
    }

    /// Whether the reason is the cluster's configuration (no endpoint can do better, so it is
    /// never retried) rather than one endpoint's handshake.
    pub fn is_config(self) -> bool {
        matches!(
            self,
            TlsReason::MissingProvider | TlsReason::UnsupportedConfig
        )
    }
}

/// Which circuit-breaker limit overflowed (Envoy `circuit_breaker.proto` thresholds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowLimit {
    /// `max_retries`: concurrent retries to the cluster.
    MaxRetries,
    /// `max_requests`: concurrent requests to the cluster.
    MaxRequests,
    /// `max_pending_requests`: attempts waiting for one of the cluster's connections.
    MaxPendingRequests,
    /// `max_connections`, when `max_pending_requests` is 0 so nothing may wait for a
    /// connection (otherwise a full pool queues, and the queue overflows).
    MaxConnections,
}

impl OverflowLimit {
    /// The limit's snake_case name, e.g. `max_retries`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowLimit::MaxRetries => "max_retries",
            OverflowLimit::MaxRequests => "max_requests",
            OverflowLimit::MaxPendingRequests => "max_pending_requests",
            OverflowLimit::MaxConnections => "max_connections",
        }
    }
}

impl MeshErrorKind {
    /// The snake_case name used in logs and headers, e.g. `no_route`.
    pub fn as_str(self) -> &'static str {
        match self {
            MeshErrorKind::NoTarget => "no_target",
            MeshErrorKind::NoRoute => "no_route",
            MeshErrorKind::UnsupportedRoute => "unsupported_route",
            MeshErrorKind::ClusterNotFound => "cluster_not_found",
            MeshErrorKind::NoHealthyEndpoint => "no_healthy_endpoint",
            MeshErrorKind::DropOverload => "drop_overload",
            MeshErrorKind::Connect => "connect",
            MeshErrorKind::Tls(_) => "tls",
            MeshErrorKind::Upstream => "upstream",
            MeshErrorKind::MissingAuthority => "missing_authority",
            MeshErrorKind::Timeout => "timeout",
            MeshErrorKind::PerTryTimeout => "per_try_timeout",
            MeshErrorKind::IdleTimeout => "idle_timeout",
            MeshErrorKind::RetryBudgetExhausted => "retry_budget_exhausted",
            MeshErrorKind::Overflow(_) => "overflow",
            MeshErrorKind::FaultAbort(_) => "fault_abort",
        }
    }

    /// Whether this is one of the two timeout kinds.
    pub fn is_timeout(self) -> bool {
        matches!(self, MeshErrorKind::Timeout | MeshErrorKind::PerTryTimeout)
    }
}

impl fmt::Display for MeshErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure made or observed by the mesh, naming where it happened.
///
/// `Display`: `no_healthy_endpoint: host reviews:9080 path /ratings route default cluster
/// outbound|9080||reviews: 0 of 3 endpoints routable`.
#[derive(Debug)]
pub struct MeshError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: MeshErrorKind,
    authority: Option<Arc<str>>,
    path: Option<Box<str>>,
    route: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    endpoint: Option<SocketAddr>,
    attempts: u32,
    not_retried: Option<&'static str>,
    detail: Option<BoxError>,
}

impl MeshError {
    pub(crate) fn new(kind: MeshErrorKind) -> Self {
        MeshError(Box::new(Inner {
            kind,
            authority: None,
            path: None,
            route: None,
            cluster: None,
            endpoint: None,
            attempts: 0,
            not_retried: None,
            detail: None,
        }))
    }

    pub(crate) fn attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    pub(crate) fn set_attempts(&mut self, attempts: u32) {
        self.0.attempts = attempts;
    }

    pub(crate) fn not_retried(mut self, why: &'static str) -> Self {
        self.0.not_retried = Some(why);
        self
    }

    pub(crate) fn endpoint_opt(mut self, endpoint: Option<SocketAddr>) -> Self {
        self.0.endpoint = endpoint;
        self
    }

    /// Whether the failure's source chain holds an HTTP/2 `REFUSED_STREAM` reset (the server
    /// did not process the request, so it is always safe to retry).
    pub(crate) fn is_refused_stream(&self) -> bool {
        let mut e: Option<&(dyn std::error::Error + 'static)> = self
            .0
            .detail
            .as_deref()
            .map(|d| d as &(dyn std::error::Error + 'static));
        while let Some(err) = e {
            if let Some(h2) = err.downcast_ref::<h2::Error>() {
                return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            }
            e = err.source();
        }
        false
    }

    /// The request names no target: neither an absolute URI nor a `Host` header.
    pub(crate) fn missing_authority() -> Self {
        MeshError::new(MeshErrorKind::MissingAuthority).detail(
            "the request has neither an absolute URI nor a Host header, so no target (listener) can be chosen",
        )
    }

    pub(crate) fn at(mut self, authority: &str, path: &str) -> Self {
        self.0.authority = Some(authority.into());
        self.0.path = Some(path.into());
        self
    }

    pub(crate) fn route(mut self, route: &Arc<str>) -> Self {
        self.0.route = Some(route.clone());
        self
    }

    pub(crate) fn cluster(mut self, cluster: &Arc<str>) -> Self {
        self.0.cluster = Some(cluster.clone());
        self
    }

    pub(crate) fn endpoint(mut self, endpoint: SocketAddr) -> Self {
        self.0.endpoint = Some(endpoint);
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<BoxError>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> MeshErrorKind {
        self.0.kind
    }

    /// The request authority, when known.
    pub fn authority(&self) -> Option<&str> {
        self.0.authority.as_deref()
    }

    /// The route that matched, when one did.
    pub fn route_name(&self) -> Option<&str> {
        self.0.route.as_deref()
    }

    /// The cluster picked, when one was.
    pub fn cluster_name(&self) -> Option<&str> {
        self.0.cluster.as_deref()
    }

    /// The endpoint picked, when one was (for a retried request: the last attempt's).
    pub fn endpoint_addr(&self) -> Option<SocketAddr> {
        self.0.endpoint
    }

    /// Requests sent upstream for this call (0 when it failed before anything was sent).
    pub fn attempt_count(&self) -> u32 {
        self.0.attempts
    }

    /// Why a retry that the policy allowed was not made, e.g. `body_over_replay_cap`.
    pub fn not_retried_reason(&self) -> Option<&'static str> {
        self.0.not_retried
    }

    /// The request path, when known.
    pub fn path(&self) -> Option<&str> {
        self.0.path.as_deref()
    }

    /// The route name, shared (metrics attributes without a copy).
    pub(crate) fn route_shared(&self) -> Option<&Arc<str>> {
        self.0.route.as_ref()
    }

    /// The cluster name, shared (metrics attributes without a copy).
    pub(crate) fn cluster_shared(&self) -> Option<&Arc<str>> {
        self.0.cluster.as_ref()
    }
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.kind)?;
        if let Some(a) = &self.0.authority {
            write!(f, ": host {a}")?;
        }
        if let Some(p) = self.0.path.as_deref().filter(|p| !p.is_empty()) {
            write!(f, " path {p}")?;
        }
        if let Some(r) = &self.0.route {
            write!(f, " route {r}")?;
        }
        if let Some(c) = &self.0.cluster {
            write!(f, " cluster {c}")?;
        }
        if let Some(e) = &self.0.endpoint {
            write!(f, " endpoint {e}")?;
        }
        if let MeshErrorKind::Overflow(l) = self.0.kind {
            write!(f, " limit {}", l.as_str())?;
        }
        if let MeshErrorKind::FaultAbort(s) = self.0.kind {
            write!(f, " status {s}")?;
        }
        if let MeshErrorKind::Tls(r) = self.0.kind {
            write!(f, " reason {}", r.as_str())?;
        }
        if self.0.attempts > 1 {
            write!(f, " after {} attempts", self.0.attempts)?;
        }
        if let Some(n) = self.0.not_retried {
            write!(f, " (not retried: {n})")?;
        }
        if let Some(d) = &self.0.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MeshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .detail
            .as_deref()
            .map(|d| d as &(dyn std::error::Error + 'static))
    }
}
