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
use crate::source::model::{DestinationRule, HashAlgorithm, HashKey, LoadBalancer};

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
