use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::listener::v3::{Filter, ListenerFilter};
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Policy, Principal, Rbac as RbacRules,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::*;
use crate::model::{ErrorKind, HttpFilterConfig, RbacAction};

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
    let HttpFilterConfig::Rbac(Some(rbac)) = &l.http_filters[0].config else {
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
        (ErrorKind::Unsupported, "filter_chains[1]")
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
