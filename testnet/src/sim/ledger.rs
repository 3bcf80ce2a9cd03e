//! A replica's ledger in the simulator: its mempool, its committed store
//! (a [`MemStore`], the part that survives a crash) and the speculative
//! states of blocks not yet committed ([`Speculative`], shared with the
//! node).

use phalanx_chain::execute::StateView;
use phalanx_chain::speculative::{SharedExecutions, Speculative};
use phalanx_chain::{
    Address, Block, Genesis, Hash, Head, Height, Justification, MemStore, Nonce, Rules, Store,
    StoreError, Transaction, VerifiedTxs,
};
use phalanx_consensus::{Ledger, LedgerError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Transactions a replica's mempool holds, at most.
pub const MAX_MEMPOOL_TXS: usize = 4_096;
/// Transactions in one proposed block, at most.
pub const MAX_PROPOSAL_TXS: usize = 64;
/// Speculative states (and, separately, remembered blocks) kept, at most.
pub const MAX_SPECULATIVE_BLOCKS: usize = 1_024;

/// One replica's ledger (see the module docs).
#[derive(Debug)]
pub struct SimLedger {
    store: MemStore,
    mempool: BTreeMap<(Address, Nonce), Transaction>,
    speculative: Speculative,
}

impl SimLedger {
    /// A new replica's ledger: genesis committed, nothing else.
    pub fn new(genesis: &Genesis) -> Result<SimLedger, StoreError> {
        let store = MemStore::new();
        store.init_genesis(genesis)?;
        Ok(SimLedger::recover(Rules::of(genesis), store))
    }

    /// The ledger of a replica restarting with what it had stored.
    pub fn recover(rules: Rules, store: MemStore) -> SimLedger {
        SimLedger {
            store,
            mempool: BTreeMap::new(),
            speculative: Speculative::new(rules, MAX_SPECULATIVE_BLOCKS),
        }
    }

    /// Shares `verified` with other replicas: a transaction's signature is
    /// then checked once per simulation rather than once per replica (the
    /// replicas are one process; every path accepts the same signatures).
    pub fn with_verified(mut self, verified: Arc<VerifiedTxs>) -> SimLedger {
        self.speculative = self.speculative.with_verified(verified);
        self
    }

    /// Shares executed blocks with other replicas: a block's changes are
    /// then computed once per simulation rather than once per replica
    /// (they depend on the block's hash alone; see [`SharedExecutions`]).
    pub fn with_shared_executions(mut self, shared: Arc<SharedExecutions>) -> SimLedger {
        self.speculative = self.speculative.with_shared_executions(shared);
        self
    }

    /// Crashes: everything but the store is lost.
    pub fn crash(&mut self) {
        self.mempool.clear();
        self.speculative.clear();
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
        self.speculative
            .commit(&self.store, block, block.header().height)
            .map_err(|e| e.to_string())?;
        self.prune_mempool();
        Ok(())
    }

    /// Appends `block` (not final yet: proof of work) to the head.
    pub fn extend(&mut self, block: &Block) -> Result<(), String> {
        let finalized = self
            .store
            .finalized_height()
            .map_err(|e| e.to_string())?
            .unwrap_or(Height::GENESIS);
        self.speculative
            .commit(&self.store, block, finalized)
            .map_err(|e| e.to_string())?;
        self.prune_mempool();
        Ok(())
    }

    /// Rolls the chain back to `ancestor`; the transactions of the blocks
    /// taken off go back to the mempool (those no longer valid are pruned
    /// when they are found to be). Returns the blocks taken off.
    pub fn revert(&mut self, ancestor: &Hash) -> Result<Vec<Block>, String> {
        let removed = self.store.revert_to(ancestor).map_err(|e| e.to_string())?;
        for block in &removed {
            for tx in &block.transactions {
                self.submit(tx.clone());
            }
        }
        self.prune_mempool();
        Ok(removed)
    }

    /// Raises the finalized height to `height` (never down); returns the
    /// blocks that became final, lowest first.
    pub fn finalize(&mut self, height: Height) -> Result<Vec<Block>, String> {
        let current = self
            .store
            .finalized_height()
            .map_err(|e| e.to_string())?
            .unwrap_or(Height::GENESIS);
        if height <= current {
            return Ok(Vec::new());
        }
        self.store
            .set_finalized_height(height)
            .map_err(|e| e.to_string())?;
        self.speculative.prune(height);
        let mut blocks = Vec::new();
        for h in current.0 + 1..=height.0 {
            match self.store.block_at(Height(h)) {
                Ok(Some(block)) => blocks.push(block),
                Ok(None) => return Err(format!("no block at final height {h}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(blocks)
    }

    /// Drops transactions whose nonce is used.
    fn prune_mempool(&mut self) {
        let mut next_nonce: BTreeMap<Address, Nonce> = BTreeMap::new();
        for (sender, _) in self.mempool.keys() {
            if !next_nonce.contains_key(sender) {
                let nonce = self
                    .store
                    .account(sender)
                    .map(|a| a.nonce)
                    .unwrap_or_default();
                next_nonce.insert(*sender, nonce);
            }
        }
        self.mempool
            .retain(|(from, nonce), _| next_nonce.get(from).is_none_or(|n| nonce >= n));
    }

    /// Remembers a block the replica may build on later (bounded), so its
    /// state can be computed when a descendant needs it.
    pub fn observe_block(&mut self, block: &Block) {
        self.speculative.observe(&self.store, block);
    }
}

/// Mempool transactions that apply in order on `view`, at most
/// [`MAX_PROPOSAL_TXS`], skipping any whose nonce is not the next.
fn pick_transactions(
    mempool: &BTreeMap<(Address, Nonce), Transaction>,
    view: &dyn StateView,
) -> Vec<Transaction> {
    let mut picked = Vec::new();
    let mut expected: BTreeMap<Address, Nonce> = BTreeMap::new();
    for ((from, nonce), tx) in mempool {
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

impl Ledger for SimLedger {
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError> {
        let mempool = &self.mempool;
        let block = self.speculative.build(
            &self.store,
            parent,
            proposer,
            timestamp_ms,
            justification,
            |view| pick_transactions(mempool, view),
        )?;
        Ok(block)
    }

    fn build_empty_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError> {
        let no_transactions = BTreeMap::new();
        let block = self.speculative.build(
            &self.store,
            parent,
            proposer,
            timestamp_ms,
            justification,
            |view| pick_transactions(&no_transactions, view),
        )?;
        Ok(block)
    }

    fn validate_block(&mut self, parent: &Block, block: &Block) -> Result<(), LedgerError> {
        self.speculative.validate(&self.store, parent, block)?;
        Ok(())
    }

    fn observe_block(&mut self, block: &Block) {
        self.speculative.observe(&self.store, block);
    }

    /// Whether any transfer waits (HotStuff in the simulator proposes at
    /// once whatever this says; PBFT keeps no empty block in flight).
    fn has_pending_transactions(&self) -> bool {
        !self.mempool.is_empty()
    }

    fn committed_block(&self, hash: &Hash) -> Option<Block> {
        self.store.block(hash).ok().flatten()
    }

    fn finalized_height(&self) -> Option<Height> {
        self.store.finalized_height().ok().flatten()
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
            chain_id: phalanx_chain::ChainId::new("ledger-test").unwrap(),
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
        validator.observe_block(&b1);
        validator.validate_block(&b1, &b2).unwrap();
        let mut tampered = b2.clone();
        tampered.header_mut().state_root = Hash::ZERO;
        assert!(matches!(
            validator.validate_block(&b1, &tampered),
            Err(LedgerError::Invalid(_))
        ));
        assert!(
            validator.commit(&b2).is_err(),
            "b2 does not extend the head"
        );
        validator.commit(&b1).unwrap();
        validator.commit(&b2).unwrap();
        let sender: Address = keys[0].public().into();
        assert_eq!(validator.store.account(&sender).unwrap().nonce, Nonce(4));
        assert!(validator.speculative.is_empty());
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
