//! Cluster (CDS): discovery type and load-balancing policy (gRFC A27, A48, A52; Envoy
//! `cluster.proto`; XDS-SEMANTICS.md rows 18, 21, 22, 24).
//!
//! - `type: EDS` (config source ADS, self or unset; `service_name` defaults to the cluster name)
//!   or `type: STATIC` with an inline `load_assignment`. DNS, ORIGINAL_DST and custom
//!   (`cluster_type`, e.g. aggregate) clusters are unsupported for now.
//! - `lb_policy`: ROUND_ROBIN (default) or LEAST_REQUEST (`choice_count` defaults to 2, values
//!   below 2 are invalid, values above 10 are clamped to 10, A48). `load_balancing_policy`
//!   overrides it: the first entry whose type is RoundRobin or LeastRequest wins (A52); none
//!   supported is unsupported, listing the types.
//! - `connect_timeout` defaults to 5 s and must be positive.
//! - `circuit_breakers`: retry limits ([`super::policy`]), `max_connections` and
//!   `max_pending_requests` ([`super::outlier`]); `outlier_detection` ([`super::outlier`]).
//!   Transport sockets are read by later work.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy as LbPolicyProto},
    Cluster as ClusterProto, LoadBalancingPolicy,
};
use envoy_types::pb::envoy::extensions::load_balancing_policies::least_request::v3::LeastRequest;
use envoy_types::pb::google::protobuf::{value::Kind, Struct};

use super::{decode_any, endpoint, identify, is_ads_or_self, outlier, policy, Ctx, Path};
use crate::model::{Cluster, ClusterDiscovery, LbPolicy, ModelError, ResourceType};

const ROUND_ROBIN: &str = "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
const LEAST_REQUEST: &str =
    "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn convert(proto: ClusterProto) -> Result<Cluster, ModelError> {
    let name = proto.name.clone();
    let cx = Ctx::new(ResourceType::Cluster, &name);
    let root = Path::root();
    if name.is_empty() {
        return Err(cx.invalid(&root.field("name"), "must not be empty"));
    }
    let lb_policy = match &proto.load_balancing_policy {
        Some(lbp) => load_balancing_policy(&cx, &root.field("load_balancing_policy"), lbp)?,
        None => lb_policy(&cx, &proto)?,
    };
    let connect_timeout = match &proto.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(d) => {
            let p = root.field("connect_timeout");
            if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
                return Err(cx.invalid(&p, "must be positive"));
            }
            if d.nanos >= 1_000_000_000 {
                return Err(cx.invalid(&p, "nanos out of range"));
            }
            // Both non-negative and nanos < 1e9, so the casts are exact.
            Duration::new(d.seconds as u64, d.nanos as u32)
        }
    };
    let retry_limits = policy::retry_limits(
        &cx,
        &root.field("circuit_breakers"),
        proto.circuit_breakers.as_ref(),
    )?;
    let connection_limits = outlier::connection_limits(proto.circuit_breakers.as_ref());
    let outlier_detection = outlier::outlier_detection(
        &cx,
        &root.field("outlier_detection"),
        proto.outlier_detection.as_ref(),
    )?;
    let discovery = discovery(&cx, &root, proto)?;
    Ok(Cluster {
        name: name.as_str().into(),
        discovery,
        lb_policy,
        connect_timeout,
        retry_limits,
        connection_limits,
        outlier_detection,
    })
}

fn discovery(
    cx: &Ctx<'_>,
    root: &Path,
    proto: ClusterProto,
) -> Result<ClusterDiscovery, ModelError> {
    let ty = match &proto.cluster_discovery_type {
        // Proto3 default: STATIC.
        None => DiscoveryType::Static,
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t)
            .map_err(|_| cx.invalid(&root.field("type"), format!("unknown type {t}")))?,
        Some(ClusterDiscoveryType::ClusterType(ct)) => {
            return Err(cx.unsupported(
                &root.field("cluster_type"),
                format!("custom cluster type `{}` not supported", ct.name),
            ))
        }
    };
    match ty {
        DiscoveryType::Eds => {
            let p = root.field("eds_cluster_config");
            let eds = proto.eds_cluster_config.unwrap_or_default();
            if let Some(cs) = &eds.eds_config {
                if !is_ads_or_self(cs) {
                    return Err(
                        cx.unsupported(&p.field("eds_config"), "eds_config must be ads or self")
                    );
                }
            }
            let service_name = if eds.service_name.is_empty() {
                proto.name
            } else {
                eds.service_name
            };
            Ok(ClusterDiscovery::Eds {
                service_name: service_name.into(),
            })
        }
        DiscoveryType::Static => {
            let p = root.field("load_assignment");
            let cla = proto
                .load_assignment
                .ok_or_else(|| cx.invalid(&p, "a STATIC cluster needs a load_assignment"))?;
            let cla_name = if cla.cluster_name.is_empty() {
                proto.name.clone()
            } else {
                cla.cluster_name.clone()
            };
            Ok(ClusterDiscovery::Static(
                endpoint::load_assignment(cx, &p, cla, &cla_name)?.into(),
            ))
        }
        other => Err(cx.unsupported(
            &root.field("type"),
            format!("cluster type {} not supported yet", other.as_str_name()),
        )),
    }
}

fn lb_policy(cx: &Ctx<'_>, proto: &ClusterProto) -> Result<LbPolicy, ModelError> {
    let p = Path::root().field("lb_policy");
    let policy = LbPolicyProto::try_from(proto.lb_policy)
        .map_err(|_| cx.invalid(&p, format!("unknown lb_policy {}", proto.lb_policy)))?;
    match policy {
        LbPolicyProto::RoundRobin => Ok(LbPolicy::RoundRobin),
        LbPolicyProto::LeastRequest => {
            let count = match &proto.lb_config {
                Some(LbConfig::LeastRequestLbConfig(c)) => c.choice_count.as_ref().map(|v| v.value),
                _ => None,
            };
            least_request(
                cx,
                &Path::root()
                    .field("least_request_lb_config")
                    .field("choice_count"),
                count,
            )
        }
        LbPolicyProto::LoadBalancingPolicyConfig => Err(cx.invalid(
            &p,
            "LOAD_BALANCING_POLICY_CONFIG without load_balancing_policy",
        )),
        other => Err(cx.unsupported(
            &p,
            format!(
                "lb_policy {} not supported yet (issue resilience)",
                other.as_str_name()
            ),
        )),
    }
}

/// gRFC A48: default 2, below 2 invalid, above 10 clamped.
fn least_request(cx: &Ctx<'_>, path: &Path, count: Option<u32>) -> Result<LbPolicy, ModelError> {
    let choice_count = count.unwrap_or(2);
    if choice_count < 2 {
        return Err(cx.invalid(path, format!("choice_count {choice_count} is below 2")));
    }
    Ok(LbPolicy::LeastRequest {
        choice_count: choice_count.min(10),
    })
}

/// gRFC A52: the first policy this client supports wins.
fn load_balancing_policy(
    cx: &Ctx<'_>,
    path: &Path,
    lbp: &LoadBalancingPolicy,
) -> Result<LbPolicy, ModelError> {
    let mut seen = Vec::new();
    for (i, policy) in lbp.policies.iter().enumerate() {
        let p = path.index("policies", i).field("typed_extension_config");
        let Some(any) = policy
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            return Err(cx.invalid(&p.field("typed_config"), "missing"));
        };
        let tp = p.field("typed_config");
        let ext = identify(cx, &tp, any)?;
        match ext.name.as_str() {
            ROUND_ROBIN => return Ok(LbPolicy::RoundRobin),
            LEAST_REQUEST => {
                let count = match &ext.typed_struct {
                    Some(s) => struct_u32(cx, &tp, s, &["choice_count", "choiceCount"])?,
                    None => {
                        let lr: LeastRequest = decode_any(cx, &tp, any)?;
                        lr.choice_count.map(|v| v.value)
                    }
                };
                return least_request(cx, &tp.field("choice_count"), count);
            }
            other => seen.push(other.to_owned()),
        }
    }
    Err(cx.unsupported(
        &path.field("policies"),
        format!("no supported policy among [{}]", seen.join(", ")),
    ))
}

/// Reads a non-negative integer field of a `TypedStruct`'s value, by any of its JSON names.
fn struct_u32(
    cx: &Ctx<'_>,
    path: &Path,
    s: &Struct,
    names: &[&str],
) -> Result<Option<u32>, ModelError> {
    let Some(v) = names.iter().find_map(|n| s.fields.get(*n)) else {
        return Ok(None);
    };
    match &v.kind {
        Some(Kind::NumberValue(n))
            if *n >= 0.0 && *n <= f64::from(u32::MAX) && n.fract() == 0.0 =>
        {
            // Range- and integrality-checked above.
            Ok(Some(*n as u32))
        }
        _ => Err(cx.invalid(&path.field(names[0]), "not a non-negative integer")),
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
