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
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bytes::Bytes;
use examples::Backend;
use http::Request;
use http_body_util::Empty;
use mesh_control_plane::ControlPlane;
use mesh_core::{bootstrap::Bootstrap, mesh::Mesh};
use tower::{Service, ServiceExt};

const TARGET: &str = "reviews.demo:9080";
const CLIENTS: usize = 4;

type Client = mesh_tower::MeshService<mesh_tower::client::HttpClient<Empty<Bytes>>>;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let v1 = Backend::start("v1").await?;
    let v2 = Backend::start("v2").await?;
    let dir = render_config(&v1, &v2)?;

    let cp = ControlPlane::builder()
        .config_dir(&dir)
        .listen_addr("127.0.0.1:0".parse()?)
        .admin_addr("127.0.0.1:0".parse()?)
        .start()
        .await?;
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
        let bootstrap = Bootstrap::from_json(&format!(
            r#"{{"xds_servers":[{{"server_uri":"{}","channel_creds":[{{"type":"insecure"}}]}}],
                "node":{{"id":"quickstart-client-{i}","cluster":"quickstart"}}}}"#,
            cp.ads_addr()
        ))?;
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

/// Copies the bundled config to a temporary directory, pointing it at this run's backends.
fn render_config(v1: &Backend, v2: &Backend) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mesh");
    let dir = std::env::temp_dir().join(format!("mesh-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?
            .replace("18081", &v1.addr().port().to_string())
            .replace("18082", &v2.addr().port().to_string());
        std::fs::write(dir.join(path.file_name().context("file name")?), text)?;
    }
    Ok(dir)
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
