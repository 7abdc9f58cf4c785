use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair};
use x509_parser::prelude::*;

use super::*;

fn csr() -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    // The workload may ask for anything; the CA must ignore it.
    let params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (csr, key)
}

fn id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "greeter").unwrap()
}

fn parse_leaf(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    pem.contents
}

#[test]
fn svid_has_spiffe_shape() {
    let ca = Ca::generate("cluster.local").unwrap();
    let (csr, key) = csr();
    let svid = ca.sign_csr(&csr, &id(), None).unwrap();
    let der = parse_leaf(&svid.cert_chain_pem);
    let (_, cert) = parse_x509_certificate(&der).unwrap();

    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<_> = san.general_names.iter().map(|n| format!("{n:?}")).collect();
    assert_eq!(
        names,
        vec![r#"URI("spiffe://cluster.local/ns/default/sa/greeter")"#]
    );
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.key_encipherment());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);
    assert!(!cert.is_ca());
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(cert.raw_serial(), svid.serial.as_slice());
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    // One hour plus the one-minute clock-skew backdating.
    assert_eq!(lifetime, 3600 + 60);
    assert_eq!(svid.trust_bundle_pem, ca.trust_bundle_pem());
    // The leaf verifies against the root.
    let root_der = parse_leaf(ca.trust_bundle_pem());
    let (_, root) = parse_x509_certificate(&root_der).unwrap();
    cert.verify_signature(Some(root.public_key())).unwrap();
}

#[test]
fn ttl_is_configurable() {
    let ca = Ca::generate("cluster.local")
        .unwrap()
        .with_default_ttl(Duration::from_secs(600));
    let svid = ca.sign_csr(&csr().0, &id(), None).unwrap();
    let der = parse_leaf(&svid.cert_chain_pem);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    let v = cert.validity();
    assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 600 + 60);
    let svid = ca
        .sign_csr(&csr().0, &id(), Some(Duration::from_secs(30)))
        .unwrap();
    let der = parse_leaf(&svid.cert_chain_pem);
    let (_, cert) = parse_x509_certificate(&der).unwrap();
    let v = cert.validity();
    assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 30 + 60);
}

#[test]
fn refuses_bad_requests() {
    let ca = Ca::generate("cluster.local").unwrap();
    let other = SpiffeId::new("other.domain", "default", "greeter").unwrap();
    let err = ca.sign_csr(&csr().0, &other, None).unwrap_err();
    assert!(matches!(err, CaError::WrongTrustDomain { .. }), "{err}");
    let err = ca.sign_csr("not a csr", &id(), None).unwrap_err();
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
    let now = SystemTime::now();
    let err = ca
        .sign_csr_with_validity(&csr().0, &id(), now, now)
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidValidity(_)), "{err}");
}

#[test]
fn persists_root_and_reloads_it() {
    let dir = std::env::temp_dir().join(format!("mesh-ca-test-{}", rand::random::<u64>()));
    let ca = Ca::load_or_create(&dir, "cluster.local").unwrap();
    let again = Ca::load_or_create(&dir, "cluster.local").unwrap();
    assert_eq!(ca.trust_bundle_pem(), again.trust_bundle_pem());
    // A leaf signed by the reloaded CA chains to the persisted root.
    let svid = again.sign_csr(&csr().0, &id(), None).unwrap();
    let (_, root) = x509_parser::pem::parse_x509_pem(ca.trust_bundle_pem().as_bytes()).unwrap();
    let root = root.parse_x509().unwrap();
    let der = parse_leaf(&svid.cert_chain_pem);
    let (_, leaf) = parse_x509_certificate(&der).unwrap();
    leaf.verify_signature(Some(root.public_key())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_mismatched_key() {
    let dir = std::env::temp_dir().join(format!("mesh-ca-test-{}", rand::random::<u64>()));
    Ca::load_or_create(&dir, "cluster.local").unwrap();
    let cert = std::fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let err = Ca::from_pem(&cert, &other_key, "cluster.local").unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debug_never_shows_key_material() {
    let dir = std::env::temp_dir().join(format!("mesh-ca-test-{}", rand::random::<u64>()));
    let ca = Ca::load_or_create(&dir, "cluster.local").unwrap();
    let key_pem = std::fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap();
    let (svid, leaf_key) = ca.issue(&id(), None).unwrap();
    let printed = format!("{ca:?} {ca:#?} {leaf_key:?} {leaf_key:#?} {svid:?}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    // No 16-character run of either key's base64 body shows up anywhere, except runs that are
    // public anyway (a PKCS#8 key embeds its public key, which is also in the certificates).
    let public = format!("{}{}", svid.cert_chain_pem, svid.trust_bundle_pem).replace('\n', "");
    for key in [key_pem.as_str(), leaf_key.expose()] {
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut private_windows = 0;
        for start in 0..body.len() - 16 {
            let w = &body[start..start + 16];
            if public.contains(w) {
                continue;
            }
            private_windows += 1;
            assert!(
                !printed.replace('\n', "").contains(w),
                "key material {w:?} in output"
            );
        }
        assert!(private_windows > 40, "the check must look at private bytes");
    }
    assert!(printed.contains("<redacted>"));
    std::fs::remove_dir_all(&dir).unwrap();
}
