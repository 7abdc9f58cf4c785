//! Fault injection (Envoy fault filter, `envoy.extensions.filters.http.fault.v3.HTTPFault`;
//! gRFC A33; XDS-SEMANTICS.md row 14): delay requests and fail them before they are sent, on
//! the share of requests the route's config (or the caller's `x-envoy-fault-*` headers) asks for.
//!
//! Sits right after routing ([`crate::stack`]): the config is the route's compiled
//! [`mesh_core::snapshot::RouteFaults`], found through the [`Routed`] extension — a route with
//! no fault pays one `Option` check. Per request that may get a fault: one random draw for the
//! delay and an independent one for the abort (A33, as Envoy); then `max_active_faults` is
//! checked with a lock-free gauge (over it, the request goes on without a fault); the delay is
//! a `tokio::time::sleep`; the abort fails the request with [`MeshErrorKind::FaultAbort`]
//! carrying the HTTP status or gRPC code, before anything is sent. Delay then abort, as both
//! Envoy and gRPC do. Injected delays and aborts are counted per route in
//! [`mesh_core::snapshot::FaultStats`] (`Snapshot::fault_stats(route)`) and per cluster in
//! [`mesh_core::snapshot::FaultCounts`] (`ClusterHandle::fault_counts`, which
//! [`crate::metrics::ClusterCounter::FAULT_DELAYS`] / `FAULT_ABORTS` report); an abort's error
//! also names route and cluster.
//!
//! Where the transports differ:
//!
//! | | HTTP ([`FaultLayer::new`], Envoy) | gRPC ([`FaultLayer::grpc`], gRFC A33) |
//! |---|---|---|
//! | request selection (`headers`, `upstream_cluster`, `downstream_nodes`) | applied | ignored (A33 defers them) |
//! | the delay and the route timeout | not counted: the fault filter runs before the router, whose timeout starts after it | counted against the call: a delay reaching the caller's deadline (`grpc-timeout`) or the route's `max_stream_duration` cap fails the call with `timeout` (DEADLINE_EXCEEDED) when it is reached; a shorter one is subtracted from both (the forwarded `grpc-timeout` is lowered) |
//! | the active-fault slot | held until the response headers arrive (Envoy holds it for the stream) | released when the delay ends or the abort is returned (A33) |
//!
//! Turning an abort into a response: [`crate::error_response`] answers HTTP callers with the
//! configured status (a gRPC-status abort as Envoy's trailers-only reply: 200 with
//! `grpc-status`); `mesh-grpc` maps `grpc_status` straight to the call's status and
//! `http_status` through gRPC's HTTP→gRPC table (A33).

mod future;
mod layer;

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::Request;
use mesh_core::snapshot::{FaultStatus, RequestView};
use tower::Service;

pub use future::ResponseFuture;
pub use layer::FaultLayer;

use crate::{route::Routed, timeout::parse_grpc_timeout, MeshError, MeshErrorKind};

/// How much of a gRPC call's time an injected delay used, attached to the forwarded request so
/// the gRPC stream-duration cap ([`crate::timeout::Which::StreamDuration`]) counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultDelayed(pub Duration);

/// The service [`FaultLayer`] produces.
#[derive(Clone, Debug)]
pub struct Fault<S> {
    inner: S,
    grpc: bool,
}

impl<S> Fault<S> {
    /// Wraps `inner`; `grpc` selects gRPC's semantics (see the module docs).
    pub fn new(inner: S, grpc: bool) -> Self {
        Fault { inner, grpc }
    }
}

impl<S, B> Service<Request<B>> for Fault<S>
where
    S: Service<Request<B>, Error = MeshError> + Clone,
{
    type Response = S::Response;
    type Error = MeshError;
    type Future = ResponseFuture<S, S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(routed) = req.extensions().get::<Routed>() else {
            return ResponseFuture::forward(self.inner.call(req), None);
        };
        let Some(faults) = &routed.policy.fault else {
            return ResponseFuture::forward(self.inner.call(req), None);
        };
        let cluster = routed.cluster.name();
        let Some(fault) = faults.for_cluster(cluster).cloned() else {
            return ResponseFuture::forward(self.inner.call(req), None);
        };
        if !self.grpc {
            let view = RequestView {
                authority: routed.authority.as_str(),
                path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                method: req.method(),
                scheme: req.uri().scheme_str(),
                headers: req.headers(),
            };
            if !fault.selects(&view, cluster) {
                return ResponseFuture::forward(self.inner.call(req), None);
            }
        }
        let mut draw = || rand::random_range(0..1_000_000u32);
        let delay = fault.delay(req.headers(), &mut draw);
        let abort = fault.abort(req.headers(), &mut draw);
        if delay.is_none() && abort.is_none() {
            return ResponseFuture::forward(self.inner.call(req), None);
        }
        let Some(active) = fault.try_activate() else {
            return ResponseFuture::forward(self.inner.call(req), None);
        };
        let error = |kind| {
            MeshError::new(kind)
                .at(routed.authority.as_str(), req.uri().path())
                .route(&routed.route)
                .cluster(&routed.cluster.cluster.name)
        };
        let Some(delay) = delay else {
            fault.stats().record_abort();
            routed.cluster.fault_counts().record_abort();
            // Abort, nothing else: the fault ends here (the guard drops with `active`).
            let status = abort.unwrap_or(FaultStatus::Http(503));
            return ResponseFuture::failed(error(MeshErrorKind::FaultAbort(status)).detail(
                format!("fault filter `{}` aborted the request", fault.filter()),
            ));
        };
        fault.stats().record_delay();
        routed.cluster.fault_counts().record_delay();
        // gRPC: the delay runs on the call's clock (A33).
        let limit = if self.grpc {
            grpc_limit(&req, routed)
        } else {
            None
        };
        let deadline = match limit {
            Some(limit) if limit <= delay => Some(error(MeshErrorKind::Timeout).detail(format!(
                "the call's deadline of {limit:?} was reached during an injected delay of \
                     {delay:?}"
            ))),
            _ => None,
        };
        let abort = abort.filter(|_| deadline.is_none()).map(|status| {
            fault.stats().record_abort();
            routed.cluster.fault_counts().record_abort();
            error(MeshErrorKind::FaultAbort(status)).detail(format!(
                "fault filter `{}` aborted the request after a delay of {delay:?}",
                fault.filter()
            ))
        });
        let sleep = tokio::time::sleep(match &deadline {
            Some(_) => limit.unwrap_or(delay),
            None => delay,
        });
        // Take the service that was polled ready; leave a clone for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::delayed(future::Delayed {
            sleep,
            inner,
            req,
            delay,
            outcome: deadline.or(abort),
            active,
            grpc: self.grpc,
        })
    }
}

/// The time a gRPC call has left, as the delay sees it: the caller's `grpc-timeout`, capped by
/// the route's `grpc_timeout_header_max` (when present and nonzero) or `max_stream_duration`
/// (gRFC A31). `None` = unbounded.
fn grpc_limit<B>(req: &Request<B>, routed: &Routed) -> Option<Duration> {
    let cap = routed.policy.grpc_cap.as_ref().map(|c| c.after);
    let caller = req
        .headers()
        .get("grpc-timeout")
        .and_then(parse_grpc_timeout);
    match (caller, cap) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
