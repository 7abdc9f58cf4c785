//! One response's resources: decode each `Any`, validate it into the model, write the cache.
//!
//! Per-resource validation (gRFC A46, XDS-SEMANTICS.md rows 4–5): every resource is judged on
//! its own. Valid ones are applied even when a sibling is rejected; rejected ones keep the last
//! good value in the cache and are listed in the NACK's `error_detail`. Type URLs are accepted in
//! their v2 and v3 spellings (gRFC A30) and `envoy.service.discovery.v3.Resource` wrappers are
//! unwrapped (client feature `xds.config.resource-in-sotw`). Resources nobody asked for are
//! ignored (gRFC A27). Nothing here panics on any input: garbage bytes become a rejection.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use bytes::Bytes;
use envoy_types::pb::{
    envoy::service::discovery::v3::{DiscoveryResponse, Resource},
    google::protobuf::Any,
};
use prost::Message;
use tracing::debug;

use crate::{
    cache::{Cached, ResourceCache},
    model::{ModelError, ResourceType},
};

/// Runs `$body` with `$R` bound to the model type of a [`ResourceType`].
macro_rules! with_resource_type {
    ($ty:expr, $R:ident => $body:expr) => {
        match $ty {
            $crate::model::ResourceType::Listener => {
                type $R = $crate::model::Listener;
                $body
            }
            $crate::model::ResourceType::RouteConfiguration => {
                type $R = $crate::model::RouteConfiguration;
                $body
            }
            $crate::model::ResourceType::Cluster => {
                type $R = $crate::model::Cluster;
                $body
            }
            $crate::model::ResourceType::ClusterLoadAssignment => {
                type $R = $crate::model::ClusterLoadAssignment;
                $body
            }
        }
    };
}
pub(crate) use with_resource_type;

/// The type URL of the `Resource` wrapper.
const RESOURCE_WRAPPER: &str = "envoy.service.discovery.v3.Resource";

/// What one response did to the subscribed resources.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Subscribed names present in the response (valid, invalid or TTL heartbeat).
    pub(crate) seen: HashSet<Arc<str>>,
    /// One line per rejected resource, in response order.
    pub(crate) errors: Vec<String>,
    /// How many resources were accepted into the cache.
    pub(crate) accepted: usize,
    /// Whether some resource could not even be decoded (so its name is unknown).
    pub(crate) unnamed_errors: bool,
}

/// Applies a response of type `ty` to the cache, for the names in `subscribed`.
pub(crate) fn apply(
    ty: ResourceType,
    response: &DiscoveryResponse,
    subscribed: &BTreeSet<Arc<str>>,
    cache: &ResourceCache,
) -> Outcome {
    with_resource_type!(ty, R => apply_typed::<R>(response, subscribed, cache))
}

fn apply_typed<R: Cached>(
    response: &DiscoveryResponse,
    subscribed: &BTreeSet<Arc<str>>,
    cache: &ResourceCache,
) -> Outcome {
    let ty = R::RESOURCE_TYPE;
    let mut out = Outcome::default();
    for (index, any) in response.resources.iter().enumerate() {
        let (proto, raw) = match decode::<R>(any) {
            Ok(Decoded::Proto(p, raw)) => (p, raw),
            Ok(Decoded::Heartbeat(name)) => {
                // A `Resource` without a body refreshes a TTL; we do not implement TTLs, so it
                // only says "still there".
                if let Some(name) = subscribed.get(name.as_str()) {
                    out.seen.insert(name.clone());
                }
                continue;
            }
            Err(reason) => {
                out.errors.push(format!("resource index {index}: {reason}"));
                out.unnamed_errors = true;
                continue;
            }
        };
        let Some(name) = subscribed.get(R::proto_name(&proto)).cloned() else {
            debug!(%ty, name = R::proto_name(&proto), "xds: ignoring unrequested resource");
            continue;
        };
        if !out.seen.insert(name.clone()) {
            let e =
                ModelError::invalid(ty, &name, "name", "appears more than once in the response");
            out.errors.push(format!("resource index {index}: {e}"));
            cache.reject_received::<R>(&name, e, &response.version_info);
            continue;
        }
        match R::from_proto(proto) {
            Ok(value) => {
                cache.accept_received::<R>(&name, value, &response.version_info, Some(raw));
                out.accepted += 1;
            }
            Err(e) => {
                debug!(%ty, %name, error = %e, "xds: resource rejected");
                out.errors.push(format!("resource index {index}: {e}"));
                cache.reject_received::<R>(&name, e, &response.version_info);
            }
        }
    }
    out
}

/// A decoded entry of `DiscoveryResponse.resources`.
#[derive(Debug)]
enum Decoded<P> {
    /// The resource's proto, and its bytes as received (unwrapped from a `Resource`).
    Proto(P, Bytes),
    /// A `Resource` wrapper without a body (TTL heartbeat), by name.
    Heartbeat(String),
}

fn message_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

fn decode<R: Cached>(any: &Any) -> Result<Decoded<R::Proto>, String> {
    if message_name(&any.type_url) == RESOURCE_WRAPPER {
        let wrapper = Resource::decode(any.value.as_slice())
            .map_err(|e| format!("cannot decode {RESOURCE_WRAPPER}: {e}"))?;
        return match wrapper.resource {
            Some(inner) => {
                let proto = decode_bare::<R>(&inner)?;
                Ok(Decoded::Proto(proto, Bytes::from(inner.value)))
            }
            None => Ok(Decoded::Heartbeat(wrapper.name)),
        };
    }
    let proto = decode_bare::<R>(any)?;
    Ok(Decoded::Proto(proto, Bytes::copy_from_slice(&any.value)))
}

fn decode_bare<R: Cached>(any: &Any) -> Result<R::Proto, String> {
    let expected = R::RESOURCE_TYPE;
    if ResourceType::from_type_url(&any.type_url) != Some(expected) {
        return Err(format!(
            "type url `{}` in a response of type `{}`",
            any.type_url,
            expected.type_url()
        ));
    }
    R::Proto::decode(any.value.as_slice()).map_err(|e| format!("cannot decode {expected}: {e}"))
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as ClaProto;

    use super::*;
    use crate::{cache::ResourceStatus, model::ClusterLoadAssignment};

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
        }
    }

    fn cla(name: &str) -> Any {
        let p = ClaProto {
            cluster_name: name.into(),
            ..Default::default()
        };
        any(
            ResourceType::ClusterLoadAssignment.type_url(),
            p.encode_to_vec(),
        )
    }

    fn names(n: &[&str]) -> BTreeSet<Arc<str>> {
        n.iter().map(|s| Arc::from(*s)).collect()
    }

    fn response(resources: Vec<Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: "1".into(),
            resources,
            type_url: ResourceType::ClusterLoadAssignment.type_url().into(),
            nonce: "n1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn garbage_and_wrong_types_are_rejected_without_panicking() {
        let cache = ResourceCache::new();
        let resp = response(vec![
            any(
                ResourceType::ClusterLoadAssignment.type_url(),
                vec![0xff, 0xff, 0xff],
            ),
            any(ResourceType::Cluster.type_url(), vec![]),
            any(
                "type.googleapis.com/envoy.service.discovery.v3.Resource",
                vec![0x0a],
            ),
        ]);
        let out = apply(
            ResourceType::ClusterLoadAssignment,
            &resp,
            &names(&["a"]),
            &cache,
        );
        assert_eq!(out.errors.len(), 3, "{:?}", out.errors);
        assert!(out.errors[0].starts_with("resource index 0: cannot decode endpoints"));
        assert!(out.seen.is_empty());
    }

    #[test]
    fn unrequested_ignored_duplicates_rejected_wrappers_unwrapped() {
        let cache = ResourceCache::new();
        let wrapped = Resource {
            name: "b".into(),
            resource: Some(any(
                "type.googleapis.com/envoy.api.v2.ClusterLoadAssignment",
                ClaProto {
                    cluster_name: "b".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )),
            ..Default::default()
        };
        let heartbeat = Resource {
            name: "c".into(),
            ..Default::default()
        };
        let resp = response(vec![
            cla("a"),
            cla("unrequested"),
            cla("a"),
            any(
                "type.googleapis.com/envoy.service.discovery.v3.Resource",
                wrapped.encode_to_vec(),
            ),
            any(
                "type.googleapis.com/envoy.service.discovery.v3.Resource",
                heartbeat.encode_to_vec(),
            ),
        ]);
        let out = apply(
            ResourceType::ClusterLoadAssignment,
            &resp,
            &names(&["a", "b", "c"]),
            &cache,
        );
        assert_eq!(out.seen, names(&["a", "b", "c"]).into_iter().collect());
        assert!(cache
            .entry::<ClusterLoadAssignment>("unrequested")
            .is_none());
        // The duplicate is reported; whatever the conversion says about `a` and `b`, each has
        // a status now.
        assert!(out
            .errors
            .iter()
            .any(|e| e.starts_with("resource index 2:") && e.contains("more than once")));
        for n in ["a", "b"] {
            let e = cache.entry::<ClusterLoadAssignment>(n).unwrap();
            assert_ne!(e.status, ResourceStatus::Requested);
        }
        assert!(cache.entry::<ClusterLoadAssignment>("c").is_none());
    }
}
