//! [`ControlPlane`]: config source + ADS server + admin server in one process, with a handle for
//! tests (in-process config replacement, client ACK/NACK records, graceful shutdown).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::ads::status::{ClientRegistry, ClientStatus};
use crate::ads::AdsService;
use crate::ca::token::TokenAuthority;
use crate::ca::{Ca, CaError, SpiffeId};
use crate::cache::Snapshot;
use crate::jwks::{JwksCache, JwksOptions};
use crate::source::watch::{self as dirwatch, LoadResult, WatchOptions};
use crate::source::{load_str, ConfigError, MeshConfig, Warning};
use crate::translate::{translate_with, TranslateOptions, XdsResources};

/// How long graceful shutdown waits for connections to drain before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Default ADS listen address (istiod's plaintext xDS port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:15010";
/// Default admin listen address (istiod's monitoring port).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15014";

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("bind {what} on {addr}: {source}")]
    Bind {
        /// `ads`, `admin` or `ca`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CSR endpoint's serving certificate could not be issued.
    #[error("ca server: {0}")]
    Ca(#[from] CaError),
}

/// Entry point: `ControlPlane::builder()`.
#[derive(Debug)]
pub struct ControlPlane;

impl ControlPlane {
    /// A builder with test-friendly defaults: ADS on `127.0.0.1:0` (a free port, see
    /// [`ControlPlaneHandle::ads_addr`]), no admin server, no config. The binary passes
    /// [`DEFAULT_LISTEN`] / [`DEFAULT_ADMIN`] explicitly.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }
}

/// Configures and starts a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneBuilder {
    config_dir: Option<PathBuf>,
    config: Option<MeshConfig>,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    watch: WatchOptions,
    jwks: JwksOptions,
    ca: Option<CaServerOptions>,
    tokens: Option<Arc<TokenAuthority>>,
    trust_domain: Option<String>,
}

/// Where and how the CSR endpoint runs (see [`crate::ca::server`]).
#[derive(Debug, Clone)]
struct CaServerOptions {
    ca: Arc<Ca>,
    listen: SocketAddr,
    namespace: String,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        ControlPlaneBuilder {
            config_dir: None,
            config: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            watch: WatchOptions::default(),
            jwks: JwksOptions::default(),
            ca: None,
            tokens: None,
            trust_domain: None,
        }
    }
}

impl ControlPlaneBuilder {
    /// Reads (and hot-reloads) Istio YAML from `dir`.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// Serves `config` (in-memory; combine with [`ControlPlaneHandle::set_config`] in tests).
    pub fn config(mut self, config: MeshConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// ADS listen address (`127.0.0.1:0` picks a free port).
    pub fn listen_addr(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Admin HTTP listen address (`127.0.0.1:0` picks a free port).
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// Runs without the admin HTTP server.
    pub fn without_admin(mut self) -> Self {
        self.admin = None;
        self
    }

    /// Serves `IstioCertificateService/CreateCertificate` (mTLS, renewal by the caller's current
    /// SVID) for `ca` on `addr`; the endpoint presents
    /// `spiffe://<td>/ns/istio-system/sa/mesh-control-plane` ([`ControlPlaneHandle::ca_identity`]).
    pub fn ca_server(mut self, ca: Arc<Ca>, addr: SocketAddr) -> Self {
        self.ca = Some(CaServerOptions {
            ca,
            listen: addr,
            namespace: crate::ca::server::DEFAULT_CONTROL_PLANE_NAMESPACE.to_owned(),
        });
        self
    }

    /// Lets the CSR endpoint of [`ControlPlaneBuilder::ca_server`] sign a caller's **first**
    /// SVID for a bootstrap token (`authorization: Bearer`, see [`crate::ca::token`]). The
    /// authority's issuer must be the endpoint's identity
    /// ([`crate::ca::server::control_plane_id`] with the `istio-system` namespace).
    pub fn bootstrap_tokens(mut self, tokens: Arc<TokenAuthority>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The trust domain of the SPIFFE IDs the translation writes (ISTIO_MUTUAL's expected
    /// server SANs). Default: the trust domain of [`ControlPlaneBuilder::ca_server`]'s CA, else
    /// `cluster.local`.
    pub fn trust_domain(mut self, trust_domain: impl Into<String>) -> Self {
        self.trust_domain = Some(trust_domain.into());
        self
    }

    /// Debounce and poll interval of the config directory watcher.
    pub fn watch_options(mut self, options: WatchOptions) -> Self {
        self.watch = options;
        self
    }

    /// How remote `jwksUri` keys are refreshed (see [`crate::jwks`]; istiod's 20 minutes by
    /// default).
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks = options;
        self
    }

    /// Loads the initial configuration (a bad one is recorded, not fatal: the control plane
    /// serves nothing and reports not-ready until a good one arrives), binds both listeners and
    /// starts serving.
    pub async fn start(self) -> Result<ControlPlaneHandle, StartError> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let trust_domain = self
            .trust_domain
            .clone()
            .or_else(|| self.ca.as_ref().map(|c| c.ca.trust_domain().to_owned()));
        let mut options = TranslateOptions::default();
        if let Some(td) = trust_domain {
            options.trust_domain = td;
        }
        let shared = Arc::new(Shared::new(options, self.jwks.clone()));

        let mut fingerprint = None;
        if let Some(config) = self.config {
            shared.apply(Ok((config, Vec::new())));
        } else if let Some(dir) = &self.config_dir {
            let (fp, result) = dirwatch::read_and_load(dir.clone()).await;
            fingerprint = fp;
            shared.apply(result);
        }
        // The first load waits for its remote JWKS (each fetch bounded by its rule's timeout).
        if shared.jwks.fetch_due(false).await {
            shared.republish();
        }

        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let ads_listener = bind("ads", self.listen).await?;
        let ads_addr = local_addr(&ads_listener, "ads", self.listen)?;
        let admin_listener = match self.admin {
            Some(addr) => Some(bind("admin", addr).await?),
            None => None,
        };
        let admin_addr = match (&admin_listener, self.admin) {
            (Some(l), Some(addr)) => Some(local_addr(l, "admin", addr)?),
            _ => None,
        };

        let mut tasks = Vec::new();
        let sh = shared.clone();
        tasks.push(crate::jwks::spawn(
            shared.jwks.clone(),
            shutdown_rx.clone(),
            move || sh.republish(),
        ));
        let mut ca_endpoint = None;
        if let Some(opts) = self.ca {
            let listener = bind("ca", opts.listen).await?;
            let addr = local_addr(&listener, "ca", opts.listen)?;
            let (id, task) = crate::ca::server::spawn(
                opts.ca,
                &opts.namespace,
                self.tokens.clone(),
                listener,
                shutdown_rx.clone(),
            )?;
            tasks.push(task);
            ca_endpoint = Some((addr, id));
        }
        let service = AdsService::new(
            shared.snapshots.subscribe(),
            shared.clients.clone(),
            shutdown_rx.clone(),
        );
        let incoming = TcpListenerStream::new(ads_listener).map(|s| {
            if let Ok(s) = &s {
                let _ = s.set_nodelay(true);
            }
            s
        });
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(
                    AggregatedDiscoveryServiceServer::new(service)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                )
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "ads server failed");
            }
        }));
        if let Some(listener) = admin_listener {
            tasks.push(tokio::spawn(crate::admin::serve(
                listener,
                shared.clone(),
                shutdown_rx.clone(),
            )));
        }
        if let Some(dir) = self.config_dir.clone() {
            let sh = shared.clone();
            tasks.push(dirwatch::spawn(
                dir,
                self.watch.clone(),
                fingerprint,
                shared.load_lock.clone(),
                shutdown_rx.clone(),
                move |r| sh.apply(r),
            ));
        }
        tracing::info!(%ads_addr, admin = ?admin_addr, ca = ?ca_endpoint.as_ref().map(|c| c.0), "control plane started");
        Ok(ControlPlaneHandle {
            shared,
            ads_addr,
            admin_addr,
            config_dir: self.config_dir,
            ca_endpoint,
            shutdown: shutdown_tx,
            tasks,
        })
    }
}

fn local_addr(
    l: &TcpListener,
    what: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    l.local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// The state of the configuration: what is served and what went wrong last.
#[derive(Debug, Clone, Default)]
pub struct ConfigStatus {
    /// True once a configuration loaded successfully.
    pub ready: bool,
    /// Number of successful loads.
    pub generation: u64,
    /// The configuration being served.
    pub config: Option<Arc<MeshConfig>>,
    /// Warnings of the configuration being served.
    pub warnings: Vec<Warning>,
    /// The last rejected load (cleared by the next successful one) and when it happened.
    pub last_error: Option<(ConfigError, Instant)>,
}

/// State shared by the ADS server, the admin server and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    pub clients: ClientRegistry,
    /// Serializes directory read-and-apply (watcher vs. manual reload).
    pub load_lock: Arc<tokio::sync::Mutex<()>>,
    /// Remote JWKS, inlined into what is published.
    pub jwks: Arc<JwksCache>,
    status: Mutex<ConfigStatus>,
    options: TranslateOptions,
    /// Serializes translate-and-publish (config loads vs. JWKS refreshes), so an older
    /// configuration is never published over a newer one.
    publish: Mutex<()>,
    /// The warnings of the served configuration's load (JWKS warnings are added to these).
    load_warnings: Mutex<Vec<Warning>>,
}

impl Shared {
    fn new(options: TranslateOptions, jwks: JwksOptions) -> Self {
        let (snapshots, _) = watch::channel(Arc::new(Snapshot::default()));
        Shared {
            snapshots,
            clients: ClientRegistry::default(),
            load_lock: Arc::default(),
            jwks: Arc::new(JwksCache::new(jwks)),
            status: Mutex::new(ConfigStatus::default()),
            options,
            publish: Mutex::new(()),
            load_warnings: Mutex::new(Vec::new()),
        }
    }

    /// `config` translated with its remote JWKS inlined, and the JWKS warnings.
    fn translate(&self, config: &MeshConfig) -> (XdsResources, Vec<Warning>) {
        let (resolved, warnings) = self.jwks.resolve(config);
        (
            translate_with(resolved.as_ref().unwrap_or(config), &self.options),
            warnings,
        )
    }

    /// Re-translates the served configuration (a remote JWKS changed) and publishes it when the
    /// resources differ.
    pub fn republish(&self) {
        let _publish = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let Some(config) = self.status().config.clone() else {
            return;
        };
        let (resources, jwks_warnings) = self.translate(&config);
        let mut warnings = self
            .load_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        warnings.extend(jwks_warnings);
        self.status().warnings = warnings;
        if **self.snapshots.borrow().resources() != resources {
            self.snapshots
                .send_replace(Arc::new(Snapshot::build(resources)));
            tracing::info!("configuration re-published with refreshed jwks");
        }
    }

    pub fn status(&self) -> MutexGuard<'_, ConfigStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a good load; records a bad one and keeps serving the previous snapshot.
    pub fn apply(&self, result: LoadResult) {
        match result {
            Ok((config, warnings)) => {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                let _publish = self.publish.lock().unwrap_or_else(|p| p.into_inner());
                let (resources, jwks_warnings) = self.translate(&config);
                let snapshot = Arc::new(Snapshot::build(resources));
                *self.load_warnings.lock().unwrap_or_else(|p| p.into_inner()) = warnings.clone();
                {
                    let mut st = self.status();
                    st.ready = true;
                    st.generation += 1;
                    st.config = Some(Arc::new(config));
                    st.warnings = warnings;
                    st.warnings.extend(jwks_warnings);
                    st.last_error = None;
                }
                self.snapshots.send_replace(snapshot);
                tracing::info!("configuration applied");
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration rejected; keeping the previous one");
                self.status().last_error = Some((e, Instant::now()));
            }
        }
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlaneHandle {
    shared: Arc<Shared>,
    ads_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    config_dir: Option<PathBuf>,
    ca_endpoint: Option<(SocketAddr, SpiffeId)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlaneHandle {
    /// The bound ADS (gRPC) address.
    pub fn ads_addr(&self) -> SocketAddr {
        self.ads_addr
    }

    /// The bound admin HTTP address, if the admin server runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound CSR endpoint address, if [`ControlPlaneBuilder::ca_server`] was set.
    pub fn ca_addr(&self) -> Option<SocketAddr> {
        self.ca_endpoint.as_ref().map(|c| c.0)
    }

    /// The SPIFFE ID the CSR endpoint presents (workloads pin it).
    pub fn ca_identity(&self) -> Option<&SpiffeId> {
        self.ca_endpoint.as_ref().map(|c| &c.1)
    }

    /// Replaces the configuration in-process; every stream is pushed what changed.
    pub fn set_config(&self, config: MeshConfig) {
        self.shared.apply(Ok((config, Vec::new())));
    }

    /// Serves exactly these xDS resources, bypassing the Istio source: for embedding the server
    /// behind another registry, and for tests that must serve chosen resources — invalid ones
    /// included, to watch clients NACK them. The next config load replaces them.
    pub fn set_resources(&self, resources: XdsResources) {
        self.shared.status().ready = true;
        self.shared
            .snapshots
            .send_replace(Arc::new(Snapshot::build(resources)));
    }

    /// Parses `yaml` (named `name` in messages) and serves it; on error the previous
    /// configuration keeps serving and the error is recorded for `/debug/config`.
    pub fn load_yaml(&self, name: &str, yaml: &str) -> Result<Vec<Warning>, ConfigError> {
        let result = load_str(name, yaml);
        let out = result
            .as_ref()
            .map(|(_, w)| w.clone())
            .map_err(Clone::clone);
        self.shared.apply(result);
        out
    }

    /// Re-reads the config directory now (the watcher does this on its own on change).
    pub async fn reload(&self) -> Result<Vec<Warning>, ConfigError> {
        let Some(dir) = &self.config_dir else {
            return Ok(Vec::new());
        };
        let _guard = self.shared.load_lock.lock().await;
        let (_, result) = dirwatch::read_and_load(dir.clone()).await;
        let out = result
            .as_ref()
            .map(|(_, w)| w.clone())
            .map_err(Clone::clone);
        self.shared.apply(result);
        out
    }

    /// Fetches every remote `jwksUri` of the served configuration now (each bounded by its
    /// rule's timeout) and publishes a new snapshot when a JWKS changed — what the periodic
    /// refresh does, on demand.
    pub async fn refresh_jwks(&self) {
        if self.shared.jwks.fetch_due(true).await {
            self.shared.republish();
        }
    }

    /// True once a configuration loaded successfully.
    pub fn is_ready(&self) -> bool {
        self.shared.status().ready
    }

    /// Current configuration state (served config, warnings, last error).
    pub fn config_status(&self) -> ConfigStatus {
        self.shared.status().clone()
    }

    /// The translated resources being served.
    pub fn resources(&self) -> Arc<XdsResources> {
        self.shared.snapshots.borrow().resources().clone()
    }

    /// The snapshot being served (resources with their versions).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshots.borrow().clone()
    }

    /// Every ADS stream's record: node, subscriptions, ACKs and NACKs (connected first).
    pub fn client_status(&self) -> Vec<ClientStatus> {
        self.shared.clients.snapshot()
    }

    /// Stops accepting, ends every ADS stream (clients see `UNAVAILABLE`), waits up to 5 s for
    /// connections to drain, then closes what is left. The ports are free when this returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for task in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        self.tasks.clear();
        tracing::info!("control plane stopped");
    }
}

impl Drop for ControlPlaneHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
