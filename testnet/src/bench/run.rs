//! One `bench` run, start to end: the network made and started, the
//! workload signed, the nodes sampled at the window's start and end (and
//! every second between, so a node that dies keeps its last reading), the
//! fault injected, the nodes stopped, and the figures put together.

use super::drive::{self, Phases};
use super::faults::{FaultKind, FaultRecord, Injector, Target};
use super::follow::{self, Followed, followed_height};
use super::lost;
use super::plan::{self, Workload};
use super::procfs::{self, ProcSample};
use super::results::{NodeFigures, NodePow, PerBlock};
use super::scrape::{Scrape, Sent};
use super::{Dirs, Settings};
use crate::local::client::Client;
use crate::local::init::{self, NetSpec};
use crate::local::net::Network;
use crate::local::process::{self, NodeProc, Probe};
use crate::local::state::State;
use crate::local::up;
use crate::sim::scenario::ByzantineSpec;
use anyhow::anyhow;
use phalanx_chain::ValidatorIndex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The nodes are read this often between the window's start and end.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one node's `/metrics` while sampling (a paused node
/// does not answer).
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// The running nodes; stopped when dropped (an error, Ctrl-C), so that no
/// process outlives the run.
#[derive(Debug)]
pub struct Nodes {
    net: Network,
    procs: Vec<NodeProc>,
}

impl Nodes {
    /// Stops every node; returns the indices that needed SIGKILL.
    pub fn stop(&mut self) -> Vec<usize> {
        let killed = process::stop_all(&mut self.procs, process::STOP_GRACE);
        let _ = State::remove(&self.net.dir);
        self.procs.clear();
        killed
    }

    /// How each node's process ended, if it has.
    fn exits(&mut self) -> Vec<Option<String>> {
        self.procs
            .iter_mut()
            .map(|p| match p.probe() {
                Probe::Gone => Some(p.exit_status().unwrap_or_else(|| "ended".into())),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if !self.procs.is_empty() {
            self.stop();
        }
    }
}

/// Writes the network: keys, genesis with `accounts` funded accounts,
/// configs, and the Byzantine node's behaviour.
pub fn create_network(s: &Settings, dirs: &Dirs) -> anyhow::Result<Network> {
    init::create(
        &dirs.network,
        &NetSpec {
            validators: s.scale.validators,
            consensus: s.consensus,
            base_port: s.base_port,
            hosts: Vec::new(),
            accounts: s.scale.accounts,
            chain_id: super::CHAIN_ID.into(),
            quick: s.quick,
            pow: s.pow.clone(),
        },
    )?;
    if let Some(ms) = s.base_timeout_ms {
        init::set_base_timeout(&dirs.network, s.scale.validators, ms)?;
    }
    if let Some(threads) = s.verify_threads {
        init::set_verify_threads(&dirs.network, s.scale.validators, threads)?;
    }
    if s.no_tx_index {
        init::set_tx_index(&dirs.network, s.scale.validators, false)?;
    }
    if let Some(behaviour) = s.fault.behaviour {
        let last = u16::try_from(s.scale.validators.saturating_sub(1))?;
        init::apply_byzantine(
            &dirs.network,
            s.consensus,
            s.scale.validators,
            &[ByzantineSpec {
                replicas: vec![ValidatorIndex(last)],
                behaviour,
            }],
        )?;
    }
    let net = Network::open(&dirs.network)?;
    up::check_ports(&net)?;
    Ok(net)
}

/// Signs the workload on every core, showing progress; `cancel` stops it.
pub async fn sign(
    s: &Settings,
    net: &Network,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<Workload> {
    // A new network: every account's first nonce is 0.
    let keys = plan::account_keys(net, s.scale.accounts)?
        .into_iter()
        .map(|k| (k, 0))
        .collect();
    let count = u32::try_from(s.scale.planned)?;
    plan::sign_with_progress(net.chain_id.clone(), keys, s.scale.tps, count, cancel).await
}

/// Starts the nodes and waits until they are healthy.
pub async fn start(s: &Settings, net: &Network, client: &Client) -> anyhow::Result<Nodes> {
    let binary = process::node_binary()?;
    let (procs, _state) = up::start_all(net, &binary, None)?;
    let mut nodes = Nodes {
        net: net.clone(),
        procs,
    };
    up::wait_healthy(
        client,
        net,
        &mut nodes.procs,
        Duration::from_secs(s.start_timeout_s),
    )
    .await?;
    Ok(nodes)
}

/// What [`measure`] gathered.
#[derive(Debug)]
pub struct Measured {
    pub outcome: drive::Outcome,
    /// A sample of the lost transactions, looked up before the nodes
    /// stopped.
    pub lost: lost::LostCheck,
    pub fault: Option<FaultRecord>,
    pub readings: Vec<Readings>,
    pub exits: Vec<Option<String>>,
    /// Per node, why its consensus halted, if it did.
    pub halted: Vec<Option<String>>,
    /// Proof of work: nodes whose final chains differ from node 0's at
    /// the highest height final on all of them, described.
    pub disagreements: Vec<String>,
    pub pids: Vec<u32>,
    pub killed: Vec<usize>,
}

/// Runs the workload with the fault and the sampler beside it, then stops
/// the nodes.
pub async fn measure(
    s: &Settings,
    net: &Network,
    client: &Client,
    mut nodes: Nodes,
    workload: Workload,
) -> anyhow::Result<Measured> {
    let observer = net
        .nodes
        .first()
        .ok_or_else(|| anyhow!("the network has no node"))?;
    let final_only = s.pow.is_some();
    let start_height = followed_height(&client.status(observer).await?, final_only);
    let pids: Vec<u32> = nodes.procs.iter().map(|p| p.pid).collect();
    let origin = Instant::now();
    let phases = s.phases;
    let run = drive::Run {
        client: client.clone(),
        nodes: net.nodes.clone(),
        observers: net.nodes.clone(),
        workload: Arc::new(workload),
        phases,
        followed: Followed {
            last: start_height,
            final_only,
        },
        origin,
    };
    let injector = Injector {
        plan: s.fault.clone(),
        client: client.clone(),
        nodes: net.nodes.clone(),
        targets: nodes
            .procs
            .iter()
            .map(|p| Target {
                pid: p.pid,
                home: p.home.clone(),
            })
            .collect(),
        origin,
        window_start_ms: phases.warmup_ms,
    };
    let sampler = Sampler {
        client,
        net,
        pids: &pids,
        origin,
        phases,
    };
    let say = |line: &str| eprintln!("bench: {line}");
    let (outcome, fault, readings) =
        tokio::join!(drive::run(run), injector.run(say), sampler.run());
    let sample = {
        let book = follow::lock(&outcome.book);
        lost::sample(&book, &outcome.workload, &phases, lost::MAX_CHECKED)
    };
    let lost = lost::check(client, &net.nodes, &outcome.workload, &sample).await;
    let exits = nodes.exits();
    let halted = halted(client, net).await;
    let disagreements = if s.pow.is_some() {
        final_disagreements(client, net).await
    } else {
        Vec::new()
    };
    let killed = nodes.stop();
    Ok(Measured {
        outcome,
        lost,
        fault: (s.fault.kind != FaultKind::None).then_some(fault),
        readings,
        exits,
        halted,
        disagreements,
        pids,
        killed,
    })
}

/// Proof of work: the nodes (of those that answer) whose final block at
/// the lowest of their finalized heights differs from the first
/// answering node's. Final chains that differ mean k confirmations were
/// not enough (after a partition, each half keeps its own final chain and
/// never follows a branch forking below it).
async fn final_disagreements(client: &Client, net: &Network) -> Vec<String> {
    let asks = net.nodes.iter().map(|node| async move {
        let status = tokio::time::timeout(SCRAPE_TIMEOUT, client.status(node))
            .await
            .ok()?
            .ok()?;
        Some((node, status.finalized_height?))
    });
    let finals: Vec<_> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let Some(common) = finals.iter().map(|(_, h)| *h).min() else {
        return Vec::new();
    };
    let reads = finals.iter().map(|(node, _)| async move {
        let block = tokio::time::timeout(SCRAPE_TIMEOUT, client.block(node, common))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        (node.index, block.map(|b| b.hash))
    });
    let hashes: Vec<(usize, Option<String>)> = futures::future::join_all(reads).await;
    let mut known = hashes.iter().filter_map(|(i, h)| Some((*i, h.as_ref()?)));
    let Some((first, reference)) = known.next() else {
        return Vec::new();
    };
    known
        .filter(|(_, h)| *h != reference)
        .map(|(i, h)| {
            format!(
                "node {i}'s final block {common} is {h}, node {first}'s is {reference}: their \
                 final chains differ"
            )
        })
        .collect()
}

/// Why each node's consensus halted, if it did (`GET /status` before the
/// nodes stop; a node that does not answer says nothing).
async fn halted(client: &Client, net: &Network) -> Vec<Option<String>> {
    let asks = net.nodes.iter().map(|node| async move {
        tokio::time::timeout(SCRAPE_TIMEOUT, client.status(node))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|status| status.halted)
    });
    futures::future::join_all(asks).await
}

/// One reading of a node.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// When its metrics answered (ms from the origin).
    pub at_ms: Option<u64>,
    pub proc: ProcSample,
    pub scrape: Option<Scrape>,
}

impl Reading {
    /// `newer`, keeping this reading's values where `newer` has none.
    fn updated(&self, newer: Reading) -> Reading {
        let (old, new) = (self.proc, newer.proc);
        Reading {
            at_ms: newer.at_ms.or(self.at_ms),
            proc: ProcSample {
                cpu_ticks: new.cpu_ticks.or(old.cpu_ticks),
                peak_rss_bytes: new.peak_rss_bytes.or(old.peak_rss_bytes),
                write_bytes: new.write_bytes.or(old.write_bytes),
            },
            scrape: newer.scrape.or_else(|| self.scrape.clone()),
        }
    }
}

/// A node's readings at the window's start and its end (or the last it
/// gave).
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub first: Reading,
    pub last: Reading,
}

struct Sampler<'a> {
    client: &'a Client,
    net: &'a Network,
    pids: &'a [u32],
    origin: Instant,
    phases: Phases,
}

impl Sampler<'_> {
    async fn run(&self) -> Vec<Readings> {
        let at = |ms: u64| tokio::time::Instant::from(self.origin + Duration::from_millis(ms));
        tokio::time::sleep_until(at(self.phases.warmup_ms)).await;
        let first = self.round().await;
        let mut last = first.clone();
        let end = at(self.phases.window_end_ms());
        loop {
            let next = tokio::time::Instant::now() + SAMPLE_EVERY;
            tokio::time::sleep_until(next.min(end)).await;
            let round = self.round().await;
            last = last
                .iter()
                .zip(round)
                .map(|(old, new)| old.updated(new))
                .collect();
            if tokio::time::Instant::now() >= end {
                break;
            }
        }
        first
            .into_iter()
            .zip(last)
            .map(|(first, last)| Readings { first, last })
            .collect()
    }

    /// Every node's `/proc` and `/metrics`, now.
    async fn round(&self) -> Vec<Reading> {
        let reads = self
            .net
            .nodes
            .iter()
            .zip(self.pids)
            .map(|(node, pid)| async move {
                let proc = procfs::sample(*pid);
                let scrape = tokio::time::timeout(SCRAPE_TIMEOUT, self.client.metrics_text(node))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|text| Scrape::parse(&text));
                Reading {
                    at_ms: scrape
                        .is_some()
                        .then(|| self.origin.elapsed().as_millis() as u64),
                    proc,
                    scrape,
                }
            });
        futures::future::join_all(reads).await
    }
}

/// A node's figures in the window from its readings.
pub fn node_figures(
    index: usize,
    role: String,
    pid: u32,
    (exited, halted): (Option<String>, Option<String>),
    r: &Readings,
) -> NodeFigures {
    let ticks = procfs::clock_ticks_per_second() as f64;
    let (a, b) = (r.first.scrape.as_ref(), r.last.scrape.as_ref());
    let delta = |f: fn(&Scrape) -> u64| Some(f(b?).saturating_sub(f(a?)));
    let finalized_blocks = delta(|s| s.finalized_height);
    let pow_delta = |f: fn(&Scrape) -> Option<u64>| Some(f(b?)?.saturating_sub(f(a?)?));
    let pow = b.and_then(|s| s.mined_blocks).map(|_| NodePow {
        mined_blocks: pow_delta(|s| s.mined_blocks),
        reorgs: pow_delta(|s| s.reorgs),
        orphaned_blocks: pow_delta(|s| s.orphaned_blocks),
        reorg_returned_txs: pow_delta(|s| s.reorg_returned_txs),
    });
    let committed_txs = delta(|s| s.committed_txs);
    let view_changes = match (
        a.and_then(|s| s.view_changes),
        b.and_then(|s| s.view_changes),
    ) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
        _ => None,
    };
    let mut sent_by_channel = BTreeMap::new();
    let mut dropped_by_reason = BTreeMap::new();
    if let (Some(a), Some(b)) = (a, b) {
        for (channel, after) in &b.sent {
            let before = a.sent.get(channel).copied().unwrap_or_default();
            sent_by_channel.insert(channel.clone(), after.since(&before));
        }
        for (reason, after) in &b.dropped {
            let rise = after.saturating_sub(a.dropped.get(reason).copied().unwrap_or(0));
            if rise > 0 {
                dropped_by_reason.insert(reason.clone(), rise);
            }
        }
    }
    let sent = (a.is_some() && b.is_some()).then(|| {
        let mut total = Sent::default();
        sent_by_channel.values().for_each(|s| total.add(s));
        total
    });
    let (pa, pb) = (r.first.proc, r.last.proc);
    let cpu_s = match (pa.cpu_ticks, pb.cpu_ticks) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / ticks),
        _ => None,
    };
    NodeFigures {
        index,
        role,
        pid,
        exited,
        measured_s: match (r.first.at_ms, r.last.at_ms) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 1_000.0),
            _ => None,
        },
        finalized_blocks,
        committed_txs,
        view_changes,
        sent_per_block: sent.and_then(|s| PerBlock::of(&s, finalized_blocks.unwrap_or(0))),
        sent,
        sent_by_channel,
        dropped_by_reason,
        evicted_txs: delta(|s| s.evicted),
        regossiped_txs: delta(|s| s.regossiped),
        cpu_s,
        cpu_s_per_1k_txs: match (cpu_s, committed_txs) {
            (Some(cpu), Some(txs)) if txs > 0 => Some(cpu / (txs as f64 / 1_000.0)),
            _ => None,
        },
        peak_rss_bytes: pb.peak_rss_bytes.or(pa.peak_rss_bytes),
        disk_write_bytes: match (pa.write_bytes, pb.write_bytes) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            _ => None,
        },
        halted,
        pow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_ms: u64, cpu: u64, finalized: u64, authored: u64) -> Reading {
        let mut scrape = Scrape {
            finalized_height: finalized,
            committed_txs: finalized * 100,
            view_changes: Some(1),
            ..Scrape::default()
        };
        scrape.sent.insert(
            "consensus".into(),
            Sent {
                messages_authored: authored,
                ..Sent::default()
            },
        );
        Reading {
            at_ms: Some(at_ms),
            proc: ProcSample {
                cpu_ticks: Some(cpu),
                peak_rss_bytes: Some(1 << 20),
                write_bytes: Some(cpu * 10),
            },
            scrape: Some(scrape),
        }
    }

    #[test]
    fn node_figures_are_window_deltas() {
        let r = Readings {
            first: reading(1_000, 100, 10, 50),
            last: reading(11_000, 100 + 2 * procfs::clock_ticks_per_second(), 30, 250),
        };
        let f = node_figures(2, "validator".into(), 7, (None, None), &r);
        assert_eq!(f.measured_s, Some(10.0));
        assert_eq!(f.finalized_blocks, Some(20));
        assert_eq!(f.committed_txs, Some(2_000));
        assert_eq!(f.view_changes, Some(0));
        assert_eq!(f.cpu_s, Some(2.0));
        assert_eq!(f.cpu_s_per_1k_txs, Some(1.0));
        assert_eq!(f.sent.unwrap().messages_authored, 200);
        assert_eq!(f.sent_per_block.unwrap().messages_authored, 10.0);
        assert_eq!(f.peak_rss_bytes, Some(1 << 20));
        assert_eq!(f.pow, None, "no proof-of-work counters on a BFT node");
        // A miner's counters rise like the others.
        let mut pow = r.clone();
        for (reading, mined) in [(&mut pow.first, 3), (&mut pow.last, 10)] {
            if let Some(s) = reading.scrape.as_mut() {
                s.mined_blocks = Some(mined);
                s.reorgs = Some(mined / 3);
                s.orphaned_blocks = Some(mined / 2);
                s.reorg_returned_txs = Some(mined * 4);
            }
        }
        let f = node_figures(0, "miner".into(), 7, (None, Some("conflict".into())), &pow);
        assert_eq!(
            f.pow,
            Some(NodePow {
                mined_blocks: Some(7),
                reorgs: Some(2),
                orphaned_blocks: Some(4),
                reorg_returned_txs: Some(28),
            })
        );
        assert_eq!(f.halted.as_deref(), Some("conflict"));
        // A node that never answered has no figures but its process's.
        let silent = Readings {
            first: Reading::default(),
            last: Reading::default().updated(reading(5, 1, 1, 1)),
        };
        let f = node_figures(
            3,
            "validator".into(),
            8,
            (Some("killed".into()), None),
            &silent,
        );
        assert_eq!((f.finalized_blocks, f.sent, f.cpu_s), (None, None, None));
        // A later reading without values keeps the earlier ones.
        let kept = reading(5, 1, 1, 1).updated(Reading::default());
        assert_eq!(kept.proc.cpu_ticks, Some(1));
        assert!(kept.scrape.is_some());
    }
}
