//! Fault injection: the validated `envoy.extensions.filters.http.fault.v3.HTTPFault` (Envoy fault
//! filter; gRFC A33; XDS-SEMANTICS.md row 14) and the per-route overrides that replace it
//! (`typed_per_filter_config`, gRFC A39; row 15).
//!
//! The listener's fault filter carries the default [`FaultPolicy`]; a virtual host, route or
//! weighted-cluster entry may override it by the filter's name, the most specific winning
//! (weighted cluster > route > virtual host > listener). The converter folds the virtual host's
//! overrides into each route; the snapshot resolves the rest (see
//! `mesh_core::snapshot::fault`).

use std::{sync::Arc, time::Duration};

use super::HeaderMatcher;

/// `HTTPFault`, validated. An empty policy (no delay, no abort) injects nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPolicy {
    /// `delay`: wait before the request is sent.
    pub delay: Option<FaultDelay>,
    /// `abort`: fail the request before it is sent.
    pub abort: Option<FaultAbort>,
    /// `max_active_faults`: requests with a fault in progress allowed at once; over it a request
    /// goes on without a fault. `None` = unlimited; `Some(0)` disables the filter (gRPC).
    pub max_active_faults: Option<u32>,
    /// `headers`: all must match the request for a fault to apply (Envoy; gRPC ignores them).
    pub headers: Arc<[HeaderMatcher]>,
    /// `upstream_cluster`: faults only for requests routed to this cluster (Envoy; gRPC ignores
    /// it). `None` = any cluster.
    pub upstream_cluster: Option<Arc<str>>,
    /// `downstream_nodes`: faults only for requests whose `x-envoy-downstream-service-node`
    /// header names one of these (Envoy; gRPC ignores it). Empty = any caller.
    pub downstream_nodes: Arc<[Arc<str>]>,
}

impl FaultPolicy {
    /// Whether the policy can never inject anything (no delay and no abort, or
    /// `max_active_faults: 0`).
    pub fn is_inert(&self) -> bool {
        (self.delay.is_none() && self.abort.is_none()) || self.max_active_faults == Some(0)
    }
}

/// `common.fault.v3.FaultDelay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultDelay {
    /// How long.
    pub kind: FaultDelayKind,
    /// Share of requests delayed (unset on the wire ⇒ 0: none).
    pub percentage: FaultPercent,
}

/// `FaultDelay.fault_delay_secifier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultDelayKind {
    /// `fixed_delay` (zero is accepted and delays nothing, as gRPC does).
    Fixed(Duration),
    /// `header_delay`: the request's `x-envoy-fault-delay-request` header, in milliseconds.
    Header,
}

/// `http.fault.v3.FaultAbort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultAbort {
    /// What the request fails with.
    pub kind: FaultAbortKind,
    /// Share of requests aborted (unset on the wire ⇒ 0: none).
    pub percentage: FaultPercent,
}

/// `FaultAbort.error_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAbortKind {
    /// `http_status`, in `200..=599`.
    Http(u16),
    /// `grpc_status` as configured (codes above 16 act as UNKNOWN, gRFC A33).
    Grpc(u32),
    /// `header_abort`: the request's `x-envoy-fault-abort-request` (HTTP status, wins) or
    /// `x-envoy-fault-abort-grpc-request` header.
    Header,
}

/// A `FractionalPercent`: `numerator` out of `denominator` (100, 10 000 or 1 000 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPercent {
    /// The numerator as configured (may exceed the denominator: then always).
    pub numerator: u32,
    /// 100, 10 000 or 1 000 000.
    pub denominator: u32,
}

impl FaultPercent {
    /// 0 %.
    pub const NONE: FaultPercent = FaultPercent {
        numerator: 0,
        denominator: 100,
    };

    /// The share in parts per million, capped at 1 000 000.
    pub fn per_million(self) -> u32 {
        self.capped_per_million(self.numerator)
    }

    /// `numerator` (e.g. from a percentage header) over this denominator, but never above the
    /// configured numerator (Envoy and gRFC A33: header percentages are capped by the config),
    /// in parts per million.
    pub fn capped_per_million(self, numerator: u32) -> u32 {
        let n = u64::from(numerator.min(self.numerator));
        let scale = 1_000_000 / u64::from(self.denominator.max(1));
        // ≤ 1 000 000 after `min`, so the cast cannot truncate.
        (n * scale).min(1_000_000) as u32
    }
}

/// `typed_per_filter_config` entries for the fault filter, effective on one route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultOverrides {
    /// The route's entries, the virtual host's folded in underneath (a route entry replaces the
    /// virtual host's for the same filter name).
    pub route: Arc<[FaultOverride]>,
    /// Weighted-cluster entries' own overrides, by cluster name; they replace the route's.
    pub clusters: Arc<[ClusterFaultOverrides]>,
}

/// A weighted-cluster entry's fault overrides: `(cluster name, entries)`.
pub type ClusterFaultOverrides = (Arc<str>, Arc<[FaultOverride]>);

impl FaultOverrides {
    /// Whether there is no override at all.
    pub fn is_empty(&self) -> bool {
        self.route.is_empty() && self.clusters.is_empty()
    }
}

/// One `typed_per_filter_config` entry that concerns a fault filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultOverride {
    /// The filter instance name it is keyed by (e.g. `envoy.filters.http.fault`).
    pub filter: Arc<str>,
    /// The replacing config; `None` when a `FilterConfig` wrapper disables the filter here.
    pub policy: Option<Arc<FaultPolicy>>,
}

/// Finds the override for `filter` in a list.
pub fn find_override<'a>(list: &'a [FaultOverride], filter: &str) -> Option<&'a FaultOverride> {
    list.iter().find(|o| &*o.filter == filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_scale_and_cap() {
        let p = FaultPercent {
            numerator: 50,
            denominator: 100,
        };
        assert_eq!(p.per_million(), 500_000);
        assert_eq!(p.capped_per_million(20), 200_000);
        assert_eq!(p.capped_per_million(80), 500_000, "capped by the config");
        let over = FaultPercent {
            numerator: 2_000_000,
            denominator: 1_000_000,
        };
        assert_eq!(over.per_million(), 1_000_000);
        assert_eq!(FaultPercent::NONE.per_million(), 0);
        let tt = FaultPercent {
            numerator: 1,
            denominator: 10_000,
        };
        assert_eq!(tt.per_million(), 100);
    }
}
