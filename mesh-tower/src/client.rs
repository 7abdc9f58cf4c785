//! The pooled connector behind the mesh: hyper-util's client, one connection pool per endpoint
//! (the pool is keyed by the URI authority, which [`crate::MeshService`] sets to the picked
//! endpoint), HTTP/1.1 by default or HTTP/2 with prior knowledge.

use std::time::Duration;

use bytes::Bytes;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};

/// The client type the constructors return: a `tower::Service<http::Request<B>>`.
pub type HttpClient<B = http_body_util::Full<Bytes>> = Client<HttpConnector, B>;

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    c
}

/// A pooled HTTP/1.1 client.
pub fn http1<B>() -> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector())
}

/// A pooled HTTP/2 client (prior knowledge, no TLS): one multiplexed connection per endpoint.
pub fn http2<B>() -> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .build(connector())
}
