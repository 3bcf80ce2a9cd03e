//! Runs the comparison: every `bench` run in this process, one network
//! at a time, with a progress display; then the simulator's sweeps. A
//! failed run is recorded with its error and the comparison goes on.

use super::model::{Group, Run, Settings};
use super::{CompareArgs, sims};
use crate::bench::faults::FaultKind;
use crate::bench::{self, BenchArgs};
use indicatif::{ProgressBar, ProgressStyle};
use phalanx_chain::ConsensusKind;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds a run takes beyond its warmup and window, until measured:
/// signing, start-up, the drain and the teardown.
const GUESSED_OVERHEAD_S: f64 = 15.0;

/// One run to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub group: Group,
    pub consensus: ConsensusKind,
    pub fault: FaultKind,
    pub validators: usize,
    pub tps: f64,
    pub duration_s: u64,
}

/// A group's faults, offered rates, validator counts and window (s).
type GroupPlan<'a> = (Group, &'a [FaultKind], &'a [f64], &'a [usize], u64);

/// Every run the arguments ask for, in the order they go: the matrix
/// (protocol by protocol, each through every fault), the saturation
/// sweep, the scalability runs.
pub fn plan(a: &CompareArgs, s: &Settings) -> Vec<Item> {
    let none = [FaultKind::None];
    let at_tps = [s.tps];
    let at_n = [a.validators];
    let groups: [GroupPlan<'_>; 3] = [
        (Group::Matrix, &a.faults, &at_tps, &at_n, s.duration_s),
        (Group::Load, &none, &s.sweep_tps, &at_n, s.sweep_duration_s),
        (
            Group::Scale,
            &none,
            &at_tps,
            &s.sweep_validators,
            s.duration_s,
        ),
    ];
    let mut items = Vec::new();
    for (group, faults, rates, sizes, duration_s) in groups {
        for consensus in &a.consensus {
            for fault in faults {
                for tps in rates {
                    for validators in sizes {
                        items.push(Item {
                            group,
                            consensus: *consensus,
                            fault: *fault,
                            validators: *validators,
                            tps: *tps,
                            duration_s,
                        });
                    }
                }
            }
        }
    }
    items
}

/// `bench`'s arguments for `item`.
pub fn bench_args(item: &Item, a: &CompareArgs, s: &Settings) -> BenchArgs {
    let pow = item.consensus == ConsensusKind::Pow;
    let confirmations = if item.fault == FaultKind::Partition {
        s.pow_partition_confirmations
    } else {
        s.pow_confirmations
    };
    BenchArgs {
        consensus: item.consensus,
        validators: item.validators,
        tps: item.tps,
        duration: item.duration_s,
        warmup: a.warmup,
        accounts: None,
        faults: item.fault,
        byzantine_kind: None,
        block_interval: pow.then_some(s.pow_block_interval_ms),
        confirmations: pow.then_some(confirmations),
        total_hashrate: None,
        out: None,
        drain: a.drain,
        base_port: a.base_port,
        keep_data: false,
        json: false,
        start_timeout: a.start_timeout,
        base_timeout: None,
        verify_threads: None,
        no_tx_index: false,
        quick: a.quick,
    }
}

/// The `bench` command line that makes the same run.
pub fn command_line(b: &BenchArgs) -> Vec<String> {
    let mut line: Vec<String> = [
        "phalanx-testnet",
        "bench",
        "--consensus",
        b.consensus.name(),
        "--validators",
    ]
    .map(str::to_owned)
    .to_vec();
    line.push(b.validators.to_string());
    for (flag, value) in [
        ("--tps", b.tps.to_string()),
        ("--duration", b.duration.to_string()),
        ("--warmup", b.warmup.to_string()),
        ("--drain", b.drain.to_string()),
        ("--faults", b.faults.name().to_owned()),
    ] {
        line.extend([flag.to_owned(), value]);
    }
    if let Some(ms) = b.block_interval {
        line.extend(["--block-interval".to_owned(), format!("{ms}ms")]);
    }
    if let Some(k) = b.confirmations {
        line.extend(["--confirmations".to_owned(), k.to_string()]);
    }
    if let Some(port) = b.base_port {
        line.extend(["--base-port".to_owned(), port.to_string()]);
    }
    if let Some(ms) = b.base_timeout {
        line.extend(["--base-timeout".to_owned(), format!("{ms}ms")]);
    }
    if let Some(threads) = b.verify_threads {
        line.extend(["--verify-threads".to_owned(), threads.to_string()]);
    }
    if b.no_tx_index {
        line.push("--no-tx-index".to_owned());
    }
    if b.quick {
        line.push("--quick".to_owned());
    }
    line
}

/// Runs every item, calling `save` with the runs so far after each (so
/// that an interrupted comparison keeps what it measured). Stops at
/// Ctrl-C: the runs so far, and `Interrupted`.
pub fn run_all(
    items: &[Item],
    a: &CompareArgs,
    s: &Settings,
    mut save: impl FnMut(&[Run]),
) -> Result<Vec<Run>, (Vec<Run>, bench::Interrupted)> {
    let progress = Progress::new(items);
    let mut runs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        progress.starting(i, item, &runs);
        let run = progress.during(|| run_one(item, a, s));
        let Ok(run) = run else {
            progress.done(runs.len());
            return Err((runs, bench::Interrupted));
        };
        progress.finished(i, &run);
        runs.push(run);
        save(&runs);
    }
    progress.done(runs.len());
    Ok(runs)
}

/// One run: `bench` in this process; an error becomes the run's record,
/// but for Ctrl-C.
pub fn run_one(item: &Item, a: &CompareArgs, s: &Settings) -> Result<Run, bench::Interrupted> {
    let args = bench_args(item, a, s);
    let command = command_line(&args);
    let started = Instant::now();
    let (results, error) = match bench::execute(&args, command.clone()) {
        Ok((results, _dirs)) => {
            let fault = results.fault.as_ref().and_then(|f| f.error.clone());
            let error = match (bench::verdict(&results), fault) {
                (Err(e), _) => Some(format!("{e:#}")),
                (Ok(()), Some(e)) => Some(format!("the fault was not injected or undone: {e}")),
                (Ok(()), None) => None,
            };
            (Some(results), error)
        }
        Err(e) if e.is::<bench::Interrupted>() => return Err(bench::Interrupted),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Ok(Run {
        group: item.group,
        protocol: item.consensus.name().to_owned(),
        fault: item.fault.name().to_owned(),
        validators: item.validators,
        tps: item.tps,
        duration_s: item.duration_s,
        bench_command: command,
        wall_s: started.elapsed().as_secs_f64(),
        error,
        results,
    })
}

/// The progress display: a bar on a terminal (hidden while a run draws
/// its own), plain lines otherwise; each run is named with i/N, its
/// protocol and fault, and the time left.
struct Progress {
    bar: Option<ProgressBar>,
    /// Each item's warmup plus window (s).
    planned_s: Vec<f64>,
    started: Instant,
}

impl Progress {
    fn new(items: &[Item]) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(items.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("compare [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Progress {
            bar,
            planned_s: items.iter().map(|i| i.duration_s as f64).collect(),
            started: Instant::now(),
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Seconds left from item `i` on: the planned windows, and the mean
    /// overhead measured so far (or a guess).
    fn left_s(&self, i: usize, done: &[Run], warmup_s: f64) -> f64 {
        let measured: Vec<f64> = done
            .iter()
            .map(|r| r.wall_s - r.duration_s as f64 - warmup_s)
            .collect();
        let overhead = if measured.is_empty() {
            GUESSED_OVERHEAD_S
        } else {
            measured.iter().sum::<f64>() / measured.len() as f64
        };
        let rest = self.planned_s.get(i..).unwrap_or_default();
        rest.iter().map(|w| w + warmup_s + overhead.max(0.0)).sum()
    }

    fn starting(&self, i: usize, item: &Item, done: &[Run]) {
        let warmup_s = done
            .first()
            .and_then(|r| r.results.as_ref())
            .map_or(5.0, |r| r.config.scale.warmup_s as f64);
        let left = self.left_s(i, done, warmup_s);
        let line = format!(
            "compare: run {}/{}: {} {}, {} validators, {} tx/s for {} s ({} group); about {} left",
            i + 1,
            self.planned_s.len(),
            item.consensus,
            item.fault.name(),
            item.validators,
            item.tps,
            item.duration_s,
            item.group.name(),
            minutes(left)
        );
        self.say(&line);
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} {}, about {} left",
                item.consensus,
                item.fault.name(),
                minutes(left)
            ));
        }
    }

    /// Runs `f` with the bar hidden (a run draws its own bars).
    fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn finished(&self, i: usize, run: &Run) {
        let what = match (&run.error, run.ok()) {
            (None, Some(r)) => format!(
                "{:.0} tx/s final, p50 {}",
                r.achieved_tps,
                r.latency_ms
                    .map_or_else(|| "-".to_owned(), |l| format!("{} ms", l.p50_ms))
            ),
            (Some(e), _) => format!("FAILED: {e}"),
            (None, None) => "no results".to_owned(),
        };
        self.say(&format!(
            "compare: run {}/{} done in {:.0} s: {what}",
            i + 1,
            self.planned_s.len(),
            run.wall_s
        ));
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn done(&self, ran: usize) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.planned_s.is_empty() {
            eprintln!(
                "compare: {ran} of {} runs in {}",
                self.planned_s.len(),
                minutes(self.started.elapsed().as_secs_f64())
            );
        }
    }
}

/// `95` as `1 min 35 s`.
pub fn minutes(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The simulator's sweeps, timed, with a line before and after.
pub fn run_sims(a: &CompareArgs) -> anyhow::Result<super::model::SimSweeps> {
    eprintln!(
        "compare: simulator sweeps (messages per block at n = {:?}, {} seeds each; proof-of-work \
         stale rate at {} block intervals)",
        a.sim_validators,
        a.sim_seeds,
        sims::STALE_INTERVALS_MS.len()
    );
    let (validators, seeds, virtual_ms) = (a.sim_validators.clone(), a.sim_seeds, a.sim_duration);
    // On a thread, so that Ctrl-C still stops the comparison: the first
    // bench run's signal handlers stay installed and swallow it otherwise.
    let rt = crate::local::runtime()?;
    let swept = rt.block_on(async {
        let mut signals = crate::local::Signals::catch()?;
        let work = tokio::task::spawn_blocking(move || sims::sweep(&validators, seeds, virtual_ms));
        tokio::select! {
            done = work => done.map_err(|e| anyhow::anyhow!("simulator sweeps: {e}"))?,
            () = signals.recv() => Err(bench::Interrupted.into()),
        }
    });
    rt.shutdown_background();
    let sweeps = swept?;
    eprintln!("compare: simulator sweeps took {:.1} s", sweeps.wall_s);
    Ok(sweeps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        compare: CompareArgs,
    }

    fn args(line: &str) -> CompareArgs {
        let cli = Cli::try_parse_from(std::iter::once("compare").chain(line.split_whitespace()));
        cli.map(|c| c.compare)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn the_plan_runs_the_matrix_then_the_sweeps() {
        let a = args("--tps 100 --duration 20 --sweep-validators 7 --out x");
        let s = a.settings().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.sweep_tps, vec![50.0, 100.0, 200.0, 400.0]);
        assert_eq!(s.pow_partition_confirmations, 9);
        let items = plan(&a, &s);
        // 3 protocols x 3 faults, 3 x 4 rates, 3 x 1 size.
        assert_eq!(items.len(), 9 + 12 + 3);
        let first = items.first().map(|i| (i.group, i.consensus, i.fault));
        assert_eq!(
            first,
            Some((Group::Matrix, ConsensusKind::Pbft, FaultKind::None))
        );
        let load: Vec<&Item> = items.iter().filter(|i| i.group == Group::Load).collect();
        assert!(
            load.iter()
                .all(|i| i.fault == FaultKind::None && i.duration_s == 10)
        );
        let scale = items.last().map(|i| (i.group, i.validators, i.tps));
        assert_eq!(scale, Some((Group::Scale, 7, 100.0)));
        // Proof of work under partition runs with the raised k.
        let pow_split = items
            .iter()
            .find(|i| i.consensus == ConsensusKind::Pow && i.fault == FaultKind::Partition);
        let b = pow_split.map(|i| bench_args(i, &a, &s));
        assert_eq!(b.as_ref().and_then(|b| b.confirmations), Some(9));
        let line = b.map(|b| command_line(&b).join(" ")).unwrap_or_default();
        assert!(
            line.starts_with("phalanx-testnet bench --consensus pow --validators 4 --tps 100"),
            "{line}"
        );
        assert!(line.contains("--faults partition --block-interval 1000ms --confirmations 9"));
        let none = args("--tps 100 --duration 20 --no-sweep --faults none --out x");
        let s = none.settings().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&none, &s).len(), 3);
    }

    #[test]
    fn minutes_read_as_minutes_and_seconds() {
        assert_eq!(minutes(95.4), "1 min 35 s");
        assert_eq!(minutes(12.0), "12 s");
        assert_eq!(minutes(-3.0), "0 s");
    }
}
