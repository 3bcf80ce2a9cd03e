//! `phalanx-testnet bench` as a user runs it: tiny runs of real
//! `phalanx-node` processes (short timeouts, a few seconds, 50 tx/s) on
//! free loopback ports in a temporary directory, checked through the
//! `results.json` they write; a run stopped by Ctrl-C; and arguments that
//! make no sense, refused before anything starts. The runs go one at a
//! time (two cores).
//!
//! Nothing asserts on how fast anything is: only that the figures are
//! there, consistent with each other, and that no process outlives a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod local_support;

use local_support::{binaries_built, free_base, serial, testnet, text};
use phalanx_testnet::local::process::{Probe, probe};
use phalanx_testnet::local::state::State;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// `bench --consensus CONSENSUS --tps 50 --duration 3 --warmup 1` with
/// `extra`, into `out`; returns stdout and results.json.
fn run(consensus: &str, extra: &[&str], out: &Path) -> (String, Value) {
    let load = ["--tps", "50", "--duration", "3", "--warmup", "1"];
    run_with(consensus, &[&load, extra].concat(), out)
}

/// `bench --consensus CONSENSUS --validators 4 --quick` on free ports
/// with `args`, into `out`; returns stdout and results.json.
fn run_with(consensus: &str, args: &[&str], out: &Path) -> (String, Value) {
    binaries_built();
    let base = free_base(4).to_string();
    let output = testnet()
        .args(["bench", "--consensus", consensus, "--validators", "4"])
        .args(["--quick", "--base-port", &base])
        .args(args)
        .arg("--out")
        .arg(out)
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    let results = std::fs::read_to_string(out.join("results.json")).unwrap();
    (stdout, serde_json::from_str(&results).unwrap())
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Every node's process is gone once the run has returned.
fn assert_nodes_gone(r: &Value, out: &Path) {
    for node in r["nodes"].as_array().unwrap() {
        let home = out.join(format!("network/node{}", u(&node["index"])));
        let pid = u32::try_from(u(&node["pid"])).unwrap();
        assert_eq!(probe(pid, &home), Probe::Gone, "node {node} still runs");
    }
    assert!(State::load(&out.join("network")).unwrap().is_none());
}

/// What every run's results must hold.
fn assert_sane(r: &Value, consensus: &str) {
    for field in [
        "format",
        "command",
        "git_commit",
        "started_at_ms",
        "machine",
        "config",
        "offered_tps",
        "submitted_tps",
        "achieved_tps",
        "transactions",
        "latency_ms",
        "latency_histogram",
        "submit_lag_ms",
        "blocks",
        "view_changes",
        "warmup",
        "requests",
        "fault",
        "observer",
        "nodes",
        "timeline",
    ] {
        assert!(r.get(field).is_some(), "results.json lacks {field}: {r}");
    }
    assert!(
        r["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "bench")
    );
    assert!(u(&r["machine"]["cores"]) >= 1);
    let c = &r["config"];
    assert_eq!(c["consensus"], consensus);
    assert_eq!(
        (u(&c["validators"]), u(&c["duration_s"]), u(&c["warmup_s"])),
        (4, 3, 1)
    );
    assert_eq!(c["tps"], 50.0);
    assert_eq!(u(&c["planned"]), 200);
    assert!(u(&c["accounts"]) >= 8);
    assert!(c["node_consensus"]["batch_size"].is_u64());
    assert_eq!(c["node_store"]["tx_index"], true);

    let t = &r["transactions"];
    assert_eq!(u(&t["offered"]), 150);
    let finalized = u(&t["finalized"]);
    assert!(finalized > 0, "{t}");
    let rejected: u64 = t["rejected_by_reason"]
        .as_object()
        .unwrap()
        .values()
        .map(u)
        .sum();
    assert_eq!(rejected, u(&t["rejected"]));
    let outcomes = finalized + rejected + u(&t["lost"]) + u(&t["skipped"]) + u(&t["unsent"]);
    assert_eq!(outcomes, u(&t["offered"]), "every transaction once: {t}");
    assert!(u(&t["lost_behind_refusal"]) <= u(&t["lost"]));
    // The lost ones looked up at the end: a sample, each with one verdict.
    let c = &t["lost_check"];
    let checked = u(&c["checked"]);
    assert!(checked <= u(&t["lost"]).min(2_000), "{c}");
    let verdicts = u(&c["pending"]) + u(&c["in_block"]) + u(&c["unknown"]) + u(&c["unanswered"]);
    assert_eq!(verdicts, checked, "{c}");
    assert!(u(&t["submitted"]) <= u(&t["offered"]));

    let l = &r["latency_ms"];
    let (p50, p95, p99, max) = (
        u(&l["p50_ms"]),
        u(&l["p95_ms"]),
        u(&l["p99_ms"]),
        u(&l["max_ms"]),
    );
    assert!(p50 <= p95 && p95 <= p99 && p99 <= max, "{l}");
    let histogram = r["latency_histogram"].as_array().unwrap();
    assert_eq!(
        histogram.iter().map(|b| u(&b["count"])).sum::<u64>(),
        finalized
    );
    assert!(histogram.last().unwrap()["le_ms"].is_null());

    assert!(r["achieved_tps"].as_f64().unwrap() > 0.0);
    assert!(u(&r["blocks"]["count"]) > 0);
    assert!(u(&r["requests"]["sent"]) > 0);
    assert_eq!(u(&r["warmup"]["offered"]), 50);

    let nodes = r["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(u(&node["index"]), i as u64);
        assert!(node["peak_rss_bytes"].as_u64().unwrap_or(0) > 0, "{node}");
        assert!(node["cpu_s"].as_f64().is_some(), "{node}");
        assert!(node["sent_by_channel"].is_object(), "{node}");
    }
    let timeline = r["timeline"].as_array().unwrap();
    assert_eq!(timeline.first().unwrap()["t_s"], -1);
    assert_eq!(timeline.iter().map(|s| u(&s["offered"])).sum::<u64>(), 200);
    let finals: u64 = timeline.iter().map(|s| u(&s["finalized"])).sum();
    assert!(finals >= finalized, "{finals} < {finalized}");
}

/// The nodes that ran to the end finalized blocks in the window and sent
/// messages for them.
fn assert_live_node_figures(node: &Value) {
    assert!(u(&node["finalized_blocks"]) > 0, "{node}");
    assert!(
        node["sent_per_block"]["messages_authored"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{node}"
    );
    assert!(node["exited"].is_null(), "{node}");
}

#[test]
fn a_hotstuff_run_writes_every_figure_and_leaves_nothing_running() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (stdout, r) = run("hotstuff", &[], &out);
    assert_sane(&r, "hotstuff");
    assert!(r["fault"].is_null());
    for node in r["nodes"].as_array().unwrap() {
        assert_live_node_figures(node);
    }
    for line in [
        "offered",
        "finalized",
        "latency",
        "p99",
        "msgs/block",
        "results:",
    ] {
        assert!(stdout.contains(line), "{line} missing:\n{stdout}");
    }
    assert_nodes_gone(&r, &out);
    // The network's configs and logs are kept, its stores are not.
    assert!(out.join("network/node0/node.log").is_file());
    assert!(!out.join("network/node0/data").exists());
}

#[test]
fn a_pbft_run_measures_the_same_figures() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (_, r) = run("pbft", &["--json"], &out);
    assert_sane(&r, "pbft");
    assert_eq!(r["nodes"][0]["role"], "validator");
    assert_nodes_gone(&r, &out);
}

#[test]
fn a_crashed_validator_is_recorded_and_finality_goes_on() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (stdout, r) = run("hotstuff", &["--faults", "crash-1", "--drain", "5"], &out);
    assert_sane(&r, "hotstuff");
    let f = &r["fault"];
    assert_eq!(f["kind"], "crash-1");
    assert_eq!(f["nodes"], serde_json::json!([3]));
    assert_eq!(f["planned_start_s"], 1.5);
    assert!(f["started_s"].as_f64().unwrap() >= 1.5, "{f}");
    assert!(f["ended_s"].is_null() && f["error"].is_null(), "{f}");
    let crashed = &r["nodes"][3];
    assert!(
        crashed["exited"].as_str().unwrap().contains("SIGKILL"),
        "{crashed}"
    );
    for node in &r["nodes"].as_array().unwrap()[..3] {
        assert_live_node_figures(node);
    }
    assert!(stdout.contains("crash-1 on nodes [3]"), "{stdout}");
    assert_nodes_gone(&r, &out);
}

/// Proof of work: a tiny run of 4 miners (0.5 s blocks, final at 2
/// confirmations, a hash rate a debug build reaches) has the BFT runs'
/// figures and its own, and they hold together.
#[test]
fn a_pow_run_measures_k_confirmations_stale_blocks_and_reorgs() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (stdout, r) = run_with(
        "pow",
        &[
            "--tps",
            "20",
            "--duration",
            "6",
            "--warmup",
            "1",
            "--drain",
            "10",
            "--block-interval",
            "500ms",
            "--confirmations",
            "2",
            "--total-hashrate",
            "200000",
        ],
        &out,
    );
    assert_eq!(r["config"]["consensus"], "pow");
    let c = &r["config"]["pow"];
    assert_eq!(
        (u(&c["block_interval_ms"]), u(&c["confirmations"])),
        (500, 2)
    );
    assert_eq!(
        c["hashrate_limits"],
        serde_json::json!([50_000, 50_000, 50_000, 50_000])
    );

    let t = &r["transactions"];
    let finalized = u(&t["finalized"]);
    assert!(finalized > 0, "{t}");
    let outcomes =
        finalized + u(&t["rejected"]) + u(&t["lost"]) + u(&t["skipped"]) + u(&t["unsent"]);
    assert_eq!(outcomes, u(&t["offered"]), "every transaction once: {t}");
    assert_eq!(u(&t["offered"]), 120);
    let histogram = r["latency_histogram"].as_array().unwrap();
    assert_eq!(
        histogram.iter().map(|b| u(&b["count"])).sum::<u64>(),
        finalized
    );
    assert!(u(&r["blocks"]["count"]) > 0, "{}", r["blocks"]);
    assert!(r["view_changes"].is_null());

    let p = &r["pow"];
    assert_eq!(
        (u(&p["block_interval_ms"]), u(&p["confirmations"])),
        (500, 2)
    );
    assert!(
        p["observed_block_interval_ms"].as_f64().unwrap() > 0.0,
        "{p}"
    );
    let (mined, chain, stale) = (
        u(&p["mined_blocks"]),
        u(&p["chain_blocks"]),
        u(&p["stale_blocks"]),
    );
    assert!(mined > 0 && chain > 0, "{p}");
    assert_eq!(stale, mined.saturating_sub(chain), "{p}");
    let rate = p["stale_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate), "{p}");
    assert!((rate - stale as f64 / mined as f64).abs() < 1e-9, "{p}");
    let reorgs = &p["reorgs"];
    assert!(
        reorgs["count"].is_u64() && reorgs["all_nodes"].is_u64(),
        "{p}"
    );
    if u(&reorgs["count"]) > 0 {
        assert!(u(&reorgs["max_depth"]) >= 1, "{p}");
    }
    assert_eq!(u(&p["safety_violations"]), 0, "{p}");
    // Inclusion comes before k confirmations.
    let (included, final_) = (&p["first_inclusion_ms"], &r["latency_ms"]);
    assert!(
        u(&included["p50_ms"]) <= u(&final_["p50_ms"]),
        "{included} {final_}"
    );
    let mined_by_nodes: u64 = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert!(n["halted"].is_null(), "{n}");
            u(&n["pow"]["mined_blocks"])
        })
        .sum();
    assert_eq!(mined_by_nodes, mined);
    for line in [
        "stale",
        "reorgs",
        "first inclusion",
        "block interval",
        "safety",
    ] {
        assert!(stdout.contains(line), "{line} missing:\n{stdout}");
    }
    assert_nodes_gone(&r, &out);
}

#[test]
fn ctrl_c_stops_every_node() {
    let _one = serial();
    binaries_built();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let base = free_base(4).to_string();
    let bin = env!("CARGO_BIN_EXE_phalanx-testnet");
    let child = std::process::Command::new(bin)
        .args([
            "bench",
            "--consensus",
            "hotstuff",
            "--tps",
            "20",
            "--duration",
            "60",
        ])
        .args(["--quick", "--base-port", &base, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the nodes to run (the state file names them), then a bit.
    let network = out.join("network");
    let started = Instant::now();
    let pids = loop {
        let pids: Vec<u32> = State::load(&network)
            .ok()
            .flatten()
            .map(|s| s.nodes.iter().filter_map(|n| n.pid).collect())
            .unwrap_or_default();
        if pids.len() == 4 {
            break pids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no nodes started"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    for (i, pid) in pids.iter().enumerate() {
        let home = network.join(format!("node{i}"));
        assert_eq!(
            probe(*pid, &home),
            Probe::Gone,
            "node {i} (pid {pid}) still runs"
        );
    }
    assert!(State::load(&network).unwrap().is_none());
    assert!(!out.join("results.json").exists());
}

#[test]
fn nonsense_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let used = dir.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("results.json"), "{}").unwrap();
    let fresh = dir.path().join("fresh");
    for (args, says) in [
        (
            "--consensus raft --tps 10 --duration 5",
            "invalid value 'raft'",
        ),
        (
            "--consensus pow --tps 10 --duration 5 --faults byzantine-1 --byzantine-kind equivocate",
            "no such behaviour",
        ),
        (
            "--consensus hotstuff --tps 10 --duration 5 --confirmations 3",
            "are for --consensus pow",
        ),
        ("--consensus hotstuff --tps 0 --duration 5", "--tps"),
        ("--consensus hotstuff --tps 10 --duration 0", "--duration"),
        ("--consensus hotstuff --duration 5", "--tps"),
        (
            "--consensus pbft --tps 10 --duration 5 --validators 2 --faults pause-1",
            "at least 4 validators",
        ),
        (
            "--consensus hotstuff --tps 10 --duration 5 --faults byzantine-1 --byzantine-kind reorder",
            "no such behaviour",
        ),
        (
            "--consensus hotstuff --tps 50000 --duration 60",
            "signed in advance",
        ),
    ] {
        let output = testnet()
            .arg("bench")
            .args(args.split_whitespace())
            .arg("--out")
            .arg(&fresh)
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} ran");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!fresh.exists(), "{args:?} created its --out");
    }
    let output = testnet()
        .arg("bench")
        .args("--consensus hotstuff --tps 10 --duration 5 --out".split_whitespace())
        .arg(&used)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not empty"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(used.join("results.json")).unwrap(),
        "{}"
    );
}
