//! Retries (Envoy router `retry_policy`; gRFC A44; XDS-SEMANTICS.md rows 12, 13, 16), modelled
//! on tower's `retry/` and `retry/budget/`.
//!
//! Per request, the route (and so the cluster) is decided once by [`crate::RouteLayer`]; each
//! attempt goes through the layers inside this one — per-try timeout, then the endpoint pick —
//! so a retry picks again, in the same cluster (gRFC A31, Envoy).
//!
//! - **When**: `retry_on` as Envoy evaluates it: `5xx` (any 5xx, reset, connect failure, refused
//!   stream, per-try timeout), `gateway-error` (502/503/504 and the same local failures),
//!   `reset`, `connect-failure`, `refused-stream` (HTTP/2 REFUSED_STREAM), `retriable-4xx`
//!   (409), `retriable-status-codes`, `retriable-headers`, `envoy-ratelimited`, and the gRPC
//!   conditions `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
//!   `unavailable` — read from `grpc-status` in the *response headers* only (trailers-only
//!   responses), as Envoy does; gRPC itself retries until the call commits (§4).
//! - **How many**: `num_retries` (default 1). Envoy sets no cap; in gRPC mode
//!   ([`RetryLayer::grpc`], which [`crate::MeshStackLayer::grpc`] uses) attempts are capped at 5
//!   as gRPC's `maxAttempts` is (gRFC A6/A44).
//! - **Backoff**: for HTTP, Envoy's full jitter — before retry N, a uniform draw in
//!   `[0, (2^N − 1) · base)`, capped at `max` (defaults 25 ms / 250 ms). In gRPC mode, gRFC A6
//!   as revised in 2024: `min(base · 2^(N−1), max) · U(0.8, 1.2)`, and server pushback: a
//!   `grpc-retry-pushback-ms` response header delays the next retry by exactly that many
//!   milliseconds (restarting the backoff sequence); a negative or unparseable value means do
//!   not retry. Envoy's rate-limited backoff (`rate_limited_retry_back_off`) is not implemented.
//! - **Where**: with the `previous_hosts` predicate, a retry avoids endpoints earlier attempts
//!   used, redrawing up to `host_selection_retry_max_attempts` times.
//! - **Budget**: before each retry the cluster's limit is checked against its live counters
//!   (`mesh_core::snapshot::RetryCounters`, kept across snapshot rebuilds): with a
//!   `retry_budget`, concurrent retries ≤ max(`budget_percent` × active requests,
//!   `min_retry_concurrency`); without, ≤ `max_retries` (default 3). Denied, the last attempt's
//!   response stands (as Envoy's `upstream_rq_retry_overflow`); a failure becomes a
//!   `retry_budget_exhausted` (or `overflow` with `limit max_retries`) error wrapping it.
//! - **Body**: buffered up to the layer's replay cap (default 64 KiB, [`RetryLayer::replay_cap`])
//!   before the first attempt. A larger body is sent once, streamed; if that attempt fails in a
//!   way the policy would retry, the error says `not retried: body_over_replay_cap`.
//! - **Not retried**: failures the mesh makes before sending (no route, no healthy endpoint) and
//!   the route timeout, which covers every attempt ([`crate::timeout`]).
//!
//! Routes without a retry policy take a pass-through path: no buffering, no allocation.

mod body;
mod error;
mod future;
mod layer;
mod policy;

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use mesh_core::model::RoutingPriority;
use tower::Service;

pub use body::ReplayBody;
pub use error::NotRetried;
pub use future::ResponseFuture;
pub use layer::RetryLayer;

use crate::{
    error::{BoxError, OverflowLimit},
    route::Routed,
    MeshError, MeshErrorKind,
};

/// The service [`RetryLayer`] produces.
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    replay_cap: usize,
    grpc: bool,
}

impl<S> Retry<S> {
    /// Wraps `inner`; request bodies up to `replay_cap` bytes can be retried.
    pub fn new(inner: S, replay_cap: usize) -> Self {
        Retry {
            inner,
            replay_cap,
            grpc: false,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = MeshError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = MeshError;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(routed) = req.extensions().get::<Routed>() else {
            return ResponseFuture::passthrough(self.inner.call(req.map(ReplayBody::stream)), None);
        };
        // The cluster's `max_requests` breaker: over it, fail fast, not retried (Envoy's
        // overflow; gRFC A32's UNAVAILABLE), and counted.
        let priority = breaker_priority(routed, self.grpc);
        let limits = routed.cluster.cluster.retry_limits_for(priority);
        let Some(guard) = routed
            .cluster
            .retry_counters_for(priority)
            .try_request(limits)
        else {
            let error = MeshError::new(MeshErrorKind::Overflow(OverflowLimit::MaxRequests))
                .at(routed.authority.as_str(), req.uri().path())
                .route(&routed.route)
                .cluster(&routed.cluster.cluster.name)
                .detail(format!(
                    "{} requests already in flight",
                    limits.max_requests
                ));
            return ResponseFuture::failed(error);
        };
        let retries = routed
            .policy
            .retry
            .as_ref()
            .is_some_and(|r| r.policy.num_retries > 0);
        if !retries {
            let fut = self.inner.call(req.map(ReplayBody::stream));
            return ResponseFuture::passthrough(fut, Some(guard));
        }
        let routed = routed.clone();
        // The polled-ready service makes the first attempt; a clone stays behind.
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::retrying(Box::pin(future::run(
            svc,
            req,
            routed,
            self.replay_cap,
            self.grpc,
            guard,
        )))
    }
}

/// The circuit-breaker priority a request counts under: the route's `priority` (Envoy), or
/// DEFAULT for gRPC, which ignores `RouteAction.priority` and reads only the DEFAULT thresholds
/// (gRFC A32).
pub(crate) fn breaker_priority(routed: &Routed, grpc: bool) -> RoutingPriority {
    if grpc {
        RoutingPriority::Default
    } else {
        routed.policy.priority
    }
}

#[cfg(test)]
mod tests;
