//! `RequestAuthentication` (`security.istio.io/v1`, `v1beta1`; istio/api
//! `security/v1/request_authentication.proto`), parsed and validated field by field.
//!
//! Supported: `selector.matchLabels` (absent ⇒ every workload of the namespace; in the root
//! namespace every workload of the mesh) and `jwtRules[]` with `issuer` (required), `audiences`,
//! `jwks` (inline JSON, checked to be a JWKS here; its keys are validated by mesh-core when the
//! listener is converted), `jwksUri`, `fromHeaders[]` (`name`, `prefix`), `fromParams`,
//! `fromCookies` (each an RFC 6265 cookie name), `outputPayloadToHeader`,
//! `outputClaimToHeaders[]` (`header`, `claim`: both required, `header` checked as istiod's
//! validation does — `ValidateStrictHTTPHeaderName`, letters, digits and `-` only, so no
//! pseudo-header — a header named twice a warning) and `forwardOriginalToken`.
//!
//! `jwksUri`: a `file://` URI is read at load time and inlined. An `http://` or `https://` URI
//! is recorded as a [`RemoteJwks`] (with `timeout`, Istio's default 5 s) and fetched by the
//! control plane, not here (loading stays pure and offline): [`crate::jwks`] fetches, caches and
//! refreshes it and inlines what it got, as istiod inlines what it fetches, so proxies never
//! fetch. Until a fetch succeeds the rule's `jwks` is [`EMPTY_JWKS`] and its tokens are refused —
//! istiod likewise serves a JWKS that verifies nothing when it cannot fetch one. Any other URI
//! scheme is a warning and the empty set. Refused, naming the field: `targetRef(s)`, and any
//! other field of a rule (ignoring one would accept tokens Istio refuses).

use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::model::{Labels, Meta};
use super::yaml::{Ctx, Fields};
use super::ConfigError;

/// The JWKS a rule gets when its keys cannot be had: every token fails verification.
pub const EMPTY_JWKS: &str = r#"{"keys":[]}"#;

/// istiod's default `timeout` for fetching a `jwksUri`.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// A `jwksUri` to fetch over HTTP(S), and where it was configured (for warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The URI (`http://` or `https://`).
    pub uri: String,
    /// `timeout` of one fetch ([`DEFAULT_JWKS_TIMEOUT`] when absent).
    pub timeout: Duration,
    /// The file the rule was read from.
    pub file: Arc<str>,
    /// 1-based line of its resource.
    pub line: usize,
    /// `Kind/namespace/name` of its resource.
    pub resource: String,
    /// The field path, `spec.jwtRules[i].jwksUri`.
    pub field: String,
}

/// A `RequestAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuthentication {
    /// Identity and origin.
    pub meta: Meta,
    /// `selector.matchLabels`; `None` selects every workload in scope.
    pub selector: Option<Labels>,
    /// `jwtRules`, in order.
    pub jwt_rules: Vec<JwtRule>,
}

/// One `jwtRules[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtRule {
    /// `issuer`.
    pub issuer: String,
    /// `audiences`; empty accepts any.
    pub audiences: Vec<String>,
    /// The JWKS JSON: `jwks`, or what a `file://` `jwksUri` held, or [`EMPTY_JWKS`] (until the
    /// control plane inlines a fetched [`JwtRule::jwks_uri`]).
    pub jwks: String,
    /// An `http(s)://` `jwksUri` the control plane fetches (when `jwks` is not set inline).
    pub jwks_uri: Option<RemoteJwks>,
    /// `fromHeaders`: `(name, prefix)`.
    pub from_headers: Vec<(String, String)>,
    /// `fromParams`.
    pub from_params: Vec<String>,
    /// `fromCookies`.
    pub from_cookies: Vec<String>,
    /// `outputPayloadToHeader`.
    pub output_payload_to_header: Option<String>,
    /// `outputClaimToHeaders`: `(header, claim)`, the claim a `.`-separated path.
    pub output_claim_to_headers: Vec<(String, String)>,
    /// `forwardOriginalToken`.
    pub forward_original_token: bool,
}

/// Parses the `spec` of a RequestAuthentication.
pub(crate) fn parse(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<RequestAuthentication, ConfigError> {
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
    let mut jwt_rules = Vec::new();
    for (path, v) in spec.list(ctx, "jwtRules")? {
        jwt_rules.push(rule(ctx, &path, v)?);
    }
    spec.finish_strict(ctx)?;
    Ok(RequestAuthentication {
        meta,
        selector,
        jwt_rules,
    })
}

/// An RFC 7230 / RFC 6265 token: what a cookie name may be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_jwks(ctx: &Ctx<'_>, path: &str, text: &str) -> Result<(), ConfigError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ctx.invalid(path, format!("not json: {e}")))?;
    if !v.get("keys").is_some_and(serde_json::Value::is_array) {
        return Err(ctx.invalid(path, "not a jwks: no `keys` array"));
    }
    Ok(())
}

fn rule(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<JwtRule, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mut out = JwtRule {
        issuer: f.required_string(ctx, "issuer")?,
        audiences: f.strings(ctx, "audiences")?,
        from_params: f.strings(ctx, "fromParams")?,
        from_cookies: f.strings(ctx, "fromCookies")?,
        output_payload_to_header: f.string(ctx, "outputPayloadToHeader")?,
        forward_original_token: f.bool(ctx, "forwardOriginalToken")?.unwrap_or(false),
        ..Default::default()
    };
    if let Some(h) = &out.output_payload_to_header {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err(ctx.invalid(
                &f.field("outputPayloadToHeader"),
                format!("`{h}` is not a header name"),
            ));
        }
    }
    for (i, c) in out.from_cookies.iter().enumerate() {
        if !is_token(c) {
            return Err(ctx.invalid(
                &super::yaml::index(&f.field("fromCookies"), i),
                format!("`{c}` is not a cookie name (an RFC 6265 token)"),
            ));
        }
    }
    for (p, cv) in f.list(ctx, "outputClaimToHeaders")? {
        let mut c = Fields::of(ctx, cv, &p)?;
        let header = c.string(ctx, "header")?.unwrap_or_default();
        let claim = c.string(ctx, "claim")?.unwrap_or_default();
        if header.is_empty() || claim.is_empty() {
            return Err(ctx.invalid(&p, "`header` and `claim` must be non-empty strings"));
        }
        if !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ctx.invalid(
                &c.field("header"),
                format!("`{header}` is not a valid header name (letters, digits and `-`)"),
            ));
        }
        c.finish_strict(ctx)?;
        if out
            .output_claim_to_headers
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case(&header))
        {
            ctx.warn(
                &super::yaml::join(&p, "header"),
                format!("header `{header}` is already set by another claim; both are added"),
            );
        }
        out.output_claim_to_headers.push((header, claim));
    }
    for (p, hv) in f.list(ctx, "fromHeaders")? {
        let mut h = Fields::of(ctx, hv, &p)?;
        let name = h.required_string(ctx, "name")?;
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ctx.invalid(&h.field("name"), format!("`{name}` is not a header name")));
        }
        let prefix = h.string(ctx, "prefix")?.unwrap_or_default();
        h.finish_strict(ctx)?;
        out.from_headers.push((name, prefix));
    }
    let jwks = f.string(ctx, "jwks")?;
    let uri = f.string(ctx, "jwksUri")?;
    let timeout = match f.take("timeout") {
        Some(v) => {
            let t = super::duration::field(ctx, v, &f.field("timeout"))?;
            if t < Duration::from_millis(1) {
                return Err(ctx.invalid(&f.field("timeout"), "must be at least 1ms"));
            }
            t
        }
        None => DEFAULT_JWKS_TIMEOUT,
    };
    out.jwks = match (jwks, uri) {
        (Some(j), _) => {
            check_jwks(ctx, &f.field("jwks"), &j)?;
            j
        }
        (None, Some(u)) => match u.strip_prefix("file://") {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    ctx.invalid(&f.field("jwksUri"), format!("cannot read `{file}`: {e}"))
                })?;
                check_jwks(ctx, &f.field("jwksUri"), &text)?;
                text
            }
            None if u.starts_with("http://") || u.starts_with("https://") => {
                if http::Uri::try_from(u.as_str()).is_err() {
                    return Err(ctx.invalid(&f.field("jwksUri"), format!("`{u}` is not a uri")));
                }
                out.jwks_uri = Some(RemoteJwks {
                    uri: u,
                    timeout,
                    file: ctx.file.as_str().into(),
                    line: ctx.line,
                    resource: ctx.resource.clone(),
                    field: f.field("jwksUri"),
                });
                EMPTY_JWKS.to_string()
            }
            None => {
                ctx.warn(
                    &f.field("jwksUri"),
                    format!(
                        "`{u}` is not fetched (only file://, http:// and https:// are); \
                         every token of this rule will be refused"
                    ),
                );
                EMPTY_JWKS.to_string()
            }
        },
        (None, None) => {
            ctx.warn(
                path,
                "neither `jwks` nor `jwksUri`: every token of this rule will be refused",
            );
            EMPTY_JWKS.to_string()
        }
    };
    f.finish_strict(ctx)?;
    Ok(out)
}
