//! The descriptor pool compiled from `envoy-types`' `.proto` files by `build.rs`, and the
//! post-decode pass that turns `OpaqueJson` stand-ins back into `Any`s of their original type.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

use super::SourceError;
use crate::model::convert::message_name;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));

/// `google.protobuf.Any`.
pub(super) const ANY: &str = "google.protobuf.Any";
/// The stand-in for an `Any` whose type is not in the pool (see `build.rs`).
pub(super) const OPAQUE_JSON: &str = "mesh.source.v1.OpaqueJson";

/// The `OpaqueJson` stand-in: the original type URL and the object's JSON text.
#[derive(Clone, PartialEq, ::prost::Message)]
struct OpaqueJson {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(string, tag = "2")]
    json: String,
}

/// The pool, decoded once.
pub(super) fn pool() -> Result<&'static DescriptorPool, SourceError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| SourceError::Descriptors(e.clone()))
}

/// Replaces every `OpaqueJson` stand-in under `msg` (including inside the encoded bytes of known
/// `Any`s) with an `Any` carrying the original type URL and the JSON text as its value. Returns
/// whether anything changed.
pub(super) fn restore_opaque(
    pool: &DescriptorPool,
    msg: &mut DynamicMessage,
) -> Result<bool, String> {
    if msg.descriptor().full_name() == ANY {
        return restore_any(pool, msg);
    }
    let mut changed = false;
    for (_, v) in msg.fields_mut() {
        changed |= restore_value(pool, v)?;
    }
    Ok(changed)
}

fn restore_value(pool: &DescriptorPool, v: &mut Value) -> Result<bool, String> {
    let mut changed = false;
    match v {
        Value::Message(m) => changed |= restore_opaque(pool, m)?,
        Value::List(items) => {
            for x in items {
                changed |= restore_value(pool, x)?;
            }
        }
        Value::Map(map) => {
            for x in map.values_mut() {
                changed |= restore_value(pool, x)?;
            }
        }
        _ => {}
    }
    Ok(changed)
}

fn restore_any(pool: &DescriptorPool, any: &mut DynamicMessage) -> Result<bool, String> {
    let url = match any.get_field_by_name("type_url").as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => return Ok(false),
    };
    let bytes = match any.get_field_by_name("value").as_deref() {
        Some(Value::Bytes(b)) => b.clone(),
        _ => return Ok(false),
    };
    let name = message_name(&url);
    if name == OPAQUE_JSON {
        let o = OpaqueJson::decode(bytes).map_err(|e| format!("opaque any: {e}"))?;
        any.set_field_by_name("type_url", Value::String(o.type_url));
        any.set_field_by_name("value", Value::Bytes(o.json.into_bytes().into()));
        return Ok(true);
    }
    let Some(desc) = pool.get_message_by_name(name) else {
        return Ok(false);
    };
    let mut inner = DynamicMessage::decode(desc, bytes).map_err(|e| format!("{name}: {e}"))?;
    if restore_opaque(pool, &mut inner)? {
        any.set_field_by_name("value", Value::Bytes(inner.encode_to_vec().into()));
        return Ok(true);
    }
    Ok(false)
}
