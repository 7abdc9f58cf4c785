//! Client side: a rustls `ClientConfig` verifying the server's SPIFFE identity, and a
//! connector (`tower::Service<Uri>`) producing TLS streams for hyper-util's client.
//!
//! Verification follows Envoy's `UpstreamTlsContext` with a `CertificateValidationContext`
//! (chain to `trusted_ca`, then `match_subject_alt_names` on URI SANs) as Istio's
//! ISTIO_MUTUAL configures it; the server name (SNI) is sent but not matched against DNS SANs,
//! which SVIDs do not have.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use super::{check_peer_id, provider, trust_domain, PeerIdentity, TlsError, WorkloadIdentity};

/// ALPN protocols offered and accepted, most preferred first.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Default bound on TCP connect + TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to mesh servers over mTLS, presenting this workload's SVID and accepting only the
/// expected SPIFFE IDs. Cheap to clone.
#[derive(Clone)]
pub struct MeshTlsConnector {
    config: Arc<ClientConfig>,
    connector: tokio_rustls::TlsConnector,
    sni: Option<ServerName<'static>>,
    timeout: Duration,
}

impl std::fmt::Debug for MeshTlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTlsConnector")
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl MeshTlsConnector {
    /// A connector for servers whose SPIFFE ID is one of `expected` (empty: any identity of
    /// our trust domain), presenting `identity` as client certificate.
    pub fn new(identity: Arc<WorkloadIdentity>, expected: Vec<String>) -> Self {
        let config = Arc::new(client_config(identity, expected));
        Self {
            connector: tokio_rustls::TlsConnector::from(config.clone()),
            config,
            sni: None,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A connector that authenticates the server only and presents **no** client certificate:
    /// the server's chain must lead to `trust_bundle_pem` and its SPIFFE ID be one of
    /// `expected` (which must not be empty — without an own identity there is no trust domain
    /// to fall back to). For a workload that has no SVID yet, e.g. bootstrapping its first one
    /// from the control plane's CA with a token.
    pub fn server_authenticated(
        trust_bundle_pem: &[u8],
        expected: Vec<String>,
    ) -> Result<Self, TlsError> {
        let config = Arc::new(server_only_config(trust_bundle_pem, expected)?);
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(config.clone()),
            config,
            sni: None,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sends `name` as SNI instead of the URI's host.
    pub fn with_sni(mut self, name: &str) -> Result<Self, TlsError> {
        let sni = ServerName::try_from(name.to_owned()).map_err(|e| TlsError::InvalidIdentity {
            what: "sni".into(),
            reason: format!("{name:?}: {e}"),
        })?;
        self.sni = Some(sni);
        Ok(self)
    }

    /// Bounds TCP connect + handshake (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Turns TLS session resumption off (on by default, rustls's in-memory cache), so every
    /// connection does a full handshake with certificate verification on both sides.
    pub fn without_resumption(mut self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        self.config = Arc::new(config);
        self.connector = tokio_rustls::TlsConnector::from(self.config.clone());
        self
    }

    /// The rustls configuration, e.g. for tonic or a custom transport.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Connects to `host:port` and completes the handshake.
    pub async fn connect(&self, host: &str, port: u16) -> Result<MeshTlsStream, TlsError> {
        let peer = format!("{host}:{port}");
        let sni = match &self.sni {
            Some(s) => s.clone(),
            None => {
                ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).map_err(|e| {
                    TlsError::Connect {
                        peer: peer.clone(),
                        source: io::Error::new(io::ErrorKind::InvalidInput, e),
                    }
                })?
            }
        };
        let work = async {
            let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|source| TlsError::Connect {
                    peer: peer.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .connector
                .connect(sni, super::read_ahead(tcp))
                .await
                .map_err(|e| TlsError::from_handshake(&peer, e))?;
            let (_, conn) = tls.get_ref();
            let peer_id = conn.peer_certificates().and_then(PeerIdentity::from_chain);
            let h2 = conn.alpn_protocol() == Some(b"h2");
            Ok(MeshTlsStream::new(tls, peer_id, h2))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TlsError::Timeout { peer }),
        }
    }
}

impl tower::Service<Uri> for MeshTlsConnector {
    type Response = MeshTlsStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<MeshTlsStream, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let Some(host) = uri.host() else {
                return Err(TlsError::Connect {
                    peer: uri.to_string(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "uri has no host"),
                });
            };
            let port = uri.port_u16().unwrap_or(443);
            this.connect(host, port).await
        })
    }
}

/// An established client-side TLS connection, usable by hyper-util's client. Reports the
/// negotiated ALPN (`h2` switches the pool to HTTP/2) and the server's [`PeerIdentity`], which
/// hyper-util copies into each response's extensions.
#[derive(Debug)]
pub struct MeshTlsStream {
    io: TokioIo<tokio_rustls::client::TlsStream<super::TlsTcp>>,
    peer: Option<PeerIdentity>,
    h2: bool,
}

impl MeshTlsStream {
    pub(crate) fn new(
        mut tls: tokio_rustls::client::TlsStream<super::TlsTcp>,
        peer: Option<PeerIdentity>,
        h2: bool,
    ) -> Self {
        tls.get_mut()
            .1
            .set_buffer_limit(Some(super::SEND_BUFFER_LIMIT));
        MeshTlsStream {
            io: TokioIo::new(tls),
            peer,
            h2,
        }
    }

    /// The server's verified identity.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// Whether ALPN settled on HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// The cipher suite the handshake settled on.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        let (_, conn) = self.io.inner().get_ref();
        conn.negotiated_cipher_suite().map(|s| s.suite())
    }
}

impl Connection for MeshTlsStream {
    fn connected(&self) -> Connected {
        let mut c = Connected::new();
        if let Some(peer) = &self.peer {
            c = c.extra(peer.clone());
        }
        if self.h2 {
            c = c.negotiated_h2();
        }
        c
    }
}

impl hyper::rt::Read for MeshTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for MeshTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// The rustls client configuration: our SVID as client certificate (read per handshake, so
/// rotation applies to new connections), SPIFFE server verification, ALPN h2 + http/1.1.
pub fn client_config(identity: Arc<WorkloadIdentity>, expected: Vec<String>) -> ClientConfig {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        trust: ServerTrust::Identity(identity.clone()),
        expected: expected.into(),
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(ClientCertResolver {
            identity: identity.clone(),
        }));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.resumption =
        rustls::client::Resumption::store(super::resumption::ClientSessions::new(vec![identity]));
    config
}

/// Server-only verification against a fixed trust bundle, no client certificate.
fn server_only_config(
    trust_bundle_pem: &[u8],
    expected: Vec<String>,
) -> Result<ClientConfig, TlsError> {
    let invalid = |reason: String| TlsError::InvalidIdentity {
        what: "trust bundle".into(),
        reason,
    };
    if expected.is_empty() {
        return Err(TlsError::InvalidIdentity {
            what: "expected server identity".into(),
            reason: "name at least one spiffe id to accept".into(),
        });
    }
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust_bundle_pem) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("no CERTIFICATE block".into()));
    }
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        trust: ServerTrust::Bundle(Arc::new(roots)),
        expected: expected.into(),
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

pub(crate) struct ClientCertResolver {
    pub(crate) identity: Arc<WorkloadIdentity>,
}

impl std::fmt::Debug for ClientCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCertResolver")
    }
}

impl ResolvesClientCert for ClientCertResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.identity.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Where the roots come from: the workload's identity (current bundle, rotating with it), or
/// a fixed bundle for a workload without an identity yet.
enum ServerTrust {
    Identity(Arc<WorkloadIdentity>),
    Bundle(Arc<RootCertStore>),
}

/// Chain to the current trust bundle, then the SPIFFE ID check.
struct SpiffeServerVerifier {
    trust: ServerTrust,
    expected: Arc<[String]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let state;
        let (roots, own_td): (&RootCertStore, &str) = match &self.trust {
            ServerTrust::Identity(identity) => {
                state = identity.current();
                (&state.roots, trust_domain(&state.spiffe_id))
            }
            // `expected` is never empty here, so no trust-domain fallback is needed.
            ServerTrust::Bundle(roots) => (roots, ""),
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        check_peer_id(end_entity, &self.expected, own_td)?;
        Ok(ServerCertVerified::assertion())
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
