//! Role-based access control: the Envoy RBAC HTTP filter's config
//! (`envoy.extensions.filters.http.rbac.v3.RBAC` → `envoy.config.rbac.v3.RBAC`), as gRFC A41
//! defines it for xDS servers and as Istio emits it for AuthorizationPolicy.
//!
//! A policy matches when one of its permissions **and** one of its principals match. An `ALLOW`
//! filter lets a request through only if some policy matches; a `DENY` filter rejects it if some
//! policy matches; a `LOG` filter never changes the outcome (A41: "policy ignored"). The compiled
//! evaluator lives in [`crate::authz`].

use std::{net::IpAddr, sync::Arc};

use super::{HeaderMatcher, StringMatcher};

/// `envoy.config.rbac.v3.RBAC`: an action and named policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rbac {
    /// What a match means.
    pub action: RbacAction,
    /// The policies, sorted by name (the proto's map order is unspecified; sorting makes the
    /// policy named in a decision deterministic).
    pub policies: Arc<[RbacPolicy]>,
}

/// `RBAC.Action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RbacAction {
    /// Allow only requests some policy matches.
    Allow,
    /// Deny the requests some policy matches.
    Deny,
    /// Log only: never changes the outcome (gRFC A41 ignores the policy).
    Log,
}

/// `envoy.config.rbac.v3.Policy`: matches when any permission and any principal match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbacPolicy {
    /// The policy's key in `RBAC.policies` (Istio: `ns[NS]-policy[NAME]-rule[i]`).
    pub name: Arc<str>,
    /// What the request does (non-empty).
    pub permissions: Arc<[Permission]>,
    /// Who sends it (non-empty).
    pub principals: Arc<[Principal]>,
}

/// `envoy.config.rbac.v3.Permission`: a predicate over the request and the local end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// `any: true`.
    Any,
    /// `and_rules`: all must match.
    And(Arc<[Permission]>),
    /// `or_rules`: at least one must match.
    Or(Arc<[Permission]>),
    /// `not_rule`.
    Not(Box<Permission>),
    /// `header`: a request header (`:method`, `:authority`, `:path` included).
    Header(HeaderMatcher),
    /// `url_path`: the `:path` without its query.
    UrlPath(StringMatcher),
    /// `destination_ip`: the local address of the connection.
    DestinationIp(CidrRange),
    /// `destination_port`: the local port of the connection.
    DestinationPort(u32),
    /// `destination_port_range`: `[start, end)`.
    DestinationPortRange {
        /// Inclusive start.
        start: u32,
        /// Exclusive end.
        end: u32,
    },
    /// `requested_server_name`: the TLS SNI (gRPC: always `""`, A41).
    RequestedServerName(StringMatcher),
    /// `metadata`: dynamic metadata (never matches without request-auth input, A41).
    Metadata(MetadataMatcher),
}

/// `envoy.config.rbac.v3.Principal`: a predicate over the downstream peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// `any: true`.
    Any,
    /// `and_ids`: all must match.
    And(Arc<[Principal]>),
    /// `or_ids`: at least one must match.
    Or(Arc<[Principal]>),
    /// `not_id`.
    Not(Box<Principal>),
    /// `authenticated`: the peer's certificate principal (URI SAN, the SPIFFE ID) matches; with
    /// no matcher, any TLS-authenticated peer matches (A41).
    Authenticated(Option<StringMatcher>),
    /// `source_ip` (deprecated), `direct_remote_ip`, `remote_ip`: the peer address (A41 maps all
    /// three to the connection's peer; we trust no forwarding headers).
    SourceIp(CidrRange),
    /// `header`: a request header.
    Header(HeaderMatcher),
    /// `url_path`: the `:path` without its query.
    UrlPath(StringMatcher),
    /// `metadata`: dynamic metadata (Istio's `istio_authn` request principal and claims).
    Metadata(MetadataMatcher),
}

/// `envoy.config.core.v3.CidrRange`, normalized: host bits past the prefix are cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CidrRange {
    /// The network address.
    pub address: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix_len: u8,
}

impl CidrRange {
    /// The range `address/prefix_len`, or `None` if the length is too long for the family.
    pub fn new(address: IpAddr, prefix_len: u8) -> Option<Self> {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > bits {
            return None;
        }
        let address = match address {
            IpAddr::V4(a) => IpAddr::V4(mask32(u32::from(a), prefix_len).into()),
            IpAddr::V6(a) => IpAddr::V6(mask128(u128::from(a), prefix_len).into()),
        };
        Some(CidrRange {
            address,
            prefix_len,
        })
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address is compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask32(u32::from(a), self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask128(u128::from(a), self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask128(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

/// `envoy.type.matcher.v3.MetadataMatcher`: the value at `filter` → `path` in the request's
/// dynamic metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataMatcher {
    /// The filter namespace, e.g. `istio_authn`.
    pub filter: Arc<str>,
    /// Keys from the namespace's struct down to the value (non-empty).
    pub path: Arc<[Arc<str>]>,
    /// The value test.
    pub value: ValueMatch,
    /// Invert the result.
    pub invert: bool,
}

/// `envoy.type.matcher.v3.ValueMatcher` (the subset Istio emits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueMatch {
    /// `null_match`.
    Null,
    /// `string_match` against a string value.
    String(StringMatcher),
    /// `bool_match`.
    Bool(bool),
    /// `present_match`.
    Present(bool),
    /// `list_match.one_of`: some element of a list value matches.
    ListOneOf(Box<ValueMatch>),
}
