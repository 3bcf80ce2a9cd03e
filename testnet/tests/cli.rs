//! `phalanx-testnet sim` as a user runs it: exit codes, the summary, JSON,
//! failing runs with their replay command, and clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phalanx-testnet"))
        .arg("sim")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_passing_batch_prints_its_summary_and_exits_zero() {
    let out = sim(&[
        "--consensus",
        "hotstuff",
        "--validators",
        "4",
        "--seeds",
        "2",
        "--byzantine",
        "3:equivocate",
        "--loss",
        "0.1",
        "--duration",
        "3s",
        "--liveness-bound",
        "3s",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("runs: 2 (0 failed)"), "{stdout}");
    assert!(stdout.contains("commit latency"), "{stdout}");
    assert!(stdout.contains("conflicting-proposals"), "{stdout}");
}

#[test]
fn json_summary_parses() {
    let out = sim(&[
        "--seeds",
        "1",
        "--duration",
        "2s",
        "--liveness-bound",
        "2s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runs"], 1);
    assert_eq!(json["failed_runs"], 0);
    assert!(json["committed_blocks"].as_u64().unwrap() > 0);
    assert!(json["commit_latency_ms_p99"].as_u64().is_some());
}

#[test]
fn a_violation_prints_its_replay_command_and_exits_one() {
    let args = [
        "--twins",
        "2,3",
        "--partition",
        "0,2,3/1,4,5@0ms-6s",
        "--duration",
        "6s",
        "--liveness-bound",
        "2s",
        "--seed-start",
        "5",
        "--seeds",
        "1",
    ];
    let out = sim(&args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL seed 5"))
        .unwrap();
    assert!(line.contains("agreement: height"), "{line}");
    let replay = line.split("replay: ").nth(1).unwrap();
    assert!(replay.contains("--seed-start 5 --seeds 1"), "{replay}");
    // The printed command reproduces the failure.
    let replay_args: Vec<&str> = replay.split_whitespace().skip(2).collect();
    let again = sim(&replay_args);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stdout).contains(line.split("; replay").next().unwrap()));
}

#[test]
fn bad_input_is_refused_clearly() {
    let out = sim(&["--partition", "0,1/2,3@2s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no '-END' after START"),
        "{}",
        text(&out.stderr)
    );
    let out = sim(&["--consensus", "pow", "--hashrate", "0:150%"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--hashrate shares add up to 150 %"),
        "{}",
        text(&out.stderr)
    );
    let out = sim(&["--byzantine", "2:skip-height"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("hotstuff replicas have no behaviour skip-height"),
        "{}",
        text(&out.stderr)
    );
    let out = sim(&["--validators", "4", "--byzantine", "7:silent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("replica 7 does not exist"),
        "{}",
        text(&out.stderr)
    );
}
