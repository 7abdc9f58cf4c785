use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use http::Request;
use mesh_core::snapshot::fault::ActiveFault;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;

use super::FaultDelayed;
use crate::timeout::{encode_grpc_timeout, parse_grpc_timeout};
use crate::{MeshError, MeshErrorKind};

/// A delayed request, waiting to be sent (or failed) when its sleep ends.
pub(super) struct Delayed<S, B> {
    pub(super) sleep: Sleep,
    pub(super) inner: S,
    pub(super) req: Request<B>,
    pub(super) delay: Duration,
    /// The abort (or, for gRPC, the deadline) to fail with when the sleep ends; `None` = send.
    pub(super) outcome: Option<MeshError>,
    pub(super) active: ActiveFault,
    pub(super) grpc: bool,
}

struct Waiting<S, B> {
    inner: S,
    req: Request<B>,
    delay: Duration,
    outcome: Option<MeshError>,
    active: ActiveFault,
    grpc: bool,
}

pin_project! {
    /// Response future of [`super::Fault`]: straight through, failed at once, or a delay and
    /// then the inner call (or the abort).
    pub struct ResponseFuture<S, F, B> {
        #[pin]
        sleep: Option<Sleep>,
        waiting: Option<Box<Waiting<S, B>>>,
        #[pin]
        fut: Option<F>,
        // Held while the inner call runs (HTTP: Envoy counts the fault until the stream ends).
        active: Option<ActiveFault>,
        error: Option<MeshError>,
    }
}

impl<S, F, B> ResponseFuture<S, F, B> {
    pub(super) fn forward(fut: F, active: Option<ActiveFault>) -> Self {
        ResponseFuture {
            sleep: None,
            waiting: None,
            fut: Some(fut),
            active,
            error: None,
        }
    }

    pub(super) fn failed(error: MeshError) -> Self {
        ResponseFuture {
            sleep: None,
            waiting: None,
            fut: None,
            active: None,
            error: Some(error),
        }
    }

    pub(super) fn delayed(d: Delayed<S, B>) -> Self {
        ResponseFuture {
            sleep: Some(d.sleep),
            // Boxed only on the (rare) delayed path, so the common future stays small.
            waiting: Some(Box::new(Waiting {
                inner: d.inner,
                req: d.req,
                delay: d.delay,
                outcome: d.outcome,
                active: d.active,
                grpc: d.grpc,
            })),
            fut: None,
            active: None,
            error: None,
        }
    }
}

impl<S, F, B, R> Future for ResponseFuture<S, F, B>
where
    S: Service<Request<B>, Response = R, Error = MeshError, Future = F>,
    F: Future<Output = Result<R, MeshError>>,
{
    type Output = Result<R, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.sleep.set(None);
            let Some(w) = this.waiting.take() else {
                return Poll::Ready(Err(polled_after_completion()));
            };
            let Waiting {
                mut inner,
                mut req,
                delay,
                outcome,
                active,
                grpc,
            } = *w;
            if let Some(e) = outcome {
                // The fault ends with the abort (or the deadline): `active` drops here.
                return Poll::Ready(Err(e));
            }
            if grpc {
                // A33: the delay used part of the call's time; the rest goes on the wire.
                if let Some(left) = req
                    .headers()
                    .get("grpc-timeout")
                    .and_then(parse_grpc_timeout)
                {
                    let left = encode_grpc_timeout(left.saturating_sub(delay));
                    req.headers_mut().insert("grpc-timeout", left);
                }
                req.extensions_mut().insert(FaultDelayed(delay));
                drop(active);
            } else {
                *this.active = Some(active);
            }
            this.fut.set(Some(inner.call(req)));
        }
        if let Some(fut) = this.fut.as_mut().as_pin_mut() {
            let out = ready!(fut.poll(cx));
            this.fut.set(None);
            this.active.take();
            return Poll::Ready(out);
        }
        Poll::Ready(Err(this
            .error
            .take()
            .unwrap_or_else(polled_after_completion)))
    }
}

fn polled_after_completion() -> MeshError {
    MeshError::new(MeshErrorKind::Upstream).detail("fault future polled after completion")
}
