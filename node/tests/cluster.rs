//! Four nodes in one process on the in-memory network, driven through
//! their HTTP APIs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phalanx_chain::{Address, ConsensusKind, Nonce};
use phalanx_node::net::memory::MemoryNet;
use std::time::Duration;

const ACCOUNTS: usize = 40;
const PER_ACCOUNT: u64 = 25;

for_each_protocol!(four_nodes_commit_a_thousand_transactions_posted_over_http);

/// 1,000 transfers posted over HTTP, spread over the four nodes, are all
/// committed, and the four nodes end with the same head hash and state
/// root.
async fn four_nodes_commit_a_thousand_transactions_posted_over_http(kind: ConsensusKind) {
    init_logs();
    let chain = test_chain_of(kind, 4, ACCOUNTS);
    let net = MemoryNet::new();
    let nodes = start_memory_nodes(&chain, &net).await;
    let client = http();
    let mut posted = 0;
    for nonce in 0..PER_ACCOUNT {
        for from in 0..ACCOUNTS {
            let tx = transfer(&chain, from, (from + 1) % ACCOUNTS, nonce);
            let node = &nodes[(from + nonce as usize) % nodes.len()];
            let url = format!("http://{}/txs", node.api_addr.unwrap());
            let response = client.post(&url).json(&tx).send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status.as_u16(), 202, "{body}");
            posted += 1;
        }
    }
    assert_eq!(posted, 1_000);
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    let senders: Vec<Address> = chain
        .accounts
        .iter()
        .map(|k| Address::from(k.public()))
        .collect();
    wait_for(
        "every node to commit all 1,000 transfers",
        Duration::from_secs(180),
        || {
            stores.iter().all(|s| {
                senders
                    .iter()
                    .all(|a| s.account(a).unwrap().nonce == Nonce(PER_ACCOUNT))
            })
        },
    )
    .await;
    // The chain keeps growing (empty blocks); catch the four heads equal.
    wait_for(
        "the four heads to be equal",
        Duration::from_secs(60),
        || {
            let heads: Vec<_> = stores.iter().map(|s| head_of(&**s)).collect();
            heads.windows(2).all(|w| w[0] == w[1])
        },
    )
    .await;
    for node in nodes {
        node.stop().await;
    }
    let heads: Vec<_> = stores.iter().map(|s| s.head().unwrap().unwrap()).collect();
    let roots: Vec<_> = stores
        .iter()
        .map(|s| s.accumulator().unwrap().root())
        .collect();
    for (head, root) in heads.iter().zip(&roots) {
        assert_eq!(
            head.header.state_root, *root,
            "a store's state matches its head"
        );
    }
    let committed: usize = (1..=heads[0].height().0)
        .map(|h| {
            stores[0]
                .block_at(phalanx_chain::Height(h))
                .unwrap()
                .unwrap()
                .transactions
                .len()
        })
        .sum();
    assert_eq!(committed, 1_000, "each transfer committed exactly once");
    // Same block at every height on every node (heads may have moved on a
    // little between the check above and the stop).
    let lowest = heads.iter().map(|h| h.height().0).min().unwrap();
    for h in 0..=lowest {
        let hashes: Vec<_> = stores
            .iter()
            .map(|s| s.block_hash_at(phalanx_chain::Height(h)).unwrap())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "height {h}: {hashes:?}"
        );
    }
}

for_each_protocol!(a_node_that_was_down_syncs_and_rejoins);

/// A node that was down while the others committed many blocks catches
/// up through block sync (every block's certificate verified, applied only
/// once the blocks prove it final: a HotStuff three-chain, a PBFT commit
/// certificate carried by a later block) and then follows consensus
/// again; no two nodes ever store different blocks at one height.
async fn a_node_that_was_down_syncs_and_rejoins(kind: ConsensusKind) {
    init_logs();
    let chain = test_chain_of(kind, 4, 1);
    let net = MemoryNet::new();
    let mut nodes = start_memory_nodes(&chain, &net).await;
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    let down = nodes.pop().unwrap();
    down.stop().await;
    net.leave(&chain.validators[3].public());
    let left_at = head_of(&*stores[3]).0;
    wait_for(
        "the three others to commit 40 blocks more",
        Duration::from_secs(120),
        || head_of(&*stores[0]).0 > left_at + 40,
    )
    .await;
    // Restart the fourth node on its old store.
    let restarted = start_memory_node(&chain, &net, 3, stores[3].clone(), None).await;
    let target = head_of(&*stores[0]).0;
    wait_for(
        "the restarted node to pass the others' head at restart",
        Duration::from_secs(120),
        || head_of(&*stores[3]).0 >= target + 3,
    )
    .await;
    nodes.push(restarted);
    for node in nodes {
        node.stop().await;
    }
    let lowest = stores.iter().map(|s| head_of(&**s).0).min().unwrap();
    for h in 0..=lowest {
        let hashes: Vec<_> = stores
            .iter()
            .map(|s| s.block_hash_at(phalanx_chain::Height(h)).unwrap())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "height {h}: {hashes:?}"
        );
    }
}

for_each_protocol!(garbage_from_a_stranger_is_dropped_and_reported);

/// A stranger (not in the committee) floods the nodes with undecodable
/// consensus bytes, forged transactions and junk sync requests, and 200
/// bad HTTP requests hit the APIs: each is dropped (and the stranger
/// reported to the network, which bans repeat offenders), and the committee
/// keeps committing.
async fn garbage_from_a_stranger_is_dropped_and_reported(kind: ConsensusKind) {
    init_logs();
    let chain = test_chain_of(kind, 4, 2);
    let net = MemoryNet::new();
    let nodes = start_memory_nodes(&chain, &net).await;
    let stranger = phalanx_crypto::Keypair::from_seed(&[77; 32]);
    let (gossip, _inbound) = net.join(stranger.public(), 16);
    use phalanx_node::net::{Channel, Gossip, Misbehaviour};
    let mut forged = transfer(&chain, 0, 1, 0);
    forged.amount = phalanx_chain::Amount(999);
    for i in 0..20u8 {
        gossip.publish(Channel::Consensus, vec![i; 100]).unwrap();
        gossip
            .publish(
                Channel::Transactions,
                phalanx_node::txgossip::encode_batch(&[phalanx_chain::encoding::encode(&forged)]),
            )
            .unwrap();
        for node in &chain.validators {
            gossip
                .send(&node.public(), Channel::Sync, vec![9, i])
                .unwrap();
        }
    }
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    let start = head_of(&*stores[0]).0;
    wait_for(
        "more commits after the flood",
        Duration::from_secs(60),
        || stores.iter().all(|s| head_of(&**s).0 >= start + 5),
    )
    .await;
    let reports = net.reports();
    for node in &chain.validators {
        for why in [Misbehaviour::Malformed, Misbehaviour::BadSignature] {
            assert!(
                reports.iter().any(|(by, culprit, w)| *by == node.public()
                    && *culprit == stranger.public()
                    && *w == why),
                "{why:?} by {}: {reports:?}",
                node.public()
            );
        }
    }
    // The forged transaction never entered a mempool.
    for node in &nodes {
        assert!(!node.state.mempool.lock().unwrap().contains(&forged.hash()));
    }
    let metrics = nodes[0].state.metrics.render();
    assert!(metrics.contains("undecodable"), "{metrics}");
    for node in nodes {
        node.stop().await;
    }
}

for_each_protocol!(a_single_validator_commits_transfers);

/// One validator is a whole committee: transfers posted to it commit.
async fn a_single_validator_commits_transfers(kind: ConsensusKind) {
    init_logs();
    let chain = test_chain_of(kind, 1, 2);
    let net = MemoryNet::new();
    let nodes = start_memory_nodes(&chain, &net).await;
    let client = http();
    let url = format!("http://{}/txs", nodes[0].api_addr.unwrap());
    for nonce in 0..20 {
        let tx = transfer(&chain, 0, 1, nonce);
        let response = client.post(&url).json(&tx).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    let store = nodes[0].state.store.clone();
    let sender = Address::from(chain.accounts[0].public());
    wait_for("20 transfers committed", Duration::from_secs(60), || {
        store.account(&sender).unwrap().nonce == Nonce(20)
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

for_each_protocol!(the_whole_network_restarts_and_the_chain_moves_on);

/// Every node stops and starts again on its store: the blocks the latest
/// quorum certificates point at were never committed, so they come from
/// the nodes' on-disk copies of uncommitted blocks, and the chain moves on.
async fn the_whole_network_restarts_and_the_chain_moves_on(kind: ConsensusKind) {
    init_logs();
    let chain = test_chain_of(kind, 4, 1);
    let net = MemoryNet::new();
    let nodes = start_memory_nodes(&chain, &net).await;
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    wait_for("a few blocks", Duration::from_secs(60), || {
        stores.iter().all(|s| head_of(&**s).0 >= 5)
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
    let before = stores.iter().map(|s| head_of(&**s).0).max().unwrap();
    let mut restarted = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        restarted.push(start_memory_node(&chain, &net, i, store.clone(), None).await);
    }
    wait_for(
        "new blocks after the restart",
        Duration::from_secs(60),
        || stores.iter().all(|s| head_of(&**s).0 >= before + 5),
    )
    .await;
    for node in restarted {
        node.stop().await;
    }
}

for_each_protocol!(an_observer_follows_the_chain_through_block_sync);

/// A node whose key is not in the committee runs no protocol instance
/// (its status has no phase) and follows the chain through block sync
/// alone; the validators report their phase.
async fn an_observer_follows_the_chain_through_block_sync(kind: ConsensusKind) {
    init_logs();
    let chain = test_chain_of(kind, 4, 1);
    let net = MemoryNet::new();
    let nodes = start_memory_nodes(&chain, &net).await;
    let observer_key = phalanx_crypto::Keypair::from_seed(&[55; 32]);
    let (gossip, inbound) = net.join(observer_key.public(), 8_192);
    let store: std::sync::Arc<dyn phalanx_chain::Store> =
        std::sync::Arc::new(phalanx_chain::MemStore::new());
    let observer = phalanx_node::node::start(phalanx_node::node::Parts {
        config: quick_config(),
        genesis: chain.genesis.clone(),
        key: observer_key,
        store: store.clone(),
        net: std::sync::Arc::new(gossip),
        inbound,
        api: None,
    })
    .await
    .unwrap();
    wait_for(
        "the observer to sync 20 blocks",
        Duration::from_secs(120),
        || head_of(&*store).0 >= 20,
    )
    .await;
    assert_eq!(observer.state.validator, None);
    assert_eq!(observer.state.live().phase, None);
    let phase = nodes[0].state.live().phase;
    assert!(
        matches!(phase, Some("normal" | "timed-out" | "view-change")),
        "{phase:?}"
    );
    let observed = head_of(&*store).0;
    for h in 0..=observed {
        let height = phalanx_chain::Height(h);
        assert_eq!(
            store.block_hash_at(height).unwrap(),
            nodes[0].state.store.block_hash_at(height).unwrap(),
            "height {h}"
        );
    }
    observer.stop().await;
    for node in nodes {
        node.stop().await;
    }
}
