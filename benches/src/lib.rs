//! Builders of synthetic configs for the benchmarks: route tables, clusters and endpoint sets
//! of a chosen size, as validated model values (no control plane, no network).

pub mod harness;

use std::{net::SocketAddr, sync::Arc};

use mesh_core::{
    cache::ResourceCache,
    model::{
        Cluster, ClusterLoadAssignment, ClusterWeight, Endpoint, HeaderMatch, HeaderMatcher,
        LbPolicy, Listener, PathMatch, Route, RouteAction, RouteConfiguration, RouteMatch,
        RoutePolicy, RouteSource, StringMatcher, VirtualHost,
    },
};

/// The target name every synthetic config uses.
pub const TARGET: &str = "bench.svc:80";

fn route(i: usize, cluster: &str) -> Route {
    Route {
        hash_policy: Default::default(),
        name: format!("route-{i}").into(),
        matcher: RouteMatch {
            path: PathMatch::Prefix(format!("/svc{i}/").into()),
            case_sensitive: true,
            headers: Arc::new([HeaderMatcher {
                name: "x-tenant".into(),
                matcher: HeaderMatch::String(StringMatcher::Exact {
                    value: format!("t{i}").into(),
                    ignore_case: false,
                }),
                invert: false,
                treat_missing_as_empty: false,
            }]),
            query_params: Arc::new([]),
            fraction_per_million: None,
        },
        action: RouteAction::Cluster(cluster.into()),
        policy: Default::default(),
    }
}

/// A route configuration with `routes` header-and-prefix routes to `c0`, then a catch-all
/// splitting 90/10 between `c0` and `c1`.
pub fn route_config(routes: usize) -> RouteConfiguration {
    let mut rs: Vec<Route> = (0..routes).map(|i| route(i, "c0")).collect();
    rs.push(Route {
        hash_policy: Default::default(),
        name: "default".into(),
        matcher: RouteMatch::prefix("/"),
        action: RouteAction::WeightedClusters(Arc::new([
            ClusterWeight {
                name: "c0".into(),
                weight: 90,
            },
            ClusterWeight {
                name: "c1".into(),
                weight: 10,
            },
        ])),
        policy: Default::default(),
    });
    RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([VirtualHost {
            name: "vh".into(),
            domains: Arc::new(["bench.svc".into(), TARGET.into()]),
            routes: rs.into(),
            retry_policy: None,
        }]),
    }
}

/// A load assignment with the given endpoint addresses, one locality.
pub fn assignment(name: &str, addrs: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment::single_locality(name, addrs.iter().map(|a| Endpoint::healthy(*a)))
}

/// `n` distinct loopback addresses.
pub fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
        .collect()
}

/// A cache holding the listener [`TARGET`] with an inline [`route_config`] of `routes` routes,
/// and clusters `c0`, `c1` over the given endpoint addresses.
pub fn cache(routes: usize, endpoints: &[SocketAddr], lb_policy: LbPolicy) -> ResourceCache {
    cache_with_policy(routes, endpoints, lb_policy, RoutePolicy::default())
}

/// Like [`cache`], with `policy` (timeouts, retries) on every route.
pub fn cache_with_policy(
    routes: usize,
    endpoints: &[SocketAddr],
    lb_policy: LbPolicy,
    policy: RoutePolicy,
) -> ResourceCache {
    let cache = ResourceCache::new();
    let mut rc = route_config(routes);
    let mut vh = rc.virtual_hosts[0].clone();
    vh.routes = vh
        .routes
        .iter()
        .map(|r| Route {
            policy: policy.clone(),
            ..r.clone()
        })
        .collect();
    rc.virtual_hosts = Arc::new([vh]);
    cache.accept(
        TARGET,
        Listener {
            name: TARGET.into(),
            route_source: RouteSource::Inline(Arc::new(rc)),
            http_filters: Arc::new([]),
            stream_idle_timeout: None,
        },
        "1",
    );
    for c in ["c0", "c1"] {
        cache.accept(c, Cluster::eds(c, lb_policy), "1");
        cache.accept(c, assignment(c, endpoints), "1");
    }
    cache
}

/// Like [`cache_with_policy`], with every resilience policy configured on top: a fault filter
/// whose delay and abort are header-driven (evaluated on every request, firing only when a
/// request asks), a header hash policy on every route over RING_HASH clusters, and outlier
/// detection with Envoy's defaults. `policy` carries the timeouts and retries.
pub fn cache_every_policy(
    routes: usize,
    endpoints: &[SocketAddr],
    policy: RoutePolicy,
) -> ResourceCache {
    use mesh_core::model::{
        FaultAbort, FaultAbortKind, FaultDelay, FaultDelayKind, FaultPercent, FaultPolicy,
        HashPolicy, HashSource, HttpFilter, HttpFilterConfig, OutlierDetection,
    };
    let cache = cache_with_policy(routes, endpoints, LbPolicy::ring_hash(), policy);
    let Some(listener) = cache.get::<Listener>(TARGET) else {
        return cache;
    };
    let RouteSource::Inline(rc) = &listener.route_source else {
        return cache;
    };
    let mut rc = (**rc).clone();
    let mut vh = rc.virtual_hosts[0].clone();
    let hash = Arc::new([HashPolicy {
        source: HashSource::Header {
            name: "x-user".into(),
            rewrite: None,
        },
        terminal: false,
    }]);
    vh.routes = vh
        .routes
        .iter()
        .map(|r| Route {
            hash_policy: hash.clone(),
            ..r.clone()
        })
        .collect();
    rc.virtual_hosts = Arc::new([vh]);
    let all = FaultPercent {
        numerator: 100,
        denominator: 100,
    };
    let fault = FaultPolicy {
        delay: Some(FaultDelay {
            kind: FaultDelayKind::Header,
            percentage: all,
        }),
        abort: Some(FaultAbort {
            kind: FaultAbortKind::Header,
            percentage: all,
        }),
        max_active_faults: None,
        headers: Arc::new([]),
        upstream_cluster: None,
        downstream_nodes: Arc::new([]),
    };
    cache.accept(
        TARGET,
        Listener {
            name: TARGET.into(),
            route_source: RouteSource::Inline(Arc::new(rc)),
            http_filters: Arc::new([
                HttpFilter {
                    name: "envoy.filters.http.fault".into(),
                    config: HttpFilterConfig::Fault(Arc::new(fault)),
                },
                HttpFilter {
                    name: "envoy.filters.http.router".into(),
                    config: HttpFilterConfig::Router,
                },
            ]),
            stream_idle_timeout: None,
        },
        "2",
    );
    for c in ["c0", "c1"] {
        let cluster = Cluster {
            outlier_detection: Some(OutlierDetection::default()),
            ..Cluster::eds(c, LbPolicy::ring_hash())
        };
        cache.accept(c, cluster, "2");
    }
    cache
}
