//! The JWKS cache against real HTTP servers on 127.0.0.1 (hyper), and a real TLS server whose
//! certificate no system root signs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::*;
use crate::source::load_str;

const JWKS_A: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","y":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}]}"#;
const JWKS_B: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"b","x":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","y":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}]}"#;

/// What the test server answers: status and body (and an optional delay).
type Answer = Arc<Mutex<(u16, String, Duration)>>;

struct JwksServer {
    addr: SocketAddr,
    answer: Answer,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start() -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer: Answer = Arc::new(Mutex::new((200, JWKS_A.into(), Duration::ZERO)));
        let a = answer.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let a = a.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let (status, body, delay) = a.lock().unwrap().clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            let mut r = http::Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        JwksServer { addr, answer, task }
    }

    fn set(&self, status: u16, body: &str, delay: Duration) {
        *self.answer.lock().unwrap() = (status, body.into(), delay);
    }

    fn uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(uri: &str, timeout: &str) -> MeshConfig {
    load_str(
        "ra.yaml",
        &format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
             metadata: {{name: ra, namespace: demo}}\nspec:\n  jwtRules:\n  \
             - {{issuer: a, jwksUri: '{uri}', timeout: {timeout}}}\n  \
             - {{issuer: b, jwksUri: '{uri}'}}\n"
        ),
    )
    .unwrap()
    .0
}

fn jwks_of(resolved: &MeshConfig) -> Vec<&str> {
    resolved.request_authentications[0]
        .jwt_rules
        .iter()
        .map(|r| r.jwks.as_str())
        .collect()
}

#[tokio::test]
async fn fetched_keys_are_inlined_refreshed_and_kept_when_the_server_fails() {
    let server = JwksServer::start().await;
    let cache = JwksCache::new(JwksOptions::default());
    let cfg = config(&server.uri(), "2s");
    assert_eq!(
        cfg.request_authentications[0].jwt_rules[0]
            .jwks_uri
            .as_ref()
            .unwrap()
            .timeout,
        Duration::from_secs(2)
    );

    // Before the first fetch: empty keys, one warning per rule naming the field.
    let (resolved, warnings) = cache.resolve(&cfg);
    assert_eq!(jwks_of(&resolved.unwrap()), [EMPTY_JWKS, EMPTY_JWKS]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].field, "spec.jwtRules[0].jwksUri");
    assert_eq!(warnings[0].resource, "RequestAuthentication/demo/ra");
    assert!(
        warnings[0].message.contains("not fetched yet"),
        "{warnings:?}"
    );

    // One fetch serves both rules; the second round changes nothing.
    assert!(cache.fetch_due(false).await);
    assert!(!cache.fetch_due(false).await, "nothing is due yet");
    assert!(!cache.fetch_due(true).await, "same document");
    let (resolved, warnings) = cache.resolve(&cfg);
    assert_eq!(jwks_of(&resolved.unwrap()), [JWKS_A, JWKS_A]);
    assert!(warnings.is_empty(), "{warnings:?}");

    // Rotation.
    server.set(200, JWKS_B, Duration::ZERO);
    assert!(cache.fetch_due(true).await);
    assert_eq!(jwks_of(&cache.resolve(&cfg).0.unwrap()), [JWKS_B, JWKS_B]);

    // Failures keep the last good keys, with a warning saying so.
    for (status, body, why) in [
        (404, JWKS_A, "http status 404"),
        (200, "not json", "not json"),
        (200, r#"{"nokeys":[]}"#, "no `keys`"),
    ] {
        server.set(status, body, Duration::ZERO);
        assert!(cache.fetch_due(true).await, "{why}: the error is news");
        let (resolved, warnings) = cache.resolve(&cfg);
        assert_eq!(jwks_of(&resolved.unwrap()), [JWKS_B, JWKS_B], "{why}");
        assert!(
            warnings[0].message.contains(why) && warnings[0].message.contains("keeping"),
            "{warnings:?}"
        );
    }
    // A key the servers would refuse (RSA under 2048 bits) is dropped, the good one kept.
    let short = r#"{"kty":"RSA","kid":"old","n":"_____________________________________________________________________________________________________________________________________w","e":"AQAB"}"#;
    let mixed = JWKS_A.replace(r#"{"keys":["#, &format!(r#"{{"keys":[{short},"#));
    server.set(200, &mixed, Duration::ZERO);
    assert!(cache.fetch_due(true).await);
    let (resolved, warnings) = cache.resolve(&cfg);
    let resolved = resolved.unwrap();
    let inlined = jwks_of(&resolved)[0];
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        inlined.contains(r#""kid":"a""#) && !inlined.contains("old"),
        "{inlined}"
    );
    mesh_core::jwt::Jwks::parse(inlined).expect("what is inlined parses");
    // Only unusable keys: a failed fetch, the last good keys kept.
    server.set(200, &format!(r#"{{"keys":[{short}]}}"#), Duration::ZERO);
    assert!(cache.fetch_due(true).await);
    let (resolved, warnings) = cache.resolve(&cfg);
    assert_eq!(jwks_of(&resolved.unwrap())[0], inlined);
    assert!(
        warnings[0].message.contains("no usable key") && warnings[0].message.contains("2048"),
        "{warnings:?}"
    );
    server.set(200, JWKS_B, Duration::ZERO);
    assert!(cache.fetch_due(true).await);

    // Too large a body.
    server.set(200, &" ".repeat(MAX_JWKS_BYTES + 1), Duration::ZERO);
    cache.fetch_due(true).await;
    let warnings = cache.resolve(&cfg).1;
    assert!(
        warnings[0].message.contains("reading the body"),
        "{warnings:?}"
    );
    // Recovery clears the warning.
    server.set(200, JWKS_B, Duration::ZERO);
    assert!(cache.fetch_due(true).await, "the error cleared is news");
    assert!(cache.resolve(&cfg).1.is_empty());

    // The server going away: the keys stay.
    let uri = server.uri();
    drop(server);
    cache.fetch_due(true).await;
    let (resolved, warnings) = cache.resolve(&config(&uri, "2s"));
    assert_eq!(jwks_of(&resolved.unwrap()), [JWKS_B, JWKS_B]);
    assert!(warnings[0].message.contains("connect"), "{warnings:?}");
}

#[tokio::test]
async fn a_slow_server_times_out_and_a_dead_one_gives_empty_keys() {
    let server = JwksServer::start().await;
    server.set(200, JWKS_A, Duration::from_secs(30));
    let cache = JwksCache::new(JwksOptions::default());
    let cfg = config(&server.uri(), "200ms");
    cache.resolve(&cfg);
    let started = std::time::Instant::now();
    cache.fetch_due(false).await;
    // Both rules share the URI; the shorter timeout (200ms) applies.
    assert!(started.elapsed() < Duration::from_secs(10));
    let (resolved, warnings) = cache.resolve(&cfg);
    assert_eq!(jwks_of(&resolved.unwrap()), [EMPTY_JWKS, EMPTY_JWKS]);
    assert!(
        warnings[0].message.contains("timed out") && warnings[0].message.contains("refused"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn failures_back_off_up_to_the_refresh_interval_and_unused_uris_are_dropped() {
    // A port with nothing listening: bind, note, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let cache = JwksCache::new(JwksOptions {
        refresh_interval: Duration::from_secs(50),
        retry_interval: Duration::from_secs(10),
    });
    let cfg = config(&format!("http://{dead}/jwks"), "1s");
    cache.resolve(&cfg);
    // Tolerance: the delay is measured after the fetch returns; a refused loopback connect
    // takes milliseconds, so 2 s of slack cannot flake.
    for want in [10, 20, 40, 50, 50] {
        cache.fetch_due(false).await;
        let left = cache.next_due().unwrap() - Instant::now();
        assert!(
            left <= Duration::from_secs(want) && left > Duration::from_secs(want - 2),
            "want ~{want}s, got {left:?}"
        );
        // Make it due again for the next round.
        for e in cache.entries().values_mut() {
            e.next = Instant::now();
        }
    }
    let empty = load_str("e.yaml", "").unwrap().0;
    assert_eq!(cache.resolve(&empty), (None, Vec::new()));
    assert!(cache.next_due().is_none(), "the uri is no longer cached");
}

#[tokio::test]
async fn https_verifies_the_server_against_the_system_roots() {
    // A TLS server on loopback whose self-signed certificate no system root signs.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Bounded: the test makes one connection.
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let cache = JwksCache::new(JwksOptions::default());
    let cfg = config(&format!("https://127.0.0.1:{}/jwks", addr.port()), "5s");
    cache.resolve(&cfg);
    cache.fetch_due(false).await;
    let (resolved, warnings) = cache.resolve(&cfg);
    assert_eq!(jwks_of(&resolved.unwrap()), [EMPTY_JWKS, EMPTY_JWKS]);
    assert!(warnings[0].message.contains("tls"), "{warnings:?}");
    task.abort();
}
