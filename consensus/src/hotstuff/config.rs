//! The replica's tunables.

use crate::types::Byzantine;
use crate::view_timeout::DEFAULT_TIMEOUT_FACTOR;

/// Tunables, each with a bound.
#[derive(Debug, Clone)]
pub struct Config {
    /// The first timeout of a view, at least; it doubles for each view in
    /// a row that ends without a QC, up to `max_timeout_ms`.
    pub base_timeout_ms: u64,
    /// The first timeout is also at least this many times the second-longest of
    /// the last few gaps between QCs (0: the base alone). See
    /// [`crate::view_timeout`].
    pub timeout_factor: u64,
    /// The longest a view's timer may grow to with back-off.
    pub max_timeout_ms: u64,
    /// Uncommitted blocks kept at most.
    pub max_pending_blocks: usize,
    /// Proposals waiting for their parent, at most.
    pub max_buffered_proposals: usize,
    /// Messages for views further ahead of ours than this are not kept:
    /// only their certificates (and a timeout's view) are learnt from.
    pub future_view_window: u64,
    /// Re-broadcast every new valid message once.
    pub forward: bool,
    /// Misbehave on purpose (simulations and test networks only).
    pub byzantine: Option<Byzantine>,
    /// As leader, wait up to this long after entering a view for the
    /// ledger to be ready to propose ([`Ledger::ready_to_propose`]: a full
    /// batch, or uncommitted transactions that need more blocks on top to
    /// commit), then propose whatever there is. 0 proposes at once. Keep it
    /// well below `base_timeout_ms`.
    pub max_batch_delay_ms: u64,
    /// As leader with no transaction waiting at all
    /// ([`Ledger::has_pending_transactions`]), wait up to this long instead
    /// of `max_batch_delay_ms` before proposing an empty block: an idle
    /// chain grows by about one block per this delay. A transaction that
    /// arrives meanwhile ([`Input::TransactionsAvailable`]) brings the
    /// proposal forward to `max_batch_delay_ms` after the wait began (at
    /// once if that has passed). At or below
    /// `max_batch_delay_ms` it changes nothing. Keep it well below
    /// `base_timeout_ms`.
    pub empty_block_delay_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_timeout_ms: 1_000,
            timeout_factor: DEFAULT_TIMEOUT_FACTOR,
            max_timeout_ms: 30_000,
            max_pending_blocks: 1_024,
            max_buffered_proposals: 64,
            future_view_window: 100,
            forward: true,
            byzantine: None,
            max_batch_delay_ms: 0,
            empty_block_delay_ms: 0,
        }
    }
}
