//! `results.json` of `compare`: every run's full `bench` results, the
//! simulator's sweeps, and how it all was made. `compare --from DIR`
//! reads it back, so every type here is read as well as written.

use crate::bench::procfs::Machine;
use crate::bench::results::Results;
use serde::{Deserialize, Serialize};

/// The format of `results.json`; raised when a field changes meaning.
pub const FORMAT: u32 = 1;

/// `compare`'s `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// [`FORMAT`].
    pub format: u32,
    /// The command line, one argument per element.
    pub command: Vec<String>,
    /// The source tree's commit (as `bench` records it).
    pub git_commit: Option<String>,
    /// When the comparison started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// Wall time of the whole comparison (s).
    pub wall_s: f64,
    pub machine: Machine,
    pub settings: Settings,
    /// Every measured run, in the order they ran.
    pub runs: Vec<Run>,
    /// The simulator's sweeps (`null` with `--no-sim`).
    pub sim: Option<SimSweeps>,
}

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub protocols: Vec<String>,
    pub validators: usize,
    /// The offered rate of the protocol x fault runs (tx/s).
    pub tps: f64,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub faults: Vec<String>,
    /// The saturation sweep's offered rates (tx/s) and window (s).
    pub sweep_tps: Vec<f64>,
    pub sweep_duration_s: u64,
    /// The scalability runs' validator counts (empty: none).
    pub sweep_validators: Vec<usize>,
    /// Proof of work: the block interval (ms) and confirmations of every
    /// run but the partition's, and the partition run's confirmations
    /// (see `compare::partition_confirmations`).
    pub pow_block_interval_ms: u64,
    pub pow_confirmations: u64,
    pub pow_partition_confirmations: u64,
}

/// Which part of the comparison a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Every protocol under every fault at `--tps`.
    Matrix,
    /// The saturation sweep: fault none, `--sweep-tps`.
    Load,
    /// Fault none at `--tps` with `--sweep-validators` validators.
    Scale,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Matrix => "matrix",
            Group::Load => "load",
            Group::Scale => "scale",
        }
    }
}

/// One `bench` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub group: Group,
    pub protocol: String,
    pub fault: String,
    pub validators: usize,
    pub tps: f64,
    pub duration_s: u64,
    /// The equivalent `bench` command line.
    pub bench_command: Vec<String>,
    /// Wall time of the run, network start-up and teardown included (s).
    pub wall_s: f64,
    /// Why the run failed or its results are not a benchmark (no
    /// transaction final, a proof-of-work safety violation); `null` if
    /// it went well.
    pub error: Option<String>,
    /// The run's `bench` results (`null` if it failed before any).
    pub results: Option<Results>,
}

/// The simulator's sweeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSweeps {
    /// Seeds per point (from `seed_start`).
    pub seeds: u64,
    pub seed_start: u64,
    /// Virtual time per run of the message sweep as asked (larger
    /// committees run shorter: each point has its own) and the longest of
    /// the stale sweep (ms).
    pub messages_virtual_ms: u64,
    pub stale_virtual_ms: u64,
    /// One-way link delay, uniform in this range (ms).
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Wall time of both sweeps (s).
    pub wall_s: f64,
    pub messages: Vec<MessagePoint>,
    /// Proof of work: miners of the stale sweep (equal shares).
    pub stale_miners: usize,
    pub stale: Vec<StalePoint>,
}

/// Messages per committed block of one protocol at one committee size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePoint {
    pub protocol: String,
    pub validators: usize,
    /// Virtual time of each run (ms).
    pub virtual_ms: u64,
    pub committed_blocks: u64,
    /// Copies put on links per committed block: authored by their
    /// sender, and every copy (forwarded ones too).
    pub authored_per_block: Option<f64>,
    pub messages_per_block: Option<f64>,
    pub bytes_per_block: Option<f64>,
    /// Runs with a violation (should be 0).
    pub failed_runs: u64,
}

/// Proof of work's stale rate at one block interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StalePoint {
    pub block_interval_ms: u64,
    pub mined: u64,
    /// Measured: mined blocks not on the best chain at the end.
    pub stale_rate: Option<f64>,
    /// `theory::stale_rate` at the mean link delay and one miner's share.
    pub theory: f64,
}

impl Run {
    /// The run's results if it has them.
    pub fn ok(&self) -> Option<&Results> {
        self.results.as_ref()
    }
}

impl Comparison {
    /// Runs of `group`.
    pub fn group(&self, group: Group) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.group == group)
    }

    /// The matrix run of `protocol` under `fault`.
    pub fn matrix(&self, protocol: &str, fault: &str) -> Option<&Run> {
        self.group(Group::Matrix)
            .find(|r| r.protocol == protocol && r.fault == fault)
    }
}
