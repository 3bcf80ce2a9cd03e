//! Following finality on one node: its `GET /events` stream announces each
//! committed block, whose transaction hashes are then read with
//! `GET /blocks/{height}`; every height is read once, so a `lagged` event
//! or a dropped stream loses nothing. A transaction is final when the
//! event of the block that holds it arrives (on BFT chains a committed
//! block is final). With proof of work a committed block may still be
//! reverted, so the follower goes by the stream's `finalized` events
//! instead (and the node's `finalized_height` when it polls), and hands
//! the `block` and `reorg` events to the book's
//! [`ForkWatch`](super::forks::ForkWatch) (first
//! inclusions, reorganizations, safety). If the stream fails, the
//! follower polls `GET /status` and tries the next node.

use super::book::Book;
use super::plan::Workload;
use crate::local::client::{Client, Status};
use crate::local::net::NodeInfo;
use anyhow::anyhow;
use phalanx_chain::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Heights read in one catch-up, at most (the rest on the next round).
const MAX_CATCH_UP: u64 = 1_000;
/// Largest server-sent event kept while reading the stream.
const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Block hashes read from one `reorg` event, at most.
const MAX_REVERTED: usize = 4_096;
/// Without an event for this long, the follower polls `/status`.
const QUIET: Duration = Duration::from_secs(1);

/// The book, locked (a panic elsewhere does not hide what it holds).
pub fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(|p| p.into_inner())
}

/// How far the follower has read, and what it follows.
#[derive(Debug, Clone, Copy)]
pub struct Followed {
    /// The last height whose transactions were marked final.
    pub last: u64,
    /// Proof of work: only final blocks (`finalized` events and heights),
    /// not every committed one.
    pub final_only: bool,
}

/// The height a follower reads up to on a node: its head, or its highest
/// final block with proof of work.
pub fn followed_height(status: &Status, final_only: bool) -> u64 {
    if final_only {
        status.finalized_height.unwrap_or(0)
    } else {
        status.height.unwrap_or(0)
    }
}

/// What the follower marks blocks in.
#[derive(Debug, Clone)]
pub struct Target {
    pub workload: Arc<Workload>,
    pub book: Arc<Mutex<Book>>,
    /// Times are counted in ms from here.
    pub origin: Instant,
}

/// Follows committed (proof of work: final) blocks on the first node of
/// `nodes` (the next one if it fails) and marks their transactions final,
/// until `stop` turns true.
pub async fn follow(
    client: Client,
    nodes: Vec<NodeInfo>,
    target: Target,
    mut stop: watch::Receiver<bool>,
    mut last: Followed,
) {
    let mut which = 0;
    while !*stop.borrow() {
        let Some(node) = nodes.get(which % nodes.len().max(1)) else {
            return;
        };
        let stream = client
            .http()
            .get(node.url("/events"))
            .timeout(Duration::from_secs(24 * 3_600))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let ok = match stream {
            Ok(response) => {
                read_events(&client, node, response, &target, &mut stop, &mut last).await
            }
            Err(_) => false,
        };
        if !ok {
            // Catch up by polling, then try the next node's stream.
            let _ = catch_up(&client, node, None, &target, &mut last).await;
            which += 1;
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// Reads a `GET /events` stream until `stop` (true) or a failure (false).
/// Without an event for [`QUIET`], polls `/status` in case one was missed.
async fn read_events(
    client: &Client,
    node: &NodeInfo,
    mut response: reqwest::Response,
    target: &Target,
    stop: &mut watch::Receiver<bool>,
    last: &mut Followed,
) -> bool {
    let mut buffer = String::new();
    loop {
        let chunk = tokio::select! {
            _ = stop.changed() => return true,
            chunk = tokio::time::timeout(QUIET, response.chunk()) => chunk,
        };
        match chunk {
            Err(_) => {
                if catch_up(client, node, None, target, last).await.is_err() {
                    return false;
                }
            }
            Ok(Ok(Some(bytes))) => {
                buffer.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    if on_event(client, node, &parse_event(&event), target, last)
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                if buffer.len() > MAX_EVENT_BYTES {
                    return false;
                }
            }
            Ok(Ok(None) | Err(_)) => return false,
        }
    }
}

/// An event of the stream, as far as the follower needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A block committed at `height` (proof of work: on the chain, not
    /// final yet).
    Block { height: u64, hash: Option<Hash> },
    /// Proof of work: the chain rolled back to `ancestor_height`, taking
    /// off `reverted` (block hashes, highest first).
    Reorg {
        ancestor_height: u64,
        reverted: Vec<String>,
    },
    /// Proof of work: blocks up to `height` are final.
    Finalized { height: u64 },
    /// Anything else (`lagged`, a comment, an event that does not parse).
    Other,
}

/// Reads one server-sent event (its lines, up to the blank line).
pub fn parse_event(event: &str) -> Event {
    let mut name = None;
    let mut data = None;
    for line in event.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(v.trim());
        }
    }
    let Some(value) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) else {
        return Event::Other;
    };
    let u64_of = |key: &str| value.get(key).and_then(serde_json::Value::as_u64);
    let parsed = match name {
        Some("block") => u64_of("height").map(|height| Event::Block {
            height,
            hash: value
                .get("hash")
                .and_then(serde_json::Value::as_str)
                .and_then(|h| h.parse::<Hash>().ok()),
        }),
        Some("finalized") => u64_of("height").map(|height| Event::Finalized { height }),
        Some("reorg") => u64_of("ancestor_height").zip(value.get("reverted")).map(
            |(ancestor_height, reverted)| Event::Reorg {
                ancestor_height,
                reverted: reverted
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(serde_json::Value::as_str)
                            .take(MAX_REVERTED)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        ),
        _ => None,
    };
    parsed.unwrap_or(Event::Other)
}

/// The height of an event named `kind` (`block`, or `finalized` with
/// proof of work).
pub fn event_height(event: &str, kind: &str) -> Option<u64> {
    match (parse_event(event), kind) {
        (Event::Block { height, .. }, "block") | (Event::Finalized { height }, "finalized") => {
            Some(height)
        }
        _ => None,
    }
}

/// Acts on one event: on BFT chains a block event is final; with proof
/// of work `finalized` marks final, while `block` and `reorg` go to the
/// [`ForkWatch`](super::forks::ForkWatch).
async fn on_event(
    client: &Client,
    node: &NodeInfo,
    event: &Event,
    target: &Target,
    last: &mut Followed,
) -> anyhow::Result<()> {
    match (event, last.final_only) {
        (Event::Block { height, .. }, false) | (Event::Finalized { height }, true) => {
            catch_up(client, node, Some(*height), target, last).await
        }
        (Event::Block { height, hash }, true) => {
            if let Some(hash) = hash {
                included(client, node, *height, hash, target).await;
            }
            Ok(())
        }
        (
            Event::Reorg {
                ancestor_height,
                reverted,
            },
            true,
        ) => {
            let seen_ms = target.origin.elapsed().as_millis() as u64;
            if let Some(forks) = lock(&target.book).forks.as_mut() {
                forks.reorg(*ancestor_height, reverted, seen_ms);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Proof of work: a block on the chain, not final: its transactions are
/// included (first inclusion) now. A block already taken off again (404)
/// or a failed read is passed over: inclusion is then known from a later
/// block, or not at all.
async fn included(client: &Client, node: &NodeInfo, height: u64, hash: &Hash, target: &Target) {
    let seen_ms = target.origin.elapsed().as_millis() as u64;
    let Ok(Some(block)) = client.block_by_hash(node, hash).await else {
        return;
    };
    let ours: Vec<u32> = block
        .transactions
        .iter()
        .filter_map(|h| target.workload.find(&h.parse().ok()?))
        .collect();
    if let Some(forks) = lock(&target.book).forks.as_mut() {
        forks.block(height, &hash.to_string(), &ours, seen_ms);
    }
}

/// Reads the blocks above `last` up to `head` (or the node's height, or
/// with proof of work its finalized height) and marks their transactions
/// final now.
async fn catch_up(
    client: &Client,
    node: &NodeInfo,
    head: Option<u64>,
    target: &Target,
    followed: &mut Followed,
) -> anyhow::Result<()> {
    let seen_ms = target.origin.elapsed().as_millis() as u64;
    let head = match head {
        Some(h) => h,
        None => followed_height(&client.status(node).await?, followed.final_only),
    };
    let last = &mut followed.last;
    let to = head.min(last.saturating_add(MAX_CATCH_UP));
    while *last < to {
        let height = *last + 1;
        let block = client
            .block(node, height)
            .await?
            .ok_or_else(|| anyhow!("node {} has no block {height}", node.index))?;
        let hashes: Vec<Hash> = block
            .transactions
            .iter()
            .filter_map(|h| h.parse().ok())
            .collect();
        let mut book = lock(&target.book);
        if followed.final_only
            && let Some(forks) = book.forks.as_mut()
        {
            forks.finalized(height, &block.hash, &block.header.parent);
        }
        book.finalize_block(
            &target.workload,
            height,
            &hashes,
            seen_ms,
            block.header.timestamp_ms,
        );
        *last = height;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_events_give_their_height() {
        let event = "event: block\ndata: {\"height\":12,\"hash\":\"00\",\"tx_count\":1,\"timestamp_ms\":0}\n\n";
        assert_eq!(event_height(event, "block"), Some(12));
        // Proof of work: final heights come as `finalized` events.
        let finalized = "event: finalized\ndata: {\"height\":3}\n\n";
        assert_eq!(event_height(finalized, "finalized"), Some(3));
        assert_eq!(event_height(finalized, "block"), None);
        assert_eq!(event_height(event, "finalized"), None);
        assert_eq!(
            event_height("event: lagged\ndata: {\"missed\":3}\n\n", "block"),
            None
        );
        assert_eq!(event_height(": keep-alive\n\n", "block"), None);
        let reorg = "event: reorg\ndata: {\"ancestor_height\":4,\"ancestor_hash\":\"aa\",\"reverted\":[\"x6\",\"x5\"]}\n\n";
        assert_eq!(
            parse_event(reorg),
            Event::Reorg {
                ancestor_height: 4,
                reverted: vec!["x6".into(), "x5".into()]
            }
        );
        assert_eq!(
            parse_event("event: reorg\ndata: {\"reverted\":[]}\n\n"),
            Event::Other
        );
        let hash = "11".repeat(32);
        let block = format!("event: block\ndata: {{\"height\":7,\"hash\":\"{hash}\"}}\n\n");
        assert_eq!(
            parse_event(&block),
            Event::Block {
                height: 7,
                hash: Some(hash.parse().unwrap())
            }
        );
        assert_eq!(
            event_height("event: block\ndata: {\"height\":\n\n", "block"),
            None
        );
    }
}
