//! Endpoint picking for one cluster: priority levels with overprovisioning and panic mode,
//! optional locality weighting, then the cluster's policy — weighted round robin, least
//! request (power of `choice_count` choices, gRFC A48), random, ring hash (gRFC A42) or Maglev.
//!
//! Everything that depends only on config and EDS is computed when the balancer is built
//! (it is rebuilt on every CDS / EDS change): the priority load (`priority`), per level the
//! endpoint set (routable endpoints, or all in panic), the round-robin schedules, the hash ring
//! or Maglev table. A pick then only reads that structure and touches atomics: a cursor for
//! round robin, per-endpoint outstanding counters for least request. No lock, no allocation.
//!
//! Endpoint health (EDS `health_status`): HEALTHY and UNKNOWN are routable; UNHEALTHY,
//! TIMEOUT, DRAINING and DEGRADED are not (DEGRADED is not given Envoy's separate degraded
//! load), except for a level in panic.
//!
//! Localities: with `locality_weighted_lb_config` (Envoy) a level first picks a locality by a
//! weighted round-robin schedule over `locality weight × min(1, factor × healthy share)`
//! (localities without weight get nothing; if none has any, the level's endpoints are
//! balanced as one set), then an endpoint inside it with the cluster's policy. Without it
//! localities are ignored, as in Envoy. gRPC (gRFC A27) always weighs localities, picking one
//! at random by weight (`weighted_target`) with no health scaling; this client follows Envoy
//! and leaves locality weighting to the config. RING_HASH and MAGLEV always weigh endpoints by
//! `locality weight (unset = 1) × endpoint weight`, as gRFC A42 does for the ring.
//!
//! A request hash (RING_HASH / MAGLEV) also chooses the priority level (`hash mod 100` against
//! the priority load, as Envoy does), so a key stays on one level; without a hash the pick
//! draws a random one (gRFC A42: a random endpoint).
//!
//! Runtime candidate filter: [`EndpointState::is_candidate`] is the single place a pick asks
//! whether an endpoint may take a request right now (outlier ejection plugs in there). Every
//! policy skips non-candidates (round robin moves on, least request re-samples, ring hash and
//! Maglev walk on to the next endpoint); when a level has none, the other levels are tried in
//! priority order. With outlier detection the priority load and panic state also count ejected
//! endpoints as unhealthy (`ejection.rs`): a level in panic balances over all its endpoints,
//! ejected ones included, and a pick with no candidate anywhere and no panic fails. So do the
//! localities' effective weights (Envoy removes ejected hosts from a locality's healthy hosts):
//! a locality losing endpoints to ejection gets a smaller share, not just fewer candidates.

mod ejection;
mod least_request;
mod maglev;
mod priority;
mod random;
mod ring_hash;
mod round_robin;
mod slow_start;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use super::outlier::HostStats;
use crate::model::{ClusterLoadAssignment, CommonLbConfig, LbPolicy, LocalityEndpoints};
use priority::{priority_load, LevelHealth};
use round_robin::weighted_schedule;

/// One endpoint with its live counters.
#[derive(Debug)]
pub struct EndpointState {
    /// The endpoint's address.
    pub address: SocketAddr,
    /// The address as a URI authority, built once so requests need not format it.
    pub authority: http::uri::Authority,
    /// Its EDS weight.
    pub weight: u32,
    outstanding: AtomicUsize,
    /// Outlier-detection counters and ejection state (kept by address across rebuilds).
    outlier: Arc<HostStats>,
    /// When the endpoint first appeared in the assignment (kept across rebuilds; slow start).
    joined: tokio::time::Instant,
}

impl EndpointState {
    /// Requests currently in flight to this endpoint through the mesh.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Its outlier-detection state.
    pub fn outlier(&self) -> &Arc<HostStats> {
        &self.outlier
    }

    /// Whether the endpoint may take a new request right now: not ejected by outlier
    /// detection. The one runtime candidate filter of every pick; health from EDS is applied
    /// earlier, when the balancer is built.
    #[inline]
    pub fn is_candidate(&self) -> bool {
        !self.outlier.is_ejected()
    }
}

/// A picked endpoint. Holding it counts one outstanding request against the endpoint (for
/// least request); drop it when the request completes.
#[derive(Debug)]
pub struct PickedEndpoint {
    endpoint: Arc<EndpointState>,
}

impl PickedEndpoint {
    /// The endpoint's address.
    pub fn address(&self) -> SocketAddr {
        self.endpoint.address
    }

    /// The endpoint's address as a URI authority (cheap to clone).
    pub fn authority(&self) -> &http::uri::Authority {
        &self.endpoint.authority
    }

    /// The endpoint's outlier-detection state, to report the attempt's outcome to.
    pub fn outlier(&self) -> &HostStats {
        &self.endpoint.outlier
    }
}

impl Drop for PickedEndpoint {
    fn drop(&mut self) {
        self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one priority level picks among its endpoint indices.
#[derive(Debug)]
enum Picker {
    RoundRobin {
        schedule: Box<[u32]>,
        cursor: AtomicUsize,
        /// The distinct endpoints of the schedule (for slow start's weighted draw).
        hosts: Box<[u32]>,
    },
    LeastRequest {
        hosts: Box<[u32]>,
        choice_count: u32,
    },
    Random {
        hosts: Box<[u32]>,
    },
    Ring(ring_hash::Ring),
    Maglev(maglev::Table),
}

/// One priority level.
#[derive(Debug)]
enum Level {
    /// No endpoint to pick.
    Empty,
    /// One set of endpoints.
    Hosts(Picker),
    /// Locality-weighted: a schedule over localities, then each locality's picker.
    Localities {
        schedule: Box<[u32]>,
        cursor: AtomicUsize,
        children: Box<[Picker]>,
        /// Per child: what its effective weight is recomputed from after ejections.
        members: Arc<[LocalityMembers]>,
    },
}

/// One weighted locality of a level, for recomputing its effective weight
/// (`weight × min(1, factor × healthy / total)`) when ejections change `healthy`.
#[derive(Debug)]
pub(super) struct LocalityMembers {
    /// The locality's EDS weight.
    pub weight: u64,
    /// Its routable (EDS HEALTHY / UNKNOWN) endpoint indices.
    pub routable: Box<[u32]>,
    /// All its endpoints, any health.
    pub total: u64,
}

/// The balancer for one cluster's current endpoint set.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    /// Every endpoint of the assignment (all priorities, any health).
    endpoints: Box<[Arc<EndpointState>]>,
    /// Index = priority.
    levels: Box<[Level]>,
    /// Cumulative priority load: level `i` takes draws (0..100) below `bounds[i]`.
    bounds: Box<[u32]>,
    /// Which levels are in panic mode.
    panic: Box<[bool]>,
    /// Routable endpoints (HEALTHY / UNKNOWN) in the assignment.
    routable: usize,
    /// Per level: its routable endpoint indices and its total endpoint count (what
    /// [`ejection::Tracking`] recounts after ejections).
    level_hosts: Box<[(Box<[u32]>, u64)]>,
    factor: u32,
    panic_ppm: u32,
    /// With outlier detection: the priority load and panic state counting ejected endpoints as
    /// unhealthy (replaces `bounds` / `panic`).
    tracking: Option<ejection::Tracking>,
    /// What building a level again needs (see [`Balancer::track_ejections`]).
    source: LevelSource,
    /// Slow start, while some endpoint is still in its window.
    ramp: Option<slow_start::Ramp>,
    /// With outlier detection, per level that is not in panic by EDS health but has endpoints
    /// EDS marks unhealthy: the level over all its endpoints, used when ejections alone push
    /// it into panic (Envoy's panic balances over every host of the level).
    panic_levels: Box<[Option<Level>]>,
}

/// The assignment and settings the levels were built from.
#[derive(Debug)]
struct LevelSource {
    common: CommonLbConfig,
    localities: Arc<[LocalityEndpoints]>,
    /// `first[i]`: locality i's first endpoint index.
    first: Box<[u32]>,
}

impl Balancer {
    /// Builds the balancer with Envoy's default common settings (50 % panic threshold, no
    /// locality weighting). See [`Balancer::with_config`].
    pub fn new(
        policy: LbPolicy,
        cla: Option<&ClusterLoadAssignment>,
        previous: Option<&Balancer>,
    ) -> Self {
        Balancer::with_config(policy, CommonLbConfig::default(), cla, previous)
    }

    /// Builds the balancer for an assignment. `previous` lends its per-endpoint counters to
    /// endpoints that are still present, so in-flight counts survive an EDS update.
    pub fn with_config(
        policy: LbPolicy,
        common: CommonLbConfig,
        cla: Option<&ClusterLoadAssignment>,
        previous: Option<&Balancer>,
    ) -> Self {
        let all_localities: Arc<[LocalityEndpoints]> =
            cla.map_or_else(|| Arc::from([]), |c| c.localities.clone());
        let localities: &[LocalityEndpoints] = &all_localities;
        let factor = cla.map_or(
            ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
            |c| c.overprovisioning_factor,
        );
        let reuse: HashMap<(SocketAddr, u32), &Arc<EndpointState>> = previous
            .map(|p| {
                p.endpoints
                    .iter()
                    .map(|e| ((e.address, e.weight), e))
                    .collect()
            })
            .unwrap_or_default();
        // Endpoints in assignment order; `first[i]` is locality i's first endpoint index.
        let mut endpoints = Vec::new();
        let mut first = Vec::with_capacity(localities.len());
        for loc in localities {
            first.push(endpoints.len() as u32);
            for e in loc.endpoints.iter() {
                endpoints.push(
                    reuse
                        .get(&(e.address, e.weight))
                        .map(|s| Arc::clone(s))
                        .unwrap_or_else(|| {
                            Arc::new(EndpointState {
                                address: e.address,
                                authority: authority_of(e.address),
                                weight: e.weight,
                                outstanding: AtomicUsize::new(0),
                                outlier: previous
                                    .and_then(|p| {
                                        p.endpoints.iter().find(|s| s.address == e.address)
                                    })
                                    .map(|s| s.outlier.clone())
                                    .unwrap_or_default(),
                                joined: previous
                                    .and_then(|p| {
                                        p.endpoints.iter().find(|s| s.address == e.address)
                                    })
                                    .map_or_else(tokio::time::Instant::now, |s| s.joined),
                            })
                        }),
                );
            }
        }
        let levels_n = localities
            .iter()
            .map(|l| l.priority as usize + 1)
            .max()
            .unwrap_or(0);
        let mut health = vec![LevelHealth::default(); levels_n];
        for loc in localities {
            let h = &mut health[loc.priority as usize];
            h.total += loc.endpoints.len() as u64;
            h.healthy += loc
                .endpoints
                .iter()
                .filter(|e| e.health.is_routable())
                .count() as u64;
        }
        let load = priority_load(&health, factor, common.healthy_panic_threshold_ppm);
        let levels = (0..levels_n)
            .map(|p| {
                let in_level: Vec<(usize, &LocalityEndpoints)> = localities
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.priority as usize == p)
                    .collect();
                build_level(policy, common, factor, load.panic[p], &in_level, &first)
            })
            .collect();
        let mut acc = 0;
        let bounds = load
            .load
            .iter()
            .map(|l| {
                acc += l;
                acc
            })
            .collect();
        let mut level_hosts: Vec<(Vec<u32>, u64)> = vec![(Vec::new(), 0); levels_n];
        for (loc, f) in localities.iter().zip(&first) {
            let (routable, total) = &mut level_hosts[loc.priority as usize];
            *total += loc.endpoints.len() as u64;
            routable.extend(
                loc.endpoints
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.health.is_routable())
                    .map(|(j, _)| f + j as u32),
            );
        }
        let ramp = common
            .slow_start
            .filter(|_| matches!(policy, LbPolicy::RoundRobin | LbPolicy::LeastRequest { .. }))
            .and_then(|c| slow_start::Ramp::new(c, &endpoints));
        Balancer {
            policy,
            routable: health.iter().map(|h| h.healthy as usize).sum(),
            endpoints: endpoints.into(),
            levels,
            bounds,
            panic: load.panic.into(),
            level_hosts: level_hosts
                .into_iter()
                .map(|(r, t)| (r.into_boxed_slice(), t))
                .collect(),
            factor,
            panic_ppm: common.healthy_panic_threshold_ppm,
            tracking: None,
            panic_levels: Box::new([]),
            ramp,
            source: LevelSource {
                common,
                first: first.into(),
                localities: all_localities.clone(),
            },
        }
    }

    /// Counts outlier-ejected endpoints as unhealthy from now on: `changes` is the detector's
    /// [`crate::snapshot::OutlierDetector::ejection_changes`]; a pick recomputes the priority
    /// load and panic state when it moves (see `ejection.rs`).
    pub fn track_ejections(&mut self, changes: Arc<AtomicU64>) {
        let src = &self.source;
        self.panic_levels = (0..self.levels.len())
            .map(|p| {
                let in_level: Vec<(usize, &LocalityEndpoints)> = src
                    .localities
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.priority as usize == p)
                    .collect();
                let has_unroutable = in_level
                    .iter()
                    .any(|(_, l)| l.endpoints.iter().any(|e| !e.health.is_routable()));
                (!self.panic[p] && has_unroutable).then(|| {
                    build_level(
                        self.policy,
                        src.common,
                        self.factor,
                        true,
                        &in_level,
                        &src.first,
                    )
                })
            })
            .collect();
        let localities = self
            .levels
            .iter()
            .map(|l| match l {
                Level::Localities { members, .. } => Some(members.clone()),
                _ => None,
            })
            .collect();
        self.tracking = Some(ejection::Tracking::new(
            changes,
            self.level_hosts.clone(),
            localities,
            self.factor,
            self.panic_ppm,
            &self.endpoints,
        ));
    }

    /// Every endpoint of the assignment with its live counters, in assignment order.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// Endpoints in the assignment, routable or not.
    pub fn total_endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Routable (HEALTHY / UNKNOWN) endpoints in the assignment.
    pub fn routable_endpoints(&self) -> usize {
        self.routable
    }

    /// Percent of requests each priority level receives now (index = priority), counting
    /// ejected endpoints as unhealthy when outlier detection is on.
    pub fn priority_load(&self) -> Vec<u32> {
        let mut prev = 0;
        let view = self.tracking.as_ref().map(|t| t.view(&self.endpoints));
        view.as_ref()
            .map_or(&self.bounds, |v| &v.bounds)
            .iter()
            .map(|b| {
                let l = b - prev;
                prev = *b;
                l
            })
            .collect()
    }

    /// Whether priority level `priority` is in panic mode now (balancing over all its
    /// endpoints, ejected ones included).
    pub fn in_panic(&self, priority: usize) -> bool {
        let view = self.tracking.as_ref().map(|t| t.view(&self.endpoints));
        view.as_ref()
            .map_or(&self.panic, |v| &v.panic)
            .get(priority)
            .copied()
            .unwrap_or(false)
    }

    /// The policy the balancer was built for.
    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// Picks an endpoint, or `None` when no endpoint can be picked. Hash-based policies use a
    /// random hash (see [`Balancer::pick_with_hash`]).
    pub fn pick(&self) -> Option<PickedEndpoint> {
        self.pick_with_hash(None)
    }

    /// Picks an endpoint using the request hash when the policy is RING_HASH or MAGLEV (`None`
    /// = no hash policy produced one: a random hash, gRFC A42). Other policies ignore it.
    pub fn pick_with_hash(&self, hash: Option<u64>) -> Option<PickedEndpoint> {
        self.pick_with_hash_attempt(hash, 0)
    }

    /// [`Balancer::pick_with_hash`] for host-selection try `attempt` (0 = the first) of one
    /// request attempt, when a retry host predicate (`previous_hosts`) rejected the earlier
    /// tries. RING_HASH walks `attempt` entries further along the ring and MAGLEV mixes
    /// `attempt` into the hash (Envoy `Ring::chooseHost` / Maglev `chooseHost`), so a request
    /// hash does not land on the same endpoint again; other policies draw afresh anyway.
    pub fn pick_with_hash_attempt(
        &self,
        hash: Option<u64>,
        attempt: u32,
    ) -> Option<PickedEndpoint> {
        if self.levels.is_empty() {
            return None;
        }
        let hash = match hash {
            Some(h) if self.policy.uses_hash() => h,
            // A draw is needed to split between levels, and by random and hash policies; a
            // single-level round robin / least request pick skips it.
            _ if self.levels.len() > 1
                || matches!(self.policy, LbPolicy::Random)
                || self.policy.uses_hash() =>
            {
                rand::random::<u64>()
            }
            _ => 0,
        };
        let draw = (hash % 100) as u32;
        let view = self.tracking.as_ref().map(|t| t.view(&self.endpoints));
        let (bounds, panic) = view
            .as_ref()
            .map_or((&self.bounds, &self.panic), |v| (&v.bounds, &v.panic));
        let chosen = bounds
            .partition_point(|b| *b <= draw)
            .min(self.levels.len() - 1);
        let in_panic = |i: usize| panic.get(i).copied().unwrap_or(false);
        // Locality schedules reweighed for the current ejections, where they differ.
        let schedule = |i: usize| {
            view.as_ref()
                .and_then(|v| v.locality_schedules.get(i)?.as_deref())
        };
        // A level that ejections pushed into panic balances over all its endpoints, those EDS
        // marks unhealthy included (built in `track_ejections`).
        let level = |i: usize| match self.panic_levels.get(i) {
            Some(Some(all)) if in_panic(i) => (all, None),
            _ => (&self.levels[i], schedule(i)),
        };
        // Nothing in the chosen level can take it: the others, in priority order. A level in
        // panic balances over all its endpoints, ejected ones included (Envoy).
        let pick = |i: usize| {
            let (l, reweighed) = level(i);
            self.pick_level(l, hash, attempt, in_panic(i), reweighed)
        };
        let index = pick(chosen).or_else(|| {
            (0..self.levels.len())
                .filter(|i| *i != chosen)
                .find_map(pick)
        })?;
        let endpoint = &self.endpoints[index as usize];
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(PickedEndpoint {
            endpoint: endpoint.clone(),
        })
    }

    /// Picks in one level; `reweighed` replaces a locality level's static schedule when
    /// ejections changed its localities' effective weights.
    fn pick_level(
        &self,
        level: &Level,
        hash: u64,
        attempt: u32,
        panic: bool,
        reweighed: Option<&[u32]>,
    ) -> Option<u32> {
        match level {
            Level::Empty => None,
            Level::Hosts(p) => self.pick_in(p, hash, attempt, panic),
            Level::Localities {
                schedule,
                cursor,
                children,
                ..
            } => {
                let schedule = reweighed.unwrap_or(schedule);
                let n = schedule.len();
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                // A locality with no candidate left: move on to the next in the schedule.
                (0..n).find_map(|i| {
                    let child = &children[schedule[(start + i) % n] as usize];
                    self.pick_in(child, hash, attempt, panic)
                })
            }
        }
    }

    fn pick_in(&self, picker: &Picker, hash: u64, attempt: u32, panic: bool) -> Option<u32> {
        let ok = |i: u32| panic || self.endpoints[i as usize].is_candidate();
        let ramping = self.ramp.as_ref().and_then(|r| Some((r, r.active()?)));
        match picker {
            Picker::RoundRobin { hosts, .. } if ramping.is_some() => {
                let (ramp, now) = ramping?;
                ramp.pick_weighted(hosts, &self.endpoints, now, ok)
            }
            Picker::LeastRequest { hosts, .. } if ramping.is_some() => {
                let (ramp, now) = ramping?;
                ramp.pick_least(hosts, &self.endpoints, now, ok)
            }
            Picker::RoundRobin {
                schedule, cursor, ..
            } => {
                let n = schedule.len();
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| schedule[(start + i) % n]).find(|i| ok(*i))
            }
            Picker::LeastRequest {
                hosts,
                choice_count,
            } => least_request::pick(hosts, *choice_count, &self.endpoints, ok),
            Picker::Random { hosts } => random::pick(hosts, hash, ok),
            Picker::Ring(ring) => {
                let skip = attempt as usize;
                ring.walk(hash)
                    .skip(skip)
                    .chain(ring.walk(hash).take(skip))
                    .find(|i| ok(*i))
            }
            Picker::Maglev(table) => {
                // A fixed odd multiplier spreads consecutive attempts over the table.
                let h = hash ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                table.walk(h).find(|i| ok(*i))
            }
        }
    }
}

/// Builds one priority level from its localities (`(index in the assignment, locality)`).
fn build_level(
    policy: LbPolicy,
    common: CommonLbConfig,
    factor: u32,
    panic: bool,
    localities: &[(usize, &LocalityEndpoints)],
    first: &[u32],
) -> Level {
    // Endpoint indices of a locality that the level balances over.
    let members = |(li, loc): (usize, &LocalityEndpoints)| -> Vec<(u32, SocketAddr, u32)> {
        loc.endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| panic || e.health.is_routable())
            .map(|(j, e)| (first[li] + j as u32, e.address, e.weight))
            .collect()
    };
    if policy.uses_hash() {
        let hosts: Vec<(u32, SocketAddr, u64)> = localities
            .iter()
            .flat_map(|&(li, loc)| {
                let lw = u64::from(loc.weight.unwrap_or(1).max(1));
                members((li, loc))
                    .into_iter()
                    .map(move |(i, a, w)| (i, a, lw * u64::from(w)))
            })
            .collect();
        if hosts.is_empty() {
            return Level::Empty;
        }
        return Level::Hosts(match policy {
            LbPolicy::Maglev { table_size } => {
                Picker::Maglev(maglev::Table::new(&hosts, table_size))
            }
            LbPolicy::RingHash {
                min_ring_size,
                max_ring_size,
            } => Picker::Ring(ring_hash::Ring::new(&hosts, min_ring_size, max_ring_size)),
            _ => unreachable_picker(&hosts),
        });
    }
    if common.locality_weighted {
        let mut weights = Vec::new();
        let mut children = Vec::new();
        let mut locality_members = Vec::new();
        for &(li, loc) in localities {
            let hosts = members((li, loc));
            let Some(w) = loc.weight.filter(|w| *w > 0) else {
                continue;
            };
            if hosts.is_empty() {
                continue;
            }
            let total = loc.endpoints.len() as u64;
            let healthy = loc
                .endpoints
                .iter()
                .filter(|e| e.health.is_routable())
                .count() as u64;
            // Availability in percent, capped at 100; a level in panic ignores health.
            let avail = if panic {
                100
            } else {
                (u64::from(factor) * healthy / total.max(1)).min(100)
            };
            let eff = u64::from(w) * avail;
            if eff == 0 {
                continue;
            }
            weights.push(eff);
            children.push(simple_picker(policy, &hosts));
            locality_members.push(LocalityMembers {
                weight: u64::from(w),
                routable: loc
                    .endpoints
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.health.is_routable())
                    .map(|(j, _)| first[li] + j as u32)
                    .collect(),
                total,
            });
        }
        if !children.is_empty() {
            return Level::Localities {
                schedule: weighted_schedule(&weights),
                cursor: AtomicUsize::new(rand::random::<u32>() as usize),
                children: children.into(),
                members: locality_members.into(),
            };
        }
    }
    let hosts: Vec<(u32, SocketAddr, u32)> = localities.iter().flat_map(|&l| members(l)).collect();
    if hosts.is_empty() {
        Level::Empty
    } else {
        Level::Hosts(simple_picker(policy, &hosts))
    }
}

/// The picker of a non-hash policy over `(endpoint index, address, weight)`.
fn simple_picker(policy: LbPolicy, hosts: &[(u32, SocketAddr, u32)]) -> Picker {
    let indices: Box<[u32]> = hosts.iter().map(|h| h.0).collect();
    match policy {
        LbPolicy::LeastRequest { choice_count } => Picker::LeastRequest {
            hosts: indices,
            choice_count,
        },
        LbPolicy::Random => Picker::Random { hosts: indices },
        // RoundRobin (hash policies never get here).
        _ => {
            let weights: Vec<u64> = hosts.iter().map(|h| u64::from(h.2)).collect();
            let schedule = weighted_schedule(&weights)
                .iter()
                .map(|i| indices[*i as usize])
                .collect();
            Picker::RoundRobin {
                schedule,
                cursor: AtomicUsize::new(rand::random::<u32>() as usize),
                hosts: indices,
            }
        }
    }
}

/// Only reachable if `uses_hash` and the match above disagree; a plain schedule keeps the
/// balancer usable rather than panicking.
fn unreachable_picker(hosts: &[(u32, SocketAddr, u64)]) -> Picker {
    Picker::Random {
        hosts: hosts.iter().map(|h| h.0).collect(),
    }
}

fn authority_of(addr: SocketAddr) -> http::uri::Authority {
    // A SocketAddr always formats as a valid authority (`1.2.3.4:80`, `[::1]:80`).
    http::uri::Authority::try_from(addr.to_string())
        .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"))
}

#[cfg(test)]
mod tests;
