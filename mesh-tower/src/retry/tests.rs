use std::time::Duration;

use mesh_core::model::{RetryBudget, RetryLimits, RetryOn, RoutePolicy};
use tower::ServiceExt;

use crate::{test_support::*, MeshErrorKind, OverflowLimit};

fn with_retry(r: mesh_core::model::RetryPolicy) -> RoutePolicy {
    RoutePolicy {
        retry: Some(r.into()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn retries_a_503_and_backs_off_within_envoys_bounds() {
    let mesh = mesh(
        with_retry(retry(RetryOn::SERVER_ERROR, 3)),
        RetryLimits::default(),
        &endpoints(1),
    );
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/")));
    let mut last = tokio::time::Instant::now();
    // Gaps before retries 1..3 are drawn below 25, 75 and 175 ms (base 25 ms, full jitter);
    // tokio's timer rounds a sleep up to the next whole millisecond, so the bound is inclusive.
    for (i, bound) in [(0, 0u64), (1, 25), (2, 75), (3, 175)] {
        let (_req, send) = handle.next_request().await.expect("attempt");
        let gap = last.elapsed();
        if i > 0 {
            assert!(gap <= Duration::from_millis(bound), "retry {i}: {gap:?}");
        }
        last = tokio::time::Instant::now();
        send.send_response(status(503));
    }
    // Retries exhausted: the last 503 is the answer.
    assert_eq!(call.await.unwrap().unwrap().status(), 503);
}

#[tokio::test(start_paused = true)]
async fn conditions_decide() {
    let mut r = retry(RetryOn::RETRIABLE_STATUS_CODES | RetryOn::UNAVAILABLE, 1);
    r.retriable_status_codes = std::sync::Arc::new([418]);
    let mesh = mesh(with_retry(r), RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    // 500 is not in the set: answered at once.
    let call = tokio::spawn(svc.clone().oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(500));
    assert_eq!(call.await.unwrap().unwrap().status(), 500);
    // 418 is: retried.
    let call = tokio::spawn(svc.clone().oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(418));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    // grpc-status 14 in the headers: retried.
    let call = tokio::spawn(svc.oneshot(get("/")));
    let mut unavailable = status(200);
    unavailable
        .headers_mut()
        .insert("grpc-status", "14".parse().unwrap());
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(unavailable);
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

async fn second_endpoint(previous_hosts: bool) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let mut r = retry(RetryOn::GATEWAY_ERROR, 1);
    r.previous_hosts = previous_hosts;
    r.host_selection_max_attempts = 5;
    let mesh = mesh(with_retry(r), RetryLimits::default(), &endpoints(2));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/")));
    let (first, send) = handle.next_request().await.unwrap();
    // Another request takes the other endpoint, so round robin alone would come back here.
    let snapshot = mesh.lookup("svc:80").unwrap().snapshot();
    let other = snapshot.as_ref().as_ref().unwrap().clusters()["c"]
        .pick()
        .unwrap();
    assert_ne!(other.address(), endpoint_of(&first));
    drop(other);
    send.send_response(status(503));
    let (second, send) = handle.next_request().await.unwrap();
    send.send_response(status(200));
    call.await.unwrap().unwrap();
    (endpoint_of(&first), endpoint_of(&second))
}

#[tokio::test(start_paused = true)]
async fn previous_hosts_makes_the_retry_pick_another_endpoint() {
    let (a, b) = second_endpoint(true).await;
    assert_ne!(a, b);
    let (a, b) = second_endpoint(false).await;
    assert_eq!(
        a, b,
        "without the predicate round robin lands on the same endpoint"
    );
}

#[tokio::test(start_paused = true)]
async fn budget_and_max_retries_bound_concurrent_retries() {
    for (limits, kind) in [
        (
            RetryLimits {
                max_retries: 3,
                max_requests: 1024,
                budget: Some(RetryBudget {
                    budget_percent: 0.0,
                    min_retry_concurrency: 1,
                }),
            },
            MeshErrorKind::RetryBudgetExhausted,
        ),
        (
            RetryLimits {
                max_retries: 1,
                max_requests: 1024,
                budget: None,
            },
            MeshErrorKind::Overflow(OverflowLimit::MaxRetries),
        ),
    ] {
        let mesh = mesh(with_retry(retry(RetryOn::RESET, 2)), limits, &endpoints(1));
        let (svc, mut handle) = stack(&mesh, 1024).await;
        let a = tokio::spawn(svc.clone().oneshot(get("/a")));
        let (a1, send_a1) = handle.next_request().await.unwrap();
        assert_eq!(a1.uri().path(), "/a");
        let b = tokio::spawn(svc.oneshot(get("/b")));
        let (_b1, send_b1) = handle.next_request().await.unwrap();
        send_a1.send_error(std::io::Error::other("reset"));
        // A's retry holds the only retry slot while it is in flight.
        let (a2, send_a2) = handle.next_request().await.unwrap();
        assert_eq!(a2.uri().path(), "/a");
        send_b1.send_error(std::io::Error::other("reset"));
        let err = b.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(err.attempt_count(), 1);
        send_a2.send_response(status(200));
        assert_eq!(a.await.unwrap().unwrap().status(), 200);
        let counters = mesh.lookup("svc:80").unwrap().snapshot();
        let c = counters.as_ref().as_ref().unwrap().clusters()["c"]
            .retry_counters()
            .clone();
        assert_eq!((c.active_requests(), c.active_retries()), (0, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn body_over_cap_is_sent_once_and_says_why() {
    let mesh = mesh(
        with_retry(retry(RetryOn::RESET, 3)),
        RetryLimits::default(),
        &endpoints(1),
    );
    let (svc, mut handle) = stack(&mesh, 4).await;
    let req = http::Request::post("http://svc:80/upload")
        .body("more than four bytes".to_string())
        .unwrap();
    let call = tokio::spawn(svc.clone().oneshot(req));
    let (req, send) = handle.next_request().await.unwrap();
    use http_body_util::BodyExt;
    let body = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"more than four bytes", "streamed whole");
    send.send_error(std::io::Error::other("reset"));
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Upstream);
    assert_eq!(err.not_retried_reason(), Some("body_over_replay_cap"));
    assert_eq!(err.attempt_count(), 1);

    // Within the cap the same body is replayed byte for byte.
    let req = http::Request::post("http://svc:80/upload")
        .body("tiny".to_string())
        .unwrap();
    let call = tokio::spawn(svc.oneshot(req));
    for reply in [None, Some(200)] {
        let (req, send) = handle.next_request().await.unwrap();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"tiny");
        match reply {
            None => send.send_error(std::io::Error::other("reset")),
            Some(s) => send.send_response(status(s)),
        }
    }
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

/// The `max_requests` breaker: with 2 requests in flight the third fails at once with
/// `overflow{max_requests}`, naming route and cluster, without reaching an endpoint; once one
/// completes there is room again.
#[tokio::test(start_paused = true)]
async fn max_requests_overflow_fails_fast_and_recovers() {
    let limits = RetryLimits {
        max_requests: 2,
        ..RetryLimits::default()
    };
    let mesh = mesh(with_retry(retry(RetryOn::RESET, 2)), limits, &endpoints(2));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let first = tokio::spawn(svc.clone().oneshot(get("/a")));
    let second = tokio::spawn(svc.clone().oneshot(get("/b")));
    let (_r1, send1) = handle.next_request().await.expect("first sent");
    let (_r2, send2) = handle.next_request().await.expect("second sent");

    let err = svc.clone().oneshot(get("/c")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::Overflow(OverflowLimit::MaxRequests)
    );
    assert_eq!(
        (err.route_name(), err.cluster_name()),
        (Some("r"), Some("c"))
    );
    assert_eq!(
        err.endpoint_addr(),
        None,
        "refused before any endpoint was picked"
    );

    send1.send_response(status(200));
    first.await.unwrap().unwrap();
    let third = tokio::spawn(svc.oneshot(get("/d")));
    let (_r3, send3) = handle.next_request().await.expect("room again");
    send3.send_response(status(200));
    send2.send_response(status(200));
    third.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}

/// gRPC mode (gRFC A6): at most 5 attempts, server pushback delays the next retry by exactly
/// its value, and a negative pushback stops retrying.
#[tokio::test(start_paused = true)]
async fn grpc_mode_caps_attempts_and_honours_pushback() {
    let mesh = mesh(
        with_retry(retry(RetryOn::UNAVAILABLE, 10)),
        RetryLimits {
            max_retries: 1024,
            ..RetryLimits::default()
        },
        &endpoints(1),
    );
    let unavailable = |pushback: Option<&str>| {
        let mut r = status(200);
        r.headers_mut().insert("grpc-status", "14".parse().unwrap());
        if let Some(p) = pushback {
            r.headers_mut()
                .insert("grpc-retry-pushback-ms", p.parse().unwrap());
        }
        r
    };

    // num_retries 10 acts as 4: five attempts, then the last UNAVAILABLE stands.
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.clone().oneshot(get("/pkg.Svc/M")));
    for _ in 0..5 {
        let (_req, send) = handle.next_request().await.expect("attempt");
        send.send_response(unavailable(None));
    }
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.headers()["grpc-status"], "14");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .is_err(),
        "no sixth attempt"
    );

    // Pushback 700 ms: the retry comes exactly then, not at the 25 ms-based backoff.
    let call = tokio::spawn(svc.clone().oneshot(get("/pkg.Svc/M")));
    let (_req, send) = handle.next_request().await.expect("first");
    send.send_response(unavailable(Some("700")));
    let start = tokio::time::Instant::now();
    let (_req, send) = handle.next_request().await.expect("pushed-back retry");
    assert_eq!(start.elapsed(), Duration::from_millis(700));
    send.send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    // Negative pushback: the server says stop; the UNAVAILABLE is the answer. (`svc` is kept
    // alive: a dropped service would end the mock's request stream.)
    let call = tokio::spawn(svc.clone().oneshot(get("/pkg.Svc/M")));
    let (_req, send) = handle.next_request().await.expect("first");
    send.send_response(unavailable(Some("-1")));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.headers()["grpc-retry-pushback-ms"], "-1");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .is_err(),
        "not retried"
    );
}

/// Routes `/hi` (priority HIGH) and `/` (DEFAULT) to cluster `c`, whose DEFAULT thresholds
/// allow 1 request in flight and HIGH ones 2.
fn priority_mesh() -> mesh_core::mesh::Mesh {
    use mesh_core::model::{
        Cluster, CommonLbConfig, Endpoint, LbPolicy, RouteAction, RoutingPriority,
    };
    let high = RoutePolicy {
        priority: RoutingPriority::High,
        ..Default::default()
    };
    let routes = vec![
        route("hi", "/hi", RouteAction::Cluster("c".into()), high),
        route(
            "lo",
            "/",
            RouteAction::Cluster("c".into()),
            RoutePolicy::default(),
        ),
    ];
    let limit = |n| RetryLimits {
        max_requests: n,
        ..RetryLimits::default()
    };
    let eps = endpoints(1).into_iter().map(Endpoint::healthy).collect();
    let cache = cache(routes, limit(1), eps);
    let cluster = Cluster {
        retry_limits: limit(1),
        retry_limits_high: limit(2),
        lb_common: CommonLbConfig {
            healthy_panic_threshold_ppm: 0,
            ..Default::default()
        },
        ..Cluster::eds("c", LbPolicy::RoundRobin)
    };
    cache.accept("c", cluster, "2");
    mesh_core::mesh::Mesh::from_cache(cache)
}

#[tokio::test(start_paused = true)]
async fn high_priority_routes_use_the_high_thresholds_and_their_own_counters() {
    use mesh_core::model::RoutingPriority;
    let mesh = priority_mesh();
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let lo = tokio::spawn(svc.clone().oneshot(get("/")));
    let (_r, send_lo) = handle.next_request().await.unwrap();
    let err = svc.clone().oneshot(get("/")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::Overflow(OverflowLimit::MaxRequests),
        "DEFAULT: 1 in flight"
    );
    // The DEFAULT request in flight does not count against HIGH, which allows 2.
    let hi1 = tokio::spawn(svc.clone().oneshot(get("/hi/1")));
    let (_r1, send_hi1) = handle.next_request().await.unwrap();
    let hi2 = tokio::spawn(svc.clone().oneshot(get("/hi/2")));
    let (_r2, send_hi2) = handle.next_request().await.unwrap();
    let err = svc.clone().oneshot(get("/hi/3")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::Overflow(OverflowLimit::MaxRequests)
    );
    assert_eq!(err.route_name(), Some("hi"));
    {
        let snap = mesh.lookup("svc:80").unwrap().snapshot();
        let c = &snap.as_ref().as_ref().unwrap().clusters()["c"];
        assert_eq!(
            c.retry_counters_for(RoutingPriority::Default)
                .active_requests(),
            1
        );
        assert_eq!(
            c.retry_counters_for(RoutingPriority::High)
                .active_requests(),
            2
        );
        assert_eq!(c.retry_counters_for(RoutingPriority::High).overflows(), 1);
        assert_eq!(c.pool_for(RoutingPriority::High).active(), 2);
        assert_eq!(c.pool_for(RoutingPriority::Default).active(), 1);
    }
    for send in [send_lo, send_hi1, send_hi2] {
        send.send_response(status(200));
    }
    for call in [lo, hi1, hi2] {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_ignores_route_priority_for_max_requests() {
    let mesh = priority_mesh();
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let hi = tokio::spawn(svc.clone().oneshot(get("/hi/1")));
    let (_r, send) = handle.next_request().await.unwrap();
    let err = svc.clone().oneshot(get("/hi/2")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::Overflow(OverflowLimit::MaxRequests),
        "gRPC reads DEFAULT thresholds only (gRFC A32): 1 in flight"
    );
    {
        use mesh_core::model::RoutingPriority;
        let snap = mesh.lookup("svc:80").unwrap().snapshot();
        let c = &snap.as_ref().as_ref().unwrap().clusters()["c"];
        // The pool breakers agree with the retry layer: DEFAULT's slot, not HIGH's.
        assert_eq!(c.pool_for(RoutingPriority::Default).active(), 1);
        assert_eq!(c.pool_for(RoutingPriority::High).active(), 0);
    }
    send.send_response(status(200));
    assert_eq!(hi.await.unwrap().unwrap().status(), 200);
}

/// With a request hash (RING_HASH / MAGLEV), `previous_hosts` walks on from the rejected
/// endpoint (Envoy `chooseHost(hash, attempt)`): without that, the same hash picks the same
/// endpoint on every try and the retry returns to the host that failed.
#[tokio::test(start_paused = true)]
async fn previous_hosts_on_a_hashed_route_walks_the_ring() {
    use mesh_core::{
        mesh::Mesh,
        model::{Cluster, Endpoint, HashPolicy, HashSource, LbPolicy, RouteAction},
    };
    for policy in [
        LbPolicy::RingHash {
            min_ring_size: 1024,
            max_ring_size: 1024,
        },
        LbPolicy::Maglev { table_size: 65_537 },
    ] {
        let mut r = retry(RetryOn::GATEWAY_ERROR, 1);
        r.previous_hosts = true;
        r.host_selection_max_attempts = 5;
        let mut route = route("r", "/", RouteAction::Cluster("c".into()), with_retry(r));
        route.hash_policy = std::sync::Arc::new([HashPolicy {
            source: HashSource::Header {
                name: "x-user".into(),
                rewrite: None,
            },
            terminal: false,
        }]);
        let eps = endpoints(3).into_iter().map(Endpoint::healthy).collect();
        let cache = cache(vec![route], RetryLimits::default(), eps);
        cache.accept("c", Cluster::eds("c", policy), "2");
        let mesh = Mesh::from_cache(cache);
        let (svc, mut handle) = stack(&mesh, 1024).await;
        for user in 0..20 {
            let mut req = get("/");
            req.headers_mut()
                .insert("x-user", format!("u{user}").parse().unwrap());
            let call = tokio::spawn(svc.clone().oneshot(req));
            let (first, send) = handle.next_request().await.unwrap();
            send.send_response(status(503));
            let (second, send) = handle.next_request().await.unwrap();
            send.send_response(status(200));
            call.await.unwrap().unwrap();
            // Deterministic: the ring / table depends only on the endpoint addresses and the
            // hash only on the header, so each key fails or passes the same way every run.
            assert_ne!(
                endpoint_of(&first),
                endpoint_of(&second),
                "{policy:?} user u{user}: the retry went back to the failed endpoint"
            );
        }
    }
}
