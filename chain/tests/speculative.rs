//! Speculative states at their bound, and executions shared between
//! replicas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phalanx_chain::execute::StateView;
use phalanx_chain::speculative::{SharedExecutions, Speculative, SpeculativeError};
use phalanx_chain::store::MemStore;
use phalanx_chain::{Block, Height, Justification, Store};
use std::sync::Arc;

/// Builds an empty block on `parent` with `speculative` (`offset` on the
/// timestamp tells siblings apart).
fn build(speculative: &mut Speculative, store: &MemStore, parent: &Block, offset: u64) -> Block {
    let k = keys(1);
    speculative
        .build(
            store,
            parent,
            k[0].public().into(),
            parent.header().timestamp_ms + 1000 + offset,
            Justification::Genesis,
            |_| Vec::new(),
        )
        .unwrap()
}

/// A store holding the test genesis, and its block 0.
fn fresh_chain() -> (MemStore, Vec<Block>) {
    let store = MemStore::new();
    store.init_genesis(&genesis(&keys(2), 1000)).unwrap();
    let genesis_block = store.block_at(Height(0)).unwrap().unwrap();
    (store, vec![genesis_block])
}

/// At its bound, `Speculative` forgets states of blocks on the store's
/// chain first (they can be read back through undo records), then the
/// lowest side-branch state; a block that needed a forgotten side-branch
/// state is reported as unavailable, never accepted or refused as invalid.
#[test]
fn states_on_the_chain_go_before_side_branches_at_the_bound() {
    let (store, mut chain) = fresh_chain();

    // Nine blocks committed through a node that holds at most 4 states.
    let mut bounded = Speculative::new(rules(), 4);
    for _ in 0..9 {
        let next = build(&mut bounded, &store, chain.last().unwrap(), 0);
        bounded.commit(&store, &next, Height(0)).unwrap();
        chain.push(next);
    }
    assert_eq!(bounded.len(), 4);
    assert!(bounded.has_state(&chain[6].hash()));
    assert!(!bounded.has_state(&chain[5].hash()));

    // A side branch forking at height 3, and a block on height 7, made
    // elsewhere.
    let mut elsewhere = Speculative::new(rules(), 100);
    let mut side = vec![chain[3].clone()];
    for _ in 0..5 {
        let next = build(&mut elsewhere, &store, side.last().unwrap(), 7);
        side.push(next);
    }
    let on_7 = build(&mut elsewhere, &store, &chain[7], 7);

    // Three side blocks push out three states of the chain.
    for pair in side[..4].windows(2) {
        bounded.validate(&store, &pair[0], &pair[1]).unwrap();
    }
    for kept in [&side[1], &side[2], &side[3], &chain[9]] {
        assert!(bounded.has_state(&kept.hash()), "{}", kept.header().height);
    }
    assert!(!bounded.has_state(&chain[8].hash()));

    // Block 7's state is gone, but it is on the chain: a block on it still
    // validates, and pushes out the last state of the chain.
    bounded.validate(&store, &chain[7], &on_7).unwrap();
    assert!(!bounded.has_state(&chain[9].hash()));
    assert!(bounded.has_state(&side[1].hash()));

    // The fourth side block validates; only side states are left, so the
    // lowest of them goes.
    bounded.validate(&store, &side[3], &side[4]).unwrap();
    assert!(!bounded.has_state(&side[1].hash()));
    // The fifth needs it: unavailable, not invalid.
    assert!(matches!(
        bounded.validate(&store, &side[4], &side[5]),
        Err(SpeculativeError::StateUnavailable { .. })
    ));

    // Pruning at a finalized height forgets what is at or below it.
    bounded.prune(Height(5));
    assert!(!bounded.has_state(&side[2].hash()));
    assert!(bounded.has_state(&side[3].hash()));
    assert!(bounded.block(&side[2].hash()).is_none());
    assert!(bounded.block(&side[4].hash()).is_some());
}

/// The node's order of events on a proof-of-work chain with k = 3: each
/// block is committed with the final height as it was, then the final
/// height rises to the tip minus 2 without pruning. A sibling of the
/// node's own tip must still validate on its parent: reading the state
/// after the parent must not walk through leftover states to below the
/// final height. (Found by hand on a 4-miner network: a node dropped every
/// block of the other miners' branch as "state unavailable", was left
/// alone on its own and finalized it.)
#[test]
fn a_sibling_of_the_tip_validates_after_the_final_height_rose() {
    let (store, mut chain) = fresh_chain();
    let mut node = Speculative::new(rules(), 1_024);
    let mut elsewhere = Speculative::new(rules(), 1_024);
    // Blocks arrive from peers: validated on their parent, then committed.
    for _ in 0..11 {
        let parent = chain.last().unwrap().clone();
        let next = build(&mut elsewhere, &store, &parent, 0);
        node.validate(&store, &parent, &next).unwrap();
        let final_before = store.finalized_height().unwrap().unwrap();
        node.commit(&store, &next, final_before).unwrap();
        let tip = next.header().height.0;
        store
            .set_finalized_height(Height(tip.saturating_sub(2)))
            .unwrap();
        chain.push(next);
    }
    // The node mines block 12 itself; a peer mined another at once.
    let parent = chain[11].clone();
    let own = build(&mut node, &store, &parent, 0);
    let final_before = store.finalized_height().unwrap().unwrap();
    node.commit(&store, &own, final_before).unwrap();
    store.set_finalized_height(Height(10)).unwrap();
    let sibling = build(&mut elsewhere, &store, &parent, 3);
    node.validate(&store, &parent, &sibling).unwrap();
}

/// Replicas that share executions take a block's changes from whoever
/// executed it first, but only where they would have executed it
/// themselves: a block whose parent's state they cannot reach is still
/// unavailable, and a block no one executed successfully is still checked
/// (and refused) by each. The set stays within its bound.
#[test]
fn shared_executions_save_work_and_change_no_outcome() {
    let k = keys(2);
    let shared = Arc::new(SharedExecutions::new(3));
    let (store_a, genesis_a) = fresh_chain();
    let (store_b, _) = fresh_chain();
    let mut a = Speculative::new(rules(), 100).with_shared_executions(Arc::clone(&shared));
    let mut b = Speculative::new(rules(), 100).with_shared_executions(Arc::clone(&shared));
    let (payer, payee_key) = (&k[0], &k[1]);
    let pay = |nonce: u64| move |_: &dyn StateView| vec![transfer(payer, payee_key, 5, 1, nonce)];

    // A builds two blocks with a transfer each; B validates and commits
    // them from the shared changes, and ends in the same state.
    let mut chain = genesis_a;
    for nonce in 0..2 {
        let parent = chain.last().unwrap().clone();
        let next = a
            .build(
                &store_a,
                &parent,
                k[0].public().into(),
                parent.header().timestamp_ms + 1000,
                Justification::Genesis,
                pay(nonce),
            )
            .unwrap();
        assert_eq!(next.transactions.len(), 1);
        assert!(shared.get(&next.hash()).is_some());
        b.validate(&store_b, &parent, &next).unwrap();
        a.commit(&store_a, &next, Height(0)).unwrap();
        b.commit(&store_b, &next, Height(0)).unwrap();
        chain.push(next);
    }
    assert_eq!(
        store_a.accumulator().unwrap(),
        store_b.accumulator().unwrap()
    );
    let payee = k[1].public().into();
    assert_eq!(
        store_b.account(&payee).unwrap(),
        store_a.account(&payee).unwrap()
    );

    // Shared changes are taken as they are, not recomputed: filed under
    // another block's hash, they are what a validator records for it.
    let parent = chain.last().unwrap().clone();
    let one = a
        .build(
            &store_a,
            &parent,
            k[0].public().into(),
            parent.header().timestamp_ms + 1001,
            Justification::Genesis,
            pay(2),
        )
        .unwrap();
    let two = build(&mut a, &store_a, &parent, 2);
    let wrong = shared.get(&one.hash()).unwrap();
    assert_ne!(Some(&wrong), shared.get(&two.hash()).as_ref());
    let (store_c, _) = fresh_chain();
    for pair in chain.windows(2) {
        let mut c = Speculative::new(rules(), 100);
        c.commit(&store_c, &pair[1], Height(0)).unwrap();
    }
    let planted = Arc::new(SharedExecutions::new(8));
    planted.insert(two.hash(), &wrong);
    let mut c = Speculative::new(rules(), 100).with_shared_executions(Arc::clone(&planted));
    c.validate(&store_c, &parent, &two).unwrap();
    let head = store_c.head().unwrap().unwrap();
    let (_, accumulator) = c.state_after(&store_c, &head, two.hash()).unwrap();
    assert_eq!(&accumulator, wrong.accumulator());

    // A block whose ancestor B never saw stays unavailable to B, although
    // the changes of both are shared.
    let child = build(&mut a, &store_a, &one, 0);
    let grandchild = build(&mut a, &store_a, &child, 0);
    assert!(shared.get(&child.hash()).is_some());
    assert!(shared.get(&grandchild.hash()).is_some());
    assert!(matches!(
        b.validate(&store_b, &child, &grandchild),
        Err(SpeculativeError::StateUnavailable { .. })
    ));

    // A block that breaks a rule is never shared, and each replica
    // refuses it.
    let mut bad = build(&mut a, &store_a, &parent, 3);
    bad.header_mut().state_root = phalanx_chain::Hash::ZERO;
    assert!(shared.get(&bad.hash()).is_none());
    assert!(matches!(
        b.validate(&store_b, &parent, &bad),
        Err(SpeculativeError::Invalid(_))
    ));
    assert!(shared.get(&bad.hash()).is_none());
    assert!(shared.len() <= 3);
}
