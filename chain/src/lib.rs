//! The Phalanx ledger: one chain format, one transaction format, one account
//! state, whatever protocol orders the blocks.
//!
//! - [`Address`], [`Transaction`]: who pays whom, signed with ed25519 over
//!   the exact bytes of docs/PROTOCOL.md.
//! - [`Block`], [`BlockHeader`], [`merkle`]: blocks and their commitments.
//! - [`state`]: accounts and the incremental state root.
//! - [`execute`]: the rules that decide whether a transaction and a block
//!   apply, and what they change.
//! - [`Genesis`]: the TOML file a chain starts from.
//! - [`pow`]: proof-of-work targets, work, retargeting and timestamps.
//! - [`encoding`]: postcard with size limits, for storage and the wire.
//! - [`store`]: durable storage on sled, and an in-memory store for tests
//!   and the simulator, behind one trait.
//!
//! ```
//! use phalanx_chain::{Address, Amount, ChainId, Nonce, Transaction};
//! use phalanx_crypto::Keypair;
//!
//! let sender = Keypair::from_seed(&[1; 32]);
//! let to: Address = "0202020202020202020202020202020202020202020202020202020202020202".parse().unwrap();
//! let chain = ChainId::new("phalanx-local").unwrap();
//! let tx = Transaction::sign(&sender, chain, to, Amount(250), Amount(1), Nonce(0));
//! assert!(tx.verify_signature().is_ok());
//! // The JSON form the HTTP API takes.
//! let json = serde_json::to_string(&tx).unwrap();
//! assert_eq!(serde_json::from_str::<Transaction>(&json).unwrap().hash(), tx.hash());
//! ```

pub mod block;
pub mod encoding;
pub mod error;
pub mod execute;
mod fifo;
pub mod genesis;
pub mod merkle;
pub mod pow;
pub mod speculative;
pub mod state;
pub mod store;
#[cfg(test)]
mod test_seed;
pub mod tx;
mod types;
pub mod verified;

pub use block::{BftCertificate, Block, BlockHeader, Justification, PowSeal, ValidatorSignature};
pub use error::{BlockError, TxError};
pub use execute::{
    BlockBuilder, ExecutionError, Rules, StateChanges, StateView, execute_block, execute_block_with,
};
pub use genesis::{ConsensusKind, Genesis, GenesisError, UnknownConsensus};
pub use phalanx_crypto::{ChainId, Hash};
pub use state::{Account, StateAccumulator};
pub use store::{Head, MemStore, SledStore, Store, StoreError, TxIndex, TxLocation, Undo};
pub use tx::Transaction;
pub use types::{Address, AddressError, Amount, Height, Nonce, ValidatorIndex};
pub use verified::VerifiedTxs;

/// The most transactions one block may carry.
pub const MAX_BLOCK_TXS: usize = 10_000;
/// The largest validator set (and so the most signatures in a certificate).
pub const MAX_VALIDATORS: usize = 256;
