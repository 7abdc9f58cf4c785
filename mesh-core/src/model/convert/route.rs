//! RouteConfiguration → VirtualHost → Route (gRFC A28; Envoy `route_components.proto`;
//! XDS-SEMANTICS.md rows 3–10).
//!
//! - Domains: non-empty, at most one `*`, only as the first or last character (`a*b` is invalid,
//!   as grpc-go treats it); lowercased.
//! - Path: `prefix` / `path` / `safe_regex` (RE2 full match); a missing specifier is invalid;
//!   `path_separated_prefix`, `connect_matcher` and `path_match_policy` are unsupported.
//!   `case_sensitive` defaults to true; when false, prefix and path are lowercased.
//! - `runtime_fraction.default_value` is scaled to parts per million (capped at 1 000 000).
//! - Actions: `cluster` and `weighted_clusters` forward (zero weights dropped, sum in
//!   `1..=u32::MAX`); every other specifier or action keeps the route with
//!   [`RouteAction::Unsupported`], so matching requests fail with a typed error (row 10).
//! - Matchers the model cannot express (cookies, dynamic metadata, filter state) reject the
//!   resource rather than silently widening the route. `grpc` and `tls_context` are ignored, as in
//!   gRPC.
//! - Timeouts and retry policies: see [`super::policy`]; hash policies: see
//!   [`super::hash_policy`]; fault-filter overrides (`typed_per_filter_config` of the virtual
//!   host, route and weighted clusters): see [`super::fault`]. Policies not in the model yet
//!   (hedging, other filters' per-route config…) are ignored here.

use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route as RouteProto,
    RouteAction as RouteActionProto, RouteConfiguration as RouteConfigProto,
    RouteMatch as RouteMatchProto, VirtualHost as VirtualHostProto, WeightedCluster,
};
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;

use super::{fault, hash_policy, matcher, policy, rewrite, Ctx, Path};
use crate::model::{
    ClusterWeight, ModelError, PathMatch, Route, RouteAction, RouteConfiguration, RouteMatch,
    RoutePolicy, VirtualHost,
};

/// A RouteConfiguration, from RDS or inline in a listener (`path` is where it sits).
pub(super) fn route_configuration(
    cx: &Ctx<'_>,
    path: &Path,
    proto: RouteConfigProto,
) -> Result<RouteConfiguration, ModelError> {
    if proto.vhds.is_some() {
        return Err(cx.unsupported(&path.field("vhds"), "vhds not supported"));
    }
    let virtual_hosts = proto
        .virtual_hosts
        .iter()
        .enumerate()
        .map(|(i, vh)| virtual_host(cx, &path.index("virtual_hosts", i), vh, (path, &proto)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteConfiguration {
        name: proto.name.into(),
        virtual_hosts: virtual_hosts.into(),
    })
}

fn virtual_host(
    cx: &Ctx<'_>,
    path: &Path,
    vh: &VirtualHostProto,
    rc: (&Path, &RouteConfigProto),
) -> Result<VirtualHost, ModelError> {
    if vh.domains.is_empty() {
        return Err(cx.invalid(&path.field("domains"), "no domains"));
    }
    let domains = vh
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| domain(cx, &path.index("domains", i), d))
        .collect::<Result<Vec<_>, _>>()?;
    if vh.matcher.is_some() {
        return Err(cx.unsupported(&path.field("matcher"), "matcher tree not supported"));
    }
    let retry_policy = match &vh.retry_policy {
        Some(rp) => Some(Arc::new(policy::retry_policy(
            cx,
            &path.field("retry_policy"),
            rp,
        )?)),
        None => None,
    };
    let vhost_faults = fault::overrides(cx, path, &vh.typed_per_filter_config)?;
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            route(
                cx,
                &path.index("routes", i),
                (&vh.name, i),
                (retry_policy.as_ref(), &vhost_faults),
                ((path, vh), rc),
                r,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VirtualHost {
        name: vh.name.as_str().into(),
        domains: domains.into(),
        routes: routes.into(),
        retry_policy,
    })
}

/// Validates one domain: exact, `*`, `*suffix` or `prefix*` (the wildcard never in the middle).
fn domain(cx: &Ctx<'_>, path: &Path, d: &str) -> Result<Arc<str>, ModelError> {
    if d.is_empty() {
        return Err(cx.invalid(path, "empty domain"));
    }
    let stars = d.matches('*').count();
    let ok = match stars {
        0 => true,
        1 => d.starts_with('*') || d.ends_with('*'),
        _ => false,
    };
    if !ok {
        return Err(cx.invalid(
            path,
            format!("domain `{d}`: wildcard only allowed once, as first or last character"),
        ));
    }
    Ok(d.to_lowercase().into())
}

fn route(
    cx: &Ctx<'_>,
    path: &Path,
    (vhost, index): (&str, usize),
    (vhost_retry, vhost_faults): (
        Option<&Arc<crate::model::RetryPolicy>>,
        &[crate::model::FaultOverride],
    ),
    ((vh_path, vh), (rc_path, rc)): ((&Path, &VirtualHostProto), (&Path, &RouteConfigProto)),
    r: &RouteProto,
) -> Result<Route, ModelError> {
    let name: Arc<str> = if r.name.is_empty() {
        format!("{vhost}/{index}").into()
    } else {
        r.name.as_str().into()
    };
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| cx.invalid(&path.field("match"), "missing"))?;
    let matcher = route_match(cx, &path.field("match"), m)?;
    let mut policy = RoutePolicy::default();
    let mut hashes = Vec::new();
    let action = match &r.action {
        Some(Action::Route(ra)) => {
            policy = policy::route_policy(cx, &path.field("route"), ra, vhost_retry)?;
            hashes = hash_policy::hash_policies(cx, &path.field("route"), &ra.hash_policy)?;
            policy.faults = fault::route_overrides(
                cx,
                path,
                vhost_faults,
                &r.typed_per_filter_config,
                Some(ra),
            )?;
            route_action(cx, &path.field("route"), ra)?
        }
        Some(Action::Redirect(_)) => RouteAction::Unsupported("redirect".into()),
        Some(Action::DirectResponse(_)) => RouteAction::Unsupported("direct_response".into()),
        Some(Action::FilterAction(_)) => RouteAction::Unsupported("filter_action".into()),
        Some(Action::NonForwardingAction(_)) => {
            RouteAction::Unsupported("non_forwarding_action".into())
        }
        None => return Err(cx.invalid(path, "no action")),
    };
    // Header mutations of every level, and the RouteAction's rewrites.
    let levels = [
        rewrite::Level {
            path: path.clone(),
            request_add: &r.request_headers_to_add,
            request_remove: &r.request_headers_to_remove,
            response_add: &r.response_headers_to_add,
            response_remove: &r.response_headers_to_remove,
        },
        rewrite::Level {
            path: vh_path.clone(),
            request_add: &vh.request_headers_to_add,
            request_remove: &vh.request_headers_to_remove,
            response_add: &vh.response_headers_to_add,
            response_remove: &vh.response_headers_to_remove,
        },
        rewrite::Level {
            path: rc_path.clone(),
            request_add: &rc.request_headers_to_add,
            request_remove: &rc.request_headers_to_remove,
            response_add: &rc.response_headers_to_add,
            response_remove: &rc.response_headers_to_remove,
        },
    ];
    let ra = match &r.action {
        Some(Action::Route(ra)) => Some((&path.field("route"), ra, m)),
        _ => None,
    };
    let route_path = path.field("route");
    policy.rewrite = rewrite::rewrite(
        cx,
        &levels,
        rc.most_specific_header_mutations_wins,
        ra.map(|(_, ra, m)| (&route_path, ra, m)),
    )?;
    Ok(Route {
        name,
        matcher,
        action,
        policy,
        hash_policy: hashes.into(),
    })
}

fn route_match(cx: &Ctx<'_>, path: &Path, m: &RouteMatchProto) -> Result<RouteMatch, ModelError> {
    let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
    let fold = |s: &str| -> Arc<str> {
        if case_sensitive {
            s.into()
        } else {
            s.to_lowercase().into()
        }
    };
    let path_match = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(fold(p)),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(fold(p)),
        Some(PathSpecifier::SafeRegex(re)) => {
            PathMatch::Regex(matcher::regex(cx, &path.field("safe_regex"), re)?)
        }
        Some(PathSpecifier::PathSeparatedPrefix(_)) => {
            return Err(cx.unsupported(
                &path.field("path_separated_prefix"),
                "path_separated_prefix not supported",
            ))
        }
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return Err(cx.unsupported(
                &path.field("connect_matcher"),
                "connect_matcher not supported",
            ))
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return Err(cx.unsupported(
                &path.field("path_match_policy"),
                "path_match_policy not supported",
            ))
        }
        None => return Err(cx.invalid(path, "no path specifier")),
    };
    for (field, present) in [
        ("cookies", !m.cookies.is_empty()),
        ("dynamic_metadata", !m.dynamic_metadata.is_empty()),
        ("filter_state", !m.filter_state.is_empty()),
    ] {
        if present {
            return Err(cx.unsupported(
                &path.field(field),
                format!("{field} matchers not supported"),
            ));
        }
    }
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| matcher::header_matcher(cx, &path.index("headers", i), h))
        .collect::<Result<Vec<_>, _>>()?;
    let query_params = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| matcher::query_matcher(cx, &path.index("query_parameters", i), q))
        .collect::<Result<Vec<_>, _>>()?;
    let fraction_per_million = match &m.runtime_fraction {
        None => None,
        Some(rf) => {
            let p = path.field("runtime_fraction").field("default_value");
            let d = rf
                .default_value
                .as_ref()
                .ok_or_else(|| cx.invalid(&p, "missing"))?;
            let scale: u64 = match DenominatorType::try_from(d.denominator) {
                Ok(DenominatorType::Hundred) => 10_000,
                Ok(DenominatorType::TenThousand) => 100,
                Ok(DenominatorType::Million) => 1,
                Err(_) => {
                    return Err(cx.invalid(
                        &p.field("denominator"),
                        format!("unknown denominator {}", d.denominator),
                    ))
                }
            };
            // ≤ 1 000 000, so the cast cannot truncate.
            Some((u64::from(d.numerator) * scale).min(1_000_000) as u32)
        }
    };
    Ok(RouteMatch {
        path: path_match,
        case_sensitive,
        headers: headers.into(),
        query_params: query_params.into(),
        fraction_per_million,
    })
}

fn route_action(
    cx: &Ctx<'_>,
    path: &Path,
    ra: &RouteActionProto,
) -> Result<RouteAction, ModelError> {
    Ok(match &ra.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => {
            if c.is_empty() {
                return Err(cx.invalid(&path.field("cluster"), "must not be empty"));
            }
            RouteAction::Cluster(c.as_str().into())
        }
        Some(ClusterSpecifier::WeightedClusters(wc)) => {
            weighted_clusters(cx, &path.field("weighted_clusters"), wc)?
        }
        Some(ClusterSpecifier::ClusterHeader(_)) => {
            RouteAction::Unsupported("cluster_header".into())
        }
        Some(ClusterSpecifier::ClusterSpecifierPlugin(_)) => {
            RouteAction::Unsupported("cluster_specifier_plugin".into())
        }
        Some(ClusterSpecifier::InlineClusterSpecifierPlugin(_)) => {
            RouteAction::Unsupported("inline_cluster_specifier_plugin".into())
        }
        None => return Err(cx.invalid(path, "no cluster specifier")),
    })
}

fn weighted_clusters(
    cx: &Ctx<'_>,
    path: &Path,
    wc: &WeightedCluster,
) -> Result<RouteAction, ModelError> {
    let mut out = Vec::with_capacity(wc.clusters.len());
    let mut sum: u64 = 0;
    for (i, c) in wc.clusters.iter().enumerate() {
        if !c.cluster_header.is_empty() && c.name.is_empty() {
            return Ok(RouteAction::Unsupported(
                "weighted_clusters.cluster_header".into(),
            ));
        }
        if c.name.is_empty() {
            return Err(cx.invalid(
                &path.index("clusters", i).field("name"),
                "must not be empty",
            ));
        }
        let w = c.weight.as_ref().map_or(0, |w| w.value);
        if w == 0 {
            continue;
        }
        sum += u64::from(w);
        out.push(ClusterWeight {
            name: c.name.as_str().into(),
            weight: w,
        });
    }
    if sum == 0 {
        return Err(cx.invalid(path, "weights sum to 0"));
    }
    if sum > u64::from(u32::MAX) {
        return Err(cx.invalid(path, format!("weights sum to {sum}, above 2^32-1")));
    }
    Ok(RouteAction::WeightedClusters(out.into()))
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
