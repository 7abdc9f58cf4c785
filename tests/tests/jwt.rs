//! RequestAuthentication end to end over real sockets: Istio YAML (RequestAuthentication with an
//! RS256 and an ES256 issuer, AuthorizationPolicies on request principals and claims) → the real
//! control plane → ADS → the server's inbound Listener (`jwt_authn` then RBAC) followed by
//! `InboundPolicy` → `AuthzLayer` in front of a real hyper server on 127.0.0.1, and the same
//! listener enforced by `XdsServer` for a tonic client.
//!
//! Keys are generated at test time (RSA-2048 with the `rsa` crate, P-256 with ring) and every
//! token is signed by the test: nothing fixed could pass by accident. The HTTP server's JWT clock
//! is a manual [`JwtClock`], so expiry is tested by moving it, not by sleeping.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
use examples::greeter::{GreeterClient, GreeterServer, GreeterService, HelloRequest};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mesh_core::authz::{AuthzChain, DynamicMetadata, InboundPolicy};
use mesh_tower::authz::{AuthzLayer, ConnectionInfo, JwtClock, WithConnectionInfo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// Bound on every network step.
const STEP: Duration = Duration::from_secs(10);
const RSA_ISS: &str = "https://rsa.example";
const EC_ISS: &str = "https://ec.example";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A signing key and its public JWK.
struct Key {
    alg: Algorithm,
    kid: &'static str,
    enc: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &'static str) -> Result<Key> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    Ok(Key {
        alg: Algorithm::RS256,
        kid,
        enc: EncodingKey::from_rsa_der(k.to_pkcs1_der()?.as_bytes()),
        jwk: json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                    "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())}),
    })
}

fn ec_key(kid: &'static str) -> Result<Key> {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("ec keygen"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("ec key"))?;
    let point = pair.public_key().as_ref();
    Ok(Key {
        alg: Algorithm::ES256,
        kid,
        enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    })
}

struct Keys {
    rsa: Key,
    ec: Key,
    /// Same kid and type as `rsa`, not in any JWKS: a forger's key.
    forger: Key,
}

impl Keys {
    fn generate() -> Result<Keys> {
        Ok(Keys {
            rsa: rsa_key("rsa-1")?,
            ec: ec_key("ec-1")?,
            forger: rsa_key("rsa-1")?,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token from `key` for `iss` / `aud`, issued at `iat`, valid 10 minutes, with `groups`.
fn token(key: &Key, iss: &str, aud: &str, iat: u64, groups: &[&str]) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.into());
    let claims = json!({"iss": iss, "sub": "alice", "aud": aud, "iat": iat,
                        "exp": iat + 600, "groups": groups});
    jsonwebtoken::encode(&h, &claims, &key.enc).expect("sign")
}

/// The workload at `port`, its RequestAuthentication (RS256 issuer with audience `audience`,
/// ES256 issuer) and its policies: `/public/*` open to all, `/secure/*` to any request
/// principal, `/admin/*` to tokens whose `groups` claim holds `admin`; `/greet/*` and the
/// greeter's gRPC paths to any request principal.
fn config_yaml(port: u16, keys: &Keys, audience: &str) -> String {
    let rsa_jwks = json!({"keys": [keys.rsa.jwk]}).to_string();
    let ec_jwks = json!({"keys": [keys.ec.jwk]}).to_string();
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: api}}}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
  - issuer: {RSA_ISS}
    audiences: [{audience}]
    jwks: '{rsa_jwks}'
  - issuer: {EC_ISS}
    jwks: '{ec_jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: default}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  rules:
  - to: [{{operation: {{paths: ["/public/*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: ["/secure/*", "/helloworld.Greeter/*"]}}}}]
  - to: [{{operation: {{paths: ["/admin/*"]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: ["admin"]}}]
"#
    )
}

struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Plain-HTTP server answering `hello <request principal | anonymous>` behind `layer`.
fn serve(listener: TcpListener, layer: AuthzLayer) -> Result<Server> {
    let addr = listener.local_addr()?;
    let app = tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
        let who = req
            .extensions()
            .get::<DynamicMetadata>()
            .and_then(|m| m.0["istio_authn"]["request.auth.principal"].as_str())
            .unwrap_or("anonymous")
            .to_owned();
        // The verified token is not forwarded (forwardOriginalToken: false).
        let forwarded = req.headers().contains_key("authorization");
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
            "hello {who} forwarded={forwarded}"
        )))))
    });
    let svc = layer.layer(app);
    let task = tokio::spawn(async move {
        while let Ok((tcp, remote)) = listener.accept().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                let Ok(local) = tcp.local_addr() else { return };
                let tower_svc = hyper::service::service_fn(move |req| svc.clone().oneshot(req));
                let hyper_svc =
                    WithConnectionInfo::new(tower_svc, ConnectionInfo { local, remote });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), hyper_svc)
                    .await;
            });
        }
    });
    Ok(Server { addr, task })
}

struct Reply {
    status: u16,
    mesh_error: String,
    www_authenticate: String,
    body: String,
}

async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &str,
    token: Option<&str>,
) -> Result<Reply> {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = tokio::time::timeout(STEP, client.request(req.body(Empty::new())?))
        .await
        .context("timed out")??;
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .unwrap_or_default()
    };
    let (mesh_error, www_authenticate) = (header("x-mesh-error"), header("www-authenticate"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        mesh_error,
        www_authenticate,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn assert_refused(r: &Reply, provider: &str, reason: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.mesh_error,
        format!(
            "kind=unauthenticated; filter=envoy.filters.http.jwt_authn; provider={provider}; \
             reason={reason}"
        )
    );
    assert!(
        r.www_authenticate
            .starts_with("Bearer realm=\"http://127.0.0.1:")
            && r.www_authenticate.ends_with(", error=\"invalid_token\""),
        "{}",
        r.www_authenticate
    );
}

#[tokio::test]
async fn request_authentication_and_principal_policies_over_ads() -> Result<()> {
    let keys = Keys::generate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dir = tests::temp_dir("jwt-ads");
    tests::write(&dir, "api.yaml", &config_yaml(addr.port(), &keys, "api"));
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let mesh = tests::mesh(&cp, "api-server")?;
    let policy = InboundPolicy::start(
        &mesh,
        &format!("grpc/server?xds.resource.listening_address={addr}"),
    );
    let chain = policy.ready(STEP).await?;
    assert!(chain.jwt().is_some(), "the listener carries jwt_authn");
    let t0 = now();
    let clock = JwtClock::manual(t0);
    let layer = AuthzLayer::new(AuthzChain::default()).with_clock(clock.clone());
    layer.handle().follow(policy.receiver());
    let server = serve(listener, layer)?;
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let url = |p: &str| format!("http://{}{p}", server.addr);

    // Valid RS256 and ES256 tokens: served, the request principal is `iss/sub`, the token
    // header is not forwarded.
    let rs = token(&keys.rsa, RSA_ISS, "api", t0, &["dev"]);
    let r = get(&client, &url("/secure/a"), Some(&rs)).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, format!("hello {RSA_ISS}/alice forwarded=false"));
    let es = token(&keys.ec, EC_ISS, "anything", t0, &["dev"]);
    let r = get(&client, &url("/secure/a"), Some(&es)).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, format!("hello {EC_ISS}/alice forwarded=false"));

    // Forged signature (same kid, a key not in the JWKS): 401 bad_signature.
    let forged = token(&keys.forger, RSA_ISS, "api", t0, &["admin"]);
    let r = get(&client, &url("/secure/a"), Some(&forged)).await?;
    assert_refused(&r, "origins-0", "bad_signature");
    assert!(r.body.contains("signature"), "{}", r.body);
    // Wrong audience, wrong issuer: 401 naming why.
    let wrong_aud = token(&keys.rsa, RSA_ISS, "other-api", t0, &["dev"]);
    assert_refused(
        &get(&client, &url("/secure/a"), Some(&wrong_aud)).await?,
        "origins-0",
        "audience",
    );
    let wrong_iss = token(&keys.rsa, "https://evil.example", "api", t0, &["dev"]);
    assert_refused(
        &get(&client, &url("/public/a"), Some(&wrong_iss)).await?,
        "origins-0",
        "issuer",
    );
    // An invalid token is refused even where no token is needed.
    assert_refused(
        &get(&client, &url("/public/a"), Some(&forged)).await?,
        "origins-0",
        "bad_signature",
    );

    // Expired: the same valid token once the clock passes exp + 60 s of skew.
    clock.set(t0 + 600 + 60);
    assert_eq!(
        get(&client, &url("/secure/a"), Some(&rs)).await?.status,
        200
    );
    clock.set(t0 + 600 + 61);
    assert_refused(
        &get(&client, &url("/secure/a"), Some(&rs)).await?,
        "origins-0",
        "expired",
    );
    clock.set(t0);

    // No token: passes authentication; served where no policy needs a principal, 403 where the
    // ALLOW policy requires requestPrincipals.
    let r = get(&client, &url("/public/a"), None).await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "hello anonymous forwarded=false")
    );
    let r = get(&client, &url("/secure/a"), None).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.mesh_error.starts_with("kind=permission_denied"),
        "{}",
        r.mesh_error
    );

    // A claims condition: `groups` must hold `admin`.
    let admin = token(&keys.ec, EC_ISS, "x", t0, &["dev", "admin"]);
    assert_eq!(
        get(&client, &url("/admin/a"), Some(&admin)).await?.status,
        200
    );
    assert_eq!(get(&client, &url("/admin/a"), Some(&es)).await?.status, 403);
    assert_eq!(get(&client, &url("/admin/a"), None).await?.status, 403);

    // A config change (the audience) reaches the running server over ADS.
    cp.load_yaml("api.yaml", &config_yaml(addr.port(), &keys, "api-v2"))?;
    tests::eventually(STEP, || async {
        matches!(get(&client, &url("/secure/a"), Some(&rs)).await, Ok(r) if r.status == 401)
    })
    .await?;
    assert_refused(
        &get(&client, &url("/secure/a"), Some(&rs)).await?,
        "origins-0",
        "audience",
    );
    let v2 = token(&keys.rsa, RSA_ISS, "api-v2", t0, &[]);
    assert_eq!(
        get(&client, &url("/secure/a"), Some(&v2)).await?.status,
        200
    );

    drop(server);
    drop(policy);
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn xds_server_enforces_request_authentication_for_grpc() -> Result<()> {
    let keys = Keys::generate()?;
    let dir = tests::temp_dir("jwt-xds-server");
    let cp = tests::control_plane(&dir, "127.0.0.1:0").await?;
    let greeter =
        GreeterServer::new(GreeterService::new("v1").map_err(|s| anyhow::anyhow!("{s}"))?);
    let server = mesh_grpc::XdsServer::builder(tests::mesh(&cp, "greeter-server")?)
        .drain_timeout(STEP)
        .bind("127.0.0.1:0".parse()?, greeter)
        .await?;
    let addr = server.local_addr();
    cp.load_yaml("api.yaml", &config_yaml(addr.port(), &keys, "api"))?;
    server.serving(STEP).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(STEP)
        .connect_lazy();
    let mut client = GreeterClient::new(channel);
    let call = |t: Option<String>| {
        let mut req = tonic::Request::new(HelloRequest { name: "t".into() });
        if let Some(t) = t {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    };
    let t0 = now();
    let ok = tokio::time::timeout(
        STEP,
        client.say_hello(call(Some(token(&keys.ec, EC_ISS, "x", t0, &[])))),
    )
    .await??;
    assert!(!ok.into_inner().message.is_empty());
    let forged = token(&keys.forger, RSA_ISS, "api", t0, &[]);
    let status = tokio::time::timeout(STEP, client.say_hello(call(Some(forged))))
        .await?
        .expect_err("forged");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("origins-0"), "{status:?}");
    let expired = token(&keys.rsa, RSA_ISS, "api", t0 - 3600, &[]);
    let status = tokio::time::timeout(STEP, client.say_hello(call(Some(expired))))
        .await?
        .expect_err("expired");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    let status = tokio::time::timeout(STEP, client.say_hello(call(None)))
        .await?
        .expect_err("no principal");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    server.shutdown().await;
    cp.shutdown().await;
    Ok(())
}
