//! Remote `jwksUri` end to end: a real HTTP JWKS server on 127.0.0.1 → the real control plane
//! fetches it and inlines the keys into the `jwt_authn` filter (istiod's way: the server never
//! fetches) → ADS → a hyper server behind `AuthzLayer`. Tokens signed with the served keys pass;
//! rotating the served JWKS and refreshing (on demand, then by the periodic refresh) makes the
//! new key's tokens pass and the old one's fail; the JWKS server going down keeps the last keys,
//! with a warning naming the resource and field.

mod jwt_support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jwt_support::{client, ec_key, get, jwks, serve, token, STEP};
use mesh_control_plane::{ControlPlane, JwksOptions};
use serde_json::json;
use tokio::net::TcpListener;

const ISS: &str = "https://remote.example";

/// A JWKS server answering every request with the current document.
async fn jwks_server(doc: Arc<Mutex<String>>) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let doc = doc.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = doc.lock().map(|d| d.clone()).unwrap_or_default();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((port, task))
}

fn config_yaml(port: u16, jwks_port: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: api}}}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: remote, namespace: default}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
  - issuer: {ISS}
    jwksUri: http://127.0.0.1:{jwks_port}/.well-known/jwks.json
    timeout: 2s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: default}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
"#
    )
}

#[tokio::test]
async fn remote_jwks_is_fetched_inlined_rotated_and_kept() -> Result<()> {
    let (k1, k2, k3) = (ec_key("k1")?, ec_key("k2")?, ec_key("k3")?);
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let (jwks_port, jwks_task) = jwks_server(doc.clone()).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let dir = tests::temp_dir("jwt-remote");
    tests::write(&dir, "api.yaml", &config_yaml(port, jwks_port));
    let refresh = Duration::from_millis(300);
    let cp = ControlPlane::builder()
        .config_dir(&dir)
        .listen_addr("127.0.0.1:0".parse()?)
        .jwks_options(JwksOptions {
            refresh_interval: refresh,
            retry_interval: Duration::from_millis(100),
        })
        .start()
        .await?;
    // The first load waited for the keys: they are inline in the served listener, no warning.
    let status = cp.config_status();
    assert!(status.warnings.is_empty(), "{:?}", status.warnings);
    let inbound = cp
        .resources()
        .listener(&format!("xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}"))
        .expect("inbound listener");
    // The filter config travels as protobuf bytes: the inline JWKS text is in them verbatim.
    let bytes = prost::Message::encode_to_vec(&inbound);
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has(r#""kid":"k1""#), "the fetched key is inlined");
    assert!(
        !has(".well-known/jwks.json"),
        "the uri is not sent: no remote_jwks"
    );

    let mesh = tests::mesh(&cp, "api-server")?;
    let server = serve(&mesh, listener, &[]).await?;
    let client = client();
    let url = format!("http://{}/a", server.addr);
    let bearer = |t: &str| format!("Bearer {t}");
    let status_for = |key: &jwt_support::Key| {
        let (client, url) = (&client, &url);
        let auth = bearer(&token(key, ISS, json!({})));
        async move {
            get(client, url, &[("authorization", auth.as_bytes())])
                .await
                .map(|r| r.0)
                .unwrap_or(0)
        }
    };
    assert_eq!(status_for(&k1).await, 200);
    assert_eq!(status_for(&k2).await, 401);

    // Rotation, refreshed on demand: the new key passes, the old one no longer does.
    *doc.lock().unwrap() = jwks(&[&k2]);
    cp.refresh_jwks().await;
    tests::eventually(STEP, || async { status_for(&k2).await == 200 }).await?;
    assert_eq!(status_for(&k1).await, 401);

    // Rotation picked up by the periodic refresh alone.
    *doc.lock().unwrap() = jwks(&[&k3]);
    tests::eventually(STEP, || async { status_for(&k3).await == 200 }).await?;
    assert_eq!(status_for(&k2).await, 401);

    // The JWKS server goes down: the keys stay, and the status says why, naming the field.
    jwks_task.abort();
    let _ = jwks_task.await;
    cp.refresh_jwks().await;
    let warnings = cp.config_status().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.resource == "RequestAuthentication/default/remote"
                && w.field == "spec.jwtRules[0].jwksUri"
                && w.message.contains("keeping")),
        "{warnings:?}"
    );
    // Several refresh periods later, still served.
    tokio::time::sleep(refresh * 3).await;
    assert_eq!(status_for(&k3).await, 200);

    drop(server);
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_jwks_uri_refuses_tokens_with_a_warning() -> Result<()> {
    let k1 = ec_key("k1")?;
    // A port with nothing listening.
    let dead = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let dir = tests::temp_dir("jwt-remote-dead");
    tests::write(&dir, "api.yaml", &config_yaml(port, dead));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let warnings = cp.config_status().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.field == "spec.jwtRules[0].jwksUri"
                && w.message.contains("cannot fetch")
                && w.message.contains("refused")),
        "{warnings:?}"
    );
    let mesh = tests::mesh(&cp, "api-server")?;
    let server = serve(&mesh, listener, &[]).await?;
    let auth = format!("Bearer {}", token(&k1, ISS, json!({})));
    let r = get(
        &client(),
        &format!("http://{}/a", server.addr),
        &[("authorization", auth.as_bytes())],
    )
    .await?;
    assert_eq!(r.0, 401, "{}", r.1);
    drop(server);
    cp.shutdown().await;
    Ok(())
}
