//! Listener → HttpConnectionManager → HTTP filters (gRFC A27, A39, A41; XDS-SEMANTICS.md rows
//! 2 and 15).
//!
//! A client listener must be an API listener whose `api_listener` is an HttpConnectionManager.
//! Routes come from `rds` over ADS (or `self`) or inline `route_config`; `scoped_routes` is
//! unsupported. HTTP filters follow A39: non-empty, unique names, the router last and only last,
//! unknown types rejected unless `is_optional`, `TypedStruct` unwrapped by its inner type URL.
//! A41: `xff_num_trusted_hops` ≠ 0 or any `original_ip_detection_extensions` is invalid.
//! `stream_idle_timeout` (Envoy, HTTP only): unset ⇒ 5 min, 0 ⇒ disabled, negative ⇒ invalid.
//!
//! The fault filter (`HTTPFault`) is interpreted (see [`super::fault`]); at most one enabled
//! fault filter per listener is supported (a second is NACKed as unsupported).
//!
//! Filters marked `disabled` run only where a route re-enables them, which the model does not
//! express yet, so they are kept as [`HttpFilterConfig::Skipped`] (the router cannot be disabled).

use std::{collections::HashSet, sync::Arc};

use envoy_types::pb::envoy::config::listener::v3::Listener as ListenerProto;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter::ConfigType, HttpConnectionManager,
    HttpFilter as HttpFilterProto,
};
use envoy_types::pb::google::protobuf::Any;

use super::{decode_any, fault, identify, is_ads_or_self, jwt, opaque, rbac, route, Ctx, Path};
use crate::model::{
    HttpFilter, HttpFilterConfig, Listener, ModelError, ResourceType, RouteSource,
    DEFAULT_STREAM_IDLE_TIMEOUT,
};

/// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`.
pub(crate) const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// `envoy.extensions.filters.http.router.v3.Router`.
pub(crate) const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
/// `envoy.extensions.filters.http.fault.v3.HTTPFault`.
pub(crate) const FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";

pub(super) fn convert(proto: ListenerProto) -> Result<Listener, ModelError> {
    let name = proto.name.clone();
    let cx = Ctx::new(ResourceType::Listener, &name);
    let root = Path::root();
    let Some(api) = proto.api_listener else {
        // A server listener (gRFC A36): its address and filter chains, for inbound policy.
        // `http_filters` holds what every chain shares (none when they differ).
        let server = crate::model::ServerListener::try_from(proto)?;
        let http_filters = server
            .uniform_http_filters()
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::new([]));
        return Ok(Listener {
            name: server.name.clone(),
            route_source: RouteSource::Server(server.into()),
            http_filters,
            stream_idle_timeout: None,
        });
    };
    let path = root.field("api_listener").field("api_listener");
    let any = api
        .api_listener
        .ok_or_else(|| cx.invalid(&path, "missing"))?;
    let ext = identify(&cx, &path, &any)?;
    if ext.name != HCM || ext.typed_struct.is_some() {
        return Err(cx.unsupported(
            &path,
            format!(
                "api_listener of type `{}`: only {HCM} is supported",
                any.type_url
            ),
        ));
    }
    let hcm: HttpConnectionManager = decode_any(&cx, &path, &any)?;
    http_connection_manager(&cx, &path, name.as_str(), hcm)
}

fn http_connection_manager(
    cx: &Ctx<'_>,
    path: &Path,
    name: &str,
    hcm: HttpConnectionManager,
) -> Result<Listener, ModelError> {
    if hcm.xff_num_trusted_hops != 0 {
        return Err(cx.invalid(
            &path.field("xff_num_trusted_hops"),
            "must be 0 for a client listener",
        ));
    }
    if !hcm.original_ip_detection_extensions.is_empty() {
        return Err(cx.invalid(
            &path.field("original_ip_detection_extensions"),
            "must be empty for a client listener",
        ));
    }
    let http_filters = http_filters(cx, path, &hcm.http_filters)?;
    if let Some(i) = http_filters
        .iter()
        .position(|f| matches!(f.config, HttpFilterConfig::Rbac(_)))
    {
        return Err(cx.unsupported(
            &path.index("http_filters", i),
            "the rbac filter runs on server listeners only (gRFC A41)",
        ));
    }
    if let Some(i) = http_filters
        .iter()
        .position(|f| matches!(f.config, HttpFilterConfig::JwtAuthn(_)))
    {
        return Err(cx.unsupported(
            &path.index("http_filters", i),
            "the jwt_authn filter runs on server listeners only",
        ));
    }
    let route_source = match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            let p = path.field("rds");
            let cs = rds
                .config_source
                .as_ref()
                .ok_or_else(|| cx.invalid(&p.field("config_source"), "missing"))?;
            if !is_ads_or_self(cs) {
                return Err(cx.unsupported(
                    &p.field("config_source"),
                    "config_source must be ads or self",
                ));
            }
            if rds.route_config_name.is_empty() {
                return Err(cx.invalid(&p.field("route_config_name"), "must not be empty"));
            }
            RouteSource::Rds(rds.route_config_name.into())
        }
        Some(RouteSpecifier::RouteConfig(rc)) => RouteSource::Inline(
            route::route_configuration(cx, &path.field("route_config"), rc)?.into(),
        ),
        Some(RouteSpecifier::ScopedRoutes(_)) => {
            return Err(cx.unsupported(&path.field("scoped_routes"), "scoped_routes not supported"))
        }
        None => return Err(cx.invalid(path, "no route_specifier (rds or route_config)")),
    };
    // Envoy: 5 min when unset, 0 disables.
    let stream_idle_timeout = match &hcm.stream_idle_timeout {
        None => Some(DEFAULT_STREAM_IDLE_TIMEOUT),
        Some(d) => {
            let d = super::policy::duration(cx, &path.field("stream_idle_timeout"), d)?;
            (!d.is_zero()).then_some(d)
        }
    };
    Ok(Listener {
        name: name.into(),
        route_source,
        http_filters: http_filters.into(),
        stream_idle_timeout,
    })
}

pub(super) fn http_filters(
    cx: &Ctx<'_>,
    path: &Path,
    filters: &[HttpFilterProto],
) -> Result<Vec<HttpFilter>, ModelError> {
    if filters.is_empty() {
        return Err(cx.invalid(&path.field("http_filters"), "no http filters"));
    }
    let mut names = HashSet::new();
    let last = filters.len() - 1;
    let mut out = Vec::with_capacity(filters.len());
    for (i, f) in filters.iter().enumerate() {
        let p = path.index("http_filters", i);
        if f.name.is_empty() {
            return Err(cx.invalid(&p.field("name"), "must not be empty"));
        }
        if !names.insert(f.name.as_str()) {
            return Err(cx.invalid(
                &p.field("name"),
                format!("duplicate filter name `{}`", f.name),
            ));
        }
        let config = filter_config(cx, &p, f)?;
        if matches!(config, HttpFilterConfig::Fault(_))
            && out
                .iter()
                .any(|f: &HttpFilter| matches!(f.config, HttpFilterConfig::Fault(_)))
        {
            return Err(cx.unsupported(&p, "more than one fault filter is not supported"));
        }
        if matches!(config, HttpFilterConfig::JwtAuthn(_)) {
            // The inbound layer runs JWT authentication once, before every RBAC filter.
            if out
                .iter()
                .any(|f| matches!(f.config, HttpFilterConfig::JwtAuthn(_)))
            {
                return Err(cx.unsupported(&p, "more than one jwt_authn filter is not supported"));
            }
            if out
                .iter()
                .any(|f| matches!(f.config, HttpFilterConfig::Rbac(_)))
            {
                return Err(cx.unsupported(
                    &p,
                    "a jwt_authn filter after an rbac filter is not supported",
                ));
            }
        }
        let is_router = config == HttpFilterConfig::Router;
        if is_router && i != last {
            return Err(cx.invalid(&p, "the router must be the last filter"));
        }
        if !is_router && i == last {
            return Err(cx.invalid(&p, "the last filter must be the router"));
        }
        out.push(HttpFilter {
            name: f.name.as_str().into(),
            config,
        });
    }
    Ok(out)
}

fn filter_config(
    cx: &Ctx<'_>,
    p: &Path,
    f: &HttpFilterProto,
) -> Result<HttpFilterConfig, ModelError> {
    let any: &Any = match &f.config_type {
        Some(ConfigType::TypedConfig(any)) => any,
        Some(ConfigType::ConfigDiscovery(_)) => {
            return Err(cx.unsupported(
                &p.field("config_discovery"),
                "filter config discovery (ECDS) not supported",
            ))
        }
        None => return Err(cx.invalid(&p.field("typed_config"), "missing")),
    };
    let tp = p.field("typed_config");
    let ext = identify(cx, &tp, any)?;
    Ok(match ext.name.as_str() {
        ROUTER if f.disabled => return Err(cx.invalid(&p.field("disabled"), "router disabled")),
        ROUTER => HttpFilterConfig::Router,
        _ if f.disabled => HttpFilterConfig::Skipped(opaque(any)),
        FAULT => HttpFilterConfig::Fault(Arc::new(fault::filter_config(cx, &tp, any)?)),
        rbac::RBAC if ext.typed_struct.is_none() => HttpFilterConfig::Rbac(
            rbac::rbac_filter(cx, &tp, decode_any(cx, &tp, any)?)?.map(Into::into),
        ),
        jwt::JWT_AUTHN if ext.typed_struct.is_none() => HttpFilterConfig::JwtAuthn(Arc::new(
            jwt::jwt_authentication(cx, &tp, decode_any(cx, &tp, any)?)?,
        )),
        _ if f.is_optional => HttpFilterConfig::Skipped(opaque(any)),
        other => {
            return Err(cx.unsupported(
                &tp,
                format!("http filter type `type.googleapis.com/{other}` not supported"),
            ))
        }
    })
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
