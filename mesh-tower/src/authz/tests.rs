use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use mesh_core::authz::{AuthzChain, CompiledRbac};
use mesh_core::model::{Permission, Principal, Rbac, RbacAction, RbacPolicy, StringMatcher};
use tower::{Layer, ServiceExt};

use super::*;

fn deny_prefix(prefix: &str) -> AuthzChain {
    let rbac = Rbac {
        action: RbacAction::Deny,
        policies: vec![RbacPolicy {
            name: "ns[demo]-policy[deny-admin]-rule[0]".into(),
            permissions: vec![Permission::UrlPath(StringMatcher::Prefix {
                value: prefix.into(),
                ignore_case: false,
            })]
            .into(),
            principals: vec![Principal::Any].into(),
        }]
        .into(),
    };
    AuthzChain::new(vec![CompiledRbac::new(
        "envoy.filters.http.rbac.DENY",
        &rbac,
    )])
}

fn ok_service() -> impl tower::Service<
    Request<Empty<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"served"))))
    })
}

async fn call(
    layer: &AuthzLayer,
    path: &str,
    grpc: bool,
) -> Response<Either<Full<Bytes>, Full<Bytes>>> {
    let mut req = Request::get(format!("http://svc.demo{path}"));
    if grpc {
        req = req.header("content-type", "application/grpc+proto");
    }
    layer
        .layer(ok_service())
        .oneshot(req.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn http_denial_is_403_naming_the_policy() {
    let layer = AuthzLayer::new(deny_prefix("/admin"));
    let resp = call(&layer, "/admin/x", false).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.headers()[HEADER],
        "kind=permission_denied; filter=envoy.filters.http.rbac.DENY; \
         policy=ns[demo]-policy[deny-admin]-rule[0]"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("deny-admin"));
    let resp = call(&layer, "/public", false).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"served");
}

#[tokio::test]
async fn grpc_denial_is_trailers_only_permission_denied() {
    let layer = AuthzLayer::new(deny_prefix("/admin.Admin/"));
    let resp = call(&layer, "/admin.Admin/Drop", true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "7");
    let msg = resp.headers()["grpc-message"].to_str().unwrap().to_owned();
    assert!(msg.contains("deny-admin"), "{msg}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn policy_swaps_at_run_time() {
    let layer = AuthzLayer::new(AuthzChain::default());
    assert_eq!(call(&layer, "/admin", false).await.status(), StatusCode::OK);
    layer.handle().store(deny_prefix("/admin"));
    assert_eq!(
        call(&layer, "/admin", false).await.status(),
        StatusCode::FORBIDDEN
    );
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(AuthzChain::default()));
    layer.handle().follow(rx);
    assert_eq!(call(&layer, "/admin", false).await.status(), StatusCode::OK);
    tx.send(Arc::new(deny_prefix("/admin"))).unwrap();
    // The follower task applies the update; bounded wait.
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = call(&layer, "/admin", false).await.status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[test]
fn encode_keeps_header_values_parseable() {
    assert_eq!(encode("a b;c=d%é"), "a b%3Bc%3Dd%25%C3%A9");
}
