//! Proof of work (Nakamoto consensus) on the protocol seam.
//!
//! Anyone may mine: a block is valid if its seal meets the target its
//! ancestors give (chain/src/pow.rs: compact targets, work, retargeting,
//! timestamps), its timestamp is after the median of its last 11
//! ancestors' and not too far ahead of this node's clock, and its
//! transactions and claimed reward apply on its parent's state (the
//! ledger's check, for side branches too). The node follows the valid
//! chain with the most cumulative work ([`tree`]'s fork choice).
//!
//! # What the caller is told
//!
//! The caller's chain (the store) is the best chain. When the best tip
//! changes the protocol emits [`Effect::Revert`] to the last block the old
//! and new chains share (if the old tip is not an ancestor of the new),
//! then [`Effect::Extend`] (`finalized: false`) for each block of the new
//! branch, lowest first. A block with `confirmations` confirmations (itself
//! and `confirmations - 1` blocks on top, Bitcoin's count) on the best
//! chain is final: [`Effect::Finalize`], and the tree forgets every branch
//! that does not contain it. A branch that forks below the finalized block
//! is never followed, however much work it has: it is counted
//! ([`Pow::forks_below_final`]), since it means k confirmations were not
//! enough.
//!
//! # Messages
//!
//! Blocks travel on [`Channel::Consensus`], encoded as they are stored; a
//! node forwards each new valid block once. A block whose parent is
//! unknown waits in a bounded orphan pool while the protocol asks the peer
//! that sent it for the parent and its ancestors ([`Effect::Reply`] with a
//! [`SyncMessage::Request`] on [`Channel::Sync`]); requests are answered
//! from the tree and the store.
//!
//! # Mining
//!
//! A node configured with a miner address asks its caller for work
//! ([`Effect::RequestWork`]): a block built by the ledger on the best tip,
//! with the next target and the full block reward in its seal. The caller
//! searches the nonce (real SHA-256d work in the node, a random process in
//! the simulator) and hands the sealed block back as [`Input::Mined`]. New
//! work is requested whenever the best tip changes, and at most every
//! [`TEMPLATE_REFRESH_MS`] when new transactions arrive.
//!
//! # Persistence
//!
//! Proof of work signs nothing, so there is nothing a restart could make
//! it contradict. It persists only the finalized block's hash and
//! cumulative work (under [`Pow::SAFETY_KEY`](Protocol::SAFETY_KEY)), so a
//! restart need not sum the work of the whole chain again.

mod double_spend;
mod selfish;
pub mod tree;

use crate::catchup::{self, SyncMessage, decode_sync};
use crate::ledger::{Ledger, LedgerError};
use crate::protocol::{
    Channel, Effect, Evidence, Fault, Input, Origin, Outgoing, ProofError, Protocol, RejectReason,
    Setup, SetupError, Status, Tuning, WorkRequest,
};
use crate::types::Byzantine;
use crate::types::TimeMs;
use double_spend::DoubleSpend;
use num_bigint::BigUint;
use phalanx_chain::block::MAX_BLOCK_BYTES;
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::genesis::PowParams;
use phalanx_chain::pow::{
    self, CompactTarget, MEDIAN_TIME_SPAN, PowError, Retarget, TargetError, WindowBlock,
};
use phalanx_chain::{
    Amount, Block, ConsensusKind, Genesis, Hash, Height, Justification, PowSeal, ValidatorIndex,
};
use selfish::Selfish;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use tree::{BlockTree, Entry, Tip, TreeError};

/// The behaviours a proof-of-work node has.
pub const BEHAVIOURS: [Byzantine; 2] = [Byzantine::Selfish, Byzantine::DoubleSpend];

/// A miner that withholds blocks on purpose.
#[derive(Debug)]
enum Attacker {
    Selfish(Selfish),
    DoubleSpend(DoubleSpend),
}

impl Attacker {
    fn tip<'a>(&self, tree: &'a BlockTree) -> Option<&'a Entry> {
        match self {
            Attacker::Selfish(s) => s.tip(tree),
            Attacker::DoubleSpend(d) => d.tip(tree),
        }
    }

    fn take_tip_moved(&mut self) -> bool {
        match self {
            Attacker::Selfish(s) => s.take_tip_moved(),
            Attacker::DoubleSpend(d) => d.take_tip_moved(),
        }
    }

    fn on_mined(&mut self, tree: &BlockTree, hash: Hash) -> Vec<Block> {
        match self {
            Attacker::Selfish(s) => s.on_mined(tree, hash),
            Attacker::DoubleSpend(d) => d.on_mined(tree, hash),
        }
    }

    fn on_public(&mut self, tree: &BlockTree, hash: Hash) -> Vec<Block> {
        match self {
            Attacker::Selfish(s) => s.on_public(tree, hash),
            Attacker::DoubleSpend(d) => d.on_public(tree, hash),
        }
    }
}

/// Blocks kept in the tree (the best chain above the finalized block and
/// the branches beside it), at most.
pub const MAX_TREE_BLOCKS: usize = 4_096;
/// Blocks waiting for their parent, at most.
pub const MAX_ORPHANS: usize = 256;
/// Hashes of invalid blocks remembered, at most.
const MAX_INVALID: usize = 4_096;
/// Parent requests remembered (not repeated), at most.
const MAX_REQUESTED: usize = 1_024;
/// An attacking miner finalizes blocks this deep at the earliest.
const ATTACKER_FINALITY_DEPTH: u64 = 100;
/// With new transactions waiting, a miner's template is rebuilt at most
/// this often.
pub const TEMPLATE_REFRESH_MS: u64 = 1_000;

/// What verifying proof-of-work messages needs: the chain's parameters.
#[derive(Debug, Clone)]
pub struct PowContext {
    pub params: PowParams,
    pub retarget: Retarget,
    pub limit: BigUint,
}

/// A verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A block whose seal meets its own target.
    Block(Box<Block>),
    /// Catch-up traffic (blocks in a response have valid seals too).
    Sync(SyncMessage),
}

/// The protocol's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Rebuild the mining template (new transactions arrived).
    RefreshTemplate,
}

/// Why a block's seal was refused, before any context is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the block carries no proof-of-work seal")]
    NotProofOfWork,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("target {target} is easier than the chain's limit")]
    AboveLimit { target: CompactTarget },
    #[error(transparent)]
    Work(PowError),
    #[error("block claims a reward of {claimed}, the chain allows at most {allowed}")]
    RewardTooHigh { claimed: Amount, allowed: Amount },
}

/// Why bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("undecodable: {0}")]
    Decode(#[from] DecodeError),
    #[error("block at height {height}: {error}")]
    Seal { height: Height, error: SealError },
}

/// Why a block with a valid seal was refused in context.
#[derive(Debug, thiserror::Error)]
pub enum BlockRejection {
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Wrong target or timestamp for its ancestors, or too far ahead.
    #[error(transparent)]
    Pow(#[from] PowError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// Checks a block's seal on its own: a proof-of-work justification, a
/// canonical target within the limit, a hash that meets it, a reward
/// within the chain's.
pub fn check_seal(context: &PowContext, block: &Block) -> Result<(), SealError> {
    let seal = block.header().pow_seal().ok_or(SealError::NotProofOfWork)?;
    let target = seal.target.target()?;
    if target > context.limit {
        return Err(SealError::AboveLimit {
            target: seal.target,
        });
    }
    if seal.reward > context.params.block_reward {
        return Err(SealError::RewardTooHigh {
            claimed: seal.reward,
            allowed: context.params.block_reward,
        });
    }
    pow::check_work(&block.header().pow_hash(), seal.target).map_err(SealError::Work)
}

/// The work a block's seal stands for (0 for a block without one).
fn block_work(block: &Block) -> BigUint {
    block
        .header()
        .pow_seal()
        .and_then(|s| s.target.target().ok())
        .map_or_else(BigUint::default, |t| pow::work(&t))
}

/// What [`Pow`] persists: the finalized block and its cumulative work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RootRecord {
    hash: Hash,
    /// Big-endian.
    work: Vec<u8>,
}

/// Where a block came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Gossip: forward it if new and valid.
    Peer,
    /// A catch-up answer.
    Sync,
    /// This node's miner.
    Mined,
}

/// Counters for reports and `/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowStats {
    /// Blocks dropped from the tree on finalization, off the final chain.
    pub stale_blocks: u64,
    /// Valid blocks seen that fork below the finalized block.
    pub forks_below_final: u64,
    /// Blocks refused as invalid.
    pub invalid_blocks: u64,
    /// Blocks this node mined (handed back by its miner).
    pub mined: u64,
    /// Blocks dropped without a verdict ([`Status::unchecked_drops`]).
    pub unchecked_drops: u64,
}

/// A proof-of-work node on the seam.
#[derive(Debug)]
pub struct Pow {
    context: PowContext,
    tuning: Tuning,
    /// The head the caller had when this instance was made.
    start_head: Block,
    /// `None` until [`Input::Start`].
    tree: Option<BlockTree>,
    /// The caller's head: what the effects so far have made its chain.
    told: Hash,
    /// Orphans by their parent's hash, and their arrival order.
    orphans: HashMap<Hash, Vec<Block>>,
    orphan_order: VecDeque<(Hash, Hash)>,
    invalid: HashSet<Hash>,
    invalid_order: VecDeque<Hash>,
    requested: HashSet<Hash>,
    requested_order: VecDeque<Hash>,
    refresh_armed: bool,
    stats: PowStats,
    /// Set for a miner that withholds blocks on purpose.
    attacker: Option<Attacker>,
    /// Branches forking below the final block, by tip.
    conflicts: HashMap<Hash, Conflict>,
    conflict_order: VecDeque<Hash>,
}

/// A branch that forks below the final block: where, and its work since.
#[derive(Debug, Clone)]
struct Conflict {
    fork_height: Height,
    /// Cumulative work of the fork point.
    fork_work: BigUint,
    /// Work of the branch above the fork point.
    work: BigUint,
}

/// Branch tips below the final block remembered, at most.
const MAX_CONFLICTS: usize = 1_024;

fn remember_conflict(
    map: &mut HashMap<Hash, Conflict>,
    order: &mut VecDeque<Hash>,
    hash: Hash,
    conflict: Conflict,
) {
    if map.insert(hash, conflict).is_none() {
        order.push_back(hash);
    }
    while order.len() > MAX_CONFLICTS {
        if let Some(old) = order.pop_front() {
            map.remove(&old);
        }
    }
}

impl Pow {
    /// Counters so far.
    pub fn stats(&self) -> PowStats {
        self.stats
    }

    /// Valid blocks seen that fork below the finalized block.
    pub fn forks_below_final(&self) -> u64 {
        self.stats.forks_below_final
    }

    /// The known tips, best first.
    pub fn tips(&self) -> Vec<Tip> {
        self.tree.as_ref().map(BlockTree::tips).unwrap_or_default()
    }

    /// The best tip's hash, height and cumulative work.
    pub fn best(&self) -> Option<(Hash, Height, BigUint)> {
        let best = self.tree.as_ref()?.best();
        Some((best.hash, best.height(), best.work.clone()))
    }

    /// The target the child of `parent` (in the tree) must carry.
    fn next_target(&self, tree: &BlockTree, parent: &Hash) -> Result<CompactTarget, TargetError> {
        let window = tree.window(parent, self.context.retarget.window.max(1));
        self.context.retarget.next(&window)
    }

    /// Checks `block` (whose seal was checked) against its parent in the
    /// tree: target, timestamp, and transactions on the parent's state.
    pub fn check_block(
        &self,
        block: &Block,
        now: TimeMs,
        ledger: &mut dyn Ledger,
    ) -> Result<(), BlockRejection> {
        let tree = self.tree()?;
        let parent_hash = block.header().parent;
        let parent = tree
            .get(&parent_hash)
            .ok_or(TreeError::UnknownParent(parent_hash))?;
        let seal = block.header().pow_seal().ok_or(SealError::NotProofOfWork)?;
        let expected = self
            .next_target(tree, &parent_hash)
            .map_err(SealError::from)?;
        if seal.target != expected {
            return Err(PowError::WrongTarget {
                expected,
                got: seal.target,
            }
            .into());
        }
        let timestamps: Vec<u64> = tree
            .window(&parent_hash, MEDIAN_TIME_SPAN)
            .iter()
            .map(|w| w.timestamp_ms)
            .collect();
        pow::check_timestamp(
            &timestamps,
            block.header().timestamp_ms,
            now,
            self.context.params.max_future_drift_ms,
        )?;
        let parent_block = parent.block.clone();
        match ledger.validate_block(&parent_block, block) {
            Err(LedgerError::Unavailable { .. }) => {
                // The parent's state was forgotten (a restart, a full
                // cache): hand the ledger the branch down to the root and
                // try once more.
                let mut cursor = tree.get(&parent_hash);
                while let Some(entry) = cursor {
                    ledger.observe_block(&entry.block);
                    if entry.hash == tree.root().hash {
                        break;
                    }
                    cursor = tree.get(&entry.block.header().parent);
                }
                ledger.validate_block(&parent_block, block)?;
            }
            other => other?,
        }
        Ok(())
    }

    fn tree(&self) -> Result<&BlockTree, TreeError> {
        self.tree
            .as_ref()
            .ok_or(TreeError::UnknownParent(self.start_head.hash()))
    }

    /// Builds the tree at start-up: the root is the block `confirmations -
    /// 1` below the head (or genesis), the blocks above it come from the
    /// ledger, and so does the history below it.
    fn start(&mut self, recovered: Option<Vec<u8>>, ledger: &mut dyn Ledger) -> Result<(), Fault> {
        let k = self.context.params.confirmations.max(1);
        let head = self.start_head.clone();
        // Walk down from the head: the blocks above the root, then the
        // root, then the history.
        // The root is never below what the caller already holds final.
        let finalized = ledger.finalized_height();
        let mut above = Vec::new();
        let mut root = head;
        while root.header().height.0 > 0
            && (above.len() as u64) < k - 1
            && finalized.is_none_or(|f| root.header().height > f)
        {
            let Some(parent) = ledger.committed_block(&root.header().parent) else {
                break;
            };
            above.push(root);
            root = parent;
        }
        // Work: from the persisted record if it is on this chain, else
        // from genesis.
        let record: Option<RootRecord> = recovered
            .as_deref()
            .and_then(|b| encoding::decode(b, 256).ok());
        let mut history = Vec::new();
        let history_len = self.context.retarget.window.max(MEDIAN_TIME_SPAN);
        let mut work_below = BigUint::default();
        let mut cursor = root.clone();
        let mut base_work = None;
        loop {
            if let Some(r) = &record
                && r.hash == cursor.hash()
            {
                base_work = Some(BigUint::from_bytes_be(&r.work));
                break;
            }
            if cursor.header().height.0 == 0 {
                base_work = Some(BigUint::default());
                break;
            }
            work_below += block_work(&cursor);
            let Some(parent) = ledger.committed_block(&cursor.header().parent) else {
                break;
            };
            if history.len() < history_len {
                history.push((parent.hash(), window_block(&self.context, &parent)));
            }
            cursor = parent;
        }
        // Fill the history if the record cut the walk short.
        let mut cursor = root.clone();
        let mut filled = Vec::new();
        while filled.len() < history_len && cursor.header().height.0 > 0 {
            let Some(parent) = ledger.committed_block(&cursor.header().parent) else {
                break;
            };
            filled.push((parent.hash(), window_block(&self.context, &parent)));
            cursor = parent;
        }
        if filled.len() > history.len() {
            history = filled;
        }
        history.reverse();
        let root_work = base_work.unwrap_or_default() + work_below;
        let mut tree = BlockTree::new(
            root.clone(),
            root_work,
            history,
            self.context.params.initial_target,
            self.tuning.first_seen_ties,
            MAX_TREE_BLOCKS,
        );
        for block in above.into_iter().rev() {
            let work = block_work(&block);
            if tree.insert(block, &work).is_err() {
                break;
            }
        }
        self.told = tree.best().hash;
        self.tree = Some(tree);
        Ok(())
    }

    /// Handles one block from `source`, then any orphans it unblocks.
    fn on_block(
        &mut self,
        block: Block,
        source: Source,
        now: TimeMs,
        ledger: &mut dyn Ledger,
        effects: &mut Vec<Effect<Timer>>,
    ) -> Result<(), Fault> {
        let mut queue = VecDeque::from([(block, source)]);
        while let Some((block, source)) = queue.pop_front() {
            let hash = block.hash();
            if self.invalid.contains(&hash) {
                continue;
            }
            let Some(tree) = self.tree.as_ref() else {
                return Ok(());
            };
            if tree.contains(&hash) {
                continue;
            }
            let root_height = tree.root().height();
            let parent = block.header().parent;
            if !tree.contains(&parent) {
                if tree.in_history(&hash) {
                    // One of our own final blocks (a catch-up answer
                    // starts low): not a branch.
                    continue;
                }
                if let Some(conflict) = self.conflict(tree, &block) {
                    self.stats.forks_below_final += 1;
                    let ours = tree.best().work.clone();
                    let fork_height = conflict.fork_height;
                    let heavier = conflict.fork_work.clone() + &conflict.work > ours;
                    remember_conflict(
                        &mut self.conflicts,
                        &mut self.conflict_order,
                        hash,
                        conflict,
                    );
                    if heavier {
                        return Err(Fault::FinalityViolated {
                            final_height: root_height,
                            fork_height,
                            branch_tip: hash,
                        });
                    }
                    continue;
                }
                if block.header().height <= root_height || ledger.committed_block(&parent).is_some()
                {
                    // Below the final block, from a fork point too deep to
                    // weigh.
                    if ledger.committed_block(&hash).is_none() {
                        self.stats.forks_below_final += 1;
                    }
                    continue;
                }
                self.add_orphan(block, parent, effects);
                continue;
            }
            // A seal error on a block from this node's own miner is a bug
            // in the miner; it is dropped like any invalid block.
            if source == Source::Mined && check_seal(&self.context, &block).is_err() {
                continue;
            }
            match self.check_block(&block, now, ledger) {
                Ok(()) => {}
                Err(BlockRejection::Ledger(LedgerError::Fault(fault))) => {
                    return Err(Fault::Local(fault));
                }
                Err(BlockRejection::Pow(PowError::TimestampTooFarAhead { .. }))
                | Err(BlockRejection::Ledger(LedgerError::Unavailable { .. }))
                | Err(BlockRejection::Tree(_)) => {
                    // Not the block's fault: it may come again (a child's
                    // parent request brings it back).
                    self.stats.unchecked_drops += 1;
                    continue;
                }
                Err(_) => {
                    self.mark_invalid(hash);
                    continue;
                }
            }
            let work = block_work(&block);
            let bytes = (source != Source::Sync).then(|| block.encode());
            let Some(tree) = self.tree.as_mut() else {
                return Ok(());
            };
            if tree.insert(block, &work).is_err() {
                continue;
            }
            if let Some(attacker) = self.attacker.as_mut()
                && let Some(tree) = self.tree.as_ref()
            {
                let publish = if source == Source::Mined {
                    self.stats.mined += 1;
                    attacker.on_mined(tree, hash)
                } else {
                    attacker.on_public(tree, hash)
                };
                for block in publish {
                    let bytes = block.encode();
                    effects.push(Effect::Broadcast(block_message(Origin::Authored, bytes)));
                }
                if let Some(children) = self.orphans.remove(&hash) {
                    queue.extend(children.into_iter().map(|b| (b, Source::Sync)));
                }
                continue;
            }
            match (source, bytes) {
                (Source::Mined, Some(bytes)) => {
                    self.stats.mined += 1;
                    effects.push(Effect::Broadcast(block_message(Origin::Authored, bytes)));
                }
                (Source::Peer, Some(bytes)) if self.tuning.forward => {
                    effects.push(Effect::Broadcast(block_message(Origin::Forwarded, bytes)));
                }
                _ => {}
            }
            if let Some(children) = self.orphans.remove(&hash) {
                queue.extend(children.into_iter().map(|b| (b, Source::Sync)));
            }
        }
        Ok(())
    }

    /// If `block` extends a branch that forks below the final block (or
    /// starts one from a final block still in the history), that branch
    /// with `block` on it.
    fn conflict(&self, tree: &BlockTree, block: &Block) -> Option<Conflict> {
        let parent = block.header().parent;
        let work = block_work(block);
        if let Some(c) = self.conflicts.get(&parent) {
            return Some(Conflict {
                fork_height: c.fork_height,
                fork_work: c.fork_work.clone(),
                work: &c.work + &work,
            });
        }
        let (fork_height, fork_work) = tree.final_work(&parent)?;
        if parent == tree.root().hash {
            // A child of the root is an ordinary block, not a conflict.
            return None;
        }
        Some(Conflict {
            fork_height,
            fork_work,
            work,
        })
    }

    fn add_orphan(&mut self, block: Block, parent: Hash, effects: &mut Vec<Effect<Timer>>) {
        let hash = block.hash();
        let waiting = self.orphans.entry(parent).or_default();
        if waiting.iter().any(|b| b.hash() == hash) {
            return;
        }
        waiting.push(block);
        self.orphan_order.push_back((parent, hash));
        while self.orphan_order.len() > MAX_ORPHANS {
            let Some((p, h)) = self.orphan_order.pop_front() else {
                break;
            };
            if let Some(list) = self.orphans.get_mut(&p) {
                list.retain(|b| b.hash() != h);
                if list.is_empty() {
                    self.orphans.remove(&p);
                }
            }
        }
        if remember(
            &mut self.requested,
            &mut self.requested_order,
            parent,
            MAX_REQUESTED,
        ) {
            effects.push(Effect::Reply(sync_message(
                Origin::Sync,
                &SyncMessage::Request { hash: parent },
            )));
        }
    }

    fn mark_invalid(&mut self, hash: Hash) {
        self.stats.invalid_blocks += 1;
        remember(
            &mut self.invalid,
            &mut self.invalid_order,
            hash,
            MAX_INVALID,
        );
        // Orphans waiting on it are invalid too.
        if let Some(children) = self.orphans.remove(&hash) {
            for child in children {
                self.mark_invalid(child.hash());
            }
        }
    }

    /// After blocks went in: moves the caller to the best tip, finalizes
    /// what is deep enough, and asks for new work if the tip moved.
    fn settle(
        &mut self,
        now: TimeMs,
        ledger: &mut dyn Ledger,
        effects: &mut Vec<Effect<Timer>>,
    ) -> Result<(), Fault> {
        let Some(tree) = self.tree.as_mut() else {
            return Ok(());
        };
        let best = tree.best().hash;
        if best == self.told {
            if self.attacker.as_mut().is_some_and(Attacker::take_tip_moved) {
                return self.request_work(now, ledger, effects);
            }
            return Ok(());
        }
        if let Some(s) = self.attacker.as_mut() {
            s.take_tip_moved();
        }
        let Some(fork) = tree.fork_point(&self.told, &best) else {
            return Ok(());
        };
        if fork != self.told {
            effects.push(Effect::Revert { ancestor: fork });
        }
        if let Some(path) = tree.path(&fork, &best) {
            for block in path {
                effects.push(Effect::Extend {
                    block: Box::new(block.clone()),
                    finalized: false,
                });
            }
        }
        self.told = best;
        // Finality: `confirmations` blocks from the tip down. An
        // attacker's own long private branch must not finalize it out of
        // the public chain it races, so it waits much longer.
        let mut k = self.context.params.confirmations.max(1);
        if self.attacker.is_some() {
            k = k.max(ATTACKER_FINALITY_DEPTH);
        }
        let tip_height = tree.best().height();
        let final_height = Height(tip_height.0.saturating_sub(k - 1));
        if final_height > tree.root().height()
            && let Some(new_root) = tree.ancestor_at(&best, final_height)
        {
            let stale = tree.advance_root(&new_root);
            self.stats.stale_blocks += stale.len() as u64;
            // The branches just cut off now fork below the final block:
            // remember them, so that if one keeps growing past the chain's
            // work it is seen (their blocks are known, so they would
            // otherwise be dropped as old).
            let tree = &*tree;
            let mut fork_of: HashMap<Hash, (Height, BigUint)> = HashMap::new();
            for (block, work) in &stale {
                let parent = block.header().parent;
                let fork = match fork_of.get(&parent) {
                    Some(f) => Some(f.clone()),
                    None => tree.final_work(&parent),
                };
                let Some((fork_height, fork_work)) = fork else {
                    continue;
                };
                fork_of.insert(block.hash(), (fork_height, fork_work.clone()));
                if *work < fork_work {
                    continue;
                }
                let branch_work = work - &fork_work;
                remember_conflict(
                    &mut self.conflicts,
                    &mut self.conflict_order,
                    block.hash(),
                    Conflict {
                        fork_height,
                        fork_work,
                        work: branch_work,
                    },
                );
            }
            effects.push(Effect::Finalize(final_height));
            let root = tree.root();
            let record = RootRecord {
                hash: root.hash,
                work: root.work.to_bytes_be(),
            };
            effects.push(Effect::Persist(encoding::encode(&record)));
            let root_height = root.height();
            self.orphans.retain(|_, list| {
                list.retain(|b| b.header().height > root_height);
                !list.is_empty()
            });
        }
        self.request_work(now, ledger, effects)
    }

    /// Asks the caller to mine on the best tip (if this node mines).
    fn request_work(
        &mut self,
        now: TimeMs,
        ledger: &mut dyn Ledger,
        effects: &mut Vec<Effect<Timer>>,
    ) -> Result<(), Fault> {
        let Some(miner) = self.tuning.miner else {
            return Ok(());
        };
        let Some(tree) = self.tree.as_ref() else {
            return Ok(());
        };
        let parent = self
            .attacker
            .as_ref()
            .and_then(|s| s.tip(tree))
            .unwrap_or_else(|| tree.best());
        let Ok(target) = self.next_target(tree, &parent.hash) else {
            return Ok(());
        };
        let median = tree
            .window(&parent.hash, MEDIAN_TIME_SPAN)
            .iter()
            .map(|w| w.timestamp_ms)
            .collect::<Vec<_>>();
        let after_median = pow::median_time_past(&median).map_or(0, |m| m.saturating_add(1));
        let timestamp = now.max(after_median);
        let seal = PowSeal {
            target,
            reward: self.context.params.block_reward,
            nonce: 0,
        };
        let parent_block = parent.block.clone();
        let parent_hash = parent.hash;
        match ledger.build_block(
            &parent_block,
            miner,
            timestamp,
            Justification::ProofOfWork(seal),
        ) {
            Ok(template) => effects.push(Effect::RequestWork(WorkRequest {
                parent: parent_hash,
                template: Box::new(template),
            })),
            Err(LedgerError::Fault(fault)) => return Err(Fault::Local(fault)),
            // Not now: the next tip or refresh tries again.
            Err(_) => {}
        }
        Ok(())
    }
}

/// A block's retarget data (the genesis block counts with the initial
/// target).
fn window_block(context: &PowContext, block: &Block) -> WindowBlock {
    WindowBlock {
        timestamp_ms: block.header().timestamp_ms,
        target: block
            .header()
            .pow_seal()
            .map_or(context.params.initial_target, |s| s.target),
    }
}

/// Inserts into a bounded set with its insertion order; false if present.
fn remember(set: &mut HashSet<Hash>, order: &mut VecDeque<Hash>, hash: Hash, max: usize) -> bool {
    if !set.insert(hash) {
        return false;
    }
    order.push_back(hash);
    while order.len() > max {
        if let Some(old) = order.pop_front() {
            set.remove(&old);
        }
    }
    true
}

fn block_message(origin: Origin, bytes: Vec<u8>) -> Outgoing {
    Outgoing {
        channel: Channel::Consensus,
        origin,
        kind: "block",
        bytes,
    }
}

fn sync_message(origin: Origin, message: &SyncMessage) -> Outgoing {
    Outgoing {
        channel: Channel::Sync,
        origin,
        kind: match message {
            SyncMessage::Request { .. } => "block-request",
            SyncMessage::Response { .. } => "block-response",
        },
        bytes: message.encode(),
    }
}

impl Protocol for Pow {
    type Context = PowContext;
    type Message = Message;
    type Timer = Timer;
    type Rejection = Rejection;

    const KIND: ConsensusKind = ConsensusKind::Pow;
    const SAFETY_KEY: &'static [u8] = b"pow/finalized";

    fn context(genesis: &Genesis, _unsafe_quorum: Option<usize>) -> Result<PowContext, SetupError> {
        if genesis.consensus != ConsensusKind::Pow {
            return Err(SetupError::WrongKind {
                genesis: genesis.consensus,
                protocol: ConsensusKind::Pow,
            });
        }
        let params = genesis.pow.clone().ok_or(SetupError::NoPowParams)?;
        let retarget = params.retarget().map_err(SetupError::PowTarget)?;
        Ok(PowContext {
            limit: retarget.limit.clone(),
            retarget,
            params,
        })
    }

    fn new(context: &PowContext, setup: Setup, committed: Block) -> Result<Self, SetupError> {
        crate::check_behaviour(Self::KIND, setup.tuning.byzantine, &BEHAVIOURS)?;
        let attacker = match setup.tuning.byzantine {
            Some(Byzantine::Selfish) => Some(Attacker::Selfish(Selfish::default())),
            Some(Byzantine::DoubleSpend) => Some(Attacker::DoubleSpend(DoubleSpend::new(
                context.params.confirmations,
            ))),
            _ => None,
        };
        Ok(Pow {
            context: context.clone(),
            tuning: setup.tuning,
            told: committed.hash(),
            start_head: committed,
            tree: None,
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            invalid: HashSet::new(),
            invalid_order: VecDeque::new(),
            requested: HashSet::new(),
            requested_order: VecDeque::new(),
            refresh_armed: false,
            stats: PowStats::default(),
            attacker,
            conflicts: HashMap::new(),
            conflict_order: VecDeque::new(),
        })
    }

    fn verify(
        context: &PowContext,
        _sender: Option<ValidatorIndex>,
        channel: Channel,
        bytes: &[u8],
    ) -> Result<Message, Rejection> {
        let seal = |block: &Block| {
            check_seal(context, block).map_err(|error| Rejection::Seal {
                height: block.header().height,
                error,
            })
        };
        match channel {
            Channel::Consensus => {
                let block: Block = encoding::decode(bytes, MAX_BLOCK_BYTES)?;
                seal(&block)?;
                Ok(Message::Block(Box::new(block)))
            }
            Channel::Sync => {
                let mut message = decode_sync(bytes)?;
                if let SyncMessage::Response { blocks } = &mut message {
                    // Every node has the genesis block (it has no seal).
                    blocks.retain(|b| b.header().height.0 > 0);
                    for block in blocks.iter() {
                        seal(block)?;
                    }
                }
                Ok(Message::Sync(message))
            }
        }
    }

    fn reject_reason(rejection: &Rejection) -> RejectReason {
        match rejection {
            Rejection::Decode(_) => RejectReason::Undecodable,
            Rejection::Seal {
                error: SealError::Work(_) | SealError::Target(_) | SealError::AboveLimit { .. },
                ..
            } => RejectReason::BadCertificate,
            Rejection::Seal { .. } => RejectReason::Malformed,
        }
    }

    fn message_kind(message: &Message) -> &'static str {
        match message {
            Message::Block(_) => "block",
            Message::Sync(SyncMessage::Request { .. }) => "block-request",
            Message::Sync(SyncMessage::Response { .. }) => "block-response",
        }
    }

    fn handle(
        &mut self,
        input: Input<Message, Timer>,
        now: TimeMs,
        ledger: &mut dyn Ledger,
    ) -> Result<Vec<Effect<Timer>>, Fault> {
        let mut effects = Vec::new();
        match input {
            Input::Start { recovered } => {
                self.start(recovered, ledger)?;
                // A restart may have been below a finalized height the
                // store already has; Finalize never moves it down.
                if let Some(tree) = &self.tree {
                    let root = tree.root().height();
                    if root.0 > 0 {
                        effects.push(Effect::Finalize(root));
                    }
                }
                self.request_work(now, ledger, &mut effects)?;
                return Ok(effects);
            }
            Input::Message(Message::Block(block)) => {
                self.on_block(*block, Source::Peer, now, ledger, &mut effects)?;
            }
            Input::Message(Message::Sync(SyncMessage::Request { hash })) => {
                let tree = self.tree.as_ref();
                let mut blocks = catchup::ancestors(hash, |h| {
                    tree.and_then(|t| t.get(h))
                        .map(|e| e.block.clone())
                        .or_else(|| ledger.committed_block(h))
                });
                blocks.retain(|b| b.header().height.0 > 0);
                if !blocks.is_empty() {
                    effects.push(Effect::Reply(sync_message(
                        Origin::Sync,
                        &SyncMessage::Response { blocks },
                    )));
                }
                return Ok(effects);
            }
            Input::Message(Message::Sync(SyncMessage::Response { blocks })) => {
                for block in blocks.into_iter().rev() {
                    self.requested.remove(&block.hash());
                    self.on_block(block, Source::Sync, now, ledger, &mut effects)?;
                }
            }
            Input::Mined(block) => {
                self.on_block(*block, Source::Mined, now, ledger, &mut effects)?;
            }
            Input::TransactionsAvailable => {
                if self.tuning.miner.is_some() && !self.refresh_armed {
                    self.refresh_armed = true;
                    effects.push(Effect::ArmTimer {
                        timer: Timer::RefreshTemplate,
                        at: now.saturating_add(TEMPLATE_REFRESH_MS),
                    });
                }
                return Ok(effects);
            }
            Input::Timer(Timer::RefreshTemplate) => {
                self.refresh_armed = false;
                self.request_work(now, ledger, &mut effects)?;
                return Ok(effects);
            }
        }
        self.settle(now, ledger, &mut effects)?;
        Ok(effects)
    }

    fn chain_tips(&self) -> Vec<crate::protocol::ChainTip> {
        self.tips()
            .into_iter()
            .map(|t| crate::protocol::ChainTip {
                hash: t.hash,
                height: t.height,
                work: t.work.to_str_radix(16),
                branch_len: t.branch_len,
                active: t.active,
            })
            .collect()
    }

    fn status(&self) -> Status {
        Status {
            view: self
                .tree
                .as_ref()
                .map_or(self.start_head.header().height.0, |t| t.best().height().0),
            phase: if self.tuning.miner.is_some() {
                "mining"
            } else {
                "following"
            },
            unchecked_drops: self.stats.unchecked_drops,
            view_timeout_ms: None,
        }
    }

    /// A run of blocks proves final the ones with `confirmations - 1`
    /// blocks of valid work on top of them within the run.
    fn prove_final(
        context: &PowContext,
        head: &Block,
        blocks: &[Block],
    ) -> Result<usize, ProofError> {
        let mut parent = head.hash();
        for (i, block) in blocks.iter().enumerate() {
            let height = block.header().height;
            let hash = block.hash();
            if block.header().parent != parent || height.0 != head.header().height.0 + i as u64 + 1
            {
                return Err(ProofError::NotLinked {
                    height,
                    hash,
                    expected_parent: parent,
                });
            }
            check_seal(context, block)
                .map_err(|_| ProofError::WrongJustification { height, hash })?;
            parent = hash;
        }
        let k = context.params.confirmations.max(1) as usize;
        Ok(blocks.len().saturating_sub(k - 1))
    }

    fn check_finalized(
        context: &PowContext,
        block: &Block,
        _lookup: &dyn Fn(&Hash) -> Option<Block>,
    ) -> Result<(), ProofError> {
        check_seal(context, block).map_err(|_| ProofError::WrongJustification {
            height: block.header().height,
            hash: block.hash(),
        })
    }

    /// Proof of work signs nothing: there is no equivocation to prove.
    fn check_evidence(_context: &PowContext, _evidence: &Evidence) -> bool {
        false
    }

    fn describe(channel: Channel, bytes: &[u8]) -> String {
        match channel {
            Channel::Consensus => match encoding::decode::<Block>(bytes, MAX_BLOCK_BYTES) {
                Ok(b) => format!(
                    "block height {} {} ({} txs)",
                    b.header().height,
                    catchup::short(&b.hash()),
                    b.transactions.len()
                ),
                Err(e) => format!("undecodable ({e})"),
            },
            Channel::Sync => catchup::describe(bytes),
        }
    }
}

#[cfg(test)]
mod tests;
