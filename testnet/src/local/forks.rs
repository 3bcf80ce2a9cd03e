//! The fork tree of a proof-of-work network as `check` shows it: the tips
//! its nodes follow (the nodes grouped by head), heaviest first, each with
//! where its branch leaves the heaviest tip's chain, and the side branches
//! the nodes know besides (`GET /status`'s `tips`, from nodes that have
//! it).
//!
//! Where a branch leaves is found by reading both chains' blocks downward
//! from the lower head until they have the same block, at most
//! [`MAX_FORK_DEPTH`] heights (a deeper fork is reported as such).

use super::client::{Client, Status};
use super::net::NodeInfo;
use super::pow::{short_number, work_value};
use serde::Serialize;
use std::io::Write;

/// Heights read downward to find where two chains meet, at most.
pub const MAX_FORK_DEPTH: u64 = 256;

/// A tip some nodes follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TipGroup {
    pub hash: String,
    pub height: u64,
    /// Cumulative work (hex), if its nodes say.
    pub work: Option<String>,
    /// The nodes whose head it is.
    pub nodes: Vec<usize>,
    /// True for the heaviest tip (by work, else by height).
    pub heaviest: bool,
    /// The height of the last block it shares with the heaviest tip's
    /// chain (its own height for the heaviest); `None` if that is more
    /// than [`MAX_FORK_DEPTH`] down or could not be read.
    pub fork_height: Option<u64>,
    /// Side branches its nodes know besides (height, hash, blocks), from
    /// `/status` `tips`.
    pub side_branches: Vec<SideBranch>,
}

/// A tip a node knows but does not follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideBranch {
    pub node: usize,
    pub height: u64,
    pub hash: String,
    /// Blocks from it down to where it leaves the node's chain.
    pub branch_len: u64,
}

/// The tips of `answered` nodes, heaviest first.
pub async fn tips(
    client: &Client,
    answered: &[(&NodeInfo, Status)],
) -> anyhow::Result<Vec<TipGroup>> {
    let mut groups = group_by_head(answered);
    let Some(best) = groups.first().cloned() else {
        return Ok(groups);
    };
    let best_node = answered
        .iter()
        .find(|(n, _)| best.nodes.first() == Some(&n.index))
        .map(|(n, _)| *n);
    for group in groups.iter_mut().skip(1) {
        let node = answered
            .iter()
            .find(|(n, _)| group.nodes.first() == Some(&n.index))
            .map(|(n, _)| *n);
        if let (Some(a), Some(b)) = (node, best_node) {
            group.fork_height = fork_height(client, a, b, group.height.min(best.height)).await;
        }
    }
    Ok(groups)
}

/// The nodes grouped by head, heaviest group first.
fn group_by_head(answered: &[(&NodeInfo, Status)]) -> Vec<TipGroup> {
    let mut groups: Vec<TipGroup> = Vec::new();
    for (node, status) in answered {
        let Some(hash) = status.head_hash.clone() else {
            continue;
        };
        let side = status
            .tips
            .iter()
            .filter(|t| !t.active && t.hash != hash)
            .map(|t| SideBranch {
                node: node.index,
                height: t.height,
                hash: t.hash.clone(),
                branch_len: t.branch_len,
            })
            .collect::<Vec<_>>();
        match groups.iter_mut().find(|g| g.hash == hash) {
            Some(group) => {
                group.nodes.push(node.index);
                group.work = group.work.take().or_else(|| status.work.clone());
                group.side_branches.extend(side);
            }
            None => groups.push(TipGroup {
                hash,
                height: status.height.unwrap_or(0),
                work: status.work.clone(),
                nodes: vec![node.index],
                heaviest: false,
                fork_height: None,
                side_branches: side,
            }),
        }
    }
    let weight = |g: &TipGroup| {
        (
            g.work.as_deref().and_then(work_value).unwrap_or(0.0),
            g.height,
        )
    };
    groups.sort_by(|a, b| {
        let (wa, ha) = weight(a);
        let (wb, hb) = weight(b);
        wb.total_cmp(&wa)
            .then(hb.cmp(&ha))
            .then(a.hash.cmp(&b.hash))
    });
    if let Some(best) = groups.first_mut() {
        best.heaviest = true;
        best.fork_height = Some(best.height);
    }
    groups
}

/// The highest height at or below `from` where nodes `a` and `b` have the
/// same block.
async fn fork_height(client: &Client, a: &NodeInfo, b: &NodeInfo, from: u64) -> Option<u64> {
    let lowest = from.saturating_sub(MAX_FORK_DEPTH);
    let mut h = from;
    loop {
        let (x, y) = futures::join!(client.block(a, h), client.block(b, h));
        if let (Ok(Some(x)), Ok(Some(y))) = (x, y)
            && x.hash == y.hash
        {
            return Some(h);
        }
        if h == lowest {
            return None;
        }
        h -= 1;
    }
}

/// Prints the tree: one line per tip, then the side branches.
pub fn print_tips(tips: &[TipGroup], out: &mut dyn Write) -> anyhow::Result<()> {
    let nodes: usize = tips.iter().map(|t| t.nodes.len()).sum();
    writeln!(
        out,
        "tips ({nodes} nodes on {} tip{}):",
        tips.len(),
        if tips.len() == 1 { "" } else { "s" }
    )?;
    let rows: Vec<Vec<String>> = tips
        .iter()
        .map(|t| {
            let nodes: Vec<String> = t.nodes.iter().map(ToString::to_string).collect();
            let branch = match (t.heaviest, t.fork_height) {
                (true, _) => "the heaviest chain".to_owned(),
                (false, Some(f)) => format!(
                    "{} block{} on a branch from height {f}",
                    t.height.saturating_sub(f),
                    if t.height.saturating_sub(f) == 1 {
                        ""
                    } else {
                        "s"
                    }
                ),
                (false, None) => format!("forked more than {MAX_FORK_DEPTH} blocks down"),
            };
            vec![
                format!("  {}", if t.heaviest { "*" } else { " " }),
                format!("height {}", t.height),
                t.hash.chars().take(12).collect(),
                t.work
                    .as_deref()
                    .and_then(work_value)
                    .map_or_else(|| "work -".into(), |w| format!("work {}", short_number(w))),
                format!("nodes {}", nodes.join(",")),
                branch,
            ]
        })
        .collect();
    for row in rows {
        writeln!(out, "{}", row.join("  "))?;
    }
    let side: Vec<String> = tips
        .iter()
        .flat_map(|t| &t.side_branches)
        .map(|b| {
            format!(
                "node {}: height {} {} ({} block{})",
                b.node,
                b.height,
                b.hash.chars().take(12).collect::<String>(),
                b.branch_len,
                if b.branch_len == 1 { "" } else { "s" }
            )
        })
        .collect();
    if !side.is_empty() {
        writeln!(out, "side branches known: {}", side.join("; "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::client::Tip;

    fn status(height: u64, head: &str, work: Option<&str>, tips: Vec<Tip>) -> Status {
        serde_json::from_value(serde_json::json!({
            "chain_id": "c", "validator": null, "height": height, "head_hash": head,
            "finalized_height": 0, "view": 0, "peers": 3, "mempool_size": 0, "syncing": false,
            "work": work, "tips": tips,
        }))
        .unwrap()
    }

    fn node(index: usize) -> NodeInfo {
        NodeInfo {
            index,
            home: "/nowhere".into(),
            api: "127.0.0.1:1".parse().unwrap(),
            rpc_host: crate::local::net::Host::Ip("127.0.0.1".parse().unwrap()),
            p2p: String::new(),
            p2p_listen: String::new(),
            key: phalanx_crypto::Keypair::from_seed(&[index as u8; 32]).public(),
            validator: false,
            byzantine: None,
            hashrate_limit: Some(1),
            dials: 3,
        }
    }

    #[test]
    fn nodes_are_grouped_by_head_heaviest_first() {
        let nodes: Vec<NodeInfo> = (0..4).map(node).collect();
        let side = Tip {
            hash: "bb".into(),
            height: 9,
            work: "10".into(),
            branch_len: 2,
            active: false,
        };
        let answered = vec![
            (&nodes[0], status(9, "bb", Some("10"), vec![])),
            (&nodes[1], status(10, "aa", Some("20"), vec![side.clone()])),
            (&nodes[2], status(9, "bb", None, vec![])),
            (&nodes[3], status(10, "aa", Some("20"), vec![])),
        ];
        let groups = group_by_head(&answered);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].hash, "aa");
        assert!(groups[0].heaviest);
        assert_eq!(groups[0].nodes, vec![1, 3]);
        assert_eq!(groups[0].side_branches.len(), 1);
        assert_eq!(groups[1].nodes, vec![0, 2]);
        assert_eq!(groups[1].work.as_deref(), Some("10"));
        assert!(!groups[1].heaviest);
        let mut out = Vec::new();
        let mut shown = groups.clone();
        shown[1].fork_height = Some(7);
        print_tips(&shown, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("tips (4 nodes on 2 tips)"), "{text}");
        assert!(text.contains("nodes 1,3  the heaviest chain"), "{text}");
        assert!(
            text.contains("2 blocks on a branch from height 7"),
            "{text}"
        );
        assert!(text.contains("node 1: height 9 bb (2 blocks)"), "{text}");
    }
}
