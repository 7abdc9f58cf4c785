//! The connectors behind the mesh, keyed by the endpoint the mesh picked and the cluster's
//! transport:
//! - [`http1`]: [`HttpClient`], hyper-util's pooled client (its pool is keyed by the URI
//!   authority, which the mesh sets to the endpoint; HTTP/1.1 sends origin-form and the logical
//!   `Host`); one pool for plaintext and one per cluster TLS config ([`crate::tls::ClusterTls`],
//!   ALPN `http/1.1`), so a connection is never reused across transports;
//! - [`http2`]: [`Http2Client`], one multiplexed HTTP/2 connection per endpoint and transport
//!   (h2c, or TLS with ALPN `h2`), sending the logical authority as `:authority` (see [`h2c`]).
//!
//! The transport comes with the request: the [`crate::RouteInfo`] extension the mesh attaches
//! names the cluster's compiled TLS client; a request without one goes plaintext.

pub mod h2c;

pub use h2c::{H2Error, Http2Client};

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client, ResponseFuture},
    rt::{TokioExecutor, TokioTimer},
};

use crate::tls::upstream::Alpn;
use crate::tls::{ClusterTls, MeshTlsStream, TlsError};
use crate::RouteInfo;

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    c
}

fn builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90));
    b
}

/// Connects to the endpoint a URI names over the cluster's TLS config, offering `http/1.1`.
#[derive(Clone, Debug)]
pub struct Http1TlsConnector {
    tls: Arc<ClusterTls>,
}

impl tower::Service<Uri> for Http1TlsConnector {
    type Response = MeshTlsStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<MeshTlsStream, TlsError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| TlsError::Connect {
                    peer: uri.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "uri does not name an endpoint address",
                    ),
                })?;
            tls.connect(addr, Alpn::Http1).await
        })
    }
}

type TlsClients<B> = HashMap<u64, (Weak<ClusterTls>, Client<Http1TlsConnector, B>)>;

/// The pooled HTTP/1.1 client: plaintext, or TLS per the request's [`RouteInfo`].
pub struct HttpClient<B = http_body_util::Full<Bytes>> {
    plain: Client<HttpConnector, B>,
    tls: Arc<ArcSwap<TlsClients<B>>>,
    adding: Arc<Mutex<()>>,
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        HttpClient {
            plain: self.plain.clone(),
            tls: self.tls.clone(),
            adding: self.adding.clone(),
        }
    }
}

impl<B> std::fmt::Debug for HttpClient<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls_configs", &self.tls.load().len())
            .finish()
    }
}

impl<B> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    /// The client for a cluster's TLS config: found lock-free, created on first use (and the
    /// clients of configs no longer in use dropped then, closing their connections).
    fn tls_client(&self, tls: &Arc<ClusterTls>) -> Client<Http1TlsConnector, B> {
        if let Some((_, c)) = self.tls.load().get(&tls.id()) {
            return c.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.tls.load();
        if let Some((_, c)) = current.get(&tls.id()) {
            return c.clone();
        }
        let client = builder().build(Http1TlsConnector { tls: tls.clone() });
        let mut next: TlsClients<B> = current
            .iter()
            .filter(|(_, (w, _))| w.strong_count() > 0)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        next.insert(tls.id(), (Arc::downgrade(tls), client.clone()));
        self.tls.store(Arc::new(next));
        client
    }
}

impl<B> tower::Service<Request<B>> for HttpClient<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        match req
            .extensions()
            .get::<RouteInfo>()
            .and_then(|i| i.tls.as_ref())
        {
            Some(tls) => {
                let client = self.tls_client(tls);
                client.request(req)
            }
            None => self.plain.request(req),
        }
    }
}

/// A pooled HTTP/1.1 client: plaintext, or TLS as the cluster says.
pub fn http1<B>() -> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    HttpClient {
        plain: builder().build(connector()),
        tls: Arc::new(ArcSwap::from_pointee(HashMap::new())),
        adding: Arc::new(Mutex::new(())),
    }
}

/// HTTP/2 with prior knowledge (h2c, or TLS with ALPN `h2` as the cluster says): one
/// multiplexed connection per endpoint, the logical authority as `:authority`.
pub fn http2<B>() -> Http2Client<B> {
    Http2Client::new()
}
