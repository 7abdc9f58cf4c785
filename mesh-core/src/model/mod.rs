//! The validated configuration model: plain data converted from the Envoy v3 xDS protos.
//!
//! Wire types stop here. Every type in this module is produced by a `TryFrom` of the matching
//! `envoy-types` proto (in [`convert`]) that validates it the way Envoy and gRPC's xDS client do
//! (see `shared/design/XDS-SEMANTICS.md`, rows 1–9, 21–22 and 33–34; gRFC A27, A28, A36, A39, A41, A42, A48).
//! Past the conversion everything is cheap to clone (`Arc<str>`, `Arc<[T]>`) and invalid states
//! are unrepresentable: an enum, never a string to interpret later.
//!
//! Unknown `Any`s that need no interpretation (an optional HTTP filter, typed metadata) are kept
//! as [`OpaqueAny`] — their type URL and bytes — rather than rejected.

mod cluster;
pub mod convert;
mod endpoint;
mod error;
mod fault;
mod hash_policy;
mod jwt;
mod listener;
mod matcher;
mod outlier;
mod policy;
mod rbac;
mod rewrite;
mod route;
mod server;
mod upstream_tls;

pub use cluster::{Cluster, ClusterDiscovery, CommonLbConfig, LbPolicy, SlowStart};
pub use endpoint::{
    ClusterLoadAssignment, DropOverload, Endpoint, HealthStatus, Locality, LocalityEndpoints,
};
pub use error::{ErrorKind, ModelError, ResourceType};
pub use fault::{
    find_override, ClusterFaultOverrides, FaultAbort, FaultAbortKind, FaultDelay, FaultDelayKind,
    FaultOverride, FaultOverrides, FaultPercent, FaultPolicy,
};
pub use hash_policy::{HashPolicy, HashSource, RegexRewrite};
pub use jwt::{ClaimToHeader, JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement, JwtRule};
pub use listener::{
    HttpFilter, HttpFilterConfig, Listener, RouteSource, DEFAULT_STREAM_IDLE_TIMEOUT,
};
pub use matcher::{HeaderMatch, HeaderMatcher, QueryParamMatcher, Regex, StringMatcher};
pub use outlier::{
    ConnectionLimits, Consecutive, FailurePercentage, OutlierDetection, PoolLimits, SuccessRate,
};
pub use policy::{
    RetryBackoff, RetryBudget, RetryLimits, RetryOn, RetryPolicy, RoutePolicy, RoutingPriority,
    DEFAULT_BACKOFF_BASE, DEFAULT_ROUTE_TIMEOUT,
};
pub use rbac::{
    CidrRange, MetadataMatcher, Permission, Principal, Rbac, RbacAction, RbacPolicy, ValueMatch,
};
pub use rewrite::{
    AppendAction, HeaderAdd, HeaderLevel, HeaderMutation, PathRewrite, RequestRewrite,
};
pub use route::{
    ClusterWeight, PathMatch, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
pub use server::{
    ChainIndex, ConnectionFacts, DownstreamTls, FilterChainMatch, InboundTlsMode,
    ServerFilterChain, ServerListener, SourceType, TransportProtocol,
};
pub use upstream_tls::{CertificateProviderInstance, UpstreamTls, UpstreamTransport};

use std::sync::Arc;

/// An `Any` the model carries without interpreting: its type URL and its encoded bytes.
///
/// Used for optional HTTP filters we do not implement and for extension configs the spine does
/// not read yet; keeping the bytes means nothing is lost when the config is shown or re-served.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpaqueAny {
    /// The full type URL, e.g. `type.googleapis.com/stats.PluginConfig`.
    pub type_url: Arc<str>,
    /// The encoded message.
    pub value: bytes::Bytes,
}

/// One xDS resource type: its type URL, its proto, and how to validate it into the model.
///
/// The ADS client is generic over this trait; the four implementations are [`Listener`],
/// [`RouteConfiguration`], [`Cluster`] and [`ClusterLoadAssignment`].
pub trait XdsResource: Sized + Clone + Send + Sync + 'static {
    /// Which of the four resource types this is.
    const RESOURCE_TYPE: ResourceType;
    /// The Envoy v3 proto this resource is decoded from.
    type Proto: prost::Message + Default + Send + 'static;

    /// The resource's name as it appears on the wire, read from the proto (before validation,
    /// so that an invalid resource can still be NACKed by name).
    fn proto_name(proto: &Self::Proto) -> &str;

    /// Validates the proto into the model.
    fn from_proto(proto: Self::Proto) -> Result<Self, ModelError>;

    /// The resource's name.
    fn name(&self) -> &str;
}
