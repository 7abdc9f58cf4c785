//! LEAST_REQUEST: sample `choice_count` endpoints with replacement and take the one with the
//! fewest outstanding requests per unit of weight (gRFC A48 samples and compares raw counts;
//! with equal weights the two agree; Envoy weighs by `active_request_bias`, here fixed at 1).

use std::sync::Arc;

use super::EndpointState;

/// Picks among `hosts` (indices into `endpoints`); skips those `ok` refuses (non-candidates),
/// falling back to a scan when no sample was accepted.
pub(super) fn pick(
    hosts: &[u32],
    choice_count: u32,
    endpoints: &[Arc<EndpointState>],
    ok: impl Fn(u32) -> bool,
) -> Option<u32> {
    let n = hosts.len();
    if n == 0 {
        return None;
    }
    if n == 1 {
        return ok(hosts[0]).then_some(hosts[0]);
    }
    let mut best: Option<(u32, u64)> = None;
    for _ in 0..choice_count.max(2) {
        let i = hosts[rand::random_range(0..n)];
        if !ok(i) {
            continue;
        }
        let e = &endpoints[i as usize];
        let l = load(e);
        if best.is_none_or(|(_, b)| l < b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i).or_else(|| {
        hosts
            .iter()
            .copied()
            .filter(|i| ok(*i))
            .min_by_key(|i| load(&endpoints[*i as usize]))
    })
}

fn load(e: &EndpointState) -> u64 {
    // outstanding / weight compared without division: scale by a million first.
    (e.outstanding() as u64 * 1_000_000) / u64::from(e.weight.max(1))
}
