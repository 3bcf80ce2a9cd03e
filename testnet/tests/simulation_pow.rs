//! The deterministic simulator against proof of work: mixed faults where
//! every checker must pass, and the published figures the simulated
//! network must reproduce, each within a tolerance derived from the runs
//! made (stated at each test).
//!
//! Each test prints its seeds; `PHALANX_SEED=<n>` runs that seed alone, and
//! a failure prints the `phalanx-testnet sim` command that replays it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod sim_support;

use phalanx_chain::{ConsensusKind, ValidatorIndex};
use phalanx_consensus::Byzantine;
use phalanx_testnet::sim::rng::Rng;
use phalanx_testnet::sim::scenario::DelayRange;
use phalanx_testnet::sim::{Batch, CheckerKind, RunReport, Scenario, test_seeds, theory};
use sim_support::{assert_all_pass, run_mixed};

fn mixed(validators: usize) -> Scenario {
    sim_support::mixed(ConsensusKind::Pow, validators)
}

#[test]
fn four_miners_mixed_faults_200_seeds() {
    let (failed, committed) = run_mixed(mixed(4), test_seeds(0..200));
    assert_all_pass(&failed, committed);
}

/// A double-spend attacker with a tenth of the hash power, against
/// twelve confirmations (what that share calls for: the exact race gives
/// it about 1e-6 per attempt): honest miners never see a final block
/// outworked.
#[test]
fn a_tenth_of_the_hash_power_never_reverses_twelve_confirmations() {
    let mut s = mixed(4);
    s.byzantine
        .insert(ValidatorIndex(0), Byzantine::DoubleSpend);
    s.hashrate.insert(ValidatorIndex(0), 10);
    s.duration_ms = 300_000;
    let runs = reports(s, test_seeds(0..40));
    let failed: Vec<u64> = runs
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.seed)
        .collect();
    assert!(failed.is_empty(), "seeds {failed:?} failed");
}

/// The negative control every textbook names, the 51 % attack: with 60 %
/// of the hash power the double-spend attacker publishes a longer branch
/// that forks below blocks the honest miners declared final at six
/// confirmations, in every run, and the agreement checker reports it.
#[test]
fn a_majority_attacker_reverses_final_blocks_and_the_checker_says_so() {
    let mut s = mixed(4);
    s.byzantine
        .insert(ValidatorIndex(0), Byzantine::DoubleSpend);
    s.hashrate.insert(ValidatorIndex(0), 60);
    s.confirmations = 6;
    s.duration_ms = 300_000;
    for run in reports(s, test_seeds(0..10)) {
        assert!(
            run.count(CheckerKind::Agreement) > 0,
            "seed {}: the attack went unnoticed",
            run.seed
        );
        assert!(
            run.violations
                .iter()
                .any(|v| v.detail.contains("the confirmations did not hold")),
            "seed {}: {:?}",
            run.seed,
            run.violations
        );
    }
}

/// Runs `seeds` of `scenario` on two threads; every report.
fn reports(scenario: Scenario, seeds: std::ops::Range<u64>) -> Vec<RunReport> {
    let mut batch = Batch::new(scenario, seeds.start, seeds.end - seeds.start);
    batch.recheck_every = 0;
    batch.threads = 2;
    let mut out = Vec::new();
    batch.run(|r| out.push(r.clone())).unwrap();
    out
}

/// A quiet network for measuring mining: every message arrives after
/// exactly `delay_ms`, nobody forwards (every miner hears every block
/// first-hand), and the client sends almost nothing.
fn quiet(validators: usize, delay_ms: u64, interval_ms: u64, duration_ms: u64) -> Scenario {
    let mut s = Scenario::new(validators);
    s.consensus = ConsensusKind::Pow;
    s.delay = DelayRange {
        min_ms: delay_ms,
        max_ms: delay_ms,
    };
    s.forward = false;
    s.tx_interval_ms = 100_000;
    s.block_interval_ms = interval_ms;
    s.duration_ms = duration_ms;
    s
}

/// The stale rate against the ratio of propagation delay d to block
/// interval T, for ten equal miners: the model is `1 - exp(-(1 - 1/n) d /
/// T)` (a miner does not race itself), to first order. The tolerance is
/// four binomial standard deviations of the rate over the M blocks mined,
/// `4 sqrt(p (1 - p) / M)`, plus the model's own second-order error, at
/// most `p^2`.
#[test]
fn the_stale_rate_follows_delay_over_interval() {
    let seeds = test_seeds(0..10);
    let interval = 2_000;
    eprintln!("d/T     stale (sim)   model (1-s)   1-exp(-d/T)   tolerance   blocks");
    for delay in [40, 100, 200] {
        let runs = reports(quiet(10, delay, interval, 4_000_000), seeds.clone());
        let mined: u64 = runs.iter().map(|r| r.mined).sum();
        let on_chain: u64 = runs.iter().map(|r| r.max_view).sum();
        assert!(runs.iter().all(|r| r.count(CheckerKind::Agreement) == 0));
        let measured = 1.0 - on_chain as f64 / mined as f64;
        let ratio = delay as f64 / interval as f64;
        let model = theory::stale_rate(delay as f64, interval as f64, 0.1);
        let tolerance = 4.0 * (model * (1.0 - model) / mined as f64).sqrt() + model * model;
        eprintln!(
            "{ratio:<7} {:>8.3} %    {:>8.3} %    {:>8.3} %    {:>6.3} %   {mined}",
            measured * 100.0,
            model * 100.0,
            (1.0 - (-ratio).exp()) * 100.0,
            tolerance * 100.0
        );
        assert!(
            (measured - model).abs() <= tolerance,
            "d/T = {ratio}: stale rate {measured:.5}, model {model:.5}, tolerance {tolerance:.5}"
        );
    }
}

/// Eyal and Sirer: a selfish pool with gamma = 0 (honest miners keep the
/// block they saw first, `--first-seen-ties`) earns more than its share
/// above alpha = 1/3 and less below, as their revenue formula says. Each
/// run is 2,000 blocks with finality too deep to get in the way (100
/// confirmations: the paper's model has none, and a private lead of 100
/// blocks has probability about (2/3)^100). Not 1,000: with nothing final,
/// the replicas' bounded speculative states (1,024) fill up and are
/// cleared, and blocks whose parent's state is gone are dropped (a weak
/// point noted in issue 11). The revenue is measured per run and the
/// tolerance is four standard errors of the mean over the runs.
#[test]
fn a_selfish_miner_earns_what_eyal_and_sirer_predict() {
    let seeds = test_seeds(0..20);
    for (alpha, percent) in [(0.25, 25), (0.40, 40)] {
        let mut s = quiet(4, 1, 10_000, 20_000_000);
        s.byzantine.insert(ValidatorIndex(0), Byzantine::Selfish);
        s.hashrate.insert(ValidatorIndex(0), percent);
        s.first_seen_ties = true;
        s.confirmations = 100;
        let runs = reports(s, seeds.clone());
        let revenue: Vec<f64> = runs
            .iter()
            .map(|r| {
                let total: u64 = r.chain_blocks_by_miner.values().sum();
                let pool = r.chain_blocks_by_miner.get(&0).copied().unwrap_or(0);
                pool as f64 / total as f64
            })
            .collect();
        assert!(runs.iter().all(|r| r.count(CheckerKind::Agreement) == 0));
        let n = revenue.len() as f64;
        let mean = revenue.iter().sum::<f64>() / n;
        let variance = revenue.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let se = (variance / n).sqrt();
        let predicted = theory::selfish_revenue(alpha, 0.0);
        eprintln!(
            "alpha {alpha}: revenue {mean:.4} (se {se:.4}, {} runs), Eyal-Sirer {predicted:.4}",
            revenue.len()
        );
        assert!(
            (mean - predicted).abs() <= 4.0 * se,
            "alpha {alpha}: revenue {mean:.4} vs {predicted:.4}, 4 se = {:.4}",
            4.0 * se
        );
        if alpha < 1.0 / 3.0 {
            assert!(
                mean + 4.0 * se < alpha,
                "below 1/3 selfish mining must not pay"
            );
        } else {
            assert!(mean - 4.0 * se > alpha, "above 1/3 selfish mining must pay");
        }
    }
}

/// Nakamoto's double-spend race (section 11), simulated with the
/// simulator's mining process. The simulated probability is checked
/// against the exact race (Rosenfeld's negative binomial form) within four
/// binomial standard deviations over the trials. Nakamoto's published
/// figures (0.0009137 for q = 0.1, z = 5; 0.0416605 for q = 0.3, z = 10)
/// come from approximating the attacker's progress by a Poisson variable
/// of mean z q / p, as if the honest chain took exactly its expected time
/// to find z blocks; it did not in the simulation, and the exact race
/// gives about 1.95 and 1.56 times his figures. The test shows that the
/// gap is real: his figures lie outside the tolerance.
#[test]
fn the_double_spend_race_matches_its_exact_probability() {
    let seed = test_seeds(0..1).start;
    let mut rng = Rng::stream(seed, "double-spend-race");
    for (q, z, trials) in [(0.1, 5, 2_000_000u64), (0.3, 10, 400_000)] {
        let successes = theory::double_spend_race(q, z, trials, &mut rng);
        let measured = successes as f64 / trials as f64;
        let exact = theory::double_spend_exact(q, z);
        let nakamoto = theory::nakamoto(q, z);
        let tolerance = 4.0 * (exact * (1.0 - exact) / trials as f64).sqrt();
        eprintln!(
            "q {q}, z {z}: simulated {measured:.6} ({successes}/{trials}), exact {exact:.6}, \
             Nakamoto {nakamoto:.6}, tolerance {tolerance:.6}"
        );
        assert!(
            (measured - exact).abs() <= tolerance,
            "q {q}, z {z}: {measured} vs exact {exact} (tolerance {tolerance})"
        );
        assert!((measured - nakamoto).abs() > tolerance);
    }
}
