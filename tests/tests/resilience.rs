//! Timeouts, retries, the retry budget, the body replay cap and `x-mesh-error`, end to end:
//! real backends on loopback that misbehave on command, real pooled HTTP/1.1 client, the full
//! mesh stack (`MeshStackLayer`), configured by the control plane from Istio YAML (and, for the
//! retry budget, which Istio cannot express, by Envoy resources in the cache).

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use bytes::Bytes;
use examples::Misbehavior;
use http::Request;
use http_body_util::Full;
use mesh_core::mesh::Mesh;
use mesh_tower::{
    client::{http1, HttpClient},
    error_response::{ErrorHeader, ErrorResponseLayer, HEADER},
    retry::ReplayBody,
    MeshErrorKind, MeshStack, MeshStackLayer,
};
use tests::{control_plane, mesh, ready, service_yaml, temp_dir, write, Backend};
use tower::{Layer, ServiceExt};

const HOST: &str = "svc.test";
const TARGET: &str = "svc.test:8080";

type Stack = MeshStack<HttpClient<ReplayBody<Full<Bytes>>>>;

fn stack(m: &Mesh, replay_cap: usize) -> Stack {
    MeshStackLayer::new(m.clone())
        .ready_timeout(Duration::from_secs(10))
        .replay_cap(replay_cap)
        .layer(http1())
}

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  hosts: [{HOST}]\n  http:\n    - name: main\n      route: [{{ destination: {{ host: {HOST} }} }}]\n{http}"
    )
}

/// Backends `b0..bn`, a control plane routing `svc.test:8080` to all of them with `http`
/// (extra VirtualService rule fields), and a warm mesh.
async fn setup(
    n: usize,
    http: &str,
) -> Result<(Vec<Backend>, mesh_control_plane::ControlPlaneHandle, Mesh)> {
    let mut backends = Vec::new();
    for i in 0..n {
        backends.push(Backend::start(&format!("b{i}")).await?);
    }
    let dir = temp_dir("resilience");
    let refs: Vec<&Backend> = backends.iter().collect();
    write(&dir, "svc.yaml", &service_yaml(HOST, 8080, &refs));
    write(&dir, "vs.yaml", &vs(http));
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "resilience-client")?;
    ready(&m, TARGET).await?;
    Ok((backends, cp, m))
}

fn get() -> Request<Full<Bytes>> {
    Request::get(format!("http://{TARGET}/"))
        .body(Full::default())
        .expect("request")
}

#[tokio::test]
async fn retry_on_503_lands_on_another_endpoint() -> Result<()> {
    let (backends, _cp, m) = setup(3, "      retries: { attempts: 2, retryOn: \"503\" }\n").await?;
    backends[0].misbehave(Some(Misbehavior::Status(503)));
    let svc = stack(&m, 1024);
    for _ in 0..30 {
        let resp = svc.clone().oneshot(get()).await?;
        assert_eq!(resp.status(), 200);
        assert_ne!(resp.headers()["x-backend"], "b0");
    }
    // Round robin sends about a third of first attempts to b0; every one was retried elsewhere.
    assert!(backends[0].served() >= 5, "b0 saw {}", backends[0].served());
    Ok(())
}

#[tokio::test]
async fn per_try_timeout_then_success() -> Result<()> {
    let (backends, _cp, m) = setup(
        1,
        "      retries: { attempts: 1, perTryTimeout: 200ms, retryOn: reset }\n",
    )
    .await?;
    backends[0].fail_first(1, Misbehavior::Delay(Duration::from_secs(5)));
    let start = tokio::time::Instant::now();
    let resp = stack(&m, 1024).oneshot(get()).await?;
    assert_eq!(resp.status(), 200);
    // 200 ms per try + < 25 ms backoff; far below the 5 s the first attempt would have taken.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(backends[0].served(), 2);
    Ok(())
}

#[tokio::test]
async fn overall_timeout_counts_attempts_and_explains_itself() -> Result<()> {
    let (backends, _cp, m) = setup(
        2,
        "      timeout: 500ms\n      retries: { attempts: 5, perTryTimeout: 150ms, retryOn: reset }\n",
    )
    .await?;
    for b in &backends {
        b.misbehave(Some(Misbehavior::Delay(Duration::from_secs(5))));
    }
    let err = stack(&m, 1024).oneshot(get()).await.unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Timeout);
    // 150 ms per try, < 25/75/175 ms backoffs: at least 2 attempts fit in 500 ms, at most 4.
    assert!((2..=4).contains(&err.attempt_count()), "{err}");
    assert_eq!(err.route_name(), Some("main"));
    assert!(err.cluster_name().is_some_and(|c| c.contains(HOST)));

    // The same failure as an HTTP answer, read back by a machine.
    let svc = ErrorResponseLayer::new().layer(stack(&m, 1024));
    let resp = svc.oneshot(get()).await?;
    assert_eq!(resp.status(), 504);
    let h = ErrorHeader::parse(resp.headers()[HEADER].to_str()?).expect("parseable");
    assert_eq!(h.kind, "timeout");
    assert_eq!(h.route.as_deref(), Some("main"));
    assert!(h.attempts >= 2);
    let ep = h.endpoint.expect("endpoint named");
    assert!(backends.iter().any(|b| b.addr() == ep));
    Ok(())
}

#[tokio::test]
async fn body_over_the_replay_cap_is_not_retried_and_says_why() -> Result<()> {
    let (backends, _cp, m) = setup(1, "      retries: { attempts: 3, retryOn: reset }\n").await?;
    backends[0].misbehave(Some(Misbehavior::Close));
    let req = Request::post(format!("http://{TARGET}/upload"))
        .body(Full::new(Bytes::from(vec![b'x'; 1024])))?;
    let err = stack(&m, 64).oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Upstream);
    assert_eq!(err.not_retried_reason(), Some("body_over_replay_cap"));
    assert_eq!(err.attempt_count(), 1);
    assert_eq!(backends[0].served(), 1);

    // A body within the cap is retried: 4 attempts in all.
    let req = Request::post(format!("http://{TARGET}/upload"))
        .body(Full::new(Bytes::from_static(b"small")))?;
    let err = stack(&m, 64).oneshot(req).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.attempt_count()),
        (MeshErrorKind::Upstream, 4)
    );
    assert_eq!(backends[0].served(), 5);
    Ok(())
}

/// A mesh whose cluster has a retry budget (not expressible in Istio YAML): Envoy resources
/// straight into the cache, then the same stack.
fn budget_mesh(backend: &Backend) -> Mesh {
    use mesh_core::{cache::ResourceCache, model::*};
    let route = Route {
        hash_policy: Default::default(),
        name: "main".into(),
        matcher: RouteMatch::prefix("/"),
        action: RouteAction::Cluster("c".into()),
        policy: RoutePolicy {
            retry: Some(Arc::new(RetryPolicy {
                retry_on: RetryOn::RESET,
                num_retries: 3,
                per_try_timeout: Some(Duration::from_millis(300)),
                backoff: RetryBackoff::default(),
                retriable_status_codes: Arc::new([]),
                retriable_headers: Arc::new([]),
                previous_hosts: false,
                host_selection_max_attempts: 1,
            })),
            ..RoutePolicy::default()
        },
    };
    let cache = ResourceCache::new();
    let rc = RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([VirtualHost {
            name: "vh".into(),
            domains: Arc::new(["*".into()]),
            routes: Arc::new([route]),
            retry_policy: None,
        }]),
    };
    cache.accept(
        TARGET,
        Listener {
            name: TARGET.into(),
            route_source: RouteSource::Inline(Arc::new(rc)),
            http_filters: Arc::new([]),
            stream_idle_timeout: None,
        },
        "1",
    );
    let limits = RetryLimits {
        max_retries: 3,
        max_requests: 1024,
        budget: Some(RetryBudget {
            budget_percent: 0.0,
            min_retry_concurrency: 1,
        }),
    };
    let cluster = Cluster {
        retry_limits: limits,
        connection_limits: Default::default(),
        outlier_detection: None,
        ..Cluster::eds("c", LbPolicy::RoundRobin)
    };
    cache.accept("c", cluster, "1");
    let endpoints = [Endpoint::healthy(backend.addr())];
    cache.accept(
        "c",
        ClusterLoadAssignment::single_locality("c", endpoints),
        "1",
    );
    Mesh::from_cache(cache)
}

#[tokio::test]
async fn retry_budget_stops_retry_amplification() -> Result<()> {
    let backend = Backend::start("slow").await?;
    backend.misbehave(Some(Misbehavior::Delay(Duration::from_secs(10))));
    let m = budget_mesh(&backend);
    ready(&m, TARGET).await?;
    let svc = stack(&m, 1024);
    // 10 requests in flight at once, all timing out per try at ~300 ms. The budget allows one
    // concurrent retry (min_retry_concurrency 1, 0 %), and that retry stays in flight for
    // 300 ms, far longer than the spread of the ten timeouts: the other nine are refused.
    let results = futures::future::join_all((0..10).map(|_| svc.clone().oneshot(get()))).await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == MeshErrorKind::RetryBudgetExhausted))
        .count();
    assert!(refused >= 8, "refused {refused} of 10");
    for r in &results {
        let e = r.as_ref().expect_err("all fail");
        assert!(
            e.kind() == MeshErrorKind::RetryBudgetExhausted
                || e.kind() == MeshErrorKind::PerTryTimeout,
            "{e}"
        );
    }
    // Without the budget: 40 attempts. With it: 10 first attempts and a handful of retries.
    assert!(
        backend.served() <= 10 + 3 * 2,
        "served {}",
        backend.served()
    );
    Ok(())
}
