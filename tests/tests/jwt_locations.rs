//! RequestAuthentication `fromCookies` and `outputClaimToHeaders` end to end: Istio YAML → the
//! real control plane → ADS → the server's inbound `jwt_authn` filter → `AuthzLayer` in front of
//! a real hyper server on 127.0.0.1. Keys are generated at test time and every token is signed
//! by the test.
//!
//! What is shown: a token in the named cookie authenticates (and a bearer token, not a
//! configured location, is not looked at); verified claims land in the headers the handler
//! sees; a client-supplied claim header never survives — with a verified token it is replaced,
//! without one (or with a refused one) it is removed; malformed `cookie` headers hold no token
//! and never break the server; invalid `outputClaimToHeaders` headers are refused at load time
//! naming the resource and field while the previous configuration keeps serving.

mod jwt_support;

use anyhow::Result;
use jwt_support::{client, ec_key, get, jwks, serve, token, Key, STEP};
use serde_json::json;
use tokio::net::TcpListener;

const ISS: &str = "https://cookie.example";

fn config_yaml(port: u16, key: &Key, claim_header: &str) -> String {
    let jwks = jwks(&[key]);
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: web}}}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: cookie-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  jwtRules:
  - issuer: {ISS}
    jwks: '{jwks}'
    fromCookies: [session]
    outputClaimToHeaders:
    - {{header: {claim_header}, claim: sub}}
    - {{header: x-jwt-tier, claim: profile.tier}}
    - {{header: x-jwt-age, claim: profile.age}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: web, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  rules:
  - to: [{{operation: {{paths: ["/public/*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/secure/*"]}}}}]
"#
    )
}

#[tokio::test]
async fn cookie_tokens_and_claims_to_headers_over_ads() -> Result<()> {
    let key = ec_key("web-1")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let dir = tests::temp_dir("jwt-cookies");
    tests::write(&dir, "web.yaml", &config_yaml(port, &key, "x-jwt-sub"));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "web-server")?;
    let server = serve(&mesh, listener, &["x-jwt-sub", "x-jwt-tier", "x-jwt-age"]).await?;
    let client = client();
    let url = |p: &str| format!("http://{}{p}", server.addr);
    let good = token(&key, ISS, json!({"profile": {"tier": "gold", "age": 42}}));
    let cookie = format!("theme=dark; session={good}; lang=en");
    let who = format!("who={ISS}/alice");

    // The cookie authenticates; the claims land in the headers, nested ones by `.` path.
    let r = get(&client, &url("/secure/a"), &[("cookie", cookie.as_bytes())]).await?;
    assert_eq!(
        r,
        (
            200,
            format!("{who} x-jwt-sub=alice x-jwt-tier=gold x-jwt-age=42")
        )
    );

    // A forged claim header does not survive a verified token: it is replaced.
    let forged_headers: [(&str, &[u8]); 3] = [
        ("cookie", cookie.as_bytes()),
        ("x-jwt-sub", b"mallory"),
        ("x-jwt-tier", b"platinum"),
    ];
    let r = get(&client, &url("/secure/a"), &forged_headers).await?;
    assert_eq!(
        r,
        (
            200,
            format!("{who} x-jwt-sub=alice x-jwt-tier=gold x-jwt-age=42")
        )
    );
    // Nor does it without a token: the filter removes it from every request.
    let r = get(&client, &url("/public/a"), &forged_headers[1..]).await?;
    assert_eq!(
        r,
        (
            200,
            "who=anonymous x-jwt-sub= x-jwt-tier= x-jwt-age=".into()
        )
    );
    // A token without the nested claim: that header is absent, not forged.
    let plain = token(&key, ISS, json!({}));
    let r = get(
        &client,
        &url("/public/a"),
        &[
            ("cookie", format!("session={plain}").as_bytes()),
            ("x-jwt-tier", b"platinum"),
        ],
    )
    .await?;
    assert_eq!(
        r,
        (200, format!("{who} x-jwt-sub=alice x-jwt-tier= x-jwt-age="))
    );

    // A bearer token is not a configured location here: anonymous, so /secure is denied.
    let bearer = format!("Bearer {good}");
    let r = get(
        &client,
        &url("/secure/a"),
        &[("authorization", bearer.as_bytes())],
    )
    .await?;
    assert_eq!(r.0, 403, "{}", r.1);
    // A forged token in the cookie: 401, and the forged header is gone from nothing served.
    let forger = ec_key("web-1")?;
    let forged = token(&forger, ISS, json!({}));
    let r = get(
        &client,
        &url("/public/a"),
        &[("cookie", format!("session={forged}").as_bytes())],
    )
    .await?;
    assert_eq!(r.0, 401, "{}", r.1);
    assert!(
        r.1.contains("bad_signature") || r.1.contains("signature"),
        "{}",
        r.1
    );

    // Malformed cookie headers hold no token: anonymous, never a failure of the server.
    for bad in [
        &b"session"[..],
        b";;;=;",
        b"session=",
        b"=session",
        b"session=\"\"",
        b"\xff\xfe=\x80",
    ] {
        let r = get(&client, &url("/public/a"), &[("cookie", bad)]).await?;
        assert_eq!(
            r,
            (
                200,
                "who=anonymous x-jwt-sub= x-jwt-tier= x-jwt-age=".into()
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // Non-text in the named cookie is a malformed token, refused.
    let r = get(
        &client,
        &url("/public/a"),
        &[("cookie", b"session=\xff.\xfe.x")],
    )
    .await?;
    assert_eq!(r.0, 401, "{}", r.1);

    // Invalid header names in outputClaimToHeaders: refused naming resource and field; the
    // running configuration keeps serving.
    for bad in [":authority", "x_sub", "x sub"] {
        let e = cp
            .load_yaml("web.yaml", &config_yaml(port, &key, &format!("'{bad}'")))
            .expect_err(bad);
        let msg = e.to_string();
        assert!(
            msg.contains("RequestAuthentication/default/cookie-jwt")
                && msg.contains("spec.jwtRules[0].outputClaimToHeaders[0].header"),
            "{msg}"
        );
    }
    let r = get(&client, &url("/secure/a"), &[("cookie", cookie.as_bytes())]).await?;
    assert_eq!(r.0, 200, "{}", r.1);
    // A good change (another claim header) reaches the server over ADS.
    cp.load_yaml("web.yaml", &config_yaml(port, &key, "x-user"))?;
    tests::eventually(STEP, || async {
        matches!(
            get(&client, &url("/secure/a"), &[("cookie", cookie.as_bytes())]).await,
            Ok((200, body)) if body.contains("x-jwt-sub= ")
        )
    })
    .await?;

    drop(server);
    cp.shutdown().await;
    Ok(())
}
