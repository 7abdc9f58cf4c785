//! Request-path micro benchmarks: route match on a 100-route table, endpoint pick over 100
//! endpoints, and snapshot build for 1,000 clusters.
//!
//! Run: `cargo bench -p benches --bench routing`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc};

use benches::{addrs, assignment, route_config, TARGET};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use mesh_core::{
    cache::ResourceCache,
    model::{
        Cluster, ClusterWeight, LbPolicy, Listener, RouteAction, RouteConfiguration, RouteSource,
    },
    snapshot::{RequestView, Snapshot},
};

fn listener(rc: RouteConfiguration) -> Arc<Listener> {
    Arc::new(Listener {
        name: TARGET.into(),
        route_source: RouteSource::Inline(Arc::new(rc)),
        http_filters: Arc::new([]),
        stream_idle_timeout: None,
    })
}

fn lookup_with(clusters: &[String], endpoints: usize, lb: LbPolicy) -> ResourceCache {
    let eps = addrs(endpoints);
    let cache = ResourceCache::new();
    for c in clusters {
        cache.accept(c, Cluster::eds(c, lb), "1");
        cache.accept(c, assignment(c, &eps), "1");
    }
    cache
}

fn route_match(c: &mut Criterion) {
    let lookup = lookup_with(&["c0".into(), "c1".into()], 3, LbPolicy::RoundRobin);
    let snap =
        Snapshot::build(TARGET.into(), listener(route_config(100)), &lookup, None).expect("warm");
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t99"));
    let mut g = c.benchmark_group("route_match_100_routes");
    // The last header route: every earlier route's prefix is tested first.
    g.bench_function("last_route", |b| {
        b.iter(|| {
            let req = RequestView {
                authority: black_box(TARGET),
                path_and_query: black_box("/svc99/items?id=7"),
                method: &Method::GET,
                scheme: Some("http"),
                headers: &headers,
            };
            black_box(snap.route(&req).expect("routes").cluster.name().len())
        })
    });
    // Falls through all 100 routes to the weighted catch-all.
    g.bench_function("catch_all_weighted", |b| {
        let empty = HeaderMap::new();
        b.iter(|| {
            let req = RequestView {
                authority: black_box(TARGET),
                path_and_query: black_box("/other"),
                method: &Method::GET,
                scheme: Some("http"),
                headers: &empty,
            };
            black_box(snap.route(&req).expect("routes").cluster.name().len())
        })
    });
    g.finish();
}

fn endpoint_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("endpoint_pick_100_endpoints");
    for (label, lb) in [
        ("round_robin", LbPolicy::RoundRobin),
        (
            "least_request_p2c",
            LbPolicy::LeastRequest { choice_count: 2 },
        ),
    ] {
        let lookup = lookup_with(&["c0".into(), "c1".into()], 100, lb);
        let snap =
            Snapshot::build(TARGET.into(), listener(route_config(1)), &lookup, None).expect("warm");
        let handle = snap.clusters()["c0"].clone();
        g.bench_function(label, |b| {
            b.iter(|| black_box(handle.pick().expect("endpoint").address()))
        });
    }
    g.finish();
}

fn snapshot_build(c: &mut Criterion) {
    let names: Vec<String> = (0..1000)
        .map(|i| format!("outbound|80||svc-{i}.ns.svc.cluster.local"))
        .collect();
    let lookup = lookup_with(&names, 3, LbPolicy::RoundRobin);
    let mut rc = route_config(0);
    let mut vh = rc.virtual_hosts[0].clone();
    let mut routes = vh.routes.to_vec();
    routes[0].action = RouteAction::WeightedClusters(
        names
            .iter()
            .map(|n| ClusterWeight {
                name: n.as_str().into(),
                weight: 1,
            })
            .collect(),
    );
    vh.routes = routes.into();
    rc.virtual_hosts = Arc::new([vh]);
    let l = listener(rc);
    let mut g = c.benchmark_group("snapshot_build_1000_clusters");
    g.bench_function("cold", |b| {
        b.iter(|| {
            black_box(
                Snapshot::build(TARGET.into(), l.clone(), &lookup, None)
                    .expect("warm")
                    .clusters()
                    .len(),
            )
        })
    });
    let prev = Snapshot::build(TARGET.into(), l.clone(), &lookup, None).expect("warm");
    g.bench_function("incremental_unchanged", |b| {
        b.iter(|| {
            black_box(
                Snapshot::build(TARGET.into(), l.clone(), &lookup, Some(&prev))
                    .expect("warm")
                    .clusters()
                    .len(),
            )
        })
    });
    g.finish();
}

/// The whole `MeshService::call` fast path (lookup, route over 101 routes, pick, URI rewrite,
/// `Host`, extension) over a no-op inner service, against the no-op service alone: the CPU the
/// mesh adds per request, free of network noise.
fn layer_overhead(c: &mut Criterion) {
    use tower::{Service, ServiceExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let noop = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    });
    let mesh =
        mesh_core::mesh::Mesh::from_cache(benches::cache(100, &addrs(3), LbPolicy::RoundRobin));
    let mut meshed = tower::Layer::layer(&mesh_tower::MeshLayer::new(mesh), noop);
    rt.block_on(async {
        // Warm: subscribe and compile the target.
        let req = http::Request::get("http://bench.svc:80/")
            .body(())
            .expect("request");
        meshed
            .ready()
            .await
            .expect("ready")
            .call(req)
            .await
            .expect("routed");
    });
    let mut direct = noop;
    let mut g = c.benchmark_group("layer_overhead");
    g.bench_function("noop_service", |b| {
        b.to_async(&rt).iter(|| {
            let req = http::Request::get("http://127.0.0.1:8080/echo")
                .body(())
                .expect("request");
            let fut = direct.call(req);
            async move { black_box(fut.await.expect("ok")) }
        })
    });
    g.bench_function("mesh_layer_then_noop", |b| {
        b.to_async(&rt).iter(|| {
            let req = http::Request::get("http://bench.svc:80/echo")
                .body(())
                .expect("request");
            let fut = meshed.call(req);
            async move { black_box(fut.await.expect("routed")) }
        })
    });
    // The bare layer on a route that rewrites: `/` → `/v2/` prefix rewrite, two request headers
    // set, one removed, one response header added (VirtualService `rewrite` + `headers`).
    let rewrite = {
        use mesh_core::model::{
            AppendAction, HeaderAdd, HeaderLevel, HeaderMutation, PathRewrite, RequestRewrite,
        };
        let add = |name: &'static str, value: &'static str| HeaderAdd {
            name: http::HeaderName::from_static(name),
            value: http::HeaderValue::from_static(value),
            action: AppendAction::OverwriteIfExistsOrAdd,
        };
        RequestRewrite {
            path: Some(PathRewrite::Prefix {
                strip: 1,
                with: "/v2/".into(),
            }),
            host: None,
            request_headers: HeaderMutation {
                levels: vec![HeaderLevel {
                    remove: vec![http::HeaderName::from_static("x-debug")].into(),
                    add: vec![add("x-api-version", "2"), add("x-tenant", "blue")].into(),
                }]
                .into(),
            },
            response_headers: HeaderMutation {
                levels: vec![HeaderLevel {
                    remove: Box::default(),
                    add: vec![add("x-served-by", "mesh")].into(),
                }]
                .into(),
            },
        }
    };
    let rewriting = mesh_core::model::RoutePolicy {
        rewrite: Some(std::sync::Arc::new(rewrite)),
        ..Default::default()
    };
    let mesh = mesh_core::mesh::Mesh::from_cache(benches::cache_with_policy(
        100,
        &addrs(3),
        LbPolicy::RoundRobin,
        rewriting,
    ));
    let mut rewritten = tower::Layer::layer(&mesh_tower::MeshLayer::new(mesh), noop);
    rt.block_on(async {
        let req = http::Request::get("http://bench.svc:80/")
            .body(())
            .expect("request");
        rewritten
            .ready()
            .await
            .expect("ready")
            .call(req)
            .await
            .expect("routed");
    });
    g.bench_function("mesh_layer_rewrite_then_noop", |b| {
        b.to_async(&rt).iter(|| {
            let req = http::Request::get("http://bench.svc:80/echo")
                .body(())
                .expect("request");
            let fut = rewritten.call(req);
            async move { black_box(fut.await.expect("routed")) }
        })
    });
    // The full stack (route, route timeout, retry, per-try timeout, pick) with a 15 s route
    // timeout and a retry policy (5xx, 2 retries, 1 s per try, previous hosts) on every route;
    // the request succeeds first time, so this is the cost of having the policies configured.
    let policy = mesh_core::model::RoutePolicy {
        retry: Some(std::sync::Arc::new(mesh_core::model::RetryPolicy {
            retry_on: mesh_core::model::RetryOn::SERVER_ERROR,
            num_retries: 2,
            per_try_timeout: Some(std::time::Duration::from_secs(1)),
            backoff: Default::default(),
            retriable_status_codes: std::sync::Arc::new([]),
            retriable_headers: std::sync::Arc::new([]),
            previous_hosts: true,
            host_selection_max_attempts: 5,
        })),
        ..Default::default()
    };
    let with = |cache: mesh_core::cache::ResourceCache| {
        let noop = tower::service_fn(|_req: http::Request<_>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let mesh = mesh_core::mesh::Mesh::from_cache(cache);
        tower::Layer::layer(&mesh_tower::MeshStackLayer::new(mesh), noop)
    };
    let cache = |policy| benches::cache_with_policy(100, &addrs(3), LbPolicy::RoundRobin, policy);
    bench_stack(
        &mut g,
        &rt,
        "mesh_stack_timeout_only_then_noop",
        with(cache(Default::default())),
    );
    bench_stack(
        &mut g,
        &rt,
        "mesh_stack_timeout_retry_then_noop",
        with(cache(policy.clone())),
    );
    // Every policy configured at once: route timeout, retries, the fault filter (header-driven
    // delay and abort, checked on every request), a header hash policy over RING_HASH clusters,
    // outlier detection (each attempt's outcome reported), the circuit breakers — and the
    // OpenTelemetry metrics layer outside, recording into a Prometheus registry. No fault fires.
    let every = || with(benches::cache_every_policy(100, &addrs(3), policy.clone()));
    bench_stack(&mut g, &rt, "mesh_stack_every_policy_then_noop", every());
    let prometheus = examples::metrics::Prometheus::new().expect("prometheus registry");
    let metered = tower::Layer::layer(
        &mesh_tower::metrics::MetricsLayer::from_provider(&prometheus.provider),
        every(),
    );
    bench_stack(
        &mut g,
        &rt,
        "metrics_and_mesh_stack_every_policy_then_noop",
        metered,
    );
    g.finish();
}

/// Warms `svc` (subscribes and compiles the target), then measures one request through it.
fn bench_stack<S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    label: &str,
    mut svc: S,
) where
    S: tower::Service<http::Request<http_body_util::Empty<bytes::Bytes>>>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let get = |path: &str| {
        http::Request::get(format!("http://bench.svc:80{path}"))
            .header("x-user", "u-42")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    rt.block_on(async {
        svc.ready()
            .await
            .expect("ready")
            .call(get("/"))
            .await
            .expect("routed");
    });
    g.bench_function(label, |b| {
        b.to_async(rt).iter(|| {
            let fut = svc.call(get("/echo"));
            async move { black_box(fut.await.expect("routed")) }
        })
    });
}

criterion_group!(
    benches,
    route_match,
    endpoint_pick,
    snapshot_build,
    layer_overhead
);
criterion_main!(benches);
