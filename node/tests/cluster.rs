//! Four nodes in one process on the in-memory network, driven through
//! their HTTP APIs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phalanx_chain::{Address, ConsensusKind, Nonce};
use phalanx_node::net::Channel;
use phalanx_node::net::memory::MemoryNet;
use std::sync::Arc;
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

for_each_protocol!(no_consensus_message_leaves_before_the_writes_before_it_are_durable);

/// The driver flushes the store's writes in groups (one disk sync for a
/// commit and a vote), which must never let a consensus message out while
/// a write made before it is not yet durable: every node's store and
/// network are wrapped to check exactly that while the chain commits
/// transfers.
async fn no_consensus_message_leaves_before_the_writes_before_it_are_durable(kind: ConsensusKind) {
    use durability::{Journal, JournalStore};
    init_logs();
    let chain = test_chain_of(kind, 4, 4);
    let net = MemoryNet::new();
    let mut nodes = Vec::new();
    let mut journals = Vec::new();
    for i in 0..4 {
        let journal = Arc::new(Journal::default());
        let store = Arc::new(JournalStore::new(Arc::clone(&journal)));
        // Each consensus message is checked against the journal as it
        // leaves.
        let tapped = Arc::clone(&journal);
        let tap = move |channel, broadcast| {
            if channel != Channel::Transactions {
                tapped.sending(if broadcast {
                    "a broadcast"
                } else {
                    "a direct message"
                });
            }
            true
        };
        nodes.push(start_tapped(&chain, &net, i, store, tap).await);
        journals.push(journal);
    }
    let client = http();
    for nonce in 0..5 {
        for (from, node) in nodes.iter().enumerate() {
            let tx = transfer(&chain, from, (from + 1) % 4, nonce);
            let url = format!("http://{}/txs", node.api_addr.unwrap());
            let response = client.post(&url).json(&tx).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 202);
        }
    }
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    wait_for("20 blocks on every node", Duration::from_secs(120), || {
        stores.iter().all(|s| head_of(&**s).0 >= 20)
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
    for (i, journal) in journals.iter().enumerate() {
        let (writes, flushes, sent, violations) = journal.summary();
        assert!(violations.is_empty(), "node {i}: {violations:?}");
        assert!(
            writes > 20 && sent > 20,
            "node {i}: {writes} writes, {sent} sends"
        );
        // Grouping saved syncs: HotStuff commits a block and votes in one
        // batch of effects (PBFT's commit and its votes come apart).
        assert!(
            flushes <= writes,
            "node {i}: {flushes} flushes for {writes} writes"
        );
        if kind == ConsensusKind::Hotstuff {
            assert!(
                flushes < writes,
                "node {i}: {flushes} flushes for {writes} writes"
            );
        }
    }
}

/// A PBFT backup admits a transaction but its gossip never reaches anyone
/// (the first transaction batch it publishes is lost), so the primary,
/// the only proposer, does not hold it. Gossiping ready transactions again
/// after a wait gets it to the primary, and it commits everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_gossip_was_lost_is_gossiped_again_and_commits() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (chain, nodes) = tapped_pbft_cluster(|i| {
        // Validator 1 loses the first transaction batch it publishes.
        let lost = AtomicBool::new(i != 1);
        move |channel, broadcast| {
            !(broadcast && channel == Channel::Transactions && !lost.swap(true, Ordering::SeqCst))
        }
    })
    .await;
    // Validator 0 is the primary of view 0; validator 1 is a backup.
    let tx = transfer(&chain, 0, 1, 0);
    let url = format!("http://{}/txs", nodes[1].api_addr.unwrap());
    let response = http().post(&url).json(&tx).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let hash = tx.hash();
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    wait_for(
        "the transaction committed on every node",
        Duration::from_secs(60),
        || {
            stores
                .iter()
                .all(|s| s.tx_location(&hash).ok().flatten().is_some())
        },
    )
    .await;
    let metrics = nodes[1].state.metrics.render();
    let regossiped = counter(&metrics, "phalanx_txs_regossiped_total");
    assert!(regossiped >= 1, "node 1 gossiped nothing again:\n{metrics}");
    for node in nodes {
        node.stop().await;
    }
}

/// The value of counter `name` in rendered metrics (0 if absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// A PBFT backup admits a sender's nonce 0, but none of its transaction
/// gossip gets out (not even gossip again); the sender's nonce 1 goes to
/// another backup and reaches everyone, stuck above the missing nonce. The
/// nodes ask their peers for the gap, the first backup answers with a
/// direct message, and both transactions commit everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_missing_below_a_stuck_transaction_is_fetched_from_a_peer() {
    // Validator 1 never gets a transaction broadcast out.
    let (chain, nodes) = tapped_pbft_cluster(|i| {
        move |channel, broadcast| !(i == 1 && broadcast && channel == Channel::Transactions)
    })
    .await;
    let first = transfer(&chain, 0, 1, 0);
    let second = transfer(&chain, 0, 1, 1);
    for (tx, node) in [(&first, 1), (&second, 2)] {
        let url = format!("http://{}/txs", nodes[node].api_addr.unwrap());
        let response = http().post(&url).json(tx).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    let stores: Vec<_> = nodes.iter().map(|n| n.state.store.clone()).collect();
    wait_for(
        "both committed on every node",
        Duration::from_secs(60),
        || {
            stores.iter().all(|s| {
                [&first, &second]
                    .iter()
                    .all(|tx| s.tx_location(&tx.hash()).ok().flatten().is_some())
            })
        },
    )
    .await;
    let metrics = nodes[1].state.metrics.render();
    let filled = counter(&metrics, "phalanx_txs_gaps_filled_total");
    assert!(filled >= 1, "node 1 filled no gap:\n{metrics}");
    for node in nodes {
        node.stop().await;
    }
}

/// Four PBFT validators on one in-memory network over in-memory stores,
/// validator `i`'s outgoing messages through `tap(i)`.
async fn tapped_pbft_cluster<T>(
    tap: impl Fn(usize) -> T,
) -> (TestChain, Vec<phalanx_node::node::RunningNode>)
where
    T: Fn(Channel, bool) -> bool + Send + Sync + 'static,
{
    init_logs();
    let chain = test_chain_of(ConsensusKind::Pbft, 4, 4);
    let net = MemoryNet::new();
    let mut nodes = Vec::new();
    for i in 0..4 {
        let store = Arc::new(phalanx_chain::MemStore::new());
        nodes.push(start_tapped(&chain, &net, i, store, tap(i)).await);
    }
    (chain, nodes)
}

/// Validator `i` on `net` over `store`, its outgoing messages through
/// `tap` (see [`tap::TapGossip`]), with an HTTP API.
async fn start_tapped(
    chain: &TestChain,
    net: &MemoryNet,
    i: usize,
    store: Arc<dyn phalanx_chain::Store>,
    tap: impl Fn(Channel, bool) -> bool + Send + Sync + 'static,
) -> phalanx_node::node::RunningNode {
    let key = &chain.validators[i];
    let (gossip, inbound) = net.join(key.public(), 8_192);
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    phalanx_node::node::start(phalanx_node::node::Parts {
        config: quick_config(),
        genesis: chain.genesis.clone(),
        key: key.clone(),
        store,
        net: Arc::new(tap::TapGossip::new(gossip, tap)),
        inbound,
        api: Some(api),
    })
    .await
    .unwrap()
}

/// The in-memory network with a tap on what leaves a node: the tap sees
/// each outgoing message's channel and whether it is a broadcast, and
/// may drop it.
mod tap {
    use phalanx_crypto::PublicKey;
    use phalanx_node::net::memory::MemoryGossip;
    use phalanx_node::net::{Channel, Gossip, Misbehaviour, NetError, PeerInfo};

    /// What the tap sees: the channel, and true for a broadcast. It
    /// answers whether the message goes out.
    type Tap = Box<dyn Fn(Channel, bool) -> bool + Send + Sync>;

    pub struct TapGossip {
        inner: MemoryGossip,
        tap: Tap,
    }

    impl std::fmt::Debug for TapGossip {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TapGossip")
                .field("inner", &self.inner)
                .finish_non_exhaustive()
        }
    }

    impl TapGossip {
        pub fn new(
            inner: MemoryGossip,
            tap: impl Fn(Channel, bool) -> bool + Send + Sync + 'static,
        ) -> TapGossip {
            TapGossip {
                inner,
                tap: Box::new(tap),
            }
        }
    }

    impl Gossip for TapGossip {
        fn local_key(&self) -> PublicKey {
            self.inner.local_key()
        }
        fn publish(&self, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
            if !(self.tap)(channel, true) {
                return Ok(());
            }
            self.inner.publish(channel, bytes)
        }
        fn send(&self, to: &PublicKey, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
            if !(self.tap)(channel, false) {
                return Ok(());
            }
            self.inner.send(to, channel, bytes)
        }
        fn peers(&self) -> Vec<PeerInfo> {
            self.inner.peers()
        }
        fn report(&self, peer: &PublicKey, why: Misbehaviour) {
            self.inner.report(peer, why)
        }
        fn set_blocked(&self, peers: Vec<PublicKey>) {
            self.inner.set_blocked(peers)
        }
    }
}

mod durability {
    use phalanx_chain::{
        Account, Address, Block, Hash, Head, Height, MemStore, StateAccumulator, StateChanges,
        StateView, Store, StoreError, TxLocation, Undo,
    };
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// What one node wrote, flushed and sent, in order.
    #[derive(Debug, Default)]
    pub struct Journal {
        state: Mutex<State>,
    }

    #[derive(Debug, Default)]
    struct State {
        writes: usize,
        flushes: usize,
        /// Writes made and not yet durable.
        unflushed: usize,
        sent: usize,
        violations: Vec<String>,
    }

    impl Journal {
        fn wrote(&self, deferred: bool) {
            let mut s = self.state.lock().unwrap();
            s.writes += 1;
            if deferred {
                s.unflushed += 1;
            } else {
                s.flushes += 1;
            }
        }

        fn flushed(&self) {
            let mut s = self.state.lock().unwrap();
            if s.unflushed > 0 {
                s.unflushed = 0;
                s.flushes += 1;
            }
        }

        pub fn sending(&self, what: &str) {
            let mut s = self.state.lock().unwrap();
            s.sent += 1;
            if s.unflushed > 0 {
                let line = format!("{what} sent with {} writes not durable", s.unflushed);
                s.violations.push(line);
            }
        }

        /// Writes, flushes, consensus messages sent, violations.
        pub fn summary(&self) -> (usize, usize, usize, Vec<String>) {
            let s = self.state.lock().unwrap();
            (s.writes, s.flushes, s.sent, s.violations.clone())
        }
    }

    /// A memory store that reports its writes and flushes to a journal (a
    /// write is durable at once unless flushes are deferred).
    #[derive(Debug)]
    pub struct JournalStore {
        inner: MemStore,
        journal: Arc<Journal>,
        deferred: AtomicBool,
    }

    impl JournalStore {
        pub fn new(journal: Arc<Journal>) -> JournalStore {
            JournalStore {
                inner: MemStore::new(),
                journal,
                deferred: AtomicBool::new(false),
            }
        }

        fn wrote<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
            if result.is_ok() {
                self.journal.wrote(self.deferred.load(Ordering::SeqCst));
            }
            result
        }
    }

    impl StateView for JournalStore {
        fn account(&self, address: &Address) -> Result<Account, StoreError> {
            self.inner.account(address)
        }
    }

    impl Store for JournalStore {
        fn genesis_hash(&self) -> Result<Option<Hash>, StoreError> {
            self.inner.genesis_hash()
        }
        fn head(&self) -> Result<Option<Head>, StoreError> {
            self.inner.head()
        }
        fn finalized_height(&self) -> Result<Option<Height>, StoreError> {
            self.inner.finalized_height()
        }
        fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
            self.inner.block(hash)
        }
        fn block_hash_at(&self, height: Height) -> Result<Option<Hash>, StoreError> {
            self.inner.block_hash_at(height)
        }
        fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
            self.inner.tx_location(hash)
        }
        fn accumulator(&self) -> Result<StateAccumulator, StoreError> {
            self.inner.accumulator()
        }
        fn commit_block(
            &self,
            block: &Block,
            changes: &StateChanges,
            finalized: Height,
        ) -> Result<(), StoreError> {
            self.wrote(self.inner.commit_block(block, changes, finalized))
        }
        fn set_finalized_height(&self, height: Height) -> Result<(), StoreError> {
            self.wrote(self.inner.set_finalized_height(height))
        }
        fn revert_to(&self, ancestor: &Hash) -> Result<Vec<Block>, StoreError> {
            self.wrote(self.inner.revert_to(ancestor))
        }
        fn undo(&self, height: Height) -> Result<Option<Undo>, StoreError> {
            self.inner.undo(height)
        }
        fn safety_data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.safety_data(key)
        }
        fn put_safety_data(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.wrote(self.inner.put_safety_data(key, value))
        }
        fn defer_flushes(&self, defer: bool) -> Result<(), StoreError> {
            self.deferred.store(defer, Ordering::SeqCst);
            if !defer {
                self.journal.flushed();
            }
            Ok(())
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.journal.flushed();
            Ok(())
        }
    }
}
