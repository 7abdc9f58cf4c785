//! The connectors behind the mesh, keyed by the endpoint the mesh picked:
//! - [`http1`]: hyper-util's pooled client (its pool is keyed by the URI authority, which the
//!   mesh sets to the endpoint; HTTP/1.1 sends origin-form and the logical `Host`);
//! - [`http2`]: [`Http2Client`], one multiplexed HTTP/2 connection per endpoint, sending the
//!   logical authority as `:authority` (see [`h2c`]).

pub mod h2c;

pub use h2c::{H2Error, Http2Client};

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

/// HTTP/2 with prior knowledge (no TLS): one multiplexed connection per endpoint, the logical
/// authority as `:authority`.
pub fn http2<B>() -> Http2Client<B> {
    Http2Client::new()
}
