use envoy_types::pb::envoy::config::listener::v3::filter;
use prost::Message;

use super::*;
use crate::source::{load_str, ConfigError};
use crate::translate::translate;

const WORKLOADS: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: demo}
spec:
  address: 10.0.0.1
  ports: {http: 8080, admin: 9090}
  labels: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings, namespace: other}
spec:
  address: 10.0.0.2
  ports: {grpc: 50051}
  labels: {app: ratings}
"#;

fn load(extra: &str) -> Result<crate::source::MeshConfig, ConfigError> {
    load_str("pa.yaml", &format!("{WORKLOADS}---\n{extra}")).map(|(c, _)| c)
}

/// A golden one-line summary of each chain: `name [match] tls?`.
fn chains(config: &crate::source::MeshConfig, addr: &str) -> Vec<String> {
    let xds = translate(config);
    let name = format!("xds.istio.io/grpc/lds/inbound/{addr}");
    let l = xds.listener(&name).unwrap_or_else(|| panic!("{name}"));
    l.filter_chains
        .iter()
        .map(|c| {
            let m = c
                .filter_chain_match
                .as_ref()
                .map(|m| format!(" [{}]", m.transport_protocol))
                .unwrap_or_default();
            let tls = match &c.transport_socket {
                None => String::new(),
                Some(ts) => {
                    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type
                    else {
                        panic!("no typed config")
                    };
                    let ctx = DownstreamTlsContext::decode(any.value.as_slice()).unwrap();
                    assert_eq!(ctx, downstream_tls_context());
                    format!(" {}", ts.name)
                }
            };
            let Some(filter::ConfigType::TypedConfig(hcm)) = &c.filters[0].config_type else {
                panic!("no hcm")
            };
            assert!(hcm.type_url.ends_with("HttpConnectionManager"));
            format!("{}{m}{tls}", c.name)
        })
        .collect()
}

#[test]
fn without_peer_authentication_the_listener_is_istiods_plaintext_chain() {
    let c = load("").unwrap();
    assert_eq!(chains(&c, "10.0.0.1:8080"), ["inbound-plaintext"]);
}

#[test]
fn strict_permissive_disable_and_inheritance() {
    let c = load(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: reviews, namespace: demo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: UNSET}
  portLevelMtls:
    9090: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ns, namespace: other}
spec: {mtls: {mode: DISABLE}}
"#,
    )
    .unwrap();
    // Workload UNSET inherits the mesh's STRICT; port 9090 is PERMISSIVE.
    assert_eq!(
        chains(&c, "10.0.0.1:8080"),
        ["inbound-mtls envoy.transport_sockets.tls"]
    );
    assert_eq!(
        chains(&c, "10.0.0.1:9090"),
        [
            "inbound-mtls [tls] envoy.transport_sockets.tls",
            "inbound-plaintext [raw_buffer]"
        ]
    );
    // The namespace policy overrides the mesh's.
    assert_eq!(chains(&c, "10.0.0.2:50051"), ["inbound-plaintext"]);
}

#[test]
#[allow(deprecated)] // the deprecated fields (and match_subject_alt_names) are what gRPC reads
fn the_tls_context_is_istiods_certificate_provider_form() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    let ctx = downstream_tls_context();
    assert_eq!(
        ctx.require_client_certificate,
        Some(BoolValue { value: true })
    );
    let common = ctx.common_tls_context.unwrap();
    let pair = |name: &str, cert: &str| (name.to_owned(), cert.to_owned());
    // The identity, in the current field gRPC reads first and the deprecated one older
    // releases read (C-core keeps that fallback only until it removes it).
    let cert = common.tls_certificate_provider_instance.as_ref().unwrap();
    assert_eq!(
        pair(&cert.instance_name, &cert.certificate_name),
        pair("default", "default")
    );
    let legacy = common
        .tls_certificate_certificate_provider_instance
        .as_ref()
        .unwrap();
    assert_eq!(
        pair(&legacy.instance_name, &legacy.certificate_name),
        pair("default", "default")
    );
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!("combined validation context")
    };
    // The roots, likewise in both places; no SAN matcher (gRPC NACKs one on a server, A29).
    let default = v.default_validation_context.as_ref().unwrap();
    assert!(default.match_subject_alt_names.is_empty());
    let roots = default.ca_certificate_provider_instance.as_ref().unwrap();
    assert_eq!(
        pair(&roots.instance_name, &roots.certificate_name),
        pair("default", "ROOTCA")
    );
    let legacy = v
        .validation_context_certificate_provider_instance
        .as_ref()
        .unwrap();
    assert_eq!(
        pair(&legacy.instance_name, &legacy.certificate_name),
        pair("default", "ROOTCA")
    );
}

#[test]
fn invalid_peer_authentications_name_file_line_and_field() {
    let cases = [
        ("spec: {mtls: {mode: SOMETIMES}}", "spec.mtls.mode"),
        (
            "spec: {portLevelMtls: {8080: {mode: STRICT}}}",
            "spec.portLevelMtls",
        ),
        (
            "spec: {selector: {matchLabels: {app: a}}, portLevelMtls: {70000: {mode: STRICT}}}",
            "spec.portLevelMtls.70000",
        ),
        ("spec: {mtls: {mode: STRICT, extra: 1}}", "spec.mtls.extra"),
    ];
    for (spec, field) in cases {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: demo}}\n{spec}\n"
        );
        let e = load(&yaml).unwrap_err();
        assert_eq!(e.field(), Some(field), "{spec}: {e}");
        assert_eq!(e.file(), "pa.yaml");
        assert!(e.line().unwrap() > 1, "{e}");
        assert!(e.to_string().contains("PeerAuthentication/demo/p"), "{e}");
    }
}

#[test]
fn grpc_clients_get_permissive_as_istiods_plaintext_chain() {
    let c = load(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: demo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9090: {mode: PERMISSIVE}
"#,
    )
    .unwrap();
    let xds = translate(&c);
    let listener = |port: u16| {
        let name = format!("xds.istio.io/grpc/lds/inbound/10.0.0.1:{port}");
        xds.listener(&name).unwrap_or_else(|| panic!("{name}"))
    };
    // PERMISSIVE: the `tls` chain (whose TLS context a gRPC server without certificate
    // providers NACKs) is dropped; the plaintext chain is kept as it was.
    let permissive = listener(9090);
    let grpc = grpc_server_form(&permissive).expect("a gRPC form differs");
    assert_eq!(grpc.name, permissive.name);
    assert_eq!(grpc.address, permissive.address);
    assert_eq!(grpc.filter_chains.len(), 1);
    assert_eq!(grpc.filter_chains[0], permissive.filter_chains[1]);
    assert_eq!(grpc.filter_chains[0].name, PLAINTEXT_CHAIN);
    assert!(grpc.filter_chains[0].transport_socket.is_none());
    // STRICT, DISABLE, no policy: gRPC uses every chain, so the shared form is already its own.
    assert_eq!(grpc_server_form(&listener(8080)), None);
    assert_eq!(
        grpc_server_form(
            &xds.listener("xds.istio.io/grpc/lds/inbound/10.0.0.2:50051")
                .unwrap()
        ),
        None
    );
}
