//! What a replica is told, and what it asks its caller to do.

use super::messages::{SignedMessage, Verified};
use super::safety::SafetyData;
use crate::bft::{ReplicaEffect, ReplicaInput};
use crate::types::View;

/// A timer the replica asks its caller to arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The pacemaker's timer for a view.
    View(View),
    /// Re-send this view's vote to every validator while no QC has come
    /// (a vote goes to the next leader only, so a lost copy or a leader
    /// that is down would cost the view).
    ResendVote(View),
    /// A leader waiting for a batch stops waiting and proposes (see
    /// [`Config::max_batch_delay_ms`](super::Config::max_batch_delay_ms)).
    Propose(View),
}

/// What the replica is told (see [`ReplicaInput`]): its safety data at
/// start-up, verified messages (see `verify_message`), catch-up traffic,
/// its timers, and new transactions (a leader waiting for a batch checks
/// again whether to propose).
pub type Input = ReplicaInput<Verified<SignedMessage>, SafetyData, Timer>;

/// Proof that a validator signed two conflicting messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Two different proposals for one view by its leader.
    ConflictingProposals {
        first: SignedMessage,
        second: SignedMessage,
    },
    /// Two votes by one validator in one view for different blocks.
    ConflictingVotes {
        first: SignedMessage,
        second: SignedMessage,
    },
}

/// What the caller must do, in order (see [`ReplicaEffect`]); commits come
/// in height order.
pub type Effect = ReplicaEffect<SignedMessage, SafetyData, Timer, Evidence>;

impl From<Evidence> for crate::protocol::Evidence {
    fn from(evidence: Evidence) -> Self {
        match evidence {
            Evidence::ConflictingProposals { first, second } => {
                crate::bft::evidence("conflicting-proposals", &first, &second)
            }
            Evidence::ConflictingVotes { first, second } => {
                crate::bft::evidence("conflicting-votes", &first, &second)
            }
        }
    }
}
