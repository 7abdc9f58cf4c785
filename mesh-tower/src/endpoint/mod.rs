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
//! local-origin failure when no response came (connect failure, reset). An attempt cut short by
//! the per-try timeout is dropped, not completed, and is not reported.

mod future;
mod layer;

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

pub use future::PickFuture;
pub use layer::PickLayer;

use crate::{
    attempt::{Attempts, AvoidHosts, ReportRoute},
    error::BoxError,
    route::{pick_and_rewrite, Routed},
    MeshError, MeshErrorKind,
};

/// The service [`PickLayer`] produces.
#[derive(Clone, Debug)]
pub struct PickService<S> {
    inner: S,
}

impl<S> PickService<S> {
    /// Wraps `inner`, which receives requests addressed to the picked endpoint.
    pub fn new(inner: S) -> Self {
        PickService { inner }
    }
}

impl<S, B, RB> Service<Request<B>> for PickService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
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
                let fut = self.inner.call(req);
                PickFuture::sent(
                    fut,
                    picked,
                    info,
                    routed.authority,
                    (report, report_route),
                    outlier,
                )
            }
            Err(e) => PickFuture::failed(e),
        }
    }
}
