//! What every example does before its own part: logging, the bundled config rendered with this
//! run's backend ports, the control plane embedded in-process, and a bootstrap pointing at it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use mesh_control_plane::{ControlPlane, ControlPlaneHandle};
use mesh_core::bootstrap::Bootstrap;

/// Logs to stderr at `RUST_LOG`, `warn` by default.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// Copies the YAML files of `examples/<bundled>/` into a fresh temporary directory, replacing
/// each `(placeholder, port)` pair's placeholder port with the port this run's backend got.
pub fn render_config(bundled: &str, ports: &[(u16, u16)]) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(bundled);
    let dir = std::env::temp_dir().join(format!("mesh-{bundled}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let mut text = std::fs::read_to_string(&path)?;
        for (placeholder, port) in ports {
            text = text.replace(&placeholder.to_string(), &port.to_string());
        }
        std::fs::write(dir.join(path.file_name().context("file name")?), text)?;
    }
    Ok(dir)
}

/// The control plane on `dir`, in-process: ADS and admin on free loopback ports.
pub async fn control_plane(dir: &Path) -> Result<ControlPlaneHandle> {
    Ok(ControlPlane::builder()
        .config_dir(dir)
        .listen_addr("127.0.0.1:0".parse()?)
        .admin_addr("127.0.0.1:0".parse()?)
        .start()
        .await?)
}

/// A gRFC A27 bootstrap for a client `node` talking to the ADS server at `ads` (what a service
/// would read from `GRPC_XDS_BOOTSTRAP`).
pub fn bootstrap(ads: SocketAddr, node: &str, cluster: &str) -> Result<Bootstrap> {
    Ok(Bootstrap::from_json(&format!(
        r#"{{"xds_servers":[{{"server_uri":"{ads}","channel_creds":[{{"type":"insecure"}}]}}],
            "node":{{"id":"{node}","cluster":"{cluster}"}}}}"#
    ))?)
}
