//! Fault injection compiled for the request path (Envoy fault filter; gRFC A33, A39;
//! XDS-SEMANTICS.md rows 14–15).
//!
//! At snapshot build each route gets the fault config that applies to it — the listener's fault
//! filter, replaced by the most specific `typed_per_filter_config` entry under the filter's name
//! (weighted cluster > route > virtual host) — as a [`RouteFaults`] in its
//! [`super::CompiledPolicy`]; a route with no effective fault has none, so the request path pays
//! one `Option` check. Percentages are precomputed in parts per million; header matchers are
//! compiled. Per request only the `x-envoy-fault-*` headers are read, and only when the config
//! says `header_delay` / `header_abort`.
//!
//! Draws: delay and abort each take their own random number in `0..1_000_000` and fire when it
//! is below the share (A33: independent draws, as Envoy). A header percentage replaces the
//! configured numerator but is capped by it, over the configured denominator.
//!
//! [`FaultStats`] are per route (by route name), carried across snapshot rebuilds: counters of
//! injected delays and aborts and of faults skipped because `max_active_faults` was reached,
//! for metrics (`Snapshot::fault_stats`). The active-fault gauge behind `max_active_faults` is
//! shared by every route of the target (one listener fault filter), also carried over: Envoy
//! scopes it per filter config (one per listener); gRPC counts per process (A33). The mesh
//! follows Envoy's scope for both transports, so independent targets do not starve each other.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use http::HeaderMap;

use super::matcher::{CompiledHeader, RequestView};
use crate::model::{
    find_override, FaultAbortKind, FaultDelayKind, FaultOverrides, FaultPercent, FaultPolicy,
    HttpFilterConfig, Listener,
};

/// `x-envoy-fault-abort-request`: HTTP status to abort with (`header_abort`).
pub const HEADER_ABORT: &str = "x-envoy-fault-abort-request";
/// `x-envoy-fault-abort-grpc-request`: gRPC status to abort with (`header_abort`).
pub const HEADER_ABORT_GRPC: &str = "x-envoy-fault-abort-grpc-request";
/// `x-envoy-fault-abort-request-percentage`: abort numerator, capped by the config.
pub const HEADER_ABORT_PERCENTAGE: &str = "x-envoy-fault-abort-request-percentage";
/// `x-envoy-fault-delay-request`: delay in milliseconds (`header_delay`).
pub const HEADER_DELAY: &str = "x-envoy-fault-delay-request";
/// `x-envoy-fault-delay-request-percentage`: delay numerator, capped by the config.
pub const HEADER_DELAY_PERCENTAGE: &str = "x-envoy-fault-delay-request-percentage";
/// `x-envoy-downstream-service-node`: the caller's node, matched against `downstream_nodes`.
pub const HEADER_DOWNSTREAM_NODE: &str = "x-envoy-downstream-service-node";

/// What an injected abort fails the request with. `Display`: `http 503`, `grpc 14`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultStatus {
    /// An HTTP status in `200..=599`.
    Http(u16),
    /// A gRPC status code as configured or sent (above 16 means UNKNOWN, gRFC A33).
    Grpc(u32),
}

impl std::fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultStatus::Http(s) => write!(f, "http {s}"),
            FaultStatus::Grpc(c) => write!(f, "grpc {c}"),
        }
    }
}

/// Live fault counters of one route, carried across snapshot rebuilds (see the module docs).
#[derive(Debug, Default)]
pub struct FaultStats {
    /// The target's active-fault gauge, shared by all its routes.
    active: Arc<AtomicUsize>,
    delays: AtomicU64,
    aborts: AtomicU64,
    overflows: AtomicU64,
}

impl FaultStats {
    /// Counters for a route of the target whose active-fault gauge is `gauge`.
    pub(crate) fn new(gauge: &Arc<AtomicUsize>) -> Self {
        FaultStats {
            active: gauge.clone(),
            ..Default::default()
        }
    }

    /// Requests of the whole target with a fault in progress (a delay running, or an abort being
    /// returned): the gauge `max_active_faults` limits.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Delays injected so far.
    pub fn delays_injected(&self) -> u64 {
        self.delays.load(Ordering::Relaxed)
    }

    /// Aborts injected so far.
    pub fn aborts_injected(&self) -> u64 {
        self.aborts.load(Ordering::Relaxed)
    }

    /// Faults not injected because `max_active_faults` was reached (Envoy's `faults_overflow`).
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Counts one injected delay.
    pub fn record_delay(&self) {
        self.delays.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one injected abort.
    pub fn record_abort(&self) {
        self.aborts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Faults injected on requests to one cluster (whatever route sent them there), carried across
/// snapshot rebuilds in the cluster's handle (`ClusterHandle::fault_counts`), for metrics.
#[derive(Debug, Default)]
pub struct FaultCounts {
    delays: AtomicU64,
    aborts: AtomicU64,
}

impl FaultCounts {
    /// Delays injected so far.
    pub fn delays(&self) -> u64 {
        self.delays.load(Ordering::Relaxed)
    }

    /// Aborts injected so far.
    pub fn aborts(&self) -> u64 {
        self.aborts.load(Ordering::Relaxed)
    }

    /// Counts one injected delay.
    pub fn record_delay(&self) {
        self.delays.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one injected abort.
    pub fn record_abort(&self) {
        self.aborts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests to one cluster dropped by its EDS `drop_overloads` (Envoy's
/// `upstream_rq_drop_overload`), carried across snapshot rebuilds in the cluster's handle
/// (`ClusterHandle::drop_counts`), for metrics.
#[derive(Debug, Default)]
pub struct DropCounts {
    dropped: AtomicU64,
}

impl DropCounts {
    /// Requests dropped so far, all categories.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts one dropped request.
    pub fn record(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// One active fault, counted in [`FaultStats::active`] until dropped.
#[derive(Debug)]
pub struct ActiveFault {
    stats: Arc<FaultStats>,
}

impl Drop for ActiveFault {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Rule<K> {
    kind: K,
    percent: FaultPercent,
    per_million: u32,
}

impl<K> Rule<K> {
    fn new(kind: K, percent: FaultPercent) -> Self {
        Rule {
            kind,
            percent,
            per_million: percent.per_million(),
        }
    }

    /// The share for this request: the configured one, or a header's numerator capped by it.
    fn share(&self, headers: &HeaderMap, pct_header: &str) -> u32 {
        match header_u32(headers, pct_header) {
            Some(n) => self.percent.capped_per_million(n),
            None => self.per_million,
        }
    }
}

/// A fault config ready for the request path.
#[derive(Debug)]
pub struct CompiledFault {
    filter: Arc<str>,
    delay: Option<Rule<FaultDelayKind>>,
    abort: Option<Rule<FaultAbortKind>>,
    max_active: Option<usize>,
    headers: Box<[CompiledHeader]>,
    upstream_cluster: Option<Arc<str>>,
    downstream_nodes: Box<[Arc<str>]>,
    stats: Arc<FaultStats>,
}

impl CompiledFault {
    /// Compiles a policy of the filter named `filter`; `None` when it can never inject.
    pub fn new(filter: &Arc<str>, p: &FaultPolicy, stats: &Arc<FaultStats>) -> Option<Self> {
        if p.is_inert() {
            return None;
        }
        Some(CompiledFault {
            filter: filter.clone(),
            delay: p.delay.as_ref().map(|d| Rule::new(d.kind, d.percentage)),
            abort: p.abort.as_ref().map(|a| Rule::new(a.kind, a.percentage)),
            max_active: p.max_active_faults.map(|m| m as usize),
            headers: p.headers.iter().map(CompiledHeader::new).collect(),
            upstream_cluster: p.upstream_cluster.clone(),
            downstream_nodes: p.downstream_nodes.iter().cloned().collect(),
            stats: stats.clone(),
        })
    }

    /// The fault filter's name.
    pub fn filter(&self) -> &Arc<str> {
        &self.filter
    }

    /// The route's fault counters.
    pub fn stats(&self) -> &Arc<FaultStats> {
        &self.stats
    }

    /// Envoy's request selection: every `headers` matcher matches, the request goes to
    /// `upstream_cluster` (when set), and its `x-envoy-downstream-service-node` is one of
    /// `downstream_nodes` (when set). gRPC ignores all three (gRFC A33).
    pub fn selects(&self, req: &RequestView<'_>, cluster: &str) -> bool {
        if self
            .upstream_cluster
            .as_deref()
            .is_some_and(|c| c != cluster)
        {
            return false;
        }
        if !self.downstream_nodes.is_empty() {
            let node = req
                .headers
                .get(HEADER_DOWNSTREAM_NODE)
                .and_then(|v| v.to_str().ok());
            if !node.is_some_and(|n| self.downstream_nodes.iter().any(|d| &**d == n)) {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req))
    }

    /// The delay to inject, if the draw says so. `draw` yields a number in `0..1_000_000`.
    pub fn delay(&self, headers: &HeaderMap, draw: &mut impl FnMut() -> u32) -> Option<Duration> {
        let rule = self.delay.as_ref()?;
        let (delay, share) = match rule.kind {
            FaultDelayKind::Fixed(d) => (d, rule.per_million),
            FaultDelayKind::Header => {
                let ms = header_u32(headers, HEADER_DELAY)?;
                (
                    Duration::from_millis(u64::from(ms)),
                    rule.share(headers, HEADER_DELAY_PERCENTAGE),
                )
            }
        };
        (!delay.is_zero() && draw() < share).then_some(delay)
    }

    /// The abort to inject, if the draw says so. `draw` yields a number in `0..1_000_000`.
    pub fn abort(
        &self,
        headers: &HeaderMap,
        draw: &mut impl FnMut() -> u32,
    ) -> Option<FaultStatus> {
        let rule = self.abort.as_ref()?;
        let (status, share) = match rule.kind {
            FaultAbortKind::Http(s) => (FaultStatus::Http(s), rule.per_million),
            FaultAbortKind::Grpc(c) => (FaultStatus::Grpc(c), rule.per_million),
            FaultAbortKind::Header => {
                // The HTTP status wins when both are sent; malformed values are ignored.
                let status = match headers.get(HEADER_ABORT) {
                    Some(_) => header_u32(headers, HEADER_ABORT)
                        .and_then(|s| u16::try_from(s).ok())
                        .filter(|s| (200..=599).contains(s))
                        .map(FaultStatus::Http)?,
                    None => FaultStatus::Grpc(header_u32(headers, HEADER_ABORT_GRPC)?),
                };
                (status, rule.share(headers, HEADER_ABORT_PERCENTAGE))
            }
        };
        (draw() < share).then_some(status)
    }

    /// Takes a slot under `max_active_faults`; `None` (counted as an overflow) when the limit is
    /// reached, and the request then goes on without a fault. Lock-free.
    pub fn try_activate(&self) -> Option<ActiveFault> {
        let active = &self.stats.active;
        match self.max_active {
            None => {
                active.fetch_add(1, Ordering::Relaxed);
            }
            Some(max) => {
                let admitted = active
                    .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .is_ok();
                if !admitted {
                    self.stats.overflows.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        Some(ActiveFault {
            stats: self.stats.clone(),
        })
    }
}

fn header_u32(headers: &HeaderMap, name: &str) -> Option<u32> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The fault config effective on one route: the route's own, and per weighted cluster where a
/// cluster entry overrides it.
#[derive(Debug)]
pub struct RouteFaults {
    route: Option<Arc<CompiledFault>>,
    clusters: Box<[ClusterFault]>,
}

/// A weighted cluster's own fault (`None`: disabled there).
type ClusterFault = (Arc<str>, Option<Arc<CompiledFault>>);

impl RouteFaults {
    /// The fault for a request routed to `cluster`.
    pub fn for_cluster(&self, cluster: &str) -> Option<&Arc<CompiledFault>> {
        if !self.clusters.is_empty() {
            if let Some((_, f)) = self.clusters.iter().find(|(c, _)| &**c == cluster) {
                return f.as_ref();
            }
        }
        self.route.as_ref()
    }
}

/// The listener's fault filter: its name and default config.
#[derive(Debug)]
pub(crate) struct ListenerFault {
    name: Arc<str>,
    default: Arc<FaultPolicy>,
}

impl ListenerFault {
    /// The listener's (enabled) fault filter, if it has one.
    pub(crate) fn new(listener: &Listener) -> Option<Self> {
        listener.http_filters.iter().find_map(|f| match &f.config {
            HttpFilterConfig::Fault(p) => Some(ListenerFault {
                name: f.name.clone(),
                default: p.clone(),
            }),
            _ => None,
        })
    }

    /// The faults of a route with these overrides, counted in `stats`; `None` when no request
    /// on it can get one.
    pub(crate) fn route(
        &self,
        overrides: &FaultOverrides,
        stats: &Arc<FaultStats>,
    ) -> Option<Arc<RouteFaults>> {
        let compile = |p: Option<&Arc<FaultPolicy>>| {
            p.and_then(|p| CompiledFault::new(&self.name, p, stats))
                .map(Arc::new)
        };
        let route = match find_override(&overrides.route, &self.name) {
            Some(o) => compile(o.policy.as_ref()),
            None => compile(Some(&self.default)),
        };
        let clusters: Box<[_]> = overrides
            .clusters
            .iter()
            .filter_map(|(c, list)| {
                find_override(list, &self.name).map(|o| (c.clone(), compile(o.policy.as_ref())))
            })
            .collect();
        if route.is_none() && clusters.iter().all(|(_, f)| f.is_none()) {
            return None;
        }
        Some(Arc::new(RouteFaults { route, clusters }))
    }
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
