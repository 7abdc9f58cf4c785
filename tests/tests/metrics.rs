//! Metrics end to end: control plane → ADS → a mesh client whose stack is `MetricsLayer` →
//! `MeshStackLayer` → HTTP/1.1 → real backends; the OpenTelemetry SDK exports to a Prometheus
//! registry served on `/metrics`, scraped over real loopback HTTP after the traffic.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use examples::{metrics::Prometheus, Misbehavior};
use http::Request;
use http_body_util::Empty;
use mesh_tower::{
    metrics::{observe_clusters, ClusterCounter, MetricsLayer},
    retry::ReplayBody,
    MeshStackLayer,
};
use opentelemetry::metrics::MeterProvider;
use tests::{
    control_plane, mesh,
    prometheus::{samples, value},
    ready, service_yaml, temp_dir, write, Backend,
};
use tower::{Service, ServiceExt};

const TARGET: &str = "svc.test:8080";

/// Only `/api/` is routed (to v1, retrying 5xx once); anything else is `no_route`.
const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc, namespace: test }
spec:
  hosts: [svc.test]
  http:
    - name: api
      match: [{ uri: { prefix: /api/ } }]
      retries: { attempts: 2, retryOn: 5xx }
      route: [{ destination: { host: svc.test, subset: v1 } }]
"#;

#[tokio::test]
async fn prometheus_endpoint_shows_semconv_duration_retries_and_mesh_errors() -> Result<()> {
    let v1 = Backend::start("v1").await?;
    let dir = temp_dir("metrics");
    write(&dir, "svc.yaml", &service_yaml("svc.test", 8080, &[&v1]));
    write(&dir, "routes.yaml", ROUTES);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "metrics-client")?;
    ready(&m, TARGET).await?;

    let prom = Prometheus::new()?;
    let meter = prom.provider.meter("mesh-tower");
    observe_clusters(&meter, &m, ClusterCounter::ALL);
    let mut client = tower::ServiceBuilder::new()
        .layer(MetricsLayer::new(&meter))
        .layer(MeshStackLayer::new(m.clone()).ready_timeout(Duration::from_secs(10)))
        .service(mesh_tower::client::http1::<ReplayBody<Empty<Bytes>>>());
    let mut send = async |path: &str| {
        let req = Request::get(format!("http://{TARGET}{path}")).body(Empty::new())?;
        anyhow::Ok(client.ready().await?.call(req).await)
    };

    // 20 plain successes; one success after a retried 503; one no_route.
    for _ in 0..20 {
        assert_eq!(send("/api/items").await??.status(), 200);
    }
    v1.fail_first(1, Misbehavior::Status(503));
    assert_eq!(send("/api/items").await??.status(), 200);
    let err = send("/other").await?.expect_err("no route for /other");
    assert_eq!(err.kind(), mesh_tower::MeshErrorKind::NoRoute);
    assert_eq!(v1.served(), 22);

    let (addr, server) = prom.serve("127.0.0.1:0".parse()?).await?;
    let text = examples::metrics::scrape(addr).await?;
    server.abort();
    let all = samples(&text)?;
    let cluster = "outbound|8080|v1|svc.test";
    let server_attrs = [
        ("http_request_method", "GET"),
        ("server_address", "svc.test"),
        ("server_port", "8080"),
    ];
    let ok: Vec<_> = server_attrs
        .iter()
        .copied()
        .chain([
            ("http_response_status_code", "200"),
            ("network_protocol_version", "1.1"),
            ("mesh_route", "api"),
            ("mesh_cluster", cluster),
            ("mesh_outcome", "success"),
        ])
        .collect();
    assert_eq!(
        value(&all, "http_client_request_duration_seconds_count", &ok)?,
        21.0
    );
    // The semconv buckets: the last finite boundary is 10 s, and every request fell under it.
    let mut le10 = ok.clone();
    le10.push(("le", "10"));
    assert_eq!(
        value(&all, "http_client_request_duration_seconds_bucket", &le10)?,
        21.0
    );
    assert!(text.contains("# TYPE http_client_request_duration_seconds histogram"));
    assert_eq!(
        value(
            &all,
            "mesh_client_retries_total",
            &[("mesh_route", "api"), ("mesh_cluster", cluster)]
        )?,
        1.0
    );
    let no_route: Vec<_> = server_attrs
        .iter()
        .copied()
        .chain([("error_type", "no_route"), ("mesh_outcome", "mesh_error")])
        .collect();
    assert_eq!(
        value(
            &all,
            "http_client_request_duration_seconds_count",
            &no_route
        )?,
        1.0
    );
    assert_eq!(
        value(&all, "http_client_active_requests", &server_attrs)?,
        0.0
    );
    assert_eq!(
        value(
            &all,
            "mesh_cluster_endpoints",
            &[("mesh_target", TARGET), ("mesh_cluster", cluster)]
        )?,
        1.0
    );
    cp.shutdown().await;
    Ok(())
}
