//! One test suite for every `Store`: the sled store a node uses and the
//! in-memory one the simulator uses must behave the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phalanx_chain::store::{SledOptions, StoreError};
use phalanx_chain::{
    Account, Amount, Hash, Height, MemStore, Nonce, SledStore, StateView, Store, TxIndex,
    TxLocation,
};

fn each_store(test: impl Fn(&dyn Fn() -> Box<dyn Store>)) {
    test(&|| Box::new(MemStore::new()));
    let dir = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0);
    test(&|| {
        counter.set(counter.get() + 1);
        Box::new(SledStore::open(&dir.path().join(counter.get().to_string())).unwrap())
    });
}

#[test]
fn genesis_initializes_once_and_refuses_another_genesis() {
    each_store(|new_store| {
        let store = new_store();
        let k = keys(3);
        let g = genesis(&k, 1000);
        assert_eq!(store.head().unwrap(), None);
        let head = store.init_genesis(&g).unwrap();
        assert_eq!(head.height(), Height(0));
        assert_eq!(head.header.parent, g.hash());
        assert_eq!(store.genesis_hash().unwrap(), Some(g.hash()));
        assert_eq!(store.finalized_height().unwrap(), Some(Height(0)));
        assert_eq!(
            store.init_genesis(&g).unwrap(),
            head,
            "second init is a no-op"
        );
        let mut other = g.clone();
        other.accounts[0].balance = Amount(999);
        match store.init_genesis(&other) {
            Err(StoreError::GenesisMismatch { stored, given }) => {
                assert_eq!(stored, g.hash());
                assert_eq!(given, other.hash());
            }
            other => panic!("expected GenesisMismatch, got {other:?}"),
        }
        let a: phalanx_chain::Address = k[0].public().into();
        assert_eq!(
            store.account(&a).unwrap(),
            Account {
                balance: Amount(1000),
                nonce: Nonce(0)
            }
        );
    });
}

#[test]
fn commits_extend_the_head_and_index_everything() {
    each_store(|new_store| {
        let store = new_store();
        let k = keys(4);
        store.init_genesis(&genesis(&k, 1000)).unwrap();
        let proposer = k[3].public().into();
        let txs = vec![
            transfer(&k[0], &k[1], 100, 2, 0),
            transfer(&k[0], &k[2], 50, 1, 1),
        ];
        let tx_hashes: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
        let (block, changes) = next_block(&*store, proposer, txs);
        store.commit_block(&block, &changes, Height(1)).unwrap();
        let head = store.head().unwrap().unwrap();
        assert_eq!((head.height(), head.hash), (Height(1), block.hash()));
        assert_eq!(store.block_at(Height(1)).unwrap(), Some(block.clone()));
        assert_eq!(store.block(&block.hash()).unwrap(), Some(block.clone()));
        assert_eq!(
            store.tx_location(&tx_hashes[1]).unwrap(),
            Some(TxLocation {
                height: Height(1),
                index: 1
            })
        );
        assert_eq!(store.tx_location(&Hash::digest(b"none")).unwrap(), None);
        assert_eq!(store.finalized_height().unwrap(), Some(Height(1)));
        let balance = |i: usize| store.account(&k[i].public().into()).unwrap();
        assert_eq!(
            balance(0),
            Account {
                balance: Amount(847),
                nonce: Nonce(2)
            }
        );
        assert_eq!(balance(1).balance, Amount(1100));
        assert_eq!(balance(2).balance, Amount(1050));
        assert_eq!(balance(3).balance, Amount(1003), "fees go to the proposer");
        assert_eq!(store.accumulator().unwrap().root(), head.header.state_root);
        // The same block again no longer extends the head.
        assert!(matches!(
            store.commit_block(&block, &changes, Height(1)),
            Err(StoreError::NotExtendingHead { .. })
        ));
    });
}

#[test]
fn a_failed_commit_leaves_nothing_half_written() {
    each_store(|new_store| {
        let store = new_store();
        let k = keys(3);
        store.init_genesis(&genesis(&k, 1000)).unwrap();
        let (b1, c1) = next_block(
            &*store,
            k[2].public().into(),
            vec![transfer(&k[0], &k[1], 10, 1, 0)],
        );
        // Build a competing block on genesis, then commit b1 first: the
        // competitor no longer extends the head.
        let (rival, rival_changes) = next_block(
            &*store,
            k[2].public().into(),
            vec![transfer(&k[1], &k[0], 7, 1, 0)],
        );
        store.commit_block(&b1, &c1, Height(1)).unwrap();
        let before_head = store.head().unwrap();
        let before_acc = store.accumulator().unwrap();
        let before: Vec<Account> = k
            .iter()
            .map(|x| store.account(&x.public().into()).unwrap())
            .collect();
        let err = store
            .commit_block(&rival, &rival_changes, Height(1))
            .unwrap_err();
        assert!(matches!(err, StoreError::NotExtendingHead { .. }), "{err}");
        assert_eq!(store.block(&rival.hash()).unwrap(), None);
        assert_eq!(
            store.tx_location(&rival.transactions[0].hash()).unwrap(),
            None
        );
        assert_eq!(store.head().unwrap(), before_head);
        assert_eq!(store.accumulator().unwrap(), before_acc);
        let after: Vec<Account> = k
            .iter()
            .map(|x| store.account(&x.public().into()).unwrap())
            .collect();
        assert_eq!(after, before);
        assert_eq!(store.block_at(Height(1)).unwrap(), Some(b1));

        // State changes that don't match the header are refused too.
        let (mut b2, c2) = next_block(
            &*store,
            k[2].public().into(),
            vec![transfer(&k[1], &k[0], 5, 0, 0)],
        );
        b2.header_mut().state_root = Hash::ZERO;
        assert!(matches!(
            store.commit_block(&b2, &c2, Height(2)),
            Err(StoreError::StateRootMismatch { .. })
        ));
        assert_eq!(store.head().unwrap(), before_head);
    });
}

#[test]
fn first_commit_must_be_genesis_and_finality_only_moves_forward() {
    each_store(|new_store| {
        let store = new_store();
        let k = keys(2);
        let g = genesis(&k, 100);
        let mut not_genesis = g.block();
        not_genesis.header_mut().height = Height(1);
        let accounts = g.initial_accounts();
        let accumulator = phalanx_chain::StateAccumulator::from_accounts(&accounts);
        let changes = phalanx_chain::StateChanges::new(accounts, accumulator);
        assert!(matches!(
            store.commit_block(&not_genesis, &changes, Height(0)),
            Err(StoreError::NotGenesis { .. })
        ));
        assert!(matches!(
            store.set_finalized_height(Height(0)),
            Err(StoreError::FinalizedBeyondHead { .. })
        ));
        store.init_genesis(&g).unwrap();
        for n in 0..3 {
            let (b, c) = next_block(
                &*store,
                k[1].public().into(),
                vec![transfer(&k[0], &k[1], 1, 0, n)],
            );
            store.commit_block(&b, &c, Height(0)).unwrap();
        }
        assert_eq!(store.finalized_height().unwrap(), Some(Height(0)));
        store.set_finalized_height(Height(2)).unwrap();
        assert_eq!(store.finalized_height().unwrap(), Some(Height(2)));
        assert!(matches!(
            store.set_finalized_height(Height(1)),
            Err(StoreError::FinalizedWentBack { .. })
        ));
        assert!(matches!(
            store.set_finalized_height(Height(4)),
            Err(StoreError::FinalizedBeyondHead { .. })
        ));
        store.put_safety_data(b"hotstuff", b"locked").unwrap();
        assert_eq!(
            store.safety_data(b"hotstuff").unwrap(),
            Some(b"locked".to_vec())
        );
        assert_eq!(store.safety_data(b"pbft").unwrap(), None);
    });
}

#[test]
fn sled_store_reopens_with_the_same_head_state_and_safety_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let k = keys(5);
    let g = genesis(&k, 10_000);
    let (head, root) = {
        let store = SledStore::open(&path).unwrap();
        store.init_genesis(&g).unwrap();
        for n in 0..5u64 {
            // The last commits and the safety write share one flush.
            if n == 3 {
                store.defer_flushes(true).unwrap();
            }
            let txs = (0..4)
                .map(|i| transfer(&k[i], &k[(i + 1) % 5], 10 + n, 1, n))
                .collect();
            let (b, c) = next_block(&store, k[4].public().into(), txs);
            store.commit_block(&b, &c, b.height()).unwrap();
            // Visible at once, deferred or not.
            assert_eq!(store.head().unwrap().unwrap().hash, b.hash());
        }
        store.put_safety_data(b"hotstuff/v1", &[1, 2, 3]).unwrap();
        store.defer_flushes(false).unwrap();
        let head = store.head().unwrap().unwrap();
        (head.clone(), head.header.state_root)
    };
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.head().unwrap(), Some(head.clone()));
    assert_eq!(store.accumulator().unwrap().root(), root);
    assert_eq!(
        store.recompute_state_root().unwrap(),
        root,
        "accounts on disk match the root"
    );
    assert_eq!(
        store.safety_data(b"hotstuff/v1").unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(store.init_genesis(&g).unwrap(), head);
    let a0 = store.account(&k[0].public().into()).unwrap();
    assert_eq!(a0.nonce, Nonce(5));
    // Nothing lost across reopen: a new block still builds on the head.
    let (b, c) = next_block(
        &store,
        k[4].public().into(),
        vec![transfer(&k[0], &k[1], 1, 1, 5)],
    );
    store.commit_block(&b, &c, b.height()).unwrap();
}

#[test]
fn a_sled_database_open_twice_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    // Once the first handle is gone, the database opens again at once
    // (sled releases its lock shortly after the drop; open waits for it).
    for _ in 0..20 {
        let store = SledStore::open(dir.path()).unwrap();
        store.put_safety_data(b"k", b"v").unwrap();
    }
}

#[test]
fn sled_store_detects_a_corrupt_database_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let k = keys(2);
    {
        let store = SledStore::open(&path).unwrap();
        store.init_genesis(&genesis(&k, 100)).unwrap();
        let (b, c) = next_block(
            &store,
            k[1].public().into(),
            vec![transfer(&k[0], &k[1], 1, 0, 0)],
        );
        store.commit_block(&b, &c, b.height()).unwrap();
    }
    {
        let db = open_raw(&path);
        let chain = db.open_tree("chain").unwrap();
        let mut acc = chain.get("mstate_accumulator").unwrap().unwrap().to_vec();
        acc[0] ^= 1;
        chain.insert("mstate_accumulator", acc).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    {
        let db = open_raw(&path);
        db.open_tree("chain")
            .unwrap()
            .insert("mhead", &b"garbage"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn competing_sled_commits_from_many_threads_land_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let k = keys(8);
    store.init_genesis(&genesis(&k, 1_000)).unwrap();
    for round in 0..20u64 {
        // Eight children of the head, one per proposer: one may land.
        let children: Vec<_> = k
            .iter()
            .map(|key| next_block(&store, key.public().into(), Vec::new()))
            .collect();
        let landed: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = children
                .iter()
                .map(|(block, changes)| {
                    let store = store.clone();
                    scope.spawn(move || store.commit_block(block, changes, block.height()))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join().unwrap() {
                    Ok(()) => true,
                    Err(StoreError::NotExtendingHead { .. }) => false,
                    Err(other) => panic!("unexpected error: {other}"),
                })
                .collect()
        });
        assert_eq!(landed.iter().filter(|l| **l).count(), 1, "round {round}");
        let winner = landed.iter().position(|l| *l).unwrap();
        let head = store.head().unwrap().unwrap();
        assert_eq!(head.hash, children[winner].0.hash());
        assert_eq!(store.block_hash_at(head.height()).unwrap(), Some(head.hash));
        assert_eq!(
            store.recompute_state_root().unwrap(),
            head.header.state_root
        );
    }
}

/// Rewrites a database in the current layout into the first one (a tree
/// per key space, the same keys without the space's byte; blocks and
/// safety data are where they were). With
/// `partial`, copies the first half of the `chain` tree's entries back, as
/// an upgrade that crashed midway leaves them.
fn into_format_1(path: &std::path::Path, partial: bool) {
    let db = open_raw(path);
    let chain = db.open_tree("chain").unwrap();
    let entries: Vec<_> = chain.iter().map(Result::unwrap).collect();
    for (key, value) in &entries {
        let name = match key[0] {
            b'h' => "heights",
            b't' => "txs",
            b'a' => "accounts",
            b'u' => "undo",
            b'm' if &key[1..] == b"format" => continue,
            b'm' => "meta",
            other => panic!("unknown space {other}"),
        };
        db.open_tree(name)
            .unwrap()
            .insert(&key[1..], value.clone())
            .unwrap();
    }
    db.drop_tree("chain").unwrap();
    if partial {
        let chain = db.open_tree("chain").unwrap();
        for (key, value) in entries.iter().take(entries.len() / 2) {
            if &key[..] != b"mformat" {
                chain.insert(key, value.clone()).unwrap();
            }
        }
    }
    db.flush().unwrap();
}

#[test]
fn a_sled_database_in_the_first_format_is_upgraded_with_its_safety_data() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(3);
    for partial in [false, true] {
        let path = dir.path().join(format!("db-{partial}"));
        let (head, accounts, block, tx) = {
            let store = SledStore::open(&path).unwrap();
            store.init_genesis(&genesis(&k, 1_000)).unwrap();
            let mut tx = Hash::ZERO;
            for nonce in 0..3 {
                let t = transfer(&k[0], &k[1], 5, 1, nonce);
                tx = t.hash();
                let (b, c) = next_block(&store, k[2].public().into(), vec![t]);
                store.commit_block(&b, &c, b.height()).unwrap();
            }
            store.put_safety_data(b"last-vote", b"view 7").unwrap();
            let head = store.head().unwrap().unwrap();
            let accounts: Vec<Account> = k
                .iter()
                .map(|key| store.account(&key.public().into()).unwrap())
                .collect();
            (head.clone(), accounts, store.block(&head.hash).unwrap(), tx)
        };
        into_format_1(&path, partial);

        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.head().unwrap().as_ref(), Some(&head));
        assert_eq!(store.finalized_height().unwrap(), Some(head.height()));
        assert_eq!(store.block(&head.hash).unwrap(), block);
        assert_eq!(store.block_hash_at(head.height()).unwrap(), Some(head.hash));
        assert_eq!(
            store.tx_location(&tx).unwrap(),
            Some(TxLocation {
                height: head.height(),
                index: 0
            })
        );
        for (key, account) in k.iter().zip(&accounts) {
            assert_eq!(store.account(&key.public().into()).unwrap(), *account);
        }
        assert_eq!(
            store.safety_data(b"last-vote").unwrap().as_deref(),
            Some(&b"view 7"[..])
        );
        assert_eq!(
            store.recompute_state_root().unwrap(),
            head.header.state_root
        );
        // It goes on from there, and the old trees are gone.
        let (b, c) = next_block(&store, k[2].public().into(), vec![]);
        store.commit_block(&b, &c, b.height()).unwrap();
        drop(store);
        let db = open_raw(&path);
        for old in ["heights", "txs", "accounts", "undo", "meta"] {
            assert!(
                !db.tree_names().iter().any(|n| &n[..] == old.as_bytes()),
                "{old} is left"
            );
        }
    }
}

#[test]
fn sled_store_refuses_a_database_in_a_format_it_does_not_know_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let k = keys(2);
    SledStore::open(&path)
        .unwrap()
        .init_genesis(&genesis(&k, 100))
        .unwrap();
    for format in [None, Some(&[0, 0, 0, 3][..])] {
        {
            let db = open_raw(&path);
            let chain = db.open_tree("chain").unwrap();
            match format {
                Some(bytes) => chain.insert("mformat", bytes).unwrap(),
                None => chain.remove("mformat").unwrap(),
            };
            db.flush().unwrap();
        }
        let err = SledStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::OtherFormat { .. }), "{err}");
        let db = open_raw(&path);
        let chain = db.open_tree("chain").unwrap();
        assert!(chain.get("mhead").unwrap().is_some(), "left alone");
    }
}

/// Commits `blocks` transfers blocks on the head, each final only up to
/// `finalized`; returns them.
fn grow(
    store: &dyn Store,
    k: &[phalanx_crypto::Keypair],
    blocks: &[Vec<(usize, usize, u64)>],
    finalized: Height,
) -> Vec<phalanx_chain::Block> {
    let proposer = k[k.len() - 1].public().into();
    let mut out = Vec::new();
    for transfers in blocks {
        // Transfers from one sender in one block take successive nonces.
        let mut nonces = std::collections::BTreeMap::new();
        let txs = transfers
            .iter()
            .map(|&(from, to, amount)| {
                let address = k[from].public().into();
                let nonce = nonces
                    .entry(from)
                    .or_insert_with(|| store.account(&address).unwrap().nonce.0);
                let tx = transfer(&k[from], &k[to], amount, 1, *nonce);
                *nonce += 1;
                tx
            })
            .collect();
        let (block, changes) = next_block(store, proposer, txs);
        store.commit_block(&block, &changes, finalized).unwrap();
        out.push(block);
    }
    out
}

/// Every account of `k`, and the state root.
fn snapshot(store: &dyn Store, k: &[phalanx_crypto::Keypair]) -> (Vec<Account>, Hash) {
    let accounts = k
        .iter()
        .map(|key| store.account(&key.public().into()).unwrap())
        .collect();
    (accounts, store.accumulator().unwrap().root())
}

#[test]
fn a_revert_restores_the_ancestor_state_and_indexes_and_keeps_the_blocks() {
    each_store(|new_store| {
        let store = new_store();
        let k = keys(5);
        store.init_genesis(&genesis(&k, 1000)).unwrap();
        let base = grow(
            &*store,
            &k,
            &[vec![(0, 1, 10)], vec![(1, 2, 5), (1, 3, 1)]],
            Height(1),
        );
        let after_base = snapshot(&*store, &k);
        let branch = grow(
            &*store,
            &k,
            &[vec![(0, 2, 7), (0, 3, 700)], vec![(3, 0, 300)]],
            Height(1),
        );
        assert_ne!(snapshot(&*store, &k), after_base);

        let removed = store.revert_to(&base[1].hash()).unwrap();
        assert_eq!(removed, vec![branch[1].clone(), branch[0].clone()]);
        let head = store.head().unwrap().unwrap();
        assert_eq!((head.height(), head.hash), (Height(2), base[1].hash()));
        assert_eq!(snapshot(&*store, &k), after_base);
        assert_eq!(after_base.1, base[1].header().state_root);
        assert_eq!(store.block_hash_at(Height(3)).unwrap(), None);
        for tx in branch.iter().flat_map(|b| &b.transactions) {
            assert_eq!(store.tx_location(&tx.hash()).unwrap(), None);
        }
        assert_eq!(
            store.block(&branch[0].hash()).unwrap(),
            Some(branch[0].clone()),
            "reverted blocks stay readable by hash"
        );
        // The other branch commits on the ancestor, and can be reverted too.
        let other = grow(&*store, &k, &[vec![(2, 4, 3)]], Height(1));
        assert_eq!(store.block_at(Height(3)).unwrap(), Some(other[0].clone()));
        assert_eq!(store.revert_to(&base[1].hash()).unwrap(), other);
        assert_eq!(
            store.revert_to(&base[1].hash()).unwrap(),
            vec![],
            "to the head"
        );
        assert_eq!(snapshot(&*store, &k), after_base);
    });
}

#[test]
fn reverts_refuse_final_blocks_and_blocks_off_the_chain() {
    each_store(|new_store| {
        let store = new_store();
        let k = keys(4);
        let g = genesis(&k, 1000);
        store.init_genesis(&g).unwrap();
        let blocks = grow(
            &*store,
            &k,
            &[vec![(0, 1, 1)], vec![(0, 1, 1)], vec![(0, 1, 1)]],
            Height(0),
        );
        store.set_finalized_height(Height(2)).unwrap();
        match store.revert_to(&blocks[0].hash()) {
            Err(StoreError::RevertBelowFinalized {
                finalized,
                ancestor,
            }) => assert_eq!((finalized, ancestor), (Height(2), Height(1))),
            other => panic!("expected RevertBelowFinalized, got {other:?}"),
        }
        let stranger = Hash([7; 32]);
        assert!(matches!(
            store.revert_to(&stranger),
            Err(StoreError::NotOnChain { hash }) if hash == stranger
        ));
        // Reverting to the finalized block itself is allowed.
        assert_eq!(
            store.revert_to(&blocks[1].hash()).unwrap(),
            vec![blocks[2].clone()]
        );
        // A block off the chain (reverted) is not an ancestor.
        assert!(matches!(
            store.revert_to(&blocks[2].hash()),
            Err(StoreError::NotOnChain { .. })
        ));
        // A BFT chain: every block final as it is committed.
        let bft = new_store();
        bft.init_genesis(&g).unwrap();
        let proposer = k[3].public().into();
        let (block, changes) = next_block(&*bft, proposer, vec![transfer(&k[0], &k[1], 1, 1, 0)]);
        bft.commit_block(&block, &changes, Height(1)).unwrap();
        assert!(matches!(
            bft.revert_to(&block.header().parent),
            Err(StoreError::RevertBelowFinalized { .. })
        ));
    });
}

#[test]
fn a_sled_revert_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(3);
    let (base, expected) = {
        let store = SledStore::open(dir.path()).unwrap();
        store.init_genesis(&genesis(&k, 1000)).unwrap();
        let base = grow(&store, &k, &[vec![(0, 1, 10)]], Height(0));
        let expected = snapshot(&store, &k);
        grow(&store, &k, &[vec![(1, 2, 5)], vec![(0, 2, 5)]], Height(0));
        store.revert_to(&base[0].hash()).unwrap();
        (base, expected)
    };
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.head().unwrap().unwrap().hash, base[0].hash());
    assert_eq!(snapshot(&store, &k), expected);
    assert_eq!(store.recompute_state_root().unwrap(), expected.1);
}

fn open_indexed(path: &std::path::Path, tx_index: bool) -> SledStore {
    let options = SledOptions {
        tx_index,
        ..SledOptions::default()
    };
    SledStore::open_with(path, options).unwrap()
}

#[test]
fn the_transaction_index_can_be_turned_off_and_back_on() {
    assert_eq!(MemStore::new().tx_index(), TxIndex::From(Height::GENESIS));
    let dir = tempfile::tempdir().unwrap();
    let k = keys(4);
    let location = |height, index| {
        Some(TxLocation {
            height: Height(height),
            index,
        })
    };
    // On (the default): blocks 1 and 2, not final, so that 2 can be reverted.
    let (kept, reverted) = {
        let store = open_indexed(dir.path(), true);
        assert_eq!(store.tx_index(), TxIndex::From(Height::GENESIS));
        store.init_genesis(&genesis(&k, 1000)).unwrap();
        let blocks = grow(&store, &k, &[vec![(0, 1, 10)], vec![(1, 2, 3)]], Height(0));
        let kept = blocks[0].transactions[0].hash();
        let reverted = blocks[1].transactions[0].hash();
        assert_eq!(store.tx_location(&reverted).unwrap(), location(2, 0));
        (kept, reverted)
    };
    // Off: nothing is looked up, nothing new is indexed, and a revert
    // still removes what the index held of the reverted block.
    let unindexed = {
        let store = open_indexed(dir.path(), false);
        assert_eq!(store.tx_index(), TxIndex::Off);
        assert_eq!(store.tx_location(&kept).unwrap(), None);
        let head = store.head().unwrap().unwrap().hash;
        let base = store.block_hash_at(Height(1)).unwrap().unwrap();
        assert_ne!(head, base);
        store.revert_to(&base).unwrap();
        let blocks = grow(&store, &k, &[vec![(0, 3, 5), (0, 2, 1)]], Height(2));
        blocks[0].transactions[1].hash()
    };
    // Back on: it covers the blocks from the one after the head on, and
    // what it held before it was turned off.
    let store = open_indexed(dir.path(), true);
    assert_eq!(store.tx_index(), TxIndex::From(Height(3)));
    assert_eq!(store.tx_location(&kept).unwrap(), location(1, 0));
    assert_eq!(
        store.tx_location(&reverted).unwrap(),
        None,
        "reverted while off"
    );
    assert_eq!(
        store.tx_location(&unindexed).unwrap(),
        None,
        "committed while off"
    );
    let blocks = grow(&store, &k, &[vec![(2, 0, 1)]], Height(3));
    let new = blocks[0].transactions[0].hash();
    assert_eq!(store.tx_location(&new).unwrap(), location(3, 0));
    drop(store);
    // The record stays until the index is turned off again.
    let store = open_indexed(dir.path(), true);
    assert_eq!(store.tx_index(), TxIndex::From(Height(3)));
    assert_eq!(store.tx_location(&new).unwrap(), location(3, 0));
    drop(store);

    // A damaged record is reported, not guessed at.
    let db = open_raw(dir.path());
    db.open_tree("chain")
        .unwrap()
        .insert(b"mtx_index_from", &[1, 2, 3][..])
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let error = SledStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { what } if what.contains("transaction index")),
        "{error}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..test_seed::config() })]

    /// Applying branch A and then reorganizing to branch B leaves exactly
    /// the state of applying B on the common prefix directly.
    #[test]
    fn a_reorganization_gives_the_state_of_the_winning_branch_alone(
        prefix in proptest::collection::vec(block_of_transfers(), 0..3),
        a in proptest::collection::vec(block_of_transfers(), 1..5),
        b in proptest::collection::vec(block_of_transfers(), 1..5),
    ) {
        let k = keys(4);
        let g = genesis(&k, 1000);
        each_store(|new_store| {
            let reorged = new_store();
            reorged.init_genesis(&g).unwrap();
            grow(&*reorged, &k, &prefix, Height(0));
            let fork = reorged.head().unwrap().unwrap().hash;
            grow(&*reorged, &k, &a, Height(0));
            reorged.revert_to(&fork).unwrap();
            let winner = grow(&*reorged, &k, &b, Height(0));

            let direct = new_store();
            direct.init_genesis(&g).unwrap();
            grow(&*direct, &k, &prefix, Height(0));
            let straight = grow(&*direct, &k, &b, Height(0));
            assert_eq!(snapshot(&*reorged, &k), snapshot(&*direct, &k));
            assert_eq!(winner.last().map(|b| b.hash()), straight.last().map(|b| b.hash()));
            for (x, y) in winner.iter().zip(&straight) {
                assert_eq!(reorged.block_at(x.header().height).unwrap(), Some(y.clone()));
            }
        });
    }
}

/// A block's transfers among 4 accounts (small amounts: all apply).
fn block_of_transfers() -> impl proptest::strategy::Strategy<Value = Vec<(usize, usize, u64)>> {
    proptest::collection::vec((0usize..4, 0usize..4, 1u64..20), 0..4)
}

/// Opens the database under a store just dropped, as sled itself: sled
/// 0.34 holds its file lock a moment after the last handle is gone (longer
/// on a loaded machine), so a lock error is retried for a while, as
/// `SledStore::open` does.
fn open_raw(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}
