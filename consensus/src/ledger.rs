//! What a protocol asks of its caller about blocks, and how the caller
//! answers when it cannot.

use phalanx_chain::speculative::SpeculativeError;
use phalanx_chain::{Address, Block, BlockError, Hash, Height, Justification, StoreError};

/// Why the ledger could not build or accept a block, by consequence
/// (STYLE.md, section 5).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The block breaks a rule: never vote for it.
    #[error("invalid block: {0}")]
    Invalid(#[from] InvalidBlock),
    /// The state the block builds on is not available here yet (an
    /// ancestor is missing): not now, maybe later.
    #[error("the state after block {parent} is not available here")]
    Unavailable { parent: Hash },
    /// The node itself failed: stop rather than decide from bad state.
    #[error(transparent)]
    Fault(#[from] LocalFault),
}

/// A rule a block breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBlock {
    /// Its header or transactions do not apply on its parent.
    #[error(transparent)]
    Execution(#[from] BlockError),
    /// Its timestamp is too far ahead of this node's clock.
    #[error(
        "timestamp {timestamp_ms} ms is more than {max_drift_ms} ms ahead of the local clock ({now_ms} ms)"
    )]
    FromTheFuture {
        timestamp_ms: u64,
        now_ms: u64,
        max_drift_ms: u64,
    },
}

/// A failure of the node itself, not of anything it was sent. A protocol
/// that meets one stops deciding; the node halts consensus.
#[derive(Debug, thiserror::Error)]
pub enum LocalFault {
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
}

impl From<SpeculativeError> for LedgerError {
    fn from(e: SpeculativeError) -> Self {
        match e {
            SpeculativeError::Invalid(b) => LedgerError::Invalid(InvalidBlock::Execution(b)),
            SpeculativeError::StateUnavailable { parent } => LedgerError::Unavailable { parent },
            SpeculativeError::Storage(s) => LedgerError::Fault(LocalFault::Storage(s)),
        }
    }
}

/// The caller's side of block handling. The protocol decides *which*
/// blocks to propose, vote for and commit; the ledger decides what a block
/// contains and whether its contents are valid, against the state after its
/// parent (which may itself be an uncommitted block).
pub trait Ledger {
    /// Builds a block on `parent` (a block the protocol holds, committed or
    /// not) with transactions from the caller's pool, carrying
    /// `justification`, proposed by `proposer` at `timestamp_ms`.
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError>;

    /// Builds a block on `parent` with no transactions (PBFT's null
    /// requests). The default says the state is not available: a ledger
    /// that serves PBFT must build one.
    fn build_empty_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError> {
        let _ = (proposer, timestamp_ms, justification);
        Err(LedgerError::Unavailable {
            parent: parent.hash(),
        })
    }

    /// Checks that `block`'s transactions apply on top of `parent` and its
    /// header (height, parent hash, transaction and state roots, timestamp)
    /// is right. A replica never votes for a block this has not accepted.
    fn validate_block(&mut self, parent: &Block, block: &Block) -> Result<(), LedgerError>;

    /// True if a full batch of transactions is waiting: a leader that
    /// waits for batches proposes at once. The default never waits.
    fn batch_ready(&self) -> bool {
        true
    }

    /// True if any transaction a block could take is waiting (one stuck
    /// behind a missing nonce does not count). A leader with
    /// none may wait longer before proposing an empty block. The default
    /// says yes (never idle).
    fn has_pending_transactions(&self) -> bool {
        true
    }

    /// A block that reached the protocol outside `build_block` and
    /// `validate_block` (a catch-up response), which a later block may
    /// build on: the ledger remembers it so that it can compute its state
    /// when a descendant needs it. The default forgets it.
    fn observe_block(&mut self, block: &Block) {
        let _ = block;
    }

    /// A committed block (or one the caller kept on disk for peers that
    /// are catching up).
    fn committed_block(&self, hash: &Hash) -> Option<Block>;

    /// The height up to which the caller's chain is final: it will not
    /// roll back below it (proof of work). `None` if it does not say.
    fn finalized_height(&self) -> Option<Height> {
        None
    }
}
