//! The `phalanx-testnet` command line.

use crate::bench::BenchArgs;
use crate::compare::CompareArgs;
use crate::local::DirArg;
use crate::local::check::CheckArgs;
use crate::local::control::{DownArgs, LogsArgs, NodeArgs, PartitionArgs, StatusArgs};
pub use crate::local::init::InitArgs;
use crate::local::load::LoadArgs;
use crate::local::mine::MineArgs;
use crate::local::up::UpArgs;
use crate::sim::scenario::{
    ByzantineSpec, Crash, DelayRange, Partition, ScenarioError, defaults, parse_duration_ms,
    parse_hashrate,
};
use crate::sim::{Batch, RunReport, Scenario, SimError, Summary};
use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand};
use phalanx_chain::{ConsensusKind, ValidatorIndex};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "phalanx-testnet", version, about = "Phalanx test networks")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the deterministic simulator over many seeds and check every run
    /// for agreement, integrity, liveness and determinism.
    Sim(SimArgs),
    /// Create home directories for a local network of real nodes: keys, a
    /// genesis with funded accounts, one config per node.
    Init(InitArgs),
    /// Print a signed transfer as the JSON `POST /txs` takes (for curl).
    SignTransfer(SignArgs),
    /// Start a local network of phalanx-node processes (creating it if
    /// needed) and supervise it until Ctrl-C, or leave it running with
    /// --detach.
    Up(UpArgs),
    /// Each node: up or down, height, head, view, peers, RPC URL (proof of
    /// work: tip, final height, work, tips known, hash rate).
    Status(StatusArgs),
    /// Stop every node (--clean also removes the directory).
    Down(DownArgs),
    /// SIGKILL one node.
    Kill(NodeArgs),
    /// Stop one node cleanly and start it again.
    Restart(NodeArgs),
    /// Freeze one node (SIGSTOP).
    Pause(NodeArgs),
    /// Unfreeze a paused node (SIGCONT).
    Resume(NodeArgs),
    /// Split the network into groups that cannot reach each other, e.g.
    /// `partition 0,1 2,3` or `partition 0,1/2,3` (BFT: through the nodes'
    /// admin API; proof of work: by their peer lists, restarting them).
    Partition(PartitionArgs),
    /// Undo a partition.
    Heal(DirArg),
    /// Proof of work: have a node mine N more blocks at full speed (its
    /// rate limit lifted) and wait for them, like regtest's generate.
    Mine(MineArgs),
    /// Print a node's log (--follow to keep printing).
    Logs(LogsArgs),
    /// Submit signed transfers at a steady rate and report throughput and
    /// submit-to-final latency.
    Load(LoadArgs),
    /// Benchmark a fresh network of real nodes: a steady signed load,
    /// optionally a fault mid-run; writes results.json and prints a
    /// summary (throughput, latency percentiles, per-node costs).
    Bench(BenchArgs),
    /// Compare protocols under faults: bench runs of every protocol and
    /// fault, a saturation sweep and simulator sweeps, written as an HTML
    /// and Markdown report with SVG charts, results.json and results.csv
    /// (--from DIR renders a report again from saved results).
    Compare(CompareArgs),
    /// Compare every node's blocks and state roots up to the lowest head
    /// (proof of work: every final block, and show the tips); exit 1 if
    /// two nodes differ.
    Check(CheckArgs),
}

/// `phalanx-testnet sign-transfer`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The sender's key file.
    #[arg(long)]
    pub key: std::path::PathBuf,
    /// The recipient's address (64 hex digits).
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub amount: u64,
    #[arg(long, default_value_t = 1)]
    pub fee: u64,
    /// The sender's next nonce (`GET /accounts/{address}` shows it).
    #[arg(long)]
    pub nonce: u64,
    #[arg(long, default_value = "phalanx-local")]
    pub chain_id: String,
}

/// `--consensus`: a protocol by its genesis name (the names are listed in
/// `--help`).
pub fn consensus_kind() -> impl TypedValueParser<Value = ConsensusKind> {
    clap::builder::PossibleValuesParser::new(ConsensusKind::ALL.map(ConsensusKind::name))
        .try_map(|name| name.parse::<ConsensusKind>())
}

fn duration(text: &str) -> Result<u64, String> {
    parse_duration_ms(text)
}

fn probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{text} is not a probability between 0 and 1"))
    }
}

fn indices(text: &str) -> Result<Vec<ValidatorIndex>, String> {
    text.split(',')
        .map(|t| {
            t.trim()
                .parse::<u16>()
                .map(ValidatorIndex)
                .map_err(|_| format!("{t:?} is not a replica index"))
        })
        .collect()
}

/// `phalanx-testnet sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// The protocol to simulate: pbft, hotstuff or pow.
    #[arg(long, default_value = "hotstuff", value_parser = consensus_kind())]
    pub consensus: ConsensusKind,
    /// Committee size n; f = floor((n - 1) / 3).
    #[arg(long, default_value_t = defaults::VALIDATORS)]
    pub validators: usize,
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// REPLICA[,REPLICA...]:BEHAVIOUR (repeatable). Both protocols have
    /// silent, equivocate, double-vote and invalid-signature; hotstuff also
    /// stale-qc; pbft also skip-height, reorder and withhold.
    #[arg(long, value_name = "SPEC")]
    pub byzantine: Vec<ByzantineSpec>,
    /// Negative control: every replica counts this many signers as a
    /// quorum instead of n - f (a broken protocol the checkers must catch).
    #[arg(long, value_name = "SIGNERS")]
    pub unsafe_quorum: Option<usize>,
    /// Negative control: every PBFT replica ignores prepared certificates
    /// in view changes, a broken protocol the checkers must catch (pbft
    /// only).
    #[arg(long)]
    pub unsafe_view_change: bool,
    /// PBFT: a checkpoint every this many heights (the watermark window is
    /// twice this).
    #[arg(long, value_name = "HEIGHTS", default_value_t = defaults::CHECKPOINT_INTERVAL)]
    pub checkpoint_interval: u64,
    /// PBFT: heights a primary keeps in flight (proposed, not committed).
    #[arg(long, value_name = "HEIGHTS", default_value_t = defaults::MAX_IN_FLIGHT)]
    pub max_in_flight: u64,
    /// Validators that run twice with one key (two-faced Byzantine, as in
    /// Twins); the copies are replicas n, n+1, ... in index order, for
    /// --partition and --crash.
    #[arg(long, value_name = "VALIDATORS", value_parser = indices)]
    pub twins: Vec<Vec<ValidatorIndex>>,
    /// Probability that a message copy is lost on a link.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub loss: f64,
    /// Probability that a message copy is delivered twice.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    pub dup: f64,
    /// One-way link delay range in ms, uniform, e.g. 5..50.
    #[arg(long, value_name = "MIN..MAX", default_value = "5..50")]
    pub delay_ms: DelayRange,
    /// GROUP/GROUP@START-END, e.g. 0,1/2,3@2s-8s; unnamed replicas form
    /// one more group (repeatable).
    #[arg(long, value_name = "SPEC")]
    pub partition: Vec<Partition>,
    /// REPLICA@CRASH[-RESTART], e.g. 2@3s-6s (repeatable).
    #[arg(long, value_name = "SPEC")]
    pub crash: Vec<Crash>,
    /// Virtual time per run (extended to cover the liveness window).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub duration: u64,
    /// Liveness: commit within this long after the last disruption.
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub liveness_bound: u64,
    /// The pacemaker's first view timeout.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub base_timeout: u64,
    /// The first view timeout is also at least this many times the
    /// second-longest of the last 16 gaps between progress events (0: the base alone).
    #[arg(long, value_name = "N", default_value_t = phalanx_consensus::view_timeout::DEFAULT_TIMEOUT_FACTOR)]
    pub timeout_factor: u64,
    /// The pacemaker's longest view timeout (after back-off).
    #[arg(long, default_value = "8s", value_parser = duration)]
    pub max_timeout: u64,
    /// The client submits one transfer this often.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    pub tx_interval: u64,
    /// Draw each seed's faults at random (f Byzantine replicas with
    /// rotating behaviours or twins, loss, duplication, a partition, a
    /// crash) in place of --byzantine, --twins, --loss, --dup, --partition
    /// and --crash.
    #[arg(long, conflicts_with_all = ["byzantine", "twins", "loss", "dup", "partition", "crash"])]
    pub random_faults: bool,
    /// Replicas do not forward the messages they receive.
    #[arg(long)]
    pub no_forward: bool,
    /// Verify every copy of every message, and execute every block on
    /// every replica (slower; same outcomes).
    #[arg(long)]
    pub no_verify_cache: bool,
    /// Sign with ed25519 instead of the simulator's ideal signatures
    /// (slower; the same checks hold, but hashes and so the commit log
    /// differ).
    #[arg(long)]
    pub real_signatures: bool,
    /// Run one seed in this many twice to check determinism (0: none).
    #[arg(long, default_value_t = 10)]
    pub recheck_every: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Proof of work: the network's mean block interval.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub block_interval: u64,
    /// Proof of work: confirmations that make a block final.
    #[arg(long, default_value_t = defaults::CONFIRMATIONS)]
    pub confirmations: u64,
    /// Proof of work: REPLICA:PERCENT% of the hash power, e.g. 2:40%
    /// (repeatable); the others share the rest equally.
    #[arg(long, value_name = "SPEC", value_parser = parse_hashrate)]
    pub hashrate: Vec<(ValidatorIndex, u32)>,
    /// Proof of work: keep the first-seen of two equal tips (Bitcoin
    /// Core's rule) instead of the lower hash.
    #[arg(long)]
    pub first_seen_ties: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

impl SimArgs {
    /// The scenario these flags describe (checked against the committee).
    pub fn scenario(&self) -> Result<Scenario, SimError> {
        let mut s = Scenario::new(self.validators);
        s.consensus = self.consensus;
        for spec in &self.byzantine {
            s.add_byzantine(spec)?;
        }
        s.unsafe_quorum = self.unsafe_quorum;
        s.unsafe_view_change = self.unsafe_view_change;
        s.checkpoint_interval = self.checkpoint_interval;
        s.max_in_flight = self.max_in_flight;
        s.twins = self.twins.iter().flatten().copied().collect();
        s.loss = self.loss;
        s.dup = self.dup;
        s.delay = self.delay_ms;
        s.partitions = self.partition.clone();
        s.crashes = self.crash.clone();
        s.duration_ms = self.duration;
        s.liveness_bound_ms = self.liveness_bound;
        s.base_timeout_ms = self.base_timeout;
        s.max_timeout_ms = self.max_timeout;
        s.timeout_factor = self.timeout_factor;
        s.tx_interval_ms = self.tx_interval;
        s.forward = !self.no_forward;
        s.verify_cache = !self.no_verify_cache;
        s.ideal_signatures = !self.real_signatures;
        s.block_interval_ms = self.block_interval;
        s.confirmations = self.confirmations;
        for (index, percent) in &self.hashrate {
            if s.hashrate.insert(*index, *percent).is_some() {
                return Err(SimError::Scenario(ScenarioError::Spec(format!(
                    "--hashrate gives replica {} two shares",
                    index.0
                ))));
            }
        }
        s.first_seen_ties = self.first_seen_ties;
        s.validate()?;
        Ok(s)
    }

    pub fn batch(&self) -> Result<Batch, SimError> {
        let scenario = self.scenario()?;
        let mut batch = Batch::new(scenario, self.seed_start, self.seeds);
        batch.random_faults = self.random_faults;
        batch.recheck_every = self.recheck_every;
        batch.threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(batch)
    }
}

/// One line for a failing run, with the command that replays it.
pub fn failure_line(batch: &Batch, report: &RunReport) -> String {
    let problems: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    let total: u64 = report.violation_counts.values().sum();
    let more = total.saturating_sub(report.violations.len() as u64);
    let more = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    let mut line = format!(
        "FAIL seed {}: {}{more}; replay: {}",
        report.seed,
        problems.join("; "),
        batch.replay_command(report.seed)
    );
    if batch.random_faults {
        let faults = batch.scenario_for(report.seed).to_args().join(" ");
        line.push_str(&format!(" (its faults: {faults})"));
    }
    line
}

/// Runs `sim`: failing runs as they come, then the summary. Exit code 1 on
/// any violation, 2 if the run could not start.
pub fn sim(args: &SimArgs, out: &mut dyn Write) -> ExitCode {
    let batch = match args.batch() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    // On a terminal (stderr), a long batch shows how far it is; elsewhere
    // the bar draws nothing.
    let bar = indicatif::ProgressBar::new(batch.seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} sim [{bar:30}] {pos}/{len} seeds, {msg}, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("0 failed");
    let mut failed = 0u64;
    let result = batch.run(|report| {
        if !report.passed() {
            failed += 1;
            bar.suspend(|| {
                let _ = writeln!(out, "{}", failure_line(&batch, report));
            });
            bar.set_message(format!("{failed} failed"));
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    let summary: Summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let wall_ms = started.elapsed().as_millis();
    let printed = if args.json {
        serde_json::to_string_pretty(&summary)
            .map_err(|e| e.to_string())
            .and_then(|j| writeln!(out, "{j}").map_err(|e| e.to_string()))
    } else {
        write!(out, "{summary}")
            .and_then(|_| writeln!(out, "wall time: {:.1} s", wall_ms as f64 / 1_000.0))
            .map_err(|e| e.to_string())
    };
    if let Err(e) = printed {
        eprintln!("error: writing the summary: {e}");
        return ExitCode::from(2);
    }
    if summary.total_violations() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    use crate::local::{check, control, init, load, mine, up};
    let result = match &cli.command {
        Command::Sim(args) => return sim(args, &mut out),
        Command::Check(args) => {
            return check::check(args, &mut out).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            });
        }
        Command::SignTransfer(args) => sign_transfer(args, &mut out),
        Command::Init(args) => init::init(args, &mut out),
        Command::Up(args) => up::up(args, &mut out),
        Command::Status(args) => control::status(args, &mut out),
        Command::Down(args) => control::down(args, &mut out),
        Command::Kill(args) => control::kill(args, &mut out),
        Command::Restart(args) => control::restart(args, &mut out),
        Command::Pause(args) => control::pause_or_resume(args, true, &mut out),
        Command::Resume(args) => control::pause_or_resume(args, false, &mut out),
        Command::Partition(args) => control::partition(&args.dir, &args.groups, &mut out),
        Command::Heal(dir) => control::partition(dir, &[], &mut out),
        Command::Mine(args) => mine::mine(args, &mut out),
        Command::Logs(args) => control::logs(args, &mut out),
        Command::Load(args) => load::load(args, &mut out),
        Command::Bench(args) => crate::bench::bench(args, &mut out),
        Command::Compare(args) => crate::compare::compare(args, &mut out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing more to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn sign_transfer(args: &SignArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    use anyhow::Context;
    let key = phalanx_crypto::keyfile::load_key_file(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let to: phalanx_chain::Address = args.to.parse().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let tx = phalanx_chain::Transaction::sign(
        &key.keypair,
        phalanx_chain::ChainId::new(&args.chain_id)?,
        to,
        phalanx_chain::Amount(args.amount),
        phalanx_chain::Amount(args.fee),
        phalanx_chain::Nonce(args.nonce),
    );
    writeln!(out, "{}", serde_json::to_string(&tx)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SimArgs, clap::Error> {
        let mut full = vec!["phalanx-testnet", "sim"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).map(|c| match c.command {
            Command::Sim(a) => a,
            _ => unreachable!("parsed as sim"),
        })
    }

    #[test]
    fn the_issue_command_parses() {
        let a = parse(&[
            "--consensus",
            "hotstuff",
            "--validators",
            "4",
            "--seeds",
            "1000",
            "--seed-start",
            "7",
            "--byzantine",
            "1:equivocate",
            "--loss",
            "0.1",
            "--dup",
            "0.05",
            "--delay-ms",
            "5..50",
            "--partition",
            "0,1/2,3@2s-8s",
            "--crash",
            "2@3s-6s",
            "--duration",
            "30s",
            "--json",
        ])
        .unwrap();
        let s = a.scenario().unwrap();
        assert_eq!(s.byzantine.len(), 1);
        assert_eq!(s.partitions.len(), 1);
        assert_eq!(s.crashes.len(), 1);
        assert_eq!(s.duration_ms, 30_000);
        assert!(a.json);
    }

    #[test]
    fn scenarios_print_as_flags_that_parse_back() {
        let a = parse(&[
            "--validators",
            "7",
            "--byzantine",
            "1,4:double-vote",
            "--byzantine",
            "2:stale-qc",
            "--unsafe-quorum",
            "2",
            "--twins",
            "5",
            "--loss",
            "0.05",
            "--delay-ms",
            "1..9",
            "--partition",
            "0,1/2,3@2s-8500ms",
            "--crash",
            "5@3s",
            "--duration",
            "12s",
            "--max-timeout",
            "4s",
            "--no-verify-cache",
        ])
        .unwrap();
        let s = a.scenario().unwrap();
        let printed = s.to_args();
        let strs: Vec<&str> = printed.iter().map(String::as_str).collect();
        let again = parse(&strs).unwrap().scenario().unwrap();
        assert_eq!(again, s);
        let random = s.with_random_faults(3);
        let printed = random.to_args();
        let strs: Vec<&str> = printed.iter().map(String::as_str).collect();
        assert_eq!(parse(&strs).unwrap().scenario().unwrap(), random);
    }

    #[test]
    fn pow_scenarios_print_as_flags_that_parse_back() {
        let a = parse(&[
            "--consensus",
            "pow",
            "--validators",
            "5",
            "--byzantine",
            "0:selfish",
            "--hashrate",
            "0:35%",
            "--hashrate",
            "3:10%",
            "--block-interval",
            "10s",
            "--confirmations",
            "12",
            "--first-seen-ties",
        ])
        .unwrap();
        let s = a.scenario().unwrap();
        assert_eq!(s.hash_share(ValidatorIndex(0)), 0.35);
        assert_eq!(s.hash_share(ValidatorIndex(3)), 0.10);
        assert!((s.hash_share(ValidatorIndex(1)) - 0.55 / 3.0).abs() < 1e-12);
        let printed = s.to_args();
        let strs: Vec<&str> = printed.iter().map(String::as_str).collect();
        assert_eq!(parse(&strs).unwrap().scenario().unwrap(), s);
    }

    #[test]
    fn pbft_scenarios_print_as_flags_that_parse_back() {
        let a = parse(&[
            "--consensus",
            "pbft",
            "--byzantine",
            "1:withhold",
            "--unsafe-view-change",
            "--checkpoint-interval",
            "8",
            "--max-in-flight",
            "2",
        ])
        .unwrap();
        let s = a.scenario().unwrap();
        assert!(s.unsafe_view_change);
        let printed = s.to_args();
        for flag in [
            "--unsafe-view-change",
            "--checkpoint-interval",
            "--max-in-flight",
        ] {
            assert!(printed.iter().any(|a| a == flag), "{printed:?}");
        }
        let strs: Vec<&str> = printed.iter().map(String::as_str).collect();
        assert_eq!(parse(&strs).unwrap().scenario().unwrap(), s);
        // Defaults are not printed.
        let plain = parse(&["--consensus", "pbft"]).unwrap().scenario().unwrap();
        assert_eq!(
            plain.to_args(),
            ["--consensus", "pbft", "--validators", "4"]
        );
    }

    #[test]
    fn errors_are_clear() {
        let bad_partition = parse(&["--partition", "0,1/2,3@2s"])
            .unwrap_err()
            .to_string();
        assert!(bad_partition.contains("no '-END'"), "{bad_partition}");
        let bad_loss = parse(&["--loss", "1.5"]).unwrap_err().to_string();
        assert!(bad_loss.contains("probability"), "{bad_loss}");
        let mixed = parse(&["--random-faults", "--loss", "0.1"])
            .unwrap_err()
            .to_string();
        assert!(mixed.contains("cannot be used with"), "{mixed}");
        let out_of_range = parse(&["--validators", "4", "--crash", "9@1s"])
            .unwrap()
            .scenario()
            .unwrap_err()
            .to_string();
        assert!(
            out_of_range.contains("replica 9 does not exist"),
            "{out_of_range}"
        );
        let shares = parse(&[
            "--consensus",
            "pow",
            "--hashrate",
            "0:60%",
            "--hashrate",
            "1:50%",
        ])
        .unwrap()
        .scenario()
        .unwrap_err()
        .to_string();
        assert!(shares.contains("add up to 110 %"), "{shares}");
        let twice = parse(&[
            "--consensus",
            "pow",
            "--hashrate",
            "0:6%",
            "--hashrate",
            "0:5%",
        ])
        .unwrap()
        .scenario()
        .unwrap_err()
        .to_string();
        assert!(twice.contains("replica 0 two shares"), "{twice}");
        let bad = parse(&["--consensus", "pow", "--hashrate", "0=5"]).unwrap_err();
        assert!(bad.to_string().contains("REPLICA:PERCENT%"), "{bad}");
        let unsafe_hotstuff = parse(&["--unsafe-view-change"])
            .unwrap()
            .scenario()
            .unwrap_err()
            .to_string();
        assert!(
            unsafe_hotstuff.contains("does not apply to hotstuff"),
            "{unsafe_hotstuff}"
        );
        let withhold = parse(&["--byzantine", "1:withhold"])
            .unwrap()
            .scenario()
            .unwrap_err()
            .to_string();
        assert!(
            withhold.contains("hotstuff replicas have no behaviour withhold"),
            "{withhold}"
        );
    }

    #[test]
    fn consensus_is_named_as_in_genesis_and_listed_in_help() {
        assert_eq!(
            parse(&["--consensus", "pbft"]).unwrap().consensus,
            ConsensusKind::Pbft
        );
        let unknown = parse(&["--consensus", "tendermint"])
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("[possible values: pbft, hotstuff, pow]"),
            "{unknown}"
        );
        let mut cli = <Cli as clap::CommandFactory>::command();
        for command in ["sim", "init", "up"] {
            let help = cli
                .find_subcommand_mut(command)
                .unwrap()
                .render_help()
                .to_string();
            assert!(
                help.contains("possible values: pbft, hotstuff, pow"),
                "{command}: {help}"
            );
        }
        let init = Cli::try_parse_from(["phalanx-testnet", "init", "--consensus", "pbft"]).unwrap();
        assert!(matches!(
            init.command,
            Command::Init(InitArgs {
                consensus: ConsensusKind::Pbft,
                ..
            })
        ));
    }
}
