//! `POST /mine`: regtest-style "mine N blocks now", a test-network
//! control for proof-of-work nodes that mine.
//!
//! The body is `{"blocks": N}` with N from 1 to
//! [`MAX_ON_DEMAND_BLOCKS`]. The miner then ignores its hash-rate limit
//! until it has found N more blocks (each still meets its target), and
//! goes back to the limit ([`crate::miner`], "Mining on demand"). One
//! count is kept: a request while blocks are still asked for adds to
//! them, up to [`MAX_ON_DEMAND_BLOCKS`]. The handler only records the
//! count and wakes the miner's threads (which hash off the async
//! runtime); it answers at once with 202 and `{"mining": M, "requested":
//! N}`, M being the blocks now asked for. `GET /status` shows what is
//! left (`mining.on_demand`).
//!
//! A body that is not that is a 400 `bad_blocks`; a node that does not
//! mine (a BFT chain, `[mining] enabled = false`, or consensus halted)
//! answers 409 `not_mining`.

use super::Api;
use super::error::{ApiError, ApiJson};
use super::views::MineView;
use crate::miner::{MAX_ON_DEMAND_BLOCKS, MineNowError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use phalanx_chain::ConsensusKind;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MineRequest {
    blocks: u64,
}

fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "bad_blocks",
        format!(
            "the body must be {{\"blocks\": N}} with N from 1 to {MAX_ON_DEMAND_BLOCKS}: {message}"
        ),
    )
}

fn not_mining(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "not_mining", message)
}

/// The blocks a body asks for.
fn blocks_asked(body: serde_json::Value) -> Result<u64, ApiError> {
    if !body.is_object() {
        return Err(bad("the body is not a JSON object"));
    }
    let request: MineRequest = serde_json::from_value(body).map_err(bad)?;
    if !(1..=MAX_ON_DEMAND_BLOCKS).contains(&request.blocks) {
        return Err(bad(format_args!("got {}", request.blocks)));
    }
    Ok(request.blocks)
}

pub async fn mine(
    State(api): State<Api>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<MineView>), ApiError> {
    let requested = blocks_asked(body)?;
    let node = &api.node;
    if node.consensus != ConsensusKind::Pow {
        return Err(not_mining(format!(
            "this chain runs {} consensus: only proof-of-work nodes mine",
            node.consensus
        )));
    }
    let live = node.live();
    if let Some(why) = &live.halted {
        return Err(not_mining(format!(
            "consensus halted, and the miner with it: {why}"
        )));
    }
    let Some(mining) = &live.mining else {
        return Err(not_mining(
            "this node does not mine ([mining] enabled = false in its config)",
        ));
    };
    let total = mining
        .control
        .mine_now(requested)
        .map_err(|MineNowError::Stopped| not_mining("the miner has stopped"))?;
    tracing::info!(
        requested,
        on_demand = total,
        "api: mining blocks on demand, ignoring the hash-rate limit"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(MineView {
            mining: total,
            requested,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_names_a_number_of_blocks() {
        assert_eq!(blocks_asked(json!({"blocks": 3})), Ok(3));
        assert_eq!(blocks_asked(json!({"blocks": 1_000})), Ok(1_000));
        for body in [
            json!({}),
            json!({"blocks": 0}),
            json!({"blocks": 1_001}),
            json!({"blocks": -1}),
            json!({"blocks": "3"}),
            json!({"blocks": 1, "extra": true}),
            json!([3]),
            json!(3),
        ] {
            let e = blocks_asked(body.clone()).unwrap_err();
            assert_eq!(e.code, "bad_blocks", "{body}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
