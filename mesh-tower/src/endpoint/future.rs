use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{uri::Authority, Response};
use mesh_core::snapshot::PickedEndpoint;
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
    ) -> Self {
        PickFuture::Sent {
            fut,
            picked: Some(picked),
            info,
            authority,
            report,
            report_route,
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
            } => {
                let result = ready!(fut.poll(cx));
                let endpoint = picked.take().map(|p| p.address()).unwrap_or(info.endpoint);
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
