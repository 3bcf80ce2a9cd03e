//! A double-spend attacker, for simulations and test networks: the
//! attacker of Nakamoto's section 11. When a block of the honest chain
//! appears (the one carrying its payment to a merchant), it mines a private
//! branch from that block's parent, without the payment; once the payment
//! has `confirmations` confirmations (the merchant delivered) and the
//! private branch is longer than the honest one above the fork point, it
//! publishes the branch. Trailing by more than [`GIVE_UP`] blocks, it
//! abandons the attempt; either way the next honest block starts another.
//!
//! Against nodes that declared the payment final at those confirmations,
//! a published branch with more work is a finality violation
//! ([`crate::Fault::FinalityViolated`]): that is what an attacker with
//! more than half of the hash power achieves, and what one with less
//! rarely does.

use super::tree::{BlockTree, Entry};
use phalanx_chain::{Block, Hash, Height};

/// Blocks behind at which an attempt is abandoned.
pub const GIVE_UP: u64 = 20;

/// An attempt in progress.
#[derive(Debug, Clone)]
struct Attempt {
    payment_height: Height,
    fork_height: Height,
    /// Its private blocks, lowest first (none published).
    private: Vec<Block>,
}

/// The attacker's state.
#[derive(Debug)]
pub struct DoubleSpend {
    confirmations: u64,
    attempt: Option<Attempt>,
    /// The private tip it mines on (`None`: the best tip).
    tip: Option<Hash>,
    public_height: Height,
    tip_moved: bool,
    /// Attempts started and branches published.
    pub attempts: u64,
    pub published: u64,
}

impl DoubleSpend {
    pub fn new(confirmations: u64) -> DoubleSpend {
        DoubleSpend {
            confirmations: confirmations.max(1),
            attempt: None,
            tip: None,
            public_height: Height(0),
            tip_moved: false,
            attempts: 0,
            published: 0,
        }
    }

    pub fn tip<'a>(&self, tree: &'a BlockTree) -> Option<&'a Entry> {
        tree.get(&self.tip?)
    }

    pub fn take_tip_moved(&mut self) -> bool {
        std::mem::take(&mut self.tip_moved)
    }

    fn set_tip(&mut self, tip: Option<Hash>) {
        if self.tip != tip {
            self.tip = tip;
            self.tip_moved = true;
        }
    }

    /// Publishes the private branch if the payment is confirmed and the
    /// branch is longer, gives up if it trails too far.
    fn decide(&mut self) -> Vec<Block> {
        let Some(a) = &self.attempt else {
            return Vec::new();
        };
        let honest = self.public_height.0.saturating_sub(a.fork_height.0);
        let private = a.private.len() as u64;
        let confirmations = (self.public_height.0 + 1).saturating_sub(a.payment_height.0);
        if confirmations >= self.confirmations && private > honest {
            self.published += 1;
            let out = self.attempt.take().map(|a| a.private).unwrap_or_default();
            self.set_tip(None);
            return out;
        }
        if honest > private + GIVE_UP {
            self.attempt = None;
            self.set_tip(None);
        }
        Vec::new()
    }

    /// The attacker found `hash`: returns what to publish.
    pub fn on_mined(&mut self, tree: &BlockTree, hash: Hash) -> Vec<Block> {
        let Some(entry) = tree.get(&hash) else {
            return Vec::new();
        };
        let Some(attempt) = self.attempt.as_mut() else {
            // Between attempts it mines honestly.
            return vec![entry.block.clone()];
        };
        if self.tip != Some(entry.block.header().parent) {
            return Vec::new();
        }
        attempt.private.push(entry.block.clone());
        self.set_tip(Some(hash));
        self.decide()
    }

    /// Someone else's block `hash` went into the tree: returns what to
    /// publish.
    pub fn on_public(&mut self, tree: &BlockTree, hash: Hash) -> Vec<Block> {
        let Some(entry) = tree.get(&hash) else {
            return Vec::new();
        };
        if entry.height() <= self.public_height {
            return Vec::new();
        }
        self.public_height = entry.height();
        if self.attempt.is_none() {
            // This block carries the payment: fork from its parent.
            let parent = entry.block.header().parent;
            if entry.height().0 == 0 || tree.get(&parent).is_none() {
                return Vec::new();
            }
            self.attempts += 1;
            self.attempt = Some(Attempt {
                payment_height: entry.height(),
                fork_height: Height(entry.height().0 - 1),
                private: Vec::new(),
            });
            self.set_tip(Some(parent));
            return Vec::new();
        }
        self.decide()
    }
}
