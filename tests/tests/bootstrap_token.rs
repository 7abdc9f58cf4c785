//! First SVIDs from bootstrap tokens, end to end on 127.0.0.1 with real TLS: the control plane's
//! CA endpoint accepts `authorization: Bearer <token>` from a caller without a client
//! certificate and signs the workload's own CSR for the token's identity; the workload keeps its
//! key, then renews over mTLS. Bad tokens are refused with a status naming why, and neither
//! tokens nor keys reach the logs or `Debug` output.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ca::server::{control_plane_id, DEFAULT_CONTROL_PLANE_NAMESPACE};
use mesh_control_plane::ca::token::{TokenAuthority, TokenClaims, TOKEN_KEY_FILE};
use mesh_control_plane::ca::{Ca, SpiffeId};
use mesh_control_plane::{ControlPlane, ControlPlaneHandle};
use mesh_grpc::identity::{
    create_certificate, create_certificate_with_token, BootstrapError, BootstrapToken,
    IdentityBootstrap,
};
use mesh_tower::tls::{CertificateRequest, MeshTlsConnector, WorkloadIdentity};
use prost::Message;
use rustls::pki_types::pem::PemObject;

const TD: &str = "cluster.local";

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa).unwrap()
}

fn cp_id() -> SpiffeId {
    control_plane_id(TD, DEFAULT_CONTROL_PLANE_NAMESPACE).unwrap()
}

async fn control_plane(
    ca: Arc<Ca>,
    tokens: Option<Arc<TokenAuthority>>,
) -> Result<ControlPlaneHandle> {
    let mut builder = ControlPlane::builder().ca_server(ca, "127.0.0.1:0".parse()?);
    if let Some(tokens) = tokens {
        builder = builder.bootstrap_tokens(tokens);
    }
    Ok(builder.start().await?)
}

fn bootstrap(cp: &ControlPlaneHandle, ca: &Ca, token: &str) -> IdentityBootstrap {
    IdentityBootstrap::new(
        cp.ca_addr().unwrap().to_string(),
        cp.ca_identity().unwrap().as_str(),
        ca.trust_bundle_pem(),
        BootstrapToken::new(token).unwrap(),
    )
}

fn refusal(err: &BootstrapError) -> (tonic::Code, &str) {
    match err {
        BootstrapError::Refused { code, message, .. } => (*code, message.as_str()),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Everything traced at TRACE on this thread (current-thread runtime: the control plane and
/// the workload log here). Every test installs one, so no callsite is cached as disabled.
fn capture() -> (LogBuf, tracing::subscriber::DefaultGuard) {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Token → first SVID (key generated in the workload) → renewal over mTLS; the token is
/// single-use, and it never shows in logs or `Debug`.
#[tokio::test]
async fn token_bootstraps_a_first_svid_that_then_renews_over_mtls() -> Result<()> {
    let (logs, _guard) = capture();
    let ca = Arc::new(Ca::generate(TD)?.with_default_ttl(Duration::from_secs(600)));
    let tokens = Arc::new(TokenAuthority::generate(&cp_id())?);
    let cp = control_plane(ca.clone(), Some(tokens.clone())).await?;

    let (token, claims) = tokens.mint(&id("greeter"), Duration::from_secs(300))?;
    // Handed over as files, as `mesh-control-plane token --out` and the CA directory have them.
    let dir = std::env::temp_dir().join(format!("mesh-bootstrap-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("ca-cert.pem"), ca.trust_bundle_pem())?;
    std::fs::write(dir.join("token"), format!("{}\n", token.expose()))?;
    let boot = IdentityBootstrap::from_files(
        cp.ca_addr().unwrap().to_string(),
        cp.ca_identity().unwrap().as_str(),
        dir.join("ca-cert.pem"),
        dir.join("token"),
    )?
    .expect_identity(id("greeter").as_str());
    std::fs::remove_dir_all(&dir)?;
    let identity = boot.run().await?;
    assert_eq!(identity.spiffe_id(), id("greeter").as_str());
    let lifetime = identity.not_after().duration_since(SystemTime::now())?;
    assert!(
        lifetime > Duration::from_secs(500) && lifetime <= Duration::from_secs(600),
        "the ca's default ttl: {lifetime:?}"
    );

    // From now on the SVID renews itself over mTLS, no token involved.
    let first_serial = identity.serial();
    boot.renewer(identity.clone()).renew_once().await?;
    assert_ne!(identity.serial(), first_serial, "renewed");
    assert_eq!(identity.spiffe_id(), id("greeter").as_str());

    // Single use: the same token again is refused, naming why.
    let err = boot.run().await.unwrap_err();
    let (code, message) = refusal(&err);
    assert_eq!(code, tonic::Code::Unauthenticated, "{err}");
    assert!(message.contains("already used"), "{err}");

    // Nothing secret in Debug output or logs.
    let printed = format!("{boot:?} {boot:#?} {token:?} {tokens:?} {identity:?} {err:?}");
    assert!(!printed.contains(token.expose()), "{printed}");
    let signature = token.expose().rsplit('.').next().unwrap();
    cp.shutdown().await;
    let logs = logs.text();
    assert!(
        logs.contains("bootstrapped workload identity"),
        "capture works"
    );
    assert!(
        logs.contains("signed csr") && logs.contains("auth=\"token\""),
        "{logs}"
    );
    assert!(
        logs.contains(&claims.jti),
        "the jti (not secret) identifies the token"
    );
    assert!(!logs.contains(signature), "token logged");
    assert!(!printed.contains(signature), "token in Debug");
    assert!(!logs.contains("PRIVATE KEY"), "private key logged");
    Ok(())
}

/// Signs `claims` with the key in `dir/token-key.pem`, like a party holding the real key would.
fn sign_with_key_file(dir: &std::path::Path, claims: &TokenClaims) -> Result<String> {
    let pem = std::fs::read_to_string(dir.join(TOKEN_KEY_FILE))?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&der),
    )?)
}

async fn expect_refused(
    cp: &ControlPlaneHandle,
    ca: &Ca,
    token: &str,
    code: tonic::Code,
    why: &str,
) {
    let err = bootstrap(cp, ca, token).run().await.unwrap_err();
    let (got, message) = refusal(&err);
    assert_eq!(got, code, "{why}: {err}");
    assert!(message.contains(why), "{why}: {err}");
}

#[tokio::test]
async fn bad_tokens_are_refused_naming_why() -> Result<()> {
    let (logs, _guard) = capture();
    let dir = std::env::temp_dir().join(format!("mesh-bootstrap-{}", std::process::id()));
    let ca = Arc::new(Ca::generate(TD)?);
    let tokens = Arc::new(TokenAuthority::load_or_create(&dir, &cp_id())?);
    let cp = control_plane(ca.clone(), Some(tokens.clone())).await?;
    let now = SystemTime::now();
    let mut sent: Vec<String> = Vec::new();
    // Expired (beyond the one-minute skew).
    let (expired, _) = tokens.mint_with_times(
        &id("greeter"),
        now - Duration::from_secs(3600),
        now - Duration::from_secs(120),
    )?;
    sent.push(expired.expose().into());
    expect_refused(
        &cp,
        &ca,
        expired.expose(),
        tonic::Code::Unauthenticated,
        "expired",
    )
    .await;

    // Forged: a well-formed token signed by another key.
    let (forged, _) =
        TokenAuthority::generate(&cp_id())?.mint(&id("greeter"), Duration::from_secs(60))?;
    sent.push(forged.expose().into());
    expect_refused(
        &cp,
        &ca,
        forged.expose(),
        tonic::Code::Unauthenticated,
        "signature does not verify",
    )
    .await;

    // The right key, the wrong audience (a token meant for something else).
    let mut claims = tokens.mint(&id("greeter"), Duration::from_secs(60))?.1;
    claims.aud = "kubernetes.default.svc".into();
    let wrong_aud = sign_with_key_file(&dir, &claims)?;
    expect_refused(
        &cp,
        &ca,
        &wrong_aud,
        tonic::Code::Unauthenticated,
        "audience is not mesh-ca",
    )
    .await;
    sent.push(wrong_aud);

    // Garbage.
    expect_refused(
        &cp,
        &ca,
        "not-a-jwt",
        tonic::Code::Unauthenticated,
        "malformed",
    )
    .await;

    // A valid token for an identity outside the CA's trust domain.
    let foreign = SpiffeId::new("other.local", "default", "greeter")?;
    let (outside, _) = tokens.mint(&foreign, Duration::from_secs(60))?;
    sent.push(outside.expose().into());
    expect_refused(
        &cp,
        &ca,
        outside.expose(),
        tonic::Code::PermissionDenied,
        "outside trust domain cluster.local",
    )
    .await;

    // No token and no certificate.
    let connector = || {
        MeshTlsConnector::server_authenticated(
            ca.trust_bundle_pem().as_bytes(),
            vec![cp_id().to_string()],
        )
    };
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cp.ca_addr().unwrap()))?
            .connect_with_connector(connector()?)
            .await?;
    let req = CertificateRequest::generate()?;
    let status = create_certificate(channel.clone(), req.csr_pem(), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("no client certificate and no bootstrap token"),
        "{status:?}"
    );

    // A certificate takes precedence: one from another CA is refused even next to a valid
    // token, and that token stays unused.
    let (good, _) = tokens.mint(&id("greeter"), Duration::from_secs(60))?;
    let other = Ca::generate(TD)?;
    let (svid, key) = other.issue(&id("greeter"), None)?;
    let foreign_cert = WorkloadIdentity::from_pem(
        svid.cert_chain_pem.as_bytes(),
        key.expose().as_bytes(),
        ca.trust_bundle_pem().as_bytes(),
    )?;
    let mtls =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cp.ca_addr().unwrap()))?
            .connect_with_connector(MeshTlsConnector::new(
                foreign_cert,
                vec![cp_id().to_string()],
            ))
            .await?;
    let good_token = BootstrapToken::new(good.expose())?;
    let status = create_certificate_with_token(mtls, req.csr_pem(), None, &good_token)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("not issued by this ca"),
        "{status:?}"
    );
    // A CSR that is not one is INVALID_ARGUMENT and does not burn the token either.
    let status = create_certificate_with_token(channel, "garbage", None, &good_token)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let identity = bootstrap(&cp, &ca, good.expose()).run().await?;
    assert_eq!(identity.spiffe_id(), id("greeter").as_str());

    // A workload expecting another identity than the token's refuses the result.
    let (mine, _) = tokens.mint(&id("greeter"), Duration::from_secs(60))?;
    let err = bootstrap(&cp, &ca, mine.expose())
        .expect_identity(id("admin").as_str())
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BootstrapError::IdentityMismatch { got, .. } if got == id("greeter").as_str()),
        "{err}"
    );

    // The server pins: a bootstrap expecting another control-plane identity does not connect.
    let (t, _) = tokens.mint(&id("greeter"), Duration::from_secs(60))?;
    let err = IdentityBootstrap::new(
        cp.ca_addr().unwrap().to_string(),
        "spiffe://cluster.local/ns/istio-system/sa/impostor",
        ca.trust_bundle_pem(),
        BootstrapToken::new(t.expose())?,
    )
    .run()
    .await
    .unwrap_err();
    assert!(matches!(err, BootstrapError::Connect { .. }), "{err}");
    cp.shutdown().await;

    // A control plane without bootstrap tokens says so.
    let plain = control_plane(ca.clone(), None).await?;
    let err = bootstrap(&plain, &ca, t.expose()).run().await.unwrap_err();
    let (code, message) = refusal(&err);
    assert_eq!(code, tonic::Code::Unauthenticated);
    assert!(message.contains("not enabled"), "{err}");
    plain.shutdown().await;
    std::fs::remove_dir_all(&dir)?;

    let logs = logs.text();
    assert!(logs.contains("csr refused"), "refusals are logged");
    for token in sent
        .iter()
        .chain([good.expose().to_owned(), t.expose().to_owned()].iter())
    {
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!logs.contains(sig), "a token reached the logs");
        }
    }
    Ok(())
}

/// The CA signs for the token's identity; whatever the CSR asks for is ignored.
#[tokio::test]
async fn the_identity_is_the_tokens_not_the_csrs() -> Result<()> {
    let _capture = capture();
    let ca = Arc::new(Ca::generate(TD)?);
    let tokens = Arc::new(TokenAuthority::generate(&cp_id())?);
    let cp = control_plane(ca.clone(), Some(tokens.clone())).await?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["admin.example".to_owned()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(id("admin").as_str().try_into()?));
    let csr = params.serialize_request(&key)?.pem()?;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cp.ca_addr().unwrap()))?
            .connect_with_connector(MeshTlsConnector::server_authenticated(
                ca.trust_bundle_pem().as_bytes(),
                vec![cp_id().to_string()],
            )?)
            .await?;
    let (token, _) = tokens.mint(&id("greeter"), Duration::from_secs(60))?;
    let chain =
        create_certificate_with_token(channel, &csr, None, &BootstrapToken::new(token.expose())?)
            .await?;
    let (root, leaf) = chain.split_last().context("empty chain")?;
    let identity = WorkloadIdentity::from_pem(
        leaf.concat().as_bytes(),
        key.serialize_pem().as_bytes(),
        root.as_bytes(),
    )?;
    assert_eq!(identity.spiffe_id(), id("greeter").as_str());
    cp.shutdown().await;
    Ok(())
}

/// What the workload puts on the wire: a TLS server standing in for the CA (its identity and
/// chain issued by the real CA) records the HTTP/2 request and answers with the real CA's
/// signature. The request is the CSR (and the lifetime) — no key, no extra field — and the
/// token travels only in `authorization`.
#[tokio::test]
async fn the_request_carries_only_the_csr() -> Result<()> {
    let _capture = capture();
    let ca = Arc::new(Ca::generate(TD)?);
    let (serving, serving_key) = ca.issue(&cp_id(), None)?;
    let chain =
        rustls::pki_types::CertificateDer::pem_slice_iter(serving.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(serving_key.expose().as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(mesh_tower::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    type Seen = Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>;
    let seen: Seen = Arc::default();
    let server = {
        let (seen, ca) = (seen.clone(), ca.clone());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (seen, ca) = (seen.clone(), ca.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        seen.lock().unwrap().push((parts.headers, body.clone()));
                        let msg =
                            mesh_control_plane::ca::server::proto::IstioCertificateRequest::decode(
                                &body[5..],
                            )
                            .unwrap();
                        let svid = ca.sign_csr(&msg.csr, &id("greeter"), None).unwrap();
                        let answer =
                            mesh_control_plane::ca::server::proto::IstioCertificateResponse {
                                cert_chain: vec![svid.cert_chain_pem, svid.trust_bundle_pem],
                            }
                            .encode_to_vec();
                        let mut framed = vec![0u8];
                        framed.extend_from_slice(&(answer.len() as u32).to_be_bytes());
                        framed.extend_from_slice(&answer);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = futures::stream::iter([
                            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(framed))),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ]);
                        let mut resp = http::Response::new(http_body_util::StreamBody::new(frames));
                        resp.headers_mut()
                            .insert("content-type", "application/grpc".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        })
    };

    let token = "header.payload.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
    let identity = IdentityBootstrap::new(
        addr.to_string(),
        cp_id().as_str(),
        ca.trust_bundle_pem(),
        BootstrapToken::new(token)?,
    )
    .requested_ttl(Duration::from_secs(300))
    .run()
    .await?;
    assert_eq!(identity.spiffe_id(), id("greeter").as_str());
    server.abort();

    let seen = seen.lock().unwrap();
    let [(headers, body)] = &seen[..] else {
        panic!("one request expected, got {}", seen.len());
    };
    assert_eq!(
        headers.get("authorization").map(|v| v.to_str().unwrap()),
        Some(format!("Bearer {token}").as_str())
    );
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains("PRIVATE"), "{name}: {value}");
        assert!(
            name == "authorization" || !value.contains(token),
            "{name} carries the token"
        );
    }
    assert_eq!(body[0], 0, "uncompressed grpc frame");
    let len = u32::from_be_bytes(body[1..5].try_into()?) as usize;
    assert_eq!(body.len(), 5 + len, "one message");
    let msg = mesh_control_plane::ca::server::proto::IstioCertificateRequest::decode(&body[5..])?;
    // Nothing beyond the known fields: re-encoding gives back every byte sent.
    assert_eq!(msg.encoded_len(), len, "no unknown fields in the request");
    assert!(msg.metadata.is_none());
    assert_eq!(msg.validity_duration, 300);
    assert!(
        msg.csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{}",
        msg.csr
    );
    assert_eq!(
        msg.csr.matches("-----BEGIN").count(),
        1,
        "the csr and nothing else"
    );
    assert!(!String::from_utf8_lossy(body).contains("PRIVATE"));
    Ok(())
}
