//! The plain-language reading at the top of the report: which protocol
//! won what, by how much, under which fault, with the caveats of a
//! one-machine run. Every statement about an outcome is computed from the
//! figures; only the caveats are fixed text.

use super::figures::Key;
use super::model::{Comparison, Group, SimSweeps};
use super::plot::number;

/// What the reading is written from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub protocols: Vec<String>,
    pub faults: Vec<String>,
    pub tps: f64,
    pub runs: Vec<Fact>,
    pub sim: Option<SimSweeps>,
    /// The machine, described (cores, CPU).
    pub machine: String,
    /// Proof of work's hash rate (H/s) and block interval (ms), if it ran.
    pub pow_hashrate: Option<u64>,
    pub pow_block_interval_ms: u64,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Fact {
    pub group: Group,
    pub protocol: String,
    pub fault: String,
    pub validators: usize,
    pub tps: f64,
    pub key: Option<Key>,
    pub error: Option<String>,
    /// The fault's span (s), for a partition.
    pub fault_s: Option<f64>,
}

impl Facts {
    pub fn of(c: &Comparison) -> Facts {
        let runs = c
            .runs
            .iter()
            .map(|r| Fact {
                group: r.group,
                protocol: r.protocol.clone(),
                fault: r.fault.clone(),
                validators: r.validators,
                tps: r.tps,
                key: r.ok().map(Key::of),
                error: r.error.clone(),
                fault_s: r
                    .ok()
                    .and_then(super::figures::fault_span)
                    .map(|(a, b)| b - a),
            })
            .collect();
        let pow = c
            .runs
            .iter()
            .filter_map(|r| r.ok()?.config.pow.as_ref())
            .next();
        Facts {
            protocols: c.settings.protocols.clone(),
            faults: c.settings.faults.clone(),
            tps: c.settings.tps,
            runs,
            sim: c.sim.clone(),
            machine: format!(
                "{} cores{}",
                c.machine.cores,
                c.machine
                    .cpu_model
                    .as_ref()
                    .map_or_else(String::new, |m| format!(", {m}"))
            ),
            pow_hashrate: pow.map(|p| p.total_hashrate),
            pow_block_interval_ms: pow
                .map_or(c.settings.pow_block_interval_ms, |p| p.block_interval_ms),
        }
    }

    /// The figures of a matrix run that went well (a failed run, or one
    /// whose fault was not injected, says nothing about its fault).
    fn matrix(&self, protocol: &str, fault: &str) -> Option<&Key> {
        let run = self
            .runs
            .iter()
            .find(|r| r.group == Group::Matrix && r.protocol == protocol && r.fault == fault)?;
        run.error.is_none().then_some(run.key.as_ref())?
    }

    /// Each protocol's figure in the matrix run under `fault`, largest
    /// first (or smallest first with `ascending`).
    fn ranked(
        &self,
        fault: &str,
        f: impl Fn(&Key) -> Option<f64>,
        ascending: bool,
    ) -> Vec<(&str, f64)> {
        let mut v: Vec<(&str, f64)> = self
            .protocols
            .iter()
            .filter_map(|p| Some((p.as_str(), f(self.matrix(p, fault)?)?)))
            .collect();
        v.sort_by(|a, b| {
            if ascending {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            }
        });
        v
    }
}

/// Differences in p50 latency smaller than this share are not called a
/// win. Each combination runs once, and the nodes and the load generator
/// share the machine's cores: four runs of one bench on a quiet 2-core
/// machine gave HotStuff p50s of 43 to 48 ms (12 % apart), and another
/// load on the machine moves them far more (docs/COMPARE.md, "Caveats").
const LATENCY_NOISE: f64 = 0.2;

/// `a / b` as "2.5×".
fn times(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "infinitely".to_owned();
    }
    format!("{:.1}×", a / b)
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The reading: a list of short paragraphs.
pub fn reading(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(throughput(f));
    out.extend(latency(f));
    for fault in f.faults.iter().filter(|x| *x != "none") {
        out.extend(under_fault(f, fault));
    }
    if f.faults.iter().any(|x| x == "partition") {
        out.extend(partition(f));
    }
    out.extend(saturation(f));
    out.extend(scaling(f));
    out.extend(simulated(f));
    let failed: Vec<String> = f
        .runs
        .iter()
        .filter_map(|r| {
            Some(format!(
                "{} {} at {} tx/s ({})",
                r.protocol,
                r.fault,
                number(r.tps),
                r.error.as_ref()?
            ))
        })
        .collect();
    if !failed.is_empty() {
        out.push(format!(
            "{} run(s) failed or gave no benchmark, and their figures are missing or suspect: {}.",
            failed.len(),
            failed.join("; ")
        ));
    }
    out.push(caveats(f));
    out
}

fn throughput(f: &Facts) -> Option<String> {
    let ranked = f.ranked("none", |k| k.achieved_tps, false);
    let (best, top) = *ranked.first()?;
    let (_, low) = *ranked.last()?;
    let figures: Vec<String> = ranked.iter().map(|(p, v)| format!("{p} {v:.0}")).collect();
    if ranked.len() < 2 || top <= low * 1.05 {
        return Some(format!(
            "Throughput, no fault: all kept up within 5 % of each other at an offered {} tx/s \
             (finalized tx/s: {}); this load does not separate them.",
            number(f.tps),
            list(&figures)
        ));
    }
    if ranked.iter().all(|(_, v)| *v >= 0.95 * f.tps) {
        return Some(format!(
            "Throughput, no fault: every protocol kept up with the offered {} tx/s (finalized \
             tx/s: {}; above the offered rate when warmup transactions became final in the \
             window), so this load names no winner: see the saturation sweep.",
            number(f.tps),
            list(&figures)
        ));
    }
    let (second, next) = *ranked.get(1)?;
    if top <= next * 1.05 {
        return Some(format!(
            "Throughput, no fault: {best} and {second} finalized about as much ({top:.0} and \
             {next:.0} tx/s of {} offered; all: {}).",
            number(f.tps),
            list(&figures)
        ));
    }
    Some(format!(
        "Throughput, no fault: {best} finalized the most, {top:.0} tx/s of {} offered, {} \
         {second}'s {next:.0} (all: {}).",
        number(f.tps),
        times(top, next),
        list(&figures)
    ))
}

fn latency(f: &Facts) -> Option<String> {
    let ranked = f.ranked("none", |k| k.p50_ms, true);
    let (best, low) = *ranked.first()?;
    let figures: Vec<String> = ranked
        .iter()
        .map(|(p, v)| {
            let k = f
                .matrix(p, "none")
                .and_then(|k| k.pow.as_ref())
                .map_or_else(String::new, |pow| {
                    format!(" (k = {} confirmations)", pow.confirmations)
                });
            format!("{p} {v:.0} ms{k}")
        })
        .collect();
    let Some((second, next)) = ranked.get(1).copied() else {
        return Some(format!(
            "Latency, no fault: p50 submit to final {}.",
            list(&figures)
        ));
    };
    if next <= low * (1.0 + LATENCY_NOISE) {
        return Some(format!(
            "Latency, no fault: {best} and {second} were about as quick to finality (p50 within \
             {:.0} %, which one run cannot separate); p50 submit to final: {}.",
            LATENCY_NOISE * 100.0,
            list(&figures)
        ));
    }
    Some(format!(
        "Latency, no fault: {best} was quickest to finality, p50 {low:.0} ms, {} lower than \
         {second} ({next:.0} ms); p50 submit to final: {}.",
        times(next, low.max(1.0)),
        list(&figures)
    ))
}

/// How much of its fault-free throughput each protocol kept under
/// `fault`.
fn under_fault(f: &Facts, fault: &str) -> Option<String> {
    let mut kept: Vec<(&str, f64, f64)> = f
        .protocols
        .iter()
        .filter_map(|p| {
            let base = f.matrix(p, "none")?.achieved_tps?;
            let hit = f.matrix(p, fault)?.achieved_tps?;
            (base > 0.0).then_some((p.as_str(), hit / base, hit))
        })
        .collect();
    if kept.is_empty() {
        let figures: Vec<String> = f
            .ranked(fault, |k| k.achieved_tps, false)
            .iter()
            .map(|(p, v)| format!("{p} {v:.0} tx/s"))
            .collect();
        return (!figures.is_empty())
            .then(|| format!("Under {fault}: finalized {}.", list(&figures)));
    }
    kept.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts: Vec<String> = kept
        .iter()
        .map(|(p, share, tps)| format!("{p} {:.0} % ({tps:.0} tx/s)", share * 100.0))
        .collect();
    let (best, top, _) = *kept.first()?;
    let lead = match kept.get(1) {
        _ if kept.len() > 1 && kept.iter().all(|(_, share, _)| *share >= 0.95) => {
            "every protocol kept at least 95 % of its fault-free throughput, so throughput \
             names no winner (the latency tail and the stalls do)"
                .to_owned()
        }
        Some((second, share, _)) if top - share < 0.05 => {
            format!("{best} and {second} held up about equally")
        }
        _ => match stalled(f, best, fault) {
            Some(stall) => format!(
                "{best} recovered best (it too stopped, for {stall} s: the share counts the \
                 backlog finalized once the fault ended)"
            ),
            None => format!("{best} held up best"),
        },
    };
    let p99: Vec<String> = f
        .ranked(fault, |k| k.p99_ms, true)
        .iter()
        .map(|(p, v)| format!("{p} {v:.0} ms"))
        .collect();
    let stalls: Vec<String> = f
        .ranked(fault, |k| k.longest_stall_s.map(|s| s as f64), true)
        .iter()
        .map(|(p, v)| format!("{p} {v:.0} s"))
        .collect();
    let stalls = if stalls.is_empty() {
        String::new()
    } else {
        format!(
            "; longest stretch with load offered and nothing final: {}",
            list(&stalls)
        )
    };
    Some(format!(
        "Under {fault}, {lead}: the share of its fault-free throughput each kept was {}; p99 \
         latency {}{stalls}.",
        list(&parts),
        list(&p99)
    ))
}

/// `protocol`'s longest stall under `fault`, if it stopped for longer
/// than with no fault (and at least 2 s: proof of work's blocks leave
/// gaps of a few seconds anyway).
fn stalled(f: &Facts, protocol: &str, fault: &str) -> Option<u64> {
    let stall = f.matrix(protocol, fault)?.longest_stall_s?;
    let usual = f
        .matrix(protocol, "none")
        .and_then(|k| k.longest_stall_s)
        .unwrap_or(0);
    (stall >= 2 && stall > usual).then_some(stall)
}

/// The partition: BFT stops and never forks; proof of work forks and
/// reorganizes on the heal (or, said plainly, did not).
fn partition(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    for p in &f.protocols {
        let Some(run) = f
            .runs
            .iter()
            .find(|r| r.group == Group::Matrix && r.protocol == *p && r.fault == "partition")
        else {
            continue;
        };
        if let Some(e) = &run.error {
            out.push(format!(
                "Partition, {p}: nothing to read, the run failed: {e}."
            ));
            continue;
        }
        let Some(k) = &run.key else { continue };
        let span = run
            .fault_s
            .map_or_else(|| "?".to_owned(), |s| format!("{s:.1}"));
        let blocks = k.blocks_during_fault.unwrap_or(0);
        let during = k.tps_during_fault.unwrap_or(0.0);
        let before = k
            .tps_before_fault
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        match &k.pow {
            None if blocks == 0 => out.push(format!(
                "Partition, {p}: finalization stopped for the {span} s split (0 blocks final, \
                 against {before} tx/s just before): neither half had a quorum. It cannot fork: \
                 a block is final only with a quorum's votes, and it resumed on the heal."
            )),
            None => out.push(format!(
                "Partition, {p}: {blocks} block(s) still became final in the {span} s split \
                 ({during:.0} tx/s, against {before} just before), those whose quorum formed \
                 before the split took hold; no fork is possible without a quorum."
            )),
            Some(pow) => out.push(pow_partition(p, pow, blocks, &span, f)),
        }
    }
    out
}

fn pow_partition(
    p: &str,
    pow: &super::figures::PowKey,
    blocks: u64,
    span: &str,
    f: &Facts,
) -> String {
    let orphaned = pow.orphaned_blocks.unwrap_or(0);
    let reorgs = pow.reorgs_all_nodes.unwrap_or(pow.reorgs);
    let forked = reorgs > 0 || orphaned > 0;
    let mut s = format!(
        "Partition, {p}: the observer's half kept producing blocks ({blocks} final while split \
         for {span} s, k = {}). ",
        pow.confirmations
    );
    if forked {
        s.push_str(&format!(
            "Both halves mined their own branch: on the heal the nodes reorganized {reorgs} \
             time(s) ({} on the observer), orphaning {orphaned} block(s) (summed over nodes) \
             and sending {} transaction(s) back to mempools.",
            pow.max_reorg_depth
                .filter(|d| *d > 0)
                .map_or_else(|| "none".to_owned(), |d| format!("deepest {d} block(s)")),
            pow.returned_txs
                .map_or_else(|| "-".to_owned(), |t| t.to_string())
        ));
    } else {
        s.push_str(&format!(
            "No fork showed: no reorganization and no orphaned block; the split was too short \
             against the {} ms block interval for both halves to mine (make --duration longer).",
            f.pow_block_interval_ms
        ));
    }
    if pow.safety_violations > 0 {
        s.push_str(&format!(
            " k = {} was not enough: {} final block(s) were reverted or the halves kept \
             different final chains.",
            pow.confirmations, pow.safety_violations
        ));
    }
    s
}

/// The saturation sweep: up to which offered rate each protocol kept up.
fn saturation(f: &Facts) -> Option<String> {
    let mut parts = Vec::new();
    for p in &f.protocols {
        let mut points: Vec<(f64, f64)> = f
            .runs
            .iter()
            .filter(|r| r.group == Group::Load && r.protocol == *p)
            .filter_map(|r| Some((r.tps, r.key.as_ref()?.achieved_tps?)))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let kept: Vec<&(f64, f64)> = points.iter().filter(|(o, a)| *a >= 0.9 * o).collect();
        let top = points.iter().map(|(_, a)| *a).fold(0.0, f64::max);
        parts.push(match (kept.last(), points.last()) {
            (Some((o, _)), Some((last, _))) if o >= last => {
                format!(
                    "{p} kept up at every offered rate, up to {} tx/s",
                    number(*o)
                )
            }
            (Some((o, _)), _) => format!(
                "{p} kept up to {} tx/s offered and peaked at {top:.0} tx/s final",
                number(*o)
            ),
            (None, _) => format!("{p} kept up at none of them (peak {top:.0} tx/s final)"),
        });
    }
    (!parts.is_empty()).then(|| {
        format!(
            "Saturation (no fault; kept up: at least 90 % of the offered load final in the \
             window): {}.",
            list(&parts)
        )
    })
}

/// The validator sweep: how latency, throughput and messages per block
/// moved from the smallest committee to the largest.
fn scaling(f: &Facts) -> Option<String> {
    let mut parts = Vec::new();
    for p in &f.protocols {
        let mut points: Vec<(usize, &Key)> = f
            .runs
            .iter()
            .filter(|r| r.group == Group::Scale && r.protocol == *p && r.error.is_none())
            .filter_map(|r| Some((r.validators, r.key.as_ref()?)))
            .collect();
        points.sort_by_key(|(n, _)| *n);
        let (Some((n0, a)), Some((n1, b))) = (points.first(), points.last()) else {
            continue;
        };
        if n0 == n1 {
            continue;
        }
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        parts.push(format!(
            "{p} from {n0} to {n1}: p50 {} → {} ms, final {} → {} tx/s, messages per block {} \
             → {}",
            show(a.p50_ms),
            show(b.p50_ms),
            show(a.achieved_tps),
            show(b.achieved_tps),
            show(a.messages_per_block),
            show(b.messages_per_block),
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "Validators (no fault, at {} tx/s; every node on the same machine, so a larger \
             committee also means less CPU per node): {}.",
            number(f.tps),
            parts.join("; ")
        )
    })
}

fn simulated(f: &Facts) -> Vec<String> {
    let Some(sim) = &f.sim else { return Vec::new() };
    let mut out = Vec::new();
    let largest = sim.messages.iter().map(|m| m.validators).max();
    if let Some(n) = largest {
        let at = |p: &str| {
            sim.messages
                .iter()
                .find(|m| m.validators == n && m.protocol == p)
        };
        if let (Some(pbft), Some(hs)) = (at("pbft"), at("hotstuff"))
            && let (Some(a), Some(b)) = (pbft.authored_per_block, hs.authored_per_block)
        {
            out.push(format!(
                "Simulator, n = {n}: PBFT authored {} message copies per committed block, \
                 HotStuff {} ({} fewer), as O(n²) against linear predicts; with every receiver \
                 forwarding, {} against {}.",
                number(a),
                number(b),
                times(a, b.max(1.0)),
                pbft.messages_per_block
                    .map_or_else(|| "-".to_owned(), number),
                hs.messages_per_block.map_or_else(|| "-".to_owned(), number),
            ));
        }
    }
    let measured: Vec<_> = sim
        .stale
        .iter()
        .filter_map(|p| Some((p.block_interval_ms, p.stale_rate?, p.theory)))
        .collect();
    if let (Some(first), Some(last)) = (measured.first(), measured.last()) {
        out.push(format!(
            "Simulator, proof of work: the stale rate went from {:.1} % at {} ms blocks to \
             {:.1} % at {} ms (theory {:.1} % and {:.1} %).",
            first.1 * 100.0,
            first.0,
            last.1 * 100.0,
            last.0,
            first.2 * 100.0,
            last.2 * 100.0
        ));
    }
    out
}

fn caveats(f: &Facts) -> String {
    let pow = f.pow_hashrate.map_or_else(String::new, |h| {
        format!(
            " Proof of work mines at a throttled {} H/s for {} ms blocks and calls a block final \
             at k confirmations, a probabilistic finality BFT commits do not need.",
            number(h as f64),
            f.pow_block_interval_ms
        )
    });
    format!(
        "Caveats: every run is one run on one machine ({}): the nodes, the load generator and \
         the network (loopback, no real latency) share its cores, so the figures are this \
         machine's, not a deployment's, and differences of a few percent are noise.{pow}",
        f.machine
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::figures::PowKey;

    fn fact(protocol: &str, fault: &str, tps: f64, p50: f64) -> Fact {
        Fact {
            group: Group::Matrix,
            protocol: protocol.to_owned(),
            fault: fault.to_owned(),
            validators: 4,
            tps: 500.0,
            key: Some(Key {
                achieved_tps: Some(tps),
                p50_ms: Some(p50),
                p99_ms: Some(p50 * 3.0),
                ..Key::default()
            }),
            error: None,
            fault_s: None,
        }
    }

    fn facts(runs: Vec<Fact>) -> Facts {
        Facts {
            protocols: ["pbft", "hotstuff", "pow"].map(str::to_owned).to_vec(),
            faults: ["none", "crash-1", "partition"].map(str::to_owned).to_vec(),
            tps: 500.0,
            runs,
            machine: "2 cores".to_owned(),
            pow_hashrate: Some(1_500_000),
            pow_block_interval_ms: 1_000,
            ..Facts::default()
        }
    }

    #[test]
    fn the_winner_is_named_with_its_margin() {
        let f = facts(vec![
            fact("pbft", "none", 480.0, 200.0),
            fact("hotstuff", "none", 240.0, 500.0),
            fact("pow", "none", 100.0, 4_000.0),
            fact("pbft", "crash-1", 240.0, 400.0),
            fact("hotstuff", "crash-1", 216.0, 900.0),
        ]);
        let text = reading(&f);
        let all = text.join("\n");
        assert!(
            all.contains("pbft finalized the most, 480 tx/s of 500 offered, 2.0× hotstuff's 240"),
            "{all}"
        );
        assert!(
            all.contains("pbft was quickest to finality, p50 200 ms, 2.5× lower than hotstuff"),
            "{all}"
        );
        // Under the crash, HotStuff kept 90 %, PBFT 50 %.
        assert!(
            all.contains("Under crash-1, hotstuff held up best"),
            "{all}"
        );
        assert!(
            all.contains("hotstuff 90 % (216 tx/s) and pbft 50 % (240 tx/s)"),
            "{all}"
        );
        assert!(
            text.last()
                .is_some_and(|c| c.starts_with("Caveats") && c.contains("2 cores"))
        );
        // Swap the figures: the reading follows.
        let f = facts(vec![
            fact("pbft", "none", 100.0, 900.0),
            fact("hotstuff", "none", 400.0, 300.0),
        ]);
        let all = reading(&f).join("\n");
        assert!(
            all.contains("hotstuff finalized the most, 400 tx/s"),
            "{all}"
        );
        assert!(all.contains("hotstuff was quickest"), "{all}");
    }

    #[test]
    fn a_tie_is_not_a_win_and_failures_are_listed() {
        let mut failed = fact("pow", "none", 0.0, 0.0);
        failed.key = None;
        failed.error = Some("no transaction of the window became final".to_owned());
        let f = facts(vec![
            fact("pbft", "none", 440.0, 200.0),
            fact("hotstuff", "none", 437.0, 300.0),
            failed,
        ]);
        let all = reading(&f).join("\n");
        assert!(all.contains("all kept up within 5 %"), "{all}");
        assert!(!all.contains("finalized the most"), "{all}");
        assert!(all.contains("1 run(s) failed"), "{all}");
        assert!(
            all.contains("no transaction of the window became final"),
            "{all}"
        );
        let f = facts(vec![
            fact("pbft", "none", 501.0, 200.0),
            fact("hotstuff", "none", 551.0, 300.0),
            fact("pbft", "crash-1", 500.0, 200.0),
            fact("hotstuff", "crash-1", 540.0, 300.0),
        ]);
        let all = reading(&f).join("\n");
        assert!(
            all.contains("every protocol kept up with the offered 500 tx/s"),
            "{all}"
        );
        assert!(
            all.contains("every protocol kept at least 95 % of its fault-free throughput"),
            "{all}"
        );
        assert!(!all.contains("held up"), "{all}");
        let f = facts(vec![
            fact("pbft", "none", 501.0, 200.0),
            fact("hotstuff", "none", 551.0, 300.0),
            fact("pbft", "crash-1", 400.0, 200.0),
            fact("hotstuff", "crash-1", 430.0, 300.0),
        ]);
        let all = reading(&f).join("\n");
        assert!(
            all.contains("pbft and hotstuff held up about equally"),
            "{all}"
        );
    }

    #[test]
    fn close_latencies_are_not_a_win_and_stalls_are_named() {
        let mut pbft_crash = fact("pbft", "crash-1", 450.0, 250.0);
        let mut hs_crash = fact("hotstuff", "crash-1", 400.0, 900.0);
        if let (Some(a), Some(b)) = (pbft_crash.key.as_mut(), hs_crash.key.as_mut()) {
            a.longest_stall_s = Some(0);
            b.longest_stall_s = Some(6);
        }
        let f = facts(vec![
            fact("pbft", "none", 480.0, 110.0),
            fact("hotstuff", "none", 240.0, 100.0),
            pbft_crash,
            hs_crash,
        ]);
        let all = reading(&f).join("\n");
        assert!(
            all.contains("hotstuff and pbft were about as quick to finality (p50 within 20 %"),
            "{all}"
        );
        assert!(!all.contains("was quickest"), "{all}");
        assert!(
            all.contains(
                "longest stretch with load offered and nothing final: pbft 0 s and hotstuff 6 s"
            ),
            "{all}"
        );
        // Just outside the band, the quicker one is named.
        let f = facts(vec![
            fact("pbft", "none", 480.0, 130.0),
            fact("hotstuff", "none", 240.0, 100.0),
        ]);
        let all = reading(&f).join("\n");
        assert!(
            all.contains("hotstuff was quickest to finality, p50 100 ms"),
            "{all}"
        );
    }

    #[test]
    fn a_protocol_that_stopped_too_recovered_rather_than_held_up() {
        let mut runs = vec![
            fact("pbft", "none", 500.0, 150.0),
            fact("hotstuff", "none", 500.0, 50.0),
        ];
        for (p, tps) in [("pbft", 400.0), ("hotstuff", 500.0)] {
            let mut r = fact(p, "partition", tps, 900.0);
            if let Some(k) = r.key.as_mut() {
                k.longest_stall_s = Some(7);
            }
            runs.push(r);
        }
        let all = reading(&facts(runs.clone())).join("\n");
        assert!(
            all.contains("hotstuff recovered best (it too stopped, for 7 s"),
            "{all}"
        );
        // Without the stall it held up.
        if let Some(k) = runs[3].key.as_mut() {
            k.longest_stall_s = Some(0);
        }
        let all = reading(&facts(runs)).join("\n");
        assert!(all.contains("hotstuff held up best"), "{all}");
    }

    #[test]
    fn the_partition_reads_as_a_bft_stall_and_a_pow_fork() {
        let mut pbft = fact("pbft", "partition", 300.0, 900.0);
        if let Some(k) = pbft.key.as_mut() {
            k.blocks_during_fault = Some(0);
            k.tps_before_fault = Some(500.0);
        }
        pbft.fault_s = Some(7.5);
        let mut pow = fact("pow", "partition", 200.0, 9_000.0);
        if let Some(k) = pow.key.as_mut() {
            k.blocks_during_fault = Some(4);
            k.pow = Some(PowKey {
                confirmations: 12,
                reorgs_all_nodes: Some(2),
                max_reorg_depth: Some(3),
                orphaned_blocks: Some(6),
                returned_txs: Some(800),
                ..PowKey::default()
            });
        }
        let mut quiet = pow.clone();
        quiet.protocol = "hotstuff".to_owned();
        if let Some(k) = quiet.key.as_mut() {
            k.pow = Some(PowKey::default());
        }
        let all = reading(&facts(vec![pbft, pow, quiet])).join("\n");
        assert!(
            all.contains("Partition, pbft: finalization stopped for the 7.5 s split"),
            "{all}"
        );
        assert!(
            all.contains("reorganized 2 time(s) (deepest 3 block(s) on the observer)"),
            "{all}"
        );
        assert!(all.contains("orphaning 6 block(s)"), "{all}");
        assert!(
            all.contains("sending 800 transaction(s) back to mempools"),
            "{all}"
        );
        assert!(all.contains("No fork showed"), "{all}");
    }

    #[test]
    fn the_validator_sweep_reads_from_smallest_to_largest() {
        let mut runs = Vec::new();
        for (n, p50, msgs) in [(7, 90.0, 53.0), (4, 33.0, 17.0)] {
            let mut r = fact("hotstuff", "none", 200.0, p50);
            r.group = Group::Scale;
            r.validators = n;
            if let Some(k) = r.key.as_mut() {
                k.messages_per_block = Some(msgs);
            }
            runs.push(r);
        }
        let all = reading(&facts(runs)).join("\n");
        assert!(
            all.contains(
                "hotstuff from 4 to 7: p50 33 → 90 ms, final 200 → 200 tx/s, messages per block 17 → 53"
            ),
            "{all}"
        );
    }

    #[test]
    fn saturation_names_the_highest_rate_kept() {
        let mut runs = Vec::new();
        for (tps, got) in [(100.0, 100.0), (200.0, 199.0), (400.0, 250.0)] {
            let mut r = fact("pbft", "none", got, 100.0);
            r.group = Group::Load;
            r.tps = tps;
            runs.push(r);
        }
        let all = reading(&facts(runs)).join("\n");
        assert!(
            all.contains("pbft kept up to 200 tx/s offered and peaked at 250 tx/s final"),
            "{all}"
        );
    }
}
