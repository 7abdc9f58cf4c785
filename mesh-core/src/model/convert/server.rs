//! Server-side (inbound) Listener, gRFC A36 form, as far as authorization needs it: its
//! address and the HTTP filters of its HttpConnectionManager (A39 rules, RBAC per A41).
//!
//! A36 rules checked here: the `address` is a socket address, `listener_filters` is empty,
//! `use_original_dst` is not set, and each filter chain has exactly one filter, the HCM. Filter
//! chains are not matched per connection yet, so every chain (and the default chain) must carry
//! the same HTTP filters; differing chains are unsupported rather than silently merged.
//! Routes (`non_forwarding_action`) are not read: the application serves every request.

use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::{address, socket_address::PortSpecifier};
use envoy_types::pb::envoy::config::listener::v3::{
    filter, FilterChain, Listener as ListenerProto,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

use super::listener::{http_filters, HCM};
use super::{decode_any, identify, Ctx, Path};
use crate::model::{HttpFilter, ModelError, ResourceType, ServerListener};

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
        let mut filters: Option<Vec<HttpFilter>> = None;
        let chains = proto
            .filter_chains
            .iter()
            .enumerate()
            .map(|(i, c)| (root.index("filter_chains", i), c))
            .chain(
                proto
                    .default_filter_chain
                    .iter()
                    .map(|c| (root.field("default_filter_chain"), c)),
            );
        for (p, chain) in chains {
            let f = chain_filters(&cx, &p, chain)?;
            match &filters {
                None => filters = Some(f),
                Some(first) if *first == f => {}
                Some(_) => {
                    return Err(cx.unsupported(
                        &p,
                        "filter chains with different http filters are not supported yet",
                    ))
                }
            }
        }
        let http_filters =
            filters.ok_or_else(|| cx.invalid(&root.field("filter_chains"), "no filter chain"))?;
        Ok(ServerListener {
            name: proto.name.as_str().into(),
            address,
            http_filters: http_filters.into(),
        })
    }
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
