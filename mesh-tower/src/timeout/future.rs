use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::uri::Authority;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{Elapsed, Which};
use crate::{attempt::Attempts, MeshError, MeshErrorKind};

pin_project! {
    /// Response future of [`super::Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Option<Sleep>,
        ctx: Option<Ctx>,
    }
}

#[derive(Debug)]
struct Ctx {
    elapsed: Elapsed,
    route: Arc<str>,
    cluster: Arc<str>,
    authority: Authority,
    attempts: Option<Attempts>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn untimed(fut: F) -> Self {
        ResponseFuture {
            fut,
            sleep: None,
            ctx: None,
        }
    }

    pub(super) fn timed(
        fut: F,
        sleep: Sleep,
        elapsed: Elapsed,
        (route, cluster): (Arc<str>, Arc<str>),
        authority: Authority,
        attempts: Option<Attempts>,
    ) -> Self {
        ResponseFuture {
            fut,
            sleep: Some(sleep),
            ctx: Some(Ctx {
                elapsed,
                route,
                cluster,
                authority,
                attempts,
            }),
        }
    }
}

impl<F, R> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, MeshError>>,
{
    type Output = Result<R, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.fut.poll(cx) {
            return Poll::Ready(r);
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        if sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        let Some(ctx) = this.ctx.take() else {
            return Poll::Pending;
        };
        let kind = match ctx.elapsed.which {
            Which::Route
            | Which::StreamDuration
            | Which::CallerDeadline
            | Which::Off
            | Which::Idle => MeshErrorKind::Timeout,
            Which::PerTry => MeshErrorKind::PerTryTimeout,
        };
        if let Some(a) = &ctx.attempts {
            a.timed_out();
        }
        let (attempts, endpoint) = match &ctx.attempts {
            Some(a) => (a.count().max(1), a.last_endpoint()),
            None => (1, None),
        };
        Poll::Ready(Err(MeshError::new(kind)
            .at(ctx.authority.as_str(), "")
            .route(&ctx.route)
            .cluster(&ctx.cluster)
            .endpoint_opt(endpoint)
            .attempts(attempts)
            .detail(ctx.elapsed)))
    }
}
