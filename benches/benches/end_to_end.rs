//! End to end, same run: a hyper client calling a hyper server directly vs the same client
//! behind `MeshLayer`, 1 KB POST bodies on loopback. Prints p50/p99 latency (sequential
//! requests) and throughput (concurrent requests), and the mesh/direct ratios.
//!
//! Run: `cargo bench -p benches --bench end_to_end`
//! (`E2E_REQUESTS`, `E2E_SECONDS`, `E2E_CONCURRENCY`, `E2E_ROUNDS` override the defaults.)
//!
//! Direct and mesh runs are interleaved in rounds so that machine noise hits both alike.

use std::time::{Duration, Instant};

use anyhow::Result;
use benches::harness::{env, median, pct, throughput};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use mesh_core::{mesh::Mesh, model::LbPolicy};
use tower::{Service, ServiceExt};

async fn one<S>(svc: &mut S, uri: &str, body: &Bytes) -> Result<()>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let req = Request::post(uri).body(Full::new(body.clone()))?;
    let resp = svc.ready().await?.call(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body().collect().await?;
    Ok(())
}

async fn latencies<S>(
    svc: &mut S,
    uri: &str,
    body: &Bytes,
    n: u64,
    out: &mut Vec<Duration>,
) -> Result<()>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    for _ in 0..n {
        let t = Instant::now();
        one(svc, uri, body).await?;
        out.push(t.elapsed());
    }
    Ok(())
}

/// Closed-loop throughput of `svc` posting `body` to `uri` (see [`throughput`]).
async fn run<S>(
    svc: S,
    uri: &'static str,
    body: &Bytes,
    concurrency: u64,
    secs: u64,
) -> Result<(f64, f64)>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
    S::Future: Send,
{
    let body = body.clone();
    throughput(svc, concurrency, secs, move |mut s: S| {
        let body = body.clone();
        async move {
            one(&mut s, uri, &body).await?;
            Ok(s)
        }
    })
    .await
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means another bench.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "end_to_end")
    {
        return Ok(());
    }
    let requests = env("E2E_REQUESTS", 20_000);
    let secs = env("E2E_SECONDS", 3);
    let concurrency = env("E2E_CONCURRENCY", 32);
    let backend = examples::Backend::start("v1").await?;
    let body = Bytes::from(vec![b'x'; 1024]);

    let direct_uri: &'static str =
        Box::leak(format!("http://{}/echo", backend.addr()).into_boxed_str());
    let mesh_uri: &'static str = "http://bench.svc:80/echo";
    let mut direct = mesh_tower::client::http1::<Full<Bytes>>();
    let mesh = Mesh::from_cache(benches::cache(100, &[backend.addr()], LbPolicy::RoundRobin));
    let mut meshed = tower::ServiceBuilder::new()
        .layer(mesh_tower::MeshLayer::new(mesh))
        .service(mesh_tower::client::http1::<Full<Bytes>>());

    // Warm both: connections pooled, target subscribed and compiled.
    for _ in 0..1000 {
        one(&mut direct, direct_uri, &body).await?;
        one(&mut meshed, mesh_uri, &body).await?;
    }

    let rounds = 10;
    let (mut d, mut m) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        latencies(&mut direct, direct_uri, &body, requests / rounds, &mut d).await?;
        latencies(&mut meshed, mesh_uri, &body, requests / rounds, &mut m).await?;
    }
    d.sort();
    m.sort();

    // Throughput: alternate direct and mesh runs; the machine's noise between runs (±10 % on a
    // 2-core box) dwarfs the mesh's cost, so report every round's ratio and their median.
    let rounds = env("E2E_ROUNDS", 5) as usize;
    let (mut dts, mut mts, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut dcpu, mut mcpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (dt, dc) = run(direct.clone(), direct_uri, &body, concurrency, secs).await?;
        let (mt, mc) = run(meshed.clone(), mesh_uri, &body, concurrency, secs).await?;
        dts.push(dt);
        mts.push(mt);
        ratios.push(mt / dt);
        dcpu.push(dc);
        mcpu.push(mc);
    }
    let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    let (dt, mt, ratio) = (median(&mut dts), median(&mut mts), median(&mut ratios));
    let (dc, mc) = (median(&mut dcpu), median(&mut mcpu));

    let us = |x: Duration| x.as_secs_f64() * 1e6;
    println!("end_to_end: 1 KB POST over loopback, HTTP/1.1, {requests} sequential requests each, route table of 101 routes");
    let row = |name: &str, lat: &[Duration], rps: f64, cpu: f64| {
        println!(
            "{name:<10} {:>10.1} {:>10.1} {rps:>16.0} {cpu:>18.2}",
            us(pct(lat, 0.5)),
            us(pct(lat, 0.99))
        )
    };
    println!(
        "{:<10} {:>10} {:>10} {:>16} {:>18}",
        "", "p50 (µs)", "p99 (µs)", "req/s (median)", "CPU µs/req (med)"
    );
    row("direct", &d, dt, dc);
    row("mesh", &m, mt, mc);
    println!(
        "mesh - direct: p50 {:+.1} µs, p99 {:+.1} µs; throughput ratio median {ratio:.3} over {rounds} rounds [{}] (concurrency {concurrency}, {secs} s each)",
        us(pct(&m, 0.5)) - us(pct(&d, 0.5)),
        us(pct(&m, 0.99)) - us(pct(&d, 0.99)),
        per_round.join(", ")
    );
    println!(
        "CPU per request (client + server, whole process): mesh {:+.2} µs ({:.3} of direct's efficiency)",
        mc - dc,
        dc / mc
    );
    Ok(())
}
