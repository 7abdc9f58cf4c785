//! The mesh handle: one resource cache fed by a config source (ADS or a static file), and a
//! resolver per target that follows the target's dependencies LDS → RDS → CDS → EDS,
//! subscribes to exactly those, and publishes a compiled [`Snapshot`] once all have arrived.
//!
//! This is gRPC's XdsDependencyManager (gRFC A74) in miniature: a snapshot is only built from a
//! complete, consistent set (no tears), and an update that leaves a dependency missing keeps the
//! last good snapshot serving until the set is complete again (make-before-break, Envoy
//! xds_protocol "eventual consistency"). Memory grows with the targets a service talks to, not
//! with the whole mesh: nothing is subscribed until a target is asked for.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

mod sources;

pub use sources::MeshError;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use crate::{
    cache::{ResourceCache, ResourceStatus},
    model::{
        Cluster, ClusterLoadAssignment, Listener, ModelError, ResourceType, RouteConfiguration,
    },
    snapshot::{Missing, ResourceLookup, Snapshot},
};

/// A live interest in one resource; dropping it withdraws the interest.
pub struct SubscriptionHandle(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl SubscriptionHandle {
    /// A handle that holds nothing (for sources with nothing to unsubscribe).
    pub fn none() -> Self {
        SubscriptionHandle(None)
    }

    /// Wraps a source-specific guard whose `Drop` unsubscribes.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        SubscriptionHandle(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for SubscriptionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriptionHandle")
    }
}

/// Where the cache's resources come from.
pub trait ConfigSource: Send + Sync + 'static {
    /// Starts watching a resource. The returned handle keeps the subscription alive.
    fn subscribe(&self, ty: ResourceType, name: &str) -> SubscriptionHandle;
}

/// A source that was filled once (a static file, or resources handed over in-process).
#[derive(Clone, Copy, Debug, Default)]
pub struct StaticConfig;

impl ConfigSource for StaticConfig {
    fn subscribe(&self, _: ResourceType, _: &str) -> SubscriptionHandle {
        SubscriptionHandle::none()
    }
}

/// Why a target cannot become ready.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The control plane says (or the does-not-exist timer concluded) there is no listener.
    #[error("target `{0}`: listener does not exist")]
    ListenerDoesNotExist(Arc<str>),
    /// The listener was rejected and there is no earlier good version.
    #[error("target `{target}`: {error}")]
    Rejected {
        /// The target.
        target: Arc<str>,
        /// The validation error of the resource that blocks it.
        error: ModelError,
    },
    /// A dependency (route configuration, cluster, endpoints) does not exist or was rejected
    /// and there is no earlier good snapshot.
    #[error("target `{target}`: {resource_type} `{name}` {why}")]
    Dependency {
        /// The target.
        target: Arc<str>,
        /// Type of the blocking resource.
        resource_type: ResourceType,
        /// Its name.
        name: Arc<str>,
        /// "does not exist" or the validation error.
        why: String,
    },
}

/// Where a target stands.
#[derive(Clone, Debug)]
pub enum TargetState {
    /// Waiting for these resources.
    Waiting(Missing),
    /// Warm: the current snapshot.
    Ready(Arc<Snapshot>),
    /// Cannot become ready until the config changes.
    Failed(TargetError),
}

/// One target's published routing state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Target {
    inner: Arc<TargetInner>,
}

#[derive(Debug)]
struct TargetInner {
    name: Arc<str>,
    snapshot: ArcSwapOption<Snapshot>,
    state: watch::Sender<TargetState>,
}

impl Target {
    /// The target name (`host:port`, also the listener name).
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The current snapshot, lock-free; `None` until warm. The guard is cheap to hold for the
    /// duration of one routing decision.
    pub fn snapshot(&self) -> arc_swap::Guard<Option<Arc<Snapshot>>> {
        self.inner.snapshot.load()
    }

    /// Resolves once the target is warm (listener, routes, clusters and endpoints all present),
    /// or fails when it cannot become warm. Callers wanting a deadline wrap it in
    /// `tokio::time::timeout`.
    pub async fn ready(&self) -> Result<Arc<Snapshot>, TargetError> {
        let mut rx = self.inner.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                TargetState::Ready(s) => return Ok(s.clone()),
                TargetState::Failed(e) => return Err(e.clone()),
                TargetState::Waiting(_) => {}
            }
            if rx.changed().await.is_err() {
                // The resolver is gone (mesh dropped); report the last state.
                return match &*rx.borrow() {
                    TargetState::Ready(s) => Ok(s.clone()),
                    TargetState::Failed(e) => Err(e.clone()),
                    TargetState::Waiting(m) => Err(TargetError::Dependency {
                        target: self.inner.name.clone(),
                        resource_type: m.0.first().map(|m| m.0).unwrap_or(ResourceType::Listener),
                        name: m
                            .0
                            .first()
                            .map(|m| m.1.clone())
                            .unwrap_or_else(|| self.inner.name.clone()),
                        why: "never arrived (mesh closed)".into(),
                    }),
                };
            }
        }
    }

    /// Watches state changes: each new snapshot, waiting or failure.
    pub fn watch(&self) -> watch::Receiver<TargetState> {
        self.inner.state.subscribe()
    }
}

/// The mesh: a config source, its cache, and the targets in use. Cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<MeshInner>,
}

struct MeshInner {
    cache: ResourceCache,
    source: Arc<dyn ConfigSource>,
    targets: ArcSwap<HashMap<Arc<str>, Target>>,
    create: Mutex<()>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field(
                "targets",
                &self.inner.targets.load().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Mesh {
    /// A mesh over a cache that something else fills, with the given source for subscriptions.
    pub fn new(cache: ResourceCache, source: Arc<dyn ConfigSource>) -> Mesh {
        Mesh {
            inner: Arc::new(MeshInner {
                cache,
                source,
                targets: ArcSwap::from_pointee(HashMap::new()),
                create: Mutex::new(()),
            }),
        }
    }

    /// A mesh over resources supplied up front (a static file, or the control plane's
    /// translation used in-process): no control-plane process needed.
    pub fn from_cache(cache: ResourceCache) -> Mesh {
        Mesh::new(cache, Arc::new(StaticConfig))
    }

    /// The resource cache (for status pages and CSDS).
    pub fn cache(&self) -> &ResourceCache {
        &self.inner.cache
    }

    /// Subscribes to one resource through the mesh's config source (ADS, or nothing for static
    /// config); the interest lasts as long as the handle. Used for resources that are not client
    /// targets, such as a server's inbound listener ([`crate::authz::InboundPolicy`]).
    pub fn subscribe(&self, ty: ResourceType, name: &str) -> SubscriptionHandle {
        self.inner.source.subscribe(ty, name)
    }

    /// The target for `name` if it is already in use — the lock-free request-path lookup.
    pub fn lookup(&self, name: &str) -> Option<Target> {
        self.inner.targets.load().get(name).cloned()
    }

    /// The targets in use, lock-free (for status pages and metrics collection; not for the
    /// request path, it copies the list).
    pub fn targets(&self) -> Vec<Target> {
        self.inner.targets.load().values().cloned().collect()
    }

    /// The target for `name` (`host:port`, the listener name), created and subscribed on first
    /// use. Must be called within a Tokio runtime.
    pub fn target(&self, name: &str) -> Target {
        if let Some(t) = self.lookup(name) {
            return t;
        }
        let _creating = self.inner.create.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.lookup(name) {
            return t;
        }
        let name: Arc<str> = name.into();
        let target = Target {
            inner: Arc::new(TargetInner {
                name: name.clone(),
                snapshot: ArcSwapOption::empty(),
                state: watch::Sender::new(TargetState::Waiting(Missing(vec![(
                    ResourceType::Listener,
                    name.clone(),
                )]))),
            }),
        };
        let mut map = HashMap::clone(&self.inner.targets.load());
        map.insert(name, target.clone());
        self.inner.targets.store(Arc::new(map));
        tokio::spawn(resolve(Arc::downgrade(&self.inner), target.clone()));
        target
    }
}

/// The resolver loop for one target: runs while the mesh is alive.
async fn resolve(mesh: std::sync::Weak<MeshInner>, target: Target) {
    let Some(inner) = mesh.upgrade() else { return };
    let cache = inner.cache.clone();
    let source = inner.source.clone();
    drop(inner);
    let mut changes = cache.subscribe_changes();
    let mut held: HashMap<(ResourceType, Arc<str>), SubscriptionHandle> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let (wanted, state) = evaluate(&cache, &target);
        // Subscribe to new dependencies before dropping old ones (make-before-break).
        for key in &wanted {
            if !held.contains_key(key) {
                held.insert(key.clone(), source.subscribe(key.0, &key.1));
            }
        }
        held.retain(|k, _| wanted.contains(k));
        if let Some(state) = state {
            publish(&target, state);
        }
        if changes.changed().await.is_err() || mesh.strong_count() == 0 {
            return;
        }
    }
}

fn publish(target: &Target, state: TargetState) {
    let t = &target.inner;
    match &state {
        TargetState::Ready(s) => t.snapshot.store(Some(s.clone())),
        // With a good snapshot in hand, keep serving it (last known good) and stay Ready.
        _ if t.snapshot.load().is_some() => {
            if let TargetState::Failed(e) = &state {
                tracing::warn!(target = %t.name, error = %e, "keeping last good snapshot");
            }
            return;
        }
        _ => {}
    }
    t.state.send_replace(state);
}

/// Works out the dependency set and, if complete, the new snapshot; the state is `None`
/// when nothing this target depends on changed.
fn evaluate(
    cache: &ResourceCache,
    target: &Target,
) -> (HashSet<(ResourceType, Arc<str>)>, Option<TargetState>) {
    let name = target.name().clone();
    let mut wanted = HashSet::new();
    wanted.insert((ResourceType::Listener, name.clone()));
    let entry = cache.entry::<Listener>(&name);
    let Some(listener) = entry.as_ref().and_then(|e| e.value.clone()) else {
        let state = match entry.map(|e| e.status) {
            Some(ResourceStatus::DoesNotExist) => {
                TargetState::Failed(TargetError::ListenerDoesNotExist(name))
            }
            Some(ResourceStatus::Nacked(error)) => TargetState::Failed(TargetError::Rejected {
                target: name,
                error,
            }),
            _ => TargetState::Waiting(Missing(vec![(ResourceType::Listener, name)])),
        };
        return (wanted, Some(state));
    };
    if let Some(rds) = listener.rds_name() {
        wanted.insert((ResourceType::RouteConfiguration, rds.into()));
    }
    if let Ok(rc) = Snapshot::route_config_of(&listener, cache) {
        for c in Snapshot::cluster_names(&rc) {
            if let Some(cluster) = ResourceLookup::cluster(cache, &c) {
                if let Some(eds) = cluster.eds_service_name() {
                    wanted.insert((ResourceType::ClusterLoadAssignment, eds.into()));
                }
            }
            wanted.insert((ResourceType::Cluster, c));
        }
    }
    let previous = target.inner.snapshot.load_full();
    let state = match Snapshot::build(name.clone(), listener, cache, previous.as_deref()) {
        // Nothing this target depends on changed: keep the published snapshot as is.
        Ok(s) if previous.as_deref().is_some_and(|p| p.same_as(&s)) => return (wanted, None),
        Ok(s) => TargetState::Ready(Arc::new(s)),
        Err(missing) => blocking_failure(cache, &name, &missing)
            .map(TargetState::Failed)
            .unwrap_or(TargetState::Waiting(missing)),
    };
    (wanted, Some(state))
}

/// A missing dependency that will not arrive without a config change (does not exist, or
/// rejected with nothing older to fall back on).
fn blocking_failure(
    cache: &ResourceCache,
    target: &Arc<str>,
    missing: &Missing,
) -> Option<TargetError> {
    missing.0.iter().find_map(|(ty, name)| {
        let status = match ty {
            ResourceType::Listener => cache.entry::<Listener>(name).map(|e| e.status),
            ResourceType::RouteConfiguration => {
                cache.entry::<RouteConfiguration>(name).map(|e| e.status)
            }
            ResourceType::Cluster => cache.entry::<Cluster>(name).map(|e| e.status),
            ResourceType::ClusterLoadAssignment => {
                cache.entry::<ClusterLoadAssignment>(name).map(|e| e.status)
            }
        }?;
        let why = match status {
            ResourceStatus::DoesNotExist => "does not exist".to_owned(),
            ResourceStatus::Nacked(e) => e.to_string(),
            _ => return None,
        };
        Some(TargetError::Dependency {
            target: target.clone(),
            resource_type: *ty,
            name: name.clone(),
            why,
        })
    })
}
