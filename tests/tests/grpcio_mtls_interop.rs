//! mTLS interop with gRPC's own xDS security (gRFC A29), both directions: Python `grpcio`
//! (gRPC C-core) takes its TLS settings from our control plane's xDS — Istio DestinationRule
//! `ISTIO_MUTUAL` → the cluster's `UpstreamTlsContext`, PeerAuthentication `STRICT` → the inbound
//! Listener's `DownstreamTlsContext`, both naming certificate provider instance `default` — and
//! its certificates from the files `mesh-control-plane issue` writes (`cert.pem`, `key.pem`,
//! `ca.pem`, read by its `file_watcher` provider), signed by the same CA as ours.
//!
//! 1. grpcio's xDS **client** (`xds_channel_credentials`, insecure fallback) → our
//!    `mesh_grpc::XdsServer` under STRICT: the call succeeds and our handler sees grpcio's
//!    SPIFFE ID; through a service whose DestinationRule is `DISABLE` (plaintext) the call fails;
//!    through one whose `subjectAltNames` name another service account, grpcio refuses our
//!    server's certificate.
//! 2. Our `MeshChannel::with_tls` → grpcio's xDS **server** (`xds_server_credentials`) under
//!    STRICT: the call succeeds and grpcio sees our SPIFFE ID; plaintext (a direct connection,
//!    and the mesh under a `DISABLE` DestinationRule) is refused, and so is TLS without a client
//!    certificate (`SIMPLE`); grpcio's own client reaches it over mTLS too. Live changes to
//!    PERMISSIVE and DISABLE make grpcio serve plaintext, back to STRICT refuse it.
//! 3. A grpcio server **without** certificate providers under PERMISSIVE serves plaintext (it
//!    used to NACK our Listener: see `grpcio_server_without_certificate_providers_serves_permissive`).
//! 4. grpcio's RBAC enforces an AuthorizationPolicy ALLOW on our principal over mTLS.
//! 5. Every resource the control plane sent the grpcio process was ACKed: no NACK.
//!
//! `grpcio_server_interop.rs` (`grpcio_xds_mtls_both_ways`) has the basic round trip both
//! ways; this file adds what each side's peer identity is, the refusals (DISABLE, a wrong SAN,
//! no client certificate), every shape of TLS context the translator emits, and live
//! PeerAuthentication changes on grpcio's server.
//!
//! The grpcio side is `tests/interop/grpcio_xds_server.py` (its `certs`, `node`, no-`port`,
//! `methods` and `wait` options). Interpreter:
//! `$MESH_INTEROP_PYTHON`, else `.venv-interop/bin/python` at the workspace root (see
//! `grpcio_interop.rs`); without one the test fails, unless `MESH_SKIP_INTEROP=1`.

use std::{path::Path, time::Duration};

use anyhow::{bail, ensure, Context, Result};
use examples::greeter::{Greeter, GreeterServer, HelloReply, HelloRequest};
use mesh_control_plane::{
    ca::{self, Ca, SpiffeId},
    translate::authz::INBOUND_PREFIX,
    ClientStatus, ControlPlaneHandle, ResourceType,
};
use mesh_core::model::InboundTlsMode;
use mesh_grpc::{MeshChannel, XdsServer};
use mesh_tower::tls::{CertificateProviders, PeerIdentity};
use serde_json::{json, Value};
use tests::interop::{self, Script};
use tonic::Code;

const TD: &str = "cluster.local";
/// Bound on one step: a line from the script, a call, a server starting to serve.
const STEP: Duration = Duration::from_secs(30);
/// Bound on a whole scenario (the script's own watchdog is 100 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// What `mesh-control-plane issue --trust-domain cluster.local --namespace default
/// --service-account <sa> --out <dir>` does, with `ca` instead of a CA directory: a fresh key
/// and an SVID from `ca` written as `cert.pem`, `key.pem` (0600) and `ca.pem`.
fn issue(ca: &Ca, sa: &str, dir: &Path) -> Result<()> {
    let (svid, key) = ca.issue(
        &SpiffeId::new(TD, "default", sa)?,
        Some(Duration::from_secs(3600)),
    )?;
    ca::write_private(&dir.join("key.pem"), key.expose())?;
    std::fs::write(dir.join("cert.pem"), &svid.cert_chain_pem)?;
    std::fs::write(dir.join("ca.pem"), &svid.trust_bundle_pem)?;
    Ok(())
}

/// The script's `certs` option for the files [`issue`] wrote into `dir`.
fn cert_files(dir: &Path) -> Value {
    let path = |f: &str| dir.join(f).display().to_string();
    json!({ "cert": path("cert.pem"), "key": path("key.pem"), "ca": path("ca.pem") })
}

fn spiffe(sa: &str) -> String {
    format!("spiffe://{TD}/ns/default/sa/{sa}")
}

/// A DestinationRule body (after `host`) setting the whole rule's `tls` to `tls`.
fn tls(tls: &str) -> String {
    format!("trafficPolicy: {{ tls: {tls} }}")
}

/// A workload `app` at `127.0.0.1:port` running as service account `app` (label `app`,
/// `version: v1`), PeerAuthentication `mode` for it, and per `(host, port, rule)` a
/// ServiceEntry selecting it and a DestinationRule whose spec after `host` is `rule`.
fn config_yaml(app: &str, port: u16, mode: &str, services: &[(&str, u16, String)]) -> String {
    let mut y = format!(
        r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{ name: {app}, namespace: default }}
spec:
  address: 127.0.0.1
  ports: {{ grpc: {port} }}
  labels: {{ app: {app}, version: v1 }}
  serviceAccount: {app}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{ name: {app}, namespace: default }}
spec:
  selector: {{ matchLabels: {{ app: {app} }} }}
  mtls: {{ mode: {mode} }}
"#
    );
    for (host, sport, rule) in services {
        let name = host.replace('.', "-");
        y += &format!(
            r#"---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: {name}, namespace: default }}
spec:
  hosts: [{host}]
  ports: [{{ number: {sport}, name: grpc, protocol: GRPC }}]
  resolution: STATIC
  workloadSelector: {{ labels: {{ app: {app} }} }}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: {name}, namespace: default }}
spec:
  host: {host}
  {rule}
"#
        );
    }
    y
}

/// Our greeter: answers `hello <name> from rust as <caller's SPIFFE ID>` (`plaintext` without).
#[derive(Clone, Debug)]
struct WhoGreeter;

#[tonic::async_trait]
impl Greeter for WhoGreeter {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        let who = request
            .extensions()
            .get::<PeerIdentity>()
            .map_or("plaintext".to_owned(), |p| p.spiffe_id().to_owned());
        let message = format!("hello {} from rust as {who}", request.get_ref().name);
        Ok(tonic::Response::new(HelloReply { message }))
    }
}

/// One SayHello through `channel`, bounded by [`STEP`].
async fn say_hello<T>(channel: T) -> Result<Result<String, tonic::Status>>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut client = examples::greeter::GreeterClient::new(channel);
    let req = HelloRequest {
        name: "rust".into(),
    };
    let out = tokio::time::timeout(STEP, client.say_hello(req))
        .await
        .with_context(|| format!("SayHello: no answer within {STEP:?}"))?;
    Ok(out.map(|r| r.into_inner().message))
}

/// A plain tonic channel straight to `127.0.0.1:port` (no mesh, no TLS), connecting lazily:
/// a refused connection shows up as the call's error.
fn direct_channel(port: u16) -> Result<tonic::transport::Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy(),
    )
}

/// Asserts that no stream of the grpcio process `node` NACKed anything, and that some stream
/// ACKed each type in `acked`.
fn assert_no_nacks(cp: &ControlPlaneHandle, node: &str, acked: &[ResourceType]) {
    let clients: Vec<ClientStatus> = cp
        .client_status()
        .into_iter()
        .filter(|c| c.node.id == node)
        .collect();
    assert!(!clients.is_empty(), "no ADS stream from {node}");
    for c in &clients {
        assert_eq!(c.node.generator.as_deref(), Some("grpc"), "{:?}", c.node);
        for (ty, t) in &c.types {
            assert!(
                t.nacks == 0 && t.nack.is_none(),
                "grpcio ({node}) NACKed {ty:?} on stream {}: {t:?}",
                c.stream_id
            );
        }
    }
    for ty in acked {
        assert!(
            clients
                .iter()
                .any(|c| c.of(*ty).is_some_and(|t| t.acked_version.is_some())),
            "no {node} stream ACKed {ty:?}: {clients:#?}"
        );
    }
}

/// The script's client result for SayHello: its code and answer (or details).
fn outcome(v: &Value) -> (String, String) {
    let r = &v["SayHello"];
    let code = r["code"].as_str().unwrap_or("?").to_owned();
    let text = r["answer"]
        .as_str()
        .or_else(|| r["details"].as_str())
        .unwrap_or_default()
        .to_owned();
    (code, text)
}

/// grpcio's client calls SayHello on `target`: waiting for the channel to be ready (up to the
/// script's 20 s), or failing fast (5 s deadline) when `wait` is false.
async fn ask(py: &mut Script, target: &str, wait: bool) -> Result<(String, String)> {
    py.send(json!({
        "client": true, "target": target, "methods": ["SayHello"], "wait": wait, "timeout": 5,
    }))
    .await?;
    Ok(outcome(&py.next("client").await?))
}

/// Runs `scenario` bounded by [`RUN_TIMEOUT`]; why it failed, if it did.
async fn bounded<T>(scenario: impl std::future::Future<Output = Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(RUN_TIMEOUT, scenario).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("timed out after {RUN_TIMEOUT:?}")),
    }
}

/// Kills the script and fails with `why`, the control plane's view of its clients and
/// grpcio's stderr.
async fn report(py: &mut Script, cp: &ControlPlaneHandle, why: String) -> anyhow::Error {
    let err = py.kill().await;
    let clients = cp.client_status();
    anyhow::anyhow!(
        "grpcio mTLS interop failed: {why}\n--- control plane clients ---\n{clients:#?}\n\
         --- grpcio stderr ---\n{err}"
    )
}

#[tokio::test]
async fn grpcio_xds_client_calls_our_strict_server_over_mtls() -> Result<()> {
    let Some(python) = interop::python("grpcio mTLS client interop")? else {
        return Ok(());
    };
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("grpcio-mtls-client");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    issue(&ca, "pyclient", &certs)?;
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;

    // Our server, its identity from the same CA, its TLS mode from the control plane.
    let mesh = tests::mesh(&cp, "rust-server")?;
    let server = XdsServer::builder(mesh)
        .identity(tests::workload_identity(&ca, "greeter")?)
        .drain_timeout(STEP)
        .bind(
            "127.0.0.1:0".parse()?,
            tonic::service::Routes::new(GreeterServer::new(WhoGreeter)),
        )
        .await?;
    let port = server.local_addr().port();
    let (ours, other) = (spiffe("greeter"), spiffe("nobody"));
    let services = [
        ("mtls.test", 50071, tls("{ mode: ISTIO_MUTUAL }")),
        ("plain.test", 50072, tls("{ mode: DISABLE }")),
        (
            "wrong-san.test",
            50073,
            tls(&format!(
                "{{ mode: ISTIO_MUTUAL, subjectAltNames: [\"{other}\"] }}"
            )),
        ),
        // The other shapes of context we emit, each to be ACKed (and served) by grpcio: `sni`
        // and explicit SANs; MUTUAL; SIMPLE (no client certificate: our STRICT server refuses
        // it); TLS from a subset's and from a port's settings over a DISABLE rule.
        (
            "sni.test",
            50074,
            tls(&format!(
                "{{ mode: ISTIO_MUTUAL, sni: greeter.default.svc, subjectAltNames: [\"{ours}\"] }}"
            )),
        ),
        (
            "mutual.test",
            50075,
            tls(&format!(
                "{{ mode: MUTUAL, subjectAltNames: [\"{ours}\"] }}"
            )),
        ),
        ("simple.test", 50076, tls("{ mode: SIMPLE }")),
        (
            "subset.test",
            50077,
            "trafficPolicy: { tls: { mode: DISABLE } }\n  subsets: [{ name: v1, labels: \
             { version: v1 }, trafficPolicy: { tls: { mode: ISTIO_MUTUAL } } }]"
                .to_owned(),
        ),
        (
            "port.test",
            50078,
            "trafficPolicy:\n    tls: { mode: DISABLE }\n    portLevelSettings: \
             [{ port: { number: 50078 }, tls: { mode: ISTIO_MUTUAL } }]"
                .to_owned(),
        ),
    ];
    let subset_route = r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: subset, namespace: default }
spec:
  hosts: [subset.test]
  http: [{ route: [{ destination: { host: subset.test, subset: v1 } }] }]
"#;
    cp.load_yaml(
        "mesh.yaml",
        &(config_yaml("greeter", port, "STRICT", &services) + subset_route),
    )?;
    let status = cp.config_status();
    ensure!(status.ready, "config rejected: {:?}", status.last_error);
    ensure!(status.warnings.is_empty(), "{:?}", status.warnings);
    server.serving(STEP).await?;
    tests::eventually(STEP, || async {
        server.served_listener().map(|(_, m)| m) == Some(InboundTlsMode::Strict)
    })
    .await
    .context("our server never applied STRICT")?;

    let mut py = Script::spawn(&python, "grpcio_xds_server.py", STEP)?;
    let run = async {
        py.send(json!({
            "ads": cp.ads_addr().to_string(),
            "target": "xds:///mtls.test:50071",
            "certs": cert_files(&certs),
            "node": "grpcio-client",
        }))
        .await?;
        py.next("started").await?;
        let mtls = ask(&mut py, "xds:///mtls.test:50071", true).await?;
        let plain = ask(&mut py, "xds:///plain.test:50072", false).await?;
        let wrong_san = ask(&mut py, "xds:///wrong-san.test:50073", false).await?;
        let mut variants = Vec::new();
        for (target, wait) in [
            ("sni.test:50074", true),
            ("mutual.test:50075", true),
            ("simple.test:50076", false),
            ("subset.test:50077", true),
            ("port.test:50078", true),
        ] {
            let got = ask(&mut py, &format!("xds:///{target}"), wait).await?;
            variants.push((target, got));
        }
        anyhow::Ok((mtls, plain, wrong_san, variants))
    };
    let (mtls, plain, wrong_san, variants) = match bounded(run).await {
        Ok(v) => v,
        Err(why) => return Err(report(&mut py, &cp, why).await),
    };

    println!("grpcio client: mtls {mtls:?}\nplain {plain:?}\nwrong san {wrong_san:?}");
    // ISTIO_MUTUAL against STRICT: served, and our handler saw grpcio's certificate.
    assert_eq!(
        mtls,
        (
            "OK".into(),
            format!("hello py from rust as {}", spiffe("pyclient"))
        ),
        "grpcio → our STRICT server over ISTIO_MUTUAL"
    );
    // DISABLE against STRICT: grpcio connects in plaintext and our server closes it.
    assert_eq!(
        plain.0, "UNAVAILABLE",
        "plaintext against STRICT: {plain:?}"
    );
    // grpcio applies our match_subject_alt_names: our server is `greeter`, not `nobody`.
    assert_eq!(
        wrong_san.0, "UNAVAILABLE",
        "a SAN grpcio should have refused: {wrong_san:?}"
    );

    // The other shapes: served over mTLS, except SIMPLE (no client certificate) under STRICT.
    println!("variants: {variants:#?}");
    let served = (
        "OK".to_owned(),
        format!("hello py from rust as {}", spiffe("pyclient")),
    );
    for (target, got) in &variants {
        if target.starts_with("simple.") {
            assert_eq!(
                got.0, "UNAVAILABLE",
                "{target}: TLS without a client certificate against STRICT: {got:?}"
            );
        } else {
            assert_eq!(got, &served, "{target}");
        }
    }

    // No NACK: grpcio accepted every TLS context we sent (the clusters') and the rest.
    assert_no_nacks(&cp, "grpcio-client", &ResourceType::PUSH_ORDER);
    py.finish().await;
    server.shutdown().await;
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn our_mesh_channel_calls_grpcio_xds_server_over_mtls() -> Result<()> {
    let Some(python) = interop::python("grpcio mTLS server interop")? else {
        return Ok(());
    };
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("grpcio-mtls-server");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    issue(&ca, "pyserver", &certs)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let services = [
        ("pyserver.test", 50061, tls("{ mode: ISTIO_MUTUAL }")),
        ("pyserver-plain.test", 50062, tls("{ mode: DISABLE }")),
        ("pyserver-simple.test", 50063, tls("{ mode: SIMPLE }")),
    ];
    let config = |mode: &str| config_yaml("pyserver", port, mode, &services);
    tests::write(&dir, "mesh.yaml", &config("STRICT"));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let status = cp.config_status();
    ensure!(status.ready, "config rejected: {:?}", status.last_error);
    ensure!(status.warnings.is_empty(), "{:?}", status.warnings);
    let inbound = format!("{INBOUND_PREFIX}127.0.0.1:{port}");
    ensure!(
        cp.resources().listener(&inbound).is_some(),
        "no inbound listener {inbound} translated"
    );

    let mesh = tests::mesh(&cp, "rust-client")?;
    let me = tests::workload_identity(&ca, "frontend")?;
    let channel = MeshChannel::new(&mesh, "xds:///pyserver.test:50061")?
        .with_tls(CertificateProviders::default_identity(me.clone()));
    let plain_channel = MeshChannel::new(&mesh, "xds:///pyserver-plain.test:50062")?;
    // SIMPLE: TLS, grpcio's certificate checked, but no client certificate of ours.
    let simple_channel = MeshChannel::new(&mesh, "xds:///pyserver-simple.test:50063")?
        .with_tls(CertificateProviders::default_identity(me.clone()));

    let mut py = Script::spawn(&python, "grpcio_xds_server.py", STEP)?;
    let run = async {
        py.send(json!({
            "ads": cp.ads_addr().to_string(),
            "port": port,
            "template": format!("{INBOUND_PREFIX}%s"),
            "target": "xds:///pyserver.test:50061",
            "certs": cert_files(&certs),
            "node": "grpcio-server",
        }))
        .await?;
        py.next("started").await?;

        // grpcio binds the port only once it accepted its Listener (A36): poll, bounded.
        channel.wait_ready(STEP).await?;
        let deadline = tokio::time::Instant::now() + STEP;
        let hello = loop {
            match say_hello(channel.clone()).await? {
                Ok(answer) => break answer,
                Err(s) if tokio::time::Instant::now() >= deadline => {
                    bail!("grpcio server never served our mTLS SayHello within {STEP:?}: {s:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };

        // Plaintext, straight to the port and through the mesh under DISABLE: refused.
        let direct = say_hello(direct_channel(port)?).await?;
        plain_channel.wait_ready(STEP).await?;
        let via_mesh = say_hello(plain_channel.clone()).await?;
        simple_channel.wait_ready(STEP).await?;
        let no_client_cert = say_hello(simple_channel.clone()).await?;

        // grpcio's own client, with its xDS credentials, through the same control plane.
        py.send(json!({ "client": true, "methods": ["SayHello"] }))
            .await?;
        let grpcio_client = outcome(&py.next("client").await?);

        // Live PeerAuthentication changes reach grpcio's server, each Listener ACKed:
        // PERMISSIVE (our mTLS chain on `transport_protocol: tls`, which gRPC skips, and the
        // plaintext chain on `raw_buffer`) and DISABLE serve plaintext; STRICT refuses it again.
        let sh = |mode: &'static str, want_served: bool| {
            let cp = &cp;
            let config = &config;
            async move {
                cp.load_yaml("mesh.yaml", &config(mode))?;
                let deadline = tokio::time::Instant::now() + STEP;
                loop {
                    let got = say_hello(direct_channel(port)?).await?;
                    if got.is_ok() == want_served {
                        return anyhow::Ok(());
                    }
                    ensure!(
                        tokio::time::Instant::now() < deadline,
                        "{mode}: plaintext {} {STEP:?} after the change: {got:?}",
                        if want_served {
                            "still refused"
                        } else {
                            "still served"
                        }
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        sh("PERMISSIVE", true).await?;
        sh("DISABLE", true).await?;
        sh("STRICT", false).await?;
        // And mTLS is served again under STRICT.
        let deadline = tokio::time::Instant::now() + STEP;
        while let Err(s) = say_hello(channel.clone()).await? {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "mTLS not served again {STEP:?} after STRICT came back: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok((hello, direct, via_mesh, no_client_cert, grpcio_client))
    };
    let (hello, direct, via_mesh, no_client_cert, grpcio_client) = match bounded(run).await {
        Ok(v) => v,
        Err(why) => return Err(report(&mut py, &cp, why).await),
    };

    println!(
        "ours → grpcio: {hello:?}\ndirect {direct:?}\nvia mesh {via_mesh:?}\n\
         no client cert {no_client_cert:?}\ngrpcio → grpcio: {grpcio_client:?}"
    );
    // Served by grpcio, which saw our certificate.
    assert_eq!(
        hello,
        format!("hello rust from grpcio as {}", spiffe("frontend")),
        "our MeshChannel → grpcio's STRICT server"
    );
    // Refused: plaintext, and TLS without a client certificate (require_client_certificate).
    for (what, result) in [
        ("direct plaintext", &direct),
        ("mesh under DISABLE", &via_mesh),
        ("mesh under SIMPLE (no client certificate)", &no_client_cert),
    ] {
        let s = result
            .as_ref()
            .err()
            .with_context(|| format!("{what}: grpcio served it under STRICT: {result:?}"))?;
        assert!(
            matches!(s.code(), Code::Unavailable | Code::Unknown),
            "{what}: {s:?}"
        );
    }
    assert_eq!(
        grpcio_client,
        (
            "OK".into(),
            format!("hello py from grpcio as {}", spiffe("pyserver"))
        ),
        "grpcio client → grpcio server, both configured by us"
    );

    // No NACK from the grpcio process (server stream: the STRICT Listener's
    // DownstreamTlsContext; client stream: the cluster's UpstreamTlsContext).
    assert_no_nacks(&cp, "grpcio-server", &ResourceType::PUSH_ORDER);
    let server_stream = cp
        .client_status()
        .into_iter()
        .filter(|c| c.node.id == "grpcio-server")
        .find(|c| {
            c.of(ResourceType::Listener)
                .is_some_and(|t| t.subscribed.contains(&inbound))
        });
    ensure!(
        server_stream.is_some(),
        "no grpcio stream asked for {inbound}"
    );
    py.finish().await;
    cp.shutdown().await;
    Ok(())
}

/// A grpcio xDS server whose bootstrap has **no** certificate providers — any gRPC server not
/// set up for mTLS — under PeerAuthentication PERMISSIVE (Istio's usual posture). gRPC validates
/// the TLS context of every chain, even one it then drops for its `transport_protocol`, and
/// NACKs a provider instance its bootstrap lacks ("unrecognized certificate provider instance
/// name: default"): it used to NACK our PERMISSIVE Listener and never serve. gRPC clients now get
/// the plaintext chain alone (`peer_authn::grpc_server_form`, istiod's form): served, no NACK.
#[tokio::test]
async fn grpcio_server_without_certificate_providers_serves_permissive() -> Result<()> {
    let Some(python) = interop::python("grpcio PERMISSIVE interop")? else {
        return Ok(());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tests::temp_dir("grpcio-permissive");
    let services = [("pyplain.test", 50064, tls("{ mode: DISABLE }"))];
    tests::write(
        &dir,
        "mesh.yaml",
        &config_yaml("pyplain", port, "PERMISSIVE", &services),
    );
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let node = "grpcio-no-providers";
    let mut py = Script::spawn(&python, "grpcio_xds_server.py", STEP)?;
    let run = async {
        py.send(json!({
            "ads": cp.ads_addr().to_string(),
            "port": port,
            "template": format!("{INBOUND_PREFIX}%s"),
            "target": "xds:///pyplain.test:50064",
            "node": node,
        }))
        .await?;
        py.next("started").await?;
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match say_hello(direct_channel(port)?).await? {
                Ok(answer) => break anyhow::Ok(answer),
                Err(s) => ensure!(
                    tokio::time::Instant::now() < deadline,
                    "grpcio never served plaintext under PERMISSIVE within {STEP:?}: {s:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let hello = match bounded(run).await {
        Ok(v) => v,
        Err(why) => return Err(report(&mut py, &cp, why).await),
    };
    assert_eq!(hello, "hello rust from grpcio");
    assert_no_nacks(&cp, node, &[ResourceType::Listener]);
    py.finish().await;
    cp.shutdown().await;
    Ok(())
}

/// Zero trust on grpcio's server: an AuthorizationPolicy ALLOW naming our principal (Istio
/// form, `cluster.local/ns/default/sa/frontend`) under STRICT. grpcio's RBAC filter (gRFC A41)
/// matches the `principal_name` our translation writes (`spiffe://` + principal) against the
/// verified certificate: our identity is served, another identity from the same CA is denied
/// before the handler, and the Listener is ACKed.
#[tokio::test]
async fn grpcio_rbac_enforces_our_principals_over_mtls() -> Result<()> {
    let Some(python) = interop::python("grpcio RBAC over mTLS interop")? else {
        return Ok(());
    };
    let ca = Ca::generate(TD)?;
    let dir = tests::temp_dir("grpcio-mtls-rbac");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    issue(&ca, "pyauthz", &certs)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let services = [("pyauthz.test", 50065, tls("{ mode: ISTIO_MUTUAL }"))];
    let allow = r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: pyauthz, namespace: default }
spec:
  selector: { matchLabels: { app: pyauthz } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/frontend"] } }]
"#;
    let yaml = config_yaml("pyauthz", port, "STRICT", &services) + allow;
    tests::write(&dir, "mesh.yaml", &yaml);
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let status = cp.config_status();
    ensure!(status.ready, "config rejected: {:?}", status.last_error);
    ensure!(status.warnings.is_empty(), "{:?}", status.warnings);

    let mesh = tests::mesh(&cp, "rust-client")?;
    let target = "xds:///pyauthz.test:50065";
    let channel_as = |sa: &str| -> Result<MeshChannel> {
        Ok(
            MeshChannel::new(&mesh, target)?.with_tls(CertificateProviders::default_identity(
                tests::workload_identity(&ca, sa)?,
            )),
        )
    };
    let (frontend, intruder) = (channel_as("frontend")?, channel_as("intruder")?);
    let node = "grpcio-rbac";
    let mut py = Script::spawn(&python, "grpcio_xds_server.py", STEP)?;
    let run = async {
        py.send(json!({
            "ads": cp.ads_addr().to_string(),
            "port": port,
            "template": format!("{INBOUND_PREFIX}%s"),
            "target": target,
            "certs": cert_files(&certs),
            "node": node,
        }))
        .await?;
        py.next("started").await?;
        frontend.wait_ready(STEP).await?;
        let deadline = tokio::time::Instant::now() + STEP;
        let allowed = loop {
            match say_hello(frontend.clone()).await? {
                Ok(answer) => break answer,
                Err(s) if tokio::time::Instant::now() >= deadline => {
                    bail!("grpcio never served the allowed principal within {STEP:?}: {s:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let denied = say_hello(intruder.clone()).await?;
        py.send(json!({ "counts": true })).await?;
        let counts = py.next("counts").await?;
        anyhow::Ok((allowed, denied, counts))
    };
    let (allowed, denied, counts) = match bounded(run).await {
        Ok(v) => v,
        Err(why) => return Err(report(&mut py, &cp, why).await),
    };
    println!("allowed: {allowed}\ndenied: {denied:?}\ncounts: {counts}");
    assert_eq!(
        allowed,
        format!("hello rust from grpcio as {}", spiffe("frontend"))
    );
    let denied = denied.expect_err("a principal outside ALLOW is served");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(counts["SayHello"], 1, "the denied call reached the handler");
    assert_no_nacks(&cp, node, &[ResourceType::Listener]);
    py.finish().await;
    cp.shutdown().await;
    Ok(())
}
