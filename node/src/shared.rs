//! What the node's tasks share: the store, the mempool, live status, the
//! block event stream, metrics and the network. The driver writes; the HTTP
//! API reads (and submits transactions to the mempool).

use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::net::Gossip;
use phalanx_chain::{ChainId, ConsensusKind, Genesis, Hash, Height, Store, ValidatorIndex};
use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, broadcast};

/// Block events kept for slow subscribers of `GET /events`; one that falls
/// further behind misses events (and is told so).
pub const EVENT_BUFFER: usize = 1_024;

/// A block the node just committed, as `GET /events` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockEvent {
    pub height: Height,
    pub hash: Hash,
    pub tx_count: usize,
    /// The block's own timestamp (ms since the Unix epoch).
    pub timestamp_ms: u64,
}

/// What only the driver knows, refreshed as it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveStatus {
    /// The consensus view the node is in.
    pub view: u64,
    /// What the protocol is doing in that view (`normal`, `timed-out`,
    /// ...); `None` when the node runs no protocol instance (it is not a
    /// validator).
    pub phase: Option<&'static str>,
    /// True while the node is fetching committed blocks from peers.
    pub syncing: bool,
    /// The highest committed height a peer has shown us, if above ours.
    pub sync_target: Option<Height>,
}

/// Everything the node's tasks share (behind an `Arc`).
pub struct NodeState {
    pub genesis: Genesis,
    pub chain_id: ChainId,
    pub consensus: ConsensusKind,
    /// This node's index in the committee, if it is a validator.
    pub validator: Option<ValidatorIndex>,
    /// Committed blocks, accounts and the transaction index.
    pub store: Arc<dyn Store>,
    pub mempool: Mutex<Mempool>,
    pub status: RwLock<LiveStatus>,
    pub events: broadcast::Sender<BlockEvent>,
    pub metrics: Metrics,
    pub net: Arc<dyn Gossip>,
    /// Woken when new transactions reach the mempool, so a leader waiting
    /// for a batch can propose.
    pub txs_available: Arc<Notify>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("chain_id", &self.chain_id)
            .field("validator", &self.validator)
            .finish_non_exhaustive()
    }
}

impl NodeState {
    /// A copy of the live status (a poisoned lock yields the default).
    pub fn live(&self) -> LiveStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }
}
