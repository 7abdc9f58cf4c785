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
//!   through [`Authz`](mesh_tower::authz::Authz) with its filter chain's RBAC filters, the
//!   connection's addresses ([`WithConnectionInfo`](mesh_tower::authz::WithConnectionInfo))
//!   and, with mTLS, the peer's verified SPIFFE ID as a
//!   [`PeerIdentity`](mesh_tower::tls::PeerIdentity) request extension
//!   ([`WithPeerIdentity`](mesh_tower::tls::WithPeerIdentity)).
//! - **not serving** again when the Listener is removed (does-not-exist), is not a server
//!   Listener, or names another address: new connections are closed and existing ones drained
//!   gracefully (HTTP/2 GOAWAY; in-flight calls finish). A NACKed update keeps the last good
//!   Listener (gRFC A88's default), so the server keeps serving.
//!
//! Inbound policy comes from the Listener's filter chains (A36): each new connection's first
//! byte is inspected when a chain depends on it (a TLS context, or a `transport_protocol` match —
//! Envoy's `tls_inspector`), a chain is selected ([`ServerListener::select`]: destination port
//! and IP, transport protocol, source type, IP and port), its `DownstreamTlsContext` (gRFC A29,
//! Envoy `require_client_certificate`) decides the handshake, and its RBAC filters every request.
//! The certificate provider instance `default` (istiod's name, [`DEFAULT_PROVIDER_INSTANCE`]) is
//! the [`WorkloadIdentity`] given to [`XdsServerBuilder::identity`]; a Listener whose chains need
//! TLS from an instance the server does not have puts it in not-serving, with that reason (gRPC
//! would NACK it). This is how Istio PeerAuthentication reaches the server: STRICT is one mTLS
//! chain, DISABLE one plaintext chain, PERMISSIVE (as our control plane emits it) an mTLS chain
//! matched on `transport_protocol: tls` and a plaintext one on `raw_buffer` — one port serving
//! both, which gRPC's own servers cannot (they drop the `tls` chain).
//!
//! Updates (A36): when the chains' matches or TLS contexts change, connections accepted under the
//! old Listener drain gracefully (HTTP/2 GOAWAY, in-flight calls finish) and new ones use the new
//! chains; when only the HTTP filters change, each chain's
//! [`AuthzHandle`](mesh_tower::authz::AuthzHandle) is swapped and open
//! connections apply the new RBAC to their next request, without a drain.
//! [`XdsServerBuilder::tls`] instead fixes the mode in code and ignores the chains' TLS contexts
//! (chains are still selected, by whether the connection is TLS).
//!
//! gRPC only: connections are HTTP/2 (prior knowledge in plaintext, ALPN `h2` over TLS).

use std::{error::Error as StdError, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use mesh_core::authz::AuthzChain;
use mesh_core::bootstrap::Bootstrap;
use mesh_core::cache::{ResourceCache, ResourceStatus};
use mesh_core::mesh::{Mesh, SubscriptionHandle};
use mesh_core::model::{InboundTlsMode, Listener, ResourceType, RouteSource, ServerListener};
use mesh_tower::tls::{MeshTlsAcceptor, PeerAuthMode, WorkloadIdentity};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::Service;

mod inbound;

use inbound::{accept_loop, shape, AcceptLoop, Inbound, Shape};

/// The certificate provider instance name the builder's identity stands for (istiod's
/// `default`, in `DownstreamTlsContext` certificate provider instances, gRFC A29).
pub const DEFAULT_PROVIDER_INSTANCE: &str = "default";

/// gRPC's default server listener name template (A36), used when the bootstrap has none.
pub const DEFAULT_SERVER_LISTENER_TEMPLATE: &str = "grpc/server?xds.resource.listening_address=%s";

/// Default bound on graceful shutdown: how long in-flight calls get before being cut.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

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
    identity: Option<Arc<WorkloadIdentity>>,
    fixed_mode: Option<PeerAuthMode>,
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

    /// The workload identity: certificate provider instance [`DEFAULT_PROVIDER_INSTANCE`] for
    /// the Listener's TLS contexts, so the server follows PeerAuthentication from the control
    /// plane. Without it, a Listener needing TLS is not served.
    pub fn identity(mut self, identity: Arc<WorkloadIdentity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Fixes the mode in code: mTLS with `identity` in `mode` (STRICT, PERMISSIVE or DISABLE),
    /// ignoring the Listener's TLS contexts (for control planes that send none). Without this
    /// or [`XdsServerBuilder::identity`] the server is plaintext and RBAC sees no principal.
    pub fn tls(mut self, identity: Arc<WorkloadIdentity>, mode: PeerAuthMode) -> Self {
        self.identity = Some(identity);
        self.fixed_mode = Some(mode);
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
        let (state_tx, state) = watch::channel(ServingState::NotServing(
            format!("waiting for listener `{name}`").into(),
        ));
        let (inbound_tx, inbound) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);

        let subscription = self.mesh.subscribe(ResourceType::Listener, &name);
        let fixed = match (&self.identity, self.fixed_mode) {
            (Some(identity), Some(mode)) => Some(MeshTlsAcceptor::new(identity.clone(), mode)),
            _ => None,
        };
        let follow = tokio::spawn(follow_listener(Follow {
            cache: self.mesh.cache().clone(),
            name: name.clone(),
            local,
            identity: self.identity,
            fixed: fixed.is_some(),
            state: state_tx,
            inbound: inbound_tx,
            _subscription: subscription,
        }));
        let accept = tokio::spawn(accept_loop(AcceptLoop {
            tcp,
            fixed,
            service,
            state: state.clone(),
            inbound: inbound.clone(),
            stop: stop_rx,
            drain_timeout: self.drain_timeout,
        }));
        Ok(XdsServer {
            local,
            name,
            state,
            inbound,
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
    inbound: watch::Receiver<Option<Arc<Inbound>>>,
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
            identity: None,
            fixed_mode: None,
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

    /// The live RBAC policy of each filter chain of the served Listener (the default chain
    /// last); empty while not serving. For status pages.
    pub fn chain_policies(&self) -> Vec<Arc<AuthzChain>> {
        match &*self.inbound.borrow() {
            Some(i) => i.runtimes().map(|c| c.authz.load()).collect(),
            None => Vec::new(),
        }
    }

    /// The Listener being served and the peer-authentication mode its chains add up to;
    /// `None` while not serving.
    pub fn served_listener(&self) -> Option<(Arc<ServerListener>, InboundTlsMode)> {
        let inbound = self.inbound.borrow();
        let l = inbound.as_ref()?.listener().clone();
        let mode = l.tls_mode();
        Some((l, mode))
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

struct Follow {
    cache: ResourceCache,
    name: Arc<str>,
    local: SocketAddr,
    identity: Option<Arc<WorkloadIdentity>>,
    fixed: bool,
    state: watch::Sender<ServingState>,
    inbound: watch::Sender<Option<Arc<Inbound>>>,
    _subscription: SubscriptionHandle,
}

/// Follows the Listener in the cache: compiles it (or swaps its chains' RBAC), then publishes
/// the serving state (in that order, so the first connection served already sees the policy).
async fn follow_listener(f: Follow) {
    let name = &f.name;
    let local = f.local;
    let mut changes = f.cache.subscribe_changes();
    let mut last: Option<Arc<Listener>> = None;
    let mut last_shape: Option<Shape> = None;
    let mut generation = 0u64;
    loop {
        changes.borrow_and_update();
        let next = match f.cache.entry::<Listener>(name) {
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
                        if last.as_ref().is_some_and(|old| Arc::ptr_eq(old, &l)) {
                            ServingState::Serving
                        } else {
                            last = Some(l.clone());
                            let new_shape = shape(s);
                            let current = f.inbound.borrow().clone();
                            match current {
                                Some(i) if last_shape.as_ref() == Some(&new_shape) => {
                                    // RBAC-only change: live, no drain.
                                    i.update_policies(s);
                                    ServingState::Serving
                                }
                                _ => {
                                    generation += 1;
                                    match Inbound::compile(
                                        s.clone(),
                                        f.identity.as_ref(),
                                        f.fixed,
                                        generation,
                                    ) {
                                        Ok(i) => {
                                            tracing::info!(listener = %name, %local, mode = ?s.tls_mode(), chains = s.filter_chains.len(), "xds server: listener applied");
                                            last_shape = Some(new_shape);
                                            f.inbound.send_replace(Some(Arc::new(i)));
                                            ServingState::Serving
                                        }
                                        Err(reason) => {
                                            tracing::warn!(listener = %name, %local, %reason, "xds server: cannot serve listener");
                                            ServingState::NotServing(reason.into())
                                        }
                                    }
                                }
                            }
                        }
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
            last_shape = None;
            f.inbound.send_replace(None);
        }
        let was_serving = f.state.borrow().is_serving();
        if was_serving && !next.is_serving() {
            tracing::warn!(listener = %name, %local, state = ?next, "xds server: not serving; draining");
        } else if !was_serving && next.is_serving() {
            tracing::info!(listener = %name, %local, "xds server: serving");
        }
        f.state.send_if_modified(|s| {
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

#[cfg(test)]
mod tests;
