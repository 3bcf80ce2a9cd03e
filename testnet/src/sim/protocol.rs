//! The seam between the simulator and a consensus protocol.
//!
//! The simulator knows about bytes on links, timers, durable safety data,
//! committed blocks and evidence; a [`Protocol`] adapter turns those into
//! one protocol's inputs (verifying and decoding bytes exactly as a node
//! would) and turns the protocol's effects back into [`Action`]s. HotStuff
//! is the first adapter ([`super::hotstuff::HotStuff`]); PBFT and proof of
//! work plug in by implementing the same trait.
//!
//! Adapters get the replica's [`SimLedger`] itself (which implements
//! [`phalanx_consensus::Ledger`] for the protocol) so they can also show it
//! blocks that reach the replica outside `build_block`/`validate_block`,
//! such as catch-up responses, as a node's driver would.

use super::ledger::SimLedger;
use super::scenario::TimeMs;
use phalanx_chain::{Block, Genesis, ValidatorIndex};
use phalanx_consensus::Byzantine;
use phalanx_crypto::Keypair;
use std::fmt;

/// Which wire a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// Signed consensus messages.
    Consensus,
    /// Catch-up traffic (block requests and responses).
    Sync,
}

/// Who wrote a message a replica sends, so a protocol's own message
/// complexity stays visible apart from forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// Signed by the sender.
    Authored,
    /// Someone else's message, passed on.
    Forwarded,
    /// Catch-up traffic.
    Sync,
}

impl Origin {
    pub const ALL: [Origin; 3] = [Origin::Authored, Origin::Forwarded, Origin::Sync];

    pub fn name(self) -> &'static str {
        match self {
            Origin::Authored => "authored",
            Origin::Forwarded => "forwarded",
            Origin::Sync => "sync",
        }
    }
}

/// A message on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: Channel,
    pub origin: Origin,
    pub bytes: Vec<u8>,
}

/// A replica's claim that `culprit` misbehaved, and whether the proof it
/// carries checks out (two validly signed, conflicting messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceReport {
    pub kind: &'static str,
    pub culprit: ValidatorIndex,
    pub proof_checks: bool,
}

/// What the simulator must do for a replica, in order.
#[derive(Debug)]
pub enum Action<T> {
    /// Make this safety data durable before carrying out any later action.
    Persist(Vec<u8>),
    Send {
        to: ValidatorIndex,
        message: Outgoing,
    },
    /// To every other replica.
    Broadcast(Outgoing),
    Commit(Box<Block>),
    /// Fire `timer` at `at`, replacing an earlier arming of the same timer.
    ArmTimer {
        timer: T,
        at: TimeMs,
    },
    /// Forget an armed timer.
    CancelTimer(T),
    Evidence(EvidenceReport),
}

/// How one replica is set up: who it is and how it (mis)behaves.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub me: ValidatorIndex,
    pub key: Keypair,
    pub byzantine: Option<Byzantine>,
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub forward: bool,
}

/// Why a delivered message was dropped before reaching the protocol (a
/// short label, counted per run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected(pub &'static str);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A replica just started, and what it asks for first.
pub type Booted<P> = (P, Vec<Action<<P as Protocol>::Timer>>);

/// A consensus protocol as the simulator drives it.
pub trait Protocol: Sized {
    /// Per-run state every replica of the run shares (the committee, a
    /// cache of verification results).
    type Shared;
    /// The protocol's timers.
    type Timer: Copy + Ord + fmt::Debug;

    /// The key its safety data is persisted under in the replica's store.
    const SAFETY_KEY: &'static [u8];

    /// The shared state for a run on `genesis`. `unsafe_quorum` is the
    /// negative control of [`Scenario::unsafe_quorum`](super::Scenario).
    fn shared(
        genesis: &Genesis,
        verify_cache: bool,
        unsafe_quorum: Option<usize>,
    ) -> Result<Self::Shared, String>;

    /// Starts a replica whose last committed block is `committed`, with the
    /// safety data it persisted before a crash, if any.
    #[allow(clippy::too_many_arguments)]
    fn boot(
        shared: &mut Self::Shared,
        setup: &NodeSetup,
        committed: Block,
        recovered: Option<&[u8]>,
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Result<Booted<Self>, String>;

    /// Bytes from `from` arrived: verify and decode them as a node would,
    /// then hand them to the protocol.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        shared: &mut Self::Shared,
        from: ValidatorIndex,
        channel: Channel,
        bytes: &[u8],
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Result<Vec<Action<Self::Timer>>, Rejected>;

    /// A timer armed earlier fired.
    fn fire(
        &mut self,
        shared: &mut Self::Shared,
        timer: Self::Timer,
        now: TimeMs,
        ledger: &mut SimLedger,
    ) -> Vec<Action<Self::Timer>>;

    /// The replica's view (round), for views-per-commit.
    fn view(&self) -> u64;

    /// Checks that a committed block carries a valid certificate linking it
    /// to its parent.
    fn check_certificate(shared: &Self::Shared, block: &Block) -> Result<(), String>;

    /// A one-line description of a message, for traces.
    fn describe(channel: Channel, bytes: &[u8]) -> String {
        format!("{channel:?} message of {} bytes", bytes.len())
    }
}
