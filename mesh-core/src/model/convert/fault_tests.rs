use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_match::PathSpecifier,
    weighted_cluster::ClusterWeight as CwProto, HeaderMatcher as HeaderMatcherProto,
    Route as RouteProto, RouteConfiguration as RouteConfigProto, RouteMatch, VirtualHost,
    WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    fault_delay::HeaderDelay, FaultDelay as FaultDelayProto,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort::HeaderAbort, FaultAbort as FaultAbortProto,
};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use prost::Message;

use super::*;
use crate::model::{find_override, ErrorKind, HeaderMatch, RouteConfiguration};

const F: &str = "envoy.filters.http.fault";

fn to_any<M: Message>(name: &str, m: &M) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{name}"),
        value: m.encode_to_vec(),
    }
}

fn pct(numerator: u32, d: DenominatorType) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator,
        denominator: d as i32,
    })
}

fn abort(et: ErrorType, p: u32) -> HttpFault {
    HttpFault {
        abort: Some(FaultAbortProto {
            percentage: pct(p, DenominatorType::Hundred),
            error_type: Some(et),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn fault_any(f: &HttpFault) -> Any {
    to_any(FAULT, f)
}

/// One virtual host with `vh_cfg`, one route `/` with `route_cfg`, split over clusters `a`
/// (with `a_cfg`) and `b`.
fn rc(
    vh_cfg: Vec<(&str, Any)>,
    route_cfg: Vec<(&str, Any)>,
    a_cfg: Vec<(&str, Any)>,
) -> RouteConfigProto {
    let map = |v: Vec<(&str, Any)>| v.into_iter().map(|(k, a)| (k.to_string(), a)).collect();
    let cw = |name: &str, cfg| CwProto {
        name: name.into(),
        weight: Some(UInt32Value { value: 1 }),
        typed_per_filter_config: cfg,
        ..Default::default()
    };
    RouteConfigProto {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            typed_per_filter_config: map(vh_cfg),
            routes: vec![RouteProto {
                name: "r".into(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteActionProto {
                    cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                        clusters: vec![cw("a", map(a_cfg)), cw("b", HashMap::new())],
                        ..Default::default()
                    })),
                    ..Default::default()
                })),
                typed_per_filter_config: map(route_cfg),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn faults(rc: RouteConfigProto) -> FaultOverrides {
    let rc = RouteConfiguration::try_from(rc).expect("valid");
    rc.virtual_hosts[0].routes[0].policy.faults.clone()
}

fn err(rc: RouteConfigProto) -> ModelError {
    let e = RouteConfiguration::try_from(rc).unwrap_err();
    assert_eq!(&*e.resource, "rc");
    e
}

#[test]
fn a_full_http_fault_is_kept() {
    let f = HttpFault {
        delay: Some(FaultDelayProto {
            percentage: pct(25, DenominatorType::TenThousand),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                seconds: 1,
                nanos: 500_000_000,
            })),
        }),
        max_active_faults: Some(UInt32Value { value: 3 }),
        upstream_cluster: "a".into(),
        downstream_nodes: vec!["n1".into()],
        headers: vec![HeaderMatcherProto {
            name: "x-test".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(true)),
            ..Default::default()
        }],
        ..abort(ErrorType::HttpStatus(503), 50)
    };
    let o = faults(rc(vec![], vec![(F, fault_any(&f))], vec![]));
    assert_eq!(o.route.len(), 1);
    assert_eq!(&*o.route[0].filter, F);
    let p = o.route[0].policy.as_ref().expect("config");
    let d = p.delay.as_ref().expect("delay");
    assert_eq!(d.kind, FaultDelayKind::Fixed(Duration::from_millis(1500)));
    assert_eq!(d.percentage.per_million(), 2_500);
    let a = p.abort.as_ref().expect("abort");
    assert_eq!(a.kind, FaultAbortKind::Http(503));
    assert_eq!(a.percentage.per_million(), 500_000);
    assert_eq!(p.max_active_faults, Some(3));
    assert_eq!(p.upstream_cluster.as_deref(), Some("a"));
    assert_eq!(&*p.downstream_nodes, &[Arc::from("n1")]);
    assert_eq!(p.headers[0].matcher, HeaderMatch::Present(true));
}

#[test]
fn header_kinds_and_missing_percentage() {
    let f = HttpFault {
        delay: Some(FaultDelayProto {
            fault_delay_secifier: Some(FaultDelaySecifier::HeaderDelay(HeaderDelay {})),
            ..Default::default()
        }),
        ..abort(ErrorType::HeaderAbort(HeaderAbort {}), 100)
    };
    let o = faults(rc(vec![], vec![(F, fault_any(&f))], vec![]));
    let p = o.route[0].policy.as_ref().expect("config");
    let d = p.delay.as_ref().expect("delay");
    assert_eq!(d.kind, FaultDelayKind::Header);
    assert_eq!(d.percentage, FaultPercent::NONE, "unset percentage: never");
    assert_eq!(
        p.abort.as_ref().map(|a| a.kind),
        Some(FaultAbortKind::Header)
    );
}

#[test]
fn invalid_configs_name_the_field() {
    let key = "virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault]";
    let cases: Vec<(HttpFault, &str)> = vec![
        (abort(ErrorType::HttpStatus(600), 100), "abort.http_status"),
        (abort(ErrorType::HttpStatus(199), 100), "abort.http_status"),
        (
            HttpFault {
                abort: Some(FaultAbortProto::default()),
                ..Default::default()
            },
            "abort",
        ),
        (
            HttpFault {
                delay: Some(FaultDelayProto::default()),
                ..Default::default()
            },
            "delay",
        ),
        (
            HttpFault {
                delay: Some(FaultDelayProto {
                    fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                        seconds: -1,
                        nanos: 0,
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "delay.fixed_delay",
        ),
        (
            HttpFault {
                abort: Some(FaultAbortProto {
                    percentage: Some(FractionalPercent {
                        numerator: 1,
                        denominator: 7,
                    }),
                    error_type: Some(ErrorType::GrpcStatus(14)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "abort.percentage.denominator",
        ),
    ];
    for (f, field) in cases {
        let e = err(rc(vec![], vec![(F, fault_any(&f))], vec![]));
        assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
        assert_eq!(e.field, format!("{key}.{field}"), "{e}");
    }
    // The same rules on a weighted cluster's entry, named there.
    let e = err(rc(
        vec![],
        vec![],
        vec![(F, fault_any(&abort(ErrorType::HttpStatus(42), 1)))],
    ));
    assert_eq!(
        e.field,
        "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0].\
         typed_per_filter_config[envoy.filters.http.fault].abort.http_status"
    );
}

#[test]
fn most_specific_override_wins_and_others_are_ignored() {
    let vh = fault_any(&abort(ErrorType::HttpStatus(500), 100));
    let route = fault_any(&abort(ErrorType::GrpcStatus(14), 100));
    let other = to_any(
        "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        &HttpFault::default(),
    );
    let disabled = to_any(
        FILTER_CONFIG,
        &FilterConfig {
            disabled: true,
            ..Default::default()
        },
    );
    let wrapped = to_any(
        FILTER_CONFIG,
        &FilterConfig {
            config: Some(fault_any(&abort(ErrorType::HttpStatus(404), 100))),
            ..Default::default()
        },
    );
    // Virtual host only: inherited by the route.
    let o = faults(rc(vec![(F, vh.clone())], vec![], vec![]));
    let kind = |o: &FaultOverride| {
        o.policy
            .as_ref()
            .and_then(|p| p.abort.as_ref())
            .map(|a| a.kind)
    };
    assert_eq!(kind(&o.route[0]), Some(FaultAbortKind::Http(500)));
    // Route over virtual host, same name; unrelated types ignored; cluster entries kept apart.
    let o = faults(rc(
        vec![(F, vh.clone()), ("rbac", other)],
        vec![(F, route)],
        vec![(F, disabled), ("other-fault", wrapped)],
    ));
    assert_eq!(o.route.len(), 1, "{o:?}");
    assert_eq!(kind(&o.route[0]), Some(FaultAbortKind::Grpc(14)));
    assert_eq!(o.clusters.len(), 1);
    let (c, list) = &o.clusters[0];
    assert_eq!(&**c, "a");
    let disabled = find_override(list, F).expect("disabled entry");
    assert!(disabled.policy.is_none());
    let wrapped = find_override(list, "other-fault").expect("unwrapped FilterConfig");
    assert_eq!(kind(wrapped), Some(FaultAbortKind::Http(404)));
}

#[test]
fn typed_struct_fault_is_unsupported() {
    let ts = super::super::TypedStruct {
        type_url: format!("type.googleapis.com/{FAULT}"),
        value: None,
    };
    let any = to_any("udpa.type.v1.TypedStruct", &ts);
    let e = err(rc(vec![], vec![(F, any)], vec![]));
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
}
