use std::{fmt::Write, net::SocketAddr};

use http::{HeaderName, HeaderValue};
use mesh_core::snapshot::FaultStatus;

use crate::{MeshError, MeshErrorKind};

/// `x-mesh-error`.
pub const HEADER: HeaderName = HeaderName::from_static("x-mesh-error");

/// The `x-mesh-error` header, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorHeader {
    /// The error kind, e.g. `timeout` (see [`MeshErrorKind::as_str`]).
    pub kind: String,
    /// The overflowing limit, for `kind=overflow` (e.g. `max_retries`).
    pub limit: Option<String>,
    /// The injected status, for `kind=fault_abort`: `http:<status>` or `grpc:<code>`.
    pub status: Option<String>,
    /// Why, for `kind=tls` (e.g. `san_mismatch`, see [`crate::TlsReason::as_str`]).
    pub reason: Option<String>,
    /// The route, when one matched.
    pub route: Option<String>,
    /// The cluster, when one was picked.
    pub cluster: Option<String>,
    /// The (last) endpoint, when one was picked.
    pub endpoint: Option<SocketAddr>,
    /// Attempts sent upstream.
    pub attempts: u32,
    /// Why an allowed retry was not made, e.g. `body_over_replay_cap`.
    pub not_retried: Option<String>,
}

impl ErrorHeader {
    /// Parses a header value; `None` if it has no `kind`. Unknown keys are skipped, so later
    /// additions do not break readers.
    pub fn parse(value: &str) -> Option<ErrorHeader> {
        let mut h = ErrorHeader::default();
        for pair in value.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            let v = decode(v)?;
            match k {
                "kind" => h.kind = v,
                "limit" => h.limit = Some(v),
                "status" => h.status = Some(v),
                "reason" => h.reason = Some(v),
                "route" => h.route = Some(v),
                "cluster" => h.cluster = Some(v),
                "endpoint" => h.endpoint = v.parse().ok(),
                "attempts" => h.attempts = v.parse().ok()?,
                "not_retried" => h.not_retried = Some(v),
                _ => {}
            }
        }
        (!h.kind.is_empty()).then_some(h)
    }
}

/// The header value for an error.
pub(super) fn value(e: &MeshError) -> HeaderValue {
    let mut s = format!("kind={}", e.kind().as_str());
    match e.kind() {
        MeshErrorKind::Overflow(l) => {
            let _ = write!(s, "; limit={}", l.as_str());
        }
        MeshErrorKind::FaultAbort(FaultStatus::Http(c)) => {
            let _ = write!(s, "; status=http:{c}");
        }
        MeshErrorKind::FaultAbort(FaultStatus::Grpc(c)) => {
            let _ = write!(s, "; status=grpc:{c}");
        }
        MeshErrorKind::Tls(r) => {
            let _ = write!(s, "; reason={}", r.as_str());
        }
        _ => {}
    }
    for (k, v) in [("route", e.route_name()), ("cluster", e.cluster_name())] {
        if let Some(v) = v {
            let _ = write!(s, "; {k}={}", encode(v));
        }
    }
    if let Some(ep) = e.endpoint_addr() {
        let _ = write!(s, "; endpoint={ep}");
    }
    let _ = write!(s, "; attempts={}", e.attempt_count());
    if let Some(n) = e.not_retried_reason() {
        let _ = write!(s, "; not_retried={n}");
    }
    // Everything non-visible was percent-encoded, so this cannot fail.
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("kind=unknown"))
}

fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b';' | b'=') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_names() {
        let e = MeshError::new(MeshErrorKind::Timeout)
            .route(&"a; b=c%".into())
            .cluster(&"outbound|80||svc".into())
            .endpoint(([10, 0, 0, 7], 9080).into())
            .attempts(3);
        let v = value(&e);
        let s = v.to_str().unwrap();
        assert!(s.starts_with("kind=timeout; route=a%3B%20b%3Dc%25; cluster=outbound|80||svc"));
        let h = ErrorHeader::parse(s).unwrap();
        assert_eq!(h.kind, "timeout");
        assert_eq!(h.route.as_deref(), Some("a; b=c%"));
        assert_eq!(h.cluster.as_deref(), Some("outbound|80||svc"));
        assert_eq!(h.endpoint, Some(([10, 0, 0, 7], 9080).into()));
        assert_eq!(h.attempts, 3);
        assert_eq!(ErrorHeader::parse("route=x"), None);

        let tls = MeshError::new(MeshErrorKind::Tls(crate::TlsReason::SanMismatch))
            .cluster(&"outbound|80||svc".into());
        let h = ErrorHeader::parse(value(&tls).to_str().unwrap()).unwrap();
        assert_eq!(
            (h.kind.as_str(), h.reason.as_deref()),
            ("tls", Some("san_mismatch"))
        );
        assert_eq!(ErrorHeader::parse("kind=x; route=%G1"), None);
    }
}
