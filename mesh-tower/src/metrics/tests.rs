//! The instruments as an exporter sees them: the SDK's in-memory exporter, flushed on demand,
//! over the full stack on a `tower-test` mock.

use std::{collections::BTreeMap, time::Duration};

use mesh_core::{
    mesh::Mesh,
    model::{Endpoint, RetryLimits, RetryOn, RouteAction, RoutePolicy},
};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::{
    data::{AggregatedMetrics, MetricData},
    InMemoryMetricExporter, SdkMeterProvider,
};
use tower::{Layer, ServiceExt};

use super::*;
use crate::test_support::{self as ts, endpoints, get, status};

/// One exported data point, flattened.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    attrs: BTreeMap<String, String>,
    /// Counter / gauge value, or the histogram's count.
    value: f64,
    /// Histogram only: sum and bucket counts.
    sum: f64,
    buckets: Vec<u64>,
}

struct Harness {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Harness {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter.clone())
            .build();
        Harness { provider, exporter }
    }

    fn layer(&self) -> MetricsLayer {
        MetricsLayer::from_provider(&self.provider)
    }

    /// Every instrument's points as of now (cumulative), with its unit.
    fn collect(&self) -> BTreeMap<String, (String, Vec<Point>)> {
        self.exporter.reset();
        self.provider.force_flush().expect("flush");
        let mut out = BTreeMap::new();
        let batches = self.exporter.get_finished_metrics().expect("metrics");
        for rm in batches.iter() {
            for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
                let points = match m.data() {
                    AggregatedMetrics::F64(d) => points(d, |v| v),
                    AggregatedMetrics::U64(d) => points(d, |v| v as f64),
                    AggregatedMetrics::I64(d) => points(d, |v| v as f64),
                };
                out.insert(m.name().to_owned(), (m.unit().to_owned(), points));
            }
        }
        out
    }

    /// The instrumentation scopes exported: name and schema URL.
    fn scopes(&self) -> Vec<(String, Option<String>)> {
        self.exporter.reset();
        self.provider.force_flush().expect("flush");
        let batches = self.exporter.get_finished_metrics().expect("metrics");
        batches
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .map(|s| {
                let scope = s.scope();
                (
                    scope.name().to_owned(),
                    scope.schema_url().map(str::to_owned),
                )
            })
            .collect()
    }

    /// The points of one instrument (none if it has recorded nothing).
    fn points(&self, name: &str) -> Vec<Point> {
        self.collect()
            .remove(name)
            .map(|(_, p)| p)
            .unwrap_or_default()
    }
}

fn attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
        .collect()
}

fn points<T: Copy>(d: &MetricData<T>, f: impl Fn(T) -> f64) -> Vec<Point> {
    let plain = |attrs, value| Point {
        attrs,
        value,
        sum: 0.0,
        buckets: Vec::new(),
    };
    match d {
        MetricData::Sum(s) => s
            .data_points()
            .map(|p| plain(attrs(p.attributes()), f(p.value())))
            .collect(),
        MetricData::Gauge(g) => g
            .data_points()
            .map(|p| plain(attrs(p.attributes()), f(p.value())))
            .collect(),
        MetricData::Histogram(h) => h
            .data_points()
            .map(|p| Point {
                attrs: attrs(p.attributes()),
                value: p.count() as f64,
                sum: f(p.sum()),
                buckets: p.bucket_counts().collect(),
            })
            .collect(),
        MetricData::ExponentialHistogram(_) => Vec::new(),
    }
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const SERVER: [(&str, &str); 3] = [
    ("http.request.method", "GET"),
    ("server.address", "svc"),
    ("server.port", "80"),
];

fn with_server(extra: &[(&'static str, &'static str)]) -> BTreeMap<String, String> {
    let mut all = SERVER.to_vec();
    all.extend_from_slice(extra);
    expect(&all)
}

fn one_endpoint(policy: RoutePolicy, limits: RetryLimits) -> Mesh {
    ts::mesh(policy, limits, &endpoints(1))
}

#[tokio::test(start_paused = true)]
async fn success_records_duration_with_semconv_and_mesh_attributes() {
    let h = Harness::new();
    let mesh = one_endpoint(RoutePolicy::default(), RetryLimits::default());
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let call = tokio::spawn(svc.oneshot(get("/ratings")));
    let (_req, send) = handle.next_request().await.expect("request");
    // In flight: one active request, under the request's method and server.
    let active = h.points(name::ACTIVE_REQUESTS);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].attrs, expect(&SERVER));
    assert_eq!(active[0].value, 1.0);
    tokio::time::advance(Duration::from_millis(30)).await;
    send.send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    let all = h.collect();
    let (unit, duration) = &all[name::REQUEST_DURATION];
    assert_eq!(unit, "s");
    assert_eq!(duration.len(), 1);
    let p = &duration[0];
    assert_eq!(
        p.attrs,
        with_server(&[
            ("http.response.status_code", "200"),
            ("network.protocol.version", "1.1"),
            ("mesh.route", "r"),
            ("mesh.cluster", "c"),
            ("mesh.outcome", "success"),
        ])
    );
    assert_eq!(p.value, 1.0);
    // 30 ms of paused time (tokio may round the timer up by 1 ms): bucket (25 ms, 50 ms].
    assert!((0.030..0.032).contains(&p.sum), "{}", p.sum);
    assert_eq!(p.buckets.len(), DURATION_BOUNDARIES.len() + 1);
    assert_eq!(p.buckets[3], 1, "{:?}", p.buckets);
    let (unit, active) = &all[name::ACTIVE_REQUESTS];
    assert_eq!((unit.as_str(), active[0].value), ("{request}", 0.0));
    assert!(!all.contains_key(name::RETRIES));
    assert!(!all.contains_key(name::OVERFLOWS));
    assert_eq!(
        h.scopes(),
        vec![("mesh-tower".to_owned(), Some(SCHEMA_URL.to_owned()))]
    );
}

#[tokio::test(start_paused = true)]
async fn upstream_5xx_is_an_http_error_typed_by_its_status() {
    let h = Harness::new();
    let mesh = one_endpoint(RoutePolicy::default(), RetryLimits::default());
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let call = tokio::spawn(svc.oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(503));
    assert_eq!(call.await.unwrap().unwrap().status(), 503);
    let d = h.points(name::REQUEST_DURATION);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].attrs,
        with_server(&[
            ("http.response.status_code", "503"),
            ("network.protocol.version", "1.1"),
            ("error.type", "503"),
            ("mesh.route", "r"),
            ("mesh.cluster", "c"),
            ("mesh.outcome", "http_error"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn mesh_error_is_typed_by_its_kind_and_has_no_status() {
    let h = Harness::new();
    // Only /api/ is routed: /other gets no_route before anything is sent.
    let routes = vec![ts::route(
        "api",
        "/api/",
        RouteAction::Cluster("c".into()),
        RoutePolicy::default(),
    )];
    let eps = endpoints(1).into_iter().map(Endpoint::healthy).collect();
    let mesh = Mesh::from_cache(ts::cache(routes, RetryLimits::default(), eps));
    let (stack, _handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let err = svc.oneshot(get("/other")).await.unwrap_err();
    assert_eq!(err.kind(), crate::MeshErrorKind::NoRoute);
    let d = h.points(name::REQUEST_DURATION);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].attrs,
        with_server(&[("error.type", "no_route"), ("mesh.outcome", "mesh_error")])
    );
    assert_eq!(h.points(name::ACTIVE_REQUESTS)[0].value, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_retried_request_counts_its_retries() {
    let h = Harness::new();
    let policy = RoutePolicy {
        retry: Some(ts::retry(RetryOn::SERVER_ERROR, 3).into()),
        ..Default::default()
    };
    let mesh = one_endpoint(policy, RetryLimits::default());
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    // First request: 503, 503, 200 → two retries, a success.
    let call = tokio::spawn(svc.clone().oneshot(get("/")));
    for code in [503, 503, 200] {
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(status(code));
    }
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    // Second: answered at once, no retry.
    let call = tokio::spawn(svc.oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    let all = h.collect();
    let (unit, retries) = &all[name::RETRIES];
    assert_eq!(unit, "{retry}");
    assert_eq!(retries.len(), 1);
    assert_eq!(
        retries[0].attrs,
        expect(&[("mesh.route", "r"), ("mesh.cluster", "c")])
    );
    assert_eq!(retries[0].value, 2.0);
    let (_, duration) = &all[name::REQUEST_DURATION];
    assert_eq!(duration.len(), 1);
    assert_eq!(duration[0].value, 2.0);
    assert_eq!(duration[0].attrs["mesh.outcome"], "success");
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_still_count_on_the_error_path() {
    let h = Harness::new();
    let policy = RoutePolicy {
        retry: Some(ts::retry(RetryOn::RESET, 1).into()),
        ..Default::default()
    };
    let mesh = one_endpoint(policy, RetryLimits::default());
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let call = tokio::spawn(svc.oneshot(get("/")));
    for _ in 0..2 {
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_error("reset by peer");
    }
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), crate::MeshErrorKind::Upstream);
    let all = h.collect();
    assert_eq!(all[name::RETRIES].1[0].value, 1.0);
    let d = &all[name::REQUEST_DURATION].1[0];
    assert_eq!(
        d.attrs,
        with_server(&[
            ("error.type", "upstream"),
            ("mesh.route", "r"),
            ("mesh.cluster", "c"),
            ("mesh.outcome", "mesh_error"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn max_requests_overflow_is_counted_by_limit() {
    let h = Harness::new();
    let limits = RetryLimits {
        max_requests: 1,
        ..RetryLimits::default()
    };
    let mesh = one_endpoint(RoutePolicy::default(), limits);
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let held = tokio::spawn(svc.clone().oneshot(get("/")));
    let (_req, send) = handle.next_request().await.unwrap();
    let err = svc.clone().oneshot(get("/")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        crate::MeshErrorKind::Overflow(crate::OverflowLimit::MaxRequests)
    );
    send.send_response(status(200));
    held.await.unwrap().unwrap();
    let all = h.collect();
    let (unit, overflows) = &all[name::OVERFLOWS];
    assert_eq!(unit, "{request}");
    assert_eq!(
        overflows,
        &vec![Point {
            attrs: expect(&[("mesh.cluster", "c"), ("mesh.limit", "max_requests")]),
            value: 1.0,
            sum: 0.0,
            buckets: Vec::new(),
        }]
    );
    let failed: Vec<_> = all[name::REQUEST_DURATION]
        .1
        .iter()
        .filter(|p| p.attrs.get("error.type").map(String::as_str) == Some("overflow"))
        .map(|p| p.value)
        .collect();
    assert_eq!(failed, vec![1.0]);
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_response_layer_is_read_back_as_a_mesh_error() {
    let h = Harness::new();
    let routes = vec![ts::route(
        "api",
        "/api/",
        RouteAction::Cluster("c".into()),
        RoutePolicy::default(),
    )];
    let eps = endpoints(1).into_iter().map(Endpoint::healthy).collect();
    let mesh = Mesh::from_cache(ts::cache(routes, RetryLimits::default(), eps));
    let (stack, _handle) = ts::stack(&mesh, 1024).await;
    let svc = h
        .layer()
        .layer(crate::error_response::ErrorResponseLayer::new().layer(stack));
    let resp = svc.oneshot(get("/other")).await.unwrap();
    assert_eq!(resp.status(), 404);
    let d = h.points(name::REQUEST_DURATION);
    assert_eq!(
        d[0].attrs,
        with_server(&[
            ("http.response.status_code", "404"),
            ("error.type", "no_route"),
            ("mesh.outcome", "mesh_error"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn the_bare_mesh_layer_reports_route_and_cluster_too() {
    let h = Harness::new();
    let mesh = one_endpoint(RoutePolicy::default(), RetryLimits::default());
    tokio::time::timeout(Duration::from_secs(5), mesh.target("svc:80").ready())
        .await
        .unwrap()
        .unwrap();
    let (mock, mut handle) =
        tower_test::mock::pair::<http::Request<String>, http::Response<&str>>();
    let svc = h.layer().layer(crate::MeshLayer::new(mesh).layer(mock));
    let call = tokio::spawn(svc.oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    call.await.unwrap().unwrap();
    let d = h.points(name::REQUEST_DURATION);
    assert_eq!(d[0].attrs["mesh.route"], "r");
    assert_eq!(d[0].attrs["mesh.cluster"], "c");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_leaves_active_requests_and_records_nothing() {
    let h = Harness::new();
    let mesh = one_endpoint(RoutePolicy::default(), RetryLimits::default());
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let call = tokio::spawn(svc.oneshot(get("/")));
    let _pending = handle.next_request().await.unwrap();
    assert_eq!(h.points(name::ACTIVE_REQUESTS)[0].value, 1.0);
    call.abort();
    let _ = call.await;
    assert_eq!(h.points(name::ACTIVE_REQUESTS)[0].value, 0.0);
    assert!(h.points(name::REQUEST_DURATION).is_empty());
}

#[tokio::test(start_paused = true)]
async fn other_methods_are_other() {
    assert_eq!(method_name(&Method::PATCH), "PATCH");
    assert_eq!(
        method_name(&Method::from_bytes(b"PURGE").unwrap()),
        "_OTHER"
    );
    assert_eq!(status_value(503).as_str(), "503");
    assert_eq!(status_value(99).as_str(), "_OTHER");
}

#[tokio::test(start_paused = true)]
async fn cluster_counters_are_observed_per_target_and_cluster() {
    let h = Harness::new();
    let mesh = ts::mesh(
        RoutePolicy::default(),
        RetryLimits::default(),
        &endpoints(3),
    );
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    observe_clusters(
        &h.provider.meter("mesh-tower-test"),
        &mesh,
        ClusterCounter::ALL,
    );
    // A counter the cluster has no value for (a feature it does not use) reports nothing.
    let absent = ClusterCounter {
        name: "mesh.cluster.absent",
        description: "never present",
        unit: "{thing}",
        reading: ClusterReading::Counter,
        read: |_| None,
    };
    observe_clusters(&h.provider.meter("mesh-tower-test"), &mesh, &[absent]);
    let call = tokio::spawn(h.layer().layer(stack).oneshot(get("/")));
    let (_req, send) = handle.next_request().await.unwrap();
    let all = h.collect();
    let at = expect(&[("mesh.target", "svc:80"), ("mesh.cluster", "c")]);
    let (unit, endpoints) = &all["mesh.cluster.endpoints"];
    assert_eq!(unit, "{endpoint}");
    assert_eq!((&endpoints[0].attrs, endpoints[0].value), (&at, 3.0));
    assert!(all
        .get("mesh.cluster.absent")
        .is_none_or(|(_, p)| p.is_empty()));
    let active = &all["mesh.cluster.active_requests"].1;
    assert_eq!((&active[0].attrs, active[0].value), (&at, 1.0));
    // No outlier detection on this cluster: its outlier instruments report nothing.
    assert!(all
        .get("mesh.cluster.outlier.ejections")
        .is_none_or(|(_, p)| p.is_empty()));
    assert_eq!(all["mesh.cluster.pending_overflows"].1[0].value, 0.0);
    send.send_response(status(200));
    call.await.unwrap().unwrap();
    assert_eq!(h.points("mesh.cluster.active_requests")[0].value, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_refused_by_max_retries_is_an_overflow_even_when_the_response_stands() {
    let h = Harness::new();
    let policy = RoutePolicy {
        retry: Some(ts::retry(RetryOn::SERVER_ERROR, 2).into()),
        ..Default::default()
    };
    let limits = RetryLimits {
        max_retries: 0,
        ..RetryLimits::default()
    };
    let mesh = one_endpoint(policy, limits);
    let (stack, mut handle) = ts::stack(&mesh, 1024).await;
    let svc = h.layer().layer(stack);
    let call = tokio::spawn(svc.oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(503));
    // The retry was due but refused: the 503 stands, nothing more was sent.
    assert_eq!(call.await.unwrap().unwrap().status(), 503);
    let all = h.collect();
    let overflows = &all[name::OVERFLOWS].1;
    assert_eq!(overflows.len(), 1);
    assert_eq!(
        (&overflows[0].attrs, overflows[0].value),
        (
            &expect(&[("mesh.cluster", "c"), ("mesh.limit", "max_retries")]),
            1.0
        )
    );
    assert!(!all.contains_key(name::RETRIES));
    assert_eq!(
        all[name::REQUEST_DURATION].1[0].attrs["mesh.outcome"],
        "http_error"
    );
}
