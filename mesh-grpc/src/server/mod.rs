//! xDS-enabled servers (gRFC A36): a tonic service served over HTTP/2 whose inbound policy —
//! RBAC from Istio AuthorizationPolicy (gRFC A41) — comes from the server's own Listener.
//!
//! [`XdsServer`] binds its port at once, resolves its Listener's name from the bootstrap's
//! `server_listener_resource_name_template` (`%s` replaced by the bound `IP:PORT`, IPv6 in
//! brackets, percent-encoded in `xdstp:` templates as gRFC A47 says; gRPC's default `grpc/server?xds.resource.listening_address=%s` when the bootstrap
//! has none — istiod's bootstraps set `xds.istio.io/grpc/lds/inbound/%s`) and subscribes to it.
//!
//! Serving states, as A36 describes them:
//! - **not serving** until the Listener arrives: connections are accepted and closed at once
//!   (what grpc-go's listener wrapper does), so clients see the connection fail (tonic:
//!   `UNAVAILABLE`) and retry elsewhere. We bind before the Listener arrives rather than after so
//!   the port is reserved, bind errors come early, and port 0 can be resolved into the name.
//! - **serving** once a valid server Listener for our address is cached: every request runs
//!   through [`AuthzLayer`] with the Listener's RBAC filters, the connection's addresses
//!   ([`WithConnectionInfo`]) and, with mTLS, the peer's verified SPIFFE ID
//!   ([`WithPeerIdentity`] behind [`MeshTlsAcceptor`]).
//! - **not serving** again when the Listener is removed (does-not-exist), is not a server
//!   Listener, or names another address: new connections are closed and existing ones drained
//!   gracefully (HTTP/2 GOAWAY; in-flight calls finish). A NACKed update keeps the last good
//!   Listener (gRFC A88's default), so the server keeps serving.
//!
//! An updated Listener does **not** drain connections, unlike A36's "drain on filter chain
//! change": the only thing we take from it is the RBAC policy, which [`AuthzHandle`] swaps
//! for every connection at once and applies to each new request (calls already authorized run
//! to completion). Filter-chain matching, per-chain TLS contexts from xDS (A29) and HTTP filters
//! other than RBAC are not applied; mTLS comes from the identity given to the builder (Istio's
//! PeerAuthentication mode, [`PeerAuthMode`]).
//!
//! gRPC only: connections are HTTP/2 (prior knowledge in plaintext, ALPN `h2` over TLS).

use std::{error::Error as StdError, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::authz::{AuthzChain, NOT_SERVING};
use mesh_core::bootstrap::Bootstrap;
use mesh_core::cache::{ResourceCache, ResourceStatus};
use mesh_core::mesh::{Mesh, SubscriptionHandle};
use mesh_core::model::{Listener, ResourceType, RouteSource};
use mesh_tower::authz::{Authz, AuthzHandle, AuthzLayer, ConnectionInfo, WithConnectionInfo};
use mesh_tower::tls::{
    MeshTlsAcceptor, PeerAuthMode, ServerStream, WithPeerIdentity, WorkloadIdentity,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service, ServiceExt};

/// gRPC's default server listener name template (A36), used when the bootstrap has none.
pub const DEFAULT_SERVER_LISTENER_TEMPLATE: &str = "grpc/server?xds.resource.listening_address=%s";

/// Default bound on graceful shutdown: how long in-flight calls get before being cut.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why an [`XdsServer`] could not start, or stopped waiting.
#[derive(Debug, thiserror::Error)]
pub enum XdsServerError {
    /// The listening socket could not be bound.
    #[error("xds server: bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// [`XdsServer::serving`] gave up; the last reason for not serving.
    #[error("xds server {addr}: not serving after {waited:?}: {reason}")]
    NotServing {
        /// The bound address.
        addr: SocketAddr,
        /// How long it waited.
        waited: Duration,
        /// Why it was not serving.
        reason: Arc<str>,
    },
}

/// Whether the server accepts connections (A36 serving / not-serving modes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServingState {
    /// Not serving: connections are accepted and closed at once. The reason names the
    /// Listener (waiting for it, does not exist, rejected, wrong address).
    NotServing(Arc<str>),
    /// Serving with the Listener's policy.
    Serving,
}

impl ServingState {
    /// Whether it is [`ServingState::Serving`].
    pub fn is_serving(&self) -> bool {
        matches!(self, ServingState::Serving)
    }
}

/// Builds an [`XdsServer`]; see the module docs.
#[derive(Debug)]
pub struct XdsServerBuilder {
    mesh: Mesh,
    template: String,
    tls: Option<(Arc<WorkloadIdentity>, PeerAuthMode)>,
    drain_timeout: Duration,
}

impl XdsServerBuilder {
    /// Names the Listener with `template` (`%s` replaced by the bound `IP:PORT`).
    pub fn listener_name_template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// Takes the bootstrap's `server_listener_resource_name_template`, if it has one.
    pub fn bootstrap(self, bootstrap: &Bootstrap) -> Self {
        match &bootstrap.server_listener_resource_name_template {
            Some(t) => self.listener_name_template(t.clone()),
            None => self,
        }
    }

    /// Serves mTLS with `identity` in `mode` (STRICT, PERMISSIVE or DISABLE); without it the
    /// server is plaintext and RBAC sees no principal.
    pub fn tls(mut self, identity: Arc<WorkloadIdentity>, mode: PeerAuthMode) -> Self {
        self.tls = Some((identity, mode));
        self
    }

    /// Bounds [`XdsServer::shutdown`]'s wait for in-flight calls (default
    /// [`DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Binds `addr`, subscribes to the Listener and serves `service` (a `tonic::service::Routes`,
    /// a generated `…Server`, or any HTTP service) in the background once it arrives. Must be
    /// called within a Tokio runtime.
    pub async fn bind<S, RB>(
        self,
        addr: SocketAddr,
        service: S,
    ) -> Result<XdsServer, XdsServerError>
    where
        S: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: http_body::Body<Data = Bytes> + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| XdsServerError::Bind { addr, source })?;
        let local = tcp
            .local_addr()
            .map_err(|source| XdsServerError::Bind { addr, source })?;
        let name: Arc<str> = listener_name(&self.template, local).into();
        let layer = AuthzLayer::new(AuthzChain::deny_all(NOT_SERVING));
        let authz = layer.handle().clone();
        let (state_tx, state) = watch::channel(ServingState::NotServing(
            format!("waiting for listener `{name}`").into(),
        ));
        let (stop_tx, stop_rx) = watch::channel(false);

        let subscription = self.mesh.subscribe(ResourceType::Listener, &name);
        let follow = tokio::spawn(follow_listener(
            self.mesh.cache().clone(),
            name.clone(),
            local,
            authz.clone(),
            state_tx,
            subscription,
        ));
        let acceptor = self
            .tls
            .map(|(identity, mode)| MeshTlsAcceptor::new(identity, mode));
        let accept = tokio::spawn(accept_loop(AcceptLoop {
            tcp,
            acceptor,
            service: layer.layer(service),
            state: state.clone(),
            stop: stop_rx,
            drain_timeout: self.drain_timeout,
        }));
        Ok(XdsServer {
            local,
            name,
            state,
            authz,
            stop: stop_tx,
            accept: Some(accept),
            follow,
        })
    }
}

/// A running xDS-enabled server. Dropping it stops everything at once; [`XdsServer::shutdown`]
/// stops gracefully.
#[derive(Debug)]
pub struct XdsServer {
    local: SocketAddr,
    name: Arc<str>,
    state: watch::Receiver<ServingState>,
    authz: AuthzHandle,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    follow: JoinHandle<()>,
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.follow.abort();
        if let Some(a) = &self.accept {
            a.abort();
        }
    }
}

impl XdsServer {
    /// A builder for a server configured by `mesh`'s xDS source, with gRPC's default Listener
    /// name template, plaintext.
    pub fn builder(mesh: Mesh) -> XdsServerBuilder {
        XdsServerBuilder {
            mesh,
            template: DEFAULT_SERVER_LISTENER_TEMPLATE.to_owned(),
            tls: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The Listener resource name followed.
    pub fn listener_name(&self) -> &str {
        &self.name
    }

    /// The serving state and its changes.
    pub fn serving_state(&self) -> watch::Receiver<ServingState> {
        self.state.clone()
    }

    /// The live policy (read it for status pages; the server stores every Listener update).
    pub fn authz(&self) -> &AuthzHandle {
        &self.authz
    }

    /// Waits until the server is serving, at most `timeout`.
    pub async fn serving(&self, timeout: Duration) -> Result<(), XdsServerError> {
        let mut state = self.state.clone();
        let wait = async { state.wait_for(ServingState::is_serving).await.is_ok() };
        match tokio::time::timeout(timeout, wait).await {
            Ok(true) => Ok(()),
            _ => Err(XdsServerError::NotServing {
                addr: self.local,
                waited: timeout,
                reason: match &*self.state.borrow() {
                    ServingState::NotServing(r) => r.clone(),
                    ServingState::Serving => "stopped".into(),
                },
            }),
        }
    }

    /// Stops accepting (the port is closed), sends GOAWAY on every connection and waits for
    /// in-flight calls, at most the drain timeout; connections still open then are closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

/// Follows the Listener in the cache: stores its policy, then publishes the serving state (in
/// that order, so the first connection served already sees the policy).
async fn follow_listener(
    cache: ResourceCache,
    name: Arc<str>,
    local: SocketAddr,
    authz: AuthzHandle,
    state: watch::Sender<ServingState>,
    _subscription: SubscriptionHandle,
) {
    let mut changes = cache.subscribe_changes();
    let mut last: Option<Arc<Listener>> = None;
    loop {
        changes.borrow_and_update();
        let next = match cache.entry::<Listener>(&name) {
            None => ServingState::NotServing(format!("waiting for listener `{name}`").into()),
            Some(entry) => match (entry.value, entry.status) {
                (None, ResourceStatus::DoesNotExist) => {
                    ServingState::NotServing(format!("listener `{name}` does not exist").into())
                }
                (None, ResourceStatus::Nacked(e)) => {
                    ServingState::NotServing(format!("listener `{name}` rejected: {e}").into())
                }
                (None, _) => {
                    ServingState::NotServing(format!("waiting for listener `{name}`").into())
                }
                (Some(l), _) => match &l.route_source {
                    RouteSource::Server(s) if address_matches(s.address, local) => {
                        if !last.as_ref().is_some_and(|old| Arc::ptr_eq(old, &l)) {
                            authz.store(AuthzChain::for_server_listener(s));
                            last = Some(l.clone());
                        }
                        ServingState::Serving
                    }
                    RouteSource::Server(s) => ServingState::NotServing(
                        format!("listener `{name}` is for {}, not {local}", s.address).into(),
                    ),
                    _ => ServingState::NotServing(
                        format!("listener `{name}` is not a server listener").into(),
                    ),
                },
            },
        };
        if !next.is_serving() {
            // A later arrival recompiles, even if the cache hands back the same value.
            last = None;
        }
        let was_serving = state.borrow().is_serving();
        if was_serving && !next.is_serving() {
            tracing::warn!(listener = %name, %local, state = ?next, "xds server: not serving; draining");
        } else if !was_serving && next.is_serving() {
            tracing::info!(listener = %name, %local, "xds server: serving");
        }
        state.send_if_modified(|s| {
            let changed = *s != next;
            *s = next;
            changed
        });
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The Listener name for `local` under `template` (gRFC A36, A47): `%s` replaced by `IP:PORT`
/// (IPv6 in brackets), percent-encoded when the template is an `xdstp:` name — everything but
/// RFC 3986 unreserved characters, sub-delimiters, `:`, `@` and `/` (what grpc-go's
/// `PopulateResourceTemplate` does with Go's `url.PathEscape` per segment).
fn listener_name(template: &str, local: SocketAddr) -> String {
    let addr = local.to_string();
    if !template.starts_with("xdstp:") {
        return template.replace("%s", &addr);
    }
    let mut encoded = String::with_capacity(addr.len() + 8);
    for b in addr.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    template.replace("%s", &encoded)
}

/// The Listener's address matches ours: same port, and the same IP unless we listen on the
/// unspecified address (then the Listener carries the workload's own IP, as Istio's do).
fn address_matches(listener: SocketAddr, local: SocketAddr) -> bool {
    listener.port() == local.port() && (local.ip().is_unspecified() || listener.ip() == local.ip())
}

struct AcceptLoop<S> {
    tcp: TcpListener,
    acceptor: Option<MeshTlsAcceptor>,
    service: Authz<S>,
    state: watch::Receiver<ServingState>,
    stop: watch::Receiver<bool>,
    drain_timeout: Duration,
}

async fn accept_loop<S, RB>(mut l: AcceptLoop<S>)
where
    S: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = async { let _ = l.stop.wait_for(|s| *s).await; } => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = l.tcp.accept() => match r {
                Ok((tcp, remote)) => {
                    if !l.state.borrow().is_serving() {
                        // A36 not serving: accept and close.
                        drop(tcp);
                        continue;
                    }
                    conns.spawn(serve_connection(
                        tcp,
                        remote,
                        l.acceptor.clone(),
                        l.service.clone(),
                        Drain { state: l.state.clone(), stop: l.stop.clone() },
                    ));
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "xds server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Connections see `stop` and drain.
    drop(l.tcp);
    let drained = tokio::time::timeout(l.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "xds server: drain timed out; closing connections"
        );
    }
    conns.shutdown().await;
}

/// When a connection must drain: the server stopped serving (checked when the connection
/// starts too, so one accepted just before the change is not missed) or is shutting down.
struct Drain {
    state: watch::Receiver<ServingState>,
    stop: watch::Receiver<bool>,
}

impl Drain {
    async fn wait(mut self) {
        // A dropped sender means the server is gone: drain too.
        let not_serving = async {
            let _ = self.state.wait_for(|s| !s.is_serving()).await;
        };
        let stopping = async {
            let _ = self.stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = not_serving => {}
            _ = stopping => {}
        }
    }
}

async fn serve_connection<S, RB>(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: Option<MeshTlsAcceptor>,
    service: Authz<S>,
    drain: Drain,
) where
    S: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let Ok(local) = tcp.local_addr() else { return };
    let (stream, peer) = match &acceptor {
        None => (ServerStream::Plain(tcp), None),
        Some(a) => match a.accept(tcp).await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "xds server: connection refused");
                return;
            }
        },
    };
    // tonic handlers read `Request::remote_addr()` from this, as under tonic's own server.
    let tcp_info = TcpConnectInfo {
        local_addr: Some(local),
        remote_addr: Some(remote),
    };
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(tcp_info.clone());
        service.clone().oneshot(req)
    });
    let svc = WithPeerIdentity::new(
        WithConnectionInfo::new(svc, ConnectionInfo { local, remote }),
        peer,
    );
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.wait() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "xds server: connection ended");
    }
}

#[cfg(test)]
mod tests;
