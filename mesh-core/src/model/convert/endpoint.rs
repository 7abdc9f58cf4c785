//! ClusterLoadAssignment (EDS, or a STATIC cluster's `load_assignment`): gRFC A27; Envoy
//! `endpoint.proto`; grpc-go `unmarshal_eds.go`; XDS-SEMANTICS.md rows 18–19.
//!
//! Endpoints must be IP literals with a `port_value` (hostnames are invalid, pipes and internal
//! addresses unsupported). Endpoint weight 0 is invalid, unset is 1; the endpoint weights of a
//! locality and the locality weights of a priority must each sum to at most `u32::MAX`.
//! Priorities are contiguous from 0; a locality appears once per priority; an address appears once
//! in the whole assignment. `policy.overprovisioning_factor` defaults to 140 and must be above 0.
//! `policy.drop_overloads[]`: every entry is kept, in order, as gRPC does (Envoy accepts only
//! one); `drop_percentage` needs a known denominator, a numerator above it means 100 %, unset
//! means 0 %; the category may be empty (gRPC allows it).

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, Address, HealthStatus as HealthProto,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment as ClaProto, LbEndpoint,
};

use super::{Ctx, Path};
use crate::model::{
    ClusterLoadAssignment, DropOverload, Endpoint, HealthStatus, Locality, LocalityEndpoints,
    ModelError,
};

/// Converts a load assignment sitting at `path` of the resource described by `cx`; `name` is the
/// EDS service name to record.
pub(super) fn load_assignment(
    cx: &Ctx<'_>,
    path: &Path,
    cla: ClaProto,
    name: &str,
) -> Result<ClusterLoadAssignment, ModelError> {
    let mut seen_addrs = HashSet::new();
    let mut seen_localities: HashSet<(u32, Locality)> = HashSet::new();
    // Per priority: sum of locality weights.
    let mut priority_weights: BTreeMap<u32, u64> = BTreeMap::new();
    let mut localities = Vec::with_capacity(cla.endpoints.len());
    for (i, lle) in cla.endpoints.into_iter().enumerate() {
        let lp = path.index("endpoints", i);
        let locality = lle
            .locality
            .map(|l| Locality {
                region: l.region.into(),
                zone: l.zone.into(),
                sub_zone: l.sub_zone.into(),
            })
            .unwrap_or_default();
        if !seen_localities.insert((lle.priority, locality.clone())) {
            return Err(cx.invalid(
                &lp.field("locality"),
                format!("duplicate locality in priority {}", lle.priority),
            ));
        }
        let weight = lle.load_balancing_weight.map(|w| w.value);
        let total = priority_weights.entry(lle.priority).or_default();
        *total += u64::from(weight.unwrap_or(0));
        if *total > u64::from(u32::MAX) {
            return Err(cx.invalid(
                &lp.field("load_balancing_weight"),
                format!(
                    "locality weights of priority {} exceed 2^32-1",
                    lle.priority
                ),
            ));
        }
        let mut endpoints = Vec::with_capacity(lle.lb_endpoints.len());
        let mut sum: u64 = 0;
        for (j, lbe) in lle.lb_endpoints.iter().enumerate() {
            let ep_path = lp.index("lb_endpoints", j);
            let ep = endpoint(cx, &ep_path, lbe)?;
            if !seen_addrs.insert(ep.address) {
                return Err(cx.invalid(
                    &ep_path.field("endpoint").field("address"),
                    format!("duplicate endpoint address {}", ep.address),
                ));
            }
            sum += u64::from(ep.weight);
            if sum > u64::from(u32::MAX) {
                return Err(cx.invalid(
                    &ep_path.field("load_balancing_weight"),
                    "endpoint weights of the locality exceed 2^32-1",
                ));
            }
            endpoints.push(ep);
        }
        localities.push(LocalityEndpoints {
            locality,
            weight,
            priority: lle.priority,
            endpoints: endpoints.into(),
        });
    }
    // Priorities must be 0..=max with no gap.
    for (expected, p) in priority_weights.keys().enumerate() {
        if u64::try_from(expected).ok() != Some(u64::from(*p)) {
            return Err(cx.invalid(
                &path.field("endpoints"),
                format!("priorities not contiguous from 0: missing priority {expected}"),
            ));
        }
    }
    let overprovisioning_factor = match cla.policy.as_ref().and_then(|p| p.overprovisioning_factor)
    {
        None => ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
        Some(f) if f.value == 0 => {
            return Err(cx.invalid(
                &path.field("policy").field("overprovisioning_factor"),
                "must be above 0",
            ))
        }
        Some(f) => f.value,
    };
    let mut drop_overloads = Vec::new();
    if let Some(policy) = &cla.policy {
        for (i, d) in policy.drop_overloads.iter().enumerate() {
            let p = path.field("policy").field(&format!("drop_overloads[{i}]"));
            let pct =
                super::fault::percent(cx, &p.field("drop_percentage"), d.drop_percentage.as_ref())?;
            drop_overloads.push(DropOverload {
                category: d.category.as_str().into(),
                per_million: pct.per_million(),
            });
        }
    }
    Ok(ClusterLoadAssignment {
        cluster_name: name.into(),
        localities: localities.into(),
        overprovisioning_factor,
        drop_overloads: drop_overloads.into(),
    })
}

fn endpoint(cx: &Ctx<'_>, path: &Path, lbe: &LbEndpoint) -> Result<Endpoint, ModelError> {
    let ep = match &lbe.host_identifier {
        Some(HostIdentifier::Endpoint(ep)) => ep,
        Some(HostIdentifier::EndpointName(_)) => {
            return Err(cx.unsupported(
                &path.field("endpoint_name"),
                "named endpoints not supported",
            ))
        }
        None => return Err(cx.invalid(&path.field("endpoint"), "missing")),
    };
    let address = socket_addr(
        cx,
        &path.field("endpoint").field("address"),
        ep.address.as_ref(),
    )?;
    let health = match HealthProto::try_from(lbe.health_status) {
        Ok(HealthProto::Unknown) => HealthStatus::Unknown,
        Ok(HealthProto::Healthy) => HealthStatus::Healthy,
        Ok(HealthProto::Unhealthy | HealthProto::Timeout) => HealthStatus::Unhealthy,
        Ok(HealthProto::Draining) => HealthStatus::Draining,
        Ok(HealthProto::Degraded) => HealthStatus::Degraded,
        Err(_) => {
            return Err(cx.invalid(
                &path.field("health_status"),
                format!("unknown health status {}", lbe.health_status),
            ))
        }
    };
    let weight = match &lbe.load_balancing_weight {
        None => 1,
        Some(w) if w.value == 0 => {
            return Err(cx.invalid(&path.field("load_balancing_weight"), "must not be 0"))
        }
        Some(w) => w.value,
    };
    Ok(Endpoint {
        address,
        health,
        weight,
    })
}

fn socket_addr(
    cx: &Ctx<'_>,
    path: &Path,
    addr: Option<&Address>,
) -> Result<SocketAddr, ModelError> {
    let sa = match addr.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => sa,
        Some(address::Address::Pipe(_)) => {
            return Err(cx.unsupported(&path.field("pipe"), "pipe addresses not supported"))
        }
        Some(address::Address::EnvoyInternalAddress(_)) => {
            return Err(cx.unsupported(
                &path.field("envoy_internal_address"),
                "envoy internal addresses not supported",
            ))
        }
        None => return Err(cx.invalid(path, "missing")),
    };
    let sp = path.field("socket_address");
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        cx.invalid(
            &sp.field("address"),
            format!("`{}` is not an IP address", sa.address),
        )
    })?;
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p)
            .map_err(|_| cx.invalid(&sp.field("port_value"), format!("port {p} out of range")))?,
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(cx.unsupported(&sp.field("named_port"), "named ports not supported"))
        }
        None => return Err(cx.invalid(&sp.field("port_value"), "missing")),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
