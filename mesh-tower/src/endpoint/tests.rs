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
