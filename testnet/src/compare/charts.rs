//! Every chart of the report, from the comparison's figures.

use super::figures::{Key, cdf};
use super::model::{Comparison, Group, Run};
use super::plot::{self, Axis, Chart, Marker, Series, Style};
use super::sims::theory_messages;

/// Every chart, in the report's order; a chart without data is left out
/// (the sweeps not run) or drawn empty (a protocol whose runs failed).
pub fn all(c: &Comparison) -> anyhow::Result<Vec<Chart>> {
    let mut charts = vec![
        by_fault(
            c,
            "throughput",
            "Finalized throughput by protocol and fault",
            "finalized tx/s (window)",
            |k| k.achieved_tps,
        )?,
        by_fault(
            c,
            "latency_p50",
            "Median latency (submit to final) by protocol and fault",
            "p50 latency (ms)",
            |k| k.p50_ms,
        )?,
        by_fault(
            c,
            "latency_p99",
            "Tail latency (submit to final) by protocol and fault",
            "p99 latency (ms)",
            |k| k.p99_ms,
        )?,
        latency_cdf(c)?,
        finality(c)?,
    ];
    if c.group(Group::Load).next().is_some() {
        charts.push(load(
            c,
            "load_latency",
            "Latency against offered load (no fault)",
            &Axis::log("p50 latency (ms, log)"),
            |k| k.p50_ms,
        )?);
        charts.push(load(
            c,
            "load_throughput",
            "Throughput against offered load (no fault)",
            &Axis::linear("finalized tx/s"),
            |k| k.achieved_tps,
        )?);
    }
    for protocol in &c.settings.protocols {
        charts.push(timeline(c, protocol)?);
    }
    charts.push(by_fault(
        c,
        "messages_per_block",
        "Messages sent per finalized block (all nodes, authored + forwarded)",
        "messages per block",
        |k| k.messages_per_block,
    )?);
    charts.push(by_fault(
        c,
        "bytes_per_block",
        "Bytes sent per finalized block (all nodes, authored + forwarded)",
        "KiB per block",
        |k| k.bytes_per_block.map(|b| b / 1024.0),
    )?);
    charts.push(by_fault(
        c,
        "cpu_per_tx",
        "CPU per finalized transaction (all nodes together)",
        "CPU ms per transaction",
        |k| k.cpu_ms_per_tx,
    )?);
    if c.group(Group::Scale).next().is_some() {
        charts.push(scale(
            c,
            "scale_throughput",
            "Throughput against validators (no fault)",
            &Axis::linear("finalized tx/s"),
            |k| k.achieved_tps,
        )?);
        charts.push(scale(
            c,
            "scale_latency",
            "Latency against validators (no fault)",
            &Axis::log("p50 latency (ms, log)"),
            |k| k.p50_ms,
        )?);
    }
    if c.sim.is_some() {
        charts.push(sim_messages(c)?);
        charts.push(sim_stale(c)?);
    }
    Ok(charts)
}

/// The key figures of a run that has results.
fn key(run: &Run) -> Option<Key> {
    run.ok().map(Key::of)
}

/// Bars: one group per fault, one bar per protocol.
fn by_fault(
    c: &Comparison,
    name: &str,
    title: &str,
    y: &str,
    figure: impl Fn(&Key) -> Option<f64>,
) -> anyhow::Result<Chart> {
    let series: Vec<(String, Vec<Option<f64>>)> = c
        .settings
        .protocols
        .iter()
        .map(|p| {
            let values = c
                .settings
                .faults
                .iter()
                .map(|f| c.matrix(p, f).and_then(key).and_then(|k| figure(&k)))
                .collect();
            (p.clone(), values)
        })
        .collect();
    plot::bars(
        name,
        title,
        &Axis::linear("fault"),
        &Axis::linear(y),
        &c.settings.faults,
        &series,
    )
}

/// The latency CDFs of every protocol with no fault, on one chart.
fn latency_cdf(c: &Comparison) -> anyhow::Result<Chart> {
    let series: Vec<Series> = c
        .settings
        .protocols
        .iter()
        .enumerate()
        .map(|(i, p)| Series {
            name: p.clone(),
            points: c
                .matrix(p, "none")
                .and_then(Run::ok)
                .map(cdf)
                .unwrap_or_default(),
            style: Style::Measured,
            colour: i,
        })
        .collect();
    plot::lines(
        "latency_cdf",
        "Latency CDF, no fault (share of transactions final within a time)",
        &Axis::log("submit to final (ms, log; histogram bucket bounds)"),
        &Axis::linear("share of finalized transactions"),
        &series,
        &[],
    )
}

/// Time to finality with no fault: BFT commit against proof of work's k
/// confirmations, and proof of work's first inclusion.
fn finality(c: &Comparison) -> anyhow::Result<Chart> {
    let mut series = Vec::new();
    for p in &c.settings.protocols {
        let Some(r) = c.matrix(p, "none").and_then(Run::ok) else {
            series.push((p.clone(), vec![None; 3]));
            continue;
        };
        let l = r.latency_ms;
        let values = |l: Option<crate::bench::stats::Latency>| {
            vec![
                l.map(|l| f64::from(l.p50_ms)),
                l.map(|l| f64::from(l.p95_ms)),
                l.map(|l| f64::from(l.p99_ms)),
            ]
        };
        match &r.pow {
            Some(pow) => {
                series.push((
                    format!("{p}: k = {} confirmations", pow.confirmations),
                    values(l),
                ));
                series.push((
                    format!("{p}: first inclusion"),
                    values(pow.first_inclusion_ms),
                ));
            }
            None => series.push((format!("{p}: commit"), values(l))),
        }
    }
    let categories = ["p50", "p95", "p99"].map(str::to_owned);
    plot::bars(
        "finality",
        "Time to finality, no fault: BFT commit against k confirmations",
        &Axis::linear("percentile"),
        &Axis::linear("submit to final (ms)"),
        &categories,
        &series,
    )
}

/// A figure against a run's x (offered load or validators) per protocol.
fn against(
    c: &Comparison,
    group: Group,
    x: impl Fn(&Run) -> f64,
    figure: &dyn Fn(&Key) -> Option<f64>,
) -> Vec<Series> {
    c.settings
        .protocols
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut points: Vec<(f64, f64)> = c
                .group(group)
                .filter(|r| &r.protocol == p)
                .filter_map(|r| Some((x(r), figure(&key(r)?)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: p.clone(),
                points,
                style: Style::Measured,
                colour: i,
            }
        })
        .collect()
}

fn load(
    c: &Comparison,
    name: &str,
    title: &str,
    y: &Axis,
    figure: impl Fn(&Key) -> Option<f64>,
) -> anyhow::Result<Chart> {
    let mut series = against(c, Group::Load, |r| r.tps, &figure);
    if name == "load_throughput" {
        let offered: Vec<(f64, f64)> = {
            let mut t: Vec<f64> = c.settings.sweep_tps.clone();
            t.sort_by(f64::total_cmp);
            t.into_iter().map(|t| (t, t)).collect()
        };
        series.push(Series {
            name: "offered (all final)".to_owned(),
            points: offered,
            style: Style::Theory,
            colour: 7,
        });
    }
    plot::lines(
        name,
        title,
        &Axis::log("offered load (tx/s, log)"),
        y,
        &series,
        &[],
    )
}

fn scale(
    c: &Comparison,
    name: &str,
    title: &str,
    y: &Axis,
    figure: impl Fn(&Key) -> Option<f64>,
) -> anyhow::Result<Chart> {
    let series = against(c, Group::Scale, |r| r.validators as f64, &figure);
    plot::lines(name, title, &Axis::linear("validators"), y, &series, &[])
}

/// Finalized tx/s over time for one protocol, a line per fault, the
/// faults' starts and ends marked.
fn timeline(c: &Comparison, protocol: &str) -> anyhow::Result<Chart> {
    let mut series = Vec::new();
    let mut markers = Vec::new();
    for (i, fault) in c.settings.faults.iter().enumerate() {
        let Some(r) = c.matrix(protocol, fault).and_then(Run::ok) else {
            continue;
        };
        series.push(Series {
            name: fault.clone(),
            points: r
                .timeline
                .iter()
                .map(|s| (s.t_s as f64 + 0.5, s.finalized as f64))
                .collect(),
            style: Style::Measured,
            colour: i,
        });
        if let Some(f) = &r.fault
            && fault != "byzantine-1"
        {
            if let Some(at) = f.started_s {
                markers.push(Marker {
                    x: at,
                    name: format!("{fault} starts"),
                    colour: i,
                });
            }
            if let Some(at) = f.ended_s {
                markers.push(Marker {
                    x: at,
                    name: format!("{fault} ends"),
                    colour: i,
                });
            }
        }
    }
    plot::lines(
        &format!("timeline_{protocol}"),
        &format!("{protocol}: finalized transactions per second through the fault"),
        &Axis::linear("time from the window's start (s; negative: warmup)"),
        &Axis::linear("finalized tx/s (observer node)"),
        &series,
        &markers,
    )
}

/// The simulator: messages per committed block against n, measured and
/// the theory, authored and with forwarding.
fn sim_messages(c: &Comparison) -> anyhow::Result<Chart> {
    let Some(sim) = &c.sim else {
        anyhow::bail!("no simulator sweeps");
    };
    let mut series = Vec::new();
    for (i, protocol) in ["pbft", "hotstuff"].iter().enumerate() {
        let points: Vec<_> = sim
            .messages
            .iter()
            .filter(|p| p.protocol == *protocol)
            .collect();
        let ns: Vec<f64> = points.iter().map(|p| p.validators as f64).collect();
        for (j, (what, forwarded)) in [("authored", false), ("with forwarding", true)]
            .iter()
            .enumerate()
        {
            let colour = i * 2 + j;
            series.push(Series {
                name: format!("{protocol} {what}"),
                points: points
                    .iter()
                    .filter_map(|p| {
                        let v = if *forwarded {
                            p.messages_per_block
                        } else {
                            p.authored_per_block
                        };
                        Some((p.validators as f64, v?))
                    })
                    .collect(),
                style: Style::Measured,
                colour,
            });
            let formula = match (*protocol, *forwarded) {
                ("pbft", false) => "2n(n-1)",
                ("pbft", true) => "2n(n-1)²",
                (_, false) => "2(n-1)",
                (_, true) => "n(n-1)²",
            };
            series.push(Series {
                name: format!("theory {formula}"),
                points: ns
                    .iter()
                    .filter_map(|n| {
                        let (a, f) = theory_messages(protocol, *n)?;
                        Some((*n, if *forwarded { f } else { a }))
                    })
                    .collect(),
                style: Style::Theory,
                colour,
            });
        }
    }
    plot::lines(
        "sim_messages",
        "Simulator: messages per committed block against committee size",
        &Axis::log("validators n (log)"),
        &Axis::log("message copies per committed block (log)"),
        &series,
        &[],
    )
}

/// The simulator: proof of work's stale rate against the block interval.
fn sim_stale(c: &Comparison) -> anyhow::Result<Chart> {
    let Some(sim) = &c.sim else {
        anyhow::bail!("no simulator sweeps");
    };
    let measured = Series {
        name: "simulated".to_owned(),
        points: sim
            .stale
            .iter()
            .filter_map(|p| Some((p.block_interval_ms as f64, p.stale_rate?)))
            .collect(),
        style: Style::Measured,
        colour: 2,
    };
    let theory = Series {
        name: format!(
            "theory 1 - exp(-(1 - 1/{}) d / T), d = {} ms",
            sim.stale_miners,
            plot::number((sim.delay_min_ms + sim.delay_max_ms) as f64 / 2.0)
        ),
        points: sim
            .stale
            .iter()
            .map(|p| (p.block_interval_ms as f64, p.theory))
            .collect(),
        style: Style::Theory,
        colour: 2,
    };
    plot::lines(
        "sim_stale",
        "Simulator: proof-of-work stale rate against block interval",
        &Axis::log("mean block interval T (ms, log)"),
        &Axis::linear("stale rate (share of mined blocks)"),
        &[measured, theory],
        &[],
    )
}
