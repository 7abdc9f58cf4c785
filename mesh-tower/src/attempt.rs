//! Per-request attempt bookkeeping shared between the timeout, retry and pick layers through
//! request extensions, so that a timeout can say how many attempts it cut short and where the
//! last one went. Lock-free: two atomics behind one `Arc`, created once per request by the
//! route-timeout layer.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
};

/// Attempts made for one request and the last endpoint picked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempts(Arc<State>);

#[derive(Debug, Default)]
struct State {
    count: AtomicU32,
    /// The last IPv4 endpoint packed as `1 << 48 | ip << 16 | port`; 0 = none (IPv6 endpoints
    /// are not recorded here; their errors still name them).
    last: AtomicU64,
    /// Route or per-try timeouts that fired for this request (outlier detection counts the
    /// attempt they cut short as a local-origin failure).
    timeouts: AtomicU32,
}

const PRESENT: u64 = 1 << 48;

impl Attempts {
    /// Records an attempt sent to `endpoint`.
    pub(crate) fn record(&self, endpoint: SocketAddr) {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        let packed = match endpoint.ip() {
            IpAddr::V4(ip) => {
                PRESENT | (u64::from(u32::from(ip)) << 16) | u64::from(endpoint.port())
            }
            IpAddr::V6(_) => 0,
        };
        self.0.last.store(packed, Ordering::Relaxed);
    }

    /// Records that a timeout fired and is about to drop the attempt in flight.
    pub(crate) fn timed_out(&self) {
        self.0.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Timeouts recorded so far.
    pub(crate) fn timeouts(&self) -> u32 {
        self.0.timeouts.load(Ordering::Relaxed)
    }

    /// Attempts recorded so far.
    pub(crate) fn count(&self) -> u32 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// The last endpoint recorded, if it was IPv4.
    pub(crate) fn last_endpoint(&self) -> Option<SocketAddr> {
        let v = self.0.last.load(Ordering::Relaxed);
        if v & PRESENT == 0 {
            return None;
        }
        let ip = Ipv4Addr::from(((v >> 16) & 0xffff_ffff) as u32);
        Some(SocketAddr::new(ip.into(), (v & 0xffff) as u16))
    }
}

/// Endpoints a retry should avoid (Envoy `previous_hosts` predicate), set by the retry layer on
/// each attempt of a route whose policy asks for it.
#[derive(Clone, Debug)]
pub(crate) struct AvoidHosts {
    pub(crate) hosts: Arc<[SocketAddr]>,
    /// Picks allowed to find an endpoint not in `hosts` (`host_selection_retry_max_attempts`).
    pub(crate) tries: u32,
}

/// Response extension: the endpoint that answered (set by the pick layer only when the request
/// carried [`AvoidHosts`], i.e. when a retry may need it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnsweredBy(pub(crate) SocketAddr);

/// Request extension (set by [`crate::metrics`]): the caller wants the [`crate::RouteInfo`] of
/// the attempt that answered back as a response extension. A marker, so requests without it
/// pay nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReportRoute;

/// Response extension (set by the retry layer when the route has a retry policy and there is
/// something to say): attempts sent for the request that produced this response, and the
/// circuit-breaker limit that refused a due retry, when one did and this response stood.
/// Absent = one attempt, nothing refused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptCount {
    pub(crate) attempts: u32,
    /// `max_retries` or `retry_budget`.
    pub(crate) retry_refused: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_ipv4_and_skips_ipv6() {
        let a = Attempts::default();
        assert_eq!(a.last_endpoint(), None);
        a.record(([10, 1, 2, 3], 8080).into());
        assert_eq!(a.last_endpoint(), Some(([10, 1, 2, 3], 8080).into()));
        a.record("[::1]:80".parse().unwrap());
        assert_eq!((a.count(), a.last_endpoint()), (2, None));
    }
}
