//! The RBAC HTTP filter (`envoy.extensions.filters.http.rbac.v3.RBAC`, `config/rbac/v3/rbac.proto`)
//! validated the way gRFC A41 has gRPC servers do it (XDS-SEMANTICS.md row 34):
//!
//! - `Policy.condition` / `checked_condition` / `cel_config` (CEL) ⇒ unsupported (NACK).
//! - a `header` matcher on a `grpc-`-prefixed name or on `:scheme` ⇒ invalid (NACK).
//! - `matcher` (the matcher-tree form of the filter) and `Permission.matcher` / `uri_template` /
//!   `sourced_metadata` extensions ⇒ unsupported.
//! - `shadow_rules` / `shadow_matcher` never change a decision and are ignored.
//! - no `rules` ⇒ the filter enforces nothing (Envoy).
//!
//! `source_ip`, `direct_remote_ip` and `remote_ip` all become the connection's peer address
//! (A41; we support neither PROXY protocol nor `xff_num_trusted_hops`).

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange as CidrProto;
use envoy_types::pb::envoy::config::rbac::v3::{
    permission::Rule, principal::Identifier, rbac::Action, Permission as PermissionProto,
    Policy as PolicyProto, Principal as PrincipalProto, Rbac as RbacProto,
};
use envoy_types::pb::envoy::config::route::v3::HeaderMatcher as HeaderProto;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilterProto;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher, metadata_matcher::path_segment::Segment, path_matcher, value_matcher,
    MetadataMatcher as MetadataProto, PathMatcher, ValueMatcher,
};

use super::matcher::{header_matcher, string_matcher};
use super::{Ctx, Path};
use crate::model::{
    CidrRange, HeaderMatcher, MetadataMatcher, ModelError, Permission, Principal, Rbac, RbacAction,
    RbacPolicy, StringMatcher, ValueMatch,
};

/// `envoy.extensions.filters.http.rbac.v3.RBAC`.
pub(crate) const RBAC: &str = "envoy.extensions.filters.http.rbac.v3.RBAC";

/// Nesting deeper than this is rejected rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 64;

/// The HTTP filter config: `None` when it has no `rules` (nothing enforced).
pub(crate) fn rbac_filter(
    cx: &Ctx<'_>,
    path: &Path,
    proto: RbacFilterProto,
) -> Result<Option<Rbac>, ModelError> {
    if proto.matcher.is_some() {
        return Err(cx.unsupported(
            &path.field("matcher"),
            "the matcher form of the rbac filter is not supported; use rules",
        ));
    }
    match proto.rules {
        None => Ok(None),
        Some(rules) => rbac(cx, &path.field("rules"), rules).map(Some),
    }
}

/// `envoy.config.rbac.v3.RBAC`.
pub(crate) fn rbac(cx: &Ctx<'_>, path: &Path, proto: RbacProto) -> Result<Rbac, ModelError> {
    let action = match Action::try_from(proto.action) {
        Ok(Action::Allow) => RbacAction::Allow,
        Ok(Action::Deny) => RbacAction::Deny,
        Ok(Action::Log) => RbacAction::Log,
        Err(_) => {
            return Err(cx.invalid(
                &path.field("action"),
                format!("unknown action {}", proto.action),
            ))
        }
    };
    let mut named: Vec<(String, PolicyProto)> = proto.policies.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut policies = Vec::with_capacity(named.len());
    for (name, p) in named {
        let pp = path.field(&format!("policies[{name}]"));
        policies.push(policy(cx, &pp, name, p)?);
    }
    Ok(Rbac {
        action,
        policies: policies.into(),
    })
}

fn policy(
    cx: &Ctx<'_>,
    path: &Path,
    name: String,
    p: PolicyProto,
) -> Result<RbacPolicy, ModelError> {
    if p.condition.is_some() || p.checked_condition.is_some() || p.cel_config.is_some() {
        return Err(cx.unsupported(
            &path.field("condition"),
            "CEL conditions are not supported (gRFC A41)",
        ));
    }
    if p.permissions.is_empty() {
        return Err(cx.invalid(&path.field("permissions"), "must not be empty"));
    }
    if p.principals.is_empty() {
        return Err(cx.invalid(&path.field("principals"), "must not be empty"));
    }
    let permissions = p
        .permissions
        .iter()
        .enumerate()
        .map(|(i, x)| permission(cx, &path.index("permissions", i), x, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let principals = p
        .principals
        .iter()
        .enumerate()
        .map(|(i, x)| principal(cx, &path.index("principals", i), x, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RbacPolicy {
        name: name.into(),
        permissions: permissions.into(),
        principals: principals.into(),
    })
}

fn depth_check(cx: &Ctx<'_>, path: &Path, depth: usize) -> Result<(), ModelError> {
    if depth > MAX_DEPTH {
        Err(cx.invalid(path, format!("nested deeper than {MAX_DEPTH} levels")))
    } else {
        Ok(())
    }
}

#[allow(deprecated)]
fn permission(
    cx: &Ctx<'_>,
    path: &Path,
    p: &PermissionProto,
    depth: usize,
) -> Result<Permission, ModelError> {
    depth_check(cx, path, depth)?;
    let set = |field: &str, rules: &[PermissionProto]| {
        let sp = path.field(field);
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| permission(cx, &sp.index("rules", i), r, depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::Any(false)) => return Err(cx.invalid(&path.field("any"), "must be true")),
        Some(Rule::AndRules(s)) => Permission::And(set("and_rules", &s.rules)?.into()),
        Some(Rule::OrRules(s)) => Permission::Or(set("or_rules", &s.rules)?.into()),
        Some(Rule::NotRule(inner)) => Permission::Not(Box::new(permission(
            cx,
            &path.field("not_rule"),
            inner,
            depth + 1,
        )?)),
        Some(Rule::Header(h)) => Permission::Header(header(cx, &path.field("header"), h)?),
        Some(Rule::UrlPath(pm)) => Permission::UrlPath(url_path(cx, &path.field("url_path"), pm)?),
        Some(Rule::DestinationIp(c)) => {
            Permission::DestinationIp(cidr(cx, &path.field("destination_ip"), c)?)
        }
        Some(Rule::DestinationPort(port)) => {
            if *port > 65535 {
                return Err(cx.invalid(&path.field("destination_port"), "must be ≤ 65535"));
            }
            Permission::DestinationPort(*port)
        }
        Some(Rule::DestinationPortRange(r)) => Permission::DestinationPortRange {
            start: r.start.clamp(0, 65536) as u32,
            end: r.end.clamp(0, 65536) as u32,
        },
        Some(Rule::Metadata(m)) => Permission::Metadata(metadata(cx, &path.field("metadata"), m)?),
        Some(Rule::RequestedServerName(sm)) => Permission::RequestedServerName(string_matcher(
            cx,
            &path.field("requested_server_name"),
            sm,
        )?),
        Some(Rule::Matcher(_)) | Some(Rule::UriTemplate(_)) | Some(Rule::SourcedMetadata(_)) => {
            return Err(cx.unsupported(path, "permission extension not supported"))
        }
        None => return Err(cx.invalid(path, "no rule set")),
    })
}

#[allow(deprecated)]
fn principal(
    cx: &Ctx<'_>,
    path: &Path,
    p: &PrincipalProto,
    depth: usize,
) -> Result<Principal, ModelError> {
    depth_check(cx, path, depth)?;
    let set = |field: &str, ids: &[PrincipalProto]| {
        let sp = path.field(field);
        ids.iter()
            .enumerate()
            .map(|(i, r)| principal(cx, &sp.index("ids", i), r, depth + 1))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match &p.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::Any(false)) => return Err(cx.invalid(&path.field("any"), "must be true")),
        Some(Identifier::AndIds(s)) => Principal::And(set("and_ids", &s.ids)?.into()),
        Some(Identifier::OrIds(s)) => Principal::Or(set("or_ids", &s.ids)?.into()),
        Some(Identifier::NotId(inner)) => Principal::Not(Box::new(principal(
            cx,
            &path.field("not_id"),
            inner,
            depth + 1,
        )?)),
        Some(Identifier::Authenticated(a)) => Principal::Authenticated(match &a.principal_name {
            None => None,
            Some(sm) => Some(string_matcher(
                cx,
                &path.field("authenticated").field("principal_name"),
                sm,
            )?),
        }),
        Some(Identifier::SourceIp(c)) => {
            Principal::SourceIp(cidr(cx, &path.field("source_ip"), c)?)
        }
        Some(Identifier::DirectRemoteIp(c)) => {
            Principal::SourceIp(cidr(cx, &path.field("direct_remote_ip"), c)?)
        }
        Some(Identifier::RemoteIp(c)) => {
            Principal::SourceIp(cidr(cx, &path.field("remote_ip"), c)?)
        }
        Some(Identifier::Header(h)) => Principal::Header(header(cx, &path.field("header"), h)?),
        Some(Identifier::UrlPath(pm)) => {
            Principal::UrlPath(url_path(cx, &path.field("url_path"), pm)?)
        }
        Some(Identifier::Metadata(m)) => {
            Principal::Metadata(metadata(cx, &path.field("metadata"), m)?)
        }
        Some(_) => return Err(cx.unsupported(path, "principal extension not supported")),
        None => return Err(cx.invalid(path, "no identifier set")),
    })
}

/// A41: header matchers on `grpc-*` or `:scheme` are a validation failure.
fn header(cx: &Ctx<'_>, path: &Path, h: &HeaderProto) -> Result<HeaderMatcher, ModelError> {
    let m = header_matcher(cx, path, h)?;
    if m.name.starts_with("grpc-") || &*m.name == ":scheme" {
        return Err(cx.invalid(
            &path.field("name"),
            format!("header `{}` cannot be matched by rbac (gRFC A41)", m.name),
        ));
    }
    Ok(m)
}

fn url_path(cx: &Ctx<'_>, path: &Path, pm: &PathMatcher) -> Result<StringMatcher, ModelError> {
    match &pm.rule {
        Some(path_matcher::Rule::Path(sm)) => string_matcher(cx, &path.field("path"), sm),
        None => Err(cx.invalid(&path.field("path"), "missing")),
    }
}

pub(super) fn cidr(cx: &Ctx<'_>, path: &Path, c: &CidrProto) -> Result<CidrRange, ModelError> {
    let address: IpAddr = c.address_prefix.parse().map_err(|_| {
        cx.invalid(
            &path.field("address_prefix"),
            format!("`{}` is not an IP address", c.address_prefix),
        )
    })?;
    let len = c.prefix_len.map(|v| v.value).unwrap_or(0);
    u8::try_from(len)
        .ok()
        .and_then(|len| CidrRange::new(address, len))
        .ok_or_else(|| {
            cx.invalid(
                &path.field("prefix_len"),
                format!("{len} is too long for {address}"),
            )
        })
}

fn metadata(cx: &Ctx<'_>, path: &Path, m: &MetadataProto) -> Result<MetadataMatcher, ModelError> {
    if m.filter.is_empty() {
        return Err(cx.invalid(&path.field("filter"), "must not be empty"));
    }
    if m.path.is_empty() {
        return Err(cx.invalid(&path.field("path"), "must not be empty"));
    }
    let mut keys = Vec::with_capacity(m.path.len());
    for (i, seg) in m.path.iter().enumerate() {
        match &seg.segment {
            Some(Segment::Key(k)) if !k.is_empty() => keys.push(k.as_str().into()),
            _ => return Err(cx.invalid(&path.index("path", i).field("key"), "must not be empty")),
        }
    }
    let value = m
        .value
        .as_ref()
        .ok_or_else(|| cx.invalid(&path.field("value"), "missing"))?;
    Ok(MetadataMatcher {
        filter: m.filter.as_str().into(),
        path: keys.into(),
        value: value_match(cx, &path.field("value"), value, 0)?,
        invert: m.invert,
    })
}

fn value_match(
    cx: &Ctx<'_>,
    path: &Path,
    v: &ValueMatcher,
    depth: usize,
) -> Result<ValueMatch, ModelError> {
    depth_check(cx, path, depth)?;
    use value_matcher::MatchPattern as P;
    Ok(match &v.match_pattern {
        Some(P::NullMatch(_)) => ValueMatch::Null,
        Some(P::StringMatch(sm)) => {
            ValueMatch::String(string_matcher(cx, &path.field("string_match"), sm)?)
        }
        Some(P::BoolMatch(b)) => ValueMatch::Bool(*b),
        Some(P::PresentMatch(b)) => ValueMatch::Present(*b),
        Some(P::ListMatch(l)) => match &l.match_pattern {
            Some(list_matcher::MatchPattern::OneOf(inner)) => {
                ValueMatch::ListOneOf(Box::new(value_match(
                    cx,
                    &path.field("list_match").field("one_of"),
                    inner,
                    depth + 1,
                )?))
            }
            None => return Err(cx.invalid(&path.field("list_match"), "no match pattern")),
        },
        Some(_) => {
            return Err(cx.unsupported(
                path,
                "only null, string, bool, present and list value matchers are supported",
            ))
        }
        None => return Err(cx.invalid(path, "no match pattern")),
    })
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
