use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

use super::*;
use crate::model::{
    HeaderMatch, HeaderMatcher, MetadataMatcher, Permission as P, Principal as Id, Rbac,
    RbacAction, RbacPolicy, Regex, StringMatcher, ValueMatch,
};

fn exact(v: &str) -> StringMatcher {
    StringMatcher::Exact {
        value: v.into(),
        ignore_case: false,
    }
}

fn prefix(v: &str) -> StringMatcher {
    StringMatcher::Prefix {
        value: v.into(),
        ignore_case: false,
    }
}

fn policy(name: &str, perms: Vec<P>, ids: Vec<Id>) -> RbacPolicy {
    RbacPolicy {
        name: name.into(),
        permissions: perms.into(),
        principals: ids.into(),
    }
}

fn filter(name: &str, action: RbacAction, policies: Vec<RbacPolicy>) -> CompiledRbac {
    CompiledRbac::new(
        name,
        &Rbac {
            action,
            policies: policies.into(),
        },
    )
}

struct Req {
    method: Method,
    path: &'static str,
    authority: &'static str,
    headers: HeaderMap,
    local: SocketAddr,
    remote: SocketAddr,
    principal: Option<&'static str>,
    metadata: Option<serde_json::Value>,
}

impl Req {
    fn new(path: &'static str) -> Self {
        Req {
            method: Method::GET,
            path,
            authority: "svc.demo",
            headers: HeaderMap::new(),
            local: "10.0.0.5:8080".parse().unwrap(),
            remote: "10.1.2.3:40000".parse().unwrap(),
            principal: Some("spiffe://cluster.local/ns/demo/sa/client"),
            metadata: None,
        }
    }
    fn view(&self) -> AuthzRequest<'_> {
        AuthzRequest {
            method: &self.method,
            path_and_query: self.path,
            authority: self.authority,
            headers: &self.headers,
            local: Some(self.local),
            remote: Some(self.remote),
            tls: self.principal.is_some(),
            peer_principal: self.principal,
            sni: None,
            metadata: self.metadata.as_ref(),
        }
    }
}

fn denied_by(d: Decision) -> Option<String> {
    match d {
        Decision::Allow => None,
        Decision::Deny(x) => Some(
            x.policy
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("<{}>", x.filter)),
        ),
    }
}

fn spiffe(sa: &str) -> Id {
    Id::Authenticated(Some(exact(&format!(
        "spiffe://cluster.local/ns/demo/sa/{sa}"
    ))))
}

/// Istio's layout: DENY filter, then ALLOW filter.
fn istio(deny: Vec<RbacPolicy>, allow: Vec<RbacPolicy>) -> AuthzChain {
    let mut f = Vec::new();
    if !deny.is_empty() {
        f.push(filter("rbac.DENY", RbacAction::Deny, deny));
    }
    if !allow.is_empty() {
        f.push(filter("rbac", RbacAction::Allow, allow));
    }
    AuthzChain::new(f)
}

#[test]
fn istio_evaluation_order() {
    let admin_deny = policy(
        "ns[demo]-policy[deny-admin]-rule[0]",
        vec![P::UrlPath(prefix("/admin/"))],
        vec![Id::Any],
    );
    let allow_client = policy(
        "ns[demo]-policy[allow]-rule[0]",
        vec![P::Any],
        vec![spiffe("client")],
    );
    // No policy at all: allowed.
    assert_eq!(
        AuthzChain::default().evaluate(&Req::new("/x").view()),
        Decision::Allow
    );
    // DENY only: what it does not match is allowed (no ALLOW policy ⇒ allow).
    let only_deny = istio(vec![admin_deny.clone()], vec![]);
    assert_eq!(denied_by(only_deny.evaluate(&Req::new("/x").view())), None);
    assert_eq!(
        denied_by(only_deny.evaluate(&Req::new("/admin/users?q=1").view())).as_deref(),
        Some("ns[demo]-policy[deny-admin]-rule[0]")
    );
    // DENY wins over a matching ALLOW.
    let both = istio(vec![admin_deny], vec![allow_client]);
    assert_eq!(
        denied_by(both.evaluate(&Req::new("/admin/x").view())).as_deref(),
        Some("ns[demo]-policy[deny-admin]-rule[0]")
    );
    assert_eq!(denied_by(both.evaluate(&Req::new("/x").view())), None);
    // ALLOW present but not matching: denied, naming the filter.
    let mut other = Req::new("/x");
    other.principal = Some("spiffe://cluster.local/ns/demo/sa/other");
    assert_eq!(
        denied_by(both.evaluate(&other.view())).as_deref(),
        Some("<rbac>")
    );
    // Plaintext: no principal matches, not even `.+`.
    let any_principal = istio(
        vec![],
        vec![policy(
            "p",
            vec![P::Any],
            vec![Id::Authenticated(Some(StringMatcher::Regex(
                Regex::full_match(".+").unwrap(),
            )))],
        )],
    );
    let mut plain = Req::new("/x");
    plain.principal = None;
    assert_eq!(
        denied_by(any_principal.evaluate(&plain.view())).as_deref(),
        Some("<rbac>")
    );
    assert_eq!(
        denied_by(any_principal.evaluate(&Req::new("/x").view())),
        None
    );
}

#[test]
fn log_filter_never_decides() {
    let chain = AuthzChain::new(vec![filter(
        "log",
        RbacAction::Log,
        vec![policy("p", vec![P::Any], vec![Id::Any])],
    )]);
    assert_eq!(chain.evaluate(&Req::new("/").view()), Decision::Allow);
}

#[test]
fn not_forms_ports_ips_and_hosts() {
    // Istio `notPaths: ["/healthz"]`, `ports: ["8080"]`, `hosts: ["*.demo"]`.
    let perms = vec![P::And(
        vec![
            P::Not(Box::new(P::Or(vec![P::UrlPath(exact("/healthz"))].into()))),
            P::Or(vec![P::DestinationPort(8080)].into()),
            P::Header(HeaderMatcher {
                name: ":authority".into(),
                matcher: HeaderMatch::String(StringMatcher::Suffix {
                    value: ".demo".into(),
                    ignore_case: true,
                }),
                invert: false,
                treat_missing_as_empty: false,
            }),
        ]
        .into(),
    )];
    // `ipBlocks: ["10.1.0.0/16"]`, `notIpBlocks: ["10.1.9.0/24"]`.
    let cidr = |s: &str, n| CidrRange::new(s.parse().unwrap(), n).unwrap();
    let ids = vec![Id::And(
        vec![
            Id::SourceIp(cidr("10.1.0.0", 16)),
            Id::Not(Box::new(Id::SourceIp(cidr("10.1.9.0", 24)))),
        ]
        .into(),
    )];
    let chain = istio(vec![], vec![policy("allow", perms, ids)]);
    let ok = Req::new("/api");
    assert_eq!(chain.evaluate(&ok.view()), Decision::Allow);
    assert!(chain.evaluate(&Req::new("/healthz").view()) != Decision::Allow);
    let mut port = Req::new("/api");
    port.local = "10.0.0.5:9090".parse().unwrap();
    assert!(chain.evaluate(&port.view()) != Decision::Allow);
    let mut host = Req::new("/api");
    host.authority = "SVC.other";
    assert!(chain.evaluate(&host.view()) != Decision::Allow);
    let mut upper = Req::new("/api");
    upper.authority = "API.DEMO";
    assert_eq!(chain.evaluate(&upper.view()), Decision::Allow);
    // Istio matches the authority as sent: `*.demo` does not cover `svc.demo:8080`.
    let mut host_port = Req::new("/api");
    host_port.authority = "svc.demo:8080";
    assert!(chain.evaluate(&host_port.view()) != Decision::Allow);
    let mut excluded = Req::new("/api");
    excluded.remote = "10.1.9.7:1234".parse().unwrap();
    assert!(chain.evaluate(&excluded.view()) != Decision::Allow);
    let mut outside = Req::new("/api");
    outside.remote = "10.2.0.1:1234".parse().unwrap();
    assert!(chain.evaluate(&outside.view()) != Decision::Allow);
    let mut mapped = Req::new("/api");
    mapped.remote = "[::ffff:10.1.2.3]:1234".parse().unwrap();
    assert_eq!(chain.evaluate(&mapped.view()), Decision::Allow);
}

#[test]
fn cidr_ranges_normalize_and_reject_bad_lengths() {
    let c = CidrRange::new("192.168.7.9".parse().unwrap(), 16).unwrap();
    assert_eq!(c.address.to_string(), "192.168.0.0");
    assert!(c.contains("192.168.255.1".parse().unwrap()));
    assert!(!c.contains("192.169.0.1".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    assert!(CidrRange::new("10.0.0.1".parse().unwrap(), 33).is_none());
    let all = CidrRange::new("0.0.0.0".parse().unwrap(), 0).unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    let v6 = CidrRange::new("fd00::".parse().unwrap(), 8).unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
}

#[test]
fn headers_when_conditions_and_hop_by_hop() {
    let hdr = |name: &str, re: &str| {
        P::Header(HeaderMatcher {
            name: name.into(),
            matcher: HeaderMatch::String(StringMatcher::Regex(Regex::full_match(re).unwrap())),
            invert: false,
            treat_missing_as_empty: false,
        })
    };
    // Istio `when: request.headers[x-env] in [prod]` (comma-list aware regex).
    let chain = istio(
        vec![policy("deny-te", vec![hdr("te", ".*")], vec![Id::Any])],
        vec![policy(
            "env",
            vec![hdr("x-env", "^prod$|^prod,.*|.*,prod,.*|.*,prod$")],
            vec![Id::Any],
        )],
    );
    let mut r = Req::new("/");
    assert!(
        chain.evaluate(&r.view()) != Decision::Allow,
        "absent header"
    );
    r.headers.append("x-env", HeaderValue::from_static("dev"));
    r.headers.append("x-env", HeaderValue::from_static("prod"));
    // hop-by-hop `te` is never visible, so the DENY on it cannot match.
    r.headers.append("te", HeaderValue::from_static("trailers"));
    assert_eq!(chain.evaluate(&r.view()), Decision::Allow);
}

#[test]
fn metadata_needs_request_auth_input() {
    let claim = |filter_path: &[&str], v: ValueMatch, invert| {
        Id::Metadata(MetadataMatcher {
            filter: "istio_authn".into(),
            path: filter_path.iter().map(|s| Arc::from(*s)).collect(),
            value: v,
            invert,
        })
    };
    let groups = claim(
        &["request.auth.claims", "groups"],
        ValueMatch::ListOneOf(Box::new(ValueMatch::String(exact("admins")))),
        false,
    );
    let not_principal = claim(
        &["request.auth.principal"],
        ValueMatch::String(exact("issuer/bad")),
        true,
    );
    let chain = istio(
        vec![],
        vec![policy(
            "claims",
            vec![P::Any],
            vec![Id::And(vec![groups, not_principal].into())],
        )],
    );
    let mut r = Req::new("/");
    assert!(
        chain.evaluate(&r.view()) != Decision::Allow,
        "no metadata never matches"
    );
    r.metadata = Some(json!({"istio_authn": {
        "request.auth.principal": "issuer/alice",
        "request.auth.claims": {"groups": ["users", "admins"]}
    }}));
    assert_eq!(chain.evaluate(&r.view()), Decision::Allow);
    r.metadata = Some(json!({"istio_authn": {
        "request.auth.principal": "issuer/bad",
        "request.auth.claims": {"groups": ["admins"]}
    }}));
    assert!(chain.evaluate(&r.view()) != Decision::Allow);
    r.metadata = Some(json!({"istio_authn": {"request.auth.claims": {"groups": "admins"}}}));
    assert!(
        chain.evaluate(&r.view()) != Decision::Allow,
        "a string is not a list"
    );
}

#[test]
fn denial_names_policy_and_first_policy_by_name_wins() {
    let chain = istio(
        vec![
            policy("b-second", vec![P::Any], vec![Id::Any]),
            policy("a-first", vec![P::Any], vec![Id::Any]),
        ],
        vec![],
    );
    // `CompiledRbac` keeps the order it is given; the model sorts by name at conversion.
    let Decision::Deny(d) = chain.evaluate(&Req::new("/").view()) else {
        panic!("expected a denial");
    };
    assert_eq!(d.policy.as_deref(), Some("b-second"));
    assert_eq!(
        d.to_string(),
        "denied by policy `b-second` (filter `rbac.DENY`)"
    );
}
