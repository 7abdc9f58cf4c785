use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue as HeaderValueProto, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action::ClusterSpecifier, route_action::HostRewriteSpecifier,
    route_match::PathSpecifier, Route as RouteProto, RouteAction as RouteActionProto,
    RouteConfiguration as RouteConfigProto, RouteMatch as RouteMatchProto,
    VirtualHost as VirtualHostProto,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};
use envoy_types::pb::google::protobuf::BoolValue;
use http::HeaderMap;

use crate::model::{ErrorKind, RequestRewrite, RouteConfiguration};

fn add(key: &str, value: &str, action: i32) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValueProto {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: action,
        ..Default::default()
    }
}

fn action(f: impl FnOnce(&mut RouteActionProto)) -> Option<Action> {
    let mut ra = RouteActionProto {
        cluster_specifier: Some(ClusterSpecifier::Cluster("c".into())),
        ..Default::default()
    };
    f(&mut ra);
    Some(Action::Route(ra))
}

fn config(route: RouteProto, vh: VirtualHostProto, rc: RouteConfigProto) -> RouteConfigProto {
    RouteConfigProto {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHostProto {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![route],
            ..vh
        }],
        ..rc
    }
}

fn prefix_route(prefix: &str, a: Option<Action>) -> RouteProto {
    RouteProto {
        r#match: Some(RouteMatchProto {
            path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: a,
        ..Default::default()
    }
}

fn rewrite_of(p: RouteConfigProto) -> Option<std::sync::Arc<RequestRewrite>> {
    RouteConfiguration::try_from(p).unwrap().virtual_hosts[0].routes[0]
        .policy
        .rewrite
        .clone()
}

fn err(p: RouteConfigProto) -> (ErrorKind, String, String) {
    let e = RouteConfiguration::try_from(p).unwrap_err();
    (e.kind, e.field.to_string(), e.to_string())
}

#[test]
fn no_mutation_no_rewrite() {
    let p = config(
        prefix_route("/", action(|_| {})),
        Default::default(),
        Default::default(),
    );
    assert_eq!(rewrite_of(p), None);
}

#[test]
fn levels_apply_route_then_vhost_then_route_config() {
    // Route sets x=route (overwrite), the vhost overwrites it, the route configuration appends.
    let route = RouteProto {
        request_headers_to_add: vec![add("x", "route", 2), add("only-route", "r", 0)],
        request_headers_to_remove: vec!["drop-me".into()],
        response_headers_to_add: vec![add("served-by", "mesh", 1)],
        ..prefix_route("/", action(|_| {}))
    };
    let vh = VirtualHostProto {
        request_headers_to_add: vec![add("x", "vhost", 2)],
        ..Default::default()
    };
    let rc = RouteConfigProto {
        request_headers_to_add: vec![add("x", "rc", 0)],
        ..Default::default()
    };
    let rw = rewrite_of(config(route.clone(), vh.clone(), rc.clone())).unwrap();
    let mut h = HeaderMap::new();
    h.insert("drop-me", "1".parse().unwrap());
    h.insert("x", "caller".parse().unwrap());
    rw.request_headers.apply(&mut h);
    let x: Vec<_> = h.get_all("x").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(x, ["vhost", "rc"]);
    assert_eq!(h["only-route"], "r");
    assert!(!h.contains_key("drop-me"));
    // ADD_IF_ABSENT leaves a present header alone.
    let mut resp = HeaderMap::new();
    resp.insert("served-by", "backend".parse().unwrap());
    rw.response_headers.apply(&mut resp);
    assert_eq!(resp["served-by"], "backend");

    // most_specific_header_mutations_wins: the route's value wins.
    let rc = RouteConfigProto {
        most_specific_header_mutations_wins: true,
        request_headers_to_add: vec![],
        ..rc
    };
    let rw = rewrite_of(config(route, vh, rc)).unwrap();
    let mut h = HeaderMap::new();
    rw.request_headers.apply(&mut h);
    assert_eq!(h["x"], "route");
}

#[test]
#[allow(deprecated)] // `append` is deprecated and still honoured
fn deprecated_append_empty_values_and_percent() {
    let mut overwrite = add("a", "100%%", 0);
    overwrite.append = Some(BoolValue { value: false });
    let route = RouteProto {
        request_headers_to_add: vec![overwrite, add("empty", "", 0), {
            let mut keep = add("kept", "", 0);
            keep.keep_empty_value = true;
            keep
        }],
        ..prefix_route("/", action(|_| {}))
    };
    let rw = rewrite_of(config(route, Default::default(), Default::default())).unwrap();
    let mut h = HeaderMap::new();
    h.append("a", "1".parse().unwrap());
    h.append("a", "2".parse().unwrap());
    rw.request_headers.apply(&mut h);
    assert_eq!(h.get_all("a").iter().count(), 1);
    assert_eq!(h["a"], "100%");
    assert!(!h.contains_key("empty"));
    assert_eq!(h["kept"], "");
}

#[test]
fn bad_headers_are_refused_naming_the_field() {
    for (opt, kind, field) in [
        (
            add(":path", "/x", 0),
            ErrorKind::Invalid,
            "request_headers_to_add[0].header.key",
        ),
        (
            add("host", "x", 0),
            ErrorKind::Invalid,
            "request_headers_to_add[0].header.key",
        ),
        (
            add("bad name", "x", 0),
            ErrorKind::Invalid,
            "request_headers_to_add[0].header.key",
        ),
        (
            add("x-client", "%DOWNSTREAM_REMOTE_ADDRESS%", 0),
            ErrorKind::Unsupported,
            "request_headers_to_add[0].header.value",
        ),
        (
            add("x", "v", 9),
            ErrorKind::Invalid,
            "request_headers_to_add[0].append_action",
        ),
    ] {
        let route = RouteProto {
            request_headers_to_add: vec![opt],
            ..prefix_route("/", action(|_| {}))
        };
        let (k, f, msg) = err(config(route, Default::default(), Default::default()));
        assert_eq!(k, kind, "{msg}");
        assert!(f.ends_with(field), "{f} / {msg}");
    }
}

#[test]
fn prefix_regex_and_host_rewrites() {
    // prefix_rewrite replaces what the prefix matched; the query string stays.
    let p = config(
        prefix_route("/api/v1", action(|ra| ra.prefix_rewrite = "/v2".into())),
        Default::default(),
        Default::default(),
    );
    let rw = rewrite_of(p).unwrap();
    assert_eq!(
        rw.rewrite_path("/api/v1/users?id=7").as_deref(),
        Some("/v2/users?id=7")
    );
    // A rewrite to nothing sends `/`.
    let rw = rewrite_of(config(
        prefix_route("/strip", action(|ra| ra.prefix_rewrite = "/".into())),
        Default::default(),
        Default::default(),
    ))
    .unwrap();
    assert_eq!(rw.rewrite_path("/strip").as_deref(), Some("/"));

    // regex_rewrite: every match, RE2 `\1` groups.
    let rw = rewrite_of(config(
        prefix_route(
            "/",
            action(|ra| {
                ra.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(RegexMatcher {
                        regex: "^/service/([^/]+)(/.*)$".into(),
                        ..Default::default()
                    }),
                    substitution: "\\2/instance/\\1".into(),
                })
            }),
        ),
        Default::default(),
        Default::default(),
    ))
    .unwrap();
    assert_eq!(
        rw.rewrite_path("/service/foo/v1/api?q=1").as_deref(),
        Some("/v1/api/instance/foo?q=1")
    );

    // host_rewrite_literal.
    let rw = rewrite_of(config(
        prefix_route(
            "/",
            action(|ra| {
                ra.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewriteLiteral(
                    "backend.internal".into(),
                ))
            }),
        ),
        Default::default(),
        Default::default(),
    ))
    .unwrap();
    assert_eq!(rw.host.as_ref().unwrap(), "backend.internal");
    assert_eq!(rw.rewrite_path("/x"), None);
}

#[test]
fn unsupported_rewrites_are_refused() {
    let regex_match = RouteProto {
        r#match: Some(RouteMatchProto {
            path_specifier: Some(PathSpecifier::SafeRegex(RegexMatcher {
                regex: "/.*".into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        action: action(|ra| ra.prefix_rewrite = "/x".into()),
        ..Default::default()
    };
    let (k, f, _) = err(config(regex_match, Default::default(), Default::default()));
    assert_eq!(
        (k, f.ends_with("route.prefix_rewrite")),
        (ErrorKind::Invalid, true)
    );
    let auto = prefix_route(
        "/",
        action(|ra| {
            ra.host_rewrite_specifier = Some(HostRewriteSpecifier::AutoHostRewrite(BoolValue {
                value: true,
            }))
        }),
    );
    let (k, f, _) = err(config(auto, Default::default(), Default::default()));
    assert_eq!(
        (k, f.ends_with("route.auto_host_rewrite")),
        (ErrorKind::Unsupported, true)
    );
}
