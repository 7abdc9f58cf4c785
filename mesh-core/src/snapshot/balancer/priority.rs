//! Priority load and panic mode (Envoy "Priority levels", "Overprovisioning factor" and
//! "Panic threshold" in the load-balancing architecture overview; XDS-SEMANTICS.md row 18).
//!
//! A level's health is `min(100, factor × healthy / total)` percent (integer, factor in
//! percent). The total health, capped at 100, is shared out: each level in priority order
//! takes `min(what is left, health × 100 / total health)` percent of requests; rounding
//! leftovers go to the first level with any health. With no healthy endpoint anywhere, all
//! requests go to P0. A level is in panic — it balances over all of its endpoints, healthy or
//! not — when the total health is below 100 and the level's healthy share is below the panic
//! threshold (threshold 0 disables panic).
//!
//! gRPC differs (gRFC A27/A56): its `priority` policy sends everything to the first level
//! that has a READY child, with no overprovisioning and no panic. This client follows Envoy
//! for both transports; a control plane wanting gRPC's behaviour sets the factor to 100 and
//! the threshold to 0, which makes any healthy endpoint keep its level in use only in
//! proportion to its share of healthy hosts.

/// How one priority level is split between healthy and unhealthy endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LevelHealth {
    /// Routable (HEALTHY / UNKNOWN) endpoints.
    pub healthy: u64,
    /// All endpoints of the level.
    pub total: u64,
}

/// The outcome for all levels.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PriorityLoad {
    /// Percent of requests per level; sums to 100 when there is any level.
    pub load: Vec<u32>,
    /// Whether each level is in panic mode.
    pub panic: Vec<bool>,
}

/// Computes the priority load. `factor` is the overprovisioning factor in percent (> 0);
/// `panic_ppm` the panic threshold in parts per million.
pub(super) fn priority_load(levels: &[LevelHealth], factor: u32, panic_ppm: u32) -> PriorityLoad {
    let health: Vec<u64> = levels
        .iter()
        .map(|l| {
            (u64::from(factor) * l.healthy)
                .checked_div(l.total)
                .unwrap_or(0)
                .min(100)
        })
        .collect();
    let total_health = health.iter().sum::<u64>().min(100);
    let mut load = vec![0u32; levels.len()];
    if let Some(first) = load.first_mut() {
        if total_health == 0 {
            *first = 100;
        } else {
            let mut left = 100u64;
            for (l, h) in load.iter_mut().zip(&health) {
                let share = (h * 100).checked_div(total_health).unwrap_or(0).min(left);
                // ≤ 100.
                *l = share as u32;
                left -= share;
            }
            if left > 0 {
                if let Some(i) = health.iter().position(|h| *h > 0) {
                    load[i] += left as u32;
                }
            }
        }
    }
    let panic = levels
        .iter()
        .map(|l| {
            total_health < 100
                && panic_ppm > 0
                && l.total > 0
                && u128::from(l.healthy) * 1_000_000 < u128::from(panic_ppm) * u128::from(l.total)
        })
        .collect();
    PriorityLoad { load, panic }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(healthy: u64, total: u64) -> LevelHealth {
        LevelHealth { healthy, total }
    }

    #[test]
    fn envoy_doc_examples_with_factor_140() {
        // Envoy's table (P1 fully healthy): P0 healthy 100/72/71/50/25/0 % → 100/100/99/70/35/0.
        for (healthy, p0) in [(100, 100), (72, 100), (71, 99), (50, 70), (25, 35), (0, 0)] {
            let got = priority_load(&[lv(healthy, 100), lv(10, 10)], 140, 500_000);
            assert_eq!(got.load, vec![p0, 100 - p0], "P0 {healthy}% healthy");
            assert_eq!(
                got.panic,
                vec![false, false],
                "total health is 100: no panic"
            );
        }
    }

    #[test]
    fn scaled_up_when_total_health_below_100() {
        // P0 20 % healthy (health 28), P1 30 % (42): total 70 → 40 % / 60 %, both in panic.
        let got = priority_load(&[lv(2, 10), lv(3, 10)], 140, 500_000);
        assert_eq!(got.load, vec![40, 60]);
        assert_eq!(got.panic, vec![true, true]);
        // Threshold 0 disables panic.
        assert_eq!(
            priority_load(&[lv(2, 10), lv(3, 10)], 140, 0).panic,
            vec![false, false]
        );
    }

    #[test]
    fn nothing_healthy_sends_everything_to_p0_in_panic() {
        let got = priority_load(&[lv(0, 3), lv(0, 2)], 140, 500_000);
        assert_eq!(got.load, vec![100, 0]);
        assert_eq!(got.panic, vec![true, true]);
    }

    #[test]
    fn rounding_leftover_goes_to_first_healthy_level() {
        // health 33 / 33 / 33 (factor 100, a third healthy each): 33+33+33 = 99, +1 to P0.
        let got = priority_load(&[lv(1, 3), lv(1, 3), lv(1, 3)], 100, 0);
        assert_eq!(got.load, vec![34, 33, 33]);
    }
}
