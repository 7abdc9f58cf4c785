//! `envoy.extensions.filters.http.fault.v3.HTTPFault` → [`FaultPolicy`], for the listener's fault
//! filter and for `typed_per_filter_config` overrides on virtual hosts, routes and weighted
//! clusters (Envoy fault filter, `fault.proto`; gRFC A33, A39; XDS-SEMANTICS.md rows 14–15).
//!
//! Validation follows Envoy's proto rules where gRPC would otherwise misbehave:
//! - `delay` needs `fixed_delay` or `header_delay`; a negative `fixed_delay` is invalid; zero is
//!   accepted and delays nothing (gRPC; Envoy's PGV wants > 0).
//! - `abort` needs `http_status`, `grpc_status` or `header_abort`; `http_status` must be in
//!   `200..=599` (Envoy PGV; gRPC would ignore the abort). Any `grpc_status` is accepted (codes
//!   above 16 act as UNKNOWN, A33).
//! - `percentage`: a known denominator (HUNDRED, TEN_THOUSAND, MILLION) or invalid; unset means
//!   0 % (never), as in Envoy and grpc-go; a numerator above the denominator means always.
//! - A fault config given as a `TypedStruct` (JSON) is unsupported: NACKed, not guessed at.
//!
//! Ignored, as gRPC ignores them (A33 defers or excludes them) — the request path never reads
//! them: `response_rate_limit` (Envoy would throttle the response body), every `*_runtime` key
//! (no runtime), `disable_downstream_cluster_stats`, `filter_metadata`, `response_body`.
//! `headers`, `upstream_cluster` and `downstream_nodes` are kept: the HTTP transport applies
//! them as Envoy does, the gRPC transport ignores them as gRPC does.
//!
//! Overrides (A39): an entry is a fault override when its `Any` is an `HTTPFault`, or a
//! `envoy.config.route.v3.FilterConfig` wrapping one; a `FilterConfig` with `disabled: true`
//! disables whatever filter has that name on that route. Entries of other types are ignored
//! (they concern filters the mesh does not run; the listener already NACKs a required filter it
//! cannot run), and so is an entry whose name matches no listener filter (A39).

use std::{collections::HashMap, sync::Arc};

use envoy_types::pb::envoy::config::route::v3::{
    route_action::ClusterSpecifier, FilterConfig, RouteAction as RouteActionProto,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort::ErrorType, HttpFault,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::Any;

use super::{decode_any, identify, listener::FAULT, matcher, policy::duration, Ctx, Path};
use crate::model::{
    FaultAbort, FaultAbortKind, FaultDelay, FaultDelayKind, FaultOverride, FaultOverrides,
    FaultPercent, FaultPolicy, ModelError,
};

const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";

/// The listener's fault filter config (`any` identified as an `HTTPFault`).
pub(super) fn filter_config(
    cx: &Ctx<'_>,
    path: &Path,
    any: &Any,
) -> Result<FaultPolicy, ModelError> {
    if identify(cx, path, any)?.typed_struct.is_some() {
        return Err(cx.unsupported(path, "fault config as a TypedStruct is not supported"));
    }
    let proto: HttpFault = decode_any(cx, path, any)?;
    policy(cx, path, &proto)
}

/// Validates one `HTTPFault`.
pub(super) fn policy(
    cx: &Ctx<'_>,
    path: &Path,
    proto: &HttpFault,
) -> Result<FaultPolicy, ModelError> {
    let delay = match &proto.delay {
        None => None,
        Some(d) => {
            let p = path.field("delay");
            let kind = match &d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(fd)) => {
                    FaultDelayKind::Fixed(duration(cx, &p.field("fixed_delay"), fd)?)
                }
                Some(FaultDelaySecifier::HeaderDelay(_)) => FaultDelayKind::Header,
                None => return Err(cx.invalid(&p, "no fixed_delay or header_delay")),
            };
            Some(FaultDelay {
                kind,
                percentage: percent(cx, &p.field("percentage"), d.percentage.as_ref())?,
            })
        }
    };
    let abort = match &proto.abort {
        None => None,
        Some(a) => {
            let p = path.field("abort");
            let kind = match &a.error_type {
                Some(ErrorType::HttpStatus(s)) => match u16::try_from(*s) {
                    Ok(s) if (200..=599).contains(&s) => FaultAbortKind::Http(s),
                    _ => {
                        return Err(cx
                            .invalid(&p.field("http_status"), format!("{s} is outside 200..=599")))
                    }
                },
                Some(ErrorType::GrpcStatus(c)) => FaultAbortKind::Grpc(*c),
                Some(ErrorType::HeaderAbort(_)) => FaultAbortKind::Header,
                None => return Err(cx.invalid(&p, "no http_status, grpc_status or header_abort")),
            };
            Some(FaultAbort {
                kind,
                percentage: percent(cx, &p.field("percentage"), a.percentage.as_ref())?,
            })
        }
    };
    let headers = proto
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| matcher::header_matcher(cx, &path.index("headers", i), h))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FaultPolicy {
        delay,
        abort,
        max_active_faults: proto.max_active_faults.as_ref().map(|v| v.value),
        headers: headers.into(),
        upstream_cluster: (!proto.upstream_cluster.is_empty())
            .then(|| proto.upstream_cluster.as_str().into()),
        downstream_nodes: proto
            .downstream_nodes
            .iter()
            .map(|n| Arc::from(n.as_str()))
            .collect(),
    })
}

pub(super) fn percent(
    cx: &Ctx<'_>,
    path: &Path,
    p: Option<&FractionalPercent>,
) -> Result<FaultPercent, ModelError> {
    let Some(p) = p else {
        return Ok(FaultPercent::NONE);
    };
    let denominator = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::Hundred) => 100,
        Ok(DenominatorType::TenThousand) => 10_000,
        Ok(DenominatorType::Million) => 1_000_000,
        Err(_) => {
            return Err(cx.invalid(
                &path.field("denominator"),
                format!("unknown denominator {}", p.denominator),
            ))
        }
    };
    Ok(FaultPercent {
        numerator: p.numerator,
        denominator,
    })
}

/// The fault overrides among one `typed_per_filter_config` map, sorted by filter name.
pub(super) fn overrides(
    cx: &Ctx<'_>,
    path: &Path,
    map: &HashMap<String, Any>,
) -> Result<Vec<FaultOverride>, ModelError> {
    let mut out = Vec::new();
    for (name, any) in map {
        let p = path.field(&format!("typed_per_filter_config[{name}]"));
        let ext = identify(cx, &p, any)?;
        let (p, any) = if ext.name == FILTER_CONFIG {
            let fc: FilterConfig = decode_any(cx, &p, any)?;
            if fc.disabled {
                out.push(FaultOverride {
                    filter: name.as_str().into(),
                    policy: None,
                });
                continue;
            }
            match fc.config {
                Some(inner) => (p.field("config"), inner),
                None => continue,
            }
        } else {
            (p, any.clone())
        };
        if identify(cx, &p, &any)?.name != FAULT {
            continue;
        }
        out.push(FaultOverride {
            filter: name.as_str().into(),
            policy: Some(Arc::new(filter_config(cx, &p, &any)?)),
        });
    }
    out.sort_by(|a, b| a.filter.cmp(&b.filter));
    Ok(out)
}

/// A route's fault overrides: its own entries over the virtual host's (same filter name: the
/// route wins), plus each weighted cluster's entries.
pub(super) fn route_overrides(
    cx: &Ctx<'_>,
    path: &Path,
    vhost: &[FaultOverride],
    route_map: &HashMap<String, Any>,
    ra: Option<&RouteActionProto>,
) -> Result<FaultOverrides, ModelError> {
    let mut route = overrides(cx, path, route_map)?;
    for v in vhost {
        if !route.iter().any(|r| r.filter == v.filter) {
            route.push(v.clone());
        }
    }
    let mut clusters = Vec::new();
    if let Some(ClusterSpecifier::WeightedClusters(wc)) =
        ra.and_then(|r| r.cluster_specifier.as_ref())
    {
        let wp = path.field("route").field("weighted_clusters");
        for (i, c) in wc.clusters.iter().enumerate() {
            let list = overrides(cx, &wp.index("clusters", i), &c.typed_per_filter_config)?;
            if !list.is_empty() {
                clusters.push((Arc::from(c.name.as_str()), Arc::from(list)));
            }
        }
    }
    Ok(FaultOverrides {
        route: route.into(),
        clusters: clusters.into(),
    })
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
