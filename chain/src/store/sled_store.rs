//! The sled [`Store`]: what a node keeps on disk.

use super::{
    Head, MAX_UNDO_BYTES, Store, StoreError, TxLocation, Undo, check_commit, check_finalized,
    check_revert,
};
use crate::block::{Block, MAX_HEADER_BYTES};
use crate::encoding::{self, DecodeError};
use crate::execute::{StateChanges, StateView};
use crate::state::{Account, StateAccumulator};
use crate::types::{Address, Height};
use phalanx_crypto::Hash;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const META_GENESIS: &[u8] = b"genesis_hash";
const META_HEAD: &[u8] = b"head";
const META_FINALIZED: &[u8] = b"finalized_height";
const META_ACCUMULATOR: &[u8] = b"state_accumulator";

/// The default size of sled's page cache. sled 0.34 holds well over this
/// as its trees grow (a node's resident memory rose about 2.7 MiB a second
/// at 6,700 transactions a second with 64 MiB, and levelled off near 280
/// MiB with 16 MiB, at the same CPU per transaction): the node's reads are
/// the head's accounts and recent blocks, which a small cache holds.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// A [`Store`] in a sled database directory.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    blocks: sled::Tree,
    heights: sled::Tree,
    txs: sled::Tree,
    accounts: sled::Tree,
    meta: sled::Tree,
    safety: sled::Tree,
    undo: sled::Tree,
    /// Set while flushes are deferred ([`Store::defer_flushes`]); shared
    /// by clones, as the database is.
    deferred: Arc<AtomicBool>,
    /// Set when a deferred write has not been flushed yet.
    dirty: Arc<AtomicBool>,
}

/// The trees a commit or a revert writes, inside one sled transaction:
/// blocks, heights, txs, accounts, meta, undo.
type Trees<'a> = (
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
);

/// Encoded once, outside the transaction (which sled may retry).
struct PreparedCommit {
    hash: Hash,
    height_key: [u8; 8],
    block: Vec<u8>,
    head: Vec<u8>,
    finalized: [u8; 8],
    accumulator: Vec<u8>,
    txs: Vec<(Hash, Vec<u8>)>,
    accounts: Vec<(Address, Option<Vec<u8>>)>,
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
        let db = open_db(path, cache_bytes)?;
        let store = SledStore {
            blocks: db.open_tree("blocks")?,
            heights: db.open_tree("heights")?,
            txs: db.open_tree("txs")?,
            accounts: db.open_tree("accounts")?,
            meta: db.open_tree("meta")?,
            safety: db.open_tree("safety")?,
            undo: db.open_tree("undo")?,
            db,
            deferred: Arc::new(AtomicBool::new(false)),
            dirty: Arc::new(AtomicBool::new(false)),
        };
        store.check_consistency()?;
        Ok(store)
    }

    fn check_consistency(&self) -> Result<(), StoreError> {
        let Some(head) = self.head()? else {
            return Ok(());
        };
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
        for entry in self.accounts.iter() {
            let (key, value) = entry?;
            let address = address_from_key(&key)?;
            let account: Account = decode_stored(&value, 32, "account")?;
            acc.insert(&address, &account);
        }
        Ok(acc.root())
    }

    fn prepare(block: &Block, changes: &StateChanges, finalized: Height) -> PreparedCommit {
        let hash = block.hash();
        let height = block.header.height;
        let txs = block
            .transactions
            .iter()
            .enumerate()
            .map(|(index, tx)| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                (tx.hash(), encoding::encode(&TxLocation { height, index }))
            })
            .collect();
        let accounts = changes
            .accounts
            .iter()
            .map(|(address, account)| {
                (
                    *address,
                    (!account.is_empty()).then(|| encoding::encode(account)),
                )
            })
            .collect();
        PreparedCommit {
            hash,
            height_key: height.0.to_be_bytes(),
            block: block.encode(),
            head: encoding::encode(&Head {
                hash,
                header: block.header.clone(),
            }),
            finalized: finalized.0.to_be_bytes(),
            accumulator: changes.accumulator.to_bytes().to_vec(),
            txs,
            accounts,
        }
    }

    fn apply(
        p: &PreparedCommit,
        block: &Block,
        changes: &StateChanges,
        finalized: Height,
        trees: Trees<'_>,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let (blocks, heights, txs, accounts, meta, undo) = trees;
        let abort = ConflictableTransactionError::Abort;
        blocks.insert(&p.hash.0[..], &p.block[..])?;
        heights.insert(&p.height_key[..], &p.hash.0[..])?;
        for (hash, location) in &p.txs {
            txs.insert(&hash.0[..], &location[..])?;
        }
        let current_finalized = match meta.get(META_FINALIZED)? {
            Some(bytes) => height_from(&bytes).map_err(abort)?,
            None => Height::GENESIS,
        };
        // Not final yet: keep what it overwrites, to roll it back.
        if block.header.height > finalized.max(current_finalized) {
            let mut before = Vec::with_capacity(p.accounts.len());
            for (address, _) in &p.accounts {
                let account = match accounts.get(address.0)? {
                    Some(bytes) => Some(decode_stored(&bytes, 32, "account").map_err(abort)?),
                    None => None,
                };
                before.push((*address, account));
            }
            let accumulator = meta.get(META_ACCUMULATOR)?.map(|b| b.to_vec());
            let record = Undo {
                accumulator: accumulator.unwrap_or_default(),
                accounts: before,
            };
            undo.insert(&p.height_key[..], encoding::encode(&record))?;
        }
        for (address, account) in &p.accounts {
            match account {
                Some(bytes) => accounts.insert(&address.0[..], &bytes[..])?,
                None => accounts.remove(&address.0[..])?,
            };
        }
        // The head is checked last, after the writes above, and the whole
        // batch is dropped if it fails: the store keeps nothing of it.
        let head = match meta.get(META_HEAD)? {
            Some(bytes) => Some(
                decode_stored::<Head>(&bytes, MAX_HEADER_BYTES + 64, "head")
                    .map_err(ConflictableTransactionError::Abort)?,
            ),
            None => None,
        };
        check_commit(head.as_ref(), block, changes, finalized)
            .map_err(ConflictableTransactionError::Abort)?;
        if head.is_none() {
            meta.insert(META_GENESIS, &block.header.parent.0[..])?;
        }
        if finalized >= current_finalized {
            meta.insert(META_FINALIZED, &p.finalized[..])?;
        }
        meta.insert(META_ACCUMULATOR, &p.accumulator[..])?;
        meta.insert(META_HEAD, &p.head[..])?;
        Ok(())
    }
}

impl SledStore {
    /// The revert of [`Store::revert_to`], inside one transaction.
    fn undo_to(
        ancestor: &Hash,
        trees: Trees<'_>,
    ) -> Result<Vec<Block>, ConflictableTransactionError<StoreError>> {
        let (blocks, heights, txs, accounts, meta, undo) = trees;
        let abort = ConflictableTransactionError::Abort;
        let head: Head = match meta.get(META_HEAD)? {
            Some(bytes) => decode_stored(&bytes, MAX_HEADER_BYTES + 64, "head").map_err(abort)?,
            None => return Err(abort(StoreError::NoHead)),
        };
        let finalized = match meta.get(META_FINALIZED)? {
            Some(bytes) => Some(height_from(&bytes).map_err(abort)?),
            None => None,
        };
        let header = match blocks.get(ancestor.0)? {
            Some(bytes) => Some(
                Block::decode(&bytes)
                    .map_err(|e| abort(StoreError::corrupt(format!("block {ancestor}"), e)))?
                    .header,
            ),
            None => None,
        };
        let mut at = None;
        if let Some(header) = &header
            && heights.get(header.height.0.to_be_bytes())?.as_deref() == Some(&ancestor.0[..])
        {
            at = Some(header.height);
        }
        let target = check_revert(ancestor, at, finalized).map_err(abort)?;
        let header = header.ok_or(abort(StoreError::NotOnChain { hash: *ancestor }))?;
        let mut removed = Vec::new();
        let mut accumulator = None;
        let mut height = head.header.height;
        while height > target {
            let key = height.0.to_be_bytes();
            let missing = || {
                abort(StoreError::Corrupt {
                    what: format!(
                        "no block or undo data at height {height} above the final height"
                    ),
                })
            };
            let hash =
                hash_from(&heights.get(key)?.ok_or_else(missing)?, "block hash").map_err(abort)?;
            let block = Block::decode(&blocks.get(hash.0)?.ok_or_else(missing)?)
                .map_err(|e| abort(StoreError::corrupt(format!("block {hash}"), e)))?;
            let record: Undo =
                decode_stored(&undo.get(key)?.ok_or_else(missing)?, MAX_UNDO_BYTES, "undo")
                    .map_err(abort)?;
            for tx in &block.transactions {
                txs.remove(&tx.hash().0[..])?;
            }
            for (address, account) in &record.accounts {
                match account {
                    Some(account) if !account.is_empty() => {
                        accounts.insert(&address.0[..], encoding::encode(account))?
                    }
                    _ => accounts.remove(&address.0[..])?,
                };
            }
            heights.remove(&key[..])?;
            undo.remove(&key[..])?;
            accumulator = Some(record.accumulator);
            removed.push(block);
            height = Height(height.0.saturating_sub(1));
        }
        if let Some(bytes) = accumulator {
            let restored = StateAccumulator::from_bytes(&bytes).ok_or_else(|| {
                abort(StoreError::Corrupt {
                    what: format!("undo accumulator of {} bytes", bytes.len()),
                })
            })?;
            if restored.root() != header.state_root {
                return Err(abort(StoreError::Corrupt {
                    what: format!("undo data does not restore block {ancestor}'s state root"),
                }));
            }
            meta.insert(META_ACCUMULATOR, bytes)?;
        }
        meta.insert(
            META_HEAD,
            encoding::encode(&Head {
                hash: *ancestor,
                header,
            }),
        )?;
        Ok(removed)
    }

    /// Runs `body` in one sled transaction over the trees a commit or a
    /// revert writes (sled may run it more than once).
    fn transact<T>(
        &self,
        body: impl Fn(Trees<'_>) -> Result<T, ConflictableTransactionError<StoreError>>,
    ) -> Result<T, StoreError> {
        (
            &self.blocks,
            &self.heights,
            &self.txs,
            &self.accounts,
            &self.meta,
            &self.undo,
        )
            .transaction(|(b, h, t, a, m, u)| body((b, h, t, a, m, u)))
            .map_err(flatten)
    }

    /// Drops undo records of heights at or below `finalized`: those blocks
    /// can no longer be rolled back.
    fn prune_undo(&self, finalized: Height) -> Result<(), StoreError> {
        let end = finalized.0.saturating_add(1).to_be_bytes();
        for entry in self.undo.range(..&end[..]) {
            let (key, _) = entry?;
            self.undo.remove(key)?;
        }
        Ok(())
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

fn flatten(err: TransactionError<StoreError>) -> StoreError {
    match err {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Backend(e),
    }
}

impl StateView for SledStore {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        match self.accounts.get(address.0)? {
            Some(bytes) => decode_stored(&bytes, 32, "account"),
            None => Ok(Account::default()),
        }
    }
}

impl Store for SledStore {
    fn genesis_hash(&self) -> Result<Option<Hash>, StoreError> {
        self.meta
            .get(META_GENESIS)?
            .map(|b| hash_from(&b, "genesis hash"))
            .transpose()
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        self.meta
            .get(META_HEAD)?
            .map(|b| decode_stored(&b, MAX_HEADER_BYTES + 64, "head"))
            .transpose()
    }

    fn finalized_height(&self) -> Result<Option<Height>, StoreError> {
        self.meta
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
        self.heights
            .get(height.0.to_be_bytes())?
            .map(|b| hash_from(&b, "block hash"))
            .transpose()
    }

    fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        self.txs
            .get(hash.0)?
            .map(|b| decode_stored(&b, 32, "transaction location"))
            .transpose()
    }

    fn accumulator(&self) -> Result<StateAccumulator, StoreError> {
        match self.meta.get(META_ACCUMULATOR)? {
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
        let prepared = Self::prepare(block, changes, finalized);
        self.transact(|trees| Self::apply(&prepared, block, changes, finalized, trees))?;
        if !self.undo.is_empty() {
            self.prune_undo(self.finalized_height()?.unwrap_or(Height::GENESIS))?;
        }
        self.flush_or_defer()?;
        Ok(())
    }

    fn set_finalized_height(&self, height: Height) -> Result<(), StoreError> {
        check_finalized(self.head()?.as_ref(), self.finalized_height()?, height)?;
        self.meta.insert(META_FINALIZED, &height.0.to_be_bytes())?;
        self.prune_undo(height)?;
        self.flush_or_defer()?;
        Ok(())
    }

    fn undo(&self, height: Height) -> Result<Option<Undo>, StoreError> {
        match self.undo.get(height.0.to_be_bytes())? {
            Some(bytes) => Ok(Some(decode_stored(&bytes, MAX_UNDO_BYTES, "undo")?)),
            None => Ok(None),
        }
    }

    fn revert_to(&self, ancestor: &Hash) -> Result<Vec<Block>, StoreError> {
        let removed = self.transact(|trees| Self::undo_to(ancestor, trees))?;
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
