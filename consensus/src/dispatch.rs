//! The one place that maps a genesis's consensus kind to the type that
//! implements it, so that the node and the simulator, generic over
//! [`Protocol`], never name a protocol themselves: they hand a job to
//! [`with_protocol`], which runs it with the protocol's type.

use crate::hotstuff::HotStuff;
use crate::pbft::Pbft;
use crate::pow::Pow;
use crate::protocol::Protocol;
use phalanx_chain::ConsensusKind;

/// A job to run with whichever protocol a chain uses.
pub trait WithProtocol {
    type Output;
    fn run<P: Protocol + 'static>(self) -> Self::Output;
}

/// Runs `job` with the protocol of `kind`; `None` if that protocol is not
/// built yet.
pub fn with_protocol<J: WithProtocol>(kind: ConsensusKind, job: J) -> Option<J::Output> {
    match kind {
        ConsensusKind::Hotstuff => Some(job.run::<HotStuff>()),
        ConsensusKind::Pbft => Some(job.run::<Pbft>()),
        ConsensusKind::Pow => Some(job.run::<Pow>()),
    }
}

/// True if [`with_protocol`] runs `kind`.
pub fn is_built(kind: ConsensusKind) -> bool {
    struct Probe;
    impl WithProtocol for Probe {
        type Output = ();
        fn run<P: Protocol + 'static>(self) {}
    }
    with_protocol(kind, Probe).is_some()
}

/// The kinds that are built, in [`ConsensusKind::ALL`]'s order.
pub fn built() -> Vec<ConsensusKind> {
    ConsensusKind::ALL
        .into_iter()
        .filter(|k| is_built(*k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_built() {
        assert_eq!(built(), ConsensusKind::ALL.to_vec());
        struct Kind;
        impl WithProtocol for Kind {
            type Output = ConsensusKind;
            fn run<P: Protocol + 'static>(self) -> ConsensusKind {
                P::KIND
            }
        }
        for kind in built() {
            assert_eq!(with_protocol(kind, Kind), Some(kind));
        }
    }
}
