//! Benchmarks of a block of 1,000 valid transfers (1,000 funded senders,
//! each paying a fresh recipient): validating it with `execute_block`
//! (strict signature checks, merkle root, state root) against the state
//! after genesis, and committing it to a fresh `SledStore` (one atomic
//! batch and a flush). Then committing blocks of 1,000 transfers among
//! 1,667 accounts to a store already [`GROWN`] blocks high, as a node's
//! store is after a minute under load, without the disk sync: those
//! blocks are made up (a commit checks neither their signatures nor their
//! merkle roots), only their state changes and indexes are real.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use phalanx_chain::genesis::{GenesisAccount, GenesisValidator};
use phalanx_chain::{
    Account, Address, Amount, BftCertificate, Block, BlockBuilder, BlockHeader, ChainId,
    ConsensusKind, Genesis, Hash, Height, Justification, Nonce, Rules, SledStore, StateAccumulator,
    StateChanges, Store, Transaction, ValidatorIndex, ValidatorSignature, execute_block,
};
use phalanx_crypto::{Domain, Keypair};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

/// Transactions in the measured block, and funded senders in genesis.
const TXS: usize = 1_000;
const VALIDATORS: usize = 4;
const GENESIS_TIME_MS: u64 = 1_767_225_600_000;

/// A deterministic, distinct seed for key `i` of kind `tag`.
fn seed(tag: u8, i: usize) -> [u8; 32] {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed
}

struct Fixture {
    rules: Rules,
    genesis: Genesis,
    parent: BlockHeader,
    state: BTreeMap<Address, Account>,
    accumulator: StateAccumulator,
    block: Block,
    changes: StateChanges,
}

/// A `HotStuff` genesis with `TXS` funded senders, and block 1 holding one
/// transfer from each of them to a fresh recipient.
fn fixture() -> Fixture {
    let chain_id = ChainId::new("phalanx-bench").unwrap();
    let validators: Vec<Keypair> = (0..VALIDATORS)
        .map(|i| Keypair::from_seed(&seed(0xee, i)))
        .collect();
    let senders: Vec<Keypair> = (0..TXS)
        .map(|i| Keypair::from_seed(&seed(0x11, i)))
        .collect();
    let genesis = Genesis {
        chain_id: chain_id.clone(),
        consensus: ConsensusKind::Hotstuff,
        genesis_time_ms: GENESIS_TIME_MS,
        validators: validators
            .iter()
            .enumerate()
            .map(|(i, v)| GenesisValidator {
                public_key: v.public(),
                address: format!("/ip4/127.0.0.1/tcp/{}", 26600 + i),
            })
            .collect(),
        pow: None,
        accounts: senders
            .iter()
            .map(|s| GenesisAccount {
                address: s.public().into(),
                balance: Amount(1_000_000),
            })
            .collect(),
    };
    genesis.validate().unwrap();

    let parent = genesis.block().into_parts().0;
    let state = genesis.initial_accounts();
    let accumulator = StateAccumulator::from_accounts(&state);
    let proposer: Address = validators[0].public().into();

    let mut builder =
        BlockBuilder::new(Rules::of(&genesis), &parent, &state, &accumulator, proposer);
    for (i, sender) in senders.iter().enumerate() {
        let to = Address(Hash::digest(&(i as u64).to_le_bytes()).0);
        let tx = Transaction::sign(
            sender,
            chain_id.clone(),
            to,
            Amount(1_000 + i as u64),
            Amount(10),
            Nonce(0),
        );
        builder.push(tx).unwrap();
    }
    // A quorum certificate over the parent as a HotStuff block carries one
    // (2f + 1 of 4); the ledger carries it but does not check it.
    let parent_hash = parent.hash();
    let vote = Domain::HotStuffVote
        .begin(&chain_id)
        .u64_le(1)
        .bytes(parent_hash.as_bytes())
        .finish();
    let signatures = validators[..3]
        .iter()
        .enumerate()
        .map(|(i, v)| ValidatorSignature {
            validator: ValidatorIndex(u16::try_from(i).unwrap()),
            signature: v.sign(&vote),
        })
        .collect();
    let justification = Justification::Bft {
        view: 2,
        parent_cert: BftCertificate {
            view: 1,
            block: parent_hash,
            signatures,
        },
    };
    let (block, changes) = builder
        .finish(GENESIS_TIME_MS + 1_000, justification)
        .unwrap();
    assert_eq!(block.transactions.len(), TXS);
    drop(senders);

    Fixture {
        rules: Rules::of(&genesis),
        genesis,
        parent,
        state,
        accumulator,
        block,
        changes,
    }
}

/// The group every benchmark here is in: a block of 1,000 transfers.
fn block_group(c: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group("block_1000_transfers");
    group.throughput(Throughput::Elements(TXS as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(5));
    group
}

fn execute(c: &mut Criterion, f: &Fixture) {
    let executed = execute_block(&f.rules, &f.parent, &f.state, &f.accumulator, &f.block).unwrap();
    assert_eq!(executed, f.changes, "execution must agree with the builder");

    let mut group = block_group(c);
    group.bench_function("execute_block", |b| {
        b.iter(|| {
            execute_block(
                black_box(&f.rules),
                black_box(&f.parent),
                black_box(&f.state),
                black_box(&f.accumulator),
                black_box(&f.block),
            )
            .unwrap()
        });
    });
    group.finish();
}

/// A fresh store in a fresh directory, with genesis committed.
fn fresh_store(genesis: &Genesis) -> (SledStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.init_genesis(genesis).unwrap();
    (store, dir)
}

fn commit(c: &mut Criterion, f: &Fixture) {
    {
        let (store, _dir) = fresh_store(&f.genesis);
        store.commit_block(&f.block, &f.changes, Height(1)).unwrap();
        assert_eq!(store.head().unwrap().map(|h| h.hash), Some(f.block.hash()));
    }

    let mut group = block_group(c);
    group.bench_function("sled_commit_block", |b| {
        b.iter_batched(
            || fresh_store(&f.genesis),
            |(store, dir)| {
                store
                    .commit_block(black_box(&f.block), black_box(&f.changes), Height(1))
                    .unwrap();
                // Returned, so closing the store and deleting the directory
                // happen outside the measurement.
                (store, dir)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Blocks committed before the grown-store benchmark measures.
const GROWN: u64 = 300;
/// Accounts the made-up blocks move funds among.
const GROWN_ACCOUNTS: u64 = 1_667;

/// Made-up blocks on a chain: each of 1,000 transfers between accounts
/// picked by a fixed generator, with the state changes they would make.
struct MadeUp {
    chain_id: ChainId,
    head: BlockHeader,
    state: BTreeMap<Address, Account>,
    accumulator: StateAccumulator,
    rng: u64,
}

fn made_up_address(i: u64) -> Address {
    Address(Hash::digest(&i.to_le_bytes()).0)
}

impl MadeUp {
    fn next(&mut self) -> (Block, StateChanges) {
        let height = self.head.height.next().unwrap();
        let mut transactions = Vec::with_capacity(TXS);
        let mut accounts = BTreeMap::new();
        for i in 0..TXS as u64 {
            self.rng = self
                .rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let nonce = height.0 * TXS as u64 + i;
            let from = made_up_address(nonce % GROWN_ACCOUNTS);
            let to = made_up_address((self.rng >> 33) % GROWN_ACCOUNTS);
            transactions.push(Transaction {
                chain_id: self.chain_id.clone(),
                from,
                to,
                amount: Amount(1),
                fee: Amount(1),
                nonce: Nonce(nonce),
                signature: phalanx_crypto::Signature([7; 64]),
            });
            for (address, delta) in [(from, 0), (to, 1)] {
                let old = self.state[&address];
                let new = Account {
                    balance: Amount(old.balance.0 - 1 + delta),
                    nonce: Nonce(old.nonce.0 + 1 - delta),
                };
                self.accumulator.update(&address, &old, &new);
                self.state.insert(address, new);
                accounts.insert(address, new);
            }
        }
        let header = BlockHeader {
            height,
            parent: self.head.hash(),
            tx_root: Hash::ZERO,
            state_root: self.accumulator.root(),
            timestamp_ms: self.head.timestamp_ms + 1,
            proposer: made_up_address(0),
            justification: Justification::Genesis,
        };
        self.head = header.clone();
        let changes = StateChanges::new(accounts, self.accumulator.clone());
        let block = Block::new(header, transactions);
        (block, changes)
    }
}

fn commit_grown(c: &mut Criterion, f: &Fixture) {
    let mut genesis = f.genesis.clone();
    genesis.accounts = (0..GROWN_ACCOUNTS)
        .map(|i| GenesisAccount {
            address: made_up_address(i),
            balance: Amount(1_000_000_000),
        })
        .collect();
    let (store, _dir) = fresh_store(&genesis);
    let state = genesis.initial_accounts();
    let mut chain = MadeUp {
        chain_id: genesis.chain_id.clone(),
        head: store.head().unwrap().unwrap().header,
        accumulator: StateAccumulator::from_accounts(&state),
        state,
        rng: 0x1234_5678,
    };
    // Without a disk sync per commit, here and in the measurement: the
    // sync's time varies from run to run on this machine by more than
    // the work measured, which is the store's own.
    store.defer_flushes(true).unwrap();
    for _ in 0..GROWN {
        let (block, changes) = chain.next();
        store
            .commit_block(&block, &changes, block.height())
            .unwrap();
    }

    let mut group = block_group(c);
    group.bench_function("sled_commit_block_to_a_grown_store_unsynced", |b| {
        b.iter_batched(
            || chain.next(),
            |(block, changes)| {
                store
                    .commit_block(black_box(&block), black_box(&changes), block.height())
                    .unwrap();
                // Dropped outside the measurement.
                (block, changes)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// What every validator does with each block it receives and each batch
/// of gossiped transactions: decode it, and copy transactions around
/// (into the pool, a batch to verify, the next block).
fn decode(c: &mut Criterion, f: &Fixture) {
    let bytes = f.block.encode();
    assert_eq!(Block::decode(&bytes).unwrap(), f.block);
    let mut group = block_group(c);
    group.bench_function("decode_block", |b| {
        b.iter(|| Block::decode(black_box(&bytes)).unwrap());
    });
    group.bench_function("clone_transactions", |b| {
        b.iter(|| black_box(&f.block.transactions).clone());
    });
    group.finish();
}

fn blocks(c: &mut Criterion) {
    let f = fixture();
    decode(c, &f);
    execute(c, &f);
    commit(c, &f);
    commit_grown(c, &f);
}

criterion_group!(benches, blocks);
criterion_main!(benches);
