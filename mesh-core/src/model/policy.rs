//! Route policies: timeouts and retries (Envoy `RouteAction.timeout`, `max_stream_duration`,
//! `RetryPolicy`; gRFC A31, A44; XDS-SEMANTICS.md rows 11–13) and a cluster's retry limits
//! (`circuit_breakers` `max_retries` / `retry_budget`, row 16).
//!
//! Values are validated and defaulted at conversion ([`super::convert`]): a `RetryPolicy` here
//! always has a usable backoff, and `RoutePolicy::timeout` is already the *effective* route
//! timeout (Envoy's 15 s default filled in, `0` turned into `None` = disabled).

use std::{fmt, ops::BitOr, sync::Arc, time::Duration};

use super::{FaultOverrides, HeaderMatcher};

/// Envoy's route timeout when `RouteAction.timeout` is unset.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's (and gRFC A44's) default backoff base interval.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// The timeout and retry policy of one route (from its `RouteAction`, the retry policy falling
/// back to the virtual host's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The effective route timeout, covering every retry (Envoy): `RouteAction.timeout`, 15 s
    /// when unset, `None` when set to 0 (disabled). gRPC ignores this field (gRFC A31) and uses
    /// [`RoutePolicy::max_stream_duration`] instead.
    pub timeout: Option<Duration>,
    /// `max_stream_duration.max_stream_duration` (`None` when unset or 0): the cap gRPC applies
    /// to the call's deadline (gRFC A31), never extending the caller's.
    pub max_stream_duration: Option<Duration>,
    /// `max_stream_duration.grpc_timeout_header_max`, when present (`Some(ZERO)` = take the
    /// caller's `grpc-timeout` unchanged). When present it replaces `max_stream_duration` as
    /// gRPC's cap (gRFC A31).
    pub grpc_timeout_header_max: Option<Duration>,
    /// The route's `retry_policy`, else the virtual host's; `None` = no retries.
    pub retry: Option<Arc<RetryPolicy>>,
    /// Fault-filter `typed_per_filter_config` overrides of the route, its virtual host and its
    /// weighted clusters (see [`super::FaultPolicy`]).
    pub faults: FaultOverrides,
    /// `RouteAction.idle_timeout` as configured: `None` when unset (the listener's
    /// `stream_idle_timeout` applies, [`super::Listener::stream_idle_timeout`]), `Some(ZERO)`
    /// to disable the idle timeout on this route even when the listener sets one (Envoy). gRPC
    /// ignores it.
    pub idle_timeout: Option<Duration>,
    /// `RouteAction.priority`: which of the cluster's circuit-breaker thresholds (and
    /// counters) the route's requests use (Envoy `RoutingPriority`; gRPC ignores it).
    pub priority: RoutingPriority,
    /// Header mutations and path / host rewrites the router applies (`None`: none; see
    /// [`super::RequestRewrite`]).
    pub rewrite: Option<Arc<super::RequestRewrite>>,
}

/// `envoy.config.core.v3.RoutingPriority`: a route's requests count against the cluster's
/// circuit-breaker thresholds of this priority, with their own counters (Envoy
/// `circuit_breaker.proto`, `RouteAction.priority`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoutingPriority {
    /// `DEFAULT`.
    #[default]
    Default,
    /// `HIGH`.
    High,
}

impl RoutingPriority {
    /// `default` or `high`, for messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingPriority::Default => "default",
            RoutingPriority::High => "high",
        }
    }
}

impl Default for RoutePolicy {
    /// What an empty `RouteAction` means: 15 s route timeout, no stream cap, no retries, the
    /// listener's idle timeout, DEFAULT priority.
    fn default() -> Self {
        RoutePolicy {
            timeout: Some(DEFAULT_ROUTE_TIMEOUT),
            max_stream_duration: None,
            grpc_timeout_header_max: None,
            retry: None,
            faults: FaultOverrides::default(),
            idle_timeout: None,
            priority: RoutingPriority::Default,
            rewrite: None,
        }
    }
}

/// `envoy.config.route.v3.RetryPolicy`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The conditions that allow a retry (`retry_on`; unknown names are ignored, as gRPC and
    /// Envoy's header parser do).
    pub retry_on: RetryOn,
    /// `num_retries` (default 1). 0 is accepted (Envoy: no retries) although gRPC NACKs it
    /// (gRFC A44); gRPC also caps attempts at 5, which the gRPC transport applies itself.
    pub num_retries: u32,
    /// `per_try_timeout`; `None` when unset or 0. Envoy ignores it when not below the route
    /// timeout, which the request path applies (the earlier deadline wins).
    pub per_try_timeout: Option<Duration>,
    /// `retry_back_off` (defaults 25 ms / 10 × base; values below 1 ms are raised to 1 ms).
    pub backoff: RetryBackoff,
    /// `retriable_status_codes`, used by [`RetryOn::RETRIABLE_STATUS_CODES`].
    pub retriable_status_codes: Arc<[u16]>,
    /// `retriable_headers` (response headers), used by [`RetryOn::RETRIABLE_HEADERS`].
    pub retriable_headers: Arc<[HeaderMatcher]>,
    /// `retry_host_predicate` includes `envoy.retry_host_predicates.previous_hosts`: a retry
    /// avoids the endpoints earlier attempts used.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts` (default 1; Istio sets 5): how many picks a retry may
    /// make to find an endpoint the host predicate accepts.
    pub host_selection_max_attempts: u32,
}

/// `RetryPolicy.retry_back_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBackoff {
    /// `base_interval` (default 25 ms), ≥ 1 ms.
    pub base: Duration,
    /// `max_interval` (default 10 × base), ≥ base.
    pub max: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            base: DEFAULT_BACKOFF_BASE,
            max: DEFAULT_BACKOFF_BASE * 10,
        }
    }
}

/// A set of `retry_on` conditions (Envoy router `x-envoy-retry-on` / `x-envoy-retry-grpc-on`
/// names). A small bit set: `contains`, `|`, and [`RetryOn::parse`] for the comma list.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RetryOn(u32);

impl RetryOn {
    /// No condition.
    pub const NONE: RetryOn = RetryOn(0);
    /// `5xx`: any 5xx response, a reset, a connect failure, a refused stream or a per-try
    /// timeout.
    pub const SERVER_ERROR: RetryOn = RetryOn(1);
    /// `gateway-error`: 502, 503, 504, and (as Envoy) resets, connect failures and per-try
    /// timeouts.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// `reset`: no response (disconnect, reset, per-try timeout).
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// `connect-failure`.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM reset.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 4);
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// `retriable-status-codes`: any of [`RetryPolicy::retriable_status_codes`].
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    /// `retriable-headers`: a response header matching [`RetryPolicy::retriable_headers`].
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 7);
    /// `envoy-ratelimited`: a response carrying `x-envoy-ratelimited`.
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 8);
    /// gRPC `cancelled` (status 1 in the response headers).
    pub const CANCELLED: RetryOn = RetryOn(1 << 9);
    /// gRPC `deadline-exceeded` (status 4).
    pub const DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 10);
    /// gRPC `internal` (status 13).
    pub const INTERNAL: RetryOn = RetryOn(1 << 11);
    /// gRPC `resource-exhausted` (status 8).
    pub const RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 12);
    /// gRPC `unavailable` (status 14).
    pub const UNAVAILABLE: RetryOn = RetryOn(1 << 13);
    /// The five gRPC conditions (the only ones gRPC clients honour, gRFC A44).
    pub const GRPC: RetryOn = RetryOn(0b11111 << 9);

    const NAMES: [(&'static str, RetryOn); 14] = [
        ("5xx", RetryOn::SERVER_ERROR),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("reset", RetryOn::RESET),
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("refused-stream", RetryOn::REFUSED_STREAM),
        ("retriable-4xx", RetryOn::RETRIABLE_4XX),
        ("retriable-status-codes", RetryOn::RETRIABLE_STATUS_CODES),
        ("retriable-headers", RetryOn::RETRIABLE_HEADERS),
        ("envoy-ratelimited", RetryOn::ENVOY_RATELIMITED),
        ("cancelled", RetryOn::CANCELLED),
        ("deadline-exceeded", RetryOn::DEADLINE_EXCEEDED),
        ("internal", RetryOn::INTERNAL),
        ("resource-exhausted", RetryOn::RESOURCE_EXHAUSTED),
        ("unavailable", RetryOn::UNAVAILABLE),
    ];

    /// Parses a comma-separated `retry_on` list; unknown names (and whitespace around names)
    /// are ignored.
    pub fn parse(list: &str) -> RetryOn {
        list.split(',')
            .map(str::trim)
            .filter_map(|n| Self::NAMES.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
            .fold(RetryOn::NONE, |a, b| a | b)
    }

    /// Whether any condition of `other` is in `self`.
    pub const fn intersects(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether every condition of `other` is in `self`.
    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryOn({self})")
    }
}

impl fmt::Display for RetryOn {
    /// The comma-separated `retry_on` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, v) in Self::NAMES {
            if self.contains(v) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A cluster's limit on concurrent retries (`circuit_breakers.thresholds` with priority
/// DEFAULT; Envoy `circuit_breaker.proto`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryLimits {
    /// `max_requests`: concurrent requests allowed to the cluster (default 1024, as in Envoy;
    /// gRPC enforces the same default even with no circuit breaker configured, gRFC A32). Over
    /// it a request fails fast with an overflow, not retried.
    pub max_requests: u32,
    /// `max_retries`: concurrent retries allowed to the cluster (default 3). Ignored when a
    /// budget is set (Envoy).
    pub max_retries: u32,
    /// `retry_budget`, when configured.
    pub budget: Option<RetryBudget>,
}

impl Eq for RetryLimits {}

impl Default for RetryLimits {
    fn default() -> Self {
        RetryLimits {
            max_requests: 1024,
            max_retries: 3,
            budget: None,
        }
    }
}

impl RetryLimits {
    /// Concurrent retries allowed while `active_requests` requests are in flight.
    pub fn allowed(&self, active_requests: usize) -> usize {
        match &self.budget {
            None => self.max_retries as usize,
            Some(b) => {
                let share = (active_requests as f64 * b.budget_percent / 100.0) as usize;
                share.max(b.min_retry_concurrency as usize)
            }
        }
    }
}

/// `Thresholds.retry_budget`: retries may be at most a share of active requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// `budget_percent` (default 20.0), in `0.0..=100.0`.
    pub budget_percent: f64,
    /// `min_retry_concurrency` (default 3): retries always allowed up to this many.
    pub min_retry_concurrency: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            budget_percent: 20.0,
            min_retry_concurrency: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_parses_and_prints() {
        let r = RetryOn::parse("5xx, connect-failure,bogus,unavailable");
        assert!(r.contains(RetryOn::SERVER_ERROR | RetryOn::CONNECT_FAILURE));
        assert!(r.intersects(RetryOn::GRPC));
        assert!(!r.contains(RetryOn::RESET));
        assert_eq!(r.to_string(), "5xx,connect-failure,unavailable");
        assert!(RetryOn::parse("nope").is_empty());
    }

    #[test]
    fn budget_is_a_share_with_a_floor() {
        let l = RetryLimits {
            max_retries: 3,
            max_requests: 1024,
            budget: Some(RetryBudget::default()),
        };
        assert_eq!(l.allowed(0), 3);
        assert_eq!(l.allowed(100), 20);
        assert_eq!(RetryLimits::default().allowed(1000), 3);
    }
}
