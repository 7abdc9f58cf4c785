//! The `max_requests` circuit breaker end to end: a DestinationRule's
//! `connectionPool.http.http2MaxRequests`, translated by the control plane into the cluster's
//! `circuit_breakers`, caps concurrent requests in the client; past it requests fail fast with
//! `overflow{max_requests}` instead of queueing behind a slow backend.

use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use examples::Misbehavior;
use http::Request;
use http_body_util::Full;
use mesh_tower::{client::http1, MeshErrorKind, MeshStackLayer, OverflowLimit};
use tests::{control_plane, mesh, ready, service_yaml, temp_dir, write, Backend};
use tower::{Layer, ServiceExt};

#[tokio::test]
async fn overload_past_the_breaker_fails_fast_with_a_typed_error() -> Result<()> {
    let backend = Backend::start("slow").await?;
    backend.misbehave(Some(Misbehavior::Delay(Duration::from_millis(1500))));
    let dir = temp_dir("breaker");
    let yaml = service_yaml("svc.test", 8080, &[&backend]).replace(
        "spec:\n  host: svc.test\n  subsets:\n",
        "spec:\n  host: svc.test\n  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 2 } } }\n  subsets:\n",
    );
    assert!(
        yaml.contains("http2MaxRequests"),
        "the DestinationRule carries the limit"
    );
    write(&dir, "svc.yaml", &yaml);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "breaker-client")?;
    ready(&m, "svc.test:8080").await?;
    let svc =
        MeshStackLayer::new(m.clone()).layer(http1::<mesh_tower::retry::ReplayBody<Full<Bytes>>>());
    let get = || {
        Request::get("http://svc.test:8080/")
            .body(Full::<Bytes>::default())
            .expect("request")
    };

    // Two requests fill the breaker while the backend sits on them.
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(get())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every further request fails at once, typed and named, without waiting on the backend.
    for _ in 0..4 {
        let start = Instant::now();
        let err = svc.clone().oneshot(get()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            MeshErrorKind::Overflow(OverflowLimit::MaxRequests),
            "{err}"
        );
        assert_eq!(err.cluster_name(), Some("outbound|8080||svc.test"));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "fails fast: {:?}",
            start.elapsed()
        );
    }
    // The admitted two complete normally; then there is room again.
    for h in held {
        assert!(h.await?.is_ok());
    }
    backend.misbehave(None);
    assert!(svc.oneshot(get()).await.is_ok());
    Ok(())
}
