//! A cluster's connection-pool circuit breakers: `max_connections` and `max_pending_requests`
//! (Envoy `circuit_breaker.proto`; XDS-SEMANTICS.md row 16). gRPC has neither (it enforces only
//! `max_requests`, gRFC A32); this follows Envoy.
//!
//! ## How they map onto the mesh's clients
//!
//! The clients are shared by every cluster and know nothing of clusters, so the limits are kept
//! here, per (target, cluster), and applied by the request path per **attempt**:
//! - An attempt holds one of the cluster's *connection slots* from the moment it is handed to
//!   the client until its response head arrives or it fails. With the pooled HTTP/1 client (one
//!   request per connection at a time) that is the number of busy connections, Envoy's
//!   `max_connections` for an HTTP/1 pool; idle keep-alive connections and the time spent
//!   streaming a response body are not counted. With the HTTP/2 client (one multiplexed
//!   connection per endpoint) it caps concurrent streams instead — stricter than Envoy, which
//!   counts connections; at the default 1024 this rarely matters.
//! - An attempt that finds every slot taken waits as a *pending request* (Envoy queues it for a
//!   connection) while fewer than `max_pending_requests` wait; otherwise it fails at once with an
//!   overflow, which is not retried (Envoy does not retry an overflow either). The wait is bounded
//!   by the route / per-try timeouts around it.
//! - Every attempt that found the pool full counts as a connection overflow (Envoy's
//!   `upstream_cx_overflow`); every refused one as a pending overflow
//!   (`upstream_rq_pending_overflow`).
//!
//! Only DEFAULT-priority thresholds apply: routes carry no `priority` in the model yet.
//!
//! Fast path (a free slot): one compare-and-swap. Waiting uses `tokio::sync::Notify` — its lock
//! is taken only when someone waits.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::Notify;

use crate::model::PoolLimits;

/// A cluster's live connection-slot and pending-request accounting, carried across snapshot
/// rebuilds like the retry counters.
#[derive(Debug, Default)]
pub struct PoolGate {
    active: AtomicUsize,
    pending: AtomicUsize,
    freed: Notify,
    connection_overflows: AtomicU64,
    pending_overflows: AtomicU64,
}

/// What [`PoolGate::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    /// A slot was free: send now, holding the slot.
    Ready(PoolSlot),
    /// Every slot is taken and the request may queue: await [`PendingSlot::wait`].
    Queued(PendingSlot),
    /// Every slot is taken and the queue is full (`max_pending_requests` reached).
    PendingOverflow,
    /// Every slot is taken and `max_pending_requests` is 0, so nothing may queue.
    ConnectionOverflow,
}

impl PoolGate {
    /// Admits one attempt under `limits`. Counts overflows.
    pub fn admit(self: &Arc<Self>, limits: &PoolLimits) -> Admission {
        if let Some(slot) = self.try_slot(limits) {
            return Admission::Ready(slot);
        }
        self.connection_overflows.fetch_add(1, Ordering::Relaxed);
        let max_pending = limits.max_pending_requests as usize;
        if max_pending == 0 {
            self.pending_overflows.fetch_add(1, Ordering::Relaxed);
            return Admission::ConnectionOverflow;
        }
        let mut current = self.pending.load(Ordering::Relaxed);
        loop {
            if current >= max_pending {
                self.pending_overflows.fetch_add(1, Ordering::Relaxed);
                return Admission::PendingOverflow;
            }
            match self.pending.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Admission::Queued(PendingSlot {
                        gate: self.clone(),
                        limits: *limits,
                    })
                }
                Err(now) => current = now,
            }
        }
    }

    fn try_slot(self: &Arc<Self>, limits: &PoolLimits) -> Option<PoolSlot> {
        let max = limits.max_connections as usize;
        let mut current = self.active.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match self.active.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(PoolSlot { gate: self.clone() }),
                Err(now) => current = now,
            }
        }
    }

    /// Connection slots in use.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Attempts waiting for a slot.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Attempts that found every connection slot taken (Envoy `upstream_cx_overflow`).
    pub fn connection_overflows(&self) -> u64 {
        self.connection_overflows.load(Ordering::Relaxed)
    }

    /// Attempts refused because the pending queue was full (Envoy
    /// `upstream_rq_pending_overflow`).
    pub fn pending_overflows(&self) -> u64 {
        self.pending_overflows.load(Ordering::Relaxed)
    }
}

/// A connection slot, released on drop.
#[derive(Debug)]
pub struct PoolSlot {
    gate: Arc<PoolGate>,
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        self.gate.active.fetch_sub(1, Ordering::AcqRel);
        if self.gate.pending.load(Ordering::Acquire) > 0 {
            self.gate.freed.notify_one();
        }
    }
}

/// A place in the pending queue; leaves it on drop (also when the wait is cancelled).
#[derive(Debug)]
pub struct PendingSlot {
    gate: Arc<PoolGate>,
    limits: PoolLimits,
}

impl PendingSlot {
    /// Waits for a connection slot.
    pub async fn wait(self) -> PoolSlot {
        loop {
            let freed = self.gate.freed.notified();
            if let Some(slot) = self.gate.try_slot(&self.limits) {
                return slot;
            }
            freed.await;
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.gate.pending.fetch_sub(1, Ordering::AcqRel);
        // Pass a wake-up on in case this waiter consumed one it no longer needs.
        if self.gate.pending.load(Ordering::Acquire) > 0
            && self.gate.active.load(Ordering::Acquire) < self.limits.max_connections as usize
        {
            self.gate.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(c: u32, p: u32) -> PoolLimits {
        PoolLimits {
            max_connections: c,
            max_pending_requests: p,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_then_queue_then_overflow() {
        let g = Arc::new(PoolGate::default());
        let l = limits(1, 1);
        let Admission::Ready(first) = g.admit(&l) else {
            panic!("a free slot")
        };
        let Admission::Queued(queued) = g.admit(&l) else {
            panic!("queues")
        };
        assert!(matches!(g.admit(&l), Admission::PendingOverflow));
        assert_eq!((g.connection_overflows(), g.pending_overflows()), (2, 1));
        let waiter = tokio::spawn(queued.wait());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "waits while the slot is held");
        drop(first);
        let second = waiter.await.unwrap();
        assert_eq!((g.active(), g.pending()), (1, 0));
        drop(second);
        assert_eq!(g.active(), 0);

        let l0 = limits(0, 0);
        assert!(matches!(g.admit(&l0), Admission::ConnectionOverflow));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_leaves_the_queue() {
        let g = Arc::new(PoolGate::default());
        let l = limits(1, 1);
        let Admission::Ready(_held) = g.admit(&l) else {
            panic!()
        };
        let Admission::Queued(q) = g.admit(&l) else {
            panic!()
        };
        let r = tokio::time::timeout(Duration::from_millis(5), q.wait()).await;
        assert!(r.is_err());
        assert_eq!(g.pending(), 0);
        assert!(
            matches!(g.admit(&l), Admission::Queued(_)),
            "room in the queue again"
        );
    }
}
