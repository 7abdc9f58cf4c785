use std::time::Duration;

use mesh_core::{
    mesh::Mesh,
    model::{Cluster, ConnectionLimits, Endpoint, LbPolicy, PoolLimits, RouteAction},
};
use tower::ServiceExt;

use crate::{test_support::*, MeshErrorKind, OverflowLimit};

/// A mesh whose cluster `c` has the given pool limits (DEFAULT priority).
fn mesh_with_pool(max_connections: u32, max_pending_requests: u32) -> Mesh {
    let routes = vec![route(
        "r",
        "/",
        RouteAction::Cluster("c".into()),
        Default::default(),
    )];
    let eps = endpoints(2).into_iter().map(Endpoint::healthy).collect();
    let cache = cache(routes, Default::default(), eps);
    let cluster = Cluster {
        connection_limits: ConnectionLimits {
            default: PoolLimits {
                max_connections,
                max_pending_requests,
            },
            high: PoolLimits::default(),
        },
        ..Cluster::eds("c", LbPolicy::RoundRobin)
    };
    cache.accept("c", cluster, "2");
    Mesh::from_cache(cache)
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_queues_then_overflows_typed() {
    let mesh = mesh_with_pool(1, 1);
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let first = tokio::spawn(svc.clone().oneshot(get("/a")));
    let (_r1, send1) = handle.next_request().await.expect("first sent");
    // The second waits for the only slot: nothing reaches the client yet.
    let second = tokio::spawn(svc.clone().oneshot(get("/b")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = svc.clone().oneshot(get("/c")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::Overflow(OverflowLimit::MaxPendingRequests)
    );
    assert_eq!(
        (err.route_name(), err.cluster_name(), err.endpoint_addr()),
        (Some("r"), Some("c"), None)
    );
    send1.send_response(status(200));
    first.await.unwrap().unwrap();
    // The slot freed: the queued request is sent now, picked after its wait.
    let (_r2, send2) = handle.next_request().await.expect("queued one sent");
    send2.send_response(status(200));
    second.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_queue_means_the_connection_limit_refuses() {
    let mesh = mesh_with_pool(1, 0);
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let first = tokio::spawn(svc.clone().oneshot(get("/a")));
    let (_r1, send1) = handle.next_request().await.expect("first sent");
    let err = svc.clone().oneshot(get("/b")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        MeshErrorKind::Overflow(OverflowLimit::MaxConnections)
    );
    assert!(err.to_string().contains("limit max_connections"), "{err}");
    send1.send_response(status(200));
    first.await.unwrap().unwrap();
}

/// A mesh whose cluster `c` drops `per_million` of requests (EDS `drop_overloads`), with
/// `policy` on its route.
fn mesh_with_drops(per_million: u32, policy: mesh_core::model::RoutePolicy) -> Mesh {
    let routes = vec![route("r", "/", RouteAction::Cluster("c".into()), policy)];
    let eps: Vec<Endpoint> = endpoints(2).into_iter().map(Endpoint::healthy).collect();
    let cache = cache(routes, Default::default(), eps.clone());
    let mut cla = mesh_core::model::ClusterLoadAssignment::single_locality("c", eps);
    cla.drop_overloads = std::sync::Arc::new([mesh_core::model::DropOverload {
        category: "throttle".into(),
        per_million,
    }]);
    cache.accept("c", cla, "2");
    Mesh::from_cache(cache)
}

#[tokio::test(start_paused = true)]
async fn drop_overloads_drop_their_share_once_per_request_before_any_attempt() {
    use mesh_core::model::{RetryOn, RoutePolicy};
    // 30 % dropped; the backend fails every first attempt with 503 and answers the retry.
    let policy = RoutePolicy {
        retry: Some(retry(RetryOn::SERVER_ERROR, 1).into()),
        ..Default::default()
    };
    let mesh = mesh_with_drops(300_000, policy);
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let backend = tokio::spawn(async move {
        let mut n = 0u32;
        while let Some((_req, send)) = handle.next_request().await {
            n += 1;
            send.send_response(status(if n % 2 == 1 { 503 } else { 200 }));
        }
        n
    });
    const N: usize = 2_000;
    let (mut ok, mut dropped) = (0, 0);
    for i in 0..N {
        match svc.clone().oneshot(get(&format!("/{i}"))).await {
            Ok(r) => {
                assert_eq!(r.status(), 200, "request {i}: the retry was answered");
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), MeshErrorKind::DropOverload, "request {i}: {e}");
                assert!(e.to_string().contains("throttle"), "{e}");
                assert_eq!(e.endpoint_addr(), None, "dropped before a pick");
                dropped += 1;
            }
        }
    }
    drop(svc);
    // Dropped ~ Binomial(2000, 0.3): mean 600, sd 20.5; [450, 750] is ± 7 sd. A retry is never
    // dropped: every request that was not dropped succeeded on its second attempt (with a
    // per-attempt drop about 30 % of them would fail).
    assert!((450..=750).contains(&dropped), "dropped {dropped} of {N}");
    assert_eq!(ok + dropped, N);
    // Counted per cluster for `mesh.cluster.drop_overloads`.
    let guard = mesh.lookup("svc:80").unwrap().snapshot();
    let snap = Option::clone(&guard).expect("warm");
    assert_eq!(snap.clusters()["c"].drop_counts().dropped(), dropped as u64);
    assert_eq!(
        backend.await.unwrap() as usize,
        2 * ok,
        "two attempts per kept request"
    );
}

#[tokio::test]
async fn a_full_drop_never_reaches_the_backend() {
    let mesh = mesh_with_drops(1_000_000, Default::default());
    let (svc, mut handle) = stack(&mesh, 1024).await;
    for _ in 0..20 {
        let e = svc.clone().oneshot(get("/")).await.unwrap_err();
        assert_eq!(e.kind(), MeshErrorKind::DropOverload);
        assert_eq!(crate::error_response::status_for(e.kind()), 503);
    }
    drop(svc);
    assert!(
        handle.next_request().await.is_none(),
        "a request reached the backend"
    );
}
