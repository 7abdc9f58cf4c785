//! Client-side mTLS configured only from Istio YAML: DestinationRule `tls` → the control
//! plane's CDS `UpstreamTlsContext` (istiod's proxyless form) → a `MeshStackLayer` client that
//! connects over TLS with the workload identity it was given as provider instance `default`
//! (gRFC A29), to real TLS servers (`MeshTlsAcceptor`) on loopback.

use std::convert::Infallible;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ca::Ca;
use mesh_tower::error_response::{ErrorHeader, ErrorResponseLayer, HEADER};
use mesh_tower::retry::ReplayBody;
use mesh_tower::tls::{
    CertificateProviders, MeshTlsAcceptor, PeerAuthMode, PeerIdentity, WithPeerIdentity,
    WorkloadIdentity,
};
use mesh_tower::MeshStackLayer;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

/// Bound on every step that waits for the network or the control plane.
const STEP: Duration = Duration::from_secs(10);

/// A server behind a [`MeshTlsAcceptor`] answering with the client identity it verified
/// (`plaintext` when there was none).
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(identity: Arc<WorkloadIdentity>, mode: PeerAuthMode) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = MeshTlsAcceptor::new(identity, mode);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    let Ok((stream, peer)) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc =
                        hyper::service::service_fn(|req: Request<hyper::body::Incoming>| {
                            let body = req
                                .extensions()
                                .get::<PeerIdentity>()
                                .map_or("plaintext".to_owned(), |p| p.spiffe_id().to_owned());
                            async move {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), WithPeerIdentity::new(svc, peer))
                        .await;
                });
            }
        });
        Ok(Server { addr, task })
    }
}

/// A ServiceEntry `<name>.default:80` with one WorkloadEntry (service account `greeter`) at
/// `addr`, and a DestinationRule with `tls: { mode: <mode> }`.
fn service(name: &str, addr: SocketAddr, mode: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: {name}, namespace: default }}
spec:
  hosts: [{name}.default]
  ports: [{{ number: 80, name: http, protocol: HTTP }}]
  workloadSelector: {{ labels: {{ app: {name} }} }}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{ name: {name}, namespace: default }}
spec:
  address: {ip}
  ports: {{ http: {port} }}
  labels: {{ app: {name} }}
  serviceAccount: greeter
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: {name}, namespace: default }}
spec:
  host: {name}.default
  trafficPolicy: {{ tls: {{ mode: {mode} }} }}
---
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

type Client = tower::util::BoxCloneService<
    Request<Empty<Bytes>>,
    Response<
        http_body_util::Either<mesh_tower::timeout::IdleBody<hyper::body::Incoming>, Full<Bytes>>,
    >,
    mesh_tower::MeshError,
>;

/// GET `http://<host>/`: the status, the body and the parsed `x-mesh-error`.
async fn get(client: &Client, host: &str) -> Result<(u16, String, Option<ErrorHeader>)> {
    let req = Request::get(format!("http://{host}/")).body(Empty::new())?;
    let resp = tokio::time::timeout(STEP, client.clone().oneshot(req))
        .await
        .context("timed out")??;
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorHeader::parse);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned(), header))
}

#[tokio::test]
async fn destination_rule_tls_drives_the_clients_connections() -> Result<()> {
    let ca = Ca::generate("cluster.local")?;
    let greeter = Server::start(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Strict,
    )
    .await?;
    // Signed by the mesh CA, but not the service account the destination runs as.
    let impostor = Server::start(
        tests::workload_identity(&ca, "intruder")?,
        PeerAuthMode::Strict,
    )
    .await?;
    // The right name, from a CA the client does not trust.
    let rogue_ca = Ca::generate("cluster.local")?;
    let rogue = Server::start(
        tests::workload_identity(&rogue_ca, "greeter")?,
        PeerAuthMode::Strict,
    )
    .await?;
    let plain = Server::start(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Disable,
    )
    .await?;
    // Accepts TLS and plaintext, so it shows which one the client used.
    let switch = Server::start(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Permissive,
    )
    .await?;

    let config = |switch_mode: &str| {
        [
            service("greeter", greeter.addr, "ISTIO_MUTUAL"),
            service("impostor", impostor.addr, "ISTIO_MUTUAL"),
            service("rogue", rogue.addr, "ISTIO_MUTUAL"),
            service("plain", plain.addr, "DISABLE"),
            service("switch", switch.addr, switch_mode),
        ]
        .concat()
    };
    let dir = tests::temp_dir("upstream-tls");
    tests::write(&dir, "mesh.yaml", &config("DISABLE"));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "frontend")?;

    let me = tests::workload_identity(&ca, "frontend")?;
    let stack = MeshStackLayer::new(mesh.clone())
        .ready_timeout(STEP)
        .tls(CertificateProviders::default_identity(me.clone()));
    let client: Client = tower::util::BoxCloneService::new(
        ErrorResponseLayer::new()
            .layer(stack.layer(mesh_tower::client::http1::<ReplayBody<Empty<Bytes>>>())),
    );

    // ISTIO_MUTUAL: the server sees who we are; we checked who it is.
    let (status, body, err) = get(&client, "greeter.default:80").await?;
    assert_eq!((status, err), (200, None));
    assert_eq!(body, me.spiffe_id());

    // The server is not the destination's service account: a `tls` error naming the SAN.
    let (status, body, err) = get(&client, "impostor.default:80").await?;
    let err = err.context("x-mesh-error")?;
    assert_eq!(status, 503);
    assert_eq!(
        (err.kind.as_str(), err.reason.as_deref()),
        ("tls", Some("san_mismatch"))
    );
    assert_eq!(
        err.cluster.as_deref(),
        Some("outbound|80||impostor.default")
    );
    assert!(
        body.contains("spiffe://cluster.local/ns/default/sa/intruder"),
        "{body}"
    );

    // An unknown CA.
    let (_, _, err) = get(&client, "rogue.default:80").await?;
    let err = err.context("x-mesh-error")?;
    assert_eq!(
        (err.kind.as_str(), err.reason.as_deref()),
        ("tls", Some("unknown_ca"))
    );

    // DISABLE: plaintext to a plaintext server.
    assert_eq!(get(&client, "plain.default:80").await?.1, "plaintext");

    // Live: DISABLE → ISTIO_MUTUAL over ADS, and the next connections are TLS.
    assert_eq!(get(&client, "switch.default:80").await?.1, "plaintext");
    cp.load_yaml("mesh.yaml", &config("ISTIO_MUTUAL"))?;
    let want = me.spiffe_id();
    tests::eventually(STEP, || async {
        matches!(get(&client, "switch.default:80").await, Ok((200, ref b, _)) if *b == want)
    })
    .await?;

    // A client given no identity: the cluster's requests fail naming cluster and instance.
    let bare: Client = tower::util::BoxCloneService::new(
        ErrorResponseLayer::new().layer(
            MeshStackLayer::new(mesh.clone())
                .ready_timeout(STEP)
                .layer(mesh_tower::client::http1::<ReplayBody<Empty<Bytes>>>()),
        ),
    );
    let (status, body, err) = get(&bare, "greeter.default:80").await?;
    let err = err.context("x-mesh-error")?;
    assert_eq!(status, 503);
    assert_eq!(
        (err.kind.as_str(), err.reason.as_deref()),
        ("tls", Some("missing_provider"))
    );
    assert!(
        body.contains("cluster outbound|80||greeter.default") && body.contains("`default`"),
        "{body}"
    );

    cp.shutdown().await;
    Ok(())
}

/// The h2 client speaks TLS with ALPN `h2` to the same kind of server, and hands the server's
/// verified identity to the caller in the response's extensions.
#[tokio::test]
async fn the_http2_client_connects_over_tls_too() -> Result<()> {
    let ca = Ca::generate("cluster.local")?;
    let greeter = Server::start(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Strict,
    )
    .await?;
    let dir = tests::temp_dir("upstream-tls-h2");
    tests::write(
        &dir,
        "mesh.yaml",
        &service("greeter", greeter.addr, "ISTIO_MUTUAL"),
    );
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "frontend")?;
    let me = tests::workload_identity(&ca, "frontend")?;
    let mut client = MeshStackLayer::new(mesh)
        .ready_timeout(STEP)
        .tls(CertificateProviders::default_identity(me.clone()))
        .layer(mesh_tower::client::http2::<ReplayBody<Empty<Bytes>>>());
    for _ in 0..3 {
        let req = Request::get("http://greeter.default:80/").body(Empty::new())?;
        let resp = tokio::time::timeout(STEP, client.ready().await?.call(req))
            .await
            .context("timed out")??;
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let server = resp
            .extensions()
            .get::<PeerIdentity>()
            .map(|p| p.spiffe_id());
        assert_eq!(
            server,
            Some("spiffe://cluster.local/ns/default/sa/greeter"),
            "the response carries the server's verified identity"
        );
        let body = resp.into_body().collect().await?.to_bytes();
        assert_eq!(body, me.spiffe_id().as_bytes());
    }
    cp.shutdown().await;
    Ok(())
}

/// A tonic greeter behind a STRICT [`MeshTlsAcceptor`], served over HTTP/2.
async fn tls_greeter(
    identity: Arc<WorkloadIdentity>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use examples::greeter::{GreeterServer, GreeterService};
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = MeshTlsAcceptor::new(identity, PeerAuthMode::Strict);
    let routes = tonic::service::Routes::new(GreeterServer::new(
        GreeterService::new("tls").map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, routes) = (acceptor.clone(), routes.clone());
            conns.spawn(async move {
                let Ok((stream, _)) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    routes.clone().oneshot(req)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// `MeshChannel::with_tls`: a tonic client calls a TLS greeter over ISTIO_MUTUAL; a channel
/// given no identity fails the call with UNAVAILABLE naming the missing instance.
#[tokio::test]
async fn a_mesh_channel_calls_over_istio_mutual() -> Result<()> {
    use examples::greeter::{GreeterClient, HelloRequest};
    let ca = Ca::generate("cluster.local")?;
    let (addr, server) = tls_greeter(tests::workload_identity(&ca, "greeter")?).await?;
    let dir = tests::temp_dir("upstream-tls-grpc");
    tests::write(&dir, "mesh.yaml", &service("greeter", addr, "ISTIO_MUTUAL"));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "frontend")?;
    let providers =
        CertificateProviders::default_identity(tests::workload_identity(&ca, "frontend")?);
    let channel =
        mesh_grpc::MeshChannel::new(&mesh, "xds:///greeter.default:80")?.with_tls(providers);
    channel.wait_ready(STEP).await?;
    let reply = tokio::time::timeout(
        STEP,
        GreeterClient::new(channel).say_hello(HelloRequest {
            name: "mesh".into(),
        }),
    )
    .await
    .context("timed out")??;
    assert_eq!(reply.into_inner().message, "hello mesh from tls");

    let bare = mesh_grpc::MeshChannel::new(&mesh, "xds:///greeter.default:80")?;
    let status = tokio::time::timeout(
        STEP,
        GreeterClient::new(bare).say_hello(HelloRequest {
            name: "mesh".into(),
        }),
    )
    .await
    .context("timed out")?
    .expect_err("no identity, no call");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let err = status
        .source()
        .and_then(|s| s.downcast_ref::<mesh_tower::MeshError>())
        .context("the mesh error")?;
    assert_eq!(
        err.kind(),
        mesh_tower::MeshErrorKind::Tls(mesh_tower::TlsReason::MissingProvider)
    );
    server.abort();
    cp.shutdown().await;
    Ok(())
}
