//! gRPC's own client metrics on a [`crate::MeshChannel`], opt-in: **gRFC A66** (OpenTelemetry
//! Metrics), the per-call and per-attempt latency instruments.
//!
//! | name | kind | unit | attributes |
//! |---|---|---|---|
//! | `grpc.client.attempt.started` | counter (u64) | `{attempt}` | `grpc.method`, `grpc.target` |
//! | `grpc.client.attempt.duration` | histogram (f64), A66 latency buckets | `s` | `grpc.method`, `grpc.target`, `grpc.status` |
//! | `grpc.client.call.duration` | histogram (f64), A66 latency buckets | `s` | `grpc.method`, `grpc.target`, `grpc.status` |
//!
//! ```no_run
//! # async fn demo(provider: opentelemetry_sdk::metrics::SdkMeterProvider) -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = mesh_grpc::ClientMetrics::from_provider(&provider);
//! let channel = mesh_grpc::MeshChannel::connect("xds:///greeter.demo:50051")
//!     .await?
//!     .with_metrics(&metrics);
//! # Ok(()) }
//! ```
//!
//! # What is measured, and where
//!
//! - **Call**: from the channel's `call` — the top of the stack, before routing — until the
//!   status is known to the caller: at once for a failure the mesh made (its status is the
//!   one `status.rs` gives the call) and for a trailers-only response (`grpc-status` in the
//!   headers); else when the response body yields its trailers. A call whose body is dropped
//!   before its status arrived is recorded `CANCELLED`, as gRPC records a call the application
//!   cancelled.
//! - **Attempt**: one per request the retry layer sends to an endpoint — the attempts gRFC A6
//!   retries make. An attempt starts when it reaches the HTTP/2 client (after the endpoint
//!   pick, which is lock-free; A66 starts it just before the pick) and ends like a call: its
//!   `grpc-status` from headers or trailers, `UNAVAILABLE` when it failed at the transport
//!   (connect refused, stream reset before headers), `CANCELLED` when it was abandoned first
//!   (the call's deadline cut it, or the caller went away — gRPC would say
//!   `DEADLINE_EXCEEDED` for the former; this layer cannot tell the two apart).
//!
//! A call that failed before any endpoint was picked (no route, no healthy endpoint, circuit
//! breaker) has no attempt; gRPC counts one that fails in the picker, so
//! `grpc.client.attempt.started` here is "attempts sent". A response without `grpc-status` is
//! classified by gRPC's HTTP→gRPC mapping (404 → `UNIMPLEMENTED`, 503 → `UNAVAILABLE`, …;
//! 200 without a status → `UNKNOWN`).
//!
//! Attributes: `grpc.method` is the request path without its leading `/`
//! (`helloworld.Greeter/SayHello`); a client names its own methods, but past 1,024 distinct
//! names the rest are recorded as `other` (A66's guard against cardinality blow-up).
//! `grpc.target` is the channel's canonical target, `xds:///host[:port]`. `grpc.status` is the
//! status code name (`OK`, `UNAVAILABLE`, …).
//!
//! Not implemented (A66 also lists them): the sent/received compressed message size
//! histograms, the server instruments, and A96's retry histograms (`grpc.client.call.retries`,
//! `.transparent_retries`, `.retry_delay`); mesh-tower's `mesh.client.retries` counter counts
//! retries for HTTP clients.
//!
//! # Cost per call
//!
//! Nothing when not enabled beyond an `Option` check. Enabled: no lock and no allocation in
//! this crate once a method has been seen — attribute keys are static, the target is one
//! `Arc<str>` per channel, method names come from a lock-free (`ArcSwap`) map, status names are
//! `&'static str`, and the response body is wrapped in place (the one `Box` tonic's `Body`
//! needs is made anyway). The OpenTelemetry SDK's own aggregation is outside this crate.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::{
    metrics::{Counter, Histogram, Meter, MeterProvider},
    InstrumentationScope, Key, KeyValue, Value,
};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tonic::Code;

/// Instrument names (gRFC A66).
pub mod name {
    /// `grpc.client.attempt.started`: counter of attempts started.
    pub const ATTEMPT_STARTED: &str = "grpc.client.attempt.started";
    /// `grpc.client.attempt.duration`: histogram of attempt latency, seconds.
    pub const ATTEMPT_DURATION: &str = "grpc.client.attempt.duration";
    /// `grpc.client.call.duration`: histogram of call latency, seconds.
    pub const CALL_DURATION: &str = "grpc.client.call.duration";
}

/// Attribute names (gRFC A66).
pub mod attr {
    /// `grpc.method`: the full method name, `package.Service/Method`.
    pub const GRPC_METHOD: &str = "grpc.method";
    /// `grpc.target`: the channel's canonical target URI, `xds:///host[:port]`.
    pub const GRPC_TARGET: &str = "grpc.target";
    /// `grpc.status`: the status code's name, `OK`, `UNAVAILABLE`, ….
    pub const GRPC_STATUS: &str = "grpc.status";
}

/// A66's latency buckets, seconds (given to the SDK as advice; a view may override them).
pub const LATENCY_BOUNDARIES: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
    0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
    0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// Distinct `grpc.method` values kept; later ones are recorded as `other`.
const MAX_METHODS: usize = 1024;
/// The `grpc.method` value past [`MAX_METHODS`] (A66's word for it).
const OTHER: &str = "other";

/// The gRFC A66 client instruments, created once on a meter; give them to any number of
/// channels with [`crate::MeshChannel::with_metrics`]. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct ClientMetrics {
    instruments: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    attempt_started: Counter<u64>,
    attempt_duration: Histogram<f64>,
    call_duration: Histogram<f64>,
    methods: MethodCache,
}

impl ClientMetrics {
    /// The instruments, created on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let latency = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BOUNDARIES.to_vec())
                .build()
        };
        ClientMetrics {
            instruments: Arc::new(Instruments {
                attempt_started: meter
                    .u64_counter(name::ATTEMPT_STARTED)
                    .with_unit("{attempt}")
                    .with_description("Number of client call attempts started.")
                    .build(),
                attempt_duration: latency(
                    name::ATTEMPT_DURATION,
                    "End-to-end time taken to complete a client call attempt.",
                ),
                call_duration: latency(
                    name::CALL_DURATION,
                    "Time taken by gRPC to complete an RPC from application's perspective.",
                ),
                methods: MethodCache::default(),
            }),
        }
    }

    /// The instruments on a meter of their own from `provider`: scope `mesh-grpc` and this
    /// crate's version (A66: the meter names the gRPC library; it never falls back on a global
    /// provider).
    pub fn from_provider(provider: &impl MeterProvider) -> Self {
        let scope = InstrumentationScope::builder("mesh-grpc")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        ClientMetrics::new(&provider.meter_with_scope(scope))
    }

    /// The per-channel handle: these instruments and the channel's target.
    pub(crate) fn for_target(&self, authority: &str) -> ChannelMetrics {
        ChannelMetrics {
            instruments: self.instruments.clone(),
            target: Value::from(Arc::<str>::from(format!("xds:///{authority}"))),
        }
    }
}

/// The instruments and one channel's `grpc.target`.
#[derive(Clone, Debug)]
pub(crate) struct ChannelMetrics {
    instruments: Arc<Instruments>,
    target: Value,
}

/// Which histogram a [`Measure`] ends in.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Call,
    Attempt,
}

impl ChannelMetrics {
    /// Starts measuring a call of `path`.
    pub(crate) fn call(&self, path: &str) -> Guard {
        self.start(Kind::Call, path)
    }

    /// Starts measuring an attempt of `path`, counting it as started.
    pub(crate) fn attempt(&self, path: &str) -> Guard {
        let g = self.start(Kind::Attempt, path);
        if let Some(m) = &g.0 {
            self.instruments.attempt_started.add(1, &m.attrs[..2]);
        }
        g
    }

    fn start(&self, kind: Kind, path: &str) -> Guard {
        let method = self.instruments.methods.get(path);
        Guard(Some(Measure {
            instruments: self.instruments.clone(),
            kind,
            attrs: [
                KeyValue::new(Key::from_static_str(attr::GRPC_METHOD), method),
                KeyValue::new(Key::from_static_str(attr::GRPC_TARGET), self.target.clone()),
                KeyValue::new(Key::from_static_str(attr::GRPC_STATUS), ""),
            ],
            start: Instant::now(),
        }))
    }
}

/// One call or attempt being measured.
#[derive(Debug)]
struct Measure {
    instruments: Arc<Instruments>,
    kind: Kind,
    /// method, target, and a slot for the status.
    attrs: [KeyValue; 3],
    start: Instant,
}

impl Measure {
    fn record(mut self, code: Code) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.attrs[2] = KeyValue::new(Key::from_static_str(attr::GRPC_STATUS), code_name(code));
        let histogram = match self.kind {
            Kind::Call => &self.instruments.call_duration,
            Kind::Attempt => &self.instruments.attempt_duration,
        };
        histogram.record(seconds, &self.attrs);
    }
}

/// A measurement that records once: with the status given to [`Guard::end`], or `CANCELLED`
/// when dropped before. `Guard(None)` measures nothing (metrics off, or already recorded).
#[derive(Debug, Default)]
pub(crate) struct Guard(Option<Measure>);

impl Guard {
    /// Records with `code`, if not done yet.
    pub(crate) fn end(&mut self, code: Code) {
        if let Some(m) = self.0.take() {
            m.record(code);
        }
    }

    /// Ends the measurement if the response headers carry the final status (trailers-only, or
    /// not a gRPC response); else moves it into the response body, which ends it at the
    /// trailers.
    pub(crate) fn observe<B>(mut self, resp: Response<B>) -> Response<Observed<B>> {
        if self.0.is_some() {
            if let Some(code) = head_status(&resp) {
                self.end(code);
            }
        }
        resp.map(|inner| Observed { inner, guard: self })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

/// The status a response's headers settle: `grpc-status` in them (trailers-only), else gRPC's
/// HTTP→gRPC mapping for a non-200 status; `None` when the status comes in the trailers.
fn head_status<B>(resp: &Response<B>) -> Option<Code> {
    if let Some(code) = grpc_status(resp.headers()) {
        return Some(code);
    }
    match resp.status().as_u16() {
        200 => None,
        s => Some(crate::status::code_for_http(s)),
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let v = headers.get("grpc-status")?;
    Some(Code::from_bytes(v.as_bytes()))
}

pin_project! {
    /// A response body that ends its measurement when the trailers (with `grpc-status`) come.
    #[derive(Debug)]
    pub(crate) struct Observed<B> {
        #[pin]
        inner: B,
        guard: Guard,
    }
}

impl<B> Body for Observed<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let out = ready!(this.inner.poll_frame(cx));
        if this.guard.0.is_some() {
            match &out {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        this.guard
                            .end(grpc_status(trailers).unwrap_or(Code::Unknown));
                    }
                }
                // The stream broke: gRPC reports a lost stream as UNAVAILABLE.
                Some(Err(_)) => this.guard.end(Code::Unavailable),
                // Ended without trailers: no status was received.
                None => this.guard.end(Code::Unknown),
            }
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `grpc.status` values: the code names of the gRPC spec (`doc/statuscodes.md`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `grpc.method` values per request path, interned: lock-free on the hit path (one `ArcSwap`
/// load and a map lookup by `&str`), bounded at [`MAX_METHODS`].
#[derive(Debug, Default)]
struct MethodCache {
    methods: ArcSwap<HashMap<Box<str>, Value>>,
}

impl MethodCache {
    fn get(&self, path: &str) -> Value {
        let method = path.strip_prefix('/').unwrap_or(path);
        if let Some(v) = self.methods.load().get(method) {
            return v.clone();
        }
        if self.methods.load().len() >= MAX_METHODS {
            return Value::from(OTHER);
        }
        let value = Value::from(Arc::<str>::from(method));
        self.methods.rcu(|map| {
            let mut map = HashMap::clone(map);
            if map.len() < MAX_METHODS {
                map.insert(method.into(), value.clone());
            }
            map
        });
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use opentelemetry_sdk::metrics::{
        data::{AggregatedMetrics, MetricData},
        InMemoryMetricExporter, SdkMeterProvider,
    };

    fn setup() -> (SdkMeterProvider, InMemoryMetricExporter, ChannelMetrics) {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter.clone())
            .build();
        let m = ClientMetrics::from_provider(&provider).for_target("greeter:50051");
        (provider, exporter, m)
    }

    /// `(status, count)` of every data point of histogram `name`, sorted.
    fn histogram(exporter: &InMemoryMetricExporter, name: &str) -> Vec<(String, u64)> {
        let all = exporter.get_finished_metrics().unwrap();
        let mut out = Vec::new();
        for rm in &all {
            for sm in rm.scope_metrics() {
                for m in sm.metrics().filter(|m| m.name() == name) {
                    let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                        panic!("{name} is not an f64 histogram");
                    };
                    for p in h.data_points() {
                        let status = p
                            .attributes()
                            .find(|kv| kv.key.as_str() == attr::GRPC_STATUS)
                            .map(|kv| kv.value.to_string())
                            .unwrap_or_default();
                        out.push((status, p.count()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn response(status: u16, grpc: Option<&str>) -> Response<http_body_util::Full<Bytes>> {
        let mut b = Response::builder().status(status);
        if let Some(g) = grpc {
            b = b.header("grpc-status", g);
        }
        b.body(http_body_util::Full::new(Bytes::new())).unwrap()
    }

    #[tokio::test]
    async fn statuses_come_from_headers_trailers_transport_or_drop() {
        let (provider, exporter, m) = setup();
        // Trailers-only UNAVAILABLE; 404 without grpc-status; dropped before the answer.
        drop(m.call("/g.S/M").observe(response(200, Some("14"))));
        drop(m.call("/g.S/M").observe(response(404, None)));
        drop(m.call("/g.S/M"));
        // A streamed answer: the status is in the trailers, recorded when they are read.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = http_body_util::StreamBody::new(futures_stream(vec![
            Frame::data(Bytes::from_static(b"x")),
            Frame::trailers(trailers),
        ]));
        let resp = m.call("/g.S/M").observe(Response::new(body));
        provider.force_flush().unwrap();
        assert_eq!(
            histogram(&exporter, name::CALL_DURATION),
            [
                ("CANCELLED".into(), 1),
                ("UNAVAILABLE".into(), 1),
                ("UNIMPLEMENTED".into(), 1)
            ]
        );
        let collected = resp.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
        exporter.reset();
        provider.force_flush().unwrap();
        let calls = histogram(&exporter, name::CALL_DURATION);
        assert!(calls.contains(&("OK".into(), 1)), "{calls:?}");
    }

    fn futures_stream(
        frames: Vec<Frame<Bytes>>,
    ) -> impl tokio_stream::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> {
        tokio_stream::iter(frames.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn attempts_are_counted_with_method_and_target() {
        let (provider, exporter, m) = setup();
        let mut a = m.attempt("/helloworld.Greeter/SayHello");
        a.end(Code::Ok);
        drop(
            m.attempt("/helloworld.Greeter/SayHello")
                .observe(response(200, Some("14"))),
        );
        provider.force_flush().unwrap();
        assert_eq!(
            histogram(&exporter, name::ATTEMPT_DURATION),
            [("OK".into(), 1), ("UNAVAILABLE".into(), 1)]
        );
        let all = exporter.get_finished_metrics().unwrap();
        let started = all
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == name::ATTEMPT_STARTED)
            .expect("attempt counter");
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = started.data() else {
            panic!("not a u64 sum");
        };
        let points: Vec<_> = sum.data_points().collect();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].value(), 2);
        let attrs: Vec<(String, String)> = points[0]
            .attributes()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        assert_eq!(
            attrs,
            [
                (
                    attr::GRPC_METHOD.into(),
                    "helloworld.Greeter/SayHello".into()
                ),
                (attr::GRPC_TARGET.into(), "xds:///greeter:50051".into()),
            ]
        );
    }

    #[test]
    fn methods_past_the_cap_are_other() {
        let cache = MethodCache::default();
        for i in 0..MAX_METHODS {
            assert_eq!(
                cache.get(&format!("/s/m{i}")).to_string(),
                format!("s/m{i}")
            );
        }
        assert_eq!(cache.get("/s/m0").to_string(), "s/m0");
        assert_eq!(cache.get("/s/new").to_string(), OTHER);
    }
}
