//! VirtualService `retries` / `timeout` → RouteAction `retry_policy` / `timeout` +
//! `max_stream_duration`, as istiod emits for proxyless gRPC (istio/istio
//! `pilot/pkg/networking/core/route` `retry.ConvertPolicy`, `setTimeout`; XDS-SEMANTICS.md rows 11,
//! 12 and section 1d).
//!
//! - `retries.attempts` → `num_retries` (`attempts: 0` ⇒ no policy, as istiod); `retryOn` →
//!   `retry_on` verbatim (default when empty: istio's mesh default
//!   `connect-failure,refused-stream,unavailable,cancelled`); `perTryTimeout` → `per_try_timeout`.
//!   gRPC keeps only the five gRPC conditions (`cancelled`, `deadline-exceeded`, `internal`,
//!   `resource-exhausted`, `unavailable`) and ignores `per_try_timeout`; Envoy uses all of them.
//!   No `retry_back_off` is emitted (gRPC then uses 25 ms base / 250 ms max), and no retry host
//!   predicate: nothing here can make a gRPC client NACK (it rejects `num_retries` < 1 and bad
//!   back-offs only).
//! - `timeout` → `timeout` (Envoy, HTTP) and `max_stream_duration.max_stream_duration` (gRPC reads
//!   only this one, gRFC A31: a cap on the call's deadline). Without `timeout` nothing is emitted,
//!   so Envoy keeps its default and gRPC the application's deadline.
//!
//! Minimal on purpose (issue proxyless-grpc interop): the `resilience` work owns the full
//! retry/timeout semantics and is expected to replace this file.

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{
    route_action::MaxStreamDuration, RetryPolicy, RouteAction,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::pb_duration;
use crate::source::model::Retries;

/// Istio's default `retryOn` (mesh `defaultHttpRetryPolicy`).
const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled";

/// The retry policy for `retries`; `None` when it disables retries (`attempts: 0`).
pub fn retry_policy(retries: &Retries) -> Option<RetryPolicy> {
    if retries.attempts == 0 {
        return None;
    }
    let retry_on = if retries.retry_on.is_empty() {
        DEFAULT_RETRY_ON.to_string()
    } else {
        retries.retry_on.join(",")
    };
    Some(RetryPolicy {
        retry_on,
        num_retries: Some(UInt32Value {
            value: retries.attempts,
        }),
        per_try_timeout: retries.per_try_timeout.map(pb_duration),
        ..Default::default()
    })
}

/// Sets `retry_policy`, `timeout` and `max_stream_duration` on `action`.
pub(crate) fn apply(
    action: &mut RouteAction,
    retries: Option<&Retries>,
    timeout: Option<Duration>,
) {
    action.retry_policy = retries.and_then(retry_policy);
    if let Some(t) = timeout {
        action.timeout = Some(pb_duration(t));
        action.max_stream_duration = Some(MaxStreamDuration {
            max_stream_duration: Some(pb_duration(t)),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_zero_disables_and_empty_retry_on_gets_istio_default() {
        let r = |attempts, on: &[&str]| Retries {
            attempts,
            retry_on: on.iter().map(|s| s.to_string()).collect(),
            per_try_timeout: None,
        };
        assert_eq!(retry_policy(&r(0, &["unavailable"])), None);
        let p = retry_policy(&r(3, &[])).unwrap();
        assert_eq!(p.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(p.num_retries, Some(UInt32Value { value: 3 }));
        let p = retry_policy(&r(1, &["unavailable", "cancelled"])).unwrap();
        assert_eq!(p.retry_on, "unavailable,cancelled");
    }
}
