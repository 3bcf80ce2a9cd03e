//! The sled [`Store`]: what a node keeps on disk.
//!
//! Everything a commit or a revert changes, blocks aside, lives in one
//! sled tree, `chain`, in key spaces told apart by their first byte
//! ([`Space`]), so that a commit is one [`sled::Batch`]: applied
//! atomically (sled recovers a batch whole or not at all, and readers
//! never see part of one) without sled's transactions, which read every
//! key they write once more before writing it (that read was half of a
//! commit's CPU time). The reads a commit's checks need happen first,
//! under a lock that keeps writers of this store one at a time.
//!
//! Blocks by hash keep a tree of their own, `blocks`, written just before
//! the batch that puts a block on the chain. A block stored without its
//! batch (a crash or a disk error in between) is only a block known by
//! hash, as a reverted one is. With the blocks in `chain`, a PBFT
//! primary's resident memory grew about 3.5 MiB a second under full load
//! where the other nodes' levelled off (two runs; not with this layout,
//! nor before it); the cause was not found. Consensus safety data is a
//! third tree.

use super::{
    Head, MAX_UNDO_BYTES, Store, StoreError, TxIndex, TxLocation, Undo, check_commit,
    check_finalized, check_revert,
};
use crate::block::{Block, MAX_HEADER_BYTES};
use crate::encoding::{self, DecodeError};
use crate::execute::{StateChanges, StateView};
use crate::state::{Account, StateAccumulator};
use crate::types::{Address, Height};
use phalanx_crypto::Hash;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The key spaces of the `chain` tree: a key is the space's byte followed
/// by the id.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Space {
    /// Height (big-endian) → block hash.
    Height = b'h',
    /// Transaction hash → its [`TxLocation`].
    Tx = b't',
    /// Address → account.
    Account = b'a',
    /// Height (big-endian) → [`Undo`].
    Undo = b'u',
    /// Name → the values below, whose keys start with this byte.
    Meta = b'm',
}

const META_GENESIS: &[u8] = b"mgenesis_hash";
const META_HEAD: &[u8] = b"mhead";
const META_FINALIZED: &[u8] = b"mfinalized_height";
const META_ACCUMULATOR: &[u8] = b"mstate_accumulator";
/// The layout's version, written with genesis and checked on open.
const META_FORMAT: &[u8] = b"mformat";
/// What the transaction index covers: a big-endian height from which every
/// committed transaction is indexed, or [`TX_INDEX_OFF`]. Absent: every
/// height (the index was always kept, as before this record existed).
const META_TX_INDEX: &[u8] = b"mtx_index_from";
const TX_INDEX_OFF: u64 = u64::MAX;
const FORMAT: u32 = 2;
/// True if every key starts with the meta space's byte.
const fn all_in_meta(keys: &[&[u8]]) -> bool {
    match keys.split_first() {
        None => true,
        Some((key, rest)) => {
            matches!(key.first(), Some(&byte) if byte == Space::Meta as u8) && all_in_meta(rest)
        }
    }
}
const _: () = assert!(all_in_meta(&[
    META_GENESIS,
    META_HEAD,
    META_FINALIZED,
    META_ACCUMULATOR,
    META_FORMAT,
    META_TX_INDEX,
]));

/// A 32-byte id's key in `space`.
fn key32(space: Space, id: &[u8; 32]) -> [u8; 33] {
    let mut key = [space as u8; 33];
    key[1..].copy_from_slice(id);
    key
}

/// A height's key in `space`.
fn height_key(space: Space, height: Height) -> [u8; 9] {
    let mut key = [space as u8; 9];
    key[1..].copy_from_slice(&height.0.to_be_bytes());
    key
}

/// The default size of sled's page cache. sled 0.34 holds well over this
/// as its trees grow (a node's resident memory rose about 2.7 MiB a second
/// at 6,700 transactions a second with 64 MiB, and levelled off near 280
/// MiB with 16 MiB, at the same CPU per transaction): the node's reads are
/// the head's accounts and recent blocks, which a small cache holds.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// How [`SledStore::open_with`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Keep the transaction index (hash → height and position), which
    /// `GET /txs/{hash}` and a wallet waiting for finality read. It is
    /// most of a commit's work: 1,000 random keys for a block of 1,000
    /// transfers, next to about 250 others. Turned off, the blocks
    /// committed meanwhile stay unindexed when it is turned back on (see
    /// [`TxIndex`]).
    pub tx_index: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            tx_index: true,
        }
    }
}

/// A [`Store`] in a sled database directory.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    blocks: sled::Tree,
    chain: sled::Tree,
    safety: sled::Tree,
    /// Held by whoever writes `chain`, from its first read to its batch,
    /// so that the checks a write makes still hold when it lands; shared
    /// by clones, as the database is.
    writer: Arc<Mutex<()>>,
    /// Set while flushes are deferred ([`Store::defer_flushes`]); shared
    /// by clones, as the database is.
    deferred: Arc<AtomicBool>,
    /// Set when a deferred write has not been flushed yet.
    dirty: Arc<AtomicBool>,
    /// Fixed when the database is opened.
    tx_index: TxIndex,
}

impl SledStore {
    /// Flushes now, or notes that a flush is owed if flushes are deferred.
    fn flush_or_defer(&self) -> Result<(), StoreError> {
        if self.deferred.load(Ordering::SeqCst) {
            self.dirty.store(true, Ordering::SeqCst);
        } else {
            self.db.flush()?;
        }
        Ok(())
    }

    /// Opens (or creates) the database at `path`, and checks that the
    /// stored state accumulator matches the head's state root.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        SledStore::open_with(
            path,
            SledOptions {
                cache_bytes,
                ..SledOptions::default()
            },
        )
    }

    /// Opens (or creates) the database at `path` with `options`.
    pub fn open_with(path: &Path, options: SledOptions) -> Result<SledStore, StoreError> {
        let db = open_db(path, options.cache_bytes)?;
        let mut store = SledStore {
            blocks: db.open_tree("blocks")?,
            chain: db.open_tree("chain")?,
            safety: db.open_tree("safety")?,
            db,
            writer: Arc::new(Mutex::new(())),
            deferred: Arc::new(AtomicBool::new(false)),
            dirty: Arc::new(AtomicBool::new(false)),
            tx_index: TxIndex::From(Height::GENESIS),
        };
        store.upgrade_from_format_1()?;
        store.check_consistency(path)?;
        store.tx_index = store.settle_tx_index(options.tx_index)?;
        Ok(store)
    }

    /// Records whether the transaction index is kept from now on, and
    /// returns what it covers: turned back on, it covers the blocks
    /// after the head (the ones committed while it was off were never
    /// indexed). Entries written before it was turned off stay, and stay
    /// right: a revert removes a reverted block's entries either way.
    fn settle_tx_index(&self, keep: bool) -> Result<TxIndex, StoreError> {
        let recorded = match self.chain.get(META_TX_INDEX)? {
            None => TxIndex::From(Height::GENESIS),
            Some(bytes) => match <[u8; 8]>::try_from(&bytes[..]).map(u64::from_be_bytes) {
                Ok(TX_INDEX_OFF) => TxIndex::Off,
                Ok(height) => TxIndex::From(Height(height)),
                Err(_) => {
                    return Err(StoreError::Corrupt {
                        what: format!("transaction index record {bytes:02x?} is not 8 bytes"),
                    });
                }
            },
        };
        let now = match (keep, recorded) {
            (false, _) => TxIndex::Off,
            (true, TxIndex::Off) => TxIndex::From(self.head()?.map_or(Height::GENESIS, |h| {
                Height(h.header.height.0.saturating_add(1))
            })),
            (true, from) => from,
        };
        if now != recorded {
            let value = match now {
                TxIndex::Off => TX_INDEX_OFF,
                TxIndex::From(height) => height.0,
            };
            self.chain.insert(META_TX_INDEX, &value.to_be_bytes()[..])?;
            self.db.flush()?;
        }
        Ok(now)
    }

    /// Moves a database in the first layout, one tree per key space, into
    /// the `chain` tree, and drops the old trees. Blocks and consensus
    /// safety data stay in the trees they were in (`blocks`, `safety`),
    /// so a validator keeps what it signed. The
    /// copy is written in batches, with the format recorded last: a crash
    /// during it leaves the old trees whole, and the next open copies
    /// again; a crash while dropping them, a recorded format, and the next
    /// open drops the rest.
    fn upgrade_from_format_1(&self) -> Result<(), StoreError> {
        const SPACES: [(&str, u8); 5] = [
            ("heights", Space::Height as u8),
            ("txs", Space::Tx as u8),
            ("accounts", Space::Account as u8),
            ("undo", Space::Undo as u8),
            ("meta", Space::Meta as u8),
        ];
        const BATCH: usize = 4_096;
        let names = self.db.tree_names();
        let old: Vec<(&str, u8)> = SPACES
            .into_iter()
            .filter(|(name, _)| names.iter().any(|n| &n[..] == name.as_bytes()))
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        if self.chain.get(META_FORMAT)?.is_none() {
            for (name, space) in &old {
                let tree = self.db.open_tree(name)?;
                let mut batch = sled::Batch::default();
                let mut in_batch = 0;
                for entry in tree.iter() {
                    let (key, value) = entry?;
                    let mut new_key = Vec::with_capacity(key.len() + 1);
                    new_key.push(*space);
                    new_key.extend_from_slice(&key);
                    batch.insert(new_key, value);
                    in_batch += 1;
                    if in_batch == BATCH {
                        self.chain.apply_batch(std::mem::take(&mut batch))?;
                        in_batch = 0;
                    }
                }
                self.chain.apply_batch(batch)?;
            }
            self.chain.insert(META_FORMAT, &FORMAT.to_be_bytes()[..])?;
            self.db.flush()?;
        }
        for (name, _) in old {
            self.db.drop_tree(name)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn check_consistency(&self, path: &Path) -> Result<(), StoreError> {
        let Some(head) = self.head()? else {
            return Ok(());
        };
        let format = self.chain.get(META_FORMAT)?;
        if format.as_deref() != Some(&FORMAT.to_be_bytes()[..]) {
            return Err(StoreError::OtherFormat {
                path: path.display().to_string(),
                found: match format {
                    Some(bytes) => format!("{bytes:02x?}"),
                    None => "none recorded".into(),
                },
            });
        }
        let root = self.accumulator()?.root();
        if root != head.header.state_root {
            return Err(StoreError::Corrupt {
                what: format!(
                    "state accumulator gives root {root}, head {} says {}",
                    head.hash, head.header.state_root
                ),
            });
        }
        if self.block_hash_at(head.header.height)? != Some(head.hash) {
            return Err(StoreError::Corrupt {
                what: format!("head {} is not indexed at its height", head.hash),
            });
        }
        Ok(())
    }

    /// Recomputes the state root from every stored account (cost
    /// proportional to all accounts; for checks and tools, not the node's
    /// hot path).
    pub fn recompute_state_root(&self) -> Result<Hash, StoreError> {
        let mut acc = StateAccumulator::default();
        for entry in self.chain.scan_prefix([Space::Account as u8]) {
            let (key, value) = entry?;
            let address = address_from_key(key.get(1..).unwrap_or_default())?;
            let account: Account = decode_stored(&value, 32, "account")?;
            acc.insert(&address, &account);
        }
        Ok(acc.root())
    }

    /// The writer's lock. It guards no data (the database is its own), so
    /// a panic while it was held leaves nothing to distrust.
    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored account, `None` if there is none.
    fn stored_account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        self.chain
            .get(key32(Space::Account, &address.0))?
            .map(|bytes| decode_stored(&bytes, 32, "account"))
            .transpose()
    }

    /// Adds to `batch` the removal of the undo records at or below
    /// `finalized`: those blocks can no longer be rolled back.
    fn prune_undo(&self, batch: &mut sled::Batch, finalized: Height) -> Result<(), StoreError> {
        let range = height_key(Space::Undo, Height::GENESIS)..=height_key(Space::Undo, finalized);
        for entry in self.chain.range(range) {
            let (key, _) = entry?;
            batch.remove(key);
        }
        Ok(())
    }

    /// Adds to `batch` the rollback of the chain to `ancestor` (see
    /// [`Store::revert_to`]); returns the blocks it takes off.
    fn revert_batch(
        &self,
        ancestor: &Hash,
        batch: &mut sled::Batch,
    ) -> Result<Vec<Block>, StoreError> {
        let head = self.head()?.ok_or(StoreError::NoHead)?;
        let finalized = self.finalized_height()?;
        let header = self.block(ancestor)?.map(|block| block.into_parts().0);
        let mut at = None;
        if let Some(header) = &header
            && self.block_hash_at(header.height)? == Some(*ancestor)
        {
            at = Some(header.height);
        }
        let target = check_revert(ancestor, at, finalized)?;
        let header = header.ok_or(StoreError::NotOnChain { hash: *ancestor })?;
        let mut removed = Vec::new();
        let mut accumulator = None;
        let mut height = head.header.height;
        while height > target {
            let missing = || StoreError::Corrupt {
                what: format!("no block or undo data at height {height} above the final height"),
            };
            let hash = self.block_hash_at(height)?.ok_or_else(missing)?;
            let block = self.block(&hash)?.ok_or_else(missing)?;
            let record = self.undo(height)?.ok_or_else(missing)?;
            for tx in &block.transactions {
                batch.remove(&key32(Space::Tx, &tx.hash().0)[..]);
            }
            // Blocks are undone from the head down, so the lowest block's
            // record is the one an account keeps.
            for (address, account) in &record.accounts {
                let key = key32(Space::Account, &address.0);
                match account {
                    Some(account) if !account.is_empty() => {
                        batch.insert(&key[..], encoding::encode(account))
                    }
                    _ => batch.remove(&key[..]),
                }
            }
            batch.remove(&height_key(Space::Height, height)[..]);
            batch.remove(&height_key(Space::Undo, height)[..]);
            accumulator = Some(record.accumulator);
            removed.push(block);
            height = Height(height.0.saturating_sub(1));
        }
        if let Some(bytes) = accumulator {
            let restored =
                StateAccumulator::from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt {
                    what: format!("undo accumulator of {} bytes", bytes.len()),
                })?;
            if restored.root() != header.state_root {
                return Err(StoreError::Corrupt {
                    what: format!("undo data does not restore block {ancestor}'s state root"),
                });
            }
            batch.insert(META_ACCUMULATOR, bytes);
        }
        batch.insert(
            META_HEAD,
            encoding::encode(&Head {
                hash: *ancestor,
                header,
            }),
        );
        Ok(removed)
    }
}

/// How long [`SledStore::open`] waits for another handle's lock to go.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens the database. Every write this store makes is followed by an
/// explicit flush, so sled's periodic flusher thread is off. sled 0.34
/// releases its file lock a moment after the last handle is dropped (its
/// I/O threads finish first), so a reopen in quick succession, such as a
/// restart, waits up to [`LOCK_WAIT`] for the lock before reporting that
/// the database is in use.
fn open_db(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        path: path.display().to_string(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn decode_stored<T: serde::de::DeserializeOwned + serde::Serialize>(
    bytes: &[u8],
    limit: usize,
    what: &str,
) -> Result<T, StoreError> {
    encoding::decode(bytes, limit).map_err(|e: DecodeError| StoreError::corrupt(what, e))
}

fn height_from(bytes: &[u8]) -> Result<Height, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: format!("height of {} bytes", bytes.len()),
    })?;
    Ok(Height(u64::from_be_bytes(array)))
}

fn hash_from(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: format!("{what} of {} bytes", bytes.len()),
    })?;
    Ok(Hash(array))
}

fn address_from_key(bytes: &[u8]) -> Result<Address, StoreError> {
    hash_from(bytes, "account key").map(|h| Address(h.0))
}

impl StateView for SledStore {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(self.stored_account(address)?.unwrap_or_default())
    }
}

impl Store for SledStore {
    fn genesis_hash(&self) -> Result<Option<Hash>, StoreError> {
        self.chain
            .get(META_GENESIS)?
            .map(|b| hash_from(&b, "genesis hash"))
            .transpose()
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        self.chain
            .get(META_HEAD)?
            .map(|b| decode_stored(&b, MAX_HEADER_BYTES + 64, "head"))
            .transpose()
    }

    fn finalized_height(&self) -> Result<Option<Height>, StoreError> {
        self.chain
            .get(META_FINALIZED)?
            .map(|b| height_from(&b))
            .transpose()
    }

    fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        self.blocks
            .get(hash.0)?
            .map(|b| Block::decode(&b).map_err(|e| StoreError::corrupt(format!("block {hash}"), e)))
            .transpose()
    }

    fn block_hash_at(&self, height: Height) -> Result<Option<Hash>, StoreError> {
        self.chain
            .get(height_key(Space::Height, height))?
            .map(|b| hash_from(&b, "block hash"))
            .transpose()
    }

    fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        if self.tx_index == TxIndex::Off {
            return Ok(None);
        }
        self.chain
            .get(key32(Space::Tx, &hash.0))?
            .map(|b| decode_stored(&b, 32, "transaction location"))
            .transpose()
    }

    fn tx_index(&self) -> TxIndex {
        self.tx_index
    }

    fn accumulator(&self) -> Result<StateAccumulator, StoreError> {
        match self.chain.get(META_ACCUMULATOR)? {
            Some(bytes) => {
                StateAccumulator::from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt {
                    what: format!("state accumulator of {} bytes", bytes.len()),
                })
            }
            None => Ok(StateAccumulator::default()),
        }
    }

    fn commit_block(
        &self,
        block: &Block,
        changes: &StateChanges,
        finalized: Height,
    ) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        let head = self.head()?;
        check_commit(head.as_ref(), block, changes, finalized)?;
        let current_finalized = self.finalized_height()?.unwrap_or(Height::GENESIS);
        let hash = block.hash();
        let height = block.header().height;
        let mut batch = sled::Batch::default();
        batch.insert(&height_key(Space::Height, height)[..], &hash.0[..]);
        let indexed = match self.tx_index {
            TxIndex::Off => &[][..],
            TxIndex::From(_) => &block.transactions[..],
        };
        for (index, tx) in indexed.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            batch.insert(
                &key32(Space::Tx, &tx.hash().0)[..],
                encoding::encode(&TxLocation { height, index }),
            );
        }
        let final_after = finalized.max(current_finalized);
        if height > final_after {
            // Not final yet: keep what it overwrites, to roll it back.
            let mut before = Vec::with_capacity(changes.accounts.len());
            for address in changes.accounts.keys() {
                before.push((*address, self.stored_account(address)?));
            }
            let record = Undo {
                accumulator: self
                    .chain
                    .get(META_ACCUMULATOR)?
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
                accounts: before,
            };
            batch.insert(
                &height_key(Space::Undo, height)[..],
                encoding::encode(&record),
            );
        }
        for (address, account) in &changes.accounts {
            let key = key32(Space::Account, &address.0);
            if account.is_empty() {
                batch.remove(&key[..]);
            } else {
                batch.insert(&key[..], encoding::encode(account));
            }
        }
        if head.is_none() {
            batch.insert(META_GENESIS, &block.header().parent.0[..]);
            batch.insert(META_FORMAT, &FORMAT.to_be_bytes()[..]);
        }
        batch.insert(META_FINALIZED, &final_after.0.to_be_bytes()[..]);
        self.prune_undo(&mut batch, final_after)?;
        batch.insert(META_ACCUMULATOR, &changes.accumulator().to_bytes()[..]);
        batch.insert(
            META_HEAD,
            encoding::encode(&Head {
                hash,
                header: block.header().clone(),
            }),
        );
        self.blocks.insert(hash.0, block.encode())?;
        self.chain.apply_batch(batch)?;
        self.flush_or_defer()
    }

    fn set_finalized_height(&self, height: Height) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        check_finalized(self.head()?.as_ref(), self.finalized_height()?, height)?;
        let mut batch = sled::Batch::default();
        batch.insert(META_FINALIZED, &height.0.to_be_bytes()[..]);
        self.prune_undo(&mut batch, height)?;
        self.chain.apply_batch(batch)?;
        self.flush_or_defer()
    }

    fn undo(&self, height: Height) -> Result<Option<Undo>, StoreError> {
        match self.chain.get(height_key(Space::Undo, height))? {
            Some(bytes) => Ok(Some(decode_stored(&bytes, MAX_UNDO_BYTES, "undo")?)),
            None => Ok(None),
        }
    }

    fn revert_to(&self, ancestor: &Hash) -> Result<Vec<Block>, StoreError> {
        let _writer = self.lock_writer();
        let mut batch = sled::Batch::default();
        let removed = self.revert_batch(ancestor, &mut batch)?;
        self.chain.apply_batch(batch)?;
        self.flush_or_defer()?;
        Ok(removed)
    }

    fn safety_data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.safety.get(key)?.map(|v| v.to_vec()))
    }

    fn put_safety_data(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.safety.insert(key, value)?;
        self.flush_or_defer()?;
        Ok(())
    }

    fn defer_flushes(&self, defer: bool) -> Result<(), StoreError> {
        self.deferred.store(defer, Ordering::SeqCst);
        if defer { Ok(()) } else { self.flush() }
    }

    fn flush(&self) -> Result<(), StoreError> {
        if self.dirty.swap(false, Ordering::SeqCst)
            && let Err(e) = self.db.flush()
        {
            // Still owed.
            self.dirty.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }
}
