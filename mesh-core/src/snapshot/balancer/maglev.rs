//! MAGLEV (Envoy Maglev load balancer, after Google's Maglev paper): a lookup table of prime
//! size `M` where each endpoint fills slots along its own permutation, in proportion to its
//! weight; a request takes slot `hash mod M`.
//!
//! Endpoint `e` (key `"<ip:port>"`) has `offset = XXH64(key, 0) mod M` and
//! `skip = XXH64(key, 1) mod (M − 1) + 1`, and its `j`-th preference is
//! `(offset + j × skip) mod M`. Rounds go over the endpoints in order; an endpoint of weight
//! `w` (heaviest `W`) takes its next free preferred slot in round `r` only while it has taken
//! fewer than `r × w / W` slots, so slots split by weight. Removing an endpoint moves little
//! more than its own slots, which is what consistent hashing promises. Built once per endpoint
//! set; a pick is one index.

use std::net::SocketAddr;

/// The lookup table: endpoint index per slot.
#[derive(Debug)]
pub(super) struct Table {
    slots: Box<[u32]>,
}

impl Table {
    /// Builds a table of `size` slots (a prime) over `(endpoint index, address, weight > 0)`.
    pub(super) fn new(hosts: &[(u32, SocketAddr, u64)], size: u64) -> Table {
        let Ok(m) = usize::try_from(size) else {
            return Table {
                slots: Box::new([]),
            };
        };
        if hosts.is_empty() || m < 2 {
            return Table {
                slots: Box::new([]),
            };
        }
        struct Entry {
            offset: u64,
            skip: u64,
            next: u64,
            weight: u64,
            target: u64,
        }
        let max_weight = hosts.iter().map(|h| h.2).max().unwrap_or(1).max(1);
        let mut entries: Vec<Entry> = hosts
            .iter()
            .map(|&(_, addr, weight)| {
                let key = addr.to_string();
                Entry {
                    offset: xxhash_rust::xxh64::xxh64(key.as_bytes(), 0) % size,
                    skip: xxhash_rust::xxh64::xxh64(key.as_bytes(), 1) % (size - 1) + 1,
                    next: 0,
                    weight: weight.max(1),
                    target: 0,
                }
            })
            .collect();
        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; m];
        let mut filled = 0usize;
        let mut round = 1u64;
        while filled < m {
            for (e, host) in entries.iter_mut().zip(hosts) {
                if filled == m {
                    break;
                }
                // An endpoint of the heaviest weight fills a slot every round, one of a third
                // of it every third round.
                if round.saturating_mul(e.weight) < e.target {
                    continue;
                }
                e.target += max_weight;
                // next < M and skip < M ≤ 5 000 011: the product fits u64 easily.
                let mut c = ((e.offset + e.next * e.skip) % size) as usize;
                while slots[c] != EMPTY {
                    e.next += 1;
                    c = ((e.offset + e.next * e.skip) % size) as usize;
                }
                slots[c] = host.0;
                e.next += 1;
                filled += 1;
            }
            round += 1;
        }
        Table {
            slots: slots.into_boxed_slice(),
        }
    }

    /// Number of slots.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The endpoints from slot `hash mod M` onwards (wrapping), for the pick to take the first
    /// acceptable one.
    pub(super) fn walk(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let m = self.slots.len().max(1) as u64;
        // < m ≤ usize::MAX.
        let start = ((hash % m) as usize).min(self.slots.len());
        let (tail, head) = self.slots.split_at(start);
        head.iter().chain(tail).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u16) -> Vec<(u32, SocketAddr, u64)> {
        (0..n)
            .map(|i| (u32::from(i), SocketAddr::from(([10, 0, 0, 1], 8000 + i)), 1))
            .collect()
    }

    #[test]
    fn fills_every_slot_evenly() {
        let t = Table::new(&hosts(5), 65_537);
        assert_eq!(t.len(), 65_537);
        let mut counts = [0usize; 5];
        t.slots.iter().for_each(|s| counts[*s as usize] += 1);
        // Equal weights: each endpoint gets ⌊M/5⌋ or ⌈M/5⌉ slots (rounds are fair).
        for c in counts {
            assert!((13_107..=13_108).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn weights_split_slots() {
        let mut h = hosts(2);
        h[1].2 = 3;
        let t = Table::new(&h, 10_007);
        let light = t.slots.iter().filter(|s| **s == 0).count();
        // 1 : 3 → a quarter, give or take a round.
        assert!((2_495..=2_510).contains(&light), "{light}");
    }
}
