use std::time::Duration;

use mesh_control_plane::ca::{Ca, SpiffeId};
use mesh_tower::tls::{CertificateRequest, WorkloadIdentity};

use super::*;

fn identity(ttl: Duration) -> Arc<WorkloadIdentity> {
    let ca = Ca::generate("cluster.local").unwrap();
    let id = SpiffeId::new("cluster.local", "default", "greeter").unwrap();
    let req = CertificateRequest::generate().unwrap();
    let svid = ca.sign_csr(req.csr_pem(), &id, Some(ttl)).unwrap();
    req.into_identity(&svid.cert_chain_pem, &svid.trust_bundle_pem)
        .unwrap()
}

#[test]
fn renews_at_the_fraction_of_what_is_left() {
    assert_eq!(
        renew_delay(Duration::from_secs(3600), DEFAULT_RENEW_FRACTION),
        Duration::from_secs(1800)
    );
    assert_eq!(
        renew_delay(Duration::from_secs(10), 0.8),
        Duration::from_secs(8)
    );
    assert_eq!(renew_delay(Duration::ZERO, 0.5), Duration::ZERO);
}

#[test]
fn fraction_is_clamped_and_nan_means_default() {
    let id = identity(Duration::from_secs(60));
    let r = CertificateRenewer::new(id.clone(), "127.0.0.1:1", "spiffe://cluster.local/x");
    assert_eq!(r.clone().renew_fraction(2.0).renew_fraction, 0.95);
    assert_eq!(r.clone().renew_fraction(0.0).renew_fraction, 0.05);
    assert_eq!(
        r.clone().renew_fraction(f64::NAN).renew_fraction,
        DEFAULT_RENEW_FRACTION
    );
    assert_eq!(r.clone().renew_fraction(0.7).renew_fraction, 0.7);
    assert_eq!(r.clone().renew_jitter(0.9).renew_jitter, 0.5);
    assert_eq!(r.clone().renew_jitter(-1.0).renew_jitter, 0.0);
    assert_eq!(
        r.renew_jitter(f64::INFINITY).renew_jitter,
        DEFAULT_RENEW_JITTER
    );
}

#[test]
fn debug_redacts_the_key() {
    let id = identity(Duration::from_secs(60));
    let r = CertificateRenewer::new(id, "127.0.0.1:1", "spiffe://cluster.local/x");
    let dbg = format!("{r:?}");
    assert!(
        dbg.contains("<redacted>") && !dbg.contains("PRIVATE"),
        "{dbg}"
    );
}

/// No attempt before the renewal point; after it, failures are counted, named and retried
/// with backoff (the CA address is a closed loopback port).
#[tokio::test(start_paused = true)]
async fn waits_for_the_renewal_point_then_retries_with_backoff() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // One hour left: the renewal point is ~1800 s away on the (paused) tokio clock.
    let id = identity(Duration::from_secs(3600));
    let handle = CertificateRenewer::new(
        id.clone(),
        closed.to_string(),
        "spiffe://cluster.local/ns/istio-system/sa/mesh-control-plane",
    )
    .renew_jitter(0.0)
    .retry_backoff(Duration::from_secs(5), Duration::from_secs(20))
    .attempt_timeout(Duration::from_secs(1))
    .spawn();
    tokio::time::sleep(Duration::from_secs(1700)).await;
    assert_eq!(handle.status(), RenewalStatus::default(), "too early");
    tokio::time::sleep(Duration::from_secs(200)).await;
    let status = handle.status();
    assert_eq!(status.renewals, 0);
    // Attempts at ~1800, +5, +10, +20, +20, ... by 1900 s: between 2 and 10 even if each
    // attempt also used its full 1 s timeout.
    assert!(
        (2..=10).contains(&status.failures),
        "failures {}",
        status.failures
    );
    let err = status.last_error.unwrap();
    assert!(err.contains(&closed.to_string()), "{err}");
    let serial = id.serial();
    drop(handle);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(id.serial(), serial, "the current certificate stays");
}

/// With the default jitter the first attempt falls in [90 %, 100 %] of the 50 % point.
#[tokio::test(start_paused = true)]
async fn jitter_only_moves_the_renewal_earlier_within_its_bound() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let id = identity(Duration::from_secs(3600));
    let handle = CertificateRenewer::new(id, closed.to_string(), "spiffe://cluster.local/x")
        .retry_backoff(Duration::from_secs(600), Duration::from_secs(600))
        .attempt_timeout(Duration::from_secs(1))
        .spawn();
    // Remaining is 3599..=3600 s: the point is 1799.5..=1800 s, minus up to 10 %.
    tokio::time::sleep(Duration::from_secs(1615)).await;
    assert_eq!(handle.status().failures, 0, "not before 90 % of the point");
    tokio::time::sleep(Duration::from_secs(195)).await;
    assert_eq!(handle.status().failures, 1, "one attempt by the point");
}
