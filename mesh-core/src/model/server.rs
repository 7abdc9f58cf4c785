//! Server-side (inbound) Listener, gRFC A36 form: its filter chains, each with a match, an
//! optional `DownstreamTlsContext` (gRFC A29, certificate provider instances) and the HTTP
//! filters of its HttpConnectionManager (RBAC per A41).
//!
//! Filter-chain selection ([`ServerListener::select`]) follows A36, which follows Envoy's
//! `FilterChainMatch` order — destination port, destination IP (`prefix_ranges`, most specific
//! wins), transport protocol, source type, source IP (`source_prefix_ranges`, most specific),
//! source port — falling back to `default_filter_chain`. Where they differ:
//! - `destination_port`: gRPC drops chains that set it; we match it (Envoy), as a server knows
//!   its port.
//! - `transport_protocol`: gRPC keeps only chains with `""` or `"raw_buffer"`; we also match
//!   `"tls"` by the connection's first byte (Envoy's `tls_inspector`), which is how a PERMISSIVE
//!   port serves TLS and plaintext. Any other value never matches (as in gRPC).
//! - `server_names` and `application_protocols` set: never matches (gRPC; we do not read SNI or
//!   ALPN before choosing a chain).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::{CertificateProviderInstance, CidrRange, HttpFilter};

/// A server-side (inbound) listener, gRFC A36 form: where it listens and its filter chains.
/// Converted from the Listener proto by `TryFrom` (see `convert/server.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerListener {
    /// The resource name (Istio: `xds.istio.io/grpc/lds/inbound/IP:PORT`, A36 template).
    pub name: Arc<str>,
    /// `address.socket_address`.
    pub address: SocketAddr,
    /// `filter_chains`, in order, without those that can never match (see the module docs).
    pub filter_chains: Arc<[ServerFilterChain]>,
    /// `default_filter_chain`: used when no chain matches.
    pub default_filter_chain: Option<Arc<ServerFilterChain>>,
}

/// One filter chain of a server listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFilterChain {
    /// `name` (may be empty).
    pub name: Arc<str>,
    /// `filter_chain_match`.
    pub matcher: FilterChainMatch,
    /// The `DownstreamTlsContext` of its `transport_socket`; `None` is plaintext.
    pub tls: Option<DownstreamTls>,
    /// The HCM's HTTP filters, router last.
    pub http_filters: Arc<[HttpFilter]>,
}

/// `FilterChainMatch`, the fields a server can match on (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterChainMatch {
    /// `destination_port`.
    pub destination_port: Option<u16>,
    /// `prefix_ranges`: the connection's local (destination) IP.
    pub prefix_ranges: Vec<CidrRange>,
    /// `transport_protocol`.
    pub transport_protocol: TransportProtocol,
    /// `source_type`.
    pub source_type: SourceType,
    /// `source_prefix_ranges`.
    pub source_prefix_ranges: Vec<CidrRange>,
    /// `source_ports`.
    pub source_ports: Vec<u16>,
}

/// `FilterChainMatch.transport_protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// Empty: any.
    #[default]
    Any,
    /// `raw_buffer`: plaintext.
    RawBuffer,
    /// `tls`: the first byte is a TLS handshake record.
    Tls,
}

/// `FilterChainMatch.source_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SourceType {
    /// `ANY`.
    #[default]
    Any,
    /// `SAME_IP_OR_LOOPBACK`.
    SameIpOrLoopback,
    /// `EXTERNAL`.
    External,
}

/// A `DownstreamTlsContext` in gRFC A29 form: certificates from certificate provider instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DownstreamTls {
    /// The instance (and certificate name) providing our certificate and key.
    pub certificate: CertificateProviderInstance,
    /// The instance providing the roots that verify clients; `None` accepts no client
    /// certificate verification (server-only TLS).
    pub validation: Option<CertificateProviderInstance>,
    /// `require_client_certificate`.
    pub require_client_certificate: bool,
}

/// The peer-authentication mode a server listener's chains add up to, in Istio's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InboundTlsMode {
    /// Every chain is plaintext.
    Disable,
    /// TLS and plaintext chains (told apart by transport protocol).
    Permissive,
    /// Every chain requires mTLS.
    Strict,
}

/// What a new connection offers for chain selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// Our address (destination).
    pub local: SocketAddr,
    /// The peer's address (source).
    pub remote: SocketAddr,
    /// Whether the first byte is a TLS handshake record.
    pub tls: bool,
}

impl ServerListener {
    /// Every chain, the default one last.
    pub fn chains(&self) -> impl Iterator<Item = &ServerFilterChain> {
        self.filter_chains
            .iter()
            .chain(self.default_filter_chain.as_deref())
    }

    /// The mode its chains add up to: all mTLS (client certificate required) ⇒ STRICT, none
    /// TLS ⇒ DISABLE, otherwise PERMISSIVE.
    pub fn tls_mode(&self) -> InboundTlsMode {
        let (mut tls, mut plain) = (false, false);
        for c in self.chains() {
            match &c.tls {
                Some(t) if t.require_client_certificate => tls = true,
                _ => plain = true,
            }
        }
        match (tls, plain) {
            (true, false) => InboundTlsMode::Strict,
            (true, true) => InboundTlsMode::Permissive,
            _ => InboundTlsMode::Disable,
        }
    }

    /// Whether any chain (TLS or not) needs TLS certificates.
    pub fn needs_tls(&self) -> bool {
        self.chains().any(|c| c.tls.is_some())
    }

    /// The HTTP filters every chain carries, when they all carry the same ones (what istiod
    /// emits); `None` when chains differ, so a caller that cannot select per connection must
    /// not guess.
    pub fn uniform_http_filters(&self) -> Option<&Arc<[HttpFilter]>> {
        let mut chains = self.chains();
        let first = &chains.next()?.http_filters;
        chains.all(|c| c.http_filters == *first).then_some(first)
    }

    /// The chain for a connection (A36 / Envoy selection, see the module docs); `None` when no
    /// chain matches and there is no default chain: the connection must be closed.
    pub fn select(&self, conn: &ConnectionFacts) -> Option<&ServerFilterChain> {
        self.select_index(conn).map(|i| match i {
            ChainIndex::Chain(i) => &self.filter_chains[i],
            ChainIndex::Default => self
                .default_filter_chain
                .as_deref()
                .expect("index from select_index"),
        })
    }

    /// Like [`ServerListener::select`], as a position (stable across updates that keep the
    /// chains' matches).
    pub fn select_index(&self, conn: &ConnectionFacts) -> Option<ChainIndex> {
        let mut cands: Vec<usize> = (0..self.filter_chains.len()).collect();
        let m = |i: &usize| &self.filter_chains[*i].matcher;
        let port = conn.local.port();
        // Destination port: an exact match beats an unset one.
        narrow(&mut cands, |i| match m(i).destination_port {
            Some(p) if p == port => Some(1),
            Some(_) => None,
            None => Some(0),
        });
        // Destination IP: the longest matching prefix; no ranges matches with length -1.
        narrow(&mut cands, |i| {
            longest(&m(i).prefix_ranges, conn.local.ip())
        });
        // Transport protocol: exact beats any.
        narrow(&mut cands, |i| match (m(i).transport_protocol, conn.tls) {
            (TransportProtocol::Any, _) => Some(0),
            (TransportProtocol::Tls, true) | (TransportProtocol::RawBuffer, false) => Some(1),
            _ => None,
        });
        // Source type: a specific type beats ANY.
        let local_source = conn.remote.ip().is_loopback() || conn.remote.ip() == conn.local.ip();
        narrow(&mut cands, |i| match (m(i).source_type, local_source) {
            (SourceType::Any, _) => Some(0),
            (SourceType::SameIpOrLoopback, true) | (SourceType::External, false) => Some(1),
            _ => None,
        });
        narrow(&mut cands, |i| {
            longest(&m(i).source_prefix_ranges, conn.remote.ip())
        });
        narrow(&mut cands, |i| {
            let ports = &m(i).source_ports;
            if ports.is_empty() {
                Some(0)
            } else {
                ports.contains(&conn.remote.port()).then_some(1)
            }
        });
        match cands.first() {
            Some(&i) => Some(ChainIndex::Chain(i)),
            None => self
                .default_filter_chain
                .as_ref()
                .map(|_| ChainIndex::Default),
        }
    }
}

/// Which chain [`ServerListener::select_index`] chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainIndex {
    /// `filter_chains[i]`.
    Chain(usize),
    /// `default_filter_chain`.
    Default,
}

/// Keeps the candidates with the best score; `None` drops a candidate.
fn narrow(cands: &mut Vec<usize>, score: impl Fn(&usize) -> Option<i32>) {
    let best = cands.iter().filter_map(&score).max();
    match best {
        None => cands.clear(),
        Some(b) => cands.retain(|i| score(i) == Some(b)),
    }
}

/// The longest prefix of `ranges` containing `ip` (`Some(-1)` for no ranges: matches anything,
/// least specifically), `None` when ranges are set and none contains it.
fn longest(ranges: &[CidrRange], ip: IpAddr) -> Option<i32> {
    if ranges.is_empty() {
        return Some(-1);
    }
    ranges
        .iter()
        .filter(|r| r.contains(ip))
        .map(|r| i32::from(r.prefix_len))
        .max()
}
