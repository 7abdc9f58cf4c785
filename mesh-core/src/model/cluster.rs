//! Cluster: an upstream service and how to balance across it (CDS; gRFC A27, A42, A48; Envoy
//! `cluster.proto` `lb_policy`, `ring_hash_lb_config`, `maglev_lb_config`, `common_lb_config`).

use std::{sync::Arc, time::Duration};

use super::{
    ClusterLoadAssignment, ConnectionLimits, OutlierDetection, RetryLimits, RoutingPriority,
    UpstreamTransport,
};

/// A CDS resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Cluster name, e.g. `outbound|9080|v2|reviews.default.svc.cluster.local`.
    pub name: Arc<str>,
    /// Where its endpoints come from.
    pub discovery: ClusterDiscovery,
    /// How an endpoint is picked.
    pub lb_policy: LbPolicy,
    /// `connect_timeout` (Envoy default 5 s).
    pub connect_timeout: Duration,
    /// Concurrent-retry limits from `circuit_breakers` (priority DEFAULT).
    pub retry_limits: RetryLimits,
    /// The same from the thresholds of priority HIGH (Envoy's defaults when absent), for routes
    /// with `priority: HIGH` (Envoy only; gRPC reads DEFAULT alone, gRFC A32).
    pub retry_limits_high: RetryLimits,
    /// Connection-pool limits from `circuit_breakers` (`max_connections`,
    /// `max_pending_requests`, priorities DEFAULT and HIGH).
    pub connection_limits: ConnectionLimits,
    /// `outlier_detection`; `None` when the cluster has none (nothing is ejected).
    pub outlier_detection: Option<OutlierDetection>,
    /// Settings every policy shares: panic threshold, locality weighting.
    pub lb_common: CommonLbConfig,
    /// `transport_socket`: plaintext or TLS (see [`UpstreamTransport`]).
    pub transport: UpstreamTransport,
}

impl Cluster {
    /// An EDS cluster over ADS whose load assignment is named like the cluster, with Envoy's
    /// defaults otherwise (5 s connect timeout, default circuit-breaker limits) — for building
    /// config in code.
    pub fn eds(name: &str, lb_policy: LbPolicy) -> Cluster {
        Cluster {
            name: name.into(),
            discovery: ClusterDiscovery::Eds {
                service_name: name.into(),
            },
            lb_policy,
            connect_timeout: Duration::from_secs(5),
            retry_limits: Default::default(),
            retry_limits_high: Default::default(),
            connection_limits: Default::default(),
            outlier_detection: None,
            lb_common: CommonLbConfig::default(),
            transport: UpstreamTransport::Plaintext,
        }
    }

    /// The retry / request limits of routing priority `p`.
    pub fn retry_limits_for(&self, p: RoutingPriority) -> &RetryLimits {
        match p {
            RoutingPriority::Default => &self.retry_limits,
            RoutingPriority::High => &self.retry_limits_high,
        }
    }

    /// The EDS resource name this cluster waits for, if it is an EDS cluster.
    pub fn eds_service_name(&self) -> Option<&str> {
        match &self.discovery {
            ClusterDiscovery::Eds { service_name } => Some(service_name),
            ClusterDiscovery::Static(_) => None,
        }
    }
}

/// How a cluster's endpoints are discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterDiscovery {
    /// `type: EDS` over ADS; `service_name` is `eds_cluster_config.service_name`, or the
    /// cluster name when unset.
    Eds {
        /// The ClusterLoadAssignment to subscribe to.
        service_name: Arc<str>,
    },
    /// `type: STATIC` with an inline `load_assignment`.
    Static(Arc<ClusterLoadAssignment>),
}

/// Load-balancing policy, from `lb_policy` or `load_balancing_policy` (the latter wins, first
/// supported entry; gRFC A52).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LbPolicy {
    /// Weighted round robin (the default).
    RoundRobin,
    /// Power-of-`choice_count` choices, least outstanding requests wins (gRFC A48).
    LeastRequest {
        /// Candidates sampled per pick, 2..=10 (default 2; >10 clamped).
        choice_count: u32,
    },
    /// A uniformly random routable endpoint (Envoy RANDOM: endpoint weights are not used).
    Random,
    /// Consistent hashing on a ring of XXH64 points (Envoy RING_HASH, gRFC A42): the request
    /// hash comes from the route's hash policies.
    RingHash {
        /// `minimum_ring_size` (default 1024).
        min_ring_size: u64,
        /// `maximum_ring_size` (default and upper bound 8 388 608; gRPC clamps both sizes to a
        /// client cap of 4096 by default, this mesh does not).
        max_ring_size: u64,
    },
    /// Consistent hashing with a Maglev lookup table (Envoy MAGLEV).
    Maglev {
        /// `table_size`, a prime (default 65 537, at most 5 000 011).
        table_size: u64,
    },
}

impl LbPolicy {
    /// Envoy's default `minimum_ring_size`.
    pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
    /// Envoy's default and largest `maximum_ring_size`.
    pub const MAX_RING_SIZE: u64 = 8_388_608;
    /// Envoy's default Maglev `table_size`.
    pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65_537;
    /// Envoy's largest Maglev `table_size`.
    pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

    /// RING_HASH with Envoy's default sizes.
    pub const fn ring_hash() -> LbPolicy {
        LbPolicy::RingHash {
            min_ring_size: Self::DEFAULT_MIN_RING_SIZE,
            max_ring_size: Self::MAX_RING_SIZE,
        }
    }

    /// MAGLEV with Envoy's default table size.
    pub const fn maglev() -> LbPolicy {
        LbPolicy::Maglev {
            table_size: Self::DEFAULT_MAGLEV_TABLE_SIZE,
        }
    }

    /// Whether the policy picks by a request hash (RING_HASH, MAGLEV): only then do routes
    /// compute one.
    pub const fn uses_hash(self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

/// What every policy shares: Envoy `Cluster.common_lb_config` (or, under
/// `load_balancing_policy`, the policy's own `locality_lb_config` /
/// `locality_weighted_lb_config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommonLbConfig {
    /// `healthy_panic_threshold` in parts per million of a priority level's endpoints (Envoy
    /// default 50 % = 500 000; 0 disables panic mode). Below it, and when the priorities
    /// together are not healthy enough, the level balances over all of its endpoints, healthy
    /// or not. gRPC has no panic mode: a control plane wanting gRPC's behaviour sets 0.
    pub healthy_panic_threshold_ppm: u32,
    /// `locality_weighted_lb_config` is set: pick a locality by its weight (scaled by its
    /// health), then an endpoint inside it (Envoy). Without it locality weights are ignored,
    /// except by RING_HASH / MAGLEV, which always weigh an endpoint by locality × endpoint
    /// weight (gRFC A42).
    pub locality_weighted: bool,
    /// `slow_start_config` of ROUND_ROBIN / LEAST_REQUEST (legacy `*_lb_config` or the
    /// typed policy), `None` when unset or its window is 0.
    pub slow_start: Option<SlowStart>,
}

/// Envoy's slow start (`SlowStartConfig`): an endpoint's weight ramps from
/// `min_weight_percent` to full over `window` after it joins the cluster, as
/// `weight × max(min_weight, time_factor^(1/aggression))`, `time_factor = max(age, 1 ms) /
/// window` (Envoy `EdfLoadBalancerBase::applySlowStartFactor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlowStart {
    /// `slow_start_window` (non-zero).
    pub window: std::time::Duration,
    /// `aggression.default_value` in thousandths (default 1 000 = linear; > 0).
    pub aggression_milli: u32,
    /// `min_weight_percent` in parts per million (default 10 % = 100 000).
    pub min_weight_ppm: u32,
}

impl SlowStart {
    /// The factor (0..=1) an endpoint `age` old gets.
    pub fn factor(&self, age: std::time::Duration) -> f64 {
        if age >= self.window {
            return 1.0;
        }
        let t =
            age.max(std::time::Duration::from_millis(1)).as_secs_f64() / self.window.as_secs_f64();
        let aggression = f64::from(self.aggression_milli) / 1000.0;
        let ramp = if self.aggression_milli == 1000 {
            t
        } else {
            t.powf(1.0 / aggression)
        };
        ramp.max(f64::from(self.min_weight_ppm) / 1e6).min(1.0)
    }
}

impl CommonLbConfig {
    /// Envoy's default panic threshold, 50 %.
    pub const DEFAULT_PANIC_THRESHOLD_PPM: u32 = 500_000;
}

impl Default for CommonLbConfig {
    /// Envoy's defaults: panic below 50 % healthy, locality weights ignored.
    fn default() -> Self {
        CommonLbConfig {
            healthy_panic_threshold_ppm: Self::DEFAULT_PANIC_THRESHOLD_PPM,
            locality_weighted: false,
            slow_start: None,
        }
    }
}
