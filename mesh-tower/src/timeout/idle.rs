//! The stream idle timeout (Envoy `RouteAction.idle_timeout`, overriding the
//! HttpConnectionManager's `stream_idle_timeout`; XDS-SEMANTICS.md row 11).
//!
//! Envoy (`route_components.proto`, `idle_timeout`): the timer is reset each time headers or data
//! pass on the stream; "if the timeout fires, the stream is terminated with a 408 Request Timeout
//! error code if no upstream response header has been received, otherwise a stream reset
//! occurs". Unset on the route ⇒ the listener's `stream_idle_timeout` (5 min by default); 0 on
//! the route disables it even when the listener sets one; 0 on the listener disables the
//! listener-wide default. Both resolved at snapshot build
//! ([`mesh_core::snapshot::CompiledPolicy::idle_timeout`]).
//!
//! Here, [`IdleTimeout`] sits right under the routing layer (outside fault injection, the route
//! timeout and retries), so it covers the whole request as Envoy's stream timer does:
//! - Until the response head arrives the timer runs from the call; if it fires the request fails
//!   with a [`MeshError`] of kind [`MeshErrorKind::IdleTimeout`] (not retried: the retry loop
//!   is inside), which [`crate::error_response`] answers with Envoy's 408.
//! - Afterwards the response body is wrapped in [`IdleBody`]: each frame re-arms the timer, and
//!   when no frame came for the duration the body yields an `idle_timeout` error and stops
//!   polling the upstream body (dropping it resets the stream, as Envoy does).
//!
//! Request-body activity does not re-arm the timer (the request body is the application's, sent
//! by the client below); the response-head wait is covered from the call, which is the common
//! case of an idle upstream.
//!
//! Cost: re-arming is lazy. A frame only records `Instant::now()`; the timer entry is reset when
//! it fires early (once per idle period at most), so the hot path neither allocates nor touches
//! Tokio's timer wheel per frame.
//!
//! gRPC ignores both `idle_timeout` and `stream_idle_timeout` (gRFC A31 reads only
//! `max_stream_duration`): [`crate::MeshStackLayer::grpc`] builds this layer disabled, so gRPC
//! calls follow gRPC; plain HTTP ([`crate::MeshStackLayer::new`]) follows Envoy.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Buf;
use http::{uri::Authority, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::{Elapsed, Which};
use crate::{error::BoxError, route::Routed, MeshError, MeshErrorKind};

/// Applies the route's idle timeout (see the [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub struct IdleTimeoutLayer {
    enabled: bool,
}

impl IdleTimeoutLayer {
    /// Envoy's stream idle timeout, from each request's route.
    pub fn new() -> Self {
        IdleTimeoutLayer { enabled: true }
    }

    /// No idle timeout (gRPC): responses are only wrapped, never timed.
    pub fn disabled() -> Self {
        IdleTimeoutLayer { enabled: false }
    }
}

impl Default for IdleTimeoutLayer {
    fn default() -> Self {
        IdleTimeoutLayer::new()
    }
}

impl<S> Layer<S> for IdleTimeoutLayer {
    type Service = IdleTimeout<S>;

    fn layer(&self, inner: S) -> IdleTimeout<S> {
        IdleTimeout {
            inner,
            enabled: self.enabled,
        }
    }
}

/// The service [`IdleTimeoutLayer`] produces.
#[derive(Clone, Debug)]
pub struct IdleTimeout<S> {
    inner: S,
    enabled: bool,
}

/// Names an idle-timeout error carries (reference-count clones, no allocation).
#[derive(Clone, Debug)]
struct Names {
    route: Arc<str>,
    cluster: Arc<str>,
    authority: Authority,
    after: Duration,
}

impl Names {
    fn error(&self) -> MeshError {
        MeshError::new(MeshErrorKind::IdleTimeout)
            .at(self.authority.as_str(), "")
            .route(&self.route)
            .cluster(&self.cluster)
            .detail(Elapsed {
                which: Which::Idle,
                after: self.after,
            })
    }
}

impl<S, B, RB> Service<Request<B>> for IdleTimeout<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = MeshError>,
{
    type Response = Response<IdleBody<RB>>;
    type Error = MeshError;
    type Future = IdleFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let names = self
            .enabled
            .then(|| req.extensions().get::<Routed>())
            .flatten()
            .and_then(|r| {
                Some(Names {
                    after: r.policy.idle_timeout?,
                    route: r.route.clone(),
                    cluster: r.cluster.cluster.name.clone(),
                    authority: r.authority.clone(),
                })
            });
        let sleep = names.as_ref().map(|n| tokio::time::sleep(n.after));
        IdleFuture {
            fut: self.inner.call(req),
            sleep,
            names,
        }
    }
}

pin_project! {
    /// Response future of [`IdleTimeout`].
    pub struct IdleFuture<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Option<Sleep>,
        names: Option<Names>,
    }
}

impl<F, RB> Future for IdleFuture<F>
where
    F: Future<Output = Result<Response<RB>, MeshError>>,
{
    type Output = Result<Response<IdleBody<RB>>, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.fut.poll(cx) {
            let names = this.names.take();
            return Poll::Ready(r.map(|resp| resp.map(|b| IdleBody::new(b, names))));
        }
        match (this.sleep.as_pin_mut(), this.names.as_ref()) {
            (Some(sleep), Some(names)) => {
                ready!(sleep.poll(cx));
                Poll::Ready(Err(names.error()))
            }
            _ => Poll::Pending,
        }
    }
}

pin_project! {
    /// A response body under the idle timeout: each frame re-arms the timer; when none comes
    /// for the duration it yields an `idle_timeout` [`MeshError`] and ends. Errors of the
    /// upstream body come out as `upstream` errors with the original as their source.
    ///
    /// It holds its timer inline (no allocation), so it is `!Unpin`: `collect()` it as is, or
    /// pin it (`std::pin::pin!`, `Box::pin`) to poll frames one by one.
    #[derive(Debug)]
    pub struct IdleBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<Sleep>,
        names: Option<Names>,
        last: Option<Instant>,
        done: bool,
    }
}

impl<B> IdleBody<B> {
    fn new(inner: B, names: Option<Names>) -> Self {
        let sleep = names.as_ref().map(|n| tokio::time::sleep(n.after));
        IdleBody {
            inner,
            sleep,
            last: names.as_ref().map(|_| Instant::now()),
            names,
            done: false,
        }
    }

    /// A body with no idle timer.
    pub fn untimed(inner: B) -> Self {
        IdleBody::new(inner, None)
    }

    /// The wrapped body, by reference.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = MeshError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, MeshError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(last) = this.last.as_mut() {
                    *last = Instant::now();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                let err = MeshError::new(MeshErrorKind::Upstream).detail(e);
                return Poll::Ready(Some(Err(err)));
            }
            Poll::Ready(None) => {
                *this.done = true;
                this.sleep.set(None);
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let (Some(mut sleep), Some(names), Some(last)) = (
            this.sleep.as_mut().as_pin_mut(),
            this.names.as_ref(),
            *this.last,
        ) else {
            return Poll::Pending;
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            // Lazily re-armed: frames only move `last`; the timer catches up when it fires.
            let deadline = last + names.after;
            if deadline > Instant::now() {
                sleep.as_mut().reset(deadline);
                continue;
            }
            *this.done = true;
            let err = names.error();
            this.sleep.set(None);
            return Poll::Ready(Some(Err(err)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "idle_tests.rs"]
mod tests;
