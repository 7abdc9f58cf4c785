//! Service registry: the services (host × ports) and endpoints the mesh knows, derived from
//! ServiceEntries (inline `endpoints`) and the WorkloadEntries their `workloadSelector` selects.
//!
//! Host names follow istiod's resolution of short names: a name without dots (`reviews`) is
//! `reviews.<namespace>.svc.cluster.local`, `reviews.ns` is `reviews.ns.svc.cluster.local`; an
//! exact match with a ServiceEntry host always wins (so a ServiceEntry may use a short host).

use std::collections::BTreeMap;

use crate::source::model::{Labels, Locality, MeshConfig, ServicePort};

/// Kubernetes cluster domain used to expand short names.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// One service: a host with its ports and endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The host (as written in the ServiceEntry).
    pub host: String,
    /// Namespace of the (first) ServiceEntry that declared the host.
    pub namespace: String,
    /// Ports, sorted by number.
    pub ports: Vec<ServicePort>,
    /// Endpoints, in declaration order (inline endpoints first, then selected WorkloadEntries).
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address (validated when loaded).
    pub address: String,
    /// Labels (used for subset selection).
    pub labels: Labels,
    /// Service port name → endpoint port.
    pub ports: BTreeMap<String, u32>,
    /// Workload service account, when known.
    pub service_account: Option<String>,
    /// ServiceEntry `endpoints[].locality` / WorkloadEntry `spec.locality` (empty when unset).
    pub locality: Locality,
}

impl Endpoint {
    /// The port this endpoint listens on for `port`: the endpoint's own mapping by port name,
    /// else the service's `targetPort`, else the service port number.
    pub fn port_for(&self, port: &ServicePort) -> u32 {
        self.ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }

    /// True when the endpoint carries every label of `selector`.
    pub fn matches(&self, selector: &Labels) -> bool {
        labels_match(&self.labels, selector)
    }
}

/// True when `labels` contains every `key: value` of `selector`.
pub fn labels_match(labels: &Labels, selector: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Resolves `host` as written in a resource of `namespace` against the hosts `known` accepts.
///
/// Tries the name as written, then its Kubernetes expansions; when nothing is known, returns the
/// expansion istiod would use (`name` → `name.<ns>.svc.cluster.local`).
pub fn resolve_host(host: &str, namespace: &str, known: impl Fn(&str) -> bool) -> String {
    let candidates = host_candidates(host, namespace);
    candidates
        .iter()
        .find(|c| known(c))
        .cloned()
        .unwrap_or_else(|| candidates.last().cloned().unwrap_or_default())
}

fn host_candidates(host: &str, namespace: &str) -> Vec<String> {
    let mut out = vec![host.to_string()];
    match host.matches('.').count() {
        0 => out.push(format!("{host}.{namespace}.{CLUSTER_DOMAIN}")),
        1 => out.push(format!("{host}.{CLUSTER_DOMAIN}")),
        2 if host.ends_with(".svc") => out.push(format!("{host}.cluster.local")),
        _ => {}
    }
    out
}

/// The short names a Kubernetes-style FQDN can be reached by: for
/// `reviews.default.svc.cluster.local` that is `reviews`, `reviews.default`,
/// `reviews.default.svc`. Other hosts have none.
pub fn short_names(host: &str) -> Vec<String> {
    let Some(stem) = host.strip_suffix(&format!(".{CLUSTER_DOMAIN}")) else {
        return Vec::new();
    };
    let mut parts = stem.splitn(2, '.');
    let (Some(name), Some(ns)) = (parts.next(), parts.next()) else {
        return Vec::new();
    };
    if ns.contains('.') {
        return Vec::new();
    }
    vec![
        name.to_string(),
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
    ]
}

/// All services of a configuration, by host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    services: BTreeMap<String, Service>,
}

impl Registry {
    /// Builds the registry: ServiceEntries with the same host are merged (first port definition
    /// wins); WorkloadEntries are attached to every ServiceEntry of their namespace whose
    /// `workloadSelector` they match.
    pub fn build(config: &MeshConfig) -> Self {
        let mut services: BTreeMap<String, Service> = BTreeMap::new();
        for se in &config.service_entries {
            let mut endpoints: Vec<Endpoint> = se
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    address: e.address.clone(),
                    labels: e.labels.clone(),
                    ports: e.ports.clone(),
                    service_account: None,
                    locality: e.locality.clone(),
                })
                .collect();
            if let Some(selector) = &se.workload_selector {
                endpoints.extend(
                    config
                        .workload_entries
                        .iter()
                        .filter(|we| {
                            we.meta.namespace == se.meta.namespace
                                && labels_match(&we.labels, selector)
                        })
                        .map(|we| Endpoint {
                            address: we.address.clone(),
                            labels: we.labels.clone(),
                            ports: we.ports.clone(),
                            service_account: we.service_account.clone(),
                            locality: we.locality.clone(),
                        }),
                );
            }
            for host in &se.hosts {
                let svc = services.entry(host.clone()).or_insert_with(|| Service {
                    host: host.clone(),
                    namespace: se.meta.namespace.clone(),
                    ports: Vec::new(),
                    endpoints: Vec::new(),
                });
                for port in &se.ports {
                    if !svc.ports.iter().any(|p| p.number == port.number) {
                        svc.ports.push(port.clone());
                    }
                }
                svc.ports.sort_by_key(|p| p.number);
                svc.endpoints.extend(endpoints.iter().cloned());
            }
        }
        Registry { services }
    }

    /// The service for an exact (already resolved) host.
    pub fn service(&self, host: &str) -> Option<&Service> {
        self.services.get(host)
    }

    /// All services, sorted by host.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// Resolves `host` written in `namespace` to a registry host (see [`resolve_host`]).
    pub fn resolve(&self, host: &str, namespace: &str) -> String {
        resolve_host(host, namespace, |h| self.services.contains_key(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_short_names() {
        let known = |h: &str| h == "reviews.default.svc.cluster.local" || h == "greeter";
        assert_eq!(
            resolve_host("reviews", "default", known),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            resolve_host("reviews.default", "other", known),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(resolve_host("greeter", "default", known), "greeter");
        assert_eq!(
            resolve_host("ratings", "prod", known),
            "ratings.prod.svc.cluster.local"
        );
    }

    #[test]
    fn short_names_of_fqdn() {
        assert_eq!(
            short_names("reviews.default.svc.cluster.local"),
            vec!["reviews", "reviews.default", "reviews.default.svc"]
        );
        assert!(short_names("greeter").is_empty());
        assert!(short_names("api.example.com").is_empty());
    }
}
