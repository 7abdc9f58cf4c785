use envoy_types::pb::envoy::config::core::v3::{
    socket_address::PortSpecifier, Address, Locality as LocalityProto, Pipe, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, Endpoint as EndpointProto, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::*;
use crate::model::{ErrorKind, ModelError};

fn ep(addr: &str, port: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EndpointProto {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: addr.into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn loc(
    zone: &str,
    priority: u32,
    weight: Option<u32>,
    eps: Vec<LbEndpoint>,
) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: Some(LocalityProto {
            zone: zone.into(),
            ..Default::default()
        }),
        priority,
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        lb_endpoints: eps,
        ..Default::default()
    }
}

fn cla(locs: Vec<LocalityLbEndpoints>) -> ClaProto {
    ClaProto {
        cluster_name: "svc".into(),
        endpoints: locs,
        ..Default::default()
    }
}

fn convert(c: ClaProto) -> Result<ClusterLoadAssignment, ModelError> {
    ClusterLoadAssignment::try_from(c)
}

fn err(c: ClaProto) -> (ErrorKind, String) {
    let e = convert(c).unwrap_err();
    assert_eq!(&*e.resource, "svc");
    (e.kind, e.field)
}

#[test]
fn happy_path() {
    let mut e2 = ep("::1", 8080);
    e2.health_status = HealthProto::Draining as i32;
    e2.load_balancing_weight = Some(UInt32Value { value: 3 });
    let c = convert(cla(vec![
        loc("a", 0, Some(10), vec![ep("10.0.0.1", 80), e2]),
        loc("b", 1, None, vec![ep("10.0.0.2", 80)]),
        loc("a", 1, None, vec![ep("10.0.0.3", 80)]),
    ]))
    .unwrap();
    assert_eq!(&*c.cluster_name, "svc");
    assert_eq!(c.localities.len(), 3);
    let l0 = &c.localities[0];
    assert_eq!(
        (l0.weight, l0.priority, &*l0.locality.zone),
        (Some(10), 0, "a")
    );
    assert_eq!(l0.endpoints[0].address, "10.0.0.1:80".parse().unwrap());
    assert_eq!(l0.endpoints[0].weight, 1);
    assert_eq!(l0.endpoints[0].health, HealthStatus::Unknown);
    assert_eq!(l0.endpoints[1].address, "[::1]:8080".parse().unwrap());
    assert_eq!(l0.endpoints[1].health, HealthStatus::Draining);
    assert_eq!(l0.endpoints[1].weight, 3);
    assert_eq!(c.localities[1].weight, None);
}

#[test]
fn health_mapping() {
    for (proto, want) in [
        (HealthProto::Healthy, HealthStatus::Healthy),
        (HealthProto::Unhealthy, HealthStatus::Unhealthy),
        (HealthProto::Timeout, HealthStatus::Unhealthy),
        (HealthProto::Degraded, HealthStatus::Degraded),
    ] {
        let mut e = ep("1.2.3.4", 1);
        e.health_status = proto as i32;
        let c = convert(cla(vec![loc("a", 0, None, vec![e])])).unwrap();
        assert_eq!(c.localities[0].endpoints[0].health, want);
    }
    let mut e = ep("1.2.3.4", 1);
    e.health_status = 42;
    assert_eq!(
        err(cla(vec![loc("a", 0, None, vec![e])])),
        (
            ErrorKind::Invalid,
            "endpoints[0].lb_endpoints[0].health_status".into()
        )
    );
}

#[test]
fn address_rules() {
    let field = "endpoints[0].lb_endpoints[1].endpoint.address";
    assert_eq!(
        err(cla(vec![loc(
            "a",
            0,
            None,
            vec![ep("1.1.1.1", 1), ep("foo.example", 80)]
        )])),
        (
            ErrorKind::Invalid,
            format!("{field}.socket_address.address")
        )
    );
    assert_eq!(
        err(cla(vec![loc(
            "a",
            0,
            None,
            vec![ep("1.1.1.1", 1), ep("1.1.1.2", 70000)]
        )])),
        (
            ErrorKind::Invalid,
            format!("{field}.socket_address.port_value")
        )
    );
    let mut pipe = ep("x", 0);
    if let Some(HostIdentifier::Endpoint(e)) = &mut pipe.host_identifier {
        e.address = Some(Address {
            address: Some(address::Address::Pipe(Pipe::default())),
        });
    }
    assert_eq!(
        err(cla(vec![loc("a", 0, None, vec![ep("1.1.1.1", 1), pipe])])),
        (ErrorKind::Unsupported, format!("{field}.pipe"))
    );
    assert_eq!(
        err(cla(vec![loc("a", 0, None, vec![LbEndpoint::default()])])),
        (
            ErrorKind::Invalid,
            "endpoints[0].lb_endpoints[0].endpoint".into()
        )
    );
}

#[test]
fn weight_rules() {
    let mut zero = ep("1.1.1.1", 1);
    zero.load_balancing_weight = Some(UInt32Value { value: 0 });
    assert_eq!(
        err(cla(vec![loc("a", 0, None, vec![zero])])),
        (
            ErrorKind::Invalid,
            "endpoints[0].lb_endpoints[0].load_balancing_weight".into()
        )
    );
    let mut big1 = ep("1.1.1.1", 1);
    big1.load_balancing_weight = Some(UInt32Value { value: u32::MAX });
    let mut big2 = ep("1.1.1.2", 1);
    big2.load_balancing_weight = Some(UInt32Value { value: 1 });
    assert_eq!(
        err(cla(vec![loc("a", 0, None, vec![big1, big2])])),
        (
            ErrorKind::Invalid,
            "endpoints[0].lb_endpoints[1].load_balancing_weight".into()
        )
    );
    assert_eq!(
        err(cla(vec![
            loc("a", 0, Some(u32::MAX), vec![ep("1.1.1.1", 1)]),
            loc("b", 0, Some(1), vec![ep("1.1.1.2", 1)]),
        ])),
        (
            ErrorKind::Invalid,
            "endpoints[1].load_balancing_weight".into()
        )
    );
}

#[test]
fn structure_rules() {
    assert_eq!(
        err(cla(vec![
            loc("a", 0, None, vec![ep("1.1.1.1", 1)]),
            loc("b", 2, None, vec![ep("1.1.1.2", 1)]),
        ])),
        (ErrorKind::Invalid, "endpoints".into())
    );
    assert_eq!(
        err(cla(vec![loc("a", 1, None, vec![ep("1.1.1.1", 1)])])),
        (ErrorKind::Invalid, "endpoints".into())
    );
    assert_eq!(
        err(cla(vec![
            loc("a", 0, None, vec![ep("1.1.1.1", 1)]),
            loc("a", 0, None, vec![ep("1.1.1.2", 1)]),
        ])),
        (ErrorKind::Invalid, "endpoints[1].locality".into())
    );
    assert_eq!(
        err(cla(vec![
            loc("a", 0, None, vec![ep("1.1.1.1", 1)]),
            loc("b", 1, None, vec![ep("1.1.1.1", 1)]),
        ])),
        (
            ErrorKind::Invalid,
            "endpoints[1].lb_endpoints[0].endpoint.address".into()
        )
    );
    let mut unnamed = cla(vec![]);
    unnamed.cluster_name.clear();
    let e = convert(unnamed).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Invalid, "cluster_name")
    );
    // An empty assignment is valid (the cluster then has no endpoints).
    assert!(convert(cla(vec![])).unwrap().localities.is_empty());
}

#[test]
fn drop_overloads_are_kept_in_order_and_bad_ones_name_the_field() {
    use envoy_types::pb::envoy::config::endpoint::v3::cluster_load_assignment::{
        policy::DropOverload as DropProto, Policy,
    };
    use envoy_types::pb::envoy::r#type::v3::{
        fractional_percent::DenominatorType, FractionalPercent,
    };
    let drop = |category: &str, numerator: u32, denominator: DenominatorType| DropProto {
        category: category.into(),
        drop_percentage: Some(FractionalPercent {
            numerator,
            denominator: denominator as i32,
        }),
    };
    let with = |drops: Vec<DropProto>| {
        let mut c = cla(vec![loc("a", 0, None, vec![ep("10.0.0.1", 80)])]);
        c.policy = Some(Policy {
            drop_overloads: drops,
            ..Default::default()
        });
        c
    };
    let c = convert(with(vec![
        drop("throttle", 5, DenominatorType::Hundred),
        drop("lb", 250, DenominatorType::Million),
        drop("all", 200, DenominatorType::Hundred),
    ]))
    .unwrap();
    let got: Vec<(&str, u32)> = c
        .drop_overloads
        .iter()
        .map(|d| (&*d.category, d.per_million))
        .collect();
    assert_eq!(
        got,
        vec![("throttle", 50_000), ("lb", 250), ("all", 1_000_000)]
    );
    // No policy: nothing dropped.
    assert!(
        convert(cla(vec![loc("a", 0, None, vec![ep("10.0.0.1", 80)])]))
            .unwrap()
            .drop_overloads
            .is_empty()
    );
    let mut bad = drop("x", 1, DenominatorType::Hundred);
    bad.drop_percentage.as_mut().unwrap().denominator = 7;
    let (kind, field) = err(with(vec![drop("ok", 1, DenominatorType::Hundred), bad]));
    assert_eq!(kind, ErrorKind::Invalid);
    assert_eq!(
        field,
        "policy.drop_overloads[1].drop_percentage.denominator"
    );
}
