//! What the proof-of-work literature predicts, for the simulator's
//! statistical tests and reports: the double-spend race (Nakamoto 2008,
//! section 11, and its exact form), selfish mining's revenue (Eyal and
//! Sirer 2014) and the stale rate of a network with propagation delay.
//! The race itself is also simulated here, with the simulator's mining
//! process: each miner finds blocks as a Poisson process of its share.

use super::rng::Rng;

/// Nakamoto's probability that an attacker with share `q` of the hash
/// power catches up after the merchant waited `z` confirmations (section
/// 11 of the Bitcoin paper): the attacker's progress meanwhile taken as
/// Poisson with mean `z q / p`, then the gambler's ruin `(q / p)^(z - k)`.
pub fn nakamoto(q: f64, z: u32) -> f64 {
    let p = 1.0 - q;
    let lambda = f64::from(z) * q / p;
    let mut poisson = (-lambda).exp();
    let mut sum = 1.0;
    for k in 0..=z {
        if k > 0 {
            poisson *= lambda / f64::from(k);
        }
        sum -= poisson * (1.0 - (q / p).powi((z - k) as i32));
    }
    sum
}

/// The same probability without Nakamoto's approximation: while the
/// honest miners find their `z` blocks the attacker finds a negative
/// binomial number of blocks, `C(k + z - 1, k) p^z q^k` (Rosenfeld 2014,
/// "Analysis of hashrate-based double spending"; Grunspan and
/// Perez-Marco 2017): `1 - sum_{k=0}^{z} C(k+z-1, k) (p^z q^k - q^z p^k)`.
pub fn double_spend_exact(q: f64, z: u32) -> f64 {
    let p = 1.0 - q;
    let mut sum = 1.0;
    let mut binomial = 1.0; // C(k + z - 1, k)
    for k in 0..=z {
        if k > 0 {
            binomial *= f64::from(k + z - 1) / f64::from(k);
        }
        sum -=
            binomial * (p.powi(z as i32) * q.powi(k as i32) - q.powi(z as i32) * p.powi(k as i32));
    }
    sum
}

/// A selfish pool's share of the chain's blocks (Eyal and Sirer 2014,
/// equation 8) for pool share `alpha` and `gamma`, the share of honest
/// miners that mine on the pool's block in a tie.
pub fn selfish_revenue(alpha: f64, gamma: f64) -> f64 {
    let a = alpha;
    (a * (1.0 - a).powi(2) * (4.0 * a + gamma * (1.0 - 2.0 * a)) - a.powi(3))
        / (1.0 - a * (1.0 + (2.0 - a) * a))
}

/// The stale rate of a network whose blocks reach every other miner
/// `delay_ms` after they are found, to first order: the chance that some
/// other miner (all but the finder's `share`) finds a block at the same
/// height before it hears of the new one, `1 - exp(-(1 - share) d / T)`.
/// Second-order events (a third block in the window, a fork while another
/// is unresolved) change it by at most its square.
pub fn stale_rate(delay_ms: f64, interval_ms: f64, share: f64) -> f64 {
    1.0 - (-(1.0 - share) * delay_ms / interval_ms).exp()
}

/// The double-spend race, `trials` times: the honest miners (share `1 -
/// q`) and the attacker (`q`) find blocks as Poisson processes, drawn as
/// the simulator draws mining; the merchant accepts at `z` honest blocks
/// (confirmations), counting the attacker's blocks so far; the attack
/// succeeds if the attacker's branch then ever reaches the honest one's
/// length (Nakamoto's "catches up"). A race the attacker trails by more
/// than `z + 60` blocks is given up (its chance to catch up from there is
/// below `(q/p)^60`). Returns the successes.
pub fn double_spend_race(q: f64, z: u32, trials: u64, rng: &mut Rng) -> u64 {
    let p = 1.0 - q;
    let give_up = i64::from(z) + 60;
    let mut successes = 0;
    for _ in 0..trials {
        // Next block: the earlier of the two exponential waits.
        let next_is_attacker = |rng: &mut Rng| rng.exponential(1.0 / q) < rng.exponential(1.0 / p);
        let mut honest = 0i64;
        let mut attacker = 0i64;
        while honest < i64::from(z) {
            if next_is_attacker(rng) {
                attacker += 1;
            } else {
                honest += 1;
            }
        }
        loop {
            if attacker >= honest {
                successes += 1;
                break;
            }
            if honest - attacker > give_up {
                break;
            }
            if next_is_attacker(rng) {
                attacker += 1;
            } else {
                honest += 1;
            }
        }
    }
    successes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formulas_give_the_published_figures() {
        // Nakamoto's table (section 11).
        assert!((nakamoto(0.1, 5) - 0.000_913_7).abs() < 1e-7);
        assert!((nakamoto(0.3, 10) - 0.041_660_5).abs() < 1e-7);
        assert!((nakamoto(0.1, 0) - 1.0).abs() < 1e-12);
        // Eyal and Sirer: the threshold is 1/3 at gamma 0 and 1/4 at 1/2.
        assert!((selfish_revenue(1.0 / 3.0, 0.0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((selfish_revenue(0.25, 0.5) - 0.25).abs() < 1e-12);
        // The exact race is above Nakamoto's approximation.
        assert!((double_spend_exact(0.1, 5) - 0.001_781_84).abs() < 1e-8);
        assert!((double_spend_exact(0.3, 10) - 0.065_106_7).abs() < 1e-7);
    }
}
