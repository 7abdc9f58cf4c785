//! Metrics: the mesh client's OpenTelemetry instruments, scraped as Prometheus text.
//!
//! Starts the control plane in-process on the bundled config (`examples/mesh/`, with a retry
//! policy added to the canary route), two backends, and one mesh client whose stack is
//! `MetricsLayer` → `MeshStackLayer` → HTTP/1.1. Sends 200 requests while v2 answers its first
//! few with 503 (retried by the mesh), one request to a target nobody serves (a mesh error),
//! then serves `/metrics` on loopback, scrapes it over HTTP and prints the interesting lines.
//!
//! Run: `cargo run -p examples --example metrics`

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use examples::{demo, metrics::Prometheus, Backend, Misbehavior};
use http::Request;
use http_body_util::Empty;
use mesh_core::mesh::Mesh;
use mesh_tower::{
    metrics::{observe_clusters, ClusterCounter, MetricsLayer},
    retry::ReplayBody,
    MeshStackLayer,
};
use opentelemetry::metrics::MeterProvider;
use tower::{Service, ServiceExt};

const TARGET: &str = "reviews.demo:9080";
const REQUESTS: usize = 200;

#[tokio::main]
async fn main() -> Result<()> {
    demo::init_tracing();

    let v1 = Backend::start("v1").await?;
    let v2 = Backend::start("v2").await?;
    let ports = [(18081, v1.addr().port()), (18082, v2.addr().port())];
    let dir = demo::render_config("mesh", &ports)?;
    // Retry 5xx once on the canary route, so the retry counter has something to count.
    let routes = dir.join("reviews-routes.yaml");
    let text = std::fs::read_to_string(&routes)?;
    let with_retries = text.replace(
        "    - name: canary\n",
        "    - name: canary\n      retries: { attempts: 2, retryOn: 5xx }\n",
    );
    anyhow::ensure!(with_retries != text, "canary route not found in {routes:?}");
    std::fs::write(&routes, with_retries)?;
    let cp = demo::control_plane(&dir).await?;

    let bootstrap = demo::bootstrap(cp.ads_addr(), "metrics-client", "metrics")?;
    let mesh = Mesh::from_bootstrap(&bootstrap)?;
    tokio::time::timeout(Duration::from_secs(10), mesh.target(TARGET).ready())
        .await
        .context("target did not become ready in 10 s")??;

    // OpenTelemetry → Prometheus registry; the mesh's instruments on a meter from it.
    let prom = Prometheus::new()?;
    let meter = prom.provider.meter("mesh-tower");
    observe_clusters(&meter, &mesh, ClusterCounter::ALL);
    let mut client = tower::ServiceBuilder::new()
        .layer(MetricsLayer::new(&meter))
        .layer(MeshStackLayer::new(mesh.clone()).ready_timeout(Duration::from_secs(1)))
        .service(mesh_tower::client::http1::<ReplayBody<Empty<Bytes>>>());

    v2.fail_first(5, Misbehavior::Status(503));
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..REQUESTS {
        let req = Request::get(format!("http://{TARGET}/ratings")).body(Empty::new())?;
        match client.ready().await?.call(req).await {
            Ok(r) if r.status().is_success() => ok += 1,
            _ => failed += 1,
        }
    }
    println!("{REQUESTS} requests to http://{TARGET}/ratings: {ok} ok, {failed} failed (v2 answered its first 5 with 503; the route retries 5xx once)");
    let unknown = Request::get("http://ratings.demo:9080/").body(Empty::new())?;
    if let Err(e) = client.ready().await?.call(unknown).await {
        println!("1 request to a target nobody serves: {}", e.kind());
    }

    let (addr, server) = prom.serve("127.0.0.1:0".parse()?).await?;
    println!("\nmetrics at http://{addr}/metrics — a few lines of it:");
    let text = examples::metrics::scrape(addr).await?;
    let interesting = [
        "http_client_request_duration_seconds_count",
        "mesh_client_retries_total",
        "http_client_active_requests",
        "mesh_cluster_endpoints",
    ];
    for line in text
        .lines()
        .filter(|l| interesting.iter().any(|p| l.starts_with(p)))
    {
        println!("  {line}");
    }
    println!("({} lines in all)", text.lines().count());

    server.abort();
    cp.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
