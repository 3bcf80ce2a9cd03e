//! Blocks and headers.
//!
//! The block hash is BLAKE3 of the header's canonical encoding (postcard,
//! docs/PROTOCOL.md). A block is its header plus its transactions; the
//! header commits to them through the merkle root of their hashes.

use crate::encoding::{self, DecodeError};
use crate::merkle;
use crate::pow::CompactTarget;
use crate::tx::{MAX_TX_BYTES, Transaction};
use crate::types::{Address, Amount, Height, ValidatorIndex};
use crate::{MAX_BLOCK_TXS, MAX_VALIDATORS};
use phalanx_crypto::{Hash, Signature};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

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

/// Proof-of-work fields. SHA-256d of the header's canonical encoding
/// (which ends with the nonce), read as a big-endian 256-bit number, must
/// not exceed `target`; the target must be the one the block's ancestors
/// give ([`crate::pow::Retarget`]). The miner is the header's `proposer`:
/// it gets `reward` (at most the genesis `block_reward`) and the block's
/// fees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowSeal {
    pub target: CompactTarget,
    /// New coins the miner claims.
    pub reward: Amount,
    /// Last, so that a miner re-encodes only the nonce's bytes
    /// ([`BlockHeader::mining_prefix`]).
    pub nonce: u64,
}

/// A header and its transactions.
///
/// The block's hash is computed the first time it is asked for and kept
/// (clones keep it too): a block passes through the protocol, the
/// speculative state, the store and the simulator's checker, which each
/// need its hash. So the header is reached through [`Block::header`], and
/// [`Block::header_mut`] forgets the kept hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Block {
    header: BlockHeader,
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_BLOCK_TXS>")]
    pub transactions: Vec<Transaction>,
    /// Not encoded: the hash of `header`, once computed.
    #[serde(skip)]
    hash: OnceLock<Hash>,
}

impl PartialEq for Block {
    fn eq(&self, other: &Block) -> bool {
        self.header == other.header && self.transactions == other.transactions
    }
}

impl Eq for Block {}

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
        encoding::digest(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockHeader, DecodeError> {
        encoding::decode(bytes, MAX_HEADER_BYTES)
    }

    /// The proof-of-work seal, if the header has one.
    pub fn pow_seal(&self) -> Option<&PowSeal> {
        match &self.justification {
            Justification::ProofOfWork(seal) => Some(seal),
            _ => None,
        }
    }

    /// SHA-256d of [`BlockHeader::encode`], the hash proof of work is
    /// measured on.
    pub fn pow_hash(&self) -> [u8; 32] {
        phalanx_crypto::sha256d(&self.encode())
    }

    /// The header's encoding without its nonce, for a proof-of-work header:
    /// the canonical encoding is this prefix followed by the nonce as a
    /// varint ([`encoding::push_varint`]), so a miner encodes the rest once.
    pub fn mining_prefix(&self) -> Option<Vec<u8>> {
        let mut zeroed = self.clone();
        match &mut zeroed.justification {
            Justification::ProofOfWork(seal) => seal.nonce = 0,
            _ => return None,
        }
        let mut bytes = zeroed.encode();
        // The nonce 0 is the varint 0x00, the last byte.
        bytes.pop();
        Some(bytes)
    }
}

impl Block {
    pub fn new(header: BlockHeader, transactions: Vec<Transaction>) -> Block {
        Block {
            header,
            transactions,
            hash: OnceLock::new(),
        }
    }

    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The header, to change: the kept hash is forgotten.
    pub fn header_mut(&mut self) -> &mut BlockHeader {
        self.hash = OnceLock::new();
        &mut self.header
    }

    /// The header and the transactions.
    pub fn into_parts(self) -> (BlockHeader, Vec<Transaction>) {
        (self.header, self.transactions)
    }

    /// BLAKE3 of the header's encoding ([`BlockHeader::hash`]), computed
    /// once.
    pub fn hash(&self) -> Hash {
        *self.hash.get_or_init(|| self.header.hash())
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
    fn a_kept_hash_follows_the_header_and_never_goes_stale() {
        let mut block = Block::new(header(Justification::Genesis), Vec::new());
        let first = block.hash();
        assert_eq!(first, block.header().hash());
        let copy = block.clone();
        block.header_mut().timestamp_ms += 1;
        assert_ne!(block.hash(), first, "changing the header forgets the hash");
        assert_eq!(block.hash(), block.header().hash());
        assert_eq!(copy.hash(), first, "a clone keeps its own");
        assert_ne!(block, copy);
        let decoded = Block::decode(&copy.encode()).unwrap();
        assert_eq!(decoded, copy, "equal whether or not a hash is kept");
        assert_eq!(decoded.hash(), first);
        assert_eq!(
            copy.encode(),
            Block::new(copy.header().clone(), Vec::new()).encode()
        );
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
                target: CompactTarget(0x207fffff),
                reward: Amount(0),
                nonce: 0,
            })),
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
    }

    #[test]
    fn the_mining_prefix_and_the_nonce_make_the_header_encoding() {
        for nonce in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let h = header(Justification::ProofOfWork(PowSeal {
                target: CompactTarget(0x1d00ffff),
                reward: Amount(50),
                nonce,
            }));
            let mut bytes = h.mining_prefix().unwrap();
            encoding::push_varint(&mut bytes, nonce);
            assert_eq!(bytes, h.encode(), "nonce {nonce}");
        }
        assert_eq!(header(Justification::Genesis).mining_prefix(), None);
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
