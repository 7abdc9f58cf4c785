//! `mesh-control-plane`: serves Istio YAML from a directory as xDS over ADS.
//!
//! ```text
//! mesh-control-plane --config ./mesh/ --listen 0.0.0.0:15010 --admin 127.0.0.1:15014
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mesh_control_plane::{ControlPlane, DEFAULT_ADMIN, DEFAULT_LISTEN};

/// Reads Istio YAML (VirtualService, DestinationRule, ServiceEntry, WorkloadEntry) and serves
/// Envoy v3 xDS over ADS to the mesh library and to gRPC proxyless clients.
#[derive(Debug, Parser)]
#[command(name = "mesh-control-plane", version)]
struct Args {
    /// Directory of Istio YAML files (`*.yaml`, `*.yml`), hot-reloaded on change.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// ADS (gRPC) listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Admin HTTP listen address (`/ready`, `/healthz`, `/debug/config`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    admin: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let handle = ControlPlane::builder()
        .config_dir(&args.config)
        .listen_addr(args.listen)
        .admin_addr(args.admin)
        .start()
        .await
        .context("starting the control plane")?;
    if let Some(err) = handle.config_status().last_error {
        tracing::error!(error = %err.0, "initial configuration rejected; not ready");
    }
    tracing::info!(
        ads = %handle.ads_addr(),
        admin = ?handle.admin_addr(),
        config = %args.config.display(),
        "serving"
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}
