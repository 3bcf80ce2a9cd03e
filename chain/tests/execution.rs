//! Execution rules: named errors, supply conservation, nonces, and the
//! builder and validator agreeing, over random transaction sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phalanx_chain::encoding;
use phalanx_chain::execute::{
    BlockBuilder, BuildError, ExecutionError, execute_block, execute_block_with, total_supply,
};
use phalanx_chain::tx::MAX_TX_BYTES;
use phalanx_chain::{
    Account, Address, Amount, BlockError, ChainId, Hash, Height, Justification, MemStore, Nonce,
    StateAccumulator, StateView, Store, Transaction, TxError, VerifiedTxs,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn builder_error(store: &MemStore, proposer: Address, tx: Transaction) -> TxError {
    let head = header_of(store);
    let acc = store.accumulator().unwrap();
    let mut builder = BlockBuilder::new(rules(), &head, store, &acc, proposer);
    match builder.push(tx) {
        Err(BuildError::Invalid(e)) => e,
        other => panic!("expected an invalid transaction, got {other:?}"),
    }
}

#[test]
fn each_rule_has_its_named_error() {
    let k = keys(3);
    let store = MemStore::new();
    store.init_genesis(&genesis(&k[..2], 1000)).unwrap();
    let proposer: Address = k[2].public().into();
    let from: Address = k[0].public().into();
    let (b, c) = next_block(&store, proposer, vec![transfer(&k[0], &k[1], 10, 1, 0)]);
    store.commit_block(&b, &c, b.height()).unwrap();

    // Replay of nonce 0.
    assert_eq!(
        builder_error(&store, proposer, transfer(&k[0], &k[1], 10, 1, 0)),
        TxError::NonceMismatch {
            from,
            expected: Nonce(1),
            got: Nonce(0)
        }
    );
    // A gap.
    assert_eq!(
        builder_error(&store, proposer, transfer(&k[0], &k[1], 10, 1, 5)),
        TxError::NonceMismatch {
            from,
            expected: Nonce(1),
            got: Nonce(5)
        }
    );
    assert_eq!(
        builder_error(&store, proposer, transfer(&k[0], &k[1], u64::MAX, 1, 1)),
        TxError::AmountOverflow {
            amount: Amount(u64::MAX),
            fee: Amount(1)
        }
    );
    assert_eq!(
        builder_error(&store, proposer, transfer(&k[0], &k[1], 989, 1, 1)),
        TxError::InsufficientBalance {
            from,
            balance: Amount(989),
            needed: Amount(990)
        }
    );
    let other_chain = Transaction::sign(
        &k[0],
        ChainId::new("elsewhere").unwrap(),
        k[1].public().into(),
        Amount(1),
        Amount(0),
        Nonce(1),
    );
    assert_eq!(
        builder_error(&store, proposer, other_chain),
        TxError::WrongChain {
            expected: chain_id(),
            got: ChainId::new("elsewhere").unwrap()
        }
    );
    let mut forged = transfer(&k[0], &k[1], 1, 0, 1);
    forged.amount = Amount(2);
    assert_eq!(
        builder_error(&store, proposer, forged),
        TxError::BadSignature { from }
    );
    // Exactly the whole balance is fine, and self-transfers only cost the fee.
    let (b, c) = next_block(
        &store,
        proposer,
        vec![
            transfer(&k[0], &k[0], 500, 9, 1),
            transfer(&k[0], &k[1], 980, 0, 2),
        ],
    );
    store.commit_block(&b, &c, b.height()).unwrap();
    assert_eq!(
        store.account(&from).unwrap(),
        Account {
            balance: Amount(0),
            nonce: Nonce(3)
        }
    );
    assert_eq!(store.account(&proposer).unwrap().balance, Amount(10));
}

/// Two funded accounts (keys 0 and 1) at genesis, key 2 proposing: the
/// keys, the store, the genesis header, its accumulator and the proposer.
fn two_accounts() -> (
    Vec<phalanx_crypto::Keypair>,
    MemStore,
    phalanx_chain::BlockHeader,
    StateAccumulator,
    Address,
) {
    let k = keys(3);
    let store = MemStore::new();
    store.init_genesis(&genesis(&k[..2], 1000)).unwrap();
    let parent = header_of(&store);
    let acc = store.accumulator().unwrap();
    let proposer: Address = k[2].public().into();
    (k, store, parent, acc, proposer)
}

#[test]
fn invalid_blocks_are_refused_with_the_rule_they_break() {
    let (k, store, parent, acc, proposer) = two_accounts();
    let (good, changes) = next_block(
        &store,
        proposer,
        vec![
            transfer(&k[0], &k[1], 10, 1, 0),
            transfer(&k[1], &k[0], 3, 1, 0),
        ],
    );
    let run = |block: &phalanx_chain::Block| execute_block(&rules(), &parent, &store, &acc, block);
    assert_eq!(run(&good).unwrap(), changes);

    let invalid = |block: phalanx_chain::Block| match run(&block) {
        Err(ExecutionError::Invalid(e)) => e,
        other => panic!("expected invalid, got {other:?}"),
    };
    let mut b = good.clone();
    b.header_mut().height = Height(2);
    assert_eq!(
        invalid(b),
        BlockError::WrongHeight {
            expected: Height(1),
            got: Height(2)
        }
    );
    let mut b = good.clone();
    b.header_mut().parent = Hash::ZERO;
    assert!(matches!(invalid(b), BlockError::WrongParent { .. }));
    let mut b = good.clone();
    b.header_mut().timestamp_ms = parent.timestamp_ms - 1;
    assert!(matches!(
        invalid(b),
        BlockError::TimestampBeforeParent { .. }
    ));
    let mut b = good.clone();
    b.transactions.swap(0, 1);
    assert!(matches!(invalid(b), BlockError::TxRootMismatch { .. }));
    let mut b = good.clone();
    b.header_mut().state_root = Hash::ZERO;
    assert!(matches!(invalid(b), BlockError::StateRootMismatch { .. }));
    // A replayed transaction makes the whole block invalid, naming it.
    let mut b = good.clone();
    b.transactions.push(b.transactions[0].clone());
    b.header_mut().tx_root = b.compute_tx_root();
    let replay_hash = b.transactions[2].hash();
    assert_eq!(
        invalid(b),
        BlockError::Transaction {
            index: 2,
            hash: replay_hash,
            error: TxError::NonceMismatch {
                from: k[0].public().into(),
                expected: Nonce(1),
                got: Nonce(0)
            },
        }
    );
    // Validation changed nothing.
    assert_eq!(store.head().unwrap().unwrap().header, parent);
}

#[test]
fn signatures_recorded_as_verified_are_skipped_and_the_rest_are_checked() {
    let (k, store, parent, acc, proposer) = two_accounts();
    let (good, changes) = next_block(
        &store,
        proposer,
        vec![
            transfer(&k[0], &k[1], 10, 1, 0),
            transfer(&k[1], &k[0], 3, 1, 0),
            transfer(&k[0], &k[1], 4, 1, 1),
        ],
    );
    let verified = VerifiedTxs::default();
    let run = |block: &phalanx_chain::Block| {
        execute_block_with(&rules(), &parent, &store, &acc, block, &verified)
    };
    // Validation records the signatures it checked, and agrees with the
    // path that checks every one.
    assert_eq!(run(&good).unwrap(), changes);
    let hashes = good.tx_hashes();
    assert_eq!(verified.contains_each(&hashes), [true, true, true]);
    assert_eq!(run(&good).unwrap(), changes);
    // A transaction whose signature no longer matches has another hash, so
    // the set does not vouch for it: the block is refused, naming it.
    let mut b = good.clone();
    b.transactions[1].signature.0[7] ^= 1;
    b.header_mut().tx_root = b.compute_tx_root();
    let forged = b.transactions[1].hash();
    match run(&b) {
        Err(ExecutionError::Invalid(BlockError::Transaction { index, hash, error })) => {
            assert_eq!((index, hash), (1, forged));
            assert_eq!(
                error,
                TxError::BadSignature {
                    from: k[1].public().into()
                }
            );
        }
        other => panic!("expected a bad signature, got {other:?}"),
    }
    assert!(!verified.contains(&forged));
    // The builder with the set skips what it holds and records the rest.
    let fresh = VerifiedTxs::default();
    let mut builder =
        BlockBuilder::new(rules(), &parent, &store, &acc, proposer).with_verified(&fresh);
    for tx in &good.transactions {
        builder.push(tx.clone()).unwrap();
    }
    assert_eq!(fresh.contains_each(&hashes), [true, true, true]);
    let mut bad = good.transactions[1].clone();
    bad.signature.0[7] ^= 1;
    let mut builder =
        BlockBuilder::new(rules(), &parent, &store, &acc, proposer).with_verified(&fresh);
    assert!(matches!(
        builder.push(bad.clone()),
        Err(BuildError::Invalid(TxError::BadSignature { .. }))
    ));
    assert!(!fresh.contains(&bad.hash()));
}

#[derive(Debug, Clone)]
enum Tamper {
    None,
    NonceOff(i8),
    BadSignature,
    WrongChain,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        6 => Just(Tamper::None),
        1 => (-2i8..=2).prop_map(Tamper::NonceOff),
        1 => Just(Tamper::BadSignature),
        1 => Just(Tamper::WrongChain),
    ]
}

/// The rules, written again as plainly as possible.
fn model_apply(
    model: &mut BTreeMap<Address, Account>,
    proposer: Address,
    tx: &Transaction,
) -> Result<(), &'static str> {
    if tx.chain_id != chain_id() {
        return Err("chain");
    }
    if tx.verify_signature().is_err() {
        return Err("signature");
    }
    let from = model.get(&tx.from).copied().unwrap_or_default();
    if from.nonce != tx.nonce {
        return Err("nonce");
    }
    let cost = tx.amount.0.checked_add(tx.fee.0).ok_or("overflow")?;
    if from.balance.0 < cost {
        return Err("balance");
    }
    let entry = model.entry(tx.from).or_default();
    entry.balance.0 -= cost;
    entry.nonce.0 += 1;
    model.entry(tx.to).or_default().balance.0 += tx.amount.0;
    model.entry(proposer).or_default().balance.0 += tx.fee.0;
    Ok(())
}

fn kind(e: &TxError) -> &'static str {
    match e {
        TxError::WrongChain { .. } => "chain",
        TxError::BadSignature { .. } => "signature",
        TxError::NonceMismatch { .. } => "nonce",
        TxError::AmountOverflow { .. } => "overflow",
        TxError::InsufficientBalance { .. } => "balance",
        TxError::NonceExhausted { .. } | TxError::BalanceOverflow { .. } => "other",
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..test_seed::config() })]

    #[test]
    fn random_sequences_conserve_supply_and_nonces_only_go_up(
        ops in proptest::collection::vec(
            (0usize..5, 0usize..6, 0u64..600, 0u64..20, tamper(), any::<bool>()), 1..80)
    ) {
        let k = keys(6);
        let store = MemStore::new();
        let g = genesis(&k[..5], 1000);
        store.init_genesis(&g).unwrap();
        let supply = total_supply(g.initial_accounts().values()).unwrap();
        let mut model = g.initial_accounts();
        let mut nonces: BTreeMap<Address, Nonce> = BTreeMap::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let parent = header_of(&store);
            let acc = store.accumulator().unwrap();
            let proposer: Address = k[parent.height.0 as usize % 6].public().into();
            let mut builder = BlockBuilder::new(rules(), &parent, &store, &acc, proposer);
            for (from, to, amount, fee, tamper, end_block) in ops.by_ref() {
                let from_addr: Address = k[from].public().into();
                let next = model.get(&from_addr).copied().unwrap_or_default().nonce.0;
                let mut tx = transfer(&k[from], &k[to], amount, fee, next);
                match tamper {
                    Tamper::None => {}
                    Tamper::NonceOff(d) => tx = transfer(&k[from], &k[to], amount, fee, next.saturating_add_signed(d.into())),
                    Tamper::BadSignature => tx.signature.0[5] ^= 0x10,
                    Tamper::WrongChain => tx = Transaction::sign(&k[from], ChainId::new("other").unwrap(), k[to].public().into(), Amount(amount), Amount(fee), Nonce(next)),
                }
                let expected = model_apply(&mut model, proposer, &tx);
                let got = builder.push(tx);
                match (&expected, &got) {
                    (Ok(()), Ok(())) => {}
                    (Err(want), Err(BuildError::Invalid(e))) => prop_assert_eq!(*want, kind(e), "{}", e),
                    _ => prop_assert!(false, "model {:?}, builder {:?}", expected, got),
                }
                if end_block {
                    break;
                }
            }
            let (block, changes) = builder
                .finish(parent.timestamp_ms + 1, Justification::Genesis)
                .unwrap();
            // The validator's path agrees with the builder's.
            let validated = execute_block(&rules(), &parent, &store, &acc, &block).unwrap();
            prop_assert_eq!(&validated, &changes);
            store.commit_block(&block, &changes, block.height()).unwrap();

            let accounts: Vec<(Address, Account)> = model.iter().map(|(a, x)| (*a, *x)).collect();
            for (address, account) in &accounts {
                prop_assert_eq!(store.account(address).unwrap(), *account);
                let previous = nonces.insert(*address, account.nonce).unwrap_or_default();
                prop_assert!(account.nonce >= previous, "nonce went down for {}", address);
            }
            prop_assert_eq!(total_supply(model.values()), Some(supply));
            let scratch = StateAccumulator::from_accounts(model.iter());
            prop_assert_eq!(scratch.root(), block.header().state_root);
        }
    }

    #[test]
    fn flipping_any_byte_of_a_signed_transaction_invalidates_it(
        index in 0usize..MAX_TX_BYTES, bit in 0u8..8, amount in any::<u64>(), nonce in any::<u64>()
    ) {
        let k = keys(2);
        let tx = transfer(&k[0], &k[1], amount, 1, nonce);
        let bytes = encoding::encode(&tx);
        let index = index % bytes.len();
        let mut flipped = bytes.clone();
        flipped[index] ^= 1 << bit;
        match encoding::decode::<Transaction>(&flipped, MAX_TX_BYTES) {
            Err(_) => {}
            Ok(other) => {
                prop_assert_ne!(&other, &tx);
                prop_assert!(other.verify_signature().is_err(), "flipped byte {} still verifies", index);
                prop_assert_ne!(other.hash(), tx.hash());
            }
        }
    }

    #[test]
    fn a_signature_for_one_chain_fails_on_every_other(
        a in "[a-z0-9-]{1,32}", b in "[a-z0-9-]{1,32}", amount in any::<u64>()
    ) {
        prop_assume!(a != b);
        let k = keys(2);
        let tx = Transaction::sign(&k[0], ChainId::new(a).unwrap(), k[1].public().into(), Amount(amount), Amount(0), Nonce(0));
        prop_assert!(tx.verify_signature().is_ok());
        let moved = Transaction { chain_id: ChainId::new(b).unwrap(), ..tx };
        prop_assert!(moved.verify_signature().is_err());
    }

    #[test]
    fn transactions_and_blocks_round_trip_through_postcard_and_json(
        amounts in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..20)
    ) {
        let k = keys(2);
        let txs: Vec<Transaction> = amounts.iter().map(|&(a, f, n)| transfer(&k[0], &k[1], a, f, n)).collect();
        for tx in &txs {
            let bin = encoding::encode(tx);
            prop_assert_eq!(&encoding::decode::<Transaction>(&bin, MAX_TX_BYTES).unwrap(), tx);
            let json = serde_json::to_string(tx).unwrap();
            prop_assert_eq!(&serde_json::from_str::<Transaction>(&json).unwrap(), tx);
        }
        let store = MemStore::new();
        store.init_genesis(&genesis(&k, 5)).unwrap();
        let mut block = store.block_at(Height(0)).unwrap().unwrap();
        block.transactions = txs;
        let bytes = block.encode();
        prop_assert_eq!(phalanx_chain::Block::decode(&bytes).unwrap(), block.clone());
        let header = phalanx_chain::BlockHeader::decode(&block.header().encode()).unwrap();
        prop_assert_eq!(header.hash(), block.hash());
    }
}

/// A block that changes no account keeps its parent's state root (it is
/// not hashed again), and one that claims any other root is refused.
#[test]
fn an_empty_block_carries_its_parents_state_root_and_no_other() {
    let k = keys(3);
    let store = MemStore::new();
    store.init_genesis(&genesis(&k[..2], 1000)).unwrap();
    let proposer: Address = k[2].public().into();
    let (b, c) = next_block(&store, proposer, vec![transfer(&k[0], &k[1], 10, 1, 0)]);
    store.commit_block(&b, &c, b.height()).unwrap();
    let parent = header_of(&store);
    let accumulator = store.accumulator().unwrap();
    assert_eq!(accumulator.root(), parent.state_root);

    let (empty, changes) = next_block(&store, proposer, vec![]);
    assert_eq!(empty.header().state_root, parent.state_root);
    assert!(changes.accounts.is_empty());
    assert_eq!(changes.state_root(), accumulator.root());
    let executed = execute_block(&rules(), &parent, &store, &accumulator, &empty).unwrap();
    assert_eq!(executed, changes);

    let mut wrong = empty.clone();
    wrong.header_mut().state_root = Hash::digest(b"another root");
    assert!(matches!(
        execute_block(&rules(), &parent, &store, &accumulator, &wrong),
        Err(ExecutionError::Invalid(
            BlockError::StateRootMismatch { .. }
        ))
    ));
}
