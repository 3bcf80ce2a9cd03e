//! What became of the transactions counted lost (admitted, never seen
//! final). At the end of the drain, before the nodes stop, an evenly spaced
//! sample of them, at most [`MAX_CHECKED`], is looked up on the nodes
//! (`GET /txs/{hash}`, starting with the node the account sends to, then
//! the others, until one knows it). That tells a transaction still waiting
//! in a pool when the drain ran out (the backlog outlasted it) from one in
//! a block the observer had not reported final, and from one no node holds
//! any more (dropped: evicted from every pool that had it). The check takes
//! at most [`CHECK_LIMIT`]; lookups not done by then count as unanswered.

use super::book::{Book, TxStatus};
use super::drive::Phases;
use super::plan::Workload;
use crate::local::client::Client;
use crate::local::net::NodeInfo;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Lost transactions looked up, at most.
pub const MAX_CHECKED: usize = 2_000;
/// Lookups in flight at once.
const CONCURRENCY: usize = 32;
/// Longest wait for one node's answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the whole check may take (a paused node would otherwise cost
/// every lookup that starts with it a timeout): lookups not done by then
/// count as unanswered.
pub const CHECK_LIMIT: Duration = Duration::from_secs(20);

/// The sample's verdicts: `pending + in_block + unknown + unanswered =
/// checked`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostCheck {
    /// Lost transactions looked up.
    pub checked: u64,
    /// Pending in some node's pool at the end.
    pub pending: u64,
    /// In a block on some node, not seen final on the observer in time.
    pub in_block: u64,
    /// Known to no node: dropped.
    pub unknown: u64,
    /// No node answered the lookup.
    pub unanswered: u64,
}

/// What one lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Pending,
    InBlock,
    Unknown,
    Unanswered,
}

/// The measured (due in the window) transactions still admitted or in
/// flight: an evenly spaced sample of at most `max`, as workload indices.
pub fn sample(book: &Book, workload: &Workload, phases: &Phases, max: usize) -> Vec<u32> {
    let lost: Vec<u32> = book
        .txs()
        .iter()
        .enumerate()
        .filter(|(k, tx)| {
            workload.due_ms(*k as u32) >= phases.warmup_ms
                && matches!(tx.status, TxStatus::Accepted | TxStatus::InFlight)
        })
        .map(|(k, _)| k as u32)
        .collect();
    let step = lost.len().div_ceil(max.max(1)).max(1);
    lost.into_iter().step_by(step).take(max).collect()
}

/// Looks the sample up on `nodes` and counts the verdicts.
pub async fn check(
    client: &Client,
    nodes: &[NodeInfo],
    workload: &Workload,
    sample: &[u32],
) -> LostCheck {
    let deadline = tokio::time::Instant::now() + CHECK_LIMIT;
    let lookups = sample.iter().map(|&k| async move {
        let Some(tx) = workload.tx(k) else {
            return Found::Unanswered;
        };
        let hash = tx.hash().to_string();
        let first = workload.account_of(k) % nodes.len().max(1);
        let order = nodes.iter().cycle().skip(first).take(nodes.len());
        let mut answered = false;
        for node in order {
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(LOOKUP_TIMEOUT);
            if wait.is_zero() {
                break;
            }
            match tokio::time::timeout(wait, client.tx(node, &hash)).await {
                Ok(Ok(Some(status))) if status.status == "pending" => return Found::Pending,
                Ok(Ok(Some(_))) => return Found::InBlock,
                Ok(Ok(None)) => answered = true,
                _ => {}
            }
        }
        if answered {
            Found::Unknown
        } else {
            Found::Unanswered
        }
    });
    let found: Vec<Found> = futures::stream::iter(lookups)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let count = |f: Found| found.iter().filter(|x| **x == f).count() as u64;
    LostCheck {
        checked: found.len() as u64,
        pending: count(Found::Pending),
        in_block: count(Found::InBlock),
        unknown: count(Found::Unknown),
        unanswered: count(Found::Unanswered),
    }
}
