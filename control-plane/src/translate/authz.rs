//! AuthorizationPolicy → Envoy RBAC HTTP filters on inbound (server) listeners, the way istiod
//! builds them (istio/istio `pilot/pkg/security/authz/builder`, its `testdata/http/*-out.yaml`)
//! and its proxyless generator serves them (`grpcgen/lds.go`: DENY filter, ALLOW filter, router;
//! XDS-SEMANTICS.md rows 33–34; gRFC A36, A41).
//!
//! Per rule `i` of policy `NAME` in namespace `NS`, one Envoy policy `ns[NS]-policy[NAME]-rule[i]`:
//! - permissions: one `and_rules` per `to[]` operation (none ⇒ one), holding each set operation
//!   field as `or_rules` (and `not_rule { or_rules }` for its `not*` twin) plus the permission-side
//!   `when` conditions (`destination.ip`, `destination.port`, `connection.sni`); empty ⇒ `any`.
//! - principals: one `and_ids` per `from[]` source (none ⇒ one), likewise, plus the principal-side
//!   conditions (headers, source and remote IP, namespace, principal, request auth).
//!
//! Value encodings (istiod's): principals `spiffe://` + value (`*` ⇒ regex `.+`, `x*` ⇒ prefix,
//! `*x` ⇒ regex `spiffe://.*x`); namespaces regex `.*/ns/NS/.*`; service accounts regex
//! `spiffe://.+/ns/NS/(.+/|)sa/SA(/.+)?`; hosts `:authority` matchers,
//! case-insensitive; methods `:method`; paths `url_path` (`*` ⇒ regex `.+`); ports
//! `destination_port`; `request.headers[h]` a regex over the comma-joined values; requestPrincipals
//! and `request.auth.*` the `istio_authn` metadata (claims through `list_match.one_of`).
//!
//! A RequestAuthentication selecting the workload (same rules) adds a `jwt_authn` filter in
//! front (see [`super::jwt`]).
//!
//! Workloads are the registry's endpoints (ServiceEntry inline endpoints and the WorkloadEntries
//! their selectors pick) and WorkloadEntries with `ports`; a policy applies to a workload in its
//! namespace (or any namespace, from [`ROOT_NAMESPACE`]) whose labels its selector matches. A
//! workload with at least one policy gets, per port, a Listener named
//! `xds.istio.io/grpc/lds/inbound/IP:PORT` (istiod's template), also served as
//! `grpc/server?xds.resource.listening_address=IP:PORT` (gRPC's default template, A36).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, Address, CidrRange, SocketAddress,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, Listener};
use envoy_types::pb::envoy::config::rbac::v3::{
    permission::{self, Rule},
    principal::{self, Authenticated, Identifier},
    rbac::Action,
    Permission, Policy, Principal, Rbac as RbacRules,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action as RouteAction, route_match::PathSpecifier,
    HeaderMatcher, NonForwardingAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter::ConfigType, HttpConnectionManager,
    HttpFilter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher,
    metadata_matcher::{path_segment::Segment, PathSegment},
    path_matcher,
    string_matcher::MatchPattern,
    value_matcher, ListMatcher, MetadataMatcher, PathMatcher, RegexMatcher, StringMatcher,
    ValueMatcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::listener::ROUTER_FILTER;
use super::to_any;
use crate::registry::{labels_match, Registry};
use crate::source::model::{
    effective_mode, AuthorizationPolicy, AuthzAction, AuthzRule, ConditionKey, Labels, MeshConfig,
    Operation, Source, Values, ROOT_NAMESPACE,
};

/// Name of the DENY RBAC filter (as istiod's grpcgen names it).
pub const DENY_FILTER: &str = "envoy.filters.http.rbac.DENY";
/// Name of the ALLOW RBAC filter.
pub const ALLOW_FILTER: &str = "envoy.filters.http.rbac";
/// istiod's server listener name prefix (`xds.istio.io/grpc/lds/inbound/%s`).
pub const INBOUND_PREFIX: &str = "xds.istio.io/grpc/lds/inbound/";
/// gRPC's default server listener template prefix (A36).
pub const GRPC_SERVER_PREFIX: &str = "grpc/server?xds.resource.listening_address=";

/// Istio's policy name for rule `i`.
pub fn policy_name(namespace: &str, name: &str, i: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{i}]")
}

/// The RBAC rules for `action` from `policies` (in order), or `None` when none has that action.
pub fn rbac_rules(policies: &[&AuthorizationPolicy], action: AuthzAction) -> Option<RbacRules> {
    let mut out = RbacRules {
        action: match action {
            AuthzAction::Allow => Action::Allow as i32,
            AuthzAction::Deny => Action::Deny as i32,
        },
        ..Default::default()
    };
    let mut any = false;
    for p in policies.iter().filter(|p| p.action == action) {
        any = true;
        for (i, r) in p.rules.iter().enumerate() {
            out.policies.insert(
                policy_name(&p.meta.namespace, &p.meta.name, i),
                rule_policy(r),
            );
        }
    }
    any.then_some(out)
}

/// The server listener filters: DENY (if any DENY policy), ALLOW (if any ALLOW policy), router.
pub fn http_filters(policies: &[&AuthorizationPolicy]) -> Vec<HttpFilter> {
    let mut out = Vec::new();
    for (name, action) in [
        (DENY_FILTER, AuthzAction::Deny),
        (ALLOW_FILTER, AuthzAction::Allow),
    ] {
        if let Some(rules) = rbac_rules(policies, action) {
            let cfg = RbacFilter {
                rules: Some(rules),
                ..Default::default()
            };
            out.push(HttpFilter {
                name: name.to_string(),
                config_type: Some(ConfigType::TypedConfig(to_any(&cfg))),
                ..Default::default()
            });
        }
    }
    out.push(HttpFilter {
        name: ROUTER_FILTER.to_string(),
        config_type: Some(ConfigType::TypedConfig(to_any(&Router::default()))),
        ..Default::default()
    });
    out
}

/// A workload: where it listens and what selects it.
struct Workload {
    namespace: String,
    labels: Labels,
}

/// Every inbound listener (canonical name) and its gRPC-template alias: one per workload
/// address and port, as istiod serves one to any proxyless server that asks (an xDS-enabled
/// server does not serve until its listener arrives, gRFC A36). A workload no policy selects
/// gets a listener with the router alone: everything allowed, as Istio does without policies.
pub(crate) fn server_listeners(
    config: &MeshConfig,
    registry: &Registry,
) -> Vec<(Listener, String)> {
    // (ip, port) → workload; the first registration wins.
    let mut workloads: BTreeMap<(String, u32), Workload> = BTreeMap::new();
    for svc in registry.services() {
        for ep in &svc.endpoints {
            for port in &svc.ports {
                workloads
                    .entry((ep.address.clone(), ep.port_for(port)))
                    .or_insert_with(|| Workload {
                        namespace: svc.namespace.clone(),
                        labels: ep.labels.clone(),
                    });
            }
        }
    }
    for we in &config.workload_entries {
        for port in we.ports.values() {
            workloads
                .entry((we.address.clone(), *port))
                .or_insert_with(|| Workload {
                    namespace: we.meta.namespace.clone(),
                    labels: we.labels.clone(),
                });
        }
    }
    let mut out = Vec::new();
    for ((ip, port), w) in workloads {
        let selected: Vec<&AuthorizationPolicy> = config
            .authorization_policies
            .iter()
            .filter(|p| {
                (p.meta.namespace == w.namespace || p.meta.namespace == ROOT_NAMESPACE)
                    && p.selector
                        .as_ref()
                        .is_none_or(|sel| labels_match(&w.labels, sel))
            })
            .collect();
        // RequestAuthentication: its jwt_authn filter runs before the RBAC filters.
        let jwt_rules: Vec<&crate::source::model::JwtRule> = config
            .request_authentications
            .iter()
            .filter(|r| {
                (r.meta.namespace == w.namespace || r.meta.namespace == ROOT_NAMESPACE)
                    && r.selector
                        .as_ref()
                        .is_none_or(|sel| labels_match(&w.labels, sel))
            })
            .flat_map(|r| &r.jwt_rules)
            .collect();
        let mut filters: Vec<HttpFilter> = super::jwt::jwt_filter(&jwt_rules).into_iter().collect();
        filters.extend(http_filters(&selected));
        let hostport = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        let mode = effective_mode(&config.peer_authentications, &w.namespace, &w.labels, port);
        let listener = super::peer_authn::inbound_listener(
            format!("{INBOUND_PREFIX}{hostport}"),
            &ip,
            port,
            filters,
            mode,
        );
        out.push((listener, format!("{GRPC_SERVER_PREFIX}{hostport}")));
    }
    out
}

/// An A36 server listener: the address, one plaintext filter chain holding the HCM with an
/// inline route configuration whose single route uses `non_forwarding_action`.
pub fn server_listener(name: String, ip: &str, port: u32, filters: Vec<HttpFilter>) -> Listener {
    super::peer_authn::inbound_listener(name, ip, port, filters, None)
}

/// The inbound HttpConnectionManager network filter of listener `name`: an inline route
/// configuration whose single route uses `non_forwarding_action`, then `filters`.
pub(crate) fn inbound_hcm(name: &str, filters: Vec<HttpFilter>) -> Filter {
    let route_config = RouteConfiguration {
        name: format!("{name}-routes"),
        virtual_hosts: vec![VirtualHost {
            name: "inbound|http".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(RouteAction::NonForwardingAction(NonForwardingAction {})),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_owned(),
        route_specifier: Some(RouteSpecifier::RouteConfig(route_config)),
        http_filters: filters,
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(&hcm))),
    }
}

/// The listener address.
pub(crate) fn socket_address(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn rule_policy(r: &AuthzRule) -> Policy {
    let perm_conds: Vec<Permission> = r.when.iter().filter_map(perm_condition).collect();
    let prin_conds: Vec<Principal> = r.when.iter().filter_map(prin_condition).collect();
    let default_op = [Operation::default()];
    let ops: &[Operation] = if r.to.is_empty() { &default_op } else { &r.to };
    let default_src = [Source::default()];
    let srcs: &[Source] = if r.from.is_empty() {
        &default_src
    } else {
        &r.from
    };
    Policy {
        permissions: ops
            .iter()
            .map(|op| {
                let mut rules = operation(op);
                rules.extend(perm_conds.iter().cloned());
                and_perm(rules)
            })
            .collect(),
        principals: srcs
            .iter()
            .map(|s| {
                let mut ids = source(s);
                ids.extend(prin_conds.iter().cloned());
                and_prin(ids)
            })
            .collect(),
        ..Default::default()
    }
}

fn and_perm(rules: Vec<Permission>) -> Permission {
    let rules = if rules.is_empty() {
        vec![Permission {
            rule: Some(Rule::Any(true)),
        }]
    } else {
        rules
    };
    Permission {
        rule: Some(Rule::AndRules(permission::Set { rules })),
    }
}

fn and_prin(ids: Vec<Principal>) -> Principal {
    let ids = if ids.is_empty() {
        vec![Principal {
            identifier: Some(Identifier::Any(true)),
        }]
    } else {
        ids
    };
    Principal {
        identifier: Some(Identifier::AndIds(principal::Set { ids })),
    }
}

/// `values` as `or_rules`, `not_values` as `not_rule { or_rules }`.
fn perm_field(v: &Values, each: impl Fn(&str) -> Permission, out: &mut Vec<Permission>) {
    let or = |vals: &[String]| Permission {
        rule: Some(Rule::OrRules(permission::Set {
            rules: vals.iter().map(|s| each(s)).collect(),
        })),
    };
    if !v.values.is_empty() {
        out.push(or(&v.values));
    }
    if !v.not_values.is_empty() {
        out.push(Permission {
            rule: Some(Rule::NotRule(Box::new(or(&v.not_values)))),
        });
    }
}

fn prin_field(v: &Values, each: impl Fn(&str) -> Principal, out: &mut Vec<Principal>) {
    let or = |vals: &[String]| Principal {
        identifier: Some(Identifier::OrIds(principal::Set {
            ids: vals.iter().map(|s| each(s)).collect(),
        })),
    };
    if !v.values.is_empty() {
        out.push(or(&v.values));
    }
    if !v.not_values.is_empty() {
        out.push(Principal {
            identifier: Some(Identifier::NotId(Box::new(or(&v.not_values)))),
        });
    }
}

fn operation(op: &Operation) -> Vec<Permission> {
    let mut out = Vec::new();
    perm_field(&op.hosts, |h| header(":authority", h, true), &mut out);
    perm_field(&op.methods, |m| header(":method", m, false), &mut out);
    perm_field(
        &op.paths,
        |p| Permission {
            rule: Some(Rule::UrlPath(PathMatcher {
                rule: Some(path_matcher::Rule::Path(wildcard(p, "", false))),
            })),
        },
        &mut out,
    );
    perm_field(&op.ports, dest_port, &mut out);
    out
}

fn source(s: &Source) -> Vec<Principal> {
    let mut out = Vec::new();
    prin_field(&s.principals, principal, &mut out);
    prin_field(
        &s.request_principals,
        |v| request_auth("request.auth.principal", v),
        &mut out,
    );
    prin_field(&s.namespaces, namespace, &mut out);
    prin_field(&s.service_accounts, service_account, &mut out);
    prin_field(&s.ip_blocks, |v| ip(v, false), &mut out);
    prin_field(&s.remote_ip_blocks, |v| ip(v, true), &mut out);
    out
}

fn perm_condition(c: &crate::source::model::Condition) -> Option<Permission> {
    let mut out = Vec::new();
    match &c.key {
        ConditionKey::DestinationIp => perm_field(
            &c.values,
            |v| Permission {
                rule: Some(Rule::DestinationIp(cidr(v))),
            },
            &mut out,
        ),
        ConditionKey::DestinationPort => perm_field(&c.values, dest_port, &mut out),
        ConditionKey::ConnectionSni => perm_field(
            &c.values,
            |v| Permission {
                rule: Some(Rule::RequestedServerName(wildcard(v, "", false))),
            },
            &mut out,
        ),
        _ => return None,
    }
    Some(and_perm(out))
}

fn prin_condition(c: &crate::source::model::Condition) -> Option<Principal> {
    let mut out = Vec::new();
    match &c.key {
        ConditionKey::RequestHeader(name) => {
            prin_field(&c.values, |v| header_list(name, v), &mut out)
        }
        ConditionKey::SourceIp => prin_field(&c.values, |v| ip(v, false), &mut out),
        ConditionKey::RemoteIp => prin_field(&c.values, |v| ip(v, true), &mut out),
        ConditionKey::SourceNamespace => prin_field(&c.values, namespace, &mut out),
        ConditionKey::SourcePrincipal => prin_field(&c.values, principal, &mut out),
        ConditionKey::SourceServiceAccount => prin_field(&c.values, service_account, &mut out),
        ConditionKey::RequestAuth(key) => prin_field(&c.values, |v| request_auth(key, v), &mut out),
        ConditionKey::RequestAuthClaim(path) => prin_field(&c.values, |v| claim(path, v), &mut out),
        _ => return None,
    }
    Some(and_prin(out))
}

fn regex(re: String) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
            regex: re,
            ..Default::default()
        })),
        ignore_case: false,
    }
}

/// Istio's `*` handling: `*` ⇒ non-empty, `x*` ⇒ prefix, `*x` ⇒ suffix, else exact; values get
/// `prefix` prepended (e.g. `spiffe://`).
fn wildcard(v: &str, prefix: &str, ignore_case: bool) -> StringMatcher {
    let pattern = if v == "*" {
        return regex(".+".into());
    } else if let Some(p) = v.strip_suffix('*') {
        MatchPattern::Prefix(format!("{prefix}{p}"))
    } else if let Some(s) = v.strip_prefix('*') {
        if prefix.is_empty() {
            MatchPattern::Suffix(s.to_string())
        } else {
            return regex(format!("{}.*{}", regex_escape(prefix), regex_escape(s)));
        }
    } else {
        MatchPattern::Exact(format!("{prefix}{v}"))
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

fn principal(v: &str) -> Principal {
    Principal {
        identifier: Some(Identifier::Authenticated(Authenticated {
            principal_name: Some(wildcard(v, "spiffe://", false)),
        })),
    }
}

fn namespace(v: &str) -> Principal {
    let ns = v
        .split('*')
        .map(regex_escape)
        .collect::<Vec<_>>()
        .join(".*");
    Principal {
        identifier: Some(Identifier::Authenticated(Authenticated {
            principal_name: Some(regex(format!(".*/ns/{ns}/.*"))),
        })),
    }
}

/// `namespace/name` (normalized at parse time) as istiod's `serviceAccountRegex`: any trust
/// domain, `/ns/<ns>/`, optional further segments, `sa/<name>`, then the end or more segments.
fn service_account(v: &str) -> Principal {
    let (ns, sa) = v.split_once('/').unwrap_or(("", v));
    Principal {
        identifier: Some(Identifier::Authenticated(Authenticated {
            principal_name: Some(regex(format!(
                "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                regex_escape(ns),
                regex_escape(sa)
            ))),
        })),
    }
}

fn cidr(v: &str) -> CidrRange {
    let (ip, len) = crate::source::model::parse_cidr(v)
        .unwrap_or((std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 32));
    CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

fn ip(v: &str, remote: bool) -> Principal {
    Principal {
        identifier: Some(if remote {
            Identifier::RemoteIp(cidr(v))
        } else {
            Identifier::DirectRemoteIp(cidr(v))
        }),
    }
}

fn dest_port(v: &str) -> Permission {
    Permission {
        rule: Some(Rule::DestinationPort(v.parse().unwrap_or(0))),
    }
}

fn header(name: &str, v: &str, ignore_case: bool) -> Permission {
    let spec = if v == "*" {
        HeaderMatchSpecifier::PresentMatch(true)
    } else {
        HeaderMatchSpecifier::StringMatch(wildcard(v, "", ignore_case))
    };
    Permission {
        rule: Some(Rule::Header(HeaderMatcher {
            name: name.into(),
            header_match_specifier: Some(spec),
            ..Default::default()
        })),
    }
}

/// istiod's header condition: the value may be one element of a comma-joined list.
fn header_list(name: &str, v: &str) -> Principal {
    let spec = if v == "*" {
        HeaderMatchSpecifier::PresentMatch(true)
    } else {
        let one = v
            .split('*')
            .map(regex_escape)
            .collect::<Vec<_>>()
            .join(".*");
        HeaderMatchSpecifier::StringMatch(regex(format!("^{one}$|^{one},.*|.*,{one},.*|.*,{one}$")))
    };
    Principal {
        identifier: Some(Identifier::Header(HeaderMatcher {
            name: name.into(),
            header_match_specifier: Some(spec),
            ..Default::default()
        })),
    }
}

/// `Principal.metadata` is deprecated in favour of `sourced_metadata`; istiod still emits it and
/// it is what gRPC (A41) and mesh-core read.
#[allow(deprecated)]
fn metadata(path: Vec<String>, value: ValueMatcher) -> Principal {
    Principal {
        identifier: Some(Identifier::Metadata(MetadataMatcher {
            filter: "istio_authn".into(),
            path: path
                .into_iter()
                .map(|k| PathSegment {
                    segment: Some(Segment::Key(k)),
                })
                .collect(),
            value: Some(value),
            invert: false,
        })),
    }
}

fn string_value(v: &str) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(wildcard(
            v, "", false,
        ))),
    }
}

fn request_auth(key: &str, v: &str) -> Principal {
    metadata(vec![key.to_string()], string_value(v))
}

fn claim(path: &[String], v: &str) -> Principal {
    let mut keys = vec!["request.auth.claims".to_string()];
    keys.extend(path.iter().cloned());
    metadata(
        keys,
        ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
                ListMatcher {
                    match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(string_value(
                        v,
                    )))),
                },
            ))),
        },
    )
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
