//! `mesh-control-plane`: serves Istio YAML from a directory as xDS over ADS.
//!
//! ```text
//! mesh-control-plane --config ./mesh/ --listen 0.0.0.0:15010 --admin 127.0.0.1:15014 \
//!     [--ca-listen 0.0.0.0:15012 --ca-dir ./mesh-ca/ --trust-domain cluster.local]
//! mesh-control-plane issue --trust-domain cluster.local --namespace default \
//!     --service-account greeter --out ./certs/ [--ca-dir ./ca/] [--ttl 1h]
//! mesh-control-plane token --namespace default --service-account greeter \
//!     [--trust-domain cluster.local] [--ca-dir ./mesh-ca/] [--ttl 1h] [--out ./token]
//! ```
//!
//! `token` mints a single-use bootstrap token (an ES256 JWT signed with `token-key.pem` in the
//! CA directory, created if missing) and prints it on stdout (or writes it, mode 0600, to
//! `--out`). The workload sends it as `authorization: Bearer` on its first `CreateCertificate`
//! with a CSR for a key it generated itself (`mesh_grpc::identity::IdentityBootstrap`), so no
//! private key leaves the workload. `--ca-listen` accepts these tokens.
//!
//! `issue` writes `cert.pem` (leaf + chain), `key.pem` (mode 0600) and `ca.pem` (trust
//! bundle): the three files gRPC's `file_watcher` certificate provider reads
//! (`certificate_file`, `private_key_file`, `ca_certificate_file`; gRFC A29). That first SVID
//! is then renewed over `--ca-listen` (Istio's `CreateCertificate`, mTLS with the current SVID).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mesh_control_plane::ca::token::TokenAuthority;
use mesh_control_plane::ca::{self, Ca, SpiffeId};
use mesh_control_plane::{ControlPlane, DEFAULT_ADMIN, DEFAULT_LISTEN};

/// Reads Istio YAML (VirtualService, DestinationRule, ServiceEntry, WorkloadEntry) and serves
/// Envoy v3 xDS over ADS to the mesh library and to gRPC proxyless clients.
#[derive(Debug, Parser)]
#[command(
    name = "mesh-control-plane",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Without a subcommand: serve (the flags below).
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory of Istio YAML files (`*.yaml`, `*.yml`), hot-reloaded on change.
    #[arg(long, value_name = "DIR", required = true)]
    config: Option<PathBuf>,
    /// ADS (gRPC) listen address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Admin HTTP listen address (`/ready`, `/healthz`, `/debug/config`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Serve the CSR endpoint (`istio.v1.auth.IstioCertificateService`: renewal over mTLS,
    /// first SVIDs for bootstrap tokens) on this address (istiod serves it on 15012).
    #[arg(long, value_name = "ADDR")]
    ca_listen: Option<SocketAddr>,
    /// CA directory for `--ca-listen` (`ca-cert.pem`, `ca-key.pem`, `token-key.pem`; created if
    /// empty; an optional `root-cert.pem` holds the roots to trust during a root rotation).
    #[arg(long, value_name = "DIR", default_value = "./mesh-ca")]
    ca_dir: PathBuf,
    /// Trust domain: the CA's for `--ca-listen`, and the one the SPIFFE IDs in translated
    /// config (ISTIO_MUTUAL's expected server SANs) are written in.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// How often remote `jwksUri` keys are fetched again (istiod's
    /// PILOT_JWT_PUB_KEY_REFRESH_INTERVAL).
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    jwks_refresh_interval: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issues a SPIFFE SVID and writes cert.pem, key.pem and ca.pem for gRPC's `file_watcher`.
    Issue(IssueArgs),
    /// Mints a single-use bootstrap token for a workload's first SVID (`authorization: Bearer`).
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// Trust domain, e.g. `cluster.local`.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Kubernetes-style namespace of the workload.
    #[arg(long)]
    namespace: String,
    /// Service account of the workload.
    #[arg(long)]
    service_account: String,
    /// CA directory; the token key is `token-key.pem` there (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./mesh-ca")]
    ca_dir: PathBuf,
    /// Token lifetime (at most 24h): a number with unit `s`, `m`, `h` or `d`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
    /// Write the token to this file (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct IssueArgs {
    /// Trust domain, e.g. `cluster.local`.
    #[arg(long)]
    trust_domain: String,
    /// Kubernetes-style namespace of the workload.
    #[arg(long)]
    namespace: String,
    /// Service account of the workload.
    #[arg(long)]
    service_account: String,
    /// Directory to write cert.pem, key.pem and ca.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// CA directory (`ca-cert.pem`, `ca-key.pem`); a new root is created there if empty.
    #[arg(long, value_name = "DIR", default_value = "./mesh-ca")]
    ca_dir: PathBuf,
    /// Certificate lifetime: a number with unit `s`, `m`, `h` or `d`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 1h, 30m, 600s"))?;
    let secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    match n.checked_mul(secs) {
        Some(0) | None => Err(format!("{s:?}: must be positive and not overflow")),
        Some(v) => Ok(Duration::from_secs(v)),
    }
}

fn issue(args: &IssueArgs) -> anyhow::Result<()> {
    let id = SpiffeId::new(&args.trust_domain, &args.namespace, &args.service_account)?;
    let ca = Ca::load_or_create(&args.ca_dir, &args.trust_domain)
        .with_context(|| format!("loading the ca from {}", args.ca_dir.display()))?;
    let (svid, key) = ca.issue(&id, Some(args.ttl))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let write = |name: &str, text: &str| -> anyhow::Result<()> {
        let path: &Path = &args.out.join(name);
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    // key.pem first and 0600 from creation: it is never world-readable, not even briefly.
    ca::write_private(&args.out.join("key.pem"), key.expose())?;
    write("cert.pem", &svid.cert_chain_pem)?;
    write("ca.pem", &svid.trust_bundle_pem)?;
    tracing::info!(
        identity = %svid.spiffe_id,
        out = %args.out.display(),
        ttl_secs = args.ttl.as_secs(),
        "wrote cert.pem, key.pem, ca.pem"
    );
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let id = SpiffeId::new(&args.trust_domain, &args.namespace, &args.service_account)?;
    let issuer = ca::server::control_plane_id(
        &args.trust_domain,
        ca::server::DEFAULT_CONTROL_PLANE_NAMESPACE,
    )?;
    let tokens = TokenAuthority::load_or_create(&args.ca_dir, &issuer)
        .with_context(|| format!("loading the token key from {}", args.ca_dir.display()))?;
    let (token, claims) = tokens.mint(&id, args.ttl)?;
    match &args.out {
        Some(path) => ca::write_private(path, &format!("{}\n", token.expose()))?,
        None => println!("{}", token.expose()),
    }
    tracing::info!(
        identity = %id,
        jti = %claims.jti,
        exp = claims.exp,
        out = ?args.out,
        "minted a single-use bootstrap token"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if matches!(args.command, Some(Command::Token(_))) {
        // stdout carries the token: logs go to stderr.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match &args.command {
        Some(Command::Issue(issue_args)) => return issue(issue_args),
        Some(Command::Token(token_args)) => return token(token_args),
        None => {}
    }
    let config = args.config.context("--config is required")?;
    let mut builder = ControlPlane::builder()
        .config_dir(&config)
        .listen_addr(args.listen)
        .admin_addr(args.admin)
        .trust_domain(&args.trust_domain)
        .jwks_options(mesh_control_plane::JwksOptions {
            refresh_interval: args.jwks_refresh_interval,
            ..Default::default()
        });
    if let Some(addr) = args.ca_listen {
        let ca = Ca::load_or_create(&args.ca_dir, &args.trust_domain)
            .with_context(|| format!("loading the ca from {}", args.ca_dir.display()))?;
        let issuer = ca::server::control_plane_id(
            &args.trust_domain,
            ca::server::DEFAULT_CONTROL_PLANE_NAMESPACE,
        )?;
        let tokens = TokenAuthority::load_or_create(&args.ca_dir, &issuer)
            .with_context(|| format!("loading the token key from {}", args.ca_dir.display()))?;
        builder = builder
            .ca_server(std::sync::Arc::new(ca), addr)
            .bootstrap_tokens(std::sync::Arc::new(tokens));
    }
    let handle = builder
        .start()
        .await
        .context("starting the control plane")?;
    if let Some(err) = handle.config_status().last_error {
        tracing::error!(error = %err.0, "initial configuration rejected; not ready");
    }
    tracing::info!(
        ads = %handle.ads_addr(),
        admin = ?handle.admin_addr(),
        ca = ?handle.ca_addr(),
        ca_identity = ?handle.ca_identity().map(|i| i.to_string()),
        config = %config.display(),
        "serving"
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}
