//! The stream idle timeout (Envoy `stream_idle_timeout` / `RouteAction.idle_timeout`) end to
//! end: a real HTTP/1.1 backend on loopback that stalls on command — before its response head,
//! or mid-body — the pooled HTTP/1.1 client, and the full mesh stack.
//!
//! Real time (real sockets), so bounds carry slack: the idle timeout is 300 ms, and each
//! assertion allows up to seconds of scheduling delay on a loaded machine, while the stalls
//! last 30 s — far beyond any bound, so a missing timer cannot pass.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Result;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use mesh_core::{cache::ResourceCache, mesh::Mesh, model::*};
use mesh_tower::{client::http1, MeshErrorKind, MeshStackLayer};
use tests::ready;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tower::{Layer, ServiceExt};

const TARGET: &str = "idle.test:8080";
const IDLE: Duration = Duration::from_millis(300);
const STALL: Duration = Duration::from_secs(30);

/// Serves one request per connection by its path: `/stall-head` never answers, `/stall-body`
/// sends the head and one chunk then stalls, `/slow` sends ten chunks 100 ms apart.
async fn backend() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn));
        }
    });
    Ok(addr)
}

async fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read until the end of the request head (GETs carry no body); bounded by the buffer.
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = conn.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    match path.as_str() {
        p if p.ends_with("/stall-head") => tokio::time::sleep(STALL).await,
        "/stall-body" => {
            conn.write_all(HEAD).await?;
            conn.write_all(b"5\r\nhello\r\n").await?;
            tokio::time::sleep(STALL).await;
        }
        _ => {
            conn.write_all(HEAD).await?;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                conn.write_all(b"1\r\nx\r\n").await?;
            }
            conn.write_all(b"0\r\n\r\n").await?;
        }
    }
    Ok(())
}

fn route(name: &str, prefix: &str, policy: RoutePolicy) -> Route {
    Route {
        hash_policy: Default::default(),
        name: name.into(),
        matcher: RouteMatch::prefix(prefix),
        action: RouteAction::Cluster("c".into()),
        policy,
    }
}

/// The listener sets `stream_idle_timeout` = 300 ms; route `off` disables it (`idle_timeout`
/// 0) and relies on a 2 s route timeout instead; route `main` inherits it, route timeout off.
fn idle_mesh(backend: SocketAddr) -> Mesh {
    let cache = ResourceCache::new();
    let off = RoutePolicy {
        timeout: Some(Duration::from_secs(2)),
        idle_timeout: Some(Duration::ZERO),
        ..RoutePolicy::default()
    };
    let main = RoutePolicy {
        timeout: None,
        ..RoutePolicy::default()
    };
    let rc = RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([VirtualHost {
            name: "vh".into(),
            domains: Arc::new(["*".into()]),
            routes: Arc::new([route("off", "/off", off), route("main", "/", main)]),
            retry_policy: None,
        }]),
    };
    cache.accept(
        TARGET,
        Listener {
            name: TARGET.into(),
            route_source: RouteSource::Inline(Arc::new(rc)),
            http_filters: Arc::new([]),
            stream_idle_timeout: Some(IDLE),
        },
        "1",
    );
    cache.accept("c", Cluster::eds("c", LbPolicy::RoundRobin), "1");
    cache.accept(
        "c",
        ClusterLoadAssignment::single_locality("c", [Endpoint::healthy(backend)]),
        "1",
    );
    Mesh::from_cache(cache)
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{TARGET}{path}"))
        .body(Full::default())
        .expect("request")
}

#[tokio::test]
async fn idle_timeout_covers_the_response_head_and_body() -> Result<()> {
    let m = idle_mesh(backend().await?);
    ready(&m, TARGET).await?;
    let svc = MeshStackLayer::new(m.clone()).layer(http1());

    // No response head: the request fails as idle_timeout (Envoy's 408 case).
    let start = Instant::now();
    let err = svc.clone().oneshot(get("/stall-head")).await.unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::IdleTimeout, "{err}");
    assert_eq!(err.route_name(), Some("main"));
    let took = start.elapsed();
    assert!(took >= IDLE && took < Duration::from_secs(5), "{took:?}");

    // Head and one chunk, then silence: the body ends with idle_timeout (Envoy resets).
    let resp = svc.clone().oneshot(get("/stall-body")).await?;
    assert_eq!(resp.status(), 200);
    let start = Instant::now();
    let err = resp.into_body().collect().await.unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::IdleTimeout, "{err}");
    let took = start.elapsed();
    assert!(took >= IDLE && took < Duration::from_secs(5), "{took:?}");

    // A body that keeps moving (a chunk every 100 ms for 1 s) is never idle for 300 ms.
    let resp = svc.clone().oneshot(get("/slow")).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    assert_eq!(&body[..], b"xxxxxxxxxx");

    // The route's idle_timeout 0 disables the listener's: its own 2 s route timeout fires.
    let start = Instant::now();
    let err = svc
        .clone()
        .oneshot(get("/off/stall-head"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::Timeout, "{err}");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}
