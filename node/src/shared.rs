//! What the node's tasks share: the store, the mempool, live status, the
//! block event stream, metrics and the network. The driver writes; the HTTP
//! API reads (and submits transactions to the mempool).

use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::miner::MinerControl;
use crate::net::Gossip;
use crate::txgossip::TxGossip;
use phalanx_chain::{
    Address, ChainId, ConsensusKind, Genesis, Hash, Height, Store, ValidatorIndex, VerifiedTxs,
};
use phalanx_consensus::ChainTip;
use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, broadcast};

/// Events kept for slow subscribers of `GET /events`; one that falls
/// further behind misses events (and is told so).
pub const EVENT_BUFFER: usize = 1_024;
/// Chain tips `GET /status` shows at most (the best ones).
pub const MAX_STATUS_TIPS: usize = 16;

/// What happened to the chain, as `GET /events` sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A block was appended.
    Block(BlockEvent),
    /// Proof of work: the chain was rolled back to an ancestor of its
    /// head; the new branch's blocks follow as [`NodeEvent::Block`]s.
    Reorg(ReorgEvent),
    /// Proof of work: blocks up to this height are final (on BFT chains
    /// every block is final as it is appended, and this is not sent).
    Finalized(FinalizedEvent),
}

impl From<BlockEvent> for NodeEvent {
    fn from(event: BlockEvent) -> Self {
        NodeEvent::Block(event)
    }
}

impl From<ReorgEvent> for NodeEvent {
    fn from(event: ReorgEvent) -> Self {
        NodeEvent::Reorg(event)
    }
}

impl From<FinalizedEvent> for NodeEvent {
    fn from(event: FinalizedEvent) -> Self {
        NodeEvent::Finalized(event)
    }
}

/// A block the node just committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockEvent {
    pub height: Height,
    pub hash: Hash,
    pub tx_count: usize,
    /// The block's own timestamp (ms since the Unix epoch).
    pub timestamp_ms: u64,
}

/// A reorganization: the chain was rolled back to the block
/// `ancestor_hash` at `ancestor_height`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReorgEvent {
    pub ancestor_height: Height,
    pub ancestor_hash: Hash,
    /// The blocks taken off, highest first (at most the chain's
    /// confirmations: nothing final is reverted).
    pub reverted: Vec<Hash>,
}

/// The finalized height rose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalizedEvent {
    pub height: Height,
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
    /// The current view's timer length in milliseconds (BFT protocols:
    /// the base, or longer while rounds are slow or views fail).
    pub view_timeout_ms: Option<u64>,
    /// True while the node is fetching committed blocks from peers.
    pub syncing: bool,
    /// The highest committed height a peer has shown us, if above ours.
    pub sync_target: Option<Height>,
    /// Why consensus halted (a local fault: the node serves what it has
    /// but takes no further part); `None` while it runs.
    pub halted: Option<String>,
    /// The miner, if this node mines.
    pub mining: Option<MiningStatus>,
    /// Proof of work: the tips of the chains the protocol knows, best
    /// first, at most [`MAX_STATUS_TIPS`]; empty for BFT protocols.
    #[serde(skip)]
    pub tips: Vec<ChainTip>,
}

/// A mining node's miner, as `GET /status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MiningStatus {
    /// The address its blocks pay.
    pub address: Address,
    pub threads: usize,
    /// Hashes per second, at most (0: none).
    pub hashrate_limit: u64,
    /// Hashes per second, measured over the last status interval.
    pub hash_rate: u64,
    /// True while it has a block to mine.
    pub working: bool,
    /// Where `POST /mine` asks for blocks on demand (and `GET /status`
    /// reads how many are left).
    #[serde(skip)]
    pub control: MinerControl,
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
    /// Transactions whose signatures this node has verified: admission
    /// records them, block building and validation skip their signatures.
    pub verified: Arc<VerifiedTxs>,
    pub status: RwLock<LiveStatus>,
    pub events: broadcast::Sender<NodeEvent>,
    pub metrics: Metrics,
    pub net: Arc<dyn Gossip>,
    /// Where admitted transactions are queued to be gossiped in batches.
    pub tx_gossip: TxGossip,
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
