//! Durable storage of blocks, indexes, accounts and consensus safety data.
//!
//! [`SledStore`] is what a node uses; [`MemStore`] keeps the same contents
//! in memory for tests and the simulator. Both implement [`Store`] with the
//! same rules, checked by one shared test suite:
//!
//! - **blocks**: block hash → encoded block;
//! - **heights**: height → block hash;
//! - **txs**: transaction hash → (height, position), unless the node
//!   turned the index off ([`TxIndex`]);
//! - **accounts**: address → account (empty accounts are deleted);
//! - **meta**: genesis hash, head header, finalized height, the state
//!   accumulator;
//! - **safety**: a key-value space reserved for consensus safety data;
//! - **undo**: height → what a block not yet final changed (each touched
//!   account's value before it, and the state accumulator before it), so
//!   that a proof-of-work reorganization can roll it back.
//!
//! [`Store::commit_block`] writes a block, its state changes and its
//! indexes in one atomic batch, and it returns only after they are durable:
//! after a crash the store holds either all of a commit or none of it.
//! [`Store::revert_to`] rolls the chain back to an ancestor the same way,
//! never below the finalized height. Undo data is written only for blocks
//! committed above the finalized height and dropped once they are final,
//! so a BFT chain (final at once) writes none.

mod memory;
mod sled_store;

pub use memory::MemStore;
pub use sled_store::{DEFAULT_CACHE_BYTES, SledOptions, SledStore};

use crate::block::{Block, BlockHeader, Justification};
use crate::encoding::DecodeError;
use crate::execute::{StateChanges, StateView};
use crate::genesis::Genesis;
use crate::state::{Account, StateAccumulator};
use crate::types::{Address, Height};
use crate::{MAX_BLOCK_TXS, state::ACCUMULATOR_BYTES};
use phalanx_crypto::Hash;
use serde::{Deserialize, Serialize};

/// The last committed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub hash: Hash,
    pub header: BlockHeader,
}

impl Head {
    pub fn of(header: &BlockHeader) -> Head {
        Head {
            hash: header.hash(),
            header: header.clone(),
        }
    }

    pub fn height(&self) -> Height {
        self.header.height
    }
}

/// Where a committed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    pub height: Height,
    /// Position in the block's transaction list.
    pub index: u32,
}

/// Which committed transactions [`Store::tx_location`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxIndex {
    /// Every one committed at or above this height: the genesis height if
    /// the index was always kept, or the height after the head at the
    /// open that turned it back on.
    From(Height),
    /// None: the store keeps no transaction index.
    Off,
}

/// Storage failures. Every one is a local fault: the node should stop
/// rather than carry on from a state it cannot trust.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(#[from] sled::Error),
    #[error("database {path} is in use by another process (or another open store)")]
    Locked { path: String },
    #[error(
        "database {path} is in storage format {found}, which this build does not read: it reads format 2 and upgrades format 1 (a newer build wrote it, or the format record is damaged)"
    )]
    OtherFormat { path: String, found: String },
    #[error("stored data is corrupt: {what}")]
    Corrupt { what: String },
    #[error(
        "block {block_height} (parent {block_parent}) does not extend the head, height {head_height} hash {head_hash}"
    )]
    NotExtendingHead {
        head_height: Height,
        head_hash: Hash,
        block_height: Height,
        block_parent: Hash,
    },
    #[error("the first block committed must be a genesis block at height 0, got height {height}")]
    NotGenesis { height: Height },
    #[error("state changes give root {changes}, the block's header says {header}")]
    StateRootMismatch { changes: Hash, header: Hash },
    #[error(
        "this database belongs to genesis {stored}, not {given}: it was created for another chain"
    )]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("finalized height {requested} is beyond the head at {head}")]
    FinalizedBeyondHead { requested: Height, head: Height },
    #[error("finalized height cannot go back from {current} to {requested}")]
    FinalizedWentBack { current: Height, requested: Height },
    #[error("the store has no head: genesis was never committed to it")]
    NoHead,
    #[error("cannot revert to height {ancestor}: blocks up to height {finalized} are final")]
    RevertBelowFinalized { finalized: Height, ancestor: Height },
    #[error("cannot revert to block {hash}: it is not on the stored chain")]
    NotOnChain { hash: Hash },
}

impl StoreError {
    pub(crate) fn corrupt(what: impl std::fmt::Display, err: DecodeError) -> StoreError {
        StoreError::Corrupt {
            what: format!("{what}: {err}"),
        }
    }
}

/// What a block not yet final changed, to roll it back: the state
/// accumulator before it, and each account it touched as it was before
/// (`None`: the account did not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub accumulator: Vec<u8>,
    pub accounts: Vec<(Address, Option<Account>)>,
}

/// The largest encoded [`Undo`]: the accumulator, and at most two accounts
/// per transaction plus the proposer's, each at most 32 + 1 + 20 bytes.
pub(crate) const MAX_UNDO_BYTES: usize = ACCUMULATOR_BYTES + 8 + (2 * MAX_BLOCK_TXS + 1) * 64;

/// The storage a node needs. See the module docs for what each part holds.
pub trait Store: StateView + Send + Sync {
    /// The hash of the genesis this store was initialized with.
    fn genesis_hash(&self) -> Result<Option<Hash>, StoreError>;

    /// The last committed block, if any.
    fn head(&self) -> Result<Option<Head>, StoreError>;

    /// The highest final block's height (equal to the head's in BFT chains).
    fn finalized_height(&self) -> Result<Option<Height>, StoreError>;

    fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError>;

    fn block_hash_at(&self, height: Height) -> Result<Option<Hash>, StoreError>;

    /// Where committed transaction `hash` is; `None` if it is not
    /// committed, or not covered by the index ([`Store::tx_index`]).
    fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError>;

    /// What [`Store::tx_location`] covers. The default: everything.
    fn tx_index(&self) -> TxIndex {
        TxIndex::From(Height::GENESIS)
    }

    /// The state accumulator after the head.
    fn accumulator(&self) -> Result<StateAccumulator, StoreError>;

    /// Writes `block`, which must extend the head (or be the genesis block
    /// of an empty store), with `changes` (from executing it) and its
    /// indexes, and sets the finalized height, in one atomic batch; returns
    /// once it is durable. On error nothing is written.
    fn commit_block(
        &self,
        block: &Block,
        changes: &StateChanges,
        finalized: Height,
    ) -> Result<(), StoreError>;

    /// Raises the finalized height (never above the head, never down).
    fn set_finalized_height(&self, height: Height) -> Result<(), StoreError>;

    /// Rolls the chain back to `ancestor`, a block on it at or above the
    /// finalized height: restores the state as it was after `ancestor`,
    /// drops the height and transaction indexes of the blocks above it,
    /// and makes it the head, in one atomic batch; returns once durable,
    /// with the blocks taken off (highest first). They stay readable by
    /// hash ([`Store::block`]), so a later reorganization can apply them
    /// again. Reverting to the head changes nothing.
    fn revert_to(&self, ancestor: &Hash) -> Result<Vec<Block>, StoreError>;

    /// The undo record of the committed block at `height`, if it is above
    /// the finalized height (only those have one).
    fn undo(&self, height: Height) -> Result<Option<Undo>, StoreError>;

    /// Reads consensus safety data.
    fn safety_data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes consensus safety data; durable when this returns.
    fn put_safety_data(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Group commit. While deferred, the writes above ([`Store::commit_block`],
    /// [`Store::set_finalized_height`], [`Store::revert_to`],
    /// [`Store::put_safety_data`]) are atomic and visible to reads at once
    /// but durable only at the next [`Store::flush`] (or when deferral is
    /// turned off, which flushes): a caller that must not act on a write
    /// before it is durable (send a vote) flushes first. One flush for
    /// several writes saves a disk sync each. Stores without a disk ignore
    /// it.
    fn defer_flushes(&self, _defer: bool) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes every write so far durable (see [`Store::defer_flushes`]).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The committed block at `height`.
    fn block_at(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.block_hash_at(height)? {
            Some(hash) => self.block(&hash),
            None => Ok(None),
        }
    }

    /// Commits `genesis`'s block 0 to an empty store, or checks that the
    /// store was made for this genesis. Returns the head either way.
    fn init_genesis(&self, genesis: &Genesis) -> Result<Head, StoreError> {
        let given = genesis.hash();
        if let Some(stored) = self.genesis_hash()? {
            if stored != given {
                return Err(StoreError::GenesisMismatch { stored, given });
            }
            return self.head()?.ok_or_else(|| StoreError::Corrupt {
                what: "genesis hash stored without a head".into(),
            });
        }
        let block = genesis.block();
        let accounts = genesis.initial_accounts();
        let accumulator = StateAccumulator::from_accounts(&accounts);
        let changes = StateChanges::new(accounts, accumulator);
        self.commit_block(&block, &changes, Height::GENESIS)?;
        Ok(Head::of(block.header()))
    }
}

/// The checks every store makes before a commit, given its current head.
pub(crate) fn check_commit(
    head: Option<&Head>,
    block: &Block,
    changes: &StateChanges,
    finalized: Height,
) -> Result<(), StoreError> {
    let header = block.header();
    if changes.state_root() != header.state_root {
        return Err(StoreError::StateRootMismatch {
            changes: changes.state_root(),
            header: header.state_root,
        });
    }
    if finalized > header.height {
        return Err(StoreError::FinalizedBeyondHead {
            requested: finalized,
            head: header.height,
        });
    }
    match head {
        None if header.height != Height::GENESIS
            || header.justification != Justification::Genesis =>
        {
            Err(StoreError::NotGenesis {
                height: header.height,
            })
        }
        None => Ok(()),
        Some(head)
            if head.header.height.next() != Some(header.height) || header.parent != head.hash =>
        {
            Err(StoreError::NotExtendingHead {
                head_height: head.header.height,
                head_hash: head.hash,
                block_height: header.height,
                block_parent: header.parent,
            })
        }
        Some(_) => Ok(()),
    }
}

/// The checks for raising the finalized height.
pub(crate) fn check_finalized(
    head: Option<&Head>,
    current: Option<Height>,
    requested: Height,
) -> Result<(), StoreError> {
    let head_height = head.map(|h| h.header.height).unwrap_or(Height::GENESIS);
    if head.is_none() || requested > head_height {
        return Err(StoreError::FinalizedBeyondHead {
            requested,
            head: head_height,
        });
    }
    if let Some(current) = current
        && requested < current
    {
        return Err(StoreError::FinalizedWentBack { current, requested });
    }
    Ok(())
}

/// The checks for a revert: `ancestor` (found at `at` on the stored chain,
/// or not) is at or above the finalized height.
pub(crate) fn check_revert(
    ancestor: &Hash,
    at: Option<Height>,
    finalized: Option<Height>,
) -> Result<Height, StoreError> {
    let Some(height) = at else {
        return Err(StoreError::NotOnChain { hash: *ancestor });
    };
    let finalized = finalized.unwrap_or(Height::GENESIS);
    if height < finalized {
        return Err(StoreError::RevertBelowFinalized {
            finalized,
            ancestor: height,
        });
    }
    Ok(height)
}
