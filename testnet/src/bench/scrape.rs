//! The figures `bench` reads from a node's `GET /metrics` (OpenMetrics
//! text, docs/API.md): its heights, committed transactions, view and view
//! changes, and messages and bytes sent per channel, authored apart from
//! forwarded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Messages and bytes one node sent on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Sent {
    pub messages_authored: u64,
    pub messages_forwarded: u64,
    pub bytes_authored: u64,
    pub bytes_forwarded: u64,
}

impl Sent {
    /// `self - before`, counter by counter (0 where a counter went down,
    /// as it does when a node restarts).
    pub fn since(&self, before: &Sent) -> Sent {
        Sent {
            messages_authored: self
                .messages_authored
                .saturating_sub(before.messages_authored),
            messages_forwarded: self
                .messages_forwarded
                .saturating_sub(before.messages_forwarded),
            bytes_authored: self.bytes_authored.saturating_sub(before.bytes_authored),
            bytes_forwarded: self.bytes_forwarded.saturating_sub(before.bytes_forwarded),
        }
    }

    pub fn add(&mut self, other: &Sent) {
        self.messages_authored += other.messages_authored;
        self.messages_forwarded += other.messages_forwarded;
        self.bytes_authored += other.bytes_authored;
        self.bytes_forwarded += other.bytes_forwarded;
    }
}

/// One reading of a node's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scrape {
    pub height: u64,
    pub finalized_height: u64,
    pub committed_txs: u64,
    pub view: u64,
    /// `None` from a node without the counter.
    pub view_changes: Option<u64>,
    /// Per channel (`consensus`, `transactions`, `sync`).
    pub sent: BTreeMap<String, Sent>,
    /// `phalanx_dropped_total` by reason.
    pub dropped: BTreeMap<String, u64>,
    /// `phalanx_mempool_evicted_total`.
    pub evicted: u64,
    /// `phalanx_txs_regossiped_total`.
    pub regossiped: u64,
    /// Proof of work (`None` from a node without the counter):
    /// `phalanx_mined_blocks_total`, `phalanx_reorgs_total`,
    /// `phalanx_orphaned_blocks_total`, `phalanx_reorg_returned_txs_total`.
    pub mined_blocks: Option<u64>,
    pub reorgs: Option<u64>,
    pub orphaned_blocks: Option<u64>,
    pub reorg_returned_txs: Option<u64>,
}

/// A sample line's name, labels and value.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// A sample line: `name{label="value",...} number`.
fn sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            let labels = inner
                .split(',')
                .filter(|l| !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    Some((k.trim(), v.trim().strip_prefix('"')?.strip_suffix('"')?))
                })
                .collect();
            (name, labels)
        }
        None => (series, Vec::new()),
    };
    Some((name, labels, value))
}

fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

impl Scrape {
    /// Reads the text of `GET /metrics`; lines it does not know are passed
    /// over.
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for (name, labels, value) in text.lines().filter_map(sample) {
            let label = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            let v = whole(value);
            match name {
                "phalanx_height" => s.height = v,
                "phalanx_finalized_height" => s.finalized_height = v,
                "phalanx_committed_txs_total" => s.committed_txs = v,
                "phalanx_view" => s.view = v,
                "phalanx_view_changes_total" => s.view_changes = Some(v),
                "phalanx_mempool_evicted_total" => s.evicted = v,
                "phalanx_txs_regossiped_total" => s.regossiped = v,
                "phalanx_mined_blocks_total" => s.mined_blocks = Some(v),
                "phalanx_reorgs_total" => s.reorgs = Some(v),
                "phalanx_orphaned_blocks_total" => s.orphaned_blocks = Some(v),
                "phalanx_reorg_returned_txs_total" => s.reorg_returned_txs = Some(v),
                "phalanx_dropped_total" => {
                    if let Some(reason) = label("reason") {
                        *s.dropped.entry(reason.to_owned()).or_default() += v;
                    }
                }
                "phalanx_messages_sent_total" | "phalanx_messages_sent_bytes_total" => {
                    let (Some(channel), Some(origin)) = (label("channel"), label("origin")) else {
                        continue;
                    };
                    let sent = s.sent.entry(channel.to_owned()).or_default();
                    let field = match (name.contains("bytes"), origin) {
                        (false, "authored") => &mut sent.messages_authored,
                        (false, _) => &mut sent.messages_forwarded,
                        (true, "authored") => &mut sent.bytes_authored,
                        (true, _) => &mut sent.bytes_forwarded,
                    };
                    *field += v;
                }
                _ => {}
            }
        }
        s
    }

    /// Every channel together.
    pub fn sent_total(&self) -> Sent {
        let mut total = Sent::default();
        for sent in self.sent.values() {
            total.add(sent);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP phalanx_height Height of the last committed block.
# TYPE phalanx_height gauge
phalanx_height 42
phalanx_finalized_height 42
phalanx_view 45
phalanx_view_changes_total 2
phalanx_committed_txs_total 1000
phalanx_messages_sent_total{channel=\"consensus\",kind=\"vote\",origin=\"authored\"} 40
phalanx_messages_sent_total{channel=\"consensus\",kind=\"proposal\",origin=\"authored\"} 10
phalanx_messages_sent_total{channel=\"consensus\",kind=\"vote\",origin=\"forwarded\"} 120
phalanx_messages_sent_bytes_total{channel=\"consensus\",kind=\"vote\",origin=\"authored\"} 4000
phalanx_messages_sent_bytes_total{channel=\"consensus\",kind=\"vote\",origin=\"forwarded\"} 12000
phalanx_messages_sent_total{channel=\"transactions\",kind=\"transaction\",origin=\"authored\"} 500
phalanx_http_requests_total{route=\"/status\",status=\"200\"} 3
phalanx_dropped_total{reason=\"outbound_full\"} 4
phalanx_mempool_evicted_total 7
phalanx_txs_regossiped_total 9
phalanx_mined_blocks_total 12
phalanx_reorgs_total 2
phalanx_orphaned_blocks_total 3
phalanx_reorg_returned_txs_total 40
phalanx_commit_latency_seconds_bucket{le=\"0.005\"} 1
garbage line
# EOF
";

    #[test]
    fn metrics_text_gives_the_figures() {
        let s = Scrape::parse(TEXT);
        assert_eq!((s.height, s.finalized_height, s.view), (42, 42, 45));
        assert_eq!(s.view_changes, Some(2));
        assert_eq!(s.committed_txs, 1_000);
        assert_eq!(
            s.sent["consensus"],
            Sent {
                messages_authored: 50,
                messages_forwarded: 120,
                bytes_authored: 4_000,
                bytes_forwarded: 12_000,
            }
        );
        assert_eq!(s.sent["transactions"].messages_authored, 500);
        assert_eq!(s.dropped["outbound_full"], 4);
        assert_eq!(
            (
                s.mined_blocks,
                s.reorgs,
                s.orphaned_blocks,
                s.reorg_returned_txs
            ),
            (Some(12), Some(2), Some(3), Some(40))
        );
        assert_eq!(Scrape::parse("phalanx_height 1").mined_blocks, None);
        assert_eq!((s.evicted, s.regossiped), (7, 9));
        assert_eq!(s.sent_total().messages_authored, 550);
        let later = Sent {
            messages_authored: 60,
            ..s.sent["consensus"]
        };
        assert_eq!(later.since(&s.sent["consensus"]).messages_authored, 10);
        assert_eq!(s.sent["consensus"].since(&later).messages_authored, 0);
        assert_eq!(Scrape::parse("").view_changes, None);
    }
}
