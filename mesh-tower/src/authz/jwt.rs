//! JWT request authentication in front of RBAC: the clock token times are checked against, and
//! the local reply for a refused token.
//!
//! The reply follows Envoy's `jwt_authn` filter for HTTP — `401 Unauthorized` with
//! `www-authenticate: Bearer realm="http://<authority><path>"` plus `, error="invalid_token"`
//! when a token was presented (RFC 6750 §3) — and gRPC's status mapping for gRPC requests
//! (`content-type: application/grpc…`): trailers-only `grpc-status: 16` (UNAUTHENTICATED), as
//! Envoy's local replies map 401 for gRPC callers. Both carry
//! `x-mesh-error: kind=unauthenticated; filter=…; provider=…; reason=…`, the reason one of
//! [`JwtErrorKind::as_str`]'s codes (`missing`, `malformed`, `issuer`, `audience`, `expired`,
//! `not_yet_valid`, `bad_signature`).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use mesh_core::jwt::{JwtError, JwtErrorKind};

use super::{encode, is_grpc, HEADER};

/// Wall-clock time for token `exp` / `nbf` checks, in Unix seconds: the system clock, or a
/// manual one tests set and advance.
#[derive(Clone, Debug, Default)]
pub struct JwtClock {
    manual: Option<Arc<AtomicU64>>,
}

impl JwtClock {
    /// The system clock (the default).
    pub fn system() -> Self {
        JwtClock { manual: None }
    }

    /// A clock reading `unix_secs` until [`JwtClock::set`] or [`JwtClock::advance`] moves it;
    /// clones share it.
    pub fn manual(unix_secs: u64) -> Self {
        JwtClock {
            manual: Some(Arc::new(AtomicU64::new(unix_secs))),
        }
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Sets a manual clock; no effect on the system clock.
    pub fn set(&self, unix_secs: u64) {
        if let Some(t) = &self.manual {
            t.store(unix_secs, Ordering::Relaxed);
        }
    }

    /// Moves a manual clock forward; no effect on the system clock.
    pub fn advance(&self, secs: u64) {
        if let Some(t) = &self.manual {
            t.fetch_add(secs, Ordering::Relaxed);
        }
    }
}

/// The local reply for a refused token: 401 for HTTP, trailers-only UNAUTHENTICATED for gRPC
/// (see the [module docs](self)).
pub fn unauthenticated_response<B>(
    req: &Request<B>,
    filter: &str,
    e: &JwtError,
) -> Response<Full<Bytes>> {
    let message = format!("unauthenticated: {e}");
    let mesh = format!(
        "kind=unauthenticated; filter={}; provider={}; reason={}",
        encode(filter),
        encode(&e.provider),
        e.kind.as_str()
    );
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let mut challenge = format!("Bearer realm=\"http://{authority}{}\"", req.uri().path());
    if e.kind != JwtErrorKind::Missing {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let mut resp = if is_grpc(req) {
        let mut r = Response::new(Full::new(Bytes::new()));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from_static("16"));
        if let Ok(m) = HeaderValue::from_str(&encode(&message)) {
            h.insert("grpc-message", m);
        }
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge)
            .unwrap_or(HeaderValue::from_static("Bearer error=\"invalid_token\"")),
    );
    h.insert(
        HEADER,
        HeaderValue::from_str(&mesh).unwrap_or(HeaderValue::from_static("kind=unauthenticated")),
    );
    resp
}
