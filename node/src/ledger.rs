//! The node's side of block handling for the consensus protocol: blocks are
//! built from the mempool and validated against the state after their
//! (possibly uncommitted) parent, through [`Speculative`] over the node's
//! store.

use crate::shared::NodeState;
use phalanx_chain::speculative::{CommitError, DEFAULT_MAX_SPECULATIVE_BLOCKS, Speculative};
use phalanx_chain::{
    Address, Block, Hash, Height, Justification, Rules, StateChanges, Store, StoreError,
};
use phalanx_consensus::{InvalidBlock, Ledger, LedgerError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes of transactions per proposed block, at most (well under a network
/// message).
pub const MAX_PROPOSAL_TX_BYTES: usize = 2 * 1024 * 1024;

/// Uncommitted blocks kept on disk, so that after every node restarts the
/// blocks the latest certificates point at (a HotStuff QC, a PBFT prepared
/// certificate in a view change) can still be served to the next leader:
/// they are in no committed chain yet, and otherwise only in memory. One
/// slot per (view modulo 32, height modulo 8): a HotStuff view makes one
/// block, a PBFT view several consecutive heights.
const VIEW_SLOTS: u64 = 32;
const HEIGHT_SLOTS: u64 = 8;
const PENDING_SLOTS: u64 = VIEW_SLOTS * HEIGHT_SLOTS;

fn pending_slot(view: u64, height: Height) -> u64 {
    (view % VIEW_SLOTS) * HEIGHT_SLOTS + height.0 % HEIGHT_SLOTS
}

fn pending_key(slot: u64) -> Vec<u8> {
    let mut key = b"pending-block/".to_vec();
    key.extend_from_slice(&(slot % PENDING_SLOTS).to_be_bytes());
    key
}

/// A block's timestamp may be at most this far ahead of our clock.
pub const MAX_CLOCK_DRIFT_MS: u64 = 30_000;

/// Builds and validates blocks for the protocol.
#[derive(Debug)]
pub struct NodeLedger {
    state: Arc<NodeState>,
    speculative: Speculative,
    batch_size: usize,
    /// Which pending slot holds which block, read from disk once, so that a
    /// peer asking for an unknown hash costs a map lookup, not 32 decodes.
    pending_index: RefCell<Option<HashMap<Hash, u64>>>,
}

impl NodeLedger {
    pub fn new(state: Arc<NodeState>, batch_size: usize) -> NodeLedger {
        let speculative =
            Speculative::new(Rules::of(&state.genesis), DEFAULT_MAX_SPECULATIVE_BLOCKS)
                .with_verified(Arc::clone(&state.verified));
        NodeLedger {
            state,
            speculative,
            batch_size,
            pending_index: RefCell::new(None),
        }
    }

    fn store(&self) -> &dyn Store {
        &*self.state.store
    }

    /// Keeps an uncommitted block on disk (see [`PENDING_SLOTS`]).
    fn persist_pending(&self, block: &Block) {
        let Justification::Bft { view, .. } = block.header().justification else {
            return;
        };
        let slot = pending_slot(view, block.header().height);
        let bytes = phalanx_chain::encoding::encode(block);
        if let Err(e) = self.store().put_safety_data(&pending_key(slot), &bytes) {
            tracing::warn!("keeping an uncommitted block on disk failed: {e}");
            return;
        }
        self.with_pending_index(|index| {
            index.retain(|_, s| *s != slot);
            index.insert(block.hash(), slot);
        });
    }

    fn read_pending(&self, slot: u64) -> Option<Block> {
        let bytes = self
            .store()
            .safety_data(&pending_key(slot))
            .ok()
            .flatten()?;
        phalanx_chain::encoding::decode(&bytes, phalanx_chain::block::MAX_BLOCK_BYTES).ok()
    }

    /// Runs `f` on the slot index, reading the slots from disk the first
    /// time.
    fn with_pending_index<T>(&self, f: impl FnOnce(&mut HashMap<Hash, u64>) -> T) -> T {
        let mut cell = self.pending_index.borrow_mut();
        let index = cell.get_or_insert_with(|| {
            (0..PENDING_SLOTS)
                .filter_map(|slot| Some((self.read_pending(slot)?.hash(), slot)))
                .collect()
        });
        f(index)
    }

    /// An uncommitted block kept on disk, by hash.
    fn pending_block(&self, hash: &Hash) -> Option<Block> {
        let slot = self.with_pending_index(|index| index.get(hash).copied())?;
        self.read_pending(slot).filter(|b| b.hash() == *hash)
    }

    /// A block on `parent`, with transactions from the mempool if
    /// `with_transactions`, kept on disk until it commits.
    fn build(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
        with_transactions: bool,
    ) -> Result<Block, LedgerError> {
        let store = Arc::clone(&self.state.store);
        let state = Arc::clone(&self.state);
        let batch = self.batch_size;
        // A block's timestamp never goes below its parent's.
        let timestamp_ms = timestamp_ms.max(parent.header().timestamp_ms);
        let block = self.speculative.build(
            &*store,
            parent,
            proposer,
            timestamp_ms,
            justification,
            |view| match state.mempool.lock() {
                Ok(pool) if with_transactions => pool.select(view, batch, MAX_PROPOSAL_TX_BYTES),
                _ => Vec::new(),
            },
        )?;
        self.persist_pending(&block);
        Ok(block)
    }

    /// Executes (or reuses the validated state of) `block` on the head and
    /// commits it with the chain final up to `finalized`: stored
    /// atomically and flushed.
    pub fn commit(
        &mut self,
        block: &Block,
        finalized: Height,
    ) -> Result<StateChanges, CommitError> {
        let store = Arc::clone(&self.state.store);
        self.speculative.commit(&*store, block, finalized)
    }

    /// Rolls the chain back to `ancestor` ([`Store::revert_to`]: stored
    /// and flushed, never below the finalized height) and remembers the
    /// blocks taken off, so that a branch built on them can still be
    /// validated and they can be applied again. Returns them, highest
    /// first.
    pub fn revert(&mut self, ancestor: &Hash) -> Result<Vec<Block>, StoreError> {
        let store = Arc::clone(&self.state.store);
        let removed = store.revert_to(ancestor)?;
        for block in removed.iter().rev() {
            self.speculative.observe(&*store, block);
        }
        Ok(removed)
    }

    /// Remembers a block that arrived through catch-up, so its state can be
    /// computed when a child needs it.
    pub fn observe(&mut self, block: &Block) {
        let store = Arc::clone(&self.state.store);
        self.speculative.observe(&*store, block);
    }

    /// Forgets speculative states (after a block sync moved the head).
    pub fn reset(&mut self) {
        self.speculative.clear();
    }
}

impl Ledger for NodeLedger {
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError> {
        self.build(parent, proposer, timestamp_ms, justification, true)
    }

    fn build_empty_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError> {
        self.build(parent, proposer, timestamp_ms, justification, false)
    }

    fn validate_block(&mut self, parent: &Block, block: &Block) -> Result<(), LedgerError> {
        let now_ms = crate::driver::now_ms();
        // Proof of work checks its own genesis drift first and drops such
        // a block for now rather than refusing it for good (it becomes
        // valid as the clock moves on).
        let pow = self.state.genesis.pow.is_some();
        if !pow && block.header().timestamp_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
            tracing::warn!(
                height = %block.header().height,
                timestamp_ms = block.header().timestamp_ms,
                "refusing a block from the future"
            );
            return Err(LedgerError::Invalid(InvalidBlock::FromTheFuture {
                timestamp_ms: block.header().timestamp_ms,
                now_ms,
                max_drift_ms: MAX_CLOCK_DRIFT_MS,
            }));
        }
        let store = Arc::clone(&self.state.store);
        self.speculative.validate(&*store, parent, block)?;
        self.persist_pending(block);
        Ok(())
    }

    /// Counts ready transactions only: a pool full of transactions above
    /// nonce gaps makes no batch (it made HotStuff propose nearly empty
    /// blocks without pause).
    fn batch_ready(&self) -> bool {
        let ready = self.state.mempool.lock().map(|m| m.ready()).unwrap_or(0);
        ready >= self.batch_size
    }

    fn observe_block(&mut self, block: &Block) {
        self.observe(block);
    }

    fn has_pending_transactions(&self) -> bool {
        // Ready ones: transactions stuck above a nonce gap cannot go into a
        // block. A poisoned lock: say yes, so the leader does not idle.
        self.state.mempool.lock().map_or(true, |m| m.ready() > 0)
    }

    /// Committed blocks, and the uncommitted ones kept on disk (so a peer
    /// asking for the block a QC certifies gets it even after we
    /// restarted).
    fn finalized_height(&self) -> Option<Height> {
        self.store().finalized_height().ok().flatten()
    }

    fn committed_block(&self, hash: &Hash) -> Option<Block> {
        self.store()
            .block(hash)
            .ok()
            .flatten()
            .or_else(|| self.pending_block(hash))
    }
}
