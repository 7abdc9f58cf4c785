//! Weighted round robin: a precomputed, interleaved schedule walked by an atomic cursor
//! (Envoy ROUND_ROBIN; gRPC `round_robin` is unweighted, weights equal to 1 behave alike).

/// Largest schedule built; larger weight sums are scaled down to fit (each weight stays ≥ 1).
const MAX_SCHEDULE: usize = 4096;

/// An interleaved schedule where index `i` appears in proportion to `weights[i]` (smooth
/// weighted round robin, computed once per endpoint set). Empty input gives `[0]`.
pub(super) fn weighted_schedule(weights: &[u64]) -> Box<[u32]> {
    if weights.is_empty() {
        return Box::new([0]);
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| x / g).collect();
    let sum: u64 = w.iter().sum();
    if sum > MAX_SCHEDULE as u64 {
        let scale = sum as f64 / MAX_SCHEDULE as f64;
        for x in &mut w {
            *x = ((*x as f64 / scale).round() as u64).max(1);
        }
    }
    // Each weight ≤ MAX_SCHEDULE now, and so is the sum (up to rounding): fits i64.
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

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_not_bunched() {
        assert_eq!(&*weighted_schedule(&[1, 3]), &[1, 0, 1, 1]);
        assert_eq!(&*weighted_schedule(&[]), &[0]);
    }

    #[test]
    fn large_weights_scaled_down() {
        let s = weighted_schedule(&[u64::from(u32::MAX) * 100, 1]);
        assert!(s.len() <= MAX_SCHEDULE + 1);
        assert!(s.contains(&1), "the light entry keeps a slot");
    }
}
