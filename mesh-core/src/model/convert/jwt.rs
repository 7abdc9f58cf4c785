//! The JWT authentication HTTP filter (`envoy.extensions.filters.http.jwt_authn.v3
//! .JwtAuthentication`) validated into [`JwtAuthentication`]; JWKS are parsed here, once.
//!
//! Supported: providers with `issuer`, `audiences`, `require_expiration`, `local_jwks`
//! (`inline_string`, `inline_bytes`, `filename` — read now, as Envoy reads a local data source at
//! config load), `from_headers`, `from_params`, `from_cookies` (names must be RFC 6265 tokens),
//! `forward`, `forward_payload_header`, `claim_to_headers` (`header_name` an HTTP header name —
//! pseudo-headers refused — with exactly one of `claim_name` and `claim_path`),
//! `payload_in_metadata`, `clock_skew_seconds`; rules matching by path (`prefix`, `path`,
//! `safe_regex`) with `requires` of any shape but `extract_only_without_validation`;
//! `bypass_cors_preflight`. `jwt_cache_config`, `clear_route_cache`, `stat_prefix` and
//! `strip_failure_response` change nothing here and are ignored.
//!
//! Refused as unsupported, naming the field (ignoring them would accept tokens Envoy refuses or
//! drop what the config asked for): `remote_jwks` (no network fetch — inline the JWKS, as istiod
//! does), `subjects`, `max_lifetime`, `header_in_metadata`,
//! `failed_status_in_metadata`, `normalize_payload_in_metadata`, `pad_forward_payload_header`,
//! `filter_state_rules`, `requirement_map` / `requirement_name`, and rule matches on headers,
//! query parameters or runtime fractions.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::route::v3::{route_match::PathSpecifier, RouteMatch};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType,
    requirement_rule::RequirementType, JwtAuthentication as Proto, JwtProvider as ProviderProto,
    JwtRequirement as RequirementProto,
};

use super::matcher::regex;
use super::{Ctx, Path};
use crate::jwt::{Jwks, DEFAULT_CLOCK_SKEW_SECONDS};
use crate::model::{
    ClaimToHeader, JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement, JwtRule, ModelError,
    PathMatch,
};

/// `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`.
pub(crate) const JWT_AUTHN: &str = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

/// Nesting deeper than this is rejected rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 32;

pub(crate) fn jwt_authentication(
    cx: &Ctx<'_>,
    path: &Path,
    proto: Proto,
) -> Result<JwtAuthentication, ModelError> {
    if proto.filter_state_rules.is_some() {
        return Err(cx.unsupported(&path.field("filter_state_rules"), "not supported"));
    }
    if !proto.requirement_map.is_empty() {
        return Err(cx.unsupported(&path.field("requirement_map"), "not supported"));
    }
    let mut named: Vec<(String, ProviderProto)> = proto.providers.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
    let mut providers = Vec::with_capacity(named.len());
    for (name, p) in named {
        providers.push(provider(
            cx,
            &path.field(&format!("providers[{name}]")),
            name,
            p,
        )?);
    }
    let mut rules = Vec::with_capacity(proto.rules.len());
    for (i, r) in proto.rules.into_iter().enumerate() {
        let rp = path.index("rules", i);
        let m = r
            .r#match
            .ok_or_else(|| cx.invalid(&rp.field("match"), "missing"))?;
        let path_match = rule_match(cx, &rp.field("match"), &m)?;
        let requires = match r.requirement_type {
            None => None,
            Some(RequirementType::Requires(q)) => {
                Some(requirement(cx, &rp.field("requires"), &names, q, 0)?)
            }
            Some(RequirementType::RequirementName(_)) => {
                return Err(cx.unsupported(&rp.field("requirement_name"), "not supported"))
            }
        };
        rules.push(JwtRule {
            path: path_match,
            requires,
        });
    }
    Ok(JwtAuthentication {
        providers: providers.into(),
        rules: rules.into(),
        bypass_cors_preflight: proto.bypass_cors_preflight,
    })
}

fn rule_match(cx: &Ctx<'_>, path: &Path, m: &RouteMatch) -> Result<PathMatch, ModelError> {
    if !m.headers.is_empty() {
        return Err(cx.unsupported(&path.field("headers"), "not supported in jwt rules"));
    }
    if !m.query_parameters.is_empty() {
        return Err(cx.unsupported(
            &path.field("query_parameters"),
            "not supported in jwt rules",
        ));
    }
    if m.runtime_fraction.is_some() {
        return Err(cx.unsupported(
            &path.field("runtime_fraction"),
            "not supported in jwt rules",
        ));
    }
    if m.case_sensitive.as_ref().is_some_and(|c| !c.value) {
        return Err(cx.unsupported(
            &path.field("case_sensitive"),
            "case-insensitive jwt rules are not supported",
        ));
    }
    Ok(match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.as_str().into()),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(p.as_str().into()),
        Some(PathSpecifier::SafeRegex(r)) => {
            PathMatch::Regex(regex(cx, &path.field("safe_regex"), r)?)
        }
        Some(_) => {
            return Err(cx.unsupported(
                path,
                "only prefix, path and safe_regex matches are supported in jwt rules",
            ))
        }
        None => return Err(cx.invalid(path, "no path specifier")),
    })
}

fn requirement(
    cx: &Ctx<'_>,
    path: &Path,
    names: &[String],
    q: RequirementProto,
    depth: usize,
) -> Result<JwtRequirement, ModelError> {
    if depth > MAX_DEPTH {
        return Err(cx.invalid(path, "requirements nested too deeply"));
    }
    let index = |p: &Path, name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| cx.invalid(p, format!("no provider named `{name}`")))
    };
    let list = |p: Path, v: Vec<RequirementProto>| -> Result<Arc<[JwtRequirement]>, ModelError> {
        if v.is_empty() {
            return Err(cx.invalid(&p.field("requirements"), "must not be empty"));
        }
        v.into_iter()
            .enumerate()
            .map(|(i, r)| requirement(cx, &p.index("requirements", i), names, r, depth + 1))
            .collect()
    };
    Ok(match q.requires_type {
        None => return Err(cx.invalid(path, "no requirement")),
        Some(RequiresType::ProviderName(n)) => JwtRequirement::Provider {
            provider: index(&path.field("provider_name"), &n)?,
            audiences: None,
        },
        Some(RequiresType::ProviderAndAudiences(pa)) => {
            let p = path.field("provider_and_audiences");
            JwtRequirement::Provider {
                provider: index(&p.field("provider_name"), &pa.provider_name)?,
                audiences: Some(pa.audiences.iter().map(|a| a.as_str().into()).collect()),
            }
        }
        Some(RequiresType::RequiresAny(l)) => {
            JwtRequirement::Any(list(path.field("requires_any"), l.requirements)?)
        }
        Some(RequiresType::RequiresAll(l)) => {
            JwtRequirement::All(list(path.field("requires_all"), l.requirements)?)
        }
        Some(RequiresType::AllowMissing(_)) => JwtRequirement::AllowMissing,
        Some(RequiresType::AllowMissingOrFailed(_)) => JwtRequirement::AllowMissingOrFailed,
        Some(RequiresType::ExtractOnlyWithoutValidation(_)) => {
            return Err(cx.unsupported(
                &path.field("extract_only_without_validation"),
                "not supported",
            ))
        }
    })
}

fn provider(
    cx: &Ctx<'_>,
    path: &Path,
    name: String,
    p: ProviderProto,
) -> Result<JwtProvider, ModelError> {
    let unsupported = [
        ("subjects", p.subjects.is_some()),
        ("max_lifetime", p.max_lifetime.is_some()),
        ("header_in_metadata", !p.header_in_metadata.is_empty()),
        (
            "failed_status_in_metadata",
            !p.failed_status_in_metadata.is_empty(),
        ),
        (
            "normalize_payload_in_metadata",
            p.normalize_payload_in_metadata.is_some(),
        ),
        ("pad_forward_payload_header", p.pad_forward_payload_header),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(cx.unsupported(&path.field(field), "not supported"));
    }
    let jp = path.field("local_jwks");
    let text = match p.jwks_source_specifier {
        Some(JwksSourceSpecifier::RemoteJwks(_)) => {
            return Err(cx.unsupported(
                &path.field("remote_jwks"),
                "remote jwks are not fetched; inline the keys in local_jwks",
            ))
        }
        None => return Err(cx.invalid(path, "no jwks (local_jwks or remote_jwks)")),
        Some(JwksSourceSpecifier::LocalJwks(ds)) => match ds.specifier {
            Some(Specifier::InlineString(s)) => s,
            Some(Specifier::InlineBytes(b)) => String::from_utf8(b)
                .map_err(|_| cx.invalid(&jp.field("inline_bytes"), "not utf-8"))?,
            Some(Specifier::Filename(f)) => std::fs::read_to_string(&f).map_err(|e| {
                cx.invalid(&jp.field("filename"), format!("cannot read `{f}`: {e}"))
            })?,
            Some(Specifier::EnvironmentVariable(_)) => {
                return Err(cx.unsupported(&jp.field("environment_variable"), "not supported"))
            }
            None => return Err(cx.invalid(&jp, "empty data source")),
        },
    };
    let jwks = Jwks::parse(&text).map_err(|e| cx.invalid(&jp, e.to_string()))?;
    let mut from_headers = Vec::with_capacity(p.from_headers.len());
    for (i, h) in p.from_headers.iter().enumerate() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            cx.invalid(
                &path.index("from_headers", i).field("name"),
                format!("`{}` is not a header name", h.name),
            )
        })?;
        from_headers.push(JwtHeader {
            name,
            value_prefix: h.value_prefix.as_str().into(),
        });
    }
    for (i, c) in p.from_cookies.iter().enumerate() {
        if !is_token(c) {
            return Err(cx.invalid(
                &path.index("from_cookies", i),
                format!("`{c}` is not a cookie name (an RFC 6265 token)"),
            ));
        }
    }
    let mut claim_to_headers = Vec::with_capacity(p.claim_to_headers.len());
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let cp = path.index("claim_to_headers", i);
        let header = http::HeaderName::from_bytes(c.header_name.as_bytes()).map_err(|_| {
            cx.invalid(
                &cp.field("header_name"),
                format!(
                    "`{}` is not a header name (pseudo-headers cannot be set)",
                    c.header_name
                ),
            )
        })?;
        let claim: Arc<[Arc<str>]> = match (c.claim_name.is_empty(), c.claim_path.is_empty()) {
            (false, true) => c.claim_name.split('.').map(Arc::from).collect(),
            (true, false) => c
                .claim_path
                .iter()
                .map(|s| Arc::from(s.key.as_str()))
                .collect(),
            (true, true) => {
                return Err(cx.invalid(&cp, "one of claim_name and claim_path is required"))
            }
            (false, false) => {
                return Err(cx.invalid(&cp, "claim_name and claim_path are exclusive"))
            }
        };
        claim_to_headers.push(ClaimToHeader { header, claim });
    }
    let forward_payload_header = if p.forward_payload_header.is_empty() {
        None
    } else {
        Some(
            http::HeaderName::from_bytes(p.forward_payload_header.as_bytes()).map_err(|_| {
                cx.invalid(
                    &path.field("forward_payload_header"),
                    format!("`{}` is not a header name", p.forward_payload_header),
                )
            })?,
        )
    };
    Ok(JwtProvider {
        name: name.into(),
        issuer: p.issuer.as_str().into(),
        audiences: p.audiences.iter().map(|a| a.as_str().into()).collect(),
        require_expiration: p.require_expiration,
        jwks: Arc::new(jwks),
        from_headers: from_headers.into(),
        from_params: p.from_params.iter().map(|a| a.as_str().into()).collect(),
        from_cookies: p.from_cookies.iter().map(|a| a.as_str().into()).collect(),
        forward: p.forward,
        forward_payload_header,
        claim_to_headers: claim_to_headers.into(),
        payload_in_metadata: (!p.payload_in_metadata.is_empty())
            .then(|| p.payload_in_metadata.as_str().into()),
        clock_skew_seconds: match p.clock_skew_seconds {
            0 => DEFAULT_CLOCK_SKEW_SECONDS,
            s => u64::from(s),
        },
    })
}

/// An RFC 7230 / RFC 6265 token: what a cookie name may be.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
