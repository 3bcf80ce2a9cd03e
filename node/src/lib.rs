//! The Phalanx node: a validator (or full node) process.
//!
//! - [`config`]: `config.toml`, every value with a default.
//! - [`net`]: the [`net::Gossip`] trait, over libp2p or in memory.
//! - [`mempool`]: transactions waiting for a block, bounded.
//! - [`ledger`]: block building and validation on uncommitted state.
//! - [`driver`]: runs the consensus protocol (through the seam
//!   `phalanx_consensus::Protocol`) and carries out its effects.
//! - [`sync`]: block sync, the driver's component for catching up.
//! - [`txgossip`]: admitted transactions gossiped in batches; [`ingest`]:
//!   verifies gossiped batches into the mempool.
//! - [`miner`]: proof-of-work mining on threads of its own.
//! - [`api`]: the HTTP API; [`metrics`]: Prometheus metrics.
//! - [`node`]: puts them together.

pub mod api;
pub mod config;
pub mod driver;
pub mod home;
pub mod ingest;
pub mod ledger;
pub mod mempool;
pub mod metrics;
pub mod miner;
pub mod net;
pub mod node;
pub mod shared;
pub mod sync;
pub mod txgossip;
