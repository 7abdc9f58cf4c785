//! The one error type for failures the mesh makes, with a machine-readable kind.

use std::{fmt, net::SocketAddr, sync::Arc};

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
    /// The cluster has no routable endpoint.
    NoHealthyEndpoint,
    /// Connecting to the picked endpoint failed.
    Connect,
    /// The request failed after it was sent to the endpoint (reset, protocol error, …).
    Upstream,
    /// The request has no authority (no absolute URI and no `Host` header).
    MissingAuthority,
}

impl MeshErrorKind {
    /// The snake_case name used in logs and headers, e.g. `no_route`.
    pub fn as_str(self) -> &'static str {
        match self {
            MeshErrorKind::NoTarget => "no_target",
            MeshErrorKind::NoRoute => "no_route",
            MeshErrorKind::UnsupportedRoute => "unsupported_route",
            MeshErrorKind::NoHealthyEndpoint => "no_healthy_endpoint",
            MeshErrorKind::Connect => "connect",
            MeshErrorKind::Upstream => "upstream",
            MeshErrorKind::MissingAuthority => "missing_authority",
        }
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
pub struct MeshError {
    kind: MeshErrorKind,
    authority: Option<Arc<str>>,
    path: Option<Box<str>>,
    route: Option<Arc<str>>,
    cluster: Option<Arc<str>>,
    endpoint: Option<SocketAddr>,
    detail: Option<BoxError>,
}

impl MeshError {
    pub(crate) fn new(kind: MeshErrorKind) -> Self {
        MeshError {
            kind,
            authority: None,
            path: None,
            route: None,
            cluster: None,
            endpoint: None,
            detail: None,
        }
    }

    pub(crate) fn at(mut self, authority: &str, path: &str) -> Self {
        self.authority = Some(authority.into());
        self.path = Some(path.into());
        self
    }

    pub(crate) fn route(mut self, route: &Arc<str>) -> Self {
        self.route = Some(route.clone());
        self
    }

    pub(crate) fn cluster(mut self, cluster: &Arc<str>) -> Self {
        self.cluster = Some(cluster.clone());
        self
    }

    pub(crate) fn endpoint(mut self, endpoint: SocketAddr) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<BoxError>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> MeshErrorKind {
        self.kind
    }

    /// The request authority, when known.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The route that matched, when one did.
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The cluster picked, when one was.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The endpoint picked, when one was.
    pub fn endpoint_addr(&self) -> Option<SocketAddr> {
        self.endpoint
    }
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(a) = &self.authority {
            write!(f, ": host {a}")?;
        }
        if let Some(p) = &self.path {
            write!(f, " path {p}")?;
        }
        if let Some(r) = &self.route {
            write!(f, " route {r}")?;
        }
        if let Some(c) = &self.cluster {
            write!(f, " cluster {c}")?;
        }
        if let Some(e) = &self.endpoint {
            write!(f, " endpoint {e}")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MeshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail
            .as_deref()
            .map(|d| d as &(dyn std::error::Error + 'static))
    }
}
