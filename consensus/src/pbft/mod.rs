//! PBFT (Castro & Liskov) over the hash-chained ledger.

use crate::types::Byzantine;

/// The behaviours a PBFT replica has.
pub const BEHAVIOURS: [Byzantine; 7] = [
    Byzantine::Silent,
    Byzantine::Equivocate,
    Byzantine::DoubleVote,
    Byzantine::InvalidSignature,
    Byzantine::SkipHeight,
    Byzantine::Reorder,
    Byzantine::Withhold,
];
