//! Misbehaviour on purpose, for simulations and test networks: how a
//! Byzantine replica departs from the protocol. The honest replica asks
//! this at the three points where a behaviour changes what it signs
//! (which QC to build on, a second vote, a second proposal), and runs its
//! outgoing effects through [`Misbehaviour::filter`].
//!
//! | behaviour           | what it does                                         |
//! |---------------------|------------------------------------------------------|
//! | `silent`            | sends nothing                                        |
//! | `equivocate`        | as leader, one block to half the others, another to the rest |
//! | `double-vote`       | a second vote in each view, for a made-up block      |
//! | `invalid-signature` | its own messages go out with a broken signature      |
//! | `stale-qc`          | as leader, builds on the QC below its highest        |

use super::block_tree::BlockTree;
use super::io::Effect;
use super::messages::{
    Payload, Proposal, QuorumCert, SignedMessage, Vote, genesis_qc, parent_cert,
};
use crate::committee::Committee;
use crate::ledger::{Ledger, LedgerError};
use crate::types::{Byzantine, View};
use phalanx_chain::{Address, Block, Hash, ValidatorIndex};
use std::collections::BTreeMap;

/// A replica's Byzantine behaviour, if any.
#[derive(Debug)]
pub(super) struct Misbehaviour {
    behaviour: Option<Byzantine>,
    /// Equivocation: the second proposal of each view this replica
    /// proposed in while handling the current input, with the first, which
    /// [`Misbehaviour::filter`] replaces.
    twins: BTreeMap<View, (SignedMessage, SignedMessage)>,
}

impl Misbehaviour {
    pub fn new(behaviour: Option<Byzantine>) -> Misbehaviour {
        Misbehaviour {
            behaviour,
            twins: BTreeMap::new(),
        }
    }

    /// True if the replica misbehaves at all.
    pub fn any(&self) -> bool {
        self.behaviour.is_some()
    }

    /// The QC a leader builds on: its highest, or with `stale-qc` the one
    /// the highest QC's block was built on (old but valid).
    pub fn parent_qc(
        &self,
        high_qc: &QuorumCert,
        tree: &BlockTree,
        committee: &Committee,
    ) -> QuorumCert {
        if self.behaviour != Some(Byzantine::StaleQc) {
            return high_qc.clone();
        }
        tree.get(&high_qc.block)
            .and_then(parent_cert)
            .cloned()
            .unwrap_or_else(|| genesis_qc(committee))
    }

    /// With `equivocate`, builds and signs a second block for the view of
    /// `first` (another timestamp), which [`Misbehaviour::filter`] sends to
    /// half the committee in place of the broadcast of `first`. The error
    /// is the ledger's, if it failed to build the block.
    pub fn twin_proposal(
        &mut self,
        parent: &Block,
        first: &SignedMessage,
        ledger: &mut dyn Ledger,
        proposer: Address,
        sign: impl FnOnce(Payload) -> SignedMessage,
    ) -> Result<(), LedgerError> {
        if self.behaviour != Some(Byzantine::Equivocate) {
            return Ok(());
        }
        let Payload::Proposal(proposal) = &first.payload else {
            return Ok(());
        };
        let justification = proposal.block.header().justification.clone();
        let timestamp = proposal.block.header().timestamp_ms.saturating_add(1);
        let block = ledger.build_block(parent, proposer, timestamp, justification)?;
        let second = sign(Payload::Proposal(Box::new(Proposal {
            block,
            timeout_cert: proposal.timeout_cert.clone(),
            parent_header: proposal.parent_header.clone(),
        })));
        self.twins.insert(first.view(), (first.clone(), second));
        Ok(())
    }

    /// With `double-vote`, a second vote in the view of `vote`, for a
    /// block that does not exist.
    pub fn second_vote(
        &self,
        vote: Vote,
        sign: impl FnOnce(Payload) -> SignedMessage,
    ) -> Option<SignedMessage> {
        if self.behaviour != Some(Byzantine::DoubleVote) {
            return None;
        }
        Some(sign(Payload::Vote(Vote {
            view: vote.view,
            block: Hash::digest(vote.block.as_bytes()),
        })))
    }

    /// Applies the behaviour to the effects of one input, in order.
    pub fn filter(
        &mut self,
        effects: Vec<Effect>,
        committee: &Committee,
        me: ValidatorIndex,
    ) -> Vec<Effect> {
        match self.behaviour {
            Some(Byzantine::Silent) => effects.into_iter().filter(|e| !sends(e)).collect(),
            Some(Byzantine::InvalidSignature) => effects
                .into_iter()
                .map(|e| match e {
                    Effect::Send { to, message } if message.author == me => Effect::Send {
                        to,
                        message: corrupt(message),
                    },
                    Effect::Broadcast(message) if message.author == me => {
                        Effect::Broadcast(corrupt(message))
                    }
                    other => other,
                })
                .collect(),
            Some(Byzantine::Equivocate) => {
                let twins = std::mem::take(&mut self.twins);
                if twins.is_empty() {
                    return effects;
                }
                effects
                    .into_iter()
                    .flat_map(|e| split_broadcast(e, &twins, committee, me))
                    .collect()
            }
            _ => effects,
        }
    }
}

fn sends(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::Send { .. } | Effect::Broadcast(_) | Effect::SendSync { .. }
    )
}

/// The broadcast of a proposal that has a twin becomes one send to each
/// other validator: the first proposal to the first half, the twin to the
/// rest. Any other effect passes unchanged.
fn split_broadcast(
    effect: Effect,
    twins: &BTreeMap<View, (SignedMessage, SignedMessage)>,
    committee: &Committee,
    me: ValidatorIndex,
) -> Vec<Effect> {
    let twin = match &effect {
        Effect::Broadcast(message) => twins
            .get(&message.view())
            .filter(|(first, _)| first == message),
        _ => None,
    };
    let Some((first, second)) = twin else {
        return vec![effect];
    };
    let members: Vec<ValidatorIndex> = committee.members().filter(|v| *v != me).collect();
    let half = members.len() / 2;
    members
        .into_iter()
        .enumerate()
        .map(|(i, to)| Effect::Send {
            to,
            message: if i < half {
                first.clone()
            } else {
                second.clone()
            },
        })
        .collect()
}

fn corrupt(mut message: SignedMessage) -> SignedMessage {
    message.signature.0[0] ^= 0x01;
    message
}
