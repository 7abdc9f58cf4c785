//! Route policies compiled for the request path, and per-cluster retry accounting.
//!
//! A [`CompiledPolicy`] is built once per route at snapshot build and shared (`Arc`) with every
//! request the route matches, so timeouts and retry rules reach the request path without parsing
//! or allocating. [`RetryCounters`] live in the cluster's handle and survive snapshot rebuilds, as
//! Envoy's `retry_budget` / `max_retries` circuit breaker counts live in the cluster (Envoy
//! `circuit_breaker.proto`; XDS-SEMANTICS.md rows 13, 16).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use http::{header::HeaderName, HeaderMap, Method};

use super::matcher::{CompiledHeader, RequestView};
use crate::model::{RetryLimits, RetryPolicy, RoutePolicy, RoutingPriority};

/// A route's timeouts and retry policy, ready for the request path.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// The effective route timeout (covers all retries); `None` = disabled.
    pub timeout: Option<Duration>,
    /// gRPC's deadline cap (`max_stream_duration`), see [`RoutePolicy`].
    pub max_stream_duration: Option<Duration>,
    /// gRPC's `grpc_timeout_header_max`, see [`RoutePolicy`].
    pub grpc_timeout_header_max: Option<Duration>,
    /// gRPC's effective cap on a call's deadline (gRFC A31), derived once from the two fields
    /// above; `None` = the caller's deadline alone.
    pub grpc_cap: Option<GrpcCap>,
    /// The retry policy, if any.
    pub retry: Option<CompiledRetry>,
    /// Fault injection on this route (set at snapshot build from the listener's fault filter
    /// and the route's overrides); `None` = no fault can apply.
    pub fault: Option<Arc<super::fault::RouteFaults>>,
    /// The effective idle timeout (Envoy, HTTP only): the route's `idle_timeout` when set (0 ⇒
    /// `None`), else the listener's `stream_idle_timeout` (resolved at snapshot build, see
    /// [`CompiledPolicy::with_listener`]); `None` = no idle timeout.
    pub idle_timeout: Option<Duration>,
    /// The route's `priority`: which circuit-breaker thresholds and counters its requests use.
    pub priority: RoutingPriority,
    /// Header mutations and path / host rewrites (`None`: the route changes nothing).
    pub rewrite: Option<Arc<crate::model::RequestRewrite>>,
}

impl CompiledPolicy {
    /// Compiles a route policy.
    pub fn new(p: &RoutePolicy) -> Self {
        CompiledPolicy {
            timeout: p.timeout,
            max_stream_duration: p.max_stream_duration,
            grpc_timeout_header_max: p.grpc_timeout_header_max,
            grpc_cap: GrpcCap::of(p),
            retry: p.retry.as_ref().map(|r| CompiledRetry::new(r.clone())),
            fault: None,
            idle_timeout: p.idle_timeout.filter(|d| !d.is_zero()),
            priority: p.priority,
            rewrite: p.rewrite.clone(),
        }
    }

    /// Compiles a route policy under a listener whose `stream_idle_timeout` is
    /// `stream_idle_timeout` (effective: `None` = disabled): the route's `idle_timeout`
    /// overrides it, 0 disabling the timeout on the route (Envoy `RouteAction.idle_timeout`).
    pub fn with_listener(p: &RoutePolicy, stream_idle_timeout: Option<Duration>) -> Self {
        let mut c = CompiledPolicy::new(p);
        if p.idle_timeout.is_none() {
            c.idle_timeout = stream_idle_timeout;
        }
        c
    }
}

/// gRPC's cap on a call's deadline (gRFC A31): `grpc_timeout_header_max` when set, else
/// `max_stream_duration`; zero means no cap. Kept with its `grpc-timeout` encoding so a request
/// whose deadline the cap lowers gets the header without formatting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcCap {
    /// The cap.
    pub after: Duration,
    /// `after` as a `grpc-timeout` header value.
    pub header: http::HeaderValue,
}

impl GrpcCap {
    fn of(p: &RoutePolicy) -> Option<GrpcCap> {
        let after = match p.grpc_timeout_header_max {
            Some(max) => max,
            None => p.max_stream_duration?,
        };
        (!after.is_zero()).then(|| GrpcCap {
            after,
            header: encode_grpc_timeout(after),
        })
    }
}

/// Encodes `d` as a `grpc-timeout` value (gRPC PROTOCOL-HTTP2): milliseconds, rounded up so the
/// server never sees less time than the call has, while they fit 8 digits; else seconds.
pub fn encode_grpc_timeout(d: Duration) -> http::HeaderValue {
    let ms = d.as_nanos().div_ceil(1_000_000);
    let s = if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    };
    http::HeaderValue::try_from(s).unwrap_or_else(|_| http::HeaderValue::from_static("99999999S"))
}

impl Default for CompiledPolicy {
    fn default() -> Self {
        CompiledPolicy::new(&RoutePolicy::default())
    }
}

/// A retry policy with its `retriable_headers` matchers compiled.
#[derive(Debug)]
pub struct CompiledRetry {
    /// The validated policy.
    pub policy: Arc<RetryPolicy>,
    headers: Box<[CompiledHeader]>,
}

impl CompiledRetry {
    fn new(policy: Arc<RetryPolicy>) -> Self {
        let headers = policy
            .retriable_headers
            .iter()
            .map(CompiledHeader::new)
            .collect();
        CompiledRetry { policy, headers }
    }

    /// Whether any `retriable_headers` matcher matches these response headers (Envoy: "if any
    /// header matches").
    pub fn headers_match(&self, headers: &HeaderMap) -> bool {
        let view = RequestView {
            authority: "",
            path_and_query: "",
            method: &Method::GET,
            scheme: None,
            headers,
        };
        self.headers.iter().any(|h| h.matches(&view))
    }

    /// `true` when `name` is ever looked at by a header matcher (for tests and debugging).
    pub fn watches_header(&self, name: &HeaderName) -> bool {
        self.policy
            .retriable_headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name.as_str()))
    }
}

/// A cluster's live retry accounting: requests in flight and retries in flight, shared by every
/// request routed to the cluster (Envoy's `rq_active` / `rq_retry` resource counters).
#[derive(Debug, Default)]
pub struct RetryCounters {
    active_requests: AtomicUsize,
    active_retries: AtomicUsize,
    overflows: std::sync::atomic::AtomicU64,
}

impl RetryCounters {
    /// Counts a request as active until the guard drops.
    pub fn request(self: &Arc<Self>) -> ActiveGuard {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            counters: self.clone(),
            retry: false,
        }
    }

    /// Admits a request if fewer than `limits.max_requests` are in flight (Envoy's
    /// `max_requests` breaker; gRFC A32); it counts until the guard drops. `None` = overflow,
    /// which is counted (see [`RetryCounters::overflows`]).
    pub fn try_request(self: &Arc<Self>, limits: &RetryLimits) -> Option<ActiveGuard> {
        let max = limits.max_requests as usize;
        let mut current = self.active_requests.load(Ordering::Relaxed);
        loop {
            if current >= max {
                self.overflows.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self.active_requests.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ActiveGuard {
                        counters: self.clone(),
                        retry: false,
                    })
                }
                Err(now) => current = now,
            }
        }
    }

    /// Requests refused by the `max_requests` breaker so far.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Admits a retry if the cluster's limit allows one more concurrent retry; the retry counts
    /// until the guard drops. `None` = over the budget (or `max_retries`).
    pub fn try_retry(self: &Arc<Self>, limits: &RetryLimits) -> Option<ActiveGuard> {
        let allowed = limits.allowed(self.active_requests.load(Ordering::Relaxed));
        let mut current = self.active_retries.load(Ordering::Relaxed);
        loop {
            if current >= allowed {
                return None;
            }
            match self.active_retries.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(ActiveGuard {
                        counters: self.clone(),
                        retry: true,
                    })
                }
                Err(now) => current = now,
            }
        }
    }

    /// Requests in flight.
    pub fn active_requests(&self) -> usize {
        self.active_requests.load(Ordering::Relaxed)
    }

    /// Retries in flight.
    pub fn active_retries(&self) -> usize {
        self.active_retries.load(Ordering::Relaxed)
    }
}

/// Holds one active request or retry against a cluster's [`RetryCounters`].
#[derive(Debug)]
pub struct ActiveGuard {
    counters: Arc<RetryCounters>,
    retry: bool,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let c = if self.retry {
            &self.counters.active_retries
        } else {
            &self.counters.active_requests
        };
        c.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeaderMatch, HeaderMatcher, RetryBudget};

    #[test]
    fn max_requests_admits_up_to_the_limit_and_counts_overflows() {
        let c = Arc::new(RetryCounters::default());
        let limits = RetryLimits {
            max_requests: 2,
            ..RetryLimits::default()
        };
        let a = c.try_request(&limits).expect("1st");
        let _b = c.try_request(&limits).expect("2nd");
        assert!(c.try_request(&limits).is_none(), "3rd overflows");
        assert_eq!(c.overflows(), 1);
        drop(a);
        assert!(
            c.try_request(&limits).is_some(),
            "room again once one completes"
        );
        assert_eq!(
            c.active_requests(),
            1,
            "the admitted guard was dropped at once"
        );
    }

    #[test]
    fn budget_admits_a_share_of_active_requests() {
        let c = Arc::new(RetryCounters::default());
        let limits = RetryLimits {
            max_retries: 3,
            max_requests: 1024,
            budget: Some(RetryBudget {
                budget_percent: 50.0,
                min_retry_concurrency: 1,
            }),
        };
        let reqs: Vec<_> = (0..4).map(|_| c.request()).collect();
        let r1 = c.try_retry(&limits).expect("1 of 2");
        let r2 = c.try_retry(&limits).expect("2 of 2");
        assert!(c.try_retry(&limits).is_none(), "50 % of 4 is 2");
        drop(r1);
        let _r3 = c.try_retry(&limits).expect("a slot freed");
        drop((r2, reqs));
        assert_eq!(c.active_requests(), 0);
        assert_eq!(c.active_retries(), 1);
    }

    #[test]
    fn route_idle_timeout_overrides_the_listener_and_zero_disables() {
        let listener = Some(Duration::from_secs(300));
        let route = |idle| RoutePolicy {
            idle_timeout: idle,
            ..RoutePolicy::default()
        };
        let c = |idle, l| CompiledPolicy::with_listener(&route(idle), l).idle_timeout;
        assert_eq!(c(None, listener), listener, "unset: the listener's");
        assert_eq!(c(None, None), None, "listener disabled");
        assert_eq!(
            c(Some(Duration::from_secs(2)), listener),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            c(Some(Duration::from_secs(2)), None),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            c(Some(Duration::ZERO), listener),
            None,
            "0 on the route disables"
        );
    }

    #[test]
    fn retriable_headers_match_response_headers() {
        let policy = RetryPolicy {
            retry_on: crate::model::RetryOn::RETRIABLE_HEADERS,
            num_retries: 1,
            per_try_timeout: None,
            backoff: Default::default(),
            retriable_status_codes: Arc::new([]),
            retriable_headers: Arc::new([HeaderMatcher {
                name: "x-retry".into(),
                matcher: HeaderMatch::Present(true),
                invert: false,
                treat_missing_as_empty: false,
            }]),
            previous_hosts: false,
            host_selection_max_attempts: 1,
        };
        let r = CompiledRetry::new(Arc::new(policy));
        let mut h = HeaderMap::new();
        assert!(!r.headers_match(&h));
        h.insert("x-retry", "1".parse().unwrap());
        assert!(r.headers_match(&h));
        assert!(r.watches_header(&HeaderName::from_static("x-retry")));
    }
}
