//! `phalanx-testnet compare`: PBFT, HotStuff and proof of work side by
//! side, in one report.
//!
//! Every protocol runs under every fault at the same offered load, each
//! run a `bench` run in this process ([`crate::bench::execute`]), one
//! network at a time; then a saturation sweep (no fault, a few offered
//! loads, shorter windows), optionally runs at other validator counts,
//! and the deterministic simulator's sweeps (messages per committed block
//! against n, proof of work's stale rate against the block interval).
//! The figures go to `results.json` (after every run, so an interrupted
//! comparison keeps what it measured) and `results.csv`; the report to
//! `report.html` (self-contained) and `report.md` with the charts as SVG
//! files beside it. `compare --from DIR` renders the report again from
//! `DIR/results.json` without running anything.
//!
//! Proof of work under `partition` runs with more confirmations than the
//! others ([`partition_confirmations`]): enough that neither half can
//! finalize a block of its own branch while split, so that the heal shows
//! what BlockBench showed, a fork resolved by a reorganization, rather
//! than two halves that each finalized their own chain.

pub mod charts;
pub mod figures;
pub mod model;
pub mod plot;
pub mod reading;
pub mod render;
pub mod runner;
pub mod sims;
pub mod tables;

use crate::bench::faults::FaultKind;
use crate::bench::{self, DEFAULT_POW_BLOCK_INTERVAL_MS, DEFAULT_POW_CONFIRMATIONS};
use crate::local::state::now_ms;
use anyhow::{Context, bail, ensure};
use model::{Comparison, Settings};
use phalanx_chain::ConsensusKind;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The saturation sweep's offered loads by default, as multiples of
/// `--tps`.
pub const DEFAULT_SWEEP_FACTORS: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// The saturation sweep's window by default (s).
pub const DEFAULT_SWEEP_DURATION_S: u64 = 10;

/// `phalanx-testnet compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The protocols, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::consensus_kind(),
          default_values = ["pbft", "hotstuff", "pow"])]
    pub consensus: Vec<ConsensusKind>,
    /// Validators (miners with pow) of every run but --sweep-validators'.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Transactions per second offered in every protocol x fault run.
    #[arg(long, required_unless_present = "from")]
    pub tps: Option<f64>,
    /// The timed window of every protocol x fault run (s).
    #[arg(long, required_unless_present = "from")]
    pub duration: Option<u64>,
    /// Seconds of load before each window, not measured.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// The faults, comma-separated: none, crash-1, pause-1, partition,
    /// byzantine-1 (as bench --faults).
    #[arg(long, value_delimiter = ',', value_enum,
          default_values = ["none", "crash-1", "partition"])]
    pub faults: Vec<FaultKind>,
    /// The saturation sweep's offered loads (tx/s), comma-separated, each
    /// run with no fault for --sweep-duration [default: --tps x 0.5, 1,
    /// 2, 4].
    #[arg(long, value_delimiter = ',', conflicts_with = "no_sweep")]
    pub sweep_tps: Option<Vec<f64>>,
    /// The saturation sweep's window (s).
    #[arg(long, default_value_t = DEFAULT_SWEEP_DURATION_S)]
    pub sweep_duration: u64,
    /// No saturation sweep.
    #[arg(long)]
    pub no_sweep: bool,
    /// Also run every protocol with no fault at these validator counts
    /// (comma-separated), at --tps for --duration.
    #[arg(long, value_delimiter = ',')]
    pub sweep_validators: Vec<usize>,
    /// Proof of work: the mean block interval (e.g. 1s, 500ms) [default:
    /// 1s].
    #[arg(long, value_name = "DURATION", value_parser = crate::sim::scenario::parse_duration_ms)]
    pub block_interval: Option<u64>,
    /// Proof of work: confirmations that make a block final, except under
    /// partition (see the docs) [default: 3].
    #[arg(long, value_name = "K")]
    pub confirmations: Option<u64>,
    /// Simulator: seeds per point of its sweeps.
    #[arg(long, default_value_t = sims::DEFAULT_SEEDS)]
    pub sim_seeds: u64,
    /// Simulator: committee sizes of the messages-per-block sweep.
    #[arg(long, value_delimiter = ',', default_values_t = sims::DEFAULT_VALIDATORS)]
    pub sim_validators: Vec<usize>,
    /// Simulator: virtual time per run of the messages-per-block sweep.
    #[arg(long, default_value = "3s", value_parser = crate::sim::scenario::parse_duration_ms)]
    pub sim_duration: u64,
    /// No simulator sweeps.
    #[arg(long)]
    pub no_sim: bool,
    /// A new or empty directory for the report and results [default with
    /// --from: the --from directory].
    #[arg(long, required_unless_present = "from")]
    pub out: Option<PathBuf>,
    /// Render the report again from DIR/results.json, running nothing.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// After each window, wait at most this many seconds for the last
    /// transactions to be final.
    #[arg(long, default_value_t = 30)]
    pub drain: u64,
    /// Node i listens on BASE + 2i and BASE + 2i + 1 [default: the first
    /// free range from 26650, for each run].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Give up a run whose network is not healthy within this many
    /// seconds.
    #[arg(long, default_value_t = 120)]
    pub start_timeout: u64,
    /// Short timeouts and batch delay in the nodes' configs (tests).
    #[arg(long, hide = true)]
    pub quick: bool,
}

/// Proof of work's confirmations under `partition`: at least `k`, and
/// enough that the larger half (a share `ceil(n/2) / n` of the hash
/// power), mining for the quarter of the window the partition lasts, has
/// about a 0.1 % chance to bury a block of its own branch `k` deep: the
/// Poisson mean `m` of its blocks plus three standard deviations, plus
/// one. Neither half then finalizes its branch, and the heal reorganizes
/// the lighter one away instead of leaving two final chains.
pub fn partition_confirmations(k: u64, block_interval_ms: u64, duration_s: u64, n: usize) -> u64 {
    let n = n.max(1);
    let share = n.div_ceil(2) as f64 / n as f64;
    let split_ms = (duration_s * 1_000 / 4) as f64;
    let m = split_ms / block_interval_ms.max(1) as f64 * share;
    let safe = (m + 3.0 * m.sqrt()).ceil() as u64 + 1;
    k.max(safe)
}

impl CompareArgs {
    /// The settings of a comparison to run, checked.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let (Some(tps), Some(duration_s)) = (self.tps, self.duration) else {
            bail!("--tps and --duration are needed to run a comparison");
        };
        ensure!(!self.consensus.is_empty(), "--consensus names no protocol");
        ensure!(!self.faults.is_empty(), "--faults names no fault");
        ensure!(
            self.sim_seeds >= 1 && self.sim_validators.iter().all(|n| *n >= 1),
            "--sim-seeds and --sim-validators must be at least 1"
        );
        for (i, c) in self.consensus.iter().enumerate() {
            ensure!(
                !self.consensus.iter().take(i).any(|x| x == c),
                "--consensus names {c} twice"
            );
        }
        for (i, f) in self.faults.iter().enumerate() {
            ensure!(
                !self.faults.iter().take(i).any(|x| x == f),
                "--faults names {} twice",
                f.name()
            );
        }
        let sweep_tps = match (&self.sweep_tps, self.no_sweep) {
            (_, true) => Vec::new(),
            (Some(list), false) => list.clone(),
            (None, false) => DEFAULT_SWEEP_FACTORS.iter().map(|f| tps * f).collect(),
        };
        let interval = self.block_interval.unwrap_or(DEFAULT_POW_BLOCK_INTERVAL_MS);
        let k = self.confirmations.unwrap_or(DEFAULT_POW_CONFIRMATIONS);
        Ok(Settings {
            protocols: self.consensus.iter().map(|c| c.name().to_owned()).collect(),
            validators: self.validators,
            tps,
            duration_s,
            warmup_s: self.warmup,
            faults: self.faults.iter().map(|f| f.name().to_owned()).collect(),
            sweep_tps,
            sweep_duration_s: self.sweep_duration,
            sweep_validators: self.sweep_validators.clone(),
            pow_block_interval_ms: interval,
            pow_confirmations: k,
            pow_partition_confirmations: partition_confirmations(
                k,
                interval,
                duration_s,
                self.validators,
            ),
        })
    }
}

/// Runs `compare`.
pub fn compare(args: &CompareArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(from) = &args.from {
        let comparison = read(from)?;
        let dir = args.out.clone().unwrap_or_else(|| from.clone());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if dir != *from {
            let (src, dst) = (from.join("results.json"), dir.join("results.json"));
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
        render_into(&dir, &comparison)?;
        writeln!(out, "report: {}", dir.join("report.html").display())?;
        return Ok(());
    }
    let Some(dir) = &args.out else {
        bail!("--out is needed to run a comparison");
    };
    let settings = args.settings()?;
    let items = runner::plan(args, &settings);
    for item in &items {
        bench::Settings::check(&runner::bench_args(item, args, &settings)).with_context(|| {
            format!(
                "{} {} at {} tx/s with {} validators",
                item.consensus,
                item.fault.name(),
                item.tps,
                item.validators
            )
        })?;
    }
    let dir = new_dir(dir)?;
    let started = std::time::Instant::now();
    let mut comparison = Comparison {
        format: model::FORMAT,
        command: std::env::args().collect(),
        git_commit: bench::git_commit(),
        started_at_ms: now_ms(),
        wall_s: 0.0,
        machine: bench::procfs::Machine::this(),
        settings: settings.clone(),
        runs: Vec::new(),
        sim: None,
    };
    save(&dir, &comparison)?;
    let ran = runner::run_all(&items, args, &settings, |runs| {
        let partial = Comparison {
            runs: runs.to_vec(),
            wall_s: started.elapsed().as_secs_f64(),
            ..comparison.clone()
        };
        if let Err(e) = save(&dir, &partial) {
            eprintln!("compare: saving results.json: {e:#}");
        }
    });
    comparison.runs = match ran {
        Ok(runs) => runs,
        Err((runs, interrupted)) => {
            return Err(anyhow::Error::from(interrupted).context(format!(
                "after {} of {} runs; their results are in {} (compare --from renders them)",
                runs.len(),
                items.len(),
                dir.join("results.json").display()
            )));
        }
    };
    if !args.no_sim {
        comparison.sim = Some(runner::run_sims(args).with_context(|| {
            format!(
                "the simulator sweeps; the runs' results are in {} (compare --from renders them)",
                dir.join("results.json").display()
            )
        })?);
    }
    comparison.wall_s = started.elapsed().as_secs_f64();
    save(&dir, &comparison)?;
    // Rendered from results.json as read back, as --from renders it: the
    // same bytes either way (a float read back may differ in its last
    // bit from the one written).
    let comparison = read(&dir)?;
    render_into(&dir, &comparison)?;
    let failed = comparison.runs.iter().filter(|r| r.error.is_some()).count();
    writeln!(
        out,
        "compare: {} runs ({failed} failed) in {}; report: {}",
        comparison.runs.len(),
        runner::minutes(comparison.wall_s),
        dir.join("report.html").display()
    )?;
    for line in reading::reading(&reading::Facts::of(&comparison)) {
        writeln!(out, "- {line}")?;
    }
    Ok(())
}

/// `--out`: a new or empty directory, made.
fn new_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = bench::unused_dir(dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes `results.json` and `results.csv`.
fn save(dir: &Path, c: &Comparison) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(c)?;
    write(&dir.join("results.json"), &format!("{json}\n"))?;
    write(&dir.join("results.csv"), &tables::csv(c))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `DIR/results.json`, checked.
pub fn read(dir: &Path) -> anyhow::Result<Comparison> {
    let path = dir.join("results.json");
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_RESULTS_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        text.len() as u64 <= MAX_RESULTS_BYTES,
        "{}: more than the {MAX_RESULTS_BYTES} bytes a comparison's results take; not reading it",
        path.display()
    );
    let value = serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("{}: not JSON", path.display()))?;
    let format = value.get("format").and_then(serde_json::Value::as_u64);
    ensure!(
        format == Some(u64::from(model::FORMAT)),
        "{}: format {} is not this version's ({}); is it a compare results.json (bench's has \
         no settings)?",
        path.display(),
        format.map_or_else(|| "missing".to_owned(), |f| f.to_string()),
        model::FORMAT
    );
    serde_json::from_value(value).with_context(|| format!("{}: not a comparison", path.display()))
}

/// The largest `results.json` that `--from` reads. A comparison keeps
/// per-second timelines and latency histograms of each run: about 18 KiB
/// a run (368 KB for the README's 21 runs), so this bound is thousands.
const MAX_RESULTS_BYTES: u64 = 256 * 1024 * 1024;

/// Writes `report.html`, `report.md` and the charts' SVG files.
pub fn render_into(dir: &Path, c: &Comparison) -> anyhow::Result<()> {
    let report = render::Report {
        comparison: c,
        reading: reading::reading(&reading::Facts::of(c)),
        tables: tables::all(c),
        charts: charts::all(c)?,
    };
    for chart in &report.charts {
        write(&dir.join(format!("{}.svg", chart.name)), &chart.svg)?;
    }
    write(&dir.join("report.html"), &render::html(&report))?;
    write(&dir.join("report.md"), &render::markdown(&report))?;
    write(&dir.join("results.csv"), &tables::csv(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_buries_no_branch_block_k_deep() {
        // 30 s window: a 7.5 s split, the larger half mines 3.75 blocks
        // on average at 1 s blocks.
        assert_eq!(partition_confirmations(3, 1_000, 30, 4), 11);
        // A short split keeps the asked k.
        assert_eq!(partition_confirmations(3, 5_000, 4, 4), 3);
        assert_eq!(partition_confirmations(3, 1_000, 4, 4), 4);
        assert_eq!(partition_confirmations(20, 1_000, 30, 4), 20);
        // Odd n: the larger half has more of the hash power.
        assert!(partition_confirmations(3, 1_000, 30, 5) >= 11);
    }

    #[test]
    fn a_missing_or_foreign_results_json_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = format!(
            "{:#}",
            read(dir.path())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        assert!(err.contains("reading"), "{err}");
        std::fs::write(
            dir.path().join("results.json"),
            "{\"format\": 1, \"command\": []}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = read(dir.path())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("not a comparison"), "{err}");
        std::fs::write(dir.path().join("results.json"), "[1, 2").unwrap_or_else(|e| panic!("{e}"));
        let err = read(dir.path())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("not JSON"), "{err}");
        std::fs::write(dir.path().join("results.json"), "{\"format\": 9}")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = read(dir.path())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("format 9"), "{err}");
    }
}
