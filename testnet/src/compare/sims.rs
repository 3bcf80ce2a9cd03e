//! The simulator's sweeps beside the measured runs, in this process:
//! messages per committed block of PBFT and HotStuff as the committee
//! grows, and proof of work's stale rate as the block interval shrinks,
//! each with the theory it should follow.
//!
//! # The theory charted
//!
//! Per committed block, with `n` replicas and every message broadcast to
//! the `n - 1` others:
//! - PBFT (authored): a pre-prepare from the primary, a prepare from each
//!   of the `n - 1` backups and a commit from each of the `n` replicas,
//!   each sent to `n - 1` peers: `(1 + (n - 1) + n)(n - 1) = 2n(n - 1)`,
//!   O(n²) (checkpoints add `n(n - 1)` every checkpoint interval).
//! - HotStuff (authored): the leader's proposal to `n - 1` replicas and
//!   `n - 1` votes to the next leader: `2(n - 1)`, linear.
//! - With forwarding, every replica re-broadcasts each message it sees
//!   first to the others but its author (a flood over the full mesh), so
//!   each distinct message costs its `n - 1` authored copies plus `n - 2`
//!   from each of the `n - 1` receivers: `(n - 1)²` copies, whoever it was
//!   first sent to. PBFT's `2n` distinct messages per block then cost
//!   `2n(n - 1)²`, O(n³); HotStuff's `n` (a proposal and `n - 1` votes)
//!   cost `n(n - 1)²`, O(n³) too: forwarding every vote undoes HotStuff's
//!   linear authored cost, which is why the linear figure is the
//!   protocol's own. Checkpoints, view changes and catch-up come on top.
//!
//! Stale rate: [`theory::stale_rate`] at the mean link delay (a block
//! reaches every other miner in one hop) and one miner's share `1 / n`.

use super::model::{MessagePoint, SimSweeps, StalePoint};
use crate::sim::scenario::defaults;
use crate::sim::{Batch, Scenario, theory};
use phalanx_chain::ConsensusKind;
use std::time::Instant;

/// The committee sizes of the message sweep by default.
pub const DEFAULT_VALIDATORS: [usize; 6] = [4, 7, 10, 16, 31, 64];
/// Seeds per point by default.
pub const DEFAULT_SEEDS: u64 = 2;
/// The message sweep's virtual time per run by default (ms), up to
/// n = 10; larger committees run shorter ([`messages_virtual_ms`]).
pub const DEFAULT_MESSAGES_VIRTUAL_MS: u64 = 3_000;
/// The shortest virtual time of a message-sweep run (ms): still tens of
/// committed blocks (a block commits every few ms once the pipeline
/// fills), so that the messages of blocks in flight at the end weigh
/// little.
pub const MIN_MESSAGES_VIRTUAL_MS: u64 = 400;

/// The virtual time of a message-sweep run at `n` when `base` is asked:
/// `base` up to n = 10, then `base x 100 / n^2` (at least
/// [`MIN_MESSAGES_VIRTUAL_MS`]): the copies of a block grow as n^3 with
/// forwarding, and n = 64 for the whole `base` took minutes.
pub fn messages_virtual_ms(base: u64, n: usize) -> u64 {
    let n2 = (n as u64).saturating_mul(n as u64).max(1);
    (base.saturating_mul(100) / n2).clamp(MIN_MESSAGES_VIRTUAL_MS.min(base), base)
}
/// The stale sweep's block intervals (ms).
pub const STALE_INTERVALS_MS: [u64; 6] = [100, 200, 400, 800, 1_600, 3_200];
/// Blocks a stale-sweep run lasts on average (its virtual time is this
/// many intervals).
pub const STALE_BLOCKS: u64 = 300;
/// Miners of the stale sweep.
pub const STALE_MINERS: usize = 4;
/// The first seed.
pub const SEED_START: u64 = 1;

/// Runs `seeds` seeds of `scenario`; its summary.
fn batch(scenario: Scenario, seeds: u64) -> anyhow::Result<crate::sim::Summary> {
    let mut batch = Batch::new(scenario, SEED_START, seeds);
    batch.recheck_every = 0;
    batch.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    batch
        .run(|_| {})
        .map_err(|e| anyhow::anyhow!("simulator: {e}"))
}

/// Both sweeps.
pub fn sweep(validators: &[usize], seeds: u64, virtual_ms: u64) -> anyhow::Result<SimSweeps> {
    let started = Instant::now();
    let mut messages = Vec::new();
    for consensus in [ConsensusKind::Pbft, ConsensusKind::Hotstuff] {
        for n in validators {
            let mut s = Scenario::new(*n);
            s.consensus = consensus;
            s.duration_ms = messages_virtual_ms(virtual_ms, *n);
            // A run lasts at least the liveness bound: 20 s by default,
            // minutes of flooding at n = 64.
            s.liveness_bound_ms = s.duration_ms;
            let summary = batch(s, seeds)?;
            messages.push(MessagePoint {
                protocol: consensus.name().to_owned(),
                validators: *n,
                virtual_ms: messages_virtual_ms(virtual_ms, *n),
                committed_blocks: summary.committed_blocks,
                authored_per_block: summary.authored_messages_per_block,
                messages_per_block: summary.messages_per_block,
                bytes_per_block: summary.bytes_per_block,
                failed_runs: summary.failed_runs,
            });
        }
    }
    let mean_delay_ms = (defaults::DELAY_MIN_MS + defaults::DELAY_MAX_MS) as f64 / 2.0;
    let mut stale = Vec::new();
    for interval in STALE_INTERVALS_MS {
        let mut s = Scenario::new(STALE_MINERS);
        s.consensus = ConsensusKind::Pow;
        s.block_interval_ms = interval;
        s.duration_ms = interval * STALE_BLOCKS;
        s.liveness_bound_ms = s.liveness_bound_ms.max(interval * 20);
        let summary = batch(s, seeds)?;
        stale.push(StalePoint {
            block_interval_ms: interval,
            mined: summary.mined,
            stale_rate: summary.stale_rate,
            theory: theory::stale_rate(mean_delay_ms, interval as f64, 1.0 / STALE_MINERS as f64),
        });
    }
    Ok(SimSweeps {
        seeds,
        seed_start: SEED_START,
        messages_virtual_ms: virtual_ms,
        stale_virtual_ms: STALE_INTERVALS_MS
            .iter()
            .map(|i| i * STALE_BLOCKS)
            .max()
            .unwrap_or(0),
        delay_min_ms: defaults::DELAY_MIN_MS,
        delay_max_ms: defaults::DELAY_MAX_MS,
        wall_s: started.elapsed().as_secs_f64(),
        messages,
        stale_miners: STALE_MINERS,
        stale,
    })
}

/// The theory's messages per committed block (see the module's doc):
/// `(authored, with forwarding)`.
pub fn theory_messages(protocol: &str, n: f64) -> Option<(f64, f64)> {
    let flood = (n - 1.0) * (n - 1.0);
    match protocol {
        "pbft" => Some((2.0 * n * (n - 1.0), 2.0 * n * flood)),
        "hotstuff" => Some((2.0 * (n - 1.0), n * flood)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_theory_is_quadratic_for_pbft_and_linear_for_hotstuff_authored() {
        assert_eq!(theory_messages("pbft", 4.0), Some((24.0, 72.0)));
        assert_eq!(theory_messages("hotstuff", 4.0), Some((6.0, 36.0)));
        let (p4, _) = theory_messages("pbft", 4.0).unwrap_or_default();
        let (p8, _) = theory_messages("pbft", 8.0).unwrap_or_default();
        assert!((p8 / p4 - 112.0 / 24.0).abs() < 1e-12);
        assert_eq!(theory_messages("pow", 4.0), None);
    }

    #[test]
    fn large_committees_run_shorter_but_not_too_short() {
        assert_eq!(messages_virtual_ms(3_000, 4), 3_000);
        assert_eq!(messages_virtual_ms(3_000, 10), 3_000);
        assert_eq!(messages_virtual_ms(3_000, 16), 1_171);
        assert_eq!(messages_virtual_ms(3_000, 64), MIN_MESSAGES_VIRTUAL_MS);
        assert_eq!(messages_virtual_ms(200, 64), 200);
    }
}
