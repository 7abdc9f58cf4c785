//! Clusters and load assignments: istiod `grpcgen/cds.go` (`outbound|port|subset|host` EDS
//! clusters over ADS, one per DestinationRule subset) and the EDS it serves for them.
//!
//! Load-balancing fields come from [`super::load_balancer`] (LEAST_REQUEST per
//! istio/istio#58052 and gRFC A48/A52, RANDOM, RING_HASH / MAGLEV, locality weighting); pool
//! limits and outlier detection from [`super::outlier`]; the transport socket for DestinationRule
//! `tls` from [`super::tls`].

use std::collections::{BTreeMap, HashSet};

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
    Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, socket_address::Protocol, Address, HealthStatus,
    Locality, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::locality::{add_topology_labels, LocalityPlan};
use super::{ads_config_source, load_balancer};
use crate::registry::{Registry, Service};
use crate::source::model::{
    DestinationRule, Labels, Locality as Loc, MeshConfig, Resilience, ServicePort,
};

/// A cluster, its load assignment and, when clients may see it reshaped, its locality plan.
pub(crate) type Built = (Cluster, ClusterLoadAssignment, Option<LocalityPlan>);

/// `outbound|port|subset|host` — istio's cluster (and EDS service) name.
pub fn cluster_name(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// The DestinationRule for `host`: the first by `namespace/name` whose host resolves to it.
pub(crate) fn destination_rule_for<'c>(
    config: &'c MeshConfig,
    registry: &Registry,
    host: &str,
) -> Option<&'c DestinationRule> {
    config
        .destination_rules
        .iter()
        .filter(|dr| registry.resolve(&dr.host, &dr.meta.namespace) == host)
        .min_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)))
}

/// The default cluster and one per subset for `svc`'s `port`, each with its load assignment.
pub(crate) fn clusters(
    svc: &Service,
    port: &ServicePort,
    dr: Option<&DestinationRule>,
    trust_domain: &str,
) -> Vec<Built> {
    let default_max = dr.and_then(|d| d.max_requests);
    let default_res = dr.map(|d| d.resilience.clone()).unwrap_or_default();
    let empty = Labels::new();
    let mut out = vec![build(svc, port, "", &empty, dr, default_max, &default_res)];
    let mut subsets = vec![""];
    for subset in dr.map(|d| d.subsets.as_slice()).unwrap_or_default() {
        let max = subset.max_requests.or(default_max);
        let res = subset.resilience.or(&default_res);
        out.push(build(
            svc,
            port,
            &subset.name,
            &subset.labels,
            dr,
            max,
            &res,
        ));
        subsets.push(&subset.name);
    }
    for ((c, _, _), subset) in out.iter_mut().zip(subsets) {
        let tls = super::tls::effective(dr, subset, port.number);
        super::tls::apply(c, tls, svc, trust_domain);
    }
    out
}

fn build(
    svc: &Service,
    port: &ServicePort,
    subset: &str,
    labels: &Labels,
    dr: Option<&DestinationRule>,
    max_requests: Option<u32>,
    resilience: &Resilience,
) -> Built {
    let name = cluster_name(port.number, subset, &svc.host);
    let mut c = cluster(&name);
    let (lb, locality_weighted) = load_balancer::effective(dr, subset);
    load_balancer::apply(&mut c, &lb, locality_weighted);
    load_balancer::apply_warmup(&mut c, load_balancer::effective_warmup(dr, subset));
    super::outlier::apply(&mut c, max_requests, resilience);
    let (cla, endpoint_labels) = load_assignment(&name, svc, port, labels);
    let setting = dr.and_then(|d| {
        d.subsets
            .iter()
            .find(|s| s.name == subset)
            .and_then(|s| s.locality_lb.as_ref())
            .or(d.locality_lb.as_ref())
    });
    let plan = LocalityPlan::new(
        setting,
        resilience.outlier_detection.is_some(),
        endpoint_labels,
    );
    (c, cla, plan)
}

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: name.to_string(),
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

/// The assignment (endpoints matching `labels`, grouped by locality, sorted by locality, each
/// weighted by its endpoint count) and, per locality, the labels of its endpoints with their
/// topology labels (for `failoverPriority`).
fn load_assignment(
    name: &str,
    svc: &Service,
    port: &ServicePort,
    labels: &Labels,
) -> (ClusterLoadAssignment, Vec<Vec<Labels>>) {
    let mut seen = HashSet::new();
    let mut groups: BTreeMap<&Loc, (Vec<LbEndpoint>, Vec<Labels>)> = BTreeMap::new();
    for e in svc.endpoints.iter().filter(|e| e.matches(labels)) {
        let port_value = e.port_for(port);
        // gRPC NACKs a cluster with a duplicate endpoint address (gRFC A27 / grpc-go EDS).
        if !seen.insert((e.address.clone(), port_value)) {
            continue;
        }
        let lbe = LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        protocol: Protocol::Tcp as i32,
                        address: e.address.clone(),
                        port_specifier: Some(PortSpecifier::PortValue(port_value)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            health_status: HealthStatus::Healthy as i32,
            ..Default::default()
        };
        let mut l = e.labels.clone();
        add_topology_labels(&mut l, &e.locality);
        let g = groups.entry(&e.locality).or_default();
        g.0.push(lbe);
        g.1.push(l);
    }
    let mut endpoint_labels = Vec::with_capacity(groups.len());
    let endpoints = groups
        .into_iter()
        .map(|(loc, (lb_endpoints, l))| {
            endpoint_labels.push(l);
            LocalityLbEndpoints {
                locality: Some(Locality {
                    region: loc.region.clone(),
                    zone: loc.zone.clone(),
                    sub_zone: loc.sub_zone.clone(),
                }),
                load_balancing_weight: Some(UInt32Value {
                    value: u32::try_from(lb_endpoints.len()).unwrap_or(u32::MAX),
                }),
                lb_endpoints,
                priority: 0,
                ..Default::default()
            }
        })
        .collect();
    (
        ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints,
            ..Default::default()
        },
        endpoint_labels,
    )
}
