//! Phalanx test networks.
//!
//! - [`sim`]: the deterministic simulator. n consensus replicas in one
//!   process, a simulated network with delays, loss, duplication,
//!   partitions and crashes, Byzantine replicas, all from one seed, and
//!   checkers for agreement, integrity, liveness and determinism.
//! - [`cli`]: the `phalanx-testnet` command line (`phalanx-testnet sim`).
//!
//! Launching local networks of real `phalanx-node` processes comes with
//! the node.

pub mod cli;
pub mod sim;
