//! An in-memory [`Store`] for tests and the simulator. Never the default
//! for a node.

use super::{Head, Store, StoreError, TxLocation, Undo, check_commit, check_revert};
use crate::block::Block;
use crate::execute::{StateChanges, StateView};
use crate::state::{Account, StateAccumulator};
use crate::types::{Address, Height};
use phalanx_crypto::Hash;
use phalanx_crypto::maps::HashMap;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Default, Clone)]
struct Inner {
    genesis_hash: Option<Hash>,
    head: Option<Head>,
    finalized: Option<Height>,
    accumulator: StateAccumulator,
    blocks: HashMap<Hash, Block>,
    heights: BTreeMap<Height, Hash>,
    txs: HashMap<Hash, TxLocation>,
    accounts: BTreeMap<Address, Account>,
    safety: BTreeMap<Vec<u8>, Vec<u8>>,
    undo: BTreeMap<Height, Undo>,
}

/// A [`Store`] in memory. Cloning the store (with [`MemStore::snapshot`])
/// gives an independent copy, which is how the simulator models what a
/// crashed replica kept.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// An independent copy of everything stored.
    pub fn snapshot(&self) -> MemStore {
        MemStore {
            inner: Mutex::new(self.lock().clone()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit
        // (commits check first, then only insert), so a poisoned lock's data
        // is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StateView for MemStore {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(self
            .lock()
            .accounts
            .get(address)
            .copied()
            .unwrap_or_default())
    }
}

impl Store for MemStore {
    fn genesis_hash(&self) -> Result<Option<Hash>, StoreError> {
        Ok(self.lock().genesis_hash)
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        Ok(self.lock().head.clone())
    }

    fn finalized_height(&self) -> Result<Option<Height>, StoreError> {
        Ok(self.lock().finalized)
    }

    fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        Ok(self.lock().blocks.get(hash).cloned())
    }

    fn block_hash_at(&self, height: Height) -> Result<Option<Hash>, StoreError> {
        Ok(self.lock().heights.get(&height).copied())
    }

    fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        Ok(self.lock().txs.get(hash).copied())
    }

    fn accumulator(&self) -> Result<StateAccumulator, StoreError> {
        Ok(self.lock().accumulator.clone())
    }

    fn commit_block(
        &self,
        block: &Block,
        changes: &StateChanges,
        finalized: Height,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        check_commit(inner.head.as_ref(), block, changes, finalized)?;
        let hash = block.hash();
        let height = block.header().height;
        if inner.head.is_none() {
            inner.genesis_hash = Some(block.header().parent);
        }
        for (index, tx) in block.transactions.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            inner.txs.insert(tx.hash(), TxLocation { height, index });
        }
        let final_now = inner.finalized.unwrap_or(finalized).max(finalized);
        if height > final_now {
            let undo = Undo {
                accumulator: inner.accumulator.to_bytes().to_vec(),
                accounts: changes
                    .accounts
                    .keys()
                    .map(|a| (*a, inner.accounts.get(a).copied()))
                    .collect(),
            };
            inner.undo.insert(height, undo);
        }
        for (address, account) in &changes.accounts {
            if account.is_empty() {
                inner.accounts.remove(address);
            } else {
                inner.accounts.insert(*address, *account);
            }
        }
        inner.blocks.insert(hash, block.clone());
        inner.heights.insert(height, hash);
        inner.accumulator = changes.accumulator().clone();
        inner.head = Some(Head {
            hash,
            header: block.header().clone(),
        });
        inner.finalized = Some(final_now);
        inner.undo = inner.undo.split_off(&Height(final_now.0.saturating_add(1)));
        Ok(())
    }

    fn set_finalized_height(&self, height: Height) -> Result<(), StoreError> {
        let mut inner = self.lock();
        super::check_finalized(inner.head.as_ref(), inner.finalized, height)?;
        inner.finalized = Some(height);
        inner.undo = inner.undo.split_off(&Height(height.0.saturating_add(1)));
        Ok(())
    }

    fn undo(&self, height: Height) -> Result<Option<Undo>, StoreError> {
        Ok(self.lock().undo.get(&height).cloned())
    }

    fn revert_to(&self, ancestor: &Hash) -> Result<Vec<Block>, StoreError> {
        let mut inner = self.lock();
        let head = inner.head.clone().ok_or(StoreError::NoHead)?;
        let header = inner.blocks.get(ancestor).map(|b| b.header().clone());
        let at = header
            .as_ref()
            .map(|h| h.height)
            .filter(|h| inner.heights.get(h) == Some(ancestor));
        let target = check_revert(ancestor, at, inner.finalized)?;
        let header = header.ok_or(StoreError::NotOnChain { hash: *ancestor })?;
        // Check everything first: a missing or corrupt undo record leaves
        // the store as it was.
        let mut undone = Vec::new();
        let mut height = head.header.height;
        while height > target {
            let missing = || StoreError::Corrupt {
                what: format!("no block or undo data at height {height} above the final height"),
            };
            let block = inner
                .heights
                .get(&height)
                .and_then(|hash| inner.blocks.get(hash))
                .ok_or_else(missing)?;
            let undo = inner.undo.get(&height).ok_or_else(missing)?;
            undone.push((height, block.clone(), undo.clone()));
            height = Height(height.0.saturating_sub(1));
        }
        let accumulator =
            match undone.last() {
                Some((height, _, undo)) => StateAccumulator::from_bytes(&undo.accumulator)
                    .ok_or_else(|| StoreError::Corrupt {
                        what: format!("undo accumulator at height {height}"),
                    })?,
                None => inner.accumulator.clone(),
            };
        if accumulator.root() != header.state_root {
            return Err(StoreError::Corrupt {
                what: format!("undo data does not restore block {ancestor}'s state root"),
            });
        }
        let mut removed = Vec::with_capacity(undone.len());
        for (height, block, undo) in undone {
            inner.heights.remove(&height);
            inner.undo.remove(&height);
            for tx in &block.transactions {
                inner.txs.remove(&tx.hash());
            }
            for (address, account) in undo.accounts {
                match account {
                    Some(account) if !account.is_empty() => {
                        inner.accounts.insert(address, account);
                    }
                    _ => {
                        inner.accounts.remove(&address);
                    }
                }
            }
            removed.push(block);
        }
        inner.accumulator = accumulator;
        inner.head = Some(Head {
            hash: *ancestor,
            header,
        });
        Ok(removed)
    }

    fn safety_data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().safety.get(key).cloned())
    }

    fn put_safety_data(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.lock().safety.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
}
