//! Phalanx test networks.
//!
//! - [`sim`]: the deterministic simulator. n consensus replicas in one
//!   process, a simulated network with delays, loss, duplication,
//!   partitions and crashes, Byzantine replicas, all from one seed, and
//!   checkers for agreement, integrity, liveness and determinism.
//! - [`local`]: local networks of real `phalanx-node` processes: start,
//!   watch, stop, crash, pause, partition, load and check them.
//! - [`bench`]: `phalanx-testnet bench`, a fresh network under a steady
//!   load with an optional fault, measured into `results.json`; its
//!   submit and follow engine also runs `load`.
//! - [`compare`]: `phalanx-testnet compare`, every protocol under every
//!   fault through `bench`, a saturation sweep and the simulator's sweeps,
//!   as a report with charts.
//! - [`cli`]: the `phalanx-testnet` command line.

pub mod bench;
pub mod cli;
pub mod compare;
pub mod local;
pub mod sim;
