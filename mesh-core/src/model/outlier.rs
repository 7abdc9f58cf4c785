//! Passive health: a cluster's `outlier_detection` and its connection-pool circuit breakers
//! (Envoy `outlier_detection.proto`, `circuit_breaker.proto`, `outlier.rst`; gRFC A50;
//! XDS-SEMANTICS.md rows 16–17).
//!
//! Values are validated and defaulted at conversion: every field here holds Envoy's default when
//! the proto left it unset, percentages are within `0..=100` and durations are positive.

use std::time::Duration;

/// `envoy.config.cluster.v3.OutlierDetection`, validated, Envoy's defaults filled in.
///
/// A consecutive-failure threshold of 0 never trips (Envoy compares the incremented counter with
/// the threshold, so 0 is never reached); an `enforcing_*` of 0 detects without ejecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `interval` (default 10 s): time between ejection sweeps (success rate, failure
    /// percentage, un-ejection).
    pub interval: Duration,
    /// `base_ejection_time` (default 30 s): an ejection lasts this × times ejected.
    pub base_ejection_time: Duration,
    /// `max_ejection_time` (default 300 s, never below `base_ejection_time`): cap on one
    /// ejection's length.
    pub max_ejection_time: Duration,
    /// `max_ejection_percent` (default 10): ejections stop once this share of the cluster is
    /// ejected — but one host may always be ejected (Envoy; grpc-java #9489 matches it).
    pub max_ejection_percent: u32,
    /// `consecutive_5xx` (default 5) and `enforcing_consecutive_5xx` (default 100).
    pub consecutive_5xx: Consecutive,
    /// `consecutive_gateway_failure` (default 5) and its enforcing (default 0).
    pub consecutive_gateway_failure: Consecutive,
    /// `split_external_local_origin_errors` (default false): when set, local-origin failures
    /// (connect failure, timeout, reset) count only toward
    /// [`OutlierDetection::consecutive_local_origin_failure`], not toward the 5xx / gateway
    /// counters, success rate or failure percentage.
    pub split_external_local_origin_errors: bool,
    /// `consecutive_local_origin_failure` (default 5) and its enforcing (default 100); only
    /// used with `split_external_local_origin_errors`.
    pub consecutive_local_origin_failure: Consecutive,
    /// Success-rate ejection, evaluated at each interval.
    pub success_rate: SuccessRate,
    /// Failure-percentage ejection, evaluated at each interval.
    pub failure_percentage: FailurePercentage,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            consecutive_5xx: Consecutive {
                threshold: 5,
                enforcing: 100,
            },
            consecutive_gateway_failure: Consecutive {
                threshold: 5,
                enforcing: 0,
            },
            split_external_local_origin_errors: false,
            consecutive_local_origin_failure: Consecutive {
                threshold: 5,
                enforcing: 100,
            },
            success_rate: SuccessRate::default(),
            failure_percentage: FailurePercentage::default(),
        }
    }
}

/// A consecutive-failure detector: eject once `threshold` failures happen in a row, enforced
/// with probability `enforcing` %.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consecutive {
    /// Failures in a row that trip it (0 = never).
    pub threshold: u32,
    /// Percent chance (`0..=100`) that a trip ejects.
    pub enforcing: u32,
}

/// Success-rate ejection: hosts whose success rate falls below `mean − stdev × stdev_factor /
/// 1000` of the cluster's hosts with enough volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessRate {
    /// `success_rate_minimum_hosts` (default 5): hosts with enough volume needed to evaluate.
    pub minimum_hosts: u32,
    /// `success_rate_request_volume` (default 100): requests in an interval for a host to count.
    pub request_volume: u32,
    /// `success_rate_stdev_factor` (default 1900, i.e. 1.9 standard deviations).
    pub stdev_factor: u32,
    /// `enforcing_success_rate` (default 100); 0 disables the algorithm.
    pub enforcing: u32,
}

impl Default for SuccessRate {
    fn default() -> Self {
        SuccessRate {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1900,
            enforcing: 100,
        }
    }
}

/// Failure-percentage ejection: hosts whose failure share in an interval reaches `threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePercentage {
    /// `failure_percentage_threshold` (default 85).
    pub threshold: u32,
    /// `failure_percentage_minimum_hosts` (default 5).
    pub minimum_hosts: u32,
    /// `failure_percentage_request_volume` (default 50).
    pub request_volume: u32,
    /// `enforcing_failure_percentage` (default 0 = disabled).
    pub enforcing: u32,
}

impl Default for FailurePercentage {
    fn default() -> Self {
        FailurePercentage {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
            enforcing: 0,
        }
    }
}

/// A cluster's connection-pool circuit breakers (`circuit_breakers.thresholds`), per routing
/// priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Thresholds with priority DEFAULT.
    pub default: PoolLimits,
    /// Thresholds with priority HIGH.
    pub high: PoolLimits,
}

impl ConnectionLimits {
    /// The limits of routing priority `p`.
    pub fn for_priority(&self, p: super::RoutingPriority) -> PoolLimits {
        match p {
            super::RoutingPriority::Default => self.default,
            super::RoutingPriority::High => self.high,
        }
    }
}

/// `max_connections` and `max_pending_requests` of one priority (Envoy defaults 1024 each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// `max_connections`: connections to the cluster's endpoints at once.
    pub max_connections: u32,
    /// `max_pending_requests`: requests waiting for a connection at once.
    pub max_pending_requests: u32,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_connections: 1024,
            max_pending_requests: 1024,
        }
    }
}
