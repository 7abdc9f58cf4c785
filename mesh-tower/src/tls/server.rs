//! Server side: STRICT, PERMISSIVE and DISABLE acceptors (Istio PeerAuthentication modes) and
//! the wrapper that hands the peer's identity to handlers.
//!
//! STRICT follows Envoy's `DownstreamTlsContext` with `require_client_certificate: true` and a
//! validation context (what Istio emits for STRICT). PERMISSIVE follows Envoy's `tls_inspector`:
//! the first byte decides (0x16 is a TLS handshake record, RFC 8446 §5.1); gRPC's xDS servers
//! cannot do this and treat PERMISSIVE as DISABLE (XDS-SEMANTICS row 32) — we follow Envoy.
//!
//! The mode can follow the control plane: [`MeshTlsAcceptor::follow_mode`] takes the mode of the
//! server's inbound Listener (`mesh_core::authz::InboundPolicy::tls_mode`, Istio
//! PeerAuthentication as the control plane translated it into filter chains) and applies it to
//! every clone of the acceptor for new connections; established ones keep what they negotiated.
//! [`sniff_tls`] and [`MeshTlsAcceptor::accept_tls`] are the two halves of
//! [`MeshTlsAcceptor::accept`] for servers that choose a filter chain in between (gRFC A36).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::client::ALPN;
use super::{check_peer_id, provider, trust_domain, PeerIdentity, TlsError, WorkloadIdentity};

/// First byte of a TLS record carrying a handshake message (ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Default bound on the first byte + TLS handshake of an inbound connection.
pub const DEFAULT_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Istio PeerAuthentication mTLS mode of a server port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAuthMode {
    /// mTLS only: a verified client certificate is required; plaintext is refused.
    Strict,
    /// mTLS or plaintext on one port, told apart by the first byte.
    Permissive,
    /// Plaintext only.
    Disable,
}

impl PeerAuthMode {
    fn to_u8(self) -> u8 {
        match self {
            PeerAuthMode::Strict => 0,
            PeerAuthMode::Permissive => 1,
            PeerAuthMode::Disable => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => PeerAuthMode::Strict,
            1 => PeerAuthMode::Permissive,
            _ => PeerAuthMode::Disable,
        }
    }
}

impl From<mesh_core::model::InboundTlsMode> for PeerAuthMode {
    fn from(m: mesh_core::model::InboundTlsMode) -> Self {
        use mesh_core::model::InboundTlsMode;
        match m {
            InboundTlsMode::Strict => PeerAuthMode::Strict,
            InboundTlsMode::Permissive => PeerAuthMode::Permissive,
            InboundTlsMode::Disable => PeerAuthMode::Disable,
        }
    }
}

/// Accepts inbound connections according to a [`PeerAuthMode`]. Cheap to clone; clones share
/// the mode ([`MeshTlsAcceptor::set_mode`]).
#[derive(Clone)]
pub struct MeshTlsAcceptor {
    mode: Arc<AtomicU8>,
    identity: Arc<WorkloadIdentity>,
    config: Arc<ServerConfig>,
    acceptor: tokio_rustls::TlsAcceptor,
    timeout: Duration,
}

impl std::fmt::Debug for MeshTlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTlsAcceptor")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl MeshTlsAcceptor {
    /// An acceptor presenting `identity` and accepting any client identity of its trust domain.
    pub fn new(identity: Arc<WorkloadIdentity>, mode: PeerAuthMode) -> Self {
        Self::build(identity, mode, Vec::new())
    }

    /// Accepts only clients whose SPIFFE ID is in `allowed` (empty: any of our trust domain).
    /// A coarse guard until AuthorizationPolicy lands; the handshake fails for others.
    pub fn with_allowed_peers(self, allowed: Vec<String>) -> Self {
        let mode = self.mode.clone();
        Self {
            mode,
            ..Self::build(self.identity, PeerAuthMode::Strict, allowed).with_timeout(self.timeout)
        }
    }

    /// Bounds the wait for the first byte and the handshake (default [`DEFAULT_ACCEPT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn build(identity: Arc<WorkloadIdentity>, mode: PeerAuthMode, allowed: Vec<String>) -> Self {
        let config = Arc::new(server_config(identity.clone(), allowed));
        Self {
            mode: Arc::new(AtomicU8::new(mode.to_u8())),
            identity,
            acceptor: tokio_rustls::TlsAcceptor::from(config.clone()),
            config,
            timeout: DEFAULT_ACCEPT_TIMEOUT,
        }
    }

    /// The mode.
    pub fn mode(&self) -> PeerAuthMode {
        PeerAuthMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Changes the mode of this acceptor and all its clones, for connections accepted from now.
    pub fn set_mode(&self, mode: PeerAuthMode) {
        let old = PeerAuthMode::from_u8(self.mode.swap(mode.to_u8(), Ordering::Relaxed));
        if old != mode {
            tracing::info!(?old, new = ?mode, "inbound peer authentication mode changed");
        }
    }

    /// Follows `modes` (e.g. `mesh_core::authz::InboundPolicy::tls_mode`): every new value is
    /// applied with [`MeshTlsAcceptor::set_mode`]; `None` (no listener yet) keeps the current
    /// mode. The task ends when the sender is dropped. Must be called within a Tokio runtime.
    pub fn follow_mode<M>(
        &self,
        mut modes: tokio::sync::watch::Receiver<Option<M>>,
    ) -> tokio::task::JoinHandle<()>
    where
        M: Into<PeerAuthMode> + Clone + Send + Sync + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let current = modes.borrow_and_update().clone();
                if let Some(m) = current {
                    this.set_mode(m.into());
                }
                if modes.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// The TLS half of [`MeshTlsAcceptor::accept`], whatever the mode: the handshake (client
    /// certificate required and verified), bounded by the accept timeout.
    pub async fn accept_tls(
        &self,
        tcp: TcpStream,
    ) -> Result<(ServerStream, Option<PeerIdentity>), TlsError> {
        let peer = tcp
            .peer_addr()
            .map(|a: SocketAddr| a.to_string())
            .unwrap_or_else(|_| "unknown peer".into());
        let work = async {
            let mut tls = self
                .acceptor
                .accept(super::read_ahead(tcp))
                .await
                .map_err(|e| TlsError::from_handshake(&peer, e))?;
            tls.get_mut()
                .1
                .set_buffer_limit(Some(super::SEND_BUFFER_LIMIT));
            let id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(PeerIdentity::from_chain);
            Ok((ServerStream::Tls(Box::new(tls)), id))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TlsError::Timeout { peer }),
        }
    }

    /// The rustls server configuration (client certificates required).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Accepts one connection: returns the stream to serve and, over TLS, the verified peer.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(ServerStream, Option<PeerIdentity>), TlsError> {
        let peer = tcp
            .peer_addr()
            .map(|a: SocketAddr| a.to_string())
            .unwrap_or_else(|_| "unknown peer".into());
        let mode = self.mode();
        if mode == PeerAuthMode::Disable {
            return Ok((ServerStream::Plain(tcp), None));
        }
        let work = async {
            let mut first = [0u8; 1];
            let n = tcp
                .peek(&mut first)
                .await
                .map_err(|source| TlsError::Handshake {
                    peer: peer.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(TlsError::NotTls {
                    peer: peer.clone(),
                    reason: "closed before sending".into(),
                });
            }
            if first[0] != TLS_HANDSHAKE_RECORD {
                if mode == PeerAuthMode::Permissive {
                    return Ok((ServerStream::Plain(tcp), None));
                }
                return Err(TlsError::NotTls {
                    peer: peer.clone(),
                    reason: format!("plaintext (first byte {:#04x}) on a STRICT port", first[0]),
                });
            }
            let mut tls = self
                .acceptor
                .accept(super::read_ahead(tcp))
                .await
                .map_err(|e| TlsError::from_handshake(&peer, e))?;
            tls.get_mut()
                .1
                .set_buffer_limit(Some(super::SEND_BUFFER_LIMIT));
            let id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(PeerIdentity::from_chain);
            Ok((ServerStream::Tls(Box::new(tls)), id))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TlsError::Timeout { peer }),
        }
    }
}

/// Whether the connection's first byte is a TLS handshake record (Envoy's `tls_inspector`), at
/// most `timeout`; the byte stays in the socket. A connection closed before sending anything is
/// an error.
pub async fn sniff_tls(tcp: &TcpStream, timeout: Duration) -> Result<bool, TlsError> {
    let peer = || {
        tcp.peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "unknown peer".into())
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
        Err(_) => Err(TlsError::Timeout { peer: peer() }),
        Ok(Err(source)) => Err(TlsError::Handshake {
            peer: peer(),
            source,
        }),
        Ok(Ok(0)) => Err(TlsError::NotTls {
            peer: peer(),
            reason: "closed before sending".into(),
        }),
        Ok(Ok(_)) => Ok(first[0] == TLS_HANDSHAKE_RECORD),
    }
}

/// The rustls server configuration: our SVID (read per handshake), mandatory client
/// certificates verified against the current trust bundle and `allowed`, ALPN h2 + http/1.1.
pub fn server_config(identity: Arc<WorkloadIdentity>, allowed: Vec<String>) -> ServerConfig {
    let provider = provider();
    let verifier = Arc::new(SpiffeClientVerifier {
        identity: identity.clone(),
        allowed: allowed.into(),
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ServerCertResolver {
            identity: identity.clone(),
        }));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = super::resumption::ServerSessions::new(identity);
    config
}

/// An accepted connection: TLS or plaintext (PERMISSIVE / DISABLE).
#[derive(Debug)]
pub enum ServerStream {
    /// mTLS, client verified.
    Tls(Box<tokio_rustls::server::TlsStream<super::TlsTcp>>),
    /// Plaintext.
    Plain(TcpStream),
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            ServerStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerStream::Tls(s) => s.is_write_vectored(),
            ServerStream::Plain(s) => s.is_write_vectored(),
        }
    }
}

/// A hyper service wrapper inserting the connection's [`PeerIdentity`] (if any) into every
/// request's extensions. Plaintext connections get none, so a handler can tell them apart.
#[derive(Clone, Debug)]
pub struct WithPeerIdentity<S> {
    inner: S,
    peer: Option<PeerIdentity>,
}

impl<S> WithPeerIdentity<S> {
    /// Wraps `inner` for one connection whose verified peer is `peer`.
    pub fn new(inner: S, peer: Option<PeerIdentity>) -> Self {
        Self { inner, peer }
    }
}

impl<S, B> hyper::service::Service<Request<B>> for WithPeerIdentity<S>
where
    S: hyper::service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            req.extensions_mut().insert(peer.clone());
        }
        self.inner.call(req)
    }
}

struct ServerCertResolver {
    identity: Arc<WorkloadIdentity>,
}

impl std::fmt::Debug for ServerCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCertResolver")
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.identity.current().certified.clone())
    }
}

/// Chain to the current trust bundle (webpki, client-auth EKU), then the SPIFFE ID check.
struct SpiffeClientVerifier {
    identity: Arc<WorkloadIdentity>,
    allowed: Arc<[String]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would have to borrow from the swappable state; SVID clients send their one
        // certificate regardless.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let state = self.identity.current();
        state
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        check_peer_id(end_entity, &self.allowed, trust_domain(&state.spiffe_id))?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
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
