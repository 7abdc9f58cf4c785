//! The bootstrap parser against gRPC's documented format (gRFC A27/A47/A65), the example in
//! INTEROP.md and Istio's proxyless bootstrap.

use std::path::Path;

use mesh_core::bootstrap::{Bootstrap, BootstrapError, ChannelCredsKind, FieldErrorKind, NodeInfo};

const INTEROP_EXAMPLE: &str = r#"{
  "xds_servers": [{"server_uri": "127.0.0.1:15010", "channel_creds": [{"type": "insecure"}],
                   "server_features": ["ignore_resource_deletion"]}],
  "node": {"id": "client-1", "cluster": "demo", "locality": {"region": "r1", "zone": "z1"},
           "metadata": {"app": "demo"}},
  "certificate_providers": {"default": {"plugin_name": "file_watcher", "config": {
      "certificate_file": "cert.pem", "private_key_file": "key.pem",
      "ca_certificate_file": "ca.pem", "refresh_interval": "600s"}}},
  "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s"
}"#;

fn field_error(json: &str) -> (String, FieldErrorKind) {
    match Bootstrap::from_json(json) {
        Err(BootstrapError::Field { field, kind }) => (field, kind),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn parses_interop_example() {
    let b = Bootstrap::from_json(INTEROP_EXAMPLE).unwrap();
    assert_eq!(b.xds_servers.len(), 1);
    let s = &b.xds_servers[0];
    assert_eq!(s.server_uri, "127.0.0.1:15010");
    assert_eq!(s.channel_creds.kind, ChannelCredsKind::Insecure);
    assert!(s.has_feature("ignore_resource_deletion"));
    assert_eq!(b.node.id, "client-1");
    assert_eq!(b.node.cluster, "demo");
    let l = b.node.locality.as_ref().unwrap();
    assert_eq!((l.region.as_str(), l.zone.as_str()), ("r1", "z1"));
    assert_eq!(l.sub_zone, "");
    let md = b.node.metadata.as_ref().unwrap();
    assert_eq!(
        md.fields["app"].kind,
        Some(prost_types::value::Kind::StringValue("demo".into()))
    );
    let cp = &b.certificate_providers["default"];
    assert_eq!(cp.plugin_name, "file_watcher");
    assert_eq!(cp.config["refresh_interval"], "600s");
    assert_eq!(
        b.server_listener_resource_name_template.as_deref(),
        Some("grpc/server?xds.resource.listening_address=%s")
    );
    assert_eq!(b.client_default_listener_resource_name_template, "%s");
    assert_eq!(b.client_listener_name("greeter:50051"), "greeter:50051");
    assert!(b.authorities.is_empty());
}

/// Copy of `shared/fixtures/xds/istio/grpcgen__xds_bootstrap.json` (istio/istio
/// `pkg/istio-agent/grpcxds` test data), inlined so the test never depends on files outside
/// the repository.
const ISTIO_GRPCGEN_BOOTSTRAP: &str = r#"{
  "xds_servers": [
{
  "server_uri": "localhost:14057",
  "channel_creds": [{"type": "insecure"}],
  "server_features" : ["xds_v3"]
}
  ],
  "node": {
"id": "sidecar~127.0.1.1~echo.test~cluster.local",
"metadata": {
  "INSTANCE_IPS": "127.0.1.1",
  "PILOT_SAN": [
    "istiod.istio-system.svc"
  ],
  "GENERATOR": "grpc",
  "NAMESPACE": "test"
},
"localisty": {},
"UserAgentVersionType": "istiov1"
  },
  "certificate_providers": {
"default": {
  "plugin_name": "file_watcher",
  "config": {
    "certificate_file": "../../../../tests/testdata/certs/default/cert-chain.pem",
    "private_key_file": "../../../../tests/testdata/certs/default/key.pem",
    "ca_certificate_file": "../../../../tests/testdata/certs/default/root-cert.pem",
    "refresh_interval": "900s"
  }
}
  },
  "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
}"#;

#[test]
fn parses_istio_grpcgen_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/xds/istio/grpcgen__xds_bootstrap.json");
    // Prefer the shared fixture when present; it must still match the inlined copy.
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| ISTIO_GRPCGEN_BOOTSTRAP.into());
    let b = Bootstrap::from_json(&text).unwrap();
    assert_eq!(b.xds_servers[0].server_uri, "localhost:14057");
    assert!(b.xds_servers[0].has_feature("xds_v3"));
    assert_eq!(b.node.id, "sidecar~127.0.1.1~echo.test~cluster.local");
    // Istio's misspelled `localisty` is an unknown field and ignored.
    assert_eq!(b.node.locality, None);
    let md = b.node.metadata.as_ref().unwrap();
    assert_eq!(
        md.fields["GENERATOR"].kind,
        Some(prost_types::value::Kind::StringValue("grpc".into()))
    );
    assert!(matches!(
        md.fields["PILOT_SAN"].kind,
        Some(prost_types::value::Kind::ListValue(_))
    ));
    assert_eq!(
        b.server_listener_resource_name_template.as_deref(),
        Some("xds.istio.io/grpc/lds/inbound/%s")
    );
    assert_eq!(
        b.certificate_providers["default"].plugin_name,
        "file_watcher"
    );
}

#[test]
fn first_supported_channel_creds_win() {
    let b = Bootstrap::from_json(
        r#"{"xds_servers": [{"server_uri": "cp:1", "channel_creds": [
            {"type": "made_up"}, {"type": "tls", "config": {"ca_certificate_file": "ca"}},
            {"type": "insecure"}]}]}"#,
    )
    .unwrap();
    let c = &b.xds_servers[0].channel_creds;
    assert_eq!(c.kind, ChannelCredsKind::Tls);
    assert_eq!(c.config.as_ref().unwrap()["ca_certificate_file"], "ca");
    assert_eq!(b.node, NodeInfo::default());
}

#[test]
fn errors_name_the_field() {
    let (f, k) = field_error(r#"{"xds_servers": [{"channel_creds": []}]}"#);
    assert_eq!(
        (f.as_str(), k),
        ("xds_servers[0].server_uri", FieldErrorKind::Missing)
    );

    let (f, k) = field_error(r#"{"xds_servers": [{"server_uri": 5}]}"#);
    assert_eq!(f, "xds_servers[0].server_uri");
    assert!(matches!(k, FieldErrorKind::WrongType { .. }));

    let (f, k) = field_error(r#"{"xds_servers": [{"server_uri": "a:1"}]}"#);
    assert_eq!(
        (f.as_str(), k),
        ("xds_servers[0].channel_creds", FieldErrorKind::Missing)
    );

    let (f, k) = field_error(
        r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "x"}]}]}"#,
    );
    assert_eq!(f, "xds_servers[0].channel_creds");
    assert!(matches!(k, FieldErrorKind::Invalid(_)));

    let (f, _) = field_error(r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{}]}]}"#);
    assert_eq!(f, "xds_servers[0].channel_creds[0].type");

    let (f, k) = field_error(r#"{}"#);
    assert_eq!((f.as_str(), k), ("xds_servers", FieldErrorKind::Missing));
    let (f, _) = field_error(r#"{"xds_servers": []}"#);
    assert_eq!(f, "xds_servers");

    let ok = r#"[{"server_uri": "a:1", "channel_creds": [{"type": "insecure"}]}]"#;
    let (f, _) = field_error(&format!(r#"{{"xds_servers": {ok}, "node": {{"id": 1}}}}"#));
    assert_eq!(f, "node.id");
    let (f, _) = field_error(&format!(
        r#"{{"xds_servers": {ok}, "certificate_providers": {{"p": {{}}}}}}"#
    ));
    assert_eq!(f, "certificate_providers.p.plugin_name");
    let (f, _) = field_error(&format!(
        r#"{{"xds_servers": {ok}, "authorities": {{"a": {{"xds_servers": [{{}}]}}}}}}"#
    ));
    assert_eq!(f, "authorities.a.xds_servers[0].server_uri");

    let err = Bootstrap::from_json(r#"{"xds_servers": [{"channel_creds": []}]}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "xds_servers[0].server_uri: missing");
    assert!(matches!(
        Bootstrap::from_json("not json"),
        Err(BootstrapError::Json(_))
    ));
}

#[test]
fn authorities_and_templates() {
    let b = Bootstrap::from_json(
        r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "insecure"}]}],
            "client_default_listener_resource_name_template": "xdstp://cp/l/%s",
            "authorities": {"cp": {"client_listener_resource_name_template": "xdstp://cp/l/%s"},
                            "other": {"xds_servers": [{"server_uri": "b:2",
                                       "channel_creds": [{"type": "google_default"}]}]}}}"#,
    )
    .unwrap();
    assert_eq!(b.client_listener_name("svc:80"), "xdstp://cp/l/svc:80");
    assert_eq!(
        b.authorities["cp"]
            .client_listener_resource_name_template
            .as_deref(),
        Some("xdstp://cp/l/%s")
    );
    assert_eq!(
        b.authorities["other"].xds_servers[0].channel_creds.kind,
        ChannelCredsKind::GoogleDefault
    );
}

#[test]
fn node_on_the_wire() {
    let b = Bootstrap::from_json(INTEROP_EXAMPLE).unwrap();
    let n = b.node.to_proto();
    assert_eq!(n.id, "client-1");
    assert_eq!(n.cluster, "demo");
    assert_eq!(n.user_agent_name, "mesh-core");
    assert_eq!(
        n.client_features,
        vec![
            "envoy.lb.does_not_support_overprovisioning",
            "xds.config.resource-in-sotw"
        ]
    );
    assert_eq!(n.locality.unwrap().zone, "z1");
    let md = n.metadata.unwrap();
    assert!(md.fields.contains_key("app"));
    assert!(n.user_agent_version_type.is_some());
}
