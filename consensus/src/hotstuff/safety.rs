//! The safety data and the rules that read it: what a replica may sign.
//!
//! Everything here must survive a crash (the caller persists
//! [`SafetyData`] before sending what it allowed), so a restarted replica
//! neither votes twice in a view nor votes against its lock.

use super::block_tree::BlockTree;
use super::messages::{
    Payload, Proposal, QuorumCert, SignedMessage, Timeout, TimeoutCert, block_view, parent_cert,
};
use crate::types::View;
use serde::{Deserialize, Serialize};

/// What a replica must not forget across a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyData {
    /// No vote (or timeout) is ever signed for a view at or below this.
    pub last_voted_view: View,
    /// The two-chain lock: a vote must extend its block, or come with a
    /// QC from a later view.
    pub locked_qc: QuorumCert,
    /// The highest QC seen; proposals build on it, timeouts carry it.
    pub high_qc: QuorumCert,
    /// No proposal is ever signed for a view at or below this.
    pub last_proposed_view: View,
    /// The last vote signed, re-sent if asked to vote in its view again.
    pub last_vote: Option<SignedMessage>,
    /// The last timeout signed, re-sent while its view is stuck.
    pub last_timeout: Option<SignedMessage>,
}

/// The safety data, changed only through the rules that keep it safe.
#[derive(Debug)]
pub(super) struct SafetyRules {
    data: SafetyData,
}

impl SafetyRules {
    /// A new replica's rules: nothing signed, locked on genesis.
    pub fn new(genesis: QuorumCert) -> SafetyRules {
        SafetyRules {
            data: SafetyData {
                last_voted_view: View(0),
                locked_qc: genesis.clone(),
                high_qc: genesis,
                last_proposed_view: View(0),
                last_vote: None,
                last_timeout: None,
            },
        }
    }

    pub fn data(&self) -> &SafetyData {
        &self.data
    }

    /// Takes back the safety data persisted before a restart.
    pub fn recover(&mut self, data: SafetyData) {
        self.data = data;
    }

    /// The view to (re)start in: after the highest QC, and never one
    /// already voted or timed out in before (at least view 1).
    pub fn resume_view(&self) -> View {
        View(self.data.high_qc.view)
            .next()
            .max(self.data.last_voted_view)
            .max(View(1))
    }

    pub fn high_qc(&self) -> &QuorumCert {
        &self.data.high_qc
    }

    /// Raises the highest QC to `qc` if it is from a later view.
    pub fn observe_qc(&mut self, qc: &QuorumCert) {
        if qc.view > self.data.high_qc.view {
            self.data.high_qc = qc.clone();
        }
    }

    /// Raises the lock to `qc` if it is from a later view (two-chain).
    pub fn observe_lock(&mut self, qc: &QuorumCert) {
        if qc.view > self.data.locked_qc.view {
            self.data.locked_qc = qc.clone();
        }
    }

    /// True if no proposal was signed for `view` yet.
    pub fn may_propose(&self, view: View) -> bool {
        self.data.last_proposed_view < view
    }

    pub fn proposed(&mut self, view: View) {
        self.data.last_proposed_view = view;
    }

    /// True if a replica in view `current` may vote for `proposal`: it is
    /// for `current`, nothing was signed in `current` yet, it is justified
    /// (its QC is for the view before, or a TC for the view before comes
    /// with it and its QC is at least as high as the TC's, which keeps a
    /// Byzantine leader from burning future views), and it passes
    /// HotStuff's safety rule: it extends the locked block, or its QC is
    /// newer than the lock.
    pub fn may_vote(&self, proposal: &Proposal, current: View, tree: &BlockTree) -> bool {
        let block = &proposal.block;
        let (Some(view), Some(cert)) = (block_view(block), parent_cert(block)) else {
            return false;
        };
        if view != current || view <= self.data.last_voted_view {
            return false;
        }
        let justified = View(cert.view).next() == view
            || proposal
                .timeout_cert
                .as_ref()
                .is_some_and(|tc| tc.view.next() == view && cert.view >= tc.high_qc.view);
        let locked = &self.data.locked_qc;
        let safe = tree.extends(block, &locked.block) || cert.view > locked.view;
        justified && safe
    }

    /// Records a vote signed in its view: nothing more is signed there.
    pub fn voted(&mut self, vote: SignedMessage) {
        self.data.last_voted_view = vote.view();
        self.data.last_vote = Some(vote);
    }

    /// The timeout for `view`, carrying `high_tc`: the one signed in
    /// `view` already, if any, or a new one signed with `sign`, after
    /// which nothing more is signed in `view`. The flag is true for a new
    /// one: the caller must persist the safety data before sending it.
    pub fn timeout(
        &mut self,
        view: View,
        high_tc: Option<TimeoutCert>,
        sign: impl FnOnce(Payload) -> SignedMessage,
    ) -> (SignedMessage, bool) {
        if let Some(signed) = self.timeout_in(view) {
            return (with_high_tc(signed.clone(), high_tc), false);
        }
        let timeout = Timeout {
            view,
            high_qc: self.data.high_qc.clone(),
            high_tc,
        };
        let message = sign(Payload::Timeout(Box::new(timeout)));
        self.data.last_voted_view = self.data.last_voted_view.max(view);
        self.data.last_timeout = Some(message.clone());
        (message, true)
    }

    /// The vote signed in `view`, if any.
    pub fn vote_in(&self, view: View) -> Option<&SignedMessage> {
        self.data.last_vote.as_ref().filter(|v| v.view() == view)
    }

    /// The timeout signed in `view`, if any.
    pub fn timeout_in(&self, view: View) -> Option<&SignedMessage> {
        self.data.last_timeout.as_ref().filter(|t| t.view() == view)
    }

    /// True if a timeout was signed in `view` or a later one.
    pub fn timed_out_since(&self, view: View) -> bool {
        self.data
            .last_timeout
            .as_ref()
            .is_some_and(|t| t.view() >= view)
    }
}

/// Attaches (or refreshes) the unsigned highest-TC field of a timeout; the
/// signature covers only the view and the high QC's view, so it still holds.
fn with_high_tc(mut message: SignedMessage, high_tc: Option<TimeoutCert>) -> SignedMessage {
    if let Payload::Timeout(timeout) = &mut message.payload {
        timeout.high_tc = high_tc;
    }
    message
}
