//! `Cluster.transport_socket` → [`UpstreamTransport`] (Envoy `UpstreamTlsContext`,
//! `CommonTlsContext`, `CertificateValidationContext`; gRFC A29; XDS-SEMANTICS.md row 30).
//!
//! - No transport socket, or `RawBuffer`: plaintext. The socket is identified by its
//!   `typed_config` type, as Envoy does (gRPC also insists on the name
//!   `envoy.transport_sockets.tls`; istiod sets it). A socket without `typed_config` is read by
//!   its name (`envoy.transport_sockets.raw_buffer` / `raw_buffer`).
//! - `UpstreamTlsContext`: the identity from `tls_certificate_provider_instance` (else the
//!   deprecated `tls_certificate_certificate_provider_instance`, which istiod still sends; none
//!   ⇒ no client certificate), the roots from the validation context's
//!   `ca_certificate_provider_instance` (else the deprecated
//!   `validation_context_certificate_provider_instance`), `match_subject_alt_names`
//!   (StringMatchers: exact, prefix, suffix, contains, safe_regex), `sni`,
//!   `alpn_protocols`. `tls_params` is ignored (rustls offers TLS 1.2 and 1.3 with its safe
//!   suites only); `allow_renegotiation` too (rustls never renegotiates).
//!
//! **Invalid vs unsupported.** A context that breaks the API (bytes that do not decode, a bad
//! regex, an empty prefix) is rejected: the cluster is NACKed. A context Envoy would accept but
//! this mesh cannot honour — SDS secrets, inline `tls_certificates` / `trusted_ca`, no
//! validation context at all, SPKI/hash pinning, CRLs, custom validators,
//! `match_typed_subject_alt_names`, `auto_host_sni`, `auto_sni_san_validation`, a non-raw
//! `transport_socket_matches` entry, any other transport socket — becomes
//! [`UpstreamTransport::Unsupported`] with a [`ModelError`] naming the field: the cluster is
//! accepted and its requests fail with a `tls` error. This differs from gRPC, which NACKs these
//! (A29), on purpose: for HTTP the mesh follows Envoy, where such a cluster is valid and only
//! its connections fail (as when an SDS secret never arrives), and failing closed never lets an
//! older plaintext config keep serving a cluster that now asks for TLS.

// istiod and gRPC still use the deprecated certificate-provider-instance fields (A29).
#![allow(deprecated)]

use envoy_types::pb::envoy::config::cluster::v3::Cluster as ClusterProto;
use envoy_types::pb::envoy::config::core::v3::{transport_socket::ConfigType, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    certificate_validation_context::TrustChainVerification,
    common_tls_context::{CertificateProviderInstance as LegacyInstance, ValidationContextType},
    CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
    UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::Any;

use super::{decode_any, identify, matcher, Ctx, Path};
use crate::model::{
    CertificateProviderInstance, ModelError, StringMatcher, UpstreamTls, UpstreamTransport,
};

const UPSTREAM_TLS: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const RAW_BUFFER: &str = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
const RAW_BUFFER_NAMES: [&str; 2] = ["envoy.transport_sockets.raw_buffer", "raw_buffer"];

/// The cluster's transport. `Err` only for an invalid context (the cluster is NACKed).
pub(super) fn transport(
    cx: &Ctx<'_>,
    proto: &ClusterProto,
) -> Result<UpstreamTransport, ModelError> {
    let root = Path::root();
    let transport = match &proto.transport_socket {
        None => UpstreamTransport::Plaintext,
        Some(ts) => socket(cx, &root.field("transport_socket"), ts)?,
    };
    if proto.transport_socket_matcher.is_some() {
        return Ok(unsupported(cx.unsupported(
            &root.field("transport_socket_matcher"),
            "per-endpoint transport selection is not supported",
        )));
    }
    for (i, m) in proto.transport_socket_matches.iter().enumerate() {
        let p = root
            .index("transport_socket_matches", i)
            .field("transport_socket");
        let plain = match &m.transport_socket {
            None => true,
            Some(ts) => socket(cx, &p, ts)?.is_plaintext(),
        };
        if !plain || !transport.is_plaintext() {
            return Ok(unsupported(cx.unsupported(
                &p,
                format!(
                    "transport_socket_matches entry `{}`: per-endpoint transport selection is not supported",
                    m.name
                ),
            )));
        }
    }
    Ok(transport)
}

fn unsupported(e: ModelError) -> UpstreamTransport {
    UpstreamTransport::Unsupported(e.into())
}

fn socket(
    cx: &Ctx<'_>,
    path: &Path,
    ts: &TransportSocket,
) -> Result<UpstreamTransport, ModelError> {
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        if RAW_BUFFER_NAMES.contains(&ts.name.as_str()) {
            return Ok(UpstreamTransport::Plaintext);
        }
        return Ok(unsupported(cx.unsupported(
            &path.field("typed_config"),
            format!(
                "transport socket `{}` without a typed_config is not supported",
                ts.name
            ),
        )));
    };
    let tp = path.field("typed_config");
    let ext = identify(cx, &tp, any)?;
    match ext.name.as_str() {
        RAW_BUFFER => Ok(UpstreamTransport::Plaintext),
        UPSTREAM_TLS if ext.typed_struct.is_none() => tls(cx, &tp, any),
        UPSTREAM_TLS => Ok(unsupported(cx.unsupported(
            &tp,
            "an UpstreamTlsContext given as a TypedStruct is not supported",
        ))),
        other => Ok(unsupported(cx.unsupported(
            &tp,
            format!("transport socket {other} is not supported"),
        ))),
    }
}

fn tls(cx: &Ctx<'_>, path: &Path, any: &Any) -> Result<UpstreamTransport, ModelError> {
    let ctx: UpstreamTlsContext = decode_any(cx, path, any)?;
    match upstream_tls(cx, path, &ctx)? {
        Ok(t) => Ok(UpstreamTransport::Tls(t.into())),
        Err(e) => Ok(unsupported(e)),
    }
}

/// Outer `Err`: invalid (NACK). Inner `Err`: unsupported (the cluster fails closed).
fn upstream_tls(
    cx: &Ctx<'_>,
    path: &Path,
    ctx: &UpstreamTlsContext,
) -> Result<Result<UpstreamTls, ModelError>, ModelError> {
    let no = |field: &str, what: &str| Ok(Err(cx.unsupported(&path.field(field), what.to_owned())));
    if ctx.auto_host_sni {
        return no("auto_host_sni", "auto_host_sni is not supported");
    }
    if ctx.auto_sni_san_validation {
        return no(
            "auto_sni_san_validation",
            "auto_sni_san_validation is not supported",
        );
    }
    let Some(common) = &ctx.common_tls_context else {
        return no(
            "common_tls_context",
            "no validation context: the mesh never connects without verifying the server",
        );
    };
    let cp = path.field("common_tls_context");
    let inner = common_tls(cx, &cp, common)?;
    Ok(inner.map(|(identity, roots, sans)| UpstreamTls {
        sni: (!ctx.sni.is_empty()).then(|| ctx.sni.as_str().into()),
        alpn_protocols: common
            .alpn_protocols
            .iter()
            .map(|p| p.as_str().into())
            .collect(),
        identity,
        roots,
        match_subject_alt_names: sans.into(),
    }))
}

type Common = (
    Option<CertificateProviderInstance>,
    CertificateProviderInstance,
    Vec<StringMatcher>,
);

fn common_tls(
    cx: &Ctx<'_>,
    path: &Path,
    c: &CommonTlsContext,
) -> Result<Result<Common, ModelError>, ModelError> {
    let no = |field: &str, what: &str| Ok(Err(cx.unsupported(&path.field(field), what.to_owned())));
    if !c.tls_certificates.is_empty() {
        return no(
            "tls_certificates",
            "inline certificates are not supported; use a certificate provider instance",
        );
    }
    if !c.tls_certificate_sds_secret_configs.is_empty() {
        return no(
            "tls_certificate_sds_secret_configs",
            "sds is not supported; use a certificate provider instance (grfc a29)",
        );
    }
    if c.tls_certificate_certificate_provider.is_some() {
        return no(
            "tls_certificate_certificate_provider",
            "certificate provider plugins sent by the control plane are not supported",
        );
    }
    if c.custom_handshaker.is_some() {
        return no("custom_handshaker", "custom handshakers are not supported");
    }
    if c.custom_tls_certificate_selector.is_some() {
        return no(
            "custom_tls_certificate_selector",
            "custom certificate selectors are not supported",
        );
    }
    let identity = match (
        &c.tls_certificate_provider_instance,
        &c.tls_certificate_certificate_provider_instance,
    ) {
        (Some(i), _) => Some(plugin(i)),
        (None, Some(i)) => Some(legacy(i)),
        (None, None) => None,
    };
    // The validation context and the roots' instance, by the form it came in.
    let (validation, vp, legacy_roots) = match &c.validation_context_type {
        None => {
            return no(
                "validation_context_type",
                "no validation context: the mesh never connects without verifying the server",
            )
        }
        Some(ValidationContextType::ValidationContext(v)) => {
            (Some(v), path.field("validation_context"), None)
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(_)) => {
            return no(
                "validation_context_sds_secret_config",
                "sds is not supported; use a certificate provider instance (grfc a29)",
            )
        }
        Some(ValidationContextType::ValidationContextCertificateProvider(_)) => {
            return no(
                "validation_context_certificate_provider",
                "certificate provider plugins sent by the control plane are not supported",
            )
        }
        Some(ValidationContextType::ValidationContextCertificateProviderInstance(i)) => (
            None,
            path.field("validation_context_certificate_provider_instance"),
            Some(legacy(i)),
        ),
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            let p = path.field("combined_validation_context");
            if cv.validation_context_sds_secret_config.is_some() {
                return Ok(Err(cx.unsupported(
                    &p.field("validation_context_sds_secret_config"),
                    "sds is not supported; use a certificate provider instance (grfc a29)",
                )));
            }
            if cv.validation_context_certificate_provider.is_some() {
                return Ok(Err(cx.unsupported(
                    &p.field("validation_context_certificate_provider"),
                    "certificate provider plugins sent by the control plane are not supported",
                )));
            }
            (
                cv.default_validation_context.as_ref(),
                p.field("default_validation_context"),
                cv.validation_context_certificate_provider_instance
                    .as_ref()
                    .map(legacy),
            )
        }
    };
    let mut roots = legacy_roots;
    let mut sans = Vec::new();
    if let Some(v) = validation {
        if let Err(e) = validation_context(cx, &vp, v)? {
            return Ok(Err(e));
        }
        if let Some(i) = &v.ca_certificate_provider_instance {
            roots = Some(plugin(i));
        }
        for (i, m) in v.match_subject_alt_names.iter().enumerate() {
            sans.push(matcher::string_matcher(
                cx,
                &vp.index("match_subject_alt_names", i),
                m,
            )?);
        }
    }
    let Some(roots) = roots else {
        return Ok(Err(cx.unsupported(
            &vp.field("ca_certificate_provider_instance"),
            "no ca certificate provider instance: the mesh never connects without verifying the server",
        )));
    };
    Ok(Ok((identity, roots, sans)))
}

/// The checks that would weaken or change verification in ways the mesh does not implement.
fn validation_context(
    cx: &Ctx<'_>,
    path: &Path,
    v: &CertificateValidationContext,
) -> Result<Result<(), ModelError>, ModelError> {
    let no = |field: &str, what: &str| Ok(Err(cx.unsupported(&path.field(field), what.to_owned())));
    if v.trusted_ca.is_some() {
        return no(
            "trusted_ca",
            "inline or file trust anchors are not supported; use ca_certificate_provider_instance",
        );
    }
    if v.system_root_certs.is_some() {
        return no(
            "system_root_certs",
            "system root certificates are not supported (grfc a82)",
        );
    }
    if v.watched_directory.is_some() {
        return no("watched_directory", "watched directories are not supported");
    }
    if !v.verify_certificate_spki.is_empty() {
        return no("verify_certificate_spki", "spki pinning is not supported");
    }
    if !v.verify_certificate_hash.is_empty() {
        return no(
            "verify_certificate_hash",
            "certificate hash pinning is not supported",
        );
    }
    if !v.match_typed_subject_alt_names.is_empty() {
        return no(
            "match_typed_subject_alt_names",
            "typed san matchers are not supported; use match_subject_alt_names",
        );
    }
    if v.require_signed_certificate_timestamp
        .as_ref()
        .is_some_and(|b| b.value)
    {
        return no(
            "require_signed_certificate_timestamp",
            "certificate transparency is not supported",
        );
    }
    if v.crl.is_some() {
        return no("crl", "certificate revocation lists are not supported");
    }
    if v.custom_validator_config.is_some() {
        return no(
            "custom_validator_config",
            "custom validators are not supported",
        );
    }
    if v.allow_expired_certificate {
        return no(
            "allow_expired_certificate",
            "accepting expired certificates is not supported",
        );
    }
    if TrustChainVerification::try_from(v.trust_chain_verification)
        != Ok(TrustChainVerification::VerifyTrustChain)
    {
        return no(
            "trust_chain_verification",
            "only VERIFY_TRUST_CHAIN is supported",
        );
    }
    Ok(Ok(()))
}

fn plugin(i: &CertificateProviderPluginInstance) -> CertificateProviderInstance {
    CertificateProviderInstance::new(&i.instance_name, &i.certificate_name)
}

fn legacy(i: &LegacyInstance) -> CertificateProviderInstance {
    CertificateProviderInstance::new(&i.instance_name, &i.certificate_name)
}

#[cfg(test)]
#[path = "upstream_tls_tests.rs"]
mod tests;
