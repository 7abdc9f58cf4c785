//! Quickstart: a canary split moving live, with no sidecar anywhere.
//!
//! Starts the control plane in-process on the bundled config (`examples/mesh/`), two backends
//! (`v1`, `v2`) and four independent mesh clients, each with its own ADS stream. Sends 1,000
//! requests and prints the observed split (90/10); then rewrites the VirtualService to 0/100 and
//! prints the shift and how long each client took, from the file write, to see it.
//!
//! Run: `cargo run -p examples --example quickstart`

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bytes::Bytes;
use examples::{demo, Backend};
use http::Request;
use http_body_util::Empty;
use mesh_core::mesh::Mesh;
use tower::{Service, ServiceExt};

const TARGET: &str = "reviews.demo:9080";
const CLIENTS: usize = 4;

type Client = mesh_tower::MeshService<mesh_tower::client::HttpClient<Empty<Bytes>>>;

#[tokio::main]
async fn main() -> Result<()> {
    demo::init_tracing();

    let v1 = Backend::start("v1").await?;
    let v2 = Backend::start("v2").await?;
    // The bundled config names ports 18081/18082; point it at this run's backends.
    let ports = [(18081, v1.addr().port()), (18082, v2.addr().port())];
    let dir = demo::render_config("mesh", &ports)?;
    let cp = demo::control_plane(&dir).await?;
    println!(
        "control plane: ADS on {}, config from {}",
        cp.ads_addr(),
        dir.display()
    );
    if let Some(admin) = cp.admin_addr() {
        println!("               status at http://{admin}/debug/config");
    }
    println!("backends:      v1 on {}, v2 on {}", v1.addr(), v2.addr());

    let mut meshes = Vec::new();
    for i in 0..CLIENTS {
        let bootstrap = demo::bootstrap(
            cp.ads_addr(),
            &format!("quickstart-client-{i}"),
            "quickstart",
        )?;
        let mesh = Mesh::from_bootstrap(&bootstrap)?;
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), mesh.target(TARGET).ready())
            .await
            .context("target did not become ready in 10 s")??;
        if i == 0 {
            println!("client warm:   {TARGET} ready in {:.1} ms (listener, routes, clusters, endpoints over ADS)", ms(started.elapsed()));
        }
        meshes.push(mesh);
    }
    let mut client: Client = tower::ServiceBuilder::new()
        .layer(mesh_tower::MeshLayer::new(meshes[0].clone()))
        .service(mesh_tower::client::http1());

    println!("\n1,000 requests to http://{TARGET}/ratings (VirtualService: v1 90, v2 10):");
    print_split(&send(&mut client, 1000, None).await?, 1000);
    let canary = send(&mut client, 20, Some("jason")).await?;
    println!("20 requests with `end-user: jason` (header canary): {canary:?}");

    // Move all traffic to v2 by rewriting the file, and time how long each client takes to see it.
    let routes = dir.join("reviews-routes.yaml");
    let text = std::fs::read_to_string(&routes)?;
    let shifted = text
        .replace("weight: 90", "weight: 0")
        .replace("weight: 10", "weight: 100");
    let mut watches: Vec<_> = meshes.iter().map(|m| m.target(TARGET).watch()).collect();
    for w in &mut watches {
        w.borrow_and_update();
    }
    let written = Instant::now();
    std::fs::write(&routes, shifted)?;
    let mut seen = Vec::new();
    for w in &mut watches {
        tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .context("no client saw the change in 10 s")??;
        seen.push(written.elapsed());
    }
    seen.sort();
    println!(
        "\nrewrote {} to v1 0 / v2 100; {CLIENTS} clients saw it after: first {:.1} ms, last {:.1} ms (file write → new snapshot published)",
        routes.display(),
        ms(seen[0]),
        ms(seen[seen.len() - 1]),
    );
    println!("1,000 requests after the change:");
    print_split(&send(&mut client, 1000, None).await?, 1000);

    let clients = cp.client_status();
    let nacks: u64 = clients
        .iter()
        .flat_map(|c| c.types.values())
        .map(|t| t.nacks)
        .sum();
    println!(
        "control plane: {} ADS streams seen, {nacks} NACKs",
        clients.len()
    );
    cp.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Sends `n` requests and counts responses per backend (`x-backend`).
async fn send(
    client: &mut Client,
    n: usize,
    user: Option<&str>,
) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let mut req = Request::get(format!("http://{TARGET}/ratings"));
        if let Some(u) = user {
            req = req.header("end-user", u);
        }
        let resp = client.ready().await?.call(req.body(Empty::new())?).await?;
        let backend = resp
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        *counts.entry(backend.to_owned()).or_default() += 1;
    }
    Ok(counts)
}

fn print_split(counts: &BTreeMap<String, usize>, n: usize) {
    for name in ["v1", "v2"] {
        let c = counts.get(name).copied().unwrap_or(0);
        println!("  {name}: {c:>4} ({:.1} %)", 100.0 * c as f64 / n as f64);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
