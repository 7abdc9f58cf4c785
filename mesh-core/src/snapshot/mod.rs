//! The compiled, immutable routing state for one target (`host:port`): virtual-host index,
//! routes with pre-parsed matchers, and a handle per referenced cluster with its balancer.
//!
//! Built off to the side whenever a resource it depends on changes, then published through
//! `ArcSwap` (see [`crate::mesh`]); the request path only loads an `Arc<Snapshot>` and walks it.
//! Semantics: gRFC A28 (virtual host, first-match route, weighted clusters), Envoy
//! `route_components.proto`; balancing in [`balancer`].

pub mod balancer;
mod domain;
pub mod fault;
mod hash_policy;
pub(crate) mod matcher;
pub mod outlier;
pub mod policy;
pub mod pool;
mod route_index;

use std::{collections::HashMap, sync::Arc};

pub use balancer::{Balancer, EndpointState, PickedEndpoint};
pub use fault::{CompiledFault, DropCounts, FaultCounts, FaultStats, FaultStatus, RouteFaults};
pub use matcher::RequestView;
pub use outlier::{HostStats, Outcome, OutlierDetector};
pub use policy::{ActiveGuard, CompiledPolicy, CompiledRetry, RetryCounters};
pub use pool::{Admission, PendingSlot, PoolGate, PoolSlot};

use crate::model::{
    Cluster, ClusterLoadAssignment, Listener, ResourceType, RouteAction, RouteConfiguration,
    RoutingPriority,
};
use domain::DomainIndex;
use hash_policy::CompiledHashPolicy;
use matcher::CompiledMatch;
use route_index::RouteIndex;

/// A cluster as the request path sees it: its config and its balancer over current endpoints.
#[derive(Debug)]
pub struct ClusterHandle {
    /// The cluster's config.
    pub cluster: Arc<Cluster>,
    /// The endpoints it was built from (`None` only before EDS arrives, which a ready snapshot
    /// never has).
    pub assignment: Option<Arc<ClusterLoadAssignment>>,
    balancer: Balancer,
    retry_counters: Arc<RetryCounters>,
    outlier: Option<OutlierDetector>,
    pool: Arc<PoolGate>,
    /// Priority HIGH's own counters (Envoy keeps a resource manager per priority).
    high: Arc<(Arc<RetryCounters>, Arc<PoolGate>)>,
    fault_counts: Arc<FaultCounts>,
    drop_counts: Arc<DropCounts>,
    client_state: Arc<ClientState>,
}

/// State a client layer compiles once per cluster transport and attaches to the cluster's
/// handle, e.g. mesh-tower's TLS connector for the cluster's `UpstreamTlsContext`: read on the
/// request path with one atomic load. It carries over to the next handle of the same cluster
/// while the cluster's [`crate::model::UpstreamTransport`] is unchanged (an endpoint update
/// keeps its connections), and starts empty when the transport changes.
pub type ClientState = std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>;

impl ClusterHandle {
    /// Builds a handle; `previous` (the same cluster in the last snapshot) lends its counters.
    pub fn new(
        cluster: Arc<Cluster>,
        assignment: Option<Arc<ClusterLoadAssignment>>,
        previous: Option<&ClusterHandle>,
    ) -> Self {
        let mut balancer = Balancer::with_config(
            cluster.lb_policy,
            cluster.lb_common,
            assignment.as_deref(),
            previous.map(|p| &p.balancer),
        );
        // Retry accounting is per cluster name: it carries over whatever changed.
        let retry_counters = previous
            .map(|p| p.retry_counters.clone())
            .unwrap_or_default();
        // Outlier state, like retry accounting, is per cluster and carries over; endpoints keep
        // their stats by address (see the balancer).
        let hosts = || {
            balancer
                .endpoints()
                .iter()
                .map(|e| (e.address, e.outlier().clone()))
                .collect()
        };
        let outlier = match (
            cluster.outlier_detection,
            previous.and_then(|p| p.outlier.as_ref()),
        ) {
            (Some(cfg), Some(prev)) => Some(prev.update(cfg, hosts())),
            (Some(cfg), None) => Some(OutlierDetector::new(cfg, hosts())),
            (None, _) => {
                // Detection removed (or never configured): nobody stays ejected (gRFC A50).
                balancer
                    .endpoints()
                    .iter()
                    .for_each(|e| e.outlier().clear());
                None
            }
        };
        if let Some(detector) = &outlier {
            balancer.track_ejections(detector.ejection_changes());
        }
        let pool = previous.map(|p| p.pool.clone()).unwrap_or_default();
        let high = previous.map(|p| p.high.clone()).unwrap_or_default();
        let fault_counts = previous.map(|p| p.fault_counts.clone()).unwrap_or_default();
        let drop_counts = previous.map(|p| p.drop_counts.clone()).unwrap_or_default();
        let client_state = previous
            .filter(|p| p.cluster.transport == cluster.transport)
            .map(|p| p.client_state.clone())
            .unwrap_or_default();
        ClusterHandle {
            cluster,
            assignment,
            balancer,
            retry_counters,
            outlier,
            pool,
            high,
            fault_counts,
            drop_counts,
            client_state,
        }
    }

    /// The client layer's per-transport state for this cluster (see [`ClientState`]).
    pub fn client_state(&self) -> &ClientState {
        &self.client_state
    }

    /// The request / retry counters of routing priority `p` (each priority counts against its
    /// own thresholds, as Envoy's per-priority resource managers do).
    pub fn retry_counters_for(&self, p: RoutingPriority) -> &Arc<RetryCounters> {
        match p {
            RoutingPriority::Default => &self.retry_counters,
            RoutingPriority::High => &self.high.0,
        }
    }

    /// The connection-pool breakers of routing priority `p`.
    pub fn pool_for(&self, p: RoutingPriority) -> &Arc<PoolGate> {
        match p {
            RoutingPriority::Default => &self.pool,
            RoutingPriority::High => &self.high.1,
        }
    }

    /// Faults injected on requests to this cluster (carried across rebuilds), for metrics.
    pub fn fault_counts(&self) -> &FaultCounts {
        &self.fault_counts
    }

    /// Requests dropped by the cluster's EDS `drop_overloads` (carried across rebuilds).
    pub fn drop_counts(&self) -> &DropCounts {
        &self.drop_counts
    }

    /// The cluster's connection-pool breakers (`max_connections`, `max_pending_requests`) of
    /// priority DEFAULT.
    pub fn pool(&self) -> &Arc<PoolGate> {
        &self.pool
    }

    /// The cluster's outlier detector, when it has `outlier_detection`.
    pub fn outlier(&self) -> Option<&OutlierDetector> {
        self.outlier.as_ref()
    }

    /// The cluster's live request / retry counters (for `retry_budget` and `max_retries`) of
    /// priority DEFAULT.
    pub fn retry_counters(&self) -> &Arc<RetryCounters> {
        &self.retry_counters
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.cluster.name
    }

    /// The balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Picks an endpoint (a random hash for RING_HASH / MAGLEV).
    pub fn pick(&self) -> Option<PickedEndpoint> {
        self.balancer.pick()
    }

    /// Picks an endpoint with the request hash a route computed (see
    /// [`CompiledRoute::request_hash`]); `None` = a random hash. Non-hash policies ignore it.
    pub fn pick_with_hash(&self, hash: Option<u64>) -> Option<PickedEndpoint> {
        self.balancer.pick_with_hash(hash)
    }

    /// [`ClusterHandle::pick_with_hash`] for host-selection try `attempt` (see
    /// [`Balancer::pick_with_hash_attempt`]).
    pub fn pick_with_hash_attempt(
        &self,
        hash: Option<u64>,
        attempt: u32,
    ) -> Option<PickedEndpoint> {
        self.balancer.pick_with_hash_attempt(hash, attempt)
    }

    /// Whether this cluster picks by request hash (RING_HASH, MAGLEV).
    pub fn uses_hash(&self) -> bool {
        self.cluster.lb_policy.uses_hash()
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct CompiledRoute {
    name: Arc<str>,
    matcher: CompiledMatch,
    action: CompiledAction,
    policy: Arc<CompiledPolicy>,
    /// Only when the route has hash policies and a cluster it targets hashes.
    hash: Option<CompiledHashPolicy>,
}

impl CompiledRoute {
    /// The request hash from the route's hash policies (gRFC A42, Envoy `hash_policy`):
    /// `None` when the route has none, when no cluster it targets balances by hash (so other
    /// routes pay nothing), or when no policy produced a value (the balancer then uses a
    /// random hash). `source_ip` feeds `connection_properties.source_ip`.
    pub fn request_hash(
        &self,
        req: &RequestView<'_>,
        source_ip: Option<std::net::IpAddr>,
    ) -> Option<u64> {
        self.hash.as_ref()?.hash(req, source_ip)
    }

    /// The route's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The route's timeouts and retry policy, compiled (clone the `Arc` to carry it along).
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }
}

#[derive(Debug)]
enum CompiledAction {
    Cluster(ClusterRef),
    /// Cumulative weights, ascending, with the cluster reaching each bound.
    Weighted {
        bounds: Box<[(u64, ClusterRef)]>,
        total: u64,
    },
    Unsupported(Arc<str>),
}

impl CompiledAction {
    /// Whether any cluster the action may pick balances by request hash.
    fn hashes(&self) -> bool {
        let h = |c: &ClusterRef| c.as_ref().is_ok_and(|c| c.uses_hash());
        match self {
            CompiledAction::Cluster(c) => h(c),
            CompiledAction::Weighted { bounds, .. } => bounds.iter().any(|(_, c)| h(c)),
            CompiledAction::Unsupported(_) => false,
        }
    }
}

/// A route's cluster: its handle, or the name of a cluster that does not exist.
type ClusterRef = Result<Arc<ClusterHandle>, Arc<str>>;

#[derive(Debug)]
struct CompiledVhost {
    name: Arc<str>,
    routes: Box<[CompiledRoute]>,
    index: RouteIndex,
}

/// The routing result for one request.
#[derive(Debug)]
pub struct RouteDecision<'s> {
    /// The virtual host that matched.
    pub virtual_host: &'s Arc<str>,
    /// The route that matched.
    pub route: &'s CompiledRoute,
    /// The cluster picked (by weight, when the route splits traffic).
    pub cluster: &'s Arc<ClusterHandle>,
}

/// Why a request could not be routed. Carries names so the caller can explain it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No virtual host's domains match the authority.
    #[error("target `{target}`: no virtual host matches authority `{authority}`")]
    NoVirtualHost {
        /// The target (listener name).
        target: Arc<str>,
        /// The request authority.
        authority: String,
    },
    /// The virtual host has no route matching the request.
    #[error("target `{target}`: virtual host `{virtual_host}`: no route matches path `{path}`")]
    NoRoute {
        /// The target (listener name).
        target: Arc<str>,
        /// The virtual host that was selected.
        virtual_host: Arc<str>,
        /// The request path.
        path: String,
    },
    /// The route (or the weighted entry picked) names a cluster that does not exist or was
    /// rejected: only requests on this route fail (Envoy's 503 "cluster not found", gRPC's
    /// UNAVAILABLE).
    #[error("route `{route}`: cluster `{cluster}` does not exist")]
    ClusterNotFound {
        /// The route.
        route: Arc<str>,
        /// The missing cluster.
        cluster: Arc<str>,
    },
    /// The matching route's action is one the mesh does not forward.
    #[error("route `{route}`: action {reason} is not supported by the mesh")]
    UnsupportedAction {
        /// The route.
        route: Arc<str>,
        /// Which action.
        reason: Arc<str>,
    },
}

/// Compiled routing state for one target.
#[derive(Debug)]
pub struct Snapshot {
    target: Arc<str>,
    host_header: Option<http::HeaderValue>,
    listener: Arc<Listener>,
    route_config: Arc<RouteConfiguration>,
    domains: DomainIndex,
    vhosts: Box<[CompiledVhost]>,
    clusters: HashMap<Arc<str>, Arc<ClusterHandle>>,
    fault_gauge: Arc<std::sync::atomic::AtomicUsize>,
    fault_stats: HashMap<Arc<str>, Arc<FaultStats>>,
}

/// Resources a snapshot build needs but does not have yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing(pub Vec<(ResourceType, Arc<str>)>);

/// `route `r`, cluster `c``: what a target is still waiting for, for messages.
impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (ty, name)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{ty} `{name}`")?;
        }
        Ok(())
    }
}

/// Where [`Snapshot::build`] looks resources up.
pub trait ResourceLookup {
    /// A route configuration by name.
    fn route_config(&self, name: &str) -> Option<Arc<RouteConfiguration>>;
    /// A cluster by name.
    fn cluster(&self, name: &str) -> Option<Arc<Cluster>>;
    /// A load assignment by EDS service name.
    fn endpoints(&self, name: &str) -> Option<Arc<ClusterLoadAssignment>>;
    /// Whether a resource that is not available will not arrive without a config change: it
    /// does not exist, or was rejected with no earlier version. A snapshot does not wait for
    /// such a resource; the routes that need it fail on their own (as in Envoy and gRPC).
    fn is_absent(&self, _ty: ResourceType, _name: &str) -> bool {
        false
    }
}

/// The cache is the usual lookup: what the config source delivered.
impl ResourceLookup for crate::cache::ResourceCache {
    fn route_config(&self, name: &str) -> Option<Arc<RouteConfiguration>> {
        self.get(name)
    }
    fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.get(name)
    }
    fn endpoints(&self, name: &str) -> Option<Arc<ClusterLoadAssignment>> {
        self.get(name)
    }
    fn is_absent(&self, ty: ResourceType, name: &str) -> bool {
        use crate::cache::{Entry, ResourceStatus};
        fn absent<R>(e: Option<Entry<R>>) -> bool {
            e.is_some_and(|e| {
                e.value.is_none()
                    && matches!(
                        e.status,
                        ResourceStatus::DoesNotExist | ResourceStatus::Nacked(_)
                    )
            })
        }
        match ty {
            ResourceType::Listener => absent(self.entry::<Listener>(name)),
            ResourceType::RouteConfiguration => absent(self.entry::<RouteConfiguration>(name)),
            ResourceType::Cluster => absent(self.entry::<Cluster>(name)),
            ResourceType::ClusterLoadAssignment => {
                absent(self.entry::<ClusterLoadAssignment>(name))
            }
        }
    }
}

impl Snapshot {
    /// The route configuration a listener uses, if available.
    pub fn route_config_of(
        listener: &Listener,
        lookup: &impl ResourceLookup,
    ) -> Result<Arc<RouteConfiguration>, Missing> {
        match &listener.route_source {
            crate::model::RouteSource::Inline(rc) => Ok(rc.clone()),
            // A server listener routes nothing: a client target on it has no routes.
            crate::model::RouteSource::Server(_) => Ok(Arc::new(RouteConfiguration {
                name: listener.name.clone(),
                virtual_hosts: Arc::from([]),
            })),
            crate::model::RouteSource::Rds(name) => lookup
                .route_config(name)
                .ok_or_else(|| Missing(vec![(ResourceType::RouteConfiguration, name.clone())])),
        }
    }

    /// Every cluster name a route configuration references, in first-seen order.
    pub fn cluster_names(rc: &RouteConfiguration) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut push = |n: &Arc<str>| {
            if !names.contains(n) {
                names.push(n.clone());
            }
        };
        for vh in rc.virtual_hosts.iter() {
            for r in vh.routes.iter() {
                match &r.action {
                    RouteAction::Cluster(c) => push(c),
                    RouteAction::WeightedClusters(ws) => ws.iter().for_each(|w| push(&w.name)),
                    RouteAction::Unsupported(_) => {}
                }
            }
        }
        names
    }

    /// Compiles a snapshot. Fails with the list of resources still missing (the route
    /// configuration, clusters, or their endpoints): a snapshot is only ever built warm.
    /// `previous` lends per-cluster state (balancer counters) to unchanged clusters.
    pub fn build(
        target: Arc<str>,
        listener: Arc<Listener>,
        lookup: &impl ResourceLookup,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Missing> {
        let route_config = Snapshot::route_config_of(&listener, lookup)?;
        let mut missing = Vec::new();
        let mut clusters = HashMap::new();
        for name in Snapshot::cluster_names(&route_config) {
            let Some(cluster) = lookup.cluster(&name) else {
                // A cluster that will not come fails only the routes that use it.
                if !lookup.is_absent(ResourceType::Cluster, &name) {
                    missing.push((ResourceType::Cluster, name));
                }
                continue;
            };
            let assignment = match &cluster.discovery {
                crate::model::ClusterDiscovery::Static(cla) => Some(cla.clone()),
                crate::model::ClusterDiscovery::Eds { service_name } => {
                    match lookup.endpoints(service_name) {
                        Some(cla) => Some(cla),
                        // Endpoints that will not come: the cluster has none to pick.
                        None if lookup
                            .is_absent(ResourceType::ClusterLoadAssignment, service_name) =>
                        {
                            None
                        }
                        None => {
                            missing
                                .push((ResourceType::ClusterLoadAssignment, service_name.clone()));
                            continue;
                        }
                    }
                }
            };
            let prev = previous.and_then(|p| p.clusters.get(&name));
            let handle = match prev {
                // Unchanged: share the handle (and its live counters) as is.
                Some(p) if p.cluster == cluster && p.assignment == assignment => p.clone(),
                _ => Arc::new(ClusterHandle::new(cluster, assignment, prev.map(|p| &**p))),
            };
            clusters.insert(name, handle);
        }
        if !missing.is_empty() {
            return Err(Missing(missing));
        }
        // Fault counters carry over whatever changed: the target's active-fault gauge, and each
        // route's counters by route name.
        let fault_gauge = previous.map(|p| p.fault_gauge.clone()).unwrap_or_default();
        let fault_stats = std::cell::RefCell::new(HashMap::new());
        let listener_fault = fault::ListenerFault::new(&listener);
        let compile_policy = |r: &crate::model::Route| {
            let mut policy = CompiledPolicy::with_listener(&r.policy, listener.stream_idle_timeout);
            if let Some(lf) = &listener_fault {
                let stats = previous
                    .and_then(|p| p.fault_stats.get(&r.name).cloned())
                    .unwrap_or_else(|| Arc::new(FaultStats::new(&fault_gauge)));
                policy.fault = lf.route(&r.policy.faults, &stats);
                if policy.fault.is_some() {
                    fault_stats.borrow_mut().insert(r.name.clone(), stats);
                }
            }
            Arc::new(policy)
        };
        let vhosts = route_config
            .virtual_hosts
            .iter()
            .map(|vh| CompiledVhost {
                name: vh.name.clone(),
                routes: vh
                    .routes
                    .iter()
                    .map(|r| {
                        let action = compile_action(&r.action, &clusters);
                        CompiledRoute {
                            name: r.name.clone(),
                            matcher: CompiledMatch::new(&r.matcher),
                            hash: action
                                .hashes()
                                .then(|| CompiledHashPolicy::new(&r.hash_policy))
                                .flatten(),
                            action,
                            policy: compile_policy(r),
                        }
                    })
                    .collect(),
                index: RouteIndex::new(vh.routes.iter().map(|r| &r.matcher)),
            })
            .collect();
        let fault_stats = fault_stats.into_inner();
        let domains = DomainIndex::new(route_config.virtual_hosts.iter().map(|vh| &*vh.domains));
        let host_header = http::HeaderValue::from_str(&target).ok();
        Ok(Snapshot {
            target,
            host_header,
            listener,
            route_config,
            domains,
            vhosts,
            clusters,
            fault_gauge,
            fault_stats,
        })
    }

    /// A route's fault-injection counters (delays and aborts injected, `max_active_faults`
    /// overflows), for metrics; carried across rebuilds by route name. `None` for a route no
    /// fault can apply to.
    pub fn fault_stats(&self, route: &str) -> Option<&Arc<FaultStats>> {
        self.fault_stats.get(route)
    }

    /// Requests of this target with an injected fault in progress (the gauge
    /// `max_active_faults` limits).
    pub fn active_faults(&self) -> usize {
        self.fault_gauge.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `other` was built from the same listener, routes and cluster states, so that
    /// publishing it would change nothing.
    pub fn same_as(&self, other: &Snapshot) -> bool {
        self.listener == other.listener
            && self.route_config == other.route_config
            && self.clusters.len() == other.clusters.len()
            && self
                .clusters
                .iter()
                .all(|(name, c)| other.clusters.get(name).is_some_and(|o| Arc::ptr_eq(c, o)))
    }

    /// The target name as a `Host` header value, built once (requests addressed by the target
    /// name reuse it instead of allocating one each).
    pub fn host_header(&self) -> Option<&http::HeaderValue> {
        self.host_header.as_ref()
    }

    /// The target this snapshot serves.
    pub fn target(&self) -> &Arc<str> {
        &self.target
    }

    /// The listener it was built from.
    pub fn listener(&self) -> &Arc<Listener> {
        &self.listener
    }

    /// The route configuration it was built from.
    pub fn route_config(&self) -> &Arc<RouteConfiguration> {
        &self.route_config
    }

    /// The clusters it references, by name.
    pub fn clusters(&self) -> &HashMap<Arc<str>, Arc<ClusterHandle>> {
        &self.clusters
    }

    /// Routes a request: virtual host by authority, first matching route, then the cluster
    /// (weighted pick when the route splits traffic). No locks, no awaits.
    pub fn route(&self, req: &RequestView<'_>) -> Result<RouteDecision<'_>, RouteError> {
        let vi = self
            .domains
            .find(req.authority)
            .ok_or_else(|| RouteError::NoVirtualHost {
                target: self.target.clone(),
                authority: req.authority.to_owned(),
            })?;
        let vh = &self.vhosts[vi];
        let parts = req.split_path();
        let route = vh
            .index
            .find(parts.0, |i| {
                let draw = || rand::random_range(0..1_000_000);
                vh.routes[i].matcher.matches(req, parts, draw)
            })
            .map(|i| &vh.routes[i])
            .ok_or_else(|| RouteError::NoRoute {
                target: self.target.clone(),
                virtual_host: vh.name.clone(),
                path: req.path_and_query.to_owned(),
            })?;
        let picked = match &route.action {
            CompiledAction::Cluster(c) => c,
            CompiledAction::Weighted { bounds, total } => {
                let r = rand::random_range(0..*total);
                let i = bounds.partition_point(|(bound, _)| *bound <= r);
                &bounds[i.min(bounds.len() - 1)].1
            }
            CompiledAction::Unsupported(reason) => {
                return Err(RouteError::UnsupportedAction {
                    route: route.name.clone(),
                    reason: reason.clone(),
                })
            }
        };
        let cluster = picked
            .as_ref()
            .map_err(|name| RouteError::ClusterNotFound {
                route: route.name.clone(),
                cluster: name.clone(),
            })?;
        Ok(RouteDecision {
            virtual_host: &vh.name,
            route,
            cluster,
        })
    }
}

fn compile_action(
    action: &RouteAction,
    clusters: &HashMap<Arc<str>, Arc<ClusterHandle>>,
) -> CompiledAction {
    // `build` has every cluster that exists; the others are known not to (see `is_absent`).
    let handle = |n: &Arc<str>| clusters.get(n).cloned().ok_or_else(|| n.clone());
    match action {
        RouteAction::Cluster(c) => CompiledAction::Cluster(handle(c)),
        RouteAction::WeightedClusters(ws) => {
            let mut total = 0u64;
            let mut bounds = Vec::with_capacity(ws.len());
            for w in ws.iter() {
                total += u64::from(w.weight);
                bounds.push((total, handle(&w.name)));
            }
            if total == 0 {
                return CompiledAction::Unsupported(
                    "weighted_clusters with zero total weight".into(),
                );
            }
            CompiledAction::Weighted {
                bounds: bounds.into(),
                total,
            }
        }
        RouteAction::Unsupported(reason) => CompiledAction::Unsupported(reason.clone()),
    }
}

#[cfg(test)]
mod tests;
