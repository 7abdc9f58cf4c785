//! The full client stack: route once, then — per request — fault injection, the route timeout,
//! the retry loop, and per attempt the per-try timeout and the endpoint pick:
//!
//! ```text
//! RouteService → IdleTimeout → Fault → Timeout(route) → Retry → Timeout(per try) → PickService → client
//! ```
//!
//! The idle timeout ([`crate::timeout::idle`], Envoy's stream idle timeout, HTTP only) is
//! outermost under routing, as Envoy's stream timer covers the whole stream: the response
//! body comes back wrapped in an [`crate::timeout::IdleBody`] (re-armed per frame), so the stack's response is
//! `Response<IdleBody<_>>` whose body errors are [`crate::MeshError`]s.
//!
//! The fault layer sits before the route timeout as Envoy's fault filter sits before the router:
//! an injected delay does not count against `RouteAction.timeout`. In gRPC mode it counts
//! against the call's deadline instead (gRFC A33; see [`crate::fault`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let mesh = mesh_core::mesh::Mesh::from_env()?;
//! let client = ServiceBuilder::new()
//!     .layer(mesh_tower::error_response::ErrorResponseLayer::new()) // optional
//!     .layer(mesh_tower::MeshStackLayer::new(mesh))
//!     .service(mesh_tower::client::http1());
//! let req = http::Request::get("http://reviews:9080/ratings")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let resp = client.oneshot(req).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use mesh_core::mesh::Mesh;
use tower::Layer;

use crate::{
    endpoint::{PickLayer, PickService},
    fault::{Fault, FaultLayer},
    retry::{Retry, RetryLayer},
    route::{RouteLayer, RouteService},
    timeout::{IdleTimeout, IdleTimeoutLayer, Timeout, TimeoutLayer, Which},
};

/// The service [`MeshStackLayer`] produces over a client `S` (which receives
/// `Request<ReplayBody<B>>`).
pub type MeshStack<S> = RouteService<IdleTimeout<Fault<Timeout<Retry<Timeout<PickService<S>>>>>>>;

/// Routing with the route's timeouts and retries applied (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct MeshStackLayer {
    route: RouteLayer,
    retry: RetryLayer,
    grpc: bool,
}

impl MeshStackLayer {
    /// The stack over `mesh`, default warm-up wait (20 s) and replay cap (64 KiB).
    pub fn new(mesh: Mesh) -> Self {
        MeshStackLayer {
            route: RouteLayer::new(mesh),
            retry: RetryLayer::new(),
            grpc: false,
        }
    }

    /// gRPC's timeout semantics instead of Envoy's (XDS-SEMANTICS.md row 11, gRFC A31/A44):
    /// the call is capped by `grpc_timeout_header_max` / `max_stream_duration` instead of
    /// `RouteAction.timeout`, and `per_try_timeout` is ignored. Retry conditions are read from
    /// the response headers (trailers-only responses), as Envoy does; retries follow gRFC A6
    /// (at most 5 attempts, A6 backoff, `grpc-retry-pushback-ms`). Fault injection follows gRFC A33
    /// (see [`crate::fault`]). gRPC has no stream idle timeout (gRFC A31), so none applies.
    pub fn grpc(mut self) -> Self {
        self.grpc = true;
        self.retry = self.retry.grpc();
        self
    }

    /// The certificate provider instances clusters with an `UpstreamTlsContext` are resolved
    /// against (gRFC A29; usually `CertificateProviders::default_identity(identity)`, what
    /// istiod's `ISTIO_MUTUAL` names). See [`crate::tls::upstream`].
    pub fn tls(mut self, providers: crate::tls::CertificateProviders) -> Self {
        self.route = self.route.tls(providers);
        self
    }

    /// Sets how long the first request to a new target waits for the target to warm.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.route = self.route.ready_timeout(timeout);
        self
    }

    /// Sets the largest request body buffered so it can be retried.
    pub fn replay_cap(mut self, bytes: usize) -> Self {
        self.retry = self.retry.replay_cap(bytes);
        self
    }
}

impl<S> Layer<S> for MeshStackLayer {
    type Service = MeshStack<S>;

    fn layer(&self, inner: S) -> MeshStack<S> {
        let (fault, idle) = match self.grpc {
            false => (FaultLayer::new(), IdleTimeoutLayer::new()),
            true => (FaultLayer::grpc(), IdleTimeoutLayer::disabled()),
        };
        let (call, per_try) = match self.grpc {
            false => (TimeoutLayer::route(), TimeoutLayer::per_try()),
            true => (
                TimeoutLayer::new(Which::StreamDuration),
                TimeoutLayer::new(Which::Off),
            ),
        };
        let pick = match self.grpc {
            false => PickLayer::new(),
            true => PickLayer::grpc(),
        };
        let attempt = per_try.layer(pick.layer(inner));
        self.route
            .layer(idle.layer(fault.layer(call.layer(self.retry.layer(attempt)))))
    }
}
