//! PeerAuthentication → the filter chains of an inbound (server) Listener, the way istiod's
//! proxyless generator builds them (istio/istio `pilot/pkg/networking/grpcgen/lds.go`
//! `buildInboundFilterChains`; gRFC A36 for the listener, A29 for the TLS context):
//!
//! - **STRICT**: one chain `inbound-mtls` whose `transport_socket`
//!   (`envoy.transport_sockets.tls`) is a `DownstreamTlsContext` with
//!   `require_client_certificate: true`, the certificate from certificate provider instance
//!   `default` (certificate name `default`) and the roots from instance `default`, certificate
//!   name `ROOTCA` — istiod's `buildCommonTLSContext`, the same context as the client's
//!   (`translate::tls`), without SANs (A29: gRPC servers NACK `match_subject_alt_names`). Both
//!   the current fields (`tls_certificate_provider_instance`,
//!   `default_validation_context.ca_certificate_provider_instance`) and the deprecated ones
//!   (`tls_certificate_certificate_provider_instance`,
//!   `combined_validation_context.validation_context_certificate_provider_instance`) are sent:
//!   gRPC C-core reads the current ones first and keeps the deprecated ones only as a fallback
//!   it means to remove (`xds_common_types_parser.cc`, "TODO: Remove this once it's no longer
//!   needed"), older gRPC releases read only the deprecated ones.
//! - **DISABLE**: one chain `inbound-plaintext` without a transport socket.
//! - **PERMISSIVE**: istiod turns it into DISABLE for gRPC (a comment there: gRPC's filter chain
//!   match cannot tell TLS from plaintext, "only effective transport_protocol match is
//!   raw_buffer"). We emit Envoy's sidecar form instead: the `inbound-mtls` chain matched on
//!   `transport_protocol: "tls"` and the `inbound-plaintext` chain on `"raw_buffer"`. gRPC
//!   (C-core `AddFilterChainDataForTransportProtocol`, grpc-go likewise) skips chains whose
//!   transport protocol is neither empty nor `raw_buffer`, so a gRPC server sees exactly
//!   istiod's plaintext chain; mesh-grpc's server tells the two apart by the first byte (Envoy's
//!   `tls_inspector`) and serves both.
//! - **No policy at all** (Istio's implicit PERMISSIVE): istiod's listener, the plaintext chain
//!   alone — so a gRPC server whose bootstrap has no certificate providers (which gRPC needs to
//!   accept any TLS context, A29) keeps accepting the listener.
//!
//! Every chain carries the same HCM (RBAC filters, router), as istiod's do.
//!
//! **gRPC's form** ([`grpc_server_form`]). gRPC drops a chain matching a `transport_protocol`
//! other than `raw_buffer` only *after* validating it (C-core `FilterChainParse` runs on every
//! chain, then `AddFilterChainDataForTransportProtocol` skips it), and validating a
//! `DownstreamTlsContext` NACKs the whole Listener when the bootstrap lacks the provider instance
//! it names ("unrecognized certificate provider instance name: default"). So a gRPC server
//! without certificate providers — any server not set up for mTLS — NACKs our PERMISSIVE
//! Listener and never serves. gRPC clients (the ADS stream tells them apart,
//! [`NodeInfo::is_grpc`](crate::NodeInfo::is_grpc)) are therefore sent the Listener without such
//! chains: for PERMISSIVE exactly istiod's plaintext chain, which is all gRPC would have used.

use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use envoy_types::pb::google::protobuf::BoolValue;

use super::authz::{inbound_hcm, socket_address};
use super::to_any;
use crate::source::model::MtlsMode;

/// The transport socket name istiod uses.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// The certificate provider instance istiod names (the bootstrap's `certificate_providers` key).
pub const CERTIFICATE_PROVIDER_INSTANCE: &str = "default";
/// The certificate name of the root bundle in that instance.
pub const ROOT_CERTIFICATE_NAME: &str = "ROOTCA";
/// Name of the mTLS chain.
pub const MTLS_CHAIN: &str = "inbound-mtls";
/// Name of the plaintext chain.
pub const PLAINTEXT_CHAIN: &str = "inbound-plaintext";

/// istiod's server `DownstreamTlsContext`: certificate and roots from provider instance
/// `default` (current and deprecated fields), client certificate required.
pub fn downstream_tls_context() -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(super::tls::common_tls_context(true, &[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    }
}

/// The inbound listener `name` on `ip:port` with `filters`, its chains for `mode` (`None`: no
/// PeerAuthentication applies).
pub fn inbound_listener(
    name: String,
    ip: &str,
    port: u32,
    filters: Vec<HttpFilter>,
    mode: Option<MtlsMode>,
) -> Listener {
    let hcm = inbound_hcm(&name, filters);
    let chain = |chain_name: &str, tls: bool, transport_protocol: &str| FilterChain {
        name: chain_name.into(),
        filter_chain_match: (!transport_protocol.is_empty()).then(|| FilterChainMatch {
            transport_protocol: transport_protocol.into(),
            ..Default::default()
        }),
        filters: vec![hcm.clone()],
        transport_socket: tls.then(|| TransportSocket {
            name: TLS_TRANSPORT_SOCKET.into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(to_any(
                &downstream_tls_context(),
            ))),
        }),
        ..Default::default()
    };
    let filter_chains = match mode {
        Some(MtlsMode::Strict) => vec![chain(MTLS_CHAIN, true, "")],
        Some(MtlsMode::Permissive) => vec![
            chain(MTLS_CHAIN, true, "tls"),
            chain(PLAINTEXT_CHAIN, false, "raw_buffer"),
        ],
        Some(MtlsMode::Disable | MtlsMode::Unset) | None => {
            vec![chain(PLAINTEXT_CHAIN, false, "")]
        }
    };
    Listener {
        name,
        address: Some(socket_address(ip, port)),
        filter_chains,
        ..Default::default()
    }
}

/// The Listener as gRPC should get it (module docs): without the chains gRPC ignores for their
/// `transport_protocol` (neither empty nor `raw_buffer`); `None` when there are none, so the
/// shared form is already gRPC's.
pub fn grpc_server_form(listener: &Listener) -> Option<Listener> {
    let used_by_grpc = |c: &FilterChain| {
        c.filter_chain_match
            .as_ref()
            .is_none_or(|m| matches!(m.transport_protocol.as_str(), "" | "raw_buffer"))
    };
    if listener.filter_chains.iter().all(used_by_grpc) {
        return None;
    }
    let mut l = listener.clone();
    l.filter_chains.retain(used_by_grpc);
    Some(l)
}

#[cfg(test)]
#[path = "peer_authn_tests.rs"]
mod tests;
