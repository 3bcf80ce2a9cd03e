//! The key figures of one run, derived from its `bench` results: what the
//! tables, the CSV, the charts and the reading show.

use crate::bench::results::Results;
use crate::bench::stats::Second;

/// One run's key figures (`None`: not measured).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Key {
    pub achieved_tps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub finalized: Option<u64>,
    pub lost: Option<u64>,
    pub rejected: Option<u64>,
    /// Blocks final on the observer in the window.
    pub blocks: Option<u64>,
    pub view_changes: Option<u64>,
    /// Messages and bytes every node sent (authored and forwarded), per
    /// block final on the observer.
    pub messages_per_block: Option<f64>,
    pub bytes_per_block: Option<f64>,
    /// Every node's CPU time per transaction final on the observer (ms).
    pub cpu_ms_per_tx: Option<f64>,
    /// Finalized tx/s before the fault (window start to fault start) and
    /// while it lasted.
    pub tps_before_fault: Option<f64>,
    pub tps_during_fault: Option<f64>,
    /// Blocks final on the observer while the fault lasted.
    pub blocks_during_fault: Option<u64>,
    /// The longest run of whole seconds in the window in which load was
    /// offered and no transaction became final on the observer: how long
    /// a stall lasted, which averages hide.
    pub longest_stall_s: Option<u64>,
    pub pow: Option<PowKey>,
}

/// Proof of work's forks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowKey {
    pub confirmations: u64,
    /// The mean interval between the observer's final blocks, and the
    /// one the genesis target aims at (ms).
    pub block_interval_ms: Option<f64>,
    pub target_interval_ms: u64,
    pub stale_rate: Option<f64>,
    pub reorgs: u64,
    pub reorgs_all_nodes: Option<u64>,
    pub max_reorg_depth: Option<u32>,
    pub orphaned_blocks: Option<u64>,
    pub returned_txs: Option<u64>,
    pub reverted_txs: u64,
    pub first_inclusion_p50_ms: Option<f64>,
    pub safety_violations: u64,
}

impl Key {
    pub fn of(r: &Results) -> Key {
        let observer = r.nodes.get(r.observer);
        let final_blocks = observer.and_then(|n| n.finalized_blocks).filter(|b| *b > 0);
        let final_txs = observer.and_then(|n| n.committed_txs).filter(|t| *t > 0);
        let sent: Vec<_> = r.nodes.iter().filter_map(|n| n.sent).collect();
        let any_sent = !sent.is_empty();
        let messages: u64 = sent
            .iter()
            .map(|s| s.messages_authored + s.messages_forwarded)
            .sum();
        let bytes: u64 = sent
            .iter()
            .map(|s| s.bytes_authored + s.bytes_forwarded)
            .sum();
        let cpu: Vec<f64> = r.nodes.iter().filter_map(|n| n.cpu_s).collect();
        let per = |total: f64, of: Option<u64>| Some(total / of? as f64);
        let (before, during, blocks_during) = fault_rates(r);
        Key {
            achieved_tps: Some(r.achieved_tps),
            p50_ms: r.latency_ms.map(|l| f64::from(l.p50_ms)),
            p95_ms: r.latency_ms.map(|l| f64::from(l.p95_ms)),
            p99_ms: r.latency_ms.map(|l| f64::from(l.p99_ms)),
            finalized: Some(r.transactions.finalized),
            lost: Some(r.transactions.lost),
            rejected: Some(r.transactions.rejected),
            blocks: Some(r.blocks.count),
            view_changes: r.view_changes,
            messages_per_block: any_sent
                .then(|| per(messages as f64, final_blocks))
                .flatten(),
            bytes_per_block: any_sent.then(|| per(bytes as f64, final_blocks)).flatten(),
            cpu_ms_per_tx: (!cpu.is_empty())
                .then(|| per(cpu.iter().sum::<f64>() * 1_000.0, final_txs))
                .flatten(),
            tps_before_fault: before,
            tps_during_fault: during,
            blocks_during_fault: blocks_during,
            longest_stall_s: longest_stall(&r.timeline),
            pow: r.pow.as_ref().map(|p| PowKey {
                confirmations: p.confirmations,
                block_interval_ms: p.observed_block_interval_ms,
                target_interval_ms: p.block_interval_ms,
                stale_rate: p.stale_rate,
                reorgs: p.reorgs.count,
                reorgs_all_nodes: p.reorgs.all_nodes,
                max_reorg_depth: p.reorgs.max_depth,
                orphaned_blocks: p.orphaned_blocks,
                returned_txs: p.reorgs.returned_txs,
                reverted_txs: p.reorgs.reverted_txs,
                first_inclusion_p50_ms: p.first_inclusion_ms.map(|l| f64::from(l.p50_ms)),
                safety_violations: p.safety_violations,
            }),
        }
    }
}

/// The fault's span in seconds of the window: from when it started to
/// when it ended (or the window's end).
pub fn fault_span(r: &Results) -> Option<(f64, f64)> {
    let f = r.fault.as_ref()?;
    let start = f.started_s?;
    let end = f.ended_s.unwrap_or(r.config.scale.duration_s as f64);
    (end > start).then_some((start, end))
}

/// Finalized tx/s from the window's start to the fault, and during the
/// fault; blocks final during the fault. Whole seconds inside each span
/// count.
fn fault_rates(r: &Results) -> (Option<f64>, Option<f64>, Option<u64>) {
    let Some((start, end)) = fault_span(r) else {
        return (None, None, None);
    };
    let inside = |from: f64, to: f64| -> Vec<&Second> {
        r.timeline
            .iter()
            .filter(|s| s.t_s as f64 >= from.ceil() && (s.t_s + 1) as f64 <= to.floor())
            .collect()
    };
    let rate = |seconds: &[&Second]| {
        (!seconds.is_empty())
            .then(|| seconds.iter().map(|s| s.finalized).sum::<u64>() as f64 / seconds.len() as f64)
    };
    let before = inside(0.0_f64.max(start - 10.0), start);
    let during = inside(start, end);
    (
        rate(&before),
        rate(&during),
        (!during.is_empty()).then(|| during.iter().map(|s| s.blocks).sum()),
    )
}

/// The longest run of consecutive seconds of the timed window (t >= 0)
/// with load offered and nothing final; `None` without a timeline.
fn longest_stall(timeline: &[Second]) -> Option<u64> {
    let mut window = timeline.iter().filter(|s| s.t_s >= 0).peekable();
    window.peek()?;
    let (mut longest, mut run, mut last_t) = (0u64, 0u64, None::<i64>);
    for s in window {
        let follows = last_t.is_some_and(|t| t + 1 == s.t_s);
        if s.offered > 0 && s.finalized == 0 {
            run = if follows { run + 1 } else { 1 };
            longest = longest.max(run);
        } else {
            run = 0;
        }
        last_t = Some(s.t_s);
    }
    Some(longest)
}

/// The latency CDF from the histogram: (upper bound ms, share of the
/// finalized transactions at or below it), from the first bucket that
/// holds any; the open last bucket is left out.
pub fn cdf(r: &Results) -> Vec<(f64, f64)> {
    let total: u64 = r.latency_histogram.iter().map(|b| b.count).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut seen = 0;
    let mut points = Vec::new();
    for b in &r.latency_histogram {
        let Some(le) = b.le_ms else { continue };
        if seen == 0 && b.count == 0 {
            continue;
        }
        seen += b.count;
        points.push((le as f64, seen as f64 / total as f64));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t_s: i64, offered: u64, finalized: u64) -> Second {
        Second {
            t_s,
            offered,
            submitted: offered,
            finalized,
            blocks: u64::from(finalized > 0),
        }
    }

    #[test]
    fn the_longest_stall_counts_consecutive_offered_seconds_with_nothing_final() {
        assert_eq!(longest_stall(&[]), None);
        let t = [
            second(-2, 10, 0), // warmup: not counted
            second(-1, 10, 0),
            second(0, 10, 10),
            second(1, 10, 0),
            second(2, 10, 0),
            second(3, 10, 25),
            second(4, 10, 0),
            second(5, 10, 0),
            second(6, 10, 0),
            second(7, 0, 0), // nothing offered: not a stall
            second(8, 10, 0),
        ];
        assert_eq!(longest_stall(&t), Some(3));
        // A gap in the seconds breaks a run.
        let gap = [second(0, 10, 0), second(2, 10, 0), second(3, 10, 0)];
        assert_eq!(longest_stall(&gap), Some(2));
        assert_eq!(longest_stall(&[second(0, 10, 10)]), Some(0));
    }
}
