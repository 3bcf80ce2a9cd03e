//! `phalanx-node` as a user runs it: start-up errors that name their
//! cause, JSON logs, a clean stop on SIGTERM, and a data directory that
//! belongs to another genesis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use assert_cmd::Command;
use common::quick_config;
use phalanx_chain::{ChainId, ConsensusKind};
use phalanx_node::home::{LocalNetSpec, NodeAddrs, free_loopback_base, write_local_net};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn one_node(dir: &Path, chain: &str) -> std::path::PathBuf {
    let base = free_loopback_base(2).unwrap();
    let ports = [base, base + 1];
    let net = write_local_net(
        dir,
        &LocalNetSpec {
            chain_id: ChainId::new(chain).unwrap(),
            consensus: ConsensusKind::Hotstuff,
            nodes: vec![NodeAddrs::loopback(ports[0], ports[1])],
            accounts: 1,
            balance: 100,
            config: quick_config(),
        },
    )
    .unwrap();
    net.homes[0].clone()
}

fn node() -> Command {
    Command::cargo_bin("phalanx-node").unwrap()
}

#[test]
fn a_missing_home_or_a_bad_config_key_stops_start_up_with_its_name() {
    let out = node()
        .args(["--home", "/nonexistent/phalanx"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("/nonexistent/phalanx"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let home = one_node(dir.path(), "cli-test");
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("max_nonce_gap", "max_tx = 5\nmax_nonce_gap", 1),
    )
    .unwrap();
    let out = node().arg("--home").arg(&home).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("max_tx"), "{err}");
}

#[test]
fn a_data_directory_of_another_genesis_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let home_a = one_node(a.path(), "chain-a");
    let home_b = one_node(b.path(), "chain-b");
    // Make chain-a's data dir, then point chain-b's node at it.
    let store = phalanx_chain::SledStore::open(&home_a.join("data")).unwrap();
    let genesis = phalanx_node::config::load_genesis(&home_a).unwrap();
    phalanx_chain::Store::init_genesis(&store, &genesis).unwrap();
    drop(store);
    let config = home_b.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let data = home_a.join("data");
    std::fs::write(
        &config,
        text.replace(
            "data_dir = \"data\"",
            &format!("data_dir = {:?}", data.to_str().unwrap()),
        ),
    )
    .unwrap();
    let out = node().arg("--home").arg(&home_b).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("does not belong to this genesis"), "{err}");
}

/// A proof-of-work node with no listen address (its genesis has no
/// validator addresses to take one from), or a Byzantine behaviour the
/// genesis protocol does not have, stops start-up with a message that
/// says so.
#[test]
fn a_pow_node_without_a_listen_address_or_a_behaviour_it_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = one_node(dir.path(), "cli-test");
    let genesis = home.join("genesis.toml");
    let text = std::fs::read_to_string(&genesis).unwrap();
    assert!(text.contains("consensus = \"hotstuff\""), "{text}");
    // Proof of work has miners, not validators.
    let text = "chain_id = \"cli-test\"\nconsensus = \"pow\"\n[pow]\ninitial_target = \"1f00ffff\"\n\
         target_limit = \"207fffff\"\nblock_interval_ms = 1000\nretarget_window = 30\n\
         confirmations = 6\nblock_reward = 50\nmax_future_drift_ms = 15000\n";
    std::fs::write(&genesis, text).unwrap();
    let out = node().arg("--home").arg(&home).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains(
            "p2p.listen is empty, and the genesis (pow) lists no validators to take an address \
             from: set p2p.listen"
        ),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let home = one_node(dir.path(), "cli-test");
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("[consensus]", "[consensus]\nbyzantine = \"skip-height\"", 1),
    )
    .unwrap();
    let out = node().arg("--home").arg(&home).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("behaviour skip-height does not apply to hotstuff"),
        "{err}"
    );
}

/// A single validator is a whole committee: it commits on its own. With
/// `--log-format json` every log line is a JSON object, and SIGTERM makes
/// it stop cleanly (exit 0) with its blocks on disk.
#[cfg(unix)]
#[test]
fn json_logs_and_a_clean_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let home = one_node(dir.path(), "cli-test");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phalanx-node"))
        .arg("--home")
        .arg(&home)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let committed = line.contains("committed");
            seen.push(line);
            if committed && seen.iter().filter(|l| l.contains("committed")).count() >= 3 {
                break;
            }
        }
        seen
    });
    let start = Instant::now();
    while !lines.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no commits logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = lines.join().unwrap();
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let store = phalanx_chain::SledStore::open(&home.join("data")).unwrap();
    let head = phalanx_chain::Store::head(&store).unwrap().unwrap();
    assert!(head.height().0 >= 3, "{}", head.height());
}
