//! A selfish miner: Eyal and Sirer's strategy ("Majority is not Enough:
//! Bitcoin Mining is Vulnerable", 2014, Algorithm 1), for simulations and
//! test networks.
//!
//! The pool mines on a private branch and publishes its blocks only when
//! that wastes the honest miners' work: when the public chain catches up
//! to within one block of a lead of two or more, the pool publishes its
//! whole branch and wins; with a lead of one, it publishes its block the
//! moment an honest block appears and races it; with a longer lead it
//! publishes one block for each honest one. Lengths are counted in blocks
//! (the paper's model, where every block has the same work), as heights.

use super::tree::{BlockTree, Entry};
use phalanx_chain::{Block, Hash, Height};
use std::collections::VecDeque;

/// The pool's state.
#[derive(Debug, Default)]
pub struct Selfish {
    /// The head of the private branch, which the pool mines on (`None`:
    /// the best tip).
    tip: Option<Hash>,
    /// Its blocks not published yet, lowest first.
    unpublished: VecDeque<Block>,
    /// The paper's `privateBranchLen`: blocks on the private branch since
    /// it last published everything or adopted the public chain.
    branch_len: u64,
    /// The height of the longest chain the honest miners know.
    public_height: Height,
    /// The mining tip changed since the protocol last asked for work.
    tip_moved: bool,
}

impl Selfish {
    /// The tip to mine on.
    pub fn tip<'a>(&self, tree: &'a BlockTree) -> Option<&'a Entry> {
        tree.get(&self.tip?)
    }

    /// True (once) if the mining tip moved since the last call.
    pub fn take_tip_moved(&mut self) -> bool {
        std::mem::take(&mut self.tip_moved)
    }

    fn private_height(&self, tree: &BlockTree) -> Height {
        self.tip(tree).map_or(tree.best().height(), Entry::height)
    }

    fn set_tip(&mut self, tip: Hash) {
        if self.tip != Some(tip) {
            self.tip = Some(tip);
            self.tip_moved = true;
        }
    }

    /// The pool found `hash` (already in the tree): returns the blocks to
    /// publish now.
    pub fn on_mined(&mut self, tree: &BlockTree, hash: Hash) -> Vec<Block> {
        let Some(entry) = tree.get(&hash) else {
            return Vec::new();
        };
        let on_tip = self.tip.is_none_or(|t| t == entry.block.header().parent);
        if !on_tip {
            // Work on a tip it has since left: not part of the branch.
            return Vec::new();
        }
        let lead_before = lead(self.private_height(tree), self.public_height);
        self.set_tip(hash);
        self.unpublished.push_back(entry.block.clone());
        self.branch_len += 1;
        if lead_before == 0 && self.branch_len == 2 {
            // It was racing the honest miners' block with its own: now it
            // leads by one, and publishing wins the race.
            self.branch_len = 0;
            self.public_height = entry.height();
            return self.unpublished.drain(..).collect();
        }
        Vec::new()
    }

    /// Someone else's block `hash` went into the tree: returns the blocks
    /// to publish now.
    pub fn on_public(&mut self, tree: &BlockTree, hash: Hash) -> Vec<Block> {
        let Some(entry) = tree.get(&hash) else {
            return Vec::new();
        };
        if entry.height() <= self.public_height {
            return Vec::new();
        }
        let lead_before = lead(self.private_height(tree), self.public_height);
        self.public_height = entry.height();
        match lead_before {
            0 => {
                // They win: adopt their chain.
                self.unpublished.clear();
                self.branch_len = 0;
                self.set_tip(hash);
                Vec::new()
            }
            // Same length now: publish the last block and race.
            1 => self.unpublished.drain(..).collect(),
            // A lead of one after this: publish everything and win; the
            // honest miners move to the pool's branch.
            2 => {
                self.branch_len = 0;
                self.public_height = self.private_height(tree);
                self.unpublished.drain(..).collect()
            }
            // Still ahead by two or more: match their block with one.
            _ => self.unpublished.pop_front().into_iter().collect(),
        }
    }
}

/// How far the private branch is ahead (0 if it is not).
fn lead(private: Height, public: Height) -> u64 {
    private.0.saturating_sub(public.0)
}
