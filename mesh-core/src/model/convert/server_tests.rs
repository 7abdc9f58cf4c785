use envoy_types::pb::envoy::config::core::v3::{
    Address, CidrRange as CidrProto, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChainMatch as FilterChainMatchProto, ListenerFilter,
};
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Policy, Principal, Rbac as RbacRules,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::{
        CertificateProviderInstance as CertificateProviderInstanceProto,
        CombinedCertificateValidationContext,
    },
    CommonTlsContext,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use prost::{Message, Name};

use super::*;
use crate::model::{ConnectionFacts, ErrorKind, HttpFilterConfig, InboundTlsMode, RbacAction};

fn any<T: Message + Name>(m: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

fn http_filter<T: Message + Name>(name: &str, m: &T) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(m))),
        ..Default::default()
    }
}

fn deny_all() -> RbacFilter {
    RbacFilter {
        rules: Some(RbacRules {
            action: Action::Deny as i32,
            policies: [(
                "all".to_string(),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(permission::Rule::Any(true)),
                    }],
                    principals: vec![Principal {
                        identifier: Some(principal::Identifier::Any(true)),
                    }],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn chain(filters: Vec<HttpFilter>) -> FilterChain {
    let hcm = HttpConnectionManager {
        http_filters: filters,
        ..Default::default()
    };
    FilterChain {
        filters: vec![Filter {
            name: "hcm".into(),
            config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
        }],
        ..Default::default()
    }
}

fn listener(chains: Vec<FilterChain>) -> ListenerProto {
    ListenerProto {
        name: "grpc/server?xds.resource.listening_address=127.0.0.1:8080".into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(8080)),
                ..Default::default()
            })),
        }),
        filter_chains: chains,
        ..Default::default()
    }
}

fn filters() -> Vec<HttpFilter> {
    vec![
        http_filter("envoy.filters.http.rbac.DENY", &deny_all()),
        http_filter("router", &Router::default()),
    ]
}

#[test]
fn server_listener_carries_the_rbac_filters() {
    let l = ServerListener::try_from(listener(vec![chain(filters())])).unwrap();
    assert_eq!(l.address, "127.0.0.1:8080".parse().unwrap());
    let HttpFilterConfig::Rbac(Some(rbac)) = &l.filter_chains[0].http_filters[0].config else {
        panic!("rbac filter expected");
    };
    assert_eq!(rbac.action, RbacAction::Deny);
    assert_eq!(&*rbac.policies[0].name, "all");
}

#[test]
fn a36_rules_are_enforced() {
    let mut l = listener(vec![chain(filters())]);
    l.listener_filters = vec![ListenerFilter::default()];
    let e = ServerListener::try_from(l).unwrap_err();
    assert_eq!(e.field, "listener_filters");

    let l = listener(vec![
        chain(filters()),
        chain(vec![http_filter("router", &Router::default())]),
    ]);
    let e = ServerListener::try_from(l).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Invalid, "filter_chains[1].filter_chain_match")
    );

    let mut l = listener(vec![chain(filters())]);
    l.address = None;
    assert_eq!(
        ServerListener::try_from(l).unwrap_err().field,
        "address.socket_address"
    );

    // Two network filters in a chain.
    let mut c = chain(filters());
    c.filters.push(c.filters[0].clone());
    let e = ServerListener::try_from(listener(vec![c])).unwrap_err();
    assert_eq!(e.field, "filter_chains[0].filters");
}

#[test]
fn rbac_on_a_client_listener_is_refused() {
    use envoy_types::pb::envoy::config::listener::v3::ApiListener;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    let hcm = HttpConnectionManager {
        http_filters: filters(),
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration::default())),
        ..Default::default()
    };
    let l = ListenerProto {
        name: "svc:80".into(),
        api_listener: Some(ApiListener {
            api_listener: Some(any(&hcm)),
        }),
        ..Default::default()
    };
    let e = crate::model::Listener::try_from(l).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.reason.contains("server listeners only"), "{e}");
}

fn tls_any(ctx: &DownstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(ctx))),
    }
}

/// istiod's server context (grpcgen `buildCommonTLSContext`).
#[allow(deprecated)]
fn istiod_tls() -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_certificate_provider_instance: Some(CertificateProviderInstanceProto {
                instance_name: "default".into(),
                certificate_name: "default".into(),
            }),
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(Default::default()),
                    validation_context_certificate_provider_instance: Some(
                        CertificateProviderInstanceProto {
                            instance_name: "default".into(),
                            certificate_name: "ROOTCA".into(),
                        },
                    ),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    }
}

fn matched(mut c: FilterChain, transport_protocol: &str) -> FilterChain {
    c.filter_chain_match = Some(FilterChainMatchProto {
        transport_protocol: transport_protocol.into(),
        ..Default::default()
    });
    c
}

fn permissive() -> ListenerProto {
    let mut tls = matched(chain(filters()), "tls");
    tls.name = "inbound-mtls".into();
    tls.transport_socket = Some(tls_any(&istiod_tls()));
    let mut plain = matched(chain(filters()), "raw_buffer");
    plain.name = "inbound-plaintext".into();
    listener(vec![tls, plain])
}

fn facts(local: &str, remote: &str, tls: bool) -> ConnectionFacts {
    ConnectionFacts {
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        tls,
    }
}

#[test]
fn istiod_strict_chain_is_a29_tls_with_client_certificates() {
    let mut c = chain(filters());
    c.transport_socket = Some(tls_any(&istiod_tls()));
    let l = ServerListener::try_from(listener(vec![c])).unwrap();
    let tls = l.filter_chains[0].tls.clone().unwrap();
    assert_eq!(&*tls.certificate.instance_name, "default");
    assert_eq!(&*tls.validation.unwrap().certificate_name, "ROOTCA");
    assert!(tls.require_client_certificate);
    assert_eq!(l.tls_mode(), InboundTlsMode::Strict);
    assert!(l.needs_tls());
}

#[test]
fn permissive_selects_by_transport_protocol() {
    let l = ServerListener::try_from(permissive()).unwrap();
    assert_eq!(l.tls_mode(), InboundTlsMode::Permissive);
    let tls = l
        .select(&facts("127.0.0.1:8080", "127.0.0.1:5000", true))
        .unwrap();
    assert_eq!(&*tls.name, "inbound-mtls");
    let plain = l
        .select(&facts("127.0.0.1:8080", "127.0.0.1:5000", false))
        .unwrap();
    assert_eq!(&*plain.name, "inbound-plaintext");
    let one = ServerListener::try_from(listener(vec![chain(filters())])).unwrap();
    assert_eq!(one.tls_mode(), InboundTlsMode::Disable);
}

#[test]
fn a36_selection_prefers_the_most_specific_match() {
    let cidr = |a: &str, len: u32| CidrProto {
        address_prefix: a.into(),
        prefix_len: Some(UInt32Value { value: len }),
    };
    let mut wide = chain(filters());
    wide.name = "wide".into();
    wide.filter_chain_match = Some(FilterChainMatchProto {
        prefix_ranges: vec![cidr("10.0.0.0", 8)],
        ..Default::default()
    });
    let mut narrow = chain(filters());
    narrow.name = "narrow".into();
    narrow.filter_chain_match = Some(FilterChainMatchProto {
        prefix_ranges: vec![cidr("10.1.0.0", 16)],
        ..Default::default()
    });
    let mut local = chain(filters());
    local.name = "local".into();
    local.filter_chain_match = Some(FilterChainMatchProto {
        prefix_ranges: vec![cidr("10.1.0.0", 16)],
        source_type: ConnectionSourceType::SameIpOrLoopback as i32,
        ..Default::default()
    });
    let mut port = chain(filters());
    port.name = "port".into();
    port.filter_chain_match = Some(FilterChainMatchProto {
        destination_port: Some(UInt32Value { value: 9000 }),
        ..Default::default()
    });
    let mut dflt = chain(filters());
    dflt.name = "default".into();
    let mut l = listener(vec![wide, narrow, local, port]);
    l.default_filter_chain = Some(dflt);
    let l = ServerListener::try_from(l).unwrap();
    let pick = |local: &str, remote: &str| {
        l.select(&facts(local, remote, false))
            .map(|c| c.name.to_string())
    };
    assert_eq!(
        pick("10.2.0.1:8080", "192.168.0.1:1").as_deref(),
        Some("wide")
    );
    assert_eq!(
        pick("10.1.0.1:8080", "192.168.0.1:1").as_deref(),
        Some("narrow")
    );
    assert_eq!(
        pick("10.1.0.1:8080", "10.1.0.1:1").as_deref(),
        Some("local")
    );
    // Destination port is checked first: an exact port wins over every prefix.
    assert_eq!(pick("10.1.0.1:9000", "10.1.0.1:1").as_deref(), Some("port"));
    assert_eq!(
        pick("172.16.0.1:8080", "10.1.0.1:1").as_deref(),
        Some("default")
    );
}

#[test]
fn chains_that_cannot_match_are_dropped_and_unsupported_tls_is_refused() {
    // A chain with server names never matches (A36); it is validated, then dropped.
    let mut sni = chain(filters());
    sni.filter_chain_match = Some(FilterChainMatchProto {
        server_names: vec!["example.com".into()],
        ..Default::default()
    });
    let l = ServerListener::try_from(listener(vec![sni, chain(filters())])).unwrap();
    assert_eq!(l.filter_chains.len(), 1);

    let mut inline = istiod_tls();
    inline.common_tls_context.as_mut().unwrap().tls_certificates = vec![Default::default()];
    let mut c = chain(filters());
    c.transport_socket = Some(tls_any(&inline));
    let e = ServerListener::try_from(listener(vec![c])).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (
            ErrorKind::Unsupported,
            "filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates"
        )
    );

    let mut no_roots = istiod_tls();
    no_roots
        .common_tls_context
        .as_mut()
        .unwrap()
        .validation_context_type = None;
    let mut c = chain(filters());
    c.transport_socket = Some(tls_any(&no_roots));
    let e = ServerListener::try_from(listener(vec![c])).unwrap_err();
    assert_eq!(
        e.field,
        "filter_chains[0].transport_socket.typed_config.require_client_certificate"
    );
}

#[test]
fn uniform_filters_are_none_when_chains_differ() {
    let l = ServerListener::try_from(permissive()).unwrap();
    assert!(l.uniform_http_filters().is_some());
    let mut other = matched(
        chain(vec![http_filter("router", &Router::default())]),
        "tls",
    );
    other.transport_socket = Some(tls_any(&istiod_tls()));
    let l = ServerListener::try_from(listener(vec![
        other,
        matched(chain(filters()), "raw_buffer"),
    ]))
    .unwrap();
    assert!(l.uniform_http_filters().is_none());
}
