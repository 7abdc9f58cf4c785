use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use std::sync::Arc;

use http::{uri::Authority, Response};
use mesh_core::snapshot::{ClusterHandle, Outcome, PickedEndpoint};
use pin_project_lite::pin_project;

use crate::{
    attempt::AnsweredBy,
    error::BoxError,
    route::{upstream_error, RouteInfo},
    MeshError, MeshErrorKind,
};

pin_project! {
    /// Response future of [`super::PickService`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum PickFuture<F> {
        /// Sent: the inner future, and the endpoint held until it completes.
        Sent {
            #[pin]
            fut: F,
            picked: Option<PickedEndpoint>,
            info: RouteInfo,
            authority: Authority,
            report: bool,
            report_route: bool,
            // Set when the cluster has outlier detection: the attempt's outcome is reported.
            outlier: Option<Arc<ClusterHandle>>,
        },
        /// Failed before anything was sent.
        Failed { error: Option<MeshError> },
    }
}

impl<F> PickFuture<F> {
    pub(super) fn sent(
        fut: F,
        picked: PickedEndpoint,
        info: RouteInfo,
        authority: Authority,
        (report, report_route): (bool, bool),
        outlier: Option<Arc<ClusterHandle>>,
    ) -> Self {
        PickFuture::Sent {
            fut,
            picked: Some(picked),
            info,
            authority,
            report,
            report_route,
            outlier,
        }
    }

    pub(super) fn failed(error: MeshError) -> Self {
        PickFuture::Failed { error: Some(error) }
    }
}

impl<F, RB, E> Future for PickFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Sent {
                fut,
                picked,
                info,
                authority,
                report,
                report_route,
                outlier,
            } => {
                let result = ready!(fut.poll(cx));
                let picked = picked.take();
                if let (Some(p), Some(detector)) =
                    (&picked, outlier.as_ref().and_then(|c| c.outlier()))
                {
                    // Envoy's outlier classes: any response is an external outcome (5xx
                    // counts), no response (connect failure, reset) is a local-origin failure.
                    let outcome = match &result {
                        Ok(resp) => Outcome::Status(resp.status().as_u16()),
                        Err(_) => Outcome::LocalOriginFailure,
                    };
                    detector.report(p.outlier(), outcome);
                }
                let endpoint = picked.map(|p| p.address()).unwrap_or(info.endpoint);
                Poll::Ready(match result {
                    Ok(mut resp) => {
                        if *report {
                            resp.extensions_mut().insert(AnsweredBy(endpoint));
                        }
                        if *report_route {
                            resp.extensions_mut().insert(info.clone());
                        }
                        Ok(resp)
                    }
                    Err(e) => Err(upstream_error(e.into(), info, endpoint, authority)),
                })
            }
            Proj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                MeshError::new(MeshErrorKind::Upstream).detail("polled after completion")
            }))),
        }
    }
}
