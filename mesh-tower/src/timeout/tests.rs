use std::time::Duration;

use mesh_core::model::{RetryLimits, RetryOn, RoutePolicy};
use tower::ServiceExt;

use crate::{test_support::*, MeshErrorKind};

#[tokio::test(start_paused = true)]
async fn route_timeout_names_route_cluster_endpoint_and_attempts() {
    let policy = RoutePolicy {
        timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/x")));
    let (_req, _hold) = handle.next_request().await.expect("sent");
    let start = tokio::time::Instant::now();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "fires at the deadline"
    );
    assert_eq!(err.kind(), MeshErrorKind::Timeout);
    assert_eq!(
        (err.route_name(), err.cluster_name()),
        (Some("r"), Some("c"))
    );
    assert_eq!(err.endpoint_addr(), Some(endpoints(1)[0]));
    assert_eq!(err.attempt_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_disables_and_answers_pass_through() {
    let policy = RoutePolicy {
        timeout: None,
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/")));
    let (_req, send) = handle.next_request().await.expect("sent");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!call.is_finished(), "no deadline");
    send.send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_then_success_on_retry() {
    let mut r = retry(RetryOn::RESET, 2);
    r.per_try_timeout = Some(Duration::from_millis(100));
    let policy = RoutePolicy {
        timeout: Some(Duration::from_secs(10)),
        retry: Some(r.into()),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(2));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/")));
    let t0 = tokio::time::Instant::now();
    let (_first, _hang) = handle.next_request().await.expect("attempt 1");
    let (_second, send) = handle.next_request().await.expect("attempt 2");
    let waited = t0.elapsed();
    // 100 ms per-try timeout, then a backoff below 25 ms (retry 1: U[0, base)).
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(125),
        "{waited:?}"
    );
    send.send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_without_retry_is_its_own_kind() {
    let mut r = retry(RetryOn::SERVER_ERROR, 1);
    r.per_try_timeout = Some(Duration::from_millis(50));
    let policy = RoutePolicy {
        retry: Some(r.into()),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/")));
    let (_a, _h1) = handle.next_request().await.expect("attempt 1");
    let (_b, _h2) = handle.next_request().await.expect("attempt 2");
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::PerTryTimeout);
    assert_eq!(err.attempt_count(), 2);
}

/// gRPC mode (gRFC A31): `RouteAction.timeout` — here Envoy's implicit 15 s — does not apply;
/// `max_stream_duration` caps the call; `grpc_timeout_header_max` wins over it, 0 = no cap.
#[tokio::test(start_paused = true)]
async fn grpc_mode_caps_by_max_stream_duration_not_route_timeout() {
    let policy = RoutePolicy {
        timeout: Some(Duration::from_secs(15)),
        max_stream_duration: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(get("/pkg.Svc/Stream")));
    let (_req, _hold) = handle.next_request().await.expect("sent");
    let start = tokio::time::Instant::now();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(60),
        "the stream cap, not the 15 s route timeout"
    );
    assert_eq!(err.kind(), MeshErrorKind::Timeout);

    let policy = RoutePolicy {
        timeout: Some(Duration::from_secs(15)),
        max_stream_duration: Some(Duration::from_secs(60)),
        grpc_timeout_header_max: Some(Duration::ZERO),
        ..Default::default()
    };
    let mesh = mesh_with_policy(policy);
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(get("/pkg.Svc/Stream")));
    let (_req, send) = handle.next_request().await.expect("sent");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        !call.is_finished(),
        "grpc_timeout_header_max 0: the caller's deadline alone"
    );
    send.send_response(status(200));
    call.await.unwrap().unwrap();
}

/// gRPC mode (gRFC A31): the call's deadline is the nearer of the caller's `grpc-timeout` and
/// the route's cap; when the cap is nearer, the header sent upstream is lowered to it.
#[tokio::test(start_paused = true)]
async fn grpc_mode_keeps_the_callers_nearer_deadline_and_lowers_a_farther_one() {
    let policy = RoutePolicy {
        max_stream_duration: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let with_deadline = |t: &str| {
        let mut r = get("/pkg.Svc/Call");
        r.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_str(t).unwrap());
        r
    };

    // Caller: 2 s, nearer than the 60 s cap — the caller's deadline holds, header untouched.
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(with_deadline("2S")));
    let (req, _hold) = handle.next_request().await.expect("sent");
    assert_eq!(req.headers()["grpc-timeout"], "2S");
    let start = tokio::time::Instant::now();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(err.kind(), MeshErrorKind::Timeout);
    assert!(err.to_string().contains("own deadline of 2s"), "{err}");

    // Caller: 5 minutes, farther than the cap — the cap holds and the server is told so.
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(with_deadline("5M")));
    let (req, _hold) = handle.next_request().await.expect("sent");
    assert_eq!(req.headers()["grpc-timeout"], "60000m");
    let start = tokio::time::Instant::now();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert!(err.to_string().contains("max stream duration"), "{err}");

    // No cap: a malformed header is no deadline, as gRPC servers read it.
    let mesh = mesh_with_policy(RoutePolicy::default());
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(with_deadline("12x")));
    let (_req, send) = handle.next_request().await.expect("sent");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!call.is_finished());
    send.send_response(status(200));
    call.await.unwrap().unwrap();
}

#[test]
fn grpc_timeout_values_parse_and_encode_per_the_protocol() {
    use super::{encode_grpc_timeout, parse_grpc_timeout};
    let p = |s: &str| parse_grpc_timeout(&http::HeaderValue::from_str(s).unwrap());
    assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(p("100m"), Some(Duration::from_millis(100)));
    assert_eq!(p("99999999n"), Some(Duration::from_nanos(99_999_999)));
    for bad in ["", "m", "123456789m", "10s", "1.5S", "-1S"] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
    assert_eq!(encode_grpc_timeout(Duration::from_micros(1500)), "2m");
    // 200 000 s is 2·10^8 ms, past 8 digits: seconds instead.
    assert_eq!(encode_grpc_timeout(Duration::from_secs(200_000)), "200000S");
}

#[tokio::test(start_paused = true)]
async fn grpc_mode_ignores_per_try_timeout() {
    let mut r = retry(RetryOn::RESET, 2);
    r.per_try_timeout = Some(Duration::from_millis(100));
    let policy = RoutePolicy {
        timeout: None,
        retry: Some(r.into()),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(2));
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(get("/pkg.Svc/M")));
    let (_req, send) = handle.next_request().await.expect("sent");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!call.is_finished(), "gRPC ignores per_try_timeout (A44)");
    send.send_response(status(200));
    call.await.unwrap().unwrap();
}

fn mesh_with_policy(policy: RoutePolicy) -> mesh_core::mesh::Mesh {
    mesh(policy, RetryLimits::default(), &endpoints(1))
}
