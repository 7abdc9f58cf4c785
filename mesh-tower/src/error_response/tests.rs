use std::time::Duration;

use mesh_core::model::{RetryLimits, RoutePolicy};
use tower::{Layer, ServiceExt};

use super::{ErrorHeader, ErrorResponseLayer, HEADER};
use crate::test_support::*;

#[tokio::test(start_paused = true)]
async fn timeouts_become_504_with_a_parseable_header() {
    let policy = RoutePolicy {
        timeout: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let svc = ErrorResponseLayer::new().layer(svc);
    let call = tokio::spawn(svc.clone().oneshot(get("/")));
    let (_req, _hold) = handle.next_request().await.unwrap();
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 504);
    let h = ErrorHeader::parse(resp.headers()[HEADER].to_str().unwrap()).unwrap();
    assert_eq!(h.kind, "timeout");
    assert_eq!(
        (
            h.route.as_deref(),
            h.cluster.as_deref(),
            h.endpoint,
            h.attempts
        ),
        (Some("r"), Some("c"), Some(endpoints(1)[0]), 1)
    );

    // No authority: 400, attempts 0; backend answers pass through untouched.
    let resp = svc.clone().oneshot(no_authority()).await.unwrap();
    assert_eq!(resp.status(), 400);
    let h = ErrorHeader::parse(resp.headers()[HEADER].to_str().unwrap()).unwrap();
    assert_eq!((h.kind.as_str(), h.attempts), ("missing_authority", 0));
    let call = tokio::spawn(svc.oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(503));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        !resp.headers().contains_key(HEADER),
        "not the mesh's failure"
    );
}

fn no_authority() -> http::Request<Body> {
    http::Request::get("/").body(String::new()).unwrap()
}
