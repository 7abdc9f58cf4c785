//! ClusterLoadAssignment: endpoints grouped by locality and priority (EDS; gRFC A27).

use std::{net::SocketAddr, sync::Arc};

/// An EDS resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterLoadAssignment {
    /// The EDS service name (the cluster's `service_name`, or its name).
    pub cluster_name: Arc<str>,
    /// Localities; priorities are contiguous from 0 (validated).
    pub localities: Arc<[LocalityEndpoints]>,
    /// `policy.overprovisioning_factor` in percent (default 140; > 0). A priority level counts
    /// as fully healthy while `healthy share × factor ≥ 100 %` (Envoy). gRPC does not
    /// overprovision (it announces `envoy.lb.does_not_support_overprovisioning`).
    pub overprovisioning_factor: u32,
    /// `policy.drop_overloads`, in order: each drops its share of requests before an endpoint
    /// is picked, with its own draw (gRFC A27 `xds_cluster_impl`; Envoy applies one).
    pub drop_overloads: Arc<[DropOverload]>,
}

/// One `drop_overloads` entry: a category and the share of requests it drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropOverload {
    /// The category, reported with every drop (gRPC load reports count drops by it).
    pub category: Arc<str>,
    /// The share dropped, in parts per million (a numerator above its denominator is 100 %).
    pub per_million: u32,
}

impl ClusterLoadAssignment {
    /// Envoy's default overprovisioning factor, 140 %.
    pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;
}

impl ClusterLoadAssignment {
    /// One locality (weight 1, priority 0) holding `endpoints` — for building config in code.
    pub fn single_locality(
        cluster_name: &str,
        endpoints: impl IntoIterator<Item = Endpoint>,
    ) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: cluster_name.into(),
            localities: Arc::new([LocalityEndpoints {
                locality: Locality::default(),
                weight: Some(1),
                priority: 0,
                endpoints: endpoints.into_iter().collect(),
            }]),
            overprovisioning_factor: ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
            drop_overloads: Default::default(),
        }
    }
}

/// One `LocalityLbEndpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalityEndpoints {
    /// Region / zone / sub-zone.
    pub locality: Locality,
    /// `load_balancing_weight`; `None` when unset.
    pub weight: Option<u32>,
    /// Priority, 0 is highest.
    pub priority: u32,
    /// Endpoints in this locality.
    pub endpoints: Arc<[Endpoint]>,
}

/// `envoy.config.core.v3.Locality`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    /// Region.
    pub region: Arc<str>,
    /// Zone.
    pub zone: Arc<str>,
    /// Sub-zone.
    pub sub_zone: Arc<str>,
}

/// One `LbEndpoint` with a socket address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// IP and port.
    pub address: SocketAddr,
    /// EDS health status.
    pub health: HealthStatus,
    /// `load_balancing_weight` (≥ 1; unset = 1).
    pub weight: u32,
}

impl Endpoint {
    /// A HEALTHY endpoint of weight 1.
    pub fn healthy(address: SocketAddr) -> Endpoint {
        Endpoint {
            address,
            health: HealthStatus::Healthy,
            weight: 1,
        }
    }
}

/// `envoy.config.core.v3.HealthStatus`, reduced to what routing needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// `UNKNOWN` — treated as healthy.
    Unknown,
    /// `HEALTHY`.
    Healthy,
    /// `UNHEALTHY`, `TIMEOUT`.
    Unhealthy,
    /// `DRAINING` — not picked for new requests.
    Draining,
    /// `DEGRADED`.
    Degraded,
}

impl HealthStatus {
    /// Whether new requests may be sent to an endpoint in this state (UNKNOWN or HEALTHY, as in
    /// gRPC, XDS-SEMANTICS.md row 18).
    pub fn is_routable(self) -> bool {
        matches!(self, HealthStatus::Unknown | HealthStatus::Healthy)
    }
}
