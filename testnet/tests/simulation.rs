//! The deterministic simulator against the HotStuff replica: many seeds of
//! mixed faults where every checker must pass, and negative controls where
//! the checkers must catch a broken run.
//!
//! Each test prints its seeds; `PHALANX_SEED=<n>` runs that seed alone, and
//! a failure prints the `phalanx-testnet sim` command that replays it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod sim_support;

use phalanx_chain::{ConsensusKind, ValidatorIndex};
use phalanx_testnet::sim::rng::Rng;
use phalanx_testnet::sim::scenario::Partition;
use phalanx_testnet::sim::{CheckerKind, Scenario, run};
use sim_support::{assert_all_pass, run_mixed};
use std::collections::BTreeSet;

fn mixed(validators: usize) -> Scenario {
    sim_support::mixed(ConsensusKind::Hotstuff, validators)
}

#[test]
fn four_validators_mixed_faults_500_seeds() {
    let seeds = phalanx_testnet::sim::test_seeds(0..500);
    let (failed, committed) = run_mixed(mixed(4), seeds);
    assert_all_pass(&failed, committed);
}

#[test]
fn seven_validators_mixed_faults_200_seeds() {
    let seeds = phalanx_testnet::sim::test_seeds(10_000..10_200);
    let (failed, committed) = run_mixed(mixed(7), seeds);
    assert_all_pass(&failed, committed);
}

/// A split of replicas `0..replicas` into two non-empty groups, from `seed`.
fn random_split(seed: u64, replicas: usize, start_ms: u64, end_ms: u64) -> Partition {
    let mut rng = Rng::stream(seed, "test-partition");
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..replicas {
        let side = if i == 0 {
            &mut a
        } else if i == 1 {
            &mut b
        } else if rng.chance(0.5) {
            &mut a
        } else {
            &mut b
        };
        side.push(ValidatorIndex(i as u16));
    }
    Partition {
        groups: vec![a, b],
        start_ms,
        end_ms,
    }
}

/// More than f two-faced validators (each signs conflicting proposals and
/// votes, one set per side) split the honest replicas: the simulator must
/// report two different blocks committed at one height.
#[test]
fn more_than_f_twins_break_agreement() {
    let seeds = phalanx_testnet::sim::test_seeds(0..10);
    let mut broken = Vec::new();
    for seed in seeds.clone() {
        let mut s = mixed(4);
        s.twins = BTreeSet::from([ValidatorIndex(2), ValidatorIndex(3)]);
        s.partitions
            .push(random_split(seed, s.replicas(), 0, 6_000));
        let report = run(&s, seed, false).unwrap();
        if report.count(CheckerKind::Agreement) > 0 {
            eprintln!(
                "seed {seed} ({}): {}",
                s.partitions[0], report.violations[0]
            );
            broken.push(seed);
        }
    }
    assert!(
        !broken.is_empty(),
        "no agreement violation in seeds {seeds:?} with 2 of 4 validators two-faced"
    );
}

/// The same attack within f (one two-faced validator of four) breaks
/// nothing: a positive twin of the control above.
#[test]
fn f_twins_do_not_break_agreement() {
    let seeds = phalanx_testnet::sim::test_seeds(0..10);
    for seed in seeds {
        let mut s = mixed(4);
        s.twins = BTreeSet::from([ValidatorIndex(3)]);
        s.partitions
            .push(random_split(seed, s.replicas(), 0, 6_000));
        let report = run(&s, seed, false).unwrap();
        assert!(
            report.passed(),
            "seed {seed} ({}): {:?}",
            s.partitions[0],
            report.violations
        );
    }
}

/// Eight validators, split in halves from 0.5 s to 20 s (long enough for
/// each half to sit out the other half's four views of timeouts).
fn eight_split() -> Scenario {
    let mut s = mixed(8);
    s.duration_ms = 25_000;
    s.partitions.push(Partition {
        groups: vec![
            (0..4).map(ValidatorIndex).collect(),
            (4..8).map(ValidatorIndex).collect(),
        ],
        start_ms: 500,
        end_ms: 20_000,
    });
    s
}

/// Negative control with weakened replicas: every replica mistakes the
/// validity threshold f + 1 for a quorum (at n = 8, three signers instead
/// of six). Two such quorums need not overlap, so both halves of a
/// partition into 0-3 and 4-7 certify and commit different blocks at the
/// same height, and the agreement checker must say so in the seeds this
/// test runs; it stops at the first seed that shows it (a run with a
/// violation at every height is slow to check). (Under round-robin each
/// half holds four consecutive leaders, and a three-chain needs QCs of
/// three consecutive views; under reputation each half's QCs are signed
/// by its own members only, so its leaders stay within it.)
///
/// (Weakening the lock instead is not enough here, which the previous
/// version of this test found over 200 seeds: timeouts carry their
/// signer's highest QC and honest leaders extend the highest QC they know,
/// so with at most f Byzantine replicas only a leader that forks below a
/// committed block *and* voters that keep building on that fork, after
/// committing the block, could use a missing lock. See the note on issue 3.)
#[test]
fn a_quorum_of_f_plus_one_breaks_agreement() {
    let seeds = phalanx_testnet::sim::test_seeds(0..10);
    let mut broken = Vec::new();
    for seed in seeds.clone() {
        let mut s = eight_split();
        s.unsafe_quorum = Some(3);
        let report = run(&s, seed, false).unwrap();
        if report.count(CheckerKind::Agreement) > 0 {
            broken.push(seed);
            break;
        }
    }
    eprintln!("agreement violations in seeds {broken:?}");
    assert!(
        !broken.is_empty(),
        "no agreement violation in seeds {seeds:?}"
    );
}

/// The same schedule with the real quorum: no violation (the control
/// above fails because of the quorum, not because of the schedule).
#[test]
fn the_real_quorum_survives_the_same_schedule() {
    for seed in phalanx_testnet::sim::test_seeds(0..10) {
        let s = eight_split();
        let report = run(&s, seed, false).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
    }
}

/// Without faults the chain grows steadily, and honest replicas report the
/// equivocation of a Byzantine leader as evidence.
#[test]
fn equivocation_is_reported_and_the_chain_grows() {
    let seeds = phalanx_testnet::sim::test_seeds(0..4);
    for seed in seeds {
        let mut s = Scenario::new(4);
        s.duration_ms = 10_000;
        s.liveness_bound_ms = 5_000;
        s.byzantine
            .insert(ValidatorIndex(3), phalanx_consensus::Byzantine::Equivocate);
        s.loss = 0.1;
        let report = run(&s, seed, true).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        assert!(
            report.committed_height >= 3,
            "seed {seed}: {}",
            report.committed_height
        );
        assert!(
            report
                .evidence
                .get("conflicting-proposals")
                .copied()
                .unwrap_or(0)
                > 0,
            "seed {seed}: {:?}",
            report.evidence
        );
    }
}

/// Invalid signatures are dropped by `verify_message` before the replica
/// sees them, and counted, with ideal signatures (the default) as with
/// ed25519: the corrupted copies are the same, so are the counts (the
/// schedule draws nothing from hashes).
#[test]
fn invalid_signatures_are_filtered_and_counted() {
    let mut s = Scenario::new(4);
    s.duration_ms = 5_000;
    s.liveness_bound_ms = 5_000;
    s.byzantine.insert(
        ValidatorIndex(1),
        phalanx_consensus::Byzantine::InvalidSignature,
    );
    assert!(s.ideal_signatures);
    let ideal = run(&s, 7, false).unwrap();
    s.ideal_signatures = false;
    let real = run(&s, 7, false).unwrap();
    for report in [&ideal, &real] {
        assert!(report.passed(), "{:?}", report.violations);
        assert!(report.rejected.get("bad-signature").copied().unwrap_or(0) > 0);
    }
    assert_eq!(ideal.rejected, real.rejected);
    assert_eq!(ideal.committed_height, real.committed_height);
    // Block hashes cover signatures: the logs differ.
    assert_ne!(ideal.commit_log_hash, real.commit_log_hash);
}

/// The verification cache changes no outcome: the same seed gives the same
/// commit log with every copy of every message verified.
#[test]
fn the_verification_cache_changes_nothing() {
    let seeds = phalanx_testnet::sim::test_seeds(0..3);
    for seed in seeds {
        let cached = mixed(4).with_random_faults(seed);
        let mut uncached = cached.clone();
        uncached.verify_cache = false;
        let a = run(&cached, seed, false).unwrap();
        let b = run(&uncached, seed, false).unwrap();
        assert_eq!(a.commit_log_hash, b.commit_log_hash, "seed {seed}");
        assert_eq!(a.events, b.events, "seed {seed}");
    }
}

/// A batch reports its seeds in order whatever the threads, and each
/// seed's run is the same on any thread (threads take seeds as they come
/// free, so which thread runs which seed varies).
#[test]
fn a_batch_reports_seeds_in_order_and_threads_change_no_outcome() {
    let mut base = mixed(4);
    base.duration_ms = 5_000;
    let outcomes = |threads: usize| {
        let mut batch = phalanx_testnet::sim::Batch::new(base.clone(), 40, 13);
        batch.random_faults = true;
        batch.recheck_every = 4;
        batch.threads = threads;
        let mut seen = Vec::new();
        batch
            .run(|report| seen.push((report.seed, report.commit_log_hash, report.events)))
            .unwrap();
        seen
    };
    let one = outcomes(1);
    assert_eq!(
        one.iter().map(|(seed, ..)| *seed).collect::<Vec<_>>(),
        (40..53).collect::<Vec<_>>()
    );
    for threads in [2, 3] {
        assert_eq!(outcomes(threads), one, "{threads} threads");
    }
}

/// On slow links (rounds longer than the 500 ms base timeout), a fixed
/// timeout fails views; the adaptive one fails far fewer (HotStuff moves
/// a view per block, so views per committed block is the measure).
#[test]
fn an_adaptive_timeout_fails_fewer_views_on_slow_links() {
    let (fixed_views, fixed_blocks) = sim_support::on_slow_links(ConsensusKind::Hotstuff, 0, 10);
    let (views, blocks) = sim_support::on_slow_links(ConsensusKind::Hotstuff, 4, 10);
    eprintln!("fixed: {fixed_views} views, {fixed_blocks} blocks; adaptive: {views}, {blocks}");
    let failed = |views: u64, blocks: u64| views.saturating_sub(blocks);
    assert!(
        failed(views, blocks) * 2 < failed(fixed_views, fixed_blocks),
        "views beyond blocks: {} against {}",
        failed(views, blocks),
        failed(fixed_views, fixed_blocks)
    );
    assert!(blocks > fixed_blocks, "{blocks} against {fixed_blocks}");
}

/// A crashed replica restarts from what it persisted and catches up.
#[test]
fn a_restarted_replica_catches_up() {
    let mut s = Scenario::new(4);
    s.duration_ms = 1_000;
    s.liveness_bound_ms = 10_000;
    s.crashes.push("2@2s-5s".parse().unwrap());
    let report = run(&s, 3, true).unwrap();
    assert!(report.passed(), "{:?}", report.violations);
    assert!(
        report.dropped_down > 0,
        "nothing reached the crashed replica"
    );
}

/// A crashed validator costs at most one view timeout, plus a vote re-send
/// and a few message delays, before every honest replica commits again
/// (virtual time). Regression: when the crash took out the next leader,
/// the one replica that had gathered the others' re-sent votes formed the
/// QC and moved on before re-sending its own vote; the other two timed out
/// the view behind it, it timed out its own, and recovery took two view
/// timeouts (2.1 s and 2.3 s for seeds 90 and 69 of these).
#[test]
fn a_crashed_leader_costs_one_view_timeout() {
    let seeds = phalanx_testnet::sim::test_seeds(0..100);
    eprintln!("seeds {seeds:?}");
    let mut s = Scenario::new(4);
    s.crashes.push("3@10s".parse().unwrap());
    // One view timeout, a quarter of one for the vote re-send, and at most
    // 10 one-way delays of the default 50 ms maximum.
    let bound = s.base_timeout_ms + s.base_timeout_ms / 4 + 10 * 50;
    for seed in seeds {
        let report = run(&s, seed, true).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.violations);
        let recovery = report.recovery_ms.unwrap();
        assert!(
            recovery <= bound,
            "seed {seed}: recovery took {recovery} ms (bound {bound}); replay: \
             phalanx-testnet sim --seed-start {seed} --seeds 1 {}",
            s.to_args().join(" ")
        );
    }
}

/// Regression (found by the mixed-fault seeds above): a silent validator
/// and one replica cut off for a few seconds. After the heal, the cut-off
/// replica is the last to collect n - f timeouts for a view, forms the TC
/// and moves on; the others lack its timeout for that view (sent while it
/// was cut off, never re-sent once it moved on) and the TC is never shared,
/// so they wait in the old view and it waits alone in the new one: no
/// view ever gets n - f replicas again. Every honest replica must commit
/// again after the heal.
#[test]
fn a_replica_that_forms_a_tc_after_a_heal_does_not_strand_the_others() {
    let seeds = phalanx_testnet::sim::test_seeds(0..20);
    let mut s = Scenario::new(4);
    s.byzantine
        .insert(ValidatorIndex(3), phalanx_consensus::Byzantine::Silent);
    s.partitions.push("0,2,3/1@1500ms-5400ms".parse().unwrap());
    let mut failed = Vec::new();
    for seed in seeds {
        let report = run(&s, seed, false).unwrap();
        if !report.passed() {
            eprintln!("seed {seed}: {}", report.violations[0]);
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "seeds {failed:?} failed; replay one with: phalanx-testnet sim {} --seed-start SEED --seeds 1",
        s.to_args().join(" ")
    );
}
