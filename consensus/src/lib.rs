//! Phalanx consensus: protocols as pure state machines.
//!
//! A protocol is a value with one entry point: it takes an input (a
//! verified message, a timer that fired, recovered safety data at start-up)
//! and the current time, and returns the effects the caller must carry out
//! in order (persist safety data, send, broadcast, extend the chain, arm a
//! timer, report evidence). This crate reads no clock, draws no randomness,
//! and does no I/O, so the same code runs in the node and in the
//! deterministic simulator.
//!
//! - [`protocol`]: the seam every protocol implements and that the node's
//!   driver and the simulator drive ([`Protocol`], [`Effect`], [`Input`]).
//! - [`Committee`]: the validators, `f`, the quorum and the leader of a view.
//! - [`hotstuff`]: chained HotStuff with a Jolteon-style pacemaker.
//! - [`pbft`]: PBFT (Castro & Liskov) over the hash-chained ledger.
//! - [`pow`]: proof of work (Nakamoto consensus): heaviest chain, reorgs,
//!   finality at k confirmations.
//! - [`Ledger`]: what a protocol asks of its caller about blocks (build one
//!   to propose, validate one before voting, read committed ones).
//! - [`catchup`]: fetching blocks by hash between replicas.

pub mod bft;
pub mod catchup;
pub mod certificate;
mod committee;
pub mod dispatch;
pub mod hotstuff;
mod ledger;
pub mod pbft;
pub mod pow;
pub mod protocol;
/// Seeds for randomized tests (one source, shared with the chain crate).
#[cfg(test)]
#[path = "../../chain/src/test_seed.rs"]
mod test_seed;
#[cfg(test)]
mod test_support;
mod types;
pub mod view_timeout;

pub use committee::{Committee, CommitteeError};
pub use ledger::{InvalidBlock, Ledger, LedgerError, LocalFault};
pub use protocol::{
    ChainTip, Channel, Effect, Evidence, Fault, Input, Origin, Outgoing, ProofError, Protocol,
    RejectReason, Setup, SetupError, Status, Tuning, WorkRequest,
};
pub use types::{Byzantine, TimeMs, View};

use phalanx_chain::Genesis;

/// The committee of a BFT genesis for protocol `P`, with the simulator's
/// negative control applied if asked for.
pub(crate) fn committee_for<P: Protocol>(
    genesis: &Genesis,
    unsafe_quorum: Option<usize>,
) -> Result<Committee, SetupError> {
    if genesis.consensus != P::KIND {
        return Err(SetupError::WrongKind {
            genesis: genesis.consensus,
            protocol: P::KIND,
        });
    }
    let committee = Committee::from_genesis(genesis)?;
    Ok(match unsafe_quorum {
        Some(quorum) => committee.with_unsafe_quorum(quorum),
        None => committee,
    })
}

/// Refuses a Byzantine behaviour that `protocol` does not have.
pub(crate) fn check_behaviour(
    protocol: phalanx_chain::ConsensusKind,
    behaviour: Option<Byzantine>,
    known: &[Byzantine],
) -> Result<(), SetupError> {
    match behaviour {
        Some(b) if !known.contains(&b) => {
            let names: Vec<&str> = known.iter().map(|b| b.name()).collect();
            Err(SetupError::BehaviourNotApplicable {
                behaviour: b,
                protocol,
                expected: names.join(", "),
            })
        }
        _ => Ok(()),
    }
}
