use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{
        CustomClusterType, EdsClusterConfig, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
    },
    load_balancing_policy::Policy,
};
use envoy_types::pb::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier, AggregatedConfigSource, ApiConfigSource, ConfigSource,
    TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as ClaProto;
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value, UInt64Value};
use prost::Message;

use super::*;
use crate::model::ErrorKind;

fn eds(name: &str) -> ClusterProto {
    ClusterProto {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        ..Default::default()
    }
}

fn err(c: ClusterProto) -> (ErrorKind, String) {
    let e = Cluster::try_from(c).unwrap_err();
    (e.kind, e.field)
}

#[test]
fn eds_defaults() {
    let c = Cluster::try_from(eds("outbound|80||a")).unwrap();
    assert_eq!(c.eds_service_name(), Some("outbound|80||a"));
    assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(c.connect_timeout, Duration::from_secs(5));

    let mut p = eds("c");
    p.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            ..Default::default()
        }),
        service_name: "svc".into(),
    });
    p.connect_timeout = Some(PbDuration {
        seconds: 1,
        nanos: 500_000_000,
    });
    let c = Cluster::try_from(p).unwrap();
    assert_eq!(c.eds_service_name(), Some("svc"));
    assert_eq!(c.connect_timeout, Duration::from_millis(1500));
}

#[test]
fn eds_config_must_be_ads_or_self() {
    let mut p = eds("c");
    p.eds_cluster_config = Some(EdsClusterConfig {
        eds_config: Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource::default(),
            )),
            ..Default::default()
        }),
        service_name: String::new(),
    });
    assert_eq!(
        err(p),
        (
            ErrorKind::Unsupported,
            "eds_cluster_config.eds_config".into()
        )
    );
}

#[test]
fn static_and_other_types() {
    let mut p = eds("c");
    p.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    assert_eq!(
        err(p.clone()),
        (ErrorKind::Invalid, "load_assignment".into())
    );
    p.load_assignment = Some(ClaProto::default());
    let c = Cluster::try_from(p).unwrap();
    assert!(matches!(c.discovery, ClusterDiscovery::Static(ref cla) if &*cla.cluster_name == "c"));

    for t in [
        DiscoveryType::LogicalDns,
        DiscoveryType::StrictDns,
        DiscoveryType::OriginalDst,
    ] {
        let mut p = eds("c");
        p.cluster_discovery_type = Some(ClusterDiscoveryType::Type(t as i32));
        assert_eq!(err(p), (ErrorKind::Unsupported, "type".into()));
    }
    let mut p = eds("c");
    p.cluster_discovery_type = Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
        name: "envoy.clusters.aggregate".into(),
        typed_config: None,
    }));
    assert_eq!(err(p), (ErrorKind::Unsupported, "cluster_type".into()));
    let mut p = eds("c");
    p.cluster_discovery_type = Some(ClusterDiscoveryType::Type(99));
    assert_eq!(err(p), (ErrorKind::Invalid, "type".into()));
    assert_eq!(err(eds("")), (ErrorKind::Invalid, "name".into()));
}

#[test]
fn lb_policy_enum() {
    let mut p = eds("c");
    p.lb_policy = LbPolicyProto::LeastRequest as i32;
    assert_eq!(
        Cluster::try_from(p.clone()).unwrap().lb_policy,
        LbPolicy::LeastRequest { choice_count: 2 }
    );
    for (n, want) in [(3, Some(3)), (50, Some(10)), (1, None)] {
        p.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            choice_count: Some(UInt32Value { value: n }),
            ..Default::default()
        }));
        match want {
            Some(w) => assert_eq!(
                Cluster::try_from(p.clone()).unwrap().lb_policy,
                LbPolicy::LeastRequest { choice_count: w }
            ),
            None => assert_eq!(
                err(p.clone()),
                (
                    ErrorKind::Invalid,
                    "least_request_lb_config.choice_count".into()
                )
            ),
        }
    }
    for (lp, want) in [
        (LbPolicyProto::RingHash, LbPolicy::ring_hash()),
        (LbPolicyProto::Maglev, LbPolicy::maglev()),
        (LbPolicyProto::Random, LbPolicy::Random),
    ] {
        let mut p = eds("c");
        p.lb_policy = lp as i32;
        assert_eq!(Cluster::try_from(p).unwrap().lb_policy, want);
    }
    let mut p = eds("c");
    p.lb_policy = LbPolicyProto::ClusterProvided as i32;
    assert_eq!(err(p), (ErrorKind::Unsupported, "lb_policy".into()));
    let mut p = eds("c");
    p.lb_policy = 77;
    assert_eq!(err(p), (ErrorKind::Invalid, "lb_policy".into()));
}

fn policy(name: &str, value: Vec<u8>) -> Policy {
    Policy {
        typed_extension_config: Some(TypedExtensionConfig {
            name: "x".into(),
            typed_config: Some(Any {
                type_url: format!("type.googleapis.com/{name}"),
                value,
            }),
        }),
    }
}

#[test]
fn load_balancing_policy_overrides() {
    let maglev = "envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin";
    let lr = LeastRequest {
        choice_count: Some(UInt32Value { value: 4 }),
        ..Default::default()
    };
    let mut p = eds("c");
    p.lb_policy = LbPolicyProto::RingHash as i32;
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![
            policy(maglev, vec![]),
            policy(LEAST_REQUEST, lr.encode_to_vec()),
            policy(ROUND_ROBIN, vec![]),
        ],
    });
    assert_eq!(
        Cluster::try_from(p).unwrap().lb_policy,
        LbPolicy::LeastRequest { choice_count: 4 }
    );

    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![policy(ROUND_ROBIN, vec![])],
    });
    assert_eq!(
        Cluster::try_from(p).unwrap().lb_policy,
        LbPolicy::RoundRobin
    );

    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![policy(maglev, vec![])],
    });
    let e = Cluster::try_from(p).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Unsupported, "load_balancing_policy.policies")
    );
    assert!(e.reason.contains(maglev));
}

#[test]
fn bad_connect_timeout() {
    for (seconds, nanos) in [(0, 0), (-1, 0), (0, -5)] {
        let mut p = eds("c");
        p.connect_timeout = Some(PbDuration { seconds, nanos });
        assert_eq!(err(p), (ErrorKind::Invalid, "connect_timeout".into()));
    }
}

fn ring(min: Option<u64>, max: Option<u64>, hash_function: i32) -> ClusterProto {
    let mut p = eds("c");
    p.lb_policy = LbPolicyProto::RingHash as i32;
    p.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
        minimum_ring_size: min.map(|value| UInt64Value { value }),
        maximum_ring_size: max.map(|value| UInt64Value { value }),
        hash_function,
    }));
    p
}

#[test]
fn ring_hash_config_rules() {
    assert_eq!(
        Cluster::try_from(ring(Some(16), Some(64), 0))
            .unwrap()
            .lb_policy,
        LbPolicy::RingHash {
            min_ring_size: 16,
            max_ring_size: 64
        }
    );
    let bad = [
        (
            ring(Some(65), Some(64), 0),
            ErrorKind::Invalid,
            "ring_hash_lb_config.minimum_ring_size",
        ),
        (
            ring(Some(0), None, 0),
            ErrorKind::Invalid,
            "ring_hash_lb_config.minimum_ring_size",
        ),
        (
            ring(None, Some(8_388_609), 0),
            ErrorKind::Invalid,
            "ring_hash_lb_config.maximum_ring_size",
        ),
        (
            ring(None, None, 1),
            ErrorKind::Unsupported,
            "ring_hash_lb_config.hash_function",
        ),
    ];
    for (p, kind, field) in bad {
        assert_eq!(err(p), (kind, field.to_string()));
    }
}

#[test]
fn maglev_table_must_be_prime() {
    for (size, ok) in [
        (None, true),
        (Some(7), true),
        (Some(65_536), false),
        (Some(5_000_111), false),
        (Some(1), false),
    ] {
        let mut p = eds("c");
        p.lb_policy = LbPolicyProto::Maglev as i32;
        p.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
            table_size: size.map(|value| UInt64Value { value }),
        }));
        if ok {
            assert!(matches!(
                Cluster::try_from(p).unwrap().lb_policy,
                LbPolicy::Maglev { .. }
            ));
        } else {
            assert_eq!(
                err(p),
                (ErrorKind::Invalid, "maglev_lb_config.table_size".into()),
                "{size:?}"
            );
        }
    }
}

#[test]
fn common_lb_config_panic_and_locality() {
    let c = Cluster::try_from(eds("c")).unwrap();
    assert_eq!(c.lb_common, CommonLbConfig::default());
    let mut p = eds("c");
    p.common_lb_config = Some(CommonProto {
        healthy_panic_threshold: Some(Percent { value: 12.5 }),
        locality_config_specifier: Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            Default::default(),
        )),
        ..Default::default()
    });
    let c = Cluster::try_from(p.clone()).unwrap();
    assert_eq!(
        c.lb_common,
        CommonLbConfig {
            healthy_panic_threshold_ppm: 125_000,
            locality_weighted: true,
            slow_start: None,
        }
    );
    if let Some(c) = &mut p.common_lb_config {
        c.healthy_panic_threshold = Some(Percent { value: 101.0 });
    }
    assert_eq!(
        err(p),
        (
            ErrorKind::Invalid,
            "common_lb_config.healthy_panic_threshold.value".into()
        )
    );
}

#[test]
fn extension_policies_carry_their_locality_config() {
    let rr = RoundRobin {
        locality_lb_config: Some(LocalityLbConfig {
            locality_config_specifier: Some(
                locality_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    Default::default(),
                ),
            ),
        }),
        ..Default::default()
    };
    let maglev = Maglev {
        table_size: Some(UInt64Value { value: 4 }),
        ..Default::default()
    };
    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![policy(ROUND_ROBIN, rr.encode_to_vec())],
    });
    let c = Cluster::try_from(p).unwrap();
    assert_eq!(
        (c.lb_policy, c.lb_common.locality_weighted),
        (LbPolicy::RoundRobin, true)
    );
    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![policy(MAGLEV, maglev.encode_to_vec())],
    });
    assert_eq!(
        err(p),
        (
            ErrorKind::Invalid,
            "load_balancing_policy.policies[0].typed_extension_config.typed_config.table_size"
                .into()
        )
    );
    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![policy(RANDOM, vec![]), policy(ROUND_ROBIN, vec![])],
    });
    assert_eq!(Cluster::try_from(p).unwrap().lb_policy, LbPolicy::Random);
    let ring = RingHash {
        minimum_ring_size: Some(UInt64Value { value: 8 }),
        ..Default::default()
    };
    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![policy(RING_HASH, ring.encode_to_vec())],
    });
    assert_eq!(
        Cluster::try_from(p).unwrap().lb_policy,
        LbPolicy::RingHash {
            min_ring_size: 8,
            max_ring_size: LbPolicy::MAX_RING_SIZE
        }
    );
}

#[test]
fn slow_start_from_the_legacy_and_the_typed_round_robin_config() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        RoundRobinLbConfig, SlowStartConfig,
    };
    use envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
    use envoy_types::pb::envoy::extensions::load_balancing_policies::{
        common::v3::SlowStartConfig as TypedSlowStart, round_robin::v3::RoundRobin,
    };
    let window = Some(PbDuration {
        seconds: 30,
        nanos: 0,
    });
    let mut p = eds("c");
    p.lb_config = Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
        slow_start_config: Some(SlowStartConfig {
            slow_start_window: window,
            aggression: Some(RuntimeDouble {
                default_value: 1.5,
                runtime_key: "k".into(),
            }),
            min_weight_percent: None,
        }),
    }));
    let c = Cluster::try_from(p.clone()).unwrap();
    assert_eq!(
        c.lb_common.slow_start,
        Some(crate::model::SlowStart {
            window: Duration::from_secs(30),
            aggression_milli: 1500,
            min_weight_ppm: 100_000,
        })
    );
    // Aggression must be positive: refused naming the field.
    if let Some(LbConfig::RoundRobinLbConfig(rr)) = &mut p.lb_config {
        rr.slow_start_config.as_mut().unwrap().aggression = Some(RuntimeDouble {
            default_value: 0.0,
            runtime_key: String::new(),
        });
    }
    let (kind, field) = err(p);
    assert_eq!(kind, ErrorKind::Invalid);
    assert_eq!(field, "round_robin_lb_config.slow_start_config.aggression");

    // The typed RoundRobin policy (as istiod-style load_balancing_policy carries it).
    let rr = RoundRobin {
        slow_start_config: Some(TypedSlowStart {
            slow_start_window: window,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut p = eds("c");
    p.load_balancing_policy = Some(LoadBalancingPolicy {
        policies: vec![Policy {
            typed_extension_config: Some(TypedExtensionConfig {
                name: "rr".into(),
                typed_config: Some(Any {
                    type_url: format!("type.googleapis.com/{ROUND_ROBIN}"),
                    value: rr.encode_to_vec(),
                }),
            }),
        }],
    });
    let c = Cluster::try_from(p).unwrap();
    assert_eq!(
        c.lb_common.slow_start.map(|s| s.window),
        Some(Duration::from_secs(30))
    );
}
