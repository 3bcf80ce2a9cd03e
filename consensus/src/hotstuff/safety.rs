//! The safety data: what a replica must not forget across a crash.
//!
//! The caller persists [`SafetyData`] before sending what it allowed, so
//! a restarted replica neither votes twice in a view nor votes against
//! its lock.

use super::messages::{QuorumCert, SignedMessage};
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
