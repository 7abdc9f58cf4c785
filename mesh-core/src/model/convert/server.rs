//! Server-side (inbound) Listener, gRFC A36 form: its address and filter chains — each chain's
//! match, `DownstreamTlsContext` (gRFC A29) and the HTTP filters of its HttpConnectionManager
//! (A39 rules, RBAC per A41). See [`crate::model::ServerListener`] for chain selection.
//!
//! A36 rules checked here: the `address` is a socket address, `listener_filters` is empty,
//! `use_original_dst` is not set, each filter chain has exactly one filter, the HCM, and no two
//! chains have the same match (A36: NACK on overlapping matches). Chains that can never match
//! (`server_names` or `application_protocols` set, a `transport_protocol` other than `""`,
//! `raw_buffer` and `tls`) are dropped after validation, as gRPC does.
//! Routes (`non_forwarding_action`) are not read: the application serves every request.
//!
//! TLS (A29, Envoy `DownstreamTlsContext`): the certificate must come from a certificate provider
//! instance (`tls_certificate_provider_instance` or the deprecated
//! `tls_certificate_certificate_provider_instance` istiod sets) and the roots, when set, from
//! `validation_context.ca_certificate_provider_instance` or
//! `combined_validation_context.validation_context_certificate_provider_instance`; inline
//! certificates, SDS, `require_sni`, OCSP stapling and SAN / SPKI / hash pinning on the server
//! are unsupported (gRPC NACKs them too) — a `ModelError` naming the field.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{
    filter, filter_chain_match::ConnectionSourceType, FilterChain, Listener as ListenerProto,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::{self, ValidationContextType},
    CertificateValidationContext, DownstreamTlsContext,
};

use super::listener::{http_filters, HCM};
use super::rbac::cidr;
use super::{decode_any, identify, Ctx, Path};
use crate::model::{
    CertificateProviderInstance, DownstreamTls, FilterChainMatch, HttpFilter, ModelError,
    ResourceType, ServerFilterChain, ServerListener, SourceType, TransportProtocol,
};

const DOWNSTREAM_TLS: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

impl TryFrom<ListenerProto> for ServerListener {
    type Error = ModelError;
    fn try_from(proto: ListenerProto) -> Result<Self, ModelError> {
        let cx = Ctx::new(ResourceType::Listener, &proto.name);
        let root = Path::root();
        if proto.api_listener.is_some() {
            return Err(cx.invalid(
                &root.field("api_listener"),
                "an api_listener is a client listener",
            ));
        }
        if !proto.listener_filters.is_empty() {
            return Err(cx.invalid(&root.field("listener_filters"), "must be empty (A36)"));
        }
        if proto.use_original_dst.is_some_and(|v| v.value) {
            return Err(cx.invalid(&root.field("use_original_dst"), "must not be set (A36)"));
        }
        let address = socket_address(&cx, &root.field("address"), &proto)?;
        let mut chains = Vec::with_capacity(proto.filter_chains.len());
        let mut seen = HashSet::new();
        for (i, c) in proto.filter_chains.iter().enumerate() {
            let p = root.index("filter_chains", i);
            let (chain, matchable) = filter_chain(&cx, &p, c)?;
            if matchable && !seen.insert(chain.matcher.clone()) {
                return Err(cx.invalid(
                    &p.field("filter_chain_match"),
                    "same match as an earlier chain (A36)",
                ));
            }
            if matchable {
                chains.push(chain);
            }
        }
        let default_filter_chain = match &proto.default_filter_chain {
            Some(c) => {
                let p = root.field("default_filter_chain");
                Some(Arc::new(filter_chain(&cx, &p, c)?.0))
            }
            None => None,
        };
        if proto.filter_chains.is_empty() && default_filter_chain.is_none() {
            return Err(cx.invalid(&root.field("filter_chains"), "no filter chain"));
        }
        Ok(ServerListener {
            name: proto.name.as_str().into(),
            address,
            filter_chains: chains.into(),
            default_filter_chain,
        })
    }
}

/// One chain, and whether it can ever match.
fn filter_chain(
    cx: &Ctx<'_>,
    path: &Path,
    chain: &FilterChain,
) -> Result<(ServerFilterChain, bool), ModelError> {
    let filters = chain_filters(cx, path, chain)?;
    let (matcher, matchable) = match &chain.filter_chain_match {
        None => (FilterChainMatch::default(), true),
        Some(m) => {
            let p = path.field("filter_chain_match");
            let destination_port = match m.destination_port.as_ref().map(|v| v.value) {
                None | Some(0) => None,
                Some(v) => Some(u16::try_from(v).map_err(|_| {
                    cx.invalid(&p.field("destination_port"), format!("{v} is out of range"))
                })?),
            };
            let prefix_ranges = m
                .prefix_ranges
                .iter()
                .enumerate()
                .map(|(i, c)| cidr(cx, &p.index("prefix_ranges", i), c))
                .collect::<Result<_, _>>()?;
            let source_prefix_ranges = m
                .source_prefix_ranges
                .iter()
                .enumerate()
                .map(|(i, c)| cidr(cx, &p.index("source_prefix_ranges", i), c))
                .collect::<Result<_, _>>()?;
            if !m.direct_source_prefix_ranges.is_empty() {
                return Err(
                    cx.unsupported(&p.field("direct_source_prefix_ranges"), "not supported")
                );
            }
            let source_ports = m
                .source_ports
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    u16::try_from(*v).map_err(|_| {
                        cx.invalid(&p.index("source_ports", i), format!("{v} is out of range"))
                    })
                })
                .collect::<Result<_, _>>()?;
            let source_type = match ConnectionSourceType::try_from(m.source_type) {
                Ok(ConnectionSourceType::Any) => SourceType::Any,
                Ok(ConnectionSourceType::SameIpOrLoopback) => SourceType::SameIpOrLoopback,
                Ok(ConnectionSourceType::External) => SourceType::External,
                Err(_) => {
                    return Err(cx.invalid(
                        &p.field("source_type"),
                        format!("unknown value {}", m.source_type),
                    ))
                }
            };
            let (transport_protocol, known) = match m.transport_protocol.as_str() {
                "" => (TransportProtocol::Any, true),
                "raw_buffer" => (TransportProtocol::RawBuffer, true),
                "tls" => (TransportProtocol::Tls, true),
                _ => (TransportProtocol::Any, false),
            };
            let matchable =
                known && m.server_names.is_empty() && m.application_protocols.is_empty();
            (
                FilterChainMatch {
                    destination_port,
                    prefix_ranges,
                    transport_protocol,
                    source_type,
                    source_prefix_ranges,
                    source_ports,
                },
                matchable,
            )
        }
    };
    let tls = match &chain.transport_socket {
        None => None,
        Some(ts) => {
            let p = path.field("transport_socket").field("typed_config");
            let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
                return Err(cx.invalid(&p, "missing"));
            };
            let ext = identify(cx, &p, any)?;
            if ext.name != DOWNSTREAM_TLS || ext.typed_struct.is_some() {
                return Err(cx.unsupported(
                    &p,
                    format!(
                        "transport socket `{}`: only {DOWNSTREAM_TLS} is supported",
                        any.type_url
                    ),
                ));
            }
            let ctx: DownstreamTlsContext = decode_any(cx, &p, any)?;
            Some(downstream_tls(cx, &p, &ctx)?)
        }
    };
    Ok((
        ServerFilterChain {
            name: chain.name.as_str().into(),
            matcher,
            tls,
            http_filters: filters.into(),
        },
        matchable,
    ))
}

#[allow(deprecated)]
fn downstream_tls(
    cx: &Ctx<'_>,
    path: &Path,
    ctx: &DownstreamTlsContext,
) -> Result<DownstreamTls, ModelError> {
    let unsupported = |field: &str| cx.unsupported(&path.field(field), "not supported (A29)");
    if ctx.require_sni.as_ref().is_some_and(|v| v.value) {
        return Err(unsupported("require_sni"));
    }
    if ctx.ocsp_staple_policy != 0 {
        return Err(unsupported("ocsp_staple_policy"));
    }
    let p = path.field("common_tls_context");
    let Some(common) = &ctx.common_tls_context else {
        return Err(cx.invalid(&p, "missing"));
    };
    let unsupported = |field: &str| cx.unsupported(&p.field(field), "not supported (A29)");
    if !common.tls_certificates.is_empty() {
        return Err(unsupported("tls_certificates"));
    }
    if !common.tls_certificate_sds_secret_configs.is_empty() {
        return Err(unsupported("tls_certificate_sds_secret_configs"));
    }
    if common.tls_certificate_certificate_provider.is_some() {
        return Err(unsupported("tls_certificate_certificate_provider"));
    }
    if common.custom_handshaker.is_some() {
        return Err(unsupported("custom_handshaker"));
    }
    let certificate = match (
        &common.tls_certificate_provider_instance,
        &common.tls_certificate_certificate_provider_instance,
    ) {
        (Some(i), _) => CertificateProviderInstance {
            instance_name: i.instance_name.as_str().into(),
            certificate_name: i.certificate_name.as_str().into(),
        },
        (None, Some(i)) => CertificateProviderInstance {
            instance_name: i.instance_name.as_str().into(),
            certificate_name: i.certificate_name.as_str().into(),
        },
        (None, None) => {
            return Err(cx.invalid(
                &p.field("tls_certificate_provider_instance"),
                "a server needs a certificate (A29)",
            ))
        }
    };
    if certificate.instance_name.is_empty() {
        return Err(cx.invalid(
            &p.field("tls_certificate_provider_instance")
                .field("instance_name"),
            "empty",
        ));
    }
    let vp = p.field("validation_context_type");
    let validation = match &common.validation_context_type {
        None => None,
        Some(ValidationContextType::ValidationContext(v)) => {
            validation_context(cx, &p.field("validation_context"), v)?
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            let cp = p.field("combined_validation_context");
            if c.validation_context_sds_secret_config.is_some()
                || c.validation_context_certificate_provider.is_some()
            {
                return Err(cx.unsupported(&cp, "only certificate provider instances (A29)"));
            }
            let inner = match &c.default_validation_context {
                Some(v) => validation_context(cx, &cp.field("default_validation_context"), v)?,
                None => None,
            };
            match &c.validation_context_certificate_provider_instance {
                Some(i) => Some(instance(i)),
                None => inner,
            }
        }
        Some(_) => {
            return Err(cx.unsupported(&vp, "only certificate provider instances (A29)"));
        }
    };
    let require_client_certificate = ctx.require_client_certificate.is_some_and(|v| v.value);
    if require_client_certificate && validation.is_none() {
        return Err(cx.invalid(
            &path.field("require_client_certificate"),
            "set without a validation context (A29)",
        ));
    }
    Ok(DownstreamTls {
        certificate,
        validation,
        require_client_certificate,
    })
}

fn instance(i: &common_tls_context::CertificateProviderInstance) -> CertificateProviderInstance {
    CertificateProviderInstance {
        instance_name: i.instance_name.as_str().into(),
        certificate_name: i.certificate_name.as_str().into(),
    }
}

#[allow(deprecated)]
fn validation_context(
    cx: &Ctx<'_>,
    path: &Path,
    v: &CertificateValidationContext,
) -> Result<Option<CertificateProviderInstance>, ModelError> {
    let unsupported = |field: &str, why: &str| cx.unsupported(&path.field(field), why);
    if v.trusted_ca.is_some() {
        return Err(unsupported(
            "trusted_ca",
            "only certificate provider instances (A29)",
        ));
    }
    if !v.match_subject_alt_names.is_empty() || !v.match_typed_subject_alt_names.is_empty() {
        return Err(unsupported(
            "match_subject_alt_names",
            "SAN matching on the server is not supported (A29)",
        ));
    }
    if !v.verify_certificate_spki.is_empty() || !v.verify_certificate_hash.is_empty() {
        return Err(unsupported(
            "verify_certificate_spki",
            "pinning is not supported",
        ));
    }
    if v.crl.is_some() {
        return Err(unsupported("crl", "not supported"));
    }
    if v.allow_expired_certificate {
        return Err(unsupported("allow_expired_certificate", "not supported"));
    }
    Ok(v.ca_certificate_provider_instance
        .as_ref()
        .map(|i| CertificateProviderInstance {
            instance_name: i.instance_name.as_str().into(),
            certificate_name: i.certificate_name.as_str().into(),
        }))
}

fn socket_address(
    cx: &Ctx<'_>,
    path: &Path,
    proto: &ListenerProto,
) -> Result<SocketAddr, ModelError> {
    let Some(address::Address::SocketAddress(sa)) =
        proto.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        return Err(cx.invalid(&path.field("socket_address"), "missing"));
    };
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        cx.invalid(
            &path.field("socket_address").field("address"),
            format!("`{}` is not an IP address", sa.address),
        )
    })?;
    let port = match sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) if p <= 65535 => p as u16,
        _ => {
            return Err(cx.invalid(
                &path.field("socket_address").field("port_value"),
                "missing or out of range",
            ))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

fn chain_filters(
    cx: &Ctx<'_>,
    path: &Path,
    chain: &FilterChain,
) -> Result<Vec<HttpFilter>, ModelError> {
    let [f] = chain.filters.as_slice() else {
        return Err(cx.invalid(
            &path.field("filters"),
            "must hold exactly one filter, the http connection manager (A36)",
        ));
    };
    let p = path.index("filters", 0).field("typed_config");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return Err(cx.invalid(&p, "missing"));
    };
    let ext = identify(cx, &p, any)?;
    if ext.name != HCM || ext.typed_struct.is_some() {
        return Err(cx.unsupported(
            &p,
            format!("network filter `{}`: only {HCM} is supported", any.type_url),
        ));
    }
    let hcm: HttpConnectionManager = decode_any(cx, &p, any)?;
    if hcm.xff_num_trusted_hops != 0 {
        return Err(cx.invalid(&p.field("xff_num_trusted_hops"), "must be 0 (A41)"));
    }
    if !hcm.original_ip_detection_extensions.is_empty() {
        return Err(cx.invalid(
            &p.field("original_ip_detection_extensions"),
            "must be empty (A41)",
        ));
    }
    http_filters(cx, &p, &hcm.http_filters)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
