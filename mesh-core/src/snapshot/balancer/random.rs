//! RANDOM: a uniformly random endpoint of the set (Envoy's random load balancer does not use
//! endpoint weights; gRPC has no such policy).

/// Picks among `hosts` using the random `draw`; a non-candidate moves the pick on to the next
/// endpoint of the set.
pub(super) fn pick(hosts: &[u32], draw: u64, ok: impl Fn(u32) -> bool) -> Option<u32> {
    let n = hosts.len();
    if n == 0 {
        return None;
    }
    // The high bits: the low ones already chose the priority level.
    let start = ((draw >> 32) % n as u64) as usize;
    (0..n).map(|i| hosts[(start + i) % n]).find(|i| ok(*i))
}
