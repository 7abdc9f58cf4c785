//! The resource cache: what the config sources (ADS client, static file) have delivered, per
//! resource type and name, with each resource's status (gRFC A40 / CSDS states).
//!
//! Sources write; the per-target resolver in [`crate::mesh`] reads and compiles snapshots. A
//! generation counter on a `watch` channel says "something changed". This is the config path,
//! never the request path, so a plain mutex is fine here.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use bytes::Bytes;

use tokio::sync::watch;

use crate::model::{
    Cluster, ClusterLoadAssignment, Listener, ModelError, ResourceType, RouteConfiguration,
    XdsResource,
};

/// Per-resource status, as CSDS reports it (`envoy.admin.v3.ClientResourceStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceStatus {
    /// Subscribed, nothing received yet.
    Requested,
    /// Received and accepted.
    Acked,
    /// The last version received was rejected; the previous value (if any) is kept.
    Nacked(ModelError),
    /// The server said, or the does-not-exist timer concluded, that it does not exist.
    DoesNotExist,
}

/// One cached resource.
#[derive(Clone, Debug)]
pub struct Entry<R> {
    /// The last accepted value (kept across a NACK, per gRFC A88's default).
    pub value: Option<Arc<R>>,
    /// Its status.
    pub status: ResourceStatus,
    /// The `version_info` of the response that last delivered it.
    pub version: Arc<str>,
    /// The accepted value's serialized proto as received (for CSDS `xds_config`), when the
    /// source had it.
    pub raw: Option<Bytes>,
    /// When the accepted value arrived (wall clock, for CSDS `last_updated`).
    pub updated_at: Option<SystemTime>,
    /// The last rejected update, while the resource stays NACKed.
    pub failed: Option<FailedUpdate>,
}

/// A rejected update of one resource (CSDS `UpdateFailureState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedUpdate {
    /// The `version_info` of the response that carried it.
    pub version: Arc<str>,
    /// When it was rejected (wall clock).
    pub at: SystemTime,
}

impl<R> Default for Entry<R> {
    fn default() -> Self {
        Entry {
            value: None,
            status: ResourceStatus::Requested,
            version: "".into(),
            raw: None,
            updated_at: None,
            failed: None,
        }
    }
}

/// All cached resources of every type.
#[derive(Clone, Debug, Default)]
pub struct CacheState {
    /// Listeners by name.
    pub listeners: BTreeMap<Arc<str>, Entry<Listener>>,
    /// Route configurations by name.
    pub routes: BTreeMap<Arc<str>, Entry<RouteConfiguration>>,
    /// Clusters by name.
    pub clusters: BTreeMap<Arc<str>, Entry<Cluster>>,
    /// Load assignments by EDS service name.
    pub endpoints: BTreeMap<Arc<str>, Entry<ClusterLoadAssignment>>,
}

/// Access to the map for one resource type inside [`CacheState`].
pub trait Cached: XdsResource + PartialEq {
    /// The map holding this type.
    fn map(state: &CacheState) -> &BTreeMap<Arc<str>, Entry<Self>>;
    /// The map holding this type, mutably.
    fn map_mut(state: &mut CacheState) -> &mut BTreeMap<Arc<str>, Entry<Self>>;
}

macro_rules! cached {
    ($ty:ty, $field:ident) => {
        impl Cached for $ty {
            fn map(state: &CacheState) -> &BTreeMap<Arc<str>, Entry<Self>> {
                &state.$field
            }
            fn map_mut(state: &mut CacheState) -> &mut BTreeMap<Arc<str>, Entry<Self>> {
                &mut state.$field
            }
        }
    };
}
cached!(Listener, listeners);
cached!(RouteConfiguration, routes);
cached!(Cluster, clusters);
cached!(ClusterLoadAssignment, endpoints);

/// Shared, cloneable handle to the cache.
#[derive(Clone, Debug)]
pub struct ResourceCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<CacheState>,
    generation: watch::Sender<u64>,
}

impl Default for ResourceCache {
    fn default() -> Self {
        ResourceCache::new()
    }
}

impl ResourceCache {
    /// An empty cache.
    pub fn new() -> Self {
        ResourceCache {
            inner: Arc::new(Inner {
                state: Mutex::new(CacheState::default()),
                generation: watch::Sender::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // A panic while holding the lock cannot leave the maps half-written in a way that
        // matters more than losing the whole cache, so recover the guard.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last accepted value of a resource.
    pub fn get<R: Cached>(&self, name: &str) -> Option<Arc<R>> {
        R::map(&self.lock()).get(name).and_then(|e| e.value.clone())
    }

    /// A resource's entry (value, status, version).
    pub fn entry<R: Cached>(&self, name: &str) -> Option<Entry<R>> {
        R::map(&self.lock()).get(name).cloned()
    }

    /// A copy of everything, for status pages and CSDS.
    pub fn dump(&self) -> CacheState {
        self.lock().clone()
    }

    /// Applies a batch of edits under one lock and bumps the generation once if anything was
    /// edited. The closure returns whether it changed anything.
    pub fn update(&self, edit: impl FnOnce(&mut CacheState) -> bool) {
        let changed = edit(&mut self.lock());
        if changed {
            self.inner.generation.send_modify(|g| *g += 1);
        }
    }

    /// Marks a resource as requested if it is not cached yet (used when subscribing).
    pub fn request<R: Cached>(&self, name: &str) {
        self.update(|s| {
            let map = R::map_mut(s);
            if map.contains_key(name) {
                return false;
            }
            map.insert(name.into(), Entry::default());
            true
        });
    }

    /// Stores an accepted value.
    pub fn accept<R: Cached>(&self, name: &str, value: R, version: &str) {
        self.accept_received(name, value, version, None);
    }

    /// Stores an accepted value with its serialized proto as received (`raw`, reported by
    /// CSDS as `xds_config`).
    pub fn accept_received<R: Cached>(
        &self,
        name: &str,
        value: R,
        version: &str,
        raw: Option<Bytes>,
    ) {
        self.update(|s| {
            R::map_mut(s).insert(
                name.into(),
                Entry {
                    value: Some(Arc::new(value)),
                    status: ResourceStatus::Acked,
                    version: version.into(),
                    raw,
                    updated_at: Some(SystemTime::now()),
                    failed: None,
                },
            );
            true
        });
    }

    /// Records a rejected value, keeping the last accepted one.
    pub fn reject<R: Cached>(&self, name: &str, error: ModelError) {
        self.reject_received::<R>(name, error, "");
    }

    /// Records a rejected value delivered in the response of `version`, keeping the last
    /// accepted one.
    pub fn reject_received<R: Cached>(&self, name: &str, error: ModelError, version: &str) {
        self.update(|s| {
            let e = R::map_mut(s).entry(name.into()).or_default();
            e.status = ResourceStatus::Nacked(error);
            e.failed = Some(FailedUpdate {
                version: version.into(),
                at: SystemTime::now(),
            });
            true
        });
    }

    /// Records that a resource does not exist (removal from an LDS/CDS response, or the
    /// does-not-exist timer), dropping its value.
    pub fn remove<R: Cached>(&self, name: &str) {
        self.update(|s| {
            let e = R::map_mut(s).entry(name.into()).or_default();
            let changed = e.value.is_some() || e.status != ResourceStatus::DoesNotExist;
            e.value = None;
            e.raw = None;
            e.failed = None;
            e.status = ResourceStatus::DoesNotExist;
            changed
        });
    }

    /// Forgets a resource entirely (after the last subscriber went away).
    pub fn forget<R: Cached>(&self, name: &str) {
        self.update(|s| R::map_mut(s).remove(name).is_some());
    }

    /// Names of resources of one type currently in the cache.
    pub fn names(&self, ty: ResourceType) -> Vec<Arc<str>> {
        let s = self.lock();
        match ty {
            ResourceType::Listener => s.listeners.keys().cloned().collect(),
            ResourceType::RouteConfiguration => s.routes.keys().cloned().collect(),
            ResourceType::Cluster => s.clusters.keys().cloned().collect(),
            ResourceType::ClusterLoadAssignment => s.endpoints.keys().cloned().collect(),
        }
    }

    /// A receiver that sees the generation number change whenever the cache changes.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }
}
