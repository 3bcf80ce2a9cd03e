//! One handler per endpoint (those that submit transactions are in
//! [`super::submit`]). Each reads the store without holding the
//! mempool lock, and takes the lock only for in-memory work plus, where the
//! answer depends on it, a few reads (so that the store and the pending
//! transactions are seen at one moment: the driver commits to the store
//! before it removes committed transactions under the same lock, and
//! reverts the store and returns the reverted transactions under it):
//! one account read for `GET /accounts`, where one transaction is for
//! `GET /txs`.

use super::Api;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::views::{
    AccountView, BlockView, CommittedTx, MempoolView, MiningView, PeersView, StatusView, TipView,
    TxStatusView,
};
use crate::mempool::Mempool;
use crate::metrics;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use phalanx_chain::{Address, Block, ConsensusKind, Hash, Height, StateView, Store, TxIndex};
use phalanx_consensus::ChainTip;
use serde::Deserialize;
use std::sync::MutexGuard;

/// `GET /mempool` lists this many hashes unless `?limit=` says otherwise.
pub const DEFAULT_MEMPOOL_LIMIT: usize = 100;
/// `?limit=` above this is lowered to it.
pub const MAX_MEMPOOL_LIMIT: usize = 1_000;

impl Api {
    /// The mempool, for brief in-memory work. A poisoned lock is recovered:
    /// no mempool method leaves it inconsistent part-way.
    pub(super) fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.node
            .mempool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn store(&self) -> &dyn Store {
        &*self.node.store
    }
}

pub async fn status(State(api): State<Api>) -> Result<Json<StatusView>, ApiError> {
    let node = &api.node;
    let head = api.store().head()?;
    let finalized_height = api.store().finalized_height()?;
    let live = node.live();
    let peers = node.net.peers().iter().filter(|p| p.connected).count();
    let (mempool_size, mempool_bytes) = {
        let mempool = api.mempool();
        (mempool.len(), mempool.bytes())
    };
    Ok(Json(StatusView {
        chain_id: node.chain_id.clone(),
        consensus: node.consensus,
        validator: node.validator,
        height: head.as_ref().map(|h| h.height()),
        head_hash: head.map(|h| h.hash),
        finalized_height,
        view: live.view,
        phase: live.phase,
        view_timeout_ms: live.view_timeout_ms,
        peers,
        mempool_size,
        mempool_bytes,
        syncing: live.syncing,
        sync_target: live.sync_target,
        halted: live.halted.clone(),
        mining: live.mining.as_ref().map(MiningView::of),
        work: best_work(&live.tips),
        tips: live.tips.iter().map(TipView::of).collect(),
        confirmations: node
            .genesis
            .pow
            .as_ref()
            .filter(|_| node.consensus == ConsensusKind::Pow)
            .map(|pow| pow.confirmations),
        tx_index: api.store().tx_index(),
    }))
}

/// The best tip's cumulative work.
fn best_work(tips: &[ChainTip]) -> Option<String> {
    tips.iter()
        .find(|t| t.active)
        .or(tips.first())
        .map(|t| t.work.clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockQuery {
    #[serde(default)]
    full: bool,
}

fn block_answer(
    api: &Api,
    block: Option<Block>,
    what: impl FnOnce() -> String,
    full: bool,
) -> Result<Json<BlockView>, ApiError> {
    let block = block.ok_or_else(|| ApiError::not_found(what()))?;
    let finalized = api
        .store()
        .finalized_height()?
        .is_some_and(|f| block.height() <= f);
    Ok(Json(BlockView::of(&block, finalized, full)))
}

pub async fn block_latest(
    State(api): State<Api>,
    ApiQuery(query): ApiQuery<BlockQuery>,
) -> Result<Json<BlockView>, ApiError> {
    let block = match api.store().head()? {
        Some(head) => api.store().block(&head.hash)?,
        None => None,
    };
    block_answer(
        &api,
        block,
        || "no block is committed yet".into(),
        query.full,
    )
}

pub async fn block_by_height(
    State(api): State<Api>,
    ApiPath(text): ApiPath,
    ApiQuery(query): ApiQuery<BlockQuery>,
) -> Result<Json<BlockView>, ApiError> {
    let height = parse_height(&text)?;
    let block = api.store().block_at(height)?;
    block_answer(
        &api,
        block,
        || format!("no committed block at height {height}"),
        query.full,
    )
}

pub async fn block_by_hash(
    State(api): State<Api>,
    ApiPath(text): ApiPath,
    ApiQuery(query): ApiQuery<BlockQuery>,
) -> Result<Json<BlockView>, ApiError> {
    let hash = parse_hash(&text)?;
    // The store keeps blocks a reorganization took off the chain (so a
    // later one can apply them again); they are not on this node's chain.
    let block = match api.store().block(&hash)? {
        Some(block) if api.store().block_hash_at(block.height())? == Some(hash) => Some(block),
        Some(_) => {
            return Err(ApiError::not_found(format!(
                "block {hash} is not on this node's chain: a reorganization took it off"
            )));
        }
        None => None,
    };
    block_answer(
        &api,
        block,
        || format!("no committed block {hash}"),
        query.full,
    )
}

fn parse_height(text: &str) -> Result<Height, ApiError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(height) if digits => Ok(Height(height)),
        _ => Err(ApiError::bad_request(
            "bad_height",
            format!(
                "invalid height {:?}: a height is a decimal number from 0 to {}",
                shorten(text),
                u64::MAX
            ),
        )),
    }
}

fn parse_hash(text: &str) -> Result<Hash, ApiError> {
    text.parse::<Hash>().map_err(|e| {
        ApiError::bad_request(
            "bad_hash",
            format!(
                "invalid hash {:?}: a hash is 64 lowercase hex characters ({e})",
                shorten(text)
            ),
        )
    })
}

/// At most 80 characters of client input, for error messages.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

pub async fn tx_status(
    State(api): State<Api>,
    ApiPath(text): ApiPath,
) -> Result<Json<TxStatusView>, ApiError> {
    let hash = parse_hash(&text)?;
    // Under the mempool lock: the driver commits a block to the store
    // before it removes the block's transactions from the mempool, and
    // holds the lock while it reverts the store and puts the reverted
    // transactions back, so a transaction is seen committed or pending
    // (or neither, if it never was or was dropped), never lost half-way.
    // Only commits can move meanwhile: the head never falls below the
    // block read first.
    let (pending, committed) = {
        let mempool = api.mempool();
        (mempool.contains(&hash), committed_tx(&api, hash)?)
    };
    match committed {
        Some((tx, true)) => Ok(Json(TxStatusView::Finalized(tx))),
        Some((tx, false)) => Ok(Json(TxStatusView::Committed(tx))),
        None if pending => Ok(Json(TxStatusView::Pending { hash })),
        None => Err(not_indexed_or_unknown(&api, hash)),
    }
}

/// Why a transaction was found neither in the index nor in the pool.
fn not_indexed_or_unknown(api: &Api, hash: Hash) -> ApiError {
    match api.store().tx_index() {
        TxIndex::Off => ApiError::new(
            StatusCode::NOT_FOUND,
            "tx_index_off",
            format!(
                "transaction {hash} is not pending on this node, and this node keeps no \
                 transaction index (node.tx_index = false): ask a node that does, or look \
                 for it in the blocks"
            ),
        ),
        TxIndex::From(from) if from > Height::GENESIS => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "transaction {hash} is neither pending on this node nor indexed; this node \
                 indexes transactions from height {from} on (its index was off before)"
            ),
        ),
        TxIndex::From(_) => ApiError::not_found(format!(
            "transaction {hash} is neither committed nor pending on this node"
        )),
    }
}

/// Where the chain holds transaction `hash`, and whether that is final
/// (at or below the finalized height: on proof-of-work chains, with the
/// genesis confirmations).
fn committed_tx(api: &Api, hash: Hash) -> Result<Option<(CommittedTx, bool)>, ApiError> {
    let store = api.store();
    let Some(location) = store.tx_location(&hash)? else {
        return Ok(None);
    };
    let height = location.height;
    let block_hash = store.block_hash_at(height)?.ok_or_else(|| {
        ApiError::internal(format!(
            "transaction index names height {height} but no block is stored there"
        ))
    })?;
    let head = store.head()?.map_or(height, |h| h.height());
    let finalized = store.finalized_height()?.is_some_and(|f| height <= f);
    let tx = CommittedTx {
        hash,
        height,
        index: location.index,
        block_hash,
        confirmations: head.0.saturating_sub(height.0).saturating_add(1),
        on_best_chain: true,
    };
    Ok(Some((tx, finalized)))
}

pub async fn account(
    State(api): State<Api>,
    ApiPath(text): ApiPath,
) -> Result<Json<AccountView>, ApiError> {
    let address: Address = text.parse().map_err(|e: phalanx_chain::AddressError| {
        ApiError::bad_request("bad_address", e.to_string())
    })?;
    let (account, pending_nonce) = {
        let mempool = api.mempool();
        let account = api.store().account(&address)?;
        let one = OneAccount(address, account);
        (account, mempool.pending_nonce(&address, &one)?)
    };
    Ok(Json(AccountView {
        address,
        balance: account.balance,
        nonce: account.nonce,
        pending_nonce,
    }))
}

/// A state of one account, already read.
struct OneAccount(Address, phalanx_chain::Account);

impl StateView for OneAccount {
    fn account(
        &self,
        address: &Address,
    ) -> Result<phalanx_chain::Account, phalanx_chain::StoreError> {
        Ok(if *address == self.0 {
            self.1
        } else {
            phalanx_chain::Account::default()
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolQuery {
    limit: Option<usize>,
}

pub async fn mempool(
    State(api): State<Api>,
    ApiQuery(query): ApiQuery<MempoolQuery>,
) -> Json<MempoolView> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_MEMPOOL_LIMIT)
        .min(MAX_MEMPOOL_LIMIT);
    let mempool = api.mempool();
    Json(MempoolView {
        size: mempool.len(),
        bytes: mempool.bytes(),
        txs: mempool.snapshot(limit),
    })
}

pub async fn peers(State(api): State<Api>) -> Json<PeersView> {
    let peers = api.node.net.peers();
    Json(PeersView {
        connected: peers.iter().filter(|p| p.connected).count(),
        peers,
    })
}

pub async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        api.node.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_are_plain_decimal() {
        assert_eq!(parse_height("0").unwrap(), Height(0));
        assert_eq!(
            parse_height("18446744073709551615").unwrap(),
            Height(u64::MAX)
        );
        for bad in ["", "-1", "+1", "1.0", "18446744073709551616", "0x10", " 1"] {
            assert_eq!(parse_height(bad).unwrap_err().code, "bad_height", "{bad:?}");
        }
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        let long = "z".repeat(10_000);
        let e = parse_hash(&long).unwrap_err();
        assert_eq!(e.code, "bad_hash");
        assert!(e.message.len() < 300, "{}", e.message);
    }
}
