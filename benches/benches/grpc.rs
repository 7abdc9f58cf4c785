//! gRPC end to end, same run: a tonic-generated `GreeterClient` on a plain tonic `Channel`
//! straight to a tonic greeter server, vs the same client on a `MeshChannel` routing each call
//! over the 101-route table of the other benches. Unary `SayHello` with a 1 KB name (the reply
//! is about 1 KB too) over loopback HTTP/2. Prints p50/p99 latency (sequential calls) and
//! throughput (concurrent calls), and the mesh/plain ratios.
//!
//! Run: `cargo bench -p benches --bench grpc`
//! (`GRPC_REQUESTS`, `GRPC_SECONDS`, `GRPC_CONCURRENCY`, `GRPC_ROUNDS` override the defaults.)
//!
//! Plain and mesh runs are interleaved in rounds so that machine noise hits both alike.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use benches::harness::{env, median, pct, throughput};
use examples::greeter::{GreeterBackend, GreeterClient, HelloRequest};
use mesh_core::{mesh::Mesh, model::LbPolicy};
use mesh_grpc::MeshChannel;
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What both channels are: tonic's `GrpcService` with tonic bodies both ways.
trait Channel:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error: Into<BoxError>,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> Channel for T where
    T: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error: Into<BoxError>,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

async fn one<C: Channel>(client: &mut GreeterClient<C>, name: &str) -> Result<()> {
    let reply = client.say_hello(HelloRequest { name: name.into() }).await?;
    anyhow::ensure!(reply.get_ref().message.len() > 1024, "short reply");
    Ok(())
}

async fn latencies<C: Channel>(
    client: &mut GreeterClient<C>,
    name: &str,
    n: u64,
    out: &mut Vec<Duration>,
) -> Result<()> {
    for _ in 0..n {
        let t = Instant::now();
        one(client, name).await?;
        out.push(t.elapsed());
    }
    Ok(())
}

/// Closed-loop throughput of generated clients on `channel` (see [`throughput`]).
async fn run<C: Channel>(
    channel: C,
    name: Arc<str>,
    concurrency: u64,
    secs: u64,
) -> Result<(f64, f64)> {
    throughput(
        GreeterClient::new(channel),
        concurrency,
        secs,
        move |mut c| {
            let name = name.clone();
            async move {
                one(&mut c, &name).await?;
                Ok(c)
            }
        },
    )
    .await
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means another bench.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "grpc")
    {
        return Ok(());
    }
    let requests = env("GRPC_REQUESTS", 20_000);
    let secs = env("GRPC_SECONDS", 3);
    let concurrency = env("GRPC_CONCURRENCY", 32);
    let rounds = env("GRPC_ROUNDS", 5) as usize;
    let backend = GreeterBackend::start("v1").await?;
    let name: Arc<str> = "x".repeat(1024).into();

    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", backend.addr()))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mesh = Mesh::from_cache(benches::cache(100, &[backend.addr()], LbPolicy::RoundRobin));
    let meshed = MeshChannel::new(&mesh, &format!("xds:///{}", benches::TARGET))?;
    meshed.wait_ready(Duration::from_secs(5)).await?;
    let (mut p, mut m) = (
        GreeterClient::new(plain.clone()),
        GreeterClient::new(meshed.clone()),
    );

    // Warm both: connections up, target compiled.
    for _ in 0..1000 {
        one(&mut p, &name).await?;
        one(&mut m, &name).await?;
    }

    let lat_rounds = 10;
    let (mut pl, mut ml) = (Vec::new(), Vec::new());
    for _ in 0..lat_rounds {
        latencies(&mut p, &name, requests / lat_rounds, &mut pl).await?;
        latencies(&mut m, &name, requests / lat_rounds, &mut ml).await?;
    }
    pl.sort();
    ml.sort();

    // Throughput: alternate plain and mesh runs; report every round's ratio and their median.
    let (mut pts, mut mts, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pcpu, mut mcpu) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (pt, pc) = run(plain.clone(), name.clone(), concurrency, secs).await?;
        let (mt, mc) = run(meshed.clone(), name.clone(), concurrency, secs).await?;
        pts.push(pt);
        mts.push(mt);
        ratios.push(mt / pt);
        pcpu.push(pc);
        mcpu.push(mc);
    }
    let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    let (pt, mt, ratio) = (median(&mut pts), median(&mut mts), median(&mut ratios));
    let (pc, mc) = (median(&mut pcpu), median(&mut mcpu));

    let us = |x: Duration| x.as_secs_f64() * 1e6;
    println!(
        "grpc: unary SayHello, 1 KB request and reply, loopback HTTP/2, {requests} sequential calls each, route table of 101 routes"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>17} {:>18}",
        "", "p50 (µs)", "p99 (µs)", "calls/s (median)", "CPU µs/call (med)"
    );
    let row = |label: &str, lat: &[Duration], rps: f64, cpu: f64| {
        println!(
            "{label:<8} {:>10.1} {:>10.1} {rps:>17.0} {cpu:>18.2}",
            us(pct(lat, 0.5)),
            us(pct(lat, 0.99))
        )
    };
    row("plain", &pl, pt, pc);
    row("mesh", &ml, mt, mc);
    println!(
        "mesh / plain: p50 {:.3} ({:+.1} µs), p99 {:.3} ({:+.1} µs); throughput ratio median {ratio:.3} over {rounds} rounds [{}] (concurrency {concurrency}, {secs} s each)",
        us(pct(&ml, 0.5)) / us(pct(&pl, 0.5)),
        us(pct(&ml, 0.5)) - us(pct(&pl, 0.5)),
        us(pct(&ml, 0.99)) / us(pct(&pl, 0.99)),
        us(pct(&ml, 0.99)) - us(pct(&pl, 0.99)),
        per_round.join(", ")
    );
    println!(
        "CPU per call (client + server, whole process): mesh {:+.2} µs ({:.3} of plain's efficiency)",
        mc - pc,
        pc / mc
    );
    Ok(())
}
