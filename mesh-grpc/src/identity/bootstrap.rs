//! A workload's **first** SVID from a bootstrap token: the workload side of istiod's JWT path.
//!
//! istio-agent gets a pod's first certificate by calling `CreateCertificate` (istio/api
//! `security/v1alpha1/ca.proto`) over server-authenticated TLS with the pod's service-account
//! token as `authorization: Bearer` metadata; istiod's JWT authenticator decides the identity
//! from the token. [`IdentityBootstrap`] does the same against our control plane
//! (`mesh_control_plane::ca::token`):
//!
//! 1. generates the key pair and a CSR **here** ([`CertificateRequest`]); only the CSR is sent,
//!    so no private key ever leaves the workload — which `mesh-control-plane issue` (the
//!    control plane generates the key and writes it to files) cannot promise;
//! 2. connects with TLS that authenticates the server only: its chain must lead to the trust
//!    bundle the operator handed over with the token (`ca-cert.pem`), and its SPIFFE ID must be
//!    the pinned control-plane identity, as [`CertificateRenewer`] pins it; the workload
//!    presents no certificate (it has none yet);
//! 3. sends the CSR with the token and builds a [`WorkloadIdentity`] from the returned chain
//!    (leaf first, root last) and the local key.
//!
//! From then on the identity is renewed over mTLS by [`CertificateRenewer`]
//! ([`IdentityBootstrap::renewer`]); the token is not needed again. Tokens are single-use on
//! the control plane, so a failed attempt after the CA signed needs a fresh token.
//!
//! The token is a secret: [`BootstrapToken`] has a redacted `Debug` and no `Display`, and it is
//! sent as a sensitive header (HPACK never-indexed).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mesh_tower::tls::{
    split_chain_and_roots, CertificateRequest, MeshTlsConnector, TlsError, WorkloadIdentity,
};
use tonic::transport::Endpoint;

use super::{error_chain, CertificateRenewer};

/// A bootstrap token as handed to the workload. `Debug` is redacted; there is no `Display`.
#[derive(Clone)]
pub struct BootstrapToken(String);

impl BootstrapToken {
    /// Wraps a token (surrounding whitespace trimmed). It must be a non-empty run of visible
    /// ASCII, since it travels in an HTTP/2 header.
    pub fn new(token: impl Into<String>) -> Result<Self, BootstrapError> {
        let token = token.into();
        let trimmed = token.trim();
        if trimmed.is_empty() {
            return Err(BootstrapError::InvalidToken("token is empty".into()));
        }
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BootstrapError::InvalidToken(
                "token has characters outside visible ascii".into(),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Reads a token from a file (as `mesh-control-plane token --out` writes it).
    pub fn from_file(path: &Path) -> Result<Self, BootstrapError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            BootstrapError::InvalidToken(format!("reading {}: {e}", path.display()))
        })?;
        Self::new(text)
    }

    /// The token text, for the `authorization` header only; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BootstrapToken(<redacted>)")
    }
}

/// Why bootstrapping the first SVID failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The token is unusable before it is even sent.
    #[error("bootstrap token: {0}")]
    InvalidToken(String),
    /// The trust bundle or pinned identity cannot make a TLS configuration.
    #[error("bootstrap tls setup: {0}")]
    Tls(TlsError),
    /// The CA could not be reached, or the TLS handshake with it failed (e.g. it is not the
    /// pinned identity or not under the trust bundle).
    #[error("connect to ca {ca}: {reason}")]
    Connect {
        /// The CA address.
        ca: String,
        /// The transport error and its causes.
        reason: String,
    },
    /// The CA answered with an error status naming why (e.g. `UNAUTHENTICATED`: expired).
    #[error("ca {ca} refused: {code:?}: {message}")]
    Refused {
        /// The CA address.
        ca: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The CA's answer is not a usable chain.
    #[error("ca {ca} answered with a bad chain: {reason}")]
    BadResponse {
        /// The CA address.
        ca: String,
        /// What is wrong.
        reason: String,
    },
    /// The issued certificate is for another identity than the one expected.
    #[error("ca issued {got}, expected {expected}")]
    IdentityMismatch {
        /// The expected SPIFFE ID.
        expected: String,
        /// The SPIFFE ID in the issued certificate.
        got: String,
    },
    /// Generating the key/CSR or building the identity failed.
    #[error("bootstrap: {0}")]
    Identity(TlsError),
    /// The attempt took longer than the configured timeout.
    #[error("ca {ca}: no answer within {timeout:?}")]
    Timeout {
        /// The CA address.
        ca: String,
        /// The bound.
        timeout: Duration,
    },
}

/// Gets a workload's first SVID from the control plane's CA with a bootstrap token; see the
/// module docs.
#[derive(Clone)]
pub struct IdentityBootstrap {
    ca_addr: String,
    ca_identity: String,
    trust_bundle_pem: Vec<u8>,
    token: BootstrapToken,
    expected_identity: Option<String>,
    requested_ttl: Option<Duration>,
    timeout: Duration,
}

impl fmt::Debug for IdentityBootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityBootstrap")
            .field("ca_addr", &self.ca_addr)
            .field("ca_identity", &self.ca_identity)
            .field("token", &self.token)
            .field("expected_identity", &self.expected_identity)
            .finish_non_exhaustive()
    }
}

impl IdentityBootstrap {
    /// Bootstraps from the CA at `ca_addr` (`host:port`), which must present `ca_identity`
    /// (e.g. `spiffe://cluster.local/ns/istio-system/sa/mesh-control-plane`) under
    /// `trust_bundle_pem` (the CA's `ca-cert.pem`), with `token`.
    pub fn new(
        ca_addr: impl Into<String>,
        ca_identity: impl Into<String>,
        trust_bundle_pem: impl Into<Vec<u8>>,
        token: BootstrapToken,
    ) -> Self {
        Self {
            ca_addr: ca_addr.into(),
            ca_identity: ca_identity.into(),
            trust_bundle_pem: trust_bundle_pem.into(),
            token,
            expected_identity: None,
            requested_ttl: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// [`IdentityBootstrap::new`] with the trust bundle and the token read from files.
    pub fn from_files(
        ca_addr: impl Into<String>,
        ca_identity: impl Into<String>,
        trust_bundle: impl AsRef<Path>,
        token: impl AsRef<Path>,
    ) -> Result<Self, BootstrapError> {
        let (trust_bundle, token) = (trust_bundle.as_ref(), token.as_ref());
        let bundle = std::fs::read(trust_bundle).map_err(|e| {
            BootstrapError::Tls(TlsError::InvalidIdentity {
                what: trust_bundle.display().to_string(),
                reason: e.to_string(),
            })
        })?;
        Ok(Self::new(
            ca_addr,
            ca_identity,
            bundle,
            BootstrapToken::from_file(token)?,
        ))
    }

    /// Refuses the result unless the CA issued exactly this SPIFFE ID (a token minted for
    /// another workload is caught here rather than at the first peer).
    pub fn expect_identity(mut self, spiffe_id: impl Into<String>) -> Self {
        self.expected_identity = Some(spiffe_id.into());
        self
    }

    /// Asks the CA for this lifetime (it caps it at its default); unset: the CA's default.
    pub fn requested_ttl(mut self, ttl: Duration) -> Self {
        self.requested_ttl = Some(ttl);
        self
    }

    /// Bound on the attempt (connect, handshake, call); default 10 s.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A renewer for an identity this bootstrap produced, against the same CA and pinned
    /// control-plane identity (mTLS with the identity from then on).
    pub fn renewer(&self, identity: Arc<WorkloadIdentity>) -> CertificateRenewer {
        CertificateRenewer::new(identity, self.ca_addr.clone(), self.ca_identity.clone())
    }

    /// Generates the key and CSR locally, calls `CreateCertificate` with the token, and
    /// returns the new identity. One attempt: a token is single-use, so retrying is the
    /// caller's decision.
    pub async fn run(&self) -> Result<Arc<WorkloadIdentity>, BootstrapError> {
        match tokio::time::timeout(self.timeout, self.attempt()).await {
            Ok(r) => r,
            Err(_) => Err(BootstrapError::Timeout {
                ca: self.ca_addr.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn attempt(&self) -> Result<Arc<WorkloadIdentity>, BootstrapError> {
        let ca = || self.ca_addr.clone();
        let connector = MeshTlsConnector::server_authenticated(
            &self.trust_bundle_pem,
            vec![self.ca_identity.clone()],
        )
        .map_err(BootstrapError::Tls)?
        .with_timeout(self.timeout);
        let request = CertificateRequest::generate().map_err(BootstrapError::Identity)?;
        let connect = |e: &dyn std::error::Error| BootstrapError::Connect {
            ca: ca(),
            reason: error_chain(e),
        };
        let channel = Endpoint::from_shared(format!("http://{}", self.ca_addr))
            .map_err(|e| connect(&e))?
            .connect_with_connector(connector)
            .await
            .map_err(|e| connect(&e))?;
        let chain = super::create_certificate_with_token(
            channel,
            request.csr_pem(),
            self.requested_ttl,
            &self.token,
        )
        .await
        .map_err(|s| BootstrapError::Refused {
            ca: ca(),
            code: s.code(),
            message: s.message().to_owned(),
        })?;
        // Leaf and intermediates, then the roots: one, or several during a root rotation
        // (the CA's `root-cert.pem`); every trailing self-signed certificate is kept.
        let (chain_pem, roots_pem) =
            split_chain_and_roots(&chain).map_err(|e| BootstrapError::BadResponse {
                ca: ca(),
                reason: format!(
                    "{} certificate(s); expected the leaf, any intermediates, then the roots: {e}",
                    chain.len()
                ),
            })?;
        let identity = request
            .into_identity(&chain_pem, &roots_pem)
            .map_err(BootstrapError::Identity)?;
        if let Some(expected) = &self.expected_identity {
            let got = identity.spiffe_id();
            if &got != expected {
                return Err(BootstrapError::IdentityMismatch {
                    expected: expected.clone(),
                    got,
                });
            }
        }
        tracing::info!(
            spiffe_id = %identity.spiffe_id(),
            serial = %hex(&identity.serial()),
            ca = %self.ca_addr,
            "bootstrapped workload identity"
        );
        Ok(identity)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_validated_and_redacted() {
        let t = BootstrapToken::new("  eyJhbGciOi.eyJzdWIi.c2ln \n").unwrap();
        assert_eq!(t.expose(), "eyJhbGciOi.eyJzdWIi.c2ln");
        assert_eq!(format!("{t:?}"), "BootstrapToken(<redacted>)");
        for bad in ["", "   ", "a b", "tok\u{e9}n", "a\nb"] {
            assert!(
                matches!(
                    BootstrapToken::new(bad),
                    Err(BootstrapError::InvalidToken(_))
                ),
                "{bad:?}"
            );
        }
        let b = IdentityBootstrap::new("127.0.0.1:1", "spiffe://td/ns/a/sa/b", "x", t);
        let printed = format!("{b:?} {b:#?}");
        assert!(!printed.contains("eyJ"), "{printed}");
    }

    #[tokio::test]
    async fn an_unusable_trust_bundle_is_a_typed_error() {
        let t = BootstrapToken::new("a.b.c").unwrap();
        let err = IdentityBootstrap::new("127.0.0.1:1", "spiffe://td/ns/a/sa/b", "no pem", t)
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, BootstrapError::Tls(_)), "{err}");
        assert!(err.to_string().contains("trust bundle"), "{err}");
    }
}
