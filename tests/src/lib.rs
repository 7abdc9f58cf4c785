//! Shared helpers for the end-to-end tests: a real control plane on a config directory, real
//! backends and mesh-routed clients, all on loopback.

pub mod interop;
pub mod prometheus;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use mesh_control_plane::{ControlPlane, ControlPlaneHandle};
use mesh_core::mesh::Mesh;
use tower::{Service, ServiceExt};

pub use examples::Backend;

/// The HTTP client type the tests use: the mesh layer over a pooled HTTP/1.1 client.
pub type Client = mesh_tower::MeshService<mesh_tower::client::HttpClient<Empty<Bytes>>>;

/// A fresh, empty temporary directory for one test's config.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mesh-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A ServiceEntry `host:port` with one WorkloadEntry per backend, labelled `version: <name>`,
/// and a DestinationRule with one subset per backend. Resources are named after the host, so
/// several services can share a config directory.
pub fn service_yaml(host: &str, port: u16, backends: &[&Backend]) -> String {
    let app = host.replace('.', "-");
    let mut y = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: {app}, namespace: test }}\n\
         spec:\n  hosts: [{host}]\n  ports: [{{ number: {port}, name: http, protocol: HTTP }}]\n  \
         resolution: STATIC\n  workloadSelector: {{ labels: {{ app: {app} }} }}\n"
    );
    for b in backends {
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{ name: {app}-{n}, namespace: test }}\n\
             spec:\n  address: {ip}\n  ports: {{ http: {p} }}\n  labels: {{ app: {app}, version: {n} }}\n",
            n = b.name(),
            ip = b.addr().ip(),
            p = b.addr().port()
        );
    }
    y += &format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: {app}, namespace: test }}\n\
         spec:\n  host: {host}\n  subsets:\n"
    );
    for b in backends {
        y += &format!(
            "    - {{ name: {n}, labels: {{ version: {n} }} }}\n",
            n = b.name()
        );
    }
    y
}

/// Writes a file into a config directory.
pub fn write(dir: &Path, file: &str, yaml: &str) {
    std::fs::write(dir.join(file), yaml).expect("write config file");
}

/// Starts a control plane on `dir`, ADS and admin on loopback ports; `ads` picks the ADS port
/// (use `127.0.0.1:0` for any).
pub async fn control_plane(dir: &Path, ads: &str) -> Result<ControlPlaneHandle> {
    Ok(ControlPlane::builder()
        .config_dir(dir)
        .listen_addr(ads.parse()?)
        .admin_addr("127.0.0.1:0".parse()?)
        .start()
        .await?)
}

/// A mesh client connected over ADS to `cp`, identified as `node`.
pub fn mesh(cp: &ControlPlaneHandle, node: &str) -> Result<Mesh> {
    let bootstrap = examples::demo::bootstrap(cp.ads_addr(), node, "tests")?;
    Ok(Mesh::from_bootstrap(&bootstrap)?)
}

/// The mesh layer over a pooled HTTP/1.1 client.
pub fn client(mesh: &Mesh) -> Client {
    tower::ServiceBuilder::new()
        .layer(mesh_tower::MeshLayer::new(mesh.clone()).ready_timeout(Duration::from_secs(10)))
        .service(mesh_tower::client::http1())
}

/// Waits until `target` is ready on `mesh`.
pub async fn ready(mesh: &Mesh, target: &str) -> Result<()> {
    tokio::time::timeout(Duration::from_secs(10), mesh.target(target).ready())
        .await
        .with_context(|| format!("{target} not ready in 10 s"))??;
    Ok(())
}

/// One GET through the mesh; the name of the backend that answered.
pub async fn get(
    client: &mut Client,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<String, mesh_tower::MeshError> {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).expect("valid request");
    let resp = client.ready().await?.call(req).await?;
    Ok(resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned())
}

/// `n` GETs; responses counted per backend. Fails on the first mesh error.
pub async fn split(
    client: &mut Client,
    uri: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(get(client, uri, headers).await?).or_default() += 1;
    }
    Ok(counts)
}

/// Polls `cond` every 20 ms until it holds, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("condition not met within {within:?}")
}

/// A workload identity for `spiffe://<ca's trust domain>/ns/default/sa/<sa>`, its key generated
/// here and its CSR signed by `ca` — what a workload gets from the control plane's CA.
pub fn workload_identity(
    ca: &mesh_control_plane::ca::Ca,
    sa: &str,
) -> Result<std::sync::Arc<mesh_tower::tls::WorkloadIdentity>> {
    let id = mesh_control_plane::ca::SpiffeId::new(ca.trust_domain(), "default", sa)?;
    let req = mesh_tower::tls::CertificateRequest::generate()?;
    let svid = ca.sign_csr(req.csr_pem(), &id, None)?;
    Ok(req.into_identity(&svid.cert_chain_pem, &svid.trust_bundle_pem)?)
}
