//! Fixtures shared by the integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

#[path = "../../src/test_seed.rs"]
pub mod test_seed;

use phalanx_chain::Rules;
use phalanx_chain::block::BlockHeader;
use phalanx_chain::execute::BlockBuilder;
use phalanx_chain::genesis::GenesisAccount;
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::{
    Address, Amount, Block, ChainId, ConsensusKind, Genesis, Justification, Nonce, StateChanges,
    Store, Transaction,
};
use phalanx_crypto::Keypair;

pub const CHAIN: &str = "phalanx-test";

pub fn chain_id() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

/// The test chain's execution rules (no block reward).
pub fn rules() -> Rules {
    Rules::new(chain_id())
}

/// `n` keypairs from fixed seeds.
pub fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect()
}

/// A proof-of-work genesis (no validators needed) funding each key.
pub fn genesis(keys: &[Keypair], balance: u64) -> Genesis {
    Genesis {
        chain_id: chain_id(),
        consensus: ConsensusKind::Pow,
        genesis_time_ms: 1_767_225_600_000,
        validators: vec![],
        pow: Some(phalanx_chain::genesis::PowParams {
            initial_target: CompactTarget(0x207fffff),
            target_limit: CompactTarget(0x207fffff),
            block_interval_ms: 1000,
            retarget_window: 10,
            confirmations: 1,
            block_reward: Amount(0),
            max_future_drift_ms: 15_000,
        }),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                address: k.public().into(),
                balance: Amount(balance),
            })
            .collect(),
    }
}

pub fn transfer(from: &Keypair, to: &Keypair, amount: u64, fee: u64, nonce: u64) -> Transaction {
    Transaction::sign(
        from,
        chain_id(),
        to.public().into(),
        Amount(amount),
        Amount(fee),
        Nonce(nonce),
    )
}

/// Builds the next block on `store`'s head from `txs`, all of which must apply.
pub fn next_block<S: Store + ?Sized>(
    store: &S,
    proposer: Address,
    txs: Vec<Transaction>,
) -> (Block, StateChanges) {
    let head = store.head().unwrap().expect("store has a head");
    let accumulator = store.accumulator().unwrap();
    let mut builder = BlockBuilder::new(rules(), &head.header, store, &accumulator, proposer);
    for tx in txs {
        builder.push(tx).unwrap();
    }
    builder
        .finish(head.header.timestamp_ms + 1000, Justification::Genesis)
        .unwrap()
}

pub fn header_of<S: Store + ?Sized>(store: &S) -> BlockHeader {
    store.head().unwrap().unwrap().header
}
