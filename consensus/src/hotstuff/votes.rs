//! The vote collector: each validator's first proposal and first vote in a
//! view (a second one that differs is evidence of equivocation), and the
//! signers of each block in each view, which become a QC at n - f.

use super::io::Evidence;
use super::messages::{Payload, QuorumCert, SignedMessage, Vote};
use crate::types::View;
use phalanx_chain::{Hash, ValidatorIndex, ValidatorSignature};
use phalanx_crypto::Signature;
use std::collections::BTreeMap;

/// Proposals and votes of recent views.
#[derive(Debug)]
pub(super) struct VoteCollector {
    /// n - f: votes that form a QC.
    quorum: usize,
    /// Each author's first proposal in each view, to catch equivocation.
    /// (Two authors may both propose validly in one view: one expecting
    /// the leader a QC for the view before gives, one on a TC.)
    proposals: BTreeMap<(View, ValidatorIndex), SignedMessage>,
    /// Each validator's first vote in each view, to catch double votes.
    first_votes: BTreeMap<(View, ValidatorIndex), SignedMessage>,
    /// The signers of each block in each view.
    votes: BTreeMap<(View, Hash), BTreeMap<ValidatorIndex, Signature>>,
}

impl VoteCollector {
    pub fn new(quorum: usize) -> VoteCollector {
        VoteCollector {
            quorum,
            proposals: BTreeMap::new(),
            first_votes: BTreeMap::new(),
            votes: BTreeMap::new(),
        }
    }

    /// Checks a proposal for `view` against the first one its author made
    /// in it (and remembers it if it is the first). A different block is
    /// evidence against the author; the same block again is fine.
    pub fn check_proposal(
        &mut self,
        view: View,
        message: &SignedMessage,
    ) -> Result<(), Box<Evidence>> {
        let Payload::Proposal(proposal) = &message.payload else {
            return Ok(());
        };
        match self.proposals.get(&(view, message.author)) {
            Some(first) if proposal_hash(first) != Some(proposal.block.hash()) => {
                Err(Box::new(Evidence::ConflictingProposals {
                    first: first.clone(),
                    second: message.clone(),
                }))
            }
            Some(_) => Ok(()),
            None => {
                self.proposals
                    .insert((view, message.author), message.clone());
                Ok(())
            }
        }
    }

    /// Counts a vote. Returns evidence if its author voted otherwise in the
    /// view before (the vote is not counted), and a QC when this vote
    /// brings its block to exactly n - f signers (so a QC forms once).
    pub fn add(
        &mut self,
        message: SignedMessage,
        vote: Vote,
    ) -> Result<Option<QuorumCert>, Box<Evidence>> {
        match self.first_votes.get(&(vote.view, message.author)) {
            Some(first) if first.payload != message.payload => {
                return Err(Box::new(Evidence::ConflictingVotes {
                    first: first.clone(),
                    second: message,
                }));
            }
            Some(_) => {}
            None => {
                self.first_votes
                    .insert((vote.view, message.author), message.clone());
            }
        }
        let signers = self.votes.entry((vote.view, vote.block)).or_default();
        signers.insert(message.author, message.signature);
        if signers.len() != self.quorum {
            return Ok(None);
        }
        Ok(Some(QuorumCert {
            view: vote.view.0,
            block: vote.block,
            signatures: signers
                .iter()
                .map(|(v, s)| ValidatorSignature {
                    validator: *v,
                    signature: *s,
                })
                .collect(),
        }))
    }

    /// Forgets proposals and votes of views before `keep_from`.
    pub fn prune_below(&mut self, keep_from: View) {
        self.proposals = self.proposals.split_off(&(keep_from, ValidatorIndex(0)));
        self.first_votes = self.first_votes.split_off(&(keep_from, ValidatorIndex(0)));
        self.votes = self.votes.split_off(&(keep_from, Hash::ZERO));
    }
}

fn proposal_hash(message: &SignedMessage) -> Option<Hash> {
    match &message.payload {
        Payload::Proposal(p) => Some(p.block.hash()),
        _ => None,
    }
}
