//! Shared fixtures for the layer unit tests: a mesh over an in-memory cache with one route whose
//! policy the test chooses, and the full stack over a `tower-test` mock.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};
use mesh_core::{
    cache::ResourceCache,
    mesh::Mesh,
    model::{
        Cluster, ClusterLoadAssignment, Endpoint, LbPolicy, Listener, RetryLimits, RetryOn,
        RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, RoutePolicy, RouteSource,
        VirtualHost,
    },
};
use tower::Layer;
use tower_test::mock;

use crate::{retry::ReplayBody, MeshStack, MeshStackLayer};

pub(crate) type Body = String;
pub(crate) type MockSvc = mock::Mock<Request<ReplayBody<Body>>, Response<&'static str>>;
pub(crate) type Handle = mock::Handle<Request<ReplayBody<Body>>, Response<&'static str>>;

pub(crate) fn endpoints(n: u8) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
        .collect()
}

pub(crate) fn retry(on: RetryOn, num_retries: u32) -> RetryPolicy {
    RetryPolicy {
        retry_on: on,
        num_retries,
        per_try_timeout: None,
        backoff: Default::default(),
        retriable_status_codes: Arc::new([]),
        retriable_headers: Arc::new([]),
        previous_hosts: false,
        host_selection_max_attempts: 1,
    }
}

/// A cache serving `svc:80` (inline routes) → cluster `c` (with `limits`) over `endpoints`.
pub(crate) fn cache(
    routes: Vec<Route>,
    limits: RetryLimits,
    endpoints: Vec<Endpoint>,
) -> ResourceCache {
    let cache = ResourceCache::new();
    let rc = RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([VirtualHost {
            name: "vh".into(),
            domains: Arc::new(["svc".into(), "svc:80".into()]),
            routes: routes.into(),
            retry_policy: None,
        }]),
    };
    let listener = Listener {
        name: "svc:80".into(),
        route_source: RouteSource::Inline(Arc::new(rc)),
        http_filters: Arc::new([]),
        stream_idle_timeout: None,
    };
    cache.accept("svc:80", listener, "1");
    let cluster = Cluster {
        retry_limits: limits,
        connection_limits: Default::default(),
        outlier_detection: None,
        // No panic mode (as gRPC): an unhealthy endpoint is never picked.
        lb_common: mesh_core::model::CommonLbConfig {
            healthy_panic_threshold_ppm: 0,
            ..Default::default()
        },
        ..Cluster::eds("c", LbPolicy::RoundRobin)
    };
    cache.accept("c", cluster, "1");
    cache.accept(
        "c",
        ClusterLoadAssignment::single_locality("c", endpoints),
        "1",
    );
    cache
}

/// A route `name` for requests under `prefix`.
pub(crate) fn route(name: &str, prefix: &str, action: RouteAction, policy: RoutePolicy) -> Route {
    Route {
        hash_policy: Default::default(),
        name: name.into(),
        matcher: RouteMatch::prefix(prefix),
        action,
        policy,
    }
}

/// A mesh serving `svc:80` → route `r` → cluster `c` over `eps`.
pub(crate) fn mesh(policy: RoutePolicy, limits: RetryLimits, eps: &[SocketAddr]) -> Mesh {
    let routes = vec![route("r", "/", RouteAction::Cluster("c".into()), policy)];
    let endpoints = eps.iter().map(|a| Endpoint::healthy(*a)).collect();
    Mesh::from_cache(cache(routes, limits, endpoints))
}

/// The full stack over a mock, with the target already warm.
pub(crate) async fn stack(mesh: &Mesh, replay_cap: usize) -> (MeshStack<MockSvc>, Handle) {
    stack_with(
        mesh,
        MeshStackLayer::new(mesh.clone()).replay_cap(replay_cap),
    )
    .await
}

/// The stack in gRPC mode (`MeshStackLayer::grpc`).
pub(crate) async fn grpc_stack(mesh: &Mesh) -> (MeshStack<MockSvc>, Handle) {
    stack_with(mesh, MeshStackLayer::new(mesh.clone()).grpc()).await
}

async fn stack_with(mesh: &Mesh, layer: MeshStackLayer) -> (MeshStack<MockSvc>, Handle) {
    tokio::time::timeout(Duration::from_secs(5), mesh.target("svc:80").ready())
        .await
        .expect("warm in time")
        .expect("target ready");
    let (svc, handle) = mock::pair();
    (layer.layer(svc), handle)
}

pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(format!("http://svc:80{path}"))
        .body(String::new())
        .expect("request")
}

pub(crate) fn status(code: u16) -> Response<&'static str> {
    let mut r = Response::new("x");
    *r.status_mut() = http::StatusCode::from_u16(code).expect("status");
    r
}

pub(crate) fn endpoint_of<B>(req: &Request<B>) -> SocketAddr {
    req.uri()
        .authority()
        .expect("rewritten")
        .as_str()
        .parse()
        .expect("endpoint address")
}
