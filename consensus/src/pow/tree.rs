//! The block tree of a proof-of-work node: every valid block above the
//! finalized one (the root), with its cumulative work, and the choice of
//! the best tip.
//!
//! # Fork choice
//!
//! The best tip is the block with the most cumulative work. Between tips of
//! equal work the one with the lower block hash wins, so every node that
//! holds the same blocks picks the same tip whatever order they arrived in.
//! (With `first_seen_ties`, the tip seen first wins instead, Bitcoin Core's
//! rule; the simulator uses it to model a network where honest miners
//! never switch to an attacker's equal branch.)
//!
//! The tree is pure data: it checks only that a block links to a parent it
//! holds. Whether a block is valid (its seal, target, timestamp and
//! transactions) is decided before it is inserted.

use num_bigint::BigUint;
use phalanx_chain::pow::{CompactTarget, WindowBlock};
use phalanx_chain::{Block, Hash, Height};
use std::collections::{HashMap, VecDeque};

/// Ancestors below the root kept for retargeting and the median-time-past
/// rule, at most.
pub const MAX_HISTORY: usize = 2_016 + 11;

/// One block in the tree.
#[derive(Debug, Clone)]
pub struct Entry {
    pub block: Block,
    pub hash: Hash,
    /// Cumulative work from genesis (or from where this node started
    /// counting; the same origin for every block of one tree).
    pub work: BigUint,
    /// Arrival order (for first-seen ties).
    seen: u64,
}

impl Entry {
    pub fn height(&self) -> Height {
        self.block.header().height
    }

    /// Its retarget data; a block without a seal (genesis) counts with
    /// `genesis_target`.
    fn window_block(&self, genesis_target: CompactTarget) -> WindowBlock {
        WindowBlock {
            timestamp_ms: self.block.header().timestamp_ms,
            target: self
                .block
                .header()
                .pow_seal()
                .map_or(genesis_target, |s| s.target),
        }
    }
}

/// A tip of the tree, as `/status` shows it (Bitcoin's `getchaintips`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub hash: Hash,
    pub height: Height,
    pub work: BigUint,
    /// Blocks from the tip down to the best chain (0 for the best tip).
    pub branch_len: u64,
    pub active: bool,
}

/// Why a block could not go into the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("parent {0} is not in the tree")]
    UnknownParent(Hash),
    #[error("block at height {got} on a parent at height {parent}")]
    WrongHeight { parent: Height, got: Height },
    #[error("the tree is full ({0} blocks) and the block would not be the best tip")]
    Full(usize),
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct BlockTree {
    entries: HashMap<Hash, Entry>,
    children: HashMap<Hash, Vec<Hash>>,
    root: Hash,
    best: Hash,
    first_seen_ties: bool,
    next_seen: u64,
    max_blocks: usize,
    /// The target the genesis block counts with.
    genesis_target: CompactTarget,
    /// The root's ancestors (hash, timestamp and target), oldest first.
    history: VecDeque<(Hash, WindowBlock)>,
}

impl BlockTree {
    /// A tree holding only `root` (the finalized block) with cumulative
    /// work `root_work`; `history` is its ancestors, oldest first.
    pub fn new(
        root: Block,
        root_work: BigUint,
        history: Vec<(Hash, WindowBlock)>,
        genesis_target: CompactTarget,
        first_seen_ties: bool,
        max_blocks: usize,
    ) -> BlockTree {
        let hash = root.hash();
        let mut history: VecDeque<(Hash, WindowBlock)> = history.into();
        while history.len() > MAX_HISTORY {
            history.pop_front();
        }
        let entry = Entry {
            block: root,
            hash,
            work: root_work,
            seen: 0,
        };
        BlockTree {
            entries: HashMap::from([(hash, entry)]),
            children: HashMap::new(),
            root: hash,
            best: hash,
            first_seen_ties,
            next_seen: 1,
            max_blocks: max_blocks.max(2),
            genesis_target,
            history,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn root(&self) -> &Entry {
        self.entry(&self.root)
    }

    pub fn best(&self) -> &Entry {
        self.entry(&self.best)
    }

    /// The entry of a hash that is in the tree (the root and the best tip
    /// always are).
    fn entry(&self, hash: &Hash) -> &Entry {
        match self.entries.get(hash) {
            Some(e) => e,
            // The root and the best tip are never removed; any other hash
            // passed here was read from the tree just before.
            None => unreachable_entry(hash),
        }
    }

    pub fn get(&self, hash: &Hash) -> Option<&Entry> {
        self.entries.get(hash)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// True if `a` is a better tip than `b` (see the module docs).
    pub fn better(&self, a: &Entry, b: &Entry) -> bool {
        match a.work.cmp(&b.work) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if self.first_seen_ties => a.seen < b.seen,
            std::cmp::Ordering::Equal => a.hash < b.hash,
        }
    }

    /// Inserts a block whose parent is in the tree, with `work` its own
    /// work; returns true if it became the best tip.
    pub fn insert(&mut self, block: Block, work: &BigUint) -> Result<bool, TreeError> {
        let hash = block.hash();
        if self.entries.contains_key(&hash) {
            return Ok(false);
        }
        let parent_hash = block.header().parent;
        let parent = self
            .entries
            .get(&parent_hash)
            .ok_or(TreeError::UnknownParent(parent_hash))?;
        if parent.height().next() != Some(block.header().height) {
            return Err(TreeError::WrongHeight {
                parent: parent.height(),
                got: block.header().height,
            });
        }
        let entry = Entry {
            block,
            hash,
            work: &parent.work + work,
            seen: self.next_seen,
        };
        let becomes_best = self.better(&entry, self.best());
        if self.entries.len() >= self.max_blocks && !becomes_best {
            return Err(TreeError::Full(self.max_blocks));
        }
        self.next_seen += 1;
        self.entries.insert(hash, entry);
        self.children.entry(parent_hash).or_default().push(hash);
        if becomes_best {
            self.best = hash;
        }
        Ok(becomes_best)
    }

    /// The (timestamp, target) of `hash` and its ancestors, oldest first,
    /// at most `n` of them, continuing below the root into the history.
    pub fn window(&self, hash: &Hash, n: usize) -> Vec<WindowBlock> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = self.entries.get(hash);
        while let Some(entry) = cursor {
            if out.len() >= n {
                break;
            }
            out.push(entry.window_block(self.genesis_target));
            if entry.hash == self.root {
                break;
            }
            cursor = self.entries.get(&entry.block.header().parent);
        }
        for (_, w) in self.history.iter().rev() {
            if out.len() >= n {
                break;
            }
            out.push(*w);
        }
        out.reverse();
        out
    }

    /// The hash of the ancestor of `hash` at `height` (itself at its own).
    pub fn ancestor_at(&self, hash: &Hash, height: Height) -> Option<Hash> {
        let mut cursor = self.entries.get(hash)?;
        while cursor.height() > height {
            cursor = self.entries.get(&cursor.block.header().parent)?;
        }
        (cursor.height() == height).then_some(cursor.hash)
    }

    /// The last block both `a` and `b` descend from (both in the tree).
    pub fn fork_point(&self, a: &Hash, b: &Hash) -> Option<Hash> {
        let (mut x, mut y) = (self.entries.get(a)?, self.entries.get(b)?);
        while x.height() > y.height() {
            x = self.entries.get(&x.block.header().parent)?;
        }
        while y.height() > x.height() {
            y = self.entries.get(&y.block.header().parent)?;
        }
        while x.hash != y.hash {
            x = self.entries.get(&x.block.header().parent)?;
            y = self.entries.get(&y.block.header().parent)?;
        }
        Some(x.hash)
    }

    /// The blocks from just above `ancestor` up to `tip`, lowest first.
    pub fn path(&self, ancestor: &Hash, tip: &Hash) -> Option<Vec<&Block>> {
        let mut out = Vec::new();
        let mut cursor = self.entries.get(tip)?;
        while cursor.hash != *ancestor {
            out.push(&cursor.block);
            if cursor.hash == self.root {
                return None;
            }
            cursor = self.entries.get(&cursor.block.header().parent)?;
        }
        out.reverse();
        Some(out)
    }

    /// Makes `new_root` (a block on the best chain) the root: drops every
    /// block that does not descend from it and moves the blocks from the
    /// old root up to it into the history. Returns the blocks dropped that
    /// were not below it on the best chain (stale branches), lowest first,
    /// with their cumulative work.
    pub fn advance_root(&mut self, new_root: &Hash) -> Vec<(Block, BigUint)> {
        let Some(target) = self.entries.get(new_root) else {
            return Vec::new();
        };
        if target.height() <= self.root().height() {
            return Vec::new();
        }
        // The blocks from the old root (exclusive) to the new root
        // (inclusive) join the history... the old root itself first.
        let mut chain = Vec::new();
        let mut cursor = new_root;
        while let Some(e) = self.entries.get(cursor) {
            chain.push(e.hash);
            if e.hash == self.root {
                break;
            }
            cursor = &e.block.header().parent;
        }
        chain.reverse();
        // chain = [old root, ..., new root]; all but the new root become
        // history.
        for hash in chain.iter().take(chain.len().saturating_sub(1)) {
            if let Some(e) = self.entries.get(hash) {
                self.history
                    .push_back((*hash, e.window_block(self.genesis_target)));
            }
        }
        while self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
        // Keep the new root's descendants.
        let mut keep = std::collections::HashSet::new();
        let mut stack = vec![*new_root];
        while let Some(h) = stack.pop() {
            keep.insert(h);
            if let Some(children) = self.children.get(&h) {
                stack.extend(children.iter().copied());
            }
        }
        let on_chain: std::collections::HashSet<Hash> = chain.into_iter().collect();
        let mut stale = Vec::new();
        let dropped: Vec<Hash> = self
            .entries
            .keys()
            .filter(|h| !keep.contains(*h))
            .copied()
            .collect();
        for h in dropped {
            if let Some(e) = self.entries.remove(&h)
                && !on_chain.contains(&h)
            {
                stale.push((e.block, e.work));
            }
            self.children.remove(&h);
        }
        self.root = *new_root;
        stale.sort_by_key(|(b, _)| b.header().height);
        stale
    }

    /// Every tip (a block without children), best first.
    pub fn tips(&self) -> Vec<Tip> {
        let best = self.best();
        let mut tips: Vec<Tip> = self
            .entries
            .values()
            .filter(|e| self.children.get(&e.hash).is_none_or(Vec::is_empty))
            .map(|e| {
                let fork = self.fork_point(&e.hash, &best.hash).unwrap_or(self.root);
                let fork_height = self.entries.get(&fork).map_or(Height(0), Entry::height);
                Tip {
                    hash: e.hash,
                    height: e.height(),
                    work: e.work.clone(),
                    branch_len: e.height().0.saturating_sub(fork_height.0),
                    active: e.hash == best.hash,
                }
            })
            .collect();
        tips.sort_by(|a, b| b.active.cmp(&a.active).then(b.work.cmp(&a.work)));
        tips
    }

    /// True if `hash` is one of the root's ancestors still in the
    /// history (a final block of this chain).
    pub fn in_history(&self, hash: &Hash) -> bool {
        self.history.iter().any(|(h, _)| h == hash)
    }

    /// For the root or one of its ancestors still in the history: its
    /// height and cumulative work.
    pub fn final_work(&self, hash: &Hash) -> Option<(Height, BigUint)> {
        let root = self.root();
        if *hash == root.hash {
            return Some((root.height(), root.work.clone()));
        }
        let target_work = |w: &WindowBlock| {
            w.target
                .target()
                .map(|t| phalanx_chain::pow::work(&t))
                .unwrap_or_default()
        };
        let mut work = root.work.clone();
        let mut height = root.height();
        let mut below = root.window_block(self.genesis_target);
        for (h, w) in self.history.iter().rev() {
            // Going down one block takes off the work of the one above.
            let above = target_work(&below);
            if work < above {
                return None;
            }
            work -= above;
            height = Height(height.0.checked_sub(1)?);
            if h == hash {
                return Some((height, work));
            }
            below = *w;
        }
        None
    }

    /// The target compact form of a block in the tree.
    pub fn target_of(&self, hash: &Hash) -> Option<CompactTarget> {
        Some(self.entries.get(hash)?.block.header().pow_seal()?.target)
    }
}

#[cold]
fn unreachable_entry(hash: &Hash) -> ! {
    // An internal invariant (the root and best tip stay in the tree), not
    // anything a peer can cause.
    #[allow(clippy::panic)]
    {
        panic!("block tree lost block {hash}, which it must keep")
    }
}
