//! Shared by the JWT end-to-end tests: EC keys made at test time, tokens signed with them, and
//! a plain-HTTP server on 127.0.0.1 behind an `AuthzLayer` that follows the inbound listener
//! the control plane serves.

#![allow(dead_code)]

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
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
pub const STEP: Duration = Duration::from_secs(10);

/// An ES256 signing key and its public JWK.
pub struct Key {
    pub kid: String,
    enc: EncodingKey,
    pub jwk: Value,
}

/// A fresh P-256 key named `kid`.
pub fn ec_key(kid: &str) -> Result<Key> {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("ec keygen"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("ec key"))?;
    let point = pair.public_key().as_ref();
    Ok(Key {
        kid: kid.into(),
        enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    })
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>()}).to_string()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `claims` signed by `key` (its kid in the header), with `iss`, `sub: alice`, and a validity of
/// 10 minutes from now added.
pub fn token(key: &Key, iss: &str, mut claims: Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    let t = now();
    claims["iss"] = json!(iss);
    claims["sub"] = json!("alice");
    claims["iat"] = json!(t);
    claims["exp"] = json!(t + 600);
    jsonwebtoken::encode(&h, &claims, &key.enc).expect("sign")
}

/// A served server: aborted on drop.
pub struct Server {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _policy: InboundPolicy,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves on `listener` behind the inbound policy the control plane sends `mesh` for it. The
/// handler answers `who=<principal|anonymous> <header>=<values>` for each of `echo`'s headers
/// (values joined with `,`, empty when absent).
pub async fn serve(
    mesh: &mesh_core::mesh::Mesh,
    listener: TcpListener,
    echo: &'static [&'static str],
) -> Result<Server> {
    let addr = listener.local_addr()?;
    let policy = InboundPolicy::start(
        mesh,
        &format!("grpc/server?xds.resource.listening_address={addr}"),
    );
    let chain = policy.ready(STEP).await?;
    anyhow::ensure!(chain.jwt().is_some(), "the listener carries jwt_authn");
    let layer = AuthzLayer::new(AuthzChain::default()).with_clock(JwtClock::system());
    layer.handle().follow(policy.receiver());
    let app = tower::service_fn(move |req: Request<hyper::body::Incoming>| async move {
        let mut out = req
            .extensions()
            .get::<DynamicMetadata>()
            .and_then(|m| m.0["istio_authn"]["request.auth.principal"].as_str())
            .map_or("who=anonymous".to_string(), |p| format!("who={p}"));
        for h in echo {
            let values: Vec<&str> = req
                .headers()
                .get_all(*h)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"))
                .collect();
            out.push_str(&format!(" {h}={}", values.join(",")));
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
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
    Ok(Server {
        addr,
        task,
        _policy: policy,
    })
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `uri` with `headers` (raw bytes allowed); `(status, body)`.
pub async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &str,
    headers: &[(&str, &[u8])],
) -> Result<(u16, String)> {
    let mut req = Request::get(uri);
    for (n, v) in headers {
        req = req.header(*n, http::HeaderValue::from_bytes(v)?);
    }
    let resp = tokio::time::timeout(STEP, client.request(req.body(Empty::new())?))
        .await
        .context("timed out")??;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
