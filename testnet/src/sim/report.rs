//! What one run found, and the summary over many.

use phalanx_consensus::Origin;
use phalanx_crypto::Hash;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The property a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckerKind {
    /// Two honest replicas committed different blocks at one height.
    Agreement,
    /// A committed block does not link to its parent, carries no valid
    /// certificate, or does not execute.
    Integrity,
    /// With at most f faulty replicas, an honest replica that is up did not
    /// commit within the bound after the last disruption.
    Liveness,
    /// The same seed gave a different commit log.
    Determinism,
    /// Evidence that blames an honest replica or does not prove anything.
    Evidence,
    /// The run could not be set up or a replica could not restart.
    Setup,
}

impl CheckerKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckerKind::Agreement => "agreement",
            CheckerKind::Integrity => "integrity",
            CheckerKind::Liveness => "liveness",
            CheckerKind::Determinism => "determinism",
            CheckerKind::Evidence => "evidence",
            CheckerKind::Setup => "setup",
        }
    }
}

impl fmt::Display for CheckerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken property, with what showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub checker: CheckerKind,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.checker, self.detail)
    }
}

/// Exact counts of values (virtual milliseconds), for percentiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: BTreeMap<u64, u64>,
    total: u64,
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        *self.counts.entry(value).or_default() += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (value, count) in &other.counts {
            *self.counts.entry(*value).or_default() += count;
        }
        self.total += other.total;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest value at or above fraction `q` of the samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (value, count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Some(*value);
            }
        }
        self.counts.keys().next_back().copied()
    }
}

/// Message counts for one kind of traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Copies put on links (one per recipient).
    pub messages: u64,
    pub bytes: u64,
}

/// Everything one run measured and found.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// Violations beyond those kept in `violations`, by checker.
    pub violation_counts: BTreeMap<CheckerKind, u64>,
    /// BLAKE3 over every replica's commit log (time, height, block).
    pub commit_log_hash: Hash,
    /// The highest height an honest replica committed.
    pub committed_height: u64,
    /// The highest view an honest replica reached.
    pub max_view: u64,
    pub traffic: BTreeMap<Origin, Traffic>,
    pub delivered: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    pub dropped_down: u64,
    pub duplicated: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub evidence: BTreeMap<&'static str, u64>,
    /// Proposal (block timestamp) to commit, per honest replica and block.
    pub commit_latency_ms: Histogram,
    /// After the last disruption, until the slowest honest replica that is
    /// up committed again (`None`: one never did).
    pub recovery_ms: Option<u64>,
    pub end_ms: u64,
    pub events: u64,
    /// Proof of work: blocks the replicas' miners found.
    pub mined: u64,
    /// Proof of work: reorganizations at honest replicas, and the deepest
    /// (blocks rolled back).
    pub reorgs: u64,
    pub max_reorg_depth: u64,
    /// Proof of work: the blocks of the longest chain at the end of the
    /// run (genesis excluded), by the miner (replica index) that found
    /// them: each miner's revenue.
    pub chain_blocks_by_miner: BTreeMap<u16, u64>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violation_counts.values().all(|c| *c == 0)
    }

    /// Violations per checker (all of them, not just those kept).
    pub fn count(&self, checker: CheckerKind) -> u64 {
        self.violation_counts.get(&checker).copied().unwrap_or(0)
    }
}

/// Totals over runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub runs: u64,
    pub failed_runs: u64,
    pub violations: BTreeMap<CheckerKind, u64>,
    /// Blocks committed (the highest honest height, summed over runs).
    pub committed_blocks: u64,
    /// The highest view any replica reached, summed over runs: about one
    /// per block for HotStuff, the number of view changes for PBFT.
    pub views: u64,
    pub views_per_commit: Option<f64>,
    pub traffic: BTreeMap<&'static str, Traffic>,
    pub messages_per_block: Option<f64>,
    pub bytes_per_block: Option<f64>,
    pub authored_messages_per_block: Option<f64>,
    pub commit_latency_ms_p50: Option<u64>,
    pub commit_latency_ms_p99: Option<u64>,
    pub commit_latency_ms_max: Option<u64>,
    /// From the last disruption until every honest replica that is up
    /// commits again, over runs that recovered.
    pub recovery_ms_p50: Option<u64>,
    pub recovery_ms_p99: Option<u64>,
    pub recovery_ms_max: Option<u64>,
    /// Runs in which some honest replica never committed after the last
    /// disruption.
    pub unrecovered_runs: u64,
    pub evidence: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    pub dropped_down: u64,
    pub duplicated: u64,
    pub delivered: u64,
    pub virtual_ms: u64,
    /// Proof of work: blocks mined, reorganizations at honest replicas and
    /// the deepest, and the stale rate: the share of mined blocks not on
    /// the best honest chain when the run ended.
    pub mined: u64,
    pub reorgs: u64,
    pub max_reorg_depth: u64,
    pub stale_rate: Option<f64>,
    /// Proof of work: blocks on the best honest chains, by miner.
    pub chain_blocks_by_miner: BTreeMap<u16, u64>,
    #[serde(skip)]
    latency: Histogram,
    #[serde(skip)]
    recovery: Histogram,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Summary {
    pub fn add(&mut self, run: &RunReport) {
        self.runs += 1;
        if !run.passed() {
            self.failed_runs += 1;
        }
        for (checker, count) in &run.violation_counts {
            *self.violations.entry(*checker).or_default() += count;
        }
        self.committed_blocks += run.committed_height;
        self.views += run.max_view;
        for (origin, t) in &run.traffic {
            let total = self.traffic.entry(origin.name()).or_default();
            total.messages += t.messages;
            total.bytes += t.bytes;
        }
        for (kind, count) in &run.evidence {
            *self.evidence.entry(kind).or_default() += count;
        }
        for (reason, count) in &run.rejected {
            *self.rejected.entry(reason).or_default() += count;
        }
        self.dropped_loss += run.dropped_loss;
        self.dropped_partition += run.dropped_partition;
        self.dropped_down += run.dropped_down;
        self.duplicated += run.duplicated;
        self.delivered += run.delivered;
        self.virtual_ms += run.end_ms;
        self.mined += run.mined;
        self.reorgs += run.reorgs;
        self.max_reorg_depth = self.max_reorg_depth.max(run.max_reorg_depth);
        for (miner, blocks) in &run.chain_blocks_by_miner {
            *self.chain_blocks_by_miner.entry(*miner).or_default() += blocks;
        }
        self.latency.merge(&run.commit_latency_ms);
        match run.recovery_ms {
            Some(ms) => self.recovery.record(ms),
            None => self.unrecovered_runs += 1,
        }
        self.derive();
    }

    fn derive(&mut self) {
        let messages: u64 = self.traffic.values().map(|t| t.messages).sum();
        let bytes: u64 = self.traffic.values().map(|t| t.bytes).sum();
        let authored = self
            .traffic
            .get(Origin::Authored.name())
            .map_or(0, |t| t.messages);
        self.messages_per_block = ratio(messages, self.committed_blocks);
        self.bytes_per_block = ratio(bytes, self.committed_blocks);
        self.authored_messages_per_block = ratio(authored, self.committed_blocks);
        self.views_per_commit = ratio(self.views, self.committed_blocks);
        // A proof-of-work replica's view is its best tip's height.
        self.stale_rate = ratio(self.mined.saturating_sub(self.views), self.mined);
        self.commit_latency_ms_p50 = self.latency.quantile(0.5);
        self.commit_latency_ms_p99 = self.latency.quantile(0.99);
        self.commit_latency_ms_max = self.latency.quantile(1.0);
        self.recovery_ms_p50 = self.recovery.quantile(0.5);
        self.recovery_ms_p99 = self.recovery.quantile(0.99);
        self.recovery_ms_max = self.recovery.quantile(1.0);
    }

    pub fn total_violations(&self) -> u64 {
        self.violations.values().sum()
    }
}

fn show(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn show_ms(x: Option<u64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

fn show_counts(counts: &BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "runs: {} ({} failed), {} virtual s",
            self.runs,
            self.failed_runs,
            self.virtual_ms / 1_000
        )?;
        let violations: Vec<String> = [
            CheckerKind::Agreement,
            CheckerKind::Integrity,
            CheckerKind::Liveness,
            CheckerKind::Determinism,
            CheckerKind::Evidence,
            CheckerKind::Setup,
        ]
        .iter()
        .map(|c| format!("{c} {}", self.violations.get(c).copied().unwrap_or(0)))
        .collect();
        writeln!(f, "violations: {}", violations.join(", "))?;
        if self.mined > 0 {
            writeln!(
                f,
                "commits: {} blocks final; best chains: {} blocks",
                self.committed_blocks, self.views
            )?;
        } else {
            writeln!(
                f,
                "commits: {} blocks; views: {} ({} per commit; HotStuff moves a view per block, \
                 PBFT only on a view change)",
                self.committed_blocks,
                self.views,
                show(self.views_per_commit)
            )?;
        }
        let per_kind: Vec<String> = self
            .traffic
            .iter()
            .map(|(k, t)| format!("{k} {}", t.messages))
            .collect();
        writeln!(
            f,
            "per committed block: {} messages ({} authored), {} bytes; messages sent: {}",
            show(self.messages_per_block),
            show(self.authored_messages_per_block),
            show(self.bytes_per_block),
            per_kind.join(", ")
        )?;
        let latency = if self.mined > 0 {
            "time to k confirmations (mined to final, virtual)"
        } else {
            "commit latency (proposal to commit, virtual)"
        };
        writeln!(
            f,
            "{latency}: p50 {}, p99 {}, max {}",
            show_ms(self.commit_latency_ms_p50),
            show_ms(self.commit_latency_ms_p99),
            show_ms(self.commit_latency_ms_max)
        )?;
        writeln!(
            f,
            "recovery (last disruption to every honest replica committing): p50 {}, p99 {}, max {}, never {}",
            show_ms(self.recovery_ms_p50),
            show_ms(self.recovery_ms_p99),
            show_ms(self.recovery_ms_max),
            self.unrecovered_runs
        )?;
        if self.mined > 0 {
            writeln!(
                f,
                "proof of work: {} blocks mined, stale rate {}, {} reorganizations at honest \
                 replicas, deepest {} blocks",
                self.mined,
                self.stale_rate
                    .map_or_else(|| "-".to_owned(), |r| format!("{:.2} %", r * 100.0)),
                self.reorgs,
                self.max_reorg_depth
            )?;
            let total: u64 = self.chain_blocks_by_miner.values().sum();
            let shares: Vec<String> = self
                .chain_blocks_by_miner
                .iter()
                .map(|(m, b)| format!("{m}: {:.1} %", *b as f64 * 100.0 / total.max(1) as f64))
                .collect();
            writeln!(
                f,
                "revenue (share of the best chain's blocks): {}",
                shares.join(", ")
            )?;
        }
        writeln!(f, "evidence: {}", show_counts(&self.evidence))?;
        writeln!(
            f,
            "network: {} delivered, {} lost, {} cut by partitions, {} to crashed replicas, {} duplicated; rejected: {}",
            self.delivered,
            self.dropped_loss,
            self.dropped_partition,
            self.dropped_down,
            self.duplicated,
            show_counts(&self.rejected)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(1.0), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        let mut other = Histogram::default();
        other.record(1_000);
        h.merge(&other);
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile(1.0), Some(1_000));
    }

    #[test]
    fn summary_adds_runs_and_derives_ratios() {
        let mut run = RunReport {
            committed_height: 10,
            max_view: 15,
            ..RunReport::default()
        };
        run.traffic.insert(
            Origin::Authored,
            Traffic {
                messages: 100,
                bytes: 10_000,
            },
        );
        run.commit_latency_ms.record(300);
        let mut failed = run.clone();
        failed.violation_counts.insert(CheckerKind::Agreement, 2);
        let mut s = Summary::default();
        s.add(&run);
        s.add(&failed);
        assert_eq!((s.runs, s.failed_runs), (2, 1));
        assert_eq!(s.total_violations(), 2);
        assert_eq!(s.messages_per_block, Some(10.0));
        assert_eq!(s.views_per_commit, Some(1.5));
        assert_eq!(s.commit_latency_ms_p50, Some(300));
        let text = s.to_string();
        assert!(text.contains("agreement 2"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["violations"]["agreement"], 2);
    }
}
