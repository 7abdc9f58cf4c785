//! `TryFrom` the `envoy-types` protos into the model — the only place protobuf types appear.
//!
//! PLACEHOLDER: the per-type conversions (listener.rs, route.rs, cluster.rs, endpoint.rs) are
//! being written; until then every conversion fails with `Unsupported`.

use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster as ClusterProto, endpoint::v3::ClusterLoadAssignment as ClaProto,
    listener::v3::Listener as ListenerProto, route::v3::RouteConfiguration as RouteProto,
};

use super::{
    Cluster, ClusterLoadAssignment, Listener, ModelError, ResourceType, RouteConfiguration,
    XdsResource,
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

macro_rules! placeholder {
    ($model:ty, $proto:ty, $rt:expr, $name:ident) => {
        impl TryFrom<$proto> for $model {
            type Error = ModelError;
            fn try_from(p: $proto) -> Result<Self, ModelError> {
                Err(ModelError::unsupported(
                    $rt,
                    &p.$name,
                    "",
                    "conversion not written yet",
                ))
            }
        }
    };
}
placeholder!(Listener, ListenerProto, ResourceType::Listener, name);
placeholder!(
    RouteConfiguration,
    RouteProto,
    ResourceType::RouteConfiguration,
    name
);
placeholder!(Cluster, ClusterProto, ResourceType::Cluster, name);
placeholder!(
    ClusterLoadAssignment,
    ClaProto,
    ResourceType::ClusterLoadAssignment,
    cluster_name
);
