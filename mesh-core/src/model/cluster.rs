//! Cluster: an upstream service and how to balance across it (CDS; gRFC A27, A48).

use std::{sync::Arc, time::Duration};

use super::{ClusterLoadAssignment, ConnectionLimits, OutlierDetection, RetryLimits};

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
    /// Connection-pool limits from `circuit_breakers` (`max_connections`,
    /// `max_pending_requests`, priorities DEFAULT and HIGH).
    pub connection_limits: ConnectionLimits,
    /// `outlier_detection`; `None` when the cluster has none (nothing is ejected).
    pub outlier_detection: Option<OutlierDetection>,
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
            connection_limits: Default::default(),
            outlier_detection: None,
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
}
