//! `phalanx-testnet bench`: a fresh network of real `phalanx-node`
//! processes, a steady offered load signed in advance, an optional fault
//! in the middle, and `results.json` with what came of it.
//!
//! # A run
//!
//! 1. A new network is written (`init`, with enough funded accounts) in a
//!    temporary directory, or under `--out DIR/network`; ports are the
//!    first free range from 26650 unless `--base-port` says.
//! 2. Every transaction of the warmup and the window is signed before any
//!    node starts ([`plan`], on every core, with a progress bar).
//! 3. The nodes start; once a quorum has a final block, the run's origin
//!    is set: the warmup, then the timed window, then the drain. The
//!    workload goes out at its rate in batches to every node ([`drive`],
//!    refusals handled as [`book`] says), finality is followed on node 0's
//!    event stream ([`follow`]), the nodes' `/metrics` and `/proc` are
//!    read at the window's start and end ([`run`]), and the fault is
//!    injected at the window's middle ([`faults`]).
//! 4. The nodes are stopped — also on an error, and on Ctrl-C — and
//!    `results.json` ([`results::Results`], documented field by field) is
//!    written; the summary table is printed (or the JSON, `--json`).
//!
//! Latency is honest: from when a transaction's first request was sent to
//! when node 0 announced the block holding it, for every transaction, not
//! a sample. A transaction admitted and never final counts as lost.

pub mod book;
pub mod drive;
pub mod faults;
pub mod follow;
pub mod forks;
pub mod lost;
pub mod plan;
pub mod procfs;
pub mod results;
pub mod run;
pub mod scrape;
pub mod stats;
pub mod tally;

use crate::local::client::Client;
use crate::local::net::{self, DEFAULT_BASE_PORT, MAX_ACCOUNTS, MAX_VALIDATORS};
use crate::local::pow::{PowArgs, PowPlan};
use crate::local::state::now_ms;
use crate::local::{Signals, init};
use anyhow::{Context, anyhow, bail, ensure};
use book::{MAX_ATTEMPTS, MAX_PENDING_PER_ACCOUNT};
use drive::Phases;
use faults::{FaultKind, FaultPlan};
use phalanx_chain::ConsensusKind;
use phalanx_consensus::Byzantine;
use results::{BlockCounts, Counts, Requests, Results, RunConfig, Scale, Warmup};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tally::Tally;

/// The chain id of a bench network.
pub const CHAIN_ID: &str = "phalanx-bench";
/// `--warmup` and `--drain` above this (seconds) are refused.
pub const MAX_WARMUP_S: u64 = 600;
/// The latency the default account count plans for (seconds): enough
/// accounts that each has at most [`MAX_PENDING_PER_ACCOUNT`]
/// transactions pending at the offered rate. Twice what a 4-validator
/// HotStuff network showed at 2,000 tx/s on a 2-core machine (p50 about
/// 2 s): with fewer accounts, each spent most of the run at its pending
/// bound and the load went out late.
pub const EXPECTED_LATENCY_S: f64 = 4.0;
/// The fewest accounts a run sends from by default.
pub const MIN_ACCOUNTS: usize = 8;
/// Where results go without `--out`.
pub const DEFAULT_RESULTS_DIR: &str = ".phalanx/bench";
/// Proof of work: the default block interval (ms). A 30 s window then
/// holds about 30 blocks, enough for a mean interval and a stale rate of
/// a few percent to show; 4 miners sharing 1.5 million hashes per second
/// take about a third of one core. Much shorter intervals bring the
/// interval near the time a block takes to be built, gossiped and
/// checked on a loaded 2-core machine, and the stale rate then measures
/// the machine rather than the protocol.
pub const DEFAULT_POW_BLOCK_INTERVAL_MS: u64 = 1_000;
/// Proof of work: the default confirmations that make a block final:
/// small, so that a short run sees many transactions final (about
/// 3 intervals after the first inclusion), and above 1, so that a block
/// can still be reorganized away before it is final.
pub const DEFAULT_POW_CONFIRMATIONS: u64 = 3;

/// `phalanx-testnet bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The protocol: hotstuff, pbft, or pow (proof of work: every node
    /// mines; final means --confirmations confirmations).
    #[arg(long, value_parser = crate::cli::consensus_kind())]
    pub consensus: ConsensusKind,
    /// Validators (n = 3f + 1 keeps f faults tolerated), or miners with
    /// --consensus pow.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Transactions per second to offer, spread over every node.
    #[arg(long)]
    pub tps: f64,
    /// The timed window, in seconds.
    #[arg(long)]
    pub duration: u64,
    /// Seconds of the same load before the window, not measured.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Sending accounts [default: enough that each has at most 48
    /// transactions pending at the offered rate and 4 s of latency; at
    /// least 8].
    #[arg(long)]
    pub accounts: Option<usize>,
    /// A fault at the window's middle: crash-1 (SIGKILL the last
    /// validator), pause-1 (SIGSTOP it for a quarter of the window),
    /// partition (two halves, no quorum, for a quarter), byzantine-1 (the
    /// last validator misbehaves the whole run).
    #[arg(long, value_enum, default_value_t = FaultKind::None)]
    pub faults: FaultKind,
    /// With --faults byzantine-1: the behaviour (silent, equivocate,
    /// double-vote, invalid-signature; hotstuff: stale-qc; pbft:
    /// skip-height, reorder, withhold; pow: selfish, double-spend)
    /// [default: silent; pow: selfish].
    #[arg(long, value_name = "KIND")]
    pub byzantine_kind: Option<Byzantine>,
    /// Proof of work: the mean block interval the genesis target aims at
    /// (e.g. 1s, 500ms) [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::scenario::parse_duration_ms)]
    pub block_interval: Option<u64>,
    /// Proof of work: confirmations that make a block final (the block
    /// itself and k - 1 on top) [default: 3].
    #[arg(long, value_name = "K")]
    pub confirmations: Option<u64>,
    /// Proof of work: the whole network's hash rate in hashes per second,
    /// shared equally by the miners [default: 1500000, about a third of
    /// one core].
    #[arg(long, value_name = "HASHES_PER_SECOND")]
    pub total_hashrate: Option<u64>,
    /// Where to write results.json and keep the network (configs and
    /// logs); a new or empty directory [default: results in
    /// .phalanx/bench/<time>-<consensus>-<n>v-<tps>tps/, the network in a
    /// temporary directory, removed].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// After the window, wait at most this many seconds for the last
    /// transactions to be final.
    #[arg(long, default_value_t = 30)]
    pub drain: u64,
    /// Node i listens on BASE + 2i and BASE + 2i + 1 [default: the first
    /// free range from 26650].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// With --out: keep the nodes' data (their stores) too.
    #[arg(long)]
    pub keep_data: bool,
    /// Print results.json to stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Give up if the network is not healthy within this many seconds.
    #[arg(long, default_value_t = 120)]
    pub start_timeout: u64,
    /// HotStuff and PBFT: the nodes' base view timeout
    /// (`consensus.base_timeout_ms`, e.g. 1s): the first timeout while
    /// rounds are quick (it follows them up under load, and doubles per
    /// failed view); a crashed or silent leader costs about this much. The
    /// batch delay is cut to half of it if longer [default: the node's,
    /// 500ms].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::scenario::parse_duration_ms)]
    pub base_timeout: Option<u64>,
    /// Threads each node splits batches of signature checks over
    /// (`mempool.verify_threads`) [default: 0, every core].
    #[arg(long, value_name = "N")]
    pub verify_threads: Option<usize>,
    /// The nodes keep no transaction index (`node.tx_index = false`):
    /// `GET /txs/{hash}` finds only pending transactions, and a commit
    /// writes about a sixth of the keys. The run follows finality from
    /// the nodes' event streams either way.
    #[arg(long)]
    pub no_tx_index: bool,
    /// Short timeouts and batch delay in the nodes' configs (tests).
    #[arg(long, hide = true)]
    pub quick: bool,
}

/// The run the arguments describe, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub consensus: ConsensusKind,
    pub scale: Scale,
    pub phases: Phases,
    pub fault: FaultPlan,
    /// Proof of work: the network's block interval, confirmations and
    /// hash rates.
    pub pow: Option<PowPlan>,
    pub base_port: u16,
    pub start_timeout_s: u64,
    pub quick: bool,
    /// The nodes' first view timeout, if not their default.
    pub base_timeout_ms: Option<u64>,
    /// The nodes' signature-check threads, if not their default.
    pub verify_threads: Option<usize>,
    /// The nodes keep no transaction index.
    pub no_tx_index: bool,
}

/// The shortest `--base-timeout`: the batch delay is half of it.
pub const MIN_BASE_TIMEOUT_MS: u64 = 100;

/// Accounts enough for `tps` at `latency_s` of latency (see `--accounts`).
pub fn default_accounts(tps: f64, latency_s: f64) -> usize {
    let needed = (tps * latency_s / f64::from(MAX_PENDING_PER_ACCOUNT)).ceil();
    (needed as usize).clamp(MIN_ACCOUNTS, MAX_ACCOUNTS)
}

/// The latency the default account count plans for: [`EXPECTED_LATENCY_S`],
/// or with proof of work the time to k confirmations and one interval
/// more for the first inclusion, if longer.
fn expected_latency_s(pow: Option<&PowPlan>) -> f64 {
    pow.map_or(EXPECTED_LATENCY_S, |p| {
        let k_blocks = (p.confirmations + 1) as f64 * p.block_interval_ms as f64 / 1_000.0;
        k_blocks.max(EXPECTED_LATENCY_S)
    })
}

/// The proof-of-work network of a run, `None` for a BFT one; the pow
/// flags are refused on BFT runs.
fn pow_plan(a: &BenchArgs) -> anyhow::Result<Option<PowPlan>> {
    let args = PowArgs {
        hashrate: Vec::new(),
        block_interval: Some(a.block_interval.unwrap_or(DEFAULT_POW_BLOCK_INTERVAL_MS)),
        confirmations: Some(a.confirmations.unwrap_or(DEFAULT_POW_CONFIRMATIONS)),
        total_hashrate: a.total_hashrate,
    };
    if a.consensus.is_bft() {
        ensure!(
            a.block_interval.is_none() && a.confirmations.is_none() && a.total_hashrate.is_none(),
            "--block-interval, --confirmations and --total-hashrate are for --consensus pow, \
             not {}",
            a.consensus
        );
        return Ok(None);
    }
    Ok(Some(args.resolve(a.validators)?))
}

impl Settings {
    /// Checks the arguments; refuses what makes no sense, saying why.
    pub fn check(a: &BenchArgs) -> anyhow::Result<Settings> {
        plan::check_rate(a.tps, a.duration)?;
        ensure!(
            a.warmup <= MAX_WARMUP_S,
            "--warmup must be at most {MAX_WARMUP_S} seconds"
        );
        ensure!(
            (1..=MAX_WARMUP_S).contains(&a.drain),
            "--drain must be between 1 and {MAX_WARMUP_S} seconds"
        );
        ensure!(
            (1..=MAX_VALIDATORS).contains(&a.validators),
            "--validators must be between 1 and {MAX_VALIDATORS}"
        );
        check_faults(a)?;
        let pow = pow_plan(a)?;
        let planned = plan::planned(a.tps, (a.warmup + a.duration) as f64);
        ensure!(
            planned <= plan::MAX_PLANNED,
            "(--warmup + --duration) x --tps is {planned} transactions; at most {} are signed in \
             advance: shorten the run or lower the rate",
            plan::MAX_PLANNED
        );
        let accounts = a
            .accounts
            .unwrap_or_else(|| default_accounts(a.tps, expected_latency_s(pow.as_ref())));
        ensure!(
            (1..=MAX_ACCOUNTS).contains(&accounts),
            "--accounts must be between 1 and {MAX_ACCOUNTS}"
        );
        let phases = Phases {
            warmup_ms: a.warmup * 1_000,
            window_ms: a.duration * 1_000,
            drain_ms: a.drain * 1_000,
        };
        Ok(Settings {
            consensus: a.consensus,
            scale: Scale {
                validators: a.validators,
                tps: a.tps,
                duration_s: a.duration,
                warmup_s: a.warmup,
                drain_s: a.drain,
                accounts,
                planned,
            },
            phases,
            fault: FaultPlan::new(
                a.faults,
                a.validators,
                phases.warmup_ms,
                phases.window_ms,
                a.byzantine_kind
                    .or_else(|| (a.consensus == ConsensusKind::Pow).then_some(Byzantine::Selfish)),
            ),
            pow,
            base_port: a.base_port.unwrap_or(DEFAULT_BASE_PORT),
            start_timeout_s: a.start_timeout,
            quick: a.quick,
            base_timeout_ms: a.base_timeout,
            verify_threads: a.verify_threads,
            no_tx_index: a.no_tx_index,
        })
    }
}

fn check_faults(a: &BenchArgs) -> anyhow::Result<()> {
    if let Some(ms) = a.base_timeout {
        ensure!(
            a.consensus.is_bft(),
            "--base-timeout is for --consensus hotstuff and pbft (proof of work has no views)"
        );
        ensure!(
            ms >= MIN_BASE_TIMEOUT_MS,
            "--base-timeout {ms}ms is below {MIN_BASE_TIMEOUT_MS}ms"
        );
    }
    if a.consensus == ConsensusKind::Pow {
        ensure!(
            a.faults == FaultKind::None || a.validators >= 2,
            "--faults {} with --consensus pow needs at least 2 miners: with 1, the fault stops \
             the only miner",
            a.faults.name()
        );
    } else if a.faults != FaultKind::None {
        ensure!(
            a.validators >= 4,
            "--faults {} needs at least 4 validators: with {}, f = 0 and one faulty validator \
             stops the chain",
            a.faults.name(),
            a.validators
        );
    }
    if let Some(kind) = a.byzantine_kind {
        ensure!(
            a.faults == FaultKind::Byzantine1,
            "--byzantine-kind goes with --faults byzantine-1"
        );
        init::check_byzantine(
            a.consensus,
            a.validators,
            &[crate::sim::scenario::ByzantineSpec {
                replicas: Vec::new(),
                behaviour: kind,
            }],
        )?;
    }
    Ok(())
}

/// Where a run writes.
#[derive(Debug)]
pub struct Dirs {
    /// results.json goes here.
    pub out: PathBuf,
    /// The network's directory.
    pub network: PathBuf,
    /// The network is in a temporary directory, removed at the end.
    temporary: bool,
}

impl Dirs {
    /// `--out` (new or empty) or the defaults.
    fn make(a: &BenchArgs, s: &Settings) -> anyhow::Result<Dirs> {
        let stamp = now_ms() / 1_000;
        let dirs = match &a.out {
            Some(out) => {
                let out = unused_dir(out)?;
                Dirs {
                    network: out.join("network"),
                    out,
                    temporary: false,
                }
            }
            None => Dirs {
                out: net::absolute(Path::new(DEFAULT_RESULTS_DIR))?.join(format!(
                    "{stamp}-{}-{}v-{}tps",
                    s.consensus, s.scale.validators, s.scale.tps
                )),
                network: std::env::temp_dir().join(format!(
                    "phalanx-bench-{}-{}",
                    std::process::id(),
                    now_ms()
                )),
                temporary: true,
            },
        };
        if !dirs.temporary {
            std::fs::create_dir_all(&dirs.out)
                .with_context(|| format!("creating {}", dirs.out.display()))?;
        }
        Ok(dirs)
    }

    /// After the run: the temporary network removed; a kept one loses its
    /// stores unless `keep_data`.
    fn clean(&self, validators: usize, keep_data: bool) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.network);
        } else if !keep_data {
            for i in 0..validators {
                let _ = std::fs::remove_dir_all(self.network.join(format!("node{i}/data")));
            }
        }
    }
}

/// `--out`, absolute, checked to be a new or empty directory (not made).
pub fn unused_dir(out: &Path) -> anyhow::Result<PathBuf> {
    let out = net::absolute(out)?;
    if out.exists() && !out.is_dir() {
        bail!("--out {}: not a directory", out.display());
    }
    let used = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some());
    ensure!(
        !used,
        "--out {}: the directory is not empty; give a new or empty one",
        out.display()
    );
    Ok(out)
}

impl Drop for Dirs {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.network);
        }
    }
}

/// The first base port from 26650 whose 2n ports are free on 127.0.0.1.
fn free_base_port(validators: usize) -> anyhow::Result<u16> {
    let span = 2 * validators;
    for attempt in 0..64 {
        let Ok(base) = u16::try_from(usize::from(DEFAULT_BASE_PORT) + attempt * span) else {
            break;
        };
        let free = (0..span).all(|i| {
            u16::try_from(usize::from(base) + i)
                .is_ok_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free range of {span} ports from {DEFAULT_BASE_PORT}: give --base-port")
}

/// Calls off signing when dropped (the run ended early).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `bench`.
pub fn bench(args: &BenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (results, dirs) = execute(args, std::env::args().collect())?;
    std::fs::create_dir_all(&dirs.out)
        .with_context(|| format!("creating {}", dirs.out.display()))?;
    let path = dirs.out.join("results.json");
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(&path, format!("{json}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    if args.json {
        writeln!(out, "{json}")?;
    } else {
        results.print(out)?;
        writeln!(out, "results: {}", path.display())?;
        if !dirs.temporary {
            writeln!(out, "network (configs, logs): {}", dirs.network.display())?;
        }
    }
    verdict(&results).with_context(|| format!("see {}", path.display()))
}

/// A run's results, refused if they are not a benchmark: a proof-of-work
/// safety violation, or no transaction of the window final.
pub fn verdict(results: &Results) -> anyhow::Result<()> {
    if let Some(pow) = &results.pow {
        ensure!(
            pow.safety_violations == 0,
            "proof of work: {} safety violations (a final block reverted, or a node halted on a \
             conflict with its final chain): {}",
            pow.safety_violations,
            pow.safety_notes.join("; "),
        );
    }
    ensure!(
        results.transactions.finalized > 0,
        "no transaction of the window became final"
    );
    Ok(())
}

/// A run stopped by Ctrl-C or SIGTERM (its nodes were stopped).
#[derive(Debug, thiserror::Error)]
#[error("interrupted: the nodes were stopped")]
pub struct Interrupted;

/// One run, in this process: the network made, run, measured and
/// stopped; its results returned (not written) with where it ran.
/// `command` is recorded as the run's command line. Progress goes to
/// stderr.
pub fn execute(args: &BenchArgs, command: Vec<String>) -> anyhow::Result<(Results, Dirs)> {
    let mut s = Settings::check(args)?;
    if args.base_port.is_none() {
        s.base_port = free_base_port(s.scale.validators)?;
    }
    let provenance = Provenance {
        command,
        started_at_ms: now_ms(),
        machine: procfs::Machine::this(),
    };
    let dirs = Dirs::make(args, &s)?;
    let rt = crate::local::runtime()?;
    let results = rt.block_on(async {
        let mut signals = Signals::catch()?;
        tokio::select! {
            r = run_bench(&s, &dirs, provenance) => r,
            () = signals.recv() => Err(Interrupted.into()),
        }
    });
    dirs.clean(s.scale.validators, args.keep_data);
    Ok((results?, dirs))
}

/// What a run was, apart from its settings.
#[derive(Debug)]
struct Provenance {
    command: Vec<String>,
    started_at_ms: u64,
    machine: procfs::Machine,
}

/// Everything between the checked arguments and the figures.
async fn run_bench(s: &Settings, dirs: &Dirs, provenance: Provenance) -> anyhow::Result<Results> {
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(Arc::clone(&cancel));
    let net = run::create_network(s, dirs)?;
    eprintln!(
        "bench: a {}-validator {} network in {} (ports {}..{}), {} accounts",
        s.scale.validators,
        s.consensus,
        dirs.network.display(),
        s.base_port,
        usize::from(s.base_port) + 2 * s.scale.validators - 1,
        s.scale.accounts
    );
    let signed = std::time::Instant::now();
    let workload = run::sign(s, &net, &cancel).await?;
    let signing_s = signed.elapsed().as_secs_f64();
    eprintln!(
        "bench: signed {} transactions in {signing_s:.1} s",
        workload.len()
    );
    let client = Client::new()?;
    let nodes = run::start(s, &net, &client).await?;
    eprintln!(
        "bench: the nodes are up; warmup {} s, window {} s",
        s.scale.warmup_s, s.scale.duration_s
    );
    let measured = run::measure(s, &net, &client, nodes, workload).await?;
    if !measured.killed.is_empty() {
        eprintln!(
            "bench: nodes {:?} did not stop on SIGTERM and were killed",
            measured.killed
        );
    }
    assemble(s, &net, &measured, provenance, signing_s)
}

/// `results.json` from what the run measured.
fn assemble(
    s: &Settings,
    net: &net::Network,
    m: &run::Measured,
    provenance: Provenance,
    signing_s: f64,
) -> anyhow::Result<Results> {
    let book = follow::lock(&m.outcome.book);
    let phases = s.phases;
    let workload = &*m.outcome.workload;
    let tally = Tally::count(&book, workload, &phases);
    let window_s = phases.window_ms as f64 / 1_000.0;
    let nodes: Vec<results::NodeFigures> = net
        .nodes
        .iter()
        .map(|node| {
            let i = node.index;
            run::node_figures(
                i,
                node.role(),
                m.pids.get(i).copied().unwrap_or(0),
                (
                    m.exits.get(i).cloned().flatten(),
                    m.halted.get(i).cloned().flatten(),
                ),
                &m.readings.get(i).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let config = phalanx_node::config::Config::load(
        &net.nodes.first().ok_or_else(|| anyhow!("no node"))?.home,
    )?;
    Ok(Results {
        format: results::FORMAT,
        command: provenance.command,
        git_commit: git_commit(),
        started_at_ms: provenance.started_at_ms,
        machine: provenance.machine,
        config: RunConfig {
            consensus: s.consensus.to_string(),
            scale: s.scale.clone(),
            faults: s.fault.kind.name().to_owned(),
            base_port: s.base_port,
            tick_ms: drive::TICK.as_millis() as u64,
            max_in_flight_per_node: drive::MAX_IN_FLIGHT_PER_NODE,
            max_batch_txs: drive::MAX_BATCH_TXS,
            max_pending_per_account: MAX_PENDING_PER_ACCOUNT,
            max_attempts: MAX_ATTEMPTS,
            node_consensus: serde_json::to_value(&config.consensus)?,
            node_mempool: serde_json::to_value(&config.mempool)?,
            node_store: serde_json::json!({
                "cache_mb": config.node.cache_mb,
                "tx_index": config.node.tx_index,
            }),
            pow: s.pow.as_ref().map(|p| results::PowConfig {
                block_interval_ms: p.block_interval_ms,
                confirmations: p.confirmations,
                total_hashrate: p.total_hashrate,
                hashrate_limits: p.hashrate_limits(),
            }),
        },
        offered_tps: s.scale.tps,
        submitted_tps: (tally.submitted - tally.sent_late) as f64 / window_s,
        achieved_tps: tally.final_in_window as f64 / window_s,
        transactions: counts(&tally, &book, &m.lost),
        latency_ms: stats::Latency::of_sorted(&tally.latencies_ms),
        latency_histogram: stats::histogram(&tally.latencies_ms),
        submit_lag_ms: stats::Latency::of_sorted(&tally.submit_lag_ms),
        blocks: block_counts(book.blocks(), &phases),
        // Proof of work has no views (its nodes' view counter follows the
        // height).
        view_changes: nodes
            .iter()
            .filter_map(|n| n.view_changes)
            .max()
            .filter(|_| s.pow.is_none()),
        warmup: Warmup {
            offered: tally.warmup_offered,
            finalized: tally.warmup_finalized,
        },
        requests: Requests {
            sent: m.outcome.requests,
            without_answer: m.outcome.request_errors,
            last_error: m.outcome.last_error.clone(),
        },
        fault: m.fault.clone(),
        pow: s
            .pow
            .as_ref()
            .map(|plan| pow_figures(plan, &book, workload, &phases, m, &nodes)),
        observer: 0,
        generator: generator(signing_s),
        timeline: Tally::timeline(&book, workload, &phases, m.outcome.ended_ms),
        nodes,
    })
}

/// Proof of work's figures (see [`results::PowFigures`]).
fn pow_figures(
    plan: &PowPlan,
    book: &book::Book,
    workload: &plan::Workload,
    phases: &Phases,
    m: &run::Measured,
    nodes: &[results::NodeFigures],
) -> results::PowFigures {
    let sum = |f: fn(&results::NodePow) -> Option<u64>| {
        let values: Vec<u64> = nodes.iter().filter_map(|n| f(n.pow.as_ref()?)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<u64>())
    };
    let mined_blocks = sum(|p| p.mined_blocks);
    let observer = m.readings.first();
    let chain_blocks = observer.and_then(|r| {
        let (a, b) = (r.first.scrape.as_ref()?, r.last.scrape.as_ref()?);
        Some(b.height.saturating_sub(a.height))
    });
    let (stale_blocks, stale_rate) = match (mined_blocks, chain_blocks) {
        (Some(mined), Some(chain)) => {
            let (stale, rate) = forks::stale(mined, chain);
            (Some(stale), rate)
        }
        _ => (None, None),
    };
    let window = phases.warmup_ms..phases.window_end_ms();
    let final_blocks: Vec<(u64, u64)> = book
        .blocks()
        .iter()
        .filter(|b| window.contains(&u64::from(b.seen_ms)))
        .map(|b| (b.height, b.timestamp_ms))
        .collect();
    let watch = book.forks.as_ref();
    let reorgs = watch.map_or_else(forks::ReorgSummary::default, |w| {
        forks::ReorgSummary::of(w.reorgs(), phases)
    });
    let first_inclusion = watch.map(|w| {
        forks::first_inclusions(w, workload, phases, |k| {
            book.txs()
                .get(k as usize)
                .map(|t| t.sent_ms)
                .filter(|ms| *ms != book::NEVER)
        })
    });
    let mut notes: Vec<String> = watch.map(|w| w.violations().to_vec()).unwrap_or_default();
    let halted: Vec<String> = nodes
        .iter()
        .filter_map(|n| Some(format!("node {} halted: {}", n.index, n.halted.as_ref()?)))
        .collect();
    let violations = watch.map_or(0, |w| w.violations_total)
        + halted.len() as u64
        + m.disagreements.len() as u64;
    notes.extend(halted);
    notes.extend(m.disagreements.iter().cloned());
    notes.truncate(forks::MAX_VIOLATIONS);
    results::PowFigures {
        block_interval_ms: plan.block_interval_ms,
        observed_block_interval_ms: forks::mean_interval_ms(&final_blocks),
        confirmations: plan.confirmations,
        mined_blocks,
        chain_blocks,
        stale_blocks,
        stale_rate,
        orphaned_blocks: sum(|p| p.orphaned_blocks),
        reorgs: results::ReorgFigures {
            count: reorgs.count,
            max_depth: reorgs.max_depth,
            mean_depth: reorgs.mean_depth,
            reverted_txs: reorgs.reverted_txs,
            all_nodes: sum(|p| p.reorgs),
            returned_txs: sum(|p| p.reorg_returned_txs),
        },
        first_inclusion_ms: first_inclusion.and_then(|l| stats::Latency::of_sorted(&l)),
        safety_violations: violations,
        safety_notes: notes,
    }
}

/// This process's own cost so far.
fn generator(signing_s: f64) -> results::Generator {
    let me = procfs::sample(std::process::id());
    results::Generator {
        cpu_s: me
            .cpu_ticks
            .map(|t| t as f64 / procfs::clock_ticks_per_second() as f64),
        peak_rss_bytes: me.peak_rss_bytes,
        signing_s,
    }
}

fn counts(t: &Tally, book: &book::Book, lost: &lost::LostCheck) -> Counts {
    Counts {
        offered: t.offered,
        submitted: t.submitted,
        sent_late: t.sent_late,
        finalized: t.finalized,
        rejected: t.rejected_total(),
        rejected_by_reason: t.rejected.clone(),
        lost: t.lost,
        lost_behind_refusal: t.lost_behind_refusal,
        lost_check: lost.clone(),
        skipped: t.skipped,
        unsent: t.unsent,
        refusals_by_reason: book.refusals.clone(),
        resends_already_known: book.already_known,
    }
}

/// The blocks seen inside the window.
fn block_counts(blocks: &[book::BlockSeen], phases: &Phases) -> BlockCounts {
    let inside: Vec<&book::BlockSeen> = blocks
        .iter()
        .filter(|b| (phases.warmup_ms..phases.window_end_ms()).contains(&u64::from(b.seen_ms)))
        .collect();
    let txs: u64 = inside.iter().map(|b| u64::from(b.txs)).sum();
    let count = inside.len() as u64;
    BlockCounts {
        count,
        txs,
        txs_per_block: (count > 0).then(|| txs as f64 / count as f64),
        max_txs_per_block: inside.iter().map(|b| u64::from(b.txs)).max(),
        empty: inside.iter().filter(|b| b.txs == 0).count() as u64,
    }
}

/// The source tree's commit (see [`Results::git_commit`]).
pub fn git_commit() -> Option<String> {
    if let Some(commit) = option_env!("PHALANX_GIT_COMMIT") {
        return Some(commit.to_owned());
    }
    let tree = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(tree)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn check(line: &str) -> anyhow::Result<Settings> {
        let args = Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))?;
        Settings::check(&args.bench)
    }

    #[test]
    fn sensible_arguments_make_a_run() {
        let s = check("--consensus hotstuff --tps 2000 --duration 20").unwrap();
        assert_eq!(
            (s.scale.validators, s.scale.warmup_s, s.scale.accounts),
            (4, 5, 167)
        );
        assert_eq!(s.scale.planned, 50_000);
        assert_eq!(s.phases.window_end_ms(), 25_000);
        let s =
            check("--consensus pbft --tps 50 --duration 3 --warmup 1 --faults crash-1").unwrap();
        assert_eq!(
            (s.scale.accounts, s.fault.nodes.clone(), s.fault.start_ms),
            (8, vec![3], 2_500)
        );
        let s = check(
            "--consensus pbft --tps 10 --duration 3 --faults byzantine-1 --byzantine-kind withhold",
        )
        .unwrap();
        assert_eq!(s.fault.behaviour, Some(Byzantine::Withhold));
        assert_eq!(default_accounts(20_000.0, EXPECTED_LATENCY_S), 1_667);
        // Proof of work: 1 s blocks and 3 confirmations by default, four
        // miners sharing the default hash rate.
        let s = check("--consensus pow --tps 200 --duration 30").unwrap();
        let pow = s.pow.clone().unwrap();
        assert_eq!((pow.block_interval_ms, pow.confirmations), (1_000, 3));
        assert_eq!(pow.hashrate_limits(), vec![Some(375_000); 4]);
        assert_eq!(s.scale.accounts, 17);
        assert!(
            check("--consensus hotstuff --tps 200 --duration 30")
                .unwrap()
                .pow
                .is_none()
        );
        let s = check(
            "--consensus pow --tps 20 --duration 6 --block-interval 500ms --confirmations 2 \
             --validators 3 --faults partition",
        )
        .unwrap();
        let pow = s.pow.clone().unwrap();
        assert_eq!((pow.block_interval_ms, pow.confirmations), (500, 2));
        assert_eq!(s.fault.groups, vec![vec![0, 1], vec![2]]);
        // Slow blocks and many confirmations: more accounts.
        let s =
            check("--consensus pow --tps 200 --duration 30 --block-interval 5s --confirmations 6")
                .unwrap();
        assert_eq!(s.scale.accounts, 146);
        let s = check("--consensus pow --tps 20 --duration 6 --faults byzantine-1").unwrap();
        assert_eq!(s.fault.behaviour, Some(Byzantine::Selfish));
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for (line, says) in [
            ("--consensus hotstuff --tps 0 --duration 5", "--tps"),
            ("--consensus hotstuff --tps 1e9 --duration 5", "--tps"),
            ("--consensus hotstuff --tps 10 --duration 0", "--duration"),
            (
                "--consensus hotstuff --tps 10 --duration 5 --drain 0",
                "--drain",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --validators 0",
                "--validators",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --accounts 0",
                "--accounts",
            ),
            (
                "--consensus hotstuff --tps 100000 --duration 3600",
                "signed in advance",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --validators 3 --faults crash-1",
                "at least 4 validators",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --byzantine-kind silent",
                "--faults byzantine-1",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --faults byzantine-1 --byzantine-kind withhold",
                "no such behaviour",
            ),
            ("--consensus raft --tps 10 --duration 5", "invalid value"),
            (
                "--consensus pbft --tps 10 --duration 5 --confirmations 3",
                "are for --consensus pow",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --block-interval 1s",
                "are for --consensus pow",
            ),
            (
                "--consensus pow --tps 10 --duration 5 --confirmations 0",
                "--confirmations",
            ),
            (
                "--consensus pow --tps 10 --duration 5 --block-interval 0ms",
                "--block-interval",
            ),
            (
                "--consensus pow --tps 10 --duration 5 --faults byzantine-1 --byzantine-kind equivocate",
                "no such behaviour",
            ),
            (
                "--consensus pow --tps 10 --duration 5 --validators 1 --faults crash-1",
                "at least 2 miners",
            ),
            (
                "--consensus hotstuff --tps 10 --duration 5 --faults crash-2",
                "invalid value",
            ),
        ] {
            let err = format!("{:#}", check(line).unwrap_err());
            assert!(err.contains(says), "{line}: {err}");
        }
    }
}
