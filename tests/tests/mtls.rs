//! Workload mTLS over real sockets: the CA from the control plane issues SVIDs through CSRs
//! generated in the workload, and real hyper servers and clients talk over rustls on
//! 127.0.0.1. The attack matrix (plaintext to STRICT, unknown CA, wrong SPIFFE ID, expired
//! certificate) is refused with a typed error; the allowed cases are served with the peer's
//! identity in extensions; PERMISSIVE serves TLS and plaintext on one port; rotation under a
//! keep-alive connection loses no call.

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
use mesh_tower::tls::{
    CertificateRequest, MeshTlsAcceptor, MeshTlsConnector, PeerAuthMode, PeerIdentity, TlsError,
    WithPeerIdentity, WorkloadIdentity,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const TD: &str = "cluster.local";
/// Bound on every single network step of these tests.
const STEP: Duration = Duration::from_secs(10);

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa).unwrap()
}

/// The CSR round trip: key generated "in the workload", CSR signed by the CA.
fn expired_identity(ca: &Ca, sa: &str) -> Result<Arc<WorkloadIdentity>> {
    let req = CertificateRequest::generate()?;
    let now = SystemTime::now();
    let svid = ca.sign_csr_with_validity(
        req.csr_pem(),
        &id(sa),
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    )?;
    Ok(req.into_identity(&svid.cert_chain_pem, &svid.trust_bundle_pem)?)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hyper server behind a [`MeshTlsAcceptor`]. Each response body is
/// `<connection number> <peer spiffe id or "plaintext"> <peer serial>`; accept failures go to
/// `errors`.
struct Server {
    addr: std::net::SocketAddr,
    errors: mpsc::UnboundedReceiver<TlsError>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(acceptor: MeshTlsAcceptor) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, errors) = mpsc::unbounded_channel();
        let conns = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx, conns) = (acceptor.clone(), tx.clone(), conns.clone());
                tokio::spawn(async move {
                    let (stream, peer) = match acceptor.accept(tcp).await {
                        Ok(ok) => ok,
                        Err(e) => {
                            let _ = tx.send(e);
                            return;
                        }
                    };
                    let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let body = match req.extensions().get::<PeerIdentity>() {
                                Some(p) => format!("{n} {} {}", p.spiffe_id(), hex(p.serial())),
                                None => format!("{n} plaintext -"),
                            };
                            async move {
                                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), WithPeerIdentity::new(svc, peer))
                        .await;
                });
            }
        });
        Ok(Self { addr, errors, task })
    }

    async fn next_error(&mut self) -> Result<TlsError> {
        tokio::time::timeout(STEP, self.errors.recv())
            .await
            .context("no accept error within the bound")?
            .context("server gone")
    }

    fn https(&self) -> String {
        format!("https://{}/", self.addr)
    }

    fn http(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

type TlsClient = Client<MeshTlsConnector, Empty<Bytes>>;

fn tls_client(identity: Arc<WorkloadIdentity>, expected: &[&str]) -> TlsClient {
    let expected = expected.iter().map(|s| s.to_string()).collect();
    Client::builder(TokioExecutor::new()).build(MeshTlsConnector::new(identity, expected))
}

/// GET, returning the body and the server identity the client verified.
async fn get<C>(
    client: &Client<C, Empty<Bytes>>,
    uri: &str,
) -> Result<(String, Option<PeerIdentity>)>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(STEP, client.get(uri.parse()?))
        .await
        .context("timed out")??;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    let peer = resp.extensions().get::<PeerIdentity>().cloned();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((String::from_utf8(body.to_vec())?, peer))
}

#[tokio::test]
async fn strict_serves_verified_peer_with_identity_both_ways() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let server_id = tests::workload_identity(&ca, "greeter")?;
    let mut server = Server::start(MeshTlsAcceptor::new(
        server_id.clone(),
        PeerAuthMode::Strict,
    ))
    .await?;
    let client_id = tests::workload_identity(&ca, "frontend")?;
    let client = tls_client(
        client_id.clone(),
        &["spiffe://cluster.local/ns/default/sa/greeter"],
    );

    let (body, peer) = get(&client, &server.https()).await?;
    assert_eq!(
        body,
        format!(
            "1 spiffe://cluster.local/ns/default/sa/frontend {}",
            hex(&client_id.serial())
        )
    );
    let peer = peer.context("client saw no server identity")?;
    assert_eq!(
        peer.spiffe_id(),
        "spiffe://cluster.local/ns/default/sa/greeter"
    );
    assert_eq!(peer.serial(), server_id.serial().as_slice());
    // Empty expected list: any identity of our trust domain passes.
    let any = tls_client(client_id, &[]);
    let (any_body, _) = get(&any, &server.https()).await?;
    assert!(
        any_body.contains(" spiffe://cluster.local/ns/default/sa/frontend "),
        "{any_body}"
    );
    assert!(server.errors.try_recv().is_err(), "no handshake failed");
    Ok(())
}

#[tokio::test]
async fn plaintext_client_is_refused_by_strict() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let mut server = Server::start(MeshTlsAcceptor::new(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Strict,
    ))
    .await?;
    let plain: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    assert!(
        get(&plain, &server.http()).await.is_err(),
        "plaintext must not be served"
    );
    let err = server.next_error().await?;
    assert!(matches!(err, TlsError::NotTls { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("plaintext (first byte 0x47) on a STRICT port"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_ca_is_refused_both_ways() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let rogue = Ca::generate(TD)?; // same trust domain, different root
    let mut server = Server::start(MeshTlsAcceptor::new(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Strict,
    ))
    .await?;

    // Client certificate from an unknown CA: the server refuses it.
    let client = tls_client(
        // Trusts the real root (so it accepts the server) but presents a rogue-signed cert.
        {
            let req = CertificateRequest::generate()?;
            let svid = rogue.sign_csr(req.csr_pem(), &id("frontend"), None)?;
            req.into_identity(&svid.cert_chain_pem, ca.trust_bundle_pem())?
        },
        &[],
    );
    assert!(get(&client, &server.https()).await.is_err());
    let err = server.next_error().await?;
    assert!(matches!(err, TlsError::UnknownCa { .. }), "{err}");
    assert!(
        err.to_string().starts_with("127.0.0.1:"),
        "names the peer: {err}"
    );

    // Server certificate from an unknown CA: the client refuses it.
    let connector = MeshTlsConnector::new(tests::workload_identity(&rogue, "frontend")?, vec![]);
    let err = connector
        .connect("127.0.0.1", server.addr.port())
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::UnknownCa { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn wrong_spiffe_id_is_refused_by_client_and_by_allow_list() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let server_id = tests::workload_identity(&ca, "greeter")?;
    let mut server = Server::start(
        MeshTlsAcceptor::new(server_id, PeerAuthMode::Strict)
            .with_allowed_peers(vec!["spiffe://cluster.local/ns/default/sa/frontend".into()]),
    )
    .await?;

    // The client expects another service: it refuses the server.
    let connector = MeshTlsConnector::new(
        tests::workload_identity(&ca, "frontend")?,
        vec!["spiffe://cluster.local/ns/default/sa/reviews".into()],
    );
    let err = connector
        .connect("127.0.0.1", server.addr.port())
        .await
        .unwrap_err();
    match &err {
        TlsError::SanMismatch { expected, got, .. } => {
            assert_eq!(
                expected,
                "one of [spiffe://cluster.local/ns/default/sa/reviews]"
            );
            assert_eq!(got, "spiffe://cluster.local/ns/default/sa/greeter");
        }
        other => panic!("expected a san mismatch, got {other}"),
    }

    // The server saw the client's refusal as an alert.
    let err = server.next_error().await?;
    assert!(matches!(err, TlsError::PeerRefused { .. }), "{err}");

    // A client outside the server's allow list: the server refuses it.
    let intruder = tls_client(tests::workload_identity(&ca, "intruder")?, &[]);
    assert!(get(&intruder, &server.https()).await.is_err());
    let err = server.next_error().await?;
    match &err {
        TlsError::SanMismatch { got, .. } => {
            assert_eq!(got, "spiffe://cluster.local/ns/default/sa/intruder")
        }
        other => panic!("expected a san mismatch, got {other}"),
    }

    // The allowed one is served.
    let allowed = tls_client(tests::workload_identity(&ca, "frontend")?, &[]);
    assert!(get(&allowed, &server.https())
        .await?
        .0
        .contains("sa/frontend"));

    // Empty expected list still pins the trust domain.
    let other_td = Ca::generate("other.domain")?;
    let req = CertificateRequest::generate()?;
    let svid = other_td.sign_csr(
        req.csr_pem(),
        &SpiffeId::new("other.domain", "default", "x")?,
        None,
    )?;
    let foreign = req.into_identity(&svid.cert_chain_pem, ca.trust_bundle_pem())?;
    let err = MeshTlsConnector::new(foreign, vec![])
        .connect("127.0.0.1", server.addr.port())
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::SanMismatch { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn expired_certificates_are_refused() -> Result<()> {
    let ca = Ca::generate(TD)?;
    // Expired client certificate → the server refuses.
    let mut server = Server::start(MeshTlsAcceptor::new(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Strict,
    ))
    .await?;
    let client = tls_client(expired_identity(&ca, "frontend")?, &[]);
    assert!(get(&client, &server.https()).await.is_err());
    let err = server.next_error().await?;
    assert!(matches!(err, TlsError::Expired { .. }), "{err}");

    // Expired server certificate → the client refuses.
    let old = Server::start(MeshTlsAcceptor::new(
        expired_identity(&ca, "greeter")?,
        PeerAuthMode::Strict,
    ))
    .await?;
    let err = MeshTlsConnector::new(tests::workload_identity(&ca, "frontend")?, vec![])
        .connect("127.0.0.1", old.addr.port())
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::Expired { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn permissive_serves_tls_and_plaintext_on_one_port() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let server = Server::start(MeshTlsAcceptor::new(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Permissive,
    ))
    .await?;
    let tls = tls_client(tests::workload_identity(&ca, "frontend")?, &[]);
    let plain: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    let (body, peer) = get(&tls, &server.https()).await?;
    assert!(
        body.contains(" spiffe://cluster.local/ns/default/sa/frontend "),
        "{body}"
    );
    assert!(peer.is_some());
    let (body, peer) = get(&plain, &server.http()).await?;
    assert!(
        body.ends_with(" plaintext -"),
        "plaintext has no identity: {body}"
    );
    assert!(peer.is_none());

    // DISABLE: plaintext only, no identity.
    let disabled = Server::start(MeshTlsAcceptor::new(
        tests::workload_identity(&ca, "greeter")?,
        PeerAuthMode::Disable,
    ))
    .await?;
    assert!(get(&plain, &disabled.http())
        .await?
        .0
        .ends_with(" plaintext -"));
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_connections_and_new_handshakes_use_new_certs() -> Result<()> {
    let ca = Ca::generate(TD)?;
    let server_id = tests::workload_identity(&ca, "greeter")?;
    let server = Server::start(MeshTlsAcceptor::new(
        server_id.clone(),
        PeerAuthMode::Strict,
    ))
    .await?;
    let client_id = tests::workload_identity(&ca, "frontend")?;
    let client = tls_client(client_id.clone(), &[]);
    let (old_server_serial, old_client_serial) = (server_id.serial(), client_id.serial());

    const CALLS: usize = 200;
    let mut failed = 0;
    let mut server_serials_seen = Vec::new();
    for i in 0..CALLS {
        if i == CALLS / 2 {
            // Renew both sides mid-stream: new keys, new CSRs, new certificates.
            let req = CertificateRequest::generate()?;
            let svid = ca.sign_csr(req.csr_pem(), &id("greeter"), None)?;
            req.rotate(&server_id, &svid.cert_chain_pem, &svid.trust_bundle_pem)?;
            let req = CertificateRequest::generate()?;
            let svid = ca.sign_csr(req.csr_pem(), &id("frontend"), None)?;
            req.rotate(&client_id, &svid.cert_chain_pem, &svid.trust_bundle_pem)?;
        }
        match get(&client, &server.https()).await {
            Ok((body, peer)) => {
                // Same keep-alive connection throughout: connection number 1.
                assert!(
                    body.starts_with("1 "),
                    "call {i} went over a new connection: {body}"
                );
                server_serials_seen.push(peer.map(|p| p.serial().to_vec()));
            }
            Err(_) => failed += 1,
        }
    }
    assert_eq!(failed, 0, "no call may fail during rotation");
    assert!(server_serials_seen
        .iter()
        .all(|s| s.as_deref() == Some(&old_server_serial[..])));
    assert_ne!(server_id.serial(), old_server_serial);
    assert_ne!(client_id.serial(), old_client_serial);

    // A new connection handshakes with the new certificates on both sides.
    let fresh = tls_client(client_id.clone(), &[]);
    let (body, peer) = get(&fresh, &server.https()).await?;
    assert!(body.starts_with("2 "), "{body}");
    assert!(
        body.ends_with(&hex(&client_id.serial())),
        "server sees the new client cert: {body}"
    );
    assert_eq!(
        peer.context("server identity")?.serial(),
        server_id.serial().as_slice()
    );
    Ok(())
}

#[tokio::test]
async fn identity_from_issue_style_files() -> Result<()> {
    // The three files `mesh-control-plane issue` writes, read back as a workload identity.
    let dir = std::env::temp_dir().join(format!("mesh-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = Ca::generate(TD)?;
    let (svid, key) = ca.issue(&id("greeter"), None)?;
    mesh_control_plane::ca::write_private(&dir.join("key.pem"), key.expose())?;
    std::fs::write(dir.join("cert.pem"), &svid.cert_chain_pem)?;
    std::fs::write(dir.join("ca.pem"), &svid.trust_bundle_pem)?;
    let ident = WorkloadIdentity::from_files(
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
        &dir.join("ca.pem"),
    )?;
    assert_eq!(
        ident.spiffe_id(),
        "spiffe://cluster.local/ns/default/sa/greeter"
    );
    assert_eq!(ident.serial(), svid.serial);
    // Mismatched key and certificate are refused, naming the input.
    let other = ca.issue(&id("other"), None)?.1;
    let err = WorkloadIdentity::from_pem(
        svid.cert_chain_pem.as_bytes(),
        other.expose().as_bytes(),
        svid.trust_bundle_pem.as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("(key)"), "{err}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Captures everything traced at TRACE level during issuance, handshakes and rotation, and
/// checks no private key material appears.
#[tokio::test]
async fn no_secrets_in_logs() -> Result<()> {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = std::env::temp_dir().join(format!("mesh-mtls-logs-{}", std::process::id()));
    let ca = Ca::load_or_create(&dir, TD)?;
    let ca_key = std::fs::read_to_string(dir.join("ca-key.pem"))?;
    let (svid, key) = ca.issue(&id("greeter"), None)?;
    let server_id = WorkloadIdentity::from_pem(
        svid.cert_chain_pem.as_bytes(),
        key.expose().as_bytes(),
        svid.trust_bundle_pem.as_bytes(),
    )?;
    let server = Server::start(MeshTlsAcceptor::new(
        server_id.clone(),
        PeerAuthMode::Strict,
    ))
    .await?;
    let client_id = tests::workload_identity(&ca, "frontend")?;
    tracing::info!(?ca, ?key, ?client_id, ?server_id, "debug of secret holders");
    get(&tls_client(client_id, &[]), &server.https()).await?;
    let (svid2, key2) = ca.issue(&id("greeter"), None)?;
    server_id.rotate_pem(
        svid2.cert_chain_pem.as_bytes(),
        key2.expose().as_bytes(),
        svid2.trust_bundle_pem.as_bytes(),
    )?;
    get(
        &tls_client(tests::workload_identity(&ca, "frontend")?, &[]),
        &server.https(),
    )
    .await?;

    let logs = String::from_utf8(buf.0.lock().unwrap().clone())?;
    assert!(
        logs.contains("rotated workload identity"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("<redacted>"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
    let public = format!(
        "{}{}{}",
        svid.cert_chain_pem, svid2.cert_chain_pem, svid.trust_bundle_pem
    )
    .replace('\n', "");
    for k in [ca_key.as_str(), key.expose(), key2.expose()] {
        let body: String = k.lines().filter(|l| !l.starts_with("-----")).collect();
        for start in 0..body.len() - 16 {
            let w = &body[start..start + 16];
            assert!(
                public.contains(w) || !logs.contains(w),
                "key bytes {w:?} logged"
            );
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Root rotation with an overlap window (`Ca::with_trust_bundle`, `root-cert.pem`): while the
/// bundle holds the old and the new root, a client whose SVID chains to the old root and a
/// server whose SVID chains to the new one accept each other; once the server's bundle holds
/// only the new root, a new connection from the old-root client is refused while the
/// connection already established keeps serving.
#[tokio::test]
async fn root_rotation_overlap_then_the_old_root_is_dropped() -> Result<()> {
    use mesh_control_plane::ca::{CaError, ROOT_CERT_FILE};
    let (dir_a, dir_b) = (tests::temp_dir("root-a"), tests::temp_dir("root-b"));
    let (old, new) = (
        Ca::load_or_create(&dir_a, TD)?,
        Ca::load_or_create(&dir_b, TD)?,
    );
    let both = format!("{}{}", old.trust_bundle_pem(), new.trust_bundle_pem());
    // Step 1 (old root signs, both trusted) and step 2 (new root signs, both trusted).
    std::fs::write(dir_a.join(ROOT_CERT_FILE), &both)?;
    std::fs::write(dir_b.join(ROOT_CERT_FILE), &both)?;
    let (old, new) = (
        Ca::load_or_create(&dir_a, TD)?,
        Ca::load_or_create(&dir_b, TD)?,
    );
    assert_eq!(old.trust_bundle_pem(), new.trust_bundle_pem());

    let server_id = tests::workload_identity(&new, "greeter")?;
    let mut server = Server::start(MeshTlsAcceptor::new(
        server_id.clone(),
        PeerAuthMode::Strict,
    ))
    .await?;
    let old_client_id = tests::workload_identity(&old, "frontend")?;
    let greeter = ["spiffe://cluster.local/ns/default/sa/greeter"];
    let old_client = tls_client(old_client_id.clone(), &greeter);
    let (body, peer) = get(&old_client, &server.https()).await?;
    assert!(
        body.starts_with("1 spiffe://cluster.local/ns/default/sa/frontend"),
        "{body}"
    );
    assert_eq!(peer.map(|p| p.serial().to_vec()), Some(server_id.serial()));
    // A connector that keeps TLS session tickets from the overlap (its clients share them).
    let resuming = MeshTlsConnector::new(
        old_client_id.clone(),
        greeter.iter().map(|s| s.to_string()).collect(),
    );
    let first: TlsClient = Client::builder(TokioExecutor::new()).build(resuming.clone());
    get(&first, &server.https()).await?;

    // Step 3: the new root alone. The server renews onto a bundle without the old root.
    std::fs::remove_file(dir_b.join(ROOT_CERT_FILE))?;
    let new_only = Ca::load_or_create(&dir_b, TD)?;
    let req = CertificateRequest::generate()?;
    let svid = new_only.sign_csr(req.csr_pem(), &id("greeter"), None)?;
    req.rotate(&server_id, &svid.cert_chain_pem, &svid.trust_bundle_pem)?;

    // The established connection (number 1) keeps serving.
    let (body, _) = get(&old_client, &server.https()).await?;
    assert!(
        body.starts_with("1 "),
        "the pooled connection was dropped: {body}"
    );
    // A new connection from the old-root client is refused by the server.
    let fresh = tls_client(old_client_id, &greeter);
    assert!(
        get(&fresh, &server.https()).await.is_err(),
        "old root still trusted"
    );
    let err = server.next_error().await?;
    assert!(
        err.to_string().contains("unknown") || err.to_string().contains("issuer"),
        "{err}"
    );
    // Nor can it come back by resuming a session from the overlap: the server's session
    // cache went with its rotation, so the handshake is a full one and the old root is gone.
    let again: TlsClient = Client::builder(TokioExecutor::new()).build(resuming);
    assert!(
        get(&again, &server.https()).await.is_err(),
        "a session from the overlap was resumed past the old root's removal"
    );
    server.next_error().await?;
    // A client renewed from the new root connects.
    let renewed = tls_client(tests::workload_identity(&new_only, "frontend")?, &greeter);
    let (body, _) = get(&renewed, &server.https()).await?;
    assert!(body.contains("sa/frontend"), "{body}");

    // A root-cert.pem without the signing root is refused, naming the file.
    let old_root = std::fs::read_to_string(dir_a.join(mesh_control_plane::ca::CA_CERT_FILE))?;
    std::fs::write(dir_b.join(ROOT_CERT_FILE), old_root)?;
    let err = Ca::load_or_create(&dir_b, TD).unwrap_err();
    assert!(matches!(err, CaError::InvalidCa { .. }), "{err}");
    assert!(err.to_string().contains(ROOT_CERT_FILE), "{err}");
    let _ = (
        std::fs::remove_dir_all(&dir_a),
        std::fs::remove_dir_all(&dir_b),
    );
    Ok(())
}
