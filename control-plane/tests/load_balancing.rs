//! DestinationRule `trafficPolicy.loadBalancer` → Cluster load-balancing fields and the
//! route's `hash_policy` (istiod puts the hash policy on the route of the destination).

use envoy_types::pb::envoy::config::cluster::v3::cluster::{LbConfig, LbPolicy};
use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action::hash_policy::PolicySpecifier, RouteAction,
};
use mesh_control_plane::{load_str, translate, ConfigError};

const BASE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: a, namespace: demo }
spec:
  hosts: [a.demo]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, labels: { version: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a, namespace: demo }
spec:
  hosts: [a.demo]
  http: [{ route: [{ destination: { host: a.demo } }] }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a, namespace: demo }
spec:
  host: a.demo
"#;

fn route_action(xds: &mesh_control_plane::XdsResources) -> RouteAction {
    let rc = xds.route("a.demo:80").expect("route config");
    match &rc.virtual_hosts[0].routes[0].action {
        Some(Action::Route(a)) => a.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn consistent_hash_maglev_locality_and_subset_random() {
    let yaml = format!(
        "{BASE}  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{ httpHeaderName: x-user, maglev: {{ tableSize: 65537 }} }}\n      localityLbSetting: {{ enabled: true }}\n  subsets:\n  - name: v1\n    labels: {{ version: v1 }}\n    trafficPolicy: {{ loadBalancer: {{ simple: RANDOM }} }}\n"
    );
    let (config, warnings) = load_str("inline", &yaml).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let xds = translate(&config);
    let c = xds.cluster("outbound|80||a.demo").unwrap();
    assert_eq!(c.lb_policy, LbPolicy::Maglev as i32);
    assert!(
        matches!(&c.lb_config, Some(LbConfig::MaglevLbConfig(m)) if m.table_size.unwrap().value == 65537)
    );
    let names: Vec<_> = c
        .load_balancing_policy
        .as_ref()
        .unwrap()
        .policies
        .iter()
        .map(|p| p.typed_extension_config.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.load_balancing_policies.maglev",
            "envoy.load_balancing_policies.ring_hash"
        ],
        "gRPC clients (no MAGLEV) fall back to ring hash"
    );
    assert!(c
        .common_lb_config
        .as_ref()
        .unwrap()
        .locality_config_specifier
        .is_some());
    let v1 = xds.cluster("outbound|80|v1|a.demo").unwrap();
    assert_eq!(v1.lb_policy, LbPolicy::Random as i32);

    // The mesh's own client accepts what the control plane emits.
    let model = mesh_core::model::Cluster::try_from(c.clone()).unwrap();
    assert_eq!(model.lb_policy, mesh_core::model::LbPolicy::maglev());
    assert!(model.lb_common.locality_weighted);

    let action = route_action(&xds);
    assert_eq!(action.hash_policy.len(), 1);
    assert!(matches!(
        &action.hash_policy[0].policy_specifier,
        Some(PolicySpecifier::Header(h)) if h.header_name == "x-user"
    ));
}

#[test]
fn hash_keys_map_to_route_hash_policies() {
    for (key, check) in [
        ("{ useSourceIp: true }", "source_ip"),
        ("{ httpQueryParameterName: user }", "query"),
        ("{ httpCookie: { name: session, ttl: 10s, path: / }, ringHash: { minimumRingSize: 2048 } }", "cookie"),
    ] {
        let yaml = format!("{BASE}  trafficPolicy: {{ loadBalancer: {{ consistentHash: {key} }} }}\n");
        let (config, warnings) = load_str("inline", &yaml).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let xds = translate(&config);
        let c = xds.cluster("outbound|80||a.demo").unwrap();
        assert_eq!(c.lb_policy, LbPolicy::RingHash as i32, "{key}");
        let hp = route_action(&xds).hash_policy;
        match (&hp[0].policy_specifier, check) {
            (Some(PolicySpecifier::ConnectionProperties(p)), "source_ip") => assert!(p.source_ip),
            (Some(PolicySpecifier::QueryParameter(q)), "query") => assert_eq!(q.name, "user"),
            (Some(PolicySpecifier::Cookie(c)), "cookie") => {
                assert_eq!((c.name.as_str(), c.path.as_str()), ("session", "/"));
                assert_eq!(c.ttl.unwrap().seconds, 10);
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn invalid_load_balancers_name_the_field() {
    let field = |tp: &str| -> String {
        let yaml = format!("{BASE}  trafficPolicy: {{ loadBalancer: {tp} }}\n");
        match load_str("inline", &yaml).unwrap_err() {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    };
    let ch = "spec.trafficPolicy.loadBalancer.consistentHash";
    assert_eq!(
        field("{ consistentHash: { httpHeaderName: x, maglev: { tableSize: 65536 } } }"),
        format!("{ch}.maglev.tableSize")
    );
    assert_eq!(
        field("{ consistentHash: { httpHeaderName: x, useSourceIp: true } }"),
        ch
    );
    assert_eq!(field("{ consistentHash: {} }"), ch);
    assert_eq!(
        field("{ simple: RANDOM, consistentHash: { httpHeaderName: x } }"),
        ch
    );
    assert_eq!(
        field("{ consistentHash: { httpHeaderName: x, ringHash: { minimumRingSize: 0 } } }"),
        format!("{ch}.ringHash.minimumRingSize")
    );
    // PASSTHROUGH, and locality failover without outlierDetection, are warned about, not
    // rejected.
    let yaml = format!(
        "{BASE}  trafficPolicy: {{ loadBalancer: {{ simple: PASSTHROUGH, localityLbSetting: {{ failover: [{{ from: a, to: b }}] }} }} }}\n"
    );
    let (_, warnings) = load_str("inline", &yaml).unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("outlierDetection")),
        "{warnings:?}"
    );
}

/// `warmup` / `warmupDurationSecs` → `slow_start_config`, read back by the mesh's own Cluster
/// conversion exactly as configured (the typed least_request policy included), and ignored with
/// a warning for policies without slow start.
#[test]
fn warmup_becomes_slow_start_the_client_reads() {
    use mesh_core::model::{Cluster, SlowStart};
    use std::time::Duration;
    let slow_start = |yaml: &str, cluster: &str| {
        let (config, warnings) = load_str("inline", yaml).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let proto = translate(&config).cluster(cluster).unwrap().clone();
        Cluster::try_from(proto).unwrap().lb_common.slow_start
    };
    let yaml = format!(
        "{BASE}  trafficPolicy:\n    loadBalancer: {{ simple: ROUND_ROBIN, warmupDurationSecs: 45s }}\n  subsets:\n  - name: v1\n    labels: {{ version: v1 }}\n    trafficPolicy: {{ loadBalancer: {{ simple: LEAST_REQUEST, warmup: {{ duration: 30s, minimumPercent: 25, aggression: 2 }} }} }}\n"
    );
    assert_eq!(
        slow_start(&yaml, "outbound|80||a.demo"),
        Some(SlowStart {
            window: Duration::from_secs(45),
            aggression_milli: 1000,
            min_weight_ppm: 100_000,
        })
    );
    assert_eq!(
        slow_start(&yaml, "outbound|80|v1|a.demo"),
        Some(SlowStart {
            window: Duration::from_secs(30),
            aggression_milli: 2000,
            min_weight_ppm: 250_000,
        })
    );
    // RANDOM has no slow start: warned, nothing emitted.
    let yaml = format!("{BASE}  trafficPolicy: {{ loadBalancer: {{ simple: RANDOM, warmupDurationSecs: 45s }} }}\n");
    let (config, warnings) = load_str("inline", &yaml).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.field.ends_with("loadBalancer.warmup")),
        "{warnings:?}"
    );
    let proto = translate(&config)
        .cluster("outbound|80||a.demo")
        .unwrap()
        .clone();
    assert_eq!(Cluster::try_from(proto).unwrap().lb_common.slow_start, None);
    // Bad values name the field.
    let yaml = format!("{BASE}  trafficPolicy: {{ loadBalancer: {{ warmup: {{ duration: 10s, minimumPercent: 120 }} }} }}\n");
    let err = load_str("inline", &yaml).unwrap_err().to_string();
    assert!(err.contains("warmup.minimumPercent"), "{err}");
}
