//! Two `phalanx-node` processes mining a proof-of-work chain over libp2p
//! on 127.0.0.1: no committee (each dials the other from `p2p.peers`),
//! both mine, and they agree on the blocks they both call final.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{http, quick_config};
use phalanx_chain::genesis::{GenesisAccount, PowParams};
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::{Amount, ChainId, ConsensusKind, Genesis};
use phalanx_crypto::Keypair;
use phalanx_crypto::keyfile::write_key_file;
use phalanx_node::config::{CONFIG_FILE, GENESIS_FILE};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: two debug processes on a shared machine.
const LIMIT: Duration = Duration::from_secs(120);
const NODES: usize = 2;

/// `count` consecutive ports free right now, below the ephemeral range.
fn free_ports(count: usize) -> Vec<u16> {
    let base = phalanx_node::home::free_loopback_base(u16::try_from(count).unwrap()).unwrap();
    (base..).take(count).collect()
}

/// The processes; killed when dropped.
struct Miners {
    dir: PathBuf,
    api: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Miners {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Miners {
    fn log_tails(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.join(format!("node{i}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                format!("--- node {i} ---\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: ChainId::new("pow-process-test").unwrap(),
        consensus: ConsensusKind::Pow,
        genesis_time_ms: 0,
        validators: Vec::new(),
        pow: Some(PowParams {
            // One hash in 256.
            initial_target: CompactTarget(0x2001_0000),
            target_limit: CompactTarget(0x207f_ffff),
            block_interval_ms: 1_000,
            retarget_window: 1,
            confirmations: 4,
            block_reward: Amount(50),
            max_future_drift_ms: 15_000,
        }),
        accounts: vec![GenesisAccount {
            address: Keypair::from_seed(&[101; 32]).public().into(),
            balance: Amount(1_000_000),
        }],
    }
}

fn start(dir: &Path) -> Miners {
    let genesis = genesis();
    genesis.validate().unwrap();
    let keys: Vec<Keypair> = (0..NODES)
        .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let ports = free_ports(2 * NODES);
    let p2p = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
    let mut miners = Miners {
        dir: dir.to_owned(),
        api: Vec::new(),
        children: Vec::new(),
    };
    for (i, key) in keys.iter().enumerate() {
        let home = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&home).unwrap();
        let mut config = quick_config();
        config.p2p.listen = p2p(i);
        config.p2p.peers = (0..NODES)
            .filter(|j| *j != i)
            .map(|j| format!("{}@{}", keys[j].public(), p2p(j)))
            .collect();
        config.api.listen = format!("127.0.0.1:{}", ports[NODES + i]).parse().unwrap();
        config.mining.enabled = true;
        config.mining.hashrate_limit = 300;
        std::fs::write(home.join(CONFIG_FILE), toml::to_string(&config).unwrap()).unwrap();
        std::fs::write(home.join(GENESIS_FILE), genesis.to_toml().unwrap()).unwrap();
        write_key_file(&home.join(&config.node.key_file), key).unwrap();
        let log = std::fs::File::create(dir.join(format!("node{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_phalanx-node"))
            .arg("--home")
            .arg(&home)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        miners.children.push(child);
        miners.api.push(format!("http://{}", config.api.listen));
    }
    miners
}

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_mine_one_chain_over_libp2p() {
    let dir = tempfile::tempdir().unwrap();
    let miners = start(dir.path());
    let client = http();
    let start = Instant::now();
    let finalized = loop {
        let mut heights = Vec::new();
        for api in &miners.api {
            let status = get(&client, format!("{api}/status")).await;
            heights.push(status.and_then(|s| s["finalized_height"].as_u64()));
        }
        if heights.iter().all(|h| h.is_some_and(|h| h >= 6)) {
            break heights.into_iter().flatten().min().unwrap();
        }
        assert!(
            start.elapsed() < LIMIT,
            "gave up waiting for 6 final blocks: {heights:?}\n{}",
            miners.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut mined = 0;
    for api in &miners.api {
        let status = get(&client, format!("{api}/status")).await.unwrap();
        assert_eq!(status["consensus"], "pow");
        assert_eq!(status["validator"], Value::Null);
        assert_eq!(status["halted"], Value::Null, "{}", miners.log_tails());
        assert_eq!(status["peers"], 1);
        assert_eq!(status["mining"]["hashrate_limit"], 300);
        let text = client
            .get(format!("{api}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        assert!(count("phalanx_mining_hashes_total") > 0.0);
        mined += count("phalanx_mined_blocks_total") as u64;
    }
    assert!(mined >= 6, "{mined} blocks mined");
    for height in 1..=finalized {
        let mut hashes = Vec::new();
        for api in &miners.api {
            let block = get(&client, format!("{api}/blocks/{height}"))
                .await
                .unwrap();
            assert_eq!(block["finalized"], true);
            assert_eq!(block["header"]["justification"]["kind"], "proof_of_work");
            hashes.push(block["hash"].clone());
        }
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "final block {height} differs: {hashes:?}"
        );
    }
}
