//! Cross-resource validation run after every file of a load has parsed: duplicate resource
//! names, and VirtualService destinations the registry cannot back — a host no ServiceEntry
//! declares, a port the service does not have, a subset no DestinationRule defines. Each would
//! become a route to a cluster the control plane does not serve.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::model::{Kind, MeshConfig, Meta};
use super::ConfigError;
use crate::registry::resolve_host;

fn invalid(meta: &Meta, field: String, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: meta.file.to_string(),
        line: meta.line,
        resource: meta.id(),
        field,
        message,
    }
}

/// Validates a fully parsed configuration.
pub(crate) fn validate(config: &MeshConfig) -> Result<(), ConfigError> {
    let mut seen: HashSet<(Kind, &str, &str)> = HashSet::new();
    let metas = config
        .virtual_services
        .iter()
        .map(|r| &r.meta)
        .chain(config.destination_rules.iter().map(|r| &r.meta))
        .chain(config.service_entries.iter().map(|r| &r.meta))
        .chain(config.workload_entries.iter().map(|r| &r.meta))
        .chain(config.authorization_policies.iter().map(|r| &r.meta))
        .chain(config.request_authentications.iter().map(|r| &r.meta));
    for meta in metas {
        if !seen.insert((meta.kind, &meta.namespace, &meta.name)) {
            return Err(invalid(
                meta,
                "metadata.name".into(),
                format!("duplicate {} `{}/{}`", meta.kind, meta.namespace, meta.name),
            ));
        }
    }

    let known: BTreeSet<&str> = config
        .service_entries
        .iter()
        .flat_map(|se| se.hosts.iter().map(String::as_str))
        .collect();
    let is_known = |h: &str| known.contains(h);
    // (resolved host, subset name) pairs defined by DestinationRules.
    let subsets: HashSet<(String, &str)> = config
        .destination_rules
        .iter()
        .flat_map(|dr| {
            let host = resolve_host(&dr.host, &dr.meta.namespace, is_known);
            dr.subsets
                .iter()
                .map(move |s| (host.clone(), s.name.as_str()))
        })
        .collect();

    // Resolved host → its port numbers.
    let mut ports: HashMap<&str, Vec<u32>> = HashMap::new();
    for se in &config.service_entries {
        for h in &se.hosts {
            ports
                .entry(h.as_str())
                .or_default()
                .extend(se.ports.iter().map(|p| p.number));
        }
    }

    for vs in &config.virtual_services {
        for (i, rule) in vs.http.iter().enumerate() {
            for (j, dest) in rule.route.iter().enumerate() {
                let host = resolve_host(&dest.host, &vs.meta.namespace, is_known);
                // A destination the registry cannot back would be a route to a cluster nobody
                // serves: gRPC fails that route, and the mesh library cannot build the target
                // at all. Reject it here, with the field, instead.
                let Some(service_ports) = ports.get(host.as_str()) else {
                    return Err(invalid(
                        &vs.meta,
                        format!("spec.http[{i}].route[{j}].destination.host"),
                        format!("host `{host}` is not a host of any ServiceEntry"),
                    ));
                };
                if let Some(port) = dest.port.filter(|p| !service_ports.contains(p)) {
                    return Err(invalid(
                        &vs.meta,
                        format!("spec.http[{i}].route[{j}].destination.port.number"),
                        format!("host `{host}` has no port {port}"),
                    ));
                }
                let Some(subset) = &dest.subset else { continue };
                if !subsets.contains(&(host.clone(), subset.as_str())) {
                    return Err(invalid(
                        &vs.meta,
                        format!("spec.http[{i}].route[{j}].destination.subset"),
                        format!("subset `{subset}` of host `{host}` is not defined by any DestinationRule"),
                    ));
                }
            }
        }
    }
    Ok(())
}
