//! A replica's ledger in the simulator: its mempool, its committed store
//! (a [`MemStore`], the part that survives a crash) and the speculative
//! states of blocks not yet committed.
//!
//! A speculative state is a block's [`StateChanges`] (the accounts it
//! changed and the accumulator after it) keyed by its hash; the state after
//! an uncommitted block is read through the layers of its uncommitted
//! ancestors down to the committed store. A block whose parent has no state
//! yet (it arrived through catch-up, never validated here) is executed from
//! the nearest ancestor that has one, using blocks seen earlier. Both maps
//! are bounded and pruned on every commit.

use phalanx_chain::execute::{BlockBuilder, StateChanges, StateView, execute_block};
use phalanx_chain::{
    Account, Address, Block, BlockHeader, ChainId, Genesis, Hash, Head, Height, Justification,
    MemStore, Nonce, StateAccumulator, Store, StoreError, Transaction,
};
use phalanx_consensus::Ledger;
use std::collections::{BTreeMap, HashMap};

/// Transactions a replica's mempool holds, at most.
pub const MAX_MEMPOOL_TXS: usize = 4_096;
/// Transactions in one proposed block, at most.
pub const MAX_PROPOSAL_TXS: usize = 64;
/// Speculative states (and, separately, remembered blocks) kept, at most.
pub const MAX_SPECULATIVE_BLOCKS: usize = 1_024;

#[derive(Debug)]
struct Speculative {
    header: BlockHeader,
    changes: StateChanges,
}

/// State after an uncommitted block: its ancestors' changes, newest first,
/// over the committed store.
struct Layered<'a> {
    layers: Vec<&'a BTreeMap<Address, Account>>,
    base: &'a MemStore,
}

impl StateView for Layered<'_> {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        for layer in &self.layers {
            if let Some(account) = layer.get(address) {
                return Ok(*account);
            }
        }
        self.base.account(address)
    }
}

/// One replica's ledger (see the module docs).
#[derive(Debug)]
pub struct SimLedger {
    chain_id: ChainId,
    store: MemStore,
    mempool: BTreeMap<(Address, Nonce), Transaction>,
    states: HashMap<Hash, Speculative>,
    known: HashMap<Hash, Block>,
}

impl SimLedger {
    /// A new replica's ledger: genesis committed, nothing else.
    pub fn new(genesis: &Genesis) -> Result<SimLedger, StoreError> {
        let store = MemStore::new();
        store.init_genesis(genesis)?;
        Ok(SimLedger::recover(genesis.chain_id.clone(), store))
    }

    /// The ledger of a replica restarting with what it had stored.
    pub fn recover(chain_id: ChainId, store: MemStore) -> SimLedger {
        SimLedger {
            chain_id,
            store,
            mempool: BTreeMap::new(),
            states: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// Crashes: everything but the store is lost.
    pub fn crash(&mut self) {
        self.mempool.clear();
        self.states.clear();
        self.known.clear();
    }

    pub fn store(&self) -> &MemStore {
        &self.store
    }

    pub fn head(&self) -> Result<Head, String> {
        match self.store.head() {
            Ok(Some(head)) => Ok(head),
            Ok(None) => Err("the store has no head".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The last committed block.
    pub fn head_block(&self) -> Result<Block, String> {
        let head = self.head()?;
        match self.store.block(&head.hash) {
            Ok(Some(block)) => Ok(block),
            Ok(None) => Err(format!("the head block {} is not stored", head.hash)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Adds a transaction to the mempool (dropped if it is full).
    pub fn submit(&mut self, tx: Transaction) {
        if self.mempool.len() < MAX_MEMPOOL_TXS {
            self.mempool.insert((tx.from, tx.nonce), tx);
        }
    }

    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// Executes `block` on the head and commits it to the store.
    pub fn commit(&mut self, block: &Block) -> Result<(), String> {
        let head = self.head()?;
        if block.header.parent != head.hash {
            return Err(format!(
                "block {} at height {} does not extend the head {} at height {}",
                block.hash(),
                block.header.height,
                head.hash,
                head.height()
            ));
        }
        let hash = block.hash();
        let changes = match self.states.remove(&hash) {
            Some(s) => s.changes,
            None => {
                let acc = self.store.accumulator().map_err(|e| e.to_string())?;
                execute_block(&self.chain_id, &head.header, &self.store, &acc, block)
                    .map_err(|e| e.to_string())?
            }
        };
        self.store
            .commit_block(block, &changes, block.header.height)
            .map_err(|e| e.to_string())?;
        self.prune(block.header.height);
        Ok(())
    }

    /// Drops what a commit at `height` made useless: speculative states and
    /// blocks at or below it, and transactions whose nonce is used.
    fn prune(&mut self, height: Height) {
        self.states.retain(|_, s| s.header.height > height);
        self.known.retain(|_, b| b.header.height > height);
        let senders: Vec<Address> = self.mempool.keys().map(|(a, _)| *a).collect();
        let mut next_nonce: BTreeMap<Address, Nonce> = BTreeMap::new();
        for sender in senders {
            if let std::collections::btree_map::Entry::Vacant(e) = next_nonce.entry(sender) {
                e.insert(
                    self.store
                        .account(&sender)
                        .map(|a| a.nonce)
                        .unwrap_or_default(),
                );
            }
        }
        self.mempool
            .retain(|(from, nonce), _| next_nonce.get(from).is_none_or(|n| nonce >= n));
    }

    /// The state after block `hash`: layers down to the head, or `None` if
    /// the chain of states does not reach it.
    fn state_after(&self, hash: Hash) -> Option<(Layered<'_>, StateAccumulator)> {
        let head = self.head().ok()?;
        let mut layers = Vec::new();
        let mut accumulator = None;
        let mut cursor = hash;
        while cursor != head.hash {
            let s = self.states.get(&cursor)?;
            if s.header.height <= head.height() {
                return None;
            }
            if accumulator.is_none() {
                accumulator = Some(s.changes.accumulator.clone());
            }
            layers.push(&s.changes.accounts);
            cursor = s.header.parent;
        }
        let accumulator = match accumulator {
            Some(a) => a,
            None => self.store.accumulator().ok()?,
        };
        let view = Layered {
            layers,
            base: &self.store,
        };
        Some((view, accumulator))
    }

    /// Makes sure the state after `block` is known, executing it (and any
    /// remembered ancestors without state) if needed.
    fn ensure_state(&mut self, block: &Block) -> bool {
        let Ok(head) = self.head() else {
            return false;
        };
        let mut missing = Vec::new();
        let mut cursor = block.clone();
        loop {
            let hash = cursor.hash();
            if hash == head.hash || self.states.contains_key(&hash) {
                break;
            }
            if cursor.header.height <= head.height() {
                return false;
            }
            let parent = cursor.header.parent;
            missing.push(cursor);
            match self.known.get(&parent) {
                Some(b) => cursor = b.clone(),
                None if parent == head.hash || self.states.contains_key(&parent) => break,
                None => return false,
            }
        }
        while let Some(b) = missing.pop() {
            if !self.execute(&b) {
                return false;
            }
        }
        true
    }

    /// Executes `block` on its parent's (known) state and records its own.
    fn execute(&mut self, block: &Block) -> bool {
        let parent_hash = block.header.parent;
        let parent_header = match self.header_of(&parent_hash) {
            Some(h) => h,
            None => return false,
        };
        let Some((view, acc)) = self.state_after(parent_hash) else {
            return false;
        };
        let result = execute_block(&self.chain_id, &parent_header, &view, &acc, block);
        drop(view);
        match result {
            Ok(changes) => {
                self.record(block, changes);
                true
            }
            Err(_) => false,
        }
    }

    fn header_of(&self, hash: &Hash) -> Option<BlockHeader> {
        if let Some(b) = self.known.get(hash) {
            return Some(b.header.clone());
        }
        if let Some(s) = self.states.get(hash) {
            return Some(s.header.clone());
        }
        let head = self.head().ok()?;
        (head.hash == *hash).then_some(head.header)
    }

    /// Remembers a block the replica may build on later (bounded), so its
    /// state can be computed when a descendant needs it.
    pub fn observe_block(&mut self, block: &Block) {
        if block.header.height > self.head().map(|h| h.height()).unwrap_or_default() {
            self.remember(block);
        }
    }

    fn remember(&mut self, block: &Block) {
        if self.known.len() >= MAX_SPECULATIVE_BLOCKS {
            self.known.clear();
        }
        self.known.insert(block.hash(), block.clone());
    }

    fn record(&mut self, block: &Block, changes: StateChanges) {
        if self.states.len() >= MAX_SPECULATIVE_BLOCKS {
            self.states.clear();
        }
        self.remember(block);
        self.states.insert(
            block.hash(),
            Speculative {
                header: block.header.clone(),
                changes,
            },
        );
    }

    /// Mempool transactions that apply in order on `view`, at most
    /// [`MAX_PROPOSAL_TXS`], skipping any whose nonce is not the next.
    fn pick_transactions(&self, view: &Layered<'_>) -> Vec<Transaction> {
        let mut picked = Vec::new();
        let mut expected: BTreeMap<Address, Nonce> = BTreeMap::new();
        for ((from, nonce), tx) in &self.mempool {
            if picked.len() >= MAX_PROPOSAL_TXS {
                break;
            }
            let next = match expected.get(from) {
                Some(n) => *n,
                None => view.account(from).map(|a| a.nonce).unwrap_or_default(),
            };
            if *nonce == next {
                picked.push(tx.clone());
                expected.insert(*from, next.next().unwrap_or(next));
            } else {
                expected.insert(*from, next);
            }
        }
        picked
    }
}

impl Ledger for SimLedger {
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Option<Block> {
        self.remember(parent);
        if !self.ensure_state(parent) {
            return None;
        }
        let (view, acc) = self.state_after(parent.hash())?;
        let candidates = self.pick_transactions(&view);
        let mut builder =
            BlockBuilder::new(self.chain_id.clone(), &parent.header, &view, &acc, proposer);
        for tx in candidates {
            // A transaction that does not apply is simply left out.
            let _ = builder.push(tx);
        }
        let (block, changes) = builder.finish(timestamp_ms, justification);
        drop(view);
        self.record(&block, changes);
        Some(block)
    }

    fn validate_block(&mut self, parent: &Block, block: &Block) -> bool {
        let hash = block.hash();
        if self.states.contains_key(&hash) {
            return true;
        }
        self.remember(parent);
        if !self.ensure_state(parent) {
            return false;
        }
        self.execute(block)
    }

    fn committed_block(&self, hash: &Hash) -> Option<Block> {
        self.store.block(hash).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_chain::genesis::{GenesisAccount, GenesisValidator};
    use phalanx_chain::{Amount, BftCertificate, ConsensusKind};
    use phalanx_crypto::Keypair;

    fn setup() -> (Genesis, Vec<Keypair>) {
        let keys: Vec<Keypair> = (1..=3u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let genesis = Genesis {
            chain_id: ChainId::new("ledger-test").unwrap(),
            consensus: ConsensusKind::Hotstuff,
            genesis_time_ms: 0,
            validators: vec![GenesisValidator {
                public_key: keys[2].public(),
                address: "/memory/0".into(),
            }],
            pow: None,
            accounts: keys[..2]
                .iter()
                .map(|k| GenesisAccount {
                    address: k.public().into(),
                    balance: Amount(1_000),
                })
                .collect(),
        };
        (genesis, keys)
    }

    fn justification(view: u64) -> Justification {
        Justification::Bft {
            view,
            parent_cert: BftCertificate {
                view: view - 1,
                block: Hash::ZERO,
                signatures: Vec::new(),
            },
        }
    }

    fn transfer(genesis: &Genesis, from: &Keypair, to: &Keypair, nonce: u64) -> Transaction {
        Transaction::sign(
            from,
            genesis.chain_id.clone(),
            to.public().into(),
            Amount(10),
            Amount(1),
            Nonce(nonce),
        )
    }

    #[test]
    fn builds_on_uncommitted_blocks_and_commits_them_in_order() {
        let (genesis, keys) = setup();
        let proposer: Address = keys[2].public().into();
        let mut builder = SimLedger::new(&genesis).unwrap();
        let mut validator = SimLedger::new(&genesis).unwrap();
        for nonce in 0..3 {
            builder.submit(transfer(&genesis, &keys[0], &keys[1], nonce));
        }
        let g = builder.head_block().unwrap();
        let b1 = builder
            .build_block(&g, proposer, 10, justification(1))
            .unwrap();
        assert_eq!(b1.transactions.len(), 3);
        builder.submit(transfer(&genesis, &keys[0], &keys[1], 3));
        let b2 = builder
            .build_block(&b1, proposer, 20, justification(2))
            .unwrap();
        // The uncommitted parent's transactions are not proposed again.
        assert_eq!(b2.transactions.len(), 1);
        // A validator that never saw b1 executes it on the way to b2.
        validator.remember(&b1);
        assert!(validator.validate_block(&b1, &b2));
        let mut tampered = b2.clone();
        tampered.header.state_root = Hash::ZERO;
        assert!(!validator.validate_block(&b1, &tampered));
        assert!(
            validator.commit(&b2).is_err(),
            "b2 does not extend the head"
        );
        validator.commit(&b1).unwrap();
        validator.commit(&b2).unwrap();
        let sender: Address = keys[0].public().into();
        assert_eq!(validator.store.account(&sender).unwrap().nonce, Nonce(4));
        assert!(validator.states.is_empty());
        builder.commit(&b1).unwrap();
        assert_eq!(builder.mempool_len(), 1, "nonces 0..3 are used");
    }

    #[test]
    fn a_crash_keeps_only_the_store() {
        let (genesis, keys) = setup();
        let proposer: Address = keys[2].public().into();
        let mut ledger = SimLedger::new(&genesis).unwrap();
        ledger.submit(transfer(&genesis, &keys[0], &keys[1], 0));
        let g = ledger.head_block().unwrap();
        let b1 = ledger
            .build_block(&g, proposer, 10, justification(1))
            .unwrap();
        ledger.commit(&b1).unwrap();
        ledger.submit(transfer(&genesis, &keys[0], &keys[1], 1));
        ledger.crash();
        assert_eq!(ledger.mempool_len(), 0);
        assert_eq!(ledger.head_block().unwrap(), b1);
        assert_eq!(ledger.committed_block(&b1.hash()), Some(b1));
    }
}
