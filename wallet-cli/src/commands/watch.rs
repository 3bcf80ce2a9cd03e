//! `watch`: follow the node's `GET /events` stream and print each block
//! as it is committed, until interrupted or `--count` blocks.
//!
//! On proof-of-work chains the stream also says when the node
//! reorganized (`reorg`: the chain was rolled back to an ancestor, and
//! the new branch's blocks follow) and when blocks became final
//! (`finalized`); both are shown, and neither counts towards `--count`.
//!
//! With `--json` each event is one JSON object on its own line (JSON
//! Lines): `{"event":"block","height",...}`,
//! `{"event":"reorg","ancestor_height",...,"reverted":[...]}`,
//! `{"event":"finalized","height":H}` or
//! `{"event":"lagged","missed":N}`. A `lagged` event means the node
//! dropped events for this slow reader; the missed blocks can be read
//! with `phalanx-wallet block HEIGHT`. Events of kinds the wallet does not
//! know are skipped.

use super::Context;
use crate::error::WalletError;
use crate::output::utc;
use crate::sse::{Event, Parser};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct BlockEvent {
    height: u64,
    hash: String,
    tx_count: u64,
    timestamp_ms: u64,
}

#[derive(Debug, Deserialize)]
struct LaggedEvent {
    missed: u64,
}

#[derive(Debug, Deserialize)]
struct ReorgEvent {
    ancestor_height: u64,
    ancestor_hash: String,
    /// Highest first.
    reverted: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct FinalizedEvent {
    height: u64,
}

pub async fn watch(ctx: &Context, count: Option<u64>) -> Result<(), WalletError> {
    if count == Some(0) {
        return Ok(());
    }
    let node = ctx.node()?;
    let mut response = node.events().await?;
    if !ctx.out.json {
        eprintln!(
            "following blocks committed by {} (Ctrl-C to stop)",
            node.url()
        );
    }
    let mut parser = Parser::new();
    let mut seen = 0u64;
    let stream_error = |detail: String| WalletError::BadResponse {
        url: node.url().to_owned(),
        what: "GET /events".into(),
        detail,
    };
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| WalletError::Unreachable {
                url: node.url().to_owned(),
                detail: format!("the event stream failed: {e}"),
            })?;
        let Some(chunk) = chunk else {
            return Err(WalletError::StreamClosed {
                url: node.url().to_owned(),
            });
        };
        let events = parser
            .push(&chunk)
            .map_err(|e| stream_error(e.to_string()))?;
        for event in events {
            let shown = match show(ctx, &event) {
                Ok(shown) => shown,
                Err(Shown::Stdout(e)) if e.is_broken_pipe() => return Ok(()),
                Err(Shown::Stdout(e)) => return Err(e),
                Err(Shown::Bad(detail)) => return Err(stream_error(detail)),
            };
            if shown {
                seen += 1;
                if count.is_some_and(|count| seen >= count) {
                    return Ok(());
                }
            }
        }
    }
}

/// Why an event could not be shown.
enum Shown {
    /// The node sent an event that is not what the API says.
    Bad(String),
    /// Stdout is gone (a closed pipe ends `watch` quietly).
    Stdout(WalletError),
}

/// Prints one event; true if it was a block.
fn show(ctx: &Context, event: &Event) -> Result<bool, Shown> {
    let bad =
        |e: serde_json::Error| Shown::Bad(format!("{} event {:?}: {e}", event.event, event.data));
    match event.event.as_str() {
        "reorg" => {
            let reorg: ReorgEvent = serde_json::from_str(&event.data).map_err(bad)?;
            let document = json!({
                "event": "reorg",
                "ancestor_height": reorg.ancestor_height,
                "ancestor_hash": reorg.ancestor_hash,
                "reverted": reorg.reverted,
            });
            ctx.out
                .emit(&document, || reorg_text(&reorg))
                .map_err(Shown::Stdout)?;
            Ok(false)
        }
        "finalized" => {
            let finalized: FinalizedEvent = serde_json::from_str(&event.data).map_err(bad)?;
            let document = json!({"event": "finalized", "height": finalized.height});
            ctx.out
                .emit(&document, || {
                    format!("finalized up to height {}", finalized.height)
                })
                .map_err(Shown::Stdout)?;
            Ok(false)
        }
        "block" => {
            let block: BlockEvent = serde_json::from_str(&event.data).map_err(bad)?;
            let document = json!({
                "event": "block",
                "height": block.height,
                "hash": block.hash,
                "tx_count": block.tx_count,
                "timestamp_ms": block.timestamp_ms,
            });
            ctx.out
                .emit(&document, || {
                    format!(
                        "block {}  {}  {} tx{}  {}",
                        block.height,
                        block.hash,
                        block.tx_count,
                        if block.tx_count == 1 { "" } else { "s" },
                        utc(block.timestamp_ms)
                    )
                })
                .map_err(Shown::Stdout)?;
            Ok(true)
        }
        "lagged" => {
            let lagged: LaggedEvent = serde_json::from_str(&event.data).map_err(bad)?;
            if ctx.out.json {
                ctx.out
                    .emit(
                        &json!({"event": "lagged", "missed": lagged.missed}),
                        String::new,
                    )
                    .map_err(Shown::Stdout)?;
            } else {
                eprintln!(
                    "missed {} blocks (this reader fell behind); read them with `phalanx-wallet block HEIGHT`",
                    lagged.missed
                );
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// `reorg  back to height 4 (<hash>): 2 blocks taken off: <hash of 6>, <hash of 5>`
fn reorg_text(reorg: &ReorgEvent) -> String {
    let count = reorg.reverted.len();
    format!(
        "reorg  back to height {} ({}): {count} block{} taken off: {}",
        reorg.ancestor_height,
        reorg.ancestor_hash,
        if count == 1 { "" } else { "s" },
        reorg.reverted.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reorg_names_the_ancestor_and_the_blocks_taken_off() {
        let reorg = ReorgEvent {
            ancestor_height: 4,
            ancestor_hash: "aa".into(),
            reverted: vec!["cc".into(), "bb".into()],
        };
        assert_eq!(
            reorg_text(&reorg),
            "reorg  back to height 4 (aa): 2 blocks taken off: cc, bb"
        );
    }
}
