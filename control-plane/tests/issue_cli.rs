//! `mesh-control-plane issue` writes the three files gRPC's `file_watcher` certificate provider
//! reads, signed by the CA it creates (and reuses) in `--ca-dir`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mesh-control-plane");

fn temp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mesh-issue-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn issue(out: &std::path::Path, ca: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args([
            "issue",
            "--trust-domain",
            "cluster.local",
            "--namespace",
            "default",
        ])
        .args(["--service-account", "greeter", "--out"])
        .arg(out)
        .arg("--ca-dir")
        .arg(ca)
        .args(extra)
        .output()
        .expect("run mesh-control-plane")
}

#[test]
fn issue_writes_cert_key_and_bundle_for_file_watcher() {
    let (out, ca) = (temp("out"), temp("ca"));
    let run = issue(&out, &ca, &["--ttl", "2h"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let cert = std::fs::read_to_string(out.join("cert.pem")).unwrap();
    let key = std::fs::read_to_string(out.join("key.pem")).unwrap();
    let bundle = std::fs::read_to_string(out.join("ca.pem")).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem must be private");
    }
    // The leaf carries exactly the SPIFFE ID asked for, and lives about as long as asked.
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
    let leaf = pem.parse_x509().unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<String> = sans
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://cluster.local/ns/default/sa/greeter"]);
    let life = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!((7200..=7200 + 300).contains(&life), "lifetime {life} s");
    // Signed by the bundle's root, which is the CA persisted in --ca-dir.
    let (_, root_pem) = x509_parser::pem::parse_x509_pem(bundle.as_bytes()).unwrap();
    let root = root_pem.parse_x509().unwrap();
    assert_eq!(leaf.issuer(), root.subject());
    assert!(ca.join("ca-key.pem").exists());

    // A second issue reuses the same root.
    let out2 = temp("out2");
    assert!(issue(&out2, &ca, &[]).status.success());
    assert_eq!(
        std::fs::read_to_string(out2.join("ca.pem")).unwrap(),
        bundle
    );
    for d in [out, out2, ca] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_bad_ttl_is_refused_naming_the_flag() {
    let (out, ca) = (temp("bad-out"), temp("bad-ca"));
    let run = issue(&out, &ca, &["--ttl", "soon"]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--ttl"), "{stderr}");
    assert!(!out.join("key.pem").exists());
}

/// `mesh-control-plane token` prints a token on stdout only (logs on stderr) that the control
/// plane's key verifies for the requested identity, and refuses lifetimes over 24h.
#[test]
fn token_prints_a_verifiable_single_use_token() {
    use mesh_control_plane::ca::server::{control_plane_id, DEFAULT_CONTROL_PLANE_NAMESPACE};
    use mesh_control_plane::ca::token::{TokenAuthority, TOKEN_KEY_FILE};
    let ca = temp("token-ca");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["token", "--namespace", "default", "--service-account"])
            .args(["greeter", "--ca-dir"])
            .arg(&ca)
            .args(extra)
            .output()
            .expect("run mesh-control-plane")
    };
    let out = run(&["--ttl", "10m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is the token only: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("minted a single-use bootstrap token"),
        "{stderr}"
    );
    assert!(!stderr.contains(token), "the token is not logged");

    let issuer = control_plane_id("cluster.local", DEFAULT_CONTROL_PLANE_NAMESPACE).unwrap();
    let key = std::fs::read_to_string(ca.join(TOKEN_KEY_FILE)).unwrap();
    let tokens = TokenAuthority::from_pem(&key, &issuer).unwrap();
    let (claims, id) = tokens.verify(token, std::time::SystemTime::now()).unwrap();
    assert_eq!(id.as_str(), "spiffe://cluster.local/ns/default/sa/greeter");
    assert_eq!(claims.exp - claims.iat, 600);

    let file = ca.join("token");
    let out = run(&["--out", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&file).unwrap();
    tokens
        .verify(written.trim(), std::time::SystemTime::now())
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file must be private");
    }

    let out = run(&["--ttl", "2d"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lifetime"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&ca).unwrap();
}
