//! Remote `jwksUri` of RequestAuthentication, fetched by the control plane and inlined into the
//! `jwt_authn` filter's `local_jwks`, the way istiod does it (istio/istio
//! `pilot/pkg/model/jwks_resolver.go`): proxies — here, mesh servers — never fetch keys.
//!
//! - **Fetch**: `GET` over HTTP/1.1, `http://` in the clear, `https://` with rustls verifying the
//!   server against the system's trust store (`rustls-native-certs`: the platform store, or
//!   `SSL_CERT_FILE` / `SSL_CERT_DIR` — what Go's `x509.SystemCertPool` gives istiod). Each fetch
//!   is bounded by the rule's `timeout` (Istio's default 5 s); the answer must be `200` with a JSON
//!   body holding a `keys` array, at most [`MAX_JWKS_BYTES`]. Redirects are not followed.
//! - **Keys**: each key goes through the same checks the mesh's servers make
//!   (`mesh_core::jwt::Jwks::usable_keys`); a key they would refuse is dropped with a warning
//!   naming the URI, the key's index and `kid` and why — as Envoy's `jwt_verify_lib` skips keys
//!   it cannot extract — and a document with keys but none usable is a failed fetch.
//! - **Cache**: one entry per URI, shared by every rule naming it (the shortest of their
//!   timeouts applies); an entry lives while some rule
//!   of the served configuration names it (istiod evicts after 24 h unused; a URI that comes back
//!   is simply fetched again).
//! - **Refresh**: every [`JwksOptions::refresh_interval`] (istiod's
//!   `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20 min). A failed fetch is retried after
//!   [`JwksOptions::retry_interval`], doubling up to the refresh interval.
//! - **Failure**: the last good JWKS is kept; with none, the rule gets the empty set (every token
//!   of that issuer refused) and the served configuration carries a warning naming the resource and
//!   its `jwksUri` field (istiod: a JWKS that verifies nothing, and a log line).
//! - **Publish**: when what a URI serves changes (or first arrives), the control plane
//!   re-translates the configuration it serves and publishes a new snapshot, so clients get the
//!   new keys over ADS with no config change.
//!
//! A new URI is fetched in the background as soon as a configuration naming it is applied (the
//! control plane's first load waits for it, bounded by its timeout); until it arrives, that
//! rule's tokens are refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::source::model::{MeshConfig, RemoteJwks, EMPTY_JWKS};
use crate::source::Warning;

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// How remote JWKS are refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksOptions {
    /// How often every cached URI is fetched again (istiod: 20 minutes).
    pub refresh_interval: Duration,
    /// The first delay before retrying a failed fetch; doubles per consecutive failure, up to
    /// `refresh_interval`.
    pub retry_interval: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            refresh_interval: Duration::from_secs(20 * 60),
            retry_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug)]
struct Entry {
    timeout: Duration,
    /// The last JWKS fetched successfully.
    jwks: Option<Arc<str>>,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
    failures: u32,
    next: Instant,
}

/// The per-URI cache and its schedule (see the module docs).
#[derive(Debug)]
pub(crate) struct JwksCache {
    options: JwksOptions,
    entries: Mutex<HashMap<String, Entry>>,
    /// Woken when a URI is added, so the fetcher starts at once.
    pub(crate) wake: Notify,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl JwksCache {
    pub(crate) fn new(options: JwksOptions) -> Self {
        JwksCache {
            options,
            entries: Mutex::default(),
            wake: Notify::new(),
            tls: OnceLock::new(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the cache follow `config`: entries for new URIs (due now), none for URIs no rule
    /// names any more. Returns true when a URI was added.
    fn track(&self, config: &MeshConfig) -> bool {
        let mut wanted: HashMap<&str, Duration> = HashMap::new();
        for r in remote_rules(config) {
            wanted
                .entry(r.uri.as_str())
                .and_modify(|t| *t = (*t).min(r.timeout))
                .or_insert(r.timeout);
        }
        let mut entries = self.entries();
        entries.retain(|uri, _| wanted.contains_key(uri.as_str()));
        let mut added = false;
        for (uri, timeout) in wanted {
            match entries.get_mut(uri) {
                Some(e) => e.timeout = timeout,
                None => {
                    added = true;
                    entries.insert(
                        uri.to_owned(),
                        Entry {
                            timeout,
                            jwks: None,
                            error: None,
                            failures: 0,
                            next: Instant::now(),
                        },
                    );
                }
            }
        }
        added
    }

    /// `config` with every remote rule's `jwks` set from the cache (`None` when it has no remote
    /// rule), and the warnings for rules whose keys are missing or stale. Registers new URIs and
    /// wakes the fetcher for them.
    pub(crate) fn resolve(&self, config: &MeshConfig) -> (Option<MeshConfig>, Vec<Warning>) {
        if self.track(config) {
            self.wake.notify_one();
        }
        if remote_rules(config).next().is_none() {
            return (None, Vec::new());
        }
        let mut out = config.clone();
        let mut warnings = Vec::new();
        let entries = self.entries();
        for rule in out
            .request_authentications
            .iter_mut()
            .flat_map(|r| r.jwt_rules.iter_mut())
        {
            let Some(remote) = &rule.jwks_uri else {
                continue;
            };
            let entry = entries.get(&remote.uri);
            let jwks = entry.and_then(|e| e.jwks.clone());
            let error = entry.and_then(|e| e.error.as_deref());
            let message = match (&jwks, error) {
                (Some(_), None) => None,
                (Some(_), Some(e)) => Some(format!(
                    "cannot refresh the jwks from `{}` ({e}); keeping the keys fetched before",
                    remote.uri
                )),
                (None, Some(e)) => Some(format!(
                    "cannot fetch the jwks from `{}` ({e}); every token of this rule is refused \
                     until a fetch succeeds",
                    remote.uri
                )),
                (None, None) => Some(format!(
                    "the jwks from `{}` is not fetched yet; every token of this rule is refused \
                     until it is",
                    remote.uri
                )),
            };
            if let Some(message) = message {
                warnings.push(warning(remote, message));
            }
            rule.jwks = jwks.map_or_else(|| EMPTY_JWKS.to_owned(), |j| j.to_string());
        }
        (Some(out), warnings)
    }

    /// When the next fetch is due, if any URI is cached.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.entries().values().map(|e| e.next).min()
    }

    /// Fetches every due URI (every URI when `all`), concurrently; true when some URI's JWKS
    /// changed (including its first arrival).
    pub(crate) async fn fetch_due(&self, all: bool) -> bool {
        let now = Instant::now();
        let due: Vec<(String, Duration)> = self
            .entries()
            .iter()
            .filter(|(_, e)| all || e.next <= now)
            .map(|(uri, e)| (uri.clone(), e.timeout))
            .collect();
        if due.is_empty() {
            return false;
        }
        let results = futures::future::join_all(
            due.iter()
                .map(|(uri, timeout)| async move { (uri, self.fetch(uri, *timeout).await) }),
        )
        .await;
        let mut changed = false;
        let mut entries = self.entries();
        let now = Instant::now();
        for (uri, result) in results {
            let Some(e) = entries.get_mut(uri.as_str()) else {
                continue; // no longer configured
            };
            match result {
                Ok(text) => {
                    if e.jwks.as_deref() != Some(text.as_str()) {
                        tracing::info!(uri = %uri, "jwks fetched");
                        e.jwks = Some(text.into());
                        changed = true;
                    }
                    changed |= e.error.take().is_some();
                    e.failures = 0;
                    e.next = now + self.options.refresh_interval;
                }
                Err(why) => {
                    tracing::warn!(uri = %uri, kept = e.jwks.is_some(), "jwks fetch failed: {why}");
                    changed |= e.error.as_deref() != Some(why.as_str());
                    e.error = Some(why);
                    let backoff = self
                        .options
                        .retry_interval
                        .saturating_mul(1 << e.failures.min(16));
                    e.failures += 1;
                    e.next = now + backoff.min(self.options.refresh_interval);
                }
            }
        }
        changed
    }

    /// One fetch of `uri`, bounded by `timeout`.
    async fn fetch(&self, uri: &str, timeout: Duration) -> Result<String, String> {
        match tokio::time::timeout(timeout, self.get(uri)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }

    async fn get(&self, uri: &str) -> Result<String, String> {
        let u: http::Uri = uri.parse().map_err(|e| format!("not a uri: {e}"))?;
        let https = match u.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("only http:// and https:// are fetched".into()),
        };
        let authority = u.authority().ok_or("no host")?.clone();
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let req = http::Request::get(u.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let body = if https {
            let config = self
                .tls
                .get_or_init(tls_config)
                .clone()
                .map_err(|e| format!("tls: {e}"))?;
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| format!("tls server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            send(tls, req).await?
        } else {
            send(tcp, req).await?
        };
        let text = String::from_utf8(body.to_vec()).map_err(|_| "body is not utf-8")?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("body is not json: {e}"))?;
        if !doc.get("keys").is_some_and(serde_json::Value::is_array) {
            return Err("body is not a jwks: no `keys` array".into());
        }
        // Keys the mesh's servers would refuse are dropped here, as Envoy's loader skips them,
        // so one bad key never gets the whole listener NACKed.
        let (usable, dropped) = mesh_core::jwt::Jwks::usable_keys(&text)
            .map_err(|e| format!("body is not a usable jwks: {e}"))?;
        for why in &dropped {
            tracing::warn!(uri = %uri, "jwks key dropped: {why}");
        }
        Ok(usable)
    }
}

/// Aborts the connection task when the fetch ends (or is cancelled by its timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `req` on a fresh HTTP/1.1 connection over `io`; the body of a `200` answer.
async fn send<T>(io: T, req: http::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("http: {e}"))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("http: {e}"))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("http status {}", resp.status()));
    }
    Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the body: {e}"))
}

/// rustls with the system's trust store (see the module docs).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "no system root certificates ({})",
            errors.join("; ")
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn remote_rules(config: &MeshConfig) -> impl Iterator<Item = &RemoteJwks> {
    config
        .request_authentications
        .iter()
        .flat_map(|r| &r.jwt_rules)
        .filter_map(|r| r.jwks_uri.as_ref())
}

fn warning(r: &RemoteJwks, message: String) -> Warning {
    Warning {
        file: r.file.to_string(),
        line: r.line,
        resource: r.resource.clone(),
        field: r.field.clone(),
        message,
    }
}

/// Fetches due URIs until `shutdown`, calling `on_change` after a fetch round changed a JWKS.
pub(crate) fn spawn(
    cache: Arc<JwksCache>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    on_change: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = cache
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() { break; }
                    continue;
                }
                _ = cache.wake.notified() => {}
                _ = tokio::time::sleep_until(next) => {}
            }
            if cache.fetch_due(false).await {
                on_change();
            }
        }
    })
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
