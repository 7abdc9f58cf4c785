use std::time::Duration;

use super::*;
use crate::model::{FailurePercentage, SuccessRate};

fn hosts(n: u16) -> Vec<(SocketAddr, Arc<HostStats>)> {
    (1..=n)
        .map(|p| (SocketAddr::from(([127, 0, 0, 1], p)), Arc::default()))
        .collect()
}

/// Only consecutive 5xx, with the given base / max ejection time and a 100 % max.
fn consecutive_only(base: u64, max: u64) -> OutlierDetection {
    OutlierDetection {
        interval: Duration::from_secs(1),
        base_ejection_time: Duration::from_secs(base),
        max_ejection_time: Duration::from_secs(max),
        max_ejection_percent: 100,
        success_rate: SuccessRate {
            enforcing: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn fail(d: &OutlierDetector, h: &HostStats, n: usize, status: u16) {
    for _ in 0..n {
        d.report(h, Outcome::Status(status));
    }
}

/// Advances the paused clock one second at a time, yielding so the sweep task runs.
async fn advance_secs(n: u64) {
    for _ in 0..n {
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_ejects_at_once_then_base_times_ejections_capped_by_max() {
    let hs = hosts(3);
    let h = hs[0].1.clone();
    let mut cfg = consecutive_only(10, 25);
    cfg.interval = Duration::from_secs(5);
    let d = OutlierDetector::new(cfg, hs);
    fail(&d, &h, 4, 500);
    assert!(!h.is_ejected(), "4 of 5");
    d.report(&h, Outcome::Status(200));
    fail(&d, &h, 4, 503);
    assert!(!h.is_ejected(), "a success resets the streak");
    d.report(&h, Outcome::Status(500));
    assert!(
        h.is_ejected(),
        "the 5th in a row ejects without waiting for a sweep"
    );
    assert_eq!((d.ejections_total(), h.times_ejected()), (1, 1));

    // 1st ejection (t = 0): base × 1 = 10 s; the sweep at t = 10 returns it.
    advance_secs(9).await;
    assert!(h.is_ejected(), "still inside 10 s");
    advance_secs(1).await;
    assert!(!h.is_ejected(), "back after 10 s");
    assert_eq!(h.times_ejected(), 1, "no healthy sweep yet to decay it");

    // Ejected again at t = 10: base × 2 = 20 s.
    fail(&d, &h, 5, 500);
    assert_eq!(h.times_ejected(), 2);
    advance_secs(19).await;
    assert!(h.is_ejected(), "2 × base");
    advance_secs(1).await;
    assert!(!h.is_ejected());

    // Third time (t = 30): 3 × 10 = 30 s, capped at max 25 s.
    fail(&d, &h, 5, 500);
    assert_eq!(h.times_ejected(), 3);
    advance_secs(24).await;
    assert!(h.is_ejected());
    advance_secs(1).await;
    assert!(!h.is_ejected(), "capped by max_ejection_time");

    // Each sweep that finds it healthy decays the multiplier by one (t = 60, 65, 70).
    advance_secs(5).await;
    assert_eq!(h.times_ejected(), 2);
    advance_secs(10).await;
    assert_eq!(h.times_ejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn gateway_and_local_origin_counters() {
    let mut cfg = consecutive_only(30, 300);
    cfg.consecutive_5xx.threshold = 0; // disabled: only the gateway counter can trip
    cfg.consecutive_gateway_failure = Consecutive {
        threshold: 3,
        enforcing: 100,
    };
    let hs = hosts(2);
    let (a, b) = (hs[0].1.clone(), hs[1].1.clone());
    let d = OutlierDetector::new(cfg, hs);
    fail(&d, &a, 10, 500);
    assert!(
        !a.is_ejected(),
        "500 is not a gateway failure; 5xx counter disabled"
    );
    d.report(&a, Outcome::LocalOriginFailure);
    fail(&d, &a, 2, 502);
    assert!(
        a.is_ejected(),
        "without the split a local-origin failure is a gateway failure"
    );

    cfg.split_external_local_origin_errors = true;
    cfg.consecutive_local_origin_failure = Consecutive {
        threshold: 2,
        enforcing: 100,
    };
    let d = d.update(
        cfg,
        vec![(SocketAddr::from(([127, 0, 0, 1], 2)), b.clone())],
    );
    d.report(&b, Outcome::LocalOriginFailure);
    fail(&d, &b, 2, 504);
    assert!(
        !b.is_ejected(),
        "with the split it does not count toward the gateway streak"
    );
    d.report(&b, Outcome::LocalOriginFailure);
    d.report(&b, Outcome::Status(200));
    d.report(&b, Outcome::LocalOriginFailure);
    assert!(!b.is_ejected(), "a response ends the local-origin streak");
    d.report(&b, Outcome::LocalOriginFailure);
    assert!(b.is_ejected(), "2 local-origin failures in a row");
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_allows_one_then_stops() {
    let mut cfg = consecutive_only(30, 300);
    cfg.max_ejection_percent = 25;
    let hs = hosts(4);
    let stats: Vec<_> = hs.iter().map(|(_, h)| h.clone()).collect();
    let d = OutlierDetector::new(cfg, hs);
    for h in &stats {
        fail(&d, h, 5, 500);
    }
    assert_eq!(
        d.ejected_now(),
        1,
        "1 of 4 = 25 % reaches the max: no second ejection"
    );

    cfg.max_ejection_percent = 10;
    let hs = hosts(3);
    let stats: Vec<_> = hs.iter().map(|(_, h)| h.clone()).collect();
    let d = OutlierDetector::new(cfg, hs);
    for h in &stats {
        fail(&d, h, 5, 500);
    }
    assert_eq!(
        d.ejected_now(),
        1,
        "10 % of 3 hosts still lets one go (Envoy, gRFC A50)"
    );

    cfg.max_ejection_percent = 0;
    let hs = hosts(3);
    let h = hs[0].1.clone();
    let d = OutlierDetector::new(cfg, hs);
    fail(&d, &h, 5, 500);
    assert_eq!(d.ejected_now(), 0);
}

#[tokio::test(start_paused = true)]
async fn enforcing_zero_detects_without_ejecting() {
    let mut cfg = consecutive_only(30, 300);
    cfg.consecutive_5xx.enforcing = 0;
    let hs = hosts(2);
    let h = hs[0].1.clone();
    let d = OutlierDetector::new(cfg, hs);
    fail(&d, &h, 50, 500);
    assert!(!h.is_ejected());
    assert_eq!(d.ejections_total(), 0);
}

fn sweep_only(sr: u32, fp: u32) -> OutlierDetection {
    let mut cfg = consecutive_only(30, 300);
    cfg.consecutive_5xx.threshold = 0;
    cfg.success_rate = SuccessRate {
        minimum_hosts: 5,
        request_volume: 100,
        stdev_factor: 1900,
        enforcing: sr,
    };
    cfg.failure_percentage = FailurePercentage {
        threshold: 85,
        minimum_hosts: 5,
        request_volume: 50,
        enforcing: fp,
    };
    cfg
}

/// Feeds `ok` successes and `bad` 500s to host `h`.
fn feed(d: &OutlierDetector, h: &HostStats, ok: usize, bad: usize) {
    fail(d, h, ok, 200);
    fail(d, h, bad, 500);
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_below_mean_minus_stdevs() {
    let hs = hosts(6);
    let s: Vec<_> = hs.iter().map(|(_, h)| h.clone()).collect();
    let d = OutlierDetector::new(sweep_only(100, 0), hs);
    // Rates 1.0 ×4, 0.98, 0.5: mean 0.913, population stdev 0.19, limit 0.913 − 1.9 × 0.19
    // ≈ 0.55 — only the 0.5 host falls below it; 0.98 does not.
    for h in &s[..4] {
        feed(&d, h, 100, 0);
    }
    feed(&d, &s[4], 98, 2);
    feed(&d, &s[5], 50, 50);
    assert_eq!(d.ejected_now(), 0, "nothing before the sweep");
    d.sweep();
    assert!(s[5].is_ejected());
    assert_eq!(d.ejected_now(), 1);

    // Below request_volume a host is not evaluated; below minimum_hosts nothing is.
    let hs = hosts(6);
    let s: Vec<_> = hs.iter().map(|(_, h)| h.clone()).collect();
    let d = OutlierDetector::new(sweep_only(100, 0), hs);
    for h in &s[..4] {
        feed(&d, h, 100, 0);
    }
    feed(&d, &s[5], 0, 99);
    d.sweep();
    assert_eq!(
        d.ejected_now(),
        0,
        "only 4 hosts with volume (< minimum_hosts 5)"
    );
}

#[tokio::test(start_paused = true)]
async fn failure_percentage_ejects_at_threshold_and_buckets_reset_each_interval() {
    let hs = hosts(5);
    let s: Vec<_> = hs.iter().map(|(_, h)| h.clone()).collect();
    let mut cfg = sweep_only(0, 100);
    cfg.max_ejection_percent = 100;
    let d = OutlierDetector::new(cfg, hs);
    for h in &s[..3] {
        feed(&d, h, 50, 0);
    }
    feed(&d, &s[3], 15, 85); // exactly 85 %: ejected (Envoy: >=)
    feed(&d, &s[4], 16, 84); // 84 %: kept
    d.sweep();
    assert!(s[3].is_ejected());
    assert!(!s[4].is_ejected());
    // The next sweep sees empty buckets: nothing new.
    d.sweep();
    assert_eq!(d.ejected_now(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_sweep_task_runs_on_the_interval_and_stops_with_the_cluster() {
    let hs = hosts(2);
    let h = hs[0].1.clone();
    let d = OutlierDetector::new(consecutive_only(2, 300), hs);
    fail(&d, &h, 5, 500);
    assert!(h.is_ejected());
    advance_secs(3).await;
    assert!(
        !h.is_ejected(),
        "un-ejected by the task, not by a manual sweep"
    );
    let weak = Arc::downgrade(&d.inner);
    drop(d);
    assert!(weak.upgrade().is_none(), "the task holds only a Weak");
    advance_secs(3).await; // the task wakes, finds nothing, ends
}

#[tokio::test(start_paused = true)]
async fn the_balancer_skips_ejected_endpoints_and_uses_all_when_all_are() {
    use crate::model::{
        ClusterLoadAssignment, Endpoint, HealthStatus, LbPolicy, Locality, LocalityEndpoints,
    };
    use crate::snapshot::Balancer;
    let cla = ClusterLoadAssignment {
        cluster_name: "c".into(),
        overprovisioning_factor: ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
        drop_overloads: Default::default(),
        localities: Arc::new([LocalityEndpoints {
            locality: Locality::default(),
            weight: Some(1),
            priority: 0,
            endpoints: (1..=3)
                .map(|p| Endpoint {
                    address: ([127, 0, 0, 1], p).into(),
                    health: HealthStatus::Healthy,
                    weight: 1,
                })
                .collect(),
        }]),
    };
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::LeastRequest { choice_count: 2 },
    ] {
        let mut b = Balancer::new(policy, Some(&cla), None);
        let hs: Vec<_> = b
            .endpoints()
            .iter()
            .map(|e| (e.address, e.outlier().clone()))
            .collect();
        let d = OutlierDetector::new(consecutive_only(30, 300), hs);
        b.track_ejections(d.ejection_changes());
        let first = b.endpoints()[0].clone();
        fail(&d, first.outlier(), 5, 500);
        assert!(d.is_ejected(first.address));
        for _ in 0..200 {
            assert_ne!(b.pick().unwrap().address(), first.address, "{policy:?}");
        }
        // Carried across a rebuild by address.
        let b2 = Balancer::new(policy, Some(&cla), Some(&b));
        assert!(b2.endpoints()[0].outlier().is_ejected());
        for e in &b.endpoints()[1..] {
            fail(&d, e.outlier(), 5, 500);
        }
        assert_eq!(d.ejected_now(), 3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(b.pick().unwrap().address());
        }
        assert_eq!(
            seen.len(),
            3,
            "all ejected, below the 50 % panic threshold: panic routing over all ({policy:?})"
        );
    }
}

/// `levels[p]` endpoints at priority `p`, ports numbered from 1.
fn leveled(levels: &[u16]) -> crate::model::ClusterLoadAssignment {
    use crate::model::{
        ClusterLoadAssignment, Endpoint, HealthStatus, Locality, LocalityEndpoints,
    };
    let mut port = 0;
    let localities: Vec<LocalityEndpoints> = levels
        .iter()
        .enumerate()
        .map(|(p, n)| LocalityEndpoints {
            locality: Locality::default(),
            weight: Some(1),
            priority: p as u32,
            endpoints: (0..*n)
                .map(|_| {
                    port += 1;
                    Endpoint {
                        address: ([127, 0, 0, 1], port).into(),
                        health: HealthStatus::Healthy,
                        weight: 1,
                    }
                })
                .collect(),
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: "c".into(),
        overprovisioning_factor: ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
        drop_overloads: Default::default(),
        localities: localities.into(),
    }
}

/// A balancer tracking a detector over its endpoints, with panic threshold `panic_ppm`.
fn tracked(levels: &[u16], panic_ppm: u32) -> (crate::snapshot::Balancer, OutlierDetector) {
    use crate::model::{CommonLbConfig, LbPolicy};
    let common = CommonLbConfig {
        healthy_panic_threshold_ppm: panic_ppm,
        ..Default::default()
    };
    let mut b = crate::snapshot::Balancer::with_config(
        LbPolicy::RoundRobin,
        common,
        Some(&leveled(levels)),
        None,
    );
    let hs: Vec<_> = b
        .endpoints()
        .iter()
        .map(|e| (e.address, e.outlier().clone()))
        .collect();
    let d = OutlierDetector::new(consecutive_only(30, 300), hs);
    b.track_ejections(d.ejection_changes());
    (b, d)
}

fn picked(b: &crate::snapshot::Balancer, n: usize) -> std::collections::BTreeMap<u16, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen
            .entry(b.pick().expect("a pick").address().port())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn ejected_endpoints_count_toward_the_panic_threshold() {
    // Three endpoints, threshold 50 %: one ejected leaves 2/3 healthy — no panic, it is avoided.
    let (b, d) = tracked(&[3], 500_000);
    let e = b.endpoints().to_vec();
    fail(&d, e[0].outlier(), 5, 500);
    assert!(!b.in_panic(0));
    let seen = picked(&b, 300);
    assert!(
        !seen.contains_key(&1),
        "an ejected endpoint picked outside panic: {seen:?}"
    );
    // Two ejected: 1/3 healthy < 50 % — panic, all three take traffic again (RR: 100 each).
    fail(&d, e[1].outlier(), 5, 500);
    assert!(b.in_panic(0));
    let seen = picked(&b, 300);
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100],
        "{seen:?}"
    );
    // After the ejection time both come back (sweep on the paused clock): no panic.
    advance_secs(32).await;
    d.sweep();
    assert_eq!(d.ejected_now(), 0);
    assert!(!b.in_panic(0));
    assert_eq!(picked(&b, 300).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn with_the_threshold_at_zero_everything_ejected_means_no_pick() {
    // istiod's default whenever outlierDetection is set (minHealthPercent 0): no panic.
    let (b, d) = tracked(&[3], 0);
    let e = b.endpoints().to_vec();
    fail(&d, e[0].outlier(), 5, 500);
    fail(&d, e[1].outlier(), 5, 500);
    assert!(!b.in_panic(0));
    let seen = picked(&b, 100);
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        vec![3],
        "{seen:?}"
    );
    fail(&d, e[2].outlier(), 5, 500);
    assert!(
        b.pick().is_none(),
        "every endpoint ejected and panic disabled"
    );
}

#[tokio::test(start_paused = true)]
async fn ejections_in_p0_shift_load_to_p1_by_the_overprovisioning_factor() {
    // P0 and P1 with four endpoints each; two of P0 ejected: P0 health 140 × 2/4 = 70 %,
    // P1 100 %, total capped at 100 → P0 70 %, P1 30 % (Envoy's priority-load table).
    let (b, d) = tracked(&[4, 4], 500_000);
    assert_eq!(b.priority_load(), vec![100, 0]);
    let e = b.endpoints().to_vec();
    fail(&d, e[0].outlier(), 5, 500);
    fail(&d, e[1].outlier(), 5, 500);
    assert_eq!(b.priority_load(), vec![70, 30]);
    assert!(!b.in_panic(0) && !b.in_panic(1));
    // 2,000 picks: P1 ~ Binomial(2000, 0.3), mean 600, sd 20.5; [450, 750] is ± 7 sd.
    let seen = picked(&b, 2_000);
    let p1: usize = seen.iter().filter(|(p, _)| **p > 4).map(|(_, n)| n).sum();
    assert!((450..=750).contains(&p1), "P1 got {p1} of 2000: {seen:?}");
    assert!(!seen.contains_key(&1) && !seen.contains_key(&2), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn state_carries_across_rebuilds_and_clears_when_detection_is_removed() {
    use crate::model::{
        Cluster, ClusterLoadAssignment, Endpoint, HealthStatus, LbPolicy, Locality,
        LocalityEndpoints,
    };
    use crate::snapshot::ClusterHandle;
    let cla = |ports: &[u16]| {
        Arc::new(ClusterLoadAssignment {
            cluster_name: "c".into(),
            overprovisioning_factor: ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
            drop_overloads: Default::default(),
            localities: Arc::new([LocalityEndpoints {
                locality: Locality::default(),
                weight: Some(1),
                priority: 0,
                endpoints: ports
                    .iter()
                    .map(|&p| Endpoint {
                        address: ([127, 0, 0, 1], p).into(),
                        health: HealthStatus::Healthy,
                        weight: 1,
                    })
                    .collect(),
            }]),
        })
    };
    let mut with = Cluster::eds("c", LbPolicy::RoundRobin);
    with.outlier_detection = Some(consecutive_only(30, 300));
    let with = Arc::new(with);
    let a = ClusterHandle::new(with.clone(), Some(cla(&[1, 2])), None);
    let d = a.outlier().expect("configured");
    let first = a.balancer().endpoints()[0].clone();
    fail(d, first.outlier(), 5, 500);
    assert!(d.is_ejected(first.address));

    // EDS adds an endpoint: the ejection and the counters carry over by address.
    let b = ClusterHandle::new(with.clone(), Some(cla(&[1, 2, 3])), Some(&a));
    let db = b.outlier().unwrap();
    assert!(db.is_ejected(first.address));
    assert_eq!(db.ejections_total(), 1);
    assert_eq!(db.ejected_now(), 1);

    // Detection removed: nobody stays ejected.
    let without = Arc::new(Cluster::eds("c", LbPolicy::RoundRobin));
    let c = ClusterHandle::new(without, Some(cla(&[1, 2, 3])), Some(&b));
    assert!(c.outlier().is_none());
    assert!(c
        .balancer()
        .endpoints()
        .iter()
        .all(|e| !e.outlier().is_ejected()));
}

/// Envoy removes ejected hosts from a locality's healthy hosts, so an ejection lowers the
/// locality's effective weight `weight × min(1, factor × healthy / total)`, not just its
/// candidates.
#[tokio::test(start_paused = true)]
async fn ejections_lower_a_locality_s_effective_weight() {
    use crate::model::{
        ClusterLoadAssignment, CommonLbConfig, Endpoint, HealthStatus, LbPolicy, Locality,
        LocalityEndpoints,
    };
    let zone = |z: &str, ports: [u16; 2]| LocalityEndpoints {
        locality: Locality {
            zone: z.into(),
            ..Locality::default()
        },
        weight: Some(1),
        priority: 0,
        endpoints: ports
            .iter()
            .map(|p| Endpoint {
                address: ([127, 0, 0, 1], *p).into(),
                health: HealthStatus::Healthy,
                weight: 1,
            })
            .collect(),
    };
    let cla = ClusterLoadAssignment {
        cluster_name: "c".into(),
        overprovisioning_factor: ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
        drop_overloads: Default::default(),
        localities: vec![zone("a", [1, 2]), zone("b", [3, 4])].into(),
    };
    let common = CommonLbConfig {
        locality_weighted: true,
        ..Default::default()
    };
    let mut b =
        crate::snapshot::Balancer::with_config(LbPolicy::RoundRobin, common, Some(&cla), None);
    let hs: Vec<_> = b
        .endpoints()
        .iter()
        .map(|e| (e.address, e.outlier().clone()))
        .collect();
    let d = OutlierDetector::new(consecutive_only(30, 300), hs);
    b.track_ejections(d.ejection_changes());
    let zone_a = |seen: &std::collections::BTreeMap<u16, usize>| {
        seen.get(&1).copied().unwrap_or(0) + seen.get(&2).copied().unwrap_or(0)
    };
    // Both zones whole: 1:1 (the locality schedule is deterministic round robin).
    assert_eq!(zone_a(&picked(&b, 1_700)), 850);

    // One of zone a's two ejected: the level is 3/4 healthy (no panic at 50 %, no spill), zone a
    // is at min(1, 1.4 × 1/2) = 70 % → 70 : 100, exactly 700 of 1,700 picks.
    fail(&d, b.endpoints()[0].outlier(), 5, 500);
    assert!(!b.in_panic(0));
    let seen = picked(&b, 1_700);
    assert_eq!(zone_a(&seen), 700, "{seen:?}");
    assert!(!seen.contains_key(&1), "the ejected endpoint: {seen:?}");

    // Both of zone a ejected: 2/4 healthy, still no panic; zone a has no weight left.
    fail(&d, b.endpoints()[1].outlier(), 5, 500);
    assert!(!b.in_panic(0));
    assert_eq!(zone_a(&picked(&b, 1_000)), 0);

    // Un-ejected after the base ejection time: back to 1:1.
    advance_secs(31).await;
    assert_eq!(d.ejected_now(), 0);
    assert_eq!(zone_a(&picked(&b, 1_700)), 850);
}

/// Envoy's panic balances over every host of the level. When ejections alone push a level into
/// panic, endpoints EDS marks unhealthy take traffic too, not only the routable ones.
#[tokio::test(start_paused = true)]
async fn panic_from_ejections_includes_eds_unhealthy_endpoints() {
    use crate::model::{CommonLbConfig, HealthStatus, LbPolicy};
    let mut cla = leveled(&[4]);
    let mut locality = cla.localities[0].clone();
    let mut eps = locality.endpoints.to_vec();
    eps[3].health = HealthStatus::Unhealthy; // port 4
    locality.endpoints = eps.into();
    cla.localities = vec![locality].into();
    let common = CommonLbConfig {
        healthy_panic_threshold_ppm: 500_000,
        ..Default::default()
    };
    let mut b =
        crate::snapshot::Balancer::with_config(LbPolicy::RoundRobin, common, Some(&cla), None);
    let hs: Vec<_> = b
        .endpoints()
        .iter()
        .map(|e| (e.address, e.outlier().clone()))
        .collect();
    let d = OutlierDetector::new(consecutive_only(30, 300), hs);
    b.track_ejections(d.ejection_changes());
    // 3 of 4 healthy by EDS: no panic, the unhealthy endpoint gets nothing.
    assert!(!b.in_panic(0));
    assert!(!picked(&b, 300).contains_key(&4));
    // Two more ejected: 1 of 4 healthy < 50 % → panic over all four, round robin 100 each.
    let e = b.endpoints().to_vec();
    fail(&d, e[0].outlier(), 5, 500);
    fail(&d, e[1].outlier(), 5, 500);
    assert!(b.in_panic(0));
    let seen = picked(&b, 400);
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        [100; 4],
        "{seen:?}"
    );
    // Un-ejected: out of panic, the unhealthy endpoint is skipped again.
    advance_secs(31).await;
    assert!(!b.in_panic(0));
    assert!(!picked(&b, 300).contains_key(&4));
}
