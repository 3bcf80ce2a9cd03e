//! The HTTP API over real TCP: every endpoint, every error code, and the
//! node still answering after a barrage of bad requests.
//!
//! Set `PHALANX_API_EXAMPLES=<file>` to append the requests and responses
//! the tests see to a file (docs/API.md quotes them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use futures::FutureExt;
use phalanx_chain::genesis::{GenesisAccount, GenesisValidator, PowParams};
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::{
    Address, Amount, BftCertificate, Block, BlockBuilder, ChainId, ConsensusKind, Genesis, Height,
    Justification, MemStore, Nonce, Rules, StateChanges, Store, Transaction, ValidatorIndex,
    ValidatorSignature, encoding,
};
use phalanx_consensus::ChainTip;
use phalanx_crypto::{Domain, Keypair, PublicKey};
use phalanx_node::api::{self, ApiConfig, MAX_BATCH_BODY_BYTES, MAX_BATCH_TXS};
use phalanx_node::mempool::{Mempool, MempoolConfig};
use phalanx_node::metrics::Metrics;
use phalanx_node::miner::{Found, MINED_QUEUE, Miner, MinerConfig, MinerCounters};
use phalanx_node::net::{Channel, Gossip, Misbehaviour, NetError, PeerInfo};
use phalanx_node::shared::{
    BlockEvent, EVENT_BUFFER, FinalizedEvent, LiveStatus, MiningStatus, NodeState, ReorgEvent,
};
use phalanx_node::txgossip::{self, TxGossip};
use serde_json::{Value, json};
use std::io::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, oneshot};

const CHAIN: &str = "phalanx-api-test";
/// Generous deadline for anything that could hang; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(20);

fn chain_id() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i; 32])
}

fn addr(i: u8) -> Address {
    key(i).public().into()
}

/// Validator 0 is key 100; accounts 1 and 2 are funded.
fn genesis() -> Genesis {
    Genesis {
        chain_id: chain_id(),
        consensus: ConsensusKind::Hotstuff,
        genesis_time_ms: 1_767_225_600_000,
        validators: vec![GenesisValidator {
            public_key: key(100).public(),
            address: "/ip4/127.0.0.1/tcp/26600".into(),
        }],
        pow: None,
        accounts: vec![
            GenesisAccount {
                address: addr(1),
                balance: Amount(1_000_000),
            },
            GenesisAccount {
                address: addr(2),
                balance: Amount(1_000),
            },
        ],
    }
}

fn transfer(from: u8, to: u8, amount: u64, nonce: u64) -> Transaction {
    Transaction::sign(
        &key(from),
        chain_id(),
        addr(to),
        Amount(amount),
        Amount(1),
        Nonce(nonce),
    )
}

/// [`transfer`], signed for the chain `elsewhere`.
fn elsewhere(from: u8, to: u8, amount: u64, nonce: u64) -> Transaction {
    Transaction::sign(
        &key(from),
        ChainId::new("elsewhere").unwrap(),
        addr(to),
        Amount(amount),
        Amount(1),
        Nonce(nonce),
    )
}

/// A network that records what it is asked to publish.
#[derive(Default)]
struct FakeNet {
    published: Mutex<Vec<(Channel, Vec<u8>)>>,
    peers: Vec<PeerInfo>,
    fail_publish: bool,
}

impl Gossip for FakeNet {
    fn local_key(&self) -> PublicKey {
        key(100).public()
    }

    fn publish(&self, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
        if self.fail_publish {
            return Err(NetError::QueueFull);
        }
        self.published.lock().unwrap().push((channel, bytes));
        Ok(())
    }

    fn send(&self, _: &PublicKey, _: Channel, _: Vec<u8>) -> Result<(), NetError> {
        Ok(())
    }

    fn peers(&self) -> Vec<PeerInfo> {
        self.peers.clone()
    }

    fn report(&self, _: &PublicKey, _: Misbehaviour) {}

    fn set_blocked(&self, _: Vec<PublicKey>) {}
}

struct TestNode {
    base: String,
    state: Arc<NodeState>,
    store: Arc<dyn Store>,
    net: Arc<FakeNet>,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The last response body, as sent (for the transcript).
    last_raw: Mutex<String>,
}

#[derive(Default)]
struct Options {
    mempool: MempoolConfig,
    api: ApiConfig,
    net: FakeNet,
    store: Option<Arc<dyn Store>>,
    /// Another chain than [`genesis`]'s.
    genesis: Option<Genesis>,
    /// Another live status than a validator's in view 3.
    live: Option<LiveStatus>,
}

fn client() -> reqwest::Client {
    // reqwest is built with rustls but no crypto provider; plain http needs
    // none, but building a client does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn start(options: Options) -> TestNode {
    let genesis = options.genesis.unwrap_or_else(genesis);
    let store: Arc<dyn Store> = match options.store {
        Some(store) => store,
        None => {
            let store = MemStore::new();
            store.init_genesis(&genesis).unwrap();
            Arc::new(store)
        }
    };
    let net = Arc::new(options.net);
    let live = options.live.unwrap_or_else(|| LiveStatus {
        view: 3,
        phase: Some("normal"),
        view_timeout_ms: Some(500),
        syncing: false,
        sync_target: None,
        ..LiveStatus::default()
    });
    let (tx_gossip, tx_gossip_queue) = TxGossip::new();
    let state = Arc::new(NodeState {
        chain_id: genesis.chain_id.clone(),
        consensus: genesis.consensus,
        validator: (!genesis.validators.is_empty()).then_some(ValidatorIndex(0)),
        genesis,
        store: store.clone(),
        mempool: Mutex::new(Mempool::new(options.mempool, chain_id())),
        verified: Arc::new(phalanx_chain::VerifiedTxs::default()),
        status: RwLock::new(live),
        events: broadcast::channel(EVENT_BUFFER).0,
        metrics: Metrics::new(),
        net: net.clone(),
        tx_gossip,
        txs_available: Arc::new(tokio::sync::Notify::new()),
    });
    tokio::spawn(txgossip::run(Arc::downgrade(&state), tx_gossip_queue));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(
        listener,
        state.clone(),
        options.api,
        stopped.map(|_| ()),
    ));
    TestNode {
        base,
        state,
        store,
        net,
        client: client(),
        stop: Some(stop),
        server,
        last_raw: Mutex::new(String::new()),
    }
}

impl TestNode {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("no response within the deadline")
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text:?}"));
        *self.last_raw.lock().unwrap() = text;
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn post_raw(&self, body: Vec<u8>, content_type: Option<&str>) -> (u16, Value) {
        self.post_bytes("/txs", body, content_type).await
    }

    async fn post_bytes(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        self.send(request).await
    }

    /// `POST /txs/batch` with a JSON array.
    async fn batch(&self, txs: &[Transaction]) -> (u16, Value) {
        self.post("/txs/batch", &serde_json::to_value(txs).unwrap())
            .await
    }

    /// `POST /txs/batch` with the postcard encoding.
    async fn batch_binary(&self, txs: &[Transaction]) -> (u16, Value) {
        self.post_bytes(
            "/txs/batch",
            encoding::encode(txs),
            Some("application/octet-stream"),
        )
        .await
    }

    /// The pending transactions' hashes, oldest first.
    fn pending(&self) -> Vec<phalanx_chain::Hash> {
        self.state.mempool.lock().unwrap().snapshot(usize::MAX)
    }

    async fn submit(&self, tx: &Transaction) -> (u16, Value) {
        self.post("/txs", &serde_json::to_value(tx).unwrap()).await
    }

    /// Commits a block of `txs` on the head, as the driver would: store,
    /// then mempool, then the event.
    fn commit(&self, txs: Vec<Transaction>, view: u64) -> Block {
        self.commit_final_at(txs, view, None)
    }

    /// Commits with a finalized height below the head's (`Some`), as a
    /// proof-of-work chain would.
    fn commit_final_at(&self, txs: Vec<Transaction>, view: u64, finalized: Option<u64>) -> Block {
        let head = self.store.head().unwrap().unwrap();
        let accumulator = self.store.accumulator().unwrap();
        let mut builder = BlockBuilder::new(
            Rules::new(chain_id()),
            &head.header,
            &*self.store,
            &accumulator,
            key(100).public().into(),
        );
        for tx in txs {
            builder.push(tx).unwrap();
        }
        let vote = Domain::HotStuffVote
            .begin(&chain_id())
            .bytes(head.hash.as_bytes())
            .finish();
        let justification = Justification::Bft {
            view,
            parent_cert: BftCertificate {
                view: view - 1,
                block: head.hash,
                signatures: vec![ValidatorSignature {
                    validator: ValidatorIndex(0),
                    signature: key(100).sign(&vote),
                }],
            },
        };
        let (block, changes): (Block, StateChanges) = builder
            .finish(head.header.timestamp_ms + 1_000, justification)
            .unwrap();
        let finalized = finalized.map_or(block.height(), phalanx_chain::Height);
        self.store
            .commit_block(&block, &changes, finalized)
            .unwrap();
        self.state.mempool.lock().unwrap().remove_committed(&block);
        block
    }

    /// The transactions gossiped so far, in order, once there are at least
    /// `expected` (and a moment later, so that extra ones would show).
    async fn gossiped(&self, expected: usize) -> Vec<Transaction> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.gossiped_now().len() < expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{expected} transactions were not gossiped"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(txgossip::GOSSIP_LINGER * 10).await;
        self.gossiped_now()
    }

    fn gossiped_now(&self) -> Vec<Transaction> {
        let published = self.net.published.lock().unwrap().clone();
        published
            .iter()
            .flat_map(|(channel, bytes)| {
                assert_eq!(*channel, Channel::Transactions);
                txgossip::decode_batch(bytes).unwrap()
            })
            .collect()
    }

    /// Gossiped messages so far.
    fn messages(&self) -> usize {
        self.net.published.lock().unwrap().len()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        tokio::time::timeout(DEADLINE, &mut self.server)
            .await
            .expect("the API did not shut down within the deadline")
            .unwrap()
            .unwrap();
    }
}

fn assert_error(response: &(u16, Value), status: u16, code: &str) {
    let (got_status, body) = response;
    assert_eq!(
        (*got_status, body["error"]["code"].as_str()),
        (status, Some(code)),
        "body: {body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{body}");
}

/// Asserts that each of `lines` is a line of `text` (metrics).
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "missing {line:?} in\n{text}"
        );
    }
}

/// Writes request/response pairs for docs/API.md when asked to.
struct Transcript(Option<std::fs::File>);

impl Transcript {
    fn new() -> Transcript {
        Transcript(std::env::var("PHALANX_API_EXAMPLES").ok().map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap()
        }))
    }

    /// Records `node`'s last response, exactly as sent.
    fn record(&mut self, request: &str, node: &TestNode, response: &(u16, Value)) {
        let raw = node.last_raw.lock().unwrap().clone();
        assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), response.1);
        self.write(request, response.0, &raw);
    }

    fn write(&mut self, request: &str, status: u16, body: &str) {
        if let Some(file) = &mut self.0 {
            writeln!(file, "### {request}\n{status}\n{body}\n").unwrap();
        }
    }
}

#[tokio::test]
async fn every_endpoint_answers_as_documented() {
    let peer = PeerInfo {
        key: key(101).public(),
        address: Some("/ip4/127.0.0.1/tcp/26601".into()),
        connected: true,
        banned: false,
    };
    let node = start(Options {
        net: FakeNet {
            peers: vec![peer],
            ..FakeNet::default()
        },
        ..Options::default()
    })
    .await;
    let mut doc = Transcript::new();

    let status = node.get("/status").await;
    doc.record("GET /status", &node, &status);
    assert_eq!(status.0, 200);
    let genesis_hash = node.store.head().unwrap().unwrap().hash.to_string();
    assert_eq!(
        status.1,
        json!({
            "chain_id": CHAIN, "consensus": "hotstuff", "validator": 0, "height": 0,
            "head_hash": genesis_hash, "finalized_height": 0, "view": 3, "phase": "normal",
            "view_timeout_ms": 500, "peers": 1,
            "mempool_size": 0, "mempool_bytes": 0, "syncing": false, "sync_target": null,
            "halted": null, "mining": null, "tips": [], "work": null, "confirmations": null,
            "tx_index": { "from": 0 }
        })
    );

    // Submit: 202 with the hash, then pending, listed, gossiped.
    let tx = transfer(1, 3, 250, 0);
    let body = serde_json::to_value(&tx).unwrap();
    doc.write("request body", 0, &serde_json::to_string(&body).unwrap());
    let submitted = node.submit(&tx).await;
    doc.record("POST /txs", &node, &submitted);
    assert_eq!(submitted, (202, json!({ "hash": tx.hash().to_string() })));
    assert_eq!(node.gossiped(1).await, std::slice::from_ref(&tx));
    assert_eq!(node.messages(), 1);

    let pending = node.get(&format!("/txs/{}", tx.hash())).await;
    doc.record("GET /txs/{hash} (pending)", &node, &pending);
    assert_eq!(
        pending,
        (
            200,
            json!({ "status": "pending", "hash": tx.hash().to_string() })
        )
    );
    let mempool = node.get("/mempool").await;
    doc.record("GET /mempool", &node, &mempool);
    assert_eq!(mempool.0, 200);
    assert_eq!(mempool.1["size"], 1);
    assert_eq!(mempool.1["txs"], json!([tx.hash().to_string()]));
    assert!(mempool.1["bytes"].as_u64().unwrap() > 100);

    let account = node.get(&format!("/accounts/{}", addr(1))).await;
    doc.record("GET /accounts/{address}", &node, &account);
    assert_eq!(
        account,
        (
            200,
            json!({ "address": addr(1).to_string(), "balance": 1_000_000, "nonce": 0, "pending_nonce": 1 })
        )
    );

    // Commit it: the block, the transaction's place, the account.
    let block = node.commit(vec![tx.clone()], 4);
    let latest = node.get("/blocks/latest").await;
    doc.record("GET /blocks/latest", &node, &latest);
    assert_eq!(latest.0, 200);
    assert_eq!(latest.1["hash"], block.hash().to_string());
    assert_eq!(latest.1["finalized"], true);
    assert_eq!(latest.1["tx_count"], 1);
    assert_eq!(latest.1["transactions"], json!([tx.hash().to_string()]));
    let header = &latest.1["header"];
    assert_eq!(header["height"], 1);
    assert_eq!(header["parent"], genesis_hash);
    assert_eq!(header["proposer"], key(100).public().to_string());
    assert_eq!(header["justification"]["kind"], "bft");
    assert_eq!(header["justification"]["view"], 4);
    assert_eq!(
        header["justification"]["parent_cert"]["block"],
        genesis_hash
    );
    assert_eq!(
        header["justification"]["parent_cert"]["signatures"][0]["validator"],
        0
    );

    let by_height = node.get("/blocks/1").await;
    assert_eq!(by_height, latest);
    let full = node
        .get(&format!("/blocks/hash/{}?full=true", block.hash()))
        .await;
    doc.record("GET /blocks/hash/{hash}?full=true", &node, &full);
    assert_eq!(full.0, 200);
    let mut expected_tx = serde_json::to_value(&tx).unwrap();
    expected_tx["hash"] = json!(tx.hash().to_string());
    assert_eq!(full.1["transactions"], json!([expected_tx]));
    let genesis_block = node.get("/blocks/0").await;
    doc.record("GET /blocks/0", &node, &genesis_block);
    assert_eq!(
        genesis_block.1["header"]["justification"],
        json!({ "kind": "genesis" })
    );
    assert_eq!(genesis_block.1["transactions"], json!([]));

    let finalized = node.get(&format!("/txs/{}", tx.hash())).await;
    doc.record("GET /txs/{hash} (finalized)", &node, &finalized);
    assert_eq!(
        finalized,
        (
            200,
            json!({
                "status": "finalized", "hash": tx.hash().to_string(), "height": 1,
                "index": 0, "block_hash": block.hash().to_string(), "confirmations": 1,
                "on_best_chain": true
            })
        )
    );
    let account = node.get(&format!("/accounts/{}", addr(1))).await;
    assert_eq!(account.1["balance"], 1_000_000 - 251);
    assert_eq!(account.1["nonce"], 1);
    assert_eq!(account.1["pending_nonce"], 1);
    let empty = node.get("/mempool?limit=5").await;
    assert_eq!(empty, (200, json!({ "size": 0, "bytes": 0, "txs": [] })));

    let peers = node.get("/peers").await;
    doc.record("GET /peers", &node, &peers);
    assert_eq!(
        peers,
        (
            200,
            json!({ "connected": 1, "peers": [{
                "key": key(101).public().to_string(),
                "address": "/ip4/127.0.0.1/tcp/26601", "connected": true, "banned": false
            }]})
        )
    );
    let status = node.get("/status").await;
    doc.record("GET /status (after block 1)", &node, &status);
    assert_eq!(status.1["height"], 1);
    assert_eq!(status.1["head_hash"], block.hash().to_string());

    // Metrics: text, counting the requests above by route and status.
    let metrics = node
        .client
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert_eq!(
        metrics.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = metrics.text().await.unwrap();
    assert_lines(
        &text,
        &[
            "phalanx_http_requests_total{route=\"/status\",status=\"200\"} 2",
            "phalanx_http_requests_total{route=\"/blocks/{height}\",status=\"200\"} 2",
            "phalanx_http_requests_total{route=\"/txs\",status=\"202\"} 1",
            "phalanx_mempool_txs 1",
            "phalanx_messages_sent_total{channel=\"transactions\",kind=\"tx_batch\",origin=\"authored\"} 1",
            "phalanx_txs_gossiped_total 1",
        ],
    );
    doc.write("GET /metrics", 200, &text);
    node.shutdown().await;
}

#[tokio::test]
async fn every_error_has_the_error_shape_and_the_node_survives_them() {
    let node = start(Options::default()).await;
    let mut doc = Transcript::new();
    // Sender 2 uses nonce 0 in a block, so its next nonce is 1.
    node.commit(vec![transfer(2, 1, 10, 0)], 1);
    let pending = transfer(1, 3, 5, 0);
    assert_eq!(node.submit(&pending).await.0, 202);
    let good = serde_json::to_value(transfer(1, 3, 5, 1)).unwrap();

    let mut cases: Vec<(&str, (u16, Value), u16, &str)> = Vec::new();
    macro_rules! case {
        ($name:expr, $response:expr, $status:expr, $code:expr) => {
            let response = $response;
            doc.record($name, &node, &response);
            cases.push(($name, response, $status, $code));
        };
    }
    case!(
        "invalid_json",
        node.post_raw(b"{\"chain_id\":".to_vec(), Some("application/json"))
            .await,
        400,
        "invalid_json"
    );
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("nonce");
    case!(
        "missing field",
        node.post("/txs", &missing).await,
        400,
        "invalid_json"
    );
    let mut bad_hex = good.clone();
    bad_hex["to"] = json!("AB".repeat(32));
    case!(
        "uppercase hex",
        node.post("/txs", &bad_hex).await,
        400,
        "invalid_json"
    );
    let mut extra = good.clone();
    extra["memo"] = json!("hello");
    case!(
        "unknown_field",
        node.post("/txs", &extra).await,
        400,
        "unknown_field"
    );
    let big = vec![b' '; ApiConfig::default().max_body_bytes + 1];
    case!(
        "too_large",
        node.post_raw(big, Some("application/json")).await,
        413,
        "too_large"
    );
    case!(
        "text/plain",
        node.post_raw(serde_json::to_vec(&good).unwrap(), Some("text/plain"))
            .await,
        415,
        "unsupported_media_type"
    );
    case!(
        "no content type",
        node.post_raw(serde_json::to_vec(&good).unwrap(), None)
            .await,
        415,
        "unsupported_media_type"
    );
    let mut forged = transfer(1, 3, 5, 1);
    forged.amount = Amount(6);
    case!(
        "bad_signature",
        node.submit(&forged).await,
        400,
        "bad_signature"
    );
    let other_chain = elsewhere(1, 3, 5, 1);
    case!(
        "wrong_chain",
        node.submit(&other_chain).await,
        400,
        "wrong_chain"
    );
    case!(
        "nonce_too_low",
        node.submit(&transfer(2, 1, 5, 0)).await,
        400,
        "nonce_too_low"
    );
    case!(
        "nonce_gap",
        node.submit(&transfer(1, 3, 5, 1 + 64)).await,
        400,
        "nonce_gap"
    );
    case!(
        "nonce_pending",
        node.submit(&transfer(1, 3, 6, 0)).await,
        409,
        "nonce_pending"
    );
    case!(
        "insufficient_balance",
        node.submit(&transfer(2, 1, 990, 1)).await,
        400,
        "insufficient_balance"
    );
    case!("duplicate", node.submit(&pending).await, 409, "duplicate");
    case!(
        "bad_height",
        node.get("/blocks/x1").await,
        400,
        "bad_height"
    );
    case!(
        "negative height",
        node.get("/blocks/-1").await,
        400,
        "bad_height"
    );
    case!(
        "height too big",
        node.get("/blocks/18446744073709551616").await,
        400,
        "bad_height"
    );
    case!(
        "no block there",
        node.get("/blocks/99").await,
        404,
        "not_found"
    );
    case!(
        "bad_hash",
        node.get("/blocks/hash/xyz").await,
        400,
        "bad_hash"
    );
    case!(
        "unknown block",
        node.get(&format!("/blocks/hash/{}", "ab".repeat(32))).await,
        404,
        "not_found"
    );
    case!("bad tx hash", node.get("/txs/ABCD").await, 400, "bad_hash");
    case!(
        "unknown tx",
        node.get(&format!("/txs/{}", "cd".repeat(32))).await,
        404,
        "not_found"
    );
    case!(
        "bad_path",
        node.get("/accounts/%FF%FE").await,
        400,
        "bad_path"
    );
    case!(
        "bad_address",
        node.get("/accounts/0xabc").await,
        400,
        "bad_address"
    );
    case!(
        "bad_query limit",
        node.get("/mempool?limit=lots").await,
        400,
        "bad_query"
    );
    case!(
        "bad_query unknown",
        node.get("/mempool?offset=3").await,
        400,
        "bad_query"
    );
    case!(
        "bad_query full",
        node.get("/blocks/latest?full=maybe").await,
        400,
        "bad_query"
    );
    case!("not_found", node.get("/nowhere").await, 404, "not_found");
    case!(
        "not_found nested",
        node.get("/blocks/1/2/3").await,
        404,
        "not_found"
    );
    case!(
        "method_not_allowed",
        node.send(node.client.delete(format!("{}/status", node.base)))
            .await,
        405,
        "method_not_allowed"
    );
    case!(
        "GET /txs",
        node.get("/txs").await,
        405,
        "method_not_allowed"
    );
    case!(
        "POST /status",
        node.post("/status", &json!({})).await,
        405,
        "method_not_allowed"
    );

    for (name, response, status, code) in &cases {
        assert_error(response, *status, code);
        eprintln!("{name}: {}", response.1);
    }
    // A nonce message names the numbers.
    let low = &cases.iter().find(|c| c.0 == "nonce_too_low").unwrap().1;
    assert_eq!(
        low.1["error"]["message"],
        "nonce 0 is below the account's next nonce 1"
    );

    // Only the first transaction was ever admitted and gossiped.
    assert_eq!(node.gossiped(1).await.len(), 1);
    assert_eq!(node.state.mempool.lock().unwrap().len(), 1);

    // Still alive, still accepting.
    assert_eq!(node.get("/status").await.0, 200);
    let accepted = node.post("/txs", &good).await;
    assert_eq!(accepted.0, 202, "{}", accepted.1);
    assert_eq!(node.gossiped(2).await.len(), 2);
    let metrics = node
        .client
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert_lines(
        &text,
        &[
            "phalanx_http_requests_total{route=\"unmatched\",status=\"404\"} 2",
            "phalanx_http_requests_total{route=\"/status\",status=\"405\"} 2",
            "phalanx_http_requests_total{route=\"/txs\",status=\"413\"} 1",
        ],
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_block_above_the_finalized_height_is_committed_not_final() {
    let node = start(Options::default()).await;
    let tx = transfer(1, 3, 5, 0);
    let block = node.commit_final_at(vec![tx.clone()], 1, Some(0));
    let status = node.get(&format!("/txs/{}", tx.hash())).await;
    Transcript::new().record("GET /txs/{hash} (committed)", &node, &status);
    assert_eq!(
        status,
        (
            200,
            json!({
                "status": "committed", "hash": tx.hash().to_string(), "height": 1,
                "index": 0, "block_hash": block.hash().to_string(), "confirmations": 1,
                "on_best_chain": true
            })
        )
    );
    assert_eq!(node.get("/blocks/1").await.1["finalized"], false);
    assert_eq!(node.get("/blocks/0").await.1["finalized"], true);
    assert_eq!(node.get("/status").await.1["finalized_height"], 0);

    // Each block on top is one more confirmation; the transaction is final
    // once the finalized height reaches its block, and only then.
    node.commit_final_at(Vec::new(), 2, Some(0));
    let status = node.get(&format!("/txs/{}", tx.hash())).await;
    assert_eq!(status.1["status"], "committed");
    assert_eq!(status.1["confirmations"], 2);
    node.commit_final_at(Vec::new(), 3, Some(1));
    let status = node.get(&format!("/txs/{}", tx.hash())).await;
    assert_eq!(status.1["status"], "finalized");
    assert_eq!(status.1["confirmations"], 3);
    assert_eq!(status.1["on_best_chain"], true);
    node.shutdown().await;
}

/// A sled store in `dir`, with or without the transaction index.
fn sled_store(dir: &std::path::Path, tx_index: bool) -> phalanx_chain::SledStore {
    let options = phalanx_chain::store::SledOptions {
        tx_index,
        ..Default::default()
    };
    phalanx_chain::SledStore::open_with(dir, options).unwrap()
}

/// A node on `store`.
async fn start_on(store: phalanx_chain::SledStore) -> TestNode {
    start(Options {
        store: Some(Arc::new(store)),
        ..Options::default()
    })
    .await
}

/// [`assert_error`], and the message says `text`.
fn assert_error_saying(response: &(u16, Value), status: u16, code: &str, text: &str) {
    assert_error(response, status, code);
    let message = response.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{response:?}");
}

#[tokio::test]
async fn without_a_transaction_index_get_txs_says_so_and_still_finds_pending_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled_store(dir.path(), false);
    store.init_genesis(&genesis()).unwrap();
    let node = start_on(store).await;
    assert_eq!(node.get("/status").await.1["tx_index"], "off");
    let committed = transfer(1, 3, 5, 0);
    let block = node.commit_final_at(vec![committed.clone()], 1, Some(1));
    assert_eq!(
        node.get("/blocks/1").await.1["hash"],
        block.hash().to_string()
    );
    let response = node.get(&format!("/txs/{}", committed.hash())).await;
    Transcript::new().record("GET /txs/{hash} (no index)", &node, &response);
    assert_error_saying(&response, 404, "tx_index_off", "node.tx_index = false");

    let pending = transfer(1, 3, 5, 1);
    assert_eq!(node.submit(&pending).await.0, 202);
    let found = node.get(&format!("/txs/{}", pending.hash())).await;
    assert_eq!(found.0, 200, "{found:?}");
    assert_eq!(found.1["status"], "pending");
    node.shutdown().await;
}

#[tokio::test]
async fn an_index_turned_back_on_finds_new_transactions_and_says_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = sled_store(dir.path(), false);
        store.init_genesis(&genesis()).unwrap();
    }
    let store = sled_store(dir.path(), true);
    assert_eq!(store.tx_index(), phalanx_chain::TxIndex::From(Height(1)));
    let node = start_on(store).await;
    assert_eq!(
        node.get("/status").await.1["tx_index"],
        json!({ "from": 1 })
    );
    let response = node.get(&format!("/txs/{}", "cd".repeat(32))).await;
    assert_error_saying(&response, 404, "not_found", "from height 1 on");
    let tx = transfer(1, 3, 5, 0);
    node.commit_final_at(vec![tx.clone()], 1, Some(1));
    let found = node.get(&format!("/txs/{}", tx.hash())).await;
    assert_eq!((found.0, &found.1["status"]), (200, &json!("finalized")));
    node.shutdown().await;
}

#[tokio::test]
async fn a_full_mempool_answers_503() {
    let node = start(Options {
        mempool: MempoolConfig {
            max_txs: 2,
            ..MempoolConfig::default()
        },
        ..Options::default()
    })
    .await;
    assert_eq!(node.submit(&transfer(1, 3, 5, 0)).await.0, 202);
    assert_eq!(node.submit(&transfer(1, 3, 5, 1)).await.0, 202);
    let full = node.submit(&transfer(1, 3, 5, 2)).await;
    Transcript::new().record("mempool_full", &node, &full);
    assert_error(&full, 503, "mempool_full");
    // Its signature was checked and recorded: sent again while the pool
    // is full, it is not checked again. A forged one is never recorded.
    assert!(node.state.verified.contains(&transfer(1, 3, 5, 2).hash()));
    let mut forged = transfer(1, 3, 5, 3);
    forged.signature.0[40] ^= 1;
    assert_error(&node.submit(&forged).await, 400, "bad_signature");
    assert!(!node.state.verified.contains(&forged.hash()));
    // A commit makes room.
    node.commit(vec![transfer(1, 3, 5, 0)], 1);
    assert_eq!(node.submit(&transfer(1, 3, 5, 2)).await.0, 202);
    node.shutdown().await;
}

#[tokio::test]
async fn a_failed_gossip_still_admits_and_is_counted() {
    let node = start(Options {
        net: FakeNet {
            fail_publish: true,
            ..FakeNet::default()
        },
        ..Options::default()
    })
    .await;
    let tx = transfer(1, 3, 5, 0);
    assert_eq!(node.submit(&tx).await.0, 202);
    assert!(node.state.mempool.lock().unwrap().contains(&tx.hash()));
    // The gossip task publishes a moment later.
    let counted = "phalanx_dropped_total{reason=\"tx_gossip_failed\"} 1";
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !node.state.metrics.render().contains(counted) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{counted} never counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.shutdown().await;
}

/// A store whose every read fails, as a broken disk would.
struct BrokenStore;

fn broken() -> phalanx_chain::StoreError {
    phalanx_chain::StoreError::Corrupt {
        what: "test disk is broken".into(),
    }
}

impl phalanx_chain::StateView for BrokenStore {
    fn account(&self, _: &Address) -> Result<phalanx_chain::Account, phalanx_chain::StoreError> {
        Err(broken())
    }
}

impl Store for BrokenStore {
    fn genesis_hash(&self) -> Result<Option<phalanx_chain::Hash>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn head(&self) -> Result<Option<phalanx_chain::Head>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn finalized_height(&self) -> Result<Option<phalanx_chain::Height>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn block(&self, _: &phalanx_chain::Hash) -> Result<Option<Block>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn block_hash_at(
        &self,
        _: phalanx_chain::Height,
    ) -> Result<Option<phalanx_chain::Hash>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn tx_location(
        &self,
        _: &phalanx_chain::Hash,
    ) -> Result<Option<phalanx_chain::TxLocation>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn accumulator(&self) -> Result<phalanx_chain::StateAccumulator, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn commit_block(
        &self,
        _: &Block,
        _: &StateChanges,
        _: phalanx_chain::Height,
    ) -> Result<(), phalanx_chain::StoreError> {
        Err(broken())
    }
    fn set_finalized_height(
        &self,
        _: phalanx_chain::Height,
    ) -> Result<(), phalanx_chain::StoreError> {
        Err(broken())
    }
    fn safety_data(&self, _: &[u8]) -> Result<Option<Vec<u8>>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn put_safety_data(&self, _: &[u8], _: &[u8]) -> Result<(), phalanx_chain::StoreError> {
        Err(broken())
    }
    fn revert_to(&self, _: &phalanx_chain::Hash) -> Result<Vec<Block>, phalanx_chain::StoreError> {
        Err(broken())
    }
    fn undo(
        &self,
        _: phalanx_chain::Height,
    ) -> Result<Option<phalanx_chain::Undo>, phalanx_chain::StoreError> {
        Err(broken())
    }
}

#[tokio::test]
async fn storage_failures_are_500_internal() {
    let node = start(Options {
        store: Some(Arc::new(BrokenStore)),
        ..Options::default()
    })
    .await;
    for path in [
        "/status".to_owned(),
        "/blocks/latest".to_owned(),
        "/blocks/1".to_owned(),
        format!("/txs/{}", "ab".repeat(32)),
        format!("/accounts/{}", addr(1)),
    ] {
        let response = node.get(&path).await;
        Transcript::new().record(&format!("internal {path}"), &node, &response);
        assert_error(&response, 500, "internal");
        assert!(
            response.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("test disk is broken"),
            "{path}: {}",
            response.1
        );
    }
    assert_error(&node.submit(&transfer(1, 3, 5, 0)).await, 500, "internal");
    // In a batch, each transaction that needed the store says so.
    let batch = node
        .batch(&[transfer(1, 3, 5, 0), transfer(1, 3, 5, 1)])
        .await;
    assert_eq!(batch.0, 200, "{}", batch.1);
    assert_eq!(codes(&batch), [Some("internal"), Some("internal")]);
    // Endpoints that need no storage still work.
    assert_eq!(node.get("/mempool").await.0, 200);
    assert_eq!(node.get("/peers").await.0, 200);
    node.shutdown().await;
}

/// Sends `request` over a raw TCP connection and returns the response.
async fn raw_http(base: &str, request: &[u8]) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the server closes or a full JSON body has arrived.
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && body.trim_end().ends_with("}}")
            {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("no response within the deadline");
    String::from_utf8_lossy(&response).into_owned()
}

fn raw_error_code(response: &str) -> (u16, Value) {
    let status: u16 = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    let value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {response:?}"));
    (status, value)
}

#[tokio::test]
async fn a_request_that_stalls_gets_408_timeout() {
    let node = start(Options {
        api: ApiConfig {
            request_timeout: Duration::from_millis(300),
            ..ApiConfig::default()
        },
        ..Options::default()
    })
    .await;
    // Headers promise a body that never comes.
    let request = b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let response = raw_http(&node.base, request).await;
    let parsed = raw_error_code(&response);
    Transcript::new().write("timeout", parsed.0, &response);
    assert_error(&parsed, 408, "timeout");
    assert_eq!(node.get("/status").await.0, 200);
    node.shutdown().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_too_large() {
    let node = start(Options {
        api: ApiConfig {
            max_body_bytes: 1_000,
            ..ApiConfig::default()
        },
        ..Options::default()
    })
    .await;
    // No Content-Length: the limit can only be found while reading.
    let mut request =
        b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"1f4\r\n");
        request.extend_from_slice(&[b' '; 500]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw_http(&node.base, &request).await;
    Transcript::new().write("chunked too_large", 413, &response);
    assert_error(&raw_error_code(&response), 413, "too_large");
    node.shutdown().await;
}

/// Reads server-sent events until `count` complete events have arrived;
/// returns (event name, data) pairs, and the events' frames as sent.
async fn read_events(
    response: &mut reqwest::Response,
    count: usize,
) -> (Vec<(String, Value)>, Vec<String>) {
    let mut text = String::new();
    let mut events = Vec::new();
    let mut frames = Vec::new();
    let read = async {
        while events.len() < count {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the event stream ended early");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some((event, rest)) = text.split_once("\n\n") {
                let mut name = String::new();
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = d.to_owned();
                    }
                }
                if !name.is_empty() {
                    events.push((name, serde_json::from_str(&data).unwrap()));
                    frames.push(event.to_owned());
                }
                text = rest.to_owned();
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("events did not arrive within the deadline");
    (events, frames)
}

async fn subscribe(node: &TestNode) -> reqwest::Response {
    let response = tokio::time::timeout(
        DEADLINE,
        node.client.get(format!("{}/events", node.base)).send(),
    )
    .await
    .expect("no response within the deadline")
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

#[tokio::test]
async fn events_deliver_committed_blocks() {
    let node = start(Options::default()).await;
    let mut stream = subscribe(&node).await;
    let block = node.commit(vec![transfer(1, 3, 5, 0)], 1);
    let event = BlockEvent {
        height: block.height(),
        hash: block.hash(),
        tx_count: 1,
        timestamp_ms: block.header().timestamp_ms,
    };
    node.state.events.send(event.clone().into()).unwrap();
    let (events, frames) = read_events(&mut stream, 1).await;
    Transcript::new().write("event", 200, &frames[0]);
    assert_eq!(
        events,
        vec![(
            "block".to_owned(),
            json!({
                "height": 1, "hash": block.hash().to_string(), "tx_count": 1,
                "timestamp_ms": block.header().timestamp_ms
            })
        )]
    );
    node.shutdown().await;
}

#[tokio::test]
async fn events_deliver_reorganizations_and_finality() {
    let node = start(Options::default()).await;
    let mut stream = subscribe(&node).await;
    let hash = |i: u8| phalanx_chain::Hash::digest(&[i]);
    let reorg = ReorgEvent {
        ancestor_height: phalanx_chain::Height(4),
        ancestor_hash: hash(4),
        reverted: vec![hash(6), hash(5)],
    };
    node.state.events.send(reorg.into()).unwrap();
    let finalized = FinalizedEvent {
        height: phalanx_chain::Height(3),
    };
    node.state.events.send(finalized.into()).unwrap();
    let (events, frames) = read_events(&mut stream, 2).await;
    Transcript::new().write("reorg", 200, &frames.join("\n\n"));
    assert_eq!(
        events,
        vec![
            (
                "reorg".to_owned(),
                json!({
                    "ancestor_height": 4, "ancestor_hash": hash(4).to_string(),
                    "reverted": [hash(6).to_string(), hash(5).to_string()]
                })
            ),
            ("finalized".to_owned(), json!({ "height": 3 })),
        ]
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_how_many_events_it_missed() {
    // One thread: the server cannot read the channel while this loop sends.
    let node = start(Options::default()).await;
    let mut stream = subscribe(&node).await;
    let total = EVENT_BUFFER as u64 + 10;
    for height in 0..total {
        let event = BlockEvent {
            height: phalanx_chain::Height(height),
            hash: phalanx_chain::Hash::ZERO,
            tx_count: 0,
            timestamp_ms: 0,
        };
        node.state.events.send(event.into()).unwrap();
    }
    let (events, frames) = read_events(&mut stream, 2).await;
    Transcript::new().write("lagged", 200, &frames.join("\n\n"));
    assert_eq!(events[0], ("lagged".to_owned(), json!({ "missed": 10 })));
    assert_eq!(events[1].0, "block");
    assert_eq!(events[1].1["height"], 10);
    node.shutdown().await;
}

#[tokio::test]
async fn event_subscribers_are_capped_and_slots_come_back() {
    let node = start(Options {
        api: ApiConfig {
            max_event_subscribers: 1,
            ..ApiConfig::default()
        },
        ..Options::default()
    })
    .await;
    let first = subscribe(&node).await;
    let refused = node.get("/events").await;
    Transcript::new().record("too_many_subscribers", &node, &refused);
    assert_error(&refused, 503, "too_many_subscribers");
    drop(first);
    // The slot is freed once the server sees the connection close.
    let again = async {
        loop {
            let response = node
                .client
                .get(format!("{}/events", node.base))
                .send()
                .await
                .unwrap();
            if response.status().as_u16() == 200 {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _second = tokio::time::timeout(DEADLINE, again)
        .await
        .expect("the subscriber slot was not freed within the deadline");
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_event_streams() {
    let node = start(Options::default()).await;
    let mut stream = subscribe(&node).await;
    node.shutdown().await;
    let end = tokio::time::timeout(DEADLINE, stream.chunk())
        .await
        .expect("the stream did not end within the deadline");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn the_router_serves_without_serve() {
    // `router` for embedding: same routes, same error shape.
    let node = start(Options::default()).await;
    let app = api::router(node.state.clone(), &ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let response = node
        .send(node.client.get(format!("{base}/blocks/none")))
        .await;
    assert_error(&response, 400, "bad_height");
    server.abort();
    node.shutdown().await;
}

// ----- POST /txs/batch -----

/// The batch result `POST /txs` implies for a transaction (whose hash is
/// `hash`, if it is one): its answer's hash, or its hash and error.
fn as_batch_item(single: &(u16, Value), hash: Option<String>) -> Value {
    if single.0 == 202 {
        return single.1.clone();
    }
    let mut item = json!({ "error": single.1["error"].clone() });
    if let Some(hash) = hash {
        item["hash"] = json!(hash);
    }
    item
}

fn codes(response: &(u16, Value)) -> Vec<Option<&str>> {
    response.1["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str())
        .collect()
}

/// Sender 2's nonce 0 committed, sender 1's nonce 0 pending: returns them.
async fn mixed_state(node: &TestNode) -> (Transaction, Transaction) {
    let committed = transfer(2, 1, 10, 0);
    node.commit(vec![committed.clone()], 1);
    let pending = transfer(1, 3, 5, 0);
    assert_eq!(node.submit(&pending).await.0, 202);
    (committed, pending)
}

/// Against [`mixed_state`]: one transaction for each verdict.
fn mixed_batch(committed: &Transaction, pending: &Transaction) -> Vec<Transaction> {
    let good = transfer(1, 3, 5, 1);
    let mut forged = transfer(1, 3, 5, 2);
    forged.amount = Amount(6);
    let other_chain = elsewhere(1, 3, 5, 2);
    vec![
        good.clone(),
        forged,
        other_chain,
        pending.clone(),        // pending before the batch
        good,                   // earlier in this batch
        transfer(1, 3, 5, 65),  // 65 above the next nonce, 0
        committed.clone(),      // replayed after its commit
        transfer(1, 3, 6, 0),   // another nonce 0 of sender 1
        transfer(2, 1, 990, 1), // 991 of a balance of 989
        transfer(1, 3, 5, 2),
    ]
}

const MIXED_CODES: [Option<&str>; 10] = [
    None,
    Some("bad_signature"),
    Some("wrong_chain"),
    Some("duplicate"),
    Some("duplicate"),
    Some("nonce_gap"),
    Some("nonce_too_low"),
    Some("nonce_pending"),
    Some("insufficient_balance"),
    None,
];

#[tokio::test]
async fn a_batch_of_valid_transactions_is_admitted_listed_and_gossiped() {
    let node = start(Options::default()).await;
    let txs = vec![
        transfer(1, 3, 100, 0),
        transfer(2, 3, 10, 0),
        transfer(1, 4, 100, 1),
        transfer(1, 3, 100, 2),
    ];
    let hashes: Vec<String> = txs.iter().map(|t| t.hash().to_string()).collect();
    let response = node.batch(&txs).await;
    let results: Vec<Value> = hashes.iter().map(|h| json!({ "hash": h })).collect();
    assert_eq!(
        response,
        (
            200,
            json!({ "accepted": 4, "rejected": 0, "results": results })
        )
    );
    // Pending, in request order, and counted.
    let mempool = node.get("/mempool").await;
    assert_eq!(mempool.1["size"], 4);
    assert_eq!(mempool.1["txs"], json!(hashes));
    assert_eq!(
        node.get(&format!("/txs/{}", txs[3].hash())).await.1["status"],
        "pending"
    );
    let account = node.get(&format!("/accounts/{}", addr(1))).await;
    assert_eq!(account.1["pending_nonce"], 3);
    // Gossiped in order, in one message.
    assert_eq!(node.gossiped(4).await, txs);
    assert_eq!(node.messages(), 1);
    // A leader waiting for transactions was woken.
    tokio::time::timeout(DEADLINE, node.state.txs_available.notified())
        .await
        .expect("txs_available was not notified");
    let text = node.state.metrics.render();
    assert_lines(
        &text,
        &[
            "phalanx_http_requests_total{route=\"/txs/batch\",status=\"200\"} 1",
            "phalanx_mempool_txs 4",
            "phalanx_messages_sent_total{channel=\"transactions\",kind=\"tx_batch\",origin=\"authored\"} 1",
            "phalanx_txs_gossiped_total 4",
        ],
    );
    node.shutdown().await;
}

#[tokio::test]
async fn nonces_of_one_sender_in_one_batch_are_admitted_in_order() {
    let node = start(Options::default()).await;
    let mut doc = Transcript::new();
    // Sender 2 has 1,000: three transfers of 300 + 1 fit, a fourth does
    // not once the three are pending; a repeat is a duplicate; a value
    // that is not a transaction is refused alone.
    let txs = [
        transfer(2, 3, 300, 0),
        transfer(2, 3, 300, 1),
        transfer(2, 3, 300, 2),
        transfer(2, 3, 300, 3),
        transfer(2, 3, 300, 1),
    ];
    let mut items: Vec<String> = txs
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    items.push(r#"{"memo":"hello"}"#.to_owned());
    // One transaction a line, as docs/API.md shows it.
    let body = format!("[\n{}\n]\n", items.join(",\n"));
    doc.write("POST /txs/batch request body", 0, &body);
    let response = node
        .post_bytes("/txs/batch", body.into_bytes(), Some("application/json"))
        .await;
    doc.record("POST /txs/batch", &node, &response);
    assert_eq!(response.0, 200, "{}", response.1);
    assert_eq!(
        codes(&response),
        [
            None,
            None,
            None,
            Some("insufficient_balance"),
            Some("duplicate"),
            Some("unknown_field")
        ]
    );
    assert_eq!(
        (
            response.1["accepted"].clone(),
            response.1["rejected"].clone()
        ),
        (json!(3), json!(3))
    );
    let results = response.1["results"].as_array().unwrap();
    for (result, tx) in results.iter().zip(&txs) {
        assert_eq!(result["hash"], tx.hash().to_string());
    }
    assert_eq!(results[5].get("hash"), None, "{}", results[5]);
    assert_eq!(
        results[3]["error"]["message"],
        "balance 1000 does not cover 1204: amount plus fee of this transaction and of the sender's 3 pending transactions with lower nonces"
    );
    assert_eq!(
        node.pending(),
        txs[..3].iter().map(Transaction::hash).collect::<Vec<_>>()
    );
    assert_eq!(node.gossiped(3).await.len(), 3);
    node.shutdown().await;
}

#[tokio::test]
async fn each_transaction_of_a_mixed_batch_gets_the_verdict_post_txs_gives_it() {
    // Two nodes in the same state: one takes the batch, the other each of
    // its transactions through POST /txs, in the same order.
    let batched = start(Options::default()).await;
    let single = start(Options::default()).await;
    let (committed, pending) = mixed_state(&batched).await;
    assert_eq!(
        mixed_state(&single).await,
        (committed.clone(), pending.clone())
    );
    let txs = mixed_batch(&committed, &pending);
    let mut values: Vec<Value> = txs
        .iter()
        .map(|t| serde_json::to_value(t).unwrap())
        .collect();
    let mut not_a_tx = serde_json::to_value(&txs[0]).unwrap();
    not_a_tx.as_object_mut().unwrap().remove("nonce");
    values.insert(5, not_a_tx);

    let response = batched
        .post("/txs/batch", &Value::Array(values.clone()))
        .await;
    Transcript::new().record("POST /txs/batch (mixed)", &batched, &response);
    assert_eq!(response.0, 200, "{}", response.1);
    let mut expected_codes = MIXED_CODES.to_vec();
    expected_codes.insert(5, Some("invalid_json"));
    assert_eq!(codes(&response), expected_codes);
    assert_eq!(response.1["accepted"], 2);
    assert_eq!(response.1["rejected"], 9);

    let results = response.1["results"].as_array().unwrap();
    assert_eq!(results.len(), values.len());
    for (i, (value, result)) in values.iter().zip(results).enumerate() {
        let alone = single.post("/txs", value).await;
        let hash = serde_json::from_value::<Transaction>(value.clone())
            .ok()
            .map(|t| t.hash().to_string());
        assert_eq!(result, &as_batch_item(&alone, hash), "item {i}: {value}");
    }
    // The same transactions pending, in the same order; as many gossiped.
    assert_eq!(batched.pending(), single.pending());
    assert_eq!(batched.pending().len(), 3);
    assert_eq!(batched.gossiped(3).await, single.gossiped(3).await);
    batched.shutdown().await;
    single.shutdown().await;
}

#[tokio::test]
async fn the_binary_form_gets_the_same_answer_as_json() {
    let json_node = start(Options::default()).await;
    let binary_node = start(Options::default()).await;
    let (committed, pending) = mixed_state(&json_node).await;
    mixed_state(&binary_node).await;
    let txs = mixed_batch(&committed, &pending);
    let from_json = json_node.batch(&txs).await;
    let from_binary = binary_node.batch_binary(&txs).await;
    assert_eq!(from_binary.0, 200, "{}", from_binary.1);
    assert_eq!(codes(&from_binary), MIXED_CODES);
    assert_eq!(from_binary, from_json);
    assert_eq!(binary_node.pending(), json_node.pending());
    assert_eq!(binary_node.gossiped(3).await, json_node.gossiped(3).await);

    // One transaction: the count 1, then its encoding.
    let one = [transfer(2, 3, 5, 1)];
    let body = encoding::encode(&one[..]);
    assert_eq!(body[..1], [1]);
    assert_eq!(body[1..], encoding::encode(&one[0]));
    let mut doc = Transcript::new();
    doc.write("POST /txs/batch binary body (hex)", 0, &hex::encode(&body));
    let response = binary_node.batch_binary(&one).await;
    doc.record("POST /txs/batch (binary)", &binary_node, &response);
    assert_eq!(
        response,
        (
            200,
            json!({ "accepted": 1, "rejected": 0, "results": [{ "hash": one[0].hash().to_string() }] })
        )
    );
    // `application/octet-stream` with parameters is the binary form too.
    let response = binary_node
        .post_bytes(
            "/txs/batch",
            encoding::encode(&[transfer(2, 3, 5, 2)][..]),
            Some("Application/Octet-Stream; x=y"),
        )
        .await;
    assert_eq!(response.1["accepted"], 1, "{}", response.1);
    json_node.shutdown().await;
    binary_node.shutdown().await;
}

#[tokio::test]
async fn a_batch_over_the_limits_is_refused_whole() {
    let node = start(Options::default()).await;
    let mut doc = Transcript::new();
    let txs: Vec<Transaction> = (0..=MAX_BATCH_TXS as u64)
        .map(|nonce| transfer(1, 3, 1, nonce))
        .collect();
    assert!(serde_json::to_vec(&txs).unwrap().len() < MAX_BATCH_BODY_BYTES);

    let json_over = node.batch(&txs).await;
    doc.record("POST /txs/batch, 4,097 transactions", &node, &json_over);
    assert_error(&json_over, 413, "too_many_txs");
    assert_eq!(
        json_over.1["error"]["message"],
        "the batch holds more than 4096 transactions, the limit is 4096 per request"
    );
    let binary_over = node.batch_binary(&txs).await;
    doc.record(
        "POST /txs/batch, 4,097 transactions (binary)",
        &node,
        &binary_over,
    );
    assert_error(&binary_over, 413, "too_many_txs");
    assert_eq!(
        binary_over.1["error"]["message"],
        "the batch holds 4097 transactions, the limit is 4096 per request"
    );
    let big = node
        .post_bytes(
            "/txs/batch",
            vec![b' '; MAX_BATCH_BODY_BYTES + 1],
            Some("application/json"),
        )
        .await;
    doc.record("POST /txs/batch, body over the limit", &node, &big);
    assert_error(&big, 413, "too_large");
    assert_eq!(
        big.1["error"]["message"],
        format!("the request body exceeds the limit of {MAX_BATCH_BODY_BYTES} bytes")
    );
    assert!(node.pending().is_empty());
    assert!(node.gossiped(0).await.is_empty());

    // At the limit: every transaction gets its verdict (nonces above 64
    // are too far ahead).
    let full = node.batch_binary(&txs[..MAX_BATCH_TXS]).await;
    assert_eq!(full.0, 200);
    assert_eq!(full.1["results"].as_array().unwrap().len(), MAX_BATCH_TXS);
    assert_eq!(
        (full.1["accepted"].clone(), full.1["rejected"].clone()),
        (json!(65), json!(MAX_BATCH_TXS - 65))
    );
    assert_eq!(node.pending().len(), 65);
    node.shutdown().await;
}

#[tokio::test]
async fn a_chunked_batch_over_the_body_limit_is_413_too_large() {
    let node = start(Options::default()).await;
    let address = node.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // No Content-Length: the limit is found while reading. The server may
    // answer and stop reading before all is sent, so write errors are fine.
    let chunks = MAX_BATCH_BODY_BYTES / 4096 + 1;
    let write = tokio::spawn(async move {
        let head = b"POST /txs/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        writer.write_all(head).await?;
        for _ in 0..chunks {
            writer.write_all(b"1000\r\n").await?;
            writer.write_all(&[b' '; 4096]).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await
    });
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, reader.read_to_end(&mut response))
        .await
        .expect("no response within the deadline")
        .unwrap();
    let _ = write.await;
    let response = String::from_utf8_lossy(&response);
    let parsed = raw_error_code(&response);
    assert_error(&parsed, 413, "too_large");
    assert_eq!(
        parsed.1["error"]["message"],
        format!("the request body exceeds the limit of {MAX_BATCH_BODY_BYTES} bytes")
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_batch_that_does_not_parse_is_refused_whole() {
    let node = start(Options::default()).await;
    let mut doc = Transcript::new();
    let good = [transfer(1, 3, 5, 0)];
    let good_json = serde_json::to_string(&good[..]).unwrap();
    let good_binary = encoding::encode(&good[..]);
    let json_cases: [(&str, String, &str); 5] = [
        ("syntax", "[{\"chain_id\":".to_owned(), "invalid_json"),
        ("trailing", format!("{good_json} x"), "invalid_json"),
        (
            "not an array",
            serde_json::to_string(&good[0]).unwrap(),
            "invalid_json",
        ),
        ("empty", "[]".to_owned(), "empty_batch"),
        ("null", "null".to_owned(), "invalid_json"),
    ];
    for (name, body, code) in json_cases {
        let response = node
            .post_bytes("/txs/batch", body.into_bytes(), Some("application/json"))
            .await;
        doc.record(&format!("POST /txs/batch, {name}"), &node, &response);
        assert_error(&response, 400, code);
    }
    let truncated = good_binary[..good_binary.len() - 1].to_vec();
    let mut trailing = good_binary.clone();
    trailing.push(0);
    let mut overlong = vec![0x81, 0x00];
    overlong.extend(&good_binary[1..]);
    let binary_cases = [
        ("truncated", truncated, "invalid_encoding"),
        ("trailing", trailing, "invalid_encoding"),
        ("overlong count", overlong, "invalid_encoding"),
        ("no count", Vec::new(), "invalid_encoding"),
        ("empty", vec![0], "empty_batch"),
    ];
    for (name, body, code) in binary_cases {
        let response = node
            .post_bytes("/txs/batch", body, Some("application/octet-stream"))
            .await;
        doc.record(
            &format!("POST /txs/batch (binary), {name}"),
            &node,
            &response,
        );
        assert_error(&response, 400, code);
    }
    assert!(node.pending().is_empty());
    assert!(node.gossiped(0).await.is_empty());
    // The same transaction, well formed, is admitted.
    assert_eq!(node.batch_binary(&good).await.1["accepted"], 1);
    node.shutdown().await;
}

#[tokio::test]
async fn a_batch_needs_json_or_octet_stream() {
    let node = start(Options::default()).await;
    let mut doc = Transcript::new();
    let body = serde_json::to_vec(&[transfer(1, 3, 5, 0)]).unwrap();
    for content_type in [Some("text/plain"), None, Some("application/postcard")] {
        let response = node
            .post_bytes("/txs/batch", body.clone(), content_type)
            .await;
        doc.record(
            &format!("POST /txs/batch, Content-Type: {content_type:?}"),
            &node,
            &response,
        );
        assert_error(&response, 415, "unsupported_media_type");
    }
    // POST /txs takes no binary body.
    let binary = encoding::encode(&transfer(1, 3, 5, 0));
    let response = node
        .post_raw(binary, Some("application/octet-stream"))
        .await;
    assert_error(&response, 415, "unsupported_media_type");
    let get = node.get("/txs/batch").await;
    assert_error(&get, 405, "method_not_allowed");
    assert!(node.pending().is_empty());
    node.shutdown().await;
}

// ----- proof of work -----

/// The same accounts on a proof-of-work chain, final at three
/// confirmations.
fn pow_genesis() -> Genesis {
    let easy = CompactTarget(0x207f_ffff);
    Genesis {
        consensus: ConsensusKind::Pow,
        validators: Vec::new(),
        pow: Some(PowParams {
            initial_target: easy,
            target_limit: easy,
            block_interval_ms: 1_000,
            retarget_window: 1,
            confirmations: 3,
            block_reward: Amount(50),
            max_future_drift_ms: 15_000,
        }),
        ..genesis()
    }
}

/// A miner that is never given work: the API only uses its control.
fn idle_miner() -> (Miner, tokio::sync::mpsc::Receiver<Found>) {
    let (found, mined) = tokio::sync::mpsc::channel(MINED_QUEUE);
    let config = MinerConfig {
        threads: 1,
        hashrate_limit: 50,
        clock: phalanx_node::driver::now_ms,
    };
    let miner = Miner::start(config, MinerCounters::default(), found).unwrap();
    (miner, mined)
}

/// A mining node's live status, knowing `tips`.
fn mining_live(miner: &Miner, tips: Vec<ChainTip>) -> LiveStatus {
    LiveStatus {
        view: 0,
        phase: Some("mining"),
        mining: Some(MiningStatus {
            address: addr(1),
            threads: 1,
            hashrate_limit: 50,
            hash_rate: 48,
            working: true,
            control: miner.control(),
        }),
        tips,
        ..LiveStatus::default()
    }
}

async fn start_pow(live: LiveStatus) -> TestNode {
    start(Options {
        genesis: Some(pow_genesis()),
        live: Some(live),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn a_proof_of_work_status_shows_tips_work_and_confirmations() {
    let (miner, _mined) = idle_miner();
    let tip = |byte: u8, height: u64, work: &str, branch_len: u64, active: bool| ChainTip {
        hash: phalanx_chain::Hash([byte; 32]),
        height: Height(height),
        work: work.to_owned(),
        branch_len,
        active,
    };
    let tips = vec![tip(0xaa, 7, "10", 0, true), tip(0xbb, 6, "e", 2, false)];
    let node = start_pow(mining_live(&miner, tips)).await;
    let status = node.get("/status").await;
    Transcript::new().record("GET /status (proof of work)", &node, &status);
    assert_eq!(status.0, 200);
    let body = &status.1;
    assert_eq!(body["consensus"], "pow");
    assert_eq!(body["validator"], Value::Null);
    assert_eq!(
        body["tips"],
        json!([
            { "hash": "aa".repeat(32), "height": 7, "work": "10", "branch_len": 0, "active": true },
            { "hash": "bb".repeat(32), "height": 6, "work": "e", "branch_len": 2, "active": false },
        ])
    );
    assert_eq!(body["work"], "10");
    assert_eq!(body["confirmations"], 3);
    assert_eq!(
        body["mining"],
        json!({
            "address": addr(1).to_string(), "threads": 1, "hashrate_limit": 50,
            "hash_rate": 48, "working": true, "on_demand": 0
        })
    );
    node.shutdown().await;
    miner.stop();
}

#[tokio::test]
async fn mine_asks_the_miner_for_blocks_now_within_bounds() {
    let (miner, _mined) = idle_miner();
    let node = start_pow(mining_live(&miner, Vec::new())).await;
    let mut doc = Transcript::new();

    let first = node.post("/mine", &json!({ "blocks": 3 })).await;
    doc.record("POST /mine", &node, &first);
    assert_eq!(first, (202, json!({ "mining": 3, "requested": 3 })));
    // A second request adds to the first, up to the cap.
    let second = node.post("/mine", &json!({ "blocks": 998 })).await;
    doc.record("POST /mine (again)", &node, &second);
    assert_eq!(second, (202, json!({ "mining": 1_000, "requested": 998 })));
    assert_eq!(miner.control().on_demand(), 1_000);
    let status = node.get("/status").await;
    assert_eq!(status.1["mining"]["on_demand"], 1_000);

    for body in [
        json!({ "blocks": 0 }),
        json!({ "blocks": 1_001 }),
        json!({ "blocks": -1 }),
        json!({ "count": 1 }),
        json!({}),
    ] {
        let refused = node.post("/mine", &body).await;
        doc.record(&format!("POST /mine {body}"), &node, &refused);
        assert_error(&refused, 400, "bad_blocks");
    }
    assert_error(
        &node
            .send(
                node.client
                    .post(format!("{}/mine", node.base))
                    .header("content-type", "application/json")
                    .body("{\"blocks\":"),
            )
            .await,
        400,
        "invalid_json",
    );
    assert_error(
        &node
            .send(
                node.client
                    .post(format!("{}/mine", node.base))
                    .body("{\"blocks\":1}"),
            )
            .await,
        415,
        "unsupported_media_type",
    );
    // Nothing refused changed the count.
    assert_eq!(miner.control().on_demand(), 1_000);

    // A stopped miner takes no more requests.
    miner.stop();
    let stopped = node.post("/mine", &json!({ "blocks": 1 })).await;
    assert_error(&stopped, 409, "not_mining");
    node.shutdown().await;
}

#[tokio::test]
async fn mine_is_refused_where_nothing_mines() {
    let mut doc = Transcript::new();
    // A BFT chain.
    let bft = start(Options::default()).await;
    let refused = bft.post("/mine", &json!({ "blocks": 1 })).await;
    doc.record("POST /mine (BFT chain)", &bft, &refused);
    assert_error(&refused, 409, "not_mining");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hotstuff"),
        "{}",
        refused.1
    );
    bft.shutdown().await;

    // A proof-of-work node without a miner.
    let follower = start_pow(LiveStatus::default()).await;
    let refused = follower.post("/mine", &json!({ "blocks": 1 })).await;
    doc.record("POST /mine (not mining)", &follower, &refused);
    assert_error(&refused, 409, "not_mining");
    assert_eq!(follower.get("/status").await.1["mining"], Value::Null);
    follower.shutdown().await;

    // A miner whose consensus halted.
    let (miner, _mined) = idle_miner();
    let halted = start_pow(LiveStatus {
        halted: Some("storing block x failed: disk full".into()),
        ..mining_live(&miner, Vec::new())
    })
    .await;
    let refused = halted.post("/mine", &json!({ "blocks": 1 })).await;
    assert_error(&refused, 409, "not_mining");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "{}",
        refused.1
    );
    assert_eq!(miner.control().on_demand(), 0);
    halted.shutdown().await;
    miner.stop();
}
