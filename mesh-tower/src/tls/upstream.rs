//! TLS to a cluster's endpoints as its CDS `UpstreamTlsContext` says (Envoy
//! `UpstreamTlsContext` / `CertificateValidationContext`, gRFC A29; Istio DestinationRule
//! `ClientTLSSettings` as istiod's proxyless generator emits them).
//!
//! - **Certificate providers** ([`CertificateProviders`]): the context names provider
//!   *instances* for its client certificate and its roots (gRFC A29; istiod: instance `default`,
//!   certificate names `default` and `ROOTCA`). The application gives the stack a
//!   [`WorkloadIdentity`] per instance — usually one, as `default`. An instance it was not given
//!   fails the cluster's requests with `tls` / `missing_provider`, naming cluster and instance;
//!   nothing falls back to plaintext.
//! - **Verification**: the server's chain must lead to the roots instance's trust bundle (read
//!   per handshake, so rotation applies to new connections), then one of its SANs — URI, DNS,
//!   email or IP (IPv6 in canonical form) — must match one of `match_subject_alt_names`; an empty
//!   list accepts any chain to the roots (Envoy, A29). The server name is not otherwise matched
//!   against the certificate (as Envoy and gRPC with xDS credentials).
//! - **SNI** is the context's `sni`; without one none is sent (rustls sends none for an IP).
//! - **ALPN**: `h2` from the HTTP/2 client, `http/1.1` from the HTTP/1 client — the protocol the
//!   client speaks, as Envoy's HTTP connection pools set it; `alpn_protocols` in the context is
//!   informational.
//! - **Client certificate**: the identity instance's SVID (MUTUAL / ISTIO_MUTUAL), or none
//!   (SIMPLE).
//! - **Per request**: the compiled [`ClusterTls`] hangs off the cluster's handle
//!   ([`mesh_core::snapshot::ClusterHandle::client_state`]); finding it is an atomic load and a
//!   scan of (usually) one entry. It is rebuilt only when the cluster's transport changes, and
//!   its [`ClusterTls::id`] keys the connection pools, so a connection made for one TLS config
//!   (or for plaintext) is never reused for another.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mesh_core::model::{StringMatcher, UpstreamTls, UpstreamTransport};
use mesh_core::snapshot::ClusterHandle;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::client::ClientCertResolver;
use super::{provider, MeshTlsStream, PeerIdentity, TlsError, VerifyFailure, WorkloadIdentity};
use crate::error::BoxError;
use crate::TlsReason;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The certificate provider instances a stack resolves TLS contexts against (gRFC A29):
/// instance name → workload identity (its SVID and its trust bundle). Cheap to clone.
///
/// Instances from [`CertificateProviders::from_bootstrap`] re-read their files while any clone
/// of the set is alive; dropping the last clone stops them.
#[derive(Clone, Default)]
pub struct CertificateProviders {
    instances: Arc<HashMap<Arc<str>, Arc<WorkloadIdentity>>>,
    id: u64,
    /// The `file_watcher` refresh tasks, aborted when the last clone is dropped.
    watchers: Arc<Vec<super::file_watcher::Watcher>>,
}

impl fmt::Debug for CertificateProviders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.instances.keys().map(|k| &**k).collect();
        names.sort_unstable();
        f.debug_struct("CertificateProviders")
            .field("instances", &names)
            .finish()
    }
}

impl CertificateProviders {
    /// No instance: every TLS cluster fails with `missing_provider`.
    pub fn new() -> Self {
        Self::default()
    }

    /// `identity` as the instance `default` — what istiod's contexts name.
    pub fn default_identity(identity: Arc<WorkloadIdentity>) -> Self {
        Self::new().with_instance("default", identity)
    }

    /// Adds (or replaces) instance `name`.
    pub fn with_instance(mut self, name: &str, identity: Arc<WorkloadIdentity>) -> Self {
        let mut map = HashMap::clone(&self.instances);
        map.insert(name.into(), identity);
        self.instances = Arc::new(map);
        self.id = next_id();
        self
    }

    /// The bootstrap's `certificate_providers` (gRFC A29): every `file_watcher` instance
    /// (`certificate_file`, `private_key_file`, `ca_certificate_file`) loaded into a workload
    /// identity and, inside a tokio runtime, re-read every `refresh_interval` (default 600 s)
    /// — changed files that parse are swapped in, broken ones keep the current identity (see
    /// `tls/file_watcher.rs`). Other plugins are skipped (a cluster naming one fails with
    /// `missing_provider`).
    pub fn from_bootstrap(bootstrap: &mesh_core::bootstrap::Bootstrap) -> Result<Self, TlsError> {
        let mut out = Self::new();
        let mut watchers = Vec::new();
        for (name, p) in &bootstrap.certificate_providers {
            if p.plugin_name != "file_watcher" {
                tracing::warn!(instance = %name, plugin = %p.plugin_name, "certificate provider plugin not supported; skipped");
                continue;
            }
            let file = |key: &str| {
                p.config
                    .get(key)
                    .and_then(|v| v.as_str())
                    .map(std::path::PathBuf::from)
                    .ok_or_else(|| TlsError::InvalidIdentity {
                        what: format!("certificate_providers.{name}.config.{key}"),
                        reason: "missing".into(),
                    })
            };
            let refresh = match p.config.get("refresh_interval") {
                None => super::file_watcher::DEFAULT_REFRESH,
                Some(v) => v
                    .as_str()
                    .and_then(super::file_watcher::parse_duration)
                    .ok_or_else(|| TlsError::InvalidIdentity {
                        what: format!("certificate_providers.{name}.config.refresh_interval"),
                        reason: format!("`{v}` is not a positive duration like \"600s\""),
                    })?,
            };
            let files = super::file_watcher::Files {
                cert: file("certificate_file")?,
                key: file("private_key_file")?,
                ca: file("ca_certificate_file")?,
            };
            let (identity, watcher) =
                super::file_watcher::load(name, files, refresh).map_err(|e| match e {
                    TlsError::InvalidIdentity { what, reason } => TlsError::InvalidIdentity {
                        what: format!("certificate_providers.{name}: {what}"),
                        reason,
                    },
                    other => other,
                })?;
            watchers.extend(watcher);
            out = out.with_instance(name, identity);
        }
        out.watchers = Arc::new(watchers);
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<&Arc<WorkloadIdentity>, TlsError> {
        self.instances
            .get(name)
            .ok_or_else(|| TlsError::MissingProvider {
                instance: name.to_owned(),
            })
    }
}

/// Which protocol a connection will speak, and so which ALPN it offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alpn {
    H2,
    Http1,
}

/// A cluster's compiled TLS client: rustls configs for HTTP/2 and HTTP/1, the SNI, the
/// handshake bound. Built once per cluster transport and provider set.
pub struct ClusterTls {
    id: u64,
    h2: tokio_rustls::TlsConnector,
    http1: tokio_rustls::TlsConnector,
    sni: Option<ServerName<'static>>,
    timeout: Duration,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("id", &self.id)
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Compiles `tls` against `providers`; `timeout` bounds TCP connect + handshake.
    pub fn compile(
        tls: &UpstreamTls,
        providers: &CertificateProviders,
        timeout: Duration,
    ) -> Result<Self, TlsError> {
        let roots = providers.get(&tls.roots.instance_name)?.clone();
        let identity = match &tls.identity {
            Some(i) => Some(providers.get(&i.instance_name)?.clone()),
            None => None,
        };
        let sni = match &tls.sni {
            None => None,
            Some(name) => Some(ServerName::try_from(name.to_string()).map_err(|e| {
                TlsError::InvalidIdentity {
                    what: "sni".into(),
                    reason: format!("{name:?}: {e}"),
                }
            })?),
        };
        // Sessions are forgotten when the SVID or the roots rotate (see `tls/resumption.rs`).
        let sessions = super::resumption::ClientSessions::new(
            identity.iter().cloned().chain([roots.clone()]).collect(),
        );
        let verifier = Arc::new(SanVerifier {
            roots,
            sans: tls.match_subject_alt_names.clone(),
            provider: provider(),
        });
        let config = |alpn: &[u8]| {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone());
            let mut config = match &identity {
                Some(identity) => builder.with_client_cert_resolver(Arc::new(ClientCertResolver {
                    identity: identity.clone(),
                })),
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            config.resumption = rustls::client::Resumption::store(sessions.clone());
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        Ok(ClusterTls {
            id: next_id(),
            h2: config(b"h2"),
            http1: config(b"http/1.1"),
            sni,
            timeout,
        })
    }

    /// Unique per compiled config: connection pools key on it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Connects to `addr` and completes the handshake, offering `alpn`.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
    ) -> Result<MeshTlsStream, TlsError> {
        let peer = addr.to_string();
        let sni = self
            .sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let connector = match alpn {
            Alpn::H2 => &self.h2,
            Alpn::Http1 => &self.http1,
        };
        let work = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| TlsError::Connect {
                    peer: peer.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let tls = connector
                .connect(sni, super::read_ahead(tcp))
                .await
                .map_err(|e| TlsError::from_handshake(&peer, e))?;
            let (_, conn) = tls.get_ref();
            let id = conn.peer_certificates().and_then(PeerIdentity::from_chain);
            let h2 = conn.alpn_protocol() == Some(b"h2");
            Ok(MeshTlsStream::new(tls, id, h2))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TlsError::Timeout { peer }),
        }
    }
}

/// A compiled TLS client, or why the cluster's context could not be compiled.
type Compiled = Result<Arc<ClusterTls>, Arc<TlsError>>;

/// Per cluster handle: the compiled TLS client per provider set (usually one entry).
#[derive(Default)]
struct TlsCache {
    entries: ArcSwap<Vec<(u64, Compiled)>>,
}

/// The cluster's transport for a request: `None` for plaintext, the compiled TLS client, or
/// why the cluster cannot be reached.
pub(crate) fn resolve(
    cluster: &ClusterHandle,
    providers: &CertificateProviders,
) -> Result<Option<Arc<ClusterTls>>, (TlsReason, BoxError)> {
    let tls = match &cluster.cluster.transport {
        UpstreamTransport::Plaintext => return Ok(None),
        UpstreamTransport::Unsupported(e) => {
            return Err((TlsReason::UnsupportedConfig, Box::new((**e).clone())))
        }
        UpstreamTransport::Tls(t) => t,
    };
    let found = |cache: &TlsCache| {
        cache
            .entries
            .load()
            .iter()
            .find(|(id, _)| *id == providers.id)
            .map(|(_, r)| r.clone())
    };
    let state = cluster
        .client_state()
        .get_or_init(|| Arc::new(TlsCache::default()));
    let Some(cache) = state.downcast_ref::<TlsCache>() else {
        return Err((
            TlsReason::Handshake,
            "cluster client state holds another type".into(),
        ));
    };
    let result = match found(cache) {
        Some(r) => r,
        None => {
            // First request with this provider set since the transport changed: compile.
            let compiled = ClusterTls::compile(tls, providers, cluster.cluster.connect_timeout)
                .map(Arc::new)
                .map_err(Arc::new);
            cache.entries.rcu(|entries| {
                let mut next = Vec::clone(entries);
                if !next.iter().any(|(id, _)| *id == providers.id) {
                    next.push((providers.id, compiled.clone()));
                }
                next
            });
            found(cache).unwrap_or(compiled)
        }
    };
    result.map(Some).map_err(|e| {
        let reason = match &*e {
            TlsError::MissingProvider { .. } => TlsReason::MissingProvider,
            _ => TlsReason::UnsupportedConfig,
        };
        (reason, Box::new(e) as BoxError)
    })
}

/// Chain to the roots instance's current trust bundle, then `match_subject_alt_names`.
struct SanVerifier {
    roots: Arc<WorkloadIdentity>,
    sans: Arc<[StringMatcher]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl fmt::Debug for SanVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SanVerifier")
            .field("sans", &self.sans)
            .finish()
    }
}

/// One subject alternative name of a certificate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct San {
    /// The name as text (IPs in canonical form).
    pub value: String,
    /// Whether it is a DNS name (which may be a `*.` wildcard).
    pub dns: bool,
}

/// The SANs of a certificate as strings: URI, DNS, email, IP (canonical text form).
pub(crate) fn subject_alt_names(der: &CertificateDer<'_>) -> Vec<San> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| {
            let value = match n {
                GeneralName::URI(u) | GeneralName::DNSName(u) | GeneralName::RFC822Name(u) => {
                    (*u).to_owned()
                }
                GeneralName::IPAddress(b) => match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string(),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string(),
                    _ => return None,
                },
                _ => return None,
            };
            let dns = matches!(n, GeneralName::DNSName(_));
            Some(San { value, dns })
        })
        .collect()
}

/// Whether a SAN satisfies a `match_subject_alt_names` matcher. An exact matcher against a DNS
/// SAN compares as Envoy's `DefaultCertValidator::dnsNameMatch`: case-insensitively, and a
/// certificate name `*.example.com` covers exactly one more label (`api.example.com`, not
/// `a.b.example.com`, not `example.com`).
pub(crate) fn san_matches(m: &StringMatcher, san: &San) -> bool {
    match m {
        StringMatcher::Exact { value, .. } if san.dns => dns_name_match(value, &san.value),
        _ => m.matches(&san.value),
    }
}

fn dns_name_match(name: &str, pattern: &str) -> bool {
    let (name, pattern) = (name.to_ascii_lowercase(), pattern.to_ascii_lowercase());
    if name == pattern {
        return true;
    }
    // `*.suffix`: the name is one label (no dot), then `.suffix`.
    match pattern.strip_prefix('*') {
        Some(dot_suffix) if dot_suffix.starts_with('.') && name.len() > dot_suffix.len() => {
            let (label, rest) = name.split_at(name.len() - dot_suffix.len());
            rest == dot_suffix && !label.contains('.')
        }
        _ => false,
    }
}

fn describe(sans: &[StringMatcher]) -> String {
    let one = |m: &StringMatcher| match m {
        StringMatcher::Exact { value, .. } => value.to_string(),
        StringMatcher::Prefix { value, .. } => format!("prefix {value}"),
        StringMatcher::Suffix { value, .. } => format!("suffix {value}"),
        StringMatcher::Contains { value, .. } => format!("contains {value}"),
        StringMatcher::Regex(r) => format!("regex {}", r.as_str()),
    };
    format!(
        "one of [{}]",
        sans.iter().map(one).collect::<Vec<_>>().join(", ")
    )
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let state = self.roots.current();
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &state.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.sans.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let presented = subject_alt_names(end_entity);
        if presented
            .iter()
            .any(|san| self.sans.iter().any(|m| san_matches(m, san)))
        {
            return Ok(ServerCertVerified::assertion());
        }
        Err(VerifyFailure::SanMismatch {
            expected: describe(&self.sans),
            got: if presented.is_empty() {
                "no subject alt name".into()
            } else {
                presented
                    .iter()
                    .map(|s| s.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }
        .into_rustls())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::signatures::tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::signatures::tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::signatures::schemes(&self.provider)
    }
}

/// The TLS failure in an error's source chain: its [`TlsReason`] and the error itself; `None`
/// when there is none, or when it is a TCP connect failure or timeout (a `connect` error).
pub(crate) fn reason_in<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<(TlsReason, &'e TlsError)> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<TlsError>() {
            return tls.reason().map(|r| (r, tls));
        }
        cur = err.source();
    }
    None
}

/// A client's error with the TLS failure inside it as its message (a hyper-util client error
/// says only "client error (Connect)"), keeping the original as the source.
#[derive(Debug)]
pub(crate) struct TlsFailure {
    message: String,
    source: BoxError,
}

impl TlsFailure {
    pub(crate) fn new(message: String, source: BoxError) -> Self {
        TlsFailure { message, source }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
