//! The compiled RBAC engine: evaluates the Envoy RBAC HTTP filter config ([`crate::model::Rbac`])
//! against one request, the way gRFC A41 has xDS-enabled gRPC servers do it and Istio's
//! AuthorizationPolicy relies on (XDS-SEMANTICS.md rows 34–35).
//!
//! A [`CompiledRbac`] is one filter. An [`AuthzChain`] runs filters in order, as the HTTP filter
//! chain does — Istio emits the DENY filter, then the ALLOW filter — so the first filter to deny
//! decides, and a request no filter denies is allowed. That gives Istio's evaluation: any matching
//! DENY policy denies; with no ALLOW policy (no ALLOW filter) the request is allowed; otherwise
//! some ALLOW policy must match. `LOG` filters never decide (A41).
//!
//! What each attribute is (A41, for both HTTP and gRPC requests):
//! - `url_path`: the `:path` without its query; `header`: request headers with `:method`,
//!   `:authority` (`Host` folded in) and `:path`; multiple values joined with `,`; hop-by-hop
//!   headers (`connection`, `te`, …) are never visible.
//! - `destination_ip` / `destination_port`: the connection's local address; `source_ip`,
//!   `direct_remote_ip`, `remote_ip`: its peer address (no forwarding header is trusted).
//! - `authenticated`: the peer certificate's principal (its SPIFFE ID, the URI SAN). Unset
//!   `principal_name` matches any TLS connection; plaintext never matches. Istio writes principals
//!   as `spiffe://<td>/ns/<ns>/sa/<sa>` matchers, so the full SPIFFE ID is matched.
//! - `requested_server_name`: the SNI when known, else `""` (gRPC always uses `""`).
//! - `metadata`: looked up in [`AuthzRequest::metadata`] (Istio: namespace `istio_authn`, keys
//!   `request.auth.principal`, `request.auth.claims` → claim …). Without metadata — no
//!   RequestAuthentication in front — a metadata matcher never matches, inverted or not (A41),
//!   so a policy on request principals or claims cannot be satisfied by accident. The listener's
//!   `jwt_authn` filter ([`crate::jwt`], carried by [`AuthzChain::jwt`]) produces it.
//!
//! Everything is compiled once per config (regexes, header names); evaluating allocates nothing
//! except when a matched header has several values (they are joined).

use std::{net::SocketAddr, sync::Arc};

use http::{HeaderMap, Method};
use serde_json::Value;

use crate::jwt::JwtAuthn;
use crate::model::{
    CidrRange, HeaderMatcher, MetadataMatcher, Permission, Principal, Rbac, RbacAction,
    StringMatcher, ValueMatch,
};
use crate::snapshot::matcher::{string_matches, CompiledHeader};
use crate::snapshot::RequestView;

pub mod inbound;
mod watch;

pub use watch::{InboundPolicy, InboundWaitError, CHAINS_DIFFER, NOT_SERVING};
#[cfg(test)]
mod tests;

/// Dynamic metadata from a request-authentication layer, as a JSON object keyed by filter
/// namespace — for Istio, `{"istio_authn": {"request.auth.principal": "iss/sub",
/// "request.auth.claims": {"groups": ["a"]}}}`. Servers put it in request extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicMetadata(pub Value);

/// What the RBAC engine sees of a request and its connection.
#[derive(Clone, Copy, Debug)]
pub struct AuthzRequest<'a> {
    /// The `:method`.
    pub method: &'a Method,
    /// The `:path`, query included.
    pub path_and_query: &'a str,
    /// The `:authority` (or `Host`), `""` if the request has none.
    pub authority: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The connection's local address (`destination_ip` / `destination_port`).
    pub local: Option<SocketAddr>,
    /// The connection's peer address (`source_ip`, `direct_remote_ip`, `remote_ip`).
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The peer's authenticated principal (its SPIFFE ID), if it presented a certificate.
    pub peer_principal: Option<&'a str>,
    /// The TLS SNI, if known.
    pub sni: Option<&'a str>,
    /// Dynamic metadata as a JSON object keyed by filter namespace (e.g. `istio_authn`), from a
    /// request-authentication layer; `None` when there is none.
    pub metadata: Option<&'a Value>,
}

/// The outcome for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Reject it (HTTP 403, gRPC `PERMISSION_DENIED`).
    Deny(Denial),
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The RBAC filter that denied (e.g. `envoy.filters.http.rbac.DENY`).
    pub filter: Arc<str>,
    /// The DENY policy that matched; `None` when an ALLOW filter matched no policy.
    pub policy: Option<Arc<str>>,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.policy {
            Some(p) => write!(f, "denied by policy `{p}` (filter `{}`)", self.filter),
            None => write!(f, "no allow policy matched (filter `{}`)", self.filter),
        }
    }
}

/// One RBAC filter, compiled.
#[derive(Debug)]
pub struct CompiledRbac {
    filter: Arc<str>,
    action: RbacAction,
    policies: Box<[CompiledPolicy]>,
}

#[derive(Debug)]
struct CompiledPolicy {
    name: Arc<str>,
    permissions: Box<[Perm]>,
    principals: Box<[Prin]>,
}

#[derive(Debug)]
enum Perm {
    Any,
    And(Box<[Perm]>),
    Or(Box<[Perm]>),
    Not(Box<Perm>),
    Header(CompiledHeader),
    UrlPath(StringMatcher),
    DestinationIp(CidrRange),
    DestinationPort(u32),
    DestinationPortRange(u32, u32),
    RequestedServerName(StringMatcher),
    Metadata(MetadataMatcher),
}

#[derive(Debug)]
enum Prin {
    Any,
    And(Box<[Prin]>),
    Or(Box<[Prin]>),
    Not(Box<Prin>),
    Authenticated(Option<StringMatcher>),
    SourceIp(CidrRange),
    Header(CompiledHeader),
    UrlPath(StringMatcher),
    Metadata(MetadataMatcher),
}

/// Hop-by-hop headers (RFC 7230 §6.1) RBAC must never match (A41).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn header(h: &HeaderMatcher) -> CompiledHeader {
    if HOP_BY_HOP.contains(&&*h.name) {
        // A name `http` cannot represent is never present: the matcher sees an absent header.
        let mut hidden = h.clone();
        hidden.name = "\u{0}hop-by-hop".into();
        return CompiledHeader::new(&hidden);
    }
    CompiledHeader::new(h)
}

fn perm(p: &Permission) -> Perm {
    match p {
        Permission::Any => Perm::Any,
        Permission::And(v) => Perm::And(v.iter().map(perm).collect()),
        Permission::Or(v) => Perm::Or(v.iter().map(perm).collect()),
        Permission::Not(p) => Perm::Not(Box::new(perm(p))),
        Permission::Header(h) => Perm::Header(header(h)),
        Permission::UrlPath(m) => Perm::UrlPath(m.clone()),
        Permission::DestinationIp(c) => Perm::DestinationIp(*c),
        Permission::DestinationPort(p) => Perm::DestinationPort(*p),
        Permission::DestinationPortRange { start, end } => Perm::DestinationPortRange(*start, *end),
        Permission::RequestedServerName(m) => Perm::RequestedServerName(m.clone()),
        Permission::Metadata(m) => Perm::Metadata(m.clone()),
    }
}

fn prin(p: &Principal) -> Prin {
    match p {
        Principal::Any => Prin::Any,
        Principal::And(v) => Prin::And(v.iter().map(prin).collect()),
        Principal::Or(v) => Prin::Or(v.iter().map(prin).collect()),
        Principal::Not(p) => Prin::Not(Box::new(prin(p))),
        Principal::Authenticated(m) => Prin::Authenticated(m.clone()),
        Principal::SourceIp(c) => Prin::SourceIp(*c),
        Principal::Header(h) => Prin::Header(header(h)),
        Principal::UrlPath(m) => Prin::UrlPath(m.clone()),
        Principal::Metadata(m) => Prin::Metadata(m.clone()),
    }
}

/// The request as the shared header matcher reads it, plus the path without its query.
struct Ctx<'a> {
    req: &'a AuthzRequest<'a>,
    view: RequestView<'a>,
    path: &'a str,
}

impl<'a> Ctx<'a> {
    fn new(req: &'a AuthzRequest<'a>) -> Self {
        let path = req
            .path_and_query
            .split(['?', '#'])
            .next()
            .unwrap_or(req.path_and_query);
        Ctx {
            req,
            view: RequestView {
                authority: req.authority,
                path_and_query: req.path_and_query,
                method: req.method,
                scheme: None,
                headers: req.headers,
            },
            path,
        }
    }
}

impl Perm {
    fn matches(&self, cx: &Ctx<'_>) -> bool {
        match self {
            Perm::Any => true,
            Perm::And(v) => v.iter().all(|p| p.matches(cx)),
            Perm::Or(v) => v.iter().any(|p| p.matches(cx)),
            Perm::Not(p) => !p.matches(cx),
            Perm::Header(h) => h.matches(&cx.view),
            Perm::UrlPath(m) => string_matches(m, cx.path),
            Perm::DestinationIp(c) => cx.req.local.is_some_and(|a| c.contains(a.ip())),
            Perm::DestinationPort(p) => cx.req.local.is_some_and(|a| u32::from(a.port()) == *p),
            Perm::DestinationPortRange(s, e) => cx.req.local.is_some_and(|a| {
                let p = u32::from(a.port());
                *s <= p && p < *e
            }),
            Perm::RequestedServerName(m) => string_matches(m, cx.req.sni.unwrap_or("")),
            Perm::Metadata(m) => metadata_matches(m, cx.req.metadata),
        }
    }
}

impl Prin {
    fn matches(&self, cx: &Ctx<'_>) -> bool {
        match self {
            Prin::Any => true,
            Prin::And(v) => v.iter().all(|p| p.matches(cx)),
            Prin::Or(v) => v.iter().any(|p| p.matches(cx)),
            Prin::Not(p) => !p.matches(cx),
            Prin::Authenticated(m) => {
                cx.req.tls
                    && match m {
                        None => true,
                        Some(m) => string_matches(m, cx.req.peer_principal.unwrap_or("")),
                    }
            }
            Prin::SourceIp(c) => cx.req.remote.is_some_and(|a| c.contains(a.ip())),
            Prin::Header(h) => h.matches(&cx.view),
            Prin::UrlPath(m) => string_matches(m, cx.path),
            Prin::Metadata(m) => metadata_matches(m, cx.req.metadata),
        }
    }
}

fn metadata_matches(m: &MetadataMatcher, metadata: Option<&Value>) -> bool {
    // A41: with no metadata at all, never match (inverted or not).
    let Some(root) = metadata else {
        return false;
    };
    let mut v = root.get(&*m.filter);
    for key in m.path.iter() {
        v = v.and_then(|v| v.get(&**key));
    }
    value_matches(&m.value, v) != m.invert
}

fn value_matches(m: &ValueMatch, v: Option<&Value>) -> bool {
    match (m, v) {
        (ValueMatch::Present(p), v) => v.is_some() == *p,
        (_, None) => false,
        (ValueMatch::Null, Some(v)) => v.is_null(),
        (ValueMatch::String(sm), Some(Value::String(s))) => string_matches(sm, s),
        (ValueMatch::Bool(b), Some(Value::Bool(x))) => b == x,
        (ValueMatch::ListOneOf(inner), Some(Value::Array(items))) => {
            items.iter().any(|i| value_matches(inner, Some(i)))
        }
        _ => false,
    }
}

impl CompiledRbac {
    /// Compiles the config of the RBAC filter named `filter` (the name appears in denials).
    pub fn new(filter: &str, rbac: &Rbac) -> Self {
        CompiledRbac {
            filter: filter.into(),
            action: rbac.action,
            policies: rbac
                .policies
                .iter()
                .map(|p| CompiledPolicy {
                    name: p.name.clone(),
                    permissions: p.permissions.iter().map(perm).collect(),
                    principals: p.principals.iter().map(prin).collect(),
                })
                .collect(),
        }
    }

    /// The filter's name.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The first policy (by name) that matches the request.
    pub fn matching_policy(&self, req: &AuthzRequest<'_>) -> Option<&Arc<str>> {
        let cx = Ctx::new(req);
        self.first_match(&cx)
    }

    fn first_match(&self, cx: &Ctx<'_>) -> Option<&Arc<str>> {
        self.policies
            .iter()
            .find(|p| {
                p.permissions.iter().any(|x| x.matches(cx))
                    && p.principals.iter().any(|x| x.matches(cx))
            })
            .map(|p| &p.name)
    }

    fn decide(&self, cx: &Ctx<'_>) -> Decision {
        match (self.action, self.first_match(cx)) {
            (RbacAction::Log, _) | (RbacAction::Allow, Some(_)) | (RbacAction::Deny, None) => {
                Decision::Allow
            }
            (RbacAction::Allow, None) => Decision::Deny(Denial {
                filter: self.filter.clone(),
                policy: None,
            }),
            (RbacAction::Deny, Some(p)) => Decision::Deny(Denial {
                filter: self.filter.clone(),
                policy: Some(p.clone()),
            }),
        }
    }
}

/// The inbound filters: JWT authentication (optional, run first) and RBAC filters in
/// filter-chain order, the first to deny deciding (Istio: DENY, then ALLOW). An empty chain
/// allows everything.
#[derive(Debug, Default)]
pub struct AuthzChain {
    jwt: Option<JwtAuthn>,
    filters: Box<[CompiledRbac]>,
}

impl AuthzChain {
    /// A chain of compiled filters, run in the given order.
    pub fn new(filters: Vec<CompiledRbac>) -> Self {
        AuthzChain {
            jwt: None,
            filters: filters.into(),
        }
    }

    /// The same chain with JWT authentication in front of its RBAC filters.
    pub fn with_jwt(mut self, jwt: JwtAuthn) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// The JWT authentication to run before RBAC, if the listener has a `jwt_authn` filter.
    pub fn jwt(&self) -> Option<&JwtAuthn> {
        self.jwt.as_ref()
    }

    /// Compiles the `jwt_authn` and RBAC filters of an HTTP filter chain (other filters are
    /// skipped; an RBAC filter without rules enforces nothing and is dropped). The model
    /// guarantees at most one `jwt_authn` filter, ahead of every RBAC filter.
    pub fn from_http_filters(filters: &[crate::model::HttpFilter]) -> Self {
        use crate::model::HttpFilterConfig;
        let jwt = filters.iter().find_map(|f| match &f.config {
            HttpFilterConfig::JwtAuthn(c) => Some(JwtAuthn::new(&f.name, c.clone())),
            _ => None,
        });
        let chain = AuthzChain::new(
            filters
                .iter()
                .filter_map(|f| match &f.config {
                    HttpFilterConfig::Rbac(Some(rbac)) => Some(CompiledRbac::new(&f.name, rbac)),
                    _ => None,
                })
                .collect(),
        );
        AuthzChain { jwt, ..chain }
    }

    /// The RBAC filters, in order.
    pub fn filters(&self) -> &[CompiledRbac] {
        &self.filters
    }

    /// Runs every filter in order; the first denial wins.
    pub fn evaluate(&self, req: &AuthzRequest<'_>) -> Decision {
        let cx = Ctx::new(req);
        for f in self.filters.iter() {
            if let d @ Decision::Deny(_) = f.decide(&cx) {
                return d;
            }
        }
        Decision::Allow
    }
}
