//! Route timeouts and retry policies (Envoy `RouteAction.timeout`, `max_stream_duration`,
//! `RetryPolicy`; gRFC A31, A44; XDS-SEMANTICS.md rows 11–13), and a cluster's retry limits
//! (`circuit_breakers`, row 16).
//!
//! - `timeout`: unset ⇒ 15 s; 0 ⇒ disabled; negative ⇒ invalid.
//! - `max_stream_duration` / `grpc_timeout_header_max`: kept for the gRPC transport (0 on
//!   `max_stream_duration` ⇒ none).
//! - `idle_timeout`: kept as set (unset ⇒ the listener's `stream_idle_timeout`; 0 ⇒ disabled on
//!   this route); negative ⇒ invalid. `priority`: DEFAULT or HIGH; an unknown value ⇒ invalid.
//! - `retry_back_off` (both Envoy's PGV rules and gRFC A44's NACK list): `base_interval` and
//!   `max_interval` must be positive, `max_interval` ≥ `base_interval`; base defaults to 25 ms,
//!   max to 10 × base; values below 1 ms are raised to 1 ms (A44).
//! - `num_retries` unset ⇒ 1. Explicit 0 is kept (Envoy: never retry) though gRPC NACKs it
//!   (divergence listed in XDS-SEMANTICS §4; the gRPC transport may apply its own rule).
//! - `retry_on` unknown names are ignored; `retriable_status_codes` must be 100..=599.
//! - `retry_host_predicate`: `previous_hosts` is honoured; other predicates are ignored (gRPC
//!   ignores all of them). `host_selection_retry_max_attempts` defaults to 1, negative invalid.
//! - A route-level `retry_policy` replaces the virtual host's (A44, Envoy); the converter folds
//!   the virtual host's into each route that has none.
//! - `circuit_breakers.thresholds`: the first entry of each priority (DEFAULT, HIGH) gives
//!   `max_requests`, `max_retries`
//!   (default 3) and `retry_budget` (`budget_percent` default 20 %, 0..=100;
//!   `min_retry_concurrency` default 3).

use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::config::cluster::v3::CircuitBreakers;
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::envoy::config::route::v3::{
    retry_policy::retry_host_predicate::ConfigType, RetryPolicy as RetryPolicyProto,
    RouteAction as RouteActionProto,
};
use envoy_types::pb::google::protobuf::Duration as DurationProto;

use super::{identify, matcher, Ctx, Path};
use crate::model::{
    ModelError, RetryBackoff, RetryBudget, RetryLimits, RetryOn, RetryPolicy, RoutePolicy,
    RoutingPriority as Priority, DEFAULT_BACKOFF_BASE, DEFAULT_ROUTE_TIMEOUT,
};

const PREVIOUS_HOSTS: &str = "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
const PREVIOUS_HOSTS_NAME: &str = "envoy.retry_host_predicates.previous_hosts";
const MIN_BACKOFF: Duration = Duration::from_millis(1);

/// A non-negative protobuf duration.
pub(super) fn duration(
    cx: &Ctx<'_>,
    path: &Path,
    d: &DurationProto,
) -> Result<Duration, ModelError> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(cx.invalid(path, "must not be negative"));
    }
    if d.nanos >= 1_000_000_000 {
        return Err(cx.invalid(path, "nanos out of range"));
    }
    // Both non-negative and nanos < 1e9, so the casts are exact.
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Zero ⇒ `None`.
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The policy of a forwarding route; `vhost_retry` is the virtual host's retry policy.
pub(super) fn route_policy(
    cx: &Ctx<'_>,
    path: &Path,
    ra: &RouteActionProto,
    vhost_retry: Option<&Arc<RetryPolicy>>,
) -> Result<RoutePolicy, ModelError> {
    let timeout = match &ra.timeout {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(d) => nonzero(duration(cx, &path.field("timeout"), d)?),
    };
    let (mut max_stream_duration, mut grpc_timeout_header_max) = (None, None);
    if let Some(msd) = &ra.max_stream_duration {
        let p = path.field("max_stream_duration");
        if let Some(d) = &msd.max_stream_duration {
            max_stream_duration = nonzero(duration(cx, &p.field("max_stream_duration"), d)?);
        }
        if let Some(d) = &msd.grpc_timeout_header_max {
            grpc_timeout_header_max = Some(duration(cx, &p.field("grpc_timeout_header_max"), d)?);
        }
    }
    let retry = match &ra.retry_policy {
        Some(rp) => Some(Arc::new(retry_policy(cx, &path.field("retry_policy"), rp)?)),
        None => vhost_retry.cloned(),
    };
    let idle_timeout = match &ra.idle_timeout {
        None => None,
        Some(d) => Some(duration(cx, &path.field("idle_timeout"), d)?),
    };
    let priority = match RoutingPriority::try_from(ra.priority) {
        Ok(RoutingPriority::Default) => Priority::Default,
        Ok(RoutingPriority::High) => Priority::High,
        Err(_) => {
            return Err(cx.invalid(
                &path.field("priority"),
                format!("unknown routing priority {}", ra.priority),
            ))
        }
    };
    Ok(RoutePolicy {
        timeout,
        max_stream_duration,
        grpc_timeout_header_max,
        retry,
        faults: Default::default(),
        idle_timeout,
        priority,
        rewrite: None,
    })
}

/// Validates a `RetryPolicy` (route or virtual host).
pub(super) fn retry_policy(
    cx: &Ctx<'_>,
    path: &Path,
    rp: &RetryPolicyProto,
) -> Result<RetryPolicy, ModelError> {
    let retry_on = RetryOn::parse(&rp.retry_on);
    let num_retries = rp.num_retries.as_ref().map_or(1, |v| v.value);
    let per_try_timeout = match &rp.per_try_timeout {
        None => None,
        Some(d) => nonzero(duration(cx, &path.field("per_try_timeout"), d)?),
    };
    let backoff = match &rp.retry_back_off {
        None => RetryBackoff::default(),
        Some(b) => {
            let p = path.field("retry_back_off");
            let base = match &b.base_interval {
                // Envoy requires base_interval; gRPC defaults it. Accept both.
                None => DEFAULT_BACKOFF_BASE,
                Some(d) => {
                    let v = duration(cx, &p.field("base_interval"), d)?;
                    if v.is_zero() {
                        return Err(cx.invalid(&p.field("base_interval"), "must be positive"));
                    }
                    v.max(MIN_BACKOFF)
                }
            };
            let max = match &b.max_interval {
                None => base * 10,
                Some(d) => {
                    let v = duration(cx, &p.field("max_interval"), d)?;
                    if v.is_zero() {
                        return Err(cx.invalid(&p.field("max_interval"), "must be positive"));
                    }
                    let v = v.max(MIN_BACKOFF);
                    if v < base {
                        return Err(cx.invalid(
                            &p.field("max_interval"),
                            format!("{v:?} is below base_interval {base:?}"),
                        ));
                    }
                    v
                }
            };
            RetryBackoff { base, max }
        }
    };
    let retriable_status_codes = rp
        .retriable_status_codes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            u16::try_from(c)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    cx.invalid(
                        &path.index("retriable_status_codes", i),
                        format!("{c} is not an HTTP status"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let retriable_headers = rp
        .retriable_headers
        .iter()
        .enumerate()
        .map(|(i, h)| matcher::header_matcher(cx, &path.index("retriable_headers", i), h))
        .collect::<Result<Vec<_>, _>>()?;
    let mut previous_hosts = false;
    for (i, pred) in rp.retry_host_predicate.iter().enumerate() {
        let p = path.index("retry_host_predicate", i);
        let is_previous = match &pred.config_type {
            Some(ConfigType::TypedConfig(any)) => {
                identify(cx, &p.field("typed_config"), any)?.name == PREVIOUS_HOSTS
            }
            None => pred.name == PREVIOUS_HOSTS_NAME,
        };
        previous_hosts |= is_previous;
    }
    let host_selection_max_attempts = match rp.host_selection_retry_max_attempts {
        0 => 1,
        n if n < 0 => {
            return Err(cx.invalid(
                &path.field("host_selection_retry_max_attempts"),
                "must not be negative",
            ))
        }
        n => u32::try_from(n).unwrap_or(u32::MAX),
    };
    Ok(RetryPolicy {
        retry_on,
        num_retries,
        per_try_timeout,
        backoff,
        retriable_status_codes: retriable_status_codes.into(),
        retriable_headers: retriable_headers.into(),
        previous_hosts,
        host_selection_max_attempts,
    })
}

/// Retry limits from `circuit_breakers`: the first threshold of `priority` (Envoy's defaults
/// when there is none).
pub(super) fn retry_limits(
    cx: &Ctx<'_>,
    path: &Path,
    cb: Option<&CircuitBreakers>,
    priority: RoutingPriority,
) -> Result<RetryLimits, ModelError> {
    let mut limits = RetryLimits::default();
    let Some(cb) = cb else {
        return Ok(limits);
    };
    let Some((i, t)) = cb
        .thresholds
        .iter()
        .enumerate()
        .find(|(_, t)| t.priority == priority as i32)
    else {
        return Ok(limits);
    };
    let p = path.index("thresholds", i);
    if let Some(m) = &t.max_requests {
        limits.max_requests = m.value;
    }
    if let Some(m) = &t.max_retries {
        limits.max_retries = m.value;
    }
    if let Some(b) = &t.retry_budget {
        let bp = p.field("retry_budget");
        let mut budget = RetryBudget::default();
        if let Some(pct) = &b.budget_percent {
            if !(0.0..=100.0).contains(&pct.value) {
                return Err(cx.invalid(
                    &bp.field("budget_percent"),
                    format!("{} is outside 0..=100", pct.value),
                ));
            }
            budget.budget_percent = pct.value;
        }
        if let Some(m) = &b.min_retry_concurrency {
            budget.min_retry_concurrency = m.value;
        }
        limits.budget = Some(budget);
    }
    Ok(limits)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
