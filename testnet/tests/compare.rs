//! `phalanx-testnet compare` as a user runs it: one tiny comparison (two
//! protocols, a few seconds each at a low rate, one fault, a one-point
//! saturation sweep and small simulator sweeps) checked through the
//! files it writes; `--from` renders them again byte for byte; and what
//! makes no sense is refused before anything runs.
//!
//! Nothing asserts on how fast anything is: only that the files, fields
//! and charts are there and consistent with each other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod local_support;

use local_support::{binaries_built, free_base, serial, testnet, text};
use phalanx_testnet::compare;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The tiny comparison, into `out`; returns stdout.
fn run_compare(out: &Path) -> String {
    binaries_built();
    let base = free_base(4).to_string();
    let output = testnet()
        .args([
            "compare",
            "--consensus",
            "hotstuff,pow",
            "--validators",
            "4",
        ])
        .args([
            "--tps",
            "20",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--drain",
            "10",
        ])
        .args([
            "--faults",
            "none,crash-1",
            "--sweep-tps",
            "40",
            "--sweep-duration",
            "2",
        ])
        .args(["--block-interval", "500ms"])
        .args([
            "--sim-validators",
            "4,7",
            "--sim-seeds",
            "1",
            "--sim-duration",
            "1s",
        ])
        .args(["--quick", "--base-port", &base, "--out"])
        .arg(out)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "compare failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    stdout
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `<text>` of an SVG element tree, in order.
fn texts(e: &xmltree::Element, out: &mut Vec<String>) {
    if e.name == "text" {
        out.push(e.get_text().map(|t| t.into_owned()).unwrap_or_default());
    }
    for child in e.children.iter().filter_map(|c| c.as_element()) {
        texts(child, out);
    }
}

fn check_results(r: &Value) {
    assert_eq!(r["format"], 1);
    assert!(
        r["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "compare")
    );
    assert!(r["git_commit"].is_string() || r["git_commit"].is_null());
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    let s = &r["settings"];
    assert_eq!(s["protocols"], serde_json::json!(["hotstuff", "pow"]));
    assert_eq!(s["faults"], serde_json::json!(["none", "crash-1"]));
    assert_eq!(s["sweep_tps"], serde_json::json!([40.0]));
    assert_eq!(s["pow_block_interval_ms"], 500);
    let runs = r["runs"].as_array().unwrap();
    // 2 protocols x 2 faults, then 2 sweep points.
    assert_eq!(runs.len(), 6, "{runs:?}");
    let groups: Vec<&str> = runs.iter().map(|r| r["group"].as_str().unwrap()).collect();
    assert_eq!(
        groups,
        ["matrix", "matrix", "matrix", "matrix", "load", "load"]
    );
    for run in runs {
        assert!(
            run["bench_command"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "bench")
        );
        let b = &run["results"];
        assert!(b.is_object(), "a run without results: {run}");
        // The full bench results: provenance, config, figures.
        for field in [
            "command",
            "machine",
            "config",
            "latency_histogram",
            "timeline",
            "nodes",
        ] {
            assert!(b.get(field).is_some(), "bench results lack {field}");
        }
        assert_eq!(b["config"]["consensus"], run["protocol"]);
        assert_eq!(b["config"]["faults"], run["fault"]);
        assert_eq!(b["pow"].is_object(), run["protocol"] == "pow");
    }
    let sim = &r["sim"];
    assert_eq!(sim["seeds"], 1);
    let points = sim["messages"].as_array().unwrap();
    assert_eq!(points.len(), 4, "pbft and hotstuff at n = 4 and 7");
    for p in points {
        assert!(p["authored_per_block"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["messages_per_block"].as_f64() >= p["authored_per_block"].as_f64());
    }
    assert_eq!(
        sim["stale"].as_array().unwrap().len(),
        compare::sims::STALE_INTERVALS_MS.len()
    );
}

fn check_charts(out: &Path) -> Vec<String> {
    let comparison = compare::read(out).unwrap();
    let charts = compare::charts::all(&comparison).unwrap();
    let names: Vec<String> = charts.iter().map(|c| c.name.clone()).collect();
    for expected in [
        "throughput",
        "latency_p50",
        "latency_cdf",
        "finality",
        "load_latency",
        "timeline_hotstuff",
        "timeline_pow",
        "messages_per_block",
        "bytes_per_block",
        "cpu_per_tx",
        "sim_messages",
        "sim_stale",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no chart {expected}: {names:?}"
        );
    }
    let html = read(&out.join("report.html"));
    let md = read(&out.join("report.md"));
    for chart in &charts {
        let svg = read(&out.join(format!("{}.svg", chart.name)));
        let root = xmltree::Element::parse(svg.as_bytes())
            .unwrap_or_else(|e| panic!("{}.svg is not XML: {e}", chart.name));
        assert_eq!(root.name, "svg");
        let title = root.get_child("title").and_then(|t| t.get_text()).unwrap();
        assert_eq!(title, chart.title.as_str());
        let mut all = Vec::new();
        texts(&root, &mut all);
        for label in [&chart.title, &chart.x_label, &chart.y_label] {
            assert!(
                all.iter().any(|t| t.trim() == label.as_str()),
                "{}: no text {label:?} in {all:?}",
                chart.name
            );
        }
        // The page holds the chart itself, and the Markdown links it.
        assert!(html.contains(&format!("<figure id=\"chart-{}\">", chart.name)));
        assert!(
            html.contains(svg.trim()),
            "report.html lacks {}.svg",
            chart.name
        );
        assert!(md.contains(&format!("]({}.svg)", chart.name)));
    }
    // Self-contained: nothing fetched from elsewhere.
    for outside in ["http://", "https://", "src=", "<link", "@import"] {
        let stripped = html.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !stripped.contains(outside),
            "report.html refers outside: {outside}"
        );
    }
    names
}

#[test]
fn a_tiny_comparison_writes_the_report_and_renders_it_again() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let stdout = run_compare(&out);
    assert!(stdout.contains("report.html"), "{stdout}");
    assert!(
        stdout.contains("Caveats"),
        "the reading is printed: {stdout}"
    );
    let results: Value = serde_json::from_str(&read(&out.join("results.json"))).unwrap();
    check_results(&results);
    let csv = read(&out.join("results.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("group,protocol,fault,validators,offered_tps"));
    assert_eq!(lines.len(), 1 + 6);
    assert!(
        lines[1].starts_with("matrix,hotstuff,none,4,20,"),
        "{}",
        lines[1]
    );
    let md = read(&out.join("report.md"));
    assert!(
        md.contains("## Reading") && md.contains("| protocol | fault |"),
        "{md}"
    );
    let names = check_charts(&out);

    // --from renders the same files from results.json alone.
    let again = dir.path().join("again");
    let output = testnet()
        .args(["compare", "--from"])
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let files = names
        .iter()
        .map(|n| format!("{n}.svg"))
        .chain(["report.html", "report.md", "results.csv", "results.json"].map(String::from));
    for file in files {
        assert_eq!(
            read(&out.join(&file)),
            read(&again.join(&file)),
            "{file} differs"
        );
    }
}

#[test]
fn nonsense_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--tps", "10"], "--duration"),
        (vec!["--tps", "0", "--duration", "3"], "--tps"),
        (
            vec!["--tps", "10", "--duration", "3", "--consensus", "pbft,pbft"],
            "twice",
        ),
        (
            vec!["--tps", "10", "--duration", "3", "--validators", "3"],
            "at least 4",
        ),
        (
            vec!["--tps", "10", "--duration", "3", "--consensus", "raft"],
            "invalid value",
        ),
    ] {
        let output = testnet()
            .arg("compare")
            .args(&args)
            .arg("--out")
            .arg(dir.path().join("x"))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} passed");
        let err = text(&output.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // --from a directory without results.json says so.
    let output = testnet()
        .args(["compare", "--from"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("results.json"),
        "{}",
        text(&output.stderr)
    );
}
