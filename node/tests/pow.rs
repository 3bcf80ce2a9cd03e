//! The node on a proof-of-work chain.
//!
//! - [`Script`], a stand-in protocol, does what a controlling peer tells
//!   it (extend, finalize, revert, ask for work, broadcast, reply), so the
//!   driver's handling of each effect is checked exactly: non-final
//!   blocks, finality, a reorganization (mempool, metrics, events, API), a
//!   revert below the finalized height (a halt), the miner's round trip,
//!   and a chain without a committee (no sender index, broadcasts to
//!   peers).
//! - Live scenarios run three or four mining nodes over the in-memory
//!   network with the node's real miner, each twice: with [`Toy`], a
//!   minimal heaviest-chain protocol written here (fixed target, longest
//!   chain, first seen wins ties, k blocks on top), which pins down what
//!   the node needs of any such protocol, and with the real
//!   `phalanx_consensus::pow::Pow`: one chain grows and final blocks
//!   agree; a healed partition reorganizes onto one chain; a node on a
//!   losing branch of its own syncs final blocks over it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{http, init_logs, wait_for};
use phalanx_chain::genesis::{GenesisAccount, PowParams};
use phalanx_chain::pow::{CompactTarget, check_work};
use phalanx_chain::speculative::Speculative;
use phalanx_chain::{
    Address, Amount, Block, ChainId, ConsensusKind, Genesis, Hash, Height, Justification, MemStore,
    Nonce, PowSeal, Rules, Store, Transaction, ValidatorIndex, encoding,
};
use phalanx_consensus::protocol::WorkRequest;
use phalanx_consensus::{
    Channel, Effect, Evidence, Fault, Input, Ledger, Origin, Outgoing, ProofError, Protocol,
    RejectReason, Setup, SetupError, Status, TimeMs,
};
use phalanx_crypto::Keypair;
use phalanx_node::config::Config;
use phalanx_node::net::memory::MemoryNet;
use phalanx_node::net::{self, Gossip, Inbound};
use phalanx_node::node::{Parts, RunningNode, start_with};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Generous deadline for anything that could hang; never a timing
/// assertion.
const DEADLINE: Duration = Duration::from_secs(60);
/// Half of all hashes meet it.
const EASY: CompactTarget = CompactTarget(0x207f_ffff);
const REWARD: Amount = Amount(50);

fn pow_genesis(accounts: &[Keypair], target: CompactTarget, confirmations: u64) -> Genesis {
    Genesis {
        chain_id: ChainId::new("pow-node-test").unwrap(),
        consensus: ConsensusKind::Pow,
        genesis_time_ms: 0,
        validators: Vec::new(),
        pow: Some(PowParams {
            initial_target: target,
            target_limit: EASY,
            block_interval_ms: 1_000,
            retarget_window: 1,
            confirmations,
            block_reward: REWARD,
            max_future_drift_ms: 15_000,
        }),
        accounts: accounts
            .iter()
            .map(|k| GenesisAccount {
                address: k.public().into(),
                balance: Amount(1_000_000),
            })
            .collect(),
    }
}

fn mining_config(hashrate_limit: u64) -> Config {
    let mut config = common::quick_config();
    config.mining.enabled = true;
    config.mining.threads = 1;
    config.mining.hashrate_limit = hashrate_limit;
    config
}

async fn start_pow_node<P: Protocol + 'static>(
    genesis: &Genesis,
    config: Config,
    key: &Keypair,
    net: &MemoryNet,
) -> (RunningNode, String) {
    let (gossip, inbound) = net.join(key.public(), 8_192);
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = start_with::<P>(Parts {
        config,
        genesis: genesis.clone(),
        key: key.clone(),
        store: Arc::new(MemStore::new()),
        net: Arc::new(gossip),
        inbound,
        api: Some(api),
    })
    .await
    .unwrap();
    let base = format!("http://{}", node.api_addr.unwrap());
    (node, base)
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn metrics(client: &reqwest::Client, base: &str) -> String {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn head(node: &RunningNode) -> (Height, Hash) {
    let head = node.state.store.head().unwrap().unwrap();
    (head.height(), head.hash)
}

// ----- the scripted protocol -----

/// What the controlling peer tells [`Script`] to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Command {
    Extend(Block),
    Finalize(Height),
    Revert(Hash),
    Work(Block),
    /// Broadcast these bytes on the sync channel (which goes to each peer
    /// directly).
    Say(Vec<u8>),
    /// Answer the sender with these bytes.
    Echo(Vec<u8>),
}

#[derive(Debug, Clone, thiserror::Error)]
enum Refused {
    #[error("not a command")]
    NotACommand,
    #[error("a sender index on a chain without a committee: {0}")]
    HasIndex(ValidatorIndex),
}

#[derive(Debug)]
struct Script;

fn outgoing(channel: Channel, kind: &'static str, bytes: Vec<u8>) -> Outgoing {
    Outgoing {
        channel,
        origin: Origin::Authored,
        kind,
        bytes,
    }
}

impl Protocol for Script {
    type Context = ();
    type Message = Command;
    type Timer = ();
    type Rejection = Refused;
    const KIND: ConsensusKind = ConsensusKind::Pow;
    const SAFETY_KEY: &'static [u8] = b"script";

    fn context(_: &Genesis, _: Option<usize>) -> Result<(), SetupError> {
        Ok(())
    }

    fn new(_: &(), _: Setup, _: Block) -> Result<Self, SetupError> {
        Ok(Script)
    }

    fn verify(
        _: &(),
        sender: Option<ValidatorIndex>,
        _: Channel,
        bytes: &[u8],
    ) -> Result<Command, Refused> {
        if let Some(index) = sender {
            return Err(Refused::HasIndex(index));
        }
        encoding::decode(bytes, 1 << 22).map_err(|_| Refused::NotACommand)
    }

    fn reject_reason(_: &Refused) -> RejectReason {
        RejectReason::Undecodable
    }

    fn message_kind(_: &Command) -> &'static str {
        "command"
    }

    fn handle(
        &mut self,
        input: Input<Command, ()>,
        _: TimeMs,
        _: &mut dyn Ledger,
    ) -> Result<Vec<Effect<()>>, Fault> {
        let extend = |block| Effect::Extend {
            block,
            finalized: false,
        };
        Ok(match input {
            Input::Message(Command::Extend(block)) => vec![extend(Box::new(block))],
            Input::Mined(block) => vec![extend(block)],
            Input::Message(Command::Finalize(height)) => vec![Effect::Finalize(height)],
            Input::Message(Command::Revert(ancestor)) => vec![Effect::Revert { ancestor }],
            Input::Message(Command::Work(template)) => vec![Effect::RequestWork(WorkRequest {
                parent: template.header().parent,
                template: Box::new(template),
            })],
            Input::Message(Command::Say(bytes)) => {
                vec![Effect::Broadcast(outgoing(Channel::Sync, "say", bytes))]
            }
            Input::Message(Command::Echo(bytes)) => {
                vec![Effect::Reply(outgoing(Channel::Consensus, "echo", bytes))]
            }
            _ => Vec::new(),
        })
    }

    fn status(&self) -> Status {
        Status {
            view: 0,
            phase: "scripted",
            unchecked_drops: 0,
            view_timeout_ms: None,
        }
    }

    fn prove_final(_: &(), _: &Block, _: &[Block]) -> Result<usize, ProofError> {
        Ok(0)
    }

    fn check_finalized(
        _: &(),
        _: &Block,
        _: &dyn Fn(&Hash) -> Option<Block>,
    ) -> Result<(), ProofError> {
        Ok(())
    }

    fn check_evidence(_: &(), _: &Evidence) -> bool {
        false
    }
}

/// Builds blocks for the script on a store of its own.
struct Builder {
    store: MemStore,
    speculative: Speculative,
    miner: Address,
}

impl Builder {
    fn new(genesis: &Genesis, miner: Address) -> Builder {
        let store = MemStore::new();
        store.init_genesis(genesis).unwrap();
        Builder {
            store,
            speculative: Speculative::new(Rules::of(genesis), 1_024),
            miner,
        }
    }

    fn genesis(&self) -> Block {
        self.store.block_at(Height(0)).unwrap().unwrap()
    }

    fn block(&mut self, parent: &Block, txs: &[&Transaction]) -> Block {
        let txs: Vec<Transaction> = txs.iter().map(|t| (*t).clone()).collect();
        let seal = Justification::ProofOfWork(PowSeal {
            target: EASY,
            reward: REWARD,
            nonce: 0,
        });
        let block = self
            .speculative
            .build(
                &self.store,
                parent,
                self.miner,
                parent.header().timestamp_ms + 1,
                seal,
                |_| txs.clone(),
            )
            .unwrap();
        assert_eq!(
            block.transactions.len(),
            txs.len(),
            "a transaction did not apply"
        );
        block
    }
}

fn transfer(from: &Keypair, nonce: u64, chain: &Genesis) -> Transaction {
    Transaction::sign(
        from,
        chain.chain_id.clone(),
        Address([9; 32]),
        Amount(10),
        Amount(1),
        Nonce(nonce),
    )
}

/// The controlling peer.
struct Controller {
    gossip: Box<dyn Gossip>,
    inbound: mpsc::Receiver<Inbound>,
}

impl Controller {
    fn tell(&self, command: Command) {
        let bytes = encoding::encode(&command);
        self.gossip.publish(net::Channel::Consensus, bytes).unwrap();
    }

    /// The next message from the node, block sync's aside.
    async fn heard(&mut self) -> Inbound {
        loop {
            let inbound = tokio::time::timeout(DEADLINE, self.inbound.recv())
                .await
                .expect("nothing heard within the deadline")
                .unwrap();
            let block_sync = inbound.channel == net::Channel::Sync
                && inbound.bytes.first() == Some(&phalanx_node::sync::SYNC_TAG_NODE);
            if !block_sync {
                return inbound;
            }
        }
    }
}

async fn tx_status(client: &reqwest::Client, base: &str, tx: &Transaction) -> String {
    let (_, body) = get(client, format!("{base}/txs/{}", tx.hash())).await;
    body["status"].as_str().unwrap_or("none").to_owned()
}

async fn wait_for_head(node: &RunningNode, height: u64, hash: Option<Hash>) {
    wait_for(&format!("head at height {height}"), DEADLINE, || {
        let (h, hh) = head(node);
        h == Height(height) && hash.is_none_or(|x| x == hh)
    })
    .await;
}

/// Reads `count` server-sent events as (name, data).
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    let read = async {
        while events.len() < count {
            let chunk = response.chunk().await.unwrap().expect("the stream ended");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some((event, rest)) = text.split_once("\n\n") {
                let mut name = String::new();
                let mut data = Value::Null;
                for line in event.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap();
                    }
                }
                if !name.is_empty() {
                    events.push((name, data));
                }
                text = rest.to_owned();
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("events within the deadline");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_carries_out_proof_of_work_effects() {
    init_logs();
    let accounts = [
        Keypair::from_seed(&[101; 32]),
        Keypair::from_seed(&[102; 32]),
    ];
    let genesis = pow_genesis(&accounts, EASY, 6);
    let node_key = Keypair::from_seed(&[1; 32]);
    let miner_address = Address::from(node_key.public());
    let net = MemoryNet::new();
    let control_key = Keypair::from_seed(&[2; 32]);
    let (gossip, inbound) = net.join(control_key.public(), 1_024);
    let mut control = Controller {
        gossip: Box::new(gossip),
        inbound,
    };
    // Unlimited: the easy target takes a couple of hashes.
    let (node, base) = start_pow_node::<Script>(&genesis, mining_config(0), &node_key, &net).await;
    let client = http();
    let events_response = client.get(format!("{base}/events")).send().await.unwrap();
    let mut events = events_response;

    // No committee: no validator index, and every node runs the protocol
    // (the script refuses messages that come with a sender index).
    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["validator"], Value::Null);
    assert_eq!(status["phase"], "scripted");
    assert_eq!(status["mining"]["address"], miner_address.to_string());
    assert_eq!(status["mining"]["working"], false);

    let mut b = Builder::new(&genesis, miner_address);
    let g = b.genesis();
    let t = |i: usize, n: u64| transfer(&accounts[i], n, &genesis);
    let (tx1, tx2, tx3, tx4, tx5) = (t(0, 0), t(0, 1), t(0, 2), t(1, 0), t(1, 1));
    let a1 = b.block(&g, &[&tx1]);
    let a2 = b.block(&a1, &[&tx2]);
    let a3 = b.block(&a2, &[&tx3]);
    let b2 = b.block(&a1, &[&tx2, &tx4]);
    let b3 = b.block(&b2, &[&tx5]);
    let b4 = b.block(&b3, &[]);

    // Blocks that are not final yet, then finality up to height 1.
    for block in [&a1, &a2, &a3] {
        control.tell(Command::Extend(block.clone()));
    }
    wait_for_head(&node, 3, Some(a3.hash())).await;
    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["finalized_height"], 0);
    // The genesis confirmations; the script knows no chain tips.
    assert_eq!(status["confirmations"], 6);
    assert_eq!(status["tips"], serde_json::json!([]));
    assert_eq!(status["work"], Value::Null);
    assert_eq!(tx_status(&client, &base, &tx2).await, "committed");
    for (tx, height, confirmations) in [(&tx1, 1, 3), (&tx2, 2, 2), (&tx3, 3, 1)] {
        let (_, body) = get(&client, format!("{base}/txs/{}", tx.hash())).await;
        assert_eq!(body["height"], height, "{body}");
        assert_eq!(body["confirmations"], confirmations, "{body}");
        assert_eq!(body["on_best_chain"], true, "{body}");
    }
    control.tell(Command::Finalize(Height(1)));
    wait_for("finality", DEADLINE, || {
        node.state.store.finalized_height().unwrap() == Some(Height(1))
    })
    .await;
    // Final at the finalized height, not at a number of confirmations:
    // tx2 has two, but its block is above the finalized height.
    assert_eq!(tx_status(&client, &base, &tx1).await, "finalized");
    assert_eq!(tx_status(&client, &base, &tx2).await, "committed");
    // A lower height is already final: nothing happens (no halt, no
    // event).
    control.tell(Command::Finalize(Height(0)));
    let (_, block2) = get(&client, format!("{base}/blocks/2")).await;
    assert_eq!(block2["finalized"], false);

    // A reorganization: back to a1; a2's and a3's transactions are
    // pending again, the orphaned blocks are no longer served.
    control.tell(Command::Revert(a1.hash()));
    wait_for_head(&node, 1, Some(a1.hash())).await;
    assert_eq!(tx_status(&client, &base, &tx2).await, "pending");
    assert_eq!(tx_status(&client, &base, &tx3).await, "pending");
    let (code, _) = get(&client, format!("{base}/blocks/2")).await;
    assert_eq!(code, 404);
    let (code, body) = get(&client, format!("{base}/blocks/hash/{}", a2.hash())).await;
    assert_eq!(code, 404, "{body}");
    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["height"], 1);
    assert_eq!(status["head_hash"], a1.hash().to_string());
    assert_eq!(status["mempool_size"], 2);
    let text = metrics(&client, &base).await;
    assert_eq!(metric(&text, "phalanx_reorgs_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "phalanx_orphaned_blocks_total"), Some(2.0));
    assert_eq!(metric(&text, "phalanx_reorg_depth_sum"), Some(2.0));
    assert_eq!(metric(&text, "phalanx_reorg_returned_txs_total"), Some(2.0));
    assert_eq!(metric(&text, "phalanx_height"), Some(1.0));

    // The other branch: its transactions leave the mempool, a3's stays.
    for block in [&b2, &b3, &b4] {
        control.tell(Command::Extend(block.clone()));
    }
    wait_for_head(&node, 4, Some(b4.hash())).await;
    assert_eq!(tx_status(&client, &base, &tx2).await, "committed");
    assert_eq!(tx_status(&client, &base, &tx3).await, "pending");
    // tx2 is on the new branch now, in b2.
    let (_, body) = get(&client, format!("{base}/txs/{}", tx2.hash())).await;
    assert_eq!(body["block_hash"], b2.hash().to_string());
    assert_eq!(body["confirmations"], 3);
    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["mempool_size"], 1);

    // Work for the miner: it comes back mined and extends the chain.
    let template = b.block(&b4, &[]);
    control.tell(Command::Work(template.clone()));
    wait_for_head(&node, 5, None).await;
    let mined = node.state.store.block_at(Height(5)).unwrap().unwrap();
    check_work(&mined.header().pow_hash(), EASY).unwrap();
    assert_eq!(mined.header().parent, b4.hash());
    assert_eq!(mined.header().proposer, miner_address);
    assert!(mined.header().timestamp_ms >= template.header().timestamp_ms);
    let text = metrics(&client, &base).await;
    assert_eq!(metric(&text, "phalanx_mined_blocks_total"), Some(1.0));
    assert!(metric(&text, "phalanx_mining_hashes_total").unwrap() >= 1.0);

    // Broadcasts go to connected peers (no committee to name them), and
    // replies to the sender.
    control.tell(Command::Say(b"hello".to_vec()));
    let said = control.heard().await;
    assert_eq!(said.from, node_key.public());
    assert_eq!(said.channel, net::Channel::Sync);
    assert_eq!(said.bytes, b"\0hello");
    control.tell(Command::Echo(b"ping".to_vec()));
    let echoed = control.heard().await;
    assert_eq!(
        (echoed.channel, echoed.bytes),
        (net::Channel::Consensus, b"ping".to_vec())
    );

    // A revert below the finalized height is a local fault: consensus
    // halts, says why, and the node goes on serving its chain.
    control.tell(Command::Revert(g.hash()));
    wait_for("the halt", DEADLINE, || node.state.live().halted.is_some()).await;
    let (_, status) = get(&client, format!("{base}/status")).await;
    let halted = status["halted"].as_str().unwrap();
    assert!(halted.contains("below the finalized height 1"), "{halted}");
    assert_eq!(status["height"], 5);
    assert_eq!(head(&node).0, Height(5));

    // Subscribers saw every step.
    let seen = read_events(&mut events, 9).await;
    let summary: Vec<(String, Value)> = seen
        .iter()
        .map(|(name, data)| {
            let key = match name.as_str() {
                "reorg" => data["ancestor_height"].clone(),
                _ => data["height"].clone(),
            };
            (name.clone(), key)
        })
        .collect();
    let expected: Vec<(String, Value)> = [
        ("block", 1),
        ("block", 2),
        ("block", 3),
        ("finalized", 1),
        ("reorg", 1),
        ("block", 2),
        ("block", 3),
        ("block", 4),
        ("block", 5),
    ]
    .iter()
    .map(|(n, h)| (n.to_string(), Value::from(*h)))
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(
        seen[4].1["reverted"],
        serde_json::json!([a3.hash().to_string(), a2.hash().to_string()])
    );
    node.stop().await;
}

// ----- a minimal heaviest-chain protocol -----

/// The chain's fixed target and confirmations.
#[derive(Debug, Clone)]
struct ToyChain {
    target: CompactTarget,
    confirmations: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
enum ToyRejection {
    #[error("not a toy message")]
    Undecodable,
    #[error("not enough work, or the wrong target")]
    Work,
}

/// What toy nodes say to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum ToyMessage {
    Block(Box<Block>),
    /// Send me this block (the parent of one you sent).
    Want(Hash),
}

/// Blocks waiting for their parent, at most (a test bound).
const MAX_ORPHANS: usize = 256;
/// A block further above the head than this is left to block sync
/// (which starts at `phalanx_node::sync::SYNC_LAG` blocks behind).
const CATCH_UP_HORIZON: u64 = phalanx_node::sync::SYNC_LAG;

/// Longest chain at a fixed target, the first seen of two equal ones,
/// final at `confirmations` blocks on top. A block whose parent it does
/// not know waits while it asks the peer that sent it for the parent
/// (unless it is far ahead: block sync catches up from there).
#[derive(Debug)]
struct Toy {
    chain_params: ToyChain,
    miner: Option<Address>,
    /// Valid blocks above the finalized height, by hash.
    blocks: HashMap<Hash, Block>,
    /// Blocks waiting for their parent, by the parent's hash.
    orphans: HashMap<Hash, Vec<Block>>,
    /// The chain from the finalized block up: hash by height.
    chain: BTreeMap<u64, Hash>,
    head: Block,
    finalized: u64,
}

fn toy_out(channel: Channel, origin: Origin, message: &ToyMessage) -> Outgoing {
    let kind = match message {
        ToyMessage::Block(_) => "block",
        ToyMessage::Want(_) => "want",
    };
    Outgoing {
        channel,
        origin,
        kind,
        bytes: encoding::encode(message),
    }
}

impl Toy {
    fn block(&self, hash: &Hash, ledger: &dyn Ledger) -> Option<Block> {
        self.blocks
            .get(hash)
            .cloned()
            .or_else(|| ledger.committed_block(hash))
    }

    fn work(&self, now: TimeMs, ledger: &mut dyn Ledger) -> Result<Vec<Effect<()>>, Fault> {
        let Some(miner) = self.miner else {
            return Ok(Vec::new());
        };
        let seal = Justification::ProofOfWork(PowSeal {
            target: self.chain_params.target,
            reward: REWARD,
            nonce: 0,
        });
        match ledger.build_block(&self.head, miner, now, seal) {
            Ok(template) => Ok(vec![Effect::RequestWork(WorkRequest {
                parent: self.head.hash(),
                template: Box::new(template),
            })]),
            Err(phalanx_consensus::LedgerError::Fault(fault)) => Err(fault.into()),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The blocks from `tip` down to (not including) the chain, lowest
    /// first, and the block they fork from; `None` if they do not link
    /// above the finalized height.
    fn branch(&self, tip: &Block, ledger: &dyn Ledger) -> Option<(Vec<Block>, u64, Hash)> {
        let mut branch = vec![tip.clone()];
        loop {
            let lowest = branch.last()?;
            let parent = lowest.header().parent;
            let parent_height = lowest.header().height.0.checked_sub(1)?;
            if self.chain.get(&parent_height) == Some(&parent) {
                branch.reverse();
                return Some((branch, parent_height, parent));
            }
            if parent_height <= self.finalized {
                return None;
            }
            branch.push(self.block(&parent, ledger)?);
        }
    }

    /// Takes `block` and the orphans it unblocks; asks for its parent if
    /// unknown; asks for new work if the head moved.
    fn accept(
        &mut self,
        block: Block,
        origin: Origin,
        now: TimeMs,
        ledger: &mut dyn Ledger,
    ) -> Result<Vec<Effect<()>>, Fault> {
        let head = self.head.hash();
        let mut effects = Vec::new();
        let mut queue = vec![(block, origin)];
        while let Some((block, origin)) = queue.pop() {
            if let Some(hash) = self.accept_one(block, origin, ledger, &mut effects)?
                && let Some(children) = self.orphans.remove(&hash)
            {
                queue.extend(children.into_iter().map(|b| (b, Origin::Forwarded)));
            }
        }
        if self.head.hash() != head {
            effects.extend(self.work(now, ledger)?);
        }
        Ok(effects)
    }

    /// Validates one block, relays it and adopts it if it makes the chain
    /// longer; returns its hash if it was new and valid.
    fn accept_one(
        &mut self,
        block: Block,
        origin: Origin,
        ledger: &mut dyn Ledger,
        effects: &mut Vec<Effect<()>>,
    ) -> Result<Option<Hash>, Fault> {
        let hash = block.hash();
        let height = block.header().height.0;
        if height <= self.finalized
            || self.blocks.contains_key(&hash)
            || self.chain.get(&height) == Some(&hash)
        {
            return Ok(None);
        }
        let Some(parent) = self.block(&block.header().parent, ledger) else {
            if height > self.head.header().height.0 + CATCH_UP_HORIZON {
                // Far ahead: block sync's job, not the protocol's.
                return Ok(None);
            }
            let want = ToyMessage::Want(block.header().parent);
            effects.push(Effect::Reply(toy_out(Channel::Sync, Origin::Sync, &want)));
            if self.orphans.values().map(Vec::len).sum::<usize>() < MAX_ORPHANS {
                self.orphans
                    .entry(block.header().parent)
                    .or_default()
                    .push(block);
            }
            return Ok(None);
        };
        match ledger.validate_block(&parent, &block) {
            Ok(()) => {}
            Err(phalanx_consensus::LedgerError::Fault(fault)) => return Err(fault.into()),
            Err(_) => return Ok(None),
        }
        self.blocks.insert(hash, block.clone());
        effects.push(Effect::Broadcast(toy_out(
            Channel::Consensus,
            origin,
            &ToyMessage::Block(Box::new(block.clone())),
        )));
        if height > self.head.header().height.0 {
            self.adopt(block, ledger, effects);
        }
        Ok(Some(hash))
    }

    /// Makes `tip` the head: reverts to the fork, extends with the branch,
    /// finalizes what has enough blocks on top.
    fn adopt(&mut self, tip: Block, ledger: &dyn Ledger, effects: &mut Vec<Effect<()>>) {
        let Some((branch, fork_height, fork)) = self.branch(&tip, ledger) else {
            return;
        };
        if fork != self.head.hash() {
            effects.push(Effect::Revert { ancestor: fork });
            self.chain.split_off(&(fork_height + 1));
        }
        for b in branch {
            self.chain.insert(b.header().height.0, b.hash());
            effects.push(Effect::Extend {
                block: Box::new(b),
                finalized: false,
            });
        }
        let height = tip.header().height.0;
        self.head = tip;
        let k = self.chain_params.confirmations;
        if height > self.finalized + k {
            self.finalized = height - k;
            effects.push(Effect::Finalize(Height(self.finalized)));
            let floor = self.finalized;
            self.chain.retain(|h, _| *h >= floor);
            self.blocks.retain(|_, b| b.header().height.0 > floor);
        }
    }
}

impl Protocol for Toy {
    type Context = ToyChain;
    type Message = ToyMessage;
    type Timer = ();
    type Rejection = ToyRejection;
    const KIND: ConsensusKind = ConsensusKind::Pow;
    const SAFETY_KEY: &'static [u8] = b"toy-pow";

    fn context(genesis: &Genesis, _: Option<usize>) -> Result<ToyChain, SetupError> {
        let pow = genesis.pow.as_ref().ok_or(SetupError::NotAValidator)?;
        Ok(ToyChain {
            target: pow.initial_target,
            confirmations: pow.confirmations,
        })
    }

    fn new(chain: &ToyChain, setup: Setup, committed: Block) -> Result<Self, SetupError> {
        Ok(Toy {
            chain_params: chain.clone(),
            miner: setup.tuning.miner,
            blocks: HashMap::new(),
            orphans: HashMap::new(),
            chain: BTreeMap::from([(committed.header().height.0, committed.hash())]),
            finalized: committed.header().height.0,
            head: committed,
        })
    }

    fn verify(
        chain: &ToyChain,
        sender: Option<ValidatorIndex>,
        _: Channel,
        bytes: &[u8],
    ) -> Result<ToyMessage, ToyRejection> {
        assert_eq!(sender, None, "no sender index without a committee");
        let message: ToyMessage =
            encoding::decode(bytes, 1 << 22).map_err(|_| ToyRejection::Undecodable)?;
        if let ToyMessage::Block(block) = &message {
            let target = block.header().pow_seal().ok_or(ToyRejection::Work)?.target;
            if target != chain.target || check_work(&block.header().pow_hash(), target).is_err() {
                return Err(ToyRejection::Work);
            }
        }
        Ok(message)
    }

    fn reject_reason(rejection: &ToyRejection) -> RejectReason {
        match rejection {
            ToyRejection::Undecodable => RejectReason::Undecodable,
            ToyRejection::Work => RejectReason::Malformed,
        }
    }

    fn message_kind(message: &ToyMessage) -> &'static str {
        match message {
            ToyMessage::Block(_) => "block",
            ToyMessage::Want(_) => "want",
        }
    }

    fn handle(
        &mut self,
        input: Input<ToyMessage, ()>,
        now: TimeMs,
        ledger: &mut dyn Ledger,
    ) -> Result<Vec<Effect<()>>, Fault> {
        match input {
            Input::Start { .. } => self.work(now, ledger),
            Input::Mined(block) => self.accept(*block, Origin::Authored, now, ledger),
            Input::Message(ToyMessage::Block(block)) => {
                self.accept(*block, Origin::Forwarded, now, ledger)
            }
            Input::Message(ToyMessage::Want(hash)) => Ok(self
                .block(&hash, ledger)
                .map(|block| {
                    let answer = ToyMessage::Block(Box::new(block));
                    Effect::Reply(toy_out(Channel::Sync, Origin::Sync, &answer))
                })
                .into_iter()
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    fn status(&self) -> Status {
        Status {
            view: self.head.header().height.0,
            phase: if self.miner.is_some() {
                "mining"
            } else {
                "following"
            },
            unchecked_drops: 0,
            view_timeout_ms: None,
        }
    }

    /// Blocks that link, each with the chain's work, are final with
    /// `confirmations` of them on top.
    fn prove_final(chain: &ToyChain, head: &Block, blocks: &[Block]) -> Result<usize, ProofError> {
        let mut parent = head.hash();
        for block in blocks {
            let (height, hash) = (block.header().height, block.hash());
            if block.header().parent != parent {
                return Err(ProofError::NotLinked {
                    height,
                    hash,
                    expected_parent: parent,
                });
            }
            let sealed = block.header().pow_seal().map(|s| s.target) == Some(chain.target);
            if !sealed || check_work(&block.header().pow_hash(), chain.target).is_err() {
                return Err(ProofError::WrongJustification { height, hash });
            }
            parent = hash;
        }
        let k = usize::try_from(chain.confirmations).unwrap();
        Ok(blocks.len().saturating_sub(k))
    }

    fn check_finalized(
        _: &ToyChain,
        _: &Block,
        _: &dyn Fn(&Hash) -> Option<Block>,
    ) -> Result<(), ProofError> {
        Ok(())
    }

    fn check_evidence(_: &ToyChain, _: &Evidence) -> bool {
        false
    }
}

/// Starts a mining node running `P` per key on `net`, all joined before any
/// mines (so every block reaches every node that is not cut off).
async fn start_miners<P: Protocol + 'static>(
    genesis: &Genesis,
    keys: &[Keypair],
    net: &MemoryNet,
    hashrate_limit: u64,
) -> Vec<RunningNode> {
    let joined: Vec<_> = keys.iter().map(|k| net.join(k.public(), 8_192)).collect();
    let mut nodes = Vec::new();
    for (key, (gossip, inbound)) in keys.iter().zip(joined) {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = start_with::<P>(Parts {
            config: mining_config(hashrate_limit),
            genesis: genesis.clone(),
            key: key.clone(),
            store: Arc::new(MemStore::new()),
            net: Arc::new(gossip),
            inbound,
            api: Some(api),
        })
        .await
        .unwrap();
        nodes.push(node);
    }
    nodes
}

fn finalized_of(node: &RunningNode) -> u64 {
    node.state
        .store
        .finalized_height()
        .unwrap()
        .unwrap_or(Height(0))
        .0
}

/// Per node: (mined blocks, reorgs, orphaned blocks), after checking that
/// it mined, halted nowhere and has no committee.
async fn check_nodes(nodes: &[RunningNode]) -> Vec<(f64, f64, f64)> {
    let client = http();
    let mut counts = Vec::new();
    for node in nodes {
        assert_eq!(node.state.live().halted, None);
        let base = format!("http://{}", node.api_addr.unwrap());
        let text = metrics(&client, &base).await;
        assert!(metric(&text, "phalanx_mining_hashes_total").unwrap() > 0.0);
        let (_, status) = get(&client, format!("{base}/status")).await;
        assert_eq!(status["validator"], Value::Null);
        assert_eq!(status["mining"]["threads"], 1);
        let count = |name| metric(&text, name).unwrap_or(0.0);
        let c = (
            count("phalanx_mined_blocks_total"),
            count("phalanx_reorgs_total"),
            count("phalanx_orphaned_blocks_total"),
        );
        eprintln!(
            "node: height {}, finalized {}, mined {}, reorgs {}, orphaned {}",
            status["height"], status["finalized_height"], c.0, c.1, c.2
        );
        counts.push(c);
    }
    counts
}

/// Stops the nodes, then checks that their final blocks agree and that
/// every chain links and carries its work.
async fn stop_and_check_agreement(nodes: Vec<RunningNode>, target: CompactTarget) {
    let mut chains = Vec::new();
    for node in nodes {
        let store = Arc::clone(&node.state.store);
        node.stop().await;
        chains.push(store);
    }
    let common = chains
        .iter()
        .map(|s| s.finalized_height().unwrap().unwrap().0)
        .min()
        .unwrap();
    for height in 1..=common {
        let hashes: Vec<Hash> = chains
            .iter()
            .map(|s| s.block_hash_at(Height(height)).unwrap().unwrap())
            .collect();
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "final blocks differ at height {height}: {hashes:?}"
        );
    }
    for store in &chains {
        let head = store.head().unwrap().unwrap().height().0;
        for height in 1..=head {
            let block = store.block_at(Height(height)).unwrap().unwrap();
            let parent = store.block_hash_at(Height(height - 1)).unwrap().unwrap();
            assert_eq!(block.header().parent, parent);
            check_work(&block.header().pow_hash(), target).unwrap();
        }
    }
}

/// One hash in 256 meets it: at 300 hashes a second a node finds about a
/// block a second, and the in-memory network delivers it in far less.
const TOY_TARGET: CompactTarget = CompactTarget(0x2001_0000);

/// Runs a live scenario with the stand-in protocol and with the real one.
macro_rules! with_both_protocols {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn toy() {
                super::$name::<super::Toy>().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pow() {
                super::$name::<phalanx_consensus::pow::Pow>().await
            }
        }
    };
}

with_both_protocols!(three_miners_grow_one_chain_and_agree_on_what_is_final);
with_both_protocols!(a_healed_partition_reorganizes_onto_one_chain);
with_both_protocols!(a_node_on_a_losing_branch_syncs_final_blocks_over_it);

async fn three_miners_grow_one_chain_and_agree_on_what_is_final<P: Protocol + 'static>() {
    init_logs();
    assert!(TOY_TARGET.target().is_ok());
    let accounts = [Keypair::from_seed(&[101; 32])];
    let genesis = pow_genesis(&accounts, TOY_TARGET, 4);
    let keys: Vec<Keypair> = (1..=3).map(|i| Keypair::from_seed(&[i; 32])).collect();
    let net = MemoryNet::new();
    let nodes = start_miners::<P>(&genesis, &keys, &net, 300).await;
    wait_for("8 final blocks on every node", DEADLINE, || {
        nodes.iter().all(|n| finalized_of(n) >= 8)
    })
    .await;
    let counts = check_nodes(&nodes).await;
    let mined: f64 = counts.iter().map(|c| c.0).sum();
    assert!(mined >= 8.0, "{mined} blocks mined in all");
    stop_and_check_agreement(nodes, TOY_TARGET).await;
}

async fn a_healed_partition_reorganizes_onto_one_chain<P: Protocol + 'static>() {
    init_logs();
    let accounts = [Keypair::from_seed(&[101; 32])];
    // Six confirmations: the branches grow a block or two before the heal.
    let genesis = pow_genesis(&accounts, TOY_TARGET, 6);
    let keys: Vec<Keypair> = (1..=3).map(|i| Keypair::from_seed(&[i; 32])).collect();
    let net = MemoryNet::new();
    let nodes = start_miners::<P>(&genesis, &keys, &net, 300).await;
    wait_for("two blocks", DEADLINE, || {
        nodes.iter().all(|n| head(n).0 >= Height(2))
    })
    .await;

    // Node 0 alone against nodes 1 and 2, until each side has a block the
    // other does not.
    nodes[0]
        .state
        .net
        .set_blocked(vec![keys[1].public(), keys[2].public()]);
    let off_chain = |a: &RunningNode, b: &RunningNode| {
        let (height, hash) = head(a);
        b.state.store.block_hash_at(height).unwrap() != Some(hash)
    };
    wait_for("a fork", DEADLINE, || {
        off_chain(&nodes[0], &nodes[1]) && off_chain(&nodes[1], &nodes[0])
    })
    .await;
    let fork_top = head(&nodes[0]).0.max(head(&nodes[1]).0).0;
    nodes[0].state.net.set_blocked(Vec::new());

    // One chain wins; whoever was on the other reverted its blocks.
    wait_for("finality past the fork on every node", DEADLINE, || {
        nodes.iter().all(|n| finalized_of(n) >= fork_top + 2)
    })
    .await;
    let counts = check_nodes(&nodes).await;
    let reorgs: f64 = counts.iter().map(|c| c.1).sum();
    let orphaned: f64 = counts.iter().map(|c| c.2).sum();
    assert!(reorgs >= 1.0, "{counts:?}");
    assert!(orphaned >= 1.0, "{counts:?}");
    stop_and_check_agreement(nodes, TOY_TARGET).await;
}

async fn a_node_on_a_losing_branch_syncs_final_blocks_over_it<P: Protocol + 'static>() {
    init_logs();
    let accounts = [Keypair::from_seed(&[101; 32])];
    let genesis = pow_genesis(&accounts, TOY_TARGET, 6);
    let keys: Vec<Keypair> = (1..=4).map(|i| Keypair::from_seed(&[i; 32])).collect();
    let net = MemoryNet::new();
    let mut nodes = start_miners::<P>(&genesis, &keys[..3], &net, 600).await;
    wait_for("height 16", DEADLINE, || {
        nodes.iter().all(|n| head(n).0 >= Height(16))
    })
    .await;

    // A latecomer mines a branch of its own, cut off from everyone.
    let late = &keys[3];
    let (gossip, inbound) = net.join(late.public(), 8_192);
    gossip.set_blocked(keys[..3].iter().map(Keypair::public).collect());
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let latecomer = start_with::<P>(Parts {
        config: mining_config(300),
        genesis: genesis.clone(),
        key: late.clone(),
        store: Arc::new(MemStore::new()),
        net: Arc::new(gossip),
        inbound,
        api: Some(api),
    })
    .await
    .unwrap();
    wait_for("a branch of its own", DEADLINE, || {
        head(&latecomer).0 >= Height(1)
    })
    .await;
    let own = head(&latecomer);
    latecomer.state.net.set_blocked(Vec::new());

    // Its blocks are not final (six confirmations): block sync fetches
    // the peers' final blocks from its finalized block (genesis) up, and
    // the first one reverts its branch.
    wait_for("the latecomer past its branch", DEADLINE, || {
        finalized_of(&latecomer) >= 8
    })
    .await;
    let stored = latecomer.state.store.block_hash_at(own.0).unwrap();
    assert_ne!(stored, Some(own.1), "its own block is off the chain");
    nodes.push(latecomer);
    let counts = check_nodes(&nodes).await;
    assert!(counts[3].1 >= 1.0, "the latecomer reorganized: {counts:?}");
    // Nobody was blamed for sending a batch that does not link.
    assert_eq!(net.reports(), Vec::new());
    stop_and_check_agreement(nodes, TOY_TARGET).await;
}

// ----- mining on demand and chain tips, with the real protocol -----

/// One hash in 65,536 meets it: a few blocks take a moment at full speed,
/// and hours at one hash a second.
const HARD: CompactTarget = CompactTarget(0x1f00_ffff);

async fn post(client: &reqwest::Client, url: String, body: &Value) -> (u16, Value) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn hex_work(value: &Value) -> u128 {
    u128::from_str_radix(value.as_str().unwrap(), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mining_on_demand_lifts_the_limit_for_that_many_blocks() {
    init_logs();
    assert!(HARD.target().is_ok());
    let accounts = [Keypair::from_seed(&[101; 32])];
    let genesis = pow_genesis(&accounts, HARD, 3);
    let key = Keypair::from_seed(&[1; 32]);
    let net = MemoryNet::new();
    // One hash a second: unasked, the first block would take hours.
    let (node, base) =
        start_pow_node::<phalanx_consensus::pow::Pow>(&genesis, mining_config(1), &key, &net).await;
    let client = http();

    // The protocol's one tip, genesis, with the genesis confirmations.
    wait_for("the first status", DEADLINE, || {
        !node.state.live().tips.is_empty()
    })
    .await;
    let (_, status) = get(&client, format!("{base}/status")).await;
    let genesis_hash = head(&node).1;
    assert_eq!(status["confirmations"], 3);
    assert_eq!(status["mining"]["on_demand"], 0);
    let tips = status["tips"].as_array().unwrap();
    assert_eq!(tips.len(), 1, "{status}");
    assert_eq!(tips[0]["hash"], genesis_hash.to_string());
    assert_eq!(tips[0]["height"], 0);
    assert_eq!(tips[0]["branch_len"], 0);
    assert_eq!(tips[0]["active"], true);
    assert_eq!(status["work"], tips[0]["work"]);
    let genesis_work = hex_work(&status["work"]);

    // A transfer for the blocks to come.
    let tx = transfer(&accounts[0], 0, &genesis);
    let (code, _) = post(
        &client,
        format!("{base}/txs"),
        &serde_json::to_value(&tx).unwrap(),
    )
    .await;
    assert_eq!(code, 202);

    // One block, then three more: the second request adds to the first
    // (minus whatever was found in between).
    let first = post(
        &client,
        format!("{base}/mine"),
        &serde_json::json!({"blocks": 1}),
    )
    .await;
    assert_eq!(
        first,
        (202, serde_json::json!({"mining": 1, "requested": 1}))
    );
    let (code, second) = post(
        &client,
        format!("{base}/mine"),
        &serde_json::json!({"blocks": 3}),
    )
    .await;
    assert_eq!(code, 202);
    assert_eq!(second["requested"], 3);
    let mining = second["mining"].as_u64().unwrap();
    assert!((3..=4).contains(&mining), "{second}");

    let control = node.state.live().mining.unwrap().control;
    wait_for("four blocks on demand", DEADLINE, || {
        control.on_demand() == 0 && head(&node).0 >= Height(4)
    })
    .await;
    wait_for("the status of height 4", DEADLINE, || {
        node.state.live().tips.first().map(|t| t.height) == Some(Height(4))
    })
    .await;
    // Then the limit again: at one hash a second, no fifth block.
    let (height, hash) = head(&node);
    assert_eq!(height, Height(4));
    let text = metrics(&client, &base).await;
    let mined = metric(&text, "phalanx_mined_blocks_total").unwrap();
    let stale = metric(&text, "phalanx_dropped_total{reason=\"stale_mined_block\"}").unwrap_or(0.0);
    assert_eq!(mined - stale, 4.0, "{text}");

    let (_, status) = get(&client, format!("{base}/status")).await;
    assert_eq!(status["mining"]["on_demand"], 0);
    // Tip 4 and three confirmations: final up to 2.
    assert_eq!(status["finalized_height"], 2);
    let tips = status["tips"].as_array().unwrap();
    assert_eq!(tips[0]["hash"], hash.to_string(), "{status}");
    assert_eq!(tips[0]["height"], 4);
    assert_eq!(tips[0]["branch_len"], 0);
    assert_eq!(tips[0]["active"], true);
    assert_eq!(status["work"], tips[0]["work"]);
    assert!(hex_work(&status["work"]) > genesis_work, "{status}");

    // The transfer, with its confirmations; final only at three.
    let (_, body) = get(&client, format!("{base}/txs/{}", tx.hash())).await;
    let tx_height = body["height"].as_u64().unwrap();
    assert_eq!(body["confirmations"], 4 - tx_height + 1, "{body}");
    assert_eq!(body["on_best_chain"], true);
    let expected = if tx_height <= 2 {
        "finalized"
    } else {
        "committed"
    };
    assert_eq!(body["status"], expected, "{body}");
    node.stop().await;
}
