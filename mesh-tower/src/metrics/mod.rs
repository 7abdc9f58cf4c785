//! Request metrics with OpenTelemetry, following the **OpenTelemetry semantic conventions for
//! HTTP client metrics, v1.37.0** (the `http.client.*` instruments, stable since v1.23), plus
//! counters for what the mesh itself does (retries, circuit-breaker overflows).
//!
//! [`MetricsLayer`] goes *outside* [`crate::MeshStackLayer`] (or the bare [`crate::MeshLayer`])
//! so that it sees each request once, as the caller does: one duration covering every retry and
//! backoff, the response or error the caller gets. Put [`crate::error_response::ErrorResponseLayer`]
//! outside it, if you use one, so mesh failures are seen as typed errors:
//!
//! ```no_run
//! # async fn demo(meter: opentelemetry::metrics::Meter) -> Result<(), Box<dyn std::error::Error>> {
//! use tower::ServiceBuilder;
//! let mesh = mesh_core::mesh::Mesh::from_env()?;
//! let client = ServiceBuilder::new()
//!     .layer(mesh_tower::metrics::MetricsLayer::new(&meter))
//!     .layer(mesh_tower::MeshStackLayer::new(mesh))
//!     .service(mesh_tower::client::http1::<mesh_tower::retry::ReplayBody<http_body_util::Empty<bytes::Bytes>>>());
//! # Ok(()) }
//! ```
//!
//! [`MetricsLayer::from_provider`] takes its own meter (scope `mesh-tower`, schema URL
//! [`SCHEMA_URL`]); [`MetricsLayer::new`] uses the meter given.
//!
//! # Instruments
//!
//! | name | kind | unit | attributes |
//! |---|---|---|---|
//! | `http.client.request.duration` | histogram (f64), semconv buckets 5 ms … 10 s | `s` | method, server, status, version, `error.type`, `mesh.route`, `mesh.cluster`, `mesh.outcome` |
//! | `http.client.active_requests` | up-down counter (i64) | `{request}` | method, server |
//! | `mesh.client.retries` | counter (u64) | `{retry}` | `mesh.route`, `mesh.cluster` |
//! | `mesh.client.overflows` | counter (u64) | `{request}` | `mesh.cluster`, `mesh.limit` |
//!
//! *method, server* are `http.request.method` (the nine methods of RFC 9110 + PATCH, else
//! `_OTHER`), `server.address` and `server.port` (the request's authority: the mesh target as
//! addressed, e.g. `reviews.demo` and `9080`). *status* is `http.response.status_code` and
//! *version* `network.protocol.version` (`1.1`, `2`), present when a response came back. `error.type` is present when the request failed: the
//! [`crate::MeshErrorKind`] name (`no_route`, `timeout`, `overflow`, `fault_abort`,
//! …) for a failure the mesh made, the status code (`"503"`)
//! for a 4xx/5xx response — semconv's rule for HTTP clients — or the error's Rust type name for
//! another inner error. Mesh attributes ([`attr`]): `mesh.route` and `mesh.cluster` name what
//! the request was routed to (absent when it failed before routing), `mesh.outcome` is one of
//! `success` (1xx–3xx), `http_error` (the upstream answered 4xx/5xx), `mesh_error` (the mesh
//! failed the request) or `error` (another inner error).
//!
//! Route and cluster names come from config, so their cardinality is that of the config, not
//! of the traffic; no path or endpoint address is ever an attribute.
//!
//! `mesh.client.retries` counts retries made (attempts − 1) for requests that finished, with
//! or without success. `mesh.client.overflows` counts requests a circuit-breaker limit acted
//! on, `mesh.limit` = `max_requests` (refused outright), or `max_retries` / `retry_budget` (a
//! due retry refused — whether the request then failed or its last response stood; Envoy's
//! `upstream_rq_pending_overflow` and `upstream_rq_retry_overflow`).
//!
//! # Per-cluster state: [`observe_clusters`]
//!
//! What lives in a cluster's shared state rather than on the request path (endpoints, active
//! requests, injected-fault counts, and — as they land — outlier ejections) is read at each
//! collection by observable instruments: [`observe_clusters`] takes a list of
//! [`ClusterCounter`]s, each a name, a kind and a `fn(&ClusterHandle) -> u64` reading an atomic,
//! and reports it per `(mesh.target, mesh.cluster)`. Adding a counter is one `const` (see
//! [`ClusterCounter`]).
//!
//! # Cost on the request path
//!
//! No lock and, once a target has been seen, no allocation in this layer: attribute keys are
//! `&'static str`, route and cluster names are `Arc<str>` clones (OpenTelemetry's `Value` holds
//! an `Arc<str>` as is), status codes are interned once per process, and `server.address` comes
//! from a lock-free (`ArcSwap`) per-authority cache bounded at 1,024 entries. The inner stack is
//! asked (by a zero-sized request extension) to return the [`crate::RouteInfo`] of the attempt
//! that answered as a response extension: one small allocation per response, only under this
//! layer. The OpenTelemetry SDK's own aggregation (a read-locked map per instrument, found by the
//! attribute slice) is outside this crate's control.
//!
//! The duration runs from `call` until the response headers (or the error) arrive, measured with
//! `tokio::time::Instant`; the body's transfer is not included, as in .NET's and Go's HTTP
//! client instrumentation. A request dropped by its caller before completing leaves
//! `http.client.active_requests` and records no duration.
//!
//! gRPC calls through [`crate::MeshStackLayer::grpc`] get the same HTTP instruments; gRPC's own
//! instruments (gRFC A66: `grpc.client.attempt.*`, `grpc.client.call.duration`) are
//! `mesh_grpc::metrics`, on `MeshChannel`.

mod future;
mod layer;
mod observe;
mod server;

use std::{
    any::Any,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use http::{Method, Request, Response};
use opentelemetry::{
    metrics::{Counter, Histogram, Meter, UpDownCounter},
    Key, KeyValue, Value,
};
use tower::Service;

pub use future::ResponseFuture;
pub use layer::MetricsLayer;
pub use observe::{observe_clusters, ClusterCounter, ClusterReading};

use crate::{attempt::ReportRoute, error::BoxError, route::authority_of, MeshError};
use server::ServerCache;

/// Attribute names: the semantic conventions' and the mesh's own.
pub mod attr {
    /// `http.request.method` (semconv): `GET`, `POST`, …, or `_OTHER`.
    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    /// `http.response.status_code` (semconv), when a response came back.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// `network.protocol.version` (semconv): the response's HTTP version, `1.1` or `2`.
    pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
    /// `server.address` (semconv): the host of the request's authority (the mesh target).
    pub const SERVER_ADDRESS: &str = "server.address";
    /// `server.port` (semconv): the port of the request's authority (80/443 by scheme if none).
    pub const SERVER_PORT: &str = "server.port";
    /// `error.type` (semconv): the mesh error kind, the 4xx/5xx status code, or a type name.
    pub const ERROR_TYPE: &str = "error.type";
    /// `mesh.route`: the name of the route the request matched.
    pub const MESH_ROUTE: &str = "mesh.route";
    /// `mesh.cluster`: the cluster the request was sent to.
    pub const MESH_CLUSTER: &str = "mesh.cluster";
    /// `mesh.outcome`: `success`, `http_error`, `mesh_error` or `error`.
    pub const MESH_OUTCOME: &str = "mesh.outcome";
    /// `mesh.limit`: the circuit-breaker limit that overflowed (`max_requests`, `max_retries`,
    /// `retry_budget`).
    pub const MESH_LIMIT: &str = "mesh.limit";
    /// `mesh.target`: the mesh target (listener) name, on the per-cluster instruments.
    pub const MESH_TARGET: &str = "mesh.target";
}

/// Instrument names.
pub mod name {
    /// `http.client.request.duration` (semconv, stable): histogram, seconds.
    pub const REQUEST_DURATION: &str = "http.client.request.duration";
    /// `http.client.active_requests` (semconv, development): up-down counter.
    pub const ACTIVE_REQUESTS: &str = "http.client.active_requests";
    /// `mesh.client.retries`: counter of retries made.
    pub const RETRIES: &str = "mesh.client.retries";
    /// `mesh.client.overflows`: counter of requests a circuit-breaker limit acted on.
    pub const OVERFLOWS: &str = "mesh.client.overflows";
}

/// The semantic-conventions version these instruments follow, as a schema URL.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// The bucket boundaries the semantic conventions advise for `http.client.request.duration`.
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `mesh.outcome` values.
mod outcome {
    pub(super) const SUCCESS: &str = "success";
    pub(super) const HTTP_ERROR: &str = "http_error";
    pub(super) const MESH_ERROR: &str = "mesh_error";
    pub(super) const ERROR: &str = "error";
}

/// The instruments, shared by every clone of the service.
#[derive(Debug)]
pub(crate) struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    retries: Counter<u64>,
    overflows: Counter<u64>,
    servers: ServerCache,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        Instruments {
            duration: meter
                .f64_histogram(name::REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP client requests.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter(name::ACTIVE_REQUESTS)
                .with_unit("{request}")
                .with_description("Number of active HTTP requests.")
                .build(),
            retries: meter
                .u64_counter(name::RETRIES)
                .with_unit("{retry}")
                .with_description("Retries the mesh made (attempts after the first).")
                .build(),
            overflows: meter
                .u64_counter(name::OVERFLOWS)
                .with_unit("{request}")
                .with_description(
                    "Requests refused, or retries not made, at a circuit-breaker limit.",
                )
                .build(),
            servers: ServerCache::default(),
        }
    }
}

/// The service [`MetricsLayer`] produces.
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    instruments: Arc<Instruments>,
}

impl<S> Metrics<S> {
    pub(crate) fn new(inner: S, instruments: Arc<Instruments>) -> Self {
        Metrics { inner, instruments }
    }
}

impl<S, B, RB> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let method = KeyValue::new(
            Key::from_static_str(attr::HTTP_REQUEST_METHOD),
            method_name(req.method()),
        );
        let server = authority_of(&req).map(|a| {
            let https = req.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
            self.instruments.servers.get(&a, https)
        });
        req.extensions_mut().insert(ReportRoute);
        let base = future::Base::new(method, server);
        self.instruments.active.add(1, base.attrs());
        ResponseFuture::new(self.inner.call(req), self.instruments.clone(), base)
    }
}

/// The semconv method name: one of the known methods, else `_OTHER`.
fn method_name(m: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(k, _)| k == m)
        .map_or("_OTHER", |(_, n)| n)
}

/// `error.type` for a status code: the code as a string, interned once per process (100–599).
fn status_value(code: u16) -> Value {
    static CODES: OnceLock<Box<[Value]>> = OnceLock::new();
    let codes = CODES.get_or_init(|| {
        (100u16..600)
            .map(|c| Value::from(Arc::<str>::from(c.to_string())))
            .collect()
    });
    match code
        .checked_sub(100)
        .and_then(|i| codes.get(usize::from(i)))
    {
        Some(v) => v.clone(),
        None => Value::from("_OTHER"),
    }
}

/// The mesh error inside an inner error, if there is one: the error itself (the mesh stacks'
/// error type) or a boxed one.
fn mesh_error<E: 'static>(e: &E) -> Option<&MeshError> {
    let any = e as &dyn Any;
    any.downcast_ref::<MeshError>().or_else(|| {
        any.downcast_ref::<BoxError>()
            .and_then(|b| b.downcast_ref::<MeshError>())
    })
}

#[cfg(test)]
mod tests;
