#![allow(deprecated)]

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, TransportSocketMatch,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::CombinedCertificateValidationContext, SdsSecretConfig,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatcher, StringMatcher as StringProto,
};
use prost::Message;

use super::*;
use crate::model::{Cluster, ErrorKind};

fn cluster(ts: Option<TransportSocket>) -> ClusterProto {
    ClusterProto {
        name: "outbound|80||a".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        transport_socket: ts,
        ..Default::default()
    }
}

fn socket(type_url: &str, value: Vec<u8>) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: format!("type.googleapis.com/{type_url}"),
            value,
        })),
    }
}

fn tls_socket(ctx: &UpstreamTlsContext) -> TransportSocket {
    socket(UPSTREAM_TLS, ctx.encode_to_vec())
}

fn exact(v: &str) -> StringProto {
    StringProto {
        match_pattern: Some(MatchPattern::Exact(v.into())),
        ignore_case: false,
    }
}

fn legacy_instance(name: &str, cert: &str) -> LegacyInstance {
    LegacyInstance {
        instance_name: name.into(),
        certificate_name: cert.into(),
    }
}

/// What istiod's proxyless generator emits for ISTIO_MUTUAL (grpcgen `buildCommonTLSContext`,
/// older form: the deprecated instance fields only).
fn istio_mutual(sans: &[&str]) -> UpstreamTlsContext {
    UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_certificate_provider_instance: Some(legacy_instance(
                "default", "default",
            )),
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_subject_alt_names: sans.iter().map(|s| exact(s)).collect(),
                        ..Default::default()
                    }),
                    validation_context_certificate_provider_instance: Some(legacy_instance(
                        "default", "ROOTCA",
                    )),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn convert(ts: Option<TransportSocket>) -> UpstreamTransport {
    Cluster::try_from(cluster(ts)).unwrap().transport
}

fn unsupported_field(t: &UpstreamTransport) -> String {
    match t {
        UpstreamTransport::Unsupported(e) => {
            assert_eq!(e.kind, ErrorKind::Unsupported);
            assert_eq!(&*e.resource, "outbound|80||a");
            e.field.clone()
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn no_socket_and_raw_buffer_are_plaintext() {
    assert_eq!(convert(None), UpstreamTransport::Plaintext);
    assert_eq!(
        convert(Some(socket(RAW_BUFFER, vec![]))),
        UpstreamTransport::Plaintext
    );
    let named = TransportSocket {
        name: "envoy.transport_sockets.raw_buffer".into(),
        config_type: None,
    };
    assert_eq!(convert(Some(named)), UpstreamTransport::Plaintext);
}

#[test]
fn istiod_istio_mutual_form() {
    let t = convert(Some(tls_socket(&istio_mutual(&[
        "spiffe://cluster.local/ns/default/sa/greeter",
    ]))));
    let tls = t.tls().expect("tls");
    assert_eq!(tls.sni, None);
    let id = tls.identity.as_ref().unwrap();
    assert_eq!(
        (&*id.instance_name, &*id.certificate_name),
        ("default", "default")
    );
    assert_eq!(
        (&*tls.roots.instance_name, &*tls.roots.certificate_name),
        ("default", "ROOTCA")
    );
    assert_eq!(tls.match_subject_alt_names.len(), 1);
    assert!(tls.match_subject_alt_names[0].matches("spiffe://cluster.local/ns/default/sa/greeter"));
    assert!(!tls.match_subject_alt_names[0].matches("spiffe://cluster.local/ns/default/sa/other"));
}

#[test]
fn current_instance_fields_win_over_deprecated_ones() {
    let mut ctx = istio_mutual(&[]);
    let common = ctx.common_tls_context.as_mut().unwrap();
    common.tls_certificate_provider_instance = Some(CertificateProviderPluginInstance {
        instance_name: "".into(),
        certificate_name: "new".into(),
    });
    if let Some(ValidationContextType::CombinedValidationContext(cv)) =
        &mut common.validation_context_type
    {
        cv.default_validation_context
            .as_mut()
            .unwrap()
            .ca_certificate_provider_instance = Some(CertificateProviderPluginInstance {
            instance_name: "roots".into(),
            certificate_name: "".into(),
        });
    }
    ctx.sni = "greeter.demo".into();
    common.alpn_protocols = vec!["h2".into()];
    let t = convert(Some(tls_socket(&ctx)));
    let tls = t.tls().unwrap();
    let id = tls.identity.as_ref().unwrap();
    // Empty instance name means "default".
    assert_eq!(
        (&*id.instance_name, &*id.certificate_name),
        ("default", "new")
    );
    assert_eq!(&*tls.roots.instance_name, "roots");
    assert_eq!(tls.sni.as_deref(), Some("greeter.demo"));
    assert_eq!(&*tls.alpn_protocols[0], "h2");
    assert!(tls.match_subject_alt_names.is_empty());
}

#[test]
fn simple_tls_has_no_identity() {
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(
                ValidationContextType::ValidationContextCertificateProviderInstance(
                    legacy_instance("", "ROOTCA"),
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = convert(Some(tls_socket(&ctx)));
    let tls = t.tls().unwrap();
    assert_eq!(tls.identity, None);
    assert_eq!(&*tls.roots.instance_name, "default");
}

#[test]
fn san_matchers_of_every_kind() {
    let mut ctx = istio_mutual(&[]);
    let Some(ValidationContextType::CombinedValidationContext(cv)) = &mut ctx
        .common_tls_context
        .as_mut()
        .unwrap()
        .validation_context_type
    else {
        unreachable!()
    };
    let m = |p| StringProto {
        match_pattern: Some(p),
        ignore_case: false,
    };
    cv.default_validation_context
        .as_mut()
        .unwrap()
        .match_subject_alt_names = vec![
        m(MatchPattern::Prefix("spiffe://td/ns/a/".into())),
        m(MatchPattern::Suffix(".example.com".into())),
        m(MatchPattern::Contains("/sa/".into())),
        m(MatchPattern::SafeRegex(RegexMatcher {
            regex: "spiffe://td/ns/[a-z]+/sa/x".into(),
            ..Default::default()
        })),
    ];
    let t = convert(Some(tls_socket(&ctx)));
    let sans = &t.tls().unwrap().match_subject_alt_names;
    assert!(sans[0].matches("spiffe://td/ns/a/sa/b"));
    assert!(sans[1].matches("api.example.com"));
    assert!(sans[2].matches("spiffe://td/ns/q/sa/b"));
    assert!(sans[3].matches("spiffe://td/ns/q/sa/x"));
    assert!(!sans[3].matches("spiffe://td/ns/q/sa/xy"));
}

#[test]
fn invalid_contexts_are_rejected() {
    let e = Cluster::try_from(cluster(Some(socket(UPSTREAM_TLS, vec![0xff, 0xff])))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.field, "transport_socket.typed_config");

    let mut ctx = istio_mutual(&[]);
    let Some(ValidationContextType::CombinedValidationContext(cv)) = &mut ctx
        .common_tls_context
        .as_mut()
        .unwrap()
        .validation_context_type
    else {
        unreachable!()
    };
    cv.default_validation_context
        .as_mut()
        .unwrap()
        .match_subject_alt_names = vec![StringProto {
        match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
            regex: "(".into(),
            ..Default::default()
        })),
        ignore_case: false,
    }];
    let e = Cluster::try_from(cluster(Some(tls_socket(&ctx)))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(
        e.field,
        "transport_socket.typed_config.common_tls_context.combined_validation_context.\
         default_validation_context.match_subject_alt_names[0].safe_regex.regex"
    );
}

#[test]
fn what_the_mesh_cannot_honour_fails_closed_naming_the_field() {
    let tc = "transport_socket.typed_config";
    // No validation context at all.
    let t = convert(Some(tls_socket(&UpstreamTlsContext::default())));
    assert_eq!(unsupported_field(&t), format!("{tc}.common_tls_context"));
    let no_roots = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext::default()),
        ..Default::default()
    };
    assert_eq!(
        unsupported_field(&convert(Some(tls_socket(&no_roots)))),
        format!("{tc}.common_tls_context.validation_context_type")
    );
    // SDS for the identity and for the roots.
    let mut sds = istio_mutual(&[]);
    let common = sds.common_tls_context.as_mut().unwrap();
    common.tls_certificate_sds_secret_configs = vec![SdsSecretConfig {
        name: "default".into(),
        sds_config: None,
    }];
    assert_eq!(
        unsupported_field(&convert(Some(tls_socket(&sds)))),
        format!("{tc}.common_tls_context.tls_certificate_sds_secret_configs")
    );
    let sds_roots = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                SdsSecretConfig::default(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        unsupported_field(&convert(Some(tls_socket(&sds_roots)))),
        format!("{tc}.common_tls_context.validation_context_sds_secret_config")
    );
    // Weaker verification.
    let mut expired = istio_mutual(&[]);
    if let Some(ValidationContextType::CombinedValidationContext(cv)) = &mut expired
        .common_tls_context
        .as_mut()
        .unwrap()
        .validation_context_type
    {
        cv.default_validation_context
            .as_mut()
            .unwrap()
            .allow_expired_certificate = true;
    }
    assert!(unsupported_field(&convert(Some(tls_socket(&expired))))
        .ends_with("default_validation_context.allow_expired_certificate"));
    // Another transport socket.
    let other = socket(
        "envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
        vec![],
    );
    assert_eq!(unsupported_field(&convert(Some(other))), tc);
}

#[test]
fn transport_socket_matches() {
    let entry = |ts: TransportSocket| TransportSocketMatch {
        name: "tlsMode-istio".into(),
        r#match: None,
        transport_socket: Some(ts),
    };
    // Only plaintext everywhere: plaintext.
    let mut c = cluster(None);
    c.transport_socket_matches = vec![entry(socket(RAW_BUFFER, vec![]))];
    assert_eq!(
        Cluster::try_from(c).unwrap().transport,
        UpstreamTransport::Plaintext
    );
    // TLS for some endpoints: not supported (Istio sidecar auto-mTLS form).
    let mut c = cluster(None);
    c.transport_socket_matches = vec![
        entry(tls_socket(&istio_mutual(&[]))),
        entry(socket(RAW_BUFFER, vec![])),
    ];
    let t = Cluster::try_from(c).unwrap().transport;
    assert_eq!(
        unsupported_field(&t),
        "transport_socket_matches[0].transport_socket"
    );
}
