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

/// A rewrite of everything: `/api` → `/v2`, host → `backend.internal`, `x-set` overwritten,
/// `x-secret` removed, `x-served-by` added to responses.
fn rewriting_policy() -> mesh_core::model::RoutePolicy {
    use mesh_core::model::{
        AppendAction, HeaderAdd, HeaderLevel, HeaderMutation, PathRewrite, RequestRewrite,
    };
    let add = |name: &'static str, value: &'static str, action| HeaderAdd {
        name: http::HeaderName::from_static(name),
        value: HeaderValue::from_static(value),
        action,
    };
    let rewrite = RequestRewrite {
        path: Some(PathRewrite::Prefix {
            strip: 4,
            with: "/v2".into(),
        }),
        host: Some(HeaderValue::from_static("backend.internal")),
        request_headers: HeaderMutation {
            levels: vec![HeaderLevel {
                remove: vec![http::HeaderName::from_static("x-secret")].into(),
                add: vec![add("x-set", "mesh", AppendAction::OverwriteIfExistsOrAdd)].into(),
            }]
            .into(),
        },
        response_headers: HeaderMutation {
            levels: vec![HeaderLevel {
                remove: Box::default(),
                add: vec![add(
                    "x-served-by",
                    "mesh",
                    AppendAction::AppendIfExistsOrAdd,
                )]
                .into(),
            }]
            .into(),
        },
    };
    mesh_core::model::RoutePolicy {
        rewrite: Some(std::sync::Arc::new(rewrite)),
        retry: Some(crate::test_support::retry(mesh_core::model::RetryOn::SERVER_ERROR, 1).into()),
        ..Default::default()
    }
}

fn assert_rewritten<B>(req: &Request<B>) {
    assert_eq!(req.uri().path_and_query().unwrap(), "/v2/users?id=7");
    let h = req.headers();
    assert_eq!(h["host"], "backend.internal");
    assert_eq!(h["x-envoy-original-host"], "svc:80");
    assert_eq!(h["x-envoy-original-path"], "/api/users");
    assert_eq!(h.get_all("x-set").iter().count(), 1);
    assert_eq!(h["x-set"], "mesh");
    assert!(!h.contains_key("x-secret"));
}

#[tokio::test]
async fn route_rewrites_and_header_mutations_apply_once_per_request() {
    let request = || {
        Request::get("http://svc:80/api/users?id=7")
            .header("x-set", "caller")
            .header("x-secret", "token")
            .body(String::new())
            .unwrap()
    };
    // The bare MeshLayer.
    let routes = vec![route(
        "api",
        "/api",
        RouteAction::Cluster("c".into()),
        rewriting_policy(),
    )];
    let eps = vec![Endpoint::healthy(([10, 0, 0, 7], 8080).into())];
    let mesh = Mesh::from_cache(cache(routes, Default::default(), eps));
    let (inner, mut handle) = mock::pair::<Request<String>, Response<&'static str>>();
    let svc = MeshLayer::new(mesh.clone())
        .ready_timeout(Duration::from_secs(1))
        .layer(inner);
    let call = tokio::spawn(svc.oneshot(request()));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri().authority().unwrap(), "10.0.0.7:8080");
    assert_rewritten(&req);
    send.send_response(Response::new("ok"));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.headers()["x-served-by"], "mesh");

    // The full stack, with a retry: both attempts carry the rewrite exactly once.
    let (stack, mut handle) = crate::test_support::stack(&mesh, 1024).await;
    let call = tokio::spawn(stack.oneshot(request()));
    for code in [503, 200] {
        let (req, send) = handle.next_request().await.unwrap();
        assert_rewritten(&req);
        send.send_response(crate::test_support::status(code));
    }
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let served: Vec<_> = resp.headers().get_all("x-served-by").iter().collect();
    assert_eq!(served, ["mesh"], "response headers added once");
}
