//! Per-client locality load balancing: DestinationRule `localityLbSetting` (istio/api
//! `LocalityLoadBalancerSetting`) applied to a cluster's ClusterLoadAssignment for one client,
//! the way istiod reshapes EDS per proxy (istio/istio
//! `pilot/pkg/networking/core/loadbalancer/loadbalancer.go` `ApplyLocalityLoadBalancer`).
//!
//! The shared snapshot holds one assignment per cluster, its endpoints grouped by locality (each
//! locality weighted by its endpoint count, as istiod weighs by the sum of endpoint weights).
//! Clusters whose policy can reshape it also carry a [`LocalityPlan`]; the ADS stream applies it
//! for the locality and labels the client sent in its `Node` ([`ClientLocality`]) and serves
//! the result under its own content version, so each client ACKs what it got. A client without
//! a locality or labels gets the shared assignment unchanged.
//!
//! Specs: istio/api `networking/v1alpha3/destination_rule.proto` `LocalityLoadBalancerSetting`
//! and `workload_entry.proto` `locality`; Envoy's load-balancing architecture overview,
//! `upstream/load_balancing/priority` ("Priority levels"), `…/overprovisioning`,
//! `…/panic_threshold` and `…/locality_weight` ("Locality weighted load balancing"), and
//! `endpoint.proto` `LocalityLbEndpoints.priority` / `load_balancing_weight`; XDS-SEMANTICS.md
//! row 18 (priorities and localities; rows 21/22 — ring hash and least request — are unchanged:
//! they balance inside the level and locality picked here).
//!
//! What a plan does, in istiod's order:
//! 1. **`distribute`** (precedence over the rest): the first entry whose `from` matches the
//!    client's locality sets locality weights: for each `to` pattern in the order written, the
//!    localities it matches that no earlier pattern took share its weight in proportion to their
//!    own weights (rounded up); localities no pattern matches are dropped. Envoy and this crate's
//!    client use locality weights only with `locality_weighted_lb_config`, which any written
//!    `localityLbSetting` (not `enabled: false`) sets on the cluster.
//! 2. Otherwise, **only when the cluster has `outlierDetection`** (istiod's rule: without it a
//!    client never sees a level fail, so failover could not happen) and the setting is not
//!    `enabled: false` — a DestinationRule without `localityLbSetting` gets the mesh default,
//!    which in Istio is enabled:
//!    - **`failoverPriority`** (label names, or `name=value`): each endpoint's priority is 0
//!      when all listed labels equal the client's, else `n − i` for the first label `i` that
//!      differs; a locality is split per priority. Client labels are its `Node.metadata.LABELS`
//!      (what istio-agent sends) plus the topology labels of its locality
//!      (`topology.kubernetes.io/region`, `…/zone`, `topology.istio.io/subzone`), which endpoints
//!      get from theirs too.
//!    - **locality failover** (default, or after `failoverPriority` when `failover` is also
//!      set): priority 0 = same region, zone and sub-zone; 1 = same region and zone; 2 = same
//!      region; 3 = another region — or, when a `failover` entry's `from` is the client's region,
//!      3 for its `to` region and 4 for the rest. Combined with `failoverPriority` as `5 × label
//!      priority + locality priority`.
//!
//!    Priorities are then renumbered to be contiguous from 0 (Envoy and gRPC reject gaps).
//!
//! The client then applies Envoy's priority load: the overprovisioning factor (140 by default)
//! spills traffic to the next level once a level is less than ~72 % healthy, panic mode
//! spreads over all endpoints below the panic threshold, and outlier-ejected endpoints shift
//! traffic to the next level (mesh-core `snapshot/balancer/priority.rs`). gRPC's own clients
//! use their `priority` policy instead (first level with a READY child, gRFC A56).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::google::protobuf::value::Kind as ValueKind;
use envoy_types::pb::google::protobuf::UInt32Value;

use crate::source::model::{locality_matches, Labels, Locality, LocalityLbSetting};
use crate::source::model::{LABEL_REGION, LABEL_SUBZONE, LABEL_ZONE};

/// What a client sent about where it runs: `Node.locality` and `Node.metadata.LABELS` (plus its
/// locality's topology labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientLocality {
    /// `Node.locality`.
    pub locality: Locality,
    /// `Node.metadata.LABELS` string values, with the topology labels of `locality`.
    pub labels: Labels,
}

impl ClientLocality {
    /// Reads a node's locality and labels. Non-string label values are ignored.
    pub fn from_node(node: &Node) -> Self {
        let locality = node
            .locality
            .as_ref()
            .map(|l| Locality::new(&l.region, &l.zone, &l.sub_zone))
            .unwrap_or_default();
        let mut labels = Labels::new();
        if let Some(ValueKind::StructValue(s)) = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("LABELS"))
            .and_then(|v| v.kind.as_ref())
        {
            for (k, v) in &s.fields {
                if let Some(ValueKind::StringValue(v)) = &v.kind {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
        Self::new(locality, labels)
    }

    /// A client in `locality` with `labels`; the locality's topology labels are added.
    pub fn new(locality: Locality, mut labels: Labels) -> Self {
        add_topology_labels(&mut labels, &locality);
        ClientLocality { locality, labels }
    }

    /// True when the client sent neither a locality nor labels.
    pub fn is_empty(&self) -> bool {
        self.locality.is_empty() && self.labels.is_empty()
    }
}

/// Istio's `AugmentLabels` for locality: region, zone, sub-zone as topology labels.
pub(crate) fn add_topology_labels(labels: &mut Labels, l: &Locality) {
    for (k, v) in [
        (LABEL_REGION, &l.region),
        (LABEL_ZONE, &l.zone),
        (LABEL_SUBZONE, &l.sub_zone),
    ] {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.clone());
        }
    }
}

/// How one cluster's assignment is reshaped per client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityPlan {
    setting: LocalityLbSetting,
    /// Failover applies (outlier detection configured, setting enabled).
    failover: bool,
    /// Labels of each endpoint (with topology labels), per locality of the assignment, in order.
    labels: Vec<Vec<Labels>>,
}

impl LocalityPlan {
    /// The plan for a cluster, or `None` when no client could get anything but the shared
    /// assignment. `setting` is the effective `localityLbSetting` (`None`: Istio's mesh
    /// default, enabled with no rules); `outlier_detection` whether the cluster has it;
    /// `labels` the endpoint labels per locality of the assignment.
    pub(crate) fn new(
        setting: Option<&LocalityLbSetting>,
        outlier_detection: bool,
        labels: Vec<Vec<Labels>>,
    ) -> Option<Self> {
        let setting = setting.cloned().unwrap_or_default();
        if !setting.is_enabled() {
            return None;
        }
        let failover = outlier_detection;
        let useful = !setting.distribute.is_empty()
            || (failover && (!setting.failover_priority.is_empty() || labels.len() > 1));
        useful.then_some(LocalityPlan {
            setting,
            failover,
            labels,
        })
    }

    /// What of `client` the result depends on, for caching: its locality and the values of the
    /// `failoverPriority` labels.
    pub fn cache_key(&self, client: &ClientLocality) -> (Locality, Vec<Option<String>>) {
        let labels = self
            .setting
            .failover_priority
            .iter()
            .map(|l| {
                client
                    .labels
                    .get(l.split('=').next().unwrap_or(""))
                    .cloned()
            })
            .collect();
        (client.locality.clone(), labels)
    }

    /// `cla` as `client` should see it.
    pub fn apply(
        &self,
        cla: &ClusterLoadAssignment,
        client: &ClientLocality,
    ) -> ClusterLoadAssignment {
        let mut out = cla.clone();
        let loc = &client.locality;
        if !self.setting.distribute.is_empty() {
            if !loc.is_empty() {
                self.distribute(&mut out, loc);
            }
            return out;
        }
        if !self.failover {
            return out;
        }
        if !self.setting.failover_priority.is_empty() {
            self.failover_priority(&mut out, &client.labels);
            if !self.setting.failover.is_empty() && !loc.is_empty() {
                self.locality_failover(&mut out, loc);
            }
        } else if !loc.is_empty() {
            self.locality_failover(&mut out, loc);
        }
        out
    }

    fn distribute(&self, cla: &mut ClusterLoadAssignment, client: &Locality) {
        let Some(rule) = self
            .setting
            .distribute
            .iter()
            .find(|d| locality_matches(client, &d.from))
        else {
            return;
        };
        let mut taken = vec![false; cla.endpoints.len()];
        for (pattern, weight) in &rule.to {
            let members: Vec<(usize, u64)> = cla
                .endpoints
                .iter()
                .enumerate()
                .filter(|(i, e)| !taken[*i] && locality_matches(&of(e), pattern))
                .map(|(i, e)| {
                    (
                        i,
                        u64::from(e.load_balancing_weight.as_ref().map_or(1, |w| w.value)),
                    )
                })
                .collect();
            let total: u64 = members.iter().map(|(_, w)| w).sum();
            for (i, w) in members {
                taken[i] = true;
                let share = (w * u64::from(*weight)).div_ceil(total.max(1));
                if share > 0 {
                    cla.endpoints[i].load_balancing_weight = Some(UInt32Value {
                        value: u32::try_from(share).unwrap_or(u32::MAX),
                    });
                }
            }
        }
        let mut i = 0;
        cla.endpoints.retain(|_| {
            i += 1;
            taken[i - 1]
        });
    }

    fn failover_priority(&self, cla: &mut ClusterLoadAssignment, client: &Labels) {
        let rules: Vec<(&str, Option<&str>)> = self
            .setting
            .failover_priority
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (l.as_str(), None),
            })
            .collect();
        let n = rules.len();
        let mut out = Vec::with_capacity(cla.endpoints.len());
        for (g, group) in cla.endpoints.iter().enumerate() {
            let labels = self.labels.get(g);
            // Priority → endpoints, ordered by priority.
            let mut split: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for i in 0..group.lb_endpoints.len() {
                let ep = labels.and_then(|l| l.get(i));
                let get = |k: &str| ep.and_then(|l| l.get(k)).map_or("", String::as_str);
                let p = rules
                    .iter()
                    .position(|(k, fixed)| {
                        fixed.unwrap_or_else(|| client.get(*k).map_or("", String::as_str)) != get(k)
                    })
                    .map_or(0, |j| n - j);
                split.entry(p).or_default().push(i);
            }
            for (p, members) in split {
                let mut part = LocalityLbEndpoints {
                    locality: group.locality.clone(),
                    lb_endpoints: Vec::with_capacity(members.len()),
                    priority: group.priority * (n as u32 + 1) + p as u32,
                    ..Default::default()
                };
                let mut weight = 0u64;
                for i in members {
                    let ep = &group.lb_endpoints[i];
                    weight += u64::from(ep.load_balancing_weight.as_ref().map_or(1, |w| w.value));
                    part.lb_endpoints.push(ep.clone());
                }
                part.load_balancing_weight = Some(UInt32Value {
                    value: u32::try_from(weight).unwrap_or(u32::MAX),
                });
                out.push(part);
            }
        }
        cla.endpoints = out;
        renumber(cla);
    }

    fn locality_failover(&self, cla: &mut ClusterLoadAssignment, client: &Locality) {
        let target = self
            .setting
            .failover
            .iter()
            .find(|f| f.from == client.region)
            .map(|f| f.to.as_str());
        for e in &mut cla.endpoints {
            let ep = of(e);
            let mut p = if ep.region != client.region {
                3
            } else if ep.zone != client.zone {
                2
            } else if ep.sub_zone != client.sub_zone {
                1
            } else {
                0
            };
            if p == 3 && target.is_some_and(|t| t != ep.region) {
                p = 4;
            }
            e.priority = e.priority * 5 + p;
        }
        renumber(cla);
    }
}

fn of(e: &LocalityLbEndpoints) -> Locality {
    match &e.locality {
        Some(l) => Locality::new(&l.region, &l.zone, &l.sub_zone),
        None => Locality::default(),
    }
}

/// Makes priorities contiguous from 0, keeping their order, and sorts the localities by it.
fn renumber(cla: &mut ClusterLoadAssignment) {
    let mut used: Vec<u32> = cla.endpoints.iter().map(|e| e.priority).collect();
    used.sort_unstable();
    used.dedup();
    for e in &mut cla.endpoints {
        e.priority = used.binary_search(&e.priority).unwrap_or(0) as u32;
    }
    cla.endpoints.sort_by_key(|e| e.priority);
}

#[cfg(test)]
#[path = "locality_tests.rs"]
mod tests;
