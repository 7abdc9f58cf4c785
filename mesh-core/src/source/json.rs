//! JSON tree → resources: find the resource objects, stand in for `Any`s of unknown types, decode
//! with the descriptor pool, and on failure find the JSON path of the offending value.

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::{pool, DecodedResource, SourceError};
use crate::model::{convert::message_name, ResourceType};

/// A resource object found in the tree.
pub(super) struct Found {
    pub rt: ResourceType,
    pub json_path: String,
    pub value: Value,
}

/// Keys of an Envoy admin `config_dump` whose resources are superseded by another entry.
const SKIPPED_KEYS: &[&str] = &["draining_state", "drainingState"];

fn resource_type_of(obj: &Map<String, Value>) -> Option<ResourceType> {
    match obj.get("@type") {
        Some(Value::String(url)) => ResourceType::from_type_url(url),
        _ => None,
    }
}

/// Finds the resources in a parsed document: a resource, a list of them, an object with
/// `resources: [...]`, or any tree (an admin `config_dump`) with resources somewhere inside.
/// Objects without `@type` count as `default` resources at the top level and in a top-level
/// list.
pub(super) fn collect(
    root: Value,
    default: Option<ResourceType>,
) -> Result<Vec<Found>, SourceError> {
    let mut out = Vec::new();
    match root {
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                top_level(item, format!("$[{i}]"), default, &mut out)?;
            }
        }
        other => top_level(other, "$".to_owned(), default, &mut out)?,
    }
    Ok(out)
}

fn top_level(
    v: Value,
    path: String,
    default: Option<ResourceType>,
    out: &mut Vec<Found>,
) -> Result<(), SourceError> {
    if let Value::Object(obj) = &v {
        let container = ["@type", "resources", "configs"]
            .iter()
            .any(|k| obj.contains_key(*k));
        if !container {
            let Some(rt) = default else {
                return Err(SourceError::NoType {
                    index: out.len(),
                    json_path: path,
                });
            };
            out.push(Found {
                rt,
                json_path: path,
                value: v,
            });
            return Ok(());
        }
    }
    walk(v, path, out);
    Ok(())
}

fn walk(v: Value, path: String, out: &mut Vec<Found>) {
    match v {
        Value::Object(obj) => {
            if let Some(rt) = resource_type_of(&obj) {
                out.push(Found {
                    rt,
                    json_path: path,
                    value: Value::Object(obj),
                });
                return;
            }
            for (k, child) in obj {
                if SKIPPED_KEYS.contains(&k.as_str()) {
                    continue;
                }
                walk(child, format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.into_iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The name a resource object gives itself, for error messages before decoding.
pub(super) fn name_of(rt: ResourceType, v: &Value) -> String {
    let keys: &[&str] = match rt {
        ResourceType::ClusterLoadAssignment => &["cluster_name", "clusterName"],
        _ => &["name"],
    };
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn message_full_name(rt: ResourceType) -> &'static str {
    message_name(rt.type_url())
}

/// Decodes one found resource into its `envoy-types` proto.
pub(super) fn decode(
    found: Found,
    index: usize,
    options: &super::DecodeOptions,
) -> Result<DecodedResource, SourceError> {
    let pool = pool::pool()?;
    let Found {
        rt,
        json_path,
        mut value,
    } = found;
    let name = name_of(rt, &value);
    let fail = |json_path: String, message: String| SourceError::Decode {
        resource_type: rt,
        index,
        name: name.clone(),
        json_path,
        message,
    };
    let desc = pool
        .get_message_by_name(message_full_name(rt))
        .ok_or_else(|| SourceError::Descriptors(format!("{} missing", message_full_name(rt))))?;
    if let Value::Object(obj) = &mut value {
        obj.remove("@type");
    }
    let mut opaque = 0usize;
    prepare_message(pool, &mut value, &desc, &mut opaque);
    let opts = DeserializeOptions::new().deny_unknown_fields(!options.ignore_unknown_fields);
    let mut msg = match DynamicMessage::deserialize_with_options(desc.clone(), &value, &opts) {
        Ok(m) => m,
        Err(e) => {
            let at = locate(pool, &desc, &value, json_path, &opts);
            return Err(fail(at, e.to_string()));
        }
    };
    if opaque > 0 {
        pool::restore_opaque(pool, &mut msg).map_err(|e| fail(json_path.clone(), e))?;
    }
    let bytes = msg.encode_to_vec();
    let err = |e: prost::DecodeError| fail(json_path.clone(), e.to_string());
    Ok(match rt {
        ResourceType::Listener => DecodedResource::Listener(Message::decode(&*bytes).map_err(err)?),
        ResourceType::RouteConfiguration => {
            DecodedResource::RouteConfiguration(Message::decode(&*bytes).map_err(err)?)
        }
        ResourceType::Cluster => DecodedResource::Cluster(Message::decode(&*bytes).map_err(err)?),
        ResourceType::ClusterLoadAssignment => {
            DecodedResource::ClusterLoadAssignment(Message::decode(&*bytes).map_err(err)?)
        }
    })
}

fn field_of(desc: &MessageDescriptor, key: &str) -> Option<prost_reflect::FieldDescriptor> {
    desc.get_field_by_json_name(key)
        .or_else(|| desc.get_field_by_name(key))
}

/// Walks `value` (the JSON of message `desc`) and replaces every `Any` whose `@type` is not in
/// the pool with an `OpaqueJson` stand-in, so unknown (e.g. Istio-private) extension types are
/// carried as bytes instead of failing the whole resource. Guided by the schema, so JSON inside a
/// `google.protobuf.Struct` is never touched.
fn prepare_message(
    pool: &DescriptorPool,
    value: &mut Value,
    desc: &MessageDescriptor,
    n: &mut usize,
) {
    let full = desc.full_name();
    if full == pool::ANY {
        prepare_any(pool, value, n);
        return;
    }
    // Other well-known types have special JSON forms and contain no `Any`.
    if full.starts_with("google.protobuf.") {
        return;
    }
    let Value::Object(obj) = value else { return };
    for (key, child) in obj.iter_mut() {
        let Some(field) = field_of(desc, key) else {
            continue;
        };
        let Kind::Message(md) = field.kind() else {
            continue;
        };
        if field.is_map() {
            if let (Kind::Message(vmd), Value::Object(m)) =
                (md.map_entry_value_field().kind(), child)
            {
                for x in m.values_mut() {
                    prepare_message(pool, x, &vmd, n);
                }
            }
        } else if field.is_list() {
            if let Value::Array(items) = child {
                for x in items {
                    prepare_message(pool, x, &md, n);
                }
            }
        } else {
            prepare_message(pool, child, &md, n);
        }
    }
}

fn prepare_any(pool: &DescriptorPool, value: &mut Value, n: &mut usize) {
    let Value::Object(obj) = value else { return };
    let Some(Value::String(url)) = obj.get("@type") else {
        return;
    };
    let url = url.clone();
    if let Some(md) = pool.get_message_by_name(message_name(&url)) {
        prepare_message(pool, value, &md, n);
        return;
    }
    let mut body = std::mem::take(obj);
    body.remove("@type");
    let json = Value::Object(body).to_string();
    let mut stand_in = Map::new();
    stand_in.insert(
        "@type".into(),
        Value::String(format!("type.googleapis.com/{}", pool::OPAQUE_JSON)),
    );
    stand_in.insert("typeUrl".into(), Value::String(url));
    stand_in.insert("json".into(), Value::String(json));
    *obj = stand_in;
    *n += 1;
}

/// Finds the deepest JSON path under `value` that fails to deserialize on its own.
fn locate(
    pool: &DescriptorPool,
    desc: &MessageDescriptor,
    value: &Value,
    path: String,
    opts: &DeserializeOptions,
) -> String {
    let desc = if desc.full_name() == pool::ANY {
        match value
            .get("@type")
            .and_then(Value::as_str)
            .and_then(|u| pool.get_message_by_name(message_name(u)))
        {
            Some(d) => d,
            None => return path,
        }
    } else if desc.full_name().starts_with("google.protobuf.") {
        return path;
    } else {
        desc.clone()
    };
    let Value::Object(obj) = value else {
        return path;
    };
    let ok = |d: &MessageDescriptor, v: &Value| {
        DynamicMessage::deserialize_with_options(d.clone(), v, opts).is_ok()
    };
    for (key, child) in obj {
        if key == "@type" {
            continue;
        }
        let fpath = format!("{path}.{key}");
        let Some(field) = field_of(&desc, key) else {
            return fpath;
        };
        let mut single = Map::new();
        single.insert(key.clone(), child.clone());
        if ok(&desc, &Value::Object(single)) {
            continue;
        }
        return match (field.kind(), child) {
            (Kind::Message(md), Value::Array(items)) if field.is_list() => items
                .iter()
                .enumerate()
                .find(|(_, x)| !ok(&md, x))
                .map(|(i, x)| locate(pool, &md, x, format!("{fpath}[{i}]"), opts))
                .unwrap_or(fpath),
            (Kind::Message(md), _) if !field.is_map() => locate(pool, &md, child, fpath, opts),
            _ => fpath,
        };
    }
    path
}
