//! RING_HASH (Envoy ring hash load balancer; gRFC A42): endpoints own points on a 64-bit ring
//! in proportion to their weight; a request takes the first point at or after its hash.
//!
//! Construction (Envoy's, as gRFC A42 adopts it): with weights normalised to sum 1 and `m` the
//! smallest normalised weight, the ring gets `scale = min(⌈m × min_ring_size⌉ / m,
//! max_ring_size)` points, so the lightest endpoint still gets whole points; each endpoint
//! contributes points until the running total reaches its share of `scale`, point `i` being
//! XXH64 (seed 0) of `"<ip:port>_<i>"`. The ring is built once per endpoint set; a pick is
//! a binary search. gRPC additionally caps both sizes at 4096 by default; this mesh builds
//! rings up to Envoy's 8 388 608 points as configured.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// The ring: points sorted by hash, each naming an endpoint (index into the balancer's list).
#[derive(Debug)]
pub(super) struct Ring {
    points: Box<[(u64, u32)]>,
}

impl Ring {
    /// Builds the ring over `(endpoint index, address, weight > 0)`.
    pub(super) fn new(hosts: &[(u32, SocketAddr, u64)], min_size: u64, max_size: u64) -> Ring {
        let total: f64 = hosts.iter().map(|h| h.2 as f64).sum();
        if hosts.is_empty() || total <= 0.0 {
            return Ring {
                points: Box::new([]),
            };
        }
        let min_norm = hosts
            .iter()
            .map(|h| h.2 as f64 / total)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_norm * min_size as f64).ceil() / min_norm).min(max_size as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let mut key = String::with_capacity(64);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for &(index, addr, weight) in hosts {
            target += scale * (weight as f64 / total);
            let mut i = 0u64;
            while current < target {
                key.clear();
                // Writing to a String cannot fail.
                let _ = write!(key, "{addr}_{i}");
                points.push((xxhash_rust::xxh64::xxh64(key.as_bytes(), 0), index));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// Number of points.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.points.len()
    }

    /// The endpoints in ring order starting at the first point at or after `hash` (wrapping),
    /// for the pick to take the first acceptable one.
    pub(super) fn walk(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let start = self.points.partition_point(|(h, _)| *h < hash);
        let (tail, head) = self.points.split_at(start.min(self.points.len()));
        head.iter().chain(tail).map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u16, weight: u64) -> Vec<(u32, SocketAddr, u64)> {
        (0..n)
            .map(|i| {
                (
                    u32::from(i),
                    SocketAddr::from(([10, 0, 0, 1], 8000 + i)),
                    weight,
                )
            })
            .collect()
    }

    #[test]
    fn size_follows_min_and_max() {
        assert_eq!(Ring::new(&hosts(4, 1), 1024, 8_388_608).len(), 1024);
        assert_eq!(
            Ring::new(&hosts(3, 1), 1024, 8_388_608).len(),
            1026,
            "⌈1024/3⌉ × 3"
        );
        assert_eq!(Ring::new(&hosts(4, 1), 1024, 16).len(), 16, "capped at max");
        // Weights 1 and 99 with min 100: the light endpoint gets one point, the heavy 99.
        let mut h = hosts(2, 1);
        h[1].2 = 99;
        let r = Ring::new(&h, 100, 8_388_608);
        assert_eq!(r.len(), 100);
        assert_eq!(r.points.iter().filter(|p| p.1 == 0).count(), 1);
        assert!(Ring::new(&[], 1024, 1024).walk(5).next().is_none());
    }

    #[test]
    fn walk_wraps_around() {
        let r = Ring::new(&hosts(2, 1), 8, 8);
        let last = r.points.last().unwrap();
        let first = r.points[0];
        assert_eq!(
            r.walk(last.0.wrapping_add(1)).next(),
            Some(first.1),
            "past the end wraps"
        );
        assert_eq!(
            r.walk(first.0).next(),
            Some(first.1),
            "an exact hit takes that point"
        );
        assert_eq!(r.walk(0).count(), 8);
    }

    #[test]
    fn point_keys_are_envoy_and_grpc_compatible() {
        // XXH64("10.0.0.1:8000_0", seed 0) is the first point of endpoint 0.
        let r = Ring::new(&hosts(1, 1), 1, 1);
        assert_eq!(
            r.points[0].0,
            xxhash_rust::xxh64::xxh64(b"10.0.0.1:8000_0", 0)
        );
    }
}
