//! Istio PeerAuthentication end to end: the real control plane translates it into the TLS
//! contexts of the server's inbound Listener (gRFC A36 filter chains, A29 certificate provider
//! instances), and `mesh_grpc::XdsServer`, given only its workload identity, follows it over ADS.
//!
//! Attack matrix: STRICT refuses plaintext, a client certificate from an unknown CA and an
//! expired one, and serves a CA-issued identity, which the handler sees as a `PeerIdentity`
//! request extension. PERMISSIVE serves TLS and plaintext on one port; DISABLE serves plaintext.
//! A live PERMISSIVE → STRICT change drains open connections (GOAWAY) and then refuses
//! plaintext. A STRICT Listener on a server without an identity is not served, with the reason.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ca::{Ca, SpiffeId};
use mesh_core::model::InboundTlsMode;
use mesh_grpc::{ServingState, XdsServer};
use mesh_tower::tls::{CertificateRequest, MeshTlsConnector, PeerIdentity, WorkloadIdentity};

const TD: &str = "cluster.local";
/// Bound on every network step.
const STEP: Duration = Duration::from_secs(10);

/// The workload at the server's port and a PeerAuthentication: `scope` is `mesh` (root
/// namespace, no selector), `workload` (selector) or `port` (selector, mode on our port only,
/// the workload itself DISABLE).
fn config(port: u16, scope: &str, mode: &str) -> String {
    let workload = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: greeter, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{grpc: {port}}}, labels: {{app: greeter}}}}
---
"#
    );
    let pa = match scope {
        "mesh" => format!(
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec: {{mtls: {{mode: {mode}}}}}
"#
        ),
        "workload" => format!(
            r#"
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {{name: greeter, namespace: default}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  mtls: {{mode: {mode}}}
"#
        ),
        _ => format!(
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: greeter, namespace: default}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  mtls: {{mode: DISABLE}}
  portLevelMtls:
    {port}: {{mode: {mode}}}
"#
        ),
    };
    workload + &pa
}

/// Answers with the peer identity the handler sees (`plaintext` without one).
fn handler() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|req: Request<Incoming>| async move {
        let who = req
            .extensions()
            .get::<PeerIdentity>()
            .map(|p| p.spiffe_id().to_owned())
            .unwrap_or_else(|| "plaintext".into());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
    })
}

fn identity(ca: &Ca, sa: &str) -> Result<std::sync::Arc<WorkloadIdentity>> {
    tests::workload_identity(ca, sa)
}

fn expired_identity(ca: &Ca, sa: &str) -> Result<std::sync::Arc<WorkloadIdentity>> {
    let req = CertificateRequest::generate()?;
    let now = SystemTime::now();
    let svid = ca.sign_csr_with_validity(
        req.csr_pem(),
        &SpiffeId::new(TD, "default", sa)?,
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    )?;
    Ok(req.into_identity(&svid.cert_chain_pem, &svid.trust_bundle_pem)?)
}

type Http<C> = Client<C, Empty<Bytes>>;

fn mtls(id: std::sync::Arc<WorkloadIdentity>) -> Http<MeshTlsConnector> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(MeshTlsConnector::new(id, Vec::new()))
}

fn plain() -> Http<hyper_util::client::legacy::connect::HttpConnector> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// GET `/`: the body, or the error as text.
async fn get<C>(client: &Http<C>, scheme: &str, addr: SocketAddr) -> Result<String, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let uri: http::Uri = format!("{scheme}://{addr}/").parse().unwrap();
    match tokio::time::timeout(STEP, client.get(uri)).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Ok(Ok(resp)) => {
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
        }
    }
}

struct Setup {
    ca: Ca,
    cp: mesh_control_plane::ControlPlaneHandle,
    server: XdsServer,
    addr: SocketAddr,
}

async fn setup(tag: &str, with_identity: bool) -> Result<Setup> {
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir(tag);
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "greeter-server")?;
    let mut builder = XdsServer::builder(mesh).drain_timeout(STEP);
    if with_identity {
        builder = builder.identity(identity(&ca, "greeter")?);
    }
    let server = builder.bind("127.0.0.1:0".parse()?, handler()).await?;
    let addr = server.local_addr();
    Ok(Setup {
        ca,
        cp,
        server,
        addr,
    })
}

/// Waits until the served Listener's chains add up to `mode`.
async fn wait_mode(server: &XdsServer, mode: InboundTlsMode) -> Result<()> {
    tests::eventually(STEP, || async {
        server.served_listener().map(|(_, m)| m) == Some(mode)
    })
    .await
    .with_context(|| format!("mode {mode:?} not applied"))
}

#[tokio::test]
async fn strict_serves_ca_issued_identities_and_refuses_the_attack_matrix() -> Result<()> {
    let s = setup("pa-strict", true).await?;
    s.cp.load_yaml("pa.yaml", &config(s.addr.port(), "mesh", "STRICT"))?;
    s.server.serving(STEP).await?;
    wait_mode(&s.server, InboundTlsMode::Strict).await?;

    // A CA-issued identity is served, and the handler sees who called.
    let body = get(&mtls(identity(&s.ca, "frontend")?), "http", s.addr).await;
    assert_eq!(
        body.as_deref(),
        Ok("spiffe://cluster.local/ns/default/sa/frontend")
    );

    // Plaintext: refused (the connection is closed before HTTP/2 starts).
    let e = get(&plain(), "http", s.addr).await.expect_err("plaintext");
    assert!(!e.contains("timed out"), "{e}");
    // A certificate from another CA of the same trust domain: refused.
    let rogue = Ca::generate(TD)?;
    get(&mtls(identity(&rogue, "frontend")?), "http", s.addr)
        .await
        .expect_err("unknown CA");
    // An expired certificate from our CA: refused.
    get(&mtls(expired_identity(&s.ca, "frontend")?), "http", s.addr)
        .await
        .expect_err("expired");
    // The server is still serving the legitimate client afterwards.
    assert!(get(&mtls(identity(&s.ca, "frontend")?), "http", s.addr)
        .await
        .is_ok());
    s.cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn permissive_serves_both_then_strict_drains_and_refuses_plaintext() -> Result<()> {
    let s = setup("pa-permissive", true).await?;
    s.cp.load_yaml("pa.yaml", &config(s.addr.port(), "workload", "PERMISSIVE"))?;
    s.server.serving(STEP).await?;
    wait_mode(&s.server, InboundTlsMode::Permissive).await?;

    // One port, both: mTLS with the identity, plaintext without.
    let tls = mtls(identity(&s.ca, "frontend")?);
    assert_eq!(
        get(&tls, "http", s.addr).await.as_deref(),
        Ok("spiffe://cluster.local/ns/default/sa/frontend")
    );
    assert_eq!(
        get(&plain(), "http", s.addr).await.as_deref(),
        Ok("plaintext")
    );

    // An open plaintext HTTP/2 connection, idle between calls.
    let tcp = tokio::net::TcpStream::connect(s.addr).await?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(conn);
    let req = || Request::get("http://greeter/").body(Empty::<Bytes>::new());
    let resp = tokio::time::timeout(STEP, send.send_request(req()?)).await??;
    assert_eq!(resp.status(), 200);

    // An RBAC-only change (a DENY policy on a header) swaps live: the open connection stays
    // up and its next request is judged by the new policy.
    let deny = r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-x, namespace: default}
spec:
  selector: {matchLabels: {app: greeter}}
  action: DENY
  rules:
  - when: [{key: "request.headers[x-deny]", values: ["yes"]}]
"#;
    s.cp.load_yaml(
        "pa.yaml",
        &(config(s.addr.port(), "workload", "PERMISSIVE") + deny),
    )?;
    let denied = || {
        Request::get("http://greeter/")
            .header("x-deny", "yes")
            .body(Empty::<Bytes>::new())
    };
    let mut status = 0;
    for _ in 0..200 {
        let resp = tokio::time::timeout(STEP, send.send_request(denied()?)).await??;
        status = resp.status().as_u16();
        if status == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 403, "the DENY policy reached the open connection");
    assert!(!conn.is_finished(), "an RBAC-only change must not drain");
    let resp = tokio::time::timeout(STEP, send.send_request(req()?)).await??;
    assert_eq!(resp.status(), 200);

    // PERMISSIVE → STRICT over ADS: the chains change, so the open connection drains (GOAWAY,
    // then it closes) and plaintext is refused from then on; mTLS keeps working.
    s.cp.load_yaml("pa.yaml", &config(s.addr.port(), "workload", "STRICT"))?;
    wait_mode(&s.server, InboundTlsMode::Strict).await?;
    tokio::time::timeout(STEP, conn)
        .await
        .context("the plaintext connection was not drained")??
        .context("connection error")?;
    get(&plain(), "http", s.addr)
        .await
        .expect_err("plaintext after STRICT");
    assert_eq!(
        get(&mtls(identity(&s.ca, "frontend")?), "http", s.addr)
            .await
            .as_deref(),
        Ok("spiffe://cluster.local/ns/default/sa/frontend")
    );
    s.cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn disable_on_our_port_serves_plaintext_only() -> Result<()> {
    let s = setup("pa-disable", true).await?;
    // Workload STRICT, our port DISABLE: the port-level mode wins.
    s.cp.load_yaml(
        "pa.yaml",
        &config(s.addr.port(), "port", "DISABLE").replace(
            "mtls: {mode: DISABLE}\n  portLevelMtls",
            "mtls: {mode: STRICT}\n  portLevelMtls",
        ),
    )?;
    s.server.serving(STEP).await?;
    wait_mode(&s.server, InboundTlsMode::Disable).await?;
    assert_eq!(
        get(&plain(), "http", s.addr).await.as_deref(),
        Ok("plaintext")
    );
    // A TLS client gets no TLS server here.
    get(&mtls(identity(&s.ca, "frontend")?), "http", s.addr)
        .await
        .expect_err("no TLS on a DISABLE port");
    s.cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn strict_without_an_identity_is_not_served_and_says_why() -> Result<()> {
    let s = setup("pa-no-identity", false).await?;
    s.cp.load_yaml("pa.yaml", &config(s.addr.port(), "mesh", "STRICT"))?;
    let mut state = s.server.serving_state();
    let reason = tokio::time::timeout(STEP, async {
        loop {
            if let ServingState::NotServing(r) = &*state.borrow_and_update() {
                if r.contains("requires TLS") {
                    return r.to_string();
                }
            }
            if state.changed().await.is_err() {
                return "server gone".to_owned();
            }
        }
    })
    .await
    .context("no not-serving reason about TLS")?;
    assert!(reason.contains("no identity"), "{reason}");
    get(&plain(), "http", s.addr)
        .await
        .expect_err("not serving");
    s.cp.shutdown().await;
    Ok(())
}

/// A plain hyper server (no XdsServer): its acceptor follows the mode of its inbound Listener
/// through `InboundPolicy::tls_mode`, so PeerAuthentication from the control plane applies.
#[tokio::test]
async fn a_hyper_server_follows_peer_authentication_through_its_inbound_policy() -> Result<()> {
    use mesh_core::authz::InboundPolicy;
    use mesh_tower::tls::{MeshTlsAcceptor, PeerAuthMode, WithPeerIdentity};

    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("pa-hyper");
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "hyper-server")?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let policy = InboundPolicy::start(&mesh, &format!("xds.istio.io/grpc/lds/inbound/{addr}"));
    // Starts DISABLE in code; the control plane decides from here on.
    let acceptor = MeshTlsAcceptor::new(identity(&ca, "greeter")?, PeerAuthMode::Disable);
    let _follow = acceptor.follow_mode(policy.tls_mode());
    let accept = acceptor.clone();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = tcp.accept().await {
            let acceptor = accept.clone();
            tokio::spawn(async move {
                let Ok((stream, peer)) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: Request<Incoming>| {
                    let who = req
                        .extensions()
                        .get::<PeerIdentity>()
                        .map(|p| p.spiffe_id().to_owned())
                        .unwrap_or_else(|| "plaintext".into());
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), WithPeerIdentity::new(svc, peer))
                    .await;
            });
        }
    });

    cp.load_yaml("pa.yaml", &config(addr.port(), "mesh", "STRICT"))?;
    policy.ready(STEP).await?;
    tests::eventually(STEP, || async { acceptor.mode() == PeerAuthMode::Strict }).await?;
    get(&plain(), "http", addr)
        .await
        .expect_err("plaintext on STRICT");
    assert_eq!(
        get(&mtls(identity(&ca, "frontend")?), "http", addr)
            .await
            .as_deref(),
        Ok("spiffe://cluster.local/ns/default/sa/frontend")
    );

    cp.load_yaml("pa.yaml", &config(addr.port(), "mesh", "PERMISSIVE"))?;
    tests::eventually(STEP, || async {
        acceptor.mode() == PeerAuthMode::Permissive
    })
    .await?;
    assert_eq!(
        get(&plain(), "http", addr).await.as_deref(),
        Ok("plaintext")
    );
    server.abort();
    cp.shutdown().await;
    Ok(())
}
