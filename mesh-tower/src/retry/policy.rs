//! Which outcomes are retried (`retry_on`) and how long to wait before the next attempt.

use std::time::Duration;

use http::{Response, StatusCode};
use mesh_core::{
    model::{RetryBackoff, RetryOn},
    snapshot::CompiledRetry,
};

use crate::{MeshError, MeshErrorKind};

/// Whether the policy retries this attempt's outcome (Envoy router `retry_on` semantics).
pub(crate) fn retriable<RB>(r: &CompiledRetry, outcome: &Result<Response<RB>, MeshError>) -> bool {
    let on = r.policy.retry_on;
    match outcome {
        Ok(resp) => retriable_response(r, on, resp),
        Err(e) => retriable_error(on, e),
    }
}

fn retriable_response<RB>(r: &CompiledRetry, on: RetryOn, resp: &Response<RB>) -> bool {
    let s = resp.status();
    let code = s.as_u16();
    if on.contains(RetryOn::SERVER_ERROR) && s.is_server_error() {
        return true;
    }
    if on.contains(RetryOn::GATEWAY_ERROR)
        && matches!(
            s,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        )
    {
        return true;
    }
    if on.contains(RetryOn::RETRIABLE_4XX) && s == StatusCode::CONFLICT {
        return true;
    }
    if on.contains(RetryOn::RETRIABLE_STATUS_CODES)
        && r.policy.retriable_status_codes.contains(&code)
    {
        return true;
    }
    if on.contains(RetryOn::RETRIABLE_HEADERS) && r.headers_match(resp.headers()) {
        return true;
    }
    if on.contains(RetryOn::ENVOY_RATELIMITED) && resp.headers().contains_key("x-envoy-ratelimited")
    {
        return true;
    }
    if on.intersects(RetryOn::GRPC) {
        // Envoy retries gRPC statuses only when they come in the response headers
        // (trailers-only responses), not in trailers (XDS-SEMANTICS.md §4).
        if let Some(status) = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            let cond = match status {
                1 => RetryOn::CANCELLED,
                4 => RetryOn::DEADLINE_EXCEEDED,
                8 => RetryOn::RESOURCE_EXHAUSTED,
                13 => RetryOn::INTERNAL,
                14 => RetryOn::UNAVAILABLE,
                _ => RetryOn::NONE,
            };
            if !cond.is_empty() && on.contains(cond) {
                return true;
            }
        }
    }
    false
}

pub(crate) fn retriable_error(on: RetryOn, e: &MeshError) -> bool {
    // Envoy counts a reset, a connect failure and a per-try timeout as a "5xx" (and a gateway
    // error): each would have become a 503 / 504.
    let any_reset = RetryOn::SERVER_ERROR | RetryOn::GATEWAY_ERROR | RetryOn::RESET;
    match e.kind() {
        MeshErrorKind::Connect => on.intersects(any_reset | RetryOn::CONNECT_FAILURE),
        // A failed handshake is a connect failure in Envoy; a configuration error is not.
        MeshErrorKind::Tls(r) if !r.is_config() => {
            on.intersects(any_reset | RetryOn::CONNECT_FAILURE)
        }
        MeshErrorKind::Upstream => {
            on.intersects(any_reset)
                || (on.contains(RetryOn::REFUSED_STREAM) && e.is_refused_stream())
        }
        MeshErrorKind::PerTryTimeout => on.intersects(any_reset),
        _ => false,
    }
}

/// Envoy's fully jittered exponential backoff before retry number `retry` (1-based): uniform
/// in `[0, (2^retry − 1) · base)`, capped at `max`. `unit` is a uniform draw in `[0, 1)`.
pub(crate) fn backoff(retry: u32, b: RetryBackoff, unit: f64) -> Duration {
    let multiplier = (1u64 << retry.min(32)).saturating_sub(1).max(1);
    let ceiling = b
        .base
        .saturating_mul(u32::try_from(multiplier).unwrap_or(u32::MAX));
    b.max.min(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
}

/// gRPC's backoff before retry number `retry` (1-based; gRFC A6 as revised in 2024):
/// `min(base · 2^(retry−1), max) · U(0.8, 1.2)`. `unit` is a uniform draw in `[0, 1)`.
pub(crate) fn grpc_backoff(retry: u32, b: RetryBackoff, unit: f64) -> Duration {
    let exp = 1u32 << retry.saturating_sub(1).min(31);
    let ceiling = b.max.min(b.base.saturating_mul(exp));
    ceiling.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

/// What a gRPC server's `grpc-retry-pushback-ms` says about the next retry (gRFC A6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// No header: back off as usual.
    None,
    /// Retry after exactly this long (and restart the backoff sequence).
    After(Duration),
    /// A negative or unparseable value: do not retry.
    Stop,
}

/// Reads `grpc-retry-pushback-ms` from a response's headers (trailers-only responses carry
/// the status there; trailers after a body are not read, as for `grpc-status`).
pub(crate) fn pushback<RB>(outcome: &Result<Response<RB>, MeshError>) -> Pushback {
    let Ok(resp) = outcome else {
        return Pushback::None;
    };
    match resp.headers().get("grpc-retry-pushback-ms") {
        None => Pushback::None,
        Some(v) => match v.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(ms) => Pushback::After(Duration::from_millis(ms)),
            None => Pushback::Stop,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_backoff_follows_a6() {
        let b = RetryBackoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        // Centre of the jitter (unit 0.5 ⇒ factor 1.0): 100, 200, 400, 800, then capped.
        let mid = |n| grpc_backoff(n, b, 0.5);
        assert_eq!(mid(1), Duration::from_millis(100));
        assert_eq!(mid(2), Duration::from_millis(200));
        assert_eq!(mid(4), Duration::from_millis(800));
        assert_eq!(mid(5), Duration::from_millis(1000));
        assert_eq!(mid(40), Duration::from_millis(1000));
        // Jitter bounds ±20 %.
        assert_eq!(grpc_backoff(1, b, 0.0), Duration::from_millis(80));
        assert_eq!(grpc_backoff(2, b, 1.0), Duration::from_millis(240));
    }

    #[test]
    fn pushback_header_is_read_per_a6() {
        let resp = |v: Option<&str>| -> Result<Response<()>, MeshError> {
            let mut r = Response::new(());
            if let Some(v) = v {
                r.headers_mut()
                    .insert("grpc-retry-pushback-ms", v.parse().unwrap());
            }
            Ok(r)
        };
        assert_eq!(pushback(&resp(None)), Pushback::None);
        assert_eq!(
            pushback(&resp(Some("250"))),
            Pushback::After(Duration::from_millis(250))
        );
        assert_eq!(pushback(&resp(Some("-1"))), Pushback::Stop);
        assert_eq!(pushback(&resp(Some("soon"))), Pushback::Stop);
    }

    #[test]
    fn backoff_follows_envoy_full_jitter() {
        let b = RetryBackoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        };
        // Upper bounds: 25, 75, 175, then capped at 250.
        let top = |n| backoff(n, b, 0.999_999);
        assert!(top(1) < Duration::from_millis(25) && top(1) > Duration::from_millis(24));
        assert!(top(2) < Duration::from_millis(75) && top(2) > Duration::from_millis(74));
        assert!(top(3) < Duration::from_millis(175) && top(3) > Duration::from_millis(174));
        assert_eq!(top(4), Duration::from_millis(250));
        assert_eq!(top(60), Duration::from_millis(250));
        assert_eq!(backoff(3, b, 0.0), Duration::ZERO);
        assert_eq!(backoff(2, b, 0.5), Duration::from_micros(37_500));
    }
}
