//! The transaction ingest task: transactions gossiped by peers are
//! decoded, their signatures verified in batches (outside the mempool
//! lock), and admitted to the mempool; the driver is woken when any were
//! new. A peer whose transactions do not decode or verify is reported.

use crate::mempool::Mempool;
use crate::net::Misbehaviour;
use crate::shared::NodeState;
use phalanx_chain::Transaction;
use phalanx_chain::encoding;
use phalanx_crypto::PublicKey;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

/// Transactions handed to the ingest task and not yet taken, at most.
pub const INGEST_QUEUE: usize = 16_384;
/// Transactions verified in one batch, at most.
const INGEST_BATCH: usize = 1_024;

/// Runs until every sender of `queue` is gone.
pub async fn ingest_transactions(
    state: Arc<NodeState>,
    mut queue: mpsc::Receiver<(PublicKey, Vec<u8>)>,
    txs_available: Arc<Notify>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < INGEST_BATCH {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        if admit_batch(&state, batch).await > 0 {
            txs_available.notify_one();
        }
    }
}

/// Decodes, verifies and admits one batch; returns how many were admitted.
async fn admit_batch(state: &NodeState, batch: Vec<(PublicKey, Vec<u8>)>) -> usize {
    let mut decoded: Vec<(PublicKey, Transaction)> = Vec::with_capacity(batch.len());
    for (from, bytes) in batch {
        match encoding::decode::<Transaction>(&bytes, phalanx_chain::tx::MAX_TX_BYTES) {
            Ok(tx) => decoded.push((from, tx)),
            Err(_) => {
                state.metrics.dropped("undecodable");
                state.net.report(&from, Misbehaviour::Malformed);
            }
        }
    }
    let txs: Vec<Transaction> = decoded.iter().map(|(_, tx)| tx.clone()).collect();
    let verdicts = tokio::task::spawn_blocking(move || Mempool::verify_batch(&txs))
        .await
        .unwrap_or_default();
    let mut admitted = 0usize;
    if let Ok(mut pool) = state.mempool.lock() {
        for ((from, tx), valid) in decoded.into_iter().zip(verdicts) {
            if !valid {
                state.metrics.dropped("bad_signature");
                state.net.report(&from, Misbehaviour::BadSignature);
                continue;
            }
            if pool.admit_verified(tx, &*state.store).is_ok() {
                admitted += 1;
            }
        }
        state.metrics.set_mempool(pool.len(), pool.bytes());
    }
    admitted
}
