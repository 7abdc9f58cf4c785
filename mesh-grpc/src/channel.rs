//! [`MeshChannel`]: the channel a tonic-generated client is built on for an `xds:///` target.
//!
//! The stack, outermost first: set the request's scheme and authority to the target (tonic
//! clients built with `new(channel)` send origin-less URIs: `/helloworld.Greeter/SayHello`) →
//! mesh-tower's `MeshStackLayer` in gRPC mode (route once; cap the call by
//! `grpc_timeout_header_max` / `max_stream_duration` — never `RouteAction.timeout`, gRFC A31;
//! retries per the route's `retry_on`, read from trailers-only responses; `per_try_timeout`
//! ignored, gRFC A44; pick an endpoint per attempt) → `mesh_tower::client::Http2Client`, one
//! multiplexed h2c connection per endpoint, sending the target as `:authority`. Response bodies
//! become `tonic::body::Body` (as tonic's own `Channel` returns) and mesh failures become a
//! `tonic::Status` in exactly one place, `status.rs`, both in `Finish`, the outermost service.
//! With [`MeshChannel::with_metrics`], `Finish` also measures the call and a thin service over
//! the HTTP/2 client each attempt (gRFC A66, [`crate::metrics`]). The whole stack is erased once, at this public boundary, into a
//! `BoxCloneSyncService` (STYLE.md §4), so the channel is `Clone + Send + Sync` and cheap to
//! clone per task, like tonic's `Channel`.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{
    uri::{Authority, PathAndQuery, Scheme},
    Request, Response, Uri,
};
use mesh_core::mesh::{Mesh, Target, TargetError};
use mesh_tower::{retry::ReplayBody, tls::CertificateProviders, MeshError, MeshStackLayer};
use pin_project_lite::pin_project;
use tonic::{body::Body, Status};
use tower::{util::BoxCloneSyncService, Service, ServiceBuilder};

use crate::{
    metrics::{ChannelMetrics, ClientMetrics, Guard, Observed},
    status,
    target::listener_name,
};

/// How long [`MeshChannel::connect`] waits for the target to become ready, and how long the
/// first call on a channel from [`MeshChannel::new`] may wait: 20 s, longer than the 15 s xDS
/// does-not-exist timer (gRFC A27), so a missing listener is reported as missing, not as slow.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

type Inner = BoxCloneSyncService<Request<Body>, Response<Body>, Status>;

/// The response future of [`MeshChannel`].
pub type ResponseFuture = <Inner as Service<Request<Body>>>::Future;

/// Why a [`MeshChannel`] could not be built or did not become ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The target is not of the `xds:///host[:port]` form.
    #[error("target `{target}`: {reason}")]
    InvalidTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The mesh could not be built from the environment (bootstrap missing or invalid).
    #[error(transparent)]
    Mesh(#[from] mesh_core::mesh::MeshError),
    /// The target cannot become ready: its listener does not exist, or it or a dependency was
    /// rejected with nothing older to fall back on.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The target did not become ready in time.
    #[error("target `{target}`: not ready after {after:?}")]
    Timeout {
        /// The target (listener) name.
        target: Arc<str>,
        /// How long we waited.
        after: Duration,
    },
}

/// A tonic channel to an `xds:///host[:port]` target, routed by the mesh per call.
///
/// Any tonic-generated client accepts it: `GreeterClient::new(channel)`. Each call is routed
/// on the target's current xDS snapshot (virtual host, route on path and metadata, weighted
/// cluster, endpoint) and sent over a pooled HTTP/2 connection to the picked endpoint; failures
/// the mesh makes are `UNAVAILABLE` with the mesh's explanation as the message (see the crate
/// docs). Cloning is cheap; clones share the mesh, its target and the connection pool.
#[derive(Clone)]
pub struct MeshChannel {
    inner: Inner,
    target: Target,
    mesh: Mesh,
    authority: Authority,
    options: Options,
}

/// What the channel's stack is built with, kept so `with_*` can rebuild it.
#[derive(Clone, Default)]
struct Options {
    metrics: Option<ChannelMetrics>,
    tls: CertificateProviders,
}

impl fmt::Debug for MeshChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshChannel")
            .field("target", self.target.name())
            .finish_non_exhaustive()
    }
}

impl MeshChannel {
    /// Connects to `target` (`xds:///host[:port]`) on a mesh built from the environment
    /// (`GRPC_XDS_BOOTSTRAP` / `GRPC_XDS_BOOTSTRAP_CONFIG`, or `MESH_STATIC_CONFIG`; see
    /// `Mesh::from_env`), and waits up to [`DEFAULT_CONNECT_TIMEOUT`] for the target's listener,
    /// routes, clusters and endpoints to arrive. Must be called within a Tokio runtime.
    pub async fn connect(target: &str) -> Result<MeshChannel, ChannelError> {
        let authority = listener_name(target)?;
        let mesh = Mesh::from_env()?;
        let channel = MeshChannel::with_authority(&mesh, authority, Options::default());
        channel.wait_ready(DEFAULT_CONNECT_TIMEOUT).await?;
        Ok(channel)
    }

    /// A channel to `target` (`xds:///host[:port]`) on `mesh`. Subscribes the target at once
    /// but does not wait for it: the first call waits (up to [`DEFAULT_CONNECT_TIMEOUT`]), or
    /// use [`MeshChannel::wait_ready`]. Must be called within a Tokio runtime.
    pub fn new(mesh: &Mesh, target: &str) -> Result<MeshChannel, ChannelError> {
        Ok(MeshChannel::with_authority(
            mesh,
            listener_name(target)?,
            Options::default(),
        ))
    }

    /// This channel with gRFC A66 metrics recorded on `metrics` (see [`crate::metrics`]): the
    /// same target on the same mesh, with a connection pool of its own — call it before the
    /// first call, not per call.
    pub fn with_metrics(self, metrics: &ClientMetrics) -> MeshChannel {
        let options = Options {
            metrics: Some(metrics.for_target(self.authority.as_str())),
            ..self.options
        };
        MeshChannel::with_authority(&self.mesh, self.authority, options)
    }

    /// This channel connecting to clusters whose CDS `UpstreamTlsContext` asks for TLS with
    /// the certificate provider instances in `providers` (gRFC A29; istiod's `ISTIO_MUTUAL`
    /// names instance `default`, see [`CertificateProviders::default_identity`] and
    /// [`CertificateProviders::from_bootstrap`]). Without them such clusters fail their calls
    /// with `UNAVAILABLE` (`tls` / `missing_provider`). Like [`MeshChannel::with_metrics`] it
    /// builds a new connection pool: call it before the first call.
    pub fn with_tls(self, providers: CertificateProviders) -> MeshChannel {
        let options = Options {
            tls: providers,
            ..self.options
        };
        MeshChannel::with_authority(&self.mesh, self.authority, options)
    }

    fn with_authority(mesh: &Mesh, authority: Authority, options: Options) -> MeshChannel {
        let metrics = options.metrics.clone();
        let target = mesh.target(authority.as_str());
        let client = AttemptMetrics {
            inner: mesh_tower::client::http2::<ReplayBody<Body>>(),
            metrics: metrics.clone(),
        };
        let stack = ServiceBuilder::new()
            .layer_fn(|inner| Finish {
                inner,
                metrics: metrics.clone(),
            })
            .layer_fn(|inner| SetAuthority {
                authority: authority.clone(),
                inner,
            })
            .layer(
                MeshStackLayer::new(mesh.clone())
                    .grpc()
                    .ready_timeout(DEFAULT_CONNECT_TIMEOUT)
                    .tls(options.tls.clone()),
            )
            .service(client);
        MeshChannel {
            inner: BoxCloneSyncService::new(stack),
            target,
            mesh: mesh.clone(),
            authority,
            options,
        }
    }

    /// Waits up to `timeout` for the target to be ready (listener, routes, clusters and
    /// endpoints all present); fails at once if it cannot become ready (e.g. the control plane
    /// says the listener does not exist).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ChannelError> {
        match tokio::time::timeout(timeout, self.target.ready()).await {
            Ok(ready) => ready.map(drop).map_err(ChannelError::from),
            Err(_) => Err(ChannelError::Timeout {
                target: self.target.name().clone(),
                after: timeout,
            }),
        }
    }

    /// The target's listener name (the authority of `xds:///host[:port]`, gRFC A27).
    pub fn target(&self) -> &str {
        self.target.name()
    }
}

impl Service<Request<Body>> for MeshChannel {
    type Response = Response<Body>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.inner.call(req)
    }
}

/// Points every request at the channel's target: scheme `http`, authority the listener name,
/// whatever the tonic client set (a generated client built with `new` sets neither). The
/// authority is built once; cloning it is a reference-count increment.
#[derive(Clone, Debug)]
struct SetAuthority<S> {
    authority: Authority,
    inner: S,
}

impl<S, B> Service<Request<B>> for SetAuthority<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        // Scheme, authority and path are all set, so this cannot fail; were it to, the request
        // goes on without an authority and fails as `missing_authority` (INTERNAL).
        *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        self.inner.call(req)
    }
}

/// The outermost service: mesh failures become the call's `Status` (`status.rs`), response
/// bodies `tonic::body::Body`; with metrics, the call is measured until its status is known.
#[derive(Clone, Debug)]
struct Finish<S> {
    inner: S,
    metrics: Option<ChannelMetrics>,
}

impl<S, RB> Service<Request<Body>> for Finish<S>
where
    S: Service<Request<Body>, Response = Response<RB>, Error = MeshError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Status;
    type Future = FinishFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx).map_err(status::from_mesh_error)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let guard = match &self.metrics {
            Some(m) => m.call(req.uri().path()),
            None => Guard::default(),
        };
        FinishFuture {
            fut: self.inner.call(req),
            guard,
        }
    }
}

pin_project! {
    /// Response future of [`Finish`].
    #[derive(Debug)]
    struct FinishFuture<F> {
        #[pin]
        fut: F,
        guard: Guard,
    }
}

impl<F, RB> std::future::Future for FinishFuture<F>
where
    F: std::future::Future<Output = Result<Response<RB>, MeshError>>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<Body>, Status>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.fut.poll(cx));
        let guard = std::mem::take(this.guard);
        Poll::Ready(match out {
            Ok(resp) => Ok(guard.observe(resp).map(Body::new)),
            Err(e) => {
                let status = status::from_mesh_error(e);
                let mut guard = guard;
                guard.end(status.code());
                Err(status)
            }
        })
    }
}

/// Measures each attempt the retry layer sends (metrics on): the service over the HTTP/2
/// client. Its error type is the client's, which the pick layer classifies.
#[derive(Clone, Debug)]
struct AttemptMetrics<S> {
    inner: S,
    metrics: Option<ChannelMetrics>,
}

impl<S, B, RB> Service<Request<B>> for AttemptMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<Observed<RB>>;
    type Error = S::Error;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let guard = match &self.metrics {
            Some(m) => m.attempt(req.uri().path()),
            None => Guard::default(),
        };
        AttemptFuture {
            fut: self.inner.call(req),
            guard,
        }
    }
}

pin_project! {
    /// Response future of [`AttemptMetrics`].
    #[derive(Debug)]
    struct AttemptFuture<F> {
        #[pin]
        fut: F,
        guard: Guard,
    }
}

impl<F, RB, E> std::future::Future for AttemptFuture<F>
where
    F: std::future::Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<Observed<RB>>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.fut.poll(cx));
        let mut guard = std::mem::take(this.guard);
        Poll::Ready(match out {
            Ok(resp) => Ok(guard.observe(resp)),
            Err(e) => {
                // Connect refused, or the stream failed before its headers.
                guard.end(tonic::Code::Unavailable);
                Err(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn origin_less_requests_get_the_target_authority() {
        let (inner, mut handle) = tower_test::mock::pair::<Request<()>, ()>();
        let mut svc = SetAuthority {
            authority: Authority::from_static("greeter:50051"),
            inner,
        };
        for uri in [
            "/helloworld.Greeter/SayHello",
            "http://elsewhere:1/helloworld.Greeter/SayHello",
        ] {
            handle.allow(1);
            tower::ServiceExt::ready(&mut svc).await.unwrap();
            let call = svc.call(Request::post(uri).body(()).unwrap());
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                req.uri(),
                "http://greeter:50051/helloworld.Greeter/SayHello"
            );
            send.send_response(());
            call.await.unwrap();
        }
    }

    #[tokio::test]
    async fn channels_are_clone_send_sync_and_name_their_target() {
        fn assert_traits<T: Clone + Send + Sync + 'static>(_: &T) {}
        let mesh = Mesh::from_cache(mesh_core::cache::ResourceCache::new());
        let channel = MeshChannel::new(&mesh, "xds:///greeter:50051").unwrap();
        assert_traits(&channel);
        assert_eq!(channel.target(), "greeter:50051");
        assert!(format!("{channel:?}").contains("greeter:50051"));
        assert!(matches!(
            MeshChannel::new(&mesh, "dns:///greeter:50051"),
            Err(ChannelError::InvalidTarget { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_ready_is_bounded_and_reports_a_missing_listener() {
        let cache = mesh_core::cache::ResourceCache::new();
        cache.remove::<mesh_core::model::Listener>("gone:80");
        let mesh = Mesh::from_cache(cache);
        let never = MeshChannel::new(&mesh, "xds:///never:80").unwrap();
        let err = never.wait_ready(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, ChannelError::Timeout { ref target, .. } if &**target == "never:80"));
        let gone = MeshChannel::new(&mesh, "xds:///gone:80").unwrap();
        let err = gone.wait_ready(Duration::from_secs(2)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ChannelError::Target(TargetError::ListenerDoesNotExist(_))
            ),
            "{err}"
        );
    }
}
