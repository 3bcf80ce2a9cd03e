//! When a leader proposes, and what: the batch and empty-block delays, the
//! block built for the view, and the deferral that keeps a committee of
//! one from proposing inside its own proposal.
//!
//! With `Config::max_batch_delay_ms` above 0, a leader entering its view
//! proposes at once only if the ledger says a block would be worth it (a
//! full batch, or uncommitted transactions that need blocks on top to
//! commit); otherwise it waits until transactions make it ready or the
//! delay runs out. With `Config::empty_block_delay_ms` above the batch
//! delay, a leader whose pool is empty waits that longer delay instead,
//! and a transaction arriving brings the proposal forward to the batch
//! delay counted from when the leader began to wait.

use super::block_tree::BlockTree;
use super::config::Config;
use super::messages::{Proposal, QuorumCert};
use super::pacemaker::Pacemaker;
use crate::ledger::{Ledger, LedgerError};
use crate::types::{TimeMs, View};
use phalanx_chain::{Address, Block, Justification};

/// The leader's waiting and proposing state.
#[derive(Debug)]
pub(super) struct Proposer {
    max_batch_delay_ms: u64,
    empty_block_delay_ms: u64,
    /// The last view whose propose timer was armed.
    armed: View,
    /// When the leader began to wait in that view.
    wait_from: TimeMs,
    /// When that view's propose timer is due.
    timer_at: TimeMs,
    /// Set while a proposal is being made (see [`Proposer::begin`]).
    proposing: bool,
}

/// Whether to propose now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    Now,
    /// Not yet: the view's propose timer is armed for this time or sooner.
    Wait,
    /// Not yet: arm the view's propose timer for this time.
    WaitUntil(TimeMs),
}

impl Proposer {
    pub fn new(config: &Config) -> Proposer {
        Proposer {
            max_batch_delay_ms: config.max_batch_delay_ms,
            empty_block_delay_ms: config.empty_block_delay_ms,
            armed: View(0),
            wait_from: 0,
            timer_at: 0,
            proposing: false,
        }
    }

    /// Proposes now if the ledger is ready, or there is no delay to wait,
    /// or the leader has waited it out already; otherwise waits for the
    /// view's propose timer (the batch delay, or the empty-block delay when
    /// no transaction waits, counted from when the leader began to wait),
    /// armed or brought forward if it is due later than that.
    pub fn pace(
        &mut self,
        view: View,
        now: TimeMs,
        ledger: &dyn Ledger,
        tree: &BlockTree,
        high_qc: &QuorumCert,
    ) -> Pace {
        let batch = self.max_batch_delay_ms;
        let empty = self.empty_block_delay_ms;
        let delay = if empty > batch && !ledger.has_pending_transactions() {
            empty
        } else {
            batch
        };
        if delay == 0 {
            return Pace::Now;
        }
        let ready = tree
            .get(&high_qc.block)
            .is_some_and(|parent| ledger.batch_ready() || tree.uncommitted_transactions(parent));
        if ready {
            return Pace::Now;
        }
        if self.armed < view {
            self.armed = view;
            self.wait_from = now;
            self.timer_at = TimeMs::MAX;
        }
        // Delays count from when the leader began to wait.
        let at = self.wait_from.saturating_add(delay);
        if at <= now {
            return Pace::Now;
        }
        if at >= self.timer_at {
            return Pace::Wait;
        }
        self.timer_at = at;
        Pace::WaitUntil(at)
    }

    /// Starts making a proposal; false if one is being made already. A
    /// proposal that leads straight to the next view in which this replica
    /// leads again (a committee of one: its own vote is a QC) would recurse
    /// without end: the caller defers such a nested proposal to a propose
    /// timer due at once instead. Call [`Proposer::end`] when the proposal
    /// is made.
    pub fn begin(&mut self) -> bool {
        if self.proposing {
            return false;
        }
        self.proposing = true;
        true
    }

    pub fn end(&mut self) {
        self.proposing = false;
    }
}

/// The proposal for `view` on `parent`, certified by `parent_qc`: the
/// ledger fills the block; a QC older than the view before needs the TC
/// that ended the view before to justify it.
pub(super) fn build(
    view: View,
    parent: &Block,
    parent_qc: &QuorumCert,
    pacemaker: &Pacemaker,
    ledger: &mut dyn Ledger,
    proposer: Address,
    now: TimeMs,
) -> Result<Proposal, LedgerError> {
    let justification = Justification::Bft {
        view: view.0,
        parent_cert: parent_qc.clone(),
    };
    let block = ledger.build_block(parent, proposer, now, justification)?;
    let timeout_cert = if View(parent_qc.view).next() == view {
        None
    } else {
        pacemaker.tc_ending_view_before(view)
    };
    Ok(Proposal {
        block,
        timeout_cert,
        parent_header: parent.header().clone(),
    })
}
