//! Typed TLS failures naming the peer and the reason.

use std::io;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};

/// Why a TLS connection or identity could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate, key or trust bundle PEM is unusable.
    #[error("invalid identity material ({what}): {reason}")]
    InvalidIdentity {
        /// Which input: `cert`, `key`, `trust bundle`, a file path.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The peer's chain does not lead to a root in our trust bundle.
    #[error("{peer}: certificate signed by an unknown ca")]
    UnknownCa {
        /// The peer (address or server name).
        peer: String,
    },
    /// The peer's SPIFFE ID is not one we accept (Envoy `match_subject_alt_names`).
    #[error("{peer}: spiffe id mismatch: expected {expected}, got {got}")]
    SanMismatch {
        /// The peer (address or server name).
        peer: String,
        /// What was acceptable (a list, or "any in trust domain T").
        expected: String,
        /// The URI SAN the peer presented (or a note that it had none).
        got: String,
    },
    /// The peer's certificate is outside its validity window.
    #[error("{peer}: certificate expired or not yet valid")]
    Expired {
        /// The peer (address or server name).
        peer: String,
    },
    /// A client connected to a STRICT (or PERMISSIVE, over TLS) server without a certificate.
    #[error("{peer}: no client certificate presented")]
    NoClientCert {
        /// The client's address.
        peer: String,
    },
    /// The peer sent TLS alert: it refused our certificate or the handshake.
    #[error("{peer}: peer refused the handshake: {alert}")]
    PeerRefused {
        /// The peer (address or server name).
        peer: String,
        /// The TLS alert the peer sent, e.g. `UnknownCA`, `CertificateExpired`.
        alert: String,
    },
    /// A plaintext client reached a port that requires TLS, or the bytes were not TLS.
    #[error("{peer}: not a tls connection: {reason}")]
    NotTls {
        /// The client's address.
        peer: String,
        /// What was seen.
        reason: String,
    },
    /// Any other certificate problem (bad encoding, wrong key usage, ...).
    #[error("{peer}: bad certificate: {reason}")]
    BadCertificate {
        /// The peer (address or server name).
        peer: String,
        /// What rustls / webpki reported.
        reason: String,
    },
    /// The handshake failed for a reason other than the peer's certificate.
    #[error("{peer}: tls handshake failed: {source}")]
    Handshake {
        /// The peer (address or server name).
        peer: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// TCP connect failed or the target URI had no host.
    #[error("{peer}: connect failed: {source}")]
    Connect {
        /// The target.
        peer: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A TLS context names a certificate provider instance the mesh was not given (gRFC A29).
    #[error("certificate provider instance `{instance}` was not given to the mesh")]
    MissingProvider {
        /// The instance name, e.g. `default`.
        instance: String,
    },
    /// The handshake (or the first bytes in PERMISSIVE) did not arrive in time.
    #[error("{peer}: tls handshake timed out")]
    Timeout {
        /// The peer.
        peer: String,
    },
}

/// The reason our own verifier rejected a peer, carried through rustls as an `OtherError`
/// and turned into a [`TlsError`] once the peer's name is known.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyFailure {
    #[error("spiffe id mismatch: expected {expected}, got {got}")]
    SanMismatch { expected: String, got: String },
}

impl TlsError {
    /// The reason a client reports for this failure in a `tls` mesh error; `None` for a TCP
    /// connect failure or a timeout (reported as `connect`).
    pub fn reason(&self) -> Option<crate::TlsReason> {
        use crate::TlsReason as R;
        Some(match self {
            TlsError::UnknownCa { .. } => R::UnknownCa,
            TlsError::SanMismatch { .. } => R::SanMismatch,
            TlsError::Expired { .. } => R::Expired,
            TlsError::PeerRefused { .. } | TlsError::NoClientCert { .. } => R::PeerRefused,
            TlsError::BadCertificate { .. } => R::BadCertificate,
            TlsError::Handshake { .. } | TlsError::NotTls { .. } => R::Handshake,
            TlsError::MissingProvider { .. } => R::MissingProvider,
            TlsError::InvalidIdentity { .. } => R::UnsupportedConfig,
            TlsError::Connect { .. } | TlsError::Timeout { .. } => return None,
        })
    }

    /// Classifies a failed handshake's I/O error for `peer`.
    pub(crate) fn from_handshake(peer: &str, err: io::Error) -> Self {
        let peer = peer.to_owned();
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return TlsError::Handshake { peer, source: err };
        };
        match tls {
            rustls::Error::InvalidCertificate(cert) => Self::from_cert_error(peer, cert),
            rustls::Error::NoCertificatesPresented => TlsError::NoClientCert { peer },
            rustls::Error::AlertReceived(alert) => TlsError::PeerRefused {
                peer,
                alert: alert_name(*alert),
            },
            _ => TlsError::Handshake { peer, source: err },
        }
    }

    pub(crate) fn from_cert_error(peer: String, cert: &CertificateError) -> Self {
        match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsError::UnknownCa { peer }
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsError::Expired { peer },
            CertificateError::Other(other) => {
                let inner: &(dyn std::error::Error + 'static) = &*other.0;
                match inner.downcast_ref::<VerifyFailure>() {
                    Some(VerifyFailure::SanMismatch { expected, got }) => TlsError::SanMismatch {
                        peer,
                        expected: expected.clone(),
                        got: got.clone(),
                    },
                    None => TlsError::BadCertificate {
                        peer,
                        reason: other.to_string(),
                    },
                }
            }
            other => TlsError::BadCertificate {
                peer,
                reason: format!("{other:?}"),
            },
        }
    }
}

impl VerifyFailure {
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            self,
        ))))
    }
}

fn alert_name(alert: AlertDescription) -> String {
    format!("{alert:?}")
}
