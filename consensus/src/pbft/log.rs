//! The message log of the heights above the executed head (PBFT 4.2): per
//! height, the pre-prepare accepted in each view, the prepares and commits
//! gathered per vote, and the certificates they formed; plus the blocks
//! held above the head and which heights are known final.
//!
//! The log decides nothing: it records, and answers "is this prepared?",
//! "did that commit certificate just form?", "which blocks lead from the
//! head to this final one?". The replica acts on the answers.

use super::messages::{CommitCert, PreparedCert, SignedMessage, Vote};
use crate::types::View;
use phalanx_chain::{Block, Hash, Height, ValidatorIndex, ValidatorSignature};
use phalanx_crypto::Signature;
use phalanx_crypto::maps::HashMap;
use std::collections::{BTreeMap, VecDeque};

/// Signatures gathered for one vote.
type Signers = BTreeMap<ValidatorIndex, Signature>;

/// A vote's kind, for the first-vote bookkeeping that catches double votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Prepare,
    Commit,
}

/// What the log knows about one height.
#[derive(Debug, Default)]
struct Slot {
    /// The pre-prepare accepted in each view (at most one per view).
    accepted: BTreeMap<View, (Vote, SignedMessage)>,
    prepares: BTreeMap<Vote, Signers>,
    commits: BTreeMap<Vote, Signers>,
    /// Each validator's first vote per (view, phase), to catch a second.
    first: BTreeMap<(View, Phase, ValidatorIndex), SignedMessage>,
    /// The prepared certificate of the highest view.
    prepared: Option<PreparedCert>,
    /// The block known final at this height (by a commit certificate, a
    /// stable checkpoint, or a certificate a later block carries).
    final_block: Option<Hash>,
    commit_cert: Option<CommitCert>,
}

/// What recording a vote found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// First time; nothing formed.
    Counted,
    /// Seen before.
    Duplicate,
    /// The author already voted differently in this view and phase.
    Conflict(Box<SignedMessage>),
}

/// Commit votes of executed heights remembered, to recognize their
/// signatures when a later block's header carries them as a certificate.
const REMEMBERED_COMMITS: usize = 64;

/// The log (see the module docs).
#[derive(Debug)]
pub struct Log {
    slots: BTreeMap<Height, Slot>,
    /// The commit signatures of recently executed heights, per vote (each
    /// verified when its message arrived).
    executed_commits: VecDeque<(Vote, Signers)>,
    /// Blocks above the executed head, by hash.
    blocks: HashMap<Hash, Block>,
    max_blocks: usize,
}

impl Log {
    pub fn new(max_blocks: usize) -> Log {
        Log {
            slots: BTreeMap::new(),
            executed_commits: VecDeque::new(),
            blocks: HashMap::default(),
            max_blocks: max_blocks.max(1),
        }
    }

    fn slot(&mut self, height: Height) -> &mut Slot {
        self.slots.entry(height).or_default()
    }

    /// Keeps a block above the head (bounded: when full, a block is kept
    /// only if it is final or accepted).
    pub fn insert_block(&mut self, block: Block) {
        if self.blocks.len() >= self.max_blocks {
            return;
        }
        self.blocks.insert(block.hash(), block);
    }

    pub fn block(&self, hash: &Hash) -> Option<&Block> {
        self.blocks.get(hash)
    }

    /// The pre-prepare accepted at `height` in `view`.
    pub fn accepted(&self, view: View, height: Height) -> Option<&(Vote, SignedMessage)> {
        self.slots.get(&height)?.accepted.get(&view)
    }

    /// The highest height with a pre-prepare accepted in `view`.
    pub fn highest_accepted(&self, view: View) -> Option<Height> {
        self.slots
            .iter()
            .rev()
            .find(|(_, s)| s.accepted.contains_key(&view))
            .map(|(h, _)| *h)
    }

    /// Records the pre-prepare accepted at `vote.height` in `vote.view`.
    pub fn accept(&mut self, vote: Vote, message: SignedMessage, block: Block) {
        self.blocks.insert(vote.block, block);
        self.slot(vote.height)
            .accepted
            .insert(vote.view, (vote, message));
    }

    /// Records a vote of `phase` by `author`.
    pub fn record(&mut self, phase: Phase, vote: Vote, message: &SignedMessage) -> Recorded {
        let author = message.author;
        let slot = self.slot(vote.height);
        match slot.first.get(&(vote.view, phase, author)) {
            Some(first) if first.payload != message.payload => {
                return Recorded::Conflict(Box::new(first.clone()));
            }
            Some(_) => return Recorded::Duplicate,
            None => {
                slot.first
                    .insert((vote.view, phase, author), message.clone());
            }
        }
        let votes = match phase {
            Phase::Prepare => &mut slot.prepares,
            Phase::Commit => &mut slot.commits,
        };
        votes
            .entry(vote)
            .or_default()
            .insert(author, message.signature);
        Recorded::Counted
    }

    /// PBFT 4.2, prepared(m, v, n, i): the pre-prepare accepted in `view`
    /// and `needed` prepares matching it from replicas other than
    /// `primary`. Returns the certificate the first time it holds.
    pub fn try_prepare(
        &mut self,
        view: View,
        height: Height,
        primary: ValidatorIndex,
        needed: usize,
    ) -> Option<PreparedCert> {
        let slot = self.slots.get_mut(&height)?;
        let (vote, message) = slot.accepted.get(&view)?;
        if slot.prepared.as_ref().is_some_and(|p| p.vote.view >= view) {
            return None;
        }
        let prepares: Vec<ValidatorSignature> = slot
            .prepares
            .get(vote)
            .into_iter()
            .flatten()
            .filter(|(v, _)| **v != primary)
            .map(|(v, s)| ValidatorSignature {
                validator: *v,
                signature: *s,
            })
            .collect();
        if prepares.len() < needed {
            return None;
        }
        let cert = PreparedCert {
            vote: *vote,
            preprepare: message.signature,
            prepares,
        };
        slot.prepared = Some(cert.clone());
        Some(cert)
    }

    /// True if `height` is prepared in `view`.
    pub fn prepared_in(&self, view: View, height: Height) -> Option<&PreparedCert> {
        self.slots
            .get(&height)?
            .prepared
            .as_ref()
            .filter(|p| p.vote.view == view)
    }

    /// The commit certificate for `vote` once `needed` commits match it;
    /// `None` if not yet, or if one was formed already.
    pub fn try_commit_cert(&mut self, vote: &Vote, needed: usize) -> Option<CommitCert> {
        let slot = self.slots.get_mut(&vote.height)?;
        if slot.commit_cert.is_some() {
            return None;
        }
        let signers = slot.commits.get(vote)?;
        if signers.len() < needed {
            return None;
        }
        let cert = CommitCert {
            vote: *vote,
            commits: signers
                .iter()
                .map(|(v, s)| ValidatorSignature {
                    validator: *v,
                    signature: *s,
                })
                .collect(),
        };
        slot.commit_cert = Some(cert.clone());
        slot.final_block = Some(vote.block);
        Some(cert)
    }

    /// Records that `block` is final at `height`, with its certificate if
    /// one is at hand.
    pub fn set_final(&mut self, height: Height, block: Hash, cert: Option<CommitCert>) {
        let slot = self.slot(height);
        slot.final_block.get_or_insert(block);
        if slot.commit_cert.is_none() {
            slot.commit_cert = cert;
        }
    }

    /// The commit certificate formed or learned at `height`.
    pub fn commit_cert(&self, height: Height) -> Option<&CommitCert> {
        self.slots.get(&height)?.commit_cert.as_ref()
    }

    /// The lowest height above `executed` known final, and its block.
    pub fn lowest_final_above(&self, executed: Height) -> Option<(Height, Hash)> {
        self.slots
            .range(Height(executed.0.saturating_add(1))..)
            .find_map(|(h, s)| s.final_block.map(|b| (*h, b)))
    }

    /// The blocks from the child of `head` up to `target`, oldest first,
    /// following parent links through the blocks held; or the hash of the
    /// first block missing on the way down.
    pub fn chain_to(&self, target: Hash, head: Hash, depth: u64) -> Result<Vec<Block>, Hash> {
        let mut chain = Vec::new();
        let mut cursor = target;
        while cursor != head {
            if chain.len() as u64 >= depth {
                // Walked as deep as the head without meeting it: the final
                // block does not extend our head. More than f faulty.
                return Err(cursor);
            }
            let Some(block) = self.blocks.get(&cursor) else {
                return Err(cursor);
            };
            chain.push(block.clone());
            cursor = block.header().parent;
        }
        chain.reverse();
        Ok(chain)
    }

    /// Forgets everything at or below `height` (executed, or below the
    /// stable checkpoint).
    pub fn prune_to(&mut self, height: Height) {
        let kept = self.slots.split_off(&Height(height.0.saturating_add(1)));
        let pruned = std::mem::replace(&mut self.slots, kept);
        for slot in pruned.into_values() {
            for (vote, signers) in slot.commits {
                self.executed_commits.push_back((vote, signers));
            }
        }
        while self.executed_commits.len() > REMEMBERED_COMMITS {
            self.executed_commits.pop_front();
        }
        self.blocks.retain(|_, b| b.header().height > height);
    }

    /// True if `signature` is `validator`'s commit for `vote` as it arrived
    /// (already verified): a certificate made of such needs no check again.
    pub fn knows_commit(
        &self,
        vote: &Vote,
        validator: ValidatorIndex,
        signature: &Signature,
    ) -> bool {
        let matches = |signers: &Signers| signers.get(&validator) == Some(signature);
        self.slots
            .get(&vote.height)
            .and_then(|s| s.commits.get(vote))
            .is_some_and(matches)
            || self
                .executed_commits
                .iter()
                .any(|(v, signers)| v == vote && matches(signers))
    }

    /// Forgets accepted pre-prepares and votes of views before `view`
    /// (certificates stay).
    pub fn prune_views_below(&mut self, view: View) {
        for slot in self.slots.values_mut() {
            slot.accepted = slot.accepted.split_off(&view);
            slot.prepares.retain(|v, _| v.view >= view);
            slot.commits.retain(|v, _| v.view >= view);
            slot.first.retain(|(v, _, _), _| *v >= view);
        }
    }
}
