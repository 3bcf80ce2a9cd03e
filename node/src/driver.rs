//! The driver: runs a consensus protocol (any [`Protocol`]) on one task,
//! carries out its effects in order, verifies what peers send before the
//! protocol sees it, and hands block sync ([`crate::sync`]) its traffic.
//! It names no protocol's types: everything it must know about one (how
//! bytes are verified, message kinds, the safety data's key, what proves
//! fetched blocks final) the protocol answers through the seam.
//!
//! # Effects
//! - `Persist`: written to sled under [`Protocol::SAFETY_KEY`], durable
//!   *before* any later `Send`/`Broadcast`/`Reply`, so a message that
//!   depends on it never leaves before it is durable. The writes of one
//!   batch of effects share one flush (`Store::defer_flushes`): made before
//!   the first message that follows them, and at the end of the batch.
//! - `Send`/`Broadcast`: handed to the network (bounded queues; a full
//!   queue drops the message and counts it, the protocol's re-sends and
//!   timeouts recover). Consensus messages are published on the gossip
//!   channel; catch-up traffic goes directly to validators on the sync
//!   channel, framed with [`SYNC_TAG_PROTOCOL`]. On a chain without a
//!   committee (proof of work) there are no validators to send to: the
//!   direct copies of a broadcast go to every connected peer, and `Send`
//!   is ignored.
//! - `Reply`: to the peer whose message is being handled.
//! - `Extend`: the block is executed (or its validated state reused),
//!   stored with its state changes in one atomic batch (flushed as
//!   `Persist` is), final
//!   at once or not; its transactions leave the mempool; subscribers get a
//!   [`BlockEvent`]. `Finalize` raises the stored finalized height (and
//!   subscribers get a [`FinalizedEvent`]); at or below it, it is a no-op.
//! - `Revert` (proof of work): the store rolls back to the ancestor
//!   (`Store::revert_to`, one flushed batch, never below the finalized
//!   height); the transactions of the blocks taken off go back through
//!   the mempool's admission against the new head, the mempool locked
//!   from before the rollback until they are back (so the API never finds
//!   a reverted transaction neither committed nor pending); metrics count the
//!   reorganization, its depth and the orphaned blocks; subscribers get a
//!   [`ReorgEvent`]. A revert below the finalized height is a local
//!   fault: consensus halts.
//! - `RequestWork` (proof of work): handed to the miner
//!   ([`crate::miner`]), which drops the work in progress; its block comes
//!   back as [`Input::Mined`], unless newer work was asked for meanwhile
//!   (only a block taken counts against blocks asked for by `POST /mine`).
//!   A node that does not mine ignores it.
//! - `ArmTimer`/`CancelTimer`: kept in a map (bounded) and fired from the
//!   task's loop.
//! - `Evidence`: logged and counted.
//!
//! # Status
//! After each input, sync message and status tick the driver publishes
//! what only it knows to [`NodeState::status`] for `GET /status`: view,
//! phase, sync progress, the miner (with the handle `POST /mine` uses)
//! and the protocol's chain tips ([`Protocol::chain_tips`], the best
//! [`MAX_STATUS_TIPS`]).
//!
//! A local fault (a [`Fault`] from the protocol, a failed write, a block
//! that conflicts with a stored final one, a revert below the finalized
//! height) halts consensus: the protocol gets no more inputs, the miner
//! stops, `/status` says why, and the node goes on serving what it has.
//!
//! # Inbound
//! Consensus bytes are deduplicated (a bounded cache of content hashes),
//! then verified by [`Protocol::verify`] (size, decoding, committee
//! membership, signatures, embedded certificates; the sender's validator
//! index, or none for a peer outside the committee and on a chain without
//! one) before the protocol sees them; a peer that sends invalid ones is reported to the network, by
//! the kind of rejection. Transactions go to the ingest task
//! ([`crate::ingest`]). Sync traffic is the protocol's catch-up or block
//! sync's, by its first byte.

use crate::ledger::NodeLedger;
use crate::mempool::{Mempool, Source};
use crate::miner::{Found, MINED_QUEUE, Miner, MinerConfig, RateMeter};
use crate::net::{self, Gossip, Inbound, Misbehaviour, Verdict};
use crate::shared::{
    BlockEvent, FinalizedEvent, MAX_STATUS_TIPS, MiningStatus, NodeState, ReorgEvent,
};
use crate::sync::{
    Applied, BlockSync, Frame, NodeSync, SYNC_TAG_PROTOCOL, SyncAction, SyncConfig, frame, unframe,
};
use crate::txgossip;
use phalanx_chain::speculative::CommitError;
use phalanx_chain::{
    Block, ExecutionError, Hash, Height, StateChanges, Store, StoreError, ValidatorIndex,
};
use phalanx_consensus::protocol::WorkRequest;
use phalanx_consensus::{
    Channel, Committee, Effect, Evidence, Input, Origin, Outgoing, Protocol, RejectReason, Setup,
    SetupError, Tuning,
};
use phalanx_crypto::{Keypair, PublicKey};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// Content hashes of consensus messages remembered, to process each once.
const DEDUP_ENTRIES: usize = 32_768;
/// Pending timers, at most (the lowest timers, old views', are dropped
/// first).
const MAX_TIMERS: usize = 4_096;

/// Milliseconds since the Unix epoch (the protocol's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How the driver is set up.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub tuning: Tuning,
    pub batch_size: usize,
    pub sync: SyncConfig,
    pub status_interval: Duration,
    /// Run a miner for the protocol's work requests (proof of work, with
    /// `tuning.miner` set); `None`: no miner.
    pub mining: Option<MinerConfig>,
}

/// The consensus task for protocol `P`.
pub struct Driver<P: Protocol> {
    state: Arc<NodeState>,
    context: P::Context,
    /// The genesis validators, to map peers to indices and back; `None`
    /// on a chain without a committee (proof of work), whose peers are
    /// anonymous: messages reach the protocol with no sender index, and
    /// "every other replica" means every connected peer.
    committee: Option<Committee>,
    me: Option<ValidatorIndex>,
    /// How to (re)create the protocol instance; `None` for a node that is
    /// not a validator (on a chain without a committee every node runs
    /// the protocol).
    setup: Option<Setup>,
    protocol: Option<P>,
    ledger: NodeLedger,
    timers: BTreeMap<P::Timer, u64>,
    seen: HashSet<Hash>,
    seen_order: VecDeque<Hash>,
    sync: BlockSync<P>,
    ingest: mpsc::Sender<crate::ingest::GossipBatch>,
    /// How often block sync asks a peer for its height.
    status_interval: Duration,
    halted: bool,
    /// The sender of the message being handled, for [`Effect::Reply`].
    reply_to: Option<PublicKey>,
    /// The miner, if this node mines.
    miner: Option<Miner>,
    /// Where the miner's blocks arrive (taken by [`Driver::run`]).
    mined: Option<mpsc::Receiver<Found>>,
    /// The generation of the work last asked of the miner, while it is
    /// wanted.
    work: Option<u64>,
    /// The miner's hash rate, measured at each status tick.
    hash_rate: RateMeter,
    /// The last hash rate measured.
    last_hash_rate: u64,
}

impl<P: Protocol> std::fmt::Debug for Driver<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("me", &self.me)
            .field("halted", &self.halted)
            .finish_non_exhaustive()
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the store has no head block")]
    NoHead,
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("starting the miner's threads: {0}")]
    Miner(std::io::Error),
}

impl<P: Protocol> Driver<P> {
    /// A driver for the node keyed `key`: a validator if `committee`
    /// holds the key; on a chain without a committee (`None`: proof of
    /// work) every node runs the protocol. `ingest` is where it hands
    /// inbound transactions. Fails if the protocol cannot run this chain
    /// or this key's setup (a Byzantine behaviour it does not have, for
    /// instance), or the miner's threads cannot start.
    pub fn new(
        state: Arc<NodeState>,
        committee: Option<Committee>,
        key: Keypair,
        config: DriverConfig,
        ingest: mpsc::Sender<crate::ingest::GossipBatch>,
    ) -> Result<Driver<P>, DriverError> {
        let context = P::context(&state.genesis, None)?;
        let me = committee.as_ref().and_then(|c| c.index_of(&key.public()));
        let setup = Setup {
            key,
            tuning: config.tuning.clone(),
        };
        let head = head_block(&state)?;
        let (setup, protocol) = match P::new(&context, setup.clone(), head) {
            Ok(protocol) => (Some(setup), Some(protocol)),
            // Without a committee there is nothing to be a member of.
            Err(SetupError::NotAValidator) if committee.is_some() => (None, None),
            Err(e) => return Err(e.into()),
        };
        let (miner, mined) = match config.mining {
            Some(mining) => {
                let (found, mined) = mpsc::channel(MINED_QUEUE);
                let counters = state.metrics.miner_counters();
                let miner = Miner::start(mining, counters, found).map_err(DriverError::Miner)?;
                (Some(miner), Some(mined))
            }
            None => (None, None),
        };
        let ledger = NodeLedger::new(Arc::clone(&state), config.batch_size);
        let sync = BlockSync::new(context.clone(), Arc::clone(&state.store), config.sync);
        Ok(Driver {
            state,
            context,
            committee,
            me,
            setup,
            protocol,
            ledger,
            timers: BTreeMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            sync,
            ingest,
            status_interval: config.status_interval,
            halted: false,
            reply_to: None,
            miner,
            mined,
            work: None,
            hash_rate: RateMeter::default(),
            last_hash_rate: 0,
        })
    }

    fn net(&self) -> &dyn Gossip {
        &*self.state.net
    }

    /// Starts the protocol instance (if this node runs one) with its
    /// persisted safety data.
    fn start(&mut self, protocol: Option<P>) -> Result<(), DriverError> {
        self.timers.clear();
        self.ledger.reset();
        // A new instance asks for its own work.
        self.stop_mining();
        self.protocol = protocol;
        if self.protocol.is_none() {
            return Ok(());
        }
        let recovered = self.state.store.safety_data(P::SAFETY_KEY)?;
        self.feed(Input::Start { recovered });
        Ok(())
    }

    /// A new protocol instance on the store's head (after block sync).
    fn restart(&mut self) -> Result<(), DriverError> {
        let protocol = match &self.setup {
            Some(setup) => Some(P::new(
                &self.context,
                setup.clone(),
                head_block(&self.state)?,
            )?),
            None => None,
        };
        self.start(protocol)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        txs_available: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), DriverError> {
        let protocol = self.protocol.take();
        let mut mined = self.mined.take();
        self.start(protocol)?;
        self.publish_status();
        let mut status_tick = tokio::time::interval(self.status_interval);
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
                found = next_found(&mut mined) => {
                    match found {
                        Some(found) => self.on_found(found),
                        None => mined = None,
                    }
                }
                () = sleep_until(next_timer) => {
                    self.fire_timers();
                }
                _ = status_tick.tick() => {
                    self.on_status_tick();
                }
            }
        }
        if let Some(miner) = self.miner.take() {
            // Each thread notices within one chunk of hashes.
            let _ = tokio::task::spawn_blocking(move || miner.stop()).await;
        }
        // Every commit and safety write was flushed when it was made.
        tracing::info!("driver stopped");
        Ok(())
    }

    // ----- feeding the protocol -----

    fn feed(&mut self, input: Input<P::Message, P::Timer>) {
        if self.halted || self.sync.is_fetching() {
            return;
        }
        let Some(protocol) = self.protocol.as_mut() else {
            return;
        };
        match protocol.handle(input, now_ms(), &mut self.ledger) {
            Ok(effects) => self.apply(effects),
            Err(fault) => self.halt(format_args!("consensus failed: {fault}")),
        }
        self.publish_status();
    }

    /// Stops feeding the protocol, for good.
    fn halt(&mut self, why: std::fmt::Arguments<'_>) {
        tracing::error!("{why}; halting consensus");
        self.halted = true;
        self.stop_mining();
        if let Ok(mut live) = self.state.status.write() {
            live.halted = Some(why.to_string());
        }
    }

    fn next_timer_instant(&self) -> Option<Instant> {
        let at = self.timers.values().min()?;
        let wait = at.saturating_sub(now_ms());
        Some(Instant::now() + Duration::from_millis(wait))
    }

    fn fire_timers(&mut self) {
        let now = now_ms();
        let due: Vec<P::Timer> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| *t)
            .collect();
        for timer in due {
            self.timers.remove(&timer);
            tracing::debug!(?timer, "timer fired");
            self.feed(Input::Timer(timer));
        }
    }

    // ----- effects -----

    /// Carries out `effects` in order; stops at the first that halts
    /// consensus. Store writes (safety data, blocks) are flushed together:
    /// once before the first message that follows them, and at the end, so
    /// nothing is sent before what it depends on is durable, at one disk
    /// sync for a commit and a vote rather than one each.
    fn apply(&mut self, effects: Vec<Effect<P::Timer>>) {
        if let Err(e) = self.state.store.defer_flushes(true) {
            self.halt(format_args!("deferring store flushes failed: {e}"));
            return;
        }
        for effect in effects {
            if self.halted {
                break;
            }
            match effect {
                Effect::Persist(bytes) => {
                    // Durable before any later message (see above).
                    if let Err(e) = self.state.store.put_safety_data(P::SAFETY_KEY, &bytes) {
                        self.halt(format_args!("persisting safety data failed: {e}"));
                    }
                }
                Effect::Send { to, message } => {
                    tracing::trace!(%to, message = %P::describe(message.channel, &message.bytes), "send");
                    if self.flush_store() {
                        self.send(to, message);
                    }
                }
                Effect::Broadcast(message) => {
                    tracing::trace!(message = %P::describe(message.channel, &message.bytes), "broadcast");
                    if self.flush_store() {
                        self.broadcast(message);
                    }
                }
                Effect::Reply(message) => {
                    if self.flush_store() {
                        self.reply(message);
                    }
                }
                Effect::Extend { block, finalized } => self.extend(&block, finalized),
                Effect::Finalize(height) => self.finalize(height),
                Effect::Revert { ancestor } => self.revert(ancestor),
                Effect::ArmTimer { timer, at } => self.arm(timer, at),
                Effect::CancelTimer(timer) => {
                    self.timers.remove(&timer);
                }
                Effect::RequestWork(work) => self.request_work(work),
                Effect::Evidence(evidence) => self.on_evidence(&evidence),
            }
        }
        if let Err(e) = self.state.store.defer_flushes(false) {
            self.halt(format_args!("flushing the store failed: {e}"));
        }
    }

    /// Makes the store's writes so far durable; false (and consensus
    /// halted) if that fails.
    fn flush_store(&mut self) -> bool {
        match self.state.store.flush() {
            Ok(()) => !self.halted,
            Err(e) => {
                self.halt(format_args!("flushing the store failed: {e}"));
                false
            }
        }
    }

    // ----- mining -----

    /// Hands `work` to the miner, replacing the work in progress.
    fn request_work(&mut self, work: WorkRequest) {
        let Some(miner) = &self.miner else {
            tracing::debug!(parent = %work.parent, "consensus asked for mining work; this node does not mine");
            return;
        };
        let height = work.template.header().height;
        match miner.submit(work) {
            Ok(generation) => {
                tracing::debug!(%height, generation, "mining");
                self.work = Some(generation);
            }
            Err(e) => {
                tracing::warn!("the miner refused consensus's work: {e}");
                self.work = None;
            }
        }
    }

    /// Drops the work in progress, if any.
    fn stop_mining(&mut self) {
        self.work = None;
        if let Some(miner) = &self.miner {
            miner.cancel();
        }
    }

    /// A block from the miner: to the protocol if it is for the work last
    /// asked for (one for replaced work is dropped, as the seam says a
    /// mined block answers the last request).
    fn on_found(&mut self, found: Found) {
        if self.work != Some(found.generation) {
            tracing::debug!(
                height = %found.block.header().height,
                "dropped a mined block for work that was replaced"
            );
            self.state.metrics.dropped("stale_mined_block");
            return;
        }
        self.work = None;
        if let Some(miner) = &self.miner {
            miner.took_block();
        }
        self.feed(Input::Mined(found.block));
    }

    fn on_evidence(&self, evidence: &Evidence) {
        tracing::warn!(
            kind = evidence.kind,
            culprit = %evidence.culprit,
            first = %P::describe(Channel::Consensus, &evidence.first),
            second = %P::describe(Channel::Consensus, &evidence.second),
            "evidence of Byzantine behaviour"
        );
        self.state.metrics.dropped("evidence");
    }

    /// The network channel and bytes an outgoing message travels as.
    fn wire(message: &Outgoing) -> (net::Channel, Vec<u8>) {
        match message.channel {
            Channel::Consensus => (net::Channel::Consensus, message.bytes.clone()),
            Channel::Sync => (net::Channel::Sync, frame(SYNC_TAG_PROTOCOL, &message.bytes)),
        }
    }

    fn count_out(&self, channel: net::Channel, message: &Outgoing, bytes: usize) {
        let forwarded = message.origin == Origin::Forwarded;
        self.state
            .metrics
            .message_out(channel.name(), message.kind, bytes, forwarded);
    }

    fn send(&self, to: ValidatorIndex, message: Outgoing) {
        let Some(key) = self.committee.as_ref().and_then(|c| c.key(to)).copied() else {
            tracing::debug!("consensus sent to validator {to}, which this chain does not have");
            return;
        };
        let (channel, bytes) = Self::wire(&message);
        self.count_out(channel, &message, bytes.len());
        if let Err(e) = self.net().send(&key, channel, bytes) {
            tracing::debug!("send to {to} failed: {e}");
            self.state.metrics.dropped("outbound_full");
        }
    }

    fn reply(&self, message: Outgoing) {
        let Some(key) = self.reply_to else {
            return;
        };
        let (channel, bytes) = Self::wire(&message);
        self.count_out(channel, &message, bytes.len());
        if let Err(e) = self.net().send(&key, channel, bytes) {
            tracing::debug!("reply to {key} failed: {e}");
            self.state.metrics.dropped("outbound_full");
        }
    }

    fn broadcast(&mut self, message: Outgoing) {
        let (channel, bytes) = Self::wire(&message);
        self.count_out(channel, &message, bytes.len());
        if channel == net::Channel::Sync {
            // The sync channel is direct only.
            self.send_to_all(channel, &bytes);
            return;
        }
        // Our own copy must not come back as new.
        let first_time = self.remember(Hash::digest(&bytes));
        if !first_time && message.origin != Origin::Forwarded {
            // A re-send of our own message (a timeout repeated while a
            // view is stuck). Gossip ids are content hashes and gossipsub
            // refuses to publish the same bytes twice, so re-sends go to
            // each validator directly.
            self.send_to_all(channel, &bytes);
        } else if let Err(e) = self.net().publish(channel, bytes) {
            tracing::debug!("broadcast failed: {e}");
            self.state.metrics.dropped("outbound_full");
        }
    }

    /// To every other validator, or on a chain without a committee to
    /// every connected peer.
    fn send_to_all(&self, channel: net::Channel, bytes: &[u8]) {
        let keys: Vec<PublicKey> = match &self.committee {
            Some(committee) => committee
                .members()
                .filter(|v| Some(*v) != self.me)
                .filter_map(|v| committee.key(v).copied())
                .collect(),
            None => self.live_peers(),
        };
        for key in keys {
            if self.net().send(&key, channel, bytes.to_vec()).is_err() {
                self.state.metrics.dropped("outbound_full");
            }
        }
    }

    fn arm(&mut self, timer: P::Timer, at: u64) {
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

    /// Appends `block` to the chain: final at once (BFT), or not yet (the
    /// finalized height stays where it is).
    fn extend(&mut self, block: &Block, finalized: bool) {
        let height = block.header().height;
        let hash = block.hash();
        match self.state.store.block_hash_at(height) {
            Ok(Some(existing)) if existing == hash => return,
            Ok(Some(existing)) => {
                let cause = if finalized {
                    "more than f validators are faulty"
                } else {
                    "the protocol did not revert it first"
                };
                self.halt(format_args!(
                    "consensus extended the chain at height {height} with block {hash}, which \
                     conflicts with the stored {existing}: {cause}"
                ));
                return;
            }
            _ => {}
        }
        let final_height = if finalized {
            height
        } else {
            match self.state.store.finalized_height() {
                Ok(h) => h.unwrap_or(Height::GENESIS),
                Err(e) => {
                    self.halt(format_args!("reading the finalized height failed: {e}"));
                    return;
                }
            }
        };
        match self.ledger.commit(block, final_height) {
            Ok(changes) => self.after_commit(block, &changes, final_height),
            Err(e) => self.halt(format_args!(
                "storing block {hash} at height {height} failed: {e}"
            )),
        }
    }

    /// Raises the finalized height to `height`. A height at or below the
    /// stored one is already true and changes nothing (a protocol that
    /// restarts after block sync finalized further may say it again).
    fn finalize(&mut self, height: Height) {
        let before = match self.state.store.finalized_height() {
            Ok(h) => h,
            Err(e) => {
                self.halt(format_args!("reading the finalized height failed: {e}"));
                return;
            }
        };
        if before.is_some_and(|b| height <= b) {
            return;
        }
        if let Err(e) = self.state.store.set_finalized_height(height) {
            self.halt(format_args!(
                "raising the finalized height to {height} failed: {e}"
            ));
            return;
        }
        self.state.metrics.set_finalized_height(height.0);
        let _ = self.state.events.send(FinalizedEvent { height }.into());
    }

    /// Rolls the chain back to `ancestor` (a proof-of-work
    /// reorganization); the blocks taken off give their transactions back
    /// to the mempool. Reverting a final block is a local fault: the
    /// protocol's state is wrong, and consensus halts.
    fn revert(&mut self, ancestor: Hash) {
        // The mempool stays locked from before the store reverts until the
        // reverted transactions are back in it: `GET /txs/{hash}` reads
        // under the same lock, so it finds a reverted transaction still
        // committed, or pending again (or gone), never missing half-way.
        let state = Arc::clone(&self.state);
        let mut pool = state.mempool.lock().unwrap_or_else(PoisonError::into_inner);
        let reverted = self.ledger.revert(&ancestor);
        // The committed state went back: what the pool knew of its
        // senders' accounts is read again.
        pool.forget_committed();
        let returned = match &reverted {
            Ok(removed) => return_to_mempool(&mut pool, &*state.store, removed),
            Err(_) => 0,
        };
        state.metrics.set_mempool(&pool);
        drop(pool);
        match reverted {
            Ok(removed) => self.after_revert(ancestor, &removed, returned),
            Err(StoreError::RevertBelowFinalized {
                finalized,
                ancestor: height,
            }) => self.halt(format_args!(
                "consensus asked to revert the chain to block {ancestor} at height {height}, \
                 below the finalized height {finalized}: a final block is never reverted, so \
                 this node's protocol state is wrong (local fault)"
            )),
            Err(StoreError::NotOnChain { .. }) => self.halt(format_args!(
                "consensus asked to revert the chain to block {ancestor}, which is not on the \
                 stored chain (local fault)"
            )),
            Err(e) => self.halt(format_args!(
                "reverting the chain to block {ancestor} failed: {e}"
            )),
        }
    }

    /// Metrics, events and status after a revert took `removed` (highest
    /// first) off the chain and `returned` of their transactions went back
    /// to the mempool.
    fn after_revert(&mut self, ancestor: Hash, removed: &[Block], returned: usize) {
        let Some(lowest) = removed.last() else {
            // Reverting to the head changes nothing.
            return;
        };
        let ancestor_height = Height(lowest.header().height.0.saturating_sub(1));
        let metrics = &self.state.metrics;
        metrics.set_height(ancestor_height.0);
        metrics.reorg(removed.len(), returned);
        tracing::warn!(
            %ancestor_height,
            %ancestor,
            depth = removed.len(),
            returned_txs = returned,
            "reorganization: reverted the chain"
        );
        let _ = self.state.events.send(
            ReorgEvent {
                ancestor_height,
                ancestor_hash: ancestor,
                reverted: removed.iter().map(Block::hash).collect(),
            }
            .into(),
        );
        if returned > 0 {
            self.state.txs_available.notify_one();
        }
    }

    /// Mempool, metrics, events and status after a block was stored (its
    /// state changes `changes`), with the chain final up to `finalized`.
    fn after_commit(&mut self, block: &Block, changes: &StateChanges, finalized: Height) {
        let height = block.header().height;
        let hash = block.hash();
        if let Ok(mut pool) = self.state.mempool.lock() {
            pool.remove_committed(block);
            pool.note_committed(&changes.accounts);
            self.state.metrics.set_mempool(&pool);
        }
        let metrics = &self.state.metrics;
        metrics.set_height(height.0);
        metrics.set_finalized_height(finalized.0);
        metrics.add_committed_txs(block.transactions.len() as u64);
        let age_ms = now_ms().saturating_sub(block.header().timestamp_ms);
        metrics.observe_commit_latency(age_ms as f64 / 1_000.0);
        tracing::info!(
            %height, %hash, txs = block.transactions.len(), "committed"
        );
        // Nobody listening is fine.
        let _ = self.state.events.send(
            BlockEvent {
                height,
                hash,
                tx_count: block.transactions.len(),
                timestamp_ms: block.header().timestamp_ms,
            }
            .into(),
        );
    }

    fn publish_status(&self) {
        let status = self.protocol.as_ref().map(P::status);
        let view = status.map_or(0, |s| s.view);
        let syncing = self.sync.is_fetching();
        let best_seen = self.sync.best_seen();
        let metrics = &self.state.metrics;
        metrics.set_view(view);
        if let Some(s) = status {
            metrics.observe_phase(view, s.phase);
        }
        metrics.set_unchecked_drops(status.map_or(0, |s| s.unchecked_drops));
        metrics.set_view_timeout(status.and_then(|s| s.view_timeout_ms).unwrap_or(0));
        metrics.set_sync(syncing.then_some(best_seen.0), syncing);
        let head = self
            .state
            .store
            .head()
            .ok()
            .flatten()
            .map_or(Height(0), |h| h.height());
        let mining = self.mining_status();
        let mut tips = self
            .protocol
            .as_ref()
            .map(P::chain_tips)
            .unwrap_or_default();
        tips.truncate(MAX_STATUS_TIPS);
        if let Ok(mut live) = self.state.status.write() {
            live.view = view;
            live.phase = status.map(|s| s.phase);
            live.view_timeout_ms = status.and_then(|s| s.view_timeout_ms);
            live.syncing = syncing;
            live.sync_target = (best_seen > head).then_some(best_seen);
            live.mining = mining;
            live.tips = tips;
        }
    }

    /// The miner's status, if this node mines.
    fn mining_status(&self) -> Option<MiningStatus> {
        let miner = self.miner.as_ref()?;
        Some(MiningStatus {
            address: self.setup.as_ref()?.tuning.miner?,
            threads: miner.threads(),
            hashrate_limit: miner.hashrate_limit(),
            hash_rate: self.last_hash_rate,
            working: self.work.is_some(),
            control: miner.control(),
        })
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
            ticket,
        } = message;
        match channel {
            net::Channel::Consensus => {
                if !self.remember(Hash::digest(&bytes)) {
                    self.state.metrics.dropped("duplicate");
                    self.judge(ticket, Verdict::Ignored);
                    return;
                }
                // Judged before it is fed: the relay forwards it while
                // this node acts on it.
                match self.verify_protocol_bytes(from, Channel::Consensus, &bytes) {
                    Some(message) => {
                        self.judge(ticket, Verdict::Valid);
                        self.on_protocol_message(from, Channel::Consensus, message, bytes.len());
                    }
                    None => self.judge(ticket, Verdict::Invalid),
                }
            }
            net::Channel::Transactions => {
                self.state
                    .metrics
                    .message_in("transactions", "tx_batch", bytes.len());
                // The ingest task judges it once it has checked it.
                if let Err(e) = self.ingest.try_send((from, bytes, ticket)) {
                    self.state.metrics.dropped("ingest_full");
                    let (_, _, ticket) = e.into_inner();
                    self.judge(ticket, Verdict::Ignored);
                }
            }
            net::Channel::Sync => {
                self.judge(ticket, Verdict::Ignored);
                self.on_sync(from, &bytes);
            }
        }
    }

    /// Tells the network what came of a gossiped message (relayed only if
    /// valid).
    fn judge(&self, ticket: Option<net::Ticket>, verdict: Verdict) {
        if let Some(ticket) = ticket {
            self.net().judge(ticket, verdict);
        }
    }

    /// Verifies bytes for the protocol and feeds it what passes; `size` is
    /// the message's size on the wire.
    fn on_protocol_bytes(&mut self, from: PublicKey, channel: Channel, bytes: &[u8], size: usize) {
        if let Some(message) = self.verify_protocol_bytes(from, channel, bytes) {
            self.on_protocol_message(from, channel, message, size);
        }
    }

    /// The protocol's message in `bytes`, or `None` if it does not verify
    /// (counted, and `from` reported).
    fn verify_protocol_bytes(
        &self,
        from: PublicKey,
        channel: Channel,
        bytes: &[u8],
    ) -> Option<P::Message> {
        tracing::trace!(%from, message = %P::describe(channel, bytes), "received");
        let sender = self.committee.as_ref().and_then(|c| c.index_of(&from));
        match P::verify(&self.context, sender, channel, bytes) {
            Ok(message) => Some(message),
            Err(e) => {
                let reason = P::reject_reason(&e);
                tracing::debug!("dropped a {channel:?} message from {from}: {e}");
                self.state.metrics.dropped(reason.label());
                self.net().report(&from, misbehaviour(reason));
                None
            }
        }
    }

    /// Feeds the protocol a verified message; `size` is its size on the
    /// wire.
    fn on_protocol_message(
        &mut self,
        from: PublicKey,
        channel: Channel,
        message: P::Message,
        size: usize,
    ) {
        self.state
            .metrics
            .message_in(wire_name(channel), P::message_kind(&message), size);
        if let Some(height) = P::finalized_height_hint(&message) {
            self.sync.saw_final(height);
        }
        self.reply_to = Some(from);
        self.feed(Input::Message(message));
        self.reply_to = None;
    }

    fn on_sync(&mut self, from: PublicKey, bytes: &[u8]) {
        match unframe(bytes) {
            Some(Frame::Protocol(body)) => {
                self.on_protocol_bytes(from, Channel::Sync, body, bytes.len());
            }
            Some(Frame::Node(body)) => match NodeSync::decode(body) {
                Ok(NodeSync::TxsRequest { gaps }) => {
                    self.state
                        .metrics
                        .message_in("sync", "txs_request", bytes.len());
                    txgossip::fill_gaps(&self.state, &from, &gaps);
                }
                Ok(message) => {
                    self.state.metrics.message_in("sync", "blocks", bytes.len());
                    let peers = self.live_peers();
                    let actions = self.sync.on_message(from, message, Instant::now(), &peers);
                    self.carry_out(actions);
                    self.publish_status();
                }
                Err(_) => {
                    self.state.metrics.dropped("undecodable");
                    self.net().report(&from, Misbehaviour::Malformed);
                }
            },
            None => {
                self.state.metrics.dropped("undecodable");
                self.net().report(&from, Misbehaviour::Malformed);
            }
        }
    }

    // ----- block sync -----

    /// Connected peers that are not banned.
    fn live_peers(&self) -> Vec<PublicKey> {
        net::live_peers(self.net())
    }

    fn on_status_tick(&mut self) {
        let peers = self.live_peers();
        self.state.metrics.set_peers(peers.len());
        if let Some(stats) = self.net().stats() {
            self.state.metrics.set_network(&stats);
        }
        if let Some(miner) = &self.miner
            && let Some(rate) = self
                .hash_rate
                .sample(std::time::Instant::now(), miner.hashes())
        {
            self.last_hash_rate = rate;
            self.state.metrics.set_hash_rate(rate);
        }
        // A halted node does not fetch: its final chain is not the
        // network's (proof-of-work confirmations that did not hold), so
        // every answer would look invalid and get an honest peer banned.
        // It still answers others' requests.
        if !self.halted {
            let actions = self.sync.on_tick(Instant::now(), &peers);
            self.carry_out(actions);
        }
        self.publish_status();
    }

    /// Carries out what block sync asked for, in order.
    fn carry_out(&mut self, actions: Vec<SyncAction>) {
        for action in actions {
            match action {
                SyncAction::Send(to, message) => self.send_node_sync(&to, &message),
                SyncAction::Apply { from, blocks } => {
                    let applied = self.apply_synced(&blocks);
                    let next = self.sync.applied(from, applied, Instant::now());
                    self.carry_out(next);
                }
                SyncAction::Report(peer, why) => self.net().report(&peer, why),
                SyncAction::Rejoin => {
                    if let Err(e) = self.restart() {
                        self.halt(format_args!("restarting consensus after sync failed: {e}"));
                    }
                }
            }
        }
    }

    fn send_node_sync(&self, to: &PublicKey, message: &NodeSync) {
        let bytes = message.encode();
        self.state
            .metrics
            .message_out("sync", message.kind(), bytes.len(), false);
        if self.net().send(to, net::Channel::Sync, bytes).is_err() {
            self.state.metrics.dropped("outbound_full");
        }
    }

    /// Stores blocks that block sync proved final, in order, up to the
    /// first that does not apply. A block the chain already holds (not
    /// final yet, proof of work) becomes final; one that conflicts with
    /// a stored block that is not final reverts the chain to its parent
    /// first.
    fn apply_synced(&mut self, blocks: &[Block]) -> Applied {
        let mut applied = Applied::default();
        for block in blocks {
            let height = block.header().height;
            match self.state.store.block_hash_at(height) {
                Ok(Some(stored)) if stored == block.hash() => {
                    self.finalize(height);
                    if self.halted {
                        break;
                    }
                    applied.count += 1;
                    continue;
                }
                Ok(Some(_)) => {
                    self.revert(block.header().parent);
                    if self.halted {
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.halt(format_args!("reading the chain for block sync failed: {e}"));
                    break;
                }
            }
            match self.ledger.commit(block, block.header().height) {
                Ok(changes) => {
                    self.after_commit(block, &changes, block.header().height);
                    applied.count += 1;
                }
                Err(e) if is_local(&e) => {
                    self.halt(format_args!("storing a synced block failed: {e}"));
                    break;
                }
                Err(e) => {
                    tracing::warn!("a synced block does not apply: {e}");
                    applied.rejected = true;
                    break;
                }
            }
        }
        applied
    }
}

/// Puts the transactions of reverted blocks (highest first) back in the
/// mempool, oldest block first so each sender's nonces come in order,
/// through the mempool's admission against the new head (`store`): those
/// that no longer apply, or do not fit, are dropped. Their signatures were
/// verified when the blocks were executed here. Returns how many went back.
fn return_to_mempool(pool: &mut Mempool, store: &dyn Store, removed: &[Block]) -> usize {
    let mut returned = 0;
    for tx in removed.iter().rev().flat_map(|b| &b.transactions) {
        let hash = tx.hash();
        match pool.admit_verified(tx.clone(), hash, Source::Peer, store) {
            Ok(_) => returned += 1,
            Err(e) => tracing::debug!(tx = %hash, "a reverted transaction stays out: {e}"),
        }
    }
    returned
}

/// The store's head block.
fn head_block(state: &NodeState) -> Result<Block, DriverError> {
    let head = state.store.head()?.ok_or(DriverError::NoHead)?;
    state.store.block(&head.hash)?.ok_or(DriverError::NoHead)
}

/// The metrics name of the network channel a protocol channel travels on.
fn wire_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Consensus => net::Channel::Consensus.name(),
        Channel::Sync => net::Channel::Sync.name(),
    }
}

/// How a rejection counts against the peer that sent it.
pub fn misbehaviour(reason: RejectReason) -> Misbehaviour {
    match reason {
        RejectReason::Undecodable | RejectReason::Malformed | RejectReason::NotLeader => {
            Misbehaviour::Malformed
        }
        RejectReason::NotAMember => Misbehaviour::NotAMember,
        RejectReason::BadSignature | RejectReason::BadCertificate => Misbehaviour::BadSignature,
    }
}

/// True if committing failed because of this node, not the block.
fn is_local(error: &CommitError) -> bool {
    matches!(
        error,
        CommitError::Store(_)
            | CommitError::NoHead
            | CommitError::Execution(ExecutionError::Storage(_))
    )
}

/// The miner's next block; pending forever for a node without a miner.
async fn next_found(mined: &mut Option<mpsc::Receiver<Found>>) -> Option<Found> {
    match mined {
        Some(mined) => mined.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_count_against_the_peer_by_kind() {
        for (reason, why) in [
            (RejectReason::Undecodable, Misbehaviour::Malformed),
            (RejectReason::Malformed, Misbehaviour::Malformed),
            (RejectReason::NotLeader, Misbehaviour::Malformed),
            (RejectReason::NotAMember, Misbehaviour::NotAMember),
            (RejectReason::BadSignature, Misbehaviour::BadSignature),
            (RejectReason::BadCertificate, Misbehaviour::BadSignature),
        ] {
            assert_eq!(misbehaviour(reason), why, "{reason}");
        }
    }
}
