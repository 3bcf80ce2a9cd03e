//! Four `phalanx-node` processes over libp2p on 127.0.0.1: transactions
//! posted over HTTP commit; a killed validator does not stop the other
//! three and catches up when restarted; two killed validators stop commits
//! without any node committing a conflicting block, and commits resume
//! when they come back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use phalanx_chain::{Address, Amount, ChainId, ConsensusKind, Nonce, Transaction};
use phalanx_node::home::{LocalNet, LocalNetSpec, NodeAddrs, free_loopback_base, write_local_net};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `count` consecutive ports free right now, below the ephemeral range.
fn free_ports(count: usize) -> Vec<u16> {
    let base = free_loopback_base(u16::try_from(count).unwrap()).unwrap();
    (base..).take(count).collect()
}

/// The node processes; killed when dropped.
struct Cluster {
    dir: PathBuf,
    net: LocalNet,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn new(dir: &Path, validators: usize, consensus: ConsensusKind) -> Cluster {
        let ports = free_ports(2 * validators);
        let mut config = quick_config();
        config.consensus.base_timeout_ms = 1_000;
        let net = write_local_net(
            dir,
            &LocalNetSpec {
                chain_id: ChainId::new("process-test").unwrap(),
                consensus,
                nodes: (0..validators)
                    .map(|i| NodeAddrs::loopback(ports[i], ports[validators + i]))
                    .collect(),
                accounts: 2,
                balance: 1_000_000,
                config,
            },
        )
        .unwrap();
        let mut cluster = Cluster {
            dir: dir.to_owned(),
            net,
            children: (0..validators).map(|_| None).collect(),
        };
        for i in 0..validators {
            cluster.start(i);
        }
        cluster
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{i}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_phalanx-node"))
            .arg("--home")
            .arg(&self.net.homes[i])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// SIGKILL.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.net.api_addrs[i])
    }

    fn log_tail(&self, i: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("node{i}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn height(client: &reqwest::Client, cluster: &Cluster, i: usize) -> Option<u64> {
    get(client, &cluster.url(i, "/status")).await?["height"].as_u64()
}

/// Polls until `check` is true for every node in `nodes`.
async fn wait_nodes<F, Fut>(
    what: &str,
    cluster: &Cluster,
    nodes: &[usize],
    limit: Duration,
    check: F,
) where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let mut all = true;
        for &i in nodes {
            if !check(i).await {
                all = false;
                break;
            }
        }
        if all {
            return;
        }
        if start.elapsed() > limit {
            let tails: Vec<String> = nodes
                .iter()
                .map(|&i| format!("--- node {i} ---\n{}", cluster.log_tail(i)))
                .collect();
            panic!("gave up waiting for {what}\n{}", tails.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn transfer(cluster: &Cluster, nonce: u64) -> Transaction {
    Transaction::sign(
        &cluster.net.account_keys[0],
        cluster.net.genesis.chain_id.clone(),
        Address::from(cluster.net.account_keys[1].public()),
        Amount(5),
        Amount(1),
        Nonce(nonce),
    )
}

async fn post(
    client: &reqwest::Client,
    cluster: &Cluster,
    node: usize,
    tx: &Transaction,
) -> String {
    let response = client
        .post(cluster.url(node, "/txs"))
        .json(tx)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status.as_u16(), 202, "{body}");
    body["hash"].as_str().unwrap().to_owned()
}

async fn finalized(client: &reqwest::Client, cluster: &Cluster, i: usize, hash: &str) -> bool {
    get(client, &cluster.url(i, &format!("/txs/{hash}")))
        .await
        .is_some_and(|v| v["status"] == "finalized")
}

/// Block hashes at every height up to the lowest head agree.
async fn assert_agreement(client: &reqwest::Client, cluster: &Cluster, nodes: &[usize]) {
    let mut lowest = u64::MAX;
    for &i in nodes {
        lowest = lowest.min(height(client, cluster, i).await.unwrap());
    }
    for h in 0..=lowest {
        let mut hashes = Vec::new();
        for &i in nodes {
            let block = get(client, &cluster.url(i, &format!("/blocks/{h}")))
                .await
                .unwrap();
            hashes.push(block["hash"].as_str().unwrap().to_owned());
        }
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "height {h}: {hashes:?}"
        );
    }
}

for_each_protocol!(four_processes_commit_survive_crashes_and_never_disagree);

async fn four_processes_commit_survive_crashes_and_never_disagree(kind: ConsensusKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(dir.path(), 4, kind);
    let client = http();
    let all = [0, 1, 2, 3];
    let long = Duration::from_secs(120);
    wait_nodes("every node to answer", &cluster, &all, long, |i| {
        let url = cluster.url(i, "/status");
        let client = &client;
        async move { get(client, &url).await.is_some() }
    })
    .await;

    // Transactions posted over HTTP commit on all four.
    let mut nonce = 0;
    let mut hashes = Vec::new();
    for node in 0..4 {
        hashes.push(post(&client, &cluster, node, &transfer(&cluster, nonce)).await);
        nonce += 1;
    }
    for hash in &hashes {
        wait_nodes(
            "the first transfers to be final everywhere",
            &cluster,
            &all,
            long,
            |i| finalized(&client, &cluster, i, hash),
        )
        .await;
    }

    // SIGKILL one validator: the other three keep committing.
    cluster.kill(3);
    let hash = post(&client, &cluster, 0, &transfer(&cluster, nonce)).await;
    nonce += 1;
    wait_nodes(
        "a transfer to be final with node 3 down",
        &cluster,
        &[0, 1, 2],
        long,
        |i| finalized(&client, &cluster, i, &hash),
    )
    .await;

    // Restart it: it catches up to the others' head.
    let target = height(&client, &cluster, 0).await.unwrap();
    cluster.start(3);
    wait_nodes(
        "node 3 to catch up after its restart",
        &cluster,
        &[3],
        long,
        |i| {
            let client = &client;
            let cluster = &cluster;
            async move {
                height(client, cluster, i)
                    .await
                    .is_some_and(|h| h >= target)
            }
        },
    )
    .await;
    wait_nodes(
        "node 3 to see the transfer made while it was down",
        &cluster,
        &[3],
        long,
        |i| finalized(&client, &cluster, i, &hash),
    )
    .await;
    assert_agreement(&client, &cluster, &all).await;

    // SIGKILL two: no quorum, so commits stop.
    cluster.kill(2);
    cluster.kill(3);
    // Let anything already certified settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stalled = post(&client, &cluster, 0, &transfer(&cluster, nonce)).await;
    let before = [
        height(&client, &cluster, 0).await.unwrap(),
        height(&client, &cluster, 1).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = [
        height(&client, &cluster, 0).await.unwrap(),
        height(&client, &cluster, 1).await.unwrap(),
    ];
    // Node 1 may still fetch a block node 0 committed before the kill;
    // neither may go past the highest commit.
    assert!(
        after.iter().max() <= before.iter().max(),
        "two of four validators committed: {before:?} -> {after:?}"
    );
    assert!(!finalized(&client, &cluster, 0, &stalled).await);
    assert_agreement(&client, &cluster, &[0, 1]).await;

    // Bring them back: commits resume and all four agree.
    cluster.start(2);
    cluster.start(3);
    wait_nodes(
        "the stalled transfer to be final everywhere",
        &cluster,
        &all,
        long,
        |i| finalized(&client, &cluster, i, &stalled),
    )
    .await;
    assert_agreement(&client, &cluster, &all).await;
}

for_each_protocol!(sigkill_at_random_moments_never_loses_blocks_or_signs_conflicting_votes);

/// Votes signed by a validator that was SIGKILLed at random moments and
/// restarted never conflict with its earlier ones (honest nodes would log
/// the pair as evidence), no committed block is lost, and all nodes agree.
/// The kill schedule is random: the test prints its seed and replays it
/// from `PHALANX_SEED`.
async fn sigkill_at_random_moments_never_loses_blocks_or_signs_conflicting_votes(
    kind: ConsensusKind,
) {
    let seed = std::env::var("PHALANX_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("PHALANX_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(dir.path(), 4, kind);
    let client = http();
    let all = [0, 1, 2, 3];
    let long = Duration::from_secs(120);
    wait_nodes("every node to answer", &cluster, &all, long, |i| {
        let url = cluster.url(i, "/status");
        let client = &client;
        async move { get(client, &url).await.is_some() }
    })
    .await;
    let mut nonce = 0;
    for round in 0..5 {
        let victim = (next() % 4) as usize;
        let before = height(&client, &cluster, victim).await.unwrap_or(0);
        hashes_posted(&client, &cluster, &mut nonce, 2).await;
        tokio::time::sleep(Duration::from_millis(next() % 1_500)).await;
        cluster.kill(victim);
        tokio::time::sleep(Duration::from_millis(next() % 1_000)).await;
        cluster.start(victim);
        wait_nodes(
            "the victim to answer again",
            &cluster,
            &[victim],
            long,
            |i| {
                let client = &client;
                let cluster = &cluster;
                async move {
                    height(client, cluster, i)
                        .await
                        .is_some_and(|h| h >= before)
                }
            },
        )
        .await;
        eprintln!("round {round}: killed and restarted node {victim}");
    }
    // The last transfer reaches every node, so all made progress.
    let last = hashes_posted(&client, &cluster, &mut nonce, 1).await;
    wait_nodes(
        "the last transfer to be final everywhere",
        &cluster,
        &all,
        long,
        |i| finalized(&client, &cluster, i, &last[0]),
    )
    .await;
    assert_agreement(&client, &cluster, &all).await;
    for i in all {
        let log = std::fs::read_to_string(dir.path().join(format!("node{i}.log"))).unwrap();
        assert!(
            !log.contains("evidence of Byzantine behaviour"),
            "node {i} saw conflicting messages:\n{}",
            cluster.log_tail(i)
        );
    }
}

async fn hashes_posted(
    client: &reqwest::Client,
    cluster: &Cluster,
    nonce: &mut u64,
    count: usize,
) -> Vec<String> {
    let mut hashes = Vec::new();
    for _ in 0..count {
        // Any live node will do.
        for node in 0..4 {
            let tx = transfer(cluster, *nonce);
            let Ok(response) = client
                .post(cluster.url(node, "/txs"))
                .json(&tx)
                .send()
                .await
            else {
                continue;
            };
            if response.status().as_u16() == 202 {
                let body: Value = response.json().await.unwrap();
                hashes.push(body["hash"].as_str().unwrap().to_owned());
                *nonce += 1;
                break;
            }
        }
    }
    hashes
}
