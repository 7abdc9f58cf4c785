use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{uri::Authority, Response};
use mesh_core::snapshot::PickedEndpoint;
use pin_project_lite::pin_project;

use super::{upstream_error, RouteInfo};
use crate::{error::BoxError, MeshError};

type Waiting<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, MeshError>> + Send>>;

pin_project! {
    /// Response future of [`super::MeshService`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, RB> {
        /// Sent on the fast path: the inner future, and the endpoint held until it completes.
        Sent {
            #[pin]
            fut: F,
            picked: Option<PickedEndpoint>,
            info: RouteInfo,
            authority: Authority,
            report_route: bool,
        },
        /// The first request to a target, waiting for it to warm.
        Waiting {
            fut: Waiting<RB>,
        },
        /// Failed before anything was sent.
        Failed {
            error: Option<MeshError>,
        },
    }
}

impl<F, RB> ResponseFuture<F, RB> {
    pub(super) fn sent(
        fut: F,
        picked: PickedEndpoint,
        info: RouteInfo,
        authority: Authority,
        report_route: bool,
    ) -> Self {
        ResponseFuture::Sent {
            fut,
            picked: Some(picked),
            info,
            authority,
            report_route,
        }
    }

    pub(super) fn waiting(fut: Waiting<RB>) -> Self {
        ResponseFuture::Waiting { fut }
    }

    pub(super) fn failed(error: MeshError) -> Self {
        ResponseFuture::Failed { error: Some(error) }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
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
                report_route,
            } => {
                let result = ready!(fut.poll(cx));
                // Response headers are in (or the attempt failed): the request no longer counts
                // as outstanding for least-request balancing.
                let endpoint = picked.take().map(|p| p.address()).unwrap_or(info.endpoint);
                Poll::Ready(match result {
                    Ok(mut resp) => {
                        if let Some(rw) = &info.policy.rewrite {
                            rw.response_headers.apply(resp.headers_mut());
                        }
                        if *report_route {
                            resp.extensions_mut().insert(info.clone());
                        }
                        Ok(resp)
                    }
                    Err(e) => Err(upstream_error(e.into(), info, endpoint, authority)),
                })
            }
            Proj::Waiting { fut } => fut.as_mut().poll(cx),
            Proj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                MeshError::new(crate::MeshErrorKind::Upstream).detail("polled after completion")
            }))),
        }
    }
}
