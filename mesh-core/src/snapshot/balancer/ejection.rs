//! Outlier ejections in the priority load and panic mode (Envoy: "ejected hosts are unhealthy"
//! for the load balancer — `outlier.rst`, "Panic threshold" and "Priority levels" in the
//! load-balancing overview; XDS-SEMANTICS.md rows 17–18).
//!
//! The balancer's static priority load comes from EDS health alone. With outlier detection on,
//! each level's healthy count is its routable endpoints minus the ejected ones, fed to the same
//! [`priority_load`]. Ejections are rare and picks are many, so the result is cached in an
//! [`ArcSwap`] and tagged with the detector's change counter
//! ([`crate::snapshot::OutlierDetector::ejection_changes`]): a pick does one atomic load and
//! one `ArcSwap` load, and recomputes (O(endpoints), no lock) only when the counter moved since
//! the cached view was made. Two picks racing on a stale view both recompute; either result is
//! correct for the counter it read.
//!
//! Locality weights follow the same counts: with locality-weighted balancing a locality's
//! effective weight is `weight × min(1, factor × healthy / total)` with ejected endpoints not
//! healthy (Envoy `effectiveLocalityWeight` over the healthy hosts per locality, which exclude
//! ejected ones), so the view also carries each such level's locality schedule rebuilt from
//! the current counts. A level in panic weighs its localities by `weight` alone, as when built.
//!
//! Envoy's panic mode balances over every host of the level, EDS-unhealthy ones included. A
//! level whose static load is not in panic holds only its routable endpoints; when it also has
//! endpoints EDS marks unhealthy, `Balancer::track_ejections` builds a second form of it over
//! all of them, which picks use while ejections hold the level in panic.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use arc_swap::{ArcSwap, Guard};

use super::priority::{priority_load, LevelHealth};
use super::round_robin::weighted_schedule;
use super::{EndpointState, LocalityMembers};

/// The priority load and panic flags for one value of the change counter.
#[derive(Debug)]
pub(super) struct View {
    /// The change counter this view was computed at.
    changes: u64,
    /// Cumulative load: level `i` takes draws (0..100) below `bounds[i]`.
    pub bounds: Box<[u32]>,
    /// Whether each level is in panic (balances over all its hosts, ejected ones included).
    pub panic: Box<[bool]>,
    /// Per level: the locality schedule for the current ejections (locality-weighted levels;
    /// `None` elsewhere, or when no locality keeps any weight).
    pub locality_schedules: Box<[Option<Box<[u32]>>]>,
}

/// Ejection-aware priority load for one balancer.
#[derive(Debug)]
pub(super) struct Tracking {
    changes: Arc<AtomicU64>,
    view: ArcSwap<View>,
    /// Per level: its routable endpoint indices and its total endpoint count.
    levels: Box<[(Box<[u32]>, u64)]>,
    /// Per level: its weighted localities, for locality-weighted levels.
    localities: Box<[Option<Arc<[LocalityMembers]>>]>,
    factor: u32,
    panic_ppm: u32,
}

impl Tracking {
    /// Tracks `changes` for levels given as (routable endpoint indices, total endpoints), with
    /// each locality-weighted level's localities.
    pub fn new(
        changes: Arc<AtomicU64>,
        levels: Box<[(Box<[u32]>, u64)]>,
        localities: Box<[Option<Arc<[LocalityMembers]>>]>,
        factor: u32,
        panic_ppm: u32,
        endpoints: &[Arc<EndpointState>],
    ) -> Self {
        let mut t = Tracking {
            view: ArcSwap::from_pointee(View {
                changes: 0,
                bounds: Box::new([]),
                panic: Box::new([]),
                locality_schedules: Box::new([]),
            }),
            changes,
            levels,
            localities,
            factor,
            panic_ppm,
        };
        let now = t.changes.load(Ordering::Acquire);
        t.view = ArcSwap::from_pointee(t.compute(now, endpoints));
        t
    }

    /// The view for the current ejections: the cached one unless the counter moved.
    #[inline]
    pub fn view(&self, endpoints: &[Arc<EndpointState>]) -> Guard<Arc<View>> {
        let now = self.changes.load(Ordering::Acquire);
        let cached = self.view.load();
        if cached.changes == now {
            return cached;
        }
        self.view.store(Arc::new(self.compute(now, endpoints)));
        self.view.load()
    }

    fn compute(&self, changes: u64, endpoints: &[Arc<EndpointState>]) -> View {
        let healthy = |routable: &[u32]| {
            routable
                .iter()
                .filter(|i| endpoints[**i as usize].is_candidate())
                .count() as u64
        };
        let health: Vec<LevelHealth> = self
            .levels
            .iter()
            .map(|(routable, total)| LevelHealth {
                healthy: healthy(routable),
                total: *total,
            })
            .collect();
        let load = priority_load(&health, self.factor, self.panic_ppm);
        let locality_schedules = self
            .localities
            .iter()
            .enumerate()
            .map(|(level, members)| {
                let members = members.as_ref()?;
                let panic = load.panic.get(level).copied().unwrap_or(false);
                let weights: Vec<u64> = members
                    .iter()
                    .map(|m| {
                        let avail = if panic {
                            100
                        } else {
                            (u64::from(self.factor) * healthy(&m.routable) / m.total.max(1))
                                .min(100)
                        };
                        m.weight * avail
                    })
                    .collect();
                // Children without weight left are left out of the schedule.
                let kept: Vec<u32> = (0..weights.len() as u32)
                    .filter(|i| weights[*i as usize] > 0)
                    .collect();
                if kept.is_empty() {
                    return None;
                }
                let kept_weights: Vec<u64> = kept.iter().map(|i| weights[*i as usize]).collect();
                Some(
                    weighted_schedule(&kept_weights)
                        .iter()
                        .map(|k| kept[*k as usize])
                        .collect(),
                )
            })
            .collect();
        let mut acc = 0;
        View {
            locality_schedules,
            changes,
            bounds: load
                .load
                .iter()
                .map(|l| {
                    acc += l;
                    acc
                })
                .collect(),
            panic: load.panic.into(),
        }
    }
}
