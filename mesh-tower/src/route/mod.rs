//! Request routing: authority → target snapshot → virtual host → route → cluster → endpoint.
//!
//! The fast path (target already warm) loads the target's `Arc<Snapshot>` from an `ArcSwap`,
//! walks the precompiled matchers and picks an endpoint with atomics: no lock, no await, no
//! config parsing. The first request to a new authority subscribes the target and waits (up to
//! the layer's `ready_timeout`) for it to warm; later requests take the fast path.
//!
//! The target name is the request authority exactly as written (`reviews:9080`), as gRPC uses
//! the `xds:///` target authority as the listener name (gRFC A27). The request is forwarded with
//! its URI rewritten to the endpoint (`http://10.0.0.7:9080/path`) and a `Host` header carrying
//! the original authority, so pooling is per endpoint and the backend still sees the logical
//! host. The decision travels on as a [`RouteInfo`] request extension for inner layers.
//!
//! [`MeshLayer`] does all of this in one step (route, pick, send: the bare spine). For
//! timeouts and retries the two halves are separate layers, so the endpoint pick happens once
//! per attempt inside the retry loop while the route (and its cluster) is decided once per
//! request, as Envoy's router and gRPC's config selector do (gRFC A31): [`RouteLayer`] decides
//! and attaches a [`Routed`] extension, [`crate::endpoint::PickLayer`] picks and rewrites. See
//! [`crate::stack`] for the assembled stack.

mod future;
mod layer;
mod split;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{
    header::HOST,
    uri::{Authority, Scheme},
    HeaderName, HeaderValue, Request, Response, Uri,
};
use mesh_core::{
    mesh::{Mesh, Target, TargetState},
    snapshot::{ClusterHandle, CompiledPolicy, PickedEndpoint, RequestView, RouteError, Snapshot},
};
use tower::Service;

pub use future::ResponseFuture;
pub use layer::MeshLayer;
pub use split::{RouteLayer, RouteService};

use crate::{
    attempt::ReportRoute,
    error::BoxError,
    tls::{upstream, CertificateProviders, ClusterTls},
    MeshError, MeshErrorKind,
};

/// The routing decision, attached to the forwarded request's extensions (and, when
/// [`crate::metrics`] asks for it, to the response's).
#[derive(Clone, Debug)]
pub struct RouteInfo {
    /// The target (listener) name.
    pub target: Arc<str>,
    /// The route that matched.
    pub route: Arc<str>,
    /// The cluster picked.
    pub cluster: Arc<str>,
    /// The endpoint picked.
    pub endpoint: std::net::SocketAddr,
    /// The route's compiled timeouts and retry policy.
    pub policy: Arc<CompiledPolicy>,
    /// The cluster's TLS client (`None`: plaintext); the clients in [`crate::client`] connect
    /// with it and key their connections on it.
    pub tls: Option<Arc<ClusterTls>>,
}

/// The route decision for one request, made once (before any attempt): attached as a request
/// extension by [`RouteLayer`] and read by the timeout, retry and pick layers.
#[derive(Clone, Debug)]
pub struct Routed {
    /// The target (listener) name.
    pub target: Arc<str>,
    /// The route that matched.
    pub route: Arc<str>,
    /// The cluster picked for the whole request (retries stay on it, gRFC A31).
    pub cluster: Arc<ClusterHandle>,
    /// The route's compiled timeouts and retry policy.
    pub policy: Arc<CompiledPolicy>,
    /// The request's authority, as addressed.
    pub authority: Authority,
    /// The request hash from the route's hash policies, computed only when the cluster
    /// balances by hash (RING_HASH, MAGLEV); `None` = none (the pick then uses a random hash,
    /// gRFC A42). Every attempt of the request picks with the same hash.
    pub hash: Option<u64>,
    /// The cluster's TLS client (`None`: plaintext), see [`crate::tls::upstream`].
    pub tls: Option<Arc<ClusterTls>>,
}

/// The source IP a request hashes on for `connection_properties.source_ip` hash policies,
/// attached as a request extension by the application.
///
/// Envoy hashes the downstream peer's address. A client picking an upstream endpoint cannot
/// know its own source address before it connects (gRFC A42, where gRPC yields no hash), so
/// the mesh only uses what it is given: an application that forwards an inbound request (a
/// gateway, a server calling on behalf of its caller) inserts the caller's address, e.g. from
/// hyper-util's or axum's `ConnectInfo` on its server side. Without this extension the policy
/// yields no hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceIp(pub std::net::IpAddr);

/// The service [`MeshLayer`] produces.
#[derive(Clone, Debug)]
pub struct MeshService<S> {
    mesh: Mesh,
    inner: S,
    ready_timeout: Duration,
    providers: CertificateProviders,
}

impl<S> MeshService<S> {
    /// Wraps `inner`, which receives requests addressed to the picked endpoint.
    pub fn new(mesh: Mesh, inner: S, ready_timeout: Duration) -> Self {
        MeshService {
            mesh,
            inner,
            ready_timeout,
            providers: CertificateProviders::default(),
        }
    }

    /// The certificate provider instances TLS clusters are resolved against (see
    /// [`crate::tls::upstream`]); none by default.
    pub fn with_tls(mut self, providers: CertificateProviders) -> Self {
        self.providers = providers;
        self
    }
}

impl<S, B, RB> Service<Request<B>> for MeshService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = MeshError;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| MeshError::new(MeshErrorKind::Upstream).detail(e))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(authority) = authority_of(&req) else {
            return ResponseFuture::failed(MeshError::missing_authority());
        };
        let report_route = req.extensions().get::<ReportRoute>().is_some();
        // Fast path: the target is known and warm.
        if let Some(target) = self.mesh.lookup(authority.as_str()) {
            if let Some(snapshot) = &*target.snapshot() {
                return match dispatch(snapshot, req, &authority, &self.providers) {
                    Ok((req, picked, info)) => {
                        let fut = self.inner.call(req);
                        ResponseFuture::sent(fut, picked, info, authority, report_route)
                    }
                    Err(e) => ResponseFuture::failed(e),
                };
            }
        }
        // Slow path, once per target: subscribe and wait for it to warm. Take the service that
        // was polled ready and leave a fresh clone behind (tower's usual clone-and-swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mesh = self.mesh.clone();
        let timeout = self.ready_timeout;
        let providers = self.providers.clone();
        ResponseFuture::waiting(Box::pin(async move {
            let target = mesh.target(authority.as_str());
            let snapshot =
                wait_ready(&target, timeout, authority.as_str(), req.uri().path()).await?;
            let (req, picked, info) = dispatch(&snapshot, req, &authority, &providers)?;
            let endpoint = info.endpoint;
            let result = inner.call(req).await;
            drop(picked);
            match result {
                Ok(mut resp) => {
                    if let Some(rw) = &info.policy.rewrite {
                        rw.response_headers.apply(resp.headers_mut());
                    }
                    if report_route {
                        resp.extensions_mut().insert(info);
                    }
                    Ok(resp)
                }
                Err(e) => Err(upstream_error(e.into(), &info, endpoint, &authority)),
            }
        }))
    }
}

pub(crate) async fn wait_ready(
    target: &Target,
    timeout: Duration,
    authority: &str,
    path: &str,
) -> Result<Arc<Snapshot>, MeshError> {
    match tokio::time::timeout(timeout, target.ready()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(MeshError::new(MeshErrorKind::NoTarget)
            .at(authority, path)
            .detail(e)),
        Err(_) => {
            // Say what never arrived: the listener, or which route, cluster or endpoints.
            let waiting = match &*target.watch().borrow() {
                TargetState::Waiting(m) if !m.0.is_empty() => format!("; still waiting for {m}"),
                _ => String::new(),
            };
            Err(MeshError::new(MeshErrorKind::NoTarget)
                .at(authority, path)
                .detail(format!(
                    "target `{}` not ready after {timeout:?}{waiting}",
                    target.name()
                )))
        }
    }
}

/// Routes, picks, and rewrites the request for the picked endpoint.
fn dispatch<B>(
    snapshot: &Snapshot,
    mut req: Request<B>,
    authority: &Authority,
    providers: &CertificateProviders,
) -> Result<(Request<B>, PickedEndpoint, RouteInfo), MeshError> {
    let routed = decide(snapshot, &mut req, authority, providers)?;
    let (picked, info) = pick_and_rewrite(&routed, &mut req, &[], 1)?;
    req.extensions_mut().insert(info.clone());
    Ok((req, picked, info))
}

/// Routes a request (virtual host, route, weighted cluster), resolves the cluster's transport
/// against `providers`, and sets its `Host` header when it has none. The URI is left as
/// addressed.
pub(crate) fn decide<B>(
    snapshot: &Snapshot,
    req: &mut Request<B>,
    authority: &Authority,
    providers: &CertificateProviders,
) -> Result<Routed, MeshError> {
    let host = authority.as_str();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let view = RequestView {
        authority: host,
        path_and_query,
        method: req.method(),
        scheme: req.uri().scheme_str(),
        headers: req.headers(),
    };
    let decision = snapshot.route(&view).map_err(|e| {
        let err = |kind| MeshError::new(kind).at(host, path_and_query);
        match &e {
            RouteError::UnsupportedAction { route, .. } => {
                err(MeshErrorKind::UnsupportedRoute).route(route)
            }
            RouteError::ClusterNotFound { route, cluster } => err(MeshErrorKind::ClusterNotFound)
                .route(route)
                .cluster(cluster),
            RouteError::NoVirtualHost { .. } | RouteError::NoRoute { .. } => {
                err(MeshErrorKind::NoRoute)
            }
        }
        .detail(e)
    })?;
    let hash = if decision.cluster.uses_hash() {
        let source_ip = req.extensions().get::<SourceIp>().map(|s| s.0);
        decision.route.request_hash(&view, source_ip)
    } else {
        None
    };
    let tls = upstream::resolve(decision.cluster, providers).map_err(|(reason, e)| {
        MeshError::new(MeshErrorKind::Tls(reason))
            .at(host, path_and_query)
            .route(decision.route.name())
            .cluster(&decision.cluster.cluster.name)
            .detail(e)
    })?;
    let routed = Routed {
        target: snapshot.target().clone(),
        route: decision.route.name().clone(),
        cluster: decision.cluster.clone(),
        policy: decision.route.policy().clone(),
        authority: authority.clone(),
        hash,
        tls,
    };
    if !req.headers().contains_key(HOST) {
        let value = match snapshot.host_header() {
            Some(v) if host == &**snapshot.target() => Some(v.clone()),
            _ => HeaderValue::from_str(host).ok(),
        };
        if let Some(v) = value {
            req.headers_mut().insert(HOST, v);
        }
    }
    if let Some(rw) = routed.policy.rewrite.as_deref() {
        rewrite_request(rw, req);
    }
    Ok(routed)
}

/// Applies a route's request header mutations and path / host rewrites, once per request
/// (before any attempt), as Envoy's router does; the originals go to `x-envoy-original-path`
/// and `x-envoy-original-host`, as Envoy sets them unless `suppress_envoy_headers`.
fn rewrite_request<B>(rw: &mesh_core::model::RequestRewrite, req: &mut Request<B>) {
    rw.request_headers.apply(req.headers_mut());
    if let Some(host) = &rw.host {
        if let Some(old) = req.headers_mut().insert(HOST, host.clone()) {
            req.headers_mut()
                .insert(HeaderName::from_static("x-envoy-original-host"), old);
        }
    }
    let original = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(new) = rw.rewrite_path(original) else {
        return;
    };
    let Ok(new) = http::uri::PathAndQuery::try_from(new) else {
        return; // a substitution that is no valid path: forward unchanged
    };
    if let Ok(old) = HeaderValue::from_str(req.uri().path()) {
        req.headers_mut()
            .insert(HeaderName::from_static("x-envoy-original-path"), old);
    }
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(new);
    *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
}

/// Picks an endpoint of the routed cluster and points the request's URI at it. A pick landing
/// on an endpoint in `avoid` is redrawn, at most `tries` picks in all (Envoy's
/// `host_selection_retry_max_attempts`); the last draw stands.
pub(crate) fn pick_and_rewrite<B>(
    routed: &Routed,
    req: &mut Request<B>,
    avoid: &[std::net::SocketAddr],
    tries: u32,
) -> Result<(PickedEndpoint, RouteInfo), MeshError> {
    let cluster = &routed.cluster;
    // EDS drop_overloads, once per request (Envoy drops in the router, before any attempt;
    // gRFC A27 fails a dropped call without retrying it), each category with its own draw.
    let first_attempt = req
        .extensions()
        .get::<crate::attempt::Attempts>()
        .is_none_or(|a| a.count() == 0);
    if let Some(cla) = cluster.assignment.as_deref().filter(|_| first_attempt) {
        for d in cla.drop_overloads.iter() {
            if d.per_million > 0 && rand::random_range(0..1_000_000u32) < d.per_million {
                cluster.drop_counts().record();
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                return Err(MeshError::new(MeshErrorKind::DropOverload)
                    .at(routed.authority.as_str(), path)
                    .route(&routed.route)
                    .cluster(&cluster.cluster.name)
                    .detail(format!(
                        "dropped by drop_overloads category `{}` ({} ppm)",
                        d.category, d.per_million
                    )));
            }
        }
    }
    let mut picked = None;
    for attempt in 0..tries.max(1) {
        let Some(p) = cluster.pick_with_hash_attempt(routed.hash, attempt) else {
            break;
        };
        let ok = !avoid.contains(&p.address());
        picked = Some(p);
        if ok {
            break;
        }
    }
    let Some(picked) = picked else {
        let b = cluster.balancer();
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return Err(MeshError::new(MeshErrorKind::NoHealthyEndpoint)
            .at(routed.authority.as_str(), path)
            .route(&routed.route)
            .cluster(&cluster.cluster.name)
            .detail(format!("0 of {} endpoints routable", b.total_endpoints())));
    };
    let info = RouteInfo {
        target: routed.target.clone(),
        route: routed.route.clone(),
        cluster: cluster.cluster.name.clone(),
        endpoint: picked.address(),
        policy: routed.policy.clone(),
        tls: routed.tls.clone(),
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(picked.authority().clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
    Ok((picked, info))
}

pub(crate) fn upstream_error(
    e: BoxError,
    info: &RouteInfo,
    endpoint: std::net::SocketAddr,
    authority: &Authority,
) -> MeshError {
    let connect = e
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect())
        || e.downcast_ref::<crate::client::H2Error>()
            .is_some_and(|e| e.is_connect());
    let tls = upstream::reason_in(&*e).map(|(r, tls)| (r, tls.to_string()));
    let (kind, e): (_, BoxError) = match tls {
        Some((reason, message)) => (
            MeshErrorKind::Tls(reason),
            Box::new(upstream::TlsFailure::new(message, e)),
        ),
        None if connect => (MeshErrorKind::Connect, e),
        None => (MeshErrorKind::Upstream, e),
    };
    MeshError::new(kind)
        .at(authority.as_str(), "")
        .route(&info.route)
        .cluster(&info.cluster)
        .endpoint(endpoint)
        .attempts(1)
        .detail(e)
}

/// The request's authority: from the absolute URI, else the `Host` header.
pub(crate) fn authority_of<B>(req: &Request<B>) -> Option<Authority> {
    if let Some(a) = req.uri().authority() {
        return Some(a.clone());
    }
    let host = req.headers().get(HOST)?.to_str().ok()?;
    Authority::try_from(host).ok()
}

#[cfg(test)]
mod tests;
