//! The xDS bootstrap: which control plane to talk to and who we are, in gRPC's JSON format.
//!
//! Format: gRFC A27 ("xDS-Based Global Load Balancing", bootstrap file), with the additions of
//! A47 (`authorities`, `client_default_listener_resource_name_template`), A36
//! (`server_listener_resource_name_template`), A29 (`certificate_providers`) and A65 (`tls`
//! channel credentials). The file is named by `GRPC_XDS_BOOTSTRAP`; its contents may instead be
//! given inline in `GRPC_XDS_BOOTSTRAP_CONFIG` (the file wins when both are set, as in gRPC).
//!
//! Parsing follows gRPC's rules: unknown fields are ignored (Istio's own bootstrap carries
//! extras), a field of the wrong JSON type is an error, and the *first supported* entry of
//! `channel_creds` is kept. Every error names the offending field, e.g.
//! `xds_servers[0].server_uri: missing`.
//!
//! [`NodeInfo`] becomes the `envoy.config.core.v3.Node` sent on the first request of every ADS
//! stream, with our user agent and the client features gRPC advertises
//! (`envoy.lb.does_not_support_overprovisioning`, `xds.config.resource-in-sotw`; Envoy
//! `xds_protocol`, "Resource TTL", and XDS-SEMANTICS.md row 14).

use std::{collections::BTreeMap, fmt, path::Path};

use serde_json::{Map, Value};

/// Environment variable naming the bootstrap file (gRFC A27).
pub const BOOTSTRAP_ENV: &str = "GRPC_XDS_BOOTSTRAP";
/// Environment variable holding the bootstrap JSON inline (gRFC A27).
pub const BOOTSTRAP_CONFIG_ENV: &str = "GRPC_XDS_BOOTSTRAP_CONFIG";

/// `user_agent_name` sent in the node identity.
pub const USER_AGENT_NAME: &str = "mesh-core";

/// `client_features` sent in the node identity: we never apply overprovisioning (gRFC A27) and
/// we unwrap `envoy.service.discovery.v3.Resource` in state-of-the-world responses.
pub const CLIENT_FEATURES: [&str; 2] = [
    "envoy.lb.does_not_support_overprovisioning",
    "xds.config.resource-in-sotw",
];

/// A parsed bootstrap.
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap {
    /// The xDS servers, in order of preference (at least one). The ADS client uses the first.
    pub xds_servers: Vec<XdsServer>,
    /// Who we are.
    pub node: NodeInfo,
    /// Certificate provider instances by name (gRFC A29), kept raw for the TLS layer.
    pub certificate_providers: BTreeMap<String, CertificateProvider>,
    /// Template for the server-side listener resource name (gRFC A36), with `%s` standing for
    /// the listening address.
    pub server_listener_resource_name_template: Option<String>,
    /// Template for a client channel's listener resource name (gRFC A47); `%s` by default.
    pub client_default_listener_resource_name_template: String,
    /// Federation authorities by name (gRFC A47), kept for later.
    pub authorities: BTreeMap<String, Authority>,
}

/// One `xds_servers[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct XdsServer {
    /// Where the server is, e.g. `istiod.istio-system.svc:15010` or `127.0.0.1:15010`.
    pub server_uri: String,
    /// The first supported `channel_creds` entry.
    pub channel_creds: ChannelCreds,
    /// `server_features`, e.g. `xds_v3`, `ignore_resource_deletion`.
    pub server_features: Vec<String>,
}

impl XdsServer {
    /// Whether the server lists a feature in `server_features`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.server_features.iter().any(|f| f == feature)
    }
}

/// Channel credentials for talking to an xDS server.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelCreds {
    /// Which kind.
    pub kind: ChannelCredsKind,
    /// The entry's `config` object, if any (used by `tls`, gRFC A65).
    pub config: Option<Value>,
}

/// The channel credential types we recognise (gRFC A27, A65).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelCredsKind {
    /// `insecure`: plaintext HTTP/2.
    Insecure,
    /// `tls` (gRFC A65). Recognised; the ADS client does not implement it yet.
    Tls,
    /// `google_default`. Recognised; the ADS client does not implement it yet.
    GoogleDefault,
}

impl ChannelCredsKind {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "insecure" => Some(ChannelCredsKind::Insecure),
            "tls" => Some(ChannelCredsKind::Tls),
            "google_default" => Some(ChannelCredsKind::GoogleDefault),
            _ => None,
        }
    }

    /// The name used in the bootstrap.
    pub const fn name(self) -> &'static str {
        match self {
            ChannelCredsKind::Insecure => "insecure",
            ChannelCredsKind::Tls => "tls",
            ChannelCredsKind::GoogleDefault => "google_default",
        }
    }
}

impl fmt::Display for ChannelCredsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `node` object: our identity towards the control plane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// `id`, e.g. Istio's `sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local`.
    pub id: String,
    /// `cluster`.
    pub cluster: String,
    /// `locality`, if given.
    pub locality: Option<NodeLocality>,
    /// `metadata` (arbitrary JSON object), if given.
    pub metadata: Option<prost_types::Struct>,
}

/// The node's `locality`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLocality {
    /// `region`.
    pub region: String,
    /// `zone`.
    pub zone: String,
    /// `sub_zone`.
    pub sub_zone: String,
}

/// One `certificate_providers` entry (gRFC A29), kept raw.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateProvider {
    /// `plugin_name`, e.g. `file_watcher`.
    pub plugin_name: String,
    /// `config`, uninterpreted (`Value::Null` when absent).
    pub config: Value,
}

/// One `authorities` entry (gRFC A47), kept for federation later.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Authority {
    /// `client_listener_resource_name_template`, if given.
    pub client_listener_resource_name_template: Option<String>,
    /// `xds_servers`; empty means "use the top-level servers".
    pub xds_servers: Vec<XdsServer>,
}

/// Why a bootstrap could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Neither environment variable is set.
    #[error("bootstrap: neither {BOOTSTRAP_ENV} nor {BOOTSTRAP_CONFIG_ENV} is set")]
    NotConfigured,
    /// The bootstrap file could not be read.
    #[error("bootstrap: cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("bootstrap: invalid json: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is missing or wrong.
    #[error("{field}: {kind}")]
    Field {
        /// Dotted path of the field, e.g. `xds_servers[0].server_uri`.
        field: String,
        /// What is wrong with it.
        kind: FieldErrorKind,
    },
}

/// What is wrong with a bootstrap field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldErrorKind {
    /// A required field is absent.
    #[error("missing")]
    Missing,
    /// The field has the wrong JSON type.
    #[error("expected {expected}")]
    WrongType {
        /// E.g. `a string`.
        expected: &'static str,
    },
    /// The field has the right type but an unusable value.
    #[error("{0}")]
    Invalid(String),
}

impl BootstrapError {
    fn field(field: impl Into<String>, kind: FieldErrorKind) -> Self {
        BootstrapError::Field {
            field: field.into(),
            kind,
        }
    }
}

type Result<T, E = BootstrapError> = std::result::Result<T, E>;

impl Bootstrap {
    /// Loads the bootstrap named by `GRPC_XDS_BOOTSTRAP`, or else the inline JSON in
    /// `GRPC_XDS_BOOTSTRAP_CONFIG`.
    pub fn from_env() -> Result<Bootstrap> {
        let file = std::env::var_os(BOOTSTRAP_ENV).filter(|v| !v.is_empty());
        let inline = std::env::var(BOOTSTRAP_CONFIG_ENV)
            .ok()
            .filter(|v| !v.is_empty());
        Bootstrap::from_sources(file.as_deref().map(Path::new), inline.as_deref())
    }

    /// Loads from a file if given, else from inline JSON if given (the precedence of
    /// [`Bootstrap::from_env`]).
    pub(crate) fn from_sources(file: Option<&Path>, inline: Option<&str>) -> Result<Bootstrap> {
        match (file, inline) {
            (Some(path), _) => Bootstrap::from_file(path),
            (None, Some(json)) => Bootstrap::from_json(json),
            (None, None) => Err(BootstrapError::NotConfigured),
        }
    }

    /// Loads a bootstrap file.
    pub fn from_file(path: &Path) -> Result<Bootstrap> {
        let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Bootstrap::from_json(&text)
    }

    /// Parses bootstrap JSON.
    pub fn from_json(json: &str) -> Result<Bootstrap> {
        let root: Value = serde_json::from_str(json)?;
        let root = as_object(&root, "bootstrap")?;

        let xds_servers = match root.get("xds_servers") {
            None | Some(Value::Null) => {
                return Err(BootstrapError::field(
                    "xds_servers",
                    FieldErrorKind::Missing,
                ))
            }
            Some(v) => parse_servers(v, "xds_servers")?,
        };
        if xds_servers.is_empty() {
            return Err(BootstrapError::field(
                "xds_servers",
                FieldErrorKind::Invalid("at least one server is required".into()),
            ));
        }

        let node = match root.get("node") {
            None | Some(Value::Null) => NodeInfo::default(),
            Some(v) => parse_node(v, "node")?,
        };

        let mut certificate_providers = BTreeMap::new();
        if let Some(v) = present(root, "certificate_providers") {
            for (name, p) in as_object(v, "certificate_providers")? {
                let path = format!("certificate_providers.{name}");
                let p = as_object(p, &path)?;
                let plugin_name = required_string(p, &path, "plugin_name")?;
                let config = p.get("config").cloned().unwrap_or(Value::Null);
                certificate_providers.insert(
                    name.clone(),
                    CertificateProvider {
                        plugin_name,
                        config,
                    },
                );
            }
        }

        let mut authorities = BTreeMap::new();
        if let Some(v) = present(root, "authorities") {
            for (name, a) in as_object(v, "authorities")? {
                let path = format!("authorities.{name}");
                let a = as_object(a, &path)?;
                let client_listener_resource_name_template =
                    optional_string(a, &path, "client_listener_resource_name_template")?;
                let xds_servers = match present(a, "xds_servers") {
                    None => Vec::new(),
                    Some(v) => parse_servers(v, &format!("{path}.xds_servers"))?,
                };
                authorities.insert(
                    name.clone(),
                    Authority {
                        client_listener_resource_name_template,
                        xds_servers,
                    },
                );
            }
        }

        Ok(Bootstrap {
            xds_servers,
            node,
            certificate_providers,
            server_listener_resource_name_template: optional_string(
                root,
                "",
                "server_listener_resource_name_template",
            )?,
            client_default_listener_resource_name_template: optional_string(
                root,
                "",
                "client_default_listener_resource_name_template",
            )?
            .unwrap_or_else(|| "%s".to_owned()),
            authorities,
        })
    }

    /// The listener resource name a client channel for `authority` (`host[:port]` of an
    /// `xds:///` target) subscribes to: the client template with `%s` replaced (gRFC A47).
    pub fn client_listener_name(&self, authority: &str) -> String {
        self.client_default_listener_resource_name_template
            .replace("%s", authority)
    }
}

impl NodeInfo {
    /// The `envoy.config.core.v3.Node` sent on the first request of each ADS stream: the
    /// bootstrap's identity plus our user agent and [`CLIENT_FEATURES`].
    pub fn to_proto(&self) -> envoy_types::pb::envoy::config::core::v3::Node {
        use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, Locality};
        use prost::Message;

        // `prost_types::Struct` and envoy-types' generated `google.protobuf.Struct` are the same
        // message from two code generators; go through the wire format.
        let metadata = self.metadata.as_ref().and_then(|m| {
            envoy_types::pb::google::protobuf::Struct::decode(m.encode_to_vec().as_slice()).ok()
        });
        envoy_types::pb::envoy::config::core::v3::Node {
            id: self.id.clone(),
            cluster: self.cluster.clone(),
            metadata,
            locality: self.locality.as_ref().map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            }),
            user_agent_name: USER_AGENT_NAME.to_owned(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").to_owned(),
            )),
            client_features: CLIENT_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            ..Default::default()
        }
    }
}

// ----- field helpers --------------------------------------------------------------------------

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A key that is present and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        BootstrapError::field(
            path,
            FieldErrorKind::WrongType {
                expected: "an object",
            },
        )
    })
}

fn as_array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| {
        BootstrapError::field(
            path,
            FieldErrorKind::WrongType {
                expected: "an array",
            },
        )
    })
}

fn as_string(v: &Value, path: &str) -> Result<String> {
    v.as_str().map(str::to_owned).ok_or_else(|| {
        BootstrapError::field(
            path,
            FieldErrorKind::WrongType {
                expected: "a string",
            },
        )
    })
}

fn optional_string(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>> {
    present(obj, key)
        .map(|v| as_string(v, &join(path, key)))
        .transpose()
}

fn required_string(obj: &Map<String, Value>, path: &str, key: &str) -> Result<String> {
    optional_string(obj, path, key)?
        .ok_or_else(|| BootstrapError::field(join(path, key), FieldErrorKind::Missing))
}

fn string_list(v: &Value, path: &str) -> Result<Vec<String>> {
    as_array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, s)| as_string(s, &format!("{path}[{i}]")))
        .collect()
}

fn parse_servers(v: &Value, path: &str) -> Result<Vec<XdsServer>> {
    as_array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, s)| parse_server(s, &format!("{path}[{i}]")))
        .collect()
}

fn parse_server(v: &Value, path: &str) -> Result<XdsServer> {
    let obj = as_object(v, path)?;
    let server_uri = required_string(obj, path, "server_uri")?;
    if server_uri.is_empty() {
        return Err(BootstrapError::field(
            join(path, "server_uri"),
            FieldErrorKind::Invalid("empty".into()),
        ));
    }

    let creds_path = join(path, "channel_creds");
    let creds = match present(obj, "channel_creds") {
        None => return Err(BootstrapError::field(creds_path, FieldErrorKind::Missing)),
        Some(v) => as_array(v, &creds_path)?,
    };
    let mut seen = Vec::new();
    let mut channel_creds = None;
    for (i, c) in creds.iter().enumerate() {
        let entry_path = format!("{creds_path}[{i}]");
        let c = as_object(c, &entry_path)?;
        let kind = required_string(c, &entry_path, "type")?;
        match ChannelCredsKind::from_name(&kind) {
            Some(kind) => {
                channel_creds = Some(ChannelCreds {
                    kind,
                    config: present(c, "config").cloned(),
                });
                break;
            }
            None => seen.push(kind),
        }
    }
    let channel_creds = channel_creds.ok_or_else(|| {
        BootstrapError::field(
            creds_path,
            FieldErrorKind::Invalid(format!(
                "no supported channel credentials (got [{}])",
                seen.join(", ")
            )),
        )
    })?;

    let server_features = match present(obj, "server_features") {
        None => Vec::new(),
        Some(v) => string_list(v, &join(path, "server_features"))?,
    };
    Ok(XdsServer {
        server_uri,
        channel_creds,
        server_features,
    })
}

fn parse_node(v: &Value, path: &str) -> Result<NodeInfo> {
    let obj = as_object(v, path)?;
    let locality = match present(obj, "locality") {
        None => None,
        Some(v) => {
            let lpath = join(path, "locality");
            let l = as_object(v, &lpath)?;
            Some(NodeLocality {
                region: optional_string(l, &lpath, "region")?.unwrap_or_default(),
                zone: optional_string(l, &lpath, "zone")?.unwrap_or_default(),
                sub_zone: optional_string(l, &lpath, "sub_zone")?.unwrap_or_default(),
            })
        }
    };
    let metadata = match present(obj, "metadata") {
        None => None,
        Some(v) => Some(json_struct(as_object(v, &join(path, "metadata"))?)),
    };
    Ok(NodeInfo {
        id: optional_string(obj, path, "id")?.unwrap_or_default(),
        cluster: optional_string(obj, path, "cluster")?.unwrap_or_default(),
        locality,
        metadata,
    })
}

/// A JSON object as a `google.protobuf.Struct` (the proto3 JSON mapping, in reverse).
fn json_struct(obj: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: obj
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect(),
    }
}

fn json_value(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(json_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    //! Loading order only; parsing is tested through the public API in `tests/bootstrap.rs`.
    use super::*;

    const INLINE: &str = r#"{"xds_servers": [{"server_uri": "i:1",
        "channel_creds": [{"type": "insecure"}]}], "node": {"id": "client-1"}}"#;

    #[test]
    fn sources_precedence() {
        assert!(matches!(
            Bootstrap::from_sources(None, None),
            Err(BootstrapError::NotConfigured)
        ));
        let b = Bootstrap::from_sources(None, Some(INLINE)).unwrap();
        assert_eq!(b.node.id, "client-1");
        let dir = std::env::temp_dir().join(format!("mesh-bootstrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bootstrap.json");
        std::fs::write(
            &file,
            r#"{"xds_servers": [{"server_uri": "f:1", "channel_creds": [{"type": "insecure"}]}]}"#,
        )
        .unwrap();
        let b = Bootstrap::from_sources(Some(&file), Some(INLINE)).unwrap();
        assert_eq!(b.xds_servers[0].server_uri, "f:1");
        assert!(matches!(
            Bootstrap::from_sources(Some(&dir.join("absent.json")), None),
            Err(BootstrapError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
