use envoy_types::pb::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier, AggregatedConfigSource, ApiConfigSource, ConfigSource,
    SelfConfigSource,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, FilterChain};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration as RouteConfigProto;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    Rds, ScopedRoutes,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::*;
use crate::model::convert::TypedStruct;
use crate::model::ErrorKind;

fn any(name: &str, value: Vec<u8>) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{name}"),
        value,
    }
}

fn filter(name: &str, ty: &str) -> HttpFilterProto {
    HttpFilterProto {
        name: name.into(),
        config_type: Some(ConfigType::TypedConfig(any(ty, vec![]))),
        ..Default::default()
    }
}

fn router() -> HttpFilterProto {
    filter("envoy.filters.http.router", ROUTER)
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn hcm(filters: Vec<HttpFilterProto>) -> HttpConnectionManager {
    HttpConnectionManager {
        http_filters: filters,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "rc".into(),
        })),
        ..Default::default()
    }
}

fn listener(h: HttpConnectionManager) -> ListenerProto {
    ListenerProto {
        name: "svc:80".into(),
        api_listener: Some(ApiListener {
            api_listener: Some(any(HCM, h.encode_to_vec())),
        }),
        ..Default::default()
    }
}

fn err(l: ListenerProto) -> (ErrorKind, String) {
    let e = Listener::try_from(l).unwrap_err();
    assert_eq!(&*e.resource, "svc:80");
    (e.kind, e.field)
}

const P: &str = "api_listener.api_listener";

#[test]
fn happy_path_rds() {
    let l = Listener::try_from(listener(hcm(vec![filter("f", FAULT), router()]))).unwrap();
    assert_eq!(&*l.name, "svc:80");
    assert_eq!(l.rds_name(), Some("rc"));
    assert!(matches!(
        l.http_filters[0].config,
        HttpFilterConfig::Fault(_)
    ));
    assert_eq!(l.http_filters[1].config, HttpFilterConfig::Router);
}

#[test]
fn rds_over_self_and_inline_routes() {
    let mut h = hcm(vec![router()]);
    h.route_specifier = Some(RouteSpecifier::Rds(Rds {
        config_source: Some(ConfigSource {
            config_source_specifier: Some(
                ConfigSourceSpecifier::Self_(SelfConfigSource::default()),
            ),
            ..Default::default()
        }),
        route_config_name: "rc".into(),
    }));
    assert!(Listener::try_from(listener(h)).is_ok());

    let mut h = hcm(vec![router()]);
    h.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfigProto {
        name: "inline".into(),
        ..Default::default()
    }));
    let l = Listener::try_from(listener(h)).unwrap();
    assert!(matches!(l.route_source, RouteSource::Inline(ref rc) if &*rc.name == "inline"));
}

#[test]
fn route_specifier_rejections() {
    let mut h = hcm(vec![router()]);
    h.route_specifier = Some(RouteSpecifier::Rds(Rds {
        config_source: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource::default(),
            )),
            ..Default::default()
        }),
        route_config_name: "rc".into(),
    }));
    assert_eq!(
        err(listener(h)),
        (ErrorKind::Unsupported, format!("{P}.rds.config_source"))
    );

    let mut h = hcm(vec![router()]);
    h.route_specifier = Some(RouteSpecifier::ScopedRoutes(ScopedRoutes::default()));
    assert_eq!(
        err(listener(h)),
        (ErrorKind::Unsupported, format!("{P}.scoped_routes"))
    );

    let mut h = hcm(vec![router()]);
    h.route_specifier = None;
    assert_eq!(err(listener(h)), (ErrorKind::Invalid, P.to_string()));

    // An invalid inline route config is reported against the listener, with the full path.
    let mut h = hcm(vec![router()]);
    h.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfigProto {
        name: "inline".into(),
        virtual_hosts: vec![Default::default()],
        ..Default::default()
    }));
    assert_eq!(
        err(listener(h)),
        (
            ErrorKind::Invalid,
            format!("{P}.route_config.virtual_hosts[0].domains")
        )
    );
}

#[test]
fn not_an_api_listener() {
    let l = ListenerProto {
        name: "svc:80".into(),
        filter_chains: vec![FilterChain::default()],
        ..Default::default()
    };
    // Read as a server listener (gRFC A36), which needs an address.
    assert_eq!(
        err(l),
        (ErrorKind::Invalid, "address.socket_address".into())
    );

    let mut l = listener(hcm(vec![router()]));
    l.api_listener = Some(ApiListener {
        api_listener: Some(any("some.Other", vec![])),
    });
    assert_eq!(err(l), (ErrorKind::Unsupported, P.to_string()));

    let mut l = listener(hcm(vec![router()]));
    l.api_listener = Some(ApiListener { api_listener: None });
    assert_eq!(err(l), (ErrorKind::Invalid, P.to_string()));

    let mut l = listener(hcm(vec![router()]));
    l.api_listener = Some(ApiListener {
        api_listener: Some(any(HCM, vec![0xff, 0xff])),
    });
    assert_eq!(err(l), (ErrorKind::Invalid, P.to_string()));
}

#[test]
fn grpc_xff_rules() {
    let mut h = hcm(vec![router()]);
    h.xff_num_trusted_hops = 1;
    assert_eq!(
        err(listener(h)),
        (ErrorKind::Invalid, format!("{P}.xff_num_trusted_hops"))
    );
    let mut h = hcm(vec![router()]);
    h.original_ip_detection_extensions = vec![Default::default()];
    assert_eq!(
        err(listener(h)),
        (
            ErrorKind::Invalid,
            format!("{P}.original_ip_detection_extensions")
        )
    );
}

#[test]
fn filter_chain_rules() {
    assert_eq!(
        err(listener(hcm(vec![]))),
        (ErrorKind::Invalid, format!("{P}.http_filters"))
    );
    assert_eq!(
        err(listener(hcm(vec![
            filter("a", FAULT),
            filter("a", FAULT),
            router()
        ]))),
        (ErrorKind::Invalid, format!("{P}.http_filters[1].name"))
    );
    assert_eq!(
        err(listener(hcm(vec![router(), filter("f", FAULT)]))),
        (ErrorKind::Invalid, format!("{P}.http_filters[0]"))
    );
    assert_eq!(
        err(listener(hcm(vec![filter("f", FAULT)]))),
        (ErrorKind::Invalid, format!("{P}.http_filters[0]"))
    );
    let mut r2 = router();
    r2.name = "r2".into();
    assert_eq!(
        err(listener(hcm(vec![router(), r2]))),
        (ErrorKind::Invalid, format!("{P}.http_filters[0]"))
    );
    let no_config = HttpFilterProto {
        name: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        err(listener(hcm(vec![no_config, router()]))),
        (
            ErrorKind::Invalid,
            format!("{P}.http_filters[0].typed_config")
        )
    );
}

#[test]
fn unknown_filters() {
    let unknown = filter("x", "istio.Unknown");
    assert_eq!(
        err(listener(hcm(vec![unknown.clone(), router()]))),
        (
            ErrorKind::Unsupported,
            format!("{P}.http_filters[0].typed_config")
        )
    );
    let mut optional = unknown;
    optional.is_optional = true;
    let l = Listener::try_from(listener(hcm(vec![optional, router()]))).unwrap();
    assert!(
        matches!(&l.http_filters[0].config, HttpFilterConfig::Skipped(a) if a.type_url.ends_with("istio.Unknown"))
    );
}

#[test]
fn typed_struct_router_is_identified() {
    let ts = TypedStruct {
        type_url: format!("type.googleapis.com/{ROUTER}"),
        value: None,
    };
    let f = HttpFilterProto {
        name: "r".into(),
        config_type: Some(ConfigType::TypedConfig(any(
            "xds.type.v3.TypedStruct",
            ts.encode_to_vec(),
        ))),
        ..Default::default()
    };
    let l = Listener::try_from(listener(hcm(vec![f]))).unwrap();
    assert_eq!(l.http_filters[0].config, HttpFilterConfig::Router);
}

#[test]
fn fault_filter_is_interpreted_and_at_most_one_is_supported() {
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
        fault_abort::ErrorType, FaultAbort, HttpFault,
    };
    let fault = |status: u32| HttpFilterProto {
        name: format!("fault-{status}"),
        config_type: Some(ConfigType::TypedConfig(any(
            FAULT,
            HttpFault {
                abort: Some(FaultAbort {
                    error_type: Some(ErrorType::HttpStatus(status)),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ))),
        ..Default::default()
    };
    let l = Listener::try_from(listener(hcm(vec![fault(503), router()]))).unwrap();
    let HttpFilterConfig::Fault(p) = &l.http_filters[0].config else {
        panic!("fault filter")
    };
    assert_eq!(
        p.abort.as_ref().map(|a| a.kind),
        Some(crate::model::FaultAbortKind::Http(503))
    );
    assert_eq!(
        err(listener(hcm(vec![fault(503), fault(504), router()]))),
        (ErrorKind::Unsupported, format!("{P}.http_filters[1]"))
    );
    assert_eq!(
        err(listener(hcm(vec![fault(700), router()]))),
        (
            ErrorKind::Invalid,
            format!("{P}.http_filters[0].typed_config.abort.http_status")
        )
    );
}

#[test]
fn stream_idle_timeout_defaults_to_five_minutes_and_zero_disables() {
    let l = Listener::try_from(listener(hcm(vec![router()]))).unwrap();
    assert_eq!(l.stream_idle_timeout, Some(DEFAULT_STREAM_IDLE_TIMEOUT));
    let with = |seconds| {
        let mut h = hcm(vec![router()]);
        h.stream_idle_timeout =
            Some(envoy_types::pb::google::protobuf::Duration { seconds, nanos: 0 });
        listener(h)
    };
    assert_eq!(
        Listener::try_from(with(0)).unwrap().stream_idle_timeout,
        None
    );
    assert_eq!(
        Listener::try_from(with(7)).unwrap().stream_idle_timeout,
        Some(std::time::Duration::from_secs(7))
    );
    assert_eq!(
        err(with(-1)),
        (ErrorKind::Invalid, format!("{P}.stream_idle_timeout"))
    );
}
