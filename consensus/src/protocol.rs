//! The protocol seam: the one boundary that the node's driver and the
//! deterministic simulator drive, whatever protocol orders the blocks.
//!
//! A protocol is a value that takes [`Input`]s and answers with
//! [`Effect`]s, carried out by the caller in order. Everything a caller
//! would otherwise have to know about one protocol is answered by the
//! protocol itself, through [`Protocol`]:
//!
//! - how raw bytes from a peer become its verified message type, and why
//!   they were refused ([`Protocol::verify`], [`RejectReason`], for metrics
//!   and peer scoring);
//! - the kind of each message, for metrics that keep authored messages
//!   apart from forwarded ones ([`Outgoing`], [`Protocol::message_kind`]);
//! - its safety data: the store key ([`Protocol::SAFETY_KEY`]), encoded in
//!   [`Effect::Persist`] and decoded from [`Input::Start`];
//! - its timers (the opaque [`Protocol::Timer`]);
//! - what proves a run of fetched blocks final, for block sync
//!   ([`Protocol::prove_final`]), and what makes a finalized block's
//!   certificate valid ([`Protocol::check_finalized`]).
//!
//! The effects cover all three protocols: BFT protocols [`Effect::Extend`]
//! the chain with blocks that are final at once; proof of work extends
//! with blocks that are not, [`Effect::Finalize`]s them later at k
//! confirmations, [`Effect::Revert`]s to an ancestor on a reorganization,
//! and asks for mining work ([`Effect::RequestWork`]) whose result comes
//! back as [`Input::Mined`].
//!
//! # Why a trait, not an enum over the protocols
//!
//! Each protocol keeps its own message, timer and safety types, so its
//! unit tests and its state machine stay typed; the trait names them as
//! associated types that the driver and the simulator hold opaquely. Code
//! generic over `P: Protocol` *cannot* name a protocol's types, so the
//! compiler enforces the boundary; an enum would need every caller to
//! match on protocols (or the enum to grow a match arm in every method),
//! and a new protocol would touch both callers again. The price is one
//! dispatch on [`ConsensusKind`] where a node or a simulation starts.

use crate::certificate::CertError;
use crate::committee::CommitteeError;
use crate::ledger::{Ledger, LocalFault};
use crate::types::{Byzantine, TimeMs};
use phalanx_chain::encoding::DecodeError;
use phalanx_chain::{Address, Block, ConsensusKind, Genesis, Hash, Height, ValidatorIndex};
use phalanx_crypto::Keypair;
use std::fmt;

/// Which wire a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Signed consensus messages, forwarded by those who receive them.
    Consensus,
    /// Catch-up traffic between two replicas (block requests and answers).
    Sync,
}

/// Who wrote a message a replica sends, so a protocol's own message
/// complexity stays visible apart from forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Signed by the sender.
    Authored,
    /// Someone else's message, passed on with its author's signature.
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

/// A message on its way out, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub channel: Channel,
    pub origin: Origin,
    /// The message's kind, for metrics ("proposal", "prepare", ...).
    pub kind: &'static str,
    pub bytes: Vec<u8>,
}

/// Why bytes from a peer were refused, for metrics and peer scoring. The
/// protocol's own error (its [`Protocol::Rejection`]) says exactly what was
/// wrong; this says what kind of wrong it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Too large, not the protocol's encoding, or structurally impossible.
    Undecodable,
    /// Its author (or, for catch-up traffic, its sender) is not a member.
    NotAMember,
    /// Its author's signature does not verify.
    BadSignature,
    /// A certificate it carries does not verify.
    BadCertificate,
    /// A message only a view's leader (primary) may send, from another.
    NotLeader,
    /// Decodes and is signed, but breaks a rule of the message's shape
    /// (a block that does not match its own claims, for instance).
    Malformed,
}

impl RejectReason {
    /// A short label (metrics, simulator reports).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Undecodable => "undecodable",
            RejectReason::NotAMember => "not-a-member",
            RejectReason::BadSignature => "bad-signature",
            RejectReason::BadCertificate => "bad-certificate",
            RejectReason::NotLeader => "not-leader",
            RejectReason::Malformed => "malformed",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Proof that a validator signed two conflicting messages: both messages
/// as they travel ([`Protocol::check_evidence`] says whether they prove it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// What conflicts ("conflicting-proposals", "conflicting-votes", ...).
    pub kind: &'static str,
    pub culprit: ValidatorIndex,
    pub first: Vec<u8>,
    pub second: Vec<u8>,
}

/// A miner's request for work: mine a block on `parent` (proof of work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRequest {
    pub parent: Hash,
    /// The block to seal. The miner searches the seal's nonce; it may
    /// raise the header's timestamp to its clock as it goes (nothing else
    /// in the block depends on it), never beyond the chain's future drift.
    pub template: Box<Block>,
}

/// What the caller must do, in order.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<T> {
    /// Safety data, encoded, for [`Protocol::SAFETY_KEY`]. Write and flush
    /// before carrying out any later effect: otherwise a restart may sign
    /// a message that conflicts with one already sent.
    Persist(Vec<u8>),
    Send {
        to: ValidatorIndex,
        message: Outgoing,
    },
    /// To every other replica.
    Broadcast(Outgoing),
    /// To the peer whose message is being handled (ignored for any other
    /// input): proof of work asks the peer that sent it a block for the
    /// block's missing parent, and answers requests, without knowing who
    /// its peers are.
    Reply(Outgoing),
    /// Append `block` to the chain; its parent is the current head. A BFT
    /// protocol's blocks are `finalized` as they are appended.
    Extend {
        block: Box<Block>,
        finalized: bool,
    },
    /// Blocks up to `height` on the current chain are final. A height at or
    /// below the caller's finalized height changes nothing.
    Finalize(Height),
    /// Roll the chain back to `ancestor` (a proof-of-work reorganization);
    /// never below the finalized height.
    Revert {
        ancestor: Hash,
    },
    /// Deliver [`Input::Timer`] at `at`, replacing an earlier arming of
    /// the same timer.
    ArmTimer {
        timer: T,
        at: TimeMs,
    },
    /// A timer armed earlier is no longer needed.
    CancelTimer(T),
    /// Start (or restart) mining; stop any work in progress.
    RequestWork(WorkRequest),
    Evidence(Evidence),
}

/// What a protocol is told.
#[derive(Debug, Clone)]
pub enum Input<M, T> {
    /// The first input: safety data read back from storage, if any.
    Start { recovered: Option<Vec<u8>> },
    /// A message that [`Protocol::verify`] accepted.
    Message(M),
    /// A timer armed earlier fired.
    Timer(T),
    /// New transactions reached the caller's pool.
    TransactionsAvailable,
    /// A miner found a block for the work last requested.
    Mined(Box<Block>),
}

/// How a protocol instance is tuned: the node's `[consensus]` settings (or
/// the simulator's scenario). Each protocol reads the fields it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// The first timeout of a view, at least.
    pub base_timeout_ms: u64,
    /// The first timeout is also at least this many times the
    /// second-longest recent gap between progress events (0: the base alone); see
    /// [`crate::view_timeout`].
    pub timeout_factor: u64,
    /// The longest a timeout may grow to with back-off.
    pub max_timeout_ms: u64,
    /// Re-broadcast every new valid message once.
    pub forward: bool,
    /// Misbehave on purpose (simulations and test networks only).
    pub byzantine: Option<Byzantine>,
    /// As leader, wait up to this long for a full batch (0: propose at once).
    pub max_batch_delay_ms: u64,
    /// As leader with an empty pool, wait up to this long before an empty
    /// block.
    pub empty_block_delay_ms: u64,
    /// PBFT: a checkpoint every this many heights.
    pub checkpoint_interval: u64,
    /// PBFT: heights accepted above the stable checkpoint (the high
    /// watermark is the low one plus this).
    pub watermark_window: u64,
    /// PBFT: heights a primary keeps in flight (proposed, not committed).
    pub max_in_flight: u64,
    /// Negative control (simulations only): PBFT replicas ignore prepared
    /// certificates in view changes, a broken protocol whose agreement
    /// violations the simulator must report.
    pub unsafe_view_change: bool,
    /// Proof of work: mine blocks that pay this address (`None`: validate
    /// and relay, but do not ask for work).
    pub miner: Option<Address>,
    /// Proof of work: between branches of equal work, keep the one seen
    /// first (Bitcoin Core's rule) instead of the one with the lower hash.
    /// Which tip wins then depends on arrival order, so the default is the
    /// hash; the simulator uses this to model Eyal and Sirer's gamma = 0.
    pub first_seen_ties: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            base_timeout_ms: 1_000,
            timeout_factor: crate::view_timeout::DEFAULT_TIMEOUT_FACTOR,
            max_timeout_ms: 30_000,
            forward: true,
            byzantine: None,
            max_batch_delay_ms: 0,
            empty_block_delay_ms: 0,
            checkpoint_interval: 16,
            watermark_window: 32,
            max_in_flight: 4,
            unsafe_view_change: false,
            miner: None,
            first_seen_ties: false,
        }
    }
}

/// Who runs a protocol instance and how.
#[derive(Debug, Clone)]
pub struct Setup {
    pub key: Keypair,
    pub tuning: Tuning,
}

/// Where a protocol instance stands, for `/status` and the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The view (round) it is in.
    pub view: u64,
    /// What it is doing in that view ("normal", "view-change", ...).
    pub phase: &'static str,
    /// Blocks dropped so far without a verdict, for a reason of this node
    /// (their parent's state unavailable here, a timestamp ahead of this
    /// node's clock): a peer must send them again. Proof of work only.
    pub unchecked_drops: u64,
    /// The current view's timer length, back-off included (BFT protocols;
    /// `None` for proof of work).
    pub view_timeout_ms: Option<u64>,
}

/// A tip of a chain a proof-of-work node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    pub hash: Hash,
    pub height: Height,
    /// Cumulative work, big-endian hex without leading zeros.
    pub work: String,
    /// Blocks from the tip down to where it leaves the best chain (0 for
    /// the best tip).
    pub branch_len: u64,
    /// The best tip (the chain the node follows).
    pub active: bool,
}

/// Why a protocol could not be set up for a chain or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("the genesis committee: {0}")]
    Committee(#[from] CommitteeError),
    #[error("this key is not a validator of the chain")]
    NotAValidator,
    #[error("the genesis has no [pow] parameters")]
    NoPowParams,
    #[error("the genesis [pow] targets: {0}")]
    PowTarget(phalanx_chain::pow::TargetError),
    #[error("the genesis says {genesis}, this protocol is {protocol}")]
    WrongKind {
        genesis: ConsensusKind,
        protocol: ConsensusKind,
    },
    #[error("behaviour {behaviour} does not apply to {protocol}; it has {expected}")]
    BehaviourNotApplicable {
        behaviour: Byzantine,
        protocol: ConsensusKind,
        expected: String,
    },
}

/// Why a protocol stopped: it cannot go on deciding safely.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("stored safety data does not decode: {0}")]
    CorruptSafetyData(DecodeError),
    /// Proof of work: a valid branch with more work than this node's chain
    /// forks below a block this node declared final, so the
    /// confirmations it trusted did not hold (an attacker with more of the
    /// hash power than they were chosen for). The node keeps its final
    /// blocks and stops.
    #[error(
        "a branch (tip {branch_tip}) with more work than this chain forks at height {fork_height}, \
         below block {final_height} that was final here: the confirmations did not hold"
    )]
    FinalityViolated {
        final_height: Height,
        fork_height: Height,
        branch_tip: Hash,
    },
    #[error(transparent)]
    Local(#[from] LocalFault),
}

/// Why fetched blocks (or a finalized block) do not prove what they claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("block {hash} at height {height} does not extend {expected_parent}")]
    NotLinked {
        height: Height,
        hash: Hash,
        expected_parent: Hash,
    },
    #[error("block {hash} at height {height} carries no certificate of this protocol")]
    WrongJustification { height: Height, hash: Hash },
    #[error("block {hash} at height {height} carries a certificate for another block")]
    CertifiesAnotherBlock { height: Height, hash: Hash },
    #[error("block {hash} at height {height}: its certificate (view {view}): {reason}")]
    BadCertificate {
        height: Height,
        hash: Hash,
        view: u64,
        reason: CertError,
    },
}

/// A consensus protocol as the node and the simulator run it.
pub trait Protocol: Sized + fmt::Debug + Send {
    /// What verifying messages needs, per chain (the committee).
    type Context: Clone + fmt::Debug + Send + Sync;
    /// A message that passed [`Protocol::verify`].
    type Message: Clone + fmt::Debug + Send + Sync;
    /// The protocol's timers.
    type Timer: Copy + Ord + fmt::Debug + Send + Sync;
    /// Why bytes were refused.
    type Rejection: std::error::Error + Clone + Send + Sync + 'static;

    /// The genesis `consensus` this protocol runs.
    const KIND: ConsensusKind;
    /// The store key its safety data is persisted under.
    const SAFETY_KEY: &'static [u8];

    /// The context for a chain. `unsafe_quorum` is a negative control for
    /// simulations (certificates of that many signers count as quorums).
    fn context(
        genesis: &Genesis,
        unsafe_quorum: Option<usize>,
    ) -> Result<Self::Context, SetupError>;

    /// An instance for `setup.key` on the caller's head block `committed`
    /// (final for a committee; under proof of work possibly not yet, see
    /// [`Ledger::finalized_height`]); [`Input::Start`] comes next.
    fn new(context: &Self::Context, setup: Setup, committed: Block) -> Result<Self, SetupError>;

    /// Turns bytes that arrived on `channel` from `sender` (its index, if
    /// it is a member) into a verified message: size, decoding,
    /// membership, signatures and the certificates inside.
    fn verify(
        context: &Self::Context,
        sender: Option<ValidatorIndex>,
        channel: Channel,
        bytes: &[u8],
    ) -> Result<Self::Message, Self::Rejection>;

    /// What kind of wrong a rejection is.
    fn reject_reason(rejection: &Self::Rejection) -> RejectReason;

    /// A verified message's kind, for metrics.
    fn message_kind(message: &Self::Message) -> &'static str;

    /// A height that `message` shows the network has finalized, at least
    /// (a hint for block sync).
    fn finalized_height_hint(message: &Self::Message) -> Option<Height> {
        let _ = message;
        None
    }

    /// Handles one input at time `now`; the effects are to be carried out
    /// in order. A [`Fault`] means the instance must not be fed again.
    fn handle(
        &mut self,
        input: Input<Self::Message, Self::Timer>,
        now: TimeMs,
        ledger: &mut dyn Ledger,
    ) -> Result<Vec<Effect<Self::Timer>>, Fault>;

    /// Where the instance stands.
    fn status(&self) -> Status;

    /// The tips of the chains it knows, best first (proof of work, like
    /// Bitcoin's `getchaintips`); empty for protocols with one chain.
    fn chain_tips(&self) -> Vec<ChainTip> {
        Vec::new()
    }

    /// How many of `blocks` (each the child of the one before, the first a
    /// child of `head`) are proved final by the blocks themselves; an error
    /// if any does not link or carries a certificate that does not verify.
    fn prove_final(
        context: &Self::Context,
        head: &Block,
        blocks: &[Block],
    ) -> Result<usize, ProofError>;

    /// Checks the certificate a finalized block carries; `lookup` finds
    /// blocks finalized before it.
    fn check_finalized(
        context: &Self::Context,
        block: &Block,
        lookup: &dyn Fn(&Hash) -> Option<Block>,
    ) -> Result<(), ProofError>;

    /// True if `evidence` proves its culprit signed two conflicting
    /// messages.
    fn check_evidence(context: &Self::Context, evidence: &Evidence) -> bool;

    /// A one-line description of a message, for traces.
    fn describe(channel: Channel, bytes: &[u8]) -> String {
        format!("{channel:?} message of {} bytes", bytes.len())
    }
}
