//! Per-client locality reshaping, from YAML through translation to the assignment a client in a
//! given locality is sent.

use envoy_types::pb::envoy::config::core::v3::{address, Node};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment,
};

use super::ClientLocality;
use crate::source::model::{Labels, Locality};
use crate::translate::{translate, XdsResources};

const CLUSTER: &str = "outbound|80||svc.test";

/// A service with one WorkloadEntry per `(ip, locality, extra labels)` and `dr_policy` as the
/// DestinationRule's `trafficPolicy` (YAML, indented under it).
fn config(endpoints: &[(&str, &str, &str)], dr_policy: &str) -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: svc }\n\
         spec:\n  hosts: [svc.test]\n  ports: [{ number: 80, name: http }]\n  \
         workloadSelector: { labels: { app: svc } }\n",
    );
    for (i, (ip, loc, labels)) in endpoints.iter().enumerate() {
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{ name: w{i} }}\n\
             spec:\n  address: {ip}\n  locality: \"{loc}\"\n  labels: {{ app: svc{labels} }}\n"
        );
    }
    if !dr_policy.is_empty() {
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: svc }}\n\
             spec:\n  host: svc.test\n  trafficPolicy:\n{dr_policy}"
        );
    }
    y
}

fn xds(yaml: &str) -> XdsResources {
    translate(&crate::load_str("t.yaml", yaml).unwrap().0)
}

fn client(loc: &str) -> ClientLocality {
    let p: Vec<&str> = loc.split('/').collect();
    let g = |i: usize| p.get(i).copied().unwrap_or("");
    ClientLocality::new(Locality::new(g(0), g(1), g(2)), Labels::new())
}

fn reshaped(x: &XdsResources, c: &ClientLocality) -> ClusterLoadAssignment {
    let cla = x.endpoint(CLUSTER).unwrap();
    match x.locality_plans.get(CLUSTER) {
        Some(p) => p.apply(cla, c),
        None => cla.clone(),
    }
}

/// `(priority, locality, weight, [last octet of each address])`, in assignment order.
fn shape(cla: &ClusterLoadAssignment) -> Vec<(u32, String, u32, Vec<String>)> {
    cla.endpoints
        .iter()
        .map(|e| {
            let l = e.locality.clone().unwrap_or_default();
            let loc = Locality::new(&l.region, &l.zone, &l.sub_zone).to_string();
            let addrs = e
                .lb_endpoints
                .iter()
                .map(|lbe| match &lbe.host_identifier {
                    Some(HostIdentifier::Endpoint(ep)) => {
                        match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                            Some(address::Address::SocketAddress(sa)) => {
                                sa.address.rsplit('.').next().unwrap_or("").to_string()
                            }
                            _ => String::new(),
                        }
                    }
                    _ => String::new(),
                })
                .collect();
            (
                e.priority,
                loc,
                e.load_balancing_weight.as_ref().map_or(0, |w| w.value),
                addrs,
            )
        })
        .collect()
}

const OD: &str =
    "    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s }\n";

fn four_regions() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("10.0.0.1", "r1/z1", ""),
        ("10.0.0.2", "r1/z1", ""),
        ("10.0.0.3", "r1/z2", ""),
        ("10.0.0.4", "r2/z3", ""),
        ("10.0.0.5", "r3/z4", ""),
    ]
}

#[test]
fn endpoints_grouped_by_locality_weighted_by_count() {
    let x = xds(&config(&four_regions(), ""));
    let got = shape(x.endpoint(CLUSTER).unwrap());
    assert_eq!(
        got,
        [
            (0, "r1/z1".into(), 2, vec!["1".into(), "2".into()]),
            (0, "r1/z2".into(), 1, vec!["3".into()]),
            (0, "r2/z3".into(), 1, vec!["4".into()]),
            (0, "r3/z4".into(), 1, vec!["5".into()]),
        ]
    );
    // No DestinationRule: no outlier detection, so no failover and no plan (istiod's rule).
    assert!(x.locality_plans.is_empty());
}

#[test]
fn default_failover_needs_outlier_detection() {
    // Mesh default (localityLbSetting absent ⇒ enabled) + outlierDetection ⇒ failover.
    let x = xds(&config(&four_regions(), OD));
    let got: Vec<(u32, String)> = shape(&reshaped(&x, &client("r1/z1")))
        .into_iter()
        .map(|(p, l, _, _)| (p, l))
        .collect();
    // 0 same zone, (1 same sub-zone absent), 2 same region → 1, 3 other regions → 2.
    assert_eq!(
        got,
        [
            (0, "r1/z1".into()),
            (1, "r1/z2".into()),
            (2, "r2/z3".into()),
            (2, "r3/z4".into())
        ]
    );
    // Explicitly disabled: no plan.
    let off = format!("    loadBalancer: {{ localityLbSetting: {{ enabled: false }} }}\n{OD}");
    assert!(xds(&config(&four_regions(), &off))
        .locality_plans
        .is_empty());
    // failover without outlier detection: no plan, and a warning naming the field.
    let no_od =
        "    loadBalancer:\n      localityLbSetting:\n        failover: [{ from: r1, to: r2 }]\n";
    let (cfg, warnings) = crate::load_str("t.yaml", &config(&four_regions(), no_od)).unwrap();
    assert!(translate(&cfg).locality_plans.is_empty());
    assert!(
        warnings.iter().any(
            |w| w.field == "spec.trafficPolicy.loadBalancer.localityLbSetting"
                && w.message.contains("outlierDetection")
        ),
        "{warnings:?}"
    );
}

#[test]
fn failover_region_comes_before_the_rest() {
    let policy = format!(
        "    loadBalancer:\n      localityLbSetting:\n        failover: [{{ from: r1, to: r3 }}]\n{OD}"
    );
    let x = xds(&config(&four_regions(), &policy));
    let got: Vec<(u32, String)> = shape(&reshaped(&x, &client("r1/z1")))
        .into_iter()
        .map(|(p, l, _, _)| (p, l))
        .collect();
    assert_eq!(
        got,
        [
            (0, "r1/z1".into()),
            (1, "r1/z2".into()),
            (2, "r3/z4".into()),
            (3, "r2/z3".into())
        ]
    );
    // A client in r2 has no failover rule: r1 and r3 share the last level.
    let got: Vec<u32> = shape(&reshaped(&x, &client("r2/z3")))
        .into_iter()
        .map(|(p, ..)| p)
        .collect();
    assert_eq!(got, [0, 1, 1, 1]);
    // No locality: the shared assignment.
    let shared = x.endpoint(CLUSTER).unwrap();
    assert_eq!(&reshaped(&x, &ClientLocality::default()), shared);
}

#[test]
fn distribute_sets_weights_and_drops_unlisted_localities() {
    let policy = "    loadBalancer:\n      localityLbSetting:\n        distribute:\n        \
                  - from: r1/z1/*\n          to: { \"r1/z1/*\": 70, \"r2/*\": 30 }\n        \
                  - from: r2/*\n          to: { \"r1/*\": 100 }\n";
    let x = xds(&config(&four_regions(), policy));
    let got = shape(&reshaped(&x, &client("r1/z1/s")));
    assert_eq!(
        got,
        [
            (0, "r1/z1".into(), 70, vec!["1".into(), "2".into()]),
            (0, "r2/z3".into(), 30, vec!["4".into()]),
        ]
    );
    // r1/* spreads 100 over r1/z1 (2 endpoints) and r1/z2 (1): ceil(66.7), ceil(33.3).
    let got: Vec<(String, u32)> = shape(&reshaped(&x, &client("r2/z9")))
        .into_iter()
        .map(|(_, l, w, _)| (l, w))
        .collect();
    assert_eq!(got, [("r1/z1".into(), 67), ("r1/z2".into(), 34)]);
    // A client no `from` matches keeps the shared assignment.
    assert_eq!(
        &reshaped(&x, &client("r3/z4")),
        x.endpoint(CLUSTER).unwrap()
    );
}

#[test]
fn failover_priority_by_labels() {
    let eps = [
        ("10.0.0.1", "r1/z1", ", net: n1, tier: a"),
        ("10.0.0.2", "r1/z1", ", net: n1, tier: b"),
        ("10.0.0.3", "r1/z1", ", net: n2, tier: a"),
        ("10.0.0.4", "r2/z1", ", net: n1, tier: a"),
    ];
    let policy = format!(
        "    loadBalancer:\n      localityLbSetting:\n        failoverPriority: [net, tier]\n{OD}"
    );
    let x = xds(&config(&eps, &policy));
    let mut labels = Labels::new();
    labels.insert("net".into(), "n1".into());
    labels.insert("tier".into(), "a".into());
    let c = ClientLocality::new(Locality::new("r1", "z1", ""), labels);
    let got: Vec<(u32, String, u32, Vec<String>)> = shape(&reshaped(&x, &c));
    // Both labels match → 0 (1 and 4, in two localities); net only → 1; net differs → 2.
    assert_eq!(
        got,
        [
            (0, "r1/z1".into(), 1, vec!["1".into()]),
            (0, "r2/z1".into(), 1, vec!["4".into()]),
            (1, "r1/z1".into(), 1, vec!["2".into()]),
            (2, "r1/z1".into(), 1, vec!["3".into()]),
        ]
    );
    // A fixed value (`net=n2`) wins over the client's own label.
    let policy = format!(
        "    loadBalancer:\n      localityLbSetting:\n        failoverPriority: [\"net=n2\"]\n{OD}"
    );
    let x = xds(&config(&eps, &policy));
    let got: Vec<(u32, Vec<String>)> = shape(&reshaped(&x, &c))
        .into_iter()
        .map(|(p, _, _, a)| (p, a))
        .collect();
    assert_eq!(
        got,
        [
            (0, vec!["3".into()]),
            (1, vec!["1".into(), "2".into()]),
            (1, vec!["4".into()])
        ]
    );
    // The topology labels come from localities: region first, as a locality failover would.
    let policy = format!(
        "    loadBalancer:\n      localityLbSetting:\n        failoverPriority: [topology.kubernetes.io/region]\n{OD}"
    );
    let x = xds(&config(&eps, &policy));
    let got: Vec<u32> = shape(&reshaped(&x, &client("r2/z1")))
        .into_iter()
        .map(|(p, ..)| p)
        .collect();
    assert_eq!(got, [0, 1]);
}

#[test]
fn client_locality_from_node() {
    use envoy_types::pb::envoy::config::core::v3::Locality as Pb;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    let labels = Struct {
        fields: [
            ("app".to_string(), s("x")),
            (
                "n".to_string(),
                Value {
                    kind: Some(Kind::NumberValue(1.0)),
                },
            ),
        ]
        .into_iter()
        .collect(),
    };
    let node = Node {
        locality: Some(Pb {
            region: "r".into(),
            zone: "z".into(),
            sub_zone: String::new(),
        }),
        metadata: Some(Struct {
            fields: [(
                "LABELS".to_string(),
                Value {
                    kind: Some(Kind::StructValue(labels)),
                },
            )]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    };
    let c = ClientLocality::from_node(&node);
    assert_eq!(c.locality.to_string(), "r/z");
    assert_eq!(c.labels.get("app").map(String::as_str), Some("x"));
    assert_eq!(c.labels.get("n"), None, "non-string labels are ignored");
    assert_eq!(
        c.labels
            .get("topology.kubernetes.io/zone")
            .map(String::as_str),
        Some("z")
    );
    assert!(ClientLocality::from_node(&Node::default()).is_empty());
}

#[test]
fn bad_settings_are_errors_naming_the_field() {
    let cases = [
        (
            "        distribute: [{ from: r1, to: { r1: 50, r2: 40 } }]\n",
            "total locality weight 90 != 100",
        ),
        ("        distribute: [{ from: r1, to: { r1: 0, r2: 100 } }]\n", "out of range"),
        ("        distribute: [{ from: \"r1/*/z\", to: { r1: 100 } }]\n", "only at the end"),
        ("        distribute: [{ from: \"r1//z\", to: { r1: 100 } }]\n", "empty region/zone"),
        ("        distribute: [{ from: r1, to: { r1: 50, \"r1/z\": 50 } }]\n", "overlaps"),
        ("        failover: [{ from: r1, to: r1 }]\n", "different regions"),
        ("        failover: [{ from: r1, to: r2/z }]\n", "region only"),
        (
            "        failover: [{ from: r1, to: r2 }]\n        distribute: [{ from: r1, to: { r1: 100 } }]\n",
            "simultaneously",
        ),
        (
            "        failover: [{ from: r1, to: r2 }]\n        failoverPriority: [topology.kubernetes.io/zone]\n",
            "topology label",
        ),
        ("        failoverPriority: [\"a=b=c\"]\n", "name=value"),
    ];
    for (setting, want) in cases {
        let policy = format!("    loadBalancer:\n      localityLbSetting:\n{setting}{OD}");
        let err = crate::load_str("t.yaml", &config(&four_regions(), &policy))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{setting}: {err}");
        assert!(err.contains("DestinationRule/default/svc"), "{err}");
        assert!(err.contains("localityLbSetting"), "{err}");
    }
    // A malformed endpoint locality names the WorkloadEntry and its field.
    let err = crate::load_str("t.yaml", &config(&[("10.0.0.1", "r1//z", "")], ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("WorkloadEntry/default/w0"), "{err}");
    assert!(err.contains("spec.locality"), "{err}");
}
