use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

use crate::MeshError;

pin_project! {
    /// Response future of [`super::ErrorResponse`].
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(fut: F) -> Self {
        ResponseFuture { fut }
    }
}

impl<F, RB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, MeshError>>,
{
    type Output = Result<Response<Either<RB, Full<Bytes>>>, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match ready!(self.project().fut.poll(cx)) {
            Ok(resp) => resp.map(Either::Left),
            Err(e) => {
                tracing::debug!(error = %e, "mesh failure answered locally");
                super::response_for(&e)
            }
        }))
    }
}
