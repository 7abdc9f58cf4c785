//! The static source: Envoy resources from a file (or from protos built in-process) into the same
//! [`ResourceCache`] the ADS client fills, so the mesh runs with no control-plane process.
//!
//! Files use the protobuf JSON mapping of the Envoy v3 API (camelCase or proto field names,
//! `@type` on every `Any`), as JSON or YAML (several YAML documents form a list). Accepted
//! shapes:
//! - one resource object with `@type` (`type.googleapis.com/envoy.config.listener.v3.Listener`,
//!   `…route.v3.RouteConfiguration`, `…cluster.v3.Cluster`, `…endpoint.v3.ClusterLoadAssignment`;
//!   v2 URLs are read as v3, gRFC A30);
//! - a list of them;
//! - an object with `resources: [...]` (a DiscoveryResponse);
//! - an Envoy admin `/config_dump`: the tree is walked and every object whose `@type` is one of the
//!   four is taken (`dynamic_active_clusters[].cluster`, `dynamic_listeners[].active_state.listener`,
//!   `dynamic_route_configs[].route_config`, `dynamic_endpoint_configs[].endpoint_config`, the
//!   static ones…).
//!
//! Objects without `@type` are accepted at the top level when a default type is known:
//! [`DecodeOptions::default_type`], which [`StaticSource::from_file`] infers from file names like
//! `*.listeners.yaml`, `*.routes.json`, `*.clusters.yml`, `*.endpoints.yaml`.
//!
//! How: `envoy-types` has no serde, so `build.rs` compiles the `.proto` files it ships into a
//! descriptor set (with `protox`); text → `serde_json::Value` → `prost_reflect::DynamicMessage` →
//! bytes → the `envoy-types` struct. An `Any` whose type is not in that set (Istio-private
//! extensions such as `stats.PluginConfig`) is carried opaquely — same type URL, the object's JSON
//! text as value — and rejected later only if something must interpret it (an unknown
//! non-optional HTTP filter is, per gRFC A39). Validation then goes through the model's `TryFrom`
//! ([`apply`]), exactly as for ADS: a bad resource is rejected by name and the rest applies
//! (gRFC A46 per-resource semantics).

mod error;
mod json;
mod pool;

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
};

use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster as ClusterProto, endpoint::v3::ClusterLoadAssignment as ClaProto,
    listener::v3::Listener as ListenerProto, route::v3::RouteConfiguration as RouteProto,
};

pub use error::SourceError;

use crate::cache::{Cached, ResourceCache};
use crate::model::{
    Cluster, ClusterLoadAssignment, Listener, ModelError, ResourceType, RouteConfiguration,
    XdsResource,
};

/// The text format of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (one or more documents).
    Yaml,
}

impl Format {
    /// The format for a file name: `.json`, `.yaml` or `.yml`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Options for [`decode_resources_with`].
#[derive(Clone, Debug, Default)]
pub struct DecodeOptions {
    /// The type of top-level objects without `@type` (`None`: such objects are an error).
    pub default_type: Option<ResourceType>,
    /// Ignore fields the descriptors do not know (default: reject them, so typos are caught).
    pub ignore_unknown_fields: bool,
}

/// One decoded resource: the `envoy-types` proto, not validated yet.
// Unboxed on purpose: these live briefly on the config path, and the protos are matched by value.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum DecodedResource {
    /// `envoy.config.listener.v3.Listener`.
    Listener(ListenerProto),
    /// `envoy.config.route.v3.RouteConfiguration`.
    RouteConfiguration(RouteProto),
    /// `envoy.config.cluster.v3.Cluster`.
    Cluster(ClusterProto),
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    ClusterLoadAssignment(ClaProto),
}

impl DecodedResource {
    /// Which of the four types it is.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            DecodedResource::Listener(_) => ResourceType::Listener,
            DecodedResource::RouteConfiguration(_) => ResourceType::RouteConfiguration,
            DecodedResource::Cluster(_) => ResourceType::Cluster,
            DecodedResource::ClusterLoadAssignment(_) => ResourceType::ClusterLoadAssignment,
        }
    }

    /// Its name on the wire (`cluster_name` for a load assignment).
    pub fn name(&self) -> &str {
        match self {
            DecodedResource::Listener(p) => Listener::proto_name(p),
            DecodedResource::RouteConfiguration(p) => RouteConfiguration::proto_name(p),
            DecodedResource::Cluster(p) => Cluster::proto_name(p),
            DecodedResource::ClusterLoadAssignment(p) => ClusterLoadAssignment::proto_name(p),
        }
    }

    /// Decodes an encoded resource by its type URL (v2 URLs read as v3).
    pub fn from_encoded(type_url: &str, value: &[u8]) -> Result<Self, SourceError> {
        use prost::Message;
        let err = |message: String| SourceError::Any {
            type_url: type_url.to_owned(),
            message,
        };
        let rt = ResourceType::from_type_url(type_url)
            .ok_or_else(|| err("not a listener, route, cluster or endpoints resource".into()))?;
        let e = |d: prost::DecodeError| err(d.to_string());
        Ok(match rt {
            ResourceType::Listener => DecodedResource::Listener(Message::decode(value).map_err(e)?),
            ResourceType::RouteConfiguration => {
                DecodedResource::RouteConfiguration(Message::decode(value).map_err(e)?)
            }
            ResourceType::Cluster => DecodedResource::Cluster(Message::decode(value).map_err(e)?),
            ResourceType::ClusterLoadAssignment => {
                DecodedResource::ClusterLoadAssignment(Message::decode(value).map_err(e)?)
            }
        })
    }
}

impl TryFrom<&prost_types::Any> for DecodedResource {
    type Error = SourceError;
    fn try_from(any: &prost_types::Any) -> Result<Self, SourceError> {
        DecodedResource::from_encoded(&any.type_url, &any.value)
    }
}

impl TryFrom<&envoy_types::pb::google::protobuf::Any> for DecodedResource {
    type Error = SourceError;
    fn try_from(any: &envoy_types::pb::google::protobuf::Any) -> Result<Self, SourceError> {
        DecodedResource::from_encoded(&any.type_url, &any.value)
    }
}

macro_rules! from_proto {
    ($variant:ident, $proto:ty) => {
        impl From<$proto> for DecodedResource {
            fn from(p: $proto) -> Self {
                DecodedResource::$variant(p)
            }
        }
    };
}
from_proto!(Listener, ListenerProto);
from_proto!(RouteConfiguration, RouteProto);
from_proto!(Cluster, ClusterProto);
from_proto!(ClusterLoadAssignment, ClaProto);

/// Decodes every resource in `text` (see the module docs for the accepted shapes).
pub fn decode_resources(text: &str, format: Format) -> Result<Vec<DecodedResource>, SourceError> {
    decode_resources_with(text, format, &DecodeOptions::default())
}

/// [`decode_resources`] with options. Fails on the first resource that does not decode.
pub fn decode_resources_with(
    text: &str,
    format: Format,
    options: &DecodeOptions,
) -> Result<Vec<DecodedResource>, SourceError> {
    let root = parse(text, format)?;
    json::collect(root, options.default_type)?
        .into_iter()
        .enumerate()
        .map(|(i, found)| json::decode(found, i, options))
        .collect()
}

fn parse(text: &str, format: Format) -> Result<serde_json::Value, SourceError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| SourceError::Syntax {
            format: "json",
            message: e.to_string(),
        }),
        Format::Yaml => {
            use serde::Deserialize;
            let mut docs = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(text) {
                let v = serde_json::Value::deserialize(doc).map_err(|e| SourceError::Syntax {
                    format: "yaml",
                    message: e.to_string(),
                })?;
                if !v.is_null() {
                    docs.push(v);
                }
            }
            Ok(match docs.len() {
                0 => serde_json::Value::Array(Vec::new()),
                1 => docs.pop().unwrap_or_default(),
                _ => serde_json::Value::Array(docs),
            })
        }
    }
}

/// Validates each resource into the model and stores it: valid ones are accepted into `cache`
/// with `version`, invalid ones are rejected by name (keeping any previous value). Returns the
/// validation errors, in input order.
pub fn apply(
    cache: &ResourceCache,
    resources: Vec<DecodedResource>,
    version: &str,
) -> Vec<ModelError> {
    let mut errors = Vec::new();
    for r in resources {
        let result = match r {
            DecodedResource::Listener(p) => store::<Listener>(cache, p, version),
            DecodedResource::RouteConfiguration(p) => {
                store::<RouteConfiguration>(cache, p, version)
            }
            DecodedResource::Cluster(p) => store::<Cluster>(cache, p, version),
            DecodedResource::ClusterLoadAssignment(p) => {
                store::<ClusterLoadAssignment>(cache, p, version)
            }
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    errors
}

/// [`apply`] for encoded resources built in-process (e.g. by the control plane used as a
/// library): no JSON detour. Every `Any` is decoded first; if one is not one of the four types or
/// does not decode (a programming error, not a config error) nothing is applied.
pub fn apply_any(
    cache: &ResourceCache,
    anys: &[prost_types::Any],
    version: &str,
) -> Result<Vec<ModelError>, SourceError> {
    let decoded = anys
        .iter()
        .map(DecodedResource::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(apply(cache, decoded, version))
}

fn store<R: Cached>(
    cache: &ResourceCache,
    proto: R::Proto,
    version: &str,
) -> Result<(), ModelError> {
    let name = R::proto_name(&proto).to_owned();
    // Kept for CSDS `xds_config`, as the ADS client keeps what it received.
    let raw = bytes::Bytes::from(prost::Message::encode_to_vec(&proto));
    match R::from_proto(proto) {
        Ok(v) => {
            cache.accept_received::<R>(&name, v, version, Some(raw));
            Ok(())
        }
        Err(e) => {
            cache.reject_received::<R>(&name, e.clone(), version);
            Err(e)
        }
    }
}

/// Resources loaded from a file into a fresh [`ResourceCache`].
#[derive(Clone, Debug)]
pub struct StaticSource {
    path: PathBuf,
    cache: ResourceCache,
    errors: Vec<ModelError>,
    version: String,
}

impl StaticSource {
    /// Reads `path` (format from its extension; default resource type from names like
    /// `*.clusters.yaml`), decodes it, and validates every resource into a new cache. A resource
    /// that fails validation is rejected by name and listed in [`errors`](Self::errors); a file
    /// that does not read or decode is an error.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let path = path.as_ref();
        let format = Format::from_path(path).ok_or_else(|| SourceError::UnknownFormat {
            path: path.to_owned(),
        })?;
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let options = DecodeOptions {
            default_type: default_type_for(path),
            ..DecodeOptions::default()
        };
        let resources =
            decode_resources_with(&text, format, &options).map_err(|e| SourceError::File {
                path: path.to_owned(),
                source: Box::new(e),
            })?;
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        let version = format!("{:016x}", h.finish());
        let cache = ResourceCache::new();
        let errors = apply(&cache, resources, &version);
        Ok(StaticSource {
            path: path.to_owned(),
            cache,
            errors,
            version,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The filled cache.
    pub fn cache(&self) -> &ResourceCache {
        &self.cache
    }

    /// Resources that failed validation.
    pub fn errors(&self) -> &[ModelError] {
        &self.errors
    }

    /// The version the resources were stored with (a hash of the file's text).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The cache and the validation errors.
    pub fn into_parts(self) -> (ResourceCache, Vec<ModelError>) {
        (self.cache, self.errors)
    }
}

/// `foo.listeners.yaml` → listeners, and likewise `routes`, `clusters`, `endpoints`.
pub fn default_type_for(path: &Path) -> Option<ResourceType> {
    let stem = Path::new(path.file_stem()?);
    match stem.extension()?.to_str()? {
        "listeners" | "listener" => Some(ResourceType::Listener),
        "routes" | "route" => Some(ResourceType::RouteConfiguration),
        "clusters" | "cluster" => Some(ResourceType::Cluster),
        "endpoints" | "endpoint" => Some(ResourceType::ClusterLoadAssignment),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
