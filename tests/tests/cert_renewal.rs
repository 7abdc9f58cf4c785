//! Certificate renewal over the wire: the control plane serves Istio's `CreateCertificate`
//! over mTLS, and workloads with short-lived SVIDs (5 s) renew through
//! `mesh_grpc::identity::CertificateRenewer` while a STRICT mTLS server takes steady calls on
//! 127.0.0.1 — over one long-lived keep-alive connection and over a new connection per call.
//! No call fails, the server's serial changes, the long-lived connection outlives the
//! certificate it was established with, callers without a valid SVID are refused with a status
//! naming why, and no private key text reaches the logs.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ca::{Ca, SpiffeId};
use mesh_control_plane::{ControlPlane, ControlPlaneHandle};
use mesh_grpc::identity::{create_certificate, CertificateRenewer, RenewError};
use mesh_tower::tls::{
    CertificateRequest, MeshTlsAcceptor, MeshTlsConnector, PeerAuthMode, PeerIdentity,
    WithPeerIdentity, WorkloadIdentity,
};
use tokio::net::TcpListener;

const TD: &str = "cluster.local";
/// SVID lifetime in these tests: short, so several renewals fit in a few seconds.
const TTL: Duration = Duration::from_secs(5);
/// Bound on every single network step.
const STEP: Duration = Duration::from_secs(10);

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa).unwrap()
}

async fn control_plane(ca: Arc<Ca>) -> Result<ControlPlaneHandle> {
    Ok(ControlPlane::builder()
        .ca_server(ca, "127.0.0.1:0".parse()?)
        .start()
        .await?)
}

fn renewer(cp: &ControlPlaneHandle, identity: Arc<WorkloadIdentity>) -> CertificateRenewer {
    CertificateRenewer::new(
        identity,
        cp.ca_addr().expect("ca server").to_string(),
        cp.ca_identity().expect("ca identity").as_str(),
    )
}

/// A hyper server behind a STRICT acceptor; each body is `<connection number> <client serial>`.
async fn serve(acceptor: MeshTlsAcceptor) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}/", listener.local_addr()?);
    let conns = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, conns) = (acceptor.clone(), conns.clone());
            tokio::spawn(async move {
                let Ok((stream, peer)) = acceptor.accept(tcp).await else {
                    return;
                };
                let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let serial = req
                        .extensions()
                        .get::<PeerIdentity>()
                        .map(|p| hex(p.serial()))
                        .unwrap_or_default();
                    let body = format!("{n} {serial}");
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), WithPeerIdentity::new(svc, peer))
                    .await;
            });
        }
    });
    Ok((url, task))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

type TlsClient = Client<MeshTlsConnector, Empty<Bytes>>;

fn client(identity: Arc<WorkloadIdentity>) -> TlsClient {
    Client::builder(TokioExecutor::new()).build(MeshTlsConnector::new(
        identity,
        vec![id("greeter").to_string()],
    ))
}

/// GET: the body and the serial of the server certificate the client verified.
async fn get(client: &TlsClient, url: &str) -> Result<(String, Vec<u8>)> {
    let resp = tokio::time::timeout(STEP, client.get(url.parse()?))
        .await
        .context("timed out")??;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    let serial = resp
        .extensions()
        .get::<PeerIdentity>()
        .context("no server identity")?
        .serial()
        .to_vec();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((String::from_utf8(body.to_vec())?, serial))
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

/// Captures everything traced at TRACE on this thread (tests run on current-thread runtimes,
/// so the control plane, renewers, servers and clients all log here). Every test in this file
/// installs one: tracing caches per-callsite interest across threads, and a test logging with
/// no subscriber could otherwise turn a callsite off for the test that captures.
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

/// The whole loop under steady load, with every log line captured.
#[tokio::test]
async fn renewal_under_steady_load_loses_no_call() -> Result<()> {
    let (logs, _guard) = capture();

    let dir = std::env::temp_dir().join(format!("mesh-cert-renewal-{}", std::process::id()));
    let ca = Arc::new(Ca::load_or_create(&dir, TD)?.with_default_ttl(TTL));
    let ca_key = std::fs::read_to_string(dir.join("ca-key.pem"))?;
    std::fs::remove_dir_all(&dir)?;
    let cp = control_plane(ca.clone()).await?;

    // First SVIDs the way `mesh-control-plane issue` makes them; renewals go over the wire.
    let (server_svid, server_key) = ca.issue(&id("greeter"), None)?;
    let server_id = WorkloadIdentity::from_pem(
        server_svid.cert_chain_pem.as_bytes(),
        server_key.expose().as_bytes(),
        server_svid.trust_bundle_pem.as_bytes(),
    )?;
    let (client_svid, client_key) = ca.issue(&id("frontend"), None)?;
    let client_id = WorkloadIdentity::from_pem(
        client_svid.cert_chain_pem.as_bytes(),
        client_key.expose().as_bytes(),
        client_svid.trust_bundle_pem.as_bytes(),
    )?;
    let first_expiry = server_id.not_after().min(client_id.not_after());
    let first_server_serial = server_id.serial();
    let server_renewer = renewer(&cp, server_id.clone()).spawn();
    let client_renewer = renewer(&cp, client_id.clone()).spawn();

    let (url, server) = serve(MeshTlsAcceptor::new(
        server_id.clone(),
        PeerAuthMode::Strict,
    ))
    .await?;

    // Two clients for ~11 s (two TTLs, so renewals at ~50 % happen at least three times):
    // one keep-alive connection throughout, and a new connection (full handshake) per call.
    let run_for = Duration::from_secs(11);
    let keepalive = client(client_id.clone());
    let steady = async {
        let (mut calls, mut failures, mut conns) = (0usize, Vec::new(), BTreeSet::new());
        let end = tokio::time::Instant::now() + run_for;
        // Bounded: at most one call per 20 ms for `run_for`.
        while tokio::time::Instant::now() < end {
            calls += 1;
            match get(&keepalive, &url).await {
                Ok((body, _)) => {
                    conns.insert(body.split(' ').next().unwrap_or_default().to_owned());
                }
                Err(e) => failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (calls, failures, conns)
    };
    let fresh = async {
        let (mut calls, mut failures, mut serials, mut client_serials) =
            (0usize, Vec::new(), BTreeSet::new(), BTreeSet::new());
        let end = tokio::time::Instant::now() + run_for;
        while tokio::time::Instant::now() < end {
            calls += 1;
            match get(&client(client_id.clone()), &url).await {
                Ok((body, serial)) => {
                    serials.insert(serial);
                    client_serials.insert(body.split(' ').nth(1).unwrap_or_default().to_owned());
                }
                Err(e) => failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (calls, failures, serials, client_serials)
    };
    let ((k_calls, k_failures, k_conns), (f_calls, f_failures, serials, client_serials)) =
        tokio::join!(steady, fresh);

    assert!(
        k_calls > 50 && f_calls > 20,
        "load ran: {k_calls} / {f_calls}"
    );
    assert!(
        k_failures.is_empty(),
        "keep-alive calls failed: {k_failures:?}"
    );
    assert!(
        f_failures.is_empty(),
        "new-connection calls failed: {f_failures:?}"
    );
    assert_eq!(
        k_conns.len(),
        1,
        "the keep-alive connection survives every renewal: {k_conns:?}"
    );
    assert!(
        SystemTime::now() > first_expiry,
        "the run outlived the first certificates"
    );
    for (name, r) in [("server", &server_renewer), ("client", &client_renewer)] {
        let st = r.status();
        assert!(st.renewals >= 2, "{name} renewed at least twice: {st:?}");
        assert_eq!(st.failures, 0, "{name}: {st:?}");
    }
    assert!(
        serials.len() >= 3,
        "the server presented the first and at least two renewed certificates: {}",
        serials.len()
    );
    assert!(serials.contains(&first_server_serial));
    assert!(client_serials.len() >= 3, "{client_serials:?}");
    assert_eq!(server_id.spiffe_id(), id("greeter").as_str());
    assert_eq!(client_id.spiffe_id(), id("frontend").as_str());

    drop((server_renewer, client_renewer));
    server.abort();
    cp.shutdown().await;

    let logs = String::from_utf8(logs.0.lock().unwrap().clone())?;
    eprintln!("captured {} bytes of logs", logs.len());
    assert!(logs.contains("renewed workload identity"), "capture works");
    assert!(logs.contains("signed csr"), "capture covers the ca");
    assert!(!logs.contains("PRIVATE KEY"), "pem private key text logged");
    // Renewed keys never leave `CertificateRequest`; the keys we can see are checked bytewise.
    let public = format!(
        "{}{}{}",
        server_svid.cert_chain_pem, client_svid.cert_chain_pem, server_svid.trust_bundle_pem
    )
    .replace('\n', "");
    // Every 16-byte window of the key bodies (minus any that also occur in public material),
    // looked up for every 16-byte window of the logs: one pass over a large TRACE log.
    let mut secret = std::collections::HashSet::new();
    for k in [ca_key.as_str(), server_key.expose(), client_key.expose()] {
        let body: String = k.lines().filter(|l| !l.starts_with("-----")).collect();
        for w in body.as_bytes().windows(16) {
            if !public.contains(std::str::from_utf8(w)?) {
                secret.insert(w.to_vec());
            }
        }
    }
    assert!(
        secret.len() > 300,
        "the check has material: {}",
        secret.len()
    );
    if let Some(w) = logs.as_bytes().windows(16).find(|w| secret.contains(*w)) {
        panic!("key bytes {:?} logged", String::from_utf8_lossy(w));
    }
    Ok(())
}

#[tokio::test]
async fn expired_or_foreign_svids_are_refused_naming_why() -> Result<()> {
    let (logs, _guard) = capture();
    let ca = Arc::new(Ca::generate(TD)?);
    let cp = control_plane(ca.clone()).await?;

    // Expired: the CA says so (the handshake itself succeeds; the status names the reason).
    let req = CertificateRequest::generate()?;
    let now = SystemTime::now();
    let svid = ca.sign_csr_with_validity(
        req.csr_pem(),
        &id("greeter"),
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    )?;
    let expired = req.into_identity(&svid.cert_chain_pem, &svid.trust_bundle_pem)?;
    let serial = expired.serial();
    let err = renewer(&cp, expired.clone())
        .renew_once()
        .await
        .unwrap_err();
    match &err {
        RenewError::Refused { code, message, .. } => {
            assert_eq!(*code, tonic::Code::Unauthenticated, "{err}");
            assert!(message.contains("expired"), "{err}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(expired.serial(), serial, "nothing installed");

    // Issued by another CA (trusting ours, so the client side of the handshake is happy).
    let other = Ca::generate(TD)?;
    let (foreign_svid, foreign_key) = other.issue(&id("greeter"), None)?;
    let foreign = WorkloadIdentity::from_pem(
        foreign_svid.cert_chain_pem.as_bytes(),
        foreign_key.expose().as_bytes(),
        ca.trust_bundle_pem().as_bytes(),
    )?;
    let err = renewer(&cp, foreign).renew_once().await.unwrap_err();
    match &err {
        RenewError::Refused { code, message, .. } => {
            assert_eq!(*code, tonic::Code::Unauthenticated, "{err}");
            assert!(message.contains("not issued by this ca"), "{err}");
        }
        other => panic!("expected a refusal, got {other}"),
    }

    // A valid SVID renews, and the CA pins the identity to the caller's.
    let (svid, key) = ca.issue(&id("greeter"), None)?;
    let good = WorkloadIdentity::from_pem(
        svid.cert_chain_pem.as_bytes(),
        key.expose().as_bytes(),
        svid.trust_bundle_pem.as_bytes(),
    )?;
    renewer(&cp, good.clone())
        .requested_ttl(Duration::from_secs(7 * 24 * 3600))
        .renew_once()
        .await?;
    assert_ne!(good.serial(), svid.serial);
    assert_eq!(good.spiffe_id(), id("greeter").as_str());
    let lifetime = good
        .not_after()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(
        lifetime <= ca.default_ttl(),
        "a week was asked for, the default ttl is the cap: {lifetime:?}"
    );

    // A CSR that is not one (or whose signature is wrong) is INVALID_ARGUMENT.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cp.ca_addr().unwrap()))?
            .connect_with_connector(MeshTlsConnector::new(
                good.clone(),
                vec![cp.ca_identity().unwrap().to_string()],
            ))
            .await?;
    let status = create_certificate(channel, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("invalid csr"), "{status:?}");

    // A renewer pinning another control-plane identity refuses to talk to this CA.
    let err = CertificateRenewer::new(
        good,
        cp.ca_addr().unwrap().to_string(),
        "spiffe://cluster.local/ns/istio-system/sa/impostor",
    )
    .renew_once()
    .await
    .unwrap_err();
    assert!(matches!(err, RenewError::Connect { .. }), "{err}");
    cp.shutdown().await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone())?;
    assert!(
        logs.contains("csr refused"),
        "refusals are logged with their reason"
    );
    assert!(!logs.contains("PRIVATE KEY"));
    Ok(())
}

/// A TLS client without a certificate reaches the service and is told it needs one.
#[tokio::test]
async fn no_client_certificate_is_unauthenticated() -> Result<()> {
    let _capture = capture();
    let ca = Arc::new(Ca::generate(TD)?);
    let cp = control_plane(ca).await?;
    let addr = cp.ca_addr().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let tls = no_cert_connector()
                .connect("localhost".try_into().unwrap(), tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }))
        .await?;
    let req = CertificateRequest::generate()?;
    let status = create_certificate(channel, req.csr_pem(), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("no client certificate"),
        "{status:?}"
    );
    cp.shutdown().await;
    Ok(())
}

/// rustls client with no client certificate; it skips server verification, which is not what
/// this test is about.
fn no_cert_connector() -> tokio_rustls::TlsConnector {
    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = mesh_tower::tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A renewal never changes who the workload is: a chain for another identity is refused and
/// the current material stays.
#[tokio::test]
async fn renewal_refuses_a_certificate_for_another_identity() -> Result<()> {
    let _capture = capture();
    let ca = Ca::generate(TD)?;
    let (svid, key) = ca.issue(&id("greeter"), None)?;
    let ident = WorkloadIdentity::from_pem(
        svid.cert_chain_pem.as_bytes(),
        key.expose().as_bytes(),
        svid.trust_bundle_pem.as_bytes(),
    )?;
    let req = CertificateRequest::generate()?;
    let other = ca.sign_csr(req.csr_pem(), &id("admin"), None)?;
    let err = req
        .renew(&ident, &other.cert_chain_pem, &other.trust_bundle_pem)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("sa/admin, not spiffe://cluster.local/ns/default/sa/greeter"),
        "{err}"
    );
    assert_eq!(ident.serial(), svid.serial);
    Ok(())
}

/// During a root rotation's overlap the CA answers `CreateCertificate` with every root of its
/// bundle; the renewal keeps them all, so a workload renewed onto the new root still accepts a
/// peer whose SVID chains to the old one (and the other way round). Taking only the last
/// certificate as the bundle would drop the old root here and refuse that peer.
#[tokio::test]
async fn renewal_during_a_root_overlap_keeps_every_root() -> Result<()> {
    let (_logs, _guard) = capture();
    let old = Ca::generate(TD)?;
    let next = Ca::generate(TD)?;
    let bundle = format!("{}{}", old.trust_bundle_pem(), next.trust_bundle_pem());
    // Step 1 (sign with the old root, trust both) for the peers, step 2 (sign with the new
    // root, trust both) for the CA the workload renews against.
    let old = old.with_trust_bundle(&bundle)?;
    let next = Arc::new(next.with_trust_bundle(&bundle)?);
    let cp = control_plane(next.clone()).await?;

    let workload = tests::workload_identity(&old, "frontend")?;
    let before = workload.serial();
    renewer(&cp, workload.clone()).renew_once().await?;
    assert_ne!(workload.serial(), before, "renewed");

    // Servers on either root; the renewed workload (new-root SVID) calls both.
    for (root, ca) in [("old", &old), ("new", &*next)] {
        let server_id = tests::workload_identity(ca, "greeter")?;
        let (url, task) = serve(MeshTlsAcceptor::new(server_id, PeerAuthMode::Strict)).await?;
        let result = get(&client(workload.clone()), &url).await;
        task.abort();
        result.with_context(|| format!("renewed workload → server on the {root} root"))?;
    }
    cp.shutdown().await;
    Ok(())
}
