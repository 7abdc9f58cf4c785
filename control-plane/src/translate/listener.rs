//! Client listeners: istiod `grpcgen/lds.go` `buildOutboundListeners` — an API listener per
//! `host:port` with an HttpConnectionManager that fetches its routes over ADS and runs the fault
//! filter then the router.

use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter::ConfigType, HttpConnectionManager,
    HttpFilter, Rds,
};

use super::{ads_config_source, to_any};
use crate::registry::{short_names, Service};
use crate::source::model::ServicePort;

/// Name of the router filter (gRFC A39: must be last; grpcio requires a `typed_config`).
pub(crate) const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// `host:port`.
pub(crate) fn listener_name(host: &str, port: u32) -> String {
    format!("{host}:{port}")
}

/// Alias listener names for a host's port: its Kubernetes short names with the port.
pub(crate) fn aliases(host: &str, port: u32) -> Vec<String> {
    short_names(host)
        .into_iter()
        .map(|s| listener_name(&s, port))
        .collect()
}

/// The listener for `svc`'s `port`, and its alias names.
pub(crate) fn listener(svc: &Service, port: &ServicePort) -> (Listener, Vec<String>) {
    let name = listener_name(&svc.host, port.number);
    let hcm = HttpConnectionManager {
        stat_prefix: name.clone(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: name.clone(),
        })),
        // istiod grpcgen `supportedFilters`: fault, then the router (last).
        http_filters: vec![
            super::fault::filter(),
            HttpFilter {
                name: ROUTER_FILTER.to_string(),
                config_type: Some(ConfigType::TypedConfig(to_any(&Router::default()))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let listener = Listener {
        name,
        api_listener: Some(ApiListener {
            api_listener: Some(to_any(&hcm)),
        }),
        ..Default::default()
    };
    (listener, aliases(&svc.host, port.number))
}
