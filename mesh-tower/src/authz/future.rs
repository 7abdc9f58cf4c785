use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`super::Authz`]: the handler's, or the denial answered locally.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Denied { resp: Option<Response<Full<Bytes>>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn inner(fut: F) -> Self {
        ResponseFuture {
            state: State::Inner { fut },
        }
    }

    pub(super) fn denied(resp: Response<Full<Bytes>>) -> Self {
        ResponseFuture {
            state: State::Denied { resp: Some(resp) },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<Either<RB, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut } => {
                Poll::Ready(ready!(fut.poll(cx)).map(|r| r.map(Either::Left)))
            }
            StateProj::Denied { resp } => Poll::Ready(Ok(resp
                .take()
                .expect("ResponseFuture polled after completion")
                .map(Either::Right))),
        }
    }
}
