//! Slow start (Envoy `slow_start_config` on ROUND_ROBIN and LEAST_REQUEST; Istio
//! `warmupDurationSecs`): an endpoint's weight ramps up over the window after it joins the
//! cluster, `weight × max(min_weight, (age / window)^(1/aggression))`
//! ([`crate::model::SlowStart::factor`], Envoy `EdfLoadBalancerBase::applySlowStartFactor`).
//!
//! Each endpoint keeps the time it first appeared in the cluster's assignment (carried across
//! EDS updates with its other state; without active health checking that is Envoy's host
//! creation time). The balancer notes when the youngest endpoint leaves its window; until then
//! a pick draws among the candidates by scaled weight (round robin: weighted random; least
//! request: two weighted draws, the one with fewer outstanding requests wins), computed on
//! the spot without allocating. After it, picks take the precomputed schedules again, so a
//! cluster whose endpoints are all past their window pays one clock read per pick. Envoy
//! instead rebuilds its EDF scheduler with the scaled weights; the expected shares are the same.

use std::sync::Arc;

use tokio::time::Instant;

use super::EndpointState;
use crate::model::SlowStart;

/// Slow start of one balancer: the config and when its youngest endpoint's window ends.
#[derive(Debug)]
pub(super) struct Ramp {
    pub config: SlowStart,
    pub ends: Instant,
}

impl Ramp {
    /// The ramp for endpoints that joined at the given times, or `None` when all are past it.
    pub fn new(config: SlowStart, endpoints: &[Arc<EndpointState>]) -> Option<Ramp> {
        let youngest = endpoints.iter().map(|e| e.joined).max()?;
        let ends = youngest + config.window;
        (Instant::now() < ends).then_some(Ramp { config, ends })
    }

    /// Whether picks must scale weights right now (one clock read).
    #[inline]
    pub fn active(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.ends).then_some(now)
    }

    fn weight(&self, e: &EndpointState, now: Instant) -> f64 {
        f64::from(e.weight.max(1)) * self.config.factor(now.saturating_duration_since(e.joined))
    }

    /// A weighted random draw among the `ok` hosts.
    fn draw(
        &self,
        hosts: &[u32],
        endpoints: &[Arc<EndpointState>],
        now: Instant,
        ok: &impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let total: f64 = hosts
            .iter()
            .filter(|i| ok(**i))
            .map(|i| self.weight(&endpoints[*i as usize], now))
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut r = rand::random::<f64>() * total;
        let mut last = None;
        for &i in hosts.iter().filter(|i| ok(**i)) {
            r -= self.weight(&endpoints[i as usize], now);
            last = Some(i);
            if r < 0.0 {
                return Some(i);
            }
        }
        last
    }

    /// Round robin under slow start: one weighted draw.
    pub fn pick_weighted(
        &self,
        hosts: &[u32],
        endpoints: &[Arc<EndpointState>],
        now: Instant,
        ok: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        self.draw(hosts, endpoints, now, &ok)
    }

    /// Least request under slow start: two weighted draws, the one with fewer outstanding
    /// requests wins (the first on a tie), so an idle cluster gives each endpoint its scaled
    /// share and a busy one still steers away from loaded endpoints.
    pub fn pick_least(
        &self,
        hosts: &[u32],
        endpoints: &[Arc<EndpointState>],
        now: Instant,
        ok: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let a = self.draw(hosts, endpoints, now, &ok)?;
        let b = self.draw(hosts, endpoints, now, &ok).unwrap_or(a);
        let load = |i: u32| endpoints[i as usize].outstanding();
        Some(if load(b) < load(a) { b } else { a })
    }
}
