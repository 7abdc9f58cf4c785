//! What the router changes on a request before forwarding it, and on the response: header
//! mutations (`request_headers_to_add` / `_remove`, `response_headers_to_add` / `_remove` of
//! the Route, VirtualHost and RouteConfiguration) and the RouteAction's `prefix_rewrite`,
//! `regex_rewrite` and `host_rewrite_literal` (Envoy `route_components.proto`, "Custom
//! request/response headers" in the HTTP connection manager docs). gRPC's xDS client (gRFC A28)
//! ignores all of these; the mesh's HTTP and gRPC stacks apply them, as Envoy does.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::RegexRewrite;

/// `envoy.config.core.v3.HeaderValueOption.HeaderAppendAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD` (the default): one more value.
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`: only when the header is not there.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD`: replace every value, or add.
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`: replace every value, only when present.
    OverwriteIfExists,
}

/// One header to add (`HeaderValueOption`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderAdd {
    /// The header name (lowercase).
    pub name: HeaderName,
    /// The value, a literal (values with Envoy's `%COMMAND%` formatters are refused at
    /// conversion).
    pub value: HeaderValue,
    /// How it combines with values already there.
    pub action: AppendAction,
}

/// Header mutations of one direction, already merged across Route, VirtualHost and
/// RouteConfiguration in the order Envoy applies them: each level removes, then adds; the route
/// first, then the virtual host, then the route configuration (so the most general level wins
/// an overwrite), or the reverse with `most_specific_header_mutations_wins`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMutation {
    /// Per level, in application order.
    pub levels: Box<[HeaderLevel]>,
}

/// One level's mutation: the names it removes, then the headers it adds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderLevel {
    /// Removed first.
    pub remove: Box<[HeaderName]>,
    /// Then added.
    pub add: Box<[HeaderAdd]>,
}

impl HeaderMutation {
    /// Whether nothing is removed or added.
    pub fn is_empty(&self) -> bool {
        self.levels
            .iter()
            .all(|l| l.remove.is_empty() && l.add.is_empty())
    }

    /// Applies the mutation to `headers`.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for level in self.levels.iter() {
            for name in level.remove.iter() {
                headers.remove(name);
            }
            for h in level.add.iter() {
                let present = headers.contains_key(&h.name);
                match h.action {
                    AppendAction::AppendIfExistsOrAdd => {
                        headers.append(h.name.clone(), h.value.clone());
                    }
                    AppendAction::AddIfAbsent if !present => {
                        headers.insert(h.name.clone(), h.value.clone());
                    }
                    AppendAction::OverwriteIfExistsOrAdd => {
                        headers.insert(h.name.clone(), h.value.clone());
                    }
                    AppendAction::OverwriteIfExists if present => {
                        headers.insert(h.name.clone(), h.value.clone());
                    }
                    AppendAction::AddIfAbsent | AppendAction::OverwriteIfExists => {}
                }
            }
        }
    }
}

/// How the path is rewritten before forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// `prefix_rewrite`: the first `strip` bytes of the path (what the route's `prefix` or
    /// `path` matched) are replaced by `with`; the query string is kept.
    Prefix {
        /// Length of the matched prefix (or whole path, for a `path` match).
        strip: usize,
        /// The replacement.
        with: Arc<str>,
    },
    /// `regex_rewrite`: every match in the path (not the query string) is substituted.
    Regex(RegexRewrite),
}

/// Everything a route changes on the request and response; `None` on the route when it
/// changes nothing, so the request path pays one branch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestRewrite {
    /// The path rewrite, if any.
    pub path: Option<PathRewrite>,
    /// `host_rewrite_literal`: the `Host` / `:authority` sent upstream.
    pub host: Option<HeaderValue>,
    /// Request header mutations.
    pub request_headers: HeaderMutation,
    /// Response header mutations.
    pub response_headers: HeaderMutation,
}

impl RequestRewrite {
    /// Whether the rewrite changes nothing.
    pub fn is_empty(&self) -> bool {
        self.path.is_none()
            && self.host.is_none()
            && self.request_headers.is_empty()
            && self.response_headers.is_empty()
    }

    /// The rewritten path-and-query for `path_and_query` (`None`: no path rewrite applies).
    pub fn rewrite_path(&self, path_and_query: &str) -> Option<String> {
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        let new_path = match self.path.as_ref()? {
            PathRewrite::Prefix { strip, with } => {
                let rest = path.get(*strip..).unwrap_or("");
                format!("{with}{rest}")
            }
            PathRewrite::Regex(re) => re.apply(path).into_owned(),
        };
        // Envoy never sends an empty path.
        let new_path = if new_path.is_empty() {
            "/".to_owned()
        } else {
            new_path
        };
        Some(format!("{new_path}{query}"))
    }
}
