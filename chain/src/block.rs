//! Blocks and headers.
//!
//! The block hash is BLAKE3 of the header's canonical encoding (postcard,
//! docs/PROTOCOL.md). A block is its header plus its transactions; the
//! header commits to them through the merkle root of their hashes.

use crate::encoding::{self, DecodeError};
use crate::merkle;
use crate::tx::{MAX_TX_BYTES, Transaction};
use crate::types::{Address, Height, ValidatorIndex};
use crate::{MAX_BLOCK_TXS, MAX_VALIDATORS};
use phalanx_crypto::{Hash, Signature};
use serde::{Deserialize, Serialize};

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: Height,
    /// The parent block's hash; for the genesis block, the genesis file's hash.
    pub parent: Hash,
    /// Merkle root of the transactions' hashes ([`merkle::root`]).
    pub tx_root: Hash,
    /// State root after executing this block ([`crate::StateAccumulator::root`]).
    pub state_root: Hash,
    /// Milliseconds since the Unix epoch, as the proposer saw it.
    pub timestamp_ms: u64,
    /// Who proposed (or mined) the block; the block's fees go to this account.
    pub proposer: Address,
    /// Why this block may extend its parent.
    pub justification: Justification,
}

/// What entitles a block to extend its parent, depending on the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Justification {
    /// The genesis block.
    Genesis,
    /// A block of a BFT committee: the view (round) it was proposed in,
    /// and a certificate over its parent (a HotStuff quorum certificate, a
    /// PBFT commit certificate). Carrying the view makes a block
    /// self-describing: its hash fixes its place in the protocol, so two
    /// blocks one leader signed for one view are distinct, provable
    /// equivocation, and a synced block needs no side data.
    Bft {
        view: u64,
        parent_cert: BftCertificate,
    },
    /// A proof-of-work seal.
    ProofOfWork(PowSeal),
}

/// A quorum of validator signatures over a block in a view. What exactly
/// each signature covers (the domain and payload) is the consensus
/// protocol's definition; the ledger only carries and bounds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BftCertificate {
    pub view: u64,
    pub block: Hash,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_VALIDATORS>")]
    pub signatures: Vec<ValidatorSignature>,
}

/// One validator's signature in a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSignature {
    pub validator: ValidatorIndex,
    pub signature: Signature,
}

/// Proof-of-work fields: SHA-256d of the header's encoding, read as a
/// big-endian 256-bit number, must have at least `difficulty_bits` leading
/// zero bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowSeal {
    pub difficulty_bits: u32,
    pub nonce: u64,
}

/// A header and its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_BLOCK_TXS>")]
    pub transactions: Vec<Transaction>,
}

/// The largest encoded header: fixed fields plus a full certificate.
pub const MAX_HEADER_BYTES: usize = 10 + 32 * 4 + 10 + 10 + 16 + MAX_VALIDATORS * (3 + 64) + 64;
/// The largest encoded block.
pub const MAX_BLOCK_BYTES: usize = MAX_HEADER_BYTES + 5 + MAX_BLOCK_TXS * MAX_TX_BYTES;

impl BlockHeader {
    /// The canonical encoding the block hash covers.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// BLAKE3 of [`BlockHeader::encode`].
    pub fn hash(&self) -> Hash {
        Hash::digest(&self.encode())
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        encoding::decode(bytes, MAX_HEADER_BYTES)
    }
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn height(&self) -> Height {
        self.header.height
    }

    /// The transactions' hashes, in block order.
    pub fn tx_hashes(&self) -> Vec<Hash> {
        self.transactions.iter().map(Transaction::hash).collect()
    }

    /// The merkle root the header should carry.
    pub fn compute_tx_root(&self) -> Hash {
        merkle::root(&self.tx_hashes())
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Block, DecodeError> {
        encoding::decode(bytes, MAX_BLOCK_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(justification: Justification) -> BlockHeader {
        BlockHeader {
            height: Height(7),
            parent: Hash::digest(b"parent"),
            tx_root: merkle::root(&[]),
            state_root: Hash::digest(b"state"),
            timestamp_ms: 1_700_000_000_000,
            proposer: Address([9; 32]),
            justification,
        }
    }

    #[test]
    fn hash_covers_every_header_field() {
        let base = header(Justification::Genesis);
        let h = base.hash();
        let variants = [
            BlockHeader {
                height: Height(8),
                ..base.clone()
            },
            BlockHeader {
                parent: Hash::ZERO,
                ..base.clone()
            },
            BlockHeader {
                tx_root: Hash::ZERO,
                ..base.clone()
            },
            BlockHeader {
                state_root: Hash::ZERO,
                ..base.clone()
            },
            BlockHeader {
                timestamp_ms: 1,
                ..base.clone()
            },
            BlockHeader {
                proposer: Address([8; 32]),
                ..base.clone()
            },
            header(Justification::ProofOfWork(PowSeal {
                difficulty_bits: 1,
                nonce: 0,
            })),
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
    }

    #[test]
    fn oversized_certificates_are_refused() {
        let sig = ValidatorSignature {
            validator: ValidatorIndex(0),
            signature: Signature([1; 64]),
        };
        let full = header(Justification::Bft {
            view: u64::MAX,
            parent_cert: BftCertificate {
                view: u64::MAX,
                block: Hash::ZERO,
                signatures: vec![sig.clone(); MAX_VALIDATORS],
            },
        });
        let bytes = full.encode();
        assert!(
            bytes.len() <= MAX_HEADER_BYTES,
            "{} > {MAX_HEADER_BYTES}",
            bytes.len()
        );
        assert_eq!(BlockHeader::decode(&bytes).unwrap(), full);
        let over = header(Justification::Bft {
            view: 2,
            parent_cert: BftCertificate {
                view: 1,
                block: Hash::ZERO,
                signatures: vec![sig; MAX_VALIDATORS + 1],
            },
        });
        assert!(BlockHeader::decode(&over.encode()).is_err());
    }
}
