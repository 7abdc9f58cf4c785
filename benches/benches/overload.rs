//! Overload past the circuit breaker: memory stays flat and failures stay fast.
//!
//! A cluster with `max_requests: 64` whose backend never answers (an inner service that holds
//! every request forever) is driven with far more requests than the breaker admits. The first 64
//! sit in flight; every further one must fail at once with `overflow{max_requests}` — nothing
//! queues, so nothing grows. Prints the resident set size (`/proc/self/statm`) after each batch
//! and the latency of the failing calls. Env: `OVERLOAD_BATCHES` (default 5),
//! `OVERLOAD_BATCH` (requests per batch, default 100 000).
//!
//! ```text
//! cargo bench -p benches --bench overload
//! ```

use std::{convert::Infallible, time::Duration};

use benches::{harness, TARGET};
use mesh_core::model::{Cluster, LbPolicy, RetryLimits};
use mesh_tower::{MeshErrorKind, MeshStackLayer, OverflowLimit};
use tower::{Layer, Service, ServiceExt};

const MAX_REQUESTS: u32 = 64;

/// Resident set size in KiB (Linux), or 0 where `/proc` is not available.
fn rss_kib() -> u64 {
    let page_kib = 4;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_kib)
}

fn main() {
    let batches = harness::env("OVERLOAD_BATCHES", 5);
    let batch = harness::env("OVERLOAD_BATCH", 100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cache = benches::cache(100, &benches::addrs(3), LbPolicy::RoundRobin);
        for c in ["c0", "c1"] {
            let cluster = Cluster {
                retry_limits: RetryLimits {
                    max_requests: MAX_REQUESTS,
                    ..RetryLimits::default()
                },
                ..Cluster::eds(c, LbPolicy::RoundRobin)
            };
            cache.accept(c, cluster, "2");
        }
        let mesh = mesh_core::mesh::Mesh::from_cache(cache);
        // The backend: holds every request forever.
        let hang = tower::service_fn(|_req: http::Request<_>| async {
            std::future::pending::<Result<http::Response<()>, Infallible>>().await
        });
        let svc = MeshStackLayer::new(mesh).layer(hang);
        let get = || {
            // route-0 (prefix `/svc0/`, `x-tenant: t0`) sends everything to cluster c0.
            http::Request::get(format!("http://{TARGET}/svc0/echo"))
                .header("x-tenant", "t0")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .expect("request")
        };
        // Fill the breaker: these never complete.
        let mut held = Vec::new();
        for _ in 0..MAX_REQUESTS {
            let s = svc.clone();
            held.push(tokio::spawn(async move { s.oneshot(get()).await }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut lat: Vec<Duration> = Vec::with_capacity(batch as usize);
        lat.resize(batch as usize, Duration::ZERO);
        let start_rss = rss_kib();
        println!(
            "breaker full ({MAX_REQUESTS} requests held by a backend that never answers); rss {start_rss} KiB"
        );
        let mut svc = svc;
        // `lat` was allocated (and touched) before the baseline was read: not counted as growth.
        for b in 1..=batches {
            lat.clear();
            for _ in 0..batch {
                let t = tokio::time::Instant::now();
                let err = svc
                    .ready()
                    .await
                    .expect("ready")
                    .call(get())
                    .await
                    .expect_err("the breaker is full");
                lat.push(t.elapsed());
                assert_eq!(
                    err.kind(),
                    MeshErrorKind::Overflow(OverflowLimit::MaxRequests),
                    "{err}"
                );
            }
            lat.sort_unstable(); // in place: no scratch buffer to count as growth
            println!(
                "batch {b}: {batch} overflows, p50 {:?} p99 {:?} max {:?}; rss {} KiB ({:+} KiB since full)",
                harness::pct(&lat, 0.50),
                harness::pct(&lat, 0.99),
                lat.last().copied().unwrap_or_default(),
                rss_kib(),
                rss_kib() as i64 - start_rss as i64
            );
        }
        for h in held {
            h.abort();
        }
    });
}
