//! Route configurations: istiod `grpcgen/rds.go` + `core/route/route.go`
//! (`translateRoute`, `translateRouteMatch`, `SortVHostRoutes`).
//!
//! Per gRFC A28 the first matching route wins, so order is preserved: VirtualServices by
//! `namespace/name`, their `http[]` rules in order, one route per `match[]` entry; catch-all
//! routes are moved to the end (stable). A service no VirtualService routes gets istiod's
//! `default` route (`prefix: /` to the service's cluster); with a VirtualService, requests that
//! none of its rules match get no route (Envoy answers 404 "NR"; the mesh a `no_route` error),
//! exactly as with istiod. Note for gRPC clients (XDS-SEMANTICS.md 1a rows 6, 8): `queryParams` routes are ignored
//! by gRPC, and header matchers only see application metadata.

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::route_action::HostRewriteSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
    weighted_cluster::ClusterWeight, HeaderMatcher, QueryParameterMatcher, Route, RouteAction,
    RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    regex_matcher::{EngineType, GoogleRe2},
    string_matcher::MatchPattern,
    RegexMatcher, StringMatcher,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::cluster::cluster_name;
use super::listener::listener_name;
use crate::registry::{short_names, Registry, Service};
use crate::source::model::{
    HeaderOperations, HttpMatch, HttpRoute, MeshConfig, RouteDestination, ServicePort, StringMatch,
    VirtualService,
};

/// The VirtualServices with a host resolving to `host`, sorted by `namespace/name`.
pub(crate) fn virtual_services_for<'c>(
    config: &'c MeshConfig,
    registry: &Registry,
    host: &str,
) -> Vec<&'c VirtualService> {
    let mut out: Vec<&VirtualService> = config
        .virtual_services
        .iter()
        .filter(|vs| {
            vs.hosts
                .iter()
                .any(|h| registry.resolve(h, &vs.meta.namespace) == host)
        })
        .collect();
    out.sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    out
}

/// Virtual host domains: the host and its short names, each bare and with `:port`.
pub(crate) fn domains(host: &str, port: u32) -> Vec<String> {
    let mut names = vec![host.to_string()];
    names.extend(short_names(host));
    names
        .into_iter()
        .flat_map(|n| {
            let with_port = listener_name(&n, port);
            [n, with_port]
        })
        .collect()
}

/// The route configuration `host:port` for one service port.
pub(crate) fn route_configuration(
    config: &MeshConfig,
    registry: &Registry,
    svc: &Service,
    port: &ServicePort,
    vss: &[&VirtualService],
) -> RouteConfiguration {
    let name = listener_name(&svc.host, port.number);
    let mut routes: Vec<(Route, bool)> = Vec::new();
    for vs in vss {
        for rule in &vs.http {
            let action = route_action(config, registry, svc, port, &vs.meta.namespace, rule);
            if rule.matches.is_empty() {
                routes.push((route(rule, &HttpMatch::default(), action.clone()), true));
            }
            for m in &rule.matches {
                routes.push((route(rule, m, action.clone()), m.is_catch_all()));
            }
        }
    }
    // istio SortVHostRoutes: catch-all routes last, relative order kept.
    let (mut ordered, catch_all): (Vec<_>, Vec<_>) = routes.into_iter().partition(|(_, c)| !*c);
    ordered.extend(catch_all);
    let mut routes: Vec<Route> = ordered.into_iter().map(|(r, _)| r).collect();
    if vss.is_empty() {
        let mut r = default_route(&cluster_name(port.number, "", &svc.host));
        let dr = super::cluster::destination_rule_for(config, registry, &svc.host);
        if let Some(Action::Route(a)) = &mut r.action {
            a.hash_policy =
                super::load_balancer::hash_policy(&super::load_balancer::effective(dr, "").0);
            super::retry::without_previous_hosts_if_hashed(a);
        }
        routes.push(r);
    }
    RouteConfiguration {
        name: name.clone(),
        virtual_hosts: vec![VirtualHost {
            name,
            domains: domains(&svc.host, port.number),
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `prefix: "/"` → `cluster`, named `default` like istiod's.
pub(crate) fn default_route(cluster: &str) -> Route {
    let mut action = RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    // istiod's default retry policy, and its disabled route timeout rather than Envoy's
    // implicit 15 s.
    super::retry::apply(&mut action, None, None);
    Route {
        name: "default".to_string(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(Action::Route(action)),
        ..Default::default()
    }
}

/// `set` → OVERWRITE_IF_EXISTS_OR_ADD, `add` → APPEND_IF_EXISTS_OR_ADD (istiod
/// `translateHeadersOperations`).
fn headers_to_add(ops: &HeaderOperations) -> Vec<HeaderValueOption> {
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    ops.set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

/// The rule's `rewrite` (and `headers.request.set[":authority"]`) on one match's action.
fn apply_rewrite(rule: &HttpRoute, action: &mut RouteAction) {
    let rw = &rule.rewrite;
    if let Some(uri) = &rw.uri {
        // A catch-all or `Present` match is a `/` prefix (see `route_match`); `prefix_rewrite`
        // then replaces that `/`, as with istiod. Regex matches are refused at parse time.
        action.prefix_rewrite = uri.clone();
    }
    if let Some((pattern, substitution)) = &rw.uri_regex {
        action.regex_rewrite = Some(RegexMatchAndSubstitute {
            pattern: Some(regex_matcher(pattern)),
            substitution: substitution.clone(),
        });
    }
    if let Some(host) = rw
        .authority
        .as_ref()
        .or(rule.headers.request.authority.as_ref())
    {
        action.host_rewrite_specifier =
            Some(HostRewriteSpecifier::HostRewriteLiteral(host.clone()));
    }
}

fn route(rule: &HttpRoute, m: &HttpMatch, mut action: RouteAction) -> Route {
    apply_rewrite(rule, &mut action);
    let name = match (&rule.name, &m.name) {
        (Some(r), Some(n)) => format!("{r}.{n}"),
        (Some(r), None) => r.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    Route {
        name,
        r#match: Some(route_match(m)),
        action: Some(Action::Route(action)),
        typed_per_filter_config: rule
            .fault
            .iter()
            .map(super::fault::per_filter_config)
            .collect(),
        request_headers_to_add: headers_to_add(&rule.headers.request),
        request_headers_to_remove: rule.headers.request.remove.clone(),
        response_headers_to_add: headers_to_add(&rule.headers.response),
        response_headers_to_remove: rule.headers.response.remove.clone(),
        ..Default::default()
    }
}

#[allow(deprecated)] // GoogleRe2 is deprecated in Envoy but still what istiod emits.
fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        engine_type: Some(EngineType::GoogleRe2(GoogleRe2::default())),
    }
}

fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = match m {
        StringMatch::Exact(s) => MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(r) => MatchPattern::SafeRegex(regex_matcher(r)),
        StringMatch::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn route_match(m: &HttpMatch) -> RouteMatch {
    let (path, is_regex) = match &m.uri {
        None | Some(StringMatch::Present) => (PathSpecifier::Prefix("/".to_string()), false),
        Some(StringMatch::Exact(p)) => (PathSpecifier::Path(p.clone()), false),
        Some(StringMatch::Prefix(p)) => (PathSpecifier::Prefix(p.clone()), false),
        Some(StringMatch::Regex(r)) => (PathSpecifier::SafeRegex(regex_matcher(r)), true),
    };
    let headers = m
        .headers
        .iter()
        .map(|(name, sm)| HeaderMatcher {
            name: name.clone(),
            header_match_specifier: Some(match string_matcher(sm) {
                Some(s) => HeaderMatchSpecifier::StringMatch(s),
                None => HeaderMatchSpecifier::PresentMatch(true),
            }),
            ..Default::default()
        })
        .collect();
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, sm)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(sm) {
                Some(s) => QueryParameterMatchSpecifier::StringMatch(s),
                None => QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        case_sensitive: (m.ignore_uri_case && !is_regex).then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// The cluster a destination names: `outbound|port|subset|host`, with the port taken from the
/// destination, else the route's own port when the destination is this service, else the
/// destination service's first port.
fn destination_cluster(
    registry: &Registry,
    svc: &Service,
    port: &ServicePort,
    namespace: &str,
    dest: &RouteDestination,
) -> String {
    let host = registry.resolve(&dest.host, namespace);
    let number = dest.port.unwrap_or_else(|| {
        if host == svc.host {
            port.number
        } else {
            registry
                .service(&host)
                .and_then(|s| s.ports.first())
                .map_or(port.number, |p| p.number)
        }
    });
    cluster_name(number, dest.subset.as_deref().unwrap_or(""), &host)
}

fn route_action(
    config: &MeshConfig,
    registry: &Registry,
    svc: &Service,
    port: &ServicePort,
    namespace: &str,
    rule: &HttpRoute,
) -> RouteAction {
    // istiod: the hash policy comes from the destination's DestinationRule (subset settings
    // first); with several destinations only when they all agree.
    let hashes: Vec<_> = rule
        .route
        .iter()
        .map(|d| {
            let host = registry.resolve(&d.host, namespace);
            let dr = super::cluster::destination_rule_for(config, registry, &host);
            let (lb, _) = super::load_balancer::effective(dr, d.subset.as_deref().unwrap_or(""));
            super::load_balancer::hash_policy(&lb)
        })
        .collect();
    let hash_policy = match hashes.split_first() {
        Some((first, rest)) if rest.iter().all(|h| h == first) => first.clone(),
        _ => Vec::new(),
    };
    let mut weighted: Vec<(String, u32)> = Vec::new();
    if let [only] = rule.route.as_slice() {
        weighted.push((
            destination_cluster(registry, svc, port, namespace, only),
            100,
        ));
    } else {
        // Zero-weight destinations get no traffic; istiod leaves them out.
        for d in &rule.route {
            let w = d.weight.unwrap_or(0);
            if w > 0 {
                weighted.push((destination_cluster(registry, svc, port, namespace, d), w));
            }
        }
    }
    let specifier = if let [(name, _)] = weighted.as_slice() {
        ClusterSpecifier::Cluster(name.clone())
    } else {
        ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: weighted
                .into_iter()
                .map(|(name, w)| ClusterWeight {
                    name,
                    weight: Some(UInt32Value { value: w }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    };
    let mut action = RouteAction {
        cluster_specifier: Some(specifier),
        hash_policy,
        ..Default::default()
    };
    super::retry::apply(&mut action, rule.retries.as_ref(), rule.timeout);
    action
}
