//! xDS-enabled server (gRFC A36) end to end: the real control plane translates Istio
//! AuthorizationPolicies selecting a WorkloadEntry at the server's address into its inbound
//! Listener; `mesh_grpc::XdsServer` serves the tonic greeter over mTLS (PERMISSIVE) only once
//! that Listener arrived, enforces its RBAC, follows policy changes live on open connections,
//! stops serving when the Listener is removed, and shuts down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use examples::greeter::{GreeterClient, GreeterServer, GreeterService, HelloRequest, DELAY_HEADER};
use mesh_control_plane::ca::Ca;
use mesh_grpc::{ServingState, XdsServer};
use mesh_tower::tls::{MeshTlsConnector, PeerAuthMode};
use tonic::transport::{Channel, Endpoint};

const TD: &str = "cluster.local";
/// Bound on every network step.
const STEP: Duration = Duration::from_secs(10);
const DENY_HEADER_POLICY: &str = "ns[default]-policy[deny-admin]-rule[0]";

fn workload_yaml(port: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: greeter, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{grpc: {port}}}, labels: {{app: greeter}}}}
"#
    )
}

/// The workload plus a DENY on `x-deny: <deny_value>` and an ALLOW for `frontend`.
fn policies_yaml(port: u16, deny_value: &str) -> String {
    workload_yaml(port)
        + &format!(
            r#"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: default}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  action: DENY
  rules:
  - when: [{{key: "request.headers[x-deny]", values: ["{deny_value}"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-frontend, namespace: default}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/default/sa/frontend"]}}}}]
"#
        )
}

fn greeter() -> Result<GreeterServer<GreeterService>> {
    Ok(GreeterServer::new(
        GreeterService::new("v1").map_err(|s| anyhow::anyhow!("{s}"))?,
    ))
}

/// A channel to `addr` over mTLS as `sa`, connecting lazily (so a refused connection shows up
/// as the call's status).
fn client(ca: &Ca, sa: &str, addr: SocketAddr) -> Result<GreeterClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(STEP)
        .connect_with_connector_lazy(MeshTlsConnector::new(
            tests::workload_identity(ca, sa)?,
            vec!["spiffe://cluster.local/ns/default/sa/greeter".into()],
        ));
    Ok(GreeterClient::new(channel))
}

fn hello(deny: Option<&str>, delay_ms: Option<u64>) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(HelloRequest { name: "t".into() });
    if let Some(v) = deny {
        req.metadata_mut().insert("x-deny", v.parse().unwrap());
    }
    if let Some(ms) = delay_ms {
        req.metadata_mut()
            .insert(DELAY_HEADER, ms.to_string().parse().unwrap());
    }
    req
}

async fn call(
    client: &mut GreeterClient<Channel>,
    req: tonic::Request<HelloRequest>,
) -> Result<Result<String, tonic::Status>> {
    Ok(tokio::time::timeout(STEP, client.say_hello(req))
        .await
        .context("call timed out")?
        .map(|r| r.into_inner().message))
}

#[tokio::test]
async fn serves_only_with_its_listener_and_enforces_its_policy_live() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("xds-server");
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "greeter-server")?;
    let server = XdsServer::builder(mesh)
        .tls(
            tests::workload_identity(&ca, "greeter")?,
            PeerAuthMode::Permissive,
        )
        .drain_timeout(STEP)
        .bind("127.0.0.1:0".parse()?, greeter()?)
        .await?;
    let addr = server.local_addr();
    assert_eq!(
        server.listener_name(),
        format!("grpc/server?xds.resource.listening_address={addr}")
    );

    // Nothing at the server's address yet: no inbound listener, so the server does not serve
    // (A36) — the connection is closed, the call is UNAVAILABLE.
    let mut frontend = client(&ca, "frontend", addr)?;
    let status = call(&mut frontend, hello(None, None))
        .await?
        .expect_err("not serving");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(!server.serving_state().borrow().is_serving());
    let early = server
        .serving(Duration::from_millis(200))
        .await
        .expect_err("not serving yet");
    assert!(
        early.to_string().contains(server.listener_name()),
        "{early}"
    );

    // The policies arrive: the server serves them.
    cp.load_yaml("policies.yaml", &policies_yaml(addr.port(), "yes"))?;
    server.serving(STEP).await?;
    let mut frontend = client(&ca, "frontend", addr)?;
    assert_eq!(
        call(&mut frontend, hello(None, None)).await??,
        "hello t from v1"
    );
    let status = call(&mut frontend, hello(Some("yes"), None))
        .await?
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(DENY_HEADER_POLICY), "{status:?}");
    // Another identity matches no ALLOW policy.
    let mut intruder = client(&ca, "intruder", addr)?;
    let status = call(&mut intruder, hello(None, None))
        .await?
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // The DENY rule changes: the open connection follows without reconnecting, a call in
    // flight across the change completes.
    let mut slow = frontend.clone();
    let in_flight = tokio::spawn(async move { call(&mut slow, hello(None, Some(300))).await });
    cp.load_yaml("policies.yaml", &policies_yaml(addr.port(), "never"))?;
    tests::eventually(STEP, || {
        let mut c = frontend.clone();
        async move { matches!(call(&mut c, hello(Some("yes"), None)).await, Ok(Ok(_))) }
    })
    .await?;
    assert_eq!(in_flight.await???, "hello t from v1");
    assert!(server.serving_state().borrow().is_serving());

    // The workload moves to another port, and the listener for ours goes away: not serving
    // again.
    cp.load_yaml("policies.yaml", &policies_yaml(1, "yes"))?;
    let mut state = server.serving_state();
    tokio::time::timeout(STEP, state.wait_for(|s| !s.is_serving()))
        .await
        .context("still serving")??;
    let reason = match &*server.serving_state().borrow() {
        ServingState::NotServing(r) => r.to_string(),
        ServingState::Serving => unreachable!(),
    };
    assert!(reason.contains("does not exist"), "{reason}");
    // The open connection was drained: its channel's next connection is closed too.
    tests::eventually(STEP, || {
        let mut c = frontend.clone();
        async move {
            matches!(call(&mut c, hello(None, None)).await,
                Ok(Err(s)) if s.code() == tonic::Code::Unavailable)
        }
    })
    .await?;
    let mut fresh = client(&ca, "frontend", addr)?;
    let status = call(&mut fresh, hello(None, None))
        .await?
        .expect_err("not serving");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn graceful_shutdown_finishes_calls_in_flight_and_closes_the_port() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("xds-server-shutdown");
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "greeter-server")?;
    // istiod's template (what its bootstraps set), served by the control plane too.
    let server = XdsServer::builder(mesh)
        .listener_name_template("xds.istio.io/grpc/lds/inbound/%s")
        .tls(
            tests::workload_identity(&ca, "greeter")?,
            PeerAuthMode::Strict,
        )
        .drain_timeout(STEP)
        // Routes, as tonic's own server builder takes services.
        .bind(
            "127.0.0.1:0".parse()?,
            tonic::service::Routes::new(greeter()?),
        )
        .await?;
    let addr = server.local_addr();
    cp.load_yaml("policies.yaml", &policies_yaml(addr.port(), "yes"))?;
    server.serving(STEP).await?;

    let mut frontend = client(&ca, "frontend", addr)?;
    assert_eq!(
        call(&mut frontend, hello(None, None)).await??,
        "hello t from v1"
    );
    let mut slow = frontend.clone();
    let in_flight = tokio::spawn(async move { call(&mut slow, hello(None, Some(500))).await });
    // Let the call reach the handler before shutting down.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(STEP * 2, server.shutdown())
        .await
        .context("shutdown not bounded")?;
    assert_eq!(in_flight.await???, "hello t from v1");
    let refused = tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")?;
    assert!(refused.is_err(), "port still open after shutdown");
    cp.shutdown().await;
    Ok(())
}

/// A workload no AuthorizationPolicy selects still gets its inbound listener (router only), so
/// its `XdsServer` serves — and, as in Istio without policies, every caller is allowed.
#[tokio::test]
async fn a_workload_without_policies_is_served_and_allows_everyone() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("xds-server-nopolicy");
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let server = XdsServer::builder(tests::mesh(&cp, "plain-server")?)
        .tls(
            tests::workload_identity(&ca, "greeter")?,
            PeerAuthMode::Permissive,
        )
        .drain_timeout(STEP)
        .bind("127.0.0.1:0".parse()?, greeter()?)
        .await?;
    let addr = server.local_addr();
    cp.load_yaml("workload.yaml", &workload_yaml(addr.port()))?;
    server.serving(STEP).await?;
    for sa in ["frontend", "intruder"] {
        let mut c = client(&ca, sa, addr)?;
        assert_eq!(
            call(&mut c, hello(Some("yes"), None)).await??,
            "hello t from v1"
        );
    }
    server.shutdown().await;
    cp.shutdown().await;
    Ok(())
}
