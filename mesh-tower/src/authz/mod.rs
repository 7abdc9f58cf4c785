//! Inbound authorization: [`AuthzLayer`] runs the compiled RBAC filters
//! ([`mesh_core::authz::AuthzChain`], Istio AuthorizationPolicy → Envoy RBAC, gRFC A41) on every
//! request a server receives, before the handler.
//!
//! What it reads from request extensions (the server puts them there per connection):
//! - [`PeerIdentity`] — the verified peer certificate's SPIFFE ID; inserted by
//!   [`crate::tls::WithPeerIdentity`] on connections accepted by
//!   [`crate::tls::MeshTlsAcceptor`]. Its presence means the connection is mTLS.
//! - [`ConnectionInfo`] — the connection's local and remote socket addresses, for
//!   `destination_ip` / `destination_port` and `source_ip` / `remote_ip`; inserted by
//!   [`WithConnectionInfo`]. Without it, address matchers never match (a `not` over them does).
//! - [`mesh_core::authz::DynamicMetadata`] — optional, from a request-authentication layer
//!   (JWT): Istio's `istio_authn` request principal and claims. Without it metadata matchers never
//!   match (A41).
//!
//! When the listener has a `jwt_authn` filter ([`AuthzChain::jwt`], Istio RequestAuthentication)
//! it runs first: a refused token is answered 401 / gRPC UNAUTHENTICATED (see [`jwt`]); a verified
//! one puts its [`DynamicMetadata`] (request principal `iss/sub`, claims) into the request's
//! extensions, replacing any there, so the RBAC filters match `requestPrincipals` and
//! `request.auth.claims[…]`; an absent token passes unless a requirement or policy needs one.
//! Token times are read from the layer's [`JwtClock`] (the system clock unless replaced).
//!
//! A denied request never reaches the handler:
//! - HTTP: `403 Forbidden`, a text body saying why, and
//!   `x-mesh-error: kind=permission_denied; filter=…; policy=…` (`policy` only when a DENY policy
//!   matched; an ALLOW filter that matched nothing names only the filter).
//! - gRPC (`content-type: application/grpc…`): HTTP 200 trailers-only with
//!   `grpc-status: 7` (PERMISSION_DENIED) and a `grpc-message` naming the policy, as gRPC
//!   servers do for RBAC denials (A41).
//!
//! The policy sits behind an `ArcSwap` ([`AuthzHandle`]): a config update swaps it for every
//! connection at once, with no restart and no lock on the request path.

mod future;
pub mod jwt;
mod layer;

use std::{
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use mesh_core::authz::{AuthzChain, AuthzRequest, Decision, Denial, DynamicMetadata};
use tower::Service;

pub use future::ResponseFuture;
pub use jwt::{unauthenticated_response, JwtClock};
pub use layer::AuthzLayer;

use crate::tls::PeerIdentity;

/// The header naming why the mesh answered a request itself (same as the client side's).
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-mesh-error");

/// The local and remote socket addresses of the connection a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Our address (what the client connected to).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
}

/// A hyper service wrapper inserting the connection's [`ConnectionInfo`] into every request.
#[derive(Clone, Debug)]
pub struct WithConnectionInfo<S> {
    inner: S,
    info: ConnectionInfo,
}

impl<S> WithConnectionInfo<S> {
    /// Wraps `inner` for one connection.
    pub fn new(inner: S, info: ConnectionInfo) -> Self {
        WithConnectionInfo { inner, info }
    }
}

impl<S, B> hyper::service::Service<Request<B>> for WithConnectionInfo<S>
where
    S: hyper::service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.info);
        self.inner.call(req)
    }
}

/// The live policy: load it per request, store a new one on a config update.
#[derive(Clone, Debug)]
pub struct AuthzHandle {
    chain: Arc<ArcSwap<AuthzChain>>,
}

impl AuthzHandle {
    /// A handle serving `chain`.
    pub fn new(chain: AuthzChain) -> Self {
        AuthzHandle {
            chain: Arc::new(ArcSwap::from_pointee(chain)),
        }
    }

    /// Replaces the policy; requests that already started keep the one they loaded.
    pub fn store(&self, chain: AuthzChain) {
        self.chain.store(Arc::new(chain));
    }

    /// The current policy.
    pub fn load(&self) -> Arc<AuthzChain> {
        self.chain.load_full()
    }

    /// Keeps the handle following `rx` (e.g. a watch fed from the inbound listener's RBAC) until
    /// the sender is dropped. Needs a Tokio runtime.
    pub fn follow(&self, mut rx: tokio::sync::watch::Receiver<Arc<AuthzChain>>) {
        let chain = self.chain.clone();
        chain.store(rx.borrow_and_update().clone());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                chain.store(rx.borrow_and_update().clone());
            }
        });
    }
}

/// The service [`AuthzLayer`] produces.
#[derive(Clone, Debug)]
pub struct Authz<S> {
    inner: S,
    handle: AuthzHandle,
    clock: JwtClock,
}

impl<S> Authz<S> {
    /// Wraps `inner` with the policy behind `handle` (JWT times from the system clock).
    pub fn new(inner: S, handle: AuthzHandle) -> Self {
        Authz {
            inner,
            handle,
            clock: JwtClock::system(),
        }
    }

    /// The same service reading JWT times from `clock`.
    pub fn with_clock(mut self, clock: JwtClock) -> Self {
        self.clock = clock;
        self
    }
}

/// Evaluates the policy for a request (see the module docs for the extensions read).
pub fn decide<B>(chain: &AuthzChain, req: &Request<B>) -> Decision {
    let ext = req.extensions();
    let peer = ext.get::<PeerIdentity>();
    let conn = ext.get::<ConnectionInfo>();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let view = AuthzRequest {
        method: req.method(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        authority,
        headers: req.headers(),
        local: conn.map(|c| c.local),
        remote: conn.map(|c| c.remote),
        tls: peer.is_some(),
        peer_principal: peer.map(|p| p.spiffe_id()),
        sni: None,
        metadata: ext.get::<DynamicMetadata>().map(|m| &m.0),
    };
    chain.evaluate(&view)
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Percent-encodes what a header value (and `key=value; …` parsing) cannot carry as is; the
/// same rule serves `grpc-message` (gRPC percent-encodes outside printable ASCII and `%`).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (b == b' ' || b.is_ascii_graphic()) && !matches!(b, b'%' | b';' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The local reply for a denial: 403 for HTTP, trailers-only PERMISSION_DENIED for gRPC.
pub fn denied_response<B>(req: &Request<B>, d: &Denial) -> Response<Full<Bytes>> {
    let message = format!("permission denied: {d}");
    let mut mesh = format!("kind=permission_denied; filter={}", encode(&d.filter));
    if let Some(p) = &d.policy {
        mesh.push_str("; policy=");
        mesh.push_str(&encode(p));
    }
    let mesh =
        HeaderValue::from_str(&mesh).unwrap_or(HeaderValue::from_static("kind=permission_denied"));
    let mut resp = if is_grpc(req) {
        let mut r = Response::new(Full::new(Bytes::new()));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from_static("7"));
        if let Ok(m) = HeaderValue::from_str(&encode(&message)) {
            h.insert("grpc-message", m);
        }
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    resp.headers_mut().insert(HEADER, mesh);
    resp
}

impl<S, B, RB> Service<Request<B>> for Authz<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<Either<RB, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let chain = self.handle.chain.load();
        if let Some(jwt) = chain.jwt() {
            let (mut parts, body) = req.into_parts();
            let now = self.clock.now();
            match jwt.authenticate(&parts.method, &parts.uri, &mut parts.headers, now) {
                Ok(Some(md)) => {
                    parts.extensions.insert(DynamicMetadata(md));
                }
                Ok(None) => {}
                Err(e) => {
                    let req = Request::from_parts(parts, body);
                    tracing::debug!(path = %req.uri().path(), "{e}");
                    return ResponseFuture::denied(unauthenticated_response(
                        &req,
                        jwt.filter(),
                        &e,
                    ));
                }
            }
            req = Request::from_parts(parts, body);
        }
        match decide(&chain, &req) {
            Decision::Allow => ResponseFuture::inner(self.inner.call(req)),
            Decision::Deny(d) => {
                tracing::debug!(
                    path = %req.uri().path(),
                    peer = ?req.extensions().get::<PeerIdentity>().map(|p| p.spiffe_id()),
                    "{d}"
                );
                ResponseFuture::denied(denied_response(&req, &d))
            }
        }
    }
}

#[cfg(test)]
mod tests;
