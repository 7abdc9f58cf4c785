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
//! The stream idle timeout (Envoy `idle_timeout` / `stream_idle_timeout`, HTTP only) is
//! [`idle`]: it wraps the response body, so it goes outside all of these.
//!
//! Both read the deadline from the [`crate::route::Routed`] extension (precompiled per route,
//! nothing parsed per request); a request without one passes through untimed.
//!
//! gRPC differs (gRFC A31): it ignores `timeout` and caps the call's own deadline with
//! `max_stream_duration` / `grpc_timeout_header_max`, never extending it. [`Which::StreamDuration`]
//! does that for [`crate::MeshStackLayer::grpc`]: the call's deadline is the nearer of the
//! caller's own (its `grpc-timeout` header, which a gRPC client enforces itself rather than
//! leave to the server) and the route's cap; when the cap is nearer, the `grpc-timeout` sent
//! upstream is lowered to it so the server sees the deadline the call really has.

mod error;
mod future;
pub mod idle;
mod layer;

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::Request;
use tower::Service;

pub use error::Elapsed;
pub use future::ResponseFuture;
pub use idle::{IdleBody, IdleTimeout, IdleTimeoutLayer};
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
    /// Reported (in [`Elapsed`]) when a gRPC call's own deadline — its `grpc-timeout` — was
    /// nearer than the route's cap and ran out; as a layer setting it acts as
    /// [`Which::StreamDuration`].
    CallerDeadline,
    /// Reported (in [`Elapsed`]) by [`IdleTimeout`]: no activity on the stream for the route's
    /// idle timeout; as a [`Timeout`] setting it acts as [`Which::Off`].
    Idle,
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
        let mut which = self.which;
        let mut lower_header = None;
        let after = match self.which {
            Which::Route => routed.policy.timeout,
            Which::PerTry => routed
                .policy
                .retry
                .as_ref()
                .and_then(|r| r.policy.per_try_timeout),
            Which::StreamDuration | Which::CallerDeadline => {
                // An injected fault delay already used part of the cap (gRFC A33); the fault
                // layer has lowered the caller's `grpc-timeout` by it.
                let spent = req.extensions().get::<crate::fault::FaultDelayed>();
                let cap = routed.policy.grpc_cap.as_ref().map(|c| match spent {
                    Some(s) => c.after.saturating_sub(s.0).max(Duration::from_nanos(1)),
                    None => c.after,
                });
                let caller = req.headers().get(GRPC_TIMEOUT).and_then(parse_grpc_timeout);
                match (caller, cap) {
                    (Some(c), Some(cap)) if c <= cap => {
                        which = Which::CallerDeadline;
                        Some(c)
                    }
                    (Some(c), None) => {
                        which = Which::CallerDeadline;
                        Some(c)
                    }
                    (_, Some(cap)) => {
                        which = Which::StreamDuration;
                        // The route's cap was encoded at snapshot build (a refcount clone);
                        // formatted here only when a fault delay used part of it.
                        lower_header = Some(match (spent, &routed.policy.grpc_cap) {
                            (None, Some(c)) => c.header.clone(),
                            _ => encode_grpc_timeout(cap),
                        });
                        Some(cap)
                    }
                    (None, None) => None,
                }
            }
            Which::Off | Which::Idle => None,
        };
        let Some(after) = after else {
            return ResponseFuture::untimed(self.inner.call(req));
        };
        let names = (routed.route.clone(), routed.cluster.cluster.name.clone());
        let authority = routed.authority.clone();
        if let Some(value) = lower_header {
            req.headers_mut().insert(GRPC_TIMEOUT, value);
        }
        let attempts = match self.which {
            Which::Route
            | Which::StreamDuration
            | Which::CallerDeadline
            | Which::Off
            | Which::Idle => {
                let a = Attempts::default();
                req.extensions_mut().insert(a.clone());
                Some(a)
            }
            // Without a route timeout nothing created the request's record: start one here,
            // so the pick layer can tell this timeout from a caller giving up.
            Which::PerTry => Some(match req.extensions().get::<Attempts>() {
                Some(a) => a.clone(),
                None => {
                    let a = Attempts::default();
                    req.extensions_mut().insert(a.clone());
                    a
                }
            }),
        };
        let sleep = tokio::time::sleep(after);
        ResponseFuture::timed(
            self.inner.call(req),
            sleep,
            Elapsed { which, after },
            names,
            authority,
            attempts,
        )
    }
}

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Parses a `grpc-timeout` value (PROTOCOL-HTTP2: 1–8 ASCII digits and a unit `H M S m u n`);
/// anything else is no deadline, as gRPC servers treat it.
pub(crate) fn parse_grpc_timeout(v: &http::HeaderValue) -> Option<Duration> {
    let b = v.as_bytes();
    let (digits, unit) = b.split_at(b.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pub(crate) use mesh_core::snapshot::policy::encode_grpc_timeout;

#[cfg(test)]
mod tests;
