//! Prometheus metrics, served by `GET /metrics` in the OpenMetrics text
//! format (`application/openmetrics-text; version=1.0.0`), which Prometheus
//! reads natively.
//!
//! Every name starts with `phalanx_`. Messages are counted by channel and
//! kind, and sent messages also by origin: `authored` (this node created
//! it) or `forwarded` (a copy of another node's message, relayed), so a
//! protocol's own message complexity stays visible apart from the
//! forwarding that makes delivery robust (docs: DESIGN.md, step 4).
//!
//! Label values come from the node's own code and its protocol (channel
//! and kind names, drop reasons, route templates), never from a peer or a
//! client, so the number of series is bounded. They are snake_case: a
//! protocol's kebab-case names (`catch-up`, `not-a-member`) are written
//! with underscores (`catch_up`, `not_a_member`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::mempool::Mempool;
use crate::miner::MinerCounters;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    channel: String,
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SentLabels {
    channel: String,
    kind: String,
    /// `authored` or `forwarded`.
    origin: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    /// The route template (`/blocks/{height}`), or `unmatched`.
    route: String,
    status: u16,
}

/// The node's metrics. Every method takes `&self` and may be called from
/// any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    height: Gauge,
    finalized_height: Gauge,
    view: Gauge,
    view_timeout: Gauge,
    view_changes: Counter,
    /// One more than the view of the last counted view change (0: none),
    /// so that a view is counted once however long it stays abandoned.
    abandoned_view: AtomicU64,
    committed_txs: Counter,
    commit_latency: Histogram,
    mempool_txs: Gauge,
    mempool_bytes: Gauge,
    mempool_ready: Gauge,
    mempool_evicted: Counter,
    peers: Gauge,
    messages_in: Family<MessageLabels, Counter>,
    bytes_in: Family<MessageLabels, Counter>,
    messages_out: Family<SentLabels, Counter>,
    bytes_out: Family<SentLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    /// The network's own drops, by reason (cumulative, copied from it).
    network_dropped: Family<ReasonLabels, Counter>,
    bans: Counter,
    txs_gossiped: Counter,
    txs_regossiped: Counter,
    txs_gaps_filled: Counter,
    syncing: Gauge,
    sync_target: Gauge,
    http_requests: Family<HttpLabels, Counter>,
    mining: MinerCounters,
    hash_rate: Gauge,
    unchecked_drops: Gauge,
    reorgs: Counter,
    reorg_depth: Histogram,
    orphaned_blocks: Counter,
    returned_txs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A label value in snake_case (see the module docs).
fn label(name: &str) -> String {
    name.replace('-', "_")
}

/// A gauge value from a `u64` (saturating at `i64::MAX`).
fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn counter_value(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            height: Gauge::default(),
            finalized_height: Gauge::default(),
            view: Gauge::default(),
            view_timeout: Gauge::default(),
            view_changes: Counter::default(),
            abandoned_view: AtomicU64::new(0),
            committed_txs: Counter::default(),
            // 5 ms to about 82 s.
            commit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            mempool_ready: Gauge::default(),
            mempool_evicted: Counter::default(),
            peers: Gauge::default(),
            messages_in: Family::default(),
            bytes_in: Family::default(),
            messages_out: Family::default(),
            bytes_out: Family::default(),
            dropped: Family::default(),
            network_dropped: Family::default(),
            bans: Counter::default(),
            txs_gossiped: Counter::default(),
            txs_regossiped: Counter::default(),
            txs_gaps_filled: Counter::default(),
            syncing: Gauge::default(),
            sync_target: Gauge::default(),
            http_requests: Family::default(),
            mining: MinerCounters::default(),
            hash_rate: Gauge::default(),
            unchecked_drops: Gauge::default(),
            reorgs: Counter::default(),
            // 1 to 1,024 blocks (the most confirmations a chain may ask for).
            reorg_depth: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            orphaned_blocks: Counter::default(),
            returned_txs: Counter::default(),
        };
        let mut registry = Registry::with_prefix("phalanx");
        m.register_chain(&mut registry);
        m.register_network(&mut registry);
        m.register_proof_of_work(&mut registry);
        Metrics { registry, ..m }
    }

    fn register_chain(&self, r: &mut Registry) {
        r.register(
            "height",
            "Height of the last committed block",
            self.height.clone(),
        );
        r.register(
            "finalized_height",
            "Height of the highest final block",
            self.finalized_height.clone(),
        );
        r.register("view", "Current consensus view", self.view.clone());
        r.register(
            "view_timeout_milliseconds",
            "The current view's timer length: the base timeout, or longer while rounds are \
             slow (timeout_factor times the longest recent gap) or views fail (back-off)",
            self.view_timeout.clone(),
        );
        r.register(
            "view_changes",
            "Views this node gave up on: its view timed out (HotStuff) or it began a view \
             change (PBFT); each view counted once",
            self.view_changes.clone(),
        );
        r.register(
            "committed_txs",
            "Transactions in committed blocks",
            self.committed_txs.clone(),
        );
        r.register_with_unit(
            "commit_latency",
            "Time from a block's proposal timestamp to its commit on this node",
            Unit::Seconds,
            self.commit_latency.clone(),
        );
        r.register(
            "mempool_txs",
            "Pending transactions",
            self.mempool_txs.clone(),
        );
        r.register_with_unit(
            "mempool",
            "Encoded size of pending transactions",
            Unit::Bytes,
            self.mempool_bytes.clone(),
        );
        r.register(
            "mempool_ready_txs",
            "Pending transactions a block on the committed state could take (each sender's \
             consecutive nonces from its committed nonce)",
            self.mempool_ready.clone(),
        );
        r.register(
            "mempool_evicted",
            "Pending transactions above a nonce gap evicted from a full pool to make room for \
             ones a block could take",
            self.mempool_evicted.clone(),
        );
        r.register(
            "syncing",
            "1 while fetching committed blocks from peers",
            self.syncing.clone(),
        );
        r.register(
            "sync_target_height",
            "Highest committed height a peer has shown while syncing (0 when not syncing)",
            self.sync_target.clone(),
        );
    }

    fn register_network(&self, r: &mut Registry) {
        r.register("peers", "Connected peers", self.peers.clone());
        r.register(
            "messages_received",
            "Network messages received, by channel and kind",
            self.messages_in.clone(),
        );
        r.register_with_unit(
            "messages_received",
            "Network bytes received, by channel and kind",
            Unit::Bytes,
            self.bytes_in.clone(),
        );
        r.register(
            "messages_sent",
            "Network messages sent, by channel, kind and origin (authored or forwarded)",
            self.messages_out.clone(),
        );
        r.register_with_unit(
            "messages_sent",
            "Network bytes sent, by channel, kind and origin (authored or forwarded)",
            Unit::Bytes,
            self.bytes_out.clone(),
        );
        r.register(
            "dropped",
            "Messages or transactions dropped, by reason",
            self.dropped.clone(),
        );
        r.register(
            "network_dropped",
            "Messages the network layer dropped, by reason: inbound_full (the node's inbound \
             queue was full), oversize, unjudged (gossip not judged in time, not relayed), \
             blocked (a banned or blocked peer), outbound (reached no peer)",
            self.network_dropped.clone(),
        );
        r.register("bans", "Peers banned for misbehaviour", self.bans.clone());
        r.register(
            "txs_gossiped",
            "Transactions this node admitted and gossiped (in batches)",
            self.txs_gossiped.clone(),
        );
        r.register(
            "txs_regossiped",
            "Ready transactions gossiped again because they waited long in the pool",
            self.txs_regossiped.clone(),
        );
        r.register(
            "txs_gaps_filled",
            "Transactions sent to a peer that asked for the nonces missing in its pool",
            self.txs_gaps_filled.clone(),
        );
        r.register(
            "http_requests",
            "HTTP API requests, by route and status",
            self.http_requests.clone(),
        );
    }

    fn register_proof_of_work(&self, r: &mut Registry) {
        r.register(
            "mining_hashes",
            "Proof-of-work hashes tried by this node's miner",
            self.mining.hashes.clone(),
        );
        r.register(
            "mined_blocks",
            "Blocks this node's miner found",
            self.mining.blocks.clone(),
        );
        r.register(
            "mining_hash_rate",
            "Hashes per second of this node's miner, over the last status interval",
            self.hash_rate.clone(),
        );
        r.register(
            "blocks_dropped_unchecked",
            "Blocks consensus dropped without a verdict, for a reason of this node (the \
             parent's state unavailable here, a timestamp ahead of this node's clock); a \
             peer must send them again. Proof of work only; it should stay near 0",
            self.unchecked_drops.clone(),
        );
        r.register(
            "reorgs",
            "Reorganizations: the chain rolled back to an ancestor of its head",
            self.reorgs.clone(),
        );
        r.register(
            "reorg_depth",
            "Blocks taken off the chain by each reorganization",
            self.reorg_depth.clone(),
        );
        r.register(
            "orphaned_blocks",
            "Blocks taken off the chain by reorganizations",
            self.orphaned_blocks.clone(),
        );
        r.register(
            "reorg_returned_txs",
            "Transactions of orphaned blocks admitted back to the mempool",
            self.returned_txs.clone(),
        );
    }

    /// The miner's counters (shared handles: what the miner counts shows
    /// in the metrics).
    pub fn miner_counters(&self) -> MinerCounters {
        self.mining.clone()
    }

    pub fn set_hash_rate(&self, hashes_per_second: u64) {
        self.hash_rate.set(gauge_value(hashes_per_second));
    }

    pub fn set_unchecked_drops(&self, blocks: u64) {
        self.unchecked_drops.set(gauge_value(blocks));
    }

    /// A reorganization that took `depth` blocks off the chain and put
    /// `returned` of their transactions back in the mempool.
    pub fn reorg(&self, depth: usize, returned: usize) {
        self.reorgs.inc();
        self.reorg_depth.observe(depth as f64);
        self.orphaned_blocks.inc_by(counter_value(depth));
        self.returned_txs.inc_by(counter_value(returned));
    }

    pub fn set_height(&self, height: u64) {
        self.height.set(gauge_value(height));
    }

    pub fn set_finalized_height(&self, height: u64) {
        self.finalized_height.set(gauge_value(height));
    }

    /// The current view's timer length (0 without a BFT protocol).
    pub fn set_view_timeout(&self, ms: u64) {
        self.view_timeout.set(gauge_value(ms));
    }

    pub fn set_view(&self, view: u64) {
        self.view.set(gauge_value(view));
    }

    /// The protocol's view and phase after an input: a phase other than
    /// `normal` (`timed-out`, `view-change`) in a view not counted yet is
    /// a view change.
    pub fn observe_phase(&self, view: u64, phase: &str) {
        if phase == "normal" {
            return;
        }
        let key = view.saturating_add(1);
        if self.abandoned_view.swap(key, Ordering::Relaxed) != key {
            self.view_changes.inc();
        }
    }

    pub fn add_committed_txs(&self, count: u64) {
        self.committed_txs.inc_by(count);
    }

    /// From the proposal's timestamp to the commit, in seconds (negative or
    /// non-finite values, from clock skew, are recorded as 0).
    pub fn observe_commit_latency(&self, seconds: f64) {
        let seconds = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        self.commit_latency.observe(seconds);
    }

    /// The pool's size, ready count and evictions so far.
    pub fn set_mempool(&self, pool: &Mempool) {
        self.mempool_txs.set(gauge_value(counter_value(pool.len())));
        self.mempool_bytes
            .set(gauge_value(counter_value(pool.bytes())));
        self.mempool_ready
            .set(gauge_value(counter_value(pool.ready())));
        let evicted = pool.evicted();
        let counted = self.mempool_evicted.get();
        if evicted > counted {
            self.mempool_evicted.inc_by(evicted - counted);
        }
    }

    pub fn set_peers(&self, connected: usize) {
        self.peers.set(gauge_value(counter_value(connected)));
    }

    /// Copies the network's cumulative counters.
    pub fn set_network(&self, stats: &crate::net::p2p::NetStats) {
        for (reason, value) in [
            ("inbound_full", stats.dropped_inbound_full),
            ("oversize", stats.dropped_oversize),
            ("unjudged", stats.unjudged),
            ("blocked", stats.dropped_blocked),
            ("outbound", stats.dropped_outbound),
        ] {
            let labels = ReasonLabels {
                reason: reason.to_owned(),
            };
            self.network_dropped
                .get_or_create(&labels)
                .inner()
                .store(value, Ordering::Relaxed);
        }
        self.bans.inner().store(stats.bans, Ordering::Relaxed);
    }

    /// A message of `bytes` received on `channel`, of kind `kind`.
    pub fn message_in(&self, channel: &str, kind: &str, bytes: usize) {
        let labels = MessageLabels {
            channel: label(channel),
            kind: label(kind),
        };
        self.messages_in.get_or_create(&labels).inc();
        self.bytes_in
            .get_or_create(&labels)
            .inc_by(counter_value(bytes));
    }

    /// A message of `bytes` sent on `channel`: one this node authored, or a
    /// forwarded copy of another's.
    pub fn message_out(&self, channel: &str, kind: &str, bytes: usize, forwarded: bool) {
        let labels = SentLabels {
            channel: label(channel),
            kind: label(kind),
            origin: if forwarded { "forwarded" } else { "authored" },
        };
        self.messages_out.get_or_create(&labels).inc();
        self.bytes_out
            .get_or_create(&labels)
            .inc_by(counter_value(bytes));
    }

    /// `count` ready transactions were queued to be gossiped again.
    pub fn txs_regossiped(&self, count: usize) {
        self.txs_regossiped.inc_by(counter_value(count));
    }

    /// `count` transactions went to a peer to fill the gaps it asked for.
    pub fn txs_gaps_filled(&self, count: usize) {
        self.txs_gaps_filled.inc_by(counter_value(count));
    }

    /// `count` admitted transactions went out in one gossiped batch.
    pub fn txs_gossiped(&self, count: usize) {
        self.txs_gossiped.inc_by(counter_value(count));
    }

    /// Something was dropped (a malformed message, a full queue, ...).
    pub fn dropped(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: label(reason),
        };
        self.dropped.get_or_create(&labels).inc();
    }

    pub fn set_sync(&self, target: Option<u64>, syncing: bool) {
        self.syncing.set(i64::from(syncing));
        self.sync_target.set(target.map(gauge_value).unwrap_or(0));
    }

    /// An HTTP request answered with `status` on `route` (a route
    /// template, or `unmatched`).
    pub fn http_request(&self, route: &str, status: u16) {
        let labels = HttpLabels {
            route: route.to_owned(),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
    }

    /// All metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; a metric's encoder could.
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.set_height(7);
        m.set_finalized_height(6);
        m.set_view(9);
        m.observe_phase(9, "normal");
        m.observe_phase(9, "timed-out");
        m.observe_phase(9, "timed-out");
        m.observe_phase(10, "view-change");
        m.add_committed_txs(3);
        m.observe_commit_latency(0.25);
        m.observe_commit_latency(-1.0);
        let chain = phalanx_chain::ChainId::new("metrics-test").unwrap();
        let mut pool = Mempool::new(crate::mempool::MempoolConfig::default(), chain.clone());
        let key = phalanx_crypto::Keypair::from_seed(&[5; 32]);
        let accounts = std::collections::BTreeMap::from([(
            phalanx_chain::Address::from(key.public()),
            phalanx_chain::Account {
                balance: phalanx_chain::Amount(1_000),
                nonce: phalanx_chain::Nonce(0),
            },
        )]);
        for nonce in [0, 1, 3] {
            let tx = phalanx_chain::Transaction::sign(
                &key,
                chain.clone(),
                phalanx_chain::Address([7; 32]),
                phalanx_chain::Amount(1),
                phalanx_chain::Amount(1),
                phalanx_chain::Nonce(nonce),
            );
            pool.admit(tx, &accounts).unwrap();
        }
        m.set_mempool(&pool);
        m.txs_regossiped(2);
        m.set_peers(3);
        m.message_in("consensus", "vote", 120);
        m.message_out("consensus", "vote", 120, false);
        m.message_out("consensus", "vote", 120, true);
        m.message_out("consensus", "vote", 100, true);
        m.dropped("malformed");
        m.dropped("not-a-member");
        m.message_out("sync", "catch-up", 10, false);
        m.set_sync(Some(12), true);
        m.http_request("/status", 200);
        m.miner_counters().hashes.inc_by(5_000);
        m.miner_counters().blocks.inc();
        m.set_hash_rate(2_500);
        m.reorg(2, 3);
        m.reorg(1, 0);
        m.set_network(&crate::net::p2p::NetStats {
            dropped_inbound_full: 4,
            unjudged: 2,
            bans: 1,
            ..Default::default()
        });
        let text = m.render();
        for line in [
            "phalanx_height 7",
            "phalanx_finalized_height 6",
            "phalanx_view 9",
            "phalanx_view_changes_total 2",
            "phalanx_committed_txs_total 3",
            "phalanx_commit_latency_seconds_count 2",
            "phalanx_mempool_txs 3",
            &format!("phalanx_mempool_bytes {}", pool.bytes()),
            "phalanx_mempool_ready_txs 2",
            "phalanx_mempool_evicted_total 0",
            "phalanx_txs_regossiped_total 2",
            "phalanx_peers 3",
            "phalanx_messages_received_total{channel=\"consensus\",kind=\"vote\"} 1",
            "phalanx_messages_received_bytes_total{channel=\"consensus\",kind=\"vote\"} 120",
            "phalanx_messages_sent_total{channel=\"consensus\",kind=\"vote\",origin=\"authored\"} 1",
            "phalanx_messages_sent_total{channel=\"consensus\",kind=\"vote\",origin=\"forwarded\"} 2",
            "phalanx_messages_sent_bytes_total{channel=\"consensus\",kind=\"vote\",origin=\"forwarded\"} 220",
            "phalanx_dropped_total{reason=\"malformed\"} 1",
            "phalanx_dropped_total{reason=\"not_a_member\"} 1",
            "phalanx_messages_sent_total{channel=\"sync\",kind=\"catch_up\",origin=\"authored\"} 1",
            "phalanx_syncing 1",
            "phalanx_sync_target_height 12",
            "phalanx_http_requests_total{route=\"/status\",status=\"200\"} 1",
            "phalanx_mining_hashes_total 5000",
            "phalanx_mined_blocks_total 1",
            "phalanx_mining_hash_rate 2500",
            "phalanx_reorgs_total 2",
            "phalanx_reorg_depth_count 2",
            "phalanx_reorg_depth_sum 3.0",
            "phalanx_reorg_depth_bucket{le=\"1.0\"} 1",
            "phalanx_reorg_depth_bucket{le=\"2.0\"} 2",
            "phalanx_orphaned_blocks_total 3",
            "phalanx_reorg_returned_txs_total 3",
            "phalanx_network_dropped_total{reason=\"inbound_full\"} 4",
            "phalanx_network_dropped_total{reason=\"unjudged\"} 2",
            "phalanx_network_dropped_total{reason=\"oversize\"} 0",
            "phalanx_bans_total 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.set_sync(None, false);
        assert!(
            m.render()
                .lines()
                .any(|l| l == "phalanx_sync_target_height 0")
        );
    }

    #[test]
    fn metrics_are_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
        let m = std::sync::Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.add_committed_txs(1);
                        m.dropped("x");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render();
        assert!(text.contains("phalanx_committed_txs_total 400"), "{text}");
        assert!(
            text.contains("phalanx_dropped_total{reason=\"x\"} 400"),
            "{text}"
        );
    }
}
