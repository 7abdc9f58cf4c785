//! Cluster (CDS): discovery type and load-balancing policy (gRFC A27, A48, A52; Envoy
//! `cluster.proto`; XDS-SEMANTICS.md rows 18, 21, 22, 24).
//!
//! - `type: EDS` (config source ADS, self or unset; `service_name` defaults to the cluster name)
//!   or `type: STATIC` with an inline `load_assignment`. DNS, ORIGINAL_DST and custom
//!   (`cluster_type`, e.g. aggregate) clusters are unsupported for now.
//! - `lb_policy`: ROUND_ROBIN (default), LEAST_REQUEST (`choice_count` defaults to 2, values
//!   below 2 are invalid, values above 10 are clamped to 10, A48), RANDOM, RING_HASH
//!   (`ring_hash_lb_config`: sizes default 1024 / 8 388 608, each in `1..=8 388 608`, minimum ≤
//!   maximum; `hash_function` must be XX_HASH — MURMUR_HASH_2 is unsupported, as in gRPC) and
//!   MAGLEV (`maglev_lb_config.table_size` default 65 537, a prime ≤ 5 000 011).
//!   CLUSTER_PROVIDED is unsupported. `load_balancing_policy` overrides it: the first entry
//!   whose type is RoundRobin, LeastRequest, Random, RingHash or Maglev wins (A52); none
//!   supported is unsupported, listing the types. Slow start and `hash_balance_factor` are
//!   ignored.
//! - `common_lb_config`: `healthy_panic_threshold` (0–100 %, default 50 %) and
//!   `locality_weighted_lb_config`; zone-aware routing and the rest are ignored. Under
//!   `load_balancing_policy` the chosen policy's own `locality_lb_config` /
//!   `locality_weighted_lb_config` says whether localities are weighted.
//! - `connect_timeout` defaults to 5 s and must be positive.
//! - `circuit_breakers`: retry limits ([`super::policy`]), `max_connections` and
//!   `max_pending_requests` ([`super::outlier`]); `outlier_detection` ([`super::outlier`]).
//! - `transport_socket` / `transport_socket_matches`: plaintext or TLS ([`super::upstream_tls`]).

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{
        common_lb_config::LocalityConfigSpecifier, ring_hash_lb_config::HashFunction,
        ClusterDiscoveryType, CommonLbConfig as CommonProto, DiscoveryType, LbConfig,
        LbPolicy as LbPolicyProto,
    },
    Cluster as ClusterProto, LoadBalancingPolicy,
};
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::envoy::extensions::load_balancing_policies::{
    common::v3::{locality_lb_config, LocalityLbConfig},
    least_request::v3::LeastRequest,
    maglev::v3::Maglev,
    random::v3::Random,
    ring_hash::v3::{ring_hash::HashFunction as ExtHashFunction, RingHash},
    round_robin::v3::RoundRobin,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct};

use super::{
    decode_any, endpoint, identify, is_ads_or_self, outlier, policy, upstream_tls, Ctx, Path,
};
use crate::model::{Cluster, ClusterDiscovery, CommonLbConfig, LbPolicy, ModelError, ResourceType};

const ROUND_ROBIN: &str = "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
const LEAST_REQUEST: &str =
    "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
const RANDOM: &str = "envoy.extensions.load_balancing_policies.random.v3.Random";
const RING_HASH: &str = "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash";
const MAGLEV: &str = "envoy.extensions.load_balancing_policies.maglev.v3.Maglev";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn convert(proto: ClusterProto) -> Result<Cluster, ModelError> {
    let name = proto.name.clone();
    let cx = Ctx::new(ResourceType::Cluster, &name);
    let root = Path::root();
    if name.is_empty() {
        return Err(cx.invalid(&root.field("name"), "must not be empty"));
    }
    let mut lb_common = common_lb_config(&cx, &root.field("common_lb_config"), &proto)?;
    let lb_policy = match &proto.load_balancing_policy {
        Some(lbp) => {
            let (policy, locality_weighted) =
                load_balancing_policy(&cx, &root.field("load_balancing_policy"), lbp)?;
            lb_common.locality_weighted = locality_weighted;
            lb_common.slow_start =
                typed_slow_start(&cx, &root.field("load_balancing_policy"), lbp, policy)?;
            policy
        }
        None => {
            let policy = lb_policy(&cx, &proto)?;
            lb_common.slow_start = legacy_slow_start(&cx, &proto, policy)?;
            policy
        }
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
    let cb = proto.circuit_breakers.as_ref();
    let cb_path = root.field("circuit_breakers");
    let retry_limits = policy::retry_limits(&cx, &cb_path, cb, RoutingPriority::Default)?;
    let retry_limits_high = policy::retry_limits(&cx, &cb_path, cb, RoutingPriority::High)?;
    let connection_limits = outlier::connection_limits(proto.circuit_breakers.as_ref());
    let outlier_detection = outlier::outlier_detection(
        &cx,
        &root.field("outlier_detection"),
        proto.outlier_detection.as_ref(),
    )?;
    let transport = upstream_tls::transport(&cx, &proto)?;
    let discovery = discovery(&cx, &root, proto)?;
    Ok(Cluster {
        name: name.as_str().into(),
        discovery,
        lb_policy,
        connect_timeout,
        retry_limits,
        retry_limits_high,
        connection_limits,
        outlier_detection,
        lb_common,
        transport,
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
        LbPolicyProto::Random => Ok(LbPolicy::Random),
        LbPolicyProto::RingHash => {
            let c = match &proto.lb_config {
                Some(LbConfig::RingHashLbConfig(c)) => Some(c),
                _ => None,
            };
            let rp = Path::root().field("ring_hash_lb_config");
            if let Some(c) = c {
                if HashFunction::try_from(c.hash_function) != Ok(HashFunction::XxHash) {
                    return Err(cx.unsupported(
                        &rp.field("hash_function"),
                        "only XX_HASH is supported (as in gRPC)",
                    ));
                }
            }
            ring_hash(
                cx,
                &rp,
                c.and_then(|c| c.minimum_ring_size.map(|v| v.value)),
                c.and_then(|c| c.maximum_ring_size.map(|v| v.value)),
            )
        }
        LbPolicyProto::Maglev => {
            let size = match &proto.lb_config {
                Some(LbConfig::MaglevLbConfig(c)) => c.table_size.map(|v| v.value),
                _ => None,
            };
            maglev(
                cx,
                &Path::root().field("maglev_lb_config").field("table_size"),
                size,
            )
        }
        LbPolicyProto::LoadBalancingPolicyConfig => Err(cx.invalid(
            &p,
            "LOAD_BALANCING_POLICY_CONFIG without load_balancing_policy",
        )),
        other => Err(cx.unsupported(
            &p,
            format!("lb_policy {} not supported", other.as_str_name()),
        )),
    }
}

/// `common_lb_config`: the panic threshold and whether localities are weighted.
fn common_lb_config(
    cx: &Ctx<'_>,
    path: &Path,
    proto: &ClusterProto,
) -> Result<CommonLbConfig, ModelError> {
    let mut out = CommonLbConfig::default();
    let Some(c) = &proto.common_lb_config else {
        return Ok(out);
    };
    if let Some(p) = &c.healthy_panic_threshold {
        out.healthy_panic_threshold_ppm =
            percent_ppm(cx, &path.field("healthy_panic_threshold"), p.value)?;
    }
    out.locality_weighted = matches!(
        c,
        CommonProto {
            locality_config_specifier: Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_)),
            ..
        }
    );
    Ok(out)
}

/// `slow_start_config` from `round_robin_lb_config` / `least_request_lb_config`, for the policy
/// the cluster uses (Envoy reads it only there).
fn legacy_slow_start(
    cx: &Ctx<'_>,
    proto: &ClusterProto,
    policy: LbPolicy,
) -> Result<Option<crate::model::SlowStart>, ModelError> {
    let (field, c) = match (&proto.lb_config, policy) {
        (Some(LbConfig::RoundRobinLbConfig(c)), LbPolicy::RoundRobin) => {
            ("round_robin_lb_config", c.slow_start_config.as_ref())
        }
        (Some(LbConfig::LeastRequestLbConfig(c)), LbPolicy::LeastRequest { .. }) => {
            ("least_request_lb_config", c.slow_start_config.as_ref())
        }
        _ => return Ok(None),
    };
    let Some(c) = c else { return Ok(None) };
    slow_start(
        cx,
        &Path::root().field(field).field("slow_start_config"),
        c.slow_start_window.as_ref(),
        c.aggression.as_ref().map(|a| a.default_value),
        c.min_weight_percent.as_ref().map(|p| p.value),
    )
}

/// `slow_start_config` of the typed RoundRobin / LeastRequest policy the cluster picked.
fn typed_slow_start(
    cx: &Ctx<'_>,
    path: &Path,
    lbp: &envoy_types::pb::envoy::config::cluster::v3::LoadBalancingPolicy,
    policy: LbPolicy,
) -> Result<Option<crate::model::SlowStart>, ModelError> {
    for (i, p) in lbp.policies.iter().enumerate() {
        let Some(any) = p
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            continue;
        };
        let tp = path
            .index("policies", i)
            .field("typed_extension_config")
            .field("typed_config");
        let ext = identify(cx, &tp, any)?;
        if ext.typed_struct.is_some() {
            continue; // a TypedStruct form: slow start is not read from it
        }
        let c = match (ext.name.as_str(), policy) {
            (ROUND_ROBIN, LbPolicy::RoundRobin) => {
                decode_any::<RoundRobin>(cx, &tp, any)?.slow_start_config
            }
            (LEAST_REQUEST, LbPolicy::LeastRequest { .. }) => {
                decode_any::<LeastRequest>(cx, &tp, any)?.slow_start_config
            }
            _ => continue,
        };
        let Some(c) = c else { return Ok(None) };
        return slow_start(
            cx,
            &tp.field("slow_start_config"),
            c.slow_start_window.as_ref(),
            c.aggression.as_ref().map(|a| a.default_value),
            c.min_weight_percent.as_ref().map(|p| p.value),
        );
    }
    Ok(None)
}

/// Validates a `SlowStartConfig`: a zero or absent window disables it (Envoy); `aggression`
/// must be positive (default 1.0), `min_weight_percent` within 0..=100 (default 10).
fn slow_start(
    cx: &Ctx<'_>,
    path: &Path,
    window: Option<&envoy_types::pb::google::protobuf::Duration>,
    aggression: Option<f64>,
    min_weight_percent: Option<f64>,
) -> Result<Option<crate::model::SlowStart>, ModelError> {
    let Some(w) = window else { return Ok(None) };
    if w.seconds < 0 || w.nanos < 0 {
        return Err(cx.invalid(&path.field("slow_start_window"), "negative"));
    }
    let window = Duration::new(w.seconds as u64, w.nanos as u32);
    if window.is_zero() {
        return Ok(None);
    }
    let aggression = aggression.unwrap_or(1.0);
    if !(aggression > 0.0 && aggression <= 1000.0) {
        return Err(cx.invalid(
            &path.field("aggression"),
            format!("{aggression} must be greater than 0 (at most 1000)"),
        ));
    }
    let min_weight_ppm = match min_weight_percent {
        Some(v) => percent_ppm(cx, &path.field("min_weight_percent"), v)?,
        None => 100_000,
    };
    Ok(Some(crate::model::SlowStart {
        window,
        aggression_milli: ((aggression * 1000.0).round() as u32).max(1),
        min_weight_ppm,
    }))
}

/// An `envoy.type.v3.Percent` (0–100) in parts per million.
fn percent_ppm(cx: &Ctx<'_>, path: &Path, value: f64) -> Result<u32, ModelError> {
    if !(0.0..=100.0).contains(&value) {
        return Err(cx.invalid(
            &path.field("value"),
            format!("{value} is not within 0..=100"),
        ));
    }
    // Within 0..=1e6 after the range check, so the cast is exact enough and cannot wrap.
    Ok((value * 10_000.0).round() as u32)
}

/// RING_HASH sizes: defaults 1024 / 8 388 608, each within `1..=8 388 608`, min ≤ max.
fn ring_hash(
    cx: &Ctx<'_>,
    path: &Path,
    min: Option<u64>,
    max: Option<u64>,
) -> Result<LbPolicy, ModelError> {
    let min_ring_size = min.unwrap_or(LbPolicy::DEFAULT_MIN_RING_SIZE);
    let max_ring_size = max.unwrap_or(LbPolicy::MAX_RING_SIZE);
    for (field, v) in [
        ("minimum_ring_size", min_ring_size),
        ("maximum_ring_size", max_ring_size),
    ] {
        if v == 0 || v > LbPolicy::MAX_RING_SIZE {
            return Err(cx.invalid(
                &path.field(field),
                format!("{v} is not within 1..={}", LbPolicy::MAX_RING_SIZE),
            ));
        }
    }
    if min_ring_size > max_ring_size {
        return Err(cx.invalid(
            &path.field("minimum_ring_size"),
            format!("{min_ring_size} is above maximum_ring_size {max_ring_size}"),
        ));
    }
    Ok(LbPolicy::RingHash {
        min_ring_size,
        max_ring_size,
    })
}

/// MAGLEV table size: default 65 537, a prime ≤ 5 000 011 (Envoy).
fn maglev(cx: &Ctx<'_>, path: &Path, size: Option<u64>) -> Result<LbPolicy, ModelError> {
    let table_size = size.unwrap_or(LbPolicy::DEFAULT_MAGLEV_TABLE_SIZE);
    if table_size > LbPolicy::MAX_MAGLEV_TABLE_SIZE {
        return Err(cx.invalid(
            path,
            format!("{table_size} is above {}", LbPolicy::MAX_MAGLEV_TABLE_SIZE),
        ));
    }
    if !is_prime(table_size) {
        return Err(cx.invalid(path, format!("{table_size} is not a prime")));
    }
    Ok(LbPolicy::Maglev { table_size })
}

/// Trial division; table sizes are at most ~5e6, so at most ~1100 divisions, at config time.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn locality_weighted(c: Option<&LocalityLbConfig>) -> bool {
    matches!(
        c.and_then(|c| c.locality_config_specifier.as_ref()),
        Some(locality_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
    )
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

/// gRFC A52: the first policy this client supports wins. Returns it and whether its locality
/// config asks for weighted localities.
fn load_balancing_policy(
    cx: &Ctx<'_>,
    path: &Path,
    lbp: &LoadBalancingPolicy,
) -> Result<(LbPolicy, bool), ModelError> {
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
        let s = ext.typed_struct.as_ref();
        match ext.name.as_str() {
            ROUND_ROBIN => {
                let weighted = match s {
                    Some(s) => struct_locality_weighted(s),
                    None => locality_weighted(
                        decode_any::<RoundRobin>(cx, &tp, any)?
                            .locality_lb_config
                            .as_ref(),
                    ),
                };
                return Ok((LbPolicy::RoundRobin, weighted));
            }
            RANDOM => {
                let weighted = match s {
                    Some(s) => struct_locality_weighted(s),
                    None => locality_weighted(
                        decode_any::<Random>(cx, &tp, any)?
                            .locality_lb_config
                            .as_ref(),
                    ),
                };
                return Ok((LbPolicy::Random, weighted));
            }
            LEAST_REQUEST => {
                let (count, weighted) = match s {
                    Some(s) => (
                        struct_u32(cx, &tp, s, &["choice_count", "choiceCount"])?,
                        struct_locality_weighted(s),
                    ),
                    None => {
                        let lr: LeastRequest = decode_any(cx, &tp, any)?;
                        (
                            lr.choice_count.map(|v| v.value),
                            locality_weighted(lr.locality_lb_config.as_ref()),
                        )
                    }
                };
                return Ok((
                    least_request(cx, &tp.field("choice_count"), count)?,
                    weighted,
                ));
            }
            RING_HASH => {
                let (min, max, weighted) = match s {
                    Some(s) => (
                        struct_u64(cx, &tp, s, &["minimum_ring_size", "minimumRingSize"])?,
                        struct_u64(cx, &tp, s, &["maximum_ring_size", "maximumRingSize"])?,
                        struct_locality_weighted(s),
                    ),
                    None => {
                        let rh: RingHash = decode_any(cx, &tp, any)?;
                        if !matches!(
                            ExtHashFunction::try_from(rh.hash_function),
                            Ok(ExtHashFunction::DefaultHash | ExtHashFunction::XxHash)
                        ) {
                            return Err(cx.unsupported(
                                &tp.field("hash_function"),
                                "only XX_HASH is supported (as in gRPC)",
                            ));
                        }
                        (
                            rh.minimum_ring_size.map(|v| v.value),
                            rh.maximum_ring_size.map(|v| v.value),
                            rh.locality_weighted_lb_config.is_some(),
                        )
                    }
                };
                return Ok((ring_hash(cx, &tp, min, max)?, weighted));
            }
            MAGLEV => {
                let (size, weighted) = match s {
                    Some(s) => (
                        struct_u64(cx, &tp, s, &["table_size", "tableSize"])?,
                        struct_locality_weighted(s),
                    ),
                    None => {
                        let m: Maglev = decode_any(cx, &tp, any)?;
                        (
                            m.table_size.map(|v| v.value),
                            m.locality_weighted_lb_config.is_some(),
                        )
                    }
                };
                return Ok((maglev(cx, &tp.field("table_size"), size)?, weighted));
            }
            other => seen.push(other.to_owned()),
        }
    }
    Err(cx.unsupported(
        &path.field("policies"),
        format!("no supported policy among [{}]", seen.join(", ")),
    ))
}

/// Whether a policy given as `TypedStruct` weighs localities: `locality_lb_config` holding
/// `locality_weighted_lb_config` (RoundRobin, LeastRequest, Random), or
/// `locality_weighted_lb_config` itself (RingHash, Maglev).
fn struct_locality_weighted(s: &Struct) -> bool {
    const WEIGHTED: [&str; 2] = ["locality_weighted_lb_config", "localityWeightedLbConfig"];
    let has = |s: &Struct| WEIGHTED.iter().any(|n| s.fields.contains_key(*n));
    has(s)
        || ["locality_lb_config", "localityLbConfig"]
            .iter()
            .filter_map(|n| s.fields.get(*n))
            .any(|v| matches!(&v.kind, Some(Kind::StructValue(inner)) if has(inner)))
}

/// Reads a non-negative integer field of a `TypedStruct`'s value, by any of its JSON names
/// (64-bit values arrive as numbers or, in proto3 JSON, as decimal strings).
fn struct_u64(
    cx: &Ctx<'_>,
    path: &Path,
    s: &Struct,
    names: &[&str],
) -> Result<Option<u64>, ModelError> {
    let Some(v) = names.iter().find_map(|n| s.fields.get(*n)) else {
        return Ok(None);
    };
    match &v.kind {
        // 2^53 bounds what a JSON number holds exactly.
        Some(Kind::NumberValue(n))
            if *n >= 0.0 && *n <= 9_007_199_254_740_992.0 && n.fract() == 0.0 =>
        {
            Ok(Some(*n as u64))
        }
        Some(Kind::StringValue(t)) => t
            .parse()
            .map(Some)
            .map_err(|_| cx.invalid(&path.field(names[0]), "not a non-negative integer")),
        _ => Err(cx.invalid(&path.field(names[0]), "not a non-negative integer")),
    }
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
