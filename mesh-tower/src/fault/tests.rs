//! The fault layer in the full stack over a `tower-test` mock, on paused time.

use std::{sync::Arc, time::Duration};

use mesh_core::{
    mesh::Mesh,
    model::{
        FaultAbort, FaultAbortKind, FaultDelay, FaultDelayKind, FaultPercent, FaultPolicy,
        HeaderMatch, HeaderMatcher, HttpFilter, HttpFilterConfig, Listener, RetryLimits,
        RouteAction, RouteConfiguration, RoutePolicy, RouteSource, VirtualHost,
    },
    snapshot::FaultStatus,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use crate::{
    error_response::{ErrorHeader, ErrorResponseLayer, HEADER},
    test_support::*,
    MeshErrorKind,
};

fn pct(numerator: u32) -> FaultPercent {
    FaultPercent {
        numerator,
        denominator: 100,
    }
}

fn abort(kind: FaultAbortKind, p: u32) -> FaultPolicy {
    FaultPolicy {
        abort: Some(FaultAbort {
            kind,
            percentage: pct(p),
        }),
        ..Default::default()
    }
}

fn delay(d: Duration, p: u32) -> FaultPolicy {
    FaultPolicy {
        delay: Some(FaultDelay {
            kind: FaultDelayKind::Fixed(d),
            percentage: pct(p),
        }),
        ..Default::default()
    }
}

/// `test_support::mesh`, with the listener's fault filter configured with `fault`.
fn fault_mesh(fault: FaultPolicy, policy: RoutePolicy) -> Mesh {
    let routes = vec![route("r", "/", RouteAction::Cluster("c".into()), policy)];
    let eps = endpoints(1)
        .into_iter()
        .map(mesh_core::model::Endpoint::healthy)
        .collect();
    let cache = cache(routes.clone(), RetryLimits::default(), eps);
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
        http_filters: Arc::new([
            HttpFilter {
                name: "envoy.filters.http.fault".into(),
                config: HttpFilterConfig::Fault(Arc::new(fault)),
            },
            HttpFilter {
                name: "router".into(),
                config: HttpFilterConfig::Router,
            },
        ]),
        stream_idle_timeout: None,
    };
    cache.accept("svc:80", listener, "2");
    Mesh::from_cache(cache)
}

#[tokio::test(start_paused = true)]
async fn abort_fails_before_sending_and_names_route_and_cluster() {
    let mesh = fault_mesh(
        abort(FaultAbortKind::Http(503), 100),
        RoutePolicy::default(),
    );
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let err = svc.clone().oneshot(get("/x")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::FaultAbort(FaultStatus::Http(503))
    );
    assert_eq!(
        (err.route_name(), err.cluster_name()),
        (Some("r"), Some("c"))
    );
    assert_eq!(err.attempt_count(), 0);
    assert!(err.to_string().contains("status http 503"), "{err}");

    // As an HTTP answer: the configured status and a parseable header.
    let resp = ErrorResponseLayer::new()
        .layer(svc.clone())
        .oneshot(get("/x"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let h = ErrorHeader::parse(resp.headers()[HEADER].to_str().unwrap()).unwrap();
    assert_eq!(
        (h.kind.as_str(), h.status.as_deref()),
        ("fault_abort", Some("http:503"))
    );
    drop(svc);
    assert!(handle.next_request().await.is_none(), "nothing was sent");
    let guard = mesh.lookup("svc:80").unwrap().snapshot();
    let snap = Option::clone(&guard).expect("warm");
    let stats = snap.fault_stats("r").unwrap().clone();
    let cluster = snap.clusters()["c"].fault_counts();
    assert_eq!(
        (cluster.aborts(), cluster.delays()),
        (2, 0),
        "counted per cluster too"
    );
    assert_eq!((stats.aborts_injected(), stats.active()), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn grpc_status_abort_is_a_trailers_only_answer_over_http() {
    let mesh = fault_mesh(abort(FaultAbortKind::Grpc(14), 100), RoutePolicy::default());
    let (svc, _handle) = stack(&mesh, 1024).await;
    let resp = ErrorResponseLayer::new()
        .layer(svc)
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "14");
    let h = ErrorHeader::parse(resp.headers()[HEADER].to_str().unwrap()).unwrap();
    assert_eq!(h.status.as_deref(), Some("grpc:14"));
}

#[tokio::test(start_paused = true)]
async fn http_delay_is_not_counted_in_the_route_timeout() {
    // Envoy: the fault filter runs before the router, so a 2 s delay and a 1 s route timeout
    // still succeed.
    let policy = RoutePolicy {
        timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mesh = fault_mesh(delay(Duration::from_secs(2), 100), policy);
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(get("/")));
    let (_req, send) = handle.next_request().await.expect("sent after the delay");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    send.send_response(status(200));
    let resp = call
        .await
        .unwrap()
        .expect("the route timeout started after the delay");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn grpc_delay_counts_against_the_call() {
    // A33: the delay runs on the call's clock. The route caps calls at 1 s: a 2 s delay
    // ends the call at 1 s with a deadline, nothing sent.
    let policy = RoutePolicy {
        max_stream_duration: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mesh = fault_mesh(delay(Duration::from_secs(2), 100), policy.clone());
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let start = Instant::now();
    let err = svc.clone().oneshot(get("/")).await.unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    drop(svc);
    assert!(handle.next_request().await.is_none(), "nothing was sent");

    // A 300 ms delay under the caller's 2 s deadline: 1.7 s of it left, and 700 ms of the 1 s
    // cap — the earlier of the two goes on the wire (the timeout layer lowers the header).
    let mesh = fault_mesh(delay(Duration::from_millis(300), 100), policy);
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let mut req = get("/");
    req.headers_mut()
        .insert("grpc-timeout", "2S".parse().unwrap());
    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(req));
    let (req, _hold) = handle.next_request().await.expect("sent");
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(req.headers()["grpc-timeout"], "700m");
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Timeout);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "the cap counted the delay"
    );
}

#[tokio::test(start_paused = true)]
async fn header_faults_need_header_config_and_are_capped() {
    let header = FaultPolicy {
        delay: Some(FaultDelay {
            kind: FaultDelayKind::Header,
            percentage: pct(100),
        }),
        ..abort(FaultAbortKind::Header, 100)
    };
    let mesh = fault_mesh(header, RoutePolicy::default());
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let with = |pairs: &[(&'static str, &'static str)]| {
        let mut r = get("/");
        for (k, v) in pairs {
            r.headers_mut().insert(*k, v.parse().unwrap());
        }
        r
    };
    // Abort header: HTTP status wins over the gRPC one.
    let err = svc
        .clone()
        .oneshot(with(&[
            ("x-envoy-fault-abort-request", "429"),
            ("x-envoy-fault-abort-grpc-request", "5"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::FaultAbort(FaultStatus::Http(429))
    );
    // A 0 % header turns it off; no header, no fault.
    for r in [
        with(&[
            ("x-envoy-fault-abort-request", "429"),
            ("x-envoy-fault-abort-request-percentage", "0"),
        ]),
        get("/"),
    ] {
        let call = tokio::spawn(svc.clone().oneshot(r));
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(status(200));
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    // Delay header, in milliseconds.
    let start = Instant::now();
    let call = tokio::spawn(
        svc.clone()
            .oneshot(with(&[("x-envoy-fault-delay-request", "750")])),
    );
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    assert_eq!(start.elapsed(), Duration::from_millis(750));
    call.await.unwrap().unwrap();

    // The same headers do nothing when the config is a fixed abort at 0 %.
    let mesh = fault_mesh(abort(FaultAbortKind::Http(503), 0), RoutePolicy::default());
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(with(&[
        ("x-envoy-fault-abort-request", "503"),
        ("x-envoy-fault-abort-request-percentage", "100"),
    ])));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn max_active_faults_lets_the_overflow_through_unfaulted() {
    let fault = FaultPolicy {
        max_active_faults: Some(1),
        ..delay(Duration::from_secs(10), 100)
    };
    let mesh = fault_mesh(fault, RoutePolicy::default());
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let start = Instant::now();
    let first = tokio::spawn(svc.clone().oneshot(get("/first")));
    tokio::task::yield_now().await;
    let second = tokio::spawn(svc.clone().oneshot(get("/second")));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.uri().path(),
        "/second",
        "the second went straight through"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    send.send_response(status(200));
    second.await.unwrap().unwrap();
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri().path(), "/first");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    send.send_response(status(200));
    first.await.unwrap().unwrap();
    let snap = mesh.lookup("svc:80").unwrap().snapshot();
    let stats = snap
        .as_ref()
        .as_ref()
        .unwrap()
        .fault_stats("r")
        .unwrap()
        .clone();
    assert_eq!(
        (stats.delays_injected(), stats.overflows(), stats.active()),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn selection_applies_to_http_only() {
    let fault = FaultPolicy {
        headers: Arc::new([HeaderMatcher {
            name: "x-chaos".into(),
            matcher: HeaderMatch::Present(true),
            invert: false,
            treat_missing_as_empty: false,
        }]),
        ..abort(FaultAbortKind::Http(503), 100)
    };
    let mesh = fault_mesh(fault, RoutePolicy::default());
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.clone().oneshot(get("/")));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200, "not selected");
    let mut chaos = get("/");
    chaos.headers_mut().insert("x-chaos", "1".parse().unwrap());
    let err = svc.oneshot(chaos).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::FaultAbort(FaultStatus::Http(503))
    );
    // gRPC ignores `headers` (A33): every call is aborted.
    let (svc, _handle) = grpc_stack(&mesh).await;
    let err = svc.oneshot(get("/")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::FaultAbort(FaultStatus::Http(503))
    );
}

#[tokio::test(start_paused = true)]
async fn delay_and_abort_draw_independently() {
    // A33 (and Envoy): one draw per feature. With 50 % each, the four combinations each come
    // out about a quarter of the time; a shared draw would make "delayed, not aborted" (and
    // "aborted, not delayed") impossible. n = 400, p = 1/4: σ ≈ 8.7, each count 100 ± 56
    // (6.5σ, a false failure below 1e-10); a shared draw gives 0 for two of them.
    let fault = FaultPolicy {
        delay: Some(FaultDelay {
            kind: FaultDelayKind::Fixed(Duration::from_millis(1)),
            percentage: pct(50),
        }),
        ..abort(FaultAbortKind::Http(503), 50)
    };
    let mesh = fault_mesh(fault, RoutePolicy::default());
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let mut combos = [[0u32; 2]; 2];
    for _ in 0..400 {
        let start = Instant::now();
        let mut call = tokio::spawn(svc.clone().oneshot(get("/")));
        let result = tokio::select! {
            r = &mut call => r.unwrap(),
            sent = handle.next_request() => {
                sent.unwrap().1.send_response(status(200));
                call.await.unwrap()
            }
        };
        let delayed = start.elapsed() >= Duration::from_millis(1);
        combos[usize::from(delayed)][usize::from(result.is_err())] += 1;
    }
    for (i, row) in combos.iter().enumerate() {
        for (j, n) in row.iter().enumerate() {
            assert!(
                (44..=156).contains(n),
                "delayed={i} aborted={j}: {n} ({combos:?})"
            );
        }
    }
}
