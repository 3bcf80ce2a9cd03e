//! `phalanx-testnet up` and the commands that steer a local network, as a
//! user runs them: real `phalanx-node` processes on free loopback ports in
//! a temporary directory. Every network is taken down by a guard (`down`)
//! even when a test fails. The networks run one at a time (two cores).
//!
//! Waits have deadlines only to keep a broken run from hanging; nothing
//! asserts on how fast anything is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod local_support;

use assert_cmd::Command;
use local_support::{binaries_built, free_base, serial, testnet, text};
use phalanx_chain::{Address, Amount, Nonce, Transaction};
use phalanx_testnet::local::client::{Client, Submitted};
use phalanx_testnet::local::net::{Network, NodeInfo};
use phalanx_testnet::local::state::State;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

/// A network in a temporary directory; `down` when dropped. `wallet_dir`
/// is the user's wallet.
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
            .timeout(Duration::from_secs(180))
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `phalanx-wallet --wallet-dir W --rpc <node's API> <args>`, as a user
    /// types it; asserts success and returns stdout.
    fn wallet(&self, node: usize, args: &[&str]) -> String {
        let out = self.wallet_run(node, args);
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

    fn wallet_run(&self, node: usize, args: &[&str]) -> std::process::Output {
        Command::new(self.bin.join("phalanx-wallet"))
            .arg("--wallet-dir")
            .arg(self.wallet_dir.path())
            .arg("--rpc")
            .arg(self.network().nodes[node].rpc())
            .args(args)
            .timeout(Duration::from_secs(180))
            .output()
            .unwrap()
    }

    /// The same with `--json`, parsed.
    fn wallet_json(&self, node: usize, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.wallet(node, &all)).unwrap()
    }

    fn up(&self, extra: &[&str]) -> String {
        let base = self.base.to_string();
        let mut args = vec!["up", "--detach", "--quick", "--base-port", &base];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn network(&self) -> Network {
        Network::open(self.path()).unwrap()
    }

    fn logs(&self) -> String {
        let net = self.network();
        net.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- node {} ---\n{}",
                    n.index,
                    phalanx_testnet::local::process::tail(&n.log(), 25)
                )
            })
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
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn key(&self, account: usize) -> phalanx_crypto::Keypair {
        let path = self.path().join(format!("accounts/{account}.json"));
        phalanx_crypto::keyfile::load_key_file(&path)
            .unwrap()
            .keypair
    }

    fn address(&self, account: usize) -> String {
        Address::from(self.key(account).public()).to_string()
    }

    /// Signs a transfer of `amount` from account 0 (the faucet) to account
    /// 1 with `nonce`, submits it to `node` and returns its hash.
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
        assert_eq!(
            answer,
            Submitted::Accepted,
            "transfer {nonce} to node {node}"
        );
        tx.hash().to_string()
    }

    fn is_final(&self, node: &NodeInfo, hash: &str) -> bool {
        self.rt
            .block_on(self.client.is_final(node, hash))
            .unwrap_or(false)
    }

    fn wait_final(&self, hash: &str, nodes: &[usize]) {
        let net = self.network();
        self.wait(&format!("{hash} final on nodes {nodes:?}"), |n| {
            nodes.iter().all(|&i| n.is_final(&net.nodes[i], hash))
        });
    }

    fn heights(&self) -> Vec<Option<u64>> {
        let net = self.network();
        net.nodes
            .iter()
            .map(|n| {
                self.rt
                    .block_on(self.client.status(n))
                    .ok()
                    .and_then(|s| s.height)
            })
            .collect()
    }

    fn status_json(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    fn pids(&self) -> Vec<u32> {
        State::load(self.path())
            .unwrap()
            .expect("a state file")
            .nodes
            .iter()
            .filter_map(|n| n.pid)
            .collect()
    }
}

/// True if `pid` is gone (or a zombie waiting for its parent).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[test]
fn up_transfer_kill_restart_partition_heal_load_check_down() {
    the_tour("hotstuff");
}

#[test]
fn the_same_tour_with_pbft() {
    the_tour("pbft");
}

/// The README's tour of a local network, for one protocol.
fn the_tour(consensus: &str) {
    let _serial = serial();
    let net = Net::new();
    let out = net.up(&["--consensus", consensus]);
    assert!(out.contains(consensus), "{out}");
    // The table, the faucet and a wallet command to paste.
    assert!(
        out.contains(&format!("http://127.0.0.1:{}", net.base + 1)),
        "{out}"
    );
    assert!(
        out.contains(&format!("/ip4/127.0.0.1/tcp/{}", net.base + 6)),
        "{out}"
    );
    assert!(out.contains("faucet key:"), "{out}");
    assert!(out.contains("accounts/0.json"), "{out}");
    assert!(out.contains("phalanx-wallet import --name faucet"), "{out}");
    assert!(
        out.contains(&format!(
            "phalanx-wallet --rpc http://127.0.0.1:{} transfer --from faucet --to {} --amount 10",
            net.base + 1,
            net.address(1)
        )),
        "{out}"
    );
    let pids = net.pids();
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|p| !gone(*p)));
    // Every node runs with the admin API on, its log in its home.
    for i in 0..4 {
        let config =
            std::fs::read_to_string(net.path().join(format!("node{i}/config.toml"))).unwrap();
        assert!(config.contains("admin_api = true"), "{config}");
    }
    assert!(
        net.ok(&["logs", "0", "--lines", "500"])
            .contains("node starting")
    );

    // A second `up` on a running network is refused.
    let again = net.run(&["up", "--detach"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("is running"),
        "{}",
        text(&again.stderr)
    );

    // The wallet, as the README has it: import the faucet, make a key,
    // send to it and wait for finality; the balance is seen on every node.
    let faucet_file = net.path().join("accounts/0.json");
    net.wallet(
        0,
        &["import", "--name", "faucet", faucet_file.to_str().unwrap()],
    );
    let alice = net.wallet_json(0, &["keygen", "--name", "alice"]);
    let alice_address = alice["address"].as_str().unwrap().to_owned();
    let sent = net.wallet(
        0,
        &[
            "transfer", "--from", "faucet", "--to", "alice", "--amount", "10",
        ],
    );
    // The wallet aligns its fields; the status line says finalized.
    assert!(
        sent.lines()
            .any(|l| l.starts_with("status ") && l.trim_end().ends_with(" finalized")),
        "{sent}"
    );
    let network = net.network();
    let balance_on = |node: usize| {
        net.wallet_json(node, &["balance", &alice_address])["balance"]
            .as_u64()
            .unwrap()
    };
    for node in 0..4 {
        // A node may see the block a moment after node 0 does.
        net.wait(&format!("alice's balance on node {node}"), |_| {
            balance_on(node) == 10
        });
    }

    // Kill node 1: the others keep finalizing transfers, two sent back to
    // back with --no-wait (the wallet keeps their nonces apart).
    let killed_pid = net.pids()[1];
    let out = net.ok(&["kill", "1"]);
    assert!(out.contains("killed node 1"), "{out}");
    assert!(gone(killed_pid));
    let status = net.status_json();
    assert_eq!(status["nodes"][1]["state"], "down");
    assert_eq!(status["nodes"][0]["state"], "up");
    let while_down: Vec<String> = (0..2)
        .map(|_| {
            let sent = net.wallet_json(
                2,
                &[
                    "transfer",
                    "--from",
                    "faucet",
                    "--to",
                    "alice",
                    "--amount",
                    "10",
                    "--no-wait",
                ],
            );
            assert_eq!(sent["status"], "pending", "{sent}");
            sent["hash"].as_str().unwrap().to_owned()
        })
        .collect();
    for hash in &while_down {
        net.wait_final(hash, &[0, 2, 3]);
    }
    assert_eq!(balance_on(3), 30);
    // The wallet's own view of one of them.
    let tx = net.wallet_json(3, &["tx", &while_down[1]]);
    assert_eq!(tx["status"], "finalized", "{tx}");

    // Restart it: it catches up on what it missed.
    let out = net.ok(&["restart", "1"]);
    assert!(out.contains("restarted node 1"), "{out}");
    for hash in &while_down {
        net.wait_final(hash, &[1]);
    }
    assert_eq!(balance_on(1), 30);
    let out = net.ok(&["check"]);
    assert!(out.contains("agreement holds"), "{out}");

    // status --json: every node up, with its figures.
    let status = net.status_json();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["index"], i);
        assert_eq!(node["state"], "up", "{status}");
        assert!(node["height"].as_u64().unwrap() > 0);
        assert_eq!(node["head_hash"].as_str().unwrap().len(), 64);
        assert!(node["view"].as_u64().is_some());
        assert!(node["phase"].as_str().is_some(), "{status}");
        assert_eq!(
            node["rpc"],
            format!("http://127.0.0.1:{}", net.base + 2 * i as u16 + 1)
        );
    }
    assert_eq!(status["running"], true);
    assert_eq!(status["consensus"], consensus);
    let table = net.ok(&["status"]);
    assert!(table.contains(&format!("{consensus} network")), "{table}");
    assert!(table.contains("phase"), "{table}");

    // Pause and resume: a paused node answers nothing, then catches up.
    net.ok(&["pause", "2"]);
    assert_eq!(net.status_json()["nodes"][2]["state"], "paused");
    net.ok(&["resume", "2"]);
    net.wait("node 2 to answer after resume", |n| {
        n.heights()[2].is_some()
    });

    // Partition 0,1 | 2,3: no quorum on either side, nothing is final.
    let out = net.ok(&["partition", "0,1", "2,3"]);
    assert!(out.contains("node 0: blocks nodes 2, 3"), "{out}");
    assert!(out.contains("node 3: blocks nodes 0, 1"), "{out}");
    // Blocks certified before the cut may still commit: let them.
    std::thread::sleep(Duration::from_secs(3));
    let stalled = net.transfer(0, 3, 10);
    // A node may still fetch committed blocks from its side's other node
    // (node 2 was paused a moment ago); no node may go past the highest.
    let highest = |n: &Net| n.heights().into_iter().flatten().max();
    let before = highest(&net);
    std::thread::sleep(Duration::from_secs(4));
    let after = highest(&net);
    assert!(
        after <= before,
        "a 2/2 partition committed: {before:?} -> {after:?}"
    );
    assert!(network.nodes.iter().all(|n| !net.is_final(n, &stalled)));

    // Heal: finality comes back with nothing new sent, the stalled
    // transfer included. (Timeouts re-sent while a view is stuck go to each
    // validator directly: gossipsub would refuse to publish identical bytes
    // again, and an idle network then never noticed the heal.)
    let out = net.ok(&["heal"]);
    assert!(out.contains("node 0: blocks nodes none"), "{out}");
    net.wait_final(&stalled, &[0, 1, 2, 3]);

    // Load: figures printed, transactions final.
    let out = net.ok(&["load", "--tps", "20", "--duration", "3"]);
    for figure in [
        "submitted",
        "accepted",
        "finalized",
        "achieved",
        "p50",
        "p95",
        "p99",
    ] {
        assert!(out.contains(figure), "{figure} missing:\n{out}");
    }
    let finalized: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("finalized"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(finalized > 0, "{out}");

    let out = net.ok(&["check", "--json"]);
    let verdict: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verdict["agreement"], true, "{verdict}");
    assert_eq!(verdict["nodes"].as_array().unwrap().len(), 4);

    // Down --clean: every process gone, the directory removed.
    let pids = net.pids();
    let out = net.ok(&["down", "--clean"]);
    assert!(out.contains("stopped 4 node processes"), "{out}");
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
    assert!(!net.path().exists());
}

#[test]
fn an_equivocating_validator_does_not_stop_finality_or_break_agreement() {
    equivocation("hotstuff", 3);
}

/// PBFT stays in view 0 while nothing fails, so the equivocator is the
/// first primary.
#[test]
fn an_equivocating_pbft_primary_does_not_stop_finality_or_break_agreement() {
    equivocation("pbft", 0);
}

fn equivocation(consensus: &str, byzantine: usize) {
    let _serial = serial();
    let net = Net::new();
    let spec = format!("{byzantine}:equivocate");
    let out = net.up(&["--consensus", consensus, "--byzantine", &spec]);
    assert!(out.contains("byzantine (equivocate)"), "{out}");
    let config =
        std::fs::read_to_string(net.path().join(format!("node{byzantine}/config.toml"))).unwrap();
    assert!(config.contains("byzantine = \"equivocate\""), "{config}");
    let honest: Vec<usize> = (0..4).filter(|i| *i != byzantine).collect();
    // Enough transfers, one after another, for the equivocator to lead
    // some views (HotStuff rotates leaders every view).
    for nonce in 0..6 {
        let hash = net.transfer(honest[(nonce % 3) as usize], nonce, 5);
        net.wait_final(&hash, &honest);
    }
    // It did equivocate: an honest node holds the two proposals.
    let log = format!("node{}/node.log", honest[0]);
    net.wait("evidence of the equivocation", |n| {
        std::fs::read_to_string(n.path().join(&log))
            .unwrap()
            .contains("evidence of Byzantine behaviour")
    });
    let out = net.ok(&["check"]);
    assert!(out.contains("agreement holds"), "{out}");
    let pids = net.pids();
    net.ok(&["down"]);
    assert!(pids.iter().all(|p| gone(*p)));
    // The directory stays (without --clean); the state file goes.
    assert!(net.path().join("node0").is_dir());
    assert!(State::load(net.path()).unwrap().is_none());
}

/// `init --hosts`: directories for nodes on other machines. Here the four
/// "machines" are one host name, `localhost`, so the nodes dial each other
/// by name (`/dns/localhost/...`, resolved by libp2p), listen on every
/// interface, and are started by hand as an operator would on each host;
/// `status`, the wallet and `check` then reach them through the names.
#[test]
fn a_network_made_for_named_hosts_runs_from_its_copied_directories() {
    let _serial = serial();
    let net = Net::new();
    let base = net.base.to_string();
    let hosts = "localhost,localhost,localhost,localhost";
    let out = net.ok(&["init", "--hosts", hosts, "--base-port", &base, "--quick"]);
    assert!(out.contains("phalanx-node --home node<i>"), "{out}");
    assert!(
        out.contains(&format!("--rpc http://localhost:{} transfer", net.base + 1)),
        "{out}"
    );
    let genesis = std::fs::read_to_string(net.path().join("node0/genesis.toml")).unwrap();
    assert!(
        genesis.contains(&format!("/dns/localhost/tcp/{}", net.base + 6)),
        "{genesis}"
    );
    let config = std::fs::read_to_string(net.path().join("node3/config.toml")).unwrap();
    assert!(
        config.contains(&format!("listen = \"/ip4/0.0.0.0/tcp/{}\"", net.base + 6)),
        "{config}"
    );
    assert!(config.contains("admin_api = false"), "{config}");

    // "Copy node<i>/ to host i": each node from a directory of its own.
    let hosts_dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes(Vec::new());
    for i in 0..4 {
        let home = hosts_dir.path().join(format!("host{i}/node{i}"));
        std::fs::create_dir_all(&home).unwrap();
        for file in std::fs::read_dir(net.path().join(format!("node{i}"))).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), home.join(file.file_name())).unwrap();
        }
        let log = std::fs::File::create(home.join("node.log")).unwrap();
        nodes.0.push(
            std::process::Command::new(net.bin.join("phalanx-node"))
                .arg("--home")
                .arg(&home)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    // From the operator's machine: every node up and committing.
    net.wait("every node up with a height", |n| {
        let status = n.status_json();
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| node["state"] == "up" && node["height"].as_u64() > Some(0))
    });
    let status = net.status_json();
    assert_eq!(
        status["nodes"][2]["rpc"],
        format!("http://localhost:{}", net.base + 5)
    );
    let faucet_file = net.path().join("accounts/0.json");
    net.wallet(
        0,
        &["import", "--name", "faucet", faucet_file.to_str().unwrap()],
    );
    let to = net.address(1);
    let sent = net.wallet_json(
        2,
        &["transfer", "--from", "faucet", "--to", &to, "--amount", "7"],
    );
    assert_eq!(sent["status"], "finalized", "{sent}");
    net.wait_final(sent["hash"].as_str().unwrap(), &[0, 1, 2, 3]);
    let out = net.ok(&["check"]);
    assert!(out.contains("agreement holds"), "{out}");
    // `up` refuses nothing here (every host is this machine), but the
    // nodes already hold the ports: it names one.
    let up = net.run(&["up", "--detach"]);
    assert!(!up.status.success());
    assert!(
        text(&up.stderr).contains("is not free"),
        "{}",
        text(&up.stderr)
    );
}

/// Processes this test started itself; killed when dropped.
struct Nodes(Vec<std::process::Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `up` in the foreground, as in the README: it supervises the nodes,
/// reports one that dies with the tail of its log, `logs --follow` streams
/// a node's log, and Ctrl-C (SIGINT) stops every node and exits 0.
#[test]
fn up_in_the_foreground_reports_a_dead_node_and_stops_all_on_ctrl_c() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};

    let _serial = serial();
    let net = Net::new();
    let output = net.path().join("up.out");
    let stdout = std::fs::File::create(&output).unwrap();
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_phalanx-testnet"))
        .args([
            "up",
            "--quick",
            "--base-port",
            &net.base.to_string(),
            "--dir",
        ])
        .arg(net.path())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stdout)
        .spawn()
        .unwrap();
    let up_output = || std::fs::read_to_string(&output).unwrap_or_default();
    net.wait("up to report the network healthy", |_| {
        up_output().contains("Ctrl-C stops the network")
    });
    net.wait("a live status line with every node up", |_| {
        up_output().contains("nodes up 4/4")
    });

    // `logs 0 --follow` keeps printing what node 0 logs.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_phalanx-testnet"))
        .args(["logs", "0", "--follow", "--lines", "0", "--dir"])
        .arg(net.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read on a thread, so that a silent `logs` fails the test, not hangs it.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut committed = 0;
    while committed < 3 {
        let line = rx
            .recv_timeout(LONG)
            .expect("logs --follow stopped printing commits");
        committed += usize::from(line.contains("committed height="));
    }
    follow.kill().unwrap();
    follow.wait().unwrap();

    // A node killed behind the supervisor's back is reported at once.
    let victim = net.pids()[2];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    net.wait("the supervisor to report node 2's death", |_| {
        up_output().contains(&format!("node 2 (pid {victim}) killed by signal SIGKILL"))
    });
    assert!(up_output().contains("node2/node.log"), "{}", up_output());

    // Ctrl-C: every node stopped, exit 0, no state file left.
    let pids = net.pids();
    kill(Pid::from_raw(up.id() as i32), Signal::SIGINT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < LONG, "up did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}\n{}", up_output());
    assert!(
        up_output().contains("stopping the nodes"),
        "{}",
        up_output()
    );
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
    assert!(State::load(net.path()).unwrap().is_none());
}

#[test]
fn up_names_a_port_that_is_taken_and_starts_nothing() {
    let _serial = serial();
    let net = Net::new();
    let taken = std::net::TcpListener::bind(("127.0.0.1", net.base + 3)).unwrap();
    let base = net.base.to_string();
    let out = net.run(&["up", "--detach", "--quick", "--base-port", &base]);
    drop(taken);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "port {} on 127.0.0.1 (HTTP API of node 1) is not free",
            net.base + 3
        )),
        "{err}"
    );
    assert!(State::load(net.path()).unwrap().is_none());
    // The network was created and can be started once the port is free.
    let out = net.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "down")
    );
    let out = net.run(&["kill", "0"]);
    assert!(
        text(&out.stderr).contains("not running"),
        "{}",
        text(&out.stderr)
    );
}

/// The admin API, on a node inside this process: off, it is a 404 like any
/// unknown route; on, it blocks the peers outside the node's group and
/// heals.
#[test]
fn the_admin_api_is_off_unless_the_config_turns_it_on() {
    use phalanx_chain::genesis::{GenesisAccount, GenesisValidator};
    use phalanx_chain::{ChainId, ConsensusKind, Genesis, MemStore};
    use phalanx_crypto::Keypair;
    use phalanx_node::net::memory::MemoryNet;
    use phalanx_node::node::{Parts, start};
    use std::sync::Arc;

    let keys: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let genesis = Genesis {
        chain_id: ChainId::new("admin-test").unwrap(),
        consensus: ConsensusKind::Hotstuff,
        genesis_time_ms: 0,
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                public_key: k.public(),
                address: format!("/memory/{i}"),
            })
            .collect(),
        pow: None,
        accounts: vec![GenesisAccount {
            address: keys[0].public().into(),
            balance: Amount(1),
        }],
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let memory = MemoryNet::new();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let mut urls = Vec::new();
        let mut nodes = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let (gossip, inbound) = memory.join(key.public(), 1_024);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            let mut config = phalanx_node::config::Config::default();
            config.testnet.admin_api = i != 3;
            nodes.push(
                start(Parts {
                    config,
                    genesis: genesis.clone(),
                    key: key.clone(),
                    store: Arc::new(MemStore::new()),
                    net: Arc::new(gossip),
                    inbound,
                    api: Some(listener),
                })
                .await
                .unwrap(),
            );
        }
        let post = |url: String, body: Value| {
            let client = client.clone();
            async move {
                let response = client.post(url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            }
        };
        let groups = serde_json::json!({ "groups": [[0, "1"], [keys[2].public().to_string()]] });
        // Off: 404 not_found, saying why.
        let (status, body) = post(format!("{}/admin/partition", urls[3]), groups.clone()).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("admin_api")
        );
        assert_eq!(
            post(format!("{}/admin/heal", urls[3]), Value::Null).await.0,
            404
        );
        // On: node 0 keeps node 1, blocks 2 and 3 (3, named nowhere, is a
        // group of its own).
        let (status, body) = post(format!("{}/admin/partition", urls[0]), groups.clone()).await;
        assert_eq!(status, 200, "{body}");
        let blocked: Vec<&str> = body["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            blocked,
            [keys[2].public().to_string(), keys[3].public().to_string()]
        );
        let peers: Value = client
            .get(format!("{}/peers", urls[0]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let connected = peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["connected"] == true)
            .count();
        assert_eq!(connected, 1, "{peers}");
        // Node 3 is in no group: it blocks everyone.
        let (_, body) = post(format!("{}/admin/partition", urls[2]), groups.clone()).await;
        assert_eq!(body["blocked"].as_array().unwrap().len(), 3);
        // Bad requests are named.
        let (status, body) = post(
            format!("{}/admin/partition", urls[0]),
            serde_json::json!({ "groups": [[9]] }),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "bad_partition");
        // Heal: nothing blocked.
        let (status, body) = post(format!("{}/admin/heal", urls[0]), Value::Null).await;
        assert_eq!(status, 200);
        assert_eq!(body["blocked"].as_array().unwrap().len(), 0);
        for node in nodes {
            node.stop().await;
        }
    });
}
