use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::Response;
use opentelemetry::{Key, KeyValue, Value};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{attr, mesh_error, outcome, server::Server, status_value, Instruments};
use crate::{
    attempt::AttemptCount,
    error_response::{ErrorHeader, HEADER},
    MeshErrorKind, RouteInfo,
};

/// Most attributes one measurement carries.
const MAX_ATTRS: usize = 10;

/// The attributes known when the request starts: method, and server when it has an authority.
#[derive(Debug)]
pub(crate) struct Base {
    attrs: [KeyValue; 3],
    len: usize,
}

impl Base {
    pub(crate) fn new(method: KeyValue, server: Option<Server>) -> Self {
        match server {
            Some(s) => Base {
                attrs: [
                    method,
                    KeyValue::new(Key::from_static_str(attr::SERVER_ADDRESS), s.address),
                    KeyValue::new(Key::from_static_str(attr::SERVER_PORT), s.port),
                ],
                len: 3,
            },
            None => Base {
                attrs: [method, filler(), filler()],
                len: 1,
            },
        }
    }

    pub(crate) fn attrs(&self) -> &[KeyValue] {
        &self.attrs[..self.len]
    }
}

fn filler() -> KeyValue {
    KeyValue::new(Key::from_static_str(""), false)
}

/// A fixed-capacity attribute list on the stack.
struct Attrs {
    kv: [KeyValue; MAX_ATTRS],
    len: usize,
}

impl Attrs {
    fn new() -> Self {
        Attrs {
            kv: std::array::from_fn(|_| filler()),
            len: 0,
        }
    }

    fn push(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(slot) = self.kv.get_mut(self.len) {
            *slot = KeyValue::new(Key::from_static_str(key), value);
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[KeyValue] {
        &self.kv[..self.len]
    }
}

/// One request in flight: counted in `http.client.active_requests` until dropped.
#[derive(Debug)]
struct InFlight {
    instruments: Arc<Instruments>,
    base: Base,
    start: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.instruments.active.add(-1, self.base.attrs());
    }
}

/// What a finished request contributes beyond its base attributes.
struct Finished {
    status: Option<u16>,
    version: Option<&'static str>,
    error_type: Option<Value>,
    route: Option<Value>,
    cluster: Option<Value>,
    outcome: &'static str,
    attempts: u32,
    overflow: Option<Value>,
}

impl InFlight {
    fn finish<RB, E: 'static>(self, out: &Result<Response<RB>, E>) {
        let seconds = self.start.elapsed().as_secs_f64();
        let f = classify(out);
        let mut a = Attrs::new();
        for kv in self.base.attrs() {
            a.push_kv(kv);
        }
        if let Some(s) = f.status {
            a.push(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(s));
        }
        if let Some(v) = f.version {
            a.push(attr::NETWORK_PROTOCOL_VERSION, v);
        }
        if let Some(e) = &f.error_type {
            a.push(attr::ERROR_TYPE, e.clone());
        }
        let names = |a: &mut Attrs| {
            if let Some(r) = &f.route {
                a.push(attr::MESH_ROUTE, r.clone());
            }
            if let Some(c) = &f.cluster {
                a.push(attr::MESH_CLUSTER, c.clone());
            }
        };
        names(&mut a);
        a.push(attr::MESH_OUTCOME, f.outcome);
        let i = &self.instruments;
        i.duration.record(seconds, a.as_slice());
        if f.attempts > 1 {
            let mut r = Attrs::new();
            names(&mut r);
            i.retries.add(u64::from(f.attempts - 1), r.as_slice());
        }
        if let Some(limit) = f.overflow {
            let mut o = Attrs::new();
            if let Some(c) = &f.cluster {
                o.push(attr::MESH_CLUSTER, c.clone());
            }
            o.push(attr::MESH_LIMIT, limit);
            i.overflows.add(1, o.as_slice());
        }
    }
}

impl Attrs {
    fn push_kv(&mut self, kv: &KeyValue) {
        if let Some(slot) = self.kv.get_mut(self.len) {
            *slot = kv.clone();
            self.len += 1;
        }
    }
}

/// `network.protocol.version` (semconv, recommended) of the response.
fn protocol_version(v: http::Version) -> Option<&'static str> {
    match v {
        http::Version::HTTP_10 => Some("1.0"),
        http::Version::HTTP_11 => Some("1.1"),
        http::Version::HTTP_2 => Some("2"),
        http::Version::HTTP_3 => Some("3"),
        _ => None,
    }
}

fn classify<RB, E: 'static>(out: &Result<Response<RB>, E>) -> Finished {
    let mut f = Finished {
        status: None,
        version: None,
        error_type: None,
        route: None,
        cluster: None,
        outcome: outcome::SUCCESS,
        attempts: 1,
        overflow: None,
    };
    match out {
        Ok(resp) => {
            let status = resp.status().as_u16();
            f.status = Some(status);
            f.version = protocol_version(resp.version());
            if let Some(info) = resp.extensions().get::<RouteInfo>() {
                f.route = Some(Value::from(info.route.clone()));
                f.cluster = Some(Value::from(info.cluster.clone()));
            }
            if let Some(n) = resp.extensions().get::<AttemptCount>() {
                f.attempts = n.attempts;
                f.overflow = n.retry_refused.map(Value::from);
            }
            // A mesh failure already turned into a response by an inner ErrorResponseLayer:
            // read it back from its header (the error path only, so copying is fine).
            // Only a local reply: an upstream's response carries the `RouteInfo` asked for.
            let local = f.route.is_none();
            let header = resp.headers().get(HEADER).and_then(|v| v.to_str().ok());
            if let Some(h) = header.filter(|_| local).and_then(ErrorHeader::parse) {
                f.outcome = outcome::MESH_ERROR;
                f.version = None; // made here, not received over any protocol
                f.route = h.route.map(|r| Value::from(Arc::<str>::from(r)));
                f.cluster = h.cluster.map(|c| Value::from(Arc::<str>::from(c)));
                f.attempts = h.attempts;
                f.overflow = match (h.kind.as_str(), h.limit) {
                    ("overflow", Some(l)) => Some(Value::from(l)),
                    ("retry_budget_exhausted", _) => Some(Value::from("retry_budget")),
                    _ => None,
                };
                f.error_type = Some(Value::from(h.kind));
            } else if status >= 400 {
                f.outcome = outcome::HTTP_ERROR;
                f.error_type = Some(status_value(status));
            }
        }
        Err(e) => match mesh_error(e) {
            Some(me) => {
                let kind = me.kind();
                f.outcome = outcome::MESH_ERROR;
                f.error_type = Some(Value::from(kind.as_str()));
                f.route = me.route_shared().cloned().map(Value::from);
                f.cluster = me.cluster_shared().cloned().map(Value::from);
                f.attempts = me.attempt_count();
                f.overflow = match kind {
                    MeshErrorKind::Overflow(l) => Some(Value::from(l.as_str())),
                    MeshErrorKind::RetryBudgetExhausted => Some(Value::from("retry_budget")),
                    _ => None,
                };
            }
            None => {
                f.outcome = outcome::ERROR;
                f.error_type = Some(Value::from(std::any::type_name::<E>()));
            }
        },
    }
    f
}

pin_project! {
    /// Response future of [`super::Metrics`]: records when the inner future completes.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(fut: F, instruments: Arc<Instruments>, base: Base) -> Self {
        ResponseFuture {
            fut,
            in_flight: Some(InFlight {
                instruments,
                base,
                start: Instant::now(),
            }),
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: 'static,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        if let Some(f) = this.in_flight.take() {
            f.finish(&out);
        }
        Poll::Ready(out)
    }
}
