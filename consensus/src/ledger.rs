//! What a protocol asks of its caller about blocks.

use phalanx_chain::{Address, Block, Hash, Justification};

/// The caller's side of block handling. The protocol decides *which*
/// blocks to propose, vote for and commit; the ledger decides what a block
/// contains and whether its contents are valid, against the state after its
/// parent (which may itself be an uncommitted block).
pub trait Ledger {
    /// Builds a block on `parent` (a block the protocol holds, committed or
    /// not) with transactions from the caller's pool, carrying
    /// `justification`, proposed by `proposer` at `timestamp_ms`. Returns
    /// `None` if the parent's state is not available.
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Option<Block>;

    /// True if `block`'s transactions apply on top of `parent` and its
    /// header (height, parent hash, transaction and state roots, timestamp)
    /// is right. A replica never votes for a block this has not accepted.
    fn validate_block(&mut self, parent: &Block, block: &Block) -> bool;

    /// True if a block built on `parent` now would be worth proposing
    /// without waiting for more transactions: a full batch is waiting, or
    /// blocks above the last committed one carry transactions that need
    /// more blocks on top to commit. Only asked when the protocol is
    /// configured to wait for batches; the default never waits.
    fn ready_to_propose(&self, parent: &Block) -> bool {
        let _ = parent;
        true
    }

    /// True if any transaction is waiting to go into a block. A leader with
    /// none waits [`crate::hotstuff::Config::empty_block_delay_ms`] rather
    /// than the batch delay before proposing an empty block. The default
    /// says yes (never idle).
    fn has_pending_transactions(&self) -> bool {
        true
    }

    /// A committed block, for peers that are catching up.
    fn committed_block(&self, hash: &Hash) -> Option<Block>;
}
