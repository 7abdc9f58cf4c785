//! Opt-in: turn a [`MeshError`] into an HTTP response that explains itself, with an
//! `x-mesh-error` header a machine can parse, so "the mesh timed out" is never confused with
//! "the backend answered 504".
//!
//! ```text
//! HTTP/1.1 504 Gateway Timeout
//! x-mesh-error: kind=timeout; route=reviews-v2; cluster=outbound|9080|v2|reviews; endpoint=10.0.0.7:9080; attempts=3
//! ```
//!
//! Status codes follow Envoy's local replies: 504 for the route and per-try timeouts, 404 when
//! no route (or no target) matches (Envoy `NR`), 400 for a request without authority, the
//! configured status for a fault abort (`kind=fault_abort; status=http:503`) — for a
//! `grpc_status` abort, Envoy's trailers-only gRPC reply: 200 with `grpc-status` and
//! `grpc-message` (`status=grpc:14`) — and 503 for everything else (no healthy upstream, connect
//! failure, a failed TLS handshake or verification — `kind=tls; reason=san_mismatch` — reset,
//! overflow, retry budget).
//! Header values are `key=value` pairs separated by `; `; values have `%`, `;`, `=`, spaces and
//! non-visible bytes percent-encoded. [`ErrorHeader::parse`] reads it back.

mod future;
mod header;
mod layer;

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use tower::Service;

pub use future::ResponseFuture;
pub use header::{ErrorHeader, HEADER};
pub use layer::ErrorResponseLayer;

use mesh_core::snapshot::FaultStatus;

use crate::{MeshError, MeshErrorKind};

/// The service [`ErrorResponseLayer`] produces.
#[derive(Clone, Debug)]
pub struct ErrorResponse<S> {
    inner: S,
}

impl<S> ErrorResponse<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ErrorResponse { inner }
    }
}

/// The status Envoy would answer a local failure of this kind with.
pub fn status_for(kind: MeshErrorKind) -> StatusCode {
    match kind {
        MeshErrorKind::Timeout | MeshErrorKind::PerTryTimeout => StatusCode::GATEWAY_TIMEOUT,
        // Envoy `RouteAction.idle_timeout`: "408 Request Timeout … if no upstream response
        // header has been received".
        MeshErrorKind::IdleTimeout => StatusCode::REQUEST_TIMEOUT,
        MeshErrorKind::NoRoute | MeshErrorKind::NoTarget => StatusCode::NOT_FOUND,
        MeshErrorKind::MissingAuthority => StatusCode::BAD_REQUEST,
        MeshErrorKind::FaultAbort(FaultStatus::Http(s)) => {
            StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        }
        MeshErrorKind::FaultAbort(FaultStatus::Grpc(_)) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The response for an error: status per [`status_for`], the `x-mesh-error` header, and the
/// error's message as a text body.
pub fn response_for<RB>(e: &MeshError) -> Response<Either<RB, Full<Bytes>>> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!("{e}\n")))));
    *resp.status_mut() = status_for(e.kind());
    resp.headers_mut().insert(HEADER, header::value(e));
    if let MeshErrorKind::FaultAbort(FaultStatus::Grpc(code)) = e.kind() {
        resp.headers_mut().insert("grpc-status", code.into());
        resp.headers_mut().insert(
            "grpc-message",
            http::HeaderValue::from_static("fault%20filter%20abort"),
        );
    }
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl<S, B, RB> Service<Request<B>> for ErrorResponse<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = MeshError>,
{
    type Response = Response<Either<RB, Full<Bytes>>>;
    type Error = MeshError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture::new(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests;
