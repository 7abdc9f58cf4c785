//! VirtualService `retries` / `timeout` → RouteAction `retry_policy` / `timeout` +
//! `max_stream_duration`, as istiod emits for proxyless gRPC (istio/istio
//! `pilot/pkg/networking/core/route` `retry.ConvertPolicy`, `setTimeout`; XDS-SEMANTICS.md rows 11,
//! 12 and section 1d).
//!
//! - No `retries` at all (and every default route) ⇒ istiod's default policy (`retry.DefaultPolicy`):
//!   `num_retries: 2`, `retry_on: connect-failure,refused-stream,unavailable,cancelled,
//!   retriable-status-codes` (no codes listed, so only the `x-envoy-retriable-status-codes`
//!   request header can name some), `previous_hosts`, `host_selection_retry_max_attempts: 5`. A
//!   gRPC client keeps `unavailable` and `cancelled`: UNAVAILABLE and CANCELLED get up to 3
//!   attempts, as under istiod.
//! - `retries.attempts` → `num_retries` (`attempts: 0` ⇒ no policy, as istiod); `retryOn` →
//!   `retry_on` (default when empty: the same default condition list), except numeric entries,
//!   which go to
//!   `retriable_status_codes` with `retriable-status-codes` added to `retry_on` (istiod
//!   `parseRetryOn`); `perTryTimeout` → `per_try_timeout`. As istiod (with
//!   `retryIgnorePreviousHosts` at its default, true): the `previous_hosts` retry host predicate
//!   and `host_selection_retry_max_attempts: 5`.
//!   gRPC keeps only the five gRPC conditions (`cancelled`, `deadline-exceeded`, `internal`,
//!   `resource-exhausted`, `unavailable`) and ignores `per_try_timeout`, the status codes and
//!   the host predicate (gRFC A44); Envoy and this mesh's HTTP stack use all of them. No
//!   `retry_back_off` is emitted (25 ms base / 250 ms max then apply): nothing here can make a
//!   gRPC client NACK (it rejects `num_retries` < 1 and bad back-offs only).
//! - `timeout` → `timeout` (Envoy, HTTP) and `max_stream_duration.max_stream_duration` (gRPC reads
//!   only this one, gRFC A31: a cap on the call's deadline). Without `timeout`, `timeout: 0s` is
//!   emitted — no route timeout — as istiod does: Istio's documented default is "disabled", and a
//!   user coming from Istio must not meet Envoy's implicit 15 s. No `max_stream_duration` is
//!   emitted then, so gRPC keeps the application's deadline.

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{
    retry_policy::{retry_host_predicate::ConfigType, RetryHostPredicate},
    route_action::MaxStreamDuration,
    RetryPolicy, RouteAction,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};

use super::pb_duration;
use crate::source::model::Retries;

/// Istio's default `retryOn` (istiod `retry.DefaultPolicy`).
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Istio's default number of retries when a route names none.
const DEFAULT_NUM_RETRIES: u32 = 2;
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
const PREVIOUS_HOSTS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

/// The retry policy for a route's `retries`: istiod's default when the route has none, `None`
/// when it disables retries (`attempts: 0`).
pub fn retry_policy(retries: Option<&Retries>) -> Option<RetryPolicy> {
    let default = Retries {
        attempts: DEFAULT_NUM_RETRIES,
        retry_on: Vec::new(),
        per_try_timeout: None,
    };
    let retries = retries.unwrap_or(&default);
    if retries.attempts == 0 {
        return None;
    }
    let (mut on, mut codes): (Vec<&str>, Vec<u32>) = (Vec::new(), Vec::new());
    if retries.retry_on.is_empty() {
        on.push(DEFAULT_RETRY_ON);
    }
    for cond in &retries.retry_on {
        match cond.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) => on.push(cond),
        }
    }
    if !codes.is_empty() {
        on.push("retriable-status-codes");
    }
    Some(RetryPolicy {
        retry_on: on.join(","),
        num_retries: Some(UInt32Value {
            value: retries.attempts,
        }),
        per_try_timeout: retries.per_try_timeout.map(pb_duration),
        retriable_status_codes: codes,
        retry_host_predicate: vec![RetryHostPredicate {
            name: PREVIOUS_HOSTS.to_string(),
            config_type: Some(ConfigType::TypedConfig(Any {
                type_url: PREVIOUS_HOSTS_TYPE.to_string(),
                value: Vec::new(),
            })),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    })
}

/// Sets `retry_policy`, `timeout` and `max_stream_duration` on `action`.
pub(crate) fn apply(
    action: &mut RouteAction,
    retries: Option<&Retries>,
    timeout: Option<Duration>,
) {
    action.retry_policy = retry_policy(retries);
    without_previous_hosts_if_hashed(action);
    match timeout {
        Some(t) => {
            action.timeout = Some(pb_duration(t));
            action.max_stream_duration = Some(MaxStreamDuration {
                max_stream_duration: Some(pb_duration(t)),
                ..Default::default()
            });
        }
        // istiod: no VirtualService timeout ⇒ route timeout disabled (0), not Envoy's 15 s.
        None => action.timeout = Some(pb_duration(Duration::ZERO)),
    }
}

/// istiod (`retry.ConvertPolicy(in, hashPolicy)`): a route with a consistent-hash policy gets
/// no `previous_hosts` predicate — a retry should stay on the key's endpoint, not flee it.
pub(crate) fn without_previous_hosts_if_hashed(action: &mut RouteAction) {
    if !action.hash_policy.is_empty() {
        if let Some(p) = &mut action.retry_policy {
            p.retry_host_predicate.clear();
        }
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
        assert_eq!(retry_policy(Some(&r(0, &["unavailable"]))), None);
        let p = retry_policy(Some(&r(3, &[]))).unwrap();
        assert_eq!(p.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(p.num_retries, Some(UInt32Value { value: 3 }));
        let p = retry_policy(Some(&r(1, &["unavailable", "cancelled"]))).unwrap();
        assert_eq!(p.retry_on, "unavailable,cancelled");
        assert_eq!(p.retry_host_predicate[0].name, PREVIOUS_HOSTS);
        assert_eq!(p.host_selection_retry_max_attempts, 5);
    }

    #[test]
    fn no_retries_gets_istiod_default_policy() {
        let p = retry_policy(None).unwrap();
        assert_eq!(
            p.retry_on,
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
        );
        assert_eq!(p.num_retries, Some(UInt32Value { value: 2 }));
        assert!(p.retriable_status_codes.is_empty());
        assert_eq!(p.retry_host_predicate[0].name, PREVIOUS_HOSTS);
        assert_eq!(p.host_selection_retry_max_attempts, 5);
    }

    #[test]
    fn hashed_routes_keep_retries_on_the_same_host() {
        use envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy;
        let mut action = RouteAction {
            hash_policy: vec![HashPolicy::default()],
            ..Default::default()
        };
        apply(&mut action, None, None);
        let p = action.retry_policy.expect("istiod default policy");
        assert!(p.retry_host_predicate.is_empty(), "{p:?}");
        assert_eq!(p.num_retries, Some(UInt32Value { value: 2 }));
    }

    #[test]
    fn numeric_retry_on_becomes_retriable_status_codes() {
        let p = retry_policy(Some(&Retries {
            attempts: 2,
            retry_on: vec!["gateway-error".into(), "503".into(), "409".into()],
            per_try_timeout: None,
        }))
        .unwrap();
        assert_eq!(p.retry_on, "gateway-error,retriable-status-codes");
        assert_eq!(p.retriable_status_codes, vec![503, 409]);
    }
}
