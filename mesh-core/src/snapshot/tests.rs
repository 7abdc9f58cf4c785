use std::{sync::Arc, time::Duration};

use http::{HeaderMap, Method};

use super::*;
use crate::cache::ResourceCache;
use crate::model::{
    ClusterDiscovery, ClusterWeight, Endpoint, HealthStatus, LbPolicy, Locality, LocalityEndpoints,
    PathMatch, Route, RouteMatch, RouteSource, VirtualHost,
};

fn route(name: &str, prefix: &str, action: RouteAction) -> Route {
    Route {
        hash_policy: Default::default(),
        name: name.into(),
        matcher: RouteMatch {
            path: PathMatch::Prefix(prefix.into()),
            case_sensitive: true,
            headers: Arc::new([]),
            query_params: Arc::new([]),
            fraction_per_million: None,
        },
        action,
        policy: Default::default(),
    }
}

fn world() -> (Arc<Listener>, ResourceCache) {
    let listener = Arc::new(Listener {
        name: "svc:80".into(),
        route_source: RouteSource::Rds("rc".into()),
        http_filters: Arc::new([]),
        stream_idle_timeout: None,
    });
    let l = ResourceCache::new();
    l.accept(
        "rc",
        RouteConfiguration {
            name: "rc".into(),
            virtual_hosts: Arc::new([VirtualHost {
                name: "vh".into(),
                domains: Arc::new(["svc".into(), "svc:80".into()]),
                routes: Arc::new([
                    route(
                        "redirect",
                        "/old",
                        RouteAction::Unsupported("redirect".into()),
                    ),
                    route("api", "/api", RouteAction::Cluster("a".into())),
                    route(
                        "split",
                        "/",
                        RouteAction::WeightedClusters(Arc::new([
                            ClusterWeight {
                                name: "a".into(),
                                weight: 90,
                            },
                            ClusterWeight {
                                name: "b".into(),
                                weight: 10,
                            },
                        ])),
                    ),
                ]),
                retry_policy: None,
            }]),
        },
        "1",
    );
    for (name, port) in [("a", 1), ("b", 2)] {
        l.accept(
            name,
            Cluster {
                lb_common: Default::default(),
                transport: Default::default(),
                name: name.into(),
                discovery: ClusterDiscovery::Eds {
                    service_name: name.into(),
                },
                lb_policy: LbPolicy::RoundRobin,
                connect_timeout: Duration::from_secs(5),
                retry_limits: Default::default(),
                retry_limits_high: Default::default(),
                connection_limits: Default::default(),
                outlier_detection: None,
            },
            "1",
        );
        l.accept(
            name,
            ClusterLoadAssignment {
                overprovisioning_factor: 140,
                drop_overloads: Default::default(),
                cluster_name: name.into(),
                localities: Arc::new([LocalityEndpoints {
                    locality: Locality::default(),
                    weight: Some(1),
                    priority: 0,
                    endpoints: Arc::new([Endpoint {
                        address: ([127, 0, 0, 1], port).into(),
                        health: HealthStatus::Healthy,
                        weight: 1,
                    }]),
                }]),
            },
            "1",
        );
    }
    (listener, l)
}

fn req<'a>(authority: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        authority,
        path_and_query: path,
        method: &Method::GET,
        scheme: Some("http"),
        headers,
    }
}

#[test]
fn routes_first_match_and_splits_by_weight() {
    let (listener, lookup) = world();
    let snap = Snapshot::build("svc:80".into(), listener, &lookup, None).unwrap();
    let h = HeaderMap::new();
    let d = snap.route(&req("svc:80", "/api/x", &h)).unwrap();
    assert_eq!(&**d.route.name(), "api");
    assert_eq!(d.cluster.name(), "a");

    // 90/10 split over 10,000 draws: the count of `b` is Binomial(10000, 0.1), sd = 30;
    // ±200 is more than 6 sd, so this cannot flake in practice.
    let b = (0..10_000)
        .filter(|_| snap.route(&req("svc", "/x", &h)).unwrap().cluster.name() == "b")
        .count();
    assert!((800..=1200).contains(&b), "b got {b} of 10000");
}

#[test]
fn explains_no_vhost_no_route_and_unsupported() {
    let (listener, lookup) = world();
    let snap = Snapshot::build("svc:80".into(), listener, &lookup, None).unwrap();
    let h = HeaderMap::new();
    assert!(matches!(
        snap.route(&req("other:80", "/", &h)),
        Err(RouteError::NoVirtualHost { .. })
    ));
    assert!(matches!(
        snap.route(&req("svc", "/old/x", &h)),
        Err(RouteError::UnsupportedAction { route, .. }) if &*route == "redirect"
    ));
    let (listener, lookup) = world();
    let rc = lookup.get::<RouteConfiguration>("rc").unwrap();
    let mut vh = rc.virtual_hosts[0].clone();
    vh.routes = Arc::new([route("api", "/api", RouteAction::Cluster("a".into()))]);
    let rc = RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([vh]),
    };
    lookup.accept("rc", rc, "2");
    let snap = Snapshot::build("svc:80".into(), listener, &lookup, None).unwrap();
    let err = snap.route(&req("svc", "/nothing", &h)).unwrap_err();
    assert!(matches!(&err, RouteError::NoRoute { virtual_host, .. } if &**virtual_host == "vh"));
    assert!(err.to_string().contains("/nothing"));
}

#[test]
fn build_reports_what_is_missing() {
    let (listener, lookup) = world();
    lookup.forget::<ClusterLoadAssignment>("b");
    let missing = Snapshot::build("svc:80".into(), listener.clone(), &lookup, None).unwrap_err();
    assert_eq!(
        missing.0,
        vec![(ResourceType::ClusterLoadAssignment, Arc::from("b"))]
    );
    lookup.forget::<RouteConfiguration>("rc");
    let missing = Snapshot::build("svc:80".into(), listener, &lookup, None).unwrap_err();
    assert_eq!(
        missing.0,
        vec![(ResourceType::RouteConfiguration, Arc::from("rc"))]
    );
}

#[test]
fn unchanged_clusters_are_shared_across_rebuilds() {
    let (listener, lookup) = world();
    let first = Snapshot::build("svc:80".into(), listener.clone(), &lookup, None).unwrap();
    let cla = lookup
        .get::<ClusterLoadAssignment>("b")
        .unwrap()
        .as_ref()
        .clone();
    let emptied = ClusterLoadAssignment {
        localities: Arc::new([]),
        ..cla
    };
    lookup.accept("b", emptied, "2");
    let second = Snapshot::build("svc:80".into(), listener, &lookup, Some(&first)).unwrap();
    assert!(Arc::ptr_eq(&first.clusters()["a"], &second.clusters()["a"]));
    assert!(!Arc::ptr_eq(
        &first.clusters()["b"],
        &second.clusters()["b"]
    ));
    assert!(second.clusters()["b"].pick().is_none());
}

#[test]
fn a_cluster_that_does_not_exist_fails_only_its_routes() {
    let (listener, lookup) = world();
    lookup.forget::<Cluster>("b");
    lookup.forget::<ClusterLoadAssignment>("b");
    // Not yet known to be absent: the snapshot waits for it (make-before-break).
    let missing = Snapshot::build("svc:80".into(), listener.clone(), &lookup, None).unwrap_err();
    assert_eq!(missing.0, vec![(ResourceType::Cluster, Arc::from("b"))]);

    // Known not to exist: the snapshot builds; the route to `a` works, the split fails only
    // when it picks `b`, naming route and cluster.
    lookup.remove::<Cluster>("b");
    let snap = Snapshot::build("svc:80".into(), listener, &lookup, None).unwrap();
    let h = HeaderMap::new();
    assert_eq!(
        snap.route(&req("svc", "/api/x", &h))
            .unwrap()
            .cluster
            .name(),
        "a"
    );
    let (mut ok, mut not_found) = (0, 0);
    for _ in 0..1000 {
        match snap.route(&req("svc", "/x", &h)) {
            Ok(d) => {
                assert_eq!(d.cluster.name(), "a");
                ok += 1;
            }
            Err(RouteError::ClusterNotFound { route, cluster }) => {
                assert_eq!((&*route, &*cluster), ("split", "b"));
                not_found += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // 90/10 split: both outcomes occur (P(no `b` in 1000) = 0.9^1000 ≈ 1.7e-46).
    assert!(ok > 0 && not_found > 0, "{ok} ok, {not_found} not found");
}
