//! `phalanx-testnet up --consensus pow` and the commands that steer a
//! proof-of-work network, as a user runs them: four real `phalanx-node`
//! miners on free loopback ports in a temporary directory, with a short
//! block interval and a small hash rate (a few percent of one core in
//! all). Every network is taken down by a guard (`down`) even when a test
//! fails, and the networks run one at a time (two cores).
//!
//! Waits have deadlines only to keep a broken run from hanging; nothing
//! asserts on how fast anything is. Which side of a partition wins is left
//! to the miners (the test gives one side most of the hash rate but only
//! asserts that one chain wins everywhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod local_support;

use local_support::{binaries_built, free_base, serial, testnet, text};
use phalanx_chain::{Address, Amount, Nonce, Transaction};
use phalanx_testnet::local::client::{Client, Status, Submitted, TxStatus};
use phalanx_testnet::local::net::Network;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(180);

/// A network in a temporary directory; `down` when dropped.
struct Net {
    dir: tempfile::TempDir,
    wallet_dir: tempfile::TempDir,
    bin: PathBuf,
    base: u16,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = testnet()
            .args(["down", "--dir"])
            .arg(self.dir.path())
            .timeout(Duration::from_secs(60))
            .output();
    }
}

impl Net {
    fn new() -> Net {
        let bin = binaries_built();
        Net {
            dir: tempfile::tempdir().unwrap(),
            wallet_dir: tempfile::tempdir().unwrap(),
            bin,
            base: free_base(4),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            client: Client::new().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `phalanx-testnet <args> --dir DIR`, with a deadline.
    fn run(&self, args: &[&str]) -> std::process::Output {
        testnet()
            .args(args)
            .arg("--dir")
            .arg(self.path())
            .timeout(LONG)
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}{}\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.logs()
        );
        text(&out.stdout)
    }

    /// `up --detach` of a new proof-of-work network: 4 miners, a block a
    /// second at 100,000 hashes per second in all.
    fn up_pow(&self, extra: &[&str]) -> String {
        let base = self.base.to_string();
        let mut args = vec![
            "up",
            "--detach",
            "--quick",
            "--base-port",
            &base,
            "--consensus",
            "pow",
            "--block-interval",
            "1s",
            "--total-hashrate",
            "100000",
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// `phalanx-wallet --wallet-dir W --rpc <node's API> <args>`; asserts
    /// success and returns stdout.
    fn wallet(&self, node: usize, args: &[&str]) -> String {
        let out = std::process::Command::new(self.bin.join("phalanx-wallet"))
            .arg("--wallet-dir")
            .arg(self.wallet_dir.path())
            .arg("--rpc")
            .arg(self.network().nodes[node].rpc())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "phalanx-wallet {args:?} failed: {}\n{}{}\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.logs()
        );
        text(&out.stdout)
    }

    fn network(&self) -> Network {
        Network::open(self.path()).unwrap()
    }

    /// What a failure report shows: `status`, then each node's warnings
    /// and the end of its log.
    fn logs(&self) -> String {
        let Ok(net) = Network::open(self.path()) else {
            return String::new();
        };
        let status = testnet()
            .args(["status", "--dir"])
            .arg(self.path())
            .timeout(Duration::from_secs(30))
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        let nodes = net.nodes.iter().map(|n| {
            let log = std::fs::read_to_string(n.log()).unwrap_or_default();
            let warnings: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .collect();
            let warnings = warnings[warnings.len().saturating_sub(10)..].join("\n");
            format!(
                "--- node {} (its last warnings, then its last lines) ---\n{warnings}\n...\n{}",
                n.index,
                phalanx_testnet::local::process::tail(&n.log(), 15)
            )
        });
        std::iter::once(status)
            .chain(nodes)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `done` until it holds, or panics with the nodes' logs.
    fn wait(&self, what: &str, mut done: impl FnMut(&Net) -> bool) {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > LONG {
                panic!("gave up waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn status(&self, node: usize) -> Option<Status> {
        let net = self.network();
        self.rt.block_on(self.client.status(&net.nodes[node])).ok()
    }

    /// Every node's status (all must answer).
    fn statuses(&self) -> Vec<Status> {
        (0..4)
            .map(|i| {
                self.status(i)
                    .unwrap_or_else(|| panic!("node {i} answers no /status\n{}", self.logs()))
            })
            .collect()
    }

    /// Node `node`'s block hash at `height`.
    fn block_hash(&self, node: usize, height: u64) -> Option<String> {
        let net = self.network();
        self.rt
            .block_on(self.client.block(&net.nodes[node], height))
            .ok()
            .flatten()
            .map(|b| b.hash)
    }

    /// The highest height where nodes `a` and `b` have the same block.
    fn fork_height(&self, a: usize, b: usize) -> Option<u64> {
        let top = self.status(a)?.height?.min(self.status(b)?.height?);
        (0..=top).rev().find(|h| {
            let block = self.block_hash(a, *h);
            block.is_some() && block == self.block_hash(b, *h)
        })
    }

    fn tx(&self, node: usize, hash: &str) -> Option<TxStatus> {
        let net = self.network();
        self.rt
            .block_on(self.client.tx(&net.nodes[node], hash))
            .ok()
            .flatten()
    }

    fn key(&self, account: usize) -> phalanx_crypto::Keypair {
        let path = self.path().join(format!("accounts/{account}.json"));
        phalanx_crypto::keyfile::load_key_file(&path)
            .unwrap()
            .keypair
    }

    /// Signs a transfer from account 0 (the faucet) to account 1 with
    /// `nonce`, submits it to `node` and returns its hash.
    fn transfer(&self, node: usize, nonce: u64, amount: u64) -> String {
        let net = self.network();
        let tx = Transaction::sign(
            &self.key(0),
            net.chain_id.clone(),
            Address::from(self.key(1).public()),
            Amount(amount),
            Amount(1),
            Nonce(nonce),
        );
        let answer = self
            .rt
            .block_on(self.client.submit(&net.nodes[node], &tx))
            .unwrap();
        assert_eq!(answer, Submitted::Accepted, "transfer {nonce} to {node}");
        tx.hash().to_string()
    }

    /// `check` (which must pass) as JSON.
    fn check_json(&self) -> Value {
        serde_json::from_str(&self.ok(&["check", "--json"])).unwrap()
    }
}

#[test]
fn four_miners_converge_on_one_chain() {
    let _serial = serial();
    let net = Net::new();
    // Six confirmations: a node that two blocks at one height left on a
    // branch of its own catches up by block sync once it is 8 blocks
    // behind the other three, before its own branch could become final.
    let out = net.up_pow(&["--confirmations", "6"]);
    assert!(out.contains("created a 4-miner pow network"), "{out}");
    assert!(out.contains("a block every 1 s on average"), "{out}");
    assert!(out.contains("miner (25.00k H/s)"), "{out}");
    assert!(out.contains("it waits for 6 confirmations"), "{out}");

    // Miners, not validators: no committee in genesis, each dials the
    // three others and mines at its quarter of the total.
    let network = net.network();
    assert_eq!(network.pow.as_ref().unwrap().confirmations, 6);
    for node in &network.nodes {
        assert!(!node.validator);
        assert_eq!(node.hashrate_limit, Some(25_000));
    }
    let status: Value = serde_json::from_str(&net.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["consensus"], "pow");
    assert_eq!(status["confirmations"], 6);
    assert_eq!(status["partition"], Value::Null);
    for node in status["nodes"].as_array().unwrap() {
        assert_eq!(node["state"], "up");
        assert_eq!(node["hashrate_limit"], 25_000, "{node}");
        // The node's chain tips (its own, at least) and their work.
        assert!(node["work"].is_string(), "{node}");
        let tips = node["tips"].as_array().unwrap();
        assert!(tips.iter().any(|t| t["active"] == true), "{node}");
    }
    let table = net.ok(&["status"]);
    for column in ["tip", "final", "work", "tips", "mining"] {
        assert!(table.contains(column), "{table}");
    }

    // The wallet works against a miner like against any node: the
    // transfer returns once it is final (6 confirmations).
    let faucet = net.path().join("accounts/0.json");
    net.wallet(0, &["import", "--name", "faucet", faucet.to_str().unwrap()]);
    let alice: Value =
        serde_json::from_str(&net.wallet(0, &["--json", "keygen", "--name", "alice"])).unwrap();
    let alice = alice["address"].as_str().unwrap().to_owned();
    let sent = net.wallet(
        2,
        &[
            "transfer", "--from", "faucet", "--to", "alice", "--amount", "10",
        ],
    );
    assert!(sent.contains("finalized"), "{sent}");
    for node in 0..4 {
        net.wait(&format!("alice's balance on node {node}"), |n| {
            let balance: Value =
                serde_json::from_str(&n.wallet(node, &["--json", "balance", &alice])).unwrap();
            balance["balance"] == 10
        });
    }

    // `mine` on node 1: the chain grows (by blocks node 1 mined, on a node
    // with POST /mine; by anyone's otherwise).
    let before = net.status(1).unwrap().height.unwrap();
    let mined = net.ok(&["mine", "3", "--node", "1"]);
    assert!(mined.contains("height "), "{mined}");
    let after = net.status(1).unwrap().height.unwrap();
    assert!(after >= before + 3, "{before} -> {after}: {mined}");

    // Every node gets the blocks up to there final, and they agree.
    net.wait("every node to hold the mined blocks final", |n| {
        n.statuses()
            .iter()
            .all(|s| s.finalized_height.unwrap_or(0) >= after)
    });
    let report = net.check_json();
    assert_eq!(report["agreement"], true, "{report}");
    for (_, height) in report["final_heights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
    {
        assert!(height >= after, "{report}");
    }
    let tips = report["tips"].as_array().unwrap();
    assert!(tips[0]["work"].is_string(), "{report}");
    let on_tips: usize = tips
        .iter()
        .map(|t| t["nodes"].as_array().unwrap().len())
        .sum();
    assert_eq!(on_tips, 4, "{report}");
    assert_eq!(tips[0]["heaviest"], true, "{report}");
    let final_block = net.block_hash(0, after).unwrap();
    for node in 1..4 {
        assert_eq!(net.block_hash(node, after).as_ref(), Some(&final_block));
    }
    let check = net.ok(&["check"]);
    assert!(check.contains("agreement holds on final blocks"), "{check}");
    assert!(check.contains("tips (4 nodes on"), "{check}");
    net.ok(&["down"]);
}

#[test]
fn a_healed_partition_leaves_one_chain_and_the_losing_sides_transfer_is_settled() {
    let _serial = serial();
    let net = Net::new();
    // One miner a side: node 0 with 80 % of the hash rate, node 2 with
    // 20 % (nodes 1 and 3 only validate and relay). Node 0's side almost
    // surely outgrows the other, whose branch stays well under the 10
    // confirmations that would make it final; and no side has two miners
    // that could split it at a tie.
    let out = net.up_pow(&[
        "--confirmations",
        "10",
        "--hashrate",
        "0:80%",
        "--hashrate",
        "2:20%",
    ]);
    assert!(out.contains("miner (80.00k H/s)"), "{out}");
    assert!(out.contains("1     node"), "{out}");
    let out = net.ok(&["partition", "0,1/2,3"]);
    assert!(out.contains("node 0: dials nodes 1"), "{out}");
    assert!(out.contains("node 3: dials nodes 2"), "{out}");
    let status: Value = serde_json::from_str(&net.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["partition"], serde_json::json!([[0, 1], [2, 3]]));
    assert!(net.ok(&["status"]).contains("partitioned: 0,1 / 2,3"));

    // A transfer to the side that will lose: only nodes 2 and 3 see it.
    let hash = net.transfer(2, 0, 7);
    let mut fork = 0;
    net.wait(
        "two branches, the transfer in a block on nodes 2 and 3",
        |n| {
            let s = n.statuses();
            let split = s[0].head_hash == s[1].head_hash
                && s[2].head_hash == s[3].head_hash
                && s[0].head_hash != s[2].head_hash;
            let Some(common) = split.then(|| n.fork_height(0, 2)).flatten() else {
                return false;
            };
            fork = common;
            let both_grew =
                n.block_hash(0, fork + 1).is_some() && n.block_hash(2, fork + 1).is_some();
            let on_side_b = n.tx(2, &hash).is_some_and(|t| t.status != "pending");
            both_grew && on_side_b
        },
    );
    assert!(net.tx(0, &hash).is_none(), "side A knows the transfer");
    // Final blocks still agree; the tips show the two branches.
    let report = net.check_json();
    assert_eq!(report["agreement"], true, "{report}");
    let tips = report["tips"].as_array().unwrap();
    assert_eq!(tips.len(), 2, "{report}");
    let check = net.ok(&["check"]);
    assert!(check.contains("tips (4 nodes on 2 tips)"), "{check}");
    assert!(check.contains("on a branch from height"), "{check}");
    let side_a = net.block_hash(0, fork + 1).unwrap();
    let side_b = net.block_hash(2, fork + 1).unwrap();
    assert_ne!(side_a, side_b);

    let out = net.ok(&["heal"]);
    assert!(out.contains("node 0: dials nodes 1, 2, 3"), "{out}");
    let status: Value = serde_json::from_str(&net.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["partition"], Value::Null);

    // One chain wins everywhere: the first block above the fork is the
    // same final block on every node, one of the two sides'.
    net.wait("one chain final on every node", |n| {
        let s = n.statuses();
        s.iter().all(|s| s.finalized_height.unwrap_or(0) > fork)
            && (1..4).all(|i| n.block_hash(i, fork + 1) == n.block_hash(0, fork + 1))
    });
    let winner = net.block_hash(0, fork + 1).unwrap();
    assert!(winner == side_a || winner == side_b, "{winner}");
    let report = net.check_json();
    assert_eq!(report["agreement"], true, "{report}");

    // The transfer ends up final on the winning chain (its side put it
    // back in the mempool and mined it again), or, if it was lost, no
    // node has it.
    let mut outcome = "";
    net.wait("the transfer final on every node or gone from all", |n| {
        let seen: Vec<Option<TxStatus>> = (0..4).map(|i| n.tx(i, &hash)).collect();
        if seen
            .iter()
            .all(|t| t.as_ref().is_some_and(|t| t.status == "finalized"))
        {
            outcome = "final";
            return true;
        }
        let dropped = seen.iter().all(|t| match t {
            None => true,
            Some(t) => t.status != "pending" && t.on_best_chain == Some(false),
        });
        if dropped {
            outcome = "dropped";
        }
        dropped
    });
    if outcome == "final" {
        let blocks: Vec<Option<String>> = (0..4)
            .map(|i| net.tx(i, &hash).unwrap().block_hash)
            .collect();
        assert!(blocks.iter().all(|b| b == &blocks[0]), "{blocks:?}");
        let height = net.tx(0, &hash).unwrap().height.unwrap();
        assert_eq!(net.block_hash(2, height), blocks[0]);
    }
    eprintln!("the losing side's transfer was {outcome}; the winner was {winner}");
    net.ok(&["down"]);
}
