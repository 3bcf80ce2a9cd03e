//! Phalanx consensus: protocols as pure state machines.
//!
//! A protocol is a value with one entry point: it takes an input (a
//! verified message, a timer that fired, recovered safety data at start-up)
//! and the current time, and returns the effects the caller must carry out
//! in order (persist safety data, send, broadcast, commit a block, arm a
//! timer, report evidence). This crate reads no clock, draws no randomness,
//! and does no I/O, so the same code runs in the node and in the
//! deterministic simulator.
//!
//! - [`Committee`]: the validators, `f`, the quorum and the leader of a view.
//! - [`hotstuff`]: chained HotStuff with a Jolteon-style pacemaker.
//! - [`Ledger`]: what a protocol asks of its caller about blocks (build one
//!   to propose, validate one before voting, read committed ones).

mod committee;
pub mod hotstuff;
mod ledger;
/// Seeds for randomized tests (one source, shared with the chain crate).
#[cfg(test)]
#[path = "../../chain/src/test_seed.rs"]
mod test_seed;
mod types;

pub use committee::{Committee, CommitteeError};
pub use ledger::Ledger;
pub use types::{Byzantine, TimeMs, View};
