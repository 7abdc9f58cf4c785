//! `AuthorizationPolicy` (`security.istio.io/v1`, `v1beta1`; istio/api
//! `security/v1beta1/authorization_policy.proto`), parsed and validated field by field.
//!
//! Supported: `selector.matchLabels` (absent ⇒ every workload of the namespace; in the root
//! namespace [`ROOT_NAMESPACE`] ⇒ every workload of the mesh), `action` ALLOW / DENY, `rules[]`
//! with `from[].source` (principals, requestPrincipals, namespaces, serviceAccounts, ipBlocks,
//! remoteIpBlocks and each `not*` form), `to[].operation` (hosts, ports, methods, paths and `not*`) and `when[]`
//! (`request.headers[…]`, `source.ip`, `remote.ip`, `source.namespace`, `source.principal`,
//! `source.serviceAccount`,
//! `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`,
//! `request.auth.claims[…]…`, `destination.ip`, `destination.port`, `connection.sni`).
//!
//! Refused (the load fails, naming the field): any field of a rule this module does not read
//! (ignoring it would widen an ALLOW rule), `action: CUSTOM` (an external authorizer we do
//! not run — skipping it would leave the workload open), `targetRef(s)`, path templates
//! (`{*}`, `{**}`), `experimental.*` condition keys, and malformed values. `action: AUDIT` is
//! skipped with a warning: it never changes a decision, and istiod's proxyless generator does not
//! emit it either (XDS-SEMANTICS.md row 34).

use serde_yaml_ng::Value;

use super::model::{Labels, Meta};
use super::yaml::{join, Ctx, Fields};
use super::ConfigError;

/// The mesh's root namespace: policies there apply to every workload (Istio's default).
pub const ROOT_NAMESPACE: &str = "istio-system";

/// An `AuthorizationPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    /// Identity and origin.
    pub meta: Meta,
    /// `selector.matchLabels`; `None` selects every workload in scope.
    pub selector: Option<Labels>,
    /// ALLOW or DENY.
    pub action: AuthzAction,
    /// The rules; a request matching any rule matches the policy. An ALLOW policy without rules
    /// matches nothing (it denies everything it selects).
    pub rules: Vec<AuthzRule>,
}

/// `AuthorizationPolicy.action` (the ones enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzAction {
    /// Requests must match some ALLOW policy (when the workload has any).
    Allow,
    /// A request matching a DENY policy is denied.
    Deny,
}

/// One `rules[]` entry: every non-empty part must match (`from` and `to` are OR-lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzRule {
    /// `from[].source`.
    pub from: Vec<Source>,
    /// `to[].operation`.
    pub to: Vec<Operation>,
    /// `when[]`.
    pub when: Vec<Condition>,
}

/// `Source`: every set field must match; values within a field are OR-ed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// `principals` / `notPrincipals` (`td/ns/NS/sa/SA`, `*` prefix/suffix wildcards).
    pub principals: Values,
    /// `requestPrincipals` / `notRequestPrincipals` (`iss/sub`).
    pub request_principals: Values,
    /// `namespaces` / `notNamespaces`.
    pub namespaces: Values,
    /// `serviceAccounts` / `notServiceAccounts`, normalized to `namespace/name` (a bare `name`
    /// is in the policy's namespace, as istiod's `serviceAccountRegex` reads it).
    pub service_accounts: Values,
    /// `ipBlocks` / `notIpBlocks` (peer address, CIDR or IP).
    pub ip_blocks: Values,
    /// `remoteIpBlocks` / `notRemoteIpBlocks` (same as the peer address here: no proxy headers).
    pub remote_ip_blocks: Values,
}

/// `Operation`: every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operation {
    /// `hosts` / `notHosts` (case-insensitive, `*` wildcards).
    pub hosts: Values,
    /// `ports` / `notPorts`.
    pub ports: Values,
    /// `methods` / `notMethods` (gRPC: always `POST`).
    pub methods: Values,
    /// `paths` / `notPaths` (gRPC: `/package.Service/Method`).
    pub paths: Values,
}

/// A field and its `not*` twin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// Any of these must match (when non-empty).
    pub values: Vec<String>,
    /// None of these may match.
    pub not_values: Vec<String>,
}

impl Values {
    /// True when neither list has anything.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.not_values.is_empty()
    }
}

/// `Condition`: `key` with `values` / `notValues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The attribute, parsed.
    pub key: ConditionKey,
    /// The values.
    pub values: Values,
}

/// The supported `when.key`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.headers[NAME]` (name lowercased).
    RequestHeader(String),
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.serviceAccount` (values normalized to `namespace/name`).
    SourceServiceAccount,
    /// `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`: the key
    /// in Istio's `istio_authn` metadata.
    RequestAuth(&'static str),
    /// `request.auth.claims[a][b]…`: the claim path.
    RequestAuthClaim(Vec<String>),
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
}

/// Parses the `spec` of an AuthorizationPolicy; `None` when it is skipped (AUDIT).
pub(crate) fn parse(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<Option<AuthorizationPolicy>, ConfigError> {
    for key in ["targetRef", "targetRefs"] {
        if spec.has(key) {
            return Err(ctx.invalid(
                &spec.field(key),
                "targetRef(s) not supported; select workloads with `selector.matchLabels`",
            ));
        }
    }
    let selector = match spec.take("selector") {
        Some(v) => {
            let mut f = Fields::of(ctx, v, "spec.selector")?;
            let labels = f.string_map(ctx, "matchLabels")?;
            f.finish_strict(ctx)?;
            Some(labels)
        }
        None => None,
    };
    let action = match spec.string(ctx, "action")?.as_deref() {
        None | Some("ALLOW") => AuthzAction::Allow,
        Some("DENY") => AuthzAction::Deny,
        Some("AUDIT") => {
            spec.ignore(&["rules", "provider"]);
            spec.finish(ctx);
            ctx.warn(
                "spec.action",
                "AUDIT never changes a decision and is not enforced here; policy skipped",
            );
            return Ok(None);
        }
        Some("CUSTOM") => {
            return Err(ctx.invalid(
                "spec.action",
                "CUSTOM (external authorization) is not supported",
            ))
        }
        Some(other) => return Err(ctx.invalid("spec.action", format!("unknown action `{other}`"))),
    };
    let mut rules = Vec::new();
    for (path, v) in spec.list(ctx, "rules")? {
        rules.push(rule(ctx, &path, v, &meta.namespace)?);
    }
    spec.finish(ctx);
    Ok(Some(AuthorizationPolicy {
        meta,
        selector,
        action,
        rules,
    }))
}

fn rule(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Value,
    namespace: &str,
) -> Result<AuthzRule, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mut out = AuthzRule::default();
    for (p, fv) in f.list(ctx, "from")? {
        let mut from = Fields::of(ctx, fv, &p)?;
        let sp = join(&p, "source");
        let Some(sv) = from.take("source") else {
            return Err(ctx.invalid(&sp, "required"));
        };
        from.finish_strict(ctx)?;
        let mut s = Fields::of(ctx, sv, &sp)?;
        let sas = values(ctx, &mut s, "serviceAccounts", Kind::Text)?;
        let src = Source {
            principals: values(ctx, &mut s, "principals", Kind::Text)?,
            request_principals: values(ctx, &mut s, "requestPrincipals", Kind::Text)?,
            namespaces: values(ctx, &mut s, "namespaces", Kind::Text)?,
            service_accounts: service_accounts(ctx, &sp, sas, namespace)?,
            ip_blocks: values(ctx, &mut s, "ipBlocks", Kind::Cidr)?,
            remote_ip_blocks: values(ctx, &mut s, "remoteIpBlocks", Kind::Cidr)?,
        };
        s.finish_strict(ctx)?;
        if src == Source::default() {
            return Err(ctx.invalid(&sp, "must set at least one field"));
        }
        out.from.push(src);
    }
    for (p, tv) in f.list(ctx, "to")? {
        let mut to = Fields::of(ctx, tv, &p)?;
        let op_path = join(&p, "operation");
        let Some(ov) = to.take("operation") else {
            return Err(ctx.invalid(&op_path, "required"));
        };
        to.finish_strict(ctx)?;
        let mut o = Fields::of(ctx, ov, &op_path)?;
        let op = Operation {
            hosts: values(ctx, &mut o, "hosts", Kind::Text)?,
            ports: values(ctx, &mut o, "ports", Kind::Port)?,
            methods: values(ctx, &mut o, "methods", Kind::Text)?,
            paths: values(ctx, &mut o, "paths", Kind::Path)?,
        };
        o.finish_strict(ctx)?;
        if op == Operation::default() {
            return Err(ctx.invalid(&op_path, "must set at least one field"));
        }
        out.to.push(op);
    }
    for (p, wv) in f.list(ctx, "when")? {
        let mut w = Fields::of(ctx, wv, &p)?;
        let raw = w.required_string(ctx, "key")?;
        let key = condition_key(ctx, &join(&p, "key"), &raw)?;
        let kind = match key {
            ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                Kind::Cidr
            }
            ConditionKey::DestinationPort => Kind::Port,
            _ => Kind::Text,
        };
        let mut vals = Values {
            values: list(ctx, &mut w, "values", kind)?,
            not_values: list(ctx, &mut w, "notValues", kind)?,
        };
        if key == ConditionKey::SourceServiceAccount {
            vals = service_accounts(ctx, &p, vals, namespace)?;
        }
        w.finish_strict(ctx)?;
        if vals.is_empty() {
            return Err(ctx.invalid(&p, "one of `values` or `notValues` must be non-empty"));
        }
        out.when.push(Condition { key, values: vals });
    }
    f.finish_strict(ctx)?;
    Ok(out)
}

/// `serviceAccounts` values: `name` (in `namespace`) or `namespace/name`, normalized to
/// `namespace/name`; anything else (more slashes, empty parts, wildcards istiod's regex would
/// take literally) is refused naming the field.
fn service_accounts(
    ctx: &Ctx<'_>,
    path: &str,
    v: Values,
    namespace: &str,
) -> Result<Values, ConfigError> {
    let norm = |list: Vec<String>| -> Result<Vec<String>, ConfigError> {
        list.into_iter()
            .map(|value| {
                let (ns, sa) = value.split_once('/').unwrap_or((namespace, &value));
                let ok = |s: &str| !s.is_empty() && !s.contains(['/', '*']);
                if ok(ns) && ok(sa) {
                    Ok(format!("{ns}/{sa}"))
                } else {
                    Err(ctx.invalid(
                        path,
                        format!("service account `{value}`: expected `name` or `namespace/name`"),
                    ))
                }
            })
            .collect()
    };
    Ok(Values {
        values: norm(v.values)?,
        not_values: norm(v.not_values)?,
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Cidr,
    Port,
    Path,
}

/// `key` and `notKey` (e.g. `paths`, `notPaths`).
fn values(
    ctx: &mut Ctx<'_>,
    f: &mut Fields<'_>,
    key: &str,
    kind: Kind,
) -> Result<Values, ConfigError> {
    let mut chars = key.chars();
    let not_key = match chars.next() {
        Some(c) => format!("not{}{}", c.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    };
    Ok(Values {
        values: list(ctx, f, key, kind)?,
        not_values: list(ctx, f, &not_key, kind)?,
    })
}

fn list(
    ctx: &mut Ctx<'_>,
    f: &mut Fields<'_>,
    key: &str,
    kind: Kind,
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (p, v) in f.list(ctx, key)? {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) if matches!(kind, Kind::Port) => n.to_string(),
            _ => return Err(ctx.invalid(&p, "expected a string")),
        };
        check_value(ctx, &p, &s, kind)?;
        out.push(s);
    }
    Ok(out)
}

fn check_value(ctx: &Ctx<'_>, path: &str, s: &str, kind: Kind) -> Result<(), ConfigError> {
    if s.is_empty() {
        return Err(ctx.invalid(path, "must not be empty"));
    }
    match kind {
        Kind::Text | Kind::Path => {
            if s.len() > 1 && s[1..s.len() - 1].contains('*') {
                return Err(ctx.invalid(
                    path,
                    format!("`{s}`: `*` is only supported as a prefix, a suffix or alone"),
                ));
            }
            if matches!(kind, Kind::Path) && (s.contains('{') || s.contains('}')) {
                return Err(ctx.invalid(path, format!("`{s}`: path templates are not supported")));
            }
        }
        Kind::Port => {
            if !s.parse::<u16>().is_ok_and(|p| p != 0) {
                return Err(ctx.invalid(path, format!("`{s}` is not a port (1-65535)")));
            }
        }
        Kind::Cidr => {
            if parse_cidr(s).is_none() {
                return Err(ctx.invalid(path, format!("`{s}` is not an IP address or CIDR")));
            }
        }
    }
    Ok(())
}

/// `1.2.3.4` (a /32 or /128) or `10.0.0.0/8` → `(address, prefix length)`.
pub(crate) fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u32)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u32>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((ip, len))
}

fn condition_key(ctx: &Ctx<'_>, path: &str, key: &str) -> Result<ConditionKey, ConfigError> {
    let bracketed = |rest: &str| -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            let inner = rest.strip_prefix('[')?;
            let (name, tail) = inner.split_once(']')?;
            if name.is_empty() {
                return None;
            }
            out.push(name.to_string());
            rest = tail;
        }
        (!out.is_empty()).then_some(out)
    };
    let bad = || ctx.invalid(path, format!("unsupported condition key `{key}`"));
    Ok(match key {
        "source.ip" => ConditionKey::SourceIp,
        "remote.ip" => ConditionKey::RemoteIp,
        "source.namespace" => ConditionKey::SourceNamespace,
        "source.principal" => ConditionKey::SourcePrincipal,
        "source.serviceAccount" => ConditionKey::SourceServiceAccount,
        "request.auth.principal" => ConditionKey::RequestAuth("request.auth.principal"),
        "request.auth.audiences" => ConditionKey::RequestAuth("request.auth.audiences"),
        "request.auth.presenter" => ConditionKey::RequestAuth("request.auth.presenter"),
        "destination.ip" => ConditionKey::DestinationIp,
        "destination.port" => ConditionKey::DestinationPort,
        "connection.sni" => ConditionKey::ConnectionSni,
        _ => {
            if let Some(rest) = key.strip_prefix("request.headers") {
                match bracketed(rest) {
                    Some(v) if v.len() == 1 => {
                        let name = v[0].to_lowercase();
                        if name.starts_with("grpc-") || name == ":scheme" {
                            return Err(ctx.invalid(
                                path,
                                format!("header `{name}` cannot be matched (gRFC A41)"),
                            ));
                        }
                        ConditionKey::RequestHeader(name)
                    }
                    _ => return Err(bad()),
                }
            } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                ConditionKey::RequestAuthClaim(bracketed(rest).ok_or_else(bad)?)
            } else {
                return Err(bad());
            }
        }
    })
}
