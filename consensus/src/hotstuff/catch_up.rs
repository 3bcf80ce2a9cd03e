//! Catch-up bookkeeping: proposals waiting for a parent this replica lacks,
//! the blocks asked for, and whom to ask again.
//!
//! A proposal whose parent is unknown is buffered (bounded) while the
//! parent is asked for by hash from the proposal's author. The replica
//! asks again each time its view timer fires, from the other validators
//! in turn: the request or its answer may have been lost, or the author
//! may be down. An answer is accepted only for blocks asked for (or their
//! parents) whose parent certificate checks out.

use super::block_tree::BlockTree;
use super::io::Effect;
use super::messages::{Payload, SignedMessage, Verified, parent_cert, verify_qc};
use crate::catchup::SyncMessage;
use crate::committee::Committee;
use crate::types::View;
use phalanx_chain::{Block, Hash, ValidatorIndex};
use phalanx_crypto::maps::{HashMap, HashSet};
use std::collections::BTreeMap;

/// Blocks asked for at once, at most.
const MAX_OUTSTANDING_REQUESTS: usize = 256;

/// Requests older than this many views give way when the request table
/// is full.
const REQUEST_HORIZON_VIEWS: u64 = 4;

/// Buffered proposals and outstanding block requests.
#[derive(Debug)]
pub(super) struct CatchUp {
    /// Proposals waiting for their parent block, by the parent's hash.
    buffered: BTreeMap<Hash, Vec<Verified<SignedMessage>>>,
    /// Proposals buffered at most (see `Config::max_buffered_proposals`).
    max_buffered: usize,
    /// Blocks asked for and not yet received, with the view of the ask.
    requested: HashMap<Hash, View>,
    /// How many times the view timer has asked again for missing blocks
    /// (which validator it asks turns with it).
    retries: u64,
}

impl CatchUp {
    pub fn new(max_buffered: usize) -> CatchUp {
        CatchUp {
            buffered: BTreeMap::new(),
            max_buffered,
            requested: HashMap::default(),
            retries: 0,
        }
    }

    /// Keeps a proposal whose parent the tree lacks until the parent
    /// arrives, and returns the request for the parent to send to the
    /// proposal's author. Nothing is kept if the buffer is full, or if the
    /// parent could never extend the committed chain.
    pub fn buffer(
        &mut self,
        message: Verified<SignedMessage>,
        tree: &BlockTree,
        me: ValidatorIndex,
        view: View,
    ) -> Option<Effect> {
        let Payload::Proposal(proposal) = &message.get().payload else {
            return None;
        };
        let parent = proposal.block.header().parent;
        let author = message.get().author;
        let cert = parent_cert(&proposal.block)?;
        if !tree.could_extend_root(cert) {
            return None;
        }
        let buffered: usize = self.buffered.values().map(Vec::len).sum();
        if buffered >= self.max_buffered {
            return None;
        }
        self.buffered.entry(parent).or_default().push(message);
        self.request(parent, author, me, view)
    }

    /// Asks `from` for a block (at most once per view per block, and not
    /// from this replica itself). Returns the request to send, if any.
    pub fn request(
        &mut self,
        hash: Hash,
        from: ValidatorIndex,
        me: ValidatorIndex,
        view: View,
    ) -> Option<Effect> {
        if from == me || self.requested.get(&hash).is_some_and(|v| *v >= view) {
            return None;
        }
        if self.requested.len() >= MAX_OUTSTANDING_REQUESTS {
            let horizon = View(view.0.saturating_sub(REQUEST_HORIZON_VIEWS));
            self.requested.retain(|_, asked| *asked >= horizon);
            if self.requested.len() >= MAX_OUTSTANDING_REQUESTS {
                return None;
            }
        }
        self.requested.insert(hash, view);
        Some(request_effect(from, hash))
    }

    /// `hash` arrived, or is given up on: no longer outstanding.
    pub fn forget_request(&mut self, hash: &Hash) {
        self.requested.remove(hash);
    }

    /// The proposals that waited for block `hash`, which has arrived.
    pub fn take_waiting(&mut self, hash: &Hash) -> Vec<Verified<SignedMessage>> {
        self.buffered.remove(hash).unwrap_or_default()
    }

    /// Asks again for every block a buffered proposal still waits for
    /// (with its ancestors), each from the next other validator in turn.
    /// Only waited-for blocks: a request whose block was since committed
    /// through the ledger is not asked again and again.
    pub fn retry(
        &mut self,
        committee: &Committee,
        me: ValidatorIndex,
        view: View,
        tree: &BlockTree,
    ) -> Vec<Effect> {
        let others: Vec<ValidatorIndex> = committee.members().filter(|v| *v != me).collect();
        let count = others.len() as u64;
        if count == 0 {
            return Vec::new();
        }
        let missing: Vec<Hash> = self
            .buffered
            .keys()
            .filter(|hash| !tree.contains(hash))
            .copied()
            .collect();
        let mut requests = Vec::new();
        for (i, hash) in missing.into_iter().enumerate() {
            let turn = self.retries.wrapping_add(i as u64) % count;
            let Some(&to) = usize::try_from(turn).ok().and_then(|t| others.get(t)) else {
                continue;
            };
            self.requested.insert(hash, view);
            requests.push(request_effect(to, hash));
        }
        self.retries = self.retries.wrapping_add(1);
        requests
    }

    /// The blocks of an answer worth adding to the tree, deepest first:
    /// those asked for, or parents of those, that the tree lacks and whose
    /// parent certificate is valid and names their parent.
    pub fn accept(
        &self,
        blocks: Vec<Block>,
        tree: &BlockTree,
        committee: &Committee,
    ) -> Vec<Block> {
        let mut wanted: HashSet<Hash> = self.requested.keys().copied().collect();
        let mut accepted = Vec::new();
        for block in blocks {
            let hash = block.hash();
            if !wanted.contains(&hash) || tree.contains(&hash) {
                continue;
            }
            let Some(cert) = parent_cert(&block) else {
                continue;
            };
            if cert.block != block.header().parent || verify_qc(committee, cert).is_err() {
                continue;
            }
            wanted.insert(block.header().parent);
            accepted.push(block);
        }
        // Deepest first, so each block's parent is in place before it.
        accepted.sort_by_key(|b| b.header().height);
        accepted
    }

    /// Drops buffered proposals for views before `keep_from`.
    pub fn prune_below(&mut self, keep_from: View) {
        self.buffered.retain(|_, waiting| {
            waiting.retain(|m| m.get().view() >= keep_from);
            !waiting.is_empty()
        });
    }
}

fn request_effect(to: ValidatorIndex, hash: Hash) -> Effect {
    Effect::SendSync {
        to,
        message: SyncMessage::Request { hash },
    }
}
