//! A remote `jwksUri` over **https**, the success path: the control plane verifies the JWKS
//! server against the system trust store (`rustls-native-certs`), here pointed at a test CA with
//! `SSL_CERT_FILE` — set before anything reads it, in a test binary of its own since the store is
//! read once per process. A server whose certificate another CA signed is refused, the failure
//! named on the resource's `jwksUri` field.

mod jwt_support;

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ControlPlane;
use rcgen::{CertificateParams, Issuer, KeyPair, SanType};
use tokio::net::TcpListener;

/// A CA: its issuer and PEM.
fn ca() -> Result<(Issuer<'static, KeyPair>, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), cert.pem()))
}

/// An https server on 127.0.0.1 (IP SAN) answering every request with `body`.
async fn https_server(issuer: &Issuer<'static, KeyPair>, body: String) -> Result<u16> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse()?)];
    let cert = params.signed_by(&key, issuer)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(port)
}

fn config(trusted: u16, untrusted: u16) -> String {
    let rule = |name: &str, port: u16| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
             metadata: {{name: {name}, namespace: default}}\nspec:\n  \
             selector: {{matchLabels: {{app: api}}}}\n  jwtRules:\n  \
             - {{issuer: https://{name}.example, jwksUri: 'https://127.0.0.1:{port}/jwks.json', timeout: 2s}}\n"
        )
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: api, namespace: default}}\n\
         spec: {{address: 127.0.0.1, ports: {{http: 8080}}, labels: {{app: api}}}}\n{}{}",
        rule("trusted", trusted),
        rule("untrusted", untrusted)
    )
}

#[test]
fn https_jwks_is_fetched_from_a_trusted_server_and_refused_from_another() -> Result<()> {
    let (trusted_ca, trusted_pem) = ca()?;
    let (other_ca, _) = ca()?;
    let dir = tests::temp_dir("jwks-https");
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, &trusted_pem)?;
    // Before any thread reads the environment or the trust store.
    std::env::set_var("SSL_CERT_FILE", &bundle);

    tokio::runtime::Runtime::new()?.block_on(async {
        let key = jwt_support::ec_key("tls-key")?;
        let doc = jwt_support::jwks(&[&key]);
        let trusted = https_server(&trusted_ca, doc.clone()).await?;
        let untrusted = https_server(&other_ca, doc).await?;
        tests::write(&dir, "api.yaml", &config(trusted, untrusted));
        let cp = ControlPlane::builder()
            .config_dir(&dir)
            .listen_addr("127.0.0.1:0".parse()?)
            .start()
            .await?;
        // The trusted server's key is inline in the served listener.
        let inbound = cp
            .resources()
            .listener("xds.istio.io/grpc/lds/inbound/127.0.0.1:8080")
            .expect("inbound listener");
        let bytes = prost::Message::encode_to_vec(&inbound);
        let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            has(r#""kid":"tls-key""#),
            "the key fetched over https is inlined"
        );
        // The other server fails TLS verification: a warning on that rule's jwksUri only.
        let warnings = cp.config_status().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert_eq!(
            (w.resource.as_str(), w.field.as_str()),
            (
                "RequestAuthentication/default/untrusted",
                "spec.jwtRules[0].jwksUri"
            )
        );
        assert!(w.message.contains("tls"), "{w:?}");
        cp.shutdown().await;
        anyhow::Ok(())
    })
}
