//! DestinationRule load balancing → Cluster `lb_policy` / `lb_config` /
//! `load_balancing_policy` / `common_lb_config`, and `consistentHash` → the route's
//! `hash_policy` (istiod puts the hash policy on the route, from the DestinationRule of the
//! route's destination; XDS-SEMANTICS.md rows 21–22 and §1d).
//!
//! Every non-default policy carries `load_balancing_policy` with a fallback last (gRFC A52:
//! clients take the first entry they support): LEAST_REQUEST → [least_request, round_robin]
//! (istio/istio#58052); RANDOM → [random, round_robin] (gRPC has no random policy); MAGLEV →
//! [maglev, ring_hash] (gRPC NACKs MAGLEV, and ring hash keeps its affinity). The `lb_policy`
//! enum says the same for clients without A52. `localityLbSetting.enabled` sets
//! `locality_weighted_lb_config` in `common_lb_config` and in each extension's locality config.

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{
        common_lb_config::{LocalityConfigSpecifier, LocalityWeightedLbConfig},
        ring_hash_lb_config::HashFunction,
        CommonLbConfig, LbConfig, LbPolicy, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
    },
    load_balancing_policy::Policy,
    Cluster, LoadBalancingPolicy,
};
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    hash_policy::{ConnectionProperties, Cookie, Header, PolicySpecifier, QueryParameter},
    HashPolicy,
};
use envoy_types::pb::envoy::extensions::load_balancing_policies::{
    common::v3::{locality_lb_config, LocalityLbConfig},
    least_request::v3::LeastRequest,
    maglev::v3::Maglev,
    random::v3::Random,
    ring_hash::v3::RingHash,
    round_robin::v3::RoundRobin,
};
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};

use super::to_any;
use crate::source::model::{DestinationRule, HashAlgorithm, HashKey, LoadBalancer, Warmup};

/// The policy and locality weighting for `subset` ("" = the default cluster) of `dr`: the
/// subset's settings override the rule's.
pub(crate) fn effective(dr: Option<&DestinationRule>, subset: &str) -> (LoadBalancer, bool) {
    let Some(dr) = dr else {
        return (LoadBalancer::default(), false);
    };
    let s = dr
        .subsets
        .iter()
        .find(|s| !subset.is_empty() && s.name == subset);
    let lb = s
        .and_then(|s| s.load_balancer.clone())
        .or_else(|| dr.load_balancer.clone())
        .unwrap_or_default();
    let locality = s
        .and_then(|s| s.locality_weighted)
        .or(dr.locality_weighted)
        .unwrap_or(false);
    (lb, locality)
}

/// The `warmup` for `subset` ("" = the default cluster): the subset's, else the rule's.
pub(crate) fn effective_warmup(dr: Option<&DestinationRule>, subset: &str) -> Option<Warmup> {
    let dr = dr?;
    dr.subsets
        .iter()
        .find(|s| !subset.is_empty() && s.name == subset)
        .and_then(|s| s.warmup)
        .or(dr.warmup)
}

/// Slow start as istiod emits it (`setSlowStartConfig`): `slow_start_config` in the
/// ROUND_ROBIN / LEAST_REQUEST `lb_config`, and in the typed least_request policy this control
/// plane also lists (clients reading `load_balancing_policy` take it from there). Other
/// policies get none (parsing already warned).
pub(crate) fn apply_warmup(c: &mut Cluster, warmup: Option<Warmup>) {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        RoundRobinLbConfig, SlowStartConfig,
    };
    use envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
    use envoy_types::pb::envoy::extensions::load_balancing_policies::common::v3::SlowStartConfig as TypedSlowStart;
    use envoy_types::pb::envoy::r#type::v3::Percent;
    let Some(w) = warmup else { return };
    let window = Some(envoy_types::pb::google::protobuf::Duration {
        seconds: w.duration.as_secs() as i64,
        nanos: w.duration.subsec_nanos() as i32,
    });
    let aggression = w.aggression_milli.map(|a| RuntimeDouble {
        default_value: f64::from(a) / 1000.0,
        runtime_key: String::new(),
    });
    let min_weight_percent = w.minimum_ppm.map(|p| Percent {
        value: f64::from(p) / 10_000.0,
    });
    let legacy = SlowStartConfig {
        slow_start_window: window,
        aggression: aggression.clone(),
        min_weight_percent,
    };
    match LbPolicy::try_from(c.lb_policy) {
        Ok(LbPolicy::RoundRobin) if c.lb_config.is_none() => {
            c.lb_config = Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                slow_start_config: Some(legacy),
            }));
        }
        Ok(LbPolicy::LeastRequest) => {
            if let Some(LbConfig::LeastRequestLbConfig(lr)) = &mut c.lb_config {
                lr.slow_start_config = Some(legacy);
            }
            let typed = TypedSlowStart {
                slow_start_window: window,
                aggression,
                min_weight_percent,
            };
            for p in c
                .load_balancing_policy
                .iter_mut()
                .flat_map(|l| l.policies.iter_mut())
            {
                let Some(any) = p
                    .typed_extension_config
                    .as_mut()
                    .and_then(|t| t.typed_config.as_mut())
                else {
                    continue;
                };
                if any.type_url != <LeastRequest as prost::Name>::type_url() {
                    continue;
                }
                if let Ok(mut lr) = <LeastRequest as prost::Message>::decode(&any.value[..]) {
                    lr.slow_start_config = Some(typed.clone());
                    *any = to_any(&lr);
                }
            }
        }
        _ => {}
    }
}

fn typed_policy<T: prost::Name>(name: &str, config: &T) -> Policy {
    Policy {
        typed_extension_config: Some(TypedExtensionConfig {
            name: name.to_string(),
            typed_config: Some(to_any(config)),
        }),
    }
}

/// Sets the cluster's load-balancing fields.
pub(crate) fn apply(c: &mut Cluster, lb: &LoadBalancer, locality_weighted: bool) {
    let loc = locality_weighted.then(|| LocalityLbConfig {
        locality_config_specifier: Some(
            locality_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                Default::default(),
            ),
        ),
    });
    let weighted = locality_weighted.then(Default::default);
    let rr = || {
        typed_policy(
            "envoy.load_balancing_policies.round_robin",
            &RoundRobin {
                locality_lb_config: loc,
                ..Default::default()
            },
        )
    };
    let policies = match lb {
        LoadBalancer::RoundRobin => {
            c.lb_policy = LbPolicy::RoundRobin as i32;
            None
        }
        LoadBalancer::LeastRequest => {
            let choice_count = Some(UInt32Value { value: 2 });
            c.lb_policy = LbPolicy::LeastRequest as i32;
            c.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                choice_count,
                ..Default::default()
            }));
            let lr = LeastRequest {
                choice_count,
                locality_lb_config: loc,
                ..Default::default()
            };
            Some(vec![
                typed_policy("envoy.load_balancing_policies.least_request", &lr),
                rr(),
            ])
        }
        LoadBalancer::Random => {
            c.lb_policy = LbPolicy::Random as i32;
            let random = Random {
                locality_lb_config: loc,
            };
            Some(vec![
                typed_policy("envoy.load_balancing_policies.random", &random),
                rr(),
            ])
        }
        LoadBalancer::ConsistentHash(ch) => match ch.algorithm {
            HashAlgorithm::RingHash { minimum_ring_size } => {
                c.lb_policy = LbPolicy::RingHash as i32;
                c.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                    minimum_ring_size: minimum_ring_size.map(|value| UInt64Value { value }),
                    hash_function: HashFunction::XxHash as i32,
                    ..Default::default()
                }));
                None
            }
            HashAlgorithm::Maglev { table_size } => {
                c.lb_policy = LbPolicy::Maglev as i32;
                let table_size = table_size.map(|value| UInt64Value { value });
                c.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig { table_size }));
                let maglev = Maglev {
                    table_size,
                    locality_weighted_lb_config: weighted,
                    ..Default::default()
                };
                let ring = RingHash {
                    locality_weighted_lb_config: weighted,
                    ..Default::default()
                };
                Some(vec![
                    typed_policy("envoy.load_balancing_policies.maglev", &maglev),
                    typed_policy("envoy.load_balancing_policies.ring_hash", &ring),
                ])
            }
        },
    };
    c.load_balancing_policy = policies.map(|policies| LoadBalancingPolicy { policies });
    if locality_weighted {
        c.common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .locality_config_specifier = Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig::default(),
        ));
    }
}

/// The route `hash_policy` for a destination balanced by `lb` (empty unless consistent hash).
pub(crate) fn hash_policy(lb: &LoadBalancer) -> Vec<HashPolicy> {
    let LoadBalancer::ConsistentHash(ch) = lb else {
        return Vec::new();
    };
    let spec = match &ch.key {
        HashKey::Header(name) => PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Default::default()
        }),
        HashKey::Cookie { name, path, ttl } => PolicySpecifier::Cookie(Cookie {
            name: name.clone(),
            path: path.clone().unwrap_or_default(),
            ttl: ttl.map(super::pb_duration),
            ..Default::default()
        }),
        HashKey::SourceIp => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
        }
        HashKey::QueryParameter(name) => {
            PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
        }
    };
    vec![HashPolicy {
        policy_specifier: Some(spec),
        terminal: false,
    }]
}
