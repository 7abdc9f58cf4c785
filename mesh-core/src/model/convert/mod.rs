//! `TryFrom` the `envoy-types` protos into the model — the only place protobuf types appear.
//!
//! Each conversion validates the way Envoy and gRPC's xDS client do (XDS-SEMANTICS.md rows 1–10,
//! 18, 19, 21, 22; gRFC A27 for clusters and endpoints, A28 for routes, A39 for HTTP filters,
//! A48 / A52 for load-balancing policies) and rejects a resource with a [`ModelError`] naming the
//! resource type, the resource, the dotted field path and the reason. Nothing here panics on any
//! input: every index, every enum value and every nested `Any` is checked.
//!
//! Fields the model does not carry yet (per-filter overrides of filters other than the fault
//! filter) are ignored rather than rejected: later work reads them from the same protos.
//!
//! - `listener`: API listener → HttpConnectionManager → HTTP filters (A27, A39, A41).
//! - `route`: RouteConfiguration → VirtualHost → Route (A28; Envoy `route_components.proto`).
//! - `matcher`: string, header and query-parameter matchers (A28, A63).
//! - `policy`: route timeouts, retry policies, cluster retry limits (A31, A44).
//! - `outlier`: outlier detection and connection-pool circuit breakers (A50; Envoy
//!   `outlier_detection.proto`, `circuit_breaker.proto`).
//! - `cluster`: discovery type, lb_policy / load_balancing_policy, ring hash / Maglev / panic
//!   threshold / locality settings (A27, A42, A48, A52).
//! - `hash_policy`: `RouteAction.hash_policy` (A42).
//! - `fault`: the fault filter and its per-route overrides (A33, A39).
//! - `endpoint`: ClusterLoadAssignment (A27; grpc-go `unmarshal_eds.go`).
//! - `rbac`: the RBAC HTTP filter (A41); `server`: server listeners (A36) carrying it.
//! - `upstream_tls`: `Cluster.transport_socket` → plaintext or TLS (A29; Envoy
//!   `UpstreamTlsContext`), failing closed on what the mesh cannot honour.

mod cluster;
mod endpoint;
mod fault;
mod hash_policy;
mod jwt;
mod listener;
mod matcher;
mod outlier;
mod policy;
mod rbac;
mod rewrite;
mod route;
mod server;
mod upstream_tls;

use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster as ClusterProto, endpoint::v3::ClusterLoadAssignment as ClaProto,
    listener::v3::Listener as ListenerProto, route::v3::RouteConfiguration as RouteProto,
};
use envoy_types::pb::google::protobuf::{Any, Struct};

use super::{
    Cluster, ClusterLoadAssignment, Listener, ModelError, OpaqueAny, ResourceType,
    RouteConfiguration, XdsResource,
};

macro_rules! resource {
    ($model:ty, $proto:ty, $rt:expr, $proto_field:ident, $field:ident) => {
        impl XdsResource for $model {
            const RESOURCE_TYPE: ResourceType = $rt;
            type Proto = $proto;
            fn proto_name(proto: &Self::Proto) -> &str {
                &proto.$proto_field
            }
            fn from_proto(proto: Self::Proto) -> Result<Self, ModelError> {
                <$model>::try_from(proto)
            }
            fn name(&self) -> &str {
                &self.$field
            }
        }
    };
}

resource!(Listener, ListenerProto, ResourceType::Listener, name, name);
resource!(
    RouteConfiguration,
    RouteProto,
    ResourceType::RouteConfiguration,
    name,
    name
);
resource!(Cluster, ClusterProto, ResourceType::Cluster, name, name);
resource!(
    ClusterLoadAssignment,
    ClaProto,
    ResourceType::ClusterLoadAssignment,
    cluster_name,
    cluster_name
);

impl TryFrom<ListenerProto> for Listener {
    type Error = ModelError;
    fn try_from(proto: ListenerProto) -> Result<Self, ModelError> {
        listener::convert(proto)
    }
}

impl TryFrom<RouteProto> for RouteConfiguration {
    type Error = ModelError;
    fn try_from(proto: RouteProto) -> Result<Self, ModelError> {
        let name = proto.name.clone();
        let cx = Ctx::new(ResourceType::RouteConfiguration, &name);
        route::route_configuration(&cx, &Path::root(), proto)
    }
}

impl TryFrom<ClusterProto> for Cluster {
    type Error = ModelError;
    fn try_from(proto: ClusterProto) -> Result<Self, ModelError> {
        cluster::convert(proto)
    }
}

impl TryFrom<ClaProto> for ClusterLoadAssignment {
    type Error = ModelError;
    fn try_from(proto: ClaProto) -> Result<Self, ModelError> {
        let name = proto.cluster_name.clone();
        let cx = Ctx::new(ResourceType::ClusterLoadAssignment, &name);
        if name.is_empty() {
            return Err(cx.invalid(&Path::root().field("cluster_name"), "must not be empty"));
        }
        endpoint::load_assignment(&cx, &Path::root(), proto, &name)
    }
}

/// Which resource an error belongs to: every error built through it names the resource type and
/// the resource.
pub(crate) struct Ctx<'a> {
    rt: ResourceType,
    name: &'a str,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(rt: ResourceType, name: &'a str) -> Self {
        Ctx { rt, name }
    }

    pub(crate) fn invalid(&self, field: &Path, reason: impl Into<String>) -> ModelError {
        ModelError::invalid(self.rt, self.name, field.as_str(), reason)
    }

    pub(crate) fn unsupported(&self, field: &Path, reason: impl Into<String>) -> ModelError {
        ModelError::unsupported(self.rt, self.name, field.as_str(), reason)
    }
}

/// A dotted field path under construction, e.g. `virtual_hosts[0].routes[2].match`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn root() -> Self {
        Path(String::new())
    }

    /// `self.name`.
    pub(crate) fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// `self.name[i]`.
    pub(crate) fn index(&self, name: &str, i: usize) -> Path {
        let mut p = self.field(name);
        p.0.push_str(&format!("[{i}]"));
        p
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` (identical wire layout): an extension
/// config given as JSON-like `Struct`, identified by its inner `type_url` (gRFC A39).
#[derive(Clone, PartialEq, ::prost::Message)]
pub(crate) struct TypedStruct {
    /// The type URL of the message the struct stands for.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message as a `Struct`.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Struct>,
}

const UDPA_TYPED_STRUCT: &str = "udpa.type.v1.TypedStruct";
const XDS_TYPED_STRUCT: &str = "xds.type.v3.TypedStruct";

/// The fully qualified message name of a type URL (the part after the last `/`).
pub(crate) fn message_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// An extension config, identified: the message name it stands for, unwrapping a `TypedStruct`,
/// and the `Struct` when it was one.
pub(crate) struct Extension {
    pub name: String,
    pub typed_struct: Option<Struct>,
}

/// Identifies an `Any`, unwrapping `TypedStruct`s. A `TypedStruct` whose bytes do not decode is
/// an error; a `TypedStruct` carried as JSON text (an unknown type in the static source) is
/// identified by its outer type.
pub(crate) fn identify(cx: &Ctx<'_>, path: &Path, any: &Any) -> Result<Extension, ModelError> {
    let outer = message_name(&any.type_url);
    if outer == UDPA_TYPED_STRUCT || outer == XDS_TYPED_STRUCT {
        let ts = <TypedStruct as prost::Message>::decode(any.value.as_slice())
            .map_err(|e| cx.invalid(path, format!("bad {outer}: {e}")))?;
        if ts.type_url.is_empty() {
            return Err(cx.invalid(&path.field("type_url"), "typed struct without a type_url"));
        }
        return Ok(Extension {
            name: message_name(&ts.type_url).to_owned(),
            typed_struct: Some(ts.value.unwrap_or_default()),
        });
    }
    Ok(Extension {
        name: outer.to_owned(),
        typed_struct: None,
    })
}

/// Decodes an `Any` that must hold message `M`.
pub(crate) fn decode_any<M: prost::Message + Default>(
    cx: &Ctx<'_>,
    path: &Path,
    any: &Any,
) -> Result<M, ModelError> {
    M::decode(any.value.as_slice()).map_err(|e| {
        cx.invalid(
            path,
            format!("cannot decode {}: {e}", message_name(&any.type_url)),
        )
    })
}

/// An `Any` kept as bytes.
pub(crate) fn opaque(any: &Any) -> OpaqueAny {
    OpaqueAny {
        type_url: any.type_url.as_str().into(),
        value: bytes::Bytes::copy_from_slice(&any.value),
    }
}

/// `true` when a `ConfigSource` points at the ADS stream or at the server that sent the resource
/// (the only two forms a gRPC client follows, gRFC A27).
pub(crate) fn is_ads_or_self(cs: &envoy_types::pb::envoy::config::core::v3::ConfigSource) -> bool {
    use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    matches!(
        cs.config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_)) | Some(ConfigSourceSpecifier::Self_(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_builds_dotted_names() {
        let p = Path::root().index("virtual_hosts", 0).index("routes", 2);
        assert_eq!(
            p.field("match").as_str(),
            "virtual_hosts[0].routes[2].match"
        );
        assert_eq!(Path::root().field("name").as_str(), "name");
    }

    #[test]
    fn typed_struct_is_unwrapped() {
        let ts = TypedStruct {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router".into(),
            value: None,
        };
        let any = Any {
            type_url: format!("type.googleapis.com/{UDPA_TYPED_STRUCT}"),
            value: prost::Message::encode_to_vec(&ts),
        };
        let cx = Ctx::new(ResourceType::Listener, "l");
        let ext = identify(&cx, &Path::root(), &any).unwrap();
        assert_eq!(ext.name, "envoy.extensions.filters.http.router.v3.Router");
        assert!(ext.typed_struct.is_some());
    }

    #[test]
    fn garbage_typed_struct_is_invalid() {
        let any = Any {
            type_url: format!("type.googleapis.com/{XDS_TYPED_STRUCT}"),
            value: vec![0xff, 0xff, 0xff],
        };
        let cx = Ctx::new(ResourceType::Listener, "l");
        let err = identify(&cx, &Path::root().field("x"), &any).err().unwrap();
        assert_eq!(err.kind, crate::model::ErrorKind::Invalid);
        assert_eq!(err.field, "x");
    }
}
