//! The server's live inbound configuration, compiled from its Listener, and the per-connection
//! path: first byte (TLS or not), filter-chain selection (gRFC A36), the chain's TLS handshake
//! (A29, Envoy `DownstreamTlsContext`) and its RBAC (A41), then HTTP/2 until the connection ends
//! or must drain.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::authz::AuthzChain;
use mesh_core::model::{
    ChainIndex, ConnectionFacts, DownstreamTls, FilterChainMatch, ServerListener, TransportProtocol,
};
use mesh_tower::authz::{Authz, AuthzHandle, ConnectionInfo, WithConnectionInfo};
use mesh_tower::tls::{
    server::DEFAULT_ACCEPT_TIMEOUT, sniff_tls, MeshTlsAcceptor, PeerAuthMode, ServerStream,
    WithPeerIdentity, WorkloadIdentity,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::TcpConnectInfo;
use tower::{Service, ServiceExt};

use super::{BoxError, ServingState, DEFAULT_PROVIDER_INSTANCE};

/// One compiled filter chain.
#[derive(Debug)]
pub(crate) struct ChainRuntime {
    pub(crate) authz: AuthzHandle,
    /// The acceptor for its TLS context; `None` is plaintext.
    tls: Option<MeshTlsAcceptor>,
}

/// The compiled Listener. Replaced whole (new `generation`, connections of older ones drain)
/// when the chains' matches or TLS contexts change; otherwise only the RBAC of its chains is
/// swapped, live.
#[derive(Debug)]
pub(crate) struct Inbound {
    listener: Arc<ServerListener>,
    pub(crate) chains: Vec<ChainRuntime>,
    default: Option<ChainRuntime>,
    pub(crate) generation: u64,
    /// Whether a chain depends on the first byte (a TLS context or a transport protocol).
    sniff: bool,
}

/// What decides whether an update needs a drain: every chain's match and TLS context, and
/// whether there is a default chain.
pub(crate) type Shape = (Vec<(FilterChainMatch, Option<DownstreamTls>)>, bool);

pub(crate) fn shape(l: &ServerListener) -> Shape {
    (
        l.chains()
            .map(|c| (c.matcher.clone(), c.tls.clone()))
            .collect(),
        l.default_filter_chain.is_some(),
    )
}

impl Inbound {
    /// Compiles `listener`; `Err` is the reason not to serve (a TLS context this server cannot
    /// satisfy). `identity` is certificate provider instance [`DEFAULT_PROVIDER_INSTANCE`];
    /// with `fixed` (the builder's code-chosen mode) the chains' TLS contexts are not used.
    pub(crate) fn compile(
        listener: Arc<ServerListener>,
        identity: Option<&Arc<WorkloadIdentity>>,
        fixed: bool,
        generation: u64,
    ) -> Result<Self, String> {
        let acceptor = identity.map(|i| MeshTlsAcceptor::new(i.clone(), PeerAuthMode::Strict));
        let compile = |c: &mesh_core::model::ServerFilterChain| -> Result<ChainRuntime, String> {
            let tls = match (&c.tls, fixed) {
                (None, _) | (Some(_), true) => None,
                (Some(t), false) => Some(tls_acceptor(&listener.name, &c.name, t, &acceptor)?),
            };
            Ok(ChainRuntime {
                authz: AuthzHandle::new(AuthzChain::from_http_filters(&c.http_filters)),
                tls,
            })
        };
        let chains = listener
            .filter_chains
            .iter()
            .map(compile)
            .collect::<Result<_, _>>()?;
        let default = listener
            .default_filter_chain
            .as_deref()
            .map(compile)
            .transpose()?;
        let sniff = listener
            .chains()
            .any(|c| c.tls.is_some() || c.matcher.transport_protocol != TransportProtocol::Any);
        Ok(Self {
            listener,
            chains,
            default,
            generation,
            sniff,
        })
    }

    /// Stores the RBAC of `listener` (same shape as ours) into the live chains.
    pub(crate) fn update_policies(&self, listener: &ServerListener) {
        for (rt, c) in self.chains.iter().zip(listener.filter_chains.iter()) {
            rt.authz
                .store(AuthzChain::from_http_filters(&c.http_filters));
        }
        if let (Some(rt), Some(c)) = (&self.default, &listener.default_filter_chain) {
            rt.authz
                .store(AuthzChain::from_http_filters(&c.http_filters));
        }
    }

    pub(crate) fn listener(&self) -> &Arc<ServerListener> {
        &self.listener
    }

    /// Every chain's runtime, the default chain last.
    pub(crate) fn runtimes(&self) -> impl Iterator<Item = &ChainRuntime> {
        self.chains.iter().chain(self.default.as_ref())
    }

    fn select(&self, facts: &ConnectionFacts) -> Option<&ChainRuntime> {
        match self.listener.select_index(facts)? {
            ChainIndex::Chain(i) => self.chains.get(i),
            ChainIndex::Default => self.default.as_ref(),
        }
    }
}

/// The acceptor for chain `chain`'s TLS context: its certificate and roots must come from the
/// one provider instance this server has (A29: an unknown instance is an error).
fn tls_acceptor(
    listener: &str,
    chain: &str,
    tls: &DownstreamTls,
    acceptor: &Option<MeshTlsAcceptor>,
) -> Result<MeshTlsAcceptor, String> {
    let Some(acceptor) = acceptor else {
        return Err(format!(
            "listener `{listener}` chain `{chain}` requires TLS (certificate provider instance \
             `{}`) but the server has no identity (XdsServerBuilder::identity)",
            tls.certificate.instance_name
        ));
    };
    for (what, i) in [
        ("certificate", Some(&tls.certificate)),
        ("roots", tls.validation.as_ref()),
    ] {
        if let Some(i) = i {
            if &*i.instance_name != DEFAULT_PROVIDER_INSTANCE {
                return Err(format!(
                    "listener `{listener}` chain `{chain}`: {what} from certificate provider \
                     instance `{}`; this server has only `{DEFAULT_PROVIDER_INSTANCE}`",
                    i.instance_name
                ));
            }
        }
    }
    if !tls.require_client_certificate {
        return Err(format!(
            "listener `{listener}` chain `{chain}`: TLS without client certificates is not \
             supported (mTLS only)"
        ));
    }
    Ok(acceptor.clone())
}

pub(crate) struct AcceptLoop<S> {
    pub(crate) tcp: TcpListener,
    /// The builder's code-chosen acceptor (`XdsServerBuilder::tls`), overriding chain TLS.
    pub(crate) fixed: Option<MeshTlsAcceptor>,
    pub(crate) service: S,
    pub(crate) state: watch::Receiver<ServingState>,
    pub(crate) inbound: watch::Receiver<Option<Arc<Inbound>>>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) drain_timeout: Duration,
}

pub(crate) async fn accept_loop<S, RB>(mut l: AcceptLoop<S>)
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
                    let inbound = l.inbound.borrow().clone();
                    let Some(inbound) = inbound.filter(|_| l.state.borrow().is_serving()) else {
                        // A36 not serving: accept and close.
                        drop(tcp);
                        continue;
                    };
                    conns.spawn(serve_connection(
                        tcp,
                        remote,
                        inbound,
                        l.fixed.clone(),
                        l.service.clone(),
                        Drain {
                            state: l.state.clone(),
                            inbound: l.inbound.clone(),
                            stop: l.stop.clone(),
                        },
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

/// When a connection must drain: the server stopped serving, the Listener's chains changed
/// (A36: a new generation), or the server is shutting down. Each is checked when the
/// connection starts too, so one accepted just before the change is not missed.
struct Drain {
    state: watch::Receiver<ServingState>,
    inbound: watch::Receiver<Option<Arc<Inbound>>>,
    stop: watch::Receiver<bool>,
}

impl Drain {
    async fn wait(mut self, generation: u64) {
        // A dropped sender means the server is gone: drain too.
        let not_serving = async {
            let _ = self.state.wait_for(|s| !s.is_serving()).await;
        };
        let replaced = async {
            let _ = self
                .inbound
                .wait_for(|i| i.as_ref().map(|i| i.generation) != Some(generation))
                .await;
        };
        let stopping = async {
            let _ = self.stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = not_serving => {}
            _ = replaced => {}
            _ = stopping => {}
        }
    }
}

async fn serve_connection<S, RB>(
    tcp: TcpStream,
    remote: SocketAddr,
    inbound: Arc<Inbound>,
    fixed: Option<MeshTlsAcceptor>,
    service: S,
    drain: Drain,
) where
    S: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let Ok(local) = tcp.local_addr() else { return };
    let refused = |why: &dyn std::fmt::Display| {
        tracing::debug!(%remote, %local, reason = %why, "xds server: connection refused");
    };
    let (stream, peer, authz) = if let Some(acceptor) = fixed {
        let (stream, peer) = match acceptor.accept(tcp).await {
            Ok(accepted) => accepted,
            Err(e) => return refused(&e),
        };
        let tls = matches!(stream, ServerStream::Tls(_));
        let facts = ConnectionFacts { local, remote, tls };
        let Some(chain) = inbound.select(&facts) else {
            return refused(&"no filter chain matches");
        };
        (stream, peer, chain.authz.clone())
    } else {
        let tls = if inbound.sniff {
            match sniff_tls(&tcp, DEFAULT_ACCEPT_TIMEOUT).await {
                Ok(tls) => tls,
                Err(e) => return refused(&e),
            }
        } else {
            false
        };
        let facts = ConnectionFacts { local, remote, tls };
        let Some(chain) = inbound.select(&facts) else {
            return refused(&"no filter chain matches");
        };
        match (&chain.tls, tls) {
            (Some(acceptor), true) => match acceptor.accept_tls(tcp).await {
                Ok((stream, peer)) => (stream, peer, chain.authz.clone()),
                Err(e) => return refused(&e),
            },
            (Some(_), false) => {
                return refused(&"plaintext on a chain that requires mTLS (STRICT)");
            }
            (None, _) => (ServerStream::Plain(tcp), None, chain.authz.clone()),
        }
    };
    // tonic handlers read `Request::remote_addr()` from this, as under tonic's own server.
    let tcp_info = TcpConnectInfo {
        local_addr: Some(local),
        remote_addr: Some(remote),
    };
    let service = Authz::new(service, authz);
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
        _ = drain.wait(inbound.generation) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "xds server: connection ended");
    }
}
