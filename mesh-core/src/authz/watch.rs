//! The inbound policy over ADS: subscribe to the server's own Listener (gRFC A36 — Istio names it
//! `xds.istio.io/grpc/lds/inbound/IP:PORT`, gRPC's default template
//! `grpc/server?xds.resource.listening_address=IP:PORT`) and publish its compiled RBAC filters
//! every time it changes.
//!
//! Until the listener first arrives the published policy denies everything (A36: a server does
//! not serve before its Listener; [`InboundPolicy::ready`] lets a server wait instead of
//! answering 403s). A later NACKed or deleted listener keeps the last good policy (gRFC A88's
//! default), as client targets do.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::{AuthzChain, CompiledRbac};
use crate::cache::ResourceStatus;
use crate::mesh::Mesh;
use crate::model::{
    InboundTlsMode, Listener, Rbac, RbacAction, ResourceType, RouteSource, ServerListener,
};

/// The filter name in denials before the listener arrived.
pub const NOT_SERVING: &str = "xds-server-not-serving";

/// Why [`InboundPolicy::ready`] gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundWaitError {
    /// Nothing arrived within the time given.
    #[error("inbound listener `{0}`: not received within {1:?}")]
    Timeout(Arc<str>, Duration),
    /// The source says it does not exist.
    #[error("inbound listener `{0}` does not exist")]
    DoesNotExist(Arc<str>),
    /// It arrived but was rejected (the error says why).
    #[error("inbound listener `{0}` rejected: {1}")]
    Rejected(Arc<str>, String),
}

/// A live inbound policy: feed [`InboundPolicy::receiver`] to the tower layer's handle.
#[derive(Debug)]
pub struct InboundPolicy {
    name: Arc<str>,
    rx: watch::Receiver<Arc<AuthzChain>>,
    tls: watch::Receiver<Option<InboundTlsMode>>,
    /// `(a policy was received, the resource's status)`.
    state: watch::Receiver<Option<(bool, ResourceStatus)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InboundPolicy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthzChain {
    /// A chain denying every request, naming `filter` (an ALLOW filter with no policy).
    pub fn deny_all(filter: &str) -> Self {
        AuthzChain::new(vec![CompiledRbac::new(
            filter,
            &Rbac {
                action: RbacAction::Allow,
                policies: Arc::from([]),
            },
        )])
    }
}

impl AuthzChain {
    /// The policy of a server listener for a server that does not select filter chains per
    /// connection: the HTTP filters every chain carries (istiod emits the same in each); when
    /// chains differ it denies everything, naming [`CHAINS_DIFFER`], rather than guess.
    pub fn for_server_listener(listener: &ServerListener) -> Self {
        match listener.uniform_http_filters() {
            Some(filters) => AuthzChain::from_http_filters(filters),
            None => {
                tracing::warn!(
                    listener = %listener.name,
                    "inbound listener chains carry different http filters; denying all"
                );
                AuthzChain::deny_all(CHAINS_DIFFER)
            }
        }
    }
}

/// The filter name in denials when a listener's chains carry different filters and the server
/// cannot select one per connection.
pub const CHAINS_DIFFER: &str = "inbound-filter-chains-differ";

impl InboundPolicy {
    /// Subscribes to the server listener `name` through `mesh` and follows it. Must be called
    /// within a Tokio runtime.
    pub fn start(mesh: &Mesh, name: &str) -> Self {
        let name: Arc<str> = name.into();
        let (tx, rx) = watch::channel(Arc::new(AuthzChain::deny_all(NOT_SERVING)));
        let (state_tx, state) = watch::channel(None);
        let (tls_tx, tls) = watch::channel(None);
        let handle = mesh.subscribe(ResourceType::Listener, &name);
        let cache = mesh.cache().clone();
        let task_name = name.clone();
        let task = tokio::spawn(async move {
            let _subscription = handle;
            let mut changes = cache.subscribe_changes();
            let mut last: Option<Arc<Listener>> = None;
            loop {
                changes.borrow_and_update();
                if let Some(entry) = cache.entry::<Listener>(&task_name) {
                    if let Some(l) = entry
                        .value
                        .filter(|l| !last.as_ref().is_some_and(|old| Arc::ptr_eq(old, l)))
                    {
                        match &l.route_source {
                            RouteSource::Server(s) => {
                                tx.send_replace(Arc::new(AuthzChain::for_server_listener(s)));
                                tls_tx.send_replace(Some(s.tls_mode()));
                            }
                            _ => tracing::warn!(
                                listener = %task_name,
                                "inbound listener is a client (api) listener; policy unchanged"
                            ),
                        }
                        last = Some(l);
                    }
                    state_tx.send_replace(Some((last.is_some(), entry.status)));
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        InboundPolicy {
            name,
            rx,
            tls,
            state,
            task,
        }
    }

    /// The listener name followed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current compiled policy.
    pub fn current(&self) -> Arc<AuthzChain> {
        self.rx.borrow().clone()
    }

    /// A receiver of every new policy (e.g. for mesh-tower's `AuthzHandle::follow`).
    pub fn receiver(&self) -> watch::Receiver<Arc<AuthzChain>> {
        self.rx.clone()
    }

    /// The listener's peer-authentication mode (what its filter chains add up to, Istio
    /// PeerAuthentication as translated by the control plane) and its changes; `None` until the
    /// listener arrives. Feed it to `mesh_tower::tls::MeshTlsAcceptor::follow_mode` so a hyper
    /// or axum server accepts TLS and plaintext as the control plane says.
    pub fn tls_mode(&self) -> watch::Receiver<Option<InboundTlsMode>> {
        self.tls.clone()
    }

    /// Waits until the listener has been accepted once (A36: serve only then), at most
    /// `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<AuthzChain>, InboundWaitError> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                let status = state.borrow_and_update().clone();
                match status {
                    Some((true, _)) => return Ok(self.current()),
                    Some((false, ResourceStatus::DoesNotExist)) => {
                        return Err(InboundWaitError::DoesNotExist(self.name.clone()))
                    }
                    Some((false, ResourceStatus::Nacked(e))) => {
                        return Err(InboundWaitError::Rejected(self.name.clone(), e.to_string()))
                    }
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return Err(InboundWaitError::Timeout(self.name.clone(), timeout));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(InboundWaitError::Timeout(self.name.clone(), timeout)))
    }
}
