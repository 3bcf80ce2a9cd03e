//! Phalanx cryptography.
//!
//! - [`Keypair`], [`PublicKey`] and [`Signature`]: ed25519 (RFC 8032).
//!   Signing is `ed25519-dalek`'s; verification follows ZIP 215
//!   ([`zip215`]: cofactored, small-order and non-canonical points
//!   accepted, `s` canonical), on `curve25519-dalek`. [`PreparedKey`] is a
//!   key decoded once for many verifications, and [`verify_batch`]
//!   checks many signatures at once with exactly the same verdicts (see
//!   [`batch`] for the argument).
//! - [`Domain`] and [`SigningBytes`]: every signature in Phalanx covers a
//!   domain tag naming the kind of message, the chain id, then the payload.
//!   The only way to produce bytes to sign is through a [`Domain`], so a
//!   signature made for one kind of message never verifies as another.
//! - [`Hash`]: a 32-byte BLAKE3 digest; [`sha256d`] for proof of work.
//! - [`keyfile`]: the JSON key file format.
//! - [`key_cache`]: keys decoded before, kept (bounded) for the next
//!   signature by the same key.
//! - [`memo`]: a per-thread memo of verdicts, for the simulator.
//!
//! This crate does no I/O beyond reading and writing key files.
//!
//! ```
//! use phalanx_crypto::{ChainId, Domain, Keypair};
//!
//! let key = Keypair::from_seed(&[7; 32]);
//! let chain = ChainId::new("phalanx-local").unwrap();
//! let vote = Domain::HotStuffVote.begin(&chain).u64_le(42).finish();
//! let signature = key.sign(&vote);
//! assert!(key.public().verify(&vote, &signature).is_ok());
//!
//! // The same payload under another kind, or on another chain, is a
//! // different message: the signature does not carry over.
//! let timeout = Domain::HotStuffTimeout.begin(&chain).u64_le(42).finish();
//! assert!(key.public().verify(&timeout, &signature).is_err());
//! let elsewhere = Domain::HotStuffVote.begin(&ChainId::new("other").unwrap()).u64_le(42).finish();
//! assert!(key.public().verify(&elsewhere, &signature).is_err());
//! ```

pub mod batch;
mod domain;
mod fixed_bytes;
mod hash;
pub mod key_cache;
pub mod keyfile;
mod keys;
pub mod maps;
pub mod memo;
#[cfg(test)]
#[path = "../../chain/src/test_seed.rs"]
mod test_seed;
pub mod zip215;

pub use batch::{BatchEntry, verify_batch};
pub use domain::{
    CHAIN_ID_MAX_LEN, ChainId, ChainIdError, Domain, SigningBytes, SigningBytesBuilder,
};
pub use fixed_bytes::HexError;
pub use hash::{Hash, HashParseError, sha256d};
pub use keys::{Keypair, PublicKey, RandomnessError, Signature, SignatureError};
pub use zip215::PreparedKey;
