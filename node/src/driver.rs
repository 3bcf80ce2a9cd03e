//! The driver: runs the HotStuff state machine on one task and carries out
//! its effects in order, and keeps the node in step with its peers (block
//! sync).
//!
//! # Effects
//! - `PersistSafety`: written to sled and flushed *before* the next effect,
//!   so a message that depends on it never leaves before it is durable.
//! - `Send`/`Broadcast`/`SendSync`: handed to the network (bounded queues;
//!   a full queue drops the message and counts it, the protocol's re-sends
//!   and timeouts recover).
//! - `Commit`: the block is executed (or its validated state reused),
//!   stored with its state changes in one atomic batch and flushed; its
//!   transactions leave the mempool; subscribers get a [`BlockEvent`].
//! - `ArmTimer`/`CancelTimer`: kept in a map (bounded) and fired from the
//!   task's loop.
//! - `Evidence`: logged and counted.
//!
//! # Inbound
//! Consensus bytes are deduplicated (a bounded cache of content hashes),
//! then verified by `verify_message` (size, decoding, committee membership,
//! signature, embedded certificates) before the replica sees them; a peer
//! that sends invalid ones is reported to the network. Transactions go to
//! the ingest task ([`crate::ingest`]), which verifies them in batches and
//! admits them to the mempool.
//!
//! # Block sync
//! Every `sync.status_interval_ms` the node asks a peer for its committed
//! height. If a peer is more than [`SYNC_LAG`] blocks ahead, the node stops
//! feeding consensus and fetches committed blocks by height, in batches.
//! Every block must link to the previous one and carry a quorum
//! certificate over its parent that verifies against the committee; a
//! block is applied only once it is *proved* committed, by a three-chain
//! in the fetched blocks (it and its next two blocks in consecutive views,
//! and a fourth block carrying the QC of the third), the rule the replica
//! itself commits by. The few blocks at the tip that no fetched three-chain
//! covers are left to the replica's own catch-up. When a batch proves
//! nothing new the node restarts its replica on the new head (with its
//! persisted safety data) and rejoins consensus.

use crate::ledger::NodeLedger;
use crate::net::{Channel, Gossip, Inbound, Misbehaviour};
use crate::shared::{BlockEvent, NodeState};
use phalanx_chain::encoding;
use phalanx_chain::{Block, Hash, Height, ValidatorIndex};
use phalanx_consensus::hotstuff::{
    Config as ReplicaConfig, Effect, Input, MAX_MESSAGE_BYTES, MessageError, Payload, Replica,
    SafetyData, SyncMessage, Timer, block_view, decode_sync, parent_cert, verify_message,
    verify_qc,
};
use phalanx_consensus::{Committee, View};
use phalanx_crypto::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// The store key of the replica's safety data.
pub const SAFETY_KEY: &[u8] = b"hotstuff/safety";
/// Safety data: two certificates and two messages, each within a message.
const MAX_SAFETY_BYTES: usize = 4 * MAX_MESSAGE_BYTES;
/// Most blocks one sync request may ask for.
pub const MAX_SYNC_BATCH: u32 = 256;
/// A peer this many blocks ahead makes the node sync instead of relying on
/// the replica's catch-up.
pub const SYNC_LAG: u64 = 8;
/// Content hashes of consensus messages remembered, to process each once.
const DEDUP_ENTRIES: usize = 32_768;
/// Pending timers, at most (old views' timers are dropped first).
const MAX_TIMERS: usize = 4_096;
/// Bytes of blocks in one sync response, at most (under a network message).
const MAX_SYNC_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Milliseconds since the Unix epoch (the protocol's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Node-level sync messages (committed blocks by height).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeSync {
    /// What is your committed height?
    StatusRequest,
    Status {
        height: Height,
    },
    /// Committed blocks from `from`, at most `count`.
    BlocksRequest {
        from: Height,
        count: u32,
    },
    Blocks {
        #[serde(deserialize_with = "encoding::bounded_vec::<_, _, 256>")]
        blocks: Vec<Block>,
    },
}

/// The first byte of a [`Channel::Sync`] message.
const SYNC_TAG_REPLICA: u8 = 0;
const SYNC_TAG_NODE: u8 = 1;

fn encode_sync(tag: u8, body: Vec<u8>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 1);
    bytes.push(tag);
    bytes.extend_from_slice(&body);
    bytes
}

/// How the driver is set up.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub replica: ReplicaConfig,
    pub batch_size: usize,
    pub sync_batch: u32,
    pub sync_timeout: Duration,
    pub status_interval: Duration,
}

/// What the driver is doing about sync.
#[derive(Debug, Default)]
struct SyncState {
    /// Fetching blocks from this peer, until this deadline.
    fetching: Option<(PublicKey, Instant)>,
    /// The highest committed height a peer reported.
    best_seen: Height,
    /// Round-robin cursor over peers to ask for status.
    next_peer: usize,
}

/// The consensus task.
pub struct Driver {
    state: Arc<NodeState>,
    committee: Committee,
    key: Keypair,
    config: DriverConfig,
    me: Option<ValidatorIndex>,
    replica: Option<Replica>,
    ledger: NodeLedger,
    timers: BTreeMap<Timer, u64>,
    seen: HashSet<Hash>,
    seen_order: VecDeque<Hash>,
    sync: SyncState,
    ingest: mpsc::Sender<(PublicKey, Vec<u8>)>,
    halted: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("store: {0}")]
    Store(#[from] phalanx_chain::StoreError),
    #[error("stored safety data does not decode: {0}")]
    Safety(String),
    #[error("the store has no head block")]
    NoHead,
}

impl Driver {
    /// A driver for the node keyed `key` (a validator if the committee
    /// holds the key). `ingest` is where it hands inbound transactions.
    pub fn new(
        state: Arc<NodeState>,
        committee: Committee,
        key: Keypair,
        config: DriverConfig,
        ingest: mpsc::Sender<(PublicKey, Vec<u8>)>,
    ) -> Driver {
        let me = committee.index_of(&key.public());
        let ledger = NodeLedger::new(Arc::clone(&state), config.batch_size);
        Driver {
            state,
            committee,
            key,
            config,
            me,
            replica: None,
            ledger,
            timers: BTreeMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            sync: SyncState::default(),
            ingest,
            halted: false,
        }
    }

    fn net(&self) -> &dyn Gossip {
        &*self.state.net
    }

    fn head_block(&self) -> Result<Block, DriverError> {
        let head = self.state.store.head()?.ok_or(DriverError::NoHead)?;
        self.state
            .store
            .block(&head.hash)?
            .ok_or(DriverError::NoHead)
    }

    /// (Re)starts the replica on the store's head with the persisted
    /// safety data.
    fn start_replica(&mut self) -> Result<(), DriverError> {
        let Some(me) = self.me else {
            return Ok(());
        };
        let head = self.head_block()?;
        let recovered = match self.state.store.safety_data(SAFETY_KEY)? {
            Some(bytes) => Some(Box::new(
                encoding::decode::<SafetyData>(&bytes, MAX_SAFETY_BYTES)
                    .map_err(|e| DriverError::Safety(e.to_string()))?,
            )),
            None => None,
        };
        self.timers.clear();
        self.ledger.reset();
        let mut replica = Replica::new(
            self.committee.clone(),
            me,
            self.key.clone(),
            self.config.replica.clone(),
            head,
        );
        let effects = replica.handle(Input::Start { recovered }, now_ms(), &mut self.ledger);
        self.replica = Some(replica);
        self.apply(effects);
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        txs_available: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), DriverError> {
        self.start_replica()?;
        self.publish_status();
        let mut status_tick = tokio::time::interval(self.config.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.next_timer_instant();
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
                message = inbound.recv() => {
                    let Some(message) = message else { break };
                    self.on_inbound(message);
                }
                () = txs_available.notified() => {
                    self.feed(Input::TransactionsAvailable);
                }
                () = sleep_until(next_timer) => {
                    self.fire_timers();
                }
                _ = status_tick.tick() => {
                    self.on_status_tick();
                }
            }
        }
        // Every commit and safety write was flushed when it was made.
        tracing::info!("driver stopped");
        Ok(())
    }

    // ----- feeding the replica -----

    fn feed(&mut self, input: Input) {
        if self.halted || self.sync.fetching.is_some() {
            return;
        }
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        let effects = replica.handle(input, now_ms(), &mut self.ledger);
        self.apply(effects);
        self.publish_status();
    }

    fn next_timer_instant(&self) -> Option<Instant> {
        let at = self.timers.values().min()?;
        let wait = at.saturating_sub(now_ms());
        Some(Instant::now() + Duration::from_millis(wait))
    }

    fn fire_timers(&mut self) {
        let now = now_ms();
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| *t)
            .collect();
        for timer in due {
            self.timers.remove(&timer);
            self.feed(Input::Timer(timer));
        }
    }

    // ----- effects -----

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::PersistSafety(safety) => {
                    // Written and flushed before any later effect.
                    if let Err(e) = self
                        .state
                        .store
                        .put_safety_data(SAFETY_KEY, &encoding::encode(&safety))
                    {
                        tracing::error!("persisting safety data failed: {e}; halting consensus");
                        self.halted = true;
                        return;
                    }
                }
                Effect::Send { to, message } => {
                    let Some(key) = self.committee.key(to).copied() else {
                        continue;
                    };
                    let bytes = message.encode();
                    let kind = kind_of(&message.payload);
                    let forwarded = Some(message.author) != self.me;
                    self.state
                        .metrics
                        .message_out("consensus", kind, bytes.len(), forwarded);
                    if let Err(e) = self.net().send(&key, Channel::Consensus, bytes) {
                        tracing::debug!("send to {to} failed: {e}");
                        self.state.metrics.dropped("outbound_full");
                    }
                }
                Effect::Broadcast(message) => {
                    let bytes = message.encode();
                    let kind = kind_of(&message.payload);
                    let forwarded = Some(message.author) != self.me;
                    self.state
                        .metrics
                        .message_out("consensus", kind, bytes.len(), forwarded);
                    // Our own copy must not come back as new.
                    let first_time = self.remember(Hash::digest(&bytes));
                    if !first_time && !forwarded {
                        // A re-send of our own message (a timeout repeated
                        // while a view is stuck). Gossip ids are content
                        // hashes and gossipsub refuses to publish the same
                        // bytes twice, so re-sends go to each validator
                        // directly.
                        self.send_to_all(&bytes);
                    } else if let Err(e) = self.net().publish(Channel::Consensus, bytes) {
                        tracing::debug!("broadcast failed: {e}");
                        self.state.metrics.dropped("outbound_full");
                    }
                }
                Effect::SendSync { to, message } => {
                    let Some(key) = self.committee.key(to).copied() else {
                        continue;
                    };
                    let bytes = encode_sync(SYNC_TAG_REPLICA, encoding::encode(&message));
                    self.state
                        .metrics
                        .message_out("sync", "catch_up", bytes.len(), false);
                    if self.net().send(&key, Channel::Sync, bytes).is_err() {
                        self.state.metrics.dropped("outbound_full");
                    }
                }
                Effect::Commit(block) => self.commit(&block),
                Effect::ArmTimer { timer, at } => self.arm(timer, at),
                Effect::CancelTimer(timer) => {
                    self.timers.remove(&timer);
                }
                Effect::Evidence(evidence) => {
                    tracing::warn!(?evidence, "evidence of Byzantine behaviour");
                    self.state.metrics.dropped("evidence");
                }
            }
        }
    }

    fn send_to_all(&self, bytes: &[u8]) {
        for validator in self.committee.members() {
            if Some(validator) == self.me {
                continue;
            }
            let Some(key) = self.committee.key(validator) else {
                continue;
            };
            if self
                .net()
                .send(key, Channel::Consensus, bytes.to_vec())
                .is_err()
            {
                self.state.metrics.dropped("outbound_full");
            }
        }
    }

    fn arm(&mut self, timer: Timer, at: u64) {
        if self.timers.len() >= MAX_TIMERS {
            // Drop the oldest views' timers: they can no longer matter.
            let keep = MAX_TIMERS / 2;
            while self.timers.len() > keep {
                if self.timers.pop_first().is_none() {
                    break;
                }
            }
        }
        self.timers.insert(timer, at);
    }

    fn commit(&mut self, block: &Block) {
        let height = block.header.height;
        let hash = block.hash();
        match self.state.store.block_hash_at(height) {
            Ok(Some(existing)) if existing == hash => return,
            Ok(Some(existing)) => {
                tracing::error!(
                    %height, %hash, %existing,
                    "consensus committed a block that conflicts with the stored one: \
                     more than f validators are faulty; halting consensus"
                );
                self.halted = true;
                return;
            }
            _ => {}
        }
        match self.ledger.commit(block) {
            Ok(_) => self.after_commit(block),
            Err(e) => {
                tracing::error!(%height, %hash, "committing failed: {e}; halting consensus");
                self.halted = true;
            }
        }
    }

    /// Mempool, metrics, events and status after a block was stored.
    fn after_commit(&mut self, block: &Block) {
        let height = block.header.height;
        let hash = block.hash();
        let store = Arc::clone(&self.state.store);
        if let Ok(mut pool) = self.state.mempool.lock() {
            pool.remove_committed(block, &*store);
            self.state.metrics.set_mempool(pool.len(), pool.bytes());
        }
        let metrics = &self.state.metrics;
        metrics.set_height(height.0);
        metrics.set_finalized_height(height.0);
        metrics.add_committed_txs(block.transactions.len() as u64);
        let age_ms = now_ms().saturating_sub(block.header.timestamp_ms);
        metrics.observe_commit_latency(age_ms as f64 / 1_000.0);
        tracing::info!(
            %height, %hash, txs = block.transactions.len(), "committed"
        );
        // Nobody listening is fine.
        let _ = self.state.events.send(BlockEvent {
            height,
            hash,
            tx_count: block.transactions.len(),
            timestamp_ms: block.header.timestamp_ms,
        });
    }

    fn publish_status(&self) {
        let view = self.replica.as_ref().map_or(0, |r| r.view().0);
        self.state.metrics.set_view(view);
        if let Ok(mut status) = self.state.status.write() {
            status.view = view;
            status.syncing = self.sync.fetching.is_some();
            let head = self
                .state
                .store
                .head()
                .ok()
                .flatten()
                .map_or(Height(0), |h| h.height());
            status.sync_target = (self.sync.best_seen > head).then_some(self.sync.best_seen);
        }
    }

    // ----- inbound -----

    fn remember(&mut self, hash: Hash) -> bool {
        if !self.seen.insert(hash) {
            return false;
        }
        self.seen_order.push_back(hash);
        if self.seen_order.len() > DEDUP_ENTRIES
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    fn on_inbound(&mut self, message: Inbound) {
        let Inbound {
            from,
            channel,
            bytes,
        } = message;
        match channel {
            Channel::Consensus => self.on_consensus(from, bytes),
            Channel::Transactions => {
                self.state
                    .metrics
                    .message_in("transactions", "transaction", bytes.len());
                if self.ingest.try_send((from, bytes)).is_err() {
                    self.state.metrics.dropped("ingest_full");
                }
            }
            Channel::Sync => self.on_sync(from, bytes),
        }
    }

    fn on_consensus(&mut self, from: PublicKey, bytes: Vec<u8>) {
        if !self.remember(Hash::digest(&bytes)) {
            self.state.metrics.dropped("duplicate");
            return;
        }
        match verify_message(&bytes, &self.committee) {
            Ok(message) => {
                let kind = kind_of(&message.get().payload);
                self.state
                    .metrics
                    .message_in("consensus", kind, bytes.len());
                if let Payload::Proposal(p) = &message.get().payload {
                    self.sync.best_seen = self
                        .sync
                        .best_seen
                        .max(Height(p.block.header.height.0.saturating_sub(3)));
                }
                self.feed(Input::Message(message));
            }
            Err(e) => {
                let (reason, why) = match &e {
                    MessageError::Decode(_) | MessageError::MalformedBlock => {
                        ("undecodable", Misbehaviour::Malformed)
                    }
                    MessageError::UnknownAuthor { .. } | MessageError::SenderNotAMember => {
                        ("not_a_member", Misbehaviour::NotAMember)
                    }
                    MessageError::BadSignature { .. } | MessageError::BadCertificate { .. } => {
                        ("bad_signature", Misbehaviour::BadSignature)
                    }
                    MessageError::NotLeader { .. } => ("not_leader", Misbehaviour::Malformed),
                };
                tracing::debug!("dropped a consensus message from {from}: {e}");
                self.state.metrics.dropped(reason);
                self.net().report(&from, why);
            }
        }
    }

    fn on_sync(&mut self, from: PublicKey, bytes: Vec<u8>) {
        let Some((tag, body)) = bytes.split_first() else {
            self.net().report(&from, Misbehaviour::Malformed);
            return;
        };
        match *tag {
            SYNC_TAG_REPLICA => {
                self.state
                    .metrics
                    .message_in("sync", "catch_up", bytes.len());
                let Ok(message) = decode_sync(body) else {
                    self.state.metrics.dropped("undecodable");
                    self.net().report(&from, Misbehaviour::Malformed);
                    return;
                };
                let Some(index) = self.committee.index_of(&from) else {
                    self.state.metrics.dropped("not_a_member");
                    return;
                };
                if let SyncMessage::Response { blocks } = &message {
                    for block in blocks {
                        self.ledger.observe(block);
                    }
                }
                self.feed(Input::Sync {
                    from: index,
                    message,
                });
            }
            SYNC_TAG_NODE => {
                self.state.metrics.message_in("sync", "blocks", bytes.len());
                match encoding::decode::<NodeSync>(body, crate::net::MAX_NETWORK_MESSAGE_BYTES) {
                    Ok(message) => self.on_node_sync(from, message),
                    Err(_) => {
                        self.state.metrics.dropped("undecodable");
                        self.net().report(&from, Misbehaviour::Malformed);
                    }
                }
            }
            _ => {
                self.state.metrics.dropped("undecodable");
                self.net().report(&from, Misbehaviour::Malformed);
            }
        }
    }

    // ----- block sync -----

    fn head_height(&self) -> Height {
        self.state
            .store
            .head()
            .ok()
            .flatten()
            .map_or(Height(0), |h| h.height())
    }

    fn send_node_sync(&self, to: &PublicKey, message: &NodeSync) {
        let bytes = encode_sync(SYNC_TAG_NODE, encoding::encode(message));
        self.state
            .metrics
            .message_out("sync", "blocks", bytes.len(), false);
        if self.net().send(to, Channel::Sync, bytes).is_err() {
            self.state.metrics.dropped("outbound_full");
        }
    }

    /// Asks the next peer for its height; gives up on a stalled fetch.
    fn on_status_tick(&mut self) {
        if let Some((peer, deadline)) = self.sync.fetching
            && Instant::now() >= deadline
        {
            tracing::info!("sync request to {peer} timed out");
            self.sync.fetching = None;
            self.start_fetch();
        }
        let peers = self.live_peers();
        self.state.metrics.set_peers(peers.len());
        if peers.is_empty() {
            return;
        }
        let i = self.sync.next_peer % peers.len();
        self.sync.next_peer = self.sync.next_peer.wrapping_add(1);
        if let Some(peer) = peers.get(i) {
            self.send_node_sync(peer, &NodeSync::StatusRequest);
        }
        self.publish_status();
    }

    fn on_node_sync(&mut self, from: PublicKey, message: NodeSync) {
        match message {
            NodeSync::StatusRequest => {
                let height = self.head_height();
                self.send_node_sync(&from, &NodeSync::Status { height });
            }
            NodeSync::Status { height } => {
                self.sync.best_seen = self.sync.best_seen.max(height);
                if self.sync.fetching.is_none() && height.0 > self.head_height().0 + SYNC_LAG {
                    self.fetch_from(from);
                }
                self.publish_status();
            }
            NodeSync::BlocksRequest { from: start, count } => {
                let blocks = self.committed_blocks(start, count.min(MAX_SYNC_BATCH));
                self.send_node_sync(&from, &NodeSync::Blocks { blocks });
            }
            NodeSync::Blocks { blocks } => {
                if self.sync.fetching.map(|(peer, _)| peer) != Some(from) {
                    return;
                }
                self.on_blocks(from, blocks);
            }
        }
    }

    /// Committed blocks from `start`, up to `count` and the response's
    /// byte budget.
    fn committed_blocks(&self, start: Height, count: u32) -> Vec<Block> {
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        for i in 0..u64::from(count) {
            let height = Height(start.0.saturating_add(i));
            let Ok(Some(block)) = self.state.store.block_at(height) else {
                break;
            };
            bytes = bytes.saturating_add(encoding::encode(&block).len());
            if bytes > MAX_SYNC_RESPONSE_BYTES && !blocks.is_empty() {
                break;
            }
            blocks.push(block);
        }
        blocks
    }

    /// Connected peers that are not banned.
    fn live_peers(&self) -> Vec<PublicKey> {
        self.net()
            .peers()
            .into_iter()
            .filter(|p| p.connected && !p.banned)
            .map(|p| p.key)
            .collect()
    }

    fn start_fetch(&mut self) {
        let peers = self.live_peers();
        let i = self.sync.next_peer % peers.len().max(1);
        if let Some(peer) = peers.get(i).copied() {
            self.fetch_from(peer);
        } else {
            self.finish_sync();
        }
    }

    fn fetch_from(&mut self, peer: PublicKey) {
        let from = Height(self.head_height().0.saturating_add(1));
        if self.sync.fetching.is_none() {
            tracing::info!(
                from = %from, target = %self.sync.best_seen, "behind peers: syncing committed blocks"
            );
        }
        self.sync.fetching = Some((peer, Instant::now() + self.config.sync_timeout));
        self.state
            .metrics
            .set_sync(Some(self.sync.best_seen.0), true);
        self.send_node_sync(
            &peer,
            &NodeSync::BlocksRequest {
                from,
                count: self.config.sync_batch,
            },
        );
        self.publish_status();
    }

    fn on_blocks(&mut self, from: PublicKey, blocks: Vec<Block>) {
        let proved = match self.provably_committed(&blocks) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("invalid sync response from {from}: {e}");
                self.net().report(&from, Misbehaviour::BadSignature);
                self.sync.fetching = None;
                self.start_fetch();
                return;
            }
        };
        let mut applied = 0usize;
        for block in blocks.iter().take(proved) {
            match self.ledger.commit(block) {
                Ok(_) => {
                    self.after_commit(block);
                    applied += 1;
                }
                Err(e) => {
                    tracing::warn!("a synced block does not apply: {e}");
                    self.net().report(&from, Misbehaviour::Malformed);
                    break;
                }
            }
        }
        let head = self.head_height();
        tracing::info!(applied, head = %head, target = %self.sync.best_seen, "sync progress");
        if applied > 0 && self.sync.best_seen.0 > head.0 + SYNC_LAG {
            self.fetch_from(from);
        } else {
            self.finish_sync();
        }
    }

    fn finish_sync(&mut self) {
        let was = self.sync.fetching.take().is_some();
        self.state.metrics.set_sync(None, false);
        if was {
            tracing::info!(head = %self.head_height(), "sync done; rejoining consensus");
            if let Err(e) = self.start_replica() {
                tracing::error!("restarting consensus after sync failed: {e}");
                self.halted = true;
            }
        }
        self.publish_status();
    }

    /// How many of `blocks` (which must start right above our head) are
    /// proved committed by a three-chain among them; an error if any block
    /// does not link or its certificate does not verify.
    fn provably_committed(&self, blocks: &[Block]) -> Result<usize, String> {
        let head = self
            .state
            .store
            .head()
            .map_err(|e| e.to_string())?
            .ok_or("no head")?;
        let mut parent = head.hash;
        let mut height = head.height();
        let mut views = Vec::with_capacity(blocks.len());
        for block in blocks {
            let hash = block.hash();
            if block.header.parent != parent || block.header.height.0 != height.0 + 1 {
                return Err(format!("block {hash} does not extend {parent}"));
            }
            let cert = parent_cert(block).ok_or("a block without a BFT certificate")?;
            let view = block_view(block).ok_or("a block without a view")?;
            if cert.block != parent || View(cert.view) >= view {
                return Err(format!(
                    "block {hash} carries a certificate for another block"
                ));
            }
            verify_qc(&self.committee, cert).map_err(|e| e.to_string())?;
            views.push((view, View(cert.view)));
            parent = hash;
            height = block.header.height;
        }
        // Block i is committed if blocks i+1 and i+2 follow it in
        // consecutive views and block i+3 certifies block i+2.
        let mut proved = 0;
        for i in 0..blocks.len() {
            let (Some((v0, _)), Some((v1, c1)), Some((v2, c2)), Some((_, c3))) = (
                views.get(i),
                views.get(i + 1),
                views.get(i + 2),
                views.get(i + 3),
            ) else {
                break;
            };
            if *c1 == *v0 && *c2 == *v1 && v1.0 == v0.0 + 1 && v2.0 == v1.0 + 1 && *c3 == *v2 {
                proved = i + 1;
            }
        }
        Ok(proved)
    }
}

fn kind_of(payload: &Payload) -> &'static str {
    match payload {
        Payload::Proposal(_) => "proposal",
        Payload::Vote(_) => "vote",
        Payload::Timeout(_) => "timeout",
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
