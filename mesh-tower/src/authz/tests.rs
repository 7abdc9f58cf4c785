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

/// A chain whose JWT filter requires provider `origins-0` on `/private` and allows a missing
/// token elsewhere (the key is never reached: these tokens fail before the signature).
fn jwt_chain() -> AuthzChain {
    use mesh_core::jwt::{Jwks, JwtAuthn};
    use mesh_core::model::{JwtAuthentication, JwtProvider, JwtRequirement, JwtRule, PathMatch};
    let c = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    let jwks = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{c}","y":"{c}"}}]}}"#);
    let provider = JwtProvider {
        name: "origins-0".into(),
        issuer: "https://issuer".into(),
        audiences: Arc::from([]),
        require_expiration: false,
        jwks: Arc::new(Jwks::parse(&jwks).unwrap()),
        from_headers: Arc::from([]),
        from_params: Arc::from([]),
        from_cookies: Arc::from([]),
        forward: false,
        forward_payload_header: None,
        claim_to_headers: Arc::from([]),
        payload_in_metadata: None,
        clock_skew_seconds: 60,
    };
    let one = JwtRequirement::Provider {
        provider: 0,
        audiences: None,
    };
    let config = JwtAuthentication {
        providers: vec![provider].into(),
        rules: vec![
            JwtRule {
                path: PathMatch::Prefix("/private".into()),
                requires: Some(one.clone()),
            },
            JwtRule {
                path: PathMatch::Prefix("/".into()),
                requires: Some(JwtRequirement::Any(
                    vec![one, JwtRequirement::AllowMissing].into(),
                )),
            },
        ]
        .into(),
        bypass_cors_preflight: false,
    };
    AuthzChain::default().with_jwt(JwtAuthn::new(
        "envoy.filters.http.jwt_authn",
        Arc::new(config),
    ))
}

async fn call_with(
    layer: &AuthzLayer,
    path: &str,
    token: Option<&str>,
    grpc: bool,
) -> Response<Either<Full<Bytes>, Full<Bytes>>> {
    let mut req = Request::post(format!("http://svc.demo{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if grpc {
        req = req.header("content-type", "application/grpc");
    }
    layer
        .layer(ok_service())
        .oneshot(req.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn jwt_refusals_are_401_or_unauthenticated_naming_provider_and_reason() {
    let layer = AuthzLayer::new(jwt_chain());
    // Absent token where it may be missing: served.
    assert_eq!(
        call_with(&layer, "/x", None, false).await.status(),
        StatusCode::OK
    );
    // Absent where required: 401 without `error=` (RFC 6750 §3.1).
    let resp = call_with(&layer, "/private/x", None, false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"http://svc.demo/private/x\""
    );
    assert_eq!(
        resp.headers()[HEADER],
        "kind=unauthenticated; filter=envoy.filters.http.jwt_authn; provider=origins-0; \
         reason=missing"
    );
    // A garbage token is refused even where a missing one passes.
    let resp = call_with(&layer, "/x", Some("not-a-jwt"), false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"http://svc.demo/x\", error=\"invalid_token\""
    );
    assert!(resp.headers()[HEADER]
        .to_str()
        .unwrap()
        .ends_with("reason=malformed"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("jwt malformed"));
    // gRPC: trailers-only UNAUTHENTICATED.
    let resp = call_with(&layer, "/pkg.Svc/M", Some("not-a-jwt"), true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "16");
    let msg = resp.headers()["grpc-message"].to_str().unwrap().to_owned();
    assert!(msg.contains("origins-0"), "{msg}");
}

#[test]
fn manual_clock_moves_only_when_told() {
    let c = JwtClock::manual(100);
    let shared = c.clone();
    shared.advance(5);
    assert_eq!(c.now(), 105);
    c.set(7);
    assert_eq!(shared.now(), 7);
    let sys = JwtClock::system();
    sys.set(7);
    assert!(sys.now() > 1_600_000_000);
}
