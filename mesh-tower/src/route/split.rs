//! [`RouteLayer`]: the routing half of [`super::MeshLayer`] — decides the route and cluster once
//! per request and leaves picking to an inner [`crate::endpoint::PickLayer`], so that retries can
//! pick again.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use std::sync::Arc;

use http::{Request, Response};
use mesh_core::mesh::Mesh;
use mesh_core::model::RequestRewrite;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{authority_of, decide, wait_ready};
use crate::{tls::CertificateProviders, MeshError, MeshErrorKind};

/// Decides each request's route and cluster and attaches them as a [`super::Routed`]
/// extension. The inner service must pick the endpoint ([`crate::endpoint::PickLayer`]).
#[derive(Clone, Debug)]
pub struct RouteLayer {
    mesh: Mesh,
    ready_timeout: Duration,
    providers: CertificateProviders,
}

impl RouteLayer {
    /// A layer over `mesh` (first-request warm-up wait: 20 s, as [`super::MeshLayer`]).
    pub fn new(mesh: Mesh) -> Self {
        RouteLayer {
            mesh,
            ready_timeout: Duration::from_secs(20),
            providers: CertificateProviders::default(),
        }
    }

    /// The certificate provider instances TLS clusters are resolved against (see
    /// [`crate::tls::upstream`]); none by default, so a TLS cluster fails with
    /// `tls` / `missing_provider`.
    pub fn tls(mut self, providers: CertificateProviders) -> Self {
        self.providers = providers;
        self
    }

    /// Sets how long the first request to a new target waits for the target to warm.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;

    fn layer(&self, inner: S) -> RouteService<S> {
        RouteService {
            mesh: self.mesh.clone(),
            inner,
            ready_timeout: self.ready_timeout,
            providers: self.providers.clone(),
        }
    }
}

/// The service [`RouteLayer`] produces.
#[derive(Clone, Debug)]
pub struct RouteService<S> {
    mesh: Mesh,
    inner: S,
    ready_timeout: Duration,
    providers: CertificateProviders,
}

type Waiting<R> = Pin<Box<dyn Future<Output = Result<R, MeshError>> + Send>>;

pin_project! {
    /// Response future of [`RouteService`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum RouteFuture<F, R> {
        /// Routed on the fast path; the route's response header mutations, if any.
        Routed { #[pin] fut: F, rewrite: Option<Arc<RequestRewrite>> },
        /// The first request to a target, waiting for it to warm.
        Waiting { fut: Waiting<R> },
        /// Failed before anything was sent.
        Failed { error: Option<MeshError> },
    }
}

impl<F, RB> Future for RouteFuture<F, Response<RB>>
where
    F: Future<Output = Result<Response<RB>, MeshError>>,
{
    type Output = Result<Response<RB>, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Routed { fut, rewrite } => {
                let mut result = ready!(fut.poll(cx));
                if let (Ok(resp), Some(rw)) = (&mut result, rewrite.as_deref()) {
                    rw.response_headers.apply(resp.headers_mut());
                }
                Poll::Ready(result)
            }
            Proj::Waiting { fut } => fut.as_mut().poll(cx),
            Proj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                MeshError::new(MeshErrorKind::Upstream).detail("polled after completion")
            }))),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for RouteService<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = MeshError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = MeshError;
    type Future = RouteFuture<S::Future, Response<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(authority) = authority_of(&req) else {
            return RouteFuture::Failed {
                error: Some(MeshError::missing_authority()),
            };
        };
        if let Some(target) = self.mesh.lookup(authority.as_str()) {
            if let Some(snapshot) = &*target.snapshot() {
                return match decide(snapshot, &mut req, &authority, &self.providers) {
                    Ok(routed) => {
                        let rewrite = routed.policy.rewrite.clone();
                        req.extensions_mut().insert(routed);
                        RouteFuture::Routed {
                            fut: self.inner.call(req),
                            rewrite,
                        }
                    }
                    Err(error) => RouteFuture::Failed { error: Some(error) },
                };
            }
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mesh = self.mesh.clone();
        let timeout = self.ready_timeout;
        let providers = self.providers.clone();
        RouteFuture::Waiting {
            fut: Box::pin(async move {
                let target = mesh.target(authority.as_str());
                let snapshot =
                    wait_ready(&target, timeout, authority.as_str(), req.uri().path()).await?;
                let routed = decide(&snapshot, &mut req, &authority, &providers)?;
                let rewrite = routed.policy.rewrite.clone();
                req.extensions_mut().insert(routed);
                let mut resp = inner.call(req).await?;
                if let Some(rw) = rewrite {
                    rw.response_headers.apply(resp.headers_mut());
                }
                Ok(resp)
            }),
        }
    }
}
