//! Clusters and load assignments: istiod `grpcgen/cds.go` (`outbound|port|subset|host` EDS
//! clusters over ADS, one per DestinationRule subset) and the EDS it serves for them.
//!
//! Load-balancing fields come from [`super::load_balancer`] (LEAST_REQUEST per
//! istio/istio#58052 and gRFC A48/A52, RANDOM, RING_HASH / MAGLEV, locality weighting); pool
//! limits and outlier detection from [`super::outlier`]; the transport socket for DestinationRule
//! `tls` from [`super::tls`].

use std::collections::HashSet;

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

use super::{ads_config_source, load_balancer};
use crate::registry::{Registry, Service};
use crate::source::model::{DestinationRule, Labels, MeshConfig, Resilience, ServicePort};

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
) -> Vec<(Cluster, ClusterLoadAssignment)> {
    let default_max = dr.and_then(|d| d.max_requests);
    let default_res = dr.map(|d| d.resilience.clone()).unwrap_or_default();
    let empty = Labels::new();
    let mut out = vec![build(svc, port, "", &empty, dr, default_max, &default_res)];
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
) -> (Cluster, ClusterLoadAssignment) {
    let name = cluster_name(port.number, subset, &svc.host);
    let mut c = cluster(&name);
    let (lb, locality_weighted) = load_balancer::effective(dr, subset);
    load_balancer::apply(&mut c, &lb, locality_weighted);
    super::outlier::apply(&mut c, max_requests, resilience);
    super::tls::apply(&mut c, super::tls::effective(dr, subset, port.number), svc);
    (c, load_assignment(&name, svc, port, labels))
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

fn load_assignment(
    name: &str,
    svc: &Service,
    port: &ServicePort,
    labels: &Labels,
) -> ClusterLoadAssignment {
    let mut seen = HashSet::new();
    let lb_endpoints: Vec<LbEndpoint> = svc
        .endpoints
        .iter()
        .filter(|e| e.matches(labels))
        .map(|e| (e.address.clone(), e.port_for(port)))
        // gRPC NACKs a cluster with a duplicate endpoint address (gRFC A27 / grpc-go EDS).
        .filter(|key| seen.insert(key.clone()))
        .map(|(address, port_value)| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        protocol: Protocol::Tcp as i32,
                        address,
                        port_specifier: Some(PortSpecifier::PortValue(port_value)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            health_status: HealthStatus::Healthy as i32,
            ..Default::default()
        })
        .collect();
    let endpoints = if lb_endpoints.is_empty() {
        Vec::new()
    } else {
        vec![LocalityLbEndpoints {
            locality: Some(Locality::default()),
            lb_endpoints,
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            priority: 0,
            ..Default::default()
        }]
    };
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints,
        ..Default::default()
    }
}
