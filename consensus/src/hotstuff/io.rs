//! What a replica is told, and what it asks its caller to do.

use super::messages::{SignedMessage, Verified};
use super::safety::SafetyData;
use crate::catchup::SyncMessage;
use crate::types::{TimeMs, View};
use phalanx_chain::{Block, ValidatorIndex};

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

/// What the replica is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// The first input: safety data read back from storage, if any.
    Start { recovered: Option<Box<SafetyData>> },
    /// A consensus message from the network (see `verify_message`).
    Message(Verified<SignedMessage>),
    /// Catch-up traffic from a peer.
    Sync {
        from: ValidatorIndex,
        message: SyncMessage,
    },
    /// A timer armed earlier fired.
    Timer(Timer),
    /// New transactions reached the caller's pool: a leader waiting for a
    /// batch checks again whether to propose.
    TransactionsAvailable,
}

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

/// What the caller must do, in order.
#[must_use]
#[derive(Debug, Clone)]
pub enum Effect {
    /// Write and flush before carrying out any later effect.
    PersistSafety(SafetyData),
    Send {
        to: ValidatorIndex,
        message: SignedMessage,
    },
    Broadcast(SignedMessage),
    SendSync {
        to: ValidatorIndex,
        message: SyncMessage,
    },
    /// A committed block; commits come in height order.
    Commit(Block),
    /// A timer armed earlier is no longer needed (its view is over).
    CancelTimer(Timer),
    /// Deliver `Input::Timer(timer)` at `at` (replacing an earlier arming).
    ArmTimer {
        timer: Timer,
        at: TimeMs,
    },
    Evidence(Evidence),
}
