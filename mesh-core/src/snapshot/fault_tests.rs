use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::cache::ResourceCache;
use crate::model::{
    ClusterLoadAssignment, ClusterWeight, FaultAbort, FaultDelay, FaultOverride, HttpFilter,
    LbPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, RoutePolicy, RouteSource,
    VirtualHost,
};
use crate::snapshot::Snapshot;

const F: &str = "envoy.filters.http.fault";

fn pct(numerator: u32) -> FaultPercent {
    FaultPercent {
        numerator,
        denominator: 100,
    }
}

fn abort(kind: FaultAbortKind, p: u32) -> FaultPolicy {
    FaultPolicy {
        abort: Some(FaultAbort {
            kind,
            percentage: pct(p),
        }),
        ..Default::default()
    }
}

fn compiled(p: &FaultPolicy) -> CompiledFault {
    CompiledFault::new(&F.into(), p, &Arc::default()).expect("not inert")
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            )
        })
        .collect()
}

#[test]
fn draws_compare_against_precomputed_shares() {
    let f = compiled(&FaultPolicy {
        delay: Some(FaultDelay {
            kind: FaultDelayKind::Fixed(Duration::from_secs(1)),
            percentage: pct(30),
        }),
        ..abort(FaultAbortKind::Grpc(14), 50)
    });
    let h = HeaderMap::new();
    assert_eq!(f.delay(&h, &mut || 299_999), Some(Duration::from_secs(1)));
    assert_eq!(f.delay(&h, &mut || 300_000), None);
    assert_eq!(f.abort(&h, &mut || 499_999), Some(FaultStatus::Grpc(14)));
    assert_eq!(f.abort(&h, &mut || 500_000), None);
    // 0 % never fires; 100 % always.
    let never = compiled(&abort(FaultAbortKind::Http(503), 0));
    assert_eq!(never.abort(&h, &mut || 0), None);
    let always = compiled(&abort(FaultAbortKind::Http(503), 100));
    assert_eq!(
        always.abort(&h, &mut || 999_999),
        Some(FaultStatus::Http(503))
    );
}

#[test]
fn header_faults_are_capped_by_the_config() {
    let f = compiled(&FaultPolicy {
        delay: Some(FaultDelay {
            kind: FaultDelayKind::Header,
            percentage: pct(40),
        }),
        ..abort(FaultAbortKind::Header, 40)
    });
    // No header: nothing, whatever the draw.
    assert_eq!(f.delay(&HeaderMap::new(), &mut || 0), None);
    assert_eq!(f.abort(&HeaderMap::new(), &mut || 0), None);
    let h = headers(&[
        (HEADER_DELAY, "250"),
        (HEADER_ABORT, "503"),
        (HEADER_ABORT_GRPC, "3"),
        (HEADER_ABORT_PERCENTAGE, "90"),
        (HEADER_DELAY_PERCENTAGE, "10"),
    ]);
    // HTTP wins over gRPC; the 90 % header is capped at the configured 40 %.
    assert_eq!(f.abort(&h, &mut || 399_999), Some(FaultStatus::Http(503)));
    assert_eq!(f.abort(&h, &mut || 400_000), None);
    // The delay percentage header lowers the share to 10 %.
    assert_eq!(
        f.delay(&h, &mut || 99_999),
        Some(Duration::from_millis(250))
    );
    assert_eq!(f.delay(&h, &mut || 100_000), None);
    // gRPC status header alone; malformed values are ignored.
    let g = headers(&[(HEADER_ABORT_GRPC, "8")]);
    assert_eq!(f.abort(&g, &mut || 0), Some(FaultStatus::Grpc(8)));
    for bad in [
        headers(&[(HEADER_ABORT, "abc")]),
        headers(&[(HEADER_ABORT, "600")]),
        headers(&[(HEADER_ABORT_GRPC, "-1")]),
        headers(&[(HEADER_DELAY, "soon")]),
    ] {
        assert_eq!(f.abort(&bad, &mut || 0), None, "{bad:?}");
        assert_eq!(f.delay(&bad, &mut || 0), None, "{bad:?}");
    }
}

#[test]
fn selection_by_cluster_node_and_headers() {
    let f = compiled(&FaultPolicy {
        upstream_cluster: Some("a".into()),
        downstream_nodes: Arc::new(["caller".into()]),
        headers: Arc::new([crate::model::HeaderMatcher {
            name: "x-chaos".into(),
            matcher: crate::model::HeaderMatch::Present(true),
            invert: false,
            treat_missing_as_empty: false,
        }]),
        ..abort(FaultAbortKind::Http(503), 100)
    });
    fn view(h: &HeaderMap) -> RequestView<'_> {
        RequestView {
            authority: "svc",
            path_and_query: "/",
            method: &Method::GET,
            scheme: None,
            headers: h,
        }
    }
    let all = headers(&[(HEADER_DOWNSTREAM_NODE, "caller"), ("x-chaos", "1")]);
    assert!(f.selects(&view(&all), "a"));
    assert!(!f.selects(&view(&all), "b"), "other cluster");
    let other = headers(&[(HEADER_DOWNSTREAM_NODE, "someone"), ("x-chaos", "1")]);
    assert!(!f.selects(&view(&other), "a"), "other node");
    let no_hdr = headers(&[(HEADER_DOWNSTREAM_NODE, "caller")]);
    assert!(!f.selects(&view(&no_hdr), "a"), "header matcher");
}

#[test]
fn max_active_faults_is_a_lock_free_gauge() {
    let f = compiled(&FaultPolicy {
        max_active_faults: Some(2),
        ..abort(FaultAbortKind::Http(503), 100)
    });
    let a = f.try_activate().expect("1st");
    let _b = f.try_activate().expect("2nd");
    assert!(f.try_activate().is_none(), "3rd over the limit");
    assert_eq!((f.stats().active(), f.stats().overflows()), (2, 1));
    drop(a);
    assert!(f.try_activate().is_some(), "a slot freed");
    assert_eq!(f.stats().active(), 1, "the new guard dropped at once");
    // 0 disables the filter (gRPC), as does a policy with nothing to inject.
    let zero = FaultPolicy {
        max_active_faults: Some(0),
        ..abort(FaultAbortKind::Http(503), 100)
    };
    assert!(CompiledFault::new(&F.into(), &zero, &Arc::default()).is_none());
    assert!(CompiledFault::new(&F.into(), &FaultPolicy::default(), &Arc::default()).is_none());
}

fn route(name: &str, action: RouteAction, faults: FaultOverrides) -> Route {
    Route {
        name: name.into(),
        matcher: RouteMatch::prefix(&format!("/{name}")),
        action,
        policy: RoutePolicy {
            faults,
            ..Default::default()
        },
        hash_policy: Default::default(),
    }
}

fn over(p: Option<FaultPolicy>) -> Arc<[FaultOverride]> {
    Arc::new([FaultOverride {
        filter: F.into(),
        policy: p.map(Arc::new),
    }])
}

fn build(filter: Option<FaultPolicy>, previous: Option<&Snapshot>) -> Snapshot {
    let to_a = || RouteAction::Cluster("a".into());
    let routes = vec![
        route("plain", to_a(), FaultOverrides::default()),
        route(
            "override",
            to_a(),
            FaultOverrides {
                route: over(Some(abort(FaultAbortKind::Grpc(8), 100))),
                ..Default::default()
            },
        ),
        route(
            "disabled",
            to_a(),
            FaultOverrides {
                route: over(None),
                ..Default::default()
            },
        ),
        route(
            "split",
            RouteAction::WeightedClusters(Arc::new([
                ClusterWeight {
                    name: "a".into(),
                    weight: 1,
                },
                ClusterWeight {
                    name: "b".into(),
                    weight: 1,
                },
            ])),
            FaultOverrides {
                clusters: Arc::new([(
                    "b".into(),
                    over(Some(abort(FaultAbortKind::Http(429), 100))),
                )]),
                ..Default::default()
            },
        ),
    ];
    let rc = RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([VirtualHost {
            name: "vh".into(),
            domains: Arc::new(["*".into()]),
            routes: routes.into(),
            retry_policy: None,
        }]),
    };
    let mut filters = Vec::new();
    if let Some(p) = filter {
        filters.push(HttpFilter {
            name: F.into(),
            config: HttpFilterConfig::Fault(Arc::new(p)),
        });
    }
    filters.push(HttpFilter {
        name: "router".into(),
        config: HttpFilterConfig::Router,
    });
    let listener = Listener {
        name: "svc:80".into(),
        route_source: RouteSource::Inline(Arc::new(rc)),
        http_filters: filters.into(),
        stream_idle_timeout: None,
    };
    let cache = ResourceCache::new();
    for c in ["a", "b"] {
        cache.accept(c, crate::model::Cluster::eds(c, LbPolicy::RoundRobin), "1");
        let ep = crate::model::Endpoint::healthy(([127, 0, 0, 1], 1).into());
        cache.accept(c, ClusterLoadAssignment::single_locality(c, [ep]), "1");
    }
    Snapshot::build("svc:80".into(), Arc::new(listener), &cache, previous).expect("warm")
}

/// The abort status a request on `route` to `cluster` would get, at draw 0.
fn status(s: &Snapshot, route: &str, cluster: &str) -> Option<FaultStatus> {
    let r = s.vhosts[0]
        .routes
        .iter()
        .find(|r| &**r.name() == route)
        .expect("route");
    let f = r.policy().fault.as_ref()?.for_cluster(cluster)?;
    f.abort(&HeaderMap::new(), &mut || 0)
}

#[test]
fn most_specific_config_wins_at_build() {
    let s = build(Some(abort(FaultAbortKind::Http(503), 100)), None);
    assert_eq!(
        status(&s, "plain", "a"),
        Some(FaultStatus::Http(503)),
        "listener default"
    );
    assert_eq!(
        status(&s, "override", "a"),
        Some(FaultStatus::Grpc(8)),
        "route override"
    );
    assert_eq!(status(&s, "disabled", "a"), None, "disabled on the route");
    assert_eq!(
        status(&s, "split", "a"),
        Some(FaultStatus::Http(503)),
        "cluster a: route's"
    );
    assert_eq!(
        status(&s, "split", "b"),
        Some(FaultStatus::Http(429)),
        "cluster b: its own"
    );

    // An empty listener filter: only overrides inject.
    let s = build(Some(FaultPolicy::default()), None);
    assert_eq!(status(&s, "plain", "a"), None);
    assert!(
        s.vhosts[0].routes[0].policy().fault.is_none(),
        "no fault: None"
    );
    assert_eq!(status(&s, "override", "a"), Some(FaultStatus::Grpc(8)));

    assert!(s.fault_stats("plain").is_none(), "no fault, no counters");
    let counters = s
        .fault_stats("override")
        .expect("counted per route")
        .clone();
    counters.record_abort();

    // A rebuild keeps each route's counters and the target's gauge.
    let s2 = build(Some(FaultPolicy::default()), Some(&s));
    assert!(Arc::ptr_eq(&counters, s2.fault_stats("override").unwrap()));
    let r = s2.vhosts[0]
        .routes
        .iter()
        .find(|r| &**r.name() == "override");
    let f = r.unwrap().policy().fault.as_ref().unwrap().for_cluster("a");
    let guard = f.unwrap().try_activate();
    assert_eq!((s2.active_faults(), s.active_faults()), (1, 1), "one gauge");
    drop(guard);
    assert_eq!(s2.fault_stats("override").unwrap().aborts_injected(), 1);

    // No fault filter on the listener: overrides have nothing to override.
    let s3 = build(None, Some(&s2));
    assert!(s3.vhosts[0]
        .routes
        .iter()
        .all(|r| r.policy().fault.is_none()));
    assert!(s3.fault_stats("override").is_none());
}
