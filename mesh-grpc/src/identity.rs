//! Automatic SVID renewal against the control plane's CA: the workload side of Istio's
//! `istio.v1.auth.IstioCertificateService/CreateCertificate` (istio/api
//! `security/v1alpha1/ca.proto`), as istio-agent runs it towards istiod.
//!
//! [`CertificateRenewer`] keeps one [`WorkloadIdentity`] fresh:
//!
//! 1. at a fraction of the current certificate's remaining lifetime (default
//!    [`DEFAULT_RENEW_FRACTION`], Istio's 50 %), it generates a **new** key pair and CSR in this
//!    process ([`CertificateRequest`]) — the key never leaves it;
//! 2. calls `CreateCertificate` over mTLS, presenting the current SVID (the CA signs for the
//!    identity that certificate proves, nothing else) and accepting only the CA's pinned SPIFFE
//!    ID; a fresh connection each time, without TLS resumption, so the current certificate is
//!    what authenticates;
//! 3. installs the returned chain (leaf first, roots last: every trailing self-signed
//!    certificate becomes the trust bundle, so a changed bundle — old and new root during a
//!    root rotation — is picked up whole) with [`CertificateRequest::renew`]. Connectors and
//!    acceptors built on the identity use it for new handshakes; established connections and
//!    in-flight calls are untouched.
//!
//! Each renewal comes up to [`DEFAULT_RENEW_JITTER`] (10 %, configurable) earlier at random, so
//! a fleet started together spreads its calls to the CA. Failures are retried with exponential backoff (1 s doubling to 30 s by default) until one
//! succeeds; the current certificate stays in use meanwhile. Istio measures the fraction from
//! `not_before`; we measure it from when the certificate was installed, because our CA backdates
//! `not_before` by a minute for clock skew, which would make short-lived SVIDs renew at once.
//!
//! A workload's **first** SVID comes from [`IdentityBootstrap`] (a bootstrap token over
//! server-authenticated TLS, the key generated here; see [`bootstrap`]); this module then keeps
//! it renewed.
//!
//! The request/response messages are declared here with prost (two fields each, the field
//! numbers of `ca.proto`) rather than generated, so this crate needs no build script; the
//! end-to-end tests run them against the control plane's generated server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_tower::tls::{
    split_chain_and_roots, CertificateRequest, MeshTlsConnector, TlsError, WorkloadIdentity,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

pub mod bootstrap;

pub use bootstrap::{BootstrapError, BootstrapToken, IdentityBootstrap};

/// Renew when this fraction of the remaining lifetime has passed (Istio's default, 50 %).
pub const DEFAULT_RENEW_FRACTION: f64 = 0.5;

/// Default jitter: each renewal comes up to 10 % earlier than the fraction says, at random, so
/// workloads started together do not all call the CA at the same instant.
pub const DEFAULT_RENEW_JITTER: f64 = 0.1;

/// The gRPC method path of Istio's certificate service.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// `istio.v1.auth.IstioCertificateRequest` (fields 1 and 3; 4, `metadata`, is not sent).
#[derive(Clone, PartialEq, prost::Message)]
struct IstioCertificateRequest {
    #[prost(string, tag = "1")]
    csr: String,
    #[prost(int64, tag = "3")]
    validity_duration: i64,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct IstioCertificateResponse {
    #[prost(string, repeated, tag = "1")]
    cert_chain: Vec<String>,
}

/// Calls `CreateCertificate` on `channel` with a PEM CSR and an optional requested lifetime
/// (whole seconds; the CA may cap it). Returns the PEM chain, leaf first and root last.
pub async fn create_certificate(
    channel: Channel,
    csr_pem: &str,
    validity: Option<Duration>,
) -> Result<Vec<String>, tonic::Status> {
    create_certificate_inner(channel, csr_pem, validity, None).await
}

/// [`create_certificate`] with a bootstrap token as `authorization: Bearer` metadata (sent as
/// a sensitive, never-indexed header), for a caller without a client certificate.
pub async fn create_certificate_with_token(
    channel: Channel,
    csr_pem: &str,
    validity: Option<Duration>,
    token: &BootstrapToken,
) -> Result<Vec<String>, tonic::Status> {
    create_certificate_inner(channel, csr_pem, validity, Some(token)).await
}

async fn create_certificate_inner(
    channel: Channel,
    csr_pem: &str,
    validity: Option<Duration>,
    token: Option<&BootstrapToken>,
) -> Result<Vec<String>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("ca channel not ready: {e}")))?;
    let request = IstioCertificateRequest {
        csr: csr_pem.to_owned(),
        validity_duration: validity.map_or(0, |d| d.as_secs().min(i64::MAX as u64) as i64),
    };
    let codec =
        tonic_prost::ProstCodec::<IstioCertificateRequest, IstioCertificateResponse>::default();
    let path = http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE_PATH);
    let mut request = tonic::Request::new(request);
    if let Some(token) = token {
        let mut value =
            tonic::metadata::MetadataValue::try_from(format!("Bearer {}", token.expose()))
                .map_err(|_| {
                    tonic::Status::invalid_argument("bootstrap token is not a header value")
                })?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
    }
    let response = grpc.unary(request, path, codec).await?;
    Ok(response.into_inner().cert_chain)
}

/// Why one renewal attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    /// The CA could not be reached, or the mTLS handshake with it failed.
    #[error("connect to ca {ca}: {reason}")]
    Connect {
        /// The CA address.
        ca: String,
        /// The transport error and its causes.
        reason: String,
    },
    /// The CA answered with an error status (e.g. `UNAUTHENTICATED` for an expired SVID).
    #[error("ca {ca} refused: {code:?}: {message}")]
    Refused {
        /// The CA address.
        ca: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message (the CA names why).
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
    /// Generating the key/CSR or installing the new certificate failed.
    #[error("renewal: {0}")]
    Identity(#[from] TlsError),
    /// The attempt took longer than the configured timeout.
    #[error("ca {ca}: no answer within {timeout:?}")]
    Timeout {
        /// The CA address.
        ca: String,
        /// The bound.
        timeout: Duration,
    },
}

/// Keeps a [`WorkloadIdentity`] renewed from the control plane's CA; see the module docs.
#[derive(Clone)]
pub struct CertificateRenewer {
    identity: Arc<WorkloadIdentity>,
    ca_addr: String,
    ca_identity: String,
    renew_fraction: f64,
    renew_jitter: f64,
    requested_ttl: Option<Duration>,
    backoff_initial: Duration,
    backoff_max: Duration,
    timeout: Duration,
}

impl fmt::Debug for CertificateRenewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `identity`'s own Debug redacts the key.
        f.debug_struct("CertificateRenewer")
            .field("identity", &self.identity)
            .field("ca_addr", &self.ca_addr)
            .field("ca_identity", &self.ca_identity)
            .field("renew_fraction", &self.renew_fraction)
            .finish_non_exhaustive()
    }
}

impl CertificateRenewer {
    /// Renews `identity` from the CA at `ca_addr` (`host:port`), which must present
    /// `ca_identity` (e.g. `spiffe://cluster.local/ns/istio-system/sa/mesh-control-plane`).
    pub fn new(
        identity: Arc<WorkloadIdentity>,
        ca_addr: impl Into<String>,
        ca_identity: impl Into<String>,
    ) -> Self {
        Self {
            identity,
            ca_addr: ca_addr.into(),
            ca_identity: ca_identity.into(),
            renew_fraction: DEFAULT_RENEW_FRACTION,
            renew_jitter: DEFAULT_RENEW_JITTER,
            requested_ttl: None,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }

    /// Renews when `fraction` (clamped to 0.05..=0.95) of the remaining lifetime has passed.
    pub fn renew_fraction(mut self, fraction: f64) -> Self {
        self.renew_fraction = if fraction.is_finite() {
            fraction.clamp(0.05, 0.95)
        } else {
            DEFAULT_RENEW_FRACTION
        };
        self
    }

    /// Renews up to `jitter` (clamped to 0..=0.5) of the delay earlier, at random; 0 turns the
    /// jitter off.
    pub fn renew_jitter(mut self, jitter: f64) -> Self {
        self.renew_jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 0.5)
        } else {
            DEFAULT_RENEW_JITTER
        };
        self
    }

    /// Asks the CA for this lifetime (it caps it at its default); unset: the CA's default.
    pub fn requested_ttl(mut self, ttl: Duration) -> Self {
        self.requested_ttl = Some(ttl);
        self
    }

    /// Backoff between failed attempts: `initial`, doubling up to `max`.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_initial);
        self
    }

    /// Bound on one attempt (connect, handshake, call); default 10 s.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The identity being renewed.
    pub fn identity(&self) -> &Arc<WorkloadIdentity> {
        &self.identity
    }

    /// One renewal now: new key and CSR, `CreateCertificate` over mTLS with the current SVID,
    /// the result installed into the identity.
    pub async fn renew_once(&self) -> Result<(), RenewError> {
        match tokio::time::timeout(self.timeout, self.attempt()).await {
            Ok(r) => r,
            Err(_) => Err(RenewError::Timeout {
                ca: self.ca_addr.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn attempt(&self) -> Result<(), RenewError> {
        let ca = || self.ca_addr.clone();
        let request = CertificateRequest::generate()?;
        let connector =
            MeshTlsConnector::new(self.identity.clone(), vec![self.ca_identity.clone()])
                .without_resumption()
                .with_timeout(self.timeout);
        let channel = Endpoint::from_shared(format!("http://{}", self.ca_addr))
            .map_err(|e| RenewError::Connect {
                ca: ca(),
                reason: error_chain(&e),
            })?
            .connect_with_connector(connector)
            .await
            .map_err(|e| RenewError::Connect {
                ca: ca(),
                reason: error_chain(&e),
            })?;
        let chain = create_certificate(channel, request.csr_pem(), self.requested_ttl)
            .await
            .map_err(|s| RenewError::Refused {
                ca: ca(),
                code: s.code(),
                message: s.message().to_owned(),
            })?;
        // Leaf and intermediates, then the roots: one, or several during a root rotation
        // (the CA's `root-cert.pem`); every trailing self-signed certificate is kept.
        let (chain_pem, roots_pem) =
            split_chain_and_roots(&chain).map_err(|e| RenewError::BadResponse {
                ca: ca(),
                reason: format!(
                    "{} certificate(s); expected the leaf, any intermediates, then the roots: {e}",
                    chain.len()
                ),
            })?;
        request.renew(&self.identity, &chain_pem, &roots_pem)?;
        Ok(())
    }

    /// Starts the renewal loop on the current runtime; it stops when the handle is dropped.
    pub fn spawn(self) -> RenewerHandle {
        let (tx, rx) = watch::channel(RenewalStatus::default());
        let task = tokio::spawn(self.run(tx));
        RenewerHandle { task, status: rx }
    }

    async fn run(self, status: watch::Sender<RenewalStatus>) {
        loop {
            let delay = renew_delay(remaining(self.identity.not_after()), self.renew_fraction)
                .mul_f64(1.0 - self.renew_jitter * rand::random::<f64>());
            tracing::debug!(spiffe_id = %self.identity.spiffe_id(), ?delay, "next svid renewal");
            tokio::time::sleep(delay).await;
            let mut backoff = self.backoff_initial;
            loop {
                match self.renew_once().await {
                    Ok(()) => {
                        status.send_modify(|s| {
                            s.renewals += 1;
                            s.last_error = None;
                        });
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "svid renewal failed");
                        status.send_modify(|s| {
                            s.failures += 1;
                            s.last_error = Some(e.to_string());
                        });
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.backoff_max);
                    }
                }
            }
        }
    }
}

/// Counters of a running renewer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenewalStatus {
    /// Successful renewals so far.
    pub renewals: u64,
    /// Failed attempts so far.
    pub failures: u64,
    /// The error of the last attempt, if it failed.
    pub last_error: Option<String>,
}

/// A running renewal loop; dropping it (or [`RenewerHandle::stop`]) stops the loop.
#[derive(Debug)]
pub struct RenewerHandle {
    task: JoinHandle<()>,
    status: watch::Receiver<RenewalStatus>,
}

impl RenewerHandle {
    /// The current counters.
    pub fn status(&self) -> RenewalStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes on every attempt.
    pub fn subscribe(&self) -> watch::Receiver<RenewalStatus> {
        self.status.clone()
    }

    /// Stops the loop.
    pub fn stop(self) {}
}

impl Drop for RenewerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Time left until `not_after` by the wall clock (zero if past).
fn remaining(not_after: SystemTime) -> Duration {
    not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

/// When to renew: `fraction` of the remaining lifetime.
fn renew_delay(remaining: Duration, fraction: f64) -> Duration {
    remaining.mul_f64(fraction)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
