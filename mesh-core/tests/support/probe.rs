//! Random requests against compiled snapshots, and a lookup that makes every route
//! configuration compile (missing clusters and endpoints are stood in for).

#![allow(dead_code)] // each test binary uses a different part

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mesh_core::{
    cache::ResourceCache,
    model::{
        Cluster, ClusterDiscovery, ClusterLoadAssignment, Endpoint, HeaderMatch, HealthStatus,
        LbPolicy, Listener, Locality, LocalityEndpoints, PathMatch, RouteConfiguration,
        RouteSource, StringMatcher,
    },
    snapshot::{RequestView, ResourceLookup, Snapshot},
};
use rand::Rng;

use super::mutate::Mutator;

/// The cache, with stand-ins for what it lacks: a cluster or load assignment that is not there
/// is an EDS cluster of that name with one healthy endpoint. So a snapshot builds whenever the
/// route configuration is there, and routing is exercised on every mutated route table.
pub struct FallbackLookup<'a> {
    /// The real resources.
    pub cache: &'a ResourceCache,
}

impl ResourceLookup for FallbackLookup<'_> {
    fn route_config(&self, name: &str) -> Option<Arc<RouteConfiguration>> {
        self.cache.get(name)
    }

    fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.cache.get(name).or_else(|| {
            Some(Arc::new(Cluster {
                lb_common: Default::default(),
                transport: Default::default(),
                name: name.into(),
                discovery: ClusterDiscovery::Eds {
                    service_name: name.into(),
                },
                lb_policy: LbPolicy::RoundRobin,
                connect_timeout: Duration::from_secs(1),
                retry_limits: Default::default(),
                retry_limits_high: Default::default(),
                connection_limits: Default::default(),
                outlier_detection: None,
            }))
        })
    }

    fn endpoints(&self, name: &str) -> Option<Arc<ClusterLoadAssignment>> {
        self.cache.get(name).or_else(|| {
            let address: SocketAddr = ([127, 0, 0, 1], 9).into();
            Some(Arc::new(ClusterLoadAssignment {
                overprovisioning_factor: 140,
                drop_overloads: Default::default(),
                cluster_name: name.into(),
                localities: Arc::new([LocalityEndpoints {
                    locality: Locality::default(),
                    weight: Some(1),
                    priority: 0,
                    endpoints: Arc::new([Endpoint {
                        address,
                        health: HealthStatus::Healthy,
                        weight: 1,
                    }]),
                }]),
            }))
        })
    }
}

/// A listener named `target` that takes its routes from RDS resource `route_config`.
pub fn rds_listener(target: &str, route_config: &str) -> Arc<Listener> {
    Arc::new(Listener {
        name: target.into(),
        route_source: RouteSource::Rds(route_config.into()),
        http_filters: Arc::new([]),
        stream_idle_timeout: None,
    })
}

/// What routing the probes saw.
#[derive(Debug, Default)]
pub struct Routed {
    /// Requests that reached a cluster (and picked an endpoint or found none).
    pub routed: usize,
    /// Requests that got a typed [`RouteError`](mesh_core::snapshot::RouteError).
    pub refused: usize,
}

/// Builds a snapshot of every listener in `cache` and of a stand-in listener per route
/// configuration, and sends `requests` random requests through each. Returns how many
/// snapshots built, and what the requests did.
pub fn build_and_route(cache: &ResourceCache, m: &mut Mutator, requests: usize) -> (usize, Routed) {
    let lookup = FallbackLookup { cache };
    let state = cache.dump();
    let mut listeners: Vec<Arc<Listener>> = state
        .listeners
        .values()
        .filter_map(|e| e.value.clone())
        .collect();
    for name in state.routes.keys() {
        listeners.push(rds_listener(&format!("{name}-target"), name));
    }
    let mut built = 0;
    let mut routed = Routed::default();
    for listener in listeners {
        let Ok(snapshot) = Snapshot::build(listener.name.clone(), listener, &lookup, None) else {
            continue;
        };
        built += 1;
        for _ in 0..requests {
            route_one(&snapshot, m, &mut routed);
        }
    }
    (built, routed)
}

/// Sends one random request through `snapshot`: authority, path and headers are drawn mostly
/// from what the route table matches on (so routes are reached), sometimes mutated or random.
pub fn route_one(snapshot: &Snapshot, m: &mut Mutator, out: &mut Routed) {
    let rc = snapshot.route_config();
    let mut domains: Vec<String> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    for vh in rc.virtual_hosts.iter() {
        domains.extend(vh.domains.iter().map(|d| d.replace('*', "x")));
        for r in vh.routes.iter() {
            match &r.matcher.path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) => paths.push(p.to_string()),
                PathMatch::Regex(_) => {}
            }
            for h in r.matcher.headers.iter() {
                let value = match &h.matcher {
                    HeaderMatch::String(s) => string_example(s),
                    HeaderMatch::Present(_) => "x".to_owned(),
                    HeaderMatch::Range { start, .. } => start.to_string(),
                };
                headers.push((h.name.to_string(), value));
            }
        }
    }
    domains.push(snapshot.target().to_string());
    paths.extend(["/", "", "/a/b?c=d", "/grpc.Svc/Method", "?", "//", "/%zz"].map(String::from));

    let authority = pick_or_mutate(m, &domains);
    let mut path = pick_or_mutate(m, &paths);
    if m.rng().random_bool(0.3) {
        path.push_str(["/x", "?q=1", "&a", "/..", "é"][m.index(5)]);
    }
    let mut map = HeaderMap::new();
    for _ in 0..m.rng().random_range(0..4) {
        let (name, value) = if !headers.is_empty() && m.rng().random_bool(0.8) {
            headers[m.index(headers.len())].clone()
        } else {
            ("x-random".to_owned(), m.text("v", "w"))
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            map.append(n, v);
        }
    }
    let method = [Method::GET, Method::POST, Method::OPTIONS][m.index(3)].clone();
    let view = RequestView {
        authority: &authority,
        path_and_query: &path,
        method: &method,
        scheme: [None, Some("http"), Some("https")][m.index(3)],
        headers: &map,
    };
    match snapshot.route(&view) {
        Ok(decision) => {
            out.routed += 1;
            let _ = decision.cluster.pick();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            out.refused += 1;
        }
    }
}

fn pick_or_mutate(m: &mut Mutator, from: &[String]) -> String {
    let s = from[m.index(from.len())].clone();
    if m.rng().random_bool(0.2) {
        m.text(&s, "")
    } else {
        s
    }
}

fn string_example(s: &StringMatcher) -> String {
    match s {
        StringMatcher::Exact { value, .. }
        | StringMatcher::Prefix { value, .. }
        | StringMatcher::Suffix { value, .. }
        | StringMatcher::Contains { value, .. } => value.to_string(),
        StringMatcher::Regex(_) => "x".to_owned(),
    }
}
