//! End to end over real sockets: VirtualService `headers` and `rewrite` (Istio YAML) → control
//! plane → ADS → the mesh client's router → a loopback backend that echoes what it received.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tests::{client, control_plane, mesh, ready, temp_dir, write};
use tower::{Service, ServiceExt};

/// Answers with the path-and-query it got and its request headers, one `name: value` a line.
async fn echo_backend() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let mut text = format!(
                            "{}\n",
                            req.uri().path_and_query().map_or("", |p| p.as_str())
                        );
                        for (k, v) in req.headers() {
                            text += &format!("{k}: {}\n", v.to_str().unwrap_or("?"));
                        }
                        let resp = Response::builder()
                            .header("x-served-by", "backend")
                            .header("x-internal", "secret")
                            .body(Full::new(Bytes::from(text)))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn config(backend: SocketAddr) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: shop, namespace: test }}
spec:
  hosts: [shop.test]
  ports: [{{ number: 8080, name: http, protocol: HTTP }}]
  resolution: STATIC
  workloadSelector: {{ labels: {{ app: shop }} }}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{ name: shop-1, namespace: test }}
spec:
  address: {ip}
  ports: {{ http: {port} }}
  labels: {{ app: shop }}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: shop, namespace: test }}
spec:
  hosts: [shop.test]
  http:
    - name: legacy
      match: [{{ uri: {{ prefix: /v1/ }} }}]
      rewrite: {{ uri: /api/v2/, authority: catalog.internal }}
      headers:
        request:
          set: {{ x-api-version: "2", x-discount: "10%%" }}
          add: {{ x-trace-tag: legacy }}
          remove: [x-debug]
        response:
          set: {{ x-served-by: mesh }}
          remove: [x-internal]
      route: [{{ destination: {{ host: shop.test }} }}]
    - name: items
      match: [{{ uri: {{ regex: "/items/[0-9]+" }} }}]
      rewrite: {{ uriRegexRewrite: {{ match: "^/items/([0-9]+)$", rewrite: "/catalog/item?id=\\1" }} }}
      route: [{{ destination: {{ host: shop.test }} }}]
    - name: rest
      route: [{{ destination: {{ host: shop.test }} }}]
"#,
        ip = backend.ip(),
        port = backend.port()
    )
}

async fn call(
    c: &mut tests::Client,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<(http::HeaderMap, String)> {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c.ready().await?.call(req.body(Empty::new())?).await?;
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((headers, String::from_utf8(body.to_vec())?))
}

#[tokio::test]
async fn virtual_service_rewrites_and_header_operations_reach_the_backend() -> Result<()> {
    let backend = echo_backend().await?;
    let dir = temp_dir("rewrite");
    write(&dir, "shop.yaml", &config(backend));
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "rewrite-client")?;
    ready(&m, "shop.test:8080").await?;
    let mut c = client(&m);

    let (resp, seen) = call(
        &mut c,
        "http://shop.test:8080/v1/products?page=2",
        &[
            ("x-debug", "1"),
            ("x-api-version", "1"),
            ("x-trace-tag", "caller"),
        ],
    )
    .await?;
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "/api/v2/products?page=2", "{seen}");
    for want in [
        "host: catalog.internal",
        "x-envoy-original-path: /v1/products",
        "x-api-version: 2",
        "x-discount: 10%",
        "x-trace-tag: caller",
        "x-trace-tag: legacy",
    ] {
        assert!(lines.contains(&want), "missing `{want}` in:\n{seen}");
    }
    assert!(!seen.contains("x-debug"), "{seen}");
    assert!(!seen.contains("x-api-version: 1"), "{seen}");
    assert_eq!(resp["x-served-by"], "mesh");
    assert!(!resp.contains_key("x-internal"));

    // uriRegexRewrite with a capture group; the query it adds is kept.
    let (_, seen) = call(&mut c, "http://shop.test:8080/items/42", &[]).await?;
    assert_eq!(seen.lines().next(), Some("/catalog/item?id=42"), "{seen}");

    // A rule without rewrite or headers: untouched.
    let (resp, seen) = call(&mut c, "http://shop.test:8080/v1x", &[("x-debug", "1")]).await?;
    assert_eq!(seen.lines().next(), Some("/v1x"));
    assert!(
        seen.contains("x-debug: 1") && seen.contains("host: shop.test:8080"),
        "{seen}"
    );
    assert_eq!(resp["x-served-by"], "backend");
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unusable_header_operations_are_named() -> Result<()> {
    let backend = echo_backend().await?;
    let dir = temp_dir("rewrite-bad");
    // A formatter value is warned and left out; the rest of the rule still applies.
    let yaml = config(backend).replace(
        "x-trace-tag: legacy",
        "x-client: \"%DOWNSTREAM_REMOTE_ADDRESS%\"",
    );
    write(&dir, "shop.yaml", &yaml);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let warnings: Vec<String> = cp.reload().await?.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("headers.request.add.x-client") && w.contains("formatters")),
        "{warnings:?}"
    );
    let m = mesh(&cp, "rewrite-bad")?;
    ready(&m, "shop.test:8080").await?;
    let (_, seen) = call(&mut client(&m), "http://shop.test:8080/v1/a", &[]).await?;
    assert!(
        seen.starts_with("/api/v2/a\n") && !seen.contains("x-client"),
        "{seen}"
    );
    cp.shutdown().await;
    Ok(())
}

#[test]
fn a_uri_rewrite_on_a_regex_match_is_refused_naming_the_field() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: test }
spec:
  hosts: [shop.test]
  http:
    - match: [{ uri: { regex: "/items/.*" } }]
      rewrite: { uri: /catalog/ }
      route: [{ destination: { host: shop.test } }]
"#;
    let err = mesh_control_plane::load_str("shop.yaml", yaml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.http[0].rewrite.uri") && err.contains("uriRegexRewrite"),
        "{err}"
    );
    let both = yaml.replace(
        "rewrite: { uri: /catalog/ }",
        "rewrite: { uri: /c/, uriRegexRewrite: { match: a, rewrite: b } }",
    );
    let err = mesh_control_plane::load_str("shop.yaml", &both)
        .unwrap_err()
        .to_string();
    assert!(err.contains("only one of"), "{err}");
}
