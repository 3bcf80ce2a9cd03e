//! Small types shared by the protocols.

use phalanx_chain::ConsensusKind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A view (round): the unit of leadership. Views never go backwards.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct View(pub u64);

impl View {
    pub fn next(self) -> View {
        View(self.0.saturating_add(1))
    }

    /// The view before this one (view 0 has none).
    pub fn prev(self) -> Option<View> {
        self.0.checked_sub(1).map(View)
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Time in milliseconds, as the caller's clock (real or virtual) reads it.
pub type TimeMs = u64;

/// Ways a validator can misbehave on purpose, for simulations and test
/// networks. An honest validator is `None` of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Byzantine {
    /// Sends nothing.
    Silent,
    /// As leader, proposes two different blocks for one view, each to half
    /// of the committee.
    Equivocate,
    /// Votes for two different blocks in one view.
    DoubleVote,
    /// Corrupts the signatures on everything it sends.
    InvalidSignature,
    /// As leader, proposes on an old quorum certificate instead of its
    /// highest (HotStuff).
    StaleQc,
    /// As primary, never sends the pre-prepare of every third height it
    /// assigns, though it goes on building on it (PBFT).
    SkipHeight,
    /// As primary, sends the pre-prepares of each pair of heights in the
    /// wrong order, the higher first (PBFT).
    Reorder,
    /// As primary, sends its pre-prepares to only 2f of the other
    /// replicas, withholding them from the last f (PBFT).
    Withhold,
    /// Mines on a private branch and publishes it by Eyal and Sirer's
    /// selfish-mining strategy (proof of work).
    Selfish,
    /// Mines a private branch without the latest honest block (its
    /// payment) and publishes it once the payment is confirmed and the
    /// branch is longer (proof of work).
    DoubleSpend,
}

impl Byzantine {
    pub const ALL: [Byzantine; 10] = [
        Byzantine::Silent,
        Byzantine::Equivocate,
        Byzantine::DoubleVote,
        Byzantine::InvalidSignature,
        Byzantine::StaleQc,
        Byzantine::SkipHeight,
        Byzantine::Reorder,
        Byzantine::Withhold,
        Byzantine::Selfish,
        Byzantine::DoubleSpend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Byzantine::Silent => "silent",
            Byzantine::Equivocate => "equivocate",
            Byzantine::DoubleVote => "double-vote",
            Byzantine::InvalidSignature => "invalid-signature",
            Byzantine::StaleQc => "stale-qc",
            Byzantine::SkipHeight => "skip-height",
            Byzantine::Reorder => "reorder",
            Byzantine::Withhold => "withhold",
            Byzantine::Selfish => "selfish",
            Byzantine::DoubleSpend => "double-spend",
        }
    }

    /// The behaviours `protocol`'s replicas have, in the order the
    /// simulator's random faults rotate through them.
    pub fn of(protocol: ConsensusKind) -> &'static [Byzantine] {
        match protocol {
            ConsensusKind::Hotstuff => &crate::hotstuff::BEHAVIOURS,
            ConsensusKind::Pbft => &crate::pbft::BEHAVIOURS,
            ConsensusKind::Pow => &crate::pow::BEHAVIOURS,
        }
    }
}

impl fmt::Display for Byzantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Byzantine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Byzantine::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Byzantine::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown behaviour {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}
