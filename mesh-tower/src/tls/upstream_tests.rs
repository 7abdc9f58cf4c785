use std::net::Ipv6Addr;

use mesh_core::model::{CertificateProviderInstance, Regex};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use tokio::net::TcpListener;

use super::*;
use crate::tls::{MeshTlsAcceptor, PeerAuthMode};

/// A root CA: its issuer and PEM.
fn ca() -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// A workload identity signed by `ca` with these SANs.
fn identity(ca: &(Issuer<'static, KeyPair>, String), sans: Vec<SanType>) -> Arc<WorkloadIdentity> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let cert = params.signed_by(&key, &ca.0).unwrap();
    WorkloadIdentity::from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        ca.1.as_bytes(),
    )
    .unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn tls(sans: Vec<StringMatcher>, mutual: bool) -> UpstreamTls {
    UpstreamTls {
        sni: None,
        alpn_protocols: Arc::new([]),
        identity: mutual.then(|| CertificateProviderInstance::new("default", "default")),
        roots: CertificateProviderInstance::new("default", "ROOTCA"),
        match_subject_alt_names: sans.into(),
    }
}

fn exact(v: &str) -> StringMatcher {
    StringMatcher::Exact {
        value: v.into(),
        ignore_case: false,
    }
}

/// A STRICT server on loopback that completes handshakes and reports the client's identity.
async fn server(
    id: Arc<WorkloadIdentity>,
    mode: PeerAuthMode,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<Option<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = MeshTlsAcceptor::new(id, mode);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        // Bounded: the tests make at most a handful of connections.
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let peer = acceptor.accept(tcp).await.ok().and_then(|(_, p)| p);
            let _ = tx.send(peer.map(|p| p.spiffe_id().to_owned())).await;
        }
    });
    (addr, rx)
}

const SERVER: &str = "spiffe://td/ns/default/sa/greeter";
const CLIENT: &str = "spiffe://td/ns/default/sa/frontend";

#[tokio::test]
async fn mutual_tls_verifies_the_san_and_presents_our_identity() {
    let ca = ca();
    let (addr, mut seen) = server(identity(&ca, vec![uri(SERVER)]), PeerAuthMode::Strict).await;
    let providers = CertificateProviders::default_identity(identity(&ca, vec![uri(CLIENT)]));
    let timeout = Duration::from_secs(5);

    let ok = ClusterTls::compile(&tls(vec![exact(SERVER)], true), &providers, timeout).unwrap();
    let stream = ok.connect(addr, Alpn::H2).await.unwrap();
    assert_eq!(stream.peer_identity().map(|p| p.spiffe_id()), Some(SERVER));
    assert_eq!(seen.recv().await.unwrap().as_deref(), Some(CLIENT));
    // AES-128-GCM first, as BoringSSL orders TLS 1.3 suites (rustls alone picks AES-256).
    assert_eq!(
        stream.cipher_suite(),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );

    // Prefix / regex matchers: any SAN matching any matcher.
    let re = StringMatcher::Regex(Regex::full_match("spiffe://td/ns/[a-z]+/sa/greeter").unwrap());
    let ok = ClusterTls::compile(
        &tls(vec![exact("spiffe://x"), re], true),
        &providers,
        timeout,
    )
    .unwrap();
    ok.connect(addr, Alpn::Http1).await.unwrap();

    let wrong = ClusterTls::compile(&tls(vec![exact(CLIENT)], true), &providers, timeout).unwrap();
    let err = wrong.connect(addr, Alpn::H2).await.unwrap_err();
    assert_eq!(err.reason(), Some(TlsReason::SanMismatch), "{err}");
    assert!(err.to_string().contains(SERVER), "{err}");

    // SIMPLE presents no client certificate: STRICT refuses it (after the client's side of
    // a TLS 1.3 handshake completed, so the refusal shows on the server).
    let simple = ClusterTls::compile(&tls(vec![], false), &providers, timeout).unwrap();
    let _stream = simple.connect(addr, Alpn::H2).await;
    let seen: Vec<_> = [seen.recv().await, seen.recv().await, seen.recv().await].into();
    assert_eq!(
        seen,
        [Some(Some(CLIENT.to_owned())), Some(None), Some(None)],
        "regex match, san mismatch, simple"
    );
}

#[tokio::test]
async fn an_unknown_ca_is_named() {
    let (addr, _seen) = server(identity(&ca(), vec![uri(SERVER)]), PeerAuthMode::Strict).await;
    let providers = CertificateProviders::default_identity(identity(&ca(), vec![uri(CLIENT)]));
    let c = ClusterTls::compile(&tls(vec![], true), &providers, Duration::from_secs(5)).unwrap();
    let err = c.connect(addr, Alpn::H2).await.unwrap_err();
    assert_eq!(err.reason(), Some(TlsReason::UnknownCa), "{err}");
}

#[test]
fn a_missing_instance_is_named() {
    let t = tls(vec![], true);
    let err =
        ClusterTls::compile(&t, &CertificateProviders::new(), Duration::from_secs(1)).unwrap_err();
    assert!(matches!(&err, TlsError::MissingProvider { instance } if instance == "default"));
    assert_eq!(err.reason(), Some(TlsReason::MissingProvider));
}

#[test]
fn sans_of_every_type_are_read_in_canonical_form() {
    let ca = ca();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![
        uri(SERVER),
        SanType::DnsName("api.example.com".try_into().unwrap()),
        SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
        SanType::IpAddress("10.0.0.7".parse().unwrap()),
        SanType::IpAddress(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()),
    ];
    let cert = params.signed_by(&key, &ca.0).unwrap();
    let names: Vec<String> = subject_alt_names(cert.der())
        .into_iter()
        .map(|s| s.value)
        .collect();
    assert_eq!(
        names,
        [
            SERVER,
            "api.example.com",
            "ops@example.com",
            "10.0.0.7",
            "2001:db8::1"
        ]
    );
}

#[test]
fn file_watcher_instances_come_from_the_bootstrap() {
    let ca = ca();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri(CLIENT)];
    let cert = params.signed_by(&key, &ca.0).unwrap();
    let dir = std::env::temp_dir().join(format!("mesh-upstream-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.1).unwrap();
    let json = format!(
        r#"{{"xds_servers":[{{"server_uri":"127.0.0.1:1","channel_creds":[{{"type":"insecure"}}]}}],
            "node":{{"id":"n"}},
            "certificate_providers":{{
              "default":{{"plugin_name":"file_watcher","config":{{
                "certificate_file":"{d}/cert.pem","private_key_file":"{d}/key.pem",
                "ca_certificate_file":"{d}/ca.pem","refresh_interval":"600s"}}}},
              "other":{{"plugin_name":"something_else","config":{{}}}}}}}}"#,
        d = dir.display()
    );
    let bootstrap = mesh_core::bootstrap::Bootstrap::from_json(&json).unwrap();
    let providers = CertificateProviders::from_bootstrap(&bootstrap).unwrap();
    assert_eq!(providers.get("default").unwrap().spiffe_id(), CLIENT);
    assert!(matches!(
        providers.get("other"),
        Err(TlsError::MissingProvider { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh key and certificate for `san` signed by `ca`, as PEM.
fn cert_and_key(ca: &(Issuer<'static, KeyPair>, String), san: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri(san)];
    let cert = params.signed_by(&key, &ca.0).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Lets the refresh task run after the paused clock moved.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn file_watcher_files_are_re_read_every_refresh_interval() {
    let ca = ca();
    let dir = std::env::temp_dir().join(format!("mesh-file-watcher-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |cert: &str, key: &str| {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
    };
    let (cert, key) = cert_and_key(&ca, CLIENT);
    write(&cert, &key);
    std::fs::write(dir.join("ca.pem"), &ca.1).unwrap();
    let json = format!(
        r#"{{"xds_servers":[{{"server_uri":"127.0.0.1:1","channel_creds":[{{"type":"insecure"}}]}}],
            "node":{{"id":"n"}},
            "certificate_providers":{{
              "default":{{"plugin_name":"file_watcher","config":{{
                "certificate_file":"{d}/cert.pem","private_key_file":"{d}/key.pem",
                "ca_certificate_file":"{d}/ca.pem","refresh_interval":"5s"}}}}}}}}"#,
        d = dir.display()
    );
    let bootstrap = mesh_core::bootstrap::Bootstrap::from_json(&json).unwrap();
    let providers = CertificateProviders::from_bootstrap(&bootstrap).unwrap();
    let identity = providers.get("default").unwrap().clone();
    let first = identity.serial();
    settle().await; // the refresh task starts its first wait now

    // New files: picked up at the next refresh, not before.
    let (cert2, key2) = cert_and_key(&ca, CLIENT);
    write(&cert2, &key2);
    tokio::time::advance(Duration::from_secs(4)).await;
    settle().await;
    assert_eq!(identity.serial(), first, "read before refresh_interval");
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let second = identity.serial();
    assert_ne!(
        second, first,
        "new files not picked up after refresh_interval"
    );

    // A certificate with another key (a half-done rotation) and then garbage: both refused,
    // the current identity stays.
    let (cert3, _) = cert_and_key(&ca, CLIENT);
    write(&cert3, &key2);
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert_eq!(identity.serial(), second, "mismatched key swapped in");
    write("-----BEGIN CERTIFICATE-----\nnot base64\n", &key2);
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert_eq!(identity.serial(), second, "garbage swapped in");
    // Fixed files are taken at the next refresh.
    let (cert4, key4) = cert_and_key(&ca, CLIENT);
    write(&cert4, &key4);
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert_ne!(identity.serial(), second);

    // The task holds only a Weak: once every holder is gone, the identity is freed.
    let weak = Arc::downgrade(&identity);
    drop((identity, providers));
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert!(
        weak.upgrade().is_none(),
        "the refresh task kept the identity alive"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_refresh_interval_names_the_field() {
    let json = r#"{"xds_servers":[{"server_uri":"127.0.0.1:1","channel_creds":[{"type":"insecure"}]}],
        "node":{"id":"n"},
        "certificate_providers":{"default":{"plugin_name":"file_watcher","config":{
          "certificate_file":"/nonexistent/c","private_key_file":"/nonexistent/k",
          "ca_certificate_file":"/nonexistent/ca","refresh_interval":"ten minutes"}}}}"#;
    let bootstrap = mesh_core::bootstrap::Bootstrap::from_json(json).unwrap();
    let err = CertificateProviders::from_bootstrap(&bootstrap).unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate_providers.default.config.refresh_interval"),
        "{err}"
    );
}

/// A STRICT server on loopback that reports each client certificate's serial and echoes what
/// it reads, so a test can show an established connection still works.
async fn echo_server(
    id: Arc<WorkloadIdentity>,
) -> (
    SocketAddr,
    tokio::sync::mpsc::Receiver<Vec<u8>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = MeshTlsAcceptor::new(id, PeerAuthMode::Strict);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        // Bounded: the test makes a handful of connections.
        for _ in 0..16 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok((mut stream, Some(peer))) = acceptor.accept(tcp).await else {
                continue;
            };
            let _ = tx.send(peer.serial().to_vec()).await;
            conns.spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx, task)
}

/// Writes `bytes` on an established client connection and reads them back.
async fn echo(stream: MeshTlsStream, bytes: &[u8]) -> MeshTlsStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = hyper_util::rt::TokioIo::new(stream);
    let work = async {
        io.write_all(bytes).await.unwrap();
        let mut back = vec![0; bytes.len()];
        io.read_exact(&mut back).await.unwrap();
        back
    };
    let back = tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .expect("echo timed out");
    assert_eq!(back, bytes, "the established connection stopped working");
    io.into_inner()
}

/// Moves the paused clock past one refresh and lets the refresh task run; real time is
/// resumed after, so the sockets of the test never run on an auto-advancing clock (which
/// would fire the handshake timeouts while the kernel delivers loopback packets).
async fn refresh(interval: Duration) {
    tokio::time::pause();
    tokio::time::advance(interval + Duration::from_secs(1)).await;
    settle().await;
    tokio::time::resume();
}

/// gRFC A29 `file_watcher` end to end on loopback: files rewritten with a new SVID are picked
/// up at the next refresh, new handshakes present the new certificate while the connection
/// made with the old one keeps working; a mismatched key or a corrupt file keeps the current
/// certificate; a new `ca.pem` changes whom new connections trust; dropping the providers
/// stops the refresh task at once.
#[tokio::test]
async fn file_watcher_rotation_over_real_tls() {
    let interval = Duration::from_secs(60);
    let (ca, other_ca) = (ca(), ca());
    let dir = std::env::temp_dir().join(format!("mesh-fw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let (cert1, key1) = cert_and_key(&ca, CLIENT);
    write("cert.pem", &cert1);
    write("key.pem", &key1);
    write("ca.pem", &ca.1);
    let json = format!(
        r#"{{"xds_servers":[{{"server_uri":"127.0.0.1:1","channel_creds":[{{"type":"insecure"}}]}}],
            "node":{{"id":"n"}},
            "certificate_providers":{{"default":{{"plugin_name":"file_watcher","config":{{
                "certificate_file":"{d}/cert.pem","private_key_file":"{d}/key.pem",
                "ca_certificate_file":"{d}/ca.pem","refresh_interval":"60s"}}}}}}}}"#,
        d = dir.display()
    );
    let bootstrap = mesh_core::bootstrap::Bootstrap::from_json(&json).unwrap();
    let providers = CertificateProviders::from_bootstrap(&bootstrap).unwrap();
    let mine = providers.get("default").unwrap().clone();
    settle().await; // the refresh task starts its first wait
    let (addr, mut seen, server) = echo_server(identity(&ca, vec![uri(SERVER)])).await;
    let tls = ClusterTls::compile(
        &tls(vec![exact(SERVER)], true),
        &providers,
        Duration::from_secs(5),
    )
    .unwrap();

    let first = mine.serial();
    let old_conn = tls.connect(addr, Alpn::H2).await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), first);
    let old_conn = echo(old_conn, b"before").await;

    // A new SVID on disk: new handshakes present it, the old connection keeps working.
    let (cert2, key2) = cert_and_key(&ca, CLIENT);
    write("cert.pem", &cert2);
    write("key.pem", &key2);
    refresh(interval).await;
    let second = mine.serial();
    assert_ne!(second, first, "the new files were not picked up");
    let new_conn = tls.connect(addr, Alpn::H2).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap(),
        second,
        "new handshake, old cert"
    );
    let old_conn = echo(old_conn, b"after rotation").await;

    // Half a rotation (a certificate for another key), then garbage: new handshakes keep
    // presenting the current certificate.
    let (cert3, _) = cert_and_key(&ca, CLIENT);
    write("cert.pem", &cert3);
    refresh(interval).await;
    let _c = tls.connect(addr, Alpn::H2).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap(),
        second,
        "mismatched key swapped in"
    );
    write("cert.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    refresh(interval).await;
    let _c = tls.connect(addr, Alpn::H2).await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap(),
        second,
        "corrupt file swapped in"
    );

    // The trust bundle changes too: with only another CA in ca.pem the server is refused on
    // new connections; established ones are untouched; both CAs accept it again.
    write("cert.pem", &cert2);
    write("ca.pem", &other_ca.1);
    refresh(interval).await;
    let err = tls.connect(addr, Alpn::H2).await.unwrap_err();
    assert_eq!(err.reason(), Some(TlsReason::UnknownCa), "{err}");
    let new_conn = echo(new_conn, b"bundle changed").await;
    write("ca.pem", &format!("{}{}", other_ca.1, ca.1));
    refresh(interval).await;
    let _c = tls.connect(addr, Alpn::H2).await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), second);
    let _ = echo(old_conn, b"still").await;
    let _ = echo(new_conn, b"still").await;

    // Dropping the providers (and what was compiled from them) stops the task at once.
    let handles: Vec<_> = providers.watchers.iter().map(|w| w.handle()).collect();
    assert_eq!(handles.len(), 1);
    assert!(!handles[0].is_finished());
    drop((providers, tls, mine));
    settle().await;
    assert!(
        handles[0].is_finished(),
        "the refresh task outlived its providers"
    );
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a refused `file_watcher` re-read logs is the `TlsError`'s text: for a truncated, a
/// corrupted or a mismatched key it names the problem and carries no key material.
#[test]
fn refused_key_files_leak_no_key_bytes() {
    let ca = ca();
    let (cert, key) = cert_and_key(&ca, CLIENT);
    let (_, other_key) = cert_and_key(&ca, CLIENT);
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let truncated = &key[..key.len() / 2];
    let corrupted = key.replacen(&body[10..14], "!!!!", 1);
    for (what, bad) in [
        ("truncated", truncated),
        ("corrupted", corrupted.as_str()),
        ("mismatched", other_key.as_str()),
    ] {
        let err = WorkloadIdentity::from_pem(cert.as_bytes(), bad.as_bytes(), ca.1.as_bytes())
            .expect_err(what);
        let text = format!("{err} {err:?}");
        let bad_body: String = bad.lines().filter(|l| !l.starts_with("-----")).collect();
        for start in 0..bad_body.len().saturating_sub(8) {
            let w = &bad_body[start..start + 8];
            assert!(!text.contains(w), "{what}: key bytes {w:?} in {text}");
        }
        assert!(text.contains("key"), "{what}: {text}");
    }
}

#[test]
fn a_ca_answer_splits_into_chain_and_every_trailing_root() {
    let (r1, r2) = (ca(), ca());
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri(SERVER)];
    let leaf = params.signed_by(&key, &r2.0).unwrap().pem();
    let (chain, roots) =
        crate::tls::split_chain_and_roots(&[leaf.clone(), r1.1.clone(), r2.1.clone()]).unwrap();
    assert_eq!(chain, leaf);
    assert_eq!(roots, format!("{}{}", r1.1, r2.1));
    for bad in [&leaf, &r1.1] {
        let err = crate::tls::split_chain_and_roots(std::slice::from_ref(bad)).unwrap_err();
        assert!(err.to_string().contains("no self-signed root"), "{err}");
    }
}

#[test]
fn dns_sans_match_exact_matchers_with_envoy_s_wildcard_rule() {
    use super::{san_matches, San};
    let dns = |v: &str| San {
        value: v.into(),
        dns: true,
    };
    let want = exact("api.example.com");
    assert!(san_matches(&want, &dns("api.example.com")));
    assert!(
        san_matches(&want, &dns("API.Example.com")),
        "case-insensitive"
    );
    assert!(
        san_matches(&want, &dns("*.example.com")),
        "one label under the wildcard"
    );
    assert!(!san_matches(
        &exact("a.b.example.com"),
        &dns("*.example.com")
    ));
    assert!(!san_matches(&exact("example.com"), &dns("*.example.com")));
    assert!(!san_matches(&exact(".example.com"), &dns("*.example.com")));
    assert!(!san_matches(&want, &dns("*.other.com")));
    // Not a DNS SAN (a URI), or not an exact matcher: plain matching, no wildcard.
    let uri_san = San {
        value: "*.example.com".into(),
        dns: false,
    };
    assert!(!san_matches(&want, &uri_san));
    let prefix = StringMatcher::Prefix {
        value: "api.".into(),
        ignore_case: false,
    };
    assert!(!san_matches(&prefix, &dns("*.example.com")));
}
