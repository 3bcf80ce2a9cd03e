//! Shared by the node's integration tests: a genesis with funded accounts,
//! nodes on the in-memory network, and an HTTP client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use phalanx_chain::genesis::{GenesisAccount, GenesisValidator};
use phalanx_chain::{
    Address, Amount, ChainId, ConsensusKind, Genesis, MemStore, Nonce, Store, Transaction,
};
use phalanx_crypto::Keypair;
use phalanx_node::config::Config;
use phalanx_node::net::memory::MemoryNet;
use phalanx_node::node::{Parts, RunningNode, start};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct TestChain {
    pub genesis: Genesis,
    pub validators: Vec<Keypair>,
    pub accounts: Vec<Keypair>,
}

pub fn test_chain(validators: usize, accounts: usize) -> TestChain {
    test_chain_of(ConsensusKind::Hotstuff, validators, accounts)
}

/// A chain of `kind` with `validators` and funded `accounts`.
pub fn test_chain_of(kind: ConsensusKind, validators: usize, accounts: usize) -> TestChain {
    let validators: Vec<Keypair> = (0..validators)
        .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let accounts: Vec<Keypair> = (0..accounts)
        .map(|i| Keypair::from_seed(&[i as u8 + 101; 32]))
        .collect();
    let genesis = Genesis {
        chain_id: ChainId::new("node-test").unwrap(),
        consensus: kind,
        genesis_time_ms: 0,
        validators: validators
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                public_key: k.public(),
                address: format!("/memory/{i}"),
            })
            .collect(),
        pow: None,
        accounts: accounts
            .iter()
            .map(|k| GenesisAccount {
                address: k.public().into(),
                balance: Amount(1_000_000),
            })
            .collect(),
    };
    TestChain {
        genesis,
        validators,
        accounts,
    }
}

/// A config for quick tests: short timeouts, small batch delay, no longer
/// wait for empty blocks.
pub fn quick_config() -> Config {
    let mut config = Config::default();
    config.consensus.base_timeout_ms = 1_000;
    config.consensus.max_timeout_ms = 4_000;
    config.consensus.max_batch_delay_ms = 50;
    // Idle chains as fast as busy ones: the tests wait for heights.
    config.consensus.empty_block_delay_ms = 0;
    config.sync.status_interval_ms = 500;
    config
}

/// Starts one node per validator on `net`, each with an HTTP API on
/// 127.0.0.1 and a fresh in-memory store.
pub async fn start_memory_nodes(chain: &TestChain, net: &MemoryNet) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for i in 0..chain.validators.len() {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(start_memory_node(chain, net, i, Arc::new(MemStore::new()), Some(api)).await);
    }
    nodes
}

/// Starts validator `i` on `net` over `store` (a new one, or the store of
/// a node that stopped).
pub async fn start_memory_node(
    chain: &TestChain,
    net: &MemoryNet,
    i: usize,
    store: Arc<dyn Store>,
    api: Option<tokio::net::TcpListener>,
) -> RunningNode {
    let key = &chain.validators[i];
    let (gossip, inbound) = net.join(key.public(), 8_192);
    start(Parts {
        config: quick_config(),
        genesis: chain.genesis.clone(),
        key: key.clone(),
        store,
        net: Arc::new(gossip),
        inbound,
        api,
    })
    .await
    .unwrap()
}

pub fn transfer(chain: &TestChain, from: usize, to: usize, nonce: u64) -> Transaction {
    Transaction::sign(
        &chain.accounts[from],
        chain.genesis.chain_id.clone(),
        Address::from(chain.accounts[to].public()),
        Amount(10),
        Amount(1),
        Nonce(nonce),
    )
}

pub fn http() -> reqwest::Client {
    // reqwest is built without a default TLS provider (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Waits until `done` holds, polling; panics with `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn head_of(store: &dyn Store) -> (u64, phalanx_chain::Hash) {
    let head = store.head().unwrap().unwrap();
    (head.height().0, head.hash)
}

/// Runs an async test body once per committee protocol, as two tests
/// `NAME::hotstuff` and `NAME::pbft`.
#[macro_export]
macro_rules! for_each_protocol {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hotstuff() {
                super::$name(phalanx_chain::ConsensusKind::Hotstuff).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pbft() {
                super::$name(phalanx_chain::ConsensusKind::Pbft).await
            }
        }
    };
}

/// Logs to the test's output when RUST_LOG is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
