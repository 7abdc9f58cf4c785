//! Route and per-try timeouts (Envoy router: `RouteAction.timeout`, `RetryPolicy.per_try_timeout`;
//! XDS-SEMANTICS.md rows 11, 13), modelled on tower's `timeout/`.
//!
//! [`TimeoutLayer::route`] goes outside the retry layer: its deadline covers every attempt and
//! every backoff, as Envoy's route timeout does (15 s when the route sets none, disabled by 0 —
//! defaults applied at conversion, see `mesh_core::model::RoutePolicy`). It also creates the
//! request's attempt record, so the error can say how many attempts it cut short.
//! [`TimeoutLayer::per_try`] goes inside the retry layer, around the endpoint pick: it bounds one
//! attempt until its response headers arrive; an elapsed per-try timeout counts as a retriable
//! failure (`5xx`, `gateway-error`, `reset`). A per-try timeout longer than the route's is
//! harmless: the route deadline fires first, which is Envoy's "ignored unless smaller".
//!
//! Both read the deadline from the [`crate::route::Routed`] extension (precompiled per route,
//! nothing parsed per request); a request without one passes through untimed.
//!
//! gRPC differs (gRFC A31): it ignores `timeout` and caps the call's own deadline with
//! `max_stream_duration` / `grpc_timeout_header_max`, never extending it. That is the gRPC
//! transport's job; this layer implements the Envoy (HTTP) semantics.

mod error;
mod future;
mod layer;

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::Request;
use tower::Service;

pub use error::Elapsed;
pub use future::ResponseFuture;
pub use layer::TimeoutLayer;

use crate::{attempt::Attempts, route::Routed, MeshError};

/// Which deadline a [`Timeout`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The route timeout, covering all attempts.
    Route,
    /// One attempt's `per_try_timeout`.
    PerTry,
    /// gRPC's cap on a call (gRFC A31): `grpc_timeout_header_max` when set, else
    /// `max_stream_duration`; zero or unset leaves the caller's deadline alone. gRPC ignores
    /// `RouteAction.timeout` (and so Envoy's implicit 15 s), which would cut long streams.
    StreamDuration,
    /// No deadline from this layer (gRPC ignores `per_try_timeout`, gRFC A44).
    Off,
}

/// The service [`TimeoutLayer`] produces.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    which: Which,
}

impl<S> Timeout<S> {
    /// Wraps `inner`, applying the `which` deadline.
    pub fn new(inner: S, which: Which) -> Self {
        Timeout { inner, which }
    }
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Error = MeshError>,
{
    type Response = S::Response;
    type Error = MeshError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(routed) = req.extensions().get::<Routed>() else {
            return ResponseFuture::untimed(self.inner.call(req));
        };
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let after = match self.which {
            Which::Route => routed.policy.timeout,
            Which::PerTry => routed
                .policy
                .retry
                .as_ref()
                .and_then(|r| r.policy.per_try_timeout),
            Which::StreamDuration => match routed.policy.grpc_timeout_header_max {
                Some(max) => nonzero(max),
                None => routed.policy.max_stream_duration.and_then(nonzero),
            },
            Which::Off => None,
        };
        let Some(after) = after else {
            return ResponseFuture::untimed(self.inner.call(req));
        };
        let names = (routed.route.clone(), routed.cluster.cluster.name.clone());
        let authority = routed.authority.clone();
        let attempts = match self.which {
            Which::Route | Which::StreamDuration | Which::Off => {
                let a = Attempts::default();
                req.extensions_mut().insert(a.clone());
                Some(a)
            }
            Which::PerTry => req.extensions().get::<Attempts>().cloned(),
        };
        let sleep = tokio::time::sleep(after);
        ResponseFuture::timed(
            self.inner.call(req),
            sleep,
            Elapsed {
                which: self.which,
                after,
            },
            names,
            authority,
            attempts,
        )
    }
}

#[cfg(test)]
mod tests;
