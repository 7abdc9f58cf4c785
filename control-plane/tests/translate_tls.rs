//! DestinationRule `tls` → the cluster's transport socket, in istiod's proxyless form (see
//! `mesh_control_plane::translate::tls` for what follows istiod and what differs), and back
//! through the mesh's own model.
#![allow(deprecated)] // istiod's form uses the deprecated certificate-provider-instance fields

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::{
        CertificateProviderInstance, CombinedCertificateValidationContext, ValidationContextType,
    },
    CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use mesh_control_plane::{load_str, translate, translate_with, TranslateOptions, XdsResources};
use prost::Message;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter, namespace: demo }
spec:
  hosts: [greeter.demo]
  ports:
  - { number: 50051, name: grpc, protocol: GRPC }
  - { number: 8080, name: http, protocol: HTTP }
  workloadSelector: { labels: { app: greeter } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: greeter-v1, namespace: demo }
spec: { address: 10.0.0.1, labels: { app: greeter, version: v1 }, serviceAccount: greeter }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: greeter-v2, namespace: demo }
spec: { address: 10.0.0.2, labels: { app: greeter, version: v2 }, serviceAccount: greeter-canary }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: greeter-v2b, namespace: demo }
spec: { address: 10.0.0.3, labels: { app: greeter, version: v2 }, serviceAccount: greeter }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: greeter, namespace: demo }
spec:
  host: greeter.demo
  trafficPolicy:
    tls: { mode: ISTIO_MUTUAL }
    portLevelSettings:
    - port: { number: 8080 }
      tls: { mode: DISABLE }
  subsets:
  - name: v1
    labels: { version: v1 }
  - name: v2
    labels: { version: v2 }
    trafficPolicy:
      tls:
        mode: SIMPLE
        sni: greeter.example.com
        subjectAltNames: [greeter.example.com]
        credentialName: greeter-ca
  - name: v3
    labels: { version: v3 }
    trafficPolicy:
      tls:
        mode: MUTUAL
        subjectAltNames: [spiffe://cluster.local/ns/demo/sa/greeter]
        insecureSkipVerify: true
"#;

fn xds() -> (XdsResources, Vec<String>) {
    let (config, warnings) = load_str("tls.yaml", YAML).expect("loads");
    (
        translate(&config),
        warnings.iter().map(ToString::to_string).collect(),
    )
}

fn tls_context(c: &Cluster) -> Option<UpstreamTlsContext> {
    let ts = c.transport_socket.as_ref()?;
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("no typed_config");
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    Some(UpstreamTlsContext::decode(any.value.as_slice()).unwrap())
}

/// istiod's `buildCommonTLSContext`, current and deprecated instance fields both set.
fn expected(identity: bool, sans: &[&str], sni: &str) -> UpstreamTlsContext {
    let plugin = |c: &str| CertificateProviderPluginInstance {
        instance_name: "default".into(),
        certificate_name: c.into(),
    };
    let legacy = |c: &str| CertificateProviderInstance {
        instance_name: "default".into(),
        certificate_name: c.into(),
    };
    UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_provider_instance: identity.then(|| plugin("default")),
            tls_certificate_certificate_provider_instance: identity.then(|| legacy("default")),
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_subject_alt_names: sans
                            .iter()
                            .map(|s| StringMatcher {
                                match_pattern: Some(MatchPattern::Exact(s.to_string())),
                                ignore_case: false,
                            })
                            .collect(),
                        ca_certificate_provider_instance: Some(plugin("ROOTCA")),
                        ..Default::default()
                    }),
                    validation_context_certificate_provider_instance: Some(legacy("ROOTCA")),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        sni: sni.into(),
        ..Default::default()
    }
}

#[test]
fn istio_mutual_names_the_destination_service_accounts() {
    let (xds, _) = xds();
    let c = xds.cluster("outbound|50051||greeter.demo").unwrap();
    assert_eq!(
        tls_context(c).expect("tls"),
        expected(
            true,
            &[
                "spiffe://cluster.local/ns/demo/sa/greeter",
                "spiffe://cluster.local/ns/demo/sa/greeter-canary",
            ],
            ""
        )
    );
    // A subset without its own tls inherits the rule's.
    let v1 = xds.cluster("outbound|50051|v1|greeter.demo").unwrap();
    assert_eq!(tls_context(v1), tls_context(c));
}

/// A running control plane writes the SANs in its CA's trust domain, unless told another one.
#[tokio::test]
async fn the_control_plane_uses_its_cas_trust_domain() {
    let (cfg, _) = load_str("tls.yaml", YAML).unwrap();
    let sans = |td: &str| {
        expected(
            true,
            &[
                &format!("spiffe://{td}/ns/demo/sa/greeter"),
                &format!("spiffe://{td}/ns/demo/sa/greeter-canary"),
            ],
            "",
        )
    };
    let ca = std::sync::Arc::new(mesh_control_plane::ca::Ca::generate("corp.example").unwrap());
    let free = "127.0.0.1:0".parse().unwrap();
    for (explicit, want) in [
        (None, "corp.example"),
        (Some("other.example"), "other.example"),
    ] {
        let mut builder = mesh_control_plane::ControlPlane::builder()
            .config(cfg.clone())
            .ca_server(ca.clone(), free);
        if let Some(td) = explicit {
            builder = builder.trust_domain(td);
        }
        let cp = builder.start().await.unwrap();
        let xds = cp.resources();
        let c = xds.cluster("outbound|50051||greeter.demo").unwrap();
        assert_eq!(tls_context(c).expect("tls"), sans(want), "{explicit:?}");
        cp.shutdown().await;
    }
    let cp = mesh_control_plane::ControlPlane::builder()
        .config(cfg)
        .start()
        .await
        .unwrap();
    let c = cp
        .resources()
        .cluster("outbound|50051||greeter.demo")
        .cloned()
        .unwrap();
    assert_eq!(
        tls_context(&c).expect("tls"),
        sans("cluster.local"),
        "default"
    );
    cp.shutdown().await;
}

#[test]
fn istio_mutual_sans_use_the_configured_trust_domain() {
    let (cfg, _) = load_str("tls.yaml", YAML).unwrap();
    let options = TranslateOptions {
        trust_domain: "prod.example.com".into(),
    };
    let xds = translate_with(&cfg, &options);
    let c = xds.cluster("outbound|50051||greeter.demo").unwrap();
    assert_eq!(
        tls_context(c).expect("tls"),
        expected(
            true,
            &[
                "spiffe://prod.example.com/ns/demo/sa/greeter",
                "spiffe://prod.example.com/ns/demo/sa/greeter-canary",
            ],
            ""
        )
    );
}

#[test]
fn port_level_and_subset_settings_override() {
    let (xds, _) = xds();
    // portLevelSettings DISABLE on 8080: plaintext, as for a rule without tls.
    for name in [
        "outbound|8080||greeter.demo",
        "outbound|8080|v1|greeter.demo",
    ] {
        assert_eq!(xds.cluster(name).unwrap().transport_socket, None, "{name}");
    }
    // The subset's own tls wins over the rule's port-level setting too.
    let v2 = xds.cluster("outbound|8080|v2|greeter.demo").unwrap();
    assert_eq!(
        tls_context(v2).expect("tls"),
        expected(false, &["greeter.example.com"], "greeter.example.com")
    );
    let v3 = xds.cluster("outbound|50051|v3|greeter.demo").unwrap();
    assert_eq!(
        tls_context(v3).expect("tls"),
        expected(true, &["spiffe://cluster.local/ns/demo/sa/greeter"], "")
    );
}

#[test]
fn unsupported_client_tls_fields_are_warned_about() {
    let (_, warnings) = xds();
    for field in ["credentialName", "insecureSkipVerify"] {
        assert!(
            warnings.iter().any(|w| w.contains(field)),
            "{field}: {warnings:?}"
        );
    }
}

#[test]
fn without_tls_no_transport_socket_is_emitted() {
    let yaml = YAML.replace("tls: { mode: ISTIO_MUTUAL }", "tls: { mode: DISABLE }");
    let (config, _) = load_str("tls.yaml", &yaml).unwrap();
    let xds = translate(&config);
    assert_eq!(
        xds.cluster("outbound|50051||greeter.demo")
            .unwrap()
            .transport_socket,
        None
    );
}

#[test]
fn the_mesh_reads_what_is_emitted() {
    use mesh_core::model::Cluster as Model;
    let (xds, _) = xds();
    let c = Model::try_from(xds.cluster("outbound|50051||greeter.demo").unwrap().clone()).unwrap();
    let tls = c.transport.tls().expect("tls");
    assert_eq!(&*tls.roots.instance_name, "default");
    assert_eq!(&*tls.roots.certificate_name, "ROOTCA");
    assert_eq!(
        tls.identity.as_ref().map(|i| &*i.certificate_name),
        Some("default")
    );
    assert!(tls.match_subject_alt_names[0].matches("spiffe://cluster.local/ns/demo/sa/greeter"));
    let simple = Model::try_from(
        xds.cluster("outbound|8080|v2|greeter.demo")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let simple = simple.transport.tls().unwrap();
    assert_eq!(simple.identity, None);
    assert_eq!(simple.sni.as_deref(), Some("greeter.example.com"));
}
