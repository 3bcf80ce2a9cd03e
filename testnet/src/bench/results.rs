//! `results.json`: everything a `bench` run measured, and the summary
//! table printed from it.

use super::faults::FaultRecord;
use super::lost::LostCheck;
use super::procfs::Machine;
use super::scrape::Sent;
use super::stats::{Bucket, Latency, Second};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;

/// The format of `results.json`; raised when a field changes meaning.
pub const FORMAT: u32 = 1;

/// `results.json`. Times are ms unless a field says otherwise; "the
/// window" is the timed window (after the warmup), and the transactions
/// counted in `transactions` and `latency_ms` are those *due* in it by the
/// rate schedule (the warmup's are in `warmup`). A field that could not be
/// measured is `null`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// [`FORMAT`].
    pub format: u32,
    /// The command line, one argument per element.
    pub command: Vec<String>,
    /// The git commit of the source tree: `PHALANX_GIT_COMMIT` at build
    /// time, else `git rev-parse HEAD` in the tree the binary was built
    /// from (read at run time; `-dirty` appended if it has changes).
    pub git_commit: Option<String>,
    /// When the run started (ms since the Unix epoch).
    pub started_at_ms: u64,
    pub machine: Machine,
    pub config: RunConfig,
    /// `config.tps`: the rate transactions were due at.
    pub offered_tps: f64,
    /// Measured transactions sent, per second of the window.
    pub submitted_tps: f64,
    /// Transactions (warmup ones too) seen final inside the window, per
    /// second of the window.
    pub achieved_tps: f64,
    pub transactions: Counts,
    /// Submit to final (on the observer node) of the measured transactions
    /// that became final: p50, p95, p99, max, mean.
    pub latency_ms: Option<Latency>,
    /// The same latencies by bucket (`le_ms`: upper bound, inclusive;
    /// `null`: above the last); the counts sum to `transactions.finalized`.
    pub latency_histogram: Vec<Bucket>,
    /// How long after it was due each measured transaction was sent (the
    /// load generator's own delay: pending bound, resends, nodes down).
    pub submit_lag_ms: Option<Latency>,
    pub blocks: BlockCounts,
    /// View changes in the window: the most any node counted
    /// (`phalanx_view_changes_total`).
    pub view_changes: Option<u64>,
    pub warmup: Warmup,
    pub requests: Requests,
    /// The injected fault (`null` with `--faults none`).
    pub fault: Option<FaultRecord>,
    /// Proof of work's own figures (`null` on BFT runs).
    pub pow: Option<PowFigures>,
    /// The node finality was followed on.
    pub observer: usize,
    pub generator: Generator,
    /// One entry per node, in index order.
    pub nodes: Vec<NodeFigures>,
    /// Per second from the start of the warmup to the end of the drain.
    pub timeline: Vec<Second>,
}

/// The run's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub consensus: String,
    #[serde(flatten)]
    pub scale: Scale,
    pub faults: String,
    pub base_port: u16,
    /// Submission: tick (ms), requests in flight per node, transactions
    /// per request, pending per account, sends per transaction.
    pub tick_ms: u64,
    pub max_in_flight_per_node: usize,
    pub max_batch_txs: usize,
    pub max_pending_per_account: u32,
    pub max_attempts: u8,
    /// The nodes' `[consensus]` and `[mempool]` settings.
    pub node_consensus: serde_json::Value,
    pub node_mempool: serde_json::Value,
    /// The nodes' store settings: `cache_mb` and `tx_index` (from
    /// `[node]`); `null` in results written before they were recorded.
    #[serde(default)]
    pub node_store: serde_json::Value,
    /// Proof of work: the network's genesis and miners (`null` on BFT
    /// runs).
    pub pow: Option<PowConfig>,
}

/// A proof-of-work run's network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowConfig {
    /// The mean block interval the genesis target aims at.
    pub block_interval_ms: u64,
    /// Confirmations that make a block final (k).
    pub confirmations: u64,
    /// Hashes per second of all miners together.
    pub total_hashrate: u64,
    /// Each miner's `[mining] hashrate_limit` (hashes per second).
    pub hashrate_limits: Vec<Option<u64>>,
}

/// Proof of work's figures. "Final" is k confirmations: `latency_ms` is
/// the time to k confirmations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowFigures {
    /// The configured mean block interval.
    pub block_interval_ms: u64,
    /// The mean interval between the final blocks the observer read in
    /// the window, from their header timestamps: (last - first) / (height
    /// span).
    pub observed_block_interval_ms: Option<f64>,
    pub confirmations: u64,
    /// Blocks every miner found in the window (`phalanx_mined_blocks_total`
    /// rises, summed).
    pub mined_blocks: Option<u64>,
    /// How many blocks the observer's chain grew by in the same readings.
    pub chain_blocks: Option<u64>,
    /// `mined_blocks - chain_blocks` (at least 0): blocks mined that did
    /// not end on the chain.
    pub stale_blocks: Option<u64>,
    /// `stale_blocks / mined_blocks`, in [0, 1].
    pub stale_rate: Option<f64>,
    /// `phalanx_orphaned_blocks_total` rises, summed over the nodes (a
    /// stale block counts once per node that had it on its chain).
    pub orphaned_blocks: Option<u64>,
    pub reorgs: ReorgFigures,
    /// Submit to the first block that carried it (a `block` event on the
    /// observer), of the measured transactions.
    pub first_inclusion_ms: Option<Latency>,
    /// How many final blocks were found reverted or off the final chain,
    /// or nodes that halted on a conflict with their final chain; 0 is
    /// the only correct value.
    pub safety_violations: u64,
    /// The first of them, described.
    pub safety_notes: Vec<String>,
}

/// Reorganizations in the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReorgFigures {
    /// Announced by the observer (`reorg` events).
    pub count: u64,
    /// Blocks the deepest took off, and the mean.
    pub max_depth: Option<u32>,
    pub mean_depth: Option<f64>,
    /// The run's transactions in the blocks they took off (on the
    /// observer): they were included, then not, and final only later.
    pub reverted_txs: u64,
    /// `phalanx_reorgs_total` rises, summed over the nodes.
    pub all_nodes: Option<u64>,
    /// `phalanx_reorg_returned_txs_total` rises, summed over the nodes:
    /// transactions of reverted blocks admitted back to a mempool.
    pub returned_txs: Option<u64>,
}

/// One node's proof-of-work counters' rises in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePow {
    pub mined_blocks: Option<u64>,
    pub reorgs: Option<u64>,
    pub orphaned_blocks: Option<u64>,
    pub reorg_returned_txs: Option<u64>,
}

/// How big a run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub validators: usize,
    /// The offered rate, transactions per second.
    pub tps: f64,
    pub duration_s: u64,
    pub warmup_s: u64,
    /// The longest wait after the window for transactions to be final.
    pub drain_s: u64,
    /// Sending accounts.
    pub accounts: usize,
    /// Transactions signed for the warmup and the window.
    pub planned: u64,
}

/// The measured transactions by outcome: `finalized + rejected + lost +
/// skipped + unsent = offered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counts {
    /// Due in the window.
    pub offered: u64,
    /// Sent at least once.
    pub submitted: u64,
    /// Of those, first sent after the window had ended.
    pub sent_late: u64,
    /// Seen final on the observer node.
    pub finalized: u64,
    /// Refused for good.
    pub rejected: u64,
    /// `rejected` by the last refusal's code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Admitted (or sent without an answer) and never seen final.
    pub lost: u64,
    /// Of `lost`: behind a nonce of their account refused for good.
    pub lost_behind_refusal: u64,
    /// A sample of `lost` looked up on the nodes at the end of the drain:
    /// still pending, in a block, or known to no node (absent from results
    /// written before it existed).
    #[serde(default)]
    pub lost_check: LostCheck,
    /// Never sent: an earlier nonce of their account was refused for good.
    pub skipped: u64,
    /// Never sent: held back to the end (pending bound, nodes down).
    pub unsent: u64,
    /// Every refused send of the run (warmup included, resends that later
    /// passed too), by code.
    pub refusals_by_reason: BTreeMap<String, u64>,
    /// Resends answered `duplicate`, `nonce_pending` or `nonce_too_low`:
    /// an earlier send had got through.
    pub resends_already_known: u64,
}

/// The load generator (this process) over the whole run, signing
/// included: it shares the machine's cores with the nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generator {
    pub cpu_s: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Wall time spent signing the workload before the nodes started.
    pub signing_s: f64,
}

/// Blocks seen committed on the observer node inside the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockCounts {
    pub count: u64,
    /// Transactions in them (anyone's).
    pub txs: u64,
    pub txs_per_block: Option<f64>,
    pub max_txs_per_block: Option<u64>,
    pub empty: u64,
}

/// The warmup's transactions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Warmup {
    pub offered: u64,
    pub finalized: u64,
}

/// `POST /txs/batch` requests of the whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requests {
    pub sent: u64,
    pub without_answer: u64,
    pub last_error: Option<String>,
}

/// One node in the window: its own `/metrics` and `/proc` readings at the
/// window's start and end (a node that died: its last reading).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFigures {
    pub index: usize,
    /// `validator` or `byzantine (BEHAVIOUR)`.
    pub role: String,
    pub pid: u32,
    /// How its process ended, if it ended before the teardown.
    pub exited: Option<String>,
    /// The span its two readings cover (s).
    pub measured_s: Option<f64>,
    /// Its finalized height's rise.
    pub finalized_blocks: Option<u64>,
    /// Its committed transactions' rise.
    pub committed_txs: Option<u64>,
    pub view_changes: Option<u64>,
    /// Messages and bytes sent, every channel together.
    pub sent: Option<Sent>,
    /// `sent` divided by `finalized_blocks`.
    pub sent_per_block: Option<PerBlock>,
    /// `sent` by channel (`consensus`, `transactions`, `sync`).
    pub sent_by_channel: BTreeMap<String, Sent>,
    /// What it dropped in the window (`phalanx_dropped_total`'s rise), by
    /// reason (docs/API.md lists them).
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Pending transactions its full pool evicted (stuck above a nonce
    /// gap) to admit ready ones (`phalanx_mempool_evicted_total`'s rise).
    pub evicted_txs: Option<u64>,
    /// Ready transactions it gossiped again after a long wait
    /// (`phalanx_txs_regossiped_total`'s rise).
    pub regossiped_txs: Option<u64>,
    /// User plus system CPU time.
    pub cpu_s: Option<f64>,
    /// `cpu_s` per 1,000 of `committed_txs`.
    pub cpu_s_per_1k_txs: Option<f64>,
    /// `VmHWM`: its peak resident memory over its whole life.
    pub peak_rss_bytes: Option<u64>,
    /// `write_bytes` of `/proc/<pid>/io`: bytes it had written to storage.
    pub disk_write_bytes: Option<u64>,
    /// Why its consensus halted (`GET /status` at the end), if it did.
    pub halted: Option<String>,
    /// Proof of work: its mining and reorganization counters (absent on
    /// BFT runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pow: Option<NodePow>,
}

/// Messages and bytes per finalized block.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerBlock {
    pub messages_authored: f64,
    pub messages_forwarded: f64,
    pub bytes_authored: f64,
    pub bytes_forwarded: f64,
}

impl PerBlock {
    pub fn of(sent: &Sent, blocks: u64) -> Option<PerBlock> {
        let b = (blocks > 0).then_some(blocks as f64)?;
        Some(PerBlock {
            messages_authored: sent.messages_authored as f64 / b,
            messages_forwarded: sent.messages_forwarded as f64 / b,
            bytes_authored: sent.bytes_authored as f64 / b,
            bytes_forwarded: sent.bytes_forwarded as f64 / b,
        })
    }
}

/// The summary's proof-of-work lines.
fn pow_rows(p: &PowFigures) -> Vec<(&'static str, String)> {
    let r = &p.reorgs;
    let mut rows = vec![
        (
            "final",
            format!(
                "k = {} confirmations; first inclusion {}",
                p.confirmations,
                latency(&p.first_inclusion_ms)
            ),
        ),
        (
            "block interval",
            format!(
                "{} ms observed on the final chain, {} ms configured",
                opt(p.observed_block_interval_ms, |v| format!("{v:.0}")),
                p.block_interval_ms
            ),
        ),
        (
            "stale",
            format!(
                "{} of {} mined blocks (rate {}); {} orphaned over all nodes",
                opt(p.stale_blocks, |v| v.to_string()),
                opt(p.mined_blocks, |v| v.to_string()),
                opt(p.stale_rate, |v| format!("{v:.3}")),
                opt(p.orphaned_blocks, |v| v.to_string())
            ),
        ),
        (
            "reorgs",
            format!(
                "{} on node 0 (depth max {}, mean {}), {} of the run's tx taken off; {} over all \
                 nodes, {} tx back to mempools",
                r.count,
                opt(r.max_depth, |v| v.to_string()),
                opt(r.mean_depth, |v| format!("{v:.1}")),
                r.reverted_txs,
                opt(r.all_nodes, |v| v.to_string()),
                opt(r.returned_txs, |v| v.to_string())
            ),
        ),
    ];
    rows.push((
        "safety",
        if p.safety_violations == 0 {
            "no final block reverted".to_owned()
        } else {
            format!(
                "VIOLATED {} times: {}",
                p.safety_violations,
                p.safety_notes.join("; ")
            )
        },
    ));
    rows
}

fn opt<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".into(), show)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `; of N checked at the end: ...`, or nothing if none was checked.
fn lost_check_text(c: &LostCheck) -> String {
    if c.checked == 0 {
        return String::new();
    }
    let mut parts = vec![
        format!("{} pending", c.pending),
        format!("{} in a block", c.in_block),
        format!("{} on no node", c.unknown),
    ];
    if c.unanswered > 0 {
        parts.push(format!("{} unanswered", c.unanswered));
    }
    format!(
        "; of {} checked at the end: {}",
        c.checked,
        parts.join(", ")
    )
}

fn reasons(m: &BTreeMap<String, u64>) -> String {
    let list: Vec<String> = m.iter().map(|(c, n)| format!("{c} {n}")).collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" ({})", list.join(", "))
    }
}

fn latency(l: &Option<Latency>) -> String {
    opt(*l, |l| {
        format!(
            "p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
        )
    })
}

impl Results {
    /// The summary: the run's figures, then a line per node.
    pub fn print(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let c = &self.config;
        writeln!(
            out,
            "bench {}: {} validators, {} tx/s for {} s after {} s of warmup, {} accounts, faults {}",
            c.consensus,
            c.scale.validators,
            c.scale.tps,
            c.scale.duration_s,
            c.scale.warmup_s,
            c.scale.accounts,
            c.faults
        )?;
        let rows = self.summary_rows();
        let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
        for (key, value) in &rows {
            writeln!(out, "  {key:<width$}  {value}")?;
        }
        self.print_nodes(out)
    }

    fn summary_rows(&self) -> Vec<(&'static str, String)> {
        let t = &self.transactions;
        let b = &self.blocks;
        let mut rows = vec![
            (
                "offered",
                format!("{} tx, {:.1} tx/s", t.offered, self.offered_tps),
            ),
            (
                "submitted",
                format!(
                    "{} tx, {:.1} tx/s ({} after the window; lag {})",
                    t.submitted,
                    self.submitted_tps,
                    t.sent_late,
                    latency(&self.submit_lag_ms)
                ),
            ),
            (
                "finalized",
                format!(
                    "{} tx; achieved {:.1} tx/s in the window",
                    t.finalized, self.achieved_tps
                ),
            ),
            (
                "rejected",
                format!("{}{}", t.rejected, reasons(&t.rejected_by_reason)),
            ),
            (
                "lost",
                format!(
                    "{} ({} behind a refused nonce{})",
                    t.lost,
                    t.lost_behind_refusal,
                    lost_check_text(&t.lost_check)
                ),
            ),
            (
                "not sent",
                format!("{} skipped, {} held back", t.skipped, t.unsent),
            ),
            (
                "latency",
                format!(
                    "{} (submit to final on node {})",
                    latency(&self.latency_ms),
                    self.observer
                ),
            ),
            (
                "blocks",
                format!(
                    "{} in the window, {} tx/block (max {}), view changes {}",
                    b.count,
                    opt(b.txs_per_block, |v| format!("{v:.1}")),
                    opt(b.max_txs_per_block, |v| v.to_string()),
                    opt(self.view_changes, |v| v.to_string())
                ),
            ),
        ];
        if let Some(p) = &self.pow {
            rows.extend(pow_rows(p));
        }
        if !t.refusals_by_reason.is_empty() {
            rows.push(("refusals", reasons(&t.refusals_by_reason).trim().to_owned()));
        }
        if let Some(f) = &self.fault {
            rows.push(("fault", fault_line(f)));
        }
        let g = &self.generator;
        rows.push((
            "generator",
            format!(
                "{} CPU s, peak RSS {}, {:.1} s signing (this process, on the nodes' cores)",
                opt(g.cpu_s, |v| format!("{v:.1}")),
                opt(g.peak_rss_bytes, mib),
                g.signing_s
            ),
        ));
        rows
    }

    fn print_nodes(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let rows: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| {
                let per = n.sent_per_block;
                vec![
                    n.index.to_string(),
                    n.role.clone(),
                    opt(n.finalized_blocks, |v| v.to_string()),
                    opt(per, |p| {
                        format!("{:.1} + {:.1}", p.messages_authored, p.messages_forwarded)
                    }),
                    opt(per, |p| {
                        format!(
                            "{:.1} + {:.1}",
                            p.bytes_authored / 1024.0,
                            p.bytes_forwarded / 1024.0
                        )
                    }),
                    opt(n.cpu_s_per_1k_txs, |v| format!("{v:.3}")),
                    opt(n.peak_rss_bytes, mib),
                    opt(n.disk_write_bytes, mib),
                    n.exited.clone().unwrap_or_default(),
                ]
            })
            .collect();
        crate::local::write_table(
            out,
            &[
                "node",
                "role",
                "blocks",
                "msgs/block (own + fwd)",
                "KiB/block (own + fwd)",
                "CPU s/1k tx",
                "peak RSS",
                "disk written",
                "",
            ],
            &rows,
        )?;
        Ok(())
    }
}

fn fault_line(f: &FaultRecord) -> String {
    let at = |s: Option<f64>| opt(s, |s| format!("{s:.1} s"));
    let mut line = format!("{} on nodes {:?}", f.kind, f.nodes);
    if let Some(b) = &f.behaviour {
        line.push_str(&format!(" ({b})"));
    }
    line.push_str(&format!(", from {} to {}", at(f.started_s), at(f.ended_s)));
    if let Some(e) = &f.error {
        line.push_str(&format!("; FAILED: {e}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_block_figures_need_a_block() {
        let sent = Sent {
            messages_authored: 30,
            messages_forwarded: 90,
            bytes_authored: 3_000,
            bytes_forwarded: 9_000,
        };
        assert_eq!(PerBlock::of(&sent, 0), None);
        let p = PerBlock::of(&sent, 3).unwrap();
        assert_eq!((p.messages_authored, p.bytes_forwarded), (10.0, 3_000.0));
    }
}
