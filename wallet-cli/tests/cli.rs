//! The `phalanx-wallet` binary against a real node.
//!
//! Each test that needs a chain starts a two-validator HotStuff committee,
//! or one proof-of-work miner, in this process (in-memory network and
//! stores, an HTTP API on 127.0.0.1:0) whose genesis funds keys the test
//! imports into a temporary wallet directory, then drives the wallet
//! binary as a user would. Events a live chain cannot be made to send on
//! cue (a reorganization) come from a scripted event stream on
//! 127.0.0.1:0. Deadlines only bound waits that could hang; nothing
//! asserts how long anything took.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use phalanx_chain::genesis::{GenesisAccount, GenesisValidator, PowParams};
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::store::SledOptions;
use phalanx_chain::{Amount, ChainId, ConsensusKind, Genesis, MemStore, SledStore, Store};
use phalanx_crypto::Keypair;
use phalanx_node::config::Config;
use phalanx_node::net::memory::MemoryNet;
use phalanx_node::node::{Parts, RunningNode, start};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAIN: &str = "wallet-test";
/// Bounds any single wallet run, so a hang fails instead of blocking.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
/// Bounds waiting for a transfer to become final in the tests' own polls.
const FINALITY_DEADLINE: Duration = Duration::from_secs(60);
const FAUCET_BALANCE: u64 = 1_000_000;
const POOR_BALANCE: u64 = 10;

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i; 32])
}

/// Key 1 is the faucet, key 2 is poor; the validators are keys 100, 101...
fn genesis(validators: u8) -> Genesis {
    Genesis {
        chain_id: ChainId::new(CHAIN).unwrap(),
        consensus: ConsensusKind::Hotstuff,
        genesis_time_ms: 1_767_225_600_000,
        validators: (0..validators)
            .map(|i| GenesisValidator {
                public_key: key(100 + i).public(),
                address: format!("/memory/{i}"),
            })
            .collect(),
        pow: None,
        accounts: vec![
            GenesisAccount {
                address: key(1).public().into(),
                balance: Amount(FAUCET_BALANCE),
            },
            GenesisAccount {
                address: key(2).public().into(),
                balance: Amount(POOR_BALANCE),
            },
        ],
    }
}

/// Validator nodes running on their own runtime while the test thread runs
/// the wallet binary; the wallet talks to validator 0.
struct TestNode {
    runtime: tokio::runtime::Runtime,
    nodes: Vec<RunningNode>,
    _net: MemoryNet,
    url: String,
    /// Where node 0's sled store is, if it has one.
    _dir: Option<tempfile::TempDir>,
}

impl TestNode {
    fn start(validators: u8, running: u8) -> TestNode {
        TestNode::start_with(validators, running, None)
    }

    /// [`TestNode::start`], with validator 0 on a sled store that keeps
    /// no transaction index.
    fn start_unindexed(validators: u8, running: u8) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions {
            tx_index: false,
            ..SledOptions::default()
        };
        let store = SledStore::open_with(dir.path(), options).unwrap();
        let mut node = TestNode::start_with(validators, running, Some(Arc::new(store)));
        node._dir = Some(dir);
        node
    }

    /// The first `running` validators of a genesis with `validators`, on
    /// one in-memory network, with an HTTP API on validator 0.
    ///
    /// Two validators, not one: a one-validator committee currently
    /// recurses through propose -> own vote -> certificate -> next view
    /// -> propose without returning while a transaction waits to be
    /// committed, and overflows its stack (a consensus/node issue outside
    /// this crate). With two, each vote crosses the network.
    fn start_with(validators: u8, running: u8, first: Option<Arc<dyn Store>>) -> TestNode {
        let mut first = first;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let net = MemoryNet::new();
        let mut config = Config::default();
        config.consensus.base_timeout_ms = 1_000;
        config.consensus.max_timeout_ms = 4_000;
        config.consensus.max_batch_delay_ms = 100;
        config.consensus.empty_block_delay_ms = 400;
        let nodes = runtime.block_on(async {
            let mut nodes = Vec::new();
            for i in 0..running {
                let validator = key(100 + i);
                let (gossip, inbound) = net.join(validator.public(), 8_192);
                let api = if i == 0 {
                    Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
                } else {
                    None
                };
                let store = match first.take() {
                    Some(store) => store,
                    None => Arc::new(MemStore::new()),
                };
                let node = start(Parts {
                    config: config.clone(),
                    genesis: genesis(validators),
                    key: validator,
                    store,
                    net: Arc::new(gossip),
                    inbound,
                    api,
                })
                .await
                .unwrap();
                nodes.push(node);
            }
            nodes
        });
        let url = format!("http://{}", nodes[0].api_addr.unwrap());
        TestNode {
            runtime,
            nodes,
            _net: net,
            url,
            _dir: None,
        }
    }
}

impl TestNode {
    /// One mining node of a proof-of-work chain with the same accounts,
    /// final at `confirmations`. Half of all hashes meet the target and
    /// the miner does ten a second: about five blocks a second.
    fn start_pow(confirmations: u64) -> TestNode {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let net = MemoryNet::new();
        let mut config = Config::default();
        config.mining.enabled = true;
        config.mining.threads = 1;
        config.mining.hashrate_limit = 10;
        let easy = CompactTarget(0x207f_ffff);
        let genesis = Genesis {
            consensus: ConsensusKind::Pow,
            validators: Vec::new(),
            pow: Some(PowParams {
                initial_target: easy,
                target_limit: easy,
                block_interval_ms: 200,
                retarget_window: 1,
                confirmations,
                block_reward: Amount(50),
                max_future_drift_ms: 15_000,
            }),
            ..genesis(0)
        };
        let miner = key(100);
        let node = runtime.block_on(async {
            let (gossip, inbound) = net.join(miner.public(), 8_192);
            let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            start(Parts {
                config,
                genesis,
                key: miner,
                store: Arc::new(MemStore::new()),
                net: Arc::new(gossip),
                inbound,
                api: Some(api),
            })
            .await
            .unwrap()
        });
        let url = format!("http://{}", node.api_addr.unwrap());
        TestNode {
            runtime,
            nodes: vec![node],
            _net: net,
            url,
            _dir: None,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        for node in self.nodes.drain(..) {
            self.runtime.block_on(node.stop());
        }
    }
}

/// A wallet directory with the wallet binary pointed at a node.
struct Wallet {
    dir: tempfile::TempDir,
    rpc: String,
}

impl Wallet {
    fn new(rpc: &str) -> Wallet {
        Wallet {
            dir: tempfile::tempdir().unwrap(),
            rpc: rpc.to_owned(),
        }
    }

    fn wallet_dir(&self) -> PathBuf {
        self.dir.path().join("wallet")
    }

    /// The wallet binary with this wallet's directory and node, and no
    /// passphrase unless the test gives one.
    fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_phalanx-wallet"));
        cmd.env("PHALANX_WALLET_DIR", self.wallet_dir())
            .env("PHALANX_RPC", &self.rpc)
            .env_remove("PHALANX_PASSPHRASE")
            .timeout(RUN_DEADLINE)
            .args(args);
        cmd
    }

    /// Runs the wallet and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.cmd(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", shown(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs the wallet with `--json` and requires success; returns the
    /// document.
    fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let stdout = self.ok(&args);
        assert_eq!(stdout.lines().count(), 1, "one document: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }

    /// Runs the wallet and requires failure with `exit` status.
    fn fails(&self, cmd: &mut assert_cmd::Command, exit: i32) -> Output {
        let output = cmd.output().unwrap();
        assert_eq!(output.status.code(), Some(exit), "{}", shown(&output));
        output
    }

    /// Writes key `i` as a plain (version 1) key file and imports it.
    fn import_seed(&self, name: &str, i: u8) {
        let file = self.dir.path().join(format!("{name}-source.json"));
        phalanx_crypto::keyfile::write_key_file(&file, &key(i)).unwrap();
        let shown = self.json(&["import", "--name", name, file.to_str().unwrap()]);
        assert_eq!(shown["address"], key(i).public().to_string());
        assert_eq!(shown["encrypted"], false);
    }

    /// Polls `tx` until the transaction is finalized; returns its document.
    fn wait_final(&self, hash: &str) -> Value {
        let start = Instant::now();
        loop {
            let doc = self.json(&["tx", hash]);
            if doc["status"] == "finalized" {
                return doc;
            }
            assert!(
                start.elapsed() < FINALITY_DEADLINE,
                "{hash} never became final: {doc}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pending_book(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.wallet_dir().join("pending.json")).unwrap();
        let book: Value = serde_json::from_str(&text).unwrap();
        book["transfers"].as_array().unwrap().clone()
    }
}

fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn keys_are_created_listed_imported_and_completed_without_a_node() {
    let wallet = Wallet::new(&closed_port_url());

    let alice = wallet.json(&["keygen", "--name", "alice"]);
    assert_eq!(alice["encrypted"], false);
    let alice_path = PathBuf::from(alice["path"].as_str().unwrap());
    assert_eq!(mode(&alice_path), 0o600);
    assert_eq!(mode(&wallet.wallet_dir()), 0o700);
    let alice_address = alice["address"].as_str().unwrap().to_owned();
    assert_eq!(wallet.ok(&["address", "alice"]).trim(), alice_address);

    let bob = wallet
        .cmd(&["keygen", "--name", "bob", "--encrypt"])
        .env("PHALANX_PASSPHRASE", "hunter2")
        .output()
        .unwrap();
    assert!(bob.status.success(), "{}", shown(&bob));
    let bob_text = String::from_utf8(bob.stdout).unwrap();
    assert!(bob_text.contains("(encrypted)"), "{bob_text}");
    let bob_file =
        std::fs::read_to_string(wallet.wallet_dir().join("keys").join("bob.json")).unwrap();
    let bob_json: Value = serde_json::from_str(&bob_file).unwrap();
    assert_eq!(bob_json["version"], 2);
    assert_eq!(bob_json["kdf"]["algorithm"], "argon2id");
    assert!(bob_json.get("secret_key").is_none());

    // An encrypted key needs its passphrase only to sign: its address is
    // in clear.
    let listed = wallet.json(&["list"]);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["name"], "alice");
    assert_eq!(keys[0]["address"], alice_address);
    assert_eq!(keys[1]["name"], "bob");
    assert_eq!(keys[1]["encrypted"], true);
    assert_eq!(keys[1]["address"], bob_json["public_key"]);
    let text = wallet.ok(&["list"]);
    assert!(
        text.contains(&alice_address) && text.contains("yes"),
        "{text}"
    );

    // Import a plain file as is, and another encrypting it on the way.
    wallet.import_seed("carol", 7);
    let source = wallet.dir.path().join("dave-source.json");
    phalanx_crypto::keyfile::write_key_file(&source, &key(8)).unwrap();
    let dave = wallet
        .cmd(&["--json", "import", "--encrypt", "--name", "dave"])
        .arg(&source)
        .env("PHALANX_PASSPHRASE", "pw")
        .output()
        .unwrap();
    assert!(dave.status.success(), "{}", shown(&dave));
    let dave: Value = serde_json::from_slice(&dave.stdout).unwrap();
    assert_eq!(dave["encrypted"], true);
    assert_eq!(dave["address"], key(8).public().to_string());
    // An encrypted file imports as it is, without its passphrase.
    let erin = wallet.json(&["import", "--name", "erin", dave["path"].as_str().unwrap()]);
    assert_eq!(erin["encrypted"], true);
    assert_eq!(erin["address"], dave["address"]);

    // Names are never reused, and an empty passphrase protects nothing.
    let again = wallet.fails(&mut wallet.cmd(&["--json", "keygen", "--name", "alice"]), 1);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["error"]["code"], "key_exists");
    let empty = wallet.fails(
        wallet
            .cmd(&["keygen", "--name", "frank", "--encrypt"])
            .env("PHALANX_PASSPHRASE", ""),
        1,
    );
    assert!(
        stderr(&empty).contains("empty passphrase"),
        "{}",
        shown(&empty)
    );
    let no_tty = wallet.fails(
        &mut wallet.cmd(&["keygen", "--name", "frank", "--encrypt"]),
        1,
    );
    assert!(
        stderr(&no_tty).contains("PHALANX_PASSPHRASE"),
        "{}",
        shown(&no_tty)
    );
    assert!(!wallet.wallet_dir().join("keys").join("frank.json").exists());
    let bad_name = wallet.fails(&mut wallet.cmd(&["keygen", "--name", "../x"]), 1);
    assert!(
        stderr(&bad_name).contains("invalid key name"),
        "{}",
        shown(&bad_name)
    );
    let unknown = wallet.fails(&mut wallet.cmd(&["address", "zed"]), 1);
    assert!(
        stderr(&unknown).contains("no key named \"zed\""),
        "{}",
        shown(&unknown)
    );

    let script = wallet.ok(&["completions", "bash"]);
    assert!(script.contains("phalanx-wallet"), "{script}");
    for command in ["keygen", "transfer", "watch", "completions"] {
        assert!(script.contains(command), "{command} missing");
    }
}

#[test]
fn a_node_without_a_transaction_index_cannot_say_and_the_wallet_says_so() {
    let node = TestNode::start_unindexed(2, 2);
    let wallet = Wallet::new(&node.url);
    wallet.import_seed("faucet", 1);
    wallet.json(&["keygen", "--name", "bob"]);
    let output = wallet.fails(
        &mut wallet.cmd(&[
            "--json", "transfer", "--from", "faucet", "--to", "bob", "--amount", "7",
        ]),
        5,
    );
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "tx_index_off", "{}", shown(&output));
    assert_eq!(error["error"]["source"], "wallet");
    assert_eq!(error["error"]["rpc"], node.url);
    let hash = error["error"]["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{error}");
    // It was committed all the same: the sender's nonce moved past it.
    assert_eq!(wallet.json(&["balance", "faucet"])["nonce"], 1);
}

#[test]
fn a_transfer_waits_for_finality_and_the_chain_can_be_inspected() {
    let node = TestNode::start(2, 2);
    let wallet = Wallet::new(&node.url);
    wallet.import_seed("faucet", 1);
    let bob = wallet.json(&["keygen", "--name", "bob"]);
    let bob_address = bob["address"].as_str().unwrap().to_owned();

    let status = wallet.json(&["status"]);
    assert_eq!(status["chain_id"], CHAIN);
    assert_eq!(status["consensus"], "hotstuff");
    assert!(status["view"].is_u64(), "{status}");
    assert!(status["phase"].is_string(), "{status}");
    assert!(status["view_timeout_ms"].is_u64(), "{status}");
    let text = wallet.ok(&["status"]);
    assert!(text.contains(&node.url) && text.contains(CHAIN), "{text}");
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with(' ')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} line in {text}"))
            .to_owned()
    };
    assert_eq!(line("consensus"), "hotstuff");
    assert!(line("view").parse::<u64>().is_ok(), "{text}");
    // A validator runs the protocol: its phase is never null (-).
    assert!(
        ["normal", "timed-out"].contains(&line("phase").as_str()),
        "{text}"
    );
    let timeout = line("view timeout");
    assert!(
        timeout
            .strip_suffix(" ms")
            .is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "{text}"
    );

    let balance = wallet.json(&["balance", "faucet"]);
    assert_eq!(balance["balance"], FAUCET_BALANCE);
    assert_eq!(balance["nonce"], 0);

    // Text output: waits, then shows the final height, its
    // confirmations (on a BFT chain, the block and those on top) and the
    // fee.
    let text = wallet.ok(&[
        "transfer", "--from", "faucet", "--to", "bob", "--amount", "250", "--fee", "3",
    ]);
    assert!(text.contains("status         finalized"), "{text}");
    let confirmations = text
        .lines()
        .find_map(|l| l.strip_prefix("confirmations  "))
        .unwrap_or_else(|| panic!("no confirmations in {text}"));
    assert!(confirmations.parse::<u64>().unwrap() >= 1, "{text}");
    let height_line = text.lines().find(|l| l.starts_with("height")).unwrap();
    let height: u64 = height_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(height >= 1, "{text}");
    assert!(text.lines().any(|l| l == "fee            3"), "{text}");
    let hash_line = text.lines().find(|l| l.starts_with("hash")).unwrap();
    let first_hash = hash_line.split_whitespace().nth(1).unwrap().to_owned();

    // JSON output, to an address this time.
    let second = wallet.json(&[
        "transfer",
        "--from",
        "faucet",
        "--to",
        &bob_address,
        "--amount",
        "50",
    ]);
    assert_eq!(second["status"], "finalized");
    assert_eq!(second["fee"], 1);
    assert_eq!(second["nonce"], 1);
    assert_eq!(second["to"], bob_address);
    assert!(second["height"].as_u64().unwrap() >= height);

    let bob_balance = wallet.json(&["balance", "bob"]);
    assert_eq!(bob_balance["balance"], 300);
    let faucet = wallet.json(&["balance", &key(1).public().to_string()]);
    assert_eq!(faucet["balance"], FAUCET_BALANCE - 250 - 3 - 50 - 1);
    assert_eq!(faucet["nonce"], 2);

    let tx = wallet.json(&["tx", &first_hash]);
    assert_eq!(tx["status"], "finalized");
    assert_eq!(tx["height"], height);
    let text = wallet.ok(&["tx", &first_hash]);
    assert!(
        text.contains("finalized") && text.contains(&first_hash),
        "{text}"
    );

    let block = wallet.json(&["block", &height.to_string()]);
    assert_eq!(block["header"]["height"], height);
    assert_eq!(block["hash"], tx["block_hash"]);
    assert!(
        block["transactions"]
            .as_array()
            .unwrap()
            .contains(&first_hash.clone().into())
    );
    let text = wallet.ok(&["block", &height.to_string()]);
    assert!(
        text.contains(&first_hash) && text.contains("bft, view"),
        "{text}"
    );
    let genesis = wallet.ok(&["block", "0"]);
    assert!(genesis.contains("justified   genesis"), "{genesis}");
    let latest = wallet.json(&["block"]);
    assert!(latest["header"]["height"].as_u64().unwrap() >= height);

    // The node refuses what the faucet's poor neighbour cannot pay for.
    wallet.import_seed("poor", 2);
    let refused = wallet.fails(
        &mut wallet.cmd(&[
            "transfer", "--from", "poor", "--to", "bob", "--amount", "100",
        ]),
        4,
    );
    let message = stderr(&refused);
    assert!(message.contains("insufficient_balance"), "{message}");
    assert!(message.contains("does not cover"), "{message}");
    assert!(refused.stdout.is_empty());
    let refused = wallet.fails(
        &mut wallet.cmd(&[
            "--json", "transfer", "--from", "poor", "--to", "bob", "--amount", "100",
        ]),
        4,
    );
    let error: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(error["error"]["code"], "insufficient_balance");
    assert_eq!(error["error"]["source"], "node");

    // Questions the node answers with not_found are refusals too.
    let missing = wallet.fails(&mut wallet.cmd(&["tx", &"cd".repeat(32)]), 4);
    assert!(
        stderr(&missing).contains("not_found"),
        "{}",
        shown(&missing)
    );
}

#[test]
fn back_to_back_transfers_without_waiting_get_their_own_nonces() {
    let node = TestNode::start(2, 2);
    let wallet = Wallet::new(&node.url);
    // The faucet, encrypted on import.
    let source = wallet.dir.path().join("faucet-source.json");
    phalanx_crypto::keyfile::write_key_file(&source, &key(1)).unwrap();
    let imported = wallet
        .cmd(&["import", "--encrypt", "--name", "faucet"])
        .arg(&source)
        .env("PHALANX_PASSPHRASE", "open sesame")
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", shown(&imported));
    let to = key(3).public().to_string();
    let send = |amount: &str| {
        let output = wallet
            .cmd(&[
                "--json",
                "transfer",
                "--from",
                "faucet",
                "--to",
                &to,
                "--amount",
                amount,
                "--no-wait",
            ])
            .env("PHALANX_PASSPHRASE", "open sesame")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", shown(&output));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let first = send("10");
    let second = send("20");
    assert_eq!(first["status"], "pending");
    assert_eq!(second["status"], "pending");
    assert_eq!(first["nonce"], 0);
    assert_eq!(second["nonce"], 1);
    assert_ne!(first["hash"], second["hash"]);

    // The wallet remembers the last while it is pending (the first may
    // have been final, and so forgotten, by the time the second was sent).
    let book = wallet.pending_book();
    assert!(
        book.iter()
            .any(|t| t["hash"] == second["hash"] && t["nonce"] == 1),
        "{book:?}"
    );
    // A third, sent at once and waited for, follows them; once it is final
    // the wallet forgets it and everything below its nonce.
    let third = wallet
        .cmd(&[
            "--json", "transfer", "--from", "faucet", "--to", &to, "--amount", "5",
        ])
        .env("PHALANX_PASSPHRASE", "open sesame")
        .output()
        .unwrap();
    assert!(third.status.success(), "{}", shown(&third));
    let third: Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(third["nonce"], 2);
    assert_eq!(third["status"], "finalized");
    assert_eq!(wallet.pending_book(), Vec::<Value>::new());

    let first_final = wallet.wait_final(first["hash"].as_str().unwrap());
    let second_final = wallet.wait_final(second["hash"].as_str().unwrap());
    assert!(second_final["height"].as_u64() >= first_final["height"].as_u64());
    assert!(third["height"].as_u64() >= second_final["height"].as_u64());
    assert_eq!(wallet.json(&["balance", &to])["balance"], 35);

    // A wrong passphrase: a clear error, nothing on stdout, nothing sent.
    let wrong = wallet.fails(
        wallet
            .cmd(&["transfer", "--from", "faucet", "--to", &to, "--amount", "5"])
            .env("PHALANX_PASSPHRASE", "open barley"),
        1,
    );
    assert!(
        stderr(&wrong).contains("wrong passphrase"),
        "{}",
        shown(&wrong)
    );
    assert!(wrong.stdout.is_empty(), "{}", shown(&wrong));
    let wrong = wallet.fails(
        wallet
            .cmd(&[
                "--json", "transfer", "--from", "faucet", "--to", &to, "--amount", "5",
            ])
            .env("PHALANX_PASSPHRASE", "open barley"),
        1,
    );
    let error: Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert_eq!(error["error"]["code"], "wrong_passphrase");
    assert_eq!(wallet.json(&["balance", "faucet"])["nonce"], 3);
}

/// Wallets started at the same moment on one wallet directory, all from
/// the same sender: each waits its turn for the pending book, so each gets
/// its own nonce and the node accepts every one.
#[test]
fn simultaneous_transfers_from_one_wallet_directory_get_their_own_nonces() {
    const WALLETS: usize = 6;
    let node = TestNode::start(2, 2);
    let wallet = Wallet::new(&node.url);
    wallet.import_seed("faucet", 1);
    let to = key(4).public().to_string();
    let children: Vec<std::process::Child> = (0..WALLETS)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_phalanx-wallet"))
                .env("PHALANX_WALLET_DIR", wallet.wallet_dir())
                .env("PHALANX_RPC", &node.url)
                .args(["--json", "transfer", "--from", "faucet", "--to", &to])
                .args(["--amount", "1", "--no-wait"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut nonces: Vec<u64> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{}", shown(&output));
            let sent: Value = serde_json::from_slice(&output.stdout).unwrap();
            sent["nonce"].as_u64().unwrap()
        })
        .collect();
    nonces.sort_unstable();
    assert_eq!(nonces, (0..WALLETS as u64).collect::<Vec<_>>());
    let start = Instant::now();
    while wallet.json(&["balance", &to])["balance"] != WALLETS as u64 {
        assert!(start.elapsed() < FINALITY_DEADLINE, "not all final");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_prints_blocks_as_they_are_committed() {
    let node = TestNode::start(2, 2);
    let wallet = Wallet::new(&node.url);
    let text = wallet.ok(&["watch", "--count", "2"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let heights: Vec<u64> = lines
        .iter()
        .map(|line| {
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("block"), "{line}");
            words.next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(heights[1] > heights[0], "{text}");

    let output = wallet
        .cmd(&["--json", "watch", "--count", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", shown(&output));
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    for event in &events {
        assert_eq!(event["event"], "block");
        assert_eq!(event["hash"].as_str().unwrap().len(), 64);
        assert!(event["height"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn a_transfer_that_never_becomes_final_times_out_with_its_hash() {
    // Two validators in genesis, one running: no quorum, no commits.
    let node = TestNode::start(2, 1);
    let wallet = Wallet::new(&node.url);
    wallet.import_seed("faucet", 1);
    let to = key(3).public().to_string();
    let output = wallet.fails(
        &mut wallet.cmd(&[
            "transfer",
            "--from",
            "faucet",
            "--to",
            &to,
            "--amount",
            "1",
            "--timeout",
            "1",
        ]),
        5,
    );
    let message = stderr(&output);
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains("(last seen: pending)"), "{message}");
    let hash = wallet.pending_book()[0]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&format!("phalanx-wallet tx {hash}")),
        "{message}"
    );
    assert_eq!(wallet.json(&["tx", &hash])["status"], "pending");

    let output = wallet.fails(
        &mut wallet.cmd(&[
            "--json",
            "transfer",
            "--from",
            "faucet",
            "--to",
            &to,
            "--amount",
            "1",
            "--timeout",
            "0",
        ]),
        5,
    );
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "timeout");
    assert_eq!(error["error"]["hash"].as_str().unwrap().len(), 64);
    assert_ne!(error["error"]["hash"], hash);
}

#[test]
fn no_node_and_bad_input_give_clear_errors() {
    let url = closed_port_url();
    let wallet = Wallet::new(&url);
    wallet.import_seed("faucet", 1);

    for args in [
        &["status"][..],
        &["balance", "faucet"],
        &["block", "latest"],
        &["watch"],
        &[
            "transfer", "--from", "faucet", "--to", "faucet", "--amount", "1",
        ],
    ] {
        let output = wallet.fails(&mut wallet.cmd(args), 3);
        let message = stderr(&output);
        assert!(
            message.contains(&format!("no node answered at {url}")),
            "{message}"
        );
        assert!(message.contains("phalanx-testnet up"), "{message}");
        assert!(message.contains("Four nodes by hand"), "{message}");
    }
    let output = wallet.fails(&mut wallet.cmd(&["--json", "status"]), 3);
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "node_unreachable");
    assert_eq!(error["error"]["rpc"], url);

    // Refused before any request: with no node, a network call would
    // fail with exit status 3 instead.
    for to in ["0xabc", &"AB".repeat(32), &"ab".repeat(31), "nobody"] {
        let output = wallet.fails(
            &mut wallet.cmd(&["transfer", "--from", "faucet", "--to", to, "--amount", "1"]),
            1,
        );
        let message = stderr(&output);
        assert!(message.contains("invalid address"), "{message}");
        assert!(message.contains("64 lowercase hex characters"), "{message}");
    }
    let output = wallet.fails(&mut wallet.cmd(&["--json", "balance", "0xabc"]), 1);
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "bad_address");
    let output = wallet.fails(&mut wallet.cmd(&["tx", "xyz"]), 1);
    assert!(
        stderr(&output).contains("invalid hash"),
        "{}",
        shown(&output)
    );
    let output = wallet.fails(&mut wallet.cmd(&["block", "-1"]), 1);
    assert!(
        stderr(&output).contains("invalid height"),
        "{}",
        shown(&output)
    );
    let output = wallet.fails(&mut wallet.cmd(&["--rpc", "not a url", "status"]), 1);
    assert!(
        stderr(&output).contains("invalid --rpc URL"),
        "{}",
        shown(&output)
    );
    // Usage errors are clap's, as JSON with --json.
    wallet.fails(&mut wallet.cmd(&["transfer", "--from", "faucet"]), 2);
    let output = wallet.fails(
        &mut wallet.cmd(&["--json", "transfer", "--from", "faucet"]),
        2,
    );
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "usage");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--amount"),
        "{error}"
    );
}

#[test]
fn on_proof_of_work_a_transfer_waits_for_k_confirmations_or_more() {
    let node = TestNode::start_pow(3);
    let wallet = Wallet::new(&node.url);
    wallet.import_seed("faucet", 1);
    let to = key(3).public().to_string();

    let status = wallet.json(&["status"]);
    assert_eq!(status["consensus"], "pow");
    assert_eq!(status["confirmations"], 3);
    let text = wallet.ok(&["status"]);
    assert!(text.lines().any(|l| l == "confirmations  3"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("mining ")), "{text}");

    // Final: the node's finalized height reached the block, which takes
    // the chain's three confirmations.
    let first = wallet.json(&[
        "transfer", "--from", "faucet", "--to", &to, "--amount", "10",
    ]);
    assert_eq!(first["status"], "finalized", "{first}");
    assert!(first["confirmations"].as_u64().unwrap() >= 3, "{first}");
    let hash = first["hash"].as_str().unwrap().to_owned();
    let tx = wallet.json(&["tx", &hash]);
    assert_eq!(tx["status"], "finalized");
    assert_eq!(tx["height"], first["height"]);
    assert!(tx["confirmations"].as_u64().unwrap() >= 3, "{tx}");
    assert_eq!(tx["on_best_chain"], true);
    let text = wallet.ok(&["tx", &hash]);
    let confirmations = text
        .lines()
        .find_map(|l| l.strip_prefix("confirmations"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no confirmations line in {text}"));
    assert!(confirmations.parse::<u64>().unwrap() >= 3, "{text}");

    // More than the chain asks for.
    let text = wallet.ok(&[
        "transfer",
        "--from",
        "faucet",
        "--to",
        &to,
        "--amount",
        "10",
        "--confirmations",
        "8",
    ]);
    assert!(text.contains("status         finalized"), "{text}");
    let confirmations: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("confirmations"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(confirmations >= 8, "{text}");
    let usage = wallet.fails(
        &mut wallet.cmd(&[
            "transfer",
            "--from",
            "faucet",
            "--to",
            &to,
            "--amount",
            "1",
            "--no-wait",
            "--confirmations",
            "4",
        ]),
        2,
    );
    assert!(
        stderr(&usage).contains("--confirmations"),
        "{}",
        shown(&usage)
    );
    let usage = wallet.fails(
        &mut wallet.cmd(&[
            "transfer",
            "--from",
            "faucet",
            "--to",
            &to,
            "--amount",
            "1",
            "--confirmations",
            "0",
        ]),
        2,
    );
    assert!(
        stderr(&usage).contains("--confirmations"),
        "{}",
        shown(&usage)
    );

    // Every block past the third finalizes one more: the stream says so.
    let output = wallet
        .cmd(&["--json", "watch", "--count", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", shown(&output));
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let blocks: Vec<&Value> = events.iter().filter(|e| e["event"] == "block").collect();
    let finalized: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "finalized")
        .collect();
    assert_eq!(blocks.len(), 3, "{events:?}");
    assert!(finalized.len() >= 2, "{events:?}");
    for event in &finalized {
        assert!(event["height"].as_u64().unwrap() >= 1, "{event}");
    }
}

/// Serves one `GET /events` with `stream` on 127.0.0.1:0, holding the
/// connection open until the client leaves; returns the URL.
fn scripted_events(stream: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the client left before its request ended");
            request.extend_from_slice(&buf[..n]);
        }
        assert!(request.starts_with(b"GET /events "));
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
            .unwrap();
        socket.write_all(stream.as_bytes()).unwrap();
        // Until the wallet hangs up.
        while socket.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    url
}

/// A reorganization as a proof-of-work node sends it: blocks 5 and 6 taken
/// off back to 4, the new branch's 5 and 6, and finality up to 3.
const REORG_STREAM: &str = concat!(
    "event: block\ndata: {\"height\":5,\"hash\":\"",
    "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
    "\",\"tx_count\":0,\"timestamp_ms\":1767225601000}\n\n",
    ": keep-alive\n\n",
    "event: reorg\ndata: {\"ancestor_height\":4,\"ancestor_hash\":\"",
    "4444444444444444444444444444444444444444444444444444444444444444",
    "\",\"reverted\":[\"",
    "6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a6a",
    "\",\"",
    "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
    "\"]}\n\n",
    "event: block\ndata: {\"height\":5,\"hash\":\"",
    "5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b",
    "\",\"tx_count\":1,\"timestamp_ms\":1767225602000}\n\n",
    "event: finalized\ndata: {\"height\":3}\n\n",
    "event: block\ndata: {\"height\":6,\"hash\":\"",
    "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b",
    "\",\"tx_count\":0,\"timestamp_ms\":1767225603000}\n\n",
);

#[test]
fn watch_shows_reorganizations_and_finality() {
    let wallet = Wallet::new(&scripted_events(REORG_STREAM));
    let text = wallet.ok(&["watch", "--count", "3"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("block 5  5a5a"), "{text}");
    assert_eq!(
        lines[1],
        format!(
            "reorg  back to height 4 ({}): 2 blocks taken off: {}, {}",
            "44".repeat(32),
            "6a".repeat(32),
            "5a".repeat(32)
        )
    );
    assert!(lines[2].starts_with("block 5  5b5b"), "{text}");
    assert!(lines[2].contains("1 tx "), "{text}");
    assert_eq!(lines[3], "finalized up to height 3");
    assert!(lines[4].starts_with("block 6  6b6b"), "{text}");

    let wallet = Wallet::new(&scripted_events(REORG_STREAM));
    let output = wallet
        .cmd(&["--json", "watch", "--count", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", shown(&output));
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["block", "reorg", "block", "finalized", "block"]);
    assert_eq!(
        events[1],
        serde_json::json!({
            "event": "reorg", "ancestor_height": 4, "ancestor_hash": "44".repeat(32),
            "reverted": ["6a".repeat(32), "5a".repeat(32)]
        })
    );
    assert_eq!(
        events[3],
        serde_json::json!({"event": "finalized", "height": 3})
    );
}
