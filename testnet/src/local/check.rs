//! `phalanx-testnet check`: do the nodes agree?
//!
//! Reads every answering node's head, then the block at every height from
//! 0 to the lowest head from each of them, and compares block hashes and
//! state roots. A block hash covers the header, so equal hashes mean equal
//! parents, transactions and state roots; the state root is compared and
//! reported on its own because it says whether the nodes' account states
//! agree. Heights are read [`PARALLEL_HEIGHTS`] at a time, in order, and
//! the check stops at the first height where two nodes differ (or a node
//! lacks a block below its own head).
//!
//! Exit codes: 0 agreement holds, 1 two nodes differ, 2 the check could
//! not run (no node answers, or a request failed).

use super::DirArg;
use super::client::{Block, Client};
use super::net::{Network, NodeInfo};
use anyhow::{anyhow, ensure};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

/// Heights fetched concurrently.
pub const PARALLEL_HEIGHTS: usize = 8;

/// `phalanx-testnet check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: DirArg,
}

/// One node's block at a height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub node: usize,
    /// `None`: the node has no block there.
    pub hash: Option<String>,
    pub state_root: Option<String>,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub agreement: bool,
    /// Nodes compared.
    pub nodes: Vec<usize>,
    /// Nodes that did not answer (not compared).
    pub unreachable: Vec<usize>,
    pub lowest_head: u64,
    pub heights_checked: u64,
    /// The first height where two nodes differ, with what each has.
    pub first_difference: Option<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub height: u64,
    /// True if the state roots differ too.
    pub state_roots_differ: bool,
    pub blocks: Vec<Seen>,
}

/// Runs `check`.
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let net = Network::open(&args.dir.dir)?;
    let client = Client::new()?;
    let report = super::runtime()?.block_on(compare(&net, &client))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(&report, out)?;
    }
    Ok(if report.agreement {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(r: &CheckReport, out: &mut dyn Write) -> anyhow::Result<()> {
    if !r.unreachable.is_empty() {
        writeln!(out, "not compared (no answer): nodes {:?}", r.unreachable)?;
    }
    match &r.first_difference {
        None => writeln!(
            out,
            "agreement holds: nodes {:?} have the same block hash and state root at every \
             height from 0 to {} ({} heights)",
            r.nodes, r.lowest_head, r.heights_checked
        )?,
        Some(d) => {
            writeln!(
                out,
                "DISAGREEMENT at height {}{}:",
                d.height,
                if d.state_roots_differ {
                    " (state roots differ too)"
                } else {
                    ""
                }
            )?;
            for seen in &d.blocks {
                writeln!(
                    out,
                    "  node {}: block {} state root {}",
                    seen.node,
                    seen.hash.as_deref().unwrap_or("(none)"),
                    seen.state_root.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    Ok(())
}

/// Compares the answering nodes of `net`.
pub async fn compare(net: &Network, client: &Client) -> anyhow::Result<CheckReport> {
    let statuses = futures::future::join_all(net.nodes.iter().map(|n| client.status(n))).await;
    let mut nodes: Vec<&NodeInfo> = Vec::new();
    let mut unreachable = Vec::new();
    let mut lowest = u64::MAX;
    for (node, status) in net.nodes.iter().zip(statuses) {
        match status {
            Ok(s) => {
                lowest = lowest.min(s.height.unwrap_or(0));
                nodes.push(node);
            }
            Err(_) => unreachable.push(node.index),
        }
    }
    ensure!(
        !nodes.is_empty(),
        "no node of {} answers: nothing to check",
        net.dir.display()
    );
    let bar = ProgressBar::new(lowest.saturating_add(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} check [{bar:30}] {pos}/{len} heights")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut heights = futures::stream::iter(0..=lowest)
        .map(|h| {
            let nodes = &nodes;
            async move { (h, at_height(client, nodes, h).await) }
        })
        .buffered(PARALLEL_HEIGHTS);
    let mut checked = 0;
    let mut first_difference = None;
    while let Some((height, seen)) = heights.next().await {
        let seen = seen?;
        checked += 1;
        bar.inc(1);
        if let Some(difference) = differs(height, seen) {
            first_difference = Some(difference);
            break;
        }
    }
    bar.finish_and_clear();
    Ok(CheckReport {
        agreement: first_difference.is_none(),
        nodes: nodes.iter().map(|n| n.index).collect(),
        unreachable,
        lowest_head: lowest,
        heights_checked: checked,
        first_difference,
    })
}

/// Every node's block at `height`.
async fn at_height(client: &Client, nodes: &[&NodeInfo], height: u64) -> anyhow::Result<Vec<Seen>> {
    let blocks = futures::future::join_all(nodes.iter().map(|n| client.block(n, height))).await;
    nodes
        .iter()
        .zip(blocks)
        .map(|(node, block)| {
            let block: Option<Block> =
                block.map_err(|e| anyhow!("reading block {height}: {e:#}"))?;
            Ok(Seen {
                node: node.index,
                hash: block.as_ref().map(|b| b.hash.clone()),
                state_root: block.map(|b| b.header.state_root),
            })
        })
        .collect()
}

/// The difference at `height`, if the nodes do not all agree.
fn differs(height: u64, seen: Vec<Seen>) -> Option<Difference> {
    let first = seen.first()?;
    let agree = seen
        .iter()
        .all(|s| s.hash.is_some() && s.hash == first.hash && s.state_root == first.state_root);
    if agree {
        return None;
    }
    let state_roots_differ = seen.iter().any(|s| s.state_root != first.state_root);
    Some(Difference {
        height,
        state_roots_differ,
        blocks: seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(node: usize, hash: Option<&str>, root: &str) -> Seen {
        Seen {
            node,
            hash: hash.map(str::to_owned),
            state_root: hash.map(|_| root.to_owned()),
        }
    }

    #[test]
    fn differences_are_found_and_described() {
        assert!(differs(3, vec![seen(0, Some("a"), "r"), seen(1, Some("a"), "r")]).is_none());
        let d = differs(3, vec![seen(0, Some("a"), "r"), seen(2, Some("b"), "r")]).unwrap();
        assert_eq!(d.height, 3);
        assert!(!d.state_roots_differ);
        let d = differs(4, vec![seen(0, Some("a"), "r"), seen(1, Some("b"), "s")]).unwrap();
        assert!(d.state_roots_differ);
        // A node without a block below its head is a difference.
        assert!(differs(5, vec![seen(0, Some("a"), "r"), seen(1, None, "")]).is_some());
    }
}
