//! Proxyless gRPC: a tonic-generated `GreeterClient` on a `MeshChannel`, routed per call by
//! xDS from the control plane — a 90/10 split and a header canary, no sidecar anywhere.
//!
//! Starts the control plane in-process on the bundled config (`examples/mesh-greeter/`), two
//! real tonic greeter servers (`v1`, `v2`) on loopback and one mesh client over ADS. Makes 1,000
//! `SayHello` calls and prints the split (90/10), then 20 calls carrying the metadata
//! `x-user: jason` (all to v2), then a call to a service the mesh does not know.
//!
//! Run: `cargo run -p examples --example greeter`

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Result;
use examples::{
    demo,
    greeter::{GreeterBackend, GreeterClient, HelloRequest, BACKEND_HEADER},
};
use mesh_core::mesh::Mesh;
use mesh_grpc::MeshChannel;

const TARGET: &str = "xds:///greeter.demo:50051";

#[tokio::main]
async fn main() -> Result<()> {
    demo::init_tracing();

    let v1 = GreeterBackend::start("v1").await?;
    let v2 = GreeterBackend::start("v2").await?;
    // The bundled config names ports 50061/50062; point it at this run's greeters.
    let ports = [(50061, v1.addr().port()), (50062, v2.addr().port())];
    let dir = demo::render_config("mesh-greeter", &ports)?;
    let cp = demo::control_plane(&dir).await?;
    println!(
        "control plane: ADS on {}, config from {}",
        cp.ads_addr(),
        dir.display()
    );
    println!("greeters:      v1 on {}, v2 on {}", v1.addr(), v2.addr());

    // A service would write `MeshChannel::connect(TARGET).await?` with GRPC_XDS_BOOTSTRAP set;
    // here the bootstrap points at the in-process control plane.
    let bootstrap = demo::bootstrap(cp.ads_addr(), "greeter-client-1", "greeter-example")?;
    let mesh = Mesh::from_bootstrap(&bootstrap)?;
    let started = Instant::now();
    let channel = MeshChannel::new(&mesh, TARGET)?;
    channel.wait_ready(Duration::from_secs(10)).await?;
    println!(
        "channel:       {TARGET} ready in {:.1} ms (LDS → RDS → CDS → EDS over ADS)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut client = GreeterClient::new(channel);

    let reply = client
        .say_hello(HelloRequest {
            name: "world".into(),
        })
        .await?;
    println!("one call:      {:?}", reply.get_ref().message);

    println!("\n1,000 calls (VirtualService `split`: v1 90, v2 10):");
    let counts = calls(&mut client, 1000, None).await?;
    for name in ["v1", "v2"] {
        let c = counts.get(name).copied().unwrap_or(0);
        println!("  {name}: {c:>4} ({:.1} %)", c as f64 / 10.0);
    }
    let canary = calls(&mut client, 20, Some("jason")).await?;
    println!("20 calls with metadata `x-user: jason` (route `canary-user`): {canary:?}");

    // A service the mesh has no listener for: the call fails UNAVAILABLE, saying why.
    let mut unknown = GreeterClient::new(MeshChannel::new(&mesh, "xds:///nope.demo:50051")?);
    let status = unknown
        .say_hello(HelloRequest {
            name: "nobody".into(),
        })
        .await
        .expect_err("no such service");
    println!(
        "\na call to xds:///nope.demo:50051: {:?}: {}",
        status.code(),
        status.message()
    );

    cp.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Makes `n` calls and counts replies per backend (`x-backend` response metadata).
async fn calls(
    client: &mut GreeterClient<MeshChannel>,
    n: usize,
    user: Option<&str>,
) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let mut req = tonic::Request::new(HelloRequest {
            name: "mesh".into(),
        });
        if let Some(u) = user {
            req.metadata_mut().insert("x-user", u.parse()?);
        }
        let reply = client.say_hello(req).await?;
        let backend = reply
            .metadata()
            .get(BACKEND_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        *counts.entry(backend).or_default() += 1;
    }
    Ok(counts)
}
