//! Interop with gRPC's own xDS *server* (gRFC A36): a Python `grpcio` greeter started with
//! `grpc.server(..., xds=True)` gets its inbound Listener from our control plane, as it would
//! from istiod.
//!
//! The control plane runs in-process on Istio YAML this test writes: a ServiceEntry
//! `pyserver.test:50061` whose WorkloadEntry is the grpcio server's `127.0.0.1:PORT`, and an
//! AuthorizationPolicy DENY on `/helloworld.Greeter/SayGoodbye` selecting it. The grpcio side is
//! `tests/interop/grpcio_xds_server.py` run by the interop venv's Python; its bootstrap's
//! `server_listener_resource_name_template` is istiod's (`xds.istio.io/grpc/lds/inbound/%s`),
//! so it asks for the canonical name our translation emits — or, in the second test, gRPC's
//! own (`grpc/server?xds.resource.listening_address=%s`), served as an alias.
//!
//! Observed, each from the client side: (a) our `MeshChannel` (`xds:///pyserver.test:50061`)
//! is served `SayHello` once the server has its listener, and (c) gets PERMISSION_DENIED for
//! `SayGoodbye` from grpcio's RBAC filter; (b) grpcio's own xDS client sees the same; the denied
//! calls never reach the handler; a policy change reaches the serving grpcio server (the
//! denied method is served after it); (d) every resource the control plane sent the grpcio process
//! (server and client streams) was ACKed — no NACK — and the server's stream holds the inbound
//! listener; when the workload moves away, its listener goes and grpcio stops serving.
//!
//! The third test runs the same server under PeerAuthentication STRICT with the service
//! ISTIO_MUTUAL: grpcio takes its SVID from a `file_watcher` provider and TLS from our Listener
//! and Cluster (gRFC A29); our `MeshChannel::with_tls` and grpcio's own xDS client are served
//! over mTLS, plaintext is refused, nothing is NACKed.
//!
//! Interpreter: `$MESH_INTEROP_PYTHON`, else `.venv-interop/bin/python` at the workspace root
//! (see `grpcio_interop.rs`); without one the test fails, unless `MESH_SKIP_INTEROP=1`.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use examples::greeter::{HelloReply, HelloRequest};
use http::uri::PathAndQuery;
use mesh_control_plane::{
    translate::authz::{GRPC_SERVER_PREFIX, INBOUND_PREFIX},
    ClientStatus, ResourceType,
};
use mesh_grpc::MeshChannel;
use serde_json::Value;
use tests::interop::{self, Script};
use tonic::{
    codegen::{Body, Bytes, StdError},
    Code,
};

/// Bound on the whole run (the script's own watchdog is 100 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on one step: a line from the script, a call, the server starting to serve (the
/// grpcio client waits up to 20 s for it on its side).
const STEP: Duration = Duration::from_secs(30);
const HOST: &str = "pyserver.test";
const SERVICE_PORT: u16 = 50061;
const TARGET: &str = "xds:///pyserver.test:50061";
const DENIED: &str = "/helloworld.Greeter/SayGoodbye";
/// Our own `XdsServer` in the mTLS test.
const RUST_HOST: &str = "rustgreeter.test";

/// The service, the grpcio server as its workload, and the DENY policy on `deny_path`.
fn config_yaml(port: u16, deny_path: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: pyserver, namespace: default }}
spec:
  hosts: [{HOST}]
  ports: [{{ number: {SERVICE_PORT}, name: grpc, protocol: GRPC }}]
  resolution: STATIC
  workloadSelector: {{ labels: {{ app: pyserver }} }}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{ name: pyserver, namespace: default }}
spec: {{ address: 127.0.0.1, ports: {{ grpc: {port} }}, labels: {{ app: pyserver }} }}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{ name: deny-goodbye, namespace: default }}
spec:
  selector: {{ matchLabels: {{ app: pyserver }} }}
  action: DENY
  rules:
  - to: [{{ operation: {{ paths: ["{deny_path}"] }} }}]
"#
    )
}

/// A loopback port free at the time of asking (the grpcio server binds it right after).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One unary call of `path` through `channel`, bounded by [`STEP`].
async fn call<T>(channel: T, path: &'static str) -> Result<Result<String, tonic::Status>>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    let req = tonic::Request::new(HelloRequest {
        name: "rust".into(),
    });
    let codec = tonic_prost::ProstCodec::<HelloRequest, HelloReply>::default();
    let out = tokio::time::timeout(STEP, async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.into().to_string()))?;
        grpc.unary(req, PathAndQuery::from_static(path), codec)
            .await
    })
    .await
    .with_context(|| format!("{path}: no answer within {STEP:?}"))?;
    Ok(out.map(|r| r.into_inner().message))
}

/// A plain tonic channel straight to the grpcio server's port (no mesh), connecting lazily:
/// a closed port shows up as the call's UNAVAILABLE.
fn direct(port: u16) -> Result<tonic::transport::Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy(),
    )
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("?")
}

#[tokio::test]
async fn grpcio_xds_server_with_istiods_listener_template() -> Result<()> {
    grpcio_xds_server(INBOUND_PREFIX).await
}

/// The same with gRPC's own template (A36's example), which we serve as an alias: a copy of
/// the listener renamed to the name asked for.
#[tokio::test]
async fn grpcio_xds_server_with_grpcs_listener_template() -> Result<()> {
    grpcio_xds_server(GRPC_SERVER_PREFIX).await
}

/// The whole scenario for a grpcio server whose bootstrap template is `prefix` + `%s`.
async fn grpcio_xds_server(prefix: &str) -> Result<()> {
    let Some(python) = interop::python("grpcio server interop")? else {
        return Ok(());
    };
    let port = free_port()?;
    let dir = tests::temp_dir("grpcio-server");
    tests::write(&dir, "pyserver.yaml", &config_yaml(port, DENIED));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let status = cp.config_status();
    ensure!(status.ready, "config rejected: {:?}", status.last_error);
    ensure!(status.warnings.is_empty(), "{:?}", status.warnings);
    let inbound = format!("{prefix}127.0.0.1:{port}");
    ensure!(
        cp.resources().listener(&inbound).is_some(),
        "no inbound listener {inbound} translated"
    );

    let mut py = Script::spawn(&python, "grpcio_xds_server.py", STEP)?;

    let run = async {
        py.send(serde_json::json!({
            "ads": cp.ads_addr().to_string(),
            "port": port,
            "template": format!("{prefix}%s"),
            "target": TARGET,
        }))
        .await?;
        let started = py.next("started").await?;

        // (a) Our MeshChannel. grpcio binds the port only once its listener arrived (A36;
        // connections are refused until then): poll, bounded, until SayHello is answered.
        let mesh = tests::mesh(&cp, "rust-client")?;
        let channel = MeshChannel::new(&mesh, TARGET)?;
        channel.wait_ready(STEP).await?;
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match call(channel.clone(), "/helloworld.Greeter/SayHello").await? {
                Ok(_) => break,
                Err(s) if tokio::time::Instant::now() >= deadline => {
                    bail!("grpcio server never served SayHello within {STEP:?}: {s:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let hello = call(channel.clone(), "/helloworld.Greeter/SayHello").await??;
        // (c) The DENY policy, enforced by grpcio's RBAC filter; the other method still served.
        let denied = call(channel.clone(), DENIED).await?;

        // (b) grpcio's own xDS client, through the same control plane.
        py.send(serde_json::json!({ "client": true })).await?;
        let grpcio_client = py.next("client").await?;
        py.send(serde_json::json!({ "counts": true })).await?;
        let counts = py.next("counts").await?;

        // The policy changes to deny another path: grpcio's server takes the new Listener
        // (an LDS update while serving) and serves SayGoodbye.
        cp.load_yaml("pyserver.yaml", &config_yaml(port, "/other/Nothing"))?;
        let deadline = tokio::time::Instant::now() + STEP;
        while let Err(s) = call(channel.clone(), DENIED).await? {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "SayGoodbye still refused {STEP:?} after the policy changed: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The workload moves to another port: the server's listener no longer exists, and
        // grpcio stops serving (A36) — it closes every connection it accepts, seen by a plain
        // tonic client as a transport failure (UNAVAILABLE, or UNKNOWN for the broken pipe);
        // the mesh's own view of the endpoint moves too, so it cannot tell.
        let sh = "/helloworld.Greeter/SayHello";
        call(direct(port)?, sh)
            .await?
            .context("direct call before the move")?;
        cp.load_yaml("pyserver.yaml", &config_yaml(1, DENIED))?;
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match call(direct(port)?, sh).await? {
                Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown) => break,
                other => ensure!(
                    tokio::time::Instant::now() < deadline,
                    "grpcio still serving {STEP:?} after its listener was removed: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok((started, hello, denied, grpcio_client, counts))
    };
    let outcome = tokio::time::timeout(RUN_TIMEOUT, run).await;
    let (started, hello, denied, grpcio_client, counts) = match outcome {
        Ok(Ok(v)) => v,
        failure => {
            let err = py.kill().await;
            let why = match failure {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("timed out after {RUN_TIMEOUT:?}"),
            };
            let clients = cp.client_status();
            bail!(
                "grpcio server interop failed: {why}\n--- control plane clients ---\n\
                 {clients:#?}\n--- grpcio stderr ---\n{err}"
            );
        }
    };
    println!("grpcio {started}\nclient: {grpcio_client:#}\nhandlers: {counts}");

    // (a) served by grpcio (in plaintext: no peer identity); (c) denied by its RBAC filter.
    assert_eq!(hello, "hello rust from grpcio");
    let denied = denied.expect_err("SayGoodbye is denied");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // (b) grpcio's client sees the same.
    let h = &grpcio_client["SayHello"];
    assert_eq!(code(h), "OK", "{h}");
    assert_eq!(h["answer"], "hello py from grpcio", "{h}");
    let g = &grpcio_client["SayGoodbye"];
    assert_eq!(code(g), "PERMISSION_DENIED", "{g}");
    // The denied calls never reached the handler.
    assert_eq!(counts["SayGoodbye"], 0, "{counts}");
    assert!(counts["SayHello"].as_u64() >= Some(3), "{counts}");

    // (d) No NACK from the grpcio process; its server stream holds the inbound listener.
    let clients: Vec<ClientStatus> = cp
        .client_status()
        .into_iter()
        .filter(|c| c.node.id == "grpcio-server")
        .collect();
    for c in &clients {
        assert_eq!(c.node.generator.as_deref(), Some("grpc"), "{:?}", c.node);
        for (ty, t) in &c.types {
            assert!(
                t.nacks == 0 && t.nack.is_none(),
                "{ty:?} NACKed on stream {}: {t:?}",
                c.stream_id
            );
        }
    }
    let server_stream = clients
        .iter()
        .find(|c| {
            c.of(ResourceType::Listener)
                .is_some_and(|t| t.subscribed.contains(&inbound))
        })
        .with_context(|| format!("no grpcio stream asked for {inbound}: {clients:#?}"))?;
    let lds = server_stream
        .of(ResourceType::Listener)
        .expect("found by it");
    assert!(lds.acked_version.is_some(), "{lds:?}");

    py.finish().await;
    cp.shutdown().await;
    Ok(())
}

/// mTLS both ways with grpcio's own xDS security (gRFC A29): the service is ISTIO_MUTUAL
/// (DestinationRule) and its workload — the grpcio server — STRICT (PeerAuthentication). The
/// grpcio process reads its SVID from a `file_watcher` provider (files our CA wrote, as
/// `mesh-control-plane issue` does) and takes TLS from the Listener and Cluster we serve.
fn mtls_yaml(port: u16, rust_port: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: rustgreeter, namespace: default }}
spec:
  hosts: [{RUST_HOST}]
  ports: [{{ number: {SERVICE_PORT}, name: grpc, protocol: GRPC }}]
  resolution: STATIC
  workloadSelector: {{ labels: {{ app: rustgreeter }} }}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{ name: rustgreeter, namespace: default }}
spec:
  address: 127.0.0.1
  ports: {{ grpc: {rust_port} }}
  labels: {{ app: rustgreeter }}
  serviceAccount: rustgreeter
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: rustgreeter, namespace: default }}
spec:
  host: {RUST_HOST}
  trafficPolicy: {{ tls: {{ mode: ISTIO_MUTUAL }} }}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: pyserver, namespace: default }}
spec:
  hosts: [{HOST}]
  ports: [{{ number: {SERVICE_PORT}, name: grpc, protocol: GRPC }}]
  resolution: STATIC
  workloadSelector: {{ labels: {{ app: pyserver }} }}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{ name: pyserver, namespace: default }}
spec:
  address: 127.0.0.1
  ports: {{ grpc: {port} }}
  labels: {{ app: pyserver }}
  serviceAccount: pyserver
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{ name: strict, namespace: default }}
spec:
  mtls: {{ mode: STRICT }}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: pyserver, namespace: default }}
spec:
  host: {HOST}
  trafficPolicy: {{ tls: {{ mode: ISTIO_MUTUAL }} }}
"#
    )
}

/// Observed: our `MeshChannel` with an SVID from the same CA is served by the STRICT grpcio
/// server (and checks the server is `sa/pyserver`); grpcio's own xDS client, with
/// `xds_channel_credentials`, is served by it and by our STRICT `XdsServer` (given only its
/// workload identity); plaintext clients are refused by both; no grpcio stream NACKed the TLS
/// contexts.
#[tokio::test]
async fn grpcio_xds_mtls_both_ways() -> Result<()> {
    use mesh_control_plane::ca::{Ca, SpiffeId};
    use mesh_tower::tls::CertificateProviders;
    let Some(python) = interop::python("grpcio mTLS interop")? else {
        return Ok(());
    };
    let port = free_port()?;
    let ca = Ca::generate("cluster.local")?;
    let dir = tests::temp_dir("grpcio-mtls");
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    // Our STRICT server: only its workload identity is given; mTLS comes from its Listener.
    let greeter = examples::greeter::GreeterServer::new(
        examples::greeter::GreeterService::new("rust").map_err(|s| anyhow::anyhow!("{s}"))?,
    );
    let rust_server = mesh_grpc::XdsServer::builder(tests::mesh(&cp, "rustgreeter")?)
        .identity(tests::workload_identity(&ca, "rustgreeter")?)
        .drain_timeout(STEP)
        .bind("127.0.0.1:0".parse()?, greeter)
        .await?;
    cp.load_yaml(
        "pyserver.yaml",
        &mtls_yaml(port, rust_server.local_addr().port()),
    )?;
    let (svid, key) = ca.issue(
        &SpiffeId::new("cluster.local", "default", "pyserver")?,
        None,
    )?;
    let certs = tests::temp_dir("grpcio-mtls-certs");
    tests::write(&certs, "cert.pem", &svid.cert_chain_pem);
    tests::write(&certs, "key.pem", key.expose());
    tests::write(&certs, "ca.pem", &svid.trust_bundle_pem);
    let status = cp.config_status();
    ensure!(status.ready, "config rejected: {:?}", status.last_error);
    ensure!(status.warnings.is_empty(), "{:?}", status.warnings);
    rust_server.serving(STEP).await?;

    let mut py = Script::spawn(&python, "grpcio_xds_server.py", STEP)?;
    let path = |f: &str| certs.join(f).display().to_string();
    let run = async {
        py.send(serde_json::json!({
            "ads": cp.ads_addr().to_string(),
            "port": port,
            "template": format!("{INBOUND_PREFIX}%s"),
            "target": TARGET,
            "certs": { "cert": path("cert.pem"), "key": path("key.pem"), "ca": path("ca.pem") },
        }))
        .await?;
        py.next("started").await?;

        let mesh = tests::mesh(&cp, "rust-client")?;
        let me = tests::workload_identity(&ca, "rust-client")?;
        let channel =
            MeshChannel::new(&mesh, TARGET)?.with_tls(CertificateProviders::default_identity(me));
        channel.wait_ready(STEP).await?;
        let deadline = tokio::time::Instant::now() + STEP;
        let hello = loop {
            match call(channel.clone(), "/helloworld.Greeter/SayHello").await? {
                Ok(answer) => break answer,
                Err(s) if tokio::time::Instant::now() >= deadline => {
                    bail!("grpcio never served SayHello over mTLS within {STEP:?}: {s:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        // Plaintext to the STRICT server: refused at the transport.
        let plain = call(direct(port)?, "/helloworld.Greeter/SayHello").await?;
        py.send(serde_json::json!({ "client": true })).await?;
        let grpcio_client = py.next("client").await?;
        // grpcio's xDS client → our STRICT XdsServer, and a plaintext call to it.
        let rust_target = format!("xds:///{RUST_HOST}:{SERVICE_PORT}");
        py.send(serde_json::json!({ "client": true, "target": rust_target }))
            .await?;
        let to_rust = py.next("client").await?;
        let rust_plain = call(
            direct(rust_server.local_addr().port())?,
            "/helloworld.Greeter/SayHello",
        )
        .await?;
        anyhow::Ok((hello, plain, grpcio_client, to_rust, rust_plain))
    };
    let (hello, plain, grpcio_client, to_rust, rust_plain) =
        match tokio::time::timeout(RUN_TIMEOUT, run).await {
            Ok(Ok(v)) => v,
            failure => {
                let err = py.kill().await;
                let why = match failure {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => format!("timed out after {RUN_TIMEOUT:?}"),
                };
                bail!(
                    "grpcio mTLS interop failed: {why}\n--- control plane clients ---\n{:#?}\n\
                 --- grpcio stderr ---\n{err}",
                    cp.client_status()
                );
            }
        };
    println!("client: {grpcio_client:#}");
    // grpcio saw our SVID.
    assert_eq!(
        hello,
        "hello rust from grpcio as spiffe://cluster.local/ns/default/sa/rust-client"
    );
    let plain = plain.expect_err("plaintext must not be served by a STRICT grpcio server");
    assert!(
        matches!(
            plain.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ),
        "{plain:?}"
    );
    let h = &grpcio_client["SayHello"];
    assert_eq!(code(h), "OK", "grpcio's xDS client over mTLS: {h}");
    let r = &to_rust["SayHello"];
    assert_eq!(
        code(r),
        "OK",
        "grpcio's xDS client to our STRICT XdsServer: {r}"
    );
    assert_eq!(r["answer"], "hello py from rust", "{r}");
    let rust_plain = rust_plain.expect_err("plaintext must not be served by our STRICT server");
    assert!(
        // Our server closes a plaintext connection on a STRICT port: tonic reports the
        // closed connection as CANCELLED.
        matches!(
            rust_plain.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ),
        "{rust_plain:?}"
    );
    for c in cp
        .client_status()
        .into_iter()
        .filter(|c| c.node.id == "grpcio-server")
    {
        for (ty, t) in &c.types {
            assert!(
                t.nacks == 0 && t.nack.is_none(),
                "{ty:?} NACKed on stream {}: {t:?}",
                c.stream_id
            );
        }
    }
    py.finish().await;
    cp.shutdown().await;
    Ok(())
}
