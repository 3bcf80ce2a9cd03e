//! The foreground `up`: a live status line (height, view, last block age,
//! committed transactions per second, peers, nodes up), a report with the
//! log's tail as soon as a node dies, until Ctrl-C or SIGTERM (`down` from
//! another terminal sends the latter).
//!
//! Each second it re-reads the state file, so a node that `restart` started
//! again is followed under its new pid, and a node that a command stopped
//! on purpose (the state file no longer names its pid) is not reported
//! dead. The status line is a spinner on a
//! terminal; without one (output to a file), a plain line every
//! [`PLAIN_EVERY`].

use super::Signals;
use super::client::Client;
use super::net::Network;
use super::process::{NodeProc, Probe};
use super::state::State;
use super::up::death_report;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

/// How often the status line is refreshed.
const TICK: Duration = Duration::from_secs(1);
/// Without a terminal, a status line this often.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// Committed-transaction samples kept per node (the TPS window, in ticks).
const TPS_SAMPLES: usize = 6;

/// Transactions per second from each node's committed-transaction counter
/// over the last few samples.
#[derive(Debug, Default)]
pub struct TpsMeter {
    samples: BTreeMap<usize, VecDeque<(Instant, u64)>>,
}

impl TpsMeter {
    pub fn record(&mut self, node: usize, at: Instant, committed: u64) {
        let samples = self.samples.entry(node).or_default();
        // A counter that went down belongs to a restarted node.
        if samples.back().is_some_and(|(_, last)| *last > committed) {
            samples.clear();
        }
        samples.push_back((at, committed));
        while samples.len() > TPS_SAMPLES {
            samples.pop_front();
        }
    }

    /// The rate at `node`, if it has two samples.
    pub fn rate(&self, node: usize) -> Option<f64> {
        let samples = self.samples.get(&node)?;
        let ((t0, v0), (t1, v1)) = (samples.front()?, samples.back()?);
        let secs = t1.duration_since(*t0).as_secs_f64();
        (secs > 0.0).then(|| v1.saturating_sub(*v0) as f64 / secs)
    }
}

/// What the status line shows, from one round of `/status`.
#[derive(Debug, Default)]
struct Line {
    height: u64,
    view: u64,
    up: usize,
    min_peers: Option<usize>,
}

/// Supervises until a signal or until the state file disappears.
pub async fn supervise(
    client: &Client,
    net: &Network,
    procs: &mut Vec<NodeProc>,
    mut state: State,
    signals: &mut Signals,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut tps = TpsMeter::default();
    let mut best_height = 0;
    let mut height_seen = Instant::now();
    let mut last_plain: Option<Instant> = None;
    // The last pid reported dead, per node (each death is told once).
    let mut reported: BTreeMap<usize, u32> = BTreeMap::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            () = signals.recv() => break,
            _ = ticker.tick() => {}
        }
        match State::load(&net.dir) {
            Ok(Some(now)) => state = now,
            // Removed by someone else: nothing left to supervise.
            Ok(None) => break,
            Err(e) => bar.suspend(|| eprintln!("warning: {e:#}")),
        }
        follow_restarts(procs, &state, net);
        for p in procs.iter_mut() {
            if reported.get(&p.index) == Some(&p.pid) || p.probe() != Probe::Gone {
                continue;
            }
            if state.pid(p.index) != Some(p.pid) {
                // Another command stopped it on purpose (`restart`, or
                // `partition` on proof of work) and recorded so first.
                reported.insert(p.index, p.pid);
                continue;
            }
            let report = death_report(p, net);
            bar.suspend(|| eprintln!("\n{report}\n"));
            reported.insert(p.index, p.pid);
            if state.pid(p.index) == Some(p.pid) {
                state.set_pid(p.index, None);
                if let Err(e) = state.save(&net.dir) {
                    bar.suspend(|| eprintln!("warning: {e:#}"));
                }
            }
        }
        let paused: Vec<usize> = procs
            .iter_mut()
            .filter_map(|p| (p.probe() == Probe::Paused).then_some(p.index))
            .collect();
        // Ctrl-C is not held up by a node that is slow to answer.
        let line = tokio::select! {
            () = signals.recv() => break,
            line = poll(client, net, &paused, &mut tps) => line,
        };
        if line.height > best_height {
            best_height = line.height;
            height_seen = Instant::now();
        }
        let rate = net
            .nodes
            .iter()
            .filter_map(|n| tps.rate(n.index))
            .fold(0.0_f64, f64::max);
        let text = format!(
            "height {} | view {} | last block {:.1} s ago | {rate:.1} tx/s | peers {} | nodes up {}/{}",
            line.height,
            line.view,
            height_seen.elapsed().as_secs_f64(),
            line.min_peers.map_or_else(
                || "-".into(),
                |p| format!("{p}/{}", net.nodes.len().saturating_sub(1))
            ),
            line.up,
            net.nodes.len()
        );
        if bar.is_hidden() {
            if last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                writeln!(out, "{text}")?;
                out.flush()?;
                last_plain = Some(Instant::now());
            }
        } else {
            bar.set_message(text);
        }
    }
    bar.finish_and_clear();
    writeln!(out, "stopping the nodes")?;
    Ok(())
}

/// Follows nodes that another command restarted under a new pid.
fn follow_restarts(procs: &mut Vec<NodeProc>, state: &State, net: &Network) {
    for node in &net.nodes {
        let Some(pid) = state.pid(node.index) else {
            continue;
        };
        match procs.iter_mut().find(|p| p.index == node.index) {
            Some(p) if p.pid == pid => {}
            Some(p) => {
                // Reap the old child, if it was ours, before letting go.
                let _ = p.probe();
                *p = NodeProc {
                    index: node.index,
                    pid,
                    home: node.home.clone(),
                    child: None,
                };
            }
            None => procs.push(NodeProc {
                index: node.index,
                pid,
                home: node.home.clone(),
                child: None,
            }),
        }
    }
}

/// One round of `/status` and `/metrics` across the nodes but the
/// `paused` ones (which would only run the requests into their timeout,
/// and hold up Ctrl-C meanwhile).
async fn poll(client: &Client, net: &Network, paused: &[usize], tps: &mut TpsMeter) -> Line {
    let asked = || net.nodes.iter().filter(|n| !paused.contains(&n.index));
    let (statuses, counters) = futures::join!(
        futures::future::join_all(asked().map(|n| client.status(n))),
        futures::future::join_all(asked().map(|n| client.committed_txs(n))),
    );
    let now = Instant::now();
    for (node, counter) in asked().zip(counters) {
        if let Ok(value) = counter {
            tps.record(node.index, now, value);
        }
    }
    let mut line = Line::default();
    for status in statuses.iter().flatten() {
        line.up += 1;
        line.height = line.height.max(status.height.unwrap_or(0));
        line.view = line.view.max(status.view);
        line.min_peers = Some(line.min_peers.map_or(status.peers, |p| p.min(status.peers)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_the_counter_rate_and_restarts_reset_it() {
        let mut m = TpsMeter::default();
        let t0 = Instant::now();
        assert_eq!(m.rate(0), None);
        m.record(0, t0, 100);
        m.record(0, t0 + Duration::from_secs(2), 140);
        assert_eq!(m.rate(0), Some(20.0));
        m.record(0, t0 + Duration::from_secs(3), 5);
        assert_eq!(m.rate(0), None);
        for s in 0..20 {
            m.record(1, t0 + Duration::from_secs(s), s * 10);
        }
        assert_eq!(m.samples[&1].len(), TPS_SAMPLES);
        assert_eq!(m.rate(1), Some(10.0));
    }
}
