//! Header mutations and path / host rewrites of a route (Envoy `route_components.proto`:
//! `request_headers_to_add` / `_remove` and `response_headers_to_add` / `_remove` on the Route,
//! VirtualHost and RouteConfiguration; RouteAction `prefix_rewrite`, `regex_rewrite`,
//! `host_rewrite_literal`). See [`crate::model::RequestRewrite`].
//!
//! - Levels apply route → virtual host → route configuration, each removing then adding
//!   (Envoy's `HeaderParser`), reversed with `most_specific_header_mutations_wins`.
//! - `append_action` is honoured; the deprecated `append` (when set) means
//!   APPEND_IF_EXISTS_OR_ADD (`true`) or OVERWRITE_IF_EXISTS_OR_ADD (`false`). Empty values are
//!   dropped unless `keep_empty_value`, as Envoy does.
//! - Values are literals: `%%` is a `%`; any other `%` starts one of Envoy's substitution
//!   formatters (`%DOWNSTREAM_REMOTE_ADDRESS%`…), which the mesh does not evaluate, so the
//!   resource is refused naming the field rather than sending the formatter text.
//! - Pseudo-headers (`:path`…) and `host` may not be mutated (Envoy refuses them too; use
//!   `host_rewrite_literal`).
//! - `host_rewrite` (a formatter string) is taken when it is a literal.
//! - `prefix_rewrite` needs a `prefix` or `path` match (Envoy refuses it with `safe_regex`);
//!   `auto_host_rewrite`, `host_rewrite_header`, `host_rewrite_path_regex` and
//!   `path_rewrite_policy` are unsupported and refuse the resource.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    route_action::HostRewriteSpecifier, route_match::PathSpecifier,
    RouteAction as RouteActionProto, RouteMatch as RouteMatchProto,
};
use http::{HeaderName, HeaderValue};

use super::{Ctx, Path};
use crate::model::{
    AppendAction, HeaderAdd, HeaderLevel, HeaderMutation, ModelError, PathRewrite, RegexRewrite,
    RequestRewrite,
};

/// One level's header fields: (where it sits, to add, to remove) for requests, then responses.
pub(super) struct Level<'a> {
    pub path: Path,
    pub request_add: &'a [HeaderValueOption],
    pub request_remove: &'a [String],
    pub response_add: &'a [HeaderValueOption],
    pub response_remove: &'a [String],
}

/// The route's rewrite from its levels (most specific first) and its RouteAction, or `None`
/// when nothing changes.
pub(super) fn rewrite(
    cx: &Ctx<'_>,
    levels: &[Level<'_>],
    most_specific_wins: bool,
    action: Option<(&Path, &RouteActionProto, &RouteMatchProto)>,
) -> Result<Option<Arc<RequestRewrite>>, ModelError> {
    let mut ordered: Vec<&Level<'_>> = levels.iter().collect();
    if most_specific_wins {
        ordered.reverse();
    }
    let mut request = Vec::new();
    let mut response = Vec::new();
    for l in ordered {
        request.push(HeaderLevel {
            remove: removals(cx, &l.path, "request_headers_to_remove", l.request_remove)?,
            add: additions(cx, &l.path, "request_headers_to_add", l.request_add)?,
        });
        response.push(HeaderLevel {
            remove: removals(cx, &l.path, "response_headers_to_remove", l.response_remove)?,
            add: additions(cx, &l.path, "response_headers_to_add", l.response_add)?,
        });
    }
    let mut rewrite = RequestRewrite {
        request_headers: HeaderMutation {
            levels: request.into(),
        },
        response_headers: HeaderMutation {
            levels: response.into(),
        },
        ..Default::default()
    };
    if let Some((path, ra, m)) = action {
        rewrite.path = path_rewrite(cx, path, ra, m)?;
        rewrite.host = match &ra.host_rewrite_specifier {
            None => None,
            Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => Some(
                HeaderValue::from_str(h)
                    .ok()
                    .filter(|_| !h.is_empty())
                    .ok_or_else(|| {
                        cx.invalid(&path.field("host_rewrite_literal"), "not a valid host")
                    })?,
            ),
            // `host_rewrite`, a formatter string: taken when it is a literal.
            Some(HostRewriteSpecifier::HostRewrite(h)) => {
                let p = path.field("host_rewrite");
                let lit = literal(h.as_bytes()).ok_or_else(|| {
                    cx.unsupported(&p, "substitution formatters (`%…%`) are not supported")
                })?;
                // An empty result keeps the original host (Envoy).
                match lit.is_empty() {
                    true => None,
                    false => Some(
                        HeaderValue::from_bytes(&lit)
                            .map_err(|_| cx.invalid(&p, "not a valid host"))?,
                    ),
                }
            }
            Some(HostRewriteSpecifier::AutoHostRewrite(b)) if !b.value => None,
            Some(HostRewriteSpecifier::AutoHostRewrite(_)) => {
                return Err(cx.unsupported(
                    &path.field("auto_host_rewrite"),
                    "auto_host_rewrite not supported",
                ))
            }
            Some(HostRewriteSpecifier::HostRewriteHeader(_)) => {
                return Err(cx.unsupported(
                    &path.field("host_rewrite_header"),
                    "host_rewrite_header not supported",
                ))
            }
            Some(HostRewriteSpecifier::HostRewritePathRegex(_)) => {
                return Err(cx.unsupported(
                    &path.field("host_rewrite_path_regex"),
                    "host_rewrite_path_regex not supported",
                ))
            }
        };
    }
    Ok((!rewrite.is_empty()).then(|| Arc::new(rewrite)))
}

fn path_rewrite(
    cx: &Ctx<'_>,
    path: &Path,
    ra: &RouteActionProto,
    m: &RouteMatchProto,
) -> Result<Option<PathRewrite>, ModelError> {
    if ra.path_rewrite_policy.is_some() {
        return Err(cx.unsupported(
            &path.field("path_rewrite_policy"),
            "path_rewrite_policy not supported",
        ));
    }
    let prefix = !ra.prefix_rewrite.is_empty();
    match (prefix, &ra.regex_rewrite) {
        (true, Some(_)) => Err(cx.invalid(
            &path.field("regex_rewrite"),
            "only one of prefix_rewrite and regex_rewrite may be set",
        )),
        (true, None) => {
            let strip = match &m.path_specifier {
                Some(PathSpecifier::Prefix(p)) | Some(PathSpecifier::Path(p)) => p.len(),
                _ => {
                    return Err(cx.invalid(
                        &path.field("prefix_rewrite"),
                        "prefix_rewrite needs a `prefix` or `path` match",
                    ))
                }
            };
            Ok(Some(PathRewrite::Prefix {
                strip,
                with: ra.prefix_rewrite.as_str().into(),
            }))
        }
        (false, Some(rw)) => {
            let rp = path.field("regex_rewrite");
            let pattern = rw
                .pattern
                .as_ref()
                .ok_or_else(|| cx.invalid(&rp.field("pattern"), "missing"))?;
            let re = RegexRewrite::new(&pattern.regex, &rw.substitution).map_err(|e| {
                cx.invalid(
                    &rp.field("pattern").field("regex"),
                    format!("bad regex: {e}"),
                )
            })?;
            Ok(Some(PathRewrite::Regex(re)))
        }
        (false, None) => Ok(None),
    }
}

fn header_name(cx: &Ctx<'_>, path: &Path, name: &str) -> Result<HeaderName, ModelError> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(cx.invalid(
            path,
            format!("`{name}` may not be mutated (use host_rewrite_literal for the host)"),
        ));
    }
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| cx.invalid(path, format!("`{name}` is not a valid header name")))
}

fn removals(
    cx: &Ctx<'_>,
    path: &Path,
    field: &str,
    names: &[String],
) -> Result<Box<[HeaderName]>, ModelError> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| header_name(cx, &path.index(field, i), n))
        .collect()
}

fn additions(
    cx: &Ctx<'_>,
    path: &Path,
    field: &str,
    options: &[HeaderValueOption],
) -> Result<Box<[HeaderAdd]>, ModelError> {
    let mut out = Vec::with_capacity(options.len());
    for (i, o) in options.iter().enumerate() {
        let p = path.index(field, i);
        let h = o
            .header
            .as_ref()
            .ok_or_else(|| cx.invalid(&p.field("header"), "missing"))?;
        let name = header_name(cx, &p.field("header").field("key"), &h.key)?;
        let raw = if h.raw_value.is_empty() {
            h.value.as_bytes()
        } else {
            &h.raw_value[..]
        };
        let literal = literal(raw).ok_or_else(|| {
            cx.unsupported(
                &p.field("header").field("value"),
                format!(
                    "header `{}`: substitution formatters (`%…%`) are not supported",
                    h.key
                ),
            )
        })?;
        if literal.is_empty() && !o.keep_empty_value {
            continue;
        }
        let value = HeaderValue::from_bytes(&literal).map_err(|_| {
            cx.invalid(
                &p.field("header").field("value"),
                format!("header `{}`: not a valid header value", h.key),
            )
        })?;
        #[allow(deprecated)] // `append` is deprecated but still honoured, as Envoy does.
        let append = &o.append;
        let action = match append {
            Some(b) if b.value => AppendAction::AppendIfExistsOrAdd,
            Some(_) => AppendAction::OverwriteIfExistsOrAdd,
            None => match HeaderAppendAction::try_from(o.append_action) {
                Ok(HeaderAppendAction::AppendIfExistsOrAdd) => AppendAction::AppendIfExistsOrAdd,
                Ok(HeaderAppendAction::AddIfAbsent) => AppendAction::AddIfAbsent,
                Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => {
                    AppendAction::OverwriteIfExistsOrAdd
                }
                Ok(HeaderAppendAction::OverwriteIfExists) => AppendAction::OverwriteIfExists,
                Err(_) => {
                    return Err(cx.invalid(
                        &p.field("append_action"),
                        format!("unknown append action {}", o.append_action),
                    ))
                }
            },
        };
        out.push(HeaderAdd {
            name,
            value,
            action,
        });
    }
    Ok(out.into())
}

/// The literal value of a header template: `%%` → `%`; `None` if it holds a formatter.
fn literal(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if raw.get(i + 1) == Some(&b'%') {
                out.push(b'%');
                i += 2;
                continue;
            }
            return None;
        }
        out.push(raw[i]);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
