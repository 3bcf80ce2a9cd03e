//! The faults `bench --faults` injects, when, and what happened.
//!
//! | kind | what | when |
//! |---|---|---|
//! | `none` | nothing | |
//! | `crash-1` | SIGKILL the last validator (never view 0's leader) | the window's middle, for the rest of the run |
//! | `pause-1` | SIGSTOP the last validator, then SIGCONT | the middle, for a quarter of the window |
//! | `partition` | split the validators into two halves (the first ⌈n/2⌉ and the rest) through the admin API; neither half has a quorum, so finality stops, then resumes after the heal | the middle, for a quarter of the window |
//! | `byzantine-1` | the last validator runs `--byzantine-kind` (default `silent`) | the whole run |
//!
//! Times in the record are seconds from the start of the timed window.

use crate::local::client::Client;
use crate::local::net::NodeInfo;
use crate::local::process::{self, Probe};
use nix::sys::signal::Signal;
use phalanx_consensus::Byzantine;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `--faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    None,
    #[value(name = "crash-1")]
    Crash1,
    #[value(name = "pause-1")]
    Pause1,
    Partition,
    #[value(name = "byzantine-1")]
    Byzantine1,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::None => "none",
            FaultKind::Crash1 => "crash-1",
            FaultKind::Pause1 => "pause-1",
            FaultKind::Partition => "partition",
            FaultKind::Byzantine1 => "byzantine-1",
        }
    }
}

/// A fault to inject: what, to whom, from when until when (ms from the
/// run's origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    pub kind: FaultKind,
    /// The nodes it strikes (both halves' nodes for a partition).
    pub nodes: Vec<usize>,
    /// A partition's two groups.
    pub groups: Vec<Vec<usize>>,
    pub behaviour: Option<Byzantine>,
    pub start_ms: u64,
    /// `None`: to the end of the run.
    pub end_ms: Option<u64>,
}

impl FaultPlan {
    /// The plan for `kind` on `validators` nodes, whose timed window runs
    /// from `window_start_ms` for `window_ms`.
    pub fn new(
        kind: FaultKind,
        validators: usize,
        window_start_ms: u64,
        window_ms: u64,
        behaviour: Option<Byzantine>,
    ) -> FaultPlan {
        let last = validators.saturating_sub(1);
        let middle = window_start_ms + window_ms / 2;
        let quarter = window_ms / 4;
        let half = validators.div_ceil(2);
        let (nodes, groups, start_ms, end_ms) = match kind {
            FaultKind::None => (vec![], vec![], 0, None),
            FaultKind::Crash1 => (vec![last], vec![], middle, None),
            FaultKind::Pause1 => (vec![last], vec![], middle, Some(middle + quarter)),
            FaultKind::Partition => (
                (0..validators).collect(),
                vec![(0..half).collect(), (half..validators).collect()],
                middle,
                Some(middle + quarter),
            ),
            FaultKind::Byzantine1 => (vec![last], vec![], 0, None),
        };
        FaultPlan {
            kind,
            nodes,
            groups,
            behaviour: match kind {
                FaultKind::Byzantine1 => Some(behaviour.unwrap_or(Byzantine::Silent)),
                _ => None,
            },
            start_ms,
            end_ms,
        }
    }
}

/// `results.json`'s `fault`: what was planned and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// `crash-1`, `pause-1`, `partition` or `byzantine-1`.
    pub kind: String,
    /// The nodes it struck.
    pub nodes: Vec<usize>,
    /// A partition's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Vec<usize>>,
    /// A Byzantine node's behaviour.
    pub behaviour: Option<String>,
    /// When it was planned to start and end (seconds from the start of the
    /// timed window; `null` end: the rest of the run).
    pub planned_start_s: f64,
    pub planned_end_s: Option<f64>,
    /// When it did (as measured when the signal or request was sent).
    pub started_s: Option<f64>,
    pub ended_s: Option<f64>,
    /// What went wrong injecting or undoing it, if anything.
    pub error: Option<String>,
}

/// A node process the fault may signal.
#[derive(Debug, Clone)]
pub struct Target {
    pub pid: u32,
    pub home: PathBuf,
}

/// Everything injecting needs.
#[derive(Debug, Clone)]
pub struct Injector {
    pub plan: FaultPlan,
    pub client: Client,
    pub nodes: Vec<NodeInfo>,
    /// Per node, its process.
    pub targets: Vec<Target>,
    pub origin: Instant,
    pub window_start_ms: u64,
}

fn secs_from(window_start_ms: u64, ms: u64) -> f64 {
    (ms as f64 - window_start_ms as f64) / 1_000.0
}

impl Injector {
    fn now_s(&self) -> f64 {
        secs_from(
            self.window_start_ms,
            self.origin.elapsed().as_millis() as u64,
        )
    }

    /// The record before anything happened.
    pub fn record(&self) -> FaultRecord {
        let p = &self.plan;
        FaultRecord {
            kind: p.kind.name().to_owned(),
            nodes: p.nodes.clone(),
            groups: p.groups.clone(),
            behaviour: p.behaviour.map(|b| b.name().to_owned()),
            planned_start_s: secs_from(self.window_start_ms, p.start_ms),
            planned_end_s: p.end_ms.map(|ms| secs_from(self.window_start_ms, ms)),
            started_s: None,
            ended_s: None,
            error: None,
        }
    }

    /// Injects the fault at its time and undoes it at its end; `on_event`
    /// is told what was done. Returns what happened.
    pub async fn run(&self, on_event: impl Fn(&str)) -> FaultRecord {
        let mut record = self.record();
        let p = &self.plan;
        if p.kind == FaultKind::Byzantine1 {
            // Configured before the nodes started: it is on from the start.
            record.started_s = Some(secs_from(self.window_start_ms, 0));
            return record;
        }
        if p.kind == FaultKind::None {
            return record;
        }
        tokio::time::sleep_until((self.origin + Duration::from_millis(p.start_ms)).into()).await;
        record.started_s = Some(self.now_s());
        if let Err(e) = self.inject(true).await {
            record.error = Some(format!("{e:#}"));
            on_event(&format!("fault {}: {e:#}", p.kind.name()));
            return record;
        }
        on_event(&format!(
            "fault {} injected at {:.1} s",
            p.kind.name(),
            self.now_s()
        ));
        let Some(end_ms) = p.end_ms else {
            return record;
        };
        tokio::time::sleep_until((self.origin + Duration::from_millis(end_ms)).into()).await;
        record.ended_s = Some(self.now_s());
        match self.inject(false).await {
            Ok(()) => on_event(&format!(
                "fault {} undone at {:.1} s",
                p.kind.name(),
                self.now_s()
            )),
            Err(e) => {
                record.error = Some(format!("{e:#}"));
                on_event(&format!("fault {}: {e:#}", p.kind.name()));
            }
        }
        record
    }

    /// Injects (`on`) or undoes the fault.
    async fn inject(&self, on: bool) -> anyhow::Result<()> {
        match (self.plan.kind, on) {
            (FaultKind::Crash1, true) => self.signal(Signal::SIGKILL),
            (FaultKind::Pause1, true) => self.signal(Signal::SIGSTOP),
            (FaultKind::Pause1, false) => self.signal(Signal::SIGCONT),
            (FaultKind::Partition, true) => self.partition(true).await,
            (FaultKind::Partition, false) => self.partition(false).await,
            _ => Ok(()),
        }
    }

    fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        for i in &self.plan.nodes {
            let target = self
                .targets
                .get(*i)
                .ok_or_else(|| anyhow::anyhow!("node {i} has no process"))?;
            if process::probe(target.pid, &target.home) == Probe::Gone {
                anyhow::bail!("node {i} (pid {}) is not running", target.pid);
            }
            process::send(target.pid, sig)?;
        }
        Ok(())
    }

    /// Splits the nodes into the plan's groups, or heals them, through
    /// every node's admin API.
    async fn partition(&self, split: bool) -> anyhow::Result<()> {
        let (path, body) = if split {
            let keys: Vec<Vec<String>> = self
                .plan
                .groups
                .iter()
                .map(|g| {
                    g.iter()
                        .filter_map(|i| self.nodes.get(*i).map(|n| n.key.to_string()))
                        .collect()
                })
                .collect();
            ("/admin/partition", serde_json::json!({ "groups": keys }))
        } else {
            ("/admin/heal", serde_json::json!({}))
        };
        let answers = futures::future::join_all(
            self.nodes
                .iter()
                .map(|n| self.client.post_json(n, path, &body)),
        )
        .await;
        let failed: Vec<String> = answers
            .into_iter()
            .filter_map(|a| a.err().map(|e| format!("{e:#}")))
            .collect();
        anyhow::ensure!(failed.is_empty(), "{path}: {}", failed.join("; "));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_strike_the_last_validator_at_the_middle() {
        let crash = FaultPlan::new(FaultKind::Crash1, 4, 5_000, 20_000, None);
        assert_eq!(
            (crash.nodes.clone(), crash.start_ms, crash.end_ms),
            (vec![3], 15_000, None)
        );
        let pause = FaultPlan::new(FaultKind::Pause1, 7, 5_000, 20_000, None);
        assert_eq!(
            (pause.nodes.clone(), pause.start_ms, pause.end_ms),
            (vec![6], 15_000, Some(20_000))
        );
        let split = FaultPlan::new(FaultKind::Partition, 5, 0, 8_000, None);
        assert_eq!(split.groups, vec![vec![0, 1, 2], vec![3, 4]]);
        assert_eq!((split.start_ms, split.end_ms), (4_000, Some(6_000)));
        let byz = FaultPlan::new(FaultKind::Byzantine1, 4, 1_000, 3_000, None);
        assert_eq!(
            (byz.nodes.clone(), byz.behaviour),
            (vec![3], Some(Byzantine::Silent))
        );
        let byz = FaultPlan::new(
            FaultKind::Byzantine1,
            4,
            1_000,
            3_000,
            Some(Byzantine::Equivocate),
        );
        assert_eq!(byz.behaviour, Some(Byzantine::Equivocate));
        assert_eq!(
            FaultPlan::new(FaultKind::None, 4, 0, 1_000, None).nodes,
            Vec::<usize>::new()
        );
    }
}
