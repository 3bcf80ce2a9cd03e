//! The block tree: the last committed block (the root) and the uncommitted
//! blocks that descend from it, with chained HotStuff's three-chain walk.
//!
//! Every block the tree holds has its parent in the tree (or is the root),
//! so a walk up from any block ends at the root. Committing moves the root
//! up and drops every block that does not descend from the new root: no
//! conflicting branch can commit after it with at most f faults.

use super::messages::{QuorumCert, block_view, parent_cert};
use crate::catchup;
use crate::ledger::Ledger;
use crate::types::View;
use phalanx_chain::{Block, BlockHeader, Hash, Height};
use phalanx_crypto::maps::{HashMap, HashSet};

/// The blocks a replica holds, from the committed root up.
#[derive(Debug)]
pub(super) struct BlockTree {
    /// Uncommitted blocks, plus the last committed one (the root).
    blocks: HashMap<Hash, Block>,
    root: Hash,
    /// Blocks held at most (see `Config::max_pending_blocks`).
    capacity: usize,
}

/// What a new block `b*` tells the tree's owner, by chained HotStuff's
/// update: `b*` carries a QC for `b''`, `b''` one for `b'`, `b'` one for `b`.
#[derive(Debug, Default)]
pub(super) struct ChainUpdate {
    /// The QC for `b''`: a candidate for the highest QC.
    pub high_qc: Option<QuorumCert>,
    /// The QC for `b'` (two-chain): a candidate for the lock.
    pub lock: Option<QuorumCert>,
    /// `b`, if `b''`, `b'` and `b` are direct parents in consecutive views
    /// (three-chain): it commits, with its uncommitted ancestors.
    pub commit: Option<Hash>,
}

impl BlockTree {
    /// A tree holding only `committed`, the root.
    pub fn new(committed: Block, capacity: usize) -> BlockTree {
        let root = committed.hash();
        let mut blocks = HashMap::default();
        blocks.insert(root, committed);
        BlockTree {
            blocks,
            root,
            capacity,
        }
    }

    /// The last committed block's hash.
    pub fn root(&self) -> Hash {
        self.root
    }

    pub fn get(&self, hash: &Hash) -> Option<&Block> {
        self.blocks.get(hash)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Adds `block` if it is new, its parent is held and there is room.
    /// Returns its hash if it was added.
    pub fn insert(&mut self, block: Block) -> Option<Hash> {
        let hash = block.hash();
        if self.blocks.contains_key(&hash)
            || !self.blocks.contains_key(&block.header().parent)
            || self.blocks.len() >= self.capacity
        {
            return None;
        }
        self.blocks.insert(hash, block);
        Some(hash)
    }

    /// A certified block that is not the root and not after it in view can
    /// never extend the committed chain: not worth fetching.
    pub fn could_extend_root(&self, cert: &QuorumCert) -> bool {
        let root_view = self
            .blocks
            .get(&self.root)
            .and_then(block_view)
            .unwrap_or_default();
        cert.block == self.root || View(cert.view) > root_view
    }

    /// True if `block` is `ancestor` or descends from it through blocks held.
    pub fn extends(&self, block: &Block, ancestor: &Hash) -> bool {
        self.hash_extends(block.hash(), block.header(), ancestor)
    }

    /// [`BlockTree::extends`] for the block with `hash` and `header`.
    fn hash_extends(&self, hash: Hash, header: &BlockHeader, ancestor: &Hash) -> bool {
        let mut hash = hash;
        let mut header = header;
        loop {
            if hash == *ancestor {
                return true;
            }
            if hash == self.root || header.height == Height(0) {
                return false;
            }
            hash = header.parent;
            match self.blocks.get(&hash) {
                Some(b) => header = b.header(),
                None => return false,
            }
        }
    }

    /// True if `block` or an uncommitted ancestor of it carries
    /// transactions: they commit only once three more blocks follow, so a
    /// leader proposes without waiting for a batch.
    pub fn uncommitted_transactions(&self, block: &Block) -> bool {
        let mut cursor = Some(block);
        while let Some(b) = cursor {
            if b.hash() == self.root {
                return false;
            }
            if !b.transactions.is_empty() {
                return true;
            }
            cursor = self.blocks.get(&b.header().parent);
        }
        false
    }

    /// Chained HotStuff's walk from a new block `b*` down its certified
    /// ancestors, as far as the tree holds them.
    pub fn chain_update(&self, b_star: &Block) -> ChainUpdate {
        let mut update = ChainUpdate::default();
        let Some(qc_b2) = parent_cert(b_star) else {
            return update;
        };
        update.high_qc = Some(qc_b2.clone());
        let Some(qc_b1) = self.blocks.get(&qc_b2.block).and_then(parent_cert) else {
            return update;
        };
        update.lock = Some(qc_b1.clone());
        let Some(qc_b) = self.blocks.get(&qc_b1.block).and_then(parent_cert) else {
            return update;
        };
        let consecutive = qc_b2.view == qc_b1.view + 1 && qc_b1.view == qc_b.view + 1;
        if consecutive && self.blocks.contains_key(&qc_b.block) {
            update.commit = Some(qc_b.block);
        }
        update
    }

    /// Commits `hash`: makes it the root and returns it with its
    /// uncommitted ancestors, in height order. Returns nothing, and changes
    /// nothing, if `hash` does not descend from the root through blocks held.
    pub fn commit(&mut self, hash: Hash) -> Vec<Block> {
        let root_height = self.blocks.get(&self.root).map(|b| b.header().height);
        let mut chain = Vec::new();
        let mut cursor = hash;
        while cursor != self.root {
            let Some(block) = self.blocks.get(&cursor) else {
                return Vec::new();
            };
            if Some(block.header().height) <= root_height {
                // Not a descendant of the root: a conflicting commit would
                // break safety. It cannot happen with at most f faults;
                // refuse rather than diverge.
                return Vec::new();
            }
            chain.push(block.clone());
            cursor = block.header().parent;
        }
        chain.reverse();
        self.root = hash;
        self.prune();
        chain
    }

    /// Drops blocks that no longer extend the committed root.
    fn prune(&mut self) {
        let root_height = self
            .blocks
            .get(&self.root)
            .map(|b| b.header().height)
            .unwrap_or_default();
        let keep: HashSet<Hash> = self
            .blocks
            .iter()
            .filter(|(hash, block)| {
                **hash == self.root
                    || (block.header().height > root_height
                        && self.hash_extends(**hash, block.header(), &self.root))
            })
            .map(|(hash, _)| *hash)
            .collect();
        self.blocks.retain(|hash, _| keep.contains(hash));
    }

    /// The answer to a peer asking for `hash`: the block and its ancestors,
    /// newest first, from the tree or, once committed, from the ledger.
    pub fn ancestors(&self, hash: Hash, ledger: &dyn Ledger) -> Vec<Block> {
        catchup::ancestors(hash, |h| {
            self.blocks
                .get(h)
                .cloned()
                .or_else(|| ledger.committed_block(h))
        })
    }
}
