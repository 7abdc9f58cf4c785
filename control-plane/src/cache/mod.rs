//! Versioned resources: an immutable [`Snapshot`] of encoded xDS resources, built off to the side
//! from [`XdsResources`] and published whole.
//!
//! Each resource's version is a content hash (SHA-256 of its encoded bytes, 16 hex digits), so
//! a resource that did not change keeps its version across reloads and is not re-sent (Envoy
//! xds_protocol: "only send updates when resources change"). The `version_info` of a response is
//! the hash of the `(name, version)` set it carries ([`set_version`]).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use crate::translate::{to_any, ResourceType, XdsResources};

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
    resources: Arc<XdsResources>,
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
        Snapshot {
            types,
            resources: Arc::new(resources),
        }
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
