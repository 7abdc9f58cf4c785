use std::time::Duration;

use http::{Request, Response};
use mesh_core::{
    cache::ResourceCache,
    mesh::Mesh,
    model::{Endpoint, HealthStatus, RouteAction},
};
use tower::{Layer, ServiceExt};
use tower_test::mock;

use super::*;
use crate::test_support::{cache, route};

fn cache_with(health: HealthStatus) -> ResourceCache {
    let routes = vec![
        route(
            "old",
            "/old",
            RouteAction::Unsupported("redirect".into()),
            Default::default(),
        ),
        route(
            "api",
            "/api",
            RouteAction::Cluster("c".into()),
            Default::default(),
        ),
    ];
    let endpoint = Endpoint {
        health,
        ..Endpoint::healthy(([10, 0, 0, 7], 8080).into())
    };
    cache(routes, Default::default(), vec![endpoint])
}

type Mock = mock::Mock<Request<&'static str>, Response<&'static str>>;

fn service(
    cache: ResourceCache,
) -> (
    MeshService<Mock>,
    mock::Handle<Request<&'static str>, Response<&'static str>>,
) {
    let (inner, handle) = mock::pair();
    let svc = MeshLayer::new(Mesh::from_cache(cache))
        .ready_timeout(Duration::from_secs(1))
        .layer(inner);
    (svc, handle)
}

#[tokio::test]
async fn forwards_to_picked_endpoint_with_host_kept() {
    let (svc, mut handle) = service(cache_with(HealthStatus::Healthy));
    let call = tokio::spawn(
        svc.clone()
            .oneshot(Request::get("http://svc:80/api/x?y=1").body("hi").unwrap()),
    );
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri(), "http://10.0.0.7:8080/api/x?y=1");
    assert_eq!(req.headers()["host"], "svc:80");
    let info = req.extensions().get::<RouteInfo>().unwrap();
    assert_eq!((&*info.route, &*info.cluster), ("api", "c"));
    send.send_response(Response::new("ok"));
    assert_eq!(call.await.unwrap().unwrap().into_body(), "ok");

    // Second request takes the fast path (target warm) and still routes.
    let call = tokio::spawn(
        svc.oneshot(
            Request::get("/api")
                .header("host", "svc:80")
                .body("")
                .unwrap(),
        ),
    );
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri(), "http://10.0.0.7:8080/api");
    send.send_response(Response::new("ok"));
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn mesh_failures_are_typed_and_named() {
    let (svc, _handle) = service(cache_with(HealthStatus::Healthy));
    let err = svc
        .clone()
        .oneshot(Request::get("http://svc:80/nope").body("").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::NoRoute);
    assert!(err.to_string().contains("/nope"), "{err}");

    let err = svc
        .clone()
        .oneshot(Request::get("http://svc:80/old").body("").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::UnsupportedRoute);
    assert_eq!(err.route_name(), Some("old"));

    let err = svc
        .oneshot(Request::get("/x").body("").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::MissingAuthority);
    assert!(err.to_string().contains("Host header"), "{err}");

    let (svc, _handle) = service(cache_with(HealthStatus::Unhealthy));
    let err = svc
        .oneshot(Request::get("http://svc:80/api").body("").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::NoHealthyEndpoint);
    assert_eq!(
        (err.route_name(), err.cluster_name()),
        (Some("api"), Some("c"))
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_target_times_out_as_no_target() {
    let (svc, _handle) = service(cache_with(HealthStatus::Healthy));
    let err = svc
        .oneshot(Request::get("http://other:80/").body("").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::NoTarget);
    assert_eq!(err.authority(), Some("other:80"));
    // The message says what never arrived.
    assert!(
        err.to_string()
            .contains("still waiting for listener `other:80`"),
        "{err}"
    );
}

#[tokio::test]
async fn inner_errors_name_the_endpoint() {
    let (svc, mut handle) = service(cache_with(HealthStatus::Healthy));
    handle.allow(1);
    let call = tokio::spawn(svc.oneshot(Request::get("http://svc:80/api").body("").unwrap()));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("reset by peer"));
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Upstream);
    assert_eq!(err.endpoint_addr(), Some(([10, 0, 0, 7], 8080).into()));
}
