//! The report's tables and `results.csv`, from the comparison: one model
//! of a table that the HTML and Markdown renderers both draw.

use super::figures::Key;
use super::model::{Comparison, Group, Run};
use super::sims::theory_messages;
use crate::compare::plot::number;

/// A table: a heading, its columns and rows of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub note: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn opt<T>(v: Option<T>, show: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), show)
}

fn f0(v: Option<f64>) -> String {
    opt(v, |v| format!("{v:.0}"))
}

fn f1(v: Option<f64>) -> String {
    opt(v, |v| format!("{v:.1}"))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every table of the report, in order.
pub fn all(c: &Comparison) -> Vec<Table> {
    let mut tables = vec![runs_table(
        c,
        Group::Matrix,
        "Protocols and faults",
        "Every protocol under every fault at the same offered load.",
    )];
    if c.runs
        .iter()
        .any(|r| r.ok().is_some_and(|r| r.pow.is_some()))
    {
        tables.push(pow_table(c));
    }
    if c.group(Group::Load).next().is_some() {
        tables.push(runs_table(
            c,
            Group::Load,
            "Saturation sweep",
            "No fault, offered loads from --sweep-tps, shorter windows (--sweep-duration).",
        ));
    }
    if c.group(Group::Scale).next().is_some() {
        tables.push(runs_table(
            c,
            Group::Scale,
            "Validators",
            "No fault, the validator counts of --sweep-validators.",
        ));
    }
    if c.sim.is_some() {
        tables.extend(sim_tables(c));
    }
    tables
}

fn runs_table(c: &Comparison, group: Group, title: &str, note: &str) -> Table {
    let rows = c
        .group(group)
        .map(|r| {
            let k = r.ok().map(Key::of).unwrap_or_default();
            vec![
                r.protocol.clone(),
                r.fault.clone(),
                r.validators.to_string(),
                number(r.tps),
                f1(k.achieved_tps),
                f0(k.p50_ms),
                f0(k.p95_ms),
                f0(k.p99_ms),
                opt(k.finalized, |v| v.to_string()),
                opt(k.lost, |v| v.to_string()),
                opt(k.blocks, |v| v.to_string()),
                opt(k.view_changes, |v| v.to_string()),
                opt(k.longest_stall_s, |v| v.to_string()),
                f0(k.messages_per_block),
                f1(k.bytes_per_block.map(|b| b / 1024.0)),
                opt(k.cpu_ms_per_tx, |v| format!("{v:.2}")),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    Table {
        title: title.to_owned(),
        note: note.to_owned(),
        header: strings(&[
            "protocol",
            "fault",
            "validators",
            "offered tx/s",
            "final tx/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "final tx",
            "lost tx",
            "blocks",
            "view changes",
            "longest stall s",
            "msgs/block",
            "KiB/block",
            "CPU ms/tx",
            "error",
        ]),
        rows,
    }
}

fn pow_table(c: &Comparison) -> Table {
    let rows = c
        .runs
        .iter()
        .filter_map(|r: &Run| {
            let pow = Key::of(r.ok()?).pow?;
            Some(vec![
                r.group.name().to_owned(),
                r.fault.clone(),
                number(r.tps),
                pow.confirmations.to_string(),
                format!("{} / {}", f0(pow.block_interval_ms), pow.target_interval_ms),
                opt(pow.stale_rate, |v| format!("{:.1} %", v * 100.0)),
                pow.reorgs.to_string(),
                opt(pow.reorgs_all_nodes, |v| v.to_string()),
                opt(pow.max_reorg_depth, |v| v.to_string()),
                opt(pow.orphaned_blocks, |v| v.to_string()),
                pow.reverted_txs.to_string(),
                opt(pow.returned_txs, |v| v.to_string()),
                f0(pow.first_inclusion_p50_ms),
                pow.safety_violations.to_string(),
            ])
        })
        .collect();
    Table {
        title: "Proof of work: forks".to_owned(),
        note: "Block interval: the mean between the observer's final blocks in the window, \
               against the genesis target's. Stale rate: mined blocks the chain did not keep. \
               Reorganizations on the observer \
               and over all nodes; orphaned blocks summed over nodes; the run's transactions \
               taken off the observer's chain, and transactions sent back to mempools (all \
               nodes). Safety violations: final blocks reverted (must be 0)."
            .to_owned(),
        header: strings(&[
            "group",
            "fault",
            "offered tx/s",
            "k",
            "block interval ms (final blocks / target)",
            "stale rate",
            "reorgs (observer)",
            "reorgs (all)",
            "deepest",
            "orphaned blocks",
            "tx taken off",
            "tx back to mempool",
            "first inclusion p50 ms",
            "safety violations",
        ]),
        rows,
    }
}

fn sim_tables(c: &Comparison) -> Vec<Table> {
    let Some(sim) = &c.sim else { return Vec::new() };
    let messages = sim
        .messages
        .iter()
        .map(|m| {
            let theory = theory_messages(&m.protocol, m.validators as f64);
            vec![
                m.protocol.clone(),
                m.validators.to_string(),
                m.virtual_ms.to_string(),
                m.committed_blocks.to_string(),
                f1(m.authored_per_block),
                f0(theory.map(|t| t.0)),
                f0(m.messages_per_block),
                f0(theory.map(|t| t.1)),
                f0(m.bytes_per_block),
                m.failed_runs.to_string(),
            ]
        })
        .collect();
    let stale = sim
        .stale
        .iter()
        .map(|s| {
            vec![
                s.block_interval_ms.to_string(),
                s.mined.to_string(),
                opt(s.stale_rate, |v| format!("{:.2} %", v * 100.0)),
                format!("{:.2} %", s.theory * 100.0),
            ]
        })
        .collect();
    vec![
        Table {
            title: "Simulator: messages per committed block".to_owned(),
            note: format!(
                "{} seed(s) from {} per point, {} ms of virtual time (less from n = 16 on), link \
                 delay {}..{} ms; the sweeps took {:.1} s.",
                sim.seeds,
                sim.seed_start,
                sim.messages_virtual_ms,
                sim.delay_min_ms,
                sim.delay_max_ms,
                sim.wall_s
            ),
            header: strings(&[
                "protocol",
                "n",
                "virtual ms",
                "committed blocks",
                "authored/block",
                "theory",
                "with forwarding/block",
                "theory",
                "bytes/block",
                "failed runs",
            ]),
            rows: messages,
        },
        Table {
            title: "Simulator: proof-of-work stale rate".to_owned(),
            note: format!(
                "{} miners with equal shares, about {} blocks per run, up to {} ms of virtual \
                 time.",
                sim.stale_miners,
                super::sims::STALE_BLOCKS,
                sim.stale_virtual_ms
            ),
            header: strings(&["block interval ms", "mined", "stale rate", "theory"]),
            rows: stale,
        },
    ]
}

/// `results.csv`: one row per run, its key figures.
pub fn csv(c: &Comparison) -> String {
    let header = [
        "group",
        "protocol",
        "fault",
        "validators",
        "offered_tps",
        "duration_s",
        "achieved_tps",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "finalized",
        "lost",
        "rejected",
        "blocks",
        "view_changes",
        "messages_per_block",
        "bytes_per_block",
        "cpu_ms_per_tx",
        "tps_before_fault",
        "tps_during_fault",
        "blocks_during_fault",
        "longest_stall_s",
        "pow_confirmations",
        "pow_block_interval_ms",
        "pow_target_interval_ms",
        "pow_stale_rate",
        "pow_reorgs",
        "pow_reorgs_all_nodes",
        "pow_orphaned_blocks",
        "pow_returned_txs",
        "pow_safety_violations",
        "wall_s",
        "error",
    ];
    let mut out = header.join(",");
    out.push('\n');
    let n = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    let u = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    for r in &c.runs {
        let k = r.ok().map(Key::of).unwrap_or_default();
        let p = k.pow.clone();
        let cells = [
            r.group.name().to_owned(),
            r.protocol.clone(),
            r.fault.clone(),
            r.validators.to_string(),
            format!("{}", r.tps),
            r.duration_s.to_string(),
            n(k.achieved_tps),
            n(k.p50_ms),
            n(k.p95_ms),
            n(k.p99_ms),
            u(k.finalized),
            u(k.lost),
            u(k.rejected),
            u(k.blocks),
            u(k.view_changes),
            n(k.messages_per_block),
            n(k.bytes_per_block),
            n(k.cpu_ms_per_tx),
            n(k.tps_before_fault),
            n(k.tps_during_fault),
            u(k.blocks_during_fault),
            u(k.longest_stall_s),
            u(p.as_ref().map(|p| p.confirmations)),
            n(p.as_ref().and_then(|p| p.block_interval_ms)),
            u(p.as_ref().map(|p| p.target_interval_ms)),
            n(p.as_ref().and_then(|p| p.stale_rate)),
            u(p.as_ref().map(|p| p.reorgs)),
            u(p.as_ref().and_then(|p| p.reorgs_all_nodes)),
            u(p.as_ref().and_then(|p| p.orphaned_blocks)),
            u(p.as_ref().and_then(|p| p.returned_txs)),
            u(p.as_ref().map(|p| p.safety_violations)),
            format!("{:.1}", r.wall_s),
            r.error.clone().unwrap_or_default(),
        ];
        let quoted: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

/// A CSV cell, quoted if it holds a comma, a quote or a line break.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a, b"), "\"a, b\"");
        assert_eq!(csv_cell("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
