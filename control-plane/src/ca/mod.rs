//! Certificate authority: issues short-lived SPIFFE X.509 SVIDs to workloads.
//!
//! A root (ECDSA P-256, self-signed, 10 years) is created on first start and persisted to a
//! directory as `ca-cert.pem` / `ca-key.pem` (the file names of Istio's "plugged-in CA"), or
//! loaded from PEM files an operator provides. Each SVID follows the SPIFFE X.509-SVID spec
//! (§4, §5) the way istiod issues them: exactly one URI SAN
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, an empty subject, key usage
//! `digitalSignature`, extended key usage `serverAuth` + `clientAuth`, not a CA, a random
//! 128-bit serial, and a short lifetime ([`DEFAULT_TTL`], one hour, configurable).
//!
//! # Delivery: a CSR service, not SDS
//!
//! Istio delivers certificates to Envoy over SDS, and SDS's `Secret` carries the **private key**:
//! istio-agent generates it next to the proxy and hands it over a local socket. Proxyless, there
//! is no local agent, so SDS from the control plane would send keys over the network and make
//! the control plane hold every workload's key. We use the CSR path instead, as istio-agent
//! itself does towards istiod (`IstioCertificateService.CreateCertificate`):
//!
//! 1. the workload (our library) generates its key pair locally, and the key never leaves it;
//! 2. it sends a PKCS#10 CSR (public key + proof of possession) to the control plane;
//! 3. the control plane decides the identity from how the caller authenticated — never from the
//!    SANs the CSR asks for, which are ignored — and returns the signed SVID chain plus the
//!    trust bundle ([`Ca::sign_csr`] → [`IssuedSvid`]).
//!
//! Nothing secret crosses the wire, a compromised control-plane channel leaks no keys, and
//! rotation is the workload's own loop (new key, new CSR before expiry).
//!
//! Over the wire this is [`server`]: Istio's `IstioCertificateService/CreateCertificate` on its
//! own mTLS listener (`ControlPlaneBuilder::ca_server`, `--ca-listen`), authenticating the
//! caller by its **current SVID** and signing for exactly that identity; `mesh_grpc::identity`
//! is the workload's renewal loop. The first SVID comes from `mesh-control-plane issue` (files)
//! or [`Ca::issue`] in-process; bootstrap tokens (istiod's JWT path) are not implemented.
//! Non-Rust proxyless clients use `mesh-control-plane issue`, which writes the files gRPC's
//! `file_watcher` certificate provider reads (gRFC A29).
//!
//! Keys never appear in `Debug` output or logs: [`Ca`] and [`PrivateKeyPem`] redact them.

mod identity;
pub mod server;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

pub use identity::SpiffeId;

/// Default SVID lifetime: one hour, as istiod's default for workload certificates is short-lived.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Lifetime of a root created by [`Ca::generate`]: ten years (istiod's self-signed default).
pub const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Backdating of `not_before`, so a peer whose clock is slightly behind accepts a fresh SVID.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// File name of the CA private key inside a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Why the CA could not start or could not issue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A SPIFFE ID or one of its parts is malformed.
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// The requested identity is in another trust domain than the CA's.
    #[error("identity {identity} is outside trust domain {trust_domain}")]
    WrongTrustDomain {
        /// The requested identity.
        identity: SpiffeId,
        /// The CA's trust domain.
        trust_domain: String,
    },
    /// The CSR could not be parsed or its signature (proof of possession) is wrong.
    #[error("invalid csr: {0}")]
    InvalidCsr(rcgen::Error),
    /// The CA certificate or key could not be parsed, or they do not belong together.
    #[error("invalid ca material in {what}: {reason}")]
    InvalidCa {
        /// Which input (a file path or "pem").
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The validity window is empty or not representable.
    #[error("invalid validity window: {0}")]
    InvalidValidity(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(rcgen::Error),
    /// Reading or writing a CA file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A PEM-encoded private key. Its `Debug` is redacted; read it with [`PrivateKeyPem::expose`].
#[derive(Clone)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    /// The PEM text. Write it to a 0600 file or hand it to a TLS stack; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

/// A signed SVID as returned to a workload: no private key, only public material.
#[derive(Clone, Debug)]
pub struct IssuedSvid {
    /// The identity in the certificate's URI SAN.
    pub spiffe_id: SpiffeId,
    /// Leaf certificate followed by the intermediates up to (not including) the root, PEM.
    pub cert_chain_pem: String,
    /// The roots a peer should trust (`ca.pem`), PEM.
    pub trust_bundle_pem: String,
    /// The leaf's serial number, big-endian.
    pub serial: Vec<u8>,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

/// The mesh's certificate authority. Cheap to share behind an `Arc`; signing takes `&self`.
pub struct Ca {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    /// PEM of the signing certificate followed by its chain (empty for a self-signed root).
    chain_pem: String,
    trust_bundle_pem: String,
    default_ttl: Duration,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("default_ttl", &self.default_ttl)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new self-signed root for `trust_domain`, in memory only.
    pub fn generate(trust_domain: &str) -> Result<Self, CaError> {
        let (ca, _key) = Self::generate_with_key(trust_domain)?;
        Ok(ca)
    }

    fn generate_with_key(trust_domain: &str) -> Result<(Self, PrivateKeyPem), CaError> {
        // Validate the trust domain the same way identities are.
        SpiffeId::new(trust_domain, "x", "x")?;
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(DnType::CommonName, "mesh root ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = to_time(now - CLOCK_SKEW)?;
        params.not_after = to_time(now + ROOT_TTL)?;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(CaError::Sign)?;
        let key_pem = PrivateKeyPem(key.serialize_pem());
        let ca = Self {
            trust_domain: trust_domain.to_owned(),
            trust_bundle_pem: cert.pem(),
            chain_pem: String::new(),
            issuer: Issuer::new(params, key),
            default_ttl: DEFAULT_TTL,
        };
        Ok((ca, key_pem))
    }

    /// Loads the CA from `dir/ca-cert.pem` + `dir/ca-key.pem`, or creates a new root there on
    /// first start (directory created if missing, key written with mode 0600).
    pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() || key_path.exists() {
            return Self::from_files(&cert_path, &key_path, trust_domain);
        }
        let (ca, key_pem) = Self::generate_with_key(trust_domain)?;
        std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        write_private(&key_path, key_pem.expose())?;
        std::fs::write(&cert_path, &ca.trust_bundle_pem).map_err(|source| CaError::Io {
            path: cert_path.clone(),
            source,
        })?;
        tracing::info!(dir = %dir.display(), trust_domain, "created a new root ca");
        Ok(ca)
    }

    /// Loads the CA from PEM files. `cert` holds the signing certificate first, then (for an
    /// intermediate CA) its chain up to the root; the last certificate is the trust bundle.
    pub fn from_files(cert: &Path, key: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CaError::Io {
                path: p.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert)?, &read(key)?, trust_domain).map_err(|e| match e {
            CaError::InvalidCa { reason, .. } => CaError::InvalidCa {
                what: format!("{} / {}", cert.display(), key.display()),
                reason,
            },
            other => other,
        })
    }

    /// Loads the CA from PEM text; see [`Ca::from_files`] for the certificate order.
    pub fn from_pem(cert_pem: &str, key_pem: &str, trust_domain: &str) -> Result<Self, CaError> {
        SpiffeId::new(trust_domain, "x", "x")?;
        let invalid = |reason: String| CaError::InvalidCa {
            what: "pem".into(),
            reason,
        };
        let certs = pem_blocks(cert_pem, "CERTIFICATE");
        let Some(first) = certs.first() else {
            return Err(invalid("no CERTIFICATE block".into()));
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid(format!("private key: {e}")))?;
        check_key_matches(first, &key).map_err(invalid)?;
        let issuer = Issuer::from_ca_cert_pem(first, key)
            .map_err(|e| invalid(format!("certificate: {e}")))?;
        let trust_bundle_pem = certs.last().cloned().unwrap_or_default();
        let chain_pem = if certs.len() > 1 {
            certs[..certs.len() - 1].concat()
        } else {
            String::new()
        };
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            issuer,
            chain_pem,
            trust_bundle_pem,
            default_ttl: DEFAULT_TTL,
        })
    }

    /// Sets the lifetime used when [`Ca::sign_csr`] is given `None`.
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The lifetime used when none is given.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// The root certificate(s) peers should trust, PEM.
    pub fn trust_bundle_pem(&self) -> &str {
        &self.trust_bundle_pem
    }

    /// Signs a PKCS#10 CSR (PEM) for `identity`, valid from now (backdated a minute for clock
    /// skew) for `ttl` (`None`: the default TTL). The CSR's own subject and SANs are ignored: the
    /// identity is what the caller authenticated, never what the workload asks for. The CSR's
    /// signature is checked (proof that the requester holds the private key).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<IssuedSvid, CaError> {
        let now = SystemTime::now();
        let ttl = ttl.unwrap_or(self.default_ttl);
        self.sign_csr_with_validity(csr_pem, identity, now - CLOCK_SKEW, now + ttl)
    }

    /// Like [`Ca::sign_csr`] with an explicit validity window (tests use a past window to make
    /// an expired SVID).
    pub fn sign_csr_with_validity(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedSvid, CaError> {
        if identity.trust_domain() != self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                identity: identity.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        if not_after <= not_before {
            return Err(CaError::InvalidValidity(
                "not_after is not after not_before".into(),
            ));
        }
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::InvalidCsr)?;
        let serial = random_serial();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = identity
            .as_str()
            .try_into()
            .map_err(|_| CaError::InvalidIdentity(format!("{identity} is not an ia5 string")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        params.serial_number = Some(serial.clone());
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = signed.signed_by(&self.issuer).map_err(CaError::Sign)?;
        tracing::debug!(identity = %identity, serial = %hex(&serial.to_bytes()), "issued svid");
        Ok(IssuedSvid {
            spiffe_id: identity.clone(),
            cert_chain_pem: format!("{}{}", cert.pem(), self.chain_pem),
            trust_bundle_pem: self.trust_bundle_pem.clone(),
            serial: serial.to_bytes(),
            not_after,
        })
    }

    /// Issues an SVID with a freshly generated key, for callers that are themselves the
    /// workload side (the `issue` subcommand writing files for a gRPC `file_watcher` provider).
    /// The key is generated here, put in a CSR and signed like any other request.
    pub fn issue(
        &self,
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<(IssuedSvid, PrivateKeyPem), CaError> {
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(CaError::Sign)?;
        let svid = self.sign_csr(&csr, identity, ttl)?;
        Ok((svid, PrivateKeyPem(key.serialize_pem())))
    }
}

/// Writes `contents` to `path` readable by the owner only (0600 on Unix), replacing it.
pub fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path).map_err(io)?;
        // An existing file keeps its old mode through open(): tighten it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)
    }
    #[cfg(not(unix))]
    {
        opts.open(path)
            .map_err(io)?
            .write_all(contents.as_bytes())
            .map_err(io)
    }
}

fn check_key_matches(cert_pem: &str, key: &KeyPair) -> Result<(), String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("certificate is not valid pem: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| format!("certificate: {e}"))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err("private key does not match the certificate".into());
    }
    Ok(())
}

/// Splits PEM text into its blocks of the given label, each re-emitted as PEM text.
fn pem_blocks(text: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let Some(stop) = rest[start..].find(&end) else {
            break;
        };
        let stop = start + stop + end.len();
        out.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    out
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte, so the encoded length is stable
    SerialNumber::from_slice(&bytes)
}

fn to_time(t: SystemTime) -> Result<OffsetDateTime, CaError> {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| CaError::InvalidValidity(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
