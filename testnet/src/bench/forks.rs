//! Proof of work on the followed node: what its `block`, `reorg` and
//! `finalized` events say beyond finality, kept beside the book.
//!
//! - A transaction is *included* when the first block carrying it is
//!   announced (`block` event); it is *final* only when the block holding
//!   it is final (`finalized`: k confirmations), as the book marks it. A
//!   block reorganized away takes its transactions back to "not final";
//!   they become final with whichever block carries them to k
//!   confirmations.
//! - Every `reorg` is recorded (when, how deep, how many of this run's
//!   transactions its reverted blocks carried).
//! - A final block is never reverted. A reorganization down to below the
//!   highest final height seen, or a final block whose parent is not the
//!   final block read below it, is a *safety violation*: recorded, never
//!   hidden (the run's results report them and the command fails).

use super::book::NEVER;
use super::drive::Phases;
use super::plan::Workload;
use std::collections::BTreeMap;

/// Blocks kept while not final (their transactions, for reorg
/// accounting), at most; beyond, a block's transactions are not tracked.
pub const MAX_OPEN_BLOCKS: usize = 4_096;
/// Reorganizations recorded one by one, at most (later ones are counted).
pub const MAX_REORGS: usize = 100_000;
/// Safety violations described, at most (later ones are counted).
pub const MAX_VIOLATIONS: usize = 16;

/// A reorganization the followed node announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorgSeen {
    /// When it was seen (ms from the origin).
    pub seen_ms: u32,
    /// Blocks it took off the chain.
    pub depth: u32,
    /// The height it rolled back to.
    pub ancestor_height: u64,
    /// This run's transactions in the blocks it took off (those the
    /// follower had read).
    pub ours: u32,
}

/// A block announced on the chain, not final yet.
#[derive(Debug, Clone)]
struct OpenBlock {
    height: u64,
    /// This run's transactions in it (indices into the workload).
    ours: Vec<u32>,
}

/// What proof of work adds to the book.
#[derive(Debug, Clone)]
pub struct ForkWatch {
    /// Per transaction: when a block carrying it was first announced (ms
    /// from the origin), or [`NEVER`].
    included_ms: Vec<u32>,
    open: BTreeMap<String, OpenBlock>,
    reorgs: Vec<ReorgSeen>,
    /// Every reorganization seen, recorded or not.
    pub reorgs_total: u64,
    /// The highest final height seen, and its block's hash.
    final_height: u64,
    final_hash: Option<String>,
    violations: Vec<String>,
    /// Every violation seen, described or not.
    pub violations_total: u64,
}

impl ForkWatch {
    /// For a workload of `txs` transactions, following from `final_height`
    /// (final already when following began).
    pub fn new(txs: usize, final_height: u64) -> ForkWatch {
        ForkWatch {
            included_ms: vec![NEVER; txs],
            open: BTreeMap::new(),
            reorgs: Vec::new(),
            reorgs_total: 0,
            final_height,
            final_hash: None,
            violations: Vec::new(),
            violations_total: 0,
        }
    }

    pub fn reorgs(&self) -> &[ReorgSeen] {
        &self.reorgs
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// When transaction `k` was first included, if it was.
    pub fn included_ms(&self, k: u32) -> Option<u32> {
        self.included_ms
            .get(k as usize)
            .copied()
            .filter(|ms| *ms != NEVER)
    }

    /// A block announced at `height` with hash `hash`, carrying this
    /// run's transactions `ours`, seen at `seen_ms`.
    pub fn block(&mut self, height: u64, hash: &str, ours: &[u32], seen_ms: u64) {
        let seen = u32::try_from(seen_ms).unwrap_or(NEVER - 1);
        for k in ours {
            if let Some(at) = self.included_ms.get_mut(*k as usize)
                && *at == NEVER
            {
                *at = seen;
            }
        }
        if height > self.final_height && self.open.len() < MAX_OPEN_BLOCKS {
            self.open.insert(
                hash.to_owned(),
                OpenBlock {
                    height,
                    ours: ours.to_vec(),
                },
            );
        }
    }

    /// A reorganization back to `ancestor_height` that took off `reverted`
    /// (block hashes), seen at `seen_ms`.
    pub fn reorg(&mut self, ancestor_height: u64, reverted: &[String], seen_ms: u64) {
        let mut ours = 0u32;
        for hash in reverted {
            if let Some(block) = self.open.remove(hash) {
                ours = ours.saturating_add(block.ours.len() as u32);
            }
        }
        self.reorgs_total += 1;
        if self.reorgs.len() < MAX_REORGS {
            self.reorgs.push(ReorgSeen {
                seen_ms: u32::try_from(seen_ms).unwrap_or(NEVER - 1),
                depth: u32::try_from(reverted.len()).unwrap_or(u32::MAX),
                ancestor_height,
                ours,
            });
        }
        if ancestor_height < self.final_height {
            self.violation(format!(
                "a reorganization back to height {ancestor_height} took off {} blocks, final \
                 blocks among them (final up to height {})",
                reverted.len(),
                self.final_height
            ));
        }
    }

    /// The final block at `height` read: `hash`, its `parent`. Returns
    /// false if it breaks the final chain (recorded as a violation).
    pub fn finalized(&mut self, height: u64, hash: &str, parent: &str) -> bool {
        let mut ok = true;
        if height == self.final_height + 1
            && let Some(below) = &self.final_hash
            && below != parent
        {
            let below = below.clone();
            self.violation(format!(
                "final block {height} ({hash}) does not extend the final block below it \
                 ({below}): its parent is {parent}"
            ));
            ok = false;
        }
        if height >= self.final_height {
            self.final_height = height;
            self.final_hash = Some(hash.to_owned());
        }
        self.open.retain(|_, b| b.height > height);
        ok
    }

    /// A safety violation seen elsewhere (a node halted on a conflict
    /// with its final chain).
    pub fn violation(&mut self, what: String) {
        self.violations_total += 1;
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(what);
        }
    }
}

/// Reorganizations seen inside the window: count, deepest, mean depth,
/// this run's transactions they took off.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReorgSummary {
    pub count: u64,
    pub max_depth: Option<u32>,
    pub mean_depth: Option<f64>,
    pub reverted_txs: u64,
}

impl ReorgSummary {
    pub fn of(reorgs: &[ReorgSeen], phases: &Phases) -> ReorgSummary {
        let inside: Vec<&ReorgSeen> = reorgs
            .iter()
            .filter(|r| (phases.warmup_ms..phases.window_end_ms()).contains(&u64::from(r.seen_ms)))
            .collect();
        let count = inside.len() as u64;
        let depths: u64 = inside.iter().map(|r| u64::from(r.depth)).sum();
        ReorgSummary {
            count,
            max_depth: inside.iter().map(|r| r.depth).max(),
            mean_depth: (count > 0).then(|| depths as f64 / count as f64),
            reverted_txs: inside.iter().map(|r| u64::from(r.ours)).sum(),
        }
    }
}

/// Stale blocks: of `mined` blocks found by all miners in the window,
/// those the chain did not grow by (`on_chain`); and their share of
/// `mined` (in [0, 1]; `None` if nothing was mined).
pub fn stale(mined: u64, on_chain: u64) -> (u64, Option<f64>) {
    let stale = mined.saturating_sub(on_chain);
    (stale, (mined > 0).then(|| stale as f64 / mined as f64))
}

/// Submit to first inclusion (ms) of the measured transactions (due in
/// the window) that were sent and included, sorted.
pub fn first_inclusions(
    watch: &ForkWatch,
    workload: &Workload,
    phases: &Phases,
    sent_ms: impl Fn(u32) -> Option<u32>,
) -> Vec<u32> {
    let mut out: Vec<u32> = (0..workload.len())
        .filter(|k| workload.due_ms(*k) >= phases.warmup_ms)
        .filter_map(|k| Some(watch.included_ms(k)?.saturating_sub(sent_ms(k)?)))
        .collect();
    out.sort_unstable();
    out
}

/// The mean interval between final blocks (ms) from their timestamps:
/// `(heights, timestamps)` of the final blocks read in the window.
pub fn mean_interval_ms(blocks: &[(u64, u64)]) -> Option<f64> {
    let first = blocks.iter().min_by_key(|(h, _)| *h)?;
    let last = blocks.iter().max_by_key(|(h, _)| *h)?;
    let span = last.0.checked_sub(first.0).filter(|s| *s > 0)?;
    Some(last.1.saturating_sub(first.1) as f64 / span as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases() -> Phases {
        Phases {
            warmup_ms: 1_000,
            window_ms: 10_000,
            drain_ms: 5_000,
        }
    }

    #[test]
    fn stale_rate_is_the_share_of_mined_blocks_the_chain_did_not_keep() {
        assert_eq!(stale(40, 30), (10, Some(0.25)));
        assert_eq!(stale(30, 30), (0, Some(0.0)));
        // A block counted on the chain but mined just before the window:
        // never below 0.
        assert_eq!(stale(30, 31), (0, Some(0.0)));
        assert_eq!(stale(0, 0), (0, None));
        assert_eq!(stale(5, 0), (5, Some(1.0)));
    }

    #[test]
    fn an_included_transaction_reorganized_away_is_counted_and_stays_not_final() {
        let mut w = ForkWatch::new(10, 0);
        w.block(1, "a1", &[0, 1], 1_500);
        w.block(2, "a2", &[2], 2_500);
        // A competing branch: 1 is kept, 2 taken off and its transaction
        // carried again by the new block 2.
        w.reorg(1, &["a2".into()], 3_000);
        w.block(2, "b2", &[2, 3], 3_000);
        assert_eq!(w.included_ms(2), Some(2_500), "first inclusion is kept");
        assert_eq!(w.included_ms(3), Some(3_000));
        assert_eq!(w.included_ms(4), None);
        assert_eq!(
            w.reorgs(),
            &[ReorgSeen {
                seen_ms: 3_000,
                depth: 1,
                ancestor_height: 1,
                ours: 1
            }]
        );
        assert!(w.finalized(1, "a1", "genesis"));
        assert!(w.finalized(2, "b2", "a1"));
        assert!(w.violations().is_empty());
        // Final blocks are no longer open.
        assert!(w.open.is_empty());
        let summary = ReorgSummary::of(w.reorgs(), &phases());
        assert_eq!(
            summary,
            ReorgSummary {
                count: 1,
                max_depth: Some(1),
                mean_depth: Some(1.0),
                reverted_txs: 1
            }
        );
    }

    #[test]
    fn reverting_a_final_block_is_a_safety_violation() {
        let mut w = ForkWatch::new(4, 0);
        w.block(1, "a1", &[0], 100);
        w.block(2, "a2", &[1], 200);
        assert!(w.finalized(1, "a1", "g"));
        assert!(w.finalized(2, "a2", "a1"));
        w.reorg(1, &["a2".into()], 300);
        assert_eq!(w.violations_total, 1);
        assert!(
            w.violations()[0].contains("final up to height 2"),
            "{:?}",
            w.violations()
        );
        // A final block that does not extend the final one below it.
        assert!(!w.finalized(3, "c3", "b2"));
        assert_eq!(w.violations_total, 2);
        // Above the final height a reorganization is normal.
        w.reorg(3, &["x4".into(), "x5".into()], 400);
        assert_eq!(w.violations_total, 2);
        assert_eq!(w.reorgs_total, 2);
        for i in 0..2 * MAX_VIOLATIONS {
            w.violation(format!("v{i}"));
        }
        assert_eq!(w.violations().len(), MAX_VIOLATIONS);
        assert_eq!(w.violations_total, 2 + 2 * MAX_VIOLATIONS as u64);
    }

    #[test]
    fn reorgs_outside_the_window_and_open_blocks_beyond_the_bound_are_not_counted() {
        let mut w = ForkWatch::new(1, 0);
        w.reorg(5, &["a".into(), "b".into(), "c".into()], 500);
        w.reorg(5, &["d".into(), "e".into()], 2_000);
        w.reorg(5, &["f".into()], 4_000);
        w.reorg(5, &["g".into()], 20_000);
        let s = ReorgSummary::of(w.reorgs(), &phases());
        assert_eq!(
            (s.count, s.max_depth, s.mean_depth),
            (2, Some(2), Some(1.5))
        );
        for i in 0..MAX_OPEN_BLOCKS + 10 {
            w.block(10 + i as u64, &format!("h{i}"), &[], 1);
        }
        assert_eq!(w.open.len(), MAX_OPEN_BLOCKS);
        assert_eq!(ReorgSummary::of(&[], &phases()).mean_depth, None);
    }

    #[test]
    fn the_mean_interval_comes_from_the_first_and_last_final_blocks() {
        assert_eq!(
            mean_interval_ms(&[(11, 4_000), (10, 1_000), (13, 7_000)]),
            Some(2_000.0)
        );
        assert_eq!(mean_interval_ms(&[(3, 1_000)]), None);
        assert_eq!(mean_interval_ms(&[]), None);
    }
}
