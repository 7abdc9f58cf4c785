//! Proxyless gRPC end to end over real sockets: control plane (Istio YAML) → ADS → mesh →
//! `MeshChannel` → tonic-generated `GreeterClient` → real tonic greeter servers on loopback.
//! Weighted split, header canary on gRPC metadata, the no-route status, concurrent clones.

use std::collections::BTreeMap;

use anyhow::Result;
use examples::greeter::{GreeterBackend, GreeterClient, HelloRequest, BACKEND_HEADER};
use mesh_control_plane::ControlPlaneHandle;
use mesh_grpc::MeshChannel;
use mesh_tower::{MeshError, MeshErrorKind};
use tests::{control_plane, mesh, temp_dir, write};
use tonic::Code;

const TARGET: &str = "xds:///greeter.test:50051";

/// ServiceEntry `greeter.test:50051` (protocol GRPC) with one WorkloadEntry and subset per
/// greeter, named after the greeter.
fn service_yaml(greeters: &[&GreeterBackend]) -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: greeter, namespace: test }\n\
         spec:\n  hosts: [greeter.test]\n  ports: [{ number: 50051, name: grpc, protocol: GRPC }]\n  \
         resolution: STATIC\n  workloadSelector: { labels: { app: greeter } }\n",
    );
    for g in greeters {
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{ name: greeter-{n}, namespace: test }}\n\
             spec: {{ address: 127.0.0.1, ports: {{ grpc: {p} }}, labels: {{ app: greeter, version: {n} }} }}\n",
            n = g.name(),
            p = g.addr().port()
        );
    }
    y += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: greeter, namespace: test }\n\
          spec:\n  host: greeter.test\n  subsets:\n";
    for g in greeters {
        y += &format!(
            "    - {{ name: {n}, labels: {{ version: {n} }} }}\n",
            n = g.name()
        );
    }
    y
}

const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter, namespace: test }
spec:
  hosts: [greeter.test]
  http:
    - name: canary-user
      match: [{ headers: { x-user: { exact: jason } } }]
      route: [{ destination: { host: greeter.test, subset: v2 } }]
    - name: split
      route:
        - { destination: { host: greeter.test, subset: v1 }, weight: 90 }
        - { destination: { host: greeter.test, subset: v2 }, weight: 10 }
"#;

struct Setup {
    _v1: GreeterBackend,
    _v2: GreeterBackend,
    _cp: ControlPlaneHandle,
    channel: MeshChannel,
}

async fn setup(routes: &str) -> Result<Setup> {
    let (v1, v2) = (
        GreeterBackend::start("v1").await?,
        GreeterBackend::start("v2").await?,
    );
    let dir = temp_dir("grpc");
    write(&dir, "greeter.yaml", &service_yaml(&[&v1, &v2]));
    write(&dir, "routes.yaml", routes);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "grpc-client")?;
    let channel = MeshChannel::new(&m, TARGET)?;
    channel
        .wait_ready(std::time::Duration::from_secs(10))
        .await?;
    Ok(Setup {
        _v1: v1,
        _v2: v2,
        _cp: cp,
        channel,
    })
}

/// One `SayHello`; the backend that answered (`x-backend` metadata) and the reply text.
async fn hello(
    client: &mut GreeterClient<MeshChannel>,
    user: Option<&str>,
) -> Result<(String, String), tonic::Status> {
    let mut req = tonic::Request::new(HelloRequest {
        name: "test".into(),
    });
    if let Some(u) = user {
        req.metadata_mut()
            .insert("x-user", u.parse().expect("ascii value"));
    }
    let reply = client.say_hello(req).await?;
    let backend = reply
        .metadata()
        .get(BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    Ok((backend, reply.into_inner().message))
}

async fn split(
    client: &mut GreeterClient<MeshChannel>,
    user: Option<&str>,
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(hello(client, user).await?.0).or_default() += 1;
    }
    Ok(counts)
}

#[tokio::test]
async fn weighted_split_within_binomial_tolerance() -> Result<()> {
    let s = setup(ROUTES).await?;
    let mut client = GreeterClient::new(s.channel.clone());
    let n = 2000;
    let counts = split(&mut client, None, n).await?;
    let v2 = counts.get("v2").copied().unwrap_or(0);
    // v2 ~ Binomial(2000, 0.1): mean 200, sd 13.4. Accepting 130..=270 is ±5.2 sd, a false
    // failure about once in ten million runs.
    assert!(
        (130..=270).contains(&v2),
        "v2 served {v2} of {n}: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), n);
    Ok(())
}

#[tokio::test]
async fn header_canary_matches_grpc_metadata() -> Result<()> {
    let s = setup(ROUTES).await?;
    let mut client = GreeterClient::new(s.channel.clone());
    assert_eq!(
        split(&mut client, Some("jason"), 100).await?,
        BTreeMap::from([("v2".to_owned(), 100)])
    );
    // Another value falls through to the 90/10 split: v1 ~ Binomial(200, 0.9), mean 180, sd
    // 4.2; more than 150 is 7 sd below the mean, so this does not flake — and a canary that
    // matched everything would give v1 none.
    let counts = split(&mut client, Some("other"), 200).await?;
    assert!(counts.get("v1").copied().unwrap_or(0) > 150, "{counts:?}");
    Ok(())
}

#[tokio::test]
async fn no_route_is_unavailable_naming_host_and_path() -> Result<()> {
    let other_service_only = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter, namespace: test }
spec:
  hosts: [greeter.test]
  http:
    - name: other-service
      match: [{ uri: { prefix: /other.Service/ } }]
      route: [{ destination: { host: greeter.test, subset: v1 } }]
"#;
    let s = setup(other_service_only).await?;
    let mut client = GreeterClient::new(s.channel.clone());
    let status = hello(&mut client, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let msg = status.message();
    assert!(
        msg.starts_with("no_route: host greeter.test:50051 path /helloworld.Greeter/SayHello"),
        "{msg}"
    );
    let kind = std::error::Error::source(&status)
        .and_then(|e| e.downcast_ref::<MeshError>())
        .map(MeshError::kind);
    assert_eq!(kind, Some(MeshErrorKind::NoRoute));
    Ok(())
}

#[tokio::test]
async fn generated_client_works_unchanged_and_clones_share_the_channel() -> Result<()> {
    let s = setup(ROUTES).await?;
    let (backend, message) =
        hello(&mut GreeterClient::new(s.channel.clone()), Some("jason")).await?;
    assert_eq!(
        (backend.as_str(), message.as_str()),
        ("v2", "hello test from v2")
    );

    // Clones of one channel in concurrent tasks (the channel is Clone + Send + Sync), each
    // with its own generated client, multiplexed over the pooled HTTP/2 connections.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut client = GreeterClient::new(s.channel.clone());
            tokio::spawn(async move { split(&mut client, None, 25).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        let counts = t.await??;
        assert!(counts.keys().all(|k| k == "v1" || k == "v2"), "{counts:?}");
        total += counts.values().sum::<usize>();
    }
    assert_eq!(total, 200);
    Ok(())
}
