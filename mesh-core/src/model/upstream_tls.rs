//! How a cluster's connections are made: plaintext or TLS, from CDS `Cluster.transport_socket`
//! (Envoy `UpstreamTlsContext`, gRFC A29; XDS-SEMANTICS.md row 30).
//!
//! The identity and the roots come from **certificate provider instances** (gRFC A29), named
//! by the context and supplied by the client — the form istiod's proxyless generator emits for
//! DestinationRule `ISTIO_MUTUAL` (instance `default`, certificate names `default` and
//! `ROOTCA`). What the mesh cannot honour but Envoy accepts (SDS secrets, inline certificates,
//! per-endpoint `transport_socket_matches`, other transport sockets) is kept as
//! [`UpstreamTransport::Unsupported`]: the cluster is accepted and every request to it fails
//! with a `tls` error naming the field — never a silent fall back to plaintext (see
//! [`super::convert`] for why this is not a NACK).

use std::sync::Arc;

use super::{ModelError, StringMatcher};

/// How connections to a cluster's endpoints are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UpstreamTransport {
    /// No transport socket, or `raw_buffer`: plaintext TCP.
    #[default]
    Plaintext,
    /// `envoy.transport_sockets.tls` with an `UpstreamTlsContext` the mesh implements.
    Tls(Arc<UpstreamTls>),
    /// A transport the mesh does not implement (valid for Envoy): the cluster's requests fail
    /// with this error instead of connecting without the security it asks for.
    Unsupported(Arc<ModelError>),
}

impl UpstreamTransport {
    /// The TLS settings, when the transport is TLS.
    pub fn tls(&self) -> Option<&Arc<UpstreamTls>> {
        match self {
            UpstreamTransport::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// Whether connections are plaintext.
    pub fn is_plaintext(&self) -> bool {
        matches!(self, UpstreamTransport::Plaintext)
    }
}

/// A validated `UpstreamTlsContext`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// `sni`: the server name sent in the handshake; `None` sends none (Envoy and gRPC: no SNI
    /// unless configured).
    pub sni: Option<Arc<str>>,
    /// `common_tls_context.alpn_protocols` as configured. Informational: the mesh's HTTP/2
    /// client offers `h2` and its HTTP/1 client `http/1.1`, as Envoy's HTTP connection pools
    /// set ALPN from the codec they run.
    pub alpn_protocols: Arc<[Arc<str>]>,
    /// Where the client certificate and key come from (`tls_certificate_provider_instance`, or
    /// the deprecated `tls_certificate_certificate_provider_instance`); `None`: no client
    /// certificate (Istio SIMPLE).
    pub identity: Option<CertificateProviderInstance>,
    /// Where the trust roots come from (`ca_certificate_provider_instance` of the validation
    /// context, or the deprecated `validation_context_certificate_provider_instance`).
    pub roots: CertificateProviderInstance,
    /// `match_subject_alt_names`: the server's certificate must carry a SAN (URI, DNS, email or
    /// IP) matching one of them; empty accepts any certificate that chains to the roots
    /// (Envoy, gRFC A29).
    pub match_subject_alt_names: Arc<[StringMatcher]>,
}

/// A certificate provider instance named by a TLS context (Envoy
/// `CertificateProviderPluginInstance`, gRFC A29): the client maps `instance_name` to what it
/// holds (a bootstrap `certificate_providers` entry; in this mesh a workload identity).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertificateProviderInstance {
    /// `instance_name` (empty on the wire means `default`).
    pub instance_name: Arc<str>,
    /// `certificate_name` (istiod: `default` for the identity, `ROOTCA` for the roots). Not
    /// interpreted: one instance provides one identity and one trust bundle.
    pub certificate_name: Arc<str>,
}

impl CertificateProviderInstance {
    /// The instance name istiod's proxyless generator uses.
    pub const DEFAULT: &'static str = "default";

    /// An instance reference, `instance_name` empty meaning `default`.
    pub fn new(instance_name: &str, certificate_name: &str) -> Self {
        let instance_name = if instance_name.is_empty() {
            Self::DEFAULT
        } else {
            instance_name
        };
        CertificateProviderInstance {
            instance_name: instance_name.into(),
            certificate_name: certificate_name.into(),
        }
    }
}
