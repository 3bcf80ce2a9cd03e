//! State after blocks that are not committed yet.
//!
//! A BFT protocol votes on (and builds on) blocks whose parents are still
//! uncommitted, so their transactions must be checked against the state
//! after those parents. [`Speculative`] keeps, for each such block, its
//! [`StateChanges`] (the accounts it changed and the accumulator after it),
//! keyed by hash: the state after an uncommitted block is read through the
//! layers of its uncommitted ancestors down to the committed [`Store`]. A
//! block whose parent has no state yet (it arrived through catch-up and was
//! never validated here) is executed from the nearest ancestor that has one,
//! using blocks remembered earlier ([`Speculative::observe`]). Both maps are
//! bounded and pruned on every commit. At the bound, a block on the
//! store's chain goes first (the lowest of them): its state can be read
//! back through undo records, and its block from the store. Only when
//! none of the lowest [`EVICTION_SCAN`] entries is on the chain does the
//! lowest entry of a side branch go, and a block built on it is then
//! reported as [`SpeculativeError::StateUnavailable`], never as invalid.
//!
//! The node and the deterministic simulator both use it, each with its own
//! store and transaction pool.
//!
//! The simulator's replicas are one process and execute the same blocks:
//! [`SharedExecutions`] lets them share each block's [`StateChanges`], so a
//! block is executed once per run rather than once per replica.

use crate::block::{Block, BlockHeader, Justification};
use crate::error::BlockError;
use crate::execute::{
    BlockBuilder, ExecutionError, Rules, StateChanges, StateView, execute_block_with,
};
use crate::fifo::FifoMap;
use crate::state::{Account, StateAccumulator};
use crate::store::{Head, Store, StoreError};
use crate::tx::Transaction;
use crate::types::{Address, Height};
use crate::verified::VerifiedTxs;
use phalanx_crypto::maps::HashMap;
use phalanx_crypto::{ChainId, Hash};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Speculative states (and, separately, remembered blocks) kept at most by
/// default.
pub const DEFAULT_MAX_SPECULATIVE_BLOCKS: usize = 1_024;

/// Entries (lowest first) looked at for one on the store's chain before
/// the lowest is evicted anyway.
pub const EVICTION_SCAN: usize = 64;

#[derive(Debug)]
struct State {
    header: BlockHeader,
    changes: StateChanges,
}

/// The state after an uncommitted block: its ancestors' changes, newest
/// first, then (when it forks off a committed block below the head) the
/// accounts as they were before each block above the fork, lowest first,
/// over the committed store.
pub struct Layered<'a, S: ?Sized> {
    layers: Vec<&'a BTreeMap<Address, Account>>,
    undone: Vec<BTreeMap<Address, Account>>,
    base: &'a S,
}

impl<S: ?Sized> std::fmt::Debug for Layered<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layered")
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl<S: StateView + ?Sized> StateView for Layered<'_, S> {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        for layer in self.layers.iter().copied().chain(&self.undone) {
            if let Some(account) = layer.get(address) {
                return Ok(*account);
            }
        }
        self.base.account(address)
    }
}

/// Why a block could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "block {block} at height {height} does not extend the head {head} at height {head_height}"
    )]
    NotOnHead {
        block: Hash,
        height: Height,
        head: Hash,
        head_height: Height,
    },
    #[error("the store has no head (genesis not initialized)")]
    NoHead,
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a block could not be built or validated speculatively, by
/// consequence: an invalid block is refused, an unavailable state may come
/// later (a missing ancestor), a storage fault stops the caller.
#[derive(Debug, thiserror::Error)]
pub enum SpeculativeError {
    /// The block (or an uncommitted ancestor it builds on) breaks a rule.
    #[error(transparent)]
    Invalid(#[from] BlockError),
    /// The state after `parent` cannot be computed here: an ancestor
    /// between it and the committed head is missing, or it does not extend
    /// the committed head at all.
    #[error("the state after block {parent} is not available here")]
    StateUnavailable { parent: Hash },
    /// Reading the committed state failed.
    #[error("reading the committed state failed: {0}")]
    Storage(#[from] StoreError),
}

impl From<ExecutionError> for SpeculativeError {
    fn from(e: ExecutionError) -> Self {
        match e {
            ExecutionError::Invalid(b) => SpeculativeError::Invalid(b),
            ExecutionError::Storage(s) => SpeculativeError::Storage(s),
        }
    }
}

/// Blocks executed (built, validated or committed) by any of the
/// [`Speculative`]s that share it, with the changes each made: bounded,
/// oldest forgotten first (a forgotten block is simply executed again).
///
/// Sharing is sound because a block's changes are a function of its hash
/// alone, given one set of [`Rules`]: the hash commits to the parent's
/// hash, so to the whole chain below and the state it leaves, and to the
/// block's transactions and header (state root included). Only blocks that
/// executed successfully are kept, and a [`Speculative`] takes an entry
/// only where it would have executed the block itself (its parent's state
/// reachable here), so what it accepts, refuses and reports as unavailable
/// is unchanged; only the work is saved. Every sharer must use the same
/// rules.
#[derive(Debug)]
pub struct SharedExecutions {
    inner: Mutex<FifoMap<StateChanges>>,
}

impl SharedExecutions {
    /// An empty set of at most `capacity` blocks (at least one).
    pub fn new(capacity: usize) -> SharedExecutions {
        SharedExecutions {
            inner: Mutex::new(FifoMap::new(capacity)),
        }
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The changes block `hash` made, if a sharer executed it.
    pub fn get(&self, hash: &Hash) -> Option<StateChanges> {
        self.lock().get(hash).cloned()
    }

    /// Records the changes block `hash` made.
    pub fn insert(&self, hash: Hash, changes: &StateChanges) {
        let mut inner = self.lock();
        if !inner.contains(&hash) {
            inner.insert(hash, changes.clone());
        }
    }

    fn lock(&self) -> MutexGuard<'_, FifoMap<StateChanges>> {
        // The map holds no invariant a panic elsewhere could break.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Speculative states of uncommitted blocks (see the module docs).
#[derive(Debug)]
pub struct Speculative {
    rules: Rules,
    /// Transactions whose signatures are known valid (see
    /// [`crate::verified`]); shared with the mempool's admission paths.
    verified: Arc<VerifiedTxs>,
    /// Blocks executed by other instances (the simulator's replicas).
    shared: Option<Arc<SharedExecutions>>,
    max_blocks: usize,
    states: HashMap<Hash, State>,
    /// `states` by height, lowest first, for eviction.
    states_by_height: BTreeSet<(Height, Hash)>,
    known: HashMap<Hash, Block>,
    /// `known` by height.
    known_by_height: BTreeSet<(Height, Hash)>,
}

impl Speculative {
    /// Nothing known yet; at most `max_blocks` states and as many blocks.
    pub fn new(rules: Rules, max_blocks: usize) -> Speculative {
        Speculative {
            rules,
            verified: Arc::new(VerifiedTxs::default()),
            shared: None,
            max_blocks: max_blocks.max(1),
            states: HashMap::default(),
            states_by_height: BTreeSet::new(),
            known: HashMap::default(),
            known_by_height: BTreeSet::new(),
        }
    }

    /// Shares `verified` (the transactions whose signatures the caller has
    /// checked) instead of a set of its own.
    pub fn with_verified(mut self, verified: Arc<VerifiedTxs>) -> Speculative {
        self.verified = verified;
        self
    }

    /// Shares executed blocks with the other holders of `shared` (see
    /// [`SharedExecutions`]; they must all use the same rules).
    pub fn with_shared_executions(mut self, shared: Arc<SharedExecutions>) -> Speculative {
        self.shared = Some(shared);
        self
    }

    /// The set of transactions whose signatures are known valid.
    pub fn verified(&self) -> &Arc<VerifiedTxs> {
        &self.verified
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.rules.chain_id
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Forgets everything (a crash).
    pub fn clear(&mut self) {
        self.states.clear();
        self.states_by_height.clear();
        self.known.clear();
        self.known_by_height.clear();
    }

    /// Speculative states held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Remembers a block above the finalized height that a later block may
    /// build on, so its state can be computed when a descendant needs it.
    pub fn observe<S: Store + ?Sized>(&mut self, store: &S, block: &Block) {
        let finalized = store.finalized_height().ok().flatten();
        if finalized.is_none_or(|h| block.header().height > h) {
            self.remember(store, block.hash(), block);
        }
    }

    /// A remembered block above the finalized height.
    pub fn block(&self, hash: &Hash) -> Option<&Block> {
        self.known.get(hash)
    }

    /// True if `block` has been validated (or built) here.
    pub fn has_state(&self, hash: &Hash) -> bool {
        self.states.contains_key(hash)
    }

    /// Builds a block on `parent` from the transactions `pick` chooses
    /// given the state after `parent` (those that do not apply are left
    /// out).
    pub fn build<S, F>(
        &mut self,
        store: &S,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
        pick: F,
    ) -> Result<Block, SpeculativeError>
    where
        S: Store + ?Sized,
        F: FnOnce(&dyn StateView) -> Vec<Transaction>,
    {
        let parent_hash = parent.hash();
        self.remember(store, parent_hash, parent);
        self.ensure_state(store, parent_hash, parent)?;
        let head = head_of(store)?;
        let unavailable = SpeculativeError::StateUnavailable {
            parent: parent_hash,
        };
        let (view, acc) = self
            .state_after(store, &head, parent_hash)
            .ok_or(unavailable)?;
        let candidates = pick(&view);
        let mut builder =
            BlockBuilder::new(self.rules.clone(), parent.header(), &view, &acc, proposer)
                .with_verified(&self.verified);
        for tx in candidates {
            // A transaction that does not apply is simply left out.
            let _ = builder.push(tx);
        }
        let (block, changes) = builder.finish(timestamp_ms, justification)?;
        drop(view);
        let hash = block.hash();
        self.share(hash, &changes);
        self.record(store, hash, &block, changes);
        Ok(block)
    }

    /// Checks that `block` applies on top of `parent` (whose state is
    /// computed first if need be).
    pub fn validate<S: Store + ?Sized>(
        &mut self,
        store: &S,
        parent: &Block,
        block: &Block,
    ) -> Result<(), SpeculativeError> {
        let hash = block.hash();
        if self.states.contains_key(&hash) {
            return Ok(());
        }
        let parent_hash = parent.hash();
        self.remember(store, parent_hash, parent);
        self.ensure_state(store, parent_hash, parent)?;
        self.execute(store, hash, block)
    }

    /// Executes `block` on the store's head (reusing its speculative state
    /// if it has one), commits it with `finalized` as the finalized height,
    /// and prunes what can no longer be built on (at or below the
    /// finalized height). Returns the block's changes.
    pub fn commit<S: Store + ?Sized>(
        &mut self,
        store: &S,
        block: &Block,
        finalized: Height,
    ) -> Result<StateChanges, CommitError> {
        let head = store.head()?.ok_or(CommitError::NoHead)?;
        let hash = block.hash();
        if block.header().parent != head.hash {
            return Err(CommitError::NotOnHead {
                block: hash,
                height: block.header().height,
                head: head.hash,
                head_height: head.height(),
            });
        }
        // The state stays (until the finalized height passes it): a state
        // built on this block must still find it if a reorganization takes
        // the block off the chain again.
        let changes = match self.states.get(&hash) {
            Some(s) => s.changes.clone(),
            None => match self.shared.as_ref().and_then(|shared| shared.get(&hash)) {
                Some(changes) => changes,
                None => {
                    let acc = store.accumulator()?;
                    let changes = execute_block_with(
                        &self.rules,
                        &head.header,
                        store,
                        &acc,
                        block,
                        &self.verified,
                    )?;
                    self.share(hash, &changes);
                    changes
                }
            },
        };
        store.commit_block(block, &changes, finalized)?;
        let floor = store.finalized_height()?.unwrap_or(finalized);
        self.prune(floor);
        Ok(changes)
    }

    /// Forgets states and blocks at or below `finalized`: nothing can build
    /// on them any more.
    pub fn prune(&mut self, finalized: Height) {
        let Some(above) = finalized.0.checked_add(1) else {
            self.clear();
            return;
        };
        let first_kept = (Height(above), Hash::default());
        let kept = self.states_by_height.split_off(&first_kept);
        for (_, hash) in std::mem::replace(&mut self.states_by_height, kept) {
            self.states.remove(&hash);
        }
        let kept = self.known_by_height.split_off(&first_kept);
        for (_, hash) in std::mem::replace(&mut self.known_by_height, kept) {
            self.known.remove(&hash);
        }
    }

    /// The state after block `hash`: layers down to the head or to a
    /// committed block below it (see the module docs), or `None` if the
    /// chain of states reaches neither.
    pub fn state_after<'a, S: Store + ?Sized>(
        &'a self,
        store: &'a S,
        head: &Head,
        hash: Hash,
    ) -> Option<(Layered<'a, S>, StateAccumulator)> {
        let mut layers = Vec::new();
        let mut accumulator = None;
        let mut cursor = hash;
        let mut cursor_height = self
            .states
            .get(&hash)
            .map(|s| s.header.height)
            .or_else(|| self.known.get(&hash).map(|b| b.header().height));
        let undone = loop {
            if cursor == head.hash {
                break Vec::new();
            }
            // A block on the chain is read back through undo records,
            // even if its state is still held: the states below it may
            // reach under the final height, where undo records end.
            if let Some(height) = cursor_height
                && self.is_committed_below_head(store, head, cursor, height)
            {
                let (undone, before) = self.undone_above(store, head, cursor, height)?;
                if accumulator.is_none() {
                    accumulator = before;
                }
                break undone;
            }
            if let Some(s) = self.states.get(&cursor) {
                if accumulator.is_none() {
                    accumulator = Some(s.changes.accumulator().clone());
                }
                layers.push(&s.changes.accounts);
                cursor = s.header.parent;
                cursor_height = s.header.height.0.checked_sub(1).map(Height);
                continue;
            }
            let height = match cursor_height {
                Some(h) => h,
                None => store.block(&cursor).ok()??.header().height,
            };
            let (undone, before) = self.undone_above(store, head, cursor, height)?;
            if accumulator.is_none() {
                accumulator = before;
            }
            break undone;
        };
        let accumulator = match accumulator {
            Some(a) => a,
            None => store.accumulator().ok()?,
        };
        Some((
            Layered {
                layers,
                undone,
                base: store,
            },
            accumulator,
        ))
    }

    /// For `hash`, a committed block at `height` below the head and at or
    /// above the finalized height: the accounts as they were before each
    /// block above it (lowest first), and the accumulator after it. `None`
    /// if it is no such block or an undo record is missing.
    #[allow(clippy::type_complexity)]
    fn undone_above<S: Store + ?Sized>(
        &self,
        store: &S,
        head: &Head,
        hash: Hash,
        height: Height,
    ) -> Option<(Vec<BTreeMap<Address, Account>>, Option<StateAccumulator>)> {
        if !self.is_committed_below_head(store, head, hash, height) {
            return None;
        }
        let mut undone = Vec::new();
        let mut accumulator = None;
        for h in height.0.saturating_add(1)..=head.height().0 {
            let undo = store.undo(Height(h)).ok()??;
            if accumulator.is_none() {
                accumulator = Some(StateAccumulator::from_bytes(&undo.accumulator)?);
            }
            undone.push(
                undo.accounts
                    .into_iter()
                    .map(|(a, account)| (a, account.unwrap_or_default()))
                    .collect(),
            );
        }
        Some((undone, accumulator))
    }

    /// True if `hash` is the committed block at `height`, below the head
    /// and at or above the finalized height (so its state can be read back
    /// through undo records).
    fn is_committed_below_head<S: Store + ?Sized>(
        &self,
        store: &S,
        head: &Head,
        hash: Hash,
        height: Height,
    ) -> bool {
        let finalized = store.finalized_height().ok().flatten();
        height < head.height()
            && finalized.is_some_and(|f| height >= f)
            && store.block_hash_at(height).ok().flatten() == Some(hash)
    }

    /// Makes sure the state after `block` can be read: every block from
    /// it down to the head (or to a committed block below the head) has a
    /// state. Remembered blocks whose state is missing (never validated
    /// here, or evicted at the bound) are executed again, lowest first.
    fn ensure_state<S: Store + ?Sized>(
        &mut self,
        store: &S,
        hash: Hash,
        block: &Block,
    ) -> Result<(), SpeculativeError> {
        let head = head_of(store)?;
        let mut missing = Vec::new();
        let mut cursor = hash;
        let mut height = block.header().height;
        loop {
            if cursor == head.hash || self.is_committed_below_head(store, &head, cursor, height) {
                break;
            }
            let parent = if let Some(s) = self.states.get(&cursor) {
                s.header.parent
            } else if let Some(b) = self.known.get(&cursor) {
                missing.push((cursor, b.clone()));
                b.header().parent
            } else {
                return Err(SpeculativeError::StateUnavailable { parent: cursor });
            };
            let Some(below) = height.0.checked_sub(1) else {
                return Err(SpeculativeError::StateUnavailable { parent: cursor });
            };
            cursor = parent;
            height = Height(below);
        }
        while let Some((hash, b)) = missing.pop() {
            self.execute(store, hash, &b)?;
        }
        Ok(())
    }

    /// Executes `block` on its parent's (known) state and records its own.
    fn execute<S: Store + ?Sized>(
        &mut self,
        store: &S,
        hash: Hash,
        block: &Block,
    ) -> Result<(), SpeculativeError> {
        let head = head_of(store)?;
        let parent_hash = block.header().parent;
        let unavailable = SpeculativeError::StateUnavailable {
            parent: parent_hash,
        };
        let parent_header = if let Some(b) = self.known.get(&parent_hash) {
            b.header().clone()
        } else if let Some(s) = self.states.get(&parent_hash) {
            s.header.clone()
        } else if head.hash == parent_hash {
            head.header.clone()
        } else if let Some(b) = store.block(&parent_hash)? {
            b.into_parts().0
        } else {
            return Err(unavailable);
        };
        let (view, acc) = self
            .state_after(store, &head, parent_hash)
            .ok_or(unavailable)?;
        // Taken only here, where the block would be executed: the parent's
        // state is reachable, so sharing changes no outcome.
        if let Some(changes) = self.shared.as_ref().and_then(|shared| shared.get(&hash)) {
            drop(view);
            self.record(store, hash, block, changes);
            return Ok(());
        }
        let result = execute_block_with(
            &self.rules,
            &parent_header,
            &view,
            &acc,
            block,
            &self.verified,
        );
        drop(view);
        let changes = result?;
        self.share(hash, &changes);
        self.record(store, hash, block, changes);
        Ok(())
    }

    /// Offers a block's changes to the other sharers, if any.
    fn share(&self, hash: Hash, changes: &StateChanges) {
        if let Some(shared) = &self.shared {
            shared.insert(hash, changes);
        }
    }

    /// Keeps `block` (whose hash is `hash`) for building on.
    fn remember<S: Store + ?Sized>(&mut self, store: &S, hash: Hash, block: &Block) {
        if self.known.contains_key(&hash) {
            return;
        }
        if self.known.len() >= self.max_blocks
            && let Some(victim) = evict(store, &mut self.known_by_height)
        {
            self.known.remove(&victim);
        }
        self.known_by_height.insert((block.header().height, hash));
        self.known.insert(hash, block.clone());
    }

    /// Keeps `block` (whose hash is `hash`) and the state after it.
    fn record<S: Store + ?Sized>(
        &mut self,
        store: &S,
        hash: Hash,
        block: &Block,
        changes: StateChanges,
    ) {
        self.remember(store, hash, block);
        if !self.states.contains_key(&hash)
            && self.states.len() >= self.max_blocks
            && let Some(victim) = evict(store, &mut self.states_by_height)
        {
            self.states.remove(&victim);
        }
        self.states_by_height.insert((block.header().height, hash));
        self.states.insert(
            hash,
            State {
                header: block.header().clone(),
                changes,
            },
        );
    }
}

/// Takes the entry to evict out of `index`: the lowest one on the
/// store's chain among the lowest [`EVICTION_SCAN`], else the lowest.
fn evict<S: Store + ?Sized>(store: &S, index: &mut BTreeSet<(Height, Hash)>) -> Option<Hash> {
    let on_chain = index
        .iter()
        .take(EVICTION_SCAN)
        .find(|(height, hash)| store.block_hash_at(*height).ok().flatten() == Some(*hash))
        .copied();
    let victim = on_chain.or_else(|| index.first().copied())?;
    index.remove(&victim);
    Some(victim.1)
}

/// The committed head; a store without one has not been initialized,
/// which is a fault of the caller's store, not of any block.
fn head_of<S: Store + ?Sized>(store: &S) -> Result<Head, SpeculativeError> {
    store
        .head()?
        .ok_or(SpeculativeError::Storage(StoreError::NoHead))
}
