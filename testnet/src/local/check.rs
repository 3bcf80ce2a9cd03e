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
//! With proof of work only final blocks must agree: a node's blocks above
//! its finalized height (fewer than `confirmations` confirmations) may
//! still lose to another branch. So each node is compared up to its own
//! finalized height, at every height with the other nodes that hold that
//! height final too (a block final on one node must be the block every
//! node that calls its height final has). Then the nodes' current tips are
//! shown as a small fork tree ([`super::forks`]): which nodes follow which
//! tip, and where each branch leaves the heaviest one.
//!
//! Exit codes: 0 agreement holds, 1 two nodes differ, 2 the check could
//! not run (no node answers, or a request failed).

use super::DirArg;
use super::client::{Block, Client, Status};
use super::forks::{self, TipGroup};
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
    /// Proof of work: confirmations that make a block final.
    pub confirmations: Option<u64>,
    /// Proof of work: each compared node's finalized height (how far it
    /// was compared), by node.
    pub final_heights: Option<Vec<(usize, u64)>>,
    /// Proof of work: the nodes' current tips, heaviest first.
    pub tips: Option<Vec<TipGroup>>,
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
    match (&r.first_difference, &r.final_heights) {
        (None, None) => writeln!(
            out,
            "agreement holds: nodes {:?} have the same block hash and state root at every \
             height from 0 to {} ({} heights)",
            r.nodes, r.lowest_head, r.heights_checked
        )?,
        (None, Some(finals)) => {
            let finals: Vec<String> = finals
                .iter()
                .map(|(node, height)| format!("node {node} {height}"))
                .collect();
            writeln!(
                out,
                "agreement holds on final blocks: at every height from 0 to {}, the nodes that \
                 hold it final (at least {} confirmations) have the same block hash and state \
                 root (final heights: {})",
                r.heights_checked.saturating_sub(1),
                r.confirmations.unwrap_or(0),
                finals.join(", ")
            )?;
        }
        (Some(d), _) => {
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
    if let Some(tips) = &r.tips {
        forks::print_tips(tips, out)?;
    }
    Ok(())
}

/// Compares the answering nodes of `net`.
pub async fn compare(net: &Network, client: &Client) -> anyhow::Result<CheckReport> {
    let statuses = futures::future::join_all(net.nodes.iter().map(|n| client.status(n))).await;
    let confirmations = net.pow.as_ref().map(|p| p.confirmations);
    let mut nodes: Vec<(&NodeInfo, u64)> = Vec::new();
    let mut answered: Vec<(&NodeInfo, Status)> = Vec::new();
    let mut unreachable = Vec::new();
    for (node, status) in net.nodes.iter().zip(statuses) {
        match status {
            Ok(s) => {
                nodes.push((node, compared_up_to(&s, confirmations)));
                answered.push((node, s));
            }
            Err(_) => unreachable.push(node.index),
        }
    }
    ensure!(
        !nodes.is_empty(),
        "no node of {} answers: nothing to check",
        net.dir.display()
    );
    let lowest = nodes.iter().map(|(_, h)| *h).min().unwrap_or(0);
    // BFT: up to the lowest head, every node at every height. Proof of
    // work: up to the highest final block, the nodes that hold it final.
    let top = match confirmations {
        Some(_) => nodes.iter().map(|(_, h)| *h).max().unwrap_or(0),
        None => lowest,
    };
    let (checked, first_difference) = compare_heights(client, &nodes, top).await?;
    let tips = match confirmations {
        Some(_) => Some(forks::tips(client, &answered).await?),
        None => None,
    };
    Ok(CheckReport {
        agreement: first_difference.is_none(),
        nodes: nodes.iter().map(|(n, _)| n.index).collect(),
        unreachable,
        lowest_head: lowest,
        heights_checked: checked,
        first_difference,
        confirmations,
        final_heights: confirmations.map(|_| nodes.iter().map(|(n, h)| (n.index, *h)).collect()),
        tips,
    })
}

/// How far a node's blocks are compared: its head (BFT: every block is
/// final), or its finalized height with proof of work (from a node that
/// does not say: `confirmations - 1` below its head).
fn compared_up_to(status: &Status, confirmations: Option<u64>) -> u64 {
    let head = status.height.unwrap_or(0);
    match confirmations {
        None => head,
        Some(k) => status
            .finalized_height
            .unwrap_or_else(|| head.saturating_sub(k.saturating_sub(1))),
    }
}

/// Compares heights 0 to `top`, each among the nodes compared that far,
/// in order; stops at the first difference. Returns the heights checked
/// and the difference.
async fn compare_heights(
    client: &Client,
    nodes: &[(&NodeInfo, u64)],
    top: u64,
) -> anyhow::Result<(u64, Option<Difference>)> {
    let bar = ProgressBar::new(top.saturating_add(1));
    bar.set_style(
        ProgressStyle::with_template("{spinner} check [{bar:30}] {pos}/{len} heights")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut heights = futures::stream::iter(0..=top)
        .map(|h| async move {
            let at: Vec<&NodeInfo> = nodes
                .iter()
                .filter(|(_, upto)| *upto >= h)
                .map(|(n, _)| *n)
                .collect();
            (h, at_height(client, &at, h).await)
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
    Ok((checked, first_difference))
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
