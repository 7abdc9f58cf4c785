//! Endpoint picking for one cluster: weighted round robin and least request (power of
//! `choice_count` choices, gRFC A48 / Envoy LEAST_REQUEST).
//!
//! Only routable endpoints (EDS health UNKNOWN or HEALTHY) of the highest priority that has
//! any are candidates — plain priority failover. Locality weights are not applied here: Envoy
//! ignores them unless `locality_weighted_lb_config` is set, and the resilience work adds that
//! mode. Picks are lock-free: an atomic cursor for round robin, atomic per-endpoint
//! outstanding counters for least request.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use crate::model::{ClusterLoadAssignment, Endpoint, LbPolicy};

/// Largest round-robin schedule built for weighted endpoints; weights are scaled down to fit.
const MAX_SCHEDULE: usize = 4096;

/// One candidate endpoint with its live counters.
#[derive(Debug)]
pub struct EndpointState {
    /// The endpoint's address.
    pub address: SocketAddr,
    /// The address as a URI authority, built once so requests need not format it.
    pub authority: http::uri::Authority,
    /// Its EDS weight.
    pub weight: u32,
    outstanding: AtomicUsize,
}

impl EndpointState {
    /// Requests currently in flight to this endpoint through the mesh.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
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
}

impl Drop for PickedEndpoint {
    fn drop(&mut self) {
        self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The balancer for one cluster's current endpoint set.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    endpoints: Box<[Arc<EndpointState>]>,
    /// Round-robin order, as indices into `endpoints` (interleaved by weight).
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
    /// How many endpoints the assignment has in total, routable or not (for error messages).
    total: usize,
}

impl Balancer {
    /// Builds the balancer for an assignment. `previous` lends its per-endpoint counters to
    /// endpoints that are still present, so in-flight counts survive an EDS update.
    pub fn new(
        policy: LbPolicy,
        cla: Option<&ClusterLoadAssignment>,
        previous: Option<&Balancer>,
    ) -> Self {
        let chosen: Vec<&Endpoint> = cla.map(routable_endpoints).unwrap_or_default();
        let endpoints: Box<[Arc<EndpointState>]> = chosen
            .iter()
            .map(|e| {
                previous
                    .and_then(|p| {
                        p.endpoints
                            .iter()
                            .find(|s| s.address == e.address && s.weight == e.weight)
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(EndpointState {
                            address: e.address,
                            authority: authority_of(e.address),
                            weight: e.weight,
                            outstanding: AtomicUsize::new(0),
                        })
                    })
            })
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let total = cla
            .map(|c| c.localities.iter().map(|l| l.endpoints.len()).sum())
            .unwrap_or(0);
        Balancer {
            policy,
            schedule: weighted_schedule(&weights),
            endpoints,
            cursor: AtomicUsize::new(rand::random::<u32>() as usize),
            total,
        }
    }

    /// Candidate endpoints (routable, highest available priority).
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// Endpoints in the assignment, routable or not.
    pub fn total_endpoints(&self) -> usize {
        self.total
    }

    /// Picks an endpoint, or `None` when no endpoint is routable.
    pub fn pick(&self) -> Option<PickedEndpoint> {
        let n = self.endpoints.len();
        let endpoint = match (n, self.policy) {
            (0, _) => return None,
            (1, _) => &self.endpoints[0],
            (_, LbPolicy::RoundRobin) => {
                let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
                &self.endpoints[self.schedule[i] as usize]
            }
            (_, LbPolicy::LeastRequest { choice_count }) => {
                // Sample with replacement (gRFC A48); fewest outstanding per unit of weight wins.
                let mut best: Option<&Arc<EndpointState>> = None;
                for _ in 0..choice_count.max(2) {
                    let c = &self.endpoints[rand::random_range(0..n)];
                    best = match best {
                        Some(b) if load(b) <= load(c) => Some(b),
                        _ => Some(c),
                    };
                }
                best.unwrap_or(&self.endpoints[0])
            }
        };
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(PickedEndpoint {
            endpoint: endpoint.clone(),
        })
    }
}

fn authority_of(addr: SocketAddr) -> http::uri::Authority {
    // A SocketAddr always formats as a valid authority (`1.2.3.4:80`, `[::1]:80`).
    http::uri::Authority::try_from(addr.to_string())
        .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"))
}

fn load(e: &EndpointState) -> u64 {
    // outstanding / weight compared without division: scale by the largest weight we allow.
    (e.outstanding() as u64 * 1_000_000) / u64::from(e.weight.max(1))
}

/// Routable endpoints of the highest priority that has any.
fn routable_endpoints(cla: &ClusterLoadAssignment) -> Vec<&Endpoint> {
    let mut best: Option<(u32, Vec<&Endpoint>)> = None;
    for loc in cla.localities.iter() {
        let routable = loc.endpoints.iter().filter(|e| e.health.is_routable());
        match &mut best {
            Some((p, v)) if *p == loc.priority => v.extend(routable),
            Some((p, _)) if *p < loc.priority => {}
            _ => {
                let v: Vec<&Endpoint> = routable.collect();
                if !v.is_empty() {
                    best = Some((loc.priority, v));
                }
            }
        }
    }
    best.map(|(_, v)| v).unwrap_or_default()
}

/// An interleaved schedule where endpoint `i` appears in proportion to `weights[i]`
/// (smooth weighted round robin, computed once per endpoint set).
fn weighted_schedule(weights: &[u32]) -> Box<[u32]> {
    if weights.is_empty() {
        return Box::new([0]);
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x / g)).collect();
    let sum: u64 = w.iter().sum();
    if sum as usize > MAX_SCHEDULE {
        let scale = sum as f64 / MAX_SCHEDULE as f64;
        for x in &mut w {
            *x = ((*x as f64 / scale).round() as u64).max(1);
        }
    }
    let sum: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HealthStatus, Locality, LocalityEndpoints};

    fn cla(eps: &[(u16, u32, HealthStatus, u32)]) -> ClusterLoadAssignment {
        // (port, weight, health, priority)
        let mut locs = Vec::new();
        for &(port, weight, health, priority) in eps {
            locs.push(LocalityEndpoints {
                locality: Locality::default(),
                weight: Some(1),
                priority,
                endpoints: Arc::new([Endpoint {
                    address: ([127, 0, 0, 1], port).into(),
                    health,
                    weight,
                }]),
            });
        }
        ClusterLoadAssignment {
            cluster_name: "c".into(),
            localities: locs.into(),
        }
    }

    #[test]
    fn round_robin_is_weighted_and_even() {
        let c = cla(&[
            (1, 1, HealthStatus::Healthy, 0),
            (2, 3, HealthStatus::Unknown, 0),
        ]);
        let b = Balancer::new(LbPolicy::RoundRobin, Some(&c), None);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[b.pick().unwrap().address().port() as usize] += 1;
        }
        assert_eq!(counts[1], 100);
        assert_eq!(counts[2], 300);
        assert_eq!(
            &*weighted_schedule(&[1, 3]),
            &[1, 0, 1, 1],
            "interleaved, not bunched"
        );
    }

    #[test]
    fn unhealthy_and_lower_priority_skipped() {
        let c = cla(&[
            (1, 1, HealthStatus::Unhealthy, 0),
            (2, 1, HealthStatus::Healthy, 1),
            (3, 1, HealthStatus::Healthy, 2),
        ]);
        let b = Balancer::new(LbPolicy::RoundRobin, Some(&c), None);
        for _ in 0..10 {
            assert_eq!(b.pick().unwrap().address().port(), 2);
        }
        assert_eq!(b.total_endpoints(), 3);
        let none = cla(&[(1, 1, HealthStatus::Draining, 0)]);
        assert!(Balancer::new(LbPolicy::RoundRobin, Some(&none), None)
            .pick()
            .is_none());
    }

    #[test]
    fn least_request_avoids_busy_endpoint_and_counts_release() {
        let c = cla(&[
            (1, 1, HealthStatus::Healthy, 0),
            (2, 1, HealthStatus::Healthy, 0),
        ]);
        let b = Balancer::new(LbPolicy::LeastRequest { choice_count: 10 }, Some(&c), None);
        let held: Vec<_> = (0..50).map(|_| b.pick().unwrap()).collect();
        let on_1 = held.iter().filter(|p| p.address().port() == 1).count();
        // With 10 choices the less loaded endpoint is almost always among the candidates:
        // the split of 50 stays near even (it cannot drift by more than a few).
        assert!((20..=30).contains(&on_1), "split {on_1}/50");
        drop(held);
        assert!(b.endpoints().iter().all(|e| e.outstanding() == 0));
    }

    #[test]
    fn counters_survive_rebuild() {
        let c = cla(&[(1, 1, HealthStatus::Healthy, 0)]);
        let a = Balancer::new(LbPolicy::RoundRobin, Some(&c), None);
        let held = a.pick().unwrap();
        let b = Balancer::new(LbPolicy::RoundRobin, Some(&c), Some(&a));
        assert_eq!(b.endpoints()[0].outstanding(), 1);
        drop(held);
        assert_eq!(b.endpoints()[0].outstanding(), 0);
    }
}
