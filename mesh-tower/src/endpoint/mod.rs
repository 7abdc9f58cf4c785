//! The per-attempt half of routing: pick an endpoint of the cluster [`crate::RouteLayer`]
//! chose, point the request's URI at it, send it, and name the endpoint in any failure.
//!
//! It runs once per attempt, inside the retry loop, so a retry picks again (gRFC A31 and Envoy:
//! the cluster is fixed per request, the endpoint per attempt). When the retry policy has
//! Envoy's `previous_hosts` predicate, the retry layer passes the endpoints already tried and
//! the pick is redrawn up to `host_selection_retry_max_attempts` times to avoid them.
//!
//! When the cluster has outlier detection, each attempt's outcome is reported to the picked
//! endpoint's counters ([`mesh_core::snapshot::outlier`]): the response status, or a
//! local-origin failure when no response came (connect failure, reset) or when a route or
//! per-try timeout cut the attempt short (Envoy's `LocalOriginTimeout`); an attempt the caller
//! abandoned is not reported.
//!
//! Each attempt also takes one of the cluster's connection slots, waiting as a pending request
//! when all are taken, or failing fast with `overflow` (`max_pending_requests`, or
//! `max_connections` when nothing may queue); see [`mesh_core::snapshot::pool`] for how these
//! Envoy limits map onto the mesh's clients.

mod future;
mod layer;

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

pub use future::PickFuture;
pub use layer::PickLayer;

use mesh_core::snapshot::{Admission, PoolSlot};

use crate::{
    attempt::{Attempts, AvoidHosts, ReportRoute},
    error::BoxError,
    route::{pick_and_rewrite, Routed},
    MeshError, MeshErrorKind, OverflowLimit,
};
use future::Held;

/// The service [`PickLayer`] produces.
#[derive(Clone, Debug)]
pub struct PickService<S> {
    inner: S,
    grpc: bool,
}

impl<S> PickService<S> {
    /// Wraps `inner`, which receives requests addressed to the picked endpoint (Envoy's
    /// semantics; [`PickLayer::grpc`] for gRPC's).
    pub fn new(inner: S) -> Self {
        PickService { inner, grpc: false }
    }
}

impl<S, B, RB> Service<Request<B>> for PickService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = MeshError;
    type Future = PickFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| MeshError::new(MeshErrorKind::Upstream).detail(e))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(routed) = req.extensions_mut().remove::<Routed>() else {
            return PickFuture::failed(
                MeshError::new(MeshErrorKind::NoRoute)
                    .detail("request carries no route decision (RouteLayer missing)"),
            );
        };
        // The route's priority picks the thresholds and the counters (Envoy); gRPC reads
        // DEFAULT only (A32), the same choice the retry layer makes. gRPC has no pool breakers
        // of its own; the mesh applies Envoy's to both transports.
        let priority = crate::retry::breaker_priority(&routed, self.grpc);
        let limits = routed
            .cluster
            .cluster
            .connection_limits
            .for_priority(priority);
        let overflow = |limit| {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            MeshError::new(MeshErrorKind::Overflow(limit))
                .at(routed.authority.as_str(), path)
                .route(&routed.route)
                .cluster(&routed.cluster.cluster.name)
        };
        match routed.cluster.pool_for(priority).admit(&limits) {
            Admission::Ready(slot) => dispatch(&mut self.inner, routed, req, slot),
            Admission::PendingOverflow => {
                PickFuture::failed(overflow(OverflowLimit::MaxPendingRequests))
            }
            Admission::ConnectionOverflow => {
                PickFuture::failed(overflow(OverflowLimit::MaxConnections))
            }
            Admission::Queued(pending) => {
                // The service polled ready goes with the request (tower's clone-and-swap).
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                // Resolves to the next state of the attempt's future, which `PickFuture` polls.
                #[allow(clippy::async_yields_async)]
                let wait = Box::pin(async move {
                    let slot = pending.wait().await;
                    // Picked after the wait, so the endpoint reflects the state by then.
                    dispatch(&mut ready, routed, req, slot)
                });
                PickFuture::queued(wait)
            }
        }
    }
}

/// Picks the endpoint, points the request at it and hands it to `inner`, holding `slot`.
fn dispatch<S, B, RB>(
    inner: &mut S,
    routed: Routed,
    mut req: Request<B>,
    slot: PoolSlot,
) -> PickFuture<S::Future>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    // An `Arc` clone, not a copy of the list.
    let avoid = req.extensions().get::<AvoidHosts>().cloned();
    let report = avoid.is_some();
    let report_route = req.extensions().get::<ReportRoute>().is_some();
    let (hosts, tries) = avoid
        .as_ref()
        .map_or((&[][..], 1), |a| (&a.hosts[..], a.tries));
    match pick_and_rewrite(&routed, &mut req, hosts, tries) {
        Ok((picked, info)) => {
            if let Some(a) = req.extensions().get::<Attempts>() {
                a.record(info.endpoint);
            }
            req.extensions_mut().insert(info.clone());
            let outlier = routed
                .cluster
                .outlier()
                .is_some()
                .then(|| routed.cluster.clone());
            let timeouts = outlier.as_ref().and_then(|_| {
                let a = req.extensions().get::<Attempts>()?;
                Some((a.clone(), a.timeouts()))
            });
            let held = Held {
                picked,
                info,
                authority: routed.authority,
                report,
                report_route,
                outlier,
                _slot: slot,
                timeouts,
                finished: false,
            };
            PickFuture::sent(inner.call(req), held)
        }
        Err(e) => PickFuture::failed(e),
    }
}

#[cfg(test)]
mod tests;
