//! Workload mTLS: SPIFFE identities, a client connector and STRICT / PERMISSIVE / DISABLE
//! acceptors, with certificates and trust bundle swappable at runtime.
//!
//! The model is Istio's (SPIFFE X.509-SVIDs, `spiffe://<td>/ns/<ns>/sa/<sa>`, PeerAuthentication
//! modes) and Envoy's for the checks:
//!
//! - **Client** ([`client`]): the server's chain must lead to the trust bundle, and its URI SAN
//!   must be one of the expected SPIFFE IDs — Envoy `CertificateValidationContext`
//!   `match_subject_alt_names` semantics: any entry matching is enough; an empty list accepts
//!   any identity **of our trust domain** (Envoy accepts any SAN there; we keep the trust-domain
//!   check, which is what Istio's SPIFFE validator does). DNS names are not checked: SPIFFE
//!   SVIDs carry no DNS SAN. SNI is still sent, ALPN offers `h2` then `http/1.1`.
//! - **Server** ([`server`]): STRICT requires and verifies a client certificate (Envoy
//!   `require_client_certificate`); PERMISSIVE tells TLS from plaintext on one port by the first
//!   byte (0x16 = TLS handshake record, as Envoy's `tls_inspector` does — gRPC's own xDS servers
//!   cannot, XDS-SEMANTICS row 32) and requires a client certificate on the TLS path; DISABLE
//!   is plaintext. The verified peer identity reaches handlers as a [`PeerIdentity`] request
//!   extension.
//! - **Rotation**: a [`WorkloadIdentity`] keeps its material in an `ArcSwap`; every handshake
//!   reads the current one, so [`WorkloadIdentity::rotate_pem`] changes the certificate, key and
//!   trust bundle for new handshakes without touching established connections or in-flight
//!   calls. Nothing is rebuilt and no lock is taken on the handshake path. TLS session caches
//!   are emptied on rotation (`resumption.rs`), so a resumed handshake never carries an old
//!   certificate or a peer the new trust bundle no longer accepts past a swap.
//! - **Keys stay here**: [`CertificateRequest`] generates the key pair in the workload and
//!   exports only a CSR for the control plane's CA (see `mesh_control_plane::ca` for why the CSR
//!   path was chosen over SDS). No `Debug` impl in this module prints key material.
//!
//! - **Renewal over the wire**: `mesh_grpc::identity::CertificateRenewer` runs the loop — new
//!   key and CSR here, `CreateCertificate` to the control plane's CA over mTLS with the current
//!   SVID, [`CertificateRequest::renew`] into the same `WorkloadIdentity` — at a fraction of the
//!   remaining lifetime.
//!
//! - **From CDS** ([`upstream`]): a cluster's `UpstreamTlsContext` (gRFC A29, Istio
//!   DestinationRule `tls`) compiles into a [`ClusterTls`] the mesh's clients connect with,
//!   against the [`CertificateProviders`] the application gives the stack.
//!
//! PeerAuthentication from the control plane reaches servers as the TLS contexts of their inbound
//! Listener's filter chains (gRFC A29/A36): `mesh_grpc::XdsServer` applies them per chain, and a
//! hyper / axum server follows their mode with [`MeshTlsAcceptor::follow_mode`].
//!
//! One crypto provider for the workspace: `ring` ([`provider`]).

pub mod client;
mod error;
mod file_watcher;
mod read_ahead;
mod resumption;
pub mod server;
pub mod upstream;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

pub use client::{MeshTlsConnector, MeshTlsStream};
pub use error::TlsError;
pub use read_ahead::{ReadAhead, READ_AHEAD};
pub use server::{sniff_tls, MeshTlsAcceptor, PeerAuthMode, ServerStream, WithPeerIdentity};
pub use upstream::{CertificateProviders, ClusterTls};

/// The TCP stream under every TLS session of this module, with the adaptive read-ahead buffer
/// of [`ReadAhead`].
pub type TlsTcp = ReadAhead<tokio::net::TcpStream>;

fn read_ahead(tcp: tokio::net::TcpStream) -> TlsTcp {
    ReadAhead::new(tcp)
}

pub(crate) use error::VerifyFailure;

/// How much encrypted data one connection queues before a write returns short. rustls's
/// default, 64 KiB, splits a 64 KiB body and its headers into two `writev`s (hyper hands both
/// at once; rustls took 65,536 of 65,615 bytes); 256 KiB sends such a response in one. It
/// only holds memory while the peer is slower than the writer (Envoy's per-connection buffer
/// limit is 1 MiB).
pub(crate) const SEND_BUFFER_LIMIT: usize = 256 * 1024;

/// The crypto provider every TLS config in the mesh uses: `ring` (builds with a C compiler
/// alone; one provider for the whole workspace so configs never disagree), with
/// TLS_AES_128_GCM_SHA256 preferred, as BoringSSL (Envoy) and Go order TLS 1.3 suites where the
/// CPU has AES instructions. rustls' own order puts AES-256 first; AES-128 runs 10 rounds
/// instead of 14 and took the AES-GCM share of an mTLS 64 KiB bench from 24 % to 20 % of CPU.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider
                .cipher_suites
                .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
            Arc::new(provider)
        })
        .clone()
}

/// The authenticated identity of the peer of a connection, put in request extensions by
/// [`WithPeerIdentity`] on servers and in response extensions by [`MeshTlsConnector`] on clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    spiffe_id: Arc<str>,
    serial: Arc<[u8]>,
}

impl PeerIdentity {
    /// The peer's SPIFFE ID (its certificate's URI SAN).
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The serial number of the certificate the peer presented, big-endian.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Reads the identity from a verified peer chain (end entity first).
    pub(crate) fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Self> {
        let leaf = parse_leaf(chain.first()?).ok()?;
        Some(Self {
            spiffe_id: leaf.spiffe_id.into(),
            serial: leaf.serial.into(),
        })
    }
}

/// What we read from a leaf certificate.
pub(crate) struct LeafInfo {
    pub(crate) spiffe_id: String,
    pub(crate) serial: Vec<u8>,
    pub(crate) not_after: SystemTime,
}

/// Parses a leaf's SPIFFE ID (exactly one `spiffe://` URI SAN, SPIFFE X.509-SVID §4), serial and
/// expiry.
pub(crate) fn parse_leaf(der: &CertificateDer<'_>) -> Result<LeafInfo, String> {
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
    if !uri.starts_with("spiffe://") {
        return Err(format!("uri san {uri:?} is not a spiffe id"));
    }
    let not_after = cert.validity().not_after.timestamp();
    Ok(LeafInfo {
        spiffe_id: uri.to_owned(),
        serial: cert.raw_serial().to_vec(),
        not_after: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(not_after.max(0) as u64),
    })
}

/// The trust domain of a SPIFFE ID (`spiffe://<td>/...` → `<td>`).
pub(crate) fn trust_domain(spiffe_id: &str) -> &str {
    let rest = spiffe_id.strip_prefix("spiffe://").unwrap_or(spiffe_id);
    rest.split('/').next().unwrap_or(rest)
}

/// One generation of identity material; swapped whole on rotation.
pub(crate) struct IdentityState {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    pub(crate) spiffe_id: String,
    pub(crate) serial: Vec<u8>,
    pub(crate) not_after: SystemTime,
    /// Unique per swap: TLS session caches made under an older generation are dropped
    /// ([`resumption`]).
    pub(crate) generation: u64,
}

/// This workload's SVID (chain + key) and trust bundle, swappable at runtime.
///
/// Shared as `Arc<WorkloadIdentity>` by connectors and acceptors; they read the current
/// material on every handshake.
pub struct WorkloadIdentity {
    state: ArcSwap<IdentityState>,
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.load();
        f.debug_struct("WorkloadIdentity")
            .field("spiffe_id", &s.spiffe_id)
            .field("serial", &hex(&s.serial))
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// Builds an identity from PEM: the certificate chain (leaf first), its private key
    /// (PKCS#8, SEC1 or PKCS#1) and the trust bundle (one or more roots).
    pub fn from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        trust_bundle_pem: &[u8],
    ) -> Result<Arc<Self>, TlsError> {
        let state = build_state(cert_chain_pem, key_pem, trust_bundle_pem)?;
        Ok(Arc::new(Self {
            state: ArcSwap::from_pointee(state),
        }))
    }

    /// Builds an identity from the three files gRPC's `file_watcher` provider reads
    /// (`cert.pem`, `key.pem`, `ca.pem`, as `mesh-control-plane issue` writes them).
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<Self>, TlsError> {
        let (c, k, a) = (read(cert)?, read(key)?, read(ca)?);
        Self::from_pem(&c, &k, &a)
    }

    /// Replaces certificate, key and trust bundle for all handshakes from now on. Established
    /// connections keep what they negotiated. On error the current material stays.
    pub fn rotate_pem(
        &self,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        trust_bundle_pem: &[u8],
    ) -> Result<(), TlsError> {
        let state = build_state(cert_chain_pem, key_pem, trust_bundle_pem)?;
        tracing::info!(spiffe_id = %state.spiffe_id, serial = %hex(&state.serial), "rotated workload identity");
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Like [`WorkloadIdentity::rotate_pem`], but refuses material for another SPIFFE ID than
    /// the current one (a renewal must not change who the workload is).
    pub fn renew_pem(
        &self,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        trust_bundle_pem: &[u8],
    ) -> Result<(), TlsError> {
        let state = build_state(cert_chain_pem, key_pem, trust_bundle_pem)?;
        let current = self.state.load();
        if state.spiffe_id != current.spiffe_id {
            return Err(invalid(
                "cert",
                format!(
                    "renewed certificate is for {}, not {}",
                    state.spiffe_id, current.spiffe_id
                ),
            ));
        }
        tracing::info!(spiffe_id = %state.spiffe_id, serial = %hex(&state.serial), "renewed workload identity");
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// [`WorkloadIdentity::rotate_pem`] from files.
    pub fn rotate_files(&self, cert: &Path, key: &Path, ca: &Path) -> Result<(), TlsError> {
        let (c, k, a) = (read(cert)?, read(key)?, read(ca)?);
        self.rotate_pem(&c, &k, &a)
    }

    /// This workload's SPIFFE ID.
    pub fn spiffe_id(&self) -> String {
        self.state.load().spiffe_id.clone()
    }

    /// The serial number of the current certificate, big-endian.
    pub fn serial(&self) -> Vec<u8> {
        self.state.load().serial.clone()
    }

    /// When the current certificate expires (renew before this).
    pub fn not_after(&self) -> SystemTime {
        self.state.load().not_after
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<IdentityState>> {
        self.state.load()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::InvalidIdentity {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn invalid(what: &str, reason: impl fmt::Display) -> TlsError {
    TlsError::InvalidIdentity {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

fn build_state(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    trust_bundle_pem: &[u8],
) -> Result<IdentityState, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("cert", e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("cert", "no CERTIFICATE block"))?;
    let info = parse_leaf(leaf).map_err(|e| invalid("cert", e))?;
    // The pem error never includes key bytes; keep it that way by not echoing input.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("key", e))?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| invalid("key", e))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust_bundle_pem) {
        let cert = cert.map_err(|e| invalid("trust bundle", e))?;
        roots.add(cert).map_err(|e| invalid("trust bundle", e))?;
    }
    if roots.is_empty() {
        return Err(invalid("trust bundle", "no CERTIFICATE block"));
    }
    let roots = Arc::new(roots);
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
        .build()
        .map_err(|e| invalid("trust bundle", e))?;
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Ok(IdentityState {
        generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        certified: Arc::new(certified),
        roots,
        client_verifier,
        spiffe_id: info.spiffe_id,
        serial: info.serial,
        not_after: info.not_after,
    })
}

/// A key pair generated in this workload plus its CSR; the private key never leaves it.
///
/// Send [`CertificateRequest::csr_pem`] to the CA, then turn the signed chain into an identity
/// with [`CertificateRequest::into_identity`] or rotate an existing one with
/// [`CertificateRequest::rotate`].
pub struct CertificateRequest {
    key: rcgen::KeyPair,
    csr_pem: String,
}

impl fmt::Debug for CertificateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateRequest")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl CertificateRequest {
    /// Generates an ECDSA P-256 key pair and a CSR for it. The CSR names no identity: the CA
    /// decides it from how the caller authenticated.
    pub fn generate() -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate().map_err(|e| invalid("key", e))?;
        let csr_pem = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| invalid("csr", e))?;
        Ok(Self { key, csr_pem })
    }

    /// The PKCS#10 CSR to send to the CA (public material only).
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// Combines the signed chain and the trust bundle the CA returned with the local key.
    pub fn into_identity(
        self,
        cert_chain_pem: &str,
        trust_bundle_pem: &str,
    ) -> Result<Arc<WorkloadIdentity>, TlsError> {
        let key = self.key.serialize_pem();
        WorkloadIdentity::from_pem(
            cert_chain_pem.as_bytes(),
            key.as_bytes(),
            trust_bundle_pem.as_bytes(),
        )
    }

    /// Renews `identity` with the signed chain and trust bundle and this request's key, refusing
    /// a chain for another identity ([`WorkloadIdentity::renew_pem`]).
    pub fn renew(
        self,
        identity: &WorkloadIdentity,
        cert_chain_pem: &str,
        trust_bundle_pem: &str,
    ) -> Result<(), TlsError> {
        let key = self.key.serialize_pem();
        identity.renew_pem(
            cert_chain_pem.as_bytes(),
            key.as_bytes(),
            trust_bundle_pem.as_bytes(),
        )
    }

    /// Rotates `identity` to the signed chain and trust bundle, with this request's key.
    pub fn rotate(
        self,
        identity: &WorkloadIdentity,
        cert_chain_pem: &str,
        trust_bundle_pem: &str,
    ) -> Result<(), TlsError> {
        let key = self.key.serialize_pem();
        identity.rotate_pem(
            cert_chain_pem.as_bytes(),
            key.as_bytes(),
            trust_bundle_pem.as_bytes(),
        )
    }
}

/// Splits a CA's answer — leaf first, then intermediates, then one or more roots, PEM, as
/// Istio's `CreateCertificate` returns them — into the chain to present and the trust bundle.
/// The roots are the trailing self-issued certificates (subject = issuer), so a bundle holding
/// two roots during a root rotation is kept whole. Errors when there is no leaf or no root.
pub fn split_chain_and_roots<S: AsRef<str>>(certs: &[S]) -> Result<(String, String), TlsError> {
    let self_issued = |pem: &str| -> Result<bool, TlsError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| invalid("cert", format!("not pem: {e}")))?;
        let cert = block.parse_x509().map_err(|e| invalid("cert", e))?;
        Ok(cert.subject().as_raw() == cert.issuer().as_raw())
    };
    let mut roots_from = certs.len();
    while roots_from > 1 && self_issued(certs[roots_from - 1].as_ref())? {
        roots_from -= 1;
    }
    if roots_from == certs.len() {
        return Err(invalid(
            "cert",
            format!(
                "{} certificate(s) and no self-signed root after the leaf",
                certs.len()
            ),
        ));
    }
    let join = |part: &[S]| {
        part.iter()
            .map(|c| {
                let c = c.as_ref();
                if c.ends_with('\n') {
                    c.to_owned()
                } else {
                    format!("{c}\n")
                }
            })
            .collect::<String>()
    };
    Ok((join(&certs[..roots_from]), join(&certs[roots_from..])))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a verified leaf's SPIFFE ID against `allowed` (Envoy `match_subject_alt_names`: any
/// entry matches; empty ⇒ any identity of `own_trust_domain`).
pub(crate) fn check_peer_id(
    end_entity: &CertificateDer<'_>,
    allowed: &[String],
    own_trust_domain: &str,
) -> Result<(), rustls::Error> {
    let expected = || {
        if allowed.is_empty() {
            format!("any identity in trust domain {own_trust_domain}")
        } else {
            format!("one of [{}]", allowed.join(", "))
        }
    };
    let id = match parse_leaf(end_entity) {
        Ok(info) => info.spiffe_id,
        Err(e) => {
            return Err(VerifyFailure::SanMismatch {
                expected: expected(),
                got: format!("no spiffe id ({e})"),
            }
            .into_rustls())
        }
    };
    let ok = if allowed.is_empty() {
        trust_domain(&id) == own_trust_domain
    } else {
        allowed.contains(&id)
    };
    if ok {
        Ok(())
    } else {
        Err(VerifyFailure::SanMismatch {
            expected: expected(),
            got: id,
        }
        .into_rustls())
    }
}

/// Handshake-signature checks shared by the client and server certificate verifiers: both use
/// the provider's algorithms unchanged; only the chain and SPIFFE checks differ.
pub(crate) mod signatures {
    use rustls::{
        client::danger::HandshakeSignatureValid, crypto::CryptoProvider, pki_types::CertificateDer,
        DigitallySignedStruct, SignatureScheme,
    };

    pub(crate) fn tls12(
        provider: &CryptoProvider,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider.signature_verification_algorithms,
        )
    }

    pub(crate) fn tls13(
        provider: &CryptoProvider,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider.signature_verification_algorithms,
        )
    }

    pub(crate) fn schemes(provider: &CryptoProvider) -> Vec<SignatureScheme> {
        provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
