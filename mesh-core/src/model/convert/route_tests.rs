use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::{
    route_match::ConnectMatcher, weighted_cluster::ClusterWeight as CwProto, DirectResponseAction,
    RedirectAction,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::*;
use crate::model::{ErrorKind, ModelError};

fn rmatch(p: PathSpecifier) -> RouteMatchProto {
    RouteMatchProto {
        path_specifier: Some(p),
        ..Default::default()
    }
}

fn to_cluster(c: &str) -> Option<Action> {
    Some(Action::Route(RouteActionProto {
        cluster_specifier: Some(ClusterSpecifier::Cluster(c.into())),
        ..Default::default()
    }))
}

fn rc(routes: Vec<RouteProto>, domains: &[&str]) -> RouteConfigProto {
    RouteConfigProto {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHostProto {
            name: "vh".into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn simple(m: RouteMatchProto, action: Option<Action>) -> RouteProto {
    RouteProto {
        r#match: Some(m),
        action,
        ..Default::default()
    }
}

fn convert(p: RouteConfigProto) -> Result<RouteConfiguration, ModelError> {
    RouteConfiguration::try_from(p)
}

fn err(p: RouteConfigProto) -> (ErrorKind, String) {
    let e = convert(p).unwrap_err();
    assert_eq!(&*e.resource, "rc");
    (e.kind, e.field)
}

fn first_route(p: RouteConfigProto) -> Route {
    convert(p).unwrap().virtual_hosts[0].routes[0].clone()
}

#[test]
fn happy_path() {
    let r = simple(rmatch(PathSpecifier::Prefix("/".into())), to_cluster("c"));
    let cfg = convert(rc(vec![r], &["Foo.Example.com", "*.bar", "baz.*", "*"])).unwrap();
    assert_eq!(&*cfg.name, "rc");
    let vh = &cfg.virtual_hosts[0];
    assert_eq!(&*vh.domains[0], "foo.example.com");
    assert_eq!(vh.domains.len(), 4);
    let r = &vh.routes[0];
    assert_eq!(&*r.name, "vh/0");
    assert_eq!(r.matcher.path, PathMatch::Prefix("/".into()));
    assert!(r.matcher.case_sensitive);
    assert_eq!(r.matcher.fraction_per_million, None);
    assert_eq!(r.action, RouteAction::Cluster("c".into()));
}

#[test]
fn bad_domains() {
    let r = || simple(rmatch(PathSpecifier::Prefix("/".into())), to_cluster("c"));
    for d in ["a*b", "**", "*a*", ""] {
        assert_eq!(
            err(rc(vec![r()], &["ok", d])),
            (ErrorKind::Invalid, "virtual_hosts[0].domains[1]".into()),
            "{d}"
        );
    }
    assert_eq!(
        err(rc(vec![r()], &[])),
        (ErrorKind::Invalid, "virtual_hosts[0].domains".into())
    );
}

#[test]
fn path_specifiers() {
    let mut m = rmatch(PathSpecifier::Path("/Svc/Method".into()));
    m.case_sensitive = Some(BoolValue { value: false });
    let r = first_route(rc(vec![simple(m, to_cluster("c"))], &["*"]));
    assert_eq!(r.matcher.path, PathMatch::Exact("/svc/method".into()));
    assert!(!r.matcher.case_sensitive);

    let m = rmatch(PathSpecifier::SafeRegex(RegexMatcher {
        regex: "/a.*".into(),
        engine_type: None,
    }));
    let r = first_route(rc(vec![simple(m, to_cluster("c"))], &["*"]));
    assert!(matches!(r.matcher.path, PathMatch::Regex(ref re) if re.is_match("/abc")));

    let m = rmatch(PathSpecifier::SafeRegex(RegexMatcher {
        regex: "(".into(),
        engine_type: None,
    }));
    let ok = simple(rmatch(PathSpecifier::Prefix("/".into())), to_cluster("c"));
    assert_eq!(
        err(rc(
            vec![ok.clone(), ok.clone(), simple(m, to_cluster("c"))],
            &["*"]
        )),
        (
            ErrorKind::Invalid,
            "virtual_hosts[0].routes[2].match.safe_regex.regex".into()
        )
    );

    let none = RouteMatchProto::default();
    assert_eq!(
        err(rc(vec![simple(none, to_cluster("c"))], &["*"])),
        (
            ErrorKind::Invalid,
            "virtual_hosts[0].routes[0].match".into()
        )
    );
    let psp = rmatch(PathSpecifier::PathSeparatedPrefix("/a".into()));
    assert_eq!(
        err(rc(vec![simple(psp, to_cluster("c"))], &["*"])),
        (
            ErrorKind::Unsupported,
            "virtual_hosts[0].routes[0].match.path_separated_prefix".into()
        )
    );
    let cm = rmatch(PathSpecifier::ConnectMatcher(ConnectMatcher {}));
    assert_eq!(
        err(rc(vec![simple(cm, to_cluster("c"))], &["*"])).0,
        ErrorKind::Unsupported
    );
    let no_match = RouteProto {
        action: to_cluster("c"),
        ..Default::default()
    };
    assert_eq!(
        err(rc(vec![no_match], &["*"])),
        (
            ErrorKind::Invalid,
            "virtual_hosts[0].routes[0].match".into()
        )
    );
}

#[test]
fn runtime_fraction_scales_to_per_million() {
    for (num, den, want) in [
        (50, DenominatorType::Hundred, 500_000),
        (50, DenominatorType::TenThousand, 5_000),
        (50, DenominatorType::Million, 50),
        (500, DenominatorType::Hundred, 1_000_000),
        (u32::MAX, DenominatorType::Hundred, 1_000_000),
    ] {
        let mut m = rmatch(PathSpecifier::Prefix("/".into()));
        m.runtime_fraction = Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: num,
                denominator: den as i32,
            }),
            runtime_key: String::new(),
        });
        let r = first_route(rc(vec![simple(m, to_cluster("c"))], &["*"]));
        assert_eq!(r.matcher.fraction_per_million, Some(want));
    }
    let mut m = rmatch(PathSpecifier::Prefix("/".into()));
    m.runtime_fraction = Some(RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 1,
            denominator: 9,
        }),
        runtime_key: String::new(),
    });
    assert_eq!(
        err(rc(vec![simple(m, to_cluster("c"))], &["*"])),
        (
            ErrorKind::Invalid,
            "virtual_hosts[0].routes[0].match.runtime_fraction.default_value.denominator".into()
        )
    );
}

fn weighted(ws: &[(&str, Option<u32>)]) -> Option<Action> {
    Some(Action::Route(RouteActionProto {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: ws
                .iter()
                .map(|(n, w)| CwProto {
                    name: n.to_string(),
                    weight: w.map(|value| UInt32Value { value }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }))
}

#[test]
fn weighted_clusters_rules() {
    let m = || rmatch(PathSpecifier::Prefix("/".into()));
    let r = first_route(rc(
        vec![simple(
            m(),
            weighted(&[
                ("a", Some(30)),
                ("b", Some(0)),
                ("c", None),
                ("d", Some(70)),
            ]),
        )],
        &["*"],
    ));
    let RouteAction::WeightedClusters(ws) = r.action else {
        panic!("not weighted: {:?}", r.action)
    };
    let got: Vec<_> = ws.iter().map(|w| (&*w.name, w.weight)).collect();
    assert_eq!(got, vec![("a", 30), ("d", 70)]);

    let field = "virtual_hosts[0].routes[0].route.weighted_clusters".to_string();
    assert_eq!(
        err(rc(
            vec![simple(m(), weighted(&[("a", Some(0)), ("b", None)]))],
            &["*"]
        )),
        (ErrorKind::Invalid, field.clone())
    );
    assert_eq!(
        err(rc(vec![simple(m(), weighted(&[]))], &["*"])),
        (ErrorKind::Invalid, field.clone())
    );
    assert_eq!(
        err(rc(
            vec![simple(
                m(),
                weighted(&[("a", Some(u32::MAX)), ("b", Some(1))])
            )],
            &["*"]
        )),
        (ErrorKind::Invalid, field)
    );
    let r = first_route(rc(
        vec![simple(m(), weighted(&[("a", Some(u32::MAX))]))],
        &["*"],
    ));
    assert!(matches!(r.action, RouteAction::WeightedClusters(_)));
}

#[test]
fn unsupported_actions_keep_the_route() {
    let m = || rmatch(PathSpecifier::Prefix("/".into()));
    let cases = [
        (
            Some(Action::Redirect(RedirectAction::default())),
            "redirect",
        ),
        (
            Some(Action::DirectResponse(DirectResponseAction::default())),
            "direct_response",
        ),
        (
            Some(Action::Route(RouteActionProto {
                cluster_specifier: Some(ClusterSpecifier::ClusterHeader("x".into())),
                ..Default::default()
            })),
            "cluster_header",
        ),
        (
            Some(Action::Route(RouteActionProto {
                cluster_specifier: Some(ClusterSpecifier::ClusterSpecifierPlugin("p".into())),
                ..Default::default()
            })),
            "cluster_specifier_plugin",
        ),
    ];
    for (action, want) in cases {
        let r = first_route(rc(vec![simple(m(), action)], &["*"]));
        assert_eq!(r.action, RouteAction::Unsupported(want.into()));
    }
    assert_eq!(
        err(rc(vec![simple(m(), None)], &["*"])),
        (ErrorKind::Invalid, "virtual_hosts[0].routes[0]".into())
    );
    let empty_route = Some(Action::Route(RouteActionProto::default()));
    assert_eq!(
        err(rc(vec![simple(m(), empty_route)], &["*"])),
        (
            ErrorKind::Invalid,
            "virtual_hosts[0].routes[0].route".into()
        )
    );
}

#[test]
fn named_routes_keep_their_name_and_unmodelled_matchers_reject() {
    let mut r = simple(rmatch(PathSpecifier::Prefix("/".into())), to_cluster("c"));
    r.name = "mine".into();
    assert_eq!(&*first_route(rc(vec![r], &["*"])).name, "mine");

    let mut m = rmatch(PathSpecifier::Prefix("/".into()));
    m.cookies = vec![Default::default()];
    assert_eq!(
        err(rc(vec![simple(m, to_cluster("c"))], &["*"])),
        (
            ErrorKind::Unsupported,
            "virtual_hosts[0].routes[0].match.cookies".into()
        )
    );
}

#[test]
fn hash_policies_convert() {
    use crate::model::{HashSource, RegexRewrite};
    use envoy_types::pb::envoy::config::route::v3::route_action::{
        hash_policy::{ConnectionProperties, Cookie, FilterState, Header, PolicySpecifier},
        HashPolicy as Hp,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
    let hp = |p: PolicySpecifier, terminal| Hp {
        policy_specifier: Some(p),
        terminal,
    };
    let with = |list: Vec<Hp>| {
        let action = Some(Action::Route(RouteActionProto {
            cluster_specifier: Some(ClusterSpecifier::Cluster("c".into())),
            hash_policy: list,
            ..Default::default()
        }));
        rc(
            vec![simple(rmatch(PathSpecifier::Prefix("/".into())), action)],
            &["*"],
        )
    };
    let r = first_route(with(vec![
        hp(
            PolicySpecifier::Header(Header {
                header_name: "X-User".into(),
                regex_rewrite: Some(RegexMatchAndSubstitute {
                    pattern: Some(RegexMatcher {
                        regex: "-.*".into(),
                        ..Default::default()
                    }),
                    substitution: "".into(),
                }),
            }),
            true,
        ),
        hp(
            PolicySpecifier::FilterState(FilterState {
                key: "io.grpc.channel_id".into(),
            }),
            false,
        ),
        hp(
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: false }),
            false,
        ),
        hp(
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true }),
            false,
        ),
    ]));
    assert_eq!(
        r.hash_policy.len(),
        2,
        "filter_state and source_ip: false dropped"
    );
    assert_eq!(
        r.hash_policy[0].source,
        HashSource::Header {
            name: "x-user".into(),
            rewrite: Some(RegexRewrite::new("-.*", "").unwrap()),
        }
    );
    assert!(r.hash_policy[0].terminal);
    assert_eq!(r.hash_policy[1].source, HashSource::SourceIp);
    let field = |e: (ErrorKind, String)| e.1;
    assert_eq!(
        field(err(with(vec![hp(
            PolicySpecifier::Cookie(Cookie::default()),
            false
        )]))),
        "virtual_hosts[0].routes[0].route.hash_policy[0].cookie.name"
    );
    assert_eq!(
        field(err(with(vec![Hp::default()]))),
        "virtual_hosts[0].routes[0].route.hash_policy[0]"
    );
}
