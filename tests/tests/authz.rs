//! AuthorizationPolicy end to end over real sockets: Istio YAML → the control plane's translation
//! (inbound listener with DENY + ALLOW RBAC filters) → mesh-core's `ServerListener` and compiled
//! `AuthzChain` → `AuthzLayer` in front of a real hyper server (HTTP handler + tonic greeter)
//! behind `MeshTlsAcceptor` (PERMISSIVE: mTLS with SVIDs from the control plane's CA, and
//! plaintext). Clients: hyper over `MeshTlsConnector`, plaintext hyper, and a tonic client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use examples::greeter::{GreeterClient, GreeterServer, GreeterService, HelloRequest};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ca::Ca;
use mesh_core::authz::{AuthzChain, InboundPolicy};
use mesh_core::model::ServerListener;
use mesh_tower::authz::{AuthzLayer, ConnectionInfo, WithConnectionInfo};
use mesh_tower::tls::{
    MeshTlsAcceptor, MeshTlsConnector, PeerAuthMode, PeerIdentity, WithPeerIdentity,
    WorkloadIdentity,
};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

const TD: &str = "cluster.local";
/// Bound on every network step.
const STEP: Duration = Duration::from_secs(10);

/// The workload (a WorkloadEntry at the server's port) and its policies.
fn policies_yaml(port: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: greeter, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{grpc: {port}}}, labels: {{app: greeter}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: default}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin/*"]}}}}]
  - when: [{{key: "request.headers[x-deny]", values: ["yes"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-frontend, namespace: default}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/default/sa/frontend"]}}}}]
    to: [{{operation: {{ports: ["{port}"]}}}}]
"#
    )
}

/// The compiled inbound policy for `addr`, the way a server fetching its listener would get it.
fn inbound_chain(yaml: &str, addr: SocketAddr) -> Result<AuthzChain> {
    let (config, warnings) = mesh_control_plane::load_str("authz.yaml", yaml)?;
    anyhow::ensure!(warnings.is_empty(), "warnings: {warnings:?}");
    let xds = mesh_control_plane::translate(&config);
    let name = format!("grpc/server?xds.resource.listening_address={addr}");
    let proto = xds.listener(&name).context("no inbound listener")?;
    let listener = ServerListener::try_from(proto)?;
    anyhow::ensure!(
        listener.address == addr,
        "listener address {}",
        listener.address
    );
    Ok(AuthzChain::for_server_listener(&listener))
}

struct Server {
    addr: SocketAddr,
    layer: AuthzLayer,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// PERMISSIVE server: `/helloworld.*` to the tonic greeter, everything else answered
/// `hello <peer>`; both behind the AuthzLayer.
async fn start(ca: &Ca) -> Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let layer = AuthzLayer::new(inbound_chain(&policies_yaml(addr.port()), addr)?);
    serve(ca, listener, layer)
}

fn serve(ca: &Ca, listener: TcpListener, layer: AuthzLayer) -> Result<Server> {
    let addr = listener.local_addr()?;
    let acceptor = MeshTlsAcceptor::new(
        tests::workload_identity(ca, "greeter")?,
        PeerAuthMode::Permissive,
    );
    let greeter =
        GreeterServer::new(GreeterService::new("v1").map_err(|s| anyhow::anyhow!("{s}"))?);
    let app = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let greeter = greeter.clone();
        async move {
            if req.uri().path().starts_with("/helloworld.") {
                return greeter.oneshot(req).await;
            }
            let who = req
                .extensions()
                .get::<PeerIdentity>()
                .map(|p| p.spiffe_id().to_owned())
                .unwrap_or_else(|| "plaintext".into());
            Ok::<_, Infallible>(Response::new(tonic::body::Body::new(Full::new(
                Bytes::from(format!("hello {who}")),
            ))))
        }
    });
    let svc = layer.layer(app);
    let task = tokio::spawn(async move {
        while let Ok((tcp, remote)) = listener.accept().await {
            let (acceptor, svc) = (acceptor.clone(), svc.clone());
            tokio::spawn(async move {
                let Ok(local) = tcp.local_addr() else { return };
                let Ok((stream, peer)) = acceptor.accept(tcp).await else {
                    return;
                };
                let tower_svc = hyper::service::service_fn(move |req| svc.clone().oneshot(req));
                let hyper_svc = WithPeerIdentity::new(
                    WithConnectionInfo::new(tower_svc, ConnectionInfo { local, remote }),
                    peer,
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_svc)
                    .await;
            });
        }
    });
    Ok(Server { addr, layer, task })
}

/// GET: status, `x-mesh-error`, body.
async fn get<C>(client: &Client<C, Empty<Bytes>>, uri: &str) -> Result<(u16, String, String)>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(STEP, client.get(uri.parse()?))
        .await
        .context("timed out")??;
    let status = resp.status().as_u16();
    let mesh = resp
        .headers()
        .get("x-mesh-error")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, mesh, String::from_utf8_lossy(&body).into_owned()))
}

fn tls_client(id: Arc<WorkloadIdentity>) -> Client<MeshTlsConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(MeshTlsConnector::new(
        id,
        vec!["spiffe://cluster.local/ns/default/sa/greeter".into()],
    ))
}

const DENY_ADMIN: &str = "ns[default]-policy[deny-admin]-rule[0]";

#[tokio::test]
async fn http_allowed_principal_denied_path_denied_principal_and_plaintext() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let server = start(&ca).await?;
    let base = format!("https://{}", server.addr);

    let frontend = tls_client(tests::workload_identity(&ca, "frontend")?);
    let (status, _, body) = get(&frontend, &format!("{base}/hello")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hello spiffe://cluster.local/ns/default/sa/frontend");

    // A DENY policy on the path wins over the matching ALLOW.
    let (status, mesh, body) = get(&frontend, &format!("{base}/admin/users")).await?;
    assert_eq!(status, 403);
    assert_eq!(
        mesh,
        format!("kind=permission_denied; filter=envoy.filters.http.rbac.DENY; policy={DENY_ADMIN}")
    );
    assert!(body.contains(DENY_ADMIN), "{body}");

    // Another identity of the same trust domain: no ALLOW policy matches.
    let intruder = tls_client(tests::workload_identity(&ca, "intruder")?);
    let (status, mesh, _) = get(&intruder, &format!("{base}/hello")).await?;
    assert_eq!(status, 403);
    assert_eq!(
        mesh,
        "kind=permission_denied; filter=envoy.filters.http.rbac"
    );

    // Plaintext on the PERMISSIVE port has no principal: denied by the ALLOW policy.
    let plain: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (status, mesh, _) = get(&plain, &format!("http://{}/hello", server.addr)).await?;
    assert_eq!(status, 403);
    assert_eq!(
        mesh,
        "kind=permission_denied; filter=envoy.filters.http.rbac"
    );

    // The policy swaps at run time: with no policy, plaintext is served.
    server.layer.handle().store(AuthzChain::default());
    let (status, _, body) = get(&plain, &format!("http://{}/hello", server.addr)).await?;
    assert_eq!((status, body.as_str()), (200, "hello plaintext"));
    Ok(())
}

#[tokio::test]
async fn grpc_denial_is_permission_denied_naming_the_policy() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let server = start(&ca).await?;
    let channel = tokio::time::timeout(
        STEP,
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))?
            .connect_with_connector(MeshTlsConnector::new(
                tests::workload_identity(&ca, "frontend")?,
                vec!["spiffe://cluster.local/ns/default/sa/greeter".into()],
            )),
    )
    .await
    .context("connect timed out")??;
    let mut client = GreeterClient::new(channel);
    let hello = |deny: bool| {
        let mut req = tonic::Request::new(HelloRequest { name: "t".into() });
        if deny {
            req.metadata_mut().insert("x-deny", "yes".parse().unwrap());
        }
        req
    };
    let reply = tokio::time::timeout(STEP, client.say_hello(hello(false))).await??;
    assert_eq!(reply.into_inner().message, "hello t from v1");
    let status = tokio::time::timeout(STEP, client.say_hello(hello(true)))
        .await?
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("ns[default]-policy[deny-admin]-rule[1]"),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn inbound_policy_over_ads_follows_config_updates() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dir = tests::temp_dir("authz-ads");
    tests::write(&dir, "policies.yaml", &policies_yaml(addr.port()));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "greeter-server")?;
    // The server subscribes to its own listener under gRPC's default template (A36).
    let policy = InboundPolicy::start(
        &mesh,
        &format!("grpc/server?xds.resource.listening_address={addr}"),
    );
    policy.ready(STEP).await?;
    let layer = AuthzLayer::new(AuthzChain::default());
    layer.handle().follow(policy.receiver());
    let server = serve(&ca, listener, layer)?;
    let frontend = tls_client(tests::workload_identity(&ca, "frontend")?);
    let admin = format!("https://{}/admin/x", server.addr);
    let (status, mesh_error, _) = get(&frontend, &admin).await?;
    assert_eq!(status, 403);
    assert!(
        mesh_error.ends_with(&format!("policy={DENY_ADMIN}")),
        "{mesh_error}"
    );

    // Drop the DENY policy: the control plane pushes the new listener, the layer follows.
    let without_deny = policies_yaml(addr.port()).replace("/admin/*", "/never/*");
    cp.load_yaml("policies.yaml", &without_deny)?;
    tests::eventually(STEP, || async {
        matches!(get(&frontend, &admin).await, Ok((200, _, _)))
    })
    .await?;
    drop(server);
    cp.shutdown().await;
    Ok(())
}

/// `source.serviceAccounts` (a bare name is in the policy's namespace) and the
/// `source.serviceAccount` condition, over real mTLS: the named accounts are served, another is
/// refused, and the condition in a DENY rule refuses one account on one path, naming the rule.
#[tokio::test]
async fn service_accounts_allow_and_deny_over_mtls() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let yaml = policies_yaml(addr.port())
        .replace(
            r#"principals: ["cluster.local/ns/default/sa/frontend"]"#,
            r#"serviceAccounts: ["frontend", "default/reporter"]"#,
        )
        .replace(
            r#"- when: [{key: "request.headers[x-deny]", values: ["yes"]}]"#,
            r#"- when: [{key: "source.serviceAccount", values: ["default/reporter"]}]
    to: [{operation: {paths: ["/write"]}}]"#,
        );
    let server = serve(&ca, listener, AuthzLayer::new(inbound_chain(&yaml, addr)?))?;
    let base = format!("https://{}", server.addr);
    for (sa, path, want) in [
        ("frontend", "/write", 200),
        ("reporter", "/hello", 200),
        ("reporter", "/write", 403),
        ("intruder", "/hello", 403),
    ] {
        let client = tls_client(tests::workload_identity(&ca, sa)?);
        let (status, mesh, body) = get(&client, &format!("{base}{path}")).await?;
        assert_eq!(status, want, "{sa} {path}: {mesh} {body}");
        if (sa, want) == ("reporter", 403) {
            assert!(
                mesh.ends_with("policy=ns[default]-policy[deny-admin]-rule[1]"),
                "{mesh}"
            );
        }
    }
    Ok(())
}
