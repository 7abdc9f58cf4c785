//! Outlier detection: passive health checking that ejects misbehaving endpoints from the
//! balancer for a while (Envoy `outlier.rst`, `outlier_detection.proto`; gRFC A50;
//! XDS-SEMANTICS.md row 17).
//!
//! ## What is implemented, and whose semantics
//!
//! One engine serves both transports and follows **Envoy**, a superset of gRFC A50:
//! - **Consecutive failures** (Envoy only; A50 has none): `consecutive_5xx`,
//!   `consecutive_gateway_failure` (502/503/504) and, with `split_external_local_origin_errors`,
//!   `consecutive_local_origin_failure`. They eject *at once* when the counter reaches the
//!   threshold, as Envoy does — not at the next sweep. Without the split, a local-origin failure
//!   (connect failure, timeout, reset) counts as a 5xx and a gateway failure (Envoy maps it to
//!   503); with it, it counts only toward the local-origin counter.
//! - **Success rate** and **failure percentage** (both Envoy and A50), evaluated at each
//!   `interval` over the requests of the last interval. Failure percentage ejects at
//!   `failure% >= threshold` (Envoy's doc; grpc-go uses `>`).
//! - **Enforcement**: each would-be ejection is enforced with probability `enforcing_*` %.
//! - **`max_ejection_percent`**: before each ejection, stop if the ejected share is already
//!   `>= max_ejection_percent` — so one host can always be ejected (unless the max is 0). This
//!   is gRFC A50's rule and Envoy's classic one (grpc-java #9489 "matches Envoy"); newer Envoy
//!   only goes past the max with `always_eject_one_host`, which we do not read.
//! - **Ejection time**: `base_ejection_time × times ejected`, capped at
//!   `max(base_ejection_time, max_ejection_time)`; un-ejected at the first sweep after it passes.
//!   At each sweep a host that is not ejected has its times-ejected decremented (Envoy and A50).
//! - **Ejected hosts count as unhealthy** for the balancer's priority load and panic mode, as in
//!   Envoy: when the non-ejected share of a priority level falls below `healthy_panic_threshold`
//!   (and the cluster's total health is below 100 %), the level balances over all its hosts,
//!   ejected ones included; ejections in one level also shift load to the next per the
//!   overprovisioning factor. With the threshold at 0 (istiod's default whenever
//!   `outlierDetection` is set) and every candidate ejected, the pick fails
//!   (`no_healthy_endpoint`), as Envoy's "no healthy upstream" does. gRFC A50 has no panic mode:
//!   ejected subchannels are simply not picked, and with all ejected the pick fails — the same
//!   outcome as threshold 0, which is what istiod sends gRPC clients too. The balancer notices
//!   changes through one counter bumped on every ejection and un-ejection
//!   ([`OutlierDetector::ejection_changes`]).
//!
//! For gRPC traffic the request path reports a trailers-only response's `grpc-status` mapped to
//! HTTP as Envoy does (UNAVAILABLE → 503, DEADLINE_EXCEEDED → 504, …) and transport failures; a
//! `grpc-status` sent in trailers after a body is not inspected yet, so such an error counts as a
//! success (A50 counts any non-OK status as a failure).
//!
//! ## Shape
//!
//! Per endpoint, [`HostStats`] holds lock-free counters the request path bumps
//! ([`OutlierDetector::report`]): atomics only, no locks, no allocation. Per (target, cluster) an
//! [`OutlierDetector`] holds the config and the current host set; it is carried across snapshot
//! rebuilds like the retry counters, and endpoints keep their stats by address. The sweep runs in
//! a tokio task, started on the first report, that holds only a `Weak`: it ends once no snapshot
//! references the cluster. Time is `tokio::time`, so tests run on a paused clock.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Weak,
    },
};

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::model::{Consecutive, OutlierDetection};

/// What one attempt to an endpoint ended in, as the request path reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived with this HTTP status.
    Status(u16),
    /// The attempt failed locally: connect failure, timeout or reset before a response.
    LocalOriginFailure,
}

/// One endpoint's outlier counters and ejection state. Lock-free; shared by every snapshot that
/// has the endpoint.
#[derive(Debug, Default)]
pub struct HostStats {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    successes: AtomicU64,
    failures: AtomicU64,
    ejected: AtomicBool,
    /// Nanoseconds since the detector's epoch when the current ejection began.
    ejected_at: AtomicU64,
    times_ejected: AtomicU32,
}

impl HostStats {
    /// Whether the endpoint is ejected now (the balancer skips it).
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// How many recent ejections the next ejection's length multiplies by.
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Returns the endpoint to service and forgets its history (detection was removed).
    pub fn clear(&self) {
        self.uneject();
        self.times_ejected.store(0, Ordering::Relaxed);
        self.successes.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
    }

    fn uneject(&self) {
        self.ejected.store(false, Ordering::Relaxed);
        self.reset_consecutive();
    }

    fn reset_consecutive(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        self.consecutive_local.store(0, Ordering::Relaxed);
    }
}

/// An endpoint's address and its stats, as the detector lists them.
pub type Host = (SocketAddr, Arc<HostStats>);

/// A cluster's outlier detector: config, current hosts, ejection counter and the sweep.
#[derive(Debug)]
pub struct OutlierDetector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ArcSwap<OutlierDetection>,
    hosts: ArcSwap<Box<[Host]>>,
    epoch: Instant,
    started: AtomicBool,
    ejections: AtomicU64,
    /// Bumped on every ejection and un-ejection: the balancer recomputes its priority load and
    /// panic state when it sees a new value (see `balancer/ejection.rs`).
    changes: Arc<AtomicU64>,
}

impl OutlierDetector {
    /// A detector for `hosts` under `config`. No task runs until the first report.
    pub fn new(config: OutlierDetection, hosts: Vec<Host>) -> Self {
        OutlierDetector {
            inner: Arc::new(Inner {
                config: ArcSwap::from_pointee(config),
                hosts: ArcSwap::from_pointee(hosts.into_boxed_slice()),
                epoch: Instant::now(),
                started: AtomicBool::new(false),
                ejections: AtomicU64::new(0),
                changes: Arc::default(),
            }),
        }
    }

    /// A detector sharing this one's state (same counters, same sweep) with a new config and
    /// host set — for the cluster's handle in a rebuilt snapshot.
    pub fn update(&self, config: OutlierDetection, hosts: Vec<Host>) -> Self {
        self.inner.config.store(Arc::new(config));
        self.inner.hosts.store(Arc::new(hosts.into_boxed_slice()));
        OutlierDetector {
            inner: self.inner.clone(),
        }
    }

    /// The counter bumped on every ejection and un-ejection, for the balancer to notice that
    /// its hosts' health changed.
    pub fn ejection_changes(&self) -> Arc<AtomicU64> {
        self.inner.changes.clone()
    }

    /// Ejections made so far (consecutive and sweep), for metrics.
    pub fn ejections_total(&self) -> u64 {
        self.inner.ejections.load(Ordering::Relaxed)
    }

    /// Endpoints ejected now.
    pub fn ejected_now(&self) -> usize {
        self.inner
            .hosts
            .load()
            .iter()
            .filter(|(_, h)| h.is_ejected())
            .count()
    }

    /// Whether the endpoint at `addr` is ejected now.
    pub fn is_ejected(&self, addr: SocketAddr) -> bool {
        self.inner
            .hosts
            .load()
            .iter()
            .any(|(a, h)| *a == addr && h.is_ejected())
    }

    /// Records one attempt's outcome against `host`; may eject it at once (consecutive
    /// failures). Atomics only, unless an ejection happens.
    pub fn report(&self, host: &HostStats, outcome: Outcome) {
        self.ensure_sweep();
        let cfg = self.inner.config.load();
        let split = cfg.split_external_local_origin_errors;
        let (is_5xx, is_gateway, local) = match outcome {
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504), false),
            // Without the split Envoy maps a local-origin failure to a 503 (a 5xx and a
            // gateway failure); with it, the failure is tracked on its own.
            Outcome::LocalOriginFailure if split => (false, false, true),
            Outcome::LocalOriginFailure => (true, true, false),
        };
        // Interval buckets: with the split, local-origin outcomes stay out of success rate and
        // failure percentage (those would use the local-origin variants, not implemented).
        if !local {
            let bucket = if is_5xx {
                &host.failures
            } else {
                &host.successes
            };
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let trip = |counter: &AtomicU32, failed: bool, c: Consecutive| {
            if !failed {
                counter.store(0, Ordering::Relaxed);
                return;
            }
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            if c.threshold != 0 && n == c.threshold {
                counter.store(0, Ordering::Relaxed);
                if draw(c.enforcing) {
                    self.inner.eject(host, &cfg);
                }
            }
        };
        match outcome {
            Outcome::LocalOriginFailure if split => {
                trip(
                    &host.consecutive_local,
                    true,
                    cfg.consecutive_local_origin_failure,
                );
            }
            _ => {
                if split {
                    // A response came back: the local-origin streak ends.
                    host.consecutive_local.store(0, Ordering::Relaxed);
                }
                trip(&host.consecutive_5xx, is_5xx, cfg.consecutive_5xx);
                trip(
                    &host.consecutive_gateway,
                    is_gateway,
                    cfg.consecutive_gateway_failure,
                );
            }
        }
    }

    fn ensure_sweep(&self) {
        if self.inner.started.load(Ordering::Relaxed)
            || self.inner.started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (a synchronous test): try again on the next report.
            self.inner.started.store(false, Ordering::Release);
            return;
        };
        rt.spawn(sweep_loop(Arc::downgrade(&self.inner), Instant::now()));
    }

    /// Runs one sweep now (the task calls this every `interval`; tests may call it directly).
    pub fn sweep(&self) {
        self.inner.sweep();
    }
}

/// Sweeps every `interval` counted from `start` (the first report), re-reading the interval
/// each time so a config change applies from the next sweep.
async fn sweep_loop(inner: Weak<Inner>, start: Instant) {
    let mut next = start;
    loop {
        let Some(interval) = inner.upgrade().map(|i| i.config.load().interval) else {
            return;
        };
        next += interval;
        tokio::time::sleep_until(next).await;
        match inner.upgrade() {
            Some(i) => i.sweep(),
            None => return,
        }
    }
}

/// `true` with probability `percent` %.
fn draw(percent: u32) -> bool {
    percent >= 100 || (percent > 0 && rand::random_range(0..100) < percent)
}

impl Inner {
    fn now_nanos(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Ejects `host` unless the cluster is at `max_ejection_percent`. Returns whether it did.
    fn eject(&self, host: &HostStats, cfg: &OutlierDetection) -> bool {
        let hosts = self.hosts.load();
        let total = hosts.len() as u64;
        let ejected = hosts.iter().filter(|(_, h)| h.is_ejected()).count() as u64;
        // Stop once the ejected share reaches the max (so the first ejection always passes).
        if total == 0 || ejected * 100 >= u64::from(cfg.max_ejection_percent) * total {
            return false;
        }
        if host
            .ejected
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        host.ejected_at.store(self.now_nanos(), Ordering::Relaxed);
        host.times_ejected.fetch_add(1, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::Release);
        true
    }

    fn sweep(&self) {
        let cfg = self.config.load();
        let hosts = self.hosts.load();
        // Swap the interval buckets.
        let counts: Vec<(u64, u64)> = hosts
            .iter()
            .map(|(_, h)| {
                (
                    h.successes.swap(0, Ordering::Relaxed),
                    h.failures.swap(0, Ordering::Relaxed),
                )
            })
            .collect();
        let sr = cfg.success_rate;
        if sr.enforcing > 0 {
            let with_volume: Vec<(usize, f64)> = counts
                .iter()
                .enumerate()
                .filter(|(_, (s, f))| s + f >= u64::from(sr.request_volume.max(1)))
                .map(|(i, (s, f))| (i, *s as f64 / (s + f) as f64))
                .collect();
            if with_volume.len() >= sr.minimum_hosts as usize && !with_volume.is_empty() {
                let n = with_volume.len() as f64;
                let mean = with_volume.iter().map(|(_, r)| r).sum::<f64>() / n;
                let var = with_volume
                    .iter()
                    .map(|(_, r)| (r - mean).powi(2))
                    .sum::<f64>()
                    / n;
                let limit = mean - var.sqrt() * (f64::from(sr.stdev_factor) / 1000.0);
                for (i, rate) in with_volume {
                    if rate < limit && draw(sr.enforcing) {
                        self.eject(&hosts[i].1, &cfg);
                    }
                }
            }
        }
        let fp = cfg.failure_percentage;
        if fp.enforcing > 0 {
            let with_volume: Vec<(usize, u64)> = counts
                .iter()
                .enumerate()
                .filter(|(_, (s, f))| s + f >= u64::from(fp.request_volume.max(1)))
                .map(|(i, (s, f))| (i, f * 100 / (s + f)))
                .collect();
            if with_volume.len() >= fp.minimum_hosts as usize {
                for (i, pct) in with_volume {
                    if pct >= u64::from(fp.threshold) && draw(fp.enforcing) {
                        self.eject(&hosts[i].1, &cfg);
                    }
                }
            }
        }
        // Un-eject hosts whose time is up; decay the multiplier of the others.
        let now = self.now_nanos();
        let base = cfg.base_ejection_time;
        let cap = cfg.max_ejection_time.max(base);
        for (_, h) in hosts.iter() {
            if h.is_ejected() {
                let times = h.times_ejected().max(1);
                let length = base.saturating_mul(times).min(cap);
                let until = h
                    .ejected_at
                    .load(Ordering::Relaxed)
                    .saturating_add(length.as_nanos().try_into().unwrap_or(u64::MAX));
                if now >= until {
                    h.uneject();
                    self.changes.fetch_add(1, Ordering::Release);
                }
            } else {
                let _ = h
                    .times_ejected
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1));
            }
        }
    }
}

#[cfg(test)]
#[path = "outlier_tests.rs"]
mod tests;
