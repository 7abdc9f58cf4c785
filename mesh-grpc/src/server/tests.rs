//! Serving-state transitions over a cache the test fills (no control plane), with real
//! loopback connections: accept-and-close while not serving, HTTP/2 while serving, GOAWAY on
//! listener removal, NACKs keeping the last good listener.

use std::convert::Infallible;

use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::model::{ModelError, ServerFilterChain, ServerListener};
use tokio::io::AsyncReadExt;
use tonic::transport::server::TcpConnectInfo;

use super::*;

/// Bound on every network step.
const STEP: Duration = Duration::from_secs(10);

fn server_listener(name: &str, address: SocketAddr) -> Listener {
    Listener {
        name: name.into(),
        route_source: RouteSource::Server(Arc::new(ServerListener {
            name: name.into(),
            address,
            filter_chains: Arc::from([ServerFilterChain {
                name: "inbound-plaintext".into(),
                matcher: Default::default(),
                tls: None,
                http_filters: Arc::from([]),
            }]),
            default_filter_chain: None,
        })),
        http_filters: Arc::from([]),
        stream_idle_timeout: None,
    }
}

/// Answers 200 with the peer address tonic handlers would see (`Request::remote_addr`).
async fn start(cache: &ResourceCache) -> XdsServer {
    let ok = tower::service_fn(|req: Request<Incoming>| async move {
        let remote = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        Ok::<_, Infallible>(Response::new(format!("{remote:?}")))
    });
    XdsServer::builder(Mesh::from_cache(cache.clone()))
        .bind("127.0.0.1:0".parse().unwrap(), ok)
        .await
        .unwrap()
}

async fn wait_state(server: &XdsServer, serving: bool) -> ServingState {
    let mut rx = server.serving_state();
    let state = tokio::time::timeout(STEP, async {
        rx.wait_for(|s| s.is_serving() == serving)
            .await
            .map(|s| s.clone())
    })
    .await
    .expect("state change in time")
    .expect("server alive");
    state
}

/// Connects and reads: `true` if the server closed the connection without a byte.
async fn closed_at_once(addr: SocketAddr) -> bool {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(STEP, tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// An HTTP/2 connection: the request sender and the connection task.
async fn h2(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<String>,
    JoinHandle<hyper::Result<()>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

/// One GET: the status and body.
async fn get(
    send: &mut hyper::client::conn::http2::SendRequest<String>,
) -> (http::StatusCode, String) {
    use http_body_util::BodyExt;
    let req = Request::get("http://test/x").body(String::new()).unwrap();
    let resp = tokio::time::timeout(STEP, send.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status();
    let body = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn serves_only_while_a_matching_server_listener_is_cached() {
    let cache = ResourceCache::new();
    let server = start(&cache).await;
    let (addr, name) = (server.local_addr(), server.listener_name().to_owned());
    assert_eq!(
        name,
        format!("grpc/server?xds.resource.listening_address={addr}")
    );

    // Waiting: accepted and closed.
    assert!(
        matches!(&*server.serving_state().borrow(), ServingState::NotServing(r) if r.contains("waiting"))
    );
    assert!(closed_at_once(addr).await);

    // A listener for another address does not count (A36).
    let other: SocketAddr = "127.0.0.2:1".parse().unwrap();
    cache.accept(&name, server_listener(&name, other), "1");
    tokio::time::timeout(STEP, async {
        let mut rx = server.serving_state();
        rx.wait_for(
            |s| matches!(s, ServingState::NotServing(r) if r.contains("is for 127.0.0.2:1")),
        )
        .await
        .map(|_| ())
    })
    .await
    .expect("in time")
    .expect("alive");
    assert!(closed_at_once(addr).await);

    // The right listener: serving over HTTP/2.
    cache.accept(&name, server_listener(&name, addr), "2");
    wait_state(&server, true).await;
    let (mut send, conn) = h2(addr).await;
    let (status, body) = get(&mut send).await;
    assert_eq!(status, http::StatusCode::OK);
    // tonic's `Request::remote_addr()` works under this server.
    assert!(body.starts_with("Some(127.0.0.1:"), "{body}");

    // An update applies live: the open connection is not drained.
    let before = server.chain_policies()[0].clone();
    cache.accept(&name, server_listener(&name, addr), "2b");
    tokio::time::timeout(STEP, async {
        while Arc::ptr_eq(&before, &server.chain_policies()[0]) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the new policy is stored");
    assert_eq!(get(&mut send).await.0, http::StatusCode::OK);
    assert!(
        !conn.is_finished(),
        "an update must not drain the connection"
    );

    // A rejected update keeps the last good listener (A88): still serving.
    cache.reject::<Listener>(
        &name,
        ModelError::invalid(ResourceType::Listener, &name, "address", "is missing"),
    );
    assert_eq!(get(&mut send).await.0, http::StatusCode::OK);
    assert!(server.serving_state().borrow().is_serving());

    // Removed: not serving; the open connection is drained (GOAWAY, then closed).
    cache.remove::<Listener>(&name);
    let state = wait_state(&server, false).await;
    assert!(matches!(state, ServingState::NotServing(r) if r.contains("does not exist")));
    tokio::time::timeout(STEP, conn)
        .await
        .expect("connection drained in time")
        .unwrap()
        .unwrap();
    assert!(closed_at_once(addr).await);

    // Back: serving again.
    cache.accept(&name, server_listener(&name, addr), "3");
    wait_state(&server, true).await;
    let (mut send, _conn) = h2(addr).await;
    assert_eq!(get(&mut send).await.0, http::StatusCode::OK);
}

#[tokio::test]
async fn takes_the_bootstrap_template() {
    let bootstrap = Bootstrap::from_json(
        r#"{"xds_servers": [{"server_uri": "127.0.0.1:1", "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]}], "node": {"id": "n"},
            "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"}"#,
    )
    .unwrap();
    let ok = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let server = XdsServer::builder(Mesh::from_cache(ResourceCache::new()))
        .bootstrap(&bootstrap)
        .bind("127.0.0.1:0".parse().unwrap(), ok)
        .await
        .unwrap();
    assert_eq!(
        server.listener_name(),
        format!("xds.istio.io/grpc/lds/inbound/{}", server.local_addr())
    );
    let err = server.serving(Duration::from_millis(50)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("waiting for listener `xds.istio.io/grpc/lds/inbound/"),
        "{err}"
    );
}

#[test]
fn address_matching_follows_a36() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(address_matches(a("127.0.0.1:80"), a("127.0.0.1:80")));
    assert!(!address_matches(a("127.0.0.2:80"), a("127.0.0.1:80")));
    assert!(!address_matches(a("127.0.0.1:81"), a("127.0.0.1:80")));
    assert!(address_matches(a("10.1.2.3:80"), a("0.0.0.0:80")));
    assert!(address_matches(a("[fd00::1]:80"), a("[::]:80")));
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_drain_timeout() {
    let cache = ResourceCache::new();
    let stuck = tower::service_fn(|_req: Request<Incoming>| async {
        std::future::pending::<Result<Response<String>, Infallible>>().await
    });
    let server = XdsServer::builder(Mesh::from_cache(cache.clone()))
        .drain_timeout(Duration::from_millis(200))
        .bind("127.0.0.1:0".parse().unwrap(), stuck)
        .await
        .unwrap();
    let (addr, name) = (server.local_addr(), server.listener_name().to_owned());
    cache.accept(&name, server_listener(&name, addr), "1");
    wait_state(&server, true).await;
    let (mut send, conn) = h2(addr).await;
    let req = Request::get("http://test/x").body(String::new()).unwrap();
    let call = tokio::spawn(async move { send.send_request(req).await });
    // The call is in the handler (which never answers) before shutdown starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(STEP, server.shutdown())
        .await
        .expect("shutdown bounded");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited for the call"
    );
    let outcome = tokio::time::timeout(STEP, call)
        .await
        .expect("call ended")
        .unwrap();
    assert!(outcome.is_err(), "cut off, not answered: {outcome:?}");
    tokio::time::timeout(STEP, conn)
        .await
        .expect("connection closed")
        .unwrap()
        .ok();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port closed"
    );
}

#[test]
fn listener_names_follow_the_template() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        listener_name(DEFAULT_SERVER_LISTENER_TEMPLATE, a("10.0.0.7:50051")),
        "grpc/server?xds.resource.listening_address=10.0.0.7:50051"
    );
    assert_eq!(
        listener_name("xds.istio.io/grpc/lds/inbound/%s", a("[fd00::7]:50051")),
        "xds.istio.io/grpc/lds/inbound/[fd00::7]:50051"
    );
    // xdstp names are URIs: brackets are percent-encoded, `:` is not (A47, as grpc-go).
    assert_eq!(
        listener_name(
            "xdstp://authority/envoy.config.listener.v3.Listener/grpc/server/%s",
            a("[fd00::7]:50051")
        ),
        "xdstp://authority/envoy.config.listener.v3.Listener/grpc/server/%5Bfd00::7%5D:50051"
    );
    assert_eq!(listener_name("fixed-name", a("10.0.0.7:1")), "fixed-name");
}
