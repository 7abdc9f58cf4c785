//! HTTP/2 (prior knowledge) to mesh endpoints: one multiplexed connection per endpoint, and the
//! request's logical authority sent as `:authority`.
//!
//! The mesh addresses each request to the endpoint it picked (`http://10.0.0.7:50051/…`) and
//! carries the logical authority in `Host` (see [`crate::RouteLayer`]). hyper-util's pooled
//! client would key its pool on the URI and then send that URI's authority — the endpoint's
//! address — as `:authority`, so a gRPC server would see `10.0.0.7:50051` where grpc-go and
//! Envoy send `greeter.demo:50051`. This client keys connections by the endpoint address and
//! rewrites the URI back to the logical authority (dropping `Host`, which HTTP/2 expresses as
//! `:authority`, RFC 9113 §8.3.1) before sending.
//!
//! Connections: looked up lock-free (`ArcSwap` map keyed by endpoint and transport,
//! copy-on-write when an endpoint is first seen); the connection task clears its slot when the
//! connection closes, and the next request reconnects. Concurrent first requests to one
//! endpoint share one connect. The transport is the request's [`crate::RouteInfo`]`::tls`:
//! h2c without one, else TLS with ALPN `h2` ([`crate::tls::upstream`]); slots of TLS configs no
//! longer in use are dropped when a new slot is added, closing their connections.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{header::HOST, uri::Authority, Request, Response, Uri};
use hyper::{body::Incoming, client::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::tls::{upstream::Alpn, ClusterTls, PeerIdentity};
use crate::RouteInfo;

/// Why a request could not be sent over HTTP/2.
#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    /// Connecting to the endpoint failed (TCP or the HTTP/2 handshake).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request's URI does not name an endpoint address (`ip:port`).
    #[error("request uri `{0}` does not name an endpoint address")]
    NotAnEndpoint(Uri),
    /// The request failed on an established connection.
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

impl H2Error {
    /// Whether this is a connect failure (Envoy's `connect-failure`).
    pub fn is_connect(&self) -> bool {
        matches!(self, H2Error::Connect { .. })
    }
}

type Sender<B> = http2::SendRequest<B>;

/// An open connection: its request sender and, over TLS, the server's verified identity
/// (copied into every response's extensions, as hyper-util's pooled client does for HTTP/1).
struct Live<B> {
    sender: Sender<B>,
    peer: Option<PeerIdentity>,
}

impl<B> Clone for Live<B> {
    fn clone(&self) -> Self {
        Live {
            sender: self.sender.clone(),
            peer: self.peer.clone(),
        }
    }
}

struct Slot<B> {
    sender: ArcSwapOption<Live<B>>,
    connecting: tokio::sync::Mutex<()>,
    /// The TLS config this slot connects with (`None`: h2c).
    tls: Option<std::sync::Weak<ClusterTls>>,
}

/// Slots by endpoint and transport (`0`: h2c, else [`ClusterTls::id`]).
type Slots<B> = HashMap<(SocketAddr, u64), Arc<Slot<B>>>;

/// The HTTP/2 client: a `tower::Service<http::Request<B>>` for requests addressed to an endpoint.
pub struct Http2Client<B> {
    slots: Arc<ArcSwap<Slots<B>>>,
    adding: Arc<Mutex<()>>,
    connect_timeout: Duration,
}

impl<B> Clone for Http2Client<B> {
    fn clone(&self) -> Self {
        Http2Client {
            slots: self.slots.clone(),
            adding: self.adding.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

impl<B> std::fmt::Debug for Http2Client<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Client")
            .field("endpoints", &self.slots.load().len())
            .finish()
    }
}

impl<B> Default for Http2Client<B> {
    fn default() -> Self {
        Http2Client::new()
    }
}

impl<B> Http2Client<B> {
    /// A client with a 5 s connect timeout.
    pub fn new() -> Self {
        Http2Client {
            slots: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            adding: Arc::new(Mutex::new(())),
            connect_timeout: Duration::from_secs(5),
        }
    }

    fn slot(&self, addr: SocketAddr, tls: Option<&Arc<ClusterTls>>) -> Arc<Slot<B>> {
        let key = (addr, tls.map_or(0, |t| t.id()));
        if let Some(s) = self.slots.load().get(&key) {
            return s.clone();
        }
        // First request to this endpoint: copy-on-write insert (rare; off the steady path).
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.slots.load();
        if let Some(s) = current.get(&key) {
            return s.clone();
        }
        let slot = Arc::new(Slot {
            sender: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            tls: tls.map(Arc::downgrade),
        });
        // Slots of TLS configs nobody uses any more go (their connections close).
        let mut next: Slots<B> = current
            .iter()
            .filter(|(_, s)| s.tls.as_ref().is_none_or(|w| w.strong_count() > 0))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        next.insert(key, slot.clone());
        self.slots.store(Arc::new(next));
        slot
    }
}

impl<B> Slot<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn live(&self) -> Option<Live<B>> {
        self.sender
            .load()
            .as_deref()
            .filter(|l| !l.sender.is_closed())
            .cloned()
    }

    async fn sender(
        self: &Arc<Self>,
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<Arc<ClusterTls>>,
    ) -> Result<Live<B>, H2Error> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let connect =
            |source: Box<dyn std::error::Error + Send + Sync>| H2Error::Connect { addr, source };
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let (sender, conn, peer) = match tls {
            Some(tls) => {
                let stream = tls
                    .connect(addr, Alpn::H2)
                    .await
                    .map_err(|e| connect(e.into()))?;
                let peer = stream.peer_identity().cloned();
                let (sender, conn) = builder
                    .handshake(stream)
                    .await
                    .map_err(|e| connect(e.into()))?;
                (sender, Box::pin(conn) as ConnTask, peer)
            }
            None => {
                let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| connect(format!("timed out after {timeout:?}").into()))?
                    .map_err(|e| connect(e.into()))?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| connect(e.into()))?;
                (sender, Box::pin(conn) as ConnTask, None)
            }
        };
        let sender = Arc::new(Live { sender, peer });
        self.sender.store(Some(sender.clone()));
        let slot = Arc::downgrade(self);
        let mine = Arc::downgrade(&sender);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %addr, error = %e, "http/2 connection ended");
            }
            // Clear the slot if it still holds this connection.
            if let Some(slot) = slot.upgrade() {
                let current = slot.sender.load();
                if current
                    .as_ref()
                    .map(Arc::downgrade)
                    .is_some_and(|c| c.ptr_eq(&mine))
                {
                    slot.sender.store(None);
                }
            }
        });
        Ok((*sender).clone())
    }
}

/// A connection's driver, h2c or TLS.
type ConnTask = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// Points the URI back at the logical authority carried in `Host` (dropping the header), and
/// returns the endpoint address the URI named.
fn to_logical<B>(req: &mut Request<B>) -> Result<SocketAddr, H2Error> {
    let addr: SocketAddr = req
        .uri()
        .authority()
        .and_then(|a| a.as_str().parse().ok())
        .ok_or_else(|| H2Error::NotAnEndpoint(req.uri().clone()))?;
    if let Some(host) = req.headers_mut().remove(HOST) {
        if let Ok(authority) = Authority::try_from(host.as_bytes()) {
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            parts.authority = Some(authority);
            *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        }
    }
    Ok(addr)
}

impl<B> tower::Service<Request<B>> for Http2Client<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Incoming>;
    type Error = H2Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, H2Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), H2Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let addr = match to_logical(&mut req) {
            Ok(a) => a,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let tls = req
            .extensions()
            .get::<RouteInfo>()
            .and_then(|i| i.tls.clone());
        let slot = self.slot(addr, tls.as_ref());
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let Live { mut sender, peer } = slot.sender(addr, timeout, tls).await?;
            let mut resp = sender.send_request(req).await?;
            if let Some(peer) = peer {
                resp.extensions_mut().insert(peer);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::server::conn::http2 as server;
    use tower::ServiceExt;

    use super::*;

    /// An h2c server echoing the `:authority` it received (and any `host` header) in headers;
    /// counts accepted connections.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        echo_server_on("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    async fn echo_server_on(
        addr: SocketAddr,
    ) -> std::io::Result<(SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let count = conns.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the server aborts them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let authority = req
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .unwrap_or_default();
                        let host = req.headers().get(HOST).is_some();
                        let resp = Response::builder()
                            .header("x-authority", authority)
                            .header("x-had-host", host.to_string())
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                    let _ = server::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok((addr, conns, task))
    }

    fn request(addr: SocketAddr) -> Request<Empty<Bytes>> {
        Request::get(format!("http://{addr}/helloworld.Greeter/SayHello"))
            .header(HOST, "greeter.demo:50051")
            .body(Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn sends_the_logical_authority_over_one_connection_per_endpoint() {
        let (addr, conns, _server) = echo_server().await;
        let client = Http2Client::new();
        for _ in 0..5 {
            let resp = client.clone().oneshot(request(addr)).await.unwrap();
            assert_eq!(resp.headers()["x-authority"], "greeter.demo:50051");
            assert_eq!(resp.headers()["x-had-host"], "false");
            resp.into_body().collect().await.unwrap();
        }
        // Concurrent first requests and later ones all share the one connection.
        let calls = (0..8).map(|_| client.clone().oneshot(request(addr)));
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn reconnects_after_the_connection_closes_and_names_connect_failures() {
        let (addr, conns, server) = echo_server().await;
        let client = Http2Client::new();
        client.clone().oneshot(request(addr)).await.unwrap();
        // Kill the server: the connection closes; a new server on the same port is reached by
        // a fresh connection.
        server.abort();
        let _ = server.await;
        // The old connection may need a moment to be seen as closed: bounded wait.
        let mut failed = None;
        for _ in 0..200 {
            match client.clone().oneshot(request(addr)).await {
                Err(e) => {
                    failed = Some(e);
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let err = failed.expect("requests fail once the server is gone");
        assert!(
            err.is_connect() || matches!(err, H2Error::Request(_)),
            "{err}"
        );
        // Back on the same address: the same client reconnects on its own.
        let (_, conns2, _server2) = echo_server_on(addr).await.expect("rebind the freed port");
        client.clone().oneshot(request(addr)).await.unwrap();
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(conns2.load(Ordering::SeqCst), 1);

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = client.oneshot(request(closed)).await.unwrap_err();
        assert!(err.is_connect(), "{err}");
        assert!(err.to_string().contains(&closed.to_string()));
    }

    #[tokio::test]
    async fn a_uri_without_an_endpoint_address_is_refused() {
        let client: Http2Client<Empty<Bytes>> = Http2Client::new();
        let req = Request::get("http://greeter.demo/x")
            .body(Empty::new())
            .unwrap();
        assert!(matches!(
            client.oneshot(req).await,
            Err(H2Error::NotAnEndpoint(_))
        ));
    }
}
