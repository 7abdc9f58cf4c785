//! Reconnect backoff: exponential with ±20 % jitter, as gRPC's connection backoff
//! (`connection-backoff.md`: initial 1 s, ×1.6, jitter 0.2, max 120 s), with a shorter
//! initial delay and cap because one ADS stream carries all of a process's config. Reset once
//! a stream has delivered a response (gRFC A57).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff state.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Starts at `initial`, grows ×1.6 per attempt up to `max`, jittered ±20 %.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            multiplier: 1.6,
            jitter: 0.2,
            next: initial,
        }
    }

    /// The delay before the next attempt; grows the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.max.min(base.mul_f64(self.multiplier));
        let factor = rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter);
        base.mul_f64(factor)
    }

    /// Back to the initial delay.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let mut base = 100.0_f64;
        for _ in 0..30 {
            let d = b.next_delay().as_secs_f64() * 1000.0;
            assert!(
                d >= base * 0.8 - 1e-6 && d <= base * 1.2 + 1e-6,
                "{d} vs {base}"
            );
            base = (base * 1.6).min(30_000.0);
        }
        assert!((base - 30_000.0).abs() < 1e-6);
        b.reset();
        let d = b.next_delay();
        assert!(d >= Duration::from_millis(80) && d <= Duration::from_millis(120));
    }
}
