//! Puts a node together: store, mempool, network, driver, transaction
//! ingest and HTTP API, and stops them cleanly.

use crate::api::{self, ApiConfig};
use crate::config::{self, Config};
use crate::driver::{Driver, DriverConfig, now_ms};
use crate::ingest::{self, INGEST_QUEUE};
use crate::mempool::{Mempool, MempoolConfig};
use crate::metrics::Metrics;
use crate::miner::MinerConfig;
use crate::net::p2p::{Multiaddr, P2p, P2pConfig};
use crate::net::{Gossip, Inbound};
use crate::shared::{EVENT_BUFFER, LiveStatus, NodeState};
use crate::sync::SyncConfig;
use crate::txgossip::{self, TxGossip};
use anyhow::{Context, anyhow, bail};
use phalanx_chain::store::SledOptions;
use phalanx_chain::{ConsensusKind, Genesis, SledStore, Store};
use phalanx_consensus::dispatch::{self, WithProtocol, with_protocol};
use phalanx_consensus::{Committee, Protocol};
use phalanx_crypto::Keypair;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// What a node is made of, before it runs.
pub struct Parts {
    pub config: Config,
    pub genesis: Genesis,
    pub key: Keypair,
    pub store: Arc<dyn Store>,
    pub net: Arc<dyn Gossip>,
    pub inbound: mpsc::Receiver<Inbound>,
    /// Where the HTTP API listens (`None`: no API).
    pub api: Option<TcpListener>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

/// A node whose tasks are running.
#[derive(Debug)]
pub struct RunningNode {
    pub state: Arc<NodeState>,
    /// The HTTP API's address, if it has one.
    pub api_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Stops the driver (which finishes the effect it is carrying out),
    /// the API and the ingest task.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.driver.await {
            tracing::error!("the driver task failed: {e}");
        }
        for task in self.others {
            task.abort();
            let _ = task.await;
        }
    }

    /// Resolves when the driver stops on its own (a fatal error).
    pub fn driver_finished(&self) -> bool {
        self.driver.is_finished()
    }
}

/// Starts a node's tasks on the current tokio runtime, running the
/// protocol its genesis names.
pub async fn start(parts: Parts) -> anyhow::Result<RunningNode> {
    let start_driver = driver_for(parts.genesis.consensus)?;
    launch(parts, start_driver).await
}

/// Starts a node running protocol `P`, which must be the one its genesis
/// names, whether or not [`phalanx_consensus::dispatch`] knows it yet (for
/// testing a protocol before it is registered).
pub async fn start_with<P: Protocol + 'static>(parts: Parts) -> anyhow::Result<RunningNode> {
    if P::KIND != parts.genesis.consensus {
        bail!(
            "the genesis says consensus = \"{}\", this protocol is {}",
            parts.genesis.consensus,
            P::KIND
        );
    }
    launch(parts, start_driver::<P>).await
}

/// The genesis committee, or `None` on a chain without one: proof of
/// work is permissionless, its genesis lists no validators.
pub fn committee_of(genesis: &Genesis) -> anyhow::Result<Option<Committee>> {
    if genesis.consensus == ConsensusKind::Pow {
        return Ok(None);
    }
    Committee::from_genesis(genesis)
        .map(Some)
        .context("the genesis committee")
}

async fn launch(parts: Parts, start_driver: StartDriver) -> anyhow::Result<RunningNode> {
    let Parts {
        config,
        genesis,
        key,
        store,
        net,
        inbound,
        api,
    } = parts;
    let committee = committee_of(&genesis)?;
    let head = store
        .init_genesis(&genesis)
        .context("the data directory does not belong to this genesis")?;
    let validator = committee.as_ref().and_then(|c| c.index_of(&key.public()));
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    phalanx_chain::verified::set_threads(config.mempool.verify_threads);
    let mempool = Mempool::new(
        MempoolConfig {
            max_txs: config.mempool.max_txs,
            max_bytes: config.mempool.max_bytes,
            max_nonce_gap: config.mempool.max_nonce_gap,
        },
        genesis.chain_id.clone(),
    );
    let txs_available = Arc::new(Notify::new());
    let (tx_gossip, tx_gossip_queue) = TxGossip::new();
    let state = Arc::new(NodeState {
        chain_id: genesis.chain_id.clone(),
        consensus: genesis.consensus,
        genesis: genesis.clone(),
        validator,
        store,
        mempool: Mutex::new(mempool),
        verified: Arc::new(phalanx_chain::VerifiedTxs::default()),
        status: RwLock::new(LiveStatus::default()),
        events,
        metrics: Metrics::new(),
        net,
        tx_gossip,
        txs_available: Arc::clone(&txs_available),
    });
    state.metrics.set_height(head.height().0);
    tracing::info!(
        chain_id = %genesis.chain_id,
        consensus = %genesis.consensus,
        validator = ?validator,
        height = %head.height(),
        key = %key.public(),
        "node starting"
    );
    let tuning = config
        .tuning_for(genesis.consensus, &key.public())
        .map_err(|e| anyhow!(e))?;
    if let Some(b) = tuning.byzantine {
        tracing::warn!("this node is Byzantine on purpose: {b}");
    }
    let mining = config
        .mining(genesis.consensus, &key.public())
        .map_err(|e| anyhow!(e))?;
    if let Some(m) = &mining {
        tracing::info!(
            address = %m.address,
            threads = m.threads,
            hashrate_limit = m.hashrate_limit,
            "mining"
        );
    }
    let driver_config = DriverConfig {
        tuning,
        batch_size: config.consensus.batch_size,
        sync: SyncConfig {
            batch_blocks: config.sync.batch_blocks,
            request_timeout: Duration::from_millis(config.sync.request_timeout_ms),
        },
        status_interval: Duration::from_millis(config.sync.status_interval_ms.max(100)),
        mining: mining.map(|m| MinerConfig {
            threads: m.threads,
            hashrate_limit: m.hashrate_limit,
            clock: now_ms,
        }),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ingest_tx, ingest_rx) = mpsc::channel(INGEST_QUEUE);
    // Set up before any task runs: a protocol that refuses this key or
    // config stops start-up.
    let driver = start_driver(DriverParts {
        state: Arc::clone(&state),
        committee,
        key,
        config: driver_config,
        ingest: ingest_tx,
        inbound,
        txs_available: Arc::clone(&txs_available),
        shutdown: shutdown_rx.clone(),
    })?;
    let mut others = vec![
        tokio::spawn(txgossip::run(Arc::downgrade(&state), tx_gossip_queue)),
        tokio::spawn(txgossip::regossip(Arc::downgrade(&state))),
        tokio::spawn(txgossip::ask_for_gaps(Arc::downgrade(&state))),
        tokio::spawn(ingest::ingest_transactions(
            Arc::clone(&state),
            ingest_rx,
            txs_available,
        )),
    ];
    let mut api_addr = None;
    if let Some(listener) = api {
        api_addr = Some(listener.local_addr()?);
        let api_config = ApiConfig {
            listen: listener.local_addr()?,
            max_body_bytes: config.api.max_body_bytes,
            request_timeout: Duration::from_millis(config.api.request_timeout_ms),
            max_event_subscribers: config.api.max_event_subscribers,
            admin_api: config.testnet.admin_api,
        };
        let mut stop = shutdown_rx;
        let api_state = Arc::clone(&state);
        others.push(tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = api::serve(listener, api_state, api_config, signal).await {
                tracing::error!("the HTTP API stopped: {e}");
            }
        }));
    }
    let driver = tokio::spawn(driver);
    Ok(RunningNode {
        state,
        api_addr,
        shutdown,
        driver,
        others,
    })
}

/// What the driver task is started with.
struct DriverParts {
    state: Arc<NodeState>,
    committee: Option<Committee>,
    key: Keypair,
    config: DriverConfig,
    ingest: mpsc::Sender<crate::ingest::GossipBatch>,
    inbound: mpsc::Receiver<Inbound>,
    txs_available: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

/// The driver task, set up and ready to spawn.
type DriverTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Sets up the driver of one protocol.
type StartDriver = fn(DriverParts) -> anyhow::Result<DriverTask>;

/// Refuses a genesis whose protocol this node does not run yet.
pub fn check_protocol(kind: ConsensusKind) -> anyhow::Result<()> {
    driver_for(kind).map(|_| ())
}

/// What starts the driver for the genesis's protocol.
fn driver_for(kind: ConsensusKind) -> anyhow::Result<StartDriver> {
    with_protocol(kind, Starter).ok_or_else(|| {
        let built: Vec<String> = dispatch::built().iter().map(|k| k.to_string()).collect();
        anyhow!(
            "genesis consensus = \"{kind}\" is not built yet: this node runs {}",
            built.join(", ")
        )
    })
}

/// The driver of whichever protocol the genesis names.
struct Starter;

impl WithProtocol for Starter {
    type Output = StartDriver;
    fn run<P: Protocol + 'static>(self) -> StartDriver {
        start_driver::<P>
    }
}

fn start_driver<P: Protocol + 'static>(parts: DriverParts) -> anyhow::Result<DriverTask> {
    let DriverParts {
        state,
        committee,
        key,
        config,
        ingest,
        inbound,
        txs_available,
        shutdown,
    } = parts;
    let driver = Driver::<P>::new(state, committee, key, config, ingest)
        .with_context(|| format!("starting {} consensus", P::KIND))?;
    Ok(Box::pin(async move {
        if let Err(e) = driver.run(inbound, txs_available, shutdown).await {
            tracing::error!("consensus stopped: {e}");
        }
    }))
}

/// Everything `phalanx-node --home DIR` needs, loaded and checked.
#[derive(Debug)]
pub struct Home {
    pub config: Config,
    pub genesis: Genesis,
    pub key: Keypair,
}

/// Loads config, genesis and key from a home directory.
pub fn load_home(home: &Path) -> anyhow::Result<Home> {
    if !home.is_dir() {
        bail!("{} is not a directory", home.display());
    }
    let config = Config::load(home)?;
    let genesis = config::load_genesis(home)?;
    let key_path = home.join(&config.node.key_file);
    let loaded = phalanx_crypto::keyfile::load_key_file(&key_path)
        .with_context(|| format!("the node key {}", key_path.display()))?;
    Ok(Home {
        config,
        genesis,
        key: loaded.keypair,
    })
}

/// What a validator listens on when `p2p.listen` is empty: its genesis
/// address, except that a host name (`/dns/NAME/tcp/P`, `/dns4`, `/dns6`)
/// becomes every interface on the same port, since a name cannot be bound.
pub fn listen_address_for(genesis_address: &str) -> String {
    let mut parts = genesis_address.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(""), Some("dns" | "dns4"), Some(_), Some("tcp"), Some(port)) => {
            format!("/ip4/0.0.0.0/tcp/{port}")
        }
        (Some(""), Some("dns6"), Some(_), Some("tcp"), Some(port)) => {
            format!("/ip6/::/tcp/{port}")
        }
        _ => genesis_address.to_owned(),
    }
}

/// Runs the node of `home` over libp2p until SIGINT or SIGTERM.
pub async fn run_home(home_dir: &Path) -> anyhow::Result<()> {
    let Home {
        config,
        genesis,
        key,
    } = load_home(home_dir)?;
    check_protocol(genesis.consensus)?;
    let data = home_dir.join(&config.node.data_dir);
    let options = SledOptions {
        cache_bytes: config.node.cache_mb << 20,
        tx_index: config.node.tx_index,
    };
    let store = SledStore::open_with(&data, options)
        .with_context(|| format!("opening the database in {}", data.display()))?;
    let me = key.public();
    let listen = if config.p2p.listen.is_empty() {
        genesis
            .validators
            .iter()
            .find(|v| v.public_key == me)
            .map(|v| listen_address_for(&v.address))
            .ok_or_else(|| {
                if genesis.validators.is_empty() {
                    anyhow!(
                        "p2p.listen is empty, and the genesis ({}) lists no validators to take \
                         an address from: set p2p.listen",
                        genesis.consensus
                    )
                } else {
                    anyhow!("p2p.listen is empty and genesis gives this key no validator address")
                }
            })?
    } else {
        config.p2p.listen.clone()
    };
    let mut peers = Vec::new();
    for v in &genesis.validators {
        if v.public_key != me {
            peers.push((v.public_key, v.address.clone()));
        }
    }
    for peer in &config.p2p.peers {
        peers.push(config::parse_peer(peer).map_err(|e| anyhow!("p2p.peers: {e}"))?);
    }
    let p2p_config = p2p_config(&config, key.clone(), &genesis, &listen, &peers)?;
    let (p2p, inbound) = P2p::start(p2p_config)
        .await
        .map_err(|e| anyhow!("starting the network on {listen}: {e}"))?;
    let api = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding the HTTP API to {}", config.api.listen))?;
    tracing::info!("HTTP API on http://{}", config.api.listen);
    let node = start(Parts {
        config,
        genesis,
        key,
        store: Arc::new(store),
        net: Arc::new(p2p),
        inbound,
        api: Some(api),
    })
    .await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
}

/// The network's settings from the node's config.
fn p2p_config(
    config: &Config,
    key: Keypair,
    genesis: &Genesis,
    listen: &str,
    peers: &[(phalanx_crypto::PublicKey, String)],
) -> anyhow::Result<P2pConfig> {
    let listen: Multiaddr = listen
        .parse()
        .map_err(|e| anyhow!("p2p listen address {listen:?}: {e}"))?;
    let mut p2p = P2pConfig::new(key, genesis.chain_id.clone(), listen);
    for (peer, addr) in peers {
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| anyhow!("peer address {addr:?}: {e}"))?;
        p2p.peers.push((*peer, addr));
    }
    let c = &config.p2p;
    p2p.inbound_capacity = c.inbound_queue;
    p2p.outbound_capacity = c.outbound_queue;
    p2p.max_message_bytes = c.max_message_bytes;
    p2p.ban_threshold = c.ban_threshold;
    p2p.ban_window = Duration::from_secs(c.ban_window_secs);
    p2p.ban_duration = Duration::from_secs(c.ban_secs);
    p2p.reconnect_min = Duration::from_millis(c.reconnect_min_ms);
    p2p.reconnect_max = Duration::from_millis(c.reconnect_max_ms);
    // The duplicate cache stays at its default (30 s). It was half the
    // base timeout, so that a re-broadcast timeout could be published
    // again; the driver now sends its own re-sends directly, and a window
    // shorter than gossipsub's history made peers' offers deliver every
    // message again, about four times under load.
    p2p.validate().map_err(|e| anyhow!("network config: {e}"))?;
    Ok(p2p)
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_listen_on_every_interface() {
        assert_eq!(
            listen_address_for("/dns/node1.example/tcp/26650"),
            "/ip4/0.0.0.0/tcp/26650"
        );
        assert_eq!(listen_address_for("/dns6/n/tcp/7"), "/ip6/::/tcp/7");
        assert_eq!(
            listen_address_for("/ip4/10.0.0.2/tcp/26650"),
            "/ip4/10.0.0.2/tcp/26650"
        );
        assert_eq!(listen_address_for("/memory/3"), "/memory/3");
    }

    #[test]
    fn every_consensus_kind_runs() {
        for kind in ConsensusKind::ALL {
            assert!(check_protocol(kind).is_ok(), "{kind}");
        }
    }

    #[test]
    fn only_committee_chains_have_a_committee() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut genesis = Genesis {
            chain_id: phalanx_chain::ChainId::new("c").unwrap(),
            consensus: ConsensusKind::Hotstuff,
            genesis_time_ms: 0,
            validators: vec![phalanx_chain::genesis::GenesisValidator {
                public_key: key.public(),
                address: "/memory/0".into(),
            }],
            pow: None,
            accounts: Vec::new(),
        };
        let committee = committee_of(&genesis).unwrap().unwrap();
        assert_eq!(committee.size(), 1);
        genesis.consensus = ConsensusKind::Pow;
        genesis.validators.clear();
        assert!(committee_of(&genesis).unwrap().is_none());
    }
}
