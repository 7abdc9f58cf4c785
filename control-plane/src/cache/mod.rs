//! Versioned resources: an immutable [`Snapshot`] of encoded xDS resources, built off to the side
//! from [`XdsResources`] and published whole.
//!
//! Each resource's version is a content hash (SHA-256 of its encoded bytes, 16 hex digits), so
//! a resource that did not change keeps its version across reloads and is not re-sent (Envoy
//! xds_protocol: "only send updates when resources change"). The `version_info` of a response is
//! the hash of the `(name, version)` set it carries ([`set_version`]).
//!
//! EDS for a cluster with a [`LocalityPlan`] is reshaped per client locality
//! ([`Snapshot::get_for`]); the result is versioned by its own content (so a client's
//! `version_info` differs from the shared one exactly when what it got differs) and cached in the
//! snapshot per (cluster, locality, `failoverPriority` label values), so clients in the same
//! place share one encoding per snapshot.
//!
//! Listeners have a second, precomputed form for gRPC's own clients where theirs differs
//! ([`peer_authn::grpc_server_form`]: no chains gRPC would drop yet validate), versioned by its own
//! content likewise.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use envoy_types::pb::google::protobuf::Any;

use crate::source::model::Locality;
use crate::translate::locality::{ClientLocality, LocalityPlan};
use crate::translate::{peer_authn, to_any, ResourceType, XdsResources};

/// (cluster, client locality, `failoverPriority` label values) → the reshaped assignment.
type LocalityCache = HashMap<(String, Locality, Vec<Option<String>>), Entry>;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The content version of encoded bytes: the first 16 hex digits of their SHA-256.
pub fn content_version(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..8])
}

/// The version of a set of `(name, version)` pairs (order-independent: pairs are sorted).
pub fn set_version<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    let mut h = Sha256::new();
    for (name, version) in pairs {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(version.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize()[..8])
}

/// One encoded resource and its content version.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Content hash of `any.value`.
    pub version: String,
    /// The resource.
    pub any: Any,
}

impl Entry {
    fn new(any: Any) -> Self {
        Entry {
            version: content_version(&any.value),
            any,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct TypeSnapshot {
    /// Every name a client may request (for LDS: canonical names and aliases).
    entries: BTreeMap<String, Entry>,
    /// The names a wildcard subscription receives (canonical names only).
    wildcard: Vec<String>,
}

/// An immutable set of versioned resources, all four types.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    types: [TypeSnapshot; 4],
    /// LDS name → the Listener in gRPC's form, where it differs from the shared one.
    grpc_listeners: BTreeMap<String, Entry>,
    resources: Arc<XdsResources>,
    /// Cluster name → index in `resources.endpoints`, for clusters with a locality plan.
    planned: HashMap<String, usize>,
    reshaped: Arc<Mutex<LocalityCache>>,
}

fn slot(ty: ResourceType) -> usize {
    match ty {
        ResourceType::Listener => 0,
        ResourceType::Route => 1,
        ResourceType::Cluster => 2,
        ResourceType::Endpoint => 3,
    }
}

impl Snapshot {
    /// Encodes and versions every resource.
    pub fn build(resources: XdsResources) -> Self {
        let mut types: [TypeSnapshot; 4] = Default::default();
        for ty in ResourceType::PUSH_ORDER {
            let t = &mut types[slot(ty)];
            for (name, any) in resources.resources_any(ty) {
                t.wildcard.push(name.clone());
                t.entries.insert(name, Entry::new(any));
            }
        }
        let lds = &mut types[slot(ResourceType::Listener)];
        for alias in resources.listener_aliases.keys() {
            if let Some(l) = resources.listener(alias) {
                lds.entries.insert(alias.clone(), Entry::new(to_any(&l)));
            }
        }
        let grpc_listeners = lds
            .entries
            .keys()
            .filter_map(|name| {
                let grpc = peer_authn::grpc_server_form(&resources.listener(name)?)?;
                Some((name.clone(), Entry::new(to_any(&grpc))))
            })
            .collect();
        let planned = resources
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| resources.locality_plans.contains_key(&e.cluster_name))
            .map(|(i, e)| (e.cluster_name.clone(), i))
            .collect();
        Snapshot {
            types,
            grpc_listeners,
            resources: Arc::new(resources),
            planned,
            reshaped: Arc::default(),
        }
    }

    /// The resource `name` of type `ty` as `client` should get it: the shared one, except a
    /// load assignment with a locality plan, reshaped for a client that sent a locality or labels,
    /// and, for one of gRPC's own clients (`grpc`), a Listener in gRPC's form.
    pub fn get_for(
        &self,
        ty: ResourceType,
        name: &str,
        client: &ClientLocality,
        grpc: bool,
    ) -> Option<Cow<'_, Entry>> {
        let shared = self.get(ty, name)?;
        if grpc && ty == ResourceType::Listener {
            return Some(Cow::Borrowed(
                self.grpc_listeners.get(name).unwrap_or(shared),
            ));
        }
        if ty != ResourceType::Endpoint || client.is_empty() {
            return Some(Cow::Borrowed(shared));
        }
        let (Some(&i), Some(plan)) = (
            self.planned.get(name),
            self.resources.locality_plans.get(name),
        ) else {
            return Some(Cow::Borrowed(shared));
        };
        Some(Cow::Owned(self.reshape(name, plan, i, client)))
    }

    fn reshape(&self, name: &str, plan: &LocalityPlan, i: usize, client: &ClientLocality) -> Entry {
        let (loc, labels) = plan.cache_key(client);
        let key = (name.to_string(), loc, labels);
        // A poisoned lock only means another stream panicked mid-insert; the map is still valid.
        let mut cache = self.reshaped.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                Entry::new(to_any(&plan.apply(&self.resources.endpoints[i], client)))
            })
            .clone()
    }

    /// The resource `name` of type `ty`.
    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Entry> {
        self.types[slot(ty)].entries.get(name)
    }

    /// The names a wildcard subscription to `ty` receives.
    pub fn wildcard_names(&self, ty: ResourceType) -> &[String] {
        &self.types[slot(ty)].wildcard
    }

    /// Number of canonical resources of `ty`.
    pub fn len(&self, ty: ResourceType) -> usize {
        self.types[slot(ty)].wildcard.len()
    }

    /// `(name, version)` of every canonical resource of `ty`.
    pub fn versions(&self, ty: ResourceType) -> Vec<(String, String)> {
        let t = &self.types[slot(ty)];
        t.wildcard
            .iter()
            .filter_map(|n| t.entries.get(n).map(|e| (n.clone(), e.version.clone())))
            .collect()
    }

    /// The version of all canonical resources of `ty`.
    pub fn type_version(&self, ty: ResourceType) -> String {
        let t = &self.types[slot(ty)];
        set_version(
            t.wildcard
                .iter()
                .filter_map(|n| t.entries.get(n).map(|e| (n.as_str(), e.version.as_str()))),
        )
    }

    /// The translated resources this snapshot was built from.
    pub fn resources(&self) -> &Arc<XdsResources> {
        &self.resources
    }
}
