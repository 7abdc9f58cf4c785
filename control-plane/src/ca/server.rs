//! The CSR endpoint: Istio's `istio.v1.auth.IstioCertificateService/CreateCertificate` over
//! mTLS on its own listener, so a workload renews its SVID by proving it holds the current one.
//!
//! Wire format: istio/api `security/v1alpha1/ca.proto` (our copy in `proto/ca.proto`, same
//! package, service and field numbers), so istio-agent-style clients can call it too.
//!
//! Authentication (the equivalent of istiod's client-certificate authenticator):
//!
//! - The TLS handshake asks for a client certificate and checks that the caller holds its key
//!   (the `CertificateVerify` signature). Chain validation is done per call, against the CA's
//!   trust bundle, so a refusal is a gRPC status that names why — `UNAUTHENTICATED` for no
//!   certificate, an expired one, or one another CA issued; `PERMISSION_DENIED` for an
//!   identity outside the CA's trust domain — instead of an anonymous TLS alert. No request is
//!   served without a certificate that passed that validation.
//! - The identity signed is the caller's verified SPIFFE ID (the leaf's one URI SAN), never what
//!   the CSR asks for ([`Ca::sign_csr`] ignores its subject and SANs). A workload can only
//!   renew itself.
//! - A caller **without** a client certificate may instead present a bootstrap token as
//!   `authorization: Bearer <jwt>` metadata — the equivalent of istiod's JWT authenticator,
//!   which istio-agent feeds with the pod's service-account token ([`super::token`]). The token
//!   is verified (signature, `aud`, `iss`, `exp`/`iat`, single use) and the CSR is signed for its
//!   `sub`, again ignoring the CSR's SANs. Refusals: `UNAUTHENTICATED` for a missing, malformed,
//!   expired, forged or replayed token (or tokens not enabled), `PERMISSION_DENIED` for a `sub`
//!   outside the trust domain. A certificate, when presented, takes precedence: a token next to
//!   it is ignored, so a bad certificate is refused even with a good token. This is why the
//!   handshake makes client certificates optional.
//! - `validity_duration` (seconds) is honoured up to the CA's default TTL and capped there;
//!   0 or negative means the default. istiod refuses a request above its maximum instead; we cap
//!   so that a client asking for too much still gets a certificate.
//! - TLS session resumption is off: every call re-presents the current certificate, so a
//!   connection resumed from an older (possibly expired) certificate cannot renew.
//!
//! The endpoint's own serving certificate is an SVID from the same CA for
//! `spiffe://<td>/ns/<namespace>/sa/mesh-control-plane` ([`CONTROL_PLANE_SERVICE_ACCOUNT`]),
//! re-issued in-process at half its lifetime; workloads pin that identity.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::token::{TokenAuthority, TokenClaims, TokenError};
use super::{Ca, CaError, SpiffeId};

/// Generated from `proto/ca.proto` (Istio's `istio.v1.auth` package).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("istio.v1.auth");
}

use proto::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use proto::{IstioCertificateRequest, IstioCertificateResponse};

/// Service account of the control plane's own serving certificate.
pub const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "mesh-control-plane";

/// Default namespace of the control plane's identity (istiod's).
pub const DEFAULT_CONTROL_PLANE_NAMESPACE: &str = "istio-system";

/// Bound on a caller's TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SPIFFE ID the CSR endpoint presents: `spiffe://<td>/ns/<namespace>/sa/mesh-control-plane`.
pub fn control_plane_id(trust_domain: &str, namespace: &str) -> Result<SpiffeId, CaError> {
    SpiffeId::new(trust_domain, namespace, CONTROL_PLANE_SERVICE_ACCOUNT)
}

/// The TTL actually issued for a requested `validity_duration` (seconds): the CA's default
/// for 0 or negative, else the request capped at the default.
pub fn effective_ttl(requested_secs: i64, default_ttl: Duration) -> Duration {
    if requested_secs <= 0 {
        return default_ttl;
    }
    Duration::from_secs(requested_secs as u64).min(default_ttl)
}

/// The client certificate chain of a connection (end entity first), or none, and its address.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallerCerts {
    chain: Option<Arc<Vec<CertificateDer<'static>>>>,
    peer: Option<std::net::SocketAddr>,
}

/// Checks a caller's chain against `ca`'s trust bundle at `now` and returns the identity it
/// proves. The error is the status to answer with, naming why.
pub(crate) fn authenticate(
    ca: &Ca,
    verifier: &dyn ClientCertVerifier,
    chain: Option<&[CertificateDer<'static>]>,
    now: UnixTime,
) -> Result<SpiffeId, Status> {
    let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
        return Err(Status::unauthenticated(
            "no client certificate: present the current svid (mtls) to renew it",
        ));
    };
    if let Err(e) = verifier.verify_client_cert(leaf, intermediates, now) {
        let why = match &e {
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "client certificate has expired; re-bootstrap with a fresh svid".to_owned(),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "client certificate is not valid yet".to_owned(),
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!(
                "client certificate was not issued by this ca (trust domain {})",
                ca.trust_domain()
            ),
            other => format!("client certificate rejected: {other}"),
        };
        return Err(Status::unauthenticated(why));
    }
    let uri = leaf_spiffe_id(leaf).map_err(|e| {
        Status::unauthenticated(format!("client certificate has no spiffe id: {e}"))
    })?;
    let id = SpiffeId::parse(&uri)
        .map_err(|e| Status::unauthenticated(format!("client certificate identity: {e}")))?;
    if id.trust_domain() != ca.trust_domain() {
        return Err(Status::permission_denied(format!(
            "{id} is outside trust domain {}",
            ca.trust_domain()
        )));
    }
    Ok(id)
}

fn leaf_spiffe_id(der: &CertificateDer<'_>) -> Result<String, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .ok_or("no subject alternative name")?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let uri = uris.next().ok_or("no uri san")?;
    if uris.next().is_some() {
        return Err("more than one uri san".into());
    }
    Ok(uri.to_owned())
}

/// The bearer token of `authorization` metadata: `None` without that header, an error naming
/// why for one that is not `Bearer <token>`.
pub(crate) fn bearer_token(
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Option<&str>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let not_bearer = || Status::unauthenticated("authorization metadata is not a bearer token");
    let value = value.to_str().map_err(|_| not_bearer())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(not_bearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(not_bearer());
    }
    Ok(Some(token.trim()))
}

/// The status for a refused token: the replay cache being full is the control plane's
/// problem (`UNAVAILABLE`, retry); everything else is the caller's (`UNAUTHENTICATED`).
pub(crate) fn token_status(e: &TokenError) -> Status {
    match e {
        TokenError::ReplayCacheFull { .. } | TokenError::ReplayLog { .. } => {
            Status::unavailable(e.to_string())
        }
        _ => Status::unauthenticated(e.to_string()),
    }
}

/// Authenticates a caller without a client certificate by its bootstrap token.
pub(crate) fn authenticate_token(
    ca: &Ca,
    tokens: Option<&TokenAuthority>,
    metadata: &tonic::metadata::MetadataMap,
    now: SystemTime,
) -> Result<(SpiffeId, TokenClaims), Status> {
    let Some(token) = bearer_token(metadata)? else {
        return Err(Status::unauthenticated(
            "no client certificate and no bootstrap token: present the current svid (mtls) to \
             renew it, or `authorization: Bearer <token>` for a first svid",
        ));
    };
    let Some(tokens) = tokens else {
        return Err(Status::unauthenticated(
            "bootstrap tokens are not enabled on this control plane",
        ));
    };
    let (claims, id) = tokens.verify(token, now).map_err(|e| token_status(&e))?;
    if id.trust_domain() != ca.trust_domain() {
        return Err(Status::permission_denied(format!(
            "bootstrap token subject {id} is outside trust domain {}",
            ca.trust_domain()
        )));
    }
    Ok((id, claims))
}

/// The gRPC service. Signing is CPU work of a few hundred microseconds; it runs inline.
struct CertificateService {
    ca: Arc<Ca>,
    verifier: Arc<dyn ClientCertVerifier>,
    tokens: Option<Arc<TokenAuthority>>,
}

#[tonic::async_trait]
impl IstioCertificateService for CertificateService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let caller = request
            .extensions()
            .get::<CallerCerts>()
            .cloned()
            .unwrap_or_default();
        let chain = caller.chain.filter(|c| !c.is_empty());
        let refused = |status: Status| {
            tracing::warn!(peer = ?caller.peer, reason = status.message(), "csr refused");
            status
        };
        let (id, token) = match &chain {
            Some(chain) => (
                authenticate(&self.ca, &*self.verifier, Some(chain), UnixTime::now())
                    .map_err(refused)?,
                None,
            ),
            None => {
                let (id, claims) = authenticate_token(
                    &self.ca,
                    self.tokens.as_deref(),
                    request.metadata(),
                    SystemTime::now(),
                )
                .map_err(refused)?;
                (id, Some(claims))
            }
        };
        let req = request.into_inner();
        let ttl = effective_ttl(req.validity_duration, self.ca.default_ttl());
        let svid = self
            .ca
            .sign_csr(&req.csr, &id, Some(ttl))
            .map_err(|e| match e {
                CaError::InvalidCsr(_) => Status::invalid_argument(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        // Consumed only once a certificate exists, so a bad CSR does not burn the token; of two
        // concurrent requests with one token, the second to get here is refused.
        if let (Some(claims), Some(tokens)) = (&token, &self.tokens) {
            tokens
                .consume(claims, SystemTime::now())
                .map_err(|e| refused(token_status(&e)))?;
        }
        let auth = if token.is_some() {
            "token"
        } else {
            "certificate"
        };
        let jti = token.as_ref().map(|c| c.jti.as_str());
        tracing::info!(identity = %id, ttl_secs = ttl.as_secs(), auth, jti, "signed csr");
        let mut cert_chain = super::pem_blocks(&svid.cert_chain_pem, "CERTIFICATE");
        cert_chain.extend(super::pem_blocks(&svid.trust_bundle_pem, "CERTIFICATE"));
        Ok(Response::new(IstioCertificateResponse { cert_chain }))
    }
}

/// Serves the CSR endpoint on `listener` until `shutdown` turns true, accepting bootstrap
/// tokens when `tokens` is set (their issuer must be the endpoint's identity). Returns the
/// identity the endpoint presents.
pub(crate) fn spawn(
    ca: Arc<Ca>,
    namespace: &str,
    tokens: Option<Arc<TokenAuthority>>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(SpiffeId, tokio::task::JoinHandle<()>), CaError> {
    let own_id = control_plane_id(ca.trust_domain(), namespace)?;
    if let Some(t) = &tokens {
        if t.issuer() != own_id.as_str() {
            return Err(CaError::InvalidCa {
                what: "bootstrap token authority".into(),
                reason: format!("issuer {} is not this endpoint ({own_id})", t.issuer()),
            });
        }
    }
    let resolver = Arc::new(ServingCert::issue(&ca, &own_id)?);
    let verifier = chain_verifier(&ca)?;
    let provider = mesh_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_client_cert_verifier(Arc::new(PossessionOnly { provider }))
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let service = CertificateService {
        ca: ca.clone(),
        verifier,
        tokens,
    };
    let (tx, rx) = mpsc::channel::<Result<CaConn, std::io::Error>>(16);
    let mut stop = shutdown.clone();
    let accept_loop = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(ok) => ok,
                    Err(e) => {
                        tracing::warn!(error = %e, "ca accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => return,
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(CaConn(Box::new(tls)))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "ca tls handshake failed"),
                    Err(_) => tracing::debug!(%peer, "ca tls handshake timed out"),
                }
            });
        }
    });
    let refresh = {
        let (ca, resolver, id, mut stop) = (ca, resolver, own_id.clone(), shutdown.clone());
        async move {
            loop {
                let wait = resolver.lifetime() / 2;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped(&mut stop) => return,
                }
                match ServingCert::issue(&ca, &id) {
                    Ok(fresh) => resolver.current.store(fresh.current.load_full()),
                    Err(e) => {
                        tracing::error!(error = %e, "re-issuing the ca's serving certificate")
                    }
                }
            }
        }
    };
    let mut stop = shutdown;
    let task = tokio::spawn(async move {
        let refresh = tokio::spawn(refresh);
        let result = tonic::transport::Server::builder()
            .add_service(IstioCertificateServiceServer::new(service))
            .serve_with_incoming_shutdown(ReceiverStream::new(rx), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "ca server failed");
        }
        accept_loop.abort();
        refresh.abort();
    });
    Ok((own_id, task))
}

/// Validates client chains against `ca`'s trust bundle (webpki: signatures, validity window,
/// `clientAuth` extended key usage).
pub(crate) fn chain_verifier(ca: &Ca) -> Result<Arc<dyn ClientCertVerifier>, CaError> {
    let invalid = |reason: String| CaError::InvalidCa {
        what: "trust bundle".into(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.trust_bundle_pem().as_bytes()) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), mesh_provider())
        .build()
        .map_err(|e| invalid(e.to_string()))
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn mesh_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The endpoint's own SVID, swapped whole on re-issue.
struct ServingCert {
    current: ArcSwap<CertifiedKey>,
    lifetime: Duration,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingCert(<redacted>)")
    }
}

impl ServingCert {
    fn issue(ca: &Ca, id: &SpiffeId) -> Result<Self, CaError> {
        let (svid, key) = ca.issue(id, None)?;
        let invalid = |reason: String| CaError::InvalidCa {
            what: "serving certificate".into(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(svid.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        let certified = CertifiedKey::from_der(chain, key, &mesh_provider())
            .map_err(|e| invalid(e.to_string()))?;
        let lifetime = svid
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        Ok(Self {
            current: ArcSwap::from_pointee(certified),
            lifetime,
        })
    }

    fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Handshake-time client verifier: asks for a certificate without requiring one (a caller
/// without one may bring a bootstrap token), accepts the chain for now, and checks the
/// handshake signature (proof that the caller holds the leaf's key). The chain is validated
/// per call by [`authenticate`], which can say why it is refused.
#[derive(Debug)]
struct PossessionOnly {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PossessionOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An accepted TLS connection that hands its client chain to tonic as connect info.
struct CaConn(Box<tokio_rustls::server::TlsStream<TcpStream>>);

impl tonic::transport::server::Connected for CaConn {
    type ConnectInfo = CallerCerts;

    fn connect_info(&self) -> CallerCerts {
        let (tcp, tls) = self.0.get_ref();
        CallerCerts {
            chain: tls
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
            peer: tcp.peer_addr().ok(),
        }
    }
}

impl AsyncRead for CaConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for CaConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "cluster.local";

    fn chain_of(
        ca: &Ca,
        sa: &str,
        window: Option<(SystemTime, SystemTime)>,
    ) -> Vec<CertificateDer<'static>> {
        let id = SpiffeId::new(ca.trust_domain(), "default", sa).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let svid = match window {
            Some((nb, na)) => ca.sign_csr_with_validity(&csr, &id, nb, na).unwrap(),
            None => ca.sign_csr(&csr, &id, None).unwrap(),
        };
        CertificateDer::pem_slice_iter(svid.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn check(ca: &Ca, chain: Option<&[CertificateDer<'static>]>) -> Result<SpiffeId, Status> {
        let verifier = chain_verifier(ca).unwrap();
        authenticate(ca, &*verifier, chain, UnixTime::now())
    }

    #[test]
    fn current_svid_authenticates_as_its_own_identity() {
        let ca = Ca::generate(TD).unwrap();
        let chain = chain_of(&ca, "greeter", None);
        let id = check(&ca, Some(&chain)).unwrap();
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/default/sa/greeter");
    }

    #[test]
    fn no_certificate_is_unauthenticated_naming_why() {
        let ca = Ca::generate(TD).unwrap();
        for chain in [None, Some(&[][..])] {
            let err = check(&ca, chain).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
            assert!(err.message().contains("no client certificate"), "{err:?}");
        }
    }

    #[test]
    fn expired_certificate_is_unauthenticated_naming_why() {
        let ca = Ca::generate(TD).unwrap();
        let now = SystemTime::now();
        let window = (
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        );
        let chain = chain_of(&ca, "greeter", Some(window));
        let err = check(&ca, Some(&chain)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("expired"), "{err:?}");
    }

    #[test]
    fn another_cas_certificate_is_unauthenticated_naming_why() {
        let ca = Ca::generate(TD).unwrap();
        let other = Ca::generate(TD).unwrap();
        let chain = chain_of(&other, "greeter", None);
        let err = check(&ca, Some(&chain)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("not issued by this ca"), "{err:?}");
    }

    #[test]
    fn identity_outside_the_trust_domain_is_permission_denied() {
        // The same root signing for another trust domain (a misconfigured shared root): the
        // chain validates, the identity is still not ours to renew.
        let dir = std::env::temp_dir().join(format!("mesh-ca-server-td-{}", std::process::id()));
        let ca = Ca::load_or_create(&dir, TD).unwrap();
        let foreign = Ca::from_files(
            &dir.join(super::super::CA_CERT_FILE),
            &dir.join(super::super::CA_KEY_FILE),
            "other.local",
        )
        .unwrap();
        let chain = chain_of(&foreign, "greeter", None);
        let err = check(&ca, Some(&chain)).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(
            err.message().contains("outside trust domain cluster.local"),
            "{err:?}"
        );
    }

    #[test]
    fn requested_ttl_is_capped_at_the_default() {
        let default = Duration::from_secs(3600);
        assert_eq!(effective_ttl(0, default), default);
        assert_eq!(effective_ttl(-5, default), default);
        assert_eq!(effective_ttl(600, default), Duration::from_secs(600));
        assert_eq!(effective_ttl(3600, default), default);
        assert_eq!(effective_ttl(86_400, default), default);
        assert_eq!(effective_ttl(i64::MAX, default), default);
    }

    #[test]
    fn control_plane_identity_shape() {
        let id = control_plane_id(TD, DEFAULT_CONTROL_PLANE_NAMESPACE).unwrap();
        assert_eq!(
            id.as_str(),
            "spiffe://cluster.local/ns/istio-system/sa/mesh-control-plane"
        );
    }
}
