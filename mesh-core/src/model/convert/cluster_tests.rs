use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{CustomClusterType, EdsClusterConfig, LeastRequestLbConfig},
    load_balancing_policy::Policy,
};
use envoy_types::pb::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier, AggregatedConfigSource, ApiConfigSource, ConfigSource,
    TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment as ClaProto;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
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
    for lp in [
        LbPolicyProto::RingHash,
        LbPolicyProto::Maglev,
        LbPolicyProto::Random,
    ] {
        let mut p = eds("c");
        p.lb_policy = lp as i32;
        assert_eq!(err(p), (ErrorKind::Unsupported, "lb_policy".into()));
    }
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
    let maglev = "envoy.extensions.load_balancing_policies.maglev.v3.Maglev";
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
