//! VirtualService `http[].headers` and `http[].rewrite` (istio/api `networking/v1`
//! `Headers` / `HTTPRewrite`), as istiod translates them (`translateHeadersOperations`,
//! `translateRoute`):
//!
//! - `headers.{request,response}.set` → added with OVERWRITE_IF_EXISTS_OR_ADD, `add` → with
//!   APPEND_IF_EXISTS_OR_ADD, `remove` → removed; names lowercased and checked, values checked.
//! - `headers.request.set` of `:authority` or `host` is the authority rewrite (istiod), unless
//!   `rewrite.authority` also sets it; other pseudo-headers, and `host` in `add` / `remove` or
//!   in responses, cannot be mutated: warned and left out.
//! - A value holding one of Envoy's `%COMMAND%` substitution formatters is warned and left out:
//!   the mesh's router sends literals only. A literal `%%` stays a `%`.
//! - `rewrite.uri` replaces the matched prefix (or exact path); `rewrite.uriRegexRewrite
//!   {match, rewrite}` substitutes every match of `match` (RE2); both at once is invalid, as
//!   istio's validation says. `rewrite.authority` sets the host.

use serde_yaml_ng::Value;

use super::model::{HeaderOperations, Headers, Rewrite};
use super::yaml::{join, Ctx, Fields};
use super::ConfigError;

/// Parses `headers` of one `http[]` rule (at `path`).
pub(super) fn headers(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<Headers, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let request = match f.take("request") {
        Some(v) => operations(ctx, &join(path, "request"), v, true)?,
        None => HeaderOperations::default(),
    };
    let response = match f.take("response") {
        Some(v) => operations(ctx, &join(path, "response"), v, false)?,
        None => HeaderOperations::default(),
    };
    f.finish(ctx);
    Ok(Headers { request, response })
}

fn operations(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Value,
    request: bool,
) -> Result<HeaderOperations, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let set = f.string_map(ctx, "set")?;
    let add = f.string_map(ctx, "add")?;
    let remove = f.strings(ctx, "remove")?;
    f.finish(ctx);
    let mut out = HeaderOperations::default();
    for (op, map, target) in [("set", set, &mut out.set), ("add", add, &mut out.add)] {
        for (name, value) in map {
            let field = join(&join(path, op), &name);
            let lower = name.to_ascii_lowercase();
            if request && op == "set" && (lower == ":authority" || lower == "host") {
                out.authority = Some(value);
                continue;
            }
            if let Some(n) = mutable_name(ctx, &field, &lower)? {
                if let Some(v) = literal_value(ctx, &field, &value)? {
                    target.insert(n, v);
                }
            }
        }
    }
    for (i, name) in remove.iter().enumerate() {
        let field = format!("{}[{i}]", join(path, "remove"));
        if let Some(n) = mutable_name(ctx, &field, &name.to_ascii_lowercase())? {
            out.remove.push(n);
        }
    }
    Ok(out)
}

/// A header name the router may mutate (`None`: warned and left out).
fn mutable_name(ctx: &mut Ctx<'_>, field: &str, name: &str) -> Result<Option<String>, ConfigError> {
    if name.starts_with(':') || name == "host" {
        ctx.warn(field, format!("`{name}` cannot be mutated; left out"));
        return Ok(None);
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(ctx.invalid(field, format!("`{name}` is not a valid header name")));
    }
    Ok(Some(name.to_owned()))
}

/// A literal header value (`None`: holds a formatter, warned and left out).
fn literal_value(
    ctx: &mut Ctx<'_>,
    field: &str,
    value: &str,
) -> Result<Option<String>, ConfigError> {
    if value.replace("%%", "").contains('%') {
        ctx.warn(
            field,
            "Envoy substitution formatters (`%…%`) are not evaluated by the mesh; header left out",
        );
        return Ok(None);
    }
    if http::HeaderValue::from_str(&value.replace("%%", "%")).is_err() {
        return Err(ctx.invalid(field, "not a valid header value"));
    }
    Ok(Some(value.to_owned()))
}

/// Parses `rewrite` of one `http[]` rule (at `path`).
pub(super) fn rewrite(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<Rewrite, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let uri = f.string(ctx, "uri")?;
    let authority = f.string(ctx, "authority")?;
    let regex = match f.take("uriRegexRewrite") {
        Some(v) => {
            let rpath = join(path, "uriRegexRewrite");
            let mut r = Fields::of(ctx, v, &rpath)?;
            let pattern = r.required_string(ctx, "match")?;
            let substitution = r.string(ctx, "rewrite")?.unwrap_or_default();
            r.finish(ctx);
            if let Err(e) = regex::Regex::new(&pattern) {
                return Err(ctx.invalid(&join(&rpath, "match"), format!("bad regex: {e}")));
            }
            Some((pattern, substitution))
        }
        None => None,
    };
    f.finish(ctx);
    if uri.is_some() && regex.is_some() {
        return Err(ctx.invalid(
            &join(path, "uriRegexRewrite"),
            "only one of `uri` and `uriRegexRewrite` may be set",
        ));
    }
    if let Some(a) = &authority {
        if a.is_empty() || http::HeaderValue::from_str(a).is_err() {
            return Err(ctx.invalid(&join(path, "authority"), "not a valid authority"));
        }
    }
    Ok(Rewrite {
        uri,
        authority,
        uri_regex: regex,
    })
}
