//! What the simulation tests of both protocols share: short scenarios of
//! mixed faults, and running many seeds of them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use phalanx_chain::ConsensusKind;
use phalanx_testnet::sim::{Batch, RunReport, Scenario};

/// Short runs, long enough for liveness: timeouts back off to at most
/// 2 s, and every honest replica must commit within 15 s of the last
/// partition healing or crashed replica restarting (over 500 HotStuff
/// seeds the slowest recovery took 12 s). The client sends a transfer
/// every 500 ms.
pub fn mixed(consensus: ConsensusKind, validators: usize) -> Scenario {
    let mut s = Scenario::new(validators);
    s.consensus = consensus;
    s.duration_ms = 1_000;
    s.max_timeout_ms = 2_000;
    s.liveness_bound_ms = 15_000;
    s.tx_interval_ms = 500;
    // Proof of work: twelve confirmations, what a miner with the random
    // faults' 10 % of the hash power needs to reverse a final block with
    // probability about 1e-6 (the exact race, `sim::theory`).
    s.confirmations = 12;
    s
}

/// Runs `seeds` of `base` with a random fault schedule each (f faulty
/// validators with the protocol's behaviours or twins, loss, duplication,
/// a partition, a crash); returns the failing runs, each printed with its
/// replay command, and the blocks committed.
pub fn run_mixed(base: Scenario, seeds: std::ops::Range<u64>) -> (Vec<RunReport>, u64) {
    let mut batch = Batch::new(base, seeds.start, seeds.end - seeds.start);
    batch.random_faults = true;
    batch.recheck_every = 10;
    batch.threads = 2;
    let mut failed = Vec::new();
    let summary = batch
        .run(|report| {
            if !report.passed() {
                eprintln!("{}", phalanx_testnet::cli::failure_line(&batch, report));
                failed.push(report.clone());
            }
        })
        .unwrap();
    eprint!("{summary}");
    (failed, summary.committed_blocks)
}

pub fn assert_all_pass(failed: &[RunReport], committed: u64) {
    let seeds: Vec<u64> = failed.iter().map(|r| r.seed).collect();
    assert!(
        failed.is_empty(),
        "{} runs failed their checkers (seeds {seeds:?}); replay commands above",
        failed.len()
    );
    assert!(committed > 0, "nothing was committed at all");
}

/// Views and committed blocks over `seeds` fault-free runs of 30 s whose
/// links take 100-450 ms one way, with a 500 ms base view timeout and
/// `timeout_factor` `factor`: rounds take longer than the base, so a
/// fixed timeout fails views that an adaptive one waits out.
pub fn on_slow_links(consensus: ConsensusKind, factor: u64, seeds: u64) -> (u64, u64) {
    let mut s = Scenario::new(4);
    s.consensus = consensus;
    s.delay.min_ms = 100;
    s.delay.max_ms = 450;
    s.base_timeout_ms = 500;
    s.timeout_factor = factor;
    let mut batch = Batch::new(s, 0, seeds);
    batch.threads = 2;
    let summary = batch.run(|_| {}).unwrap();
    assert_eq!(summary.failed_runs, 0, "factor {factor}: {summary}");
    (summary.views, summary.committed_blocks)
}
