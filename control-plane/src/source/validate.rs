//! Cross-resource validation run after every file of a load has parsed: duplicate resource
//! names, and VirtualService destinations naming a subset that no DestinationRule defines.

use std::collections::{BTreeSet, HashSet};

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
        .chain(config.workload_entries.iter().map(|r| &r.meta));
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

    for vs in &config.virtual_services {
        for (i, rule) in vs.http.iter().enumerate() {
            for (j, dest) in rule.route.iter().enumerate() {
                let Some(subset) = &dest.subset else { continue };
                let host = resolve_host(&dest.host, &vs.meta.namespace, is_known);
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
