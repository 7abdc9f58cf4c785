//! Document → resource parsing for the four supported kinds (istio/api `networking/v1alpha3`).
//!
//! Every resource is read through [`Fields`], so each key that is not read here ends up as a
//! warning naming its path (`spec.http[0].retries`).

use serde_yaml_ng::Value;
use std::sync::Arc;

use super::model::*;
use super::yaml::{join, parse_document, split_documents, Ctx, Fields};
use super::{ConfigError, Warning};

const SECURITY_API_VERSIONS: &[&str] = &["security.istio.io/v1", "security.istio.io/v1beta1"];

const API_VERSIONS: &[&str] = &[
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];

/// Parses every document of one file.
pub(crate) fn parse_file(
    file: &str,
    text: &str,
    warnings: &mut Vec<Warning>,
) -> Result<MeshConfig, ConfigError> {
    let file_arc: Arc<str> = Arc::from(file);
    let mut config = MeshConfig::default();
    for doc in split_documents(text) {
        let value = parse_document(file, &doc)?;
        if value.is_null() {
            continue;
        }
        let mut ctx = Ctx {
            file: file.to_string(),
            line: doc.line,
            resource: String::new(),
            warnings,
        };
        parse_resource(&mut ctx, &file_arc, &value, &mut config)?;
    }
    Ok(config)
}

fn parse_resource(
    ctx: &mut Ctx<'_>,
    file: &Arc<str>,
    value: &Value,
    config: &mut MeshConfig,
) -> Result<(), ConfigError> {
    let mut top = Fields::of(ctx, value, "")?;
    let api_version = top.required_string(ctx, "apiVersion")?;
    let kind_str = top.required_string(ctx, "kind")?;
    let kind = match kind_str.as_str() {
        "VirtualService" => Kind::VirtualService,
        "DestinationRule" => Kind::DestinationRule,
        "ServiceEntry" => Kind::ServiceEntry,
        "WorkloadEntry" => Kind::WorkloadEntry,
        "AuthorizationPolicy" => Kind::AuthorizationPolicy,
        "RequestAuthentication" => Kind::RequestAuthentication,
        "PeerAuthentication" => Kind::PeerAuthentication,
        _ => {
            ctx.warn(
                "kind",
                format!("kind `{api_version}/{kind_str}` not supported; document skipped"),
            );
            return Ok(());
        }
    };
    let versions = match kind {
        Kind::AuthorizationPolicy | Kind::RequestAuthentication | Kind::PeerAuthentication => {
            SECURITY_API_VERSIONS
        }
        _ => API_VERSIONS,
    };
    if !versions.contains(&api_version.as_str()) {
        ctx.warn(
            "apiVersion",
            format!("apiVersion `{api_version}` not supported for {kind}; document skipped"),
        );
        return Ok(());
    }
    ctx.resource = kind.to_string();
    let (name, namespace) = match top.take("metadata") {
        Some(v) => {
            let mut md = Fields::of(ctx, v, "metadata")?;
            let name = md.required_string(ctx, "name")?;
            let namespace = md
                .string(ctx, "namespace")?
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_string());
            md.ignore(&[
                "labels",
                "annotations",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
            ]);
            md.finish(ctx);
            (name, namespace)
        }
        None => return Err(ctx.invalid("metadata.name", "required")),
    };
    let meta = Meta {
        kind,
        name,
        namespace,
        file: file.clone(),
        line: ctx.line,
    };
    ctx.resource = meta.id();
    top.ignore(&["status"]);
    let spec_value = top.take("spec");
    top.finish(ctx);
    let Some(spec_value) = spec_value else {
        return Err(ctx.invalid("spec", "required"));
    };
    let spec = Fields::of(ctx, spec_value, "spec")?;
    match kind {
        Kind::VirtualService => config
            .virtual_services
            .push(virtual_service(ctx, meta, spec)?),
        Kind::DestinationRule => config
            .destination_rules
            .push(destination_rule(ctx, meta, spec)?),
        Kind::ServiceEntry => config.service_entries.push(service_entry(ctx, meta, spec)?),
        Kind::WorkloadEntry => config
            .workload_entries
            .push(workload_entry(ctx, meta, spec)?),
        Kind::AuthorizationPolicy => {
            if let Some(p) = super::authz::parse(ctx, meta, spec)? {
                config.authorization_policies.push(p);
            }
        }
        Kind::RequestAuthentication => config
            .request_authentications
            .push(super::request_authn::parse(ctx, meta, spec)?),
        Kind::PeerAuthentication => config
            .peer_authentications
            .push(super::peer_authn::parse(ctx, meta, spec)?),
    }
    Ok(())
}

fn virtual_service(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<VirtualService, ConfigError> {
    let hosts = spec.strings(ctx, "hosts")?;
    if hosts.is_empty() || hosts.iter().any(String::is_empty) {
        return Err(ctx.invalid("spec.hosts", "at least one non-empty host is required"));
    }
    let mut http = Vec::new();
    for (path, v) in spec.list(ctx, "http")? {
        if let Some(rule) = http_route(ctx, &path, v)? {
            http.push(rule);
        }
    }
    spec.finish(ctx);
    Ok(VirtualService { meta, hosts, http })
}

fn http_route(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<Option<HttpRoute>, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let name = f.string(ctx, "name")?;
    let mut matches = Vec::new();
    for (mpath, mv) in f.list(ctx, "match")? {
        matches.push(http_match(ctx, &mpath, mv)?);
    }
    let mut route = Vec::new();
    for (rpath, rv) in f.list(ctx, "route")? {
        route.push(destination(ctx, &rpath, rv)?);
    }
    let (fault, retries, timeout) = route_policies(ctx, path, &mut f)?;
    let headers = match f.take("headers") {
        Some(v) => super::rewrite::headers(ctx, &join(path, "headers"), v)?,
        None => Default::default(),
    };
    let rewrite = match f.take("rewrite") {
        Some(v) => super::rewrite::rewrite(ctx, &join(path, "rewrite"), v)?,
        None => Default::default(),
    };
    if rewrite.uri.is_some()
        && matches
            .iter()
            .any(|m: &HttpMatch| matches!(m.uri, Some(StringMatch::Regex(_))))
    {
        return Err(ctx.invalid(
            &join(path, "rewrite.uri"),
            "`uri` replaces a matched prefix or exact path; with a regex uri match use \
             `uriRegexRewrite`",
        ));
    }
    let has_other_action = ["redirect", "directResponse", "delegate"]
        .iter()
        .any(|k| f.has(k));
    f.finish(ctx);
    if route.is_empty() {
        if has_other_action {
            ctx.warn(
                path,
                "rule has no `route` (only unsupported actions); rule skipped",
            );
            return Ok(None);
        }
        return Err(ctx.invalid(&join(path, "route"), "at least one destination is required"));
    }
    if route.len() > 1 && route.iter().all(|d| d.weight.unwrap_or(0) == 0) {
        return Err(ctx.invalid(&join(path, "route"), "weights sum to 0"));
    }
    Ok(Some(HttpRoute {
        name,
        matches,
        route,
        fault,
        retries,
        timeout,
        headers,
        rewrite,
    }))
}

type RoutePolicies = (Option<Fault>, Option<Retries>, Option<std::time::Duration>);

/// `fault`, `retries` and `timeout` of one `spec.http[]` rule.
fn route_policies(
    ctx: &mut Ctx<'_>,
    path: &str,
    f: &mut Fields<'_>,
) -> Result<RoutePolicies, ConfigError> {
    let fault = match f.take("fault") {
        Some(v) => super::fault::parse(ctx, &join(path, "fault"), v)?,
        None => None,
    };
    let retries = match f.take("retries") {
        Some(v) => Some(super::retry::parse(ctx, &join(path, "retries"), v)?),
        None => None,
    };
    let timeout = match f.take("timeout") {
        Some(v) => Some(super::retry::parse_timeout(ctx, &join(path, "timeout"), v)?),
        None => None,
    };
    Ok((fault, retries, timeout))
}

fn http_match(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<HttpMatch, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let name = f.string(ctx, "name")?;
    let uri = match f.take("uri") {
        Some(u) => Some(string_match(ctx, &join(path, "uri"), u, false)?),
        None => None,
    };
    let ignore_uri_case = f.bool(ctx, "ignoreUriCase")?.unwrap_or(false);
    let headers = match_map(ctx, &mut f, "headers", true)?;
    let query_params = match_map(ctx, &mut f, "queryParams", false)?;
    f.finish(ctx);
    Ok(HttpMatch {
        name,
        uri,
        ignore_uri_case,
        headers,
        query_params,
    })
}

fn match_map(
    ctx: &mut Ctx<'_>,
    f: &mut Fields<'_>,
    key: &str,
    lowercase_keys: bool,
) -> Result<std::collections::BTreeMap<String, StringMatch>, ConfigError> {
    let path = f.field(key);
    let mut out = std::collections::BTreeMap::new();
    let Some(v) = f.take(key) else {
        return Ok(out);
    };
    let Value::Mapping(map) = v else {
        return Err(ctx.invalid(&path, "expected a mapping"));
    };
    for (k, mv) in map {
        let Some(name) = k.as_str().filter(|n| !n.is_empty()) else {
            return Err(ctx.invalid(&path, "names must be non-empty strings"));
        };
        let name = if lowercase_keys {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        };
        let m = string_match(ctx, &join(&path, &name), mv, true)?;
        out.insert(name, m);
    }
    Ok(out)
}

fn string_match(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Value,
    allow_present: bool,
) -> Result<StringMatch, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let exact = f.string(ctx, "exact")?;
    let prefix = f.string(ctx, "prefix")?;
    let regex = f.string(ctx, "regex")?;
    f.finish(ctx);
    let out = match (exact, prefix, regex) {
        (Some(e), None, None) => StringMatch::Exact(e),
        (None, Some(p), None) => StringMatch::Prefix(p),
        (None, None, Some(r)) => {
            if let Err(e) = regex::Regex::new(&format!("^(?:{r})$")) {
                return Err(ctx.invalid(&join(path, "regex"), format!("invalid regex: {e}")));
            }
            StringMatch::Regex(r)
        }
        (None, None, None) if allow_present => StringMatch::Present,
        (None, None, None) => {
            return Err(ctx.invalid(path, "one of `exact`, `prefix`, `regex` is required"))
        }
        _ => return Err(ctx.invalid(path, "only one of `exact`, `prefix`, `regex` may be set")),
    };
    Ok(out)
}

fn destination(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<RouteDestination, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let weight = f.int(ctx, "weight", 0, i64::from(i32::MAX))?;
    let dpath = join(path, "destination");
    let Some(dv) = f.take("destination") else {
        return Err(ctx.invalid(&dpath, "required"));
    };
    f.finish(ctx);
    let mut d = Fields::of(ctx, dv, &dpath)?;
    let host = d.required_string(ctx, "host")?;
    let subset = d.string(ctx, "subset")?.filter(|s| !s.is_empty());
    let port = match d.take("port") {
        Some(pv) => {
            let mut p = Fields::of(ctx, pv, &join(&dpath, "port"))?;
            let n = p.int(ctx, "number", 1, 65535)?;
            p.finish(ctx);
            n.map(|n| n as u32)
        }
        None => None,
    };
    d.finish(ctx);
    Ok(RouteDestination {
        host,
        subset,
        port,
        weight: weight.map(|w| w as u32),
    })
}

fn destination_rule(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<DestinationRule, ConfigError> {
    let host = spec.required_string(ctx, "host")?;
    let (lb, max_requests, resilience, tls) = traffic_policy(ctx, &mut spec)?;
    let mut subsets = Vec::new();
    for (path, v) in spec.list(ctx, "subsets")? {
        let mut f = Fields::of(ctx, v, &path)?;
        let name = f.required_string(ctx, "name")?;
        let labels = f.string_map(ctx, "labels")?;
        let (lb, max_requests, resilience, tls) = traffic_policy(ctx, &mut f)?;
        f.finish(ctx);
        if subsets.iter().any(|s: &Subset| s.name == name) {
            return Err(ctx.invalid(&join(&path, "name"), format!("duplicate subset `{name}`")));
        }
        subsets.push(Subset {
            name,
            labels,
            load_balancer: lb.load_balancer,
            warmup: lb.warmup,
            locality_weighted: lb.locality_weighted,
            locality_lb: lb.locality_lb,
            max_requests,
            resilience,
            tls,
        });
    }
    // istiod applies failover only with outlier detection (otherwise a client would never
    // see a level fail); validation warns, as istiod's does.
    let needs_od = |l: &Option<LocalityLbSetting>| {
        l.as_ref().is_some_and(|l| {
            l.is_enabled() && (!l.failover.is_empty() || !l.failover_priority.is_empty())
        })
    };
    let rule_od = resilience.outlier_detection.is_some();
    if needs_od(&lb.locality_lb) && !rule_od {
        ctx.warn(
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "failover needs outlierDetection; ignored without it",
        );
    }
    for (i, s) in subsets.iter().enumerate() {
        if needs_od(&s.locality_lb) && !rule_od && s.resilience.outlier_detection.is_none() {
            ctx.warn(
                &format!("spec.subsets[{i}].trafficPolicy.loadBalancer.localityLbSetting"),
                "failover needs outlierDetection; ignored without it",
            );
        }
    }
    spec.finish(ctx);
    Ok(DestinationRule {
        meta,
        host,
        load_balancer: lb.load_balancer,
        warmup: lb.warmup,
        locality_weighted: lb.locality_weighted,
        locality_lb: lb.locality_lb,
        max_requests,
        resilience,
        subsets,
        tls,
    })
}

/// `trafficPolicy`: the load balancer ([`super::load_balancer`]), `connectionPool`
/// (`http.http2MaxRequests` — the only setting istiod gives proxyless clients,
/// istio/istio#58052 — plus `tcp.maxConnections`, `http.http1MaxPendingRequests`,
/// `http.maxRetries`), `outlierDetection` (see [`super::outlier`]) and `tls` /
/// `portLevelSettings[].tls` (see [`super::tls`]); other settings are reported as unsupported
/// fields.
fn traffic_policy(
    ctx: &mut Ctx<'_>,
    parent: &mut Fields<'_>,
) -> Result<
    (
        super::load_balancer::Parsed,
        Option<u32>,
        Resilience,
        TlsPolicy,
    ),
    ConfigError,
> {
    let path = parent.field("trafficPolicy");
    let mut resilience = Resilience::default();
    let Some(v) = parent.take("trafficPolicy") else {
        return Ok((Default::default(), None, resilience, TlsPolicy::default()));
    };
    let mut tp = Fields::of(ctx, v, &path)?;
    let lb_path = tp.field("loadBalancer");
    let out = match tp.take("loadBalancer") {
        Some(lbv) => super::load_balancer::parse(ctx, &lb_path, lbv)?,
        None => Default::default(),
    };
    let mut max_requests = None;
    let pool_path = tp.field("connectionPool");
    if let Some(pv) = tp.take("connectionPool") {
        let mut pool = Fields::of(ctx, pv, &pool_path)?;
        let http_path = pool.field("http");
        if let Some(hv) = pool.take("http") {
            let mut http = Fields::of(ctx, hv, &http_path)?;
            max_requests = http
                .int(ctx, "http2MaxRequests", 1, i64::from(u32::MAX))?
                .map(|n| n as u32);
            super::outlier::http_pool(ctx, &mut http, &mut resilience)?;
            http.finish(ctx);
        }
        let tcp_path = pool.field("tcp");
        if let Some(tv) = pool.take("tcp") {
            super::outlier::tcp_pool(ctx, tv, &tcp_path, &mut resilience)?;
        }
        pool.finish(ctx);
    }
    let od_path = tp.field("outlierDetection");
    if let Some(ov) = tp.take("outlierDetection") {
        resilience.outlier_detection = Some(super::outlier::outlier_detection(ctx, ov, &od_path)?);
    }
    let tls = super::tls::traffic_policy_tls(ctx, &mut tp)?;
    tp.finish(ctx);
    Ok((out, max_requests, resilience, tls))
}

fn service_entry(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<ServiceEntry, ConfigError> {
    let hosts = spec.strings(ctx, "hosts")?;
    if hosts.is_empty() || hosts.iter().any(String::is_empty) {
        return Err(ctx.invalid("spec.hosts", "at least one non-empty host is required"));
    }
    for (i, host) in hosts.iter().enumerate() {
        if let Err(reason) = dns_name(host) {
            return Err(ctx.invalid(
                &format!("spec.hosts[{i}]"),
                format!("`{host}` is not a DNS name: {reason}"),
            ));
        }
    }
    let mut ports: Vec<ServicePort> = Vec::new();
    for (path, v) in spec.list(ctx, "ports")? {
        let mut f = Fields::of(ctx, v, &path)?;
        let Some(number) = f.int(ctx, "number", 1, 65535)? else {
            return Err(ctx.invalid(&join(&path, "number"), "required"));
        };
        let number = number as u32;
        let name = f.string(ctx, "name")?.unwrap_or_else(|| number.to_string());
        let protocol = f.string(ctx, "protocol")?.unwrap_or_default();
        let target_port = f.int(ctx, "targetPort", 1, 65535)?.map(|p| p as u32);
        f.finish(ctx);
        if ports.iter().any(|p| p.number == number) {
            return Err(ctx.invalid(&join(&path, "number"), format!("duplicate port {number}")));
        }
        ports.push(ServicePort {
            number,
            name,
            protocol,
            target_port,
        });
    }
    if ports.is_empty() {
        return Err(ctx.invalid("spec.ports", "at least one port is required"));
    }
    let mut endpoints = Vec::new();
    for (path, v) in spec.list(ctx, "endpoints")? {
        let mut f = Fields::of(ctx, v, &path)?;
        let address = ip_address(ctx, &mut f, "address")?;
        let ports = f.port_map(ctx, "ports")?;
        let labels = f.string_map(ctx, "labels")?;
        let locality = super::locality::endpoint_locality(ctx, &mut f, "locality")?;
        f.finish(ctx);
        endpoints.push(InlineEndpoint {
            address,
            ports,
            labels,
            locality,
        });
    }
    let workload_selector = match spec.take("workloadSelector") {
        Some(v) => {
            let mut f = Fields::of(ctx, v, "spec.workloadSelector")?;
            let labels = f.string_map(ctx, "labels")?;
            f.finish(ctx);
            Some(labels)
        }
        None => None,
    };
    if let Some(resolution) = spec.string(ctx, "resolution")? {
        if resolution != "STATIC" {
            ctx.warn(
                "spec.resolution",
                format!("resolution `{resolution}` not supported; treated as STATIC"),
            );
        }
    }
    spec.finish(ctx);
    Ok(ServiceEntry {
        meta,
        hosts,
        ports,
        endpoints,
        workload_selector,
    })
}

fn workload_entry(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<WorkloadEntry, ConfigError> {
    let address = ip_address(ctx, &mut spec, "address")?;
    let labels = spec.string_map(ctx, "labels")?;
    let service_account = spec.string(ctx, "serviceAccount")?;
    let ports = spec.port_map(ctx, "ports")?;
    let locality = super::locality::endpoint_locality(ctx, &mut spec, "locality")?;
    spec.finish(ctx);
    Ok(WorkloadEntry {
        meta,
        address,
        labels,
        service_account,
        ports,
        locality,
    })
}

/// An endpoint address must be an IP address: every service is resolved STATIC (other
/// resolutions are warned about and treated as STATIC), and EDS carries socket addresses that
/// gRPC's clients and mesh-core parse as IPs — a host name there would get the whole
/// ClusterLoadAssignment NACKed (Istio's own validation rejects a non-IP endpoint of a STATIC
/// ServiceEntry the same way).
fn ip_address(ctx: &Ctx<'_>, fields: &mut Fields<'_>, key: &str) -> Result<String, ConfigError> {
    let address = fields.required_string(ctx, key)?;
    match address.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(address),
        Err(_) => Err(ctx.invalid(
            &fields.field(key),
            format!("`{address}` is not an IP address (only STATIC resolution is supported)"),
        )),
    }
}

/// A ServiceEntry host becomes a listener name, a virtual-host domain and part of cluster
/// names, so it must be a plain DNS name (RFC 1123: dot-separated labels of letters, digits and
/// `-`, 1–63 characters each, no `-` at either end, 253 characters at most). Wildcard hosts
/// (`*.example.com`, which Istio allows for sidecars) are refused: a proxyless client dials one
/// name, and a `*` inside a domain is rejected by mesh-core and gRPC alike.
fn dns_name(host: &str) -> Result<(), &'static str> {
    if host.len() > 253 {
        return Err("longer than 253 characters");
    }
    if host.contains('*') {
        return Err("wildcard hosts are not supported");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, `-` and `.` are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with `-`");
        }
    }
    Ok(())
}
