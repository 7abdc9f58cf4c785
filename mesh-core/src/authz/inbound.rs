//! The inbound policy from an Envoy resource file: the server Listener (gRFC A36 form, as the
//! control plane's `translate` emits it, or as `config_dump` shows it) holding the RBAC filters.
//!
//! This is the static path: a server reads its listener from a file (or from the control plane's
//! in-process translation) and compiles it into an [`AuthzChain`] for mesh-tower's `AuthzLayer`.
//! The same listener fetched over ADS is followed by [`InboundPolicy`](super::InboundPolicy)
//! (and by `mesh_grpc::XdsServer`).

use std::path::Path;

use super::AuthzChain;
use crate::model::{ModelError, ServerListener};
use crate::source::{decode_resources, DecodedResource, Format, SourceError};

/// Why an inbound policy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The file could not be read or decoded.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The listener is not a valid server listener (or its RBAC config is invalid).
    #[error(transparent)]
    Invalid(#[from] ModelError),
    /// No listener of that name in the resources.
    #[error("no listener named `{0}`")]
    Missing(String),
}

/// The server listener `name` from Envoy resources in `text`, validated.
pub fn server_listener(
    text: &str,
    format: Format,
    name: &str,
) -> Result<ServerListener, InboundError> {
    for r in decode_resources(text, format)? {
        if let DecodedResource::Listener(proto) = r {
            if proto.name == name {
                return Ok(ServerListener::try_from(proto)?);
            }
        }
    }
    Err(InboundError::Missing(name.to_owned()))
}

/// The compiled inbound policy of listener `name` in the resource file at `path` (JSON or YAML by
/// extension; anything else is read as YAML).
pub fn from_file(path: impl AsRef<Path>, name: &str) -> Result<AuthzChain, InboundError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = Format::from_path(path).unwrap_or(Format::Yaml);
    let listener = server_listener(&text, format, name)?;
    Ok(AuthzChain::for_server_listener(&listener))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, Method};

    use super::*;
    use crate::authz::{AuthzRequest, Decision};

    const LISTENER: &str = r#"
"@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: inbound
address: {socket_address: {address: 127.0.0.1, port_value: 8080}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: inbound
      route_config: {name: r}
      http_filters:
      - name: envoy.filters.http.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
          rules:
            action: ALLOW
            policies:
              ns[demo]-policy[allow]-rule[0]:
                permissions: [{url_path: {path: {prefix: /public/}}}]
                principals:
                - authenticated: {principal_name: {exact: "spiffe://cluster.local/ns/demo/sa/client"}}
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#;

    #[test]
    fn reads_and_compiles_a_server_listener_from_a_resource_file() {
        let dir = std::env::temp_dir().join(format!("mesh-authz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inbound.yaml");
        std::fs::write(&path, LISTENER).unwrap();
        let chain = from_file(&path, "inbound").unwrap();
        let headers = HeaderMap::new();
        let req = |path| AuthzRequest {
            method: &Method::POST,
            path_and_query: path,
            authority: "svc",
            headers: &headers,
            local: None,
            remote: None,
            tls: true,
            peer_principal: Some("spiffe://cluster.local/ns/demo/sa/client"),
            sni: None,
            metadata: None,
        };
        assert_eq!(chain.evaluate(&req("/public/a")), Decision::Allow);
        assert!(chain.evaluate(&req("/private")) != Decision::Allow);
        assert!(matches!(
            from_file(&path, "other"),
            Err(InboundError::Missing(n)) if n == "other"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
