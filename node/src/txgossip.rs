//! Transactions gossiped in batches.
//!
//! A message on [`Channel::Transactions`] carries a batch: the postcard
//! encoding of a sequence of transactions (the count as a varint, then each
//! transaction's canonical encoding), at least one and at most
//! [`MAX_GOSSIP_BATCH_TXS`]. One message per transaction made every
//! transaction pay libp2p's per-message costs (framing, the gossipsub
//! signature and its check on every receiver, deduplication, task
//! wake-ups) and overran gossipsub's send queues under load.
//!
//! The node's admission paths (`POST /txs`, `POST /txs/batch`) hand the
//! encodings of the transactions they admitted to [`TxGossip::push`]; the
//! [`run`] task publishes them: everything queued when it wakes, plus what
//! arrives within [`GOSSIP_LINGER`], in messages of at most
//! [`GOSSIP_BATCH_TXS`]. An idle node has no timer running: the task sleeps
//! on its queue.
//!
//! Gossip is best effort: a peer may miss a batch (a full queue, a dropped
//! connection) or refuse some of it (`mempool_full`). A transaction it
//! lacks that the others hold blocks its sender's later nonces in its
//! pool; on a PBFT primary, the only proposer, for good. So the
//! [`regossip`] task, every [`REGOSSIP_EVERY`], gossips again the ready
//! transactions (see [`crate::mempool`]) that have waited
//! [`REGOSSIP_AFTER`] since they were admitted or last gossiped again: at
//! most [`REGOSSIP_PER_SENDER`] from the start of each sender's run and
//! [`REGOSSIP_MAX`] in all per round. A healthy chain includes its
//! transactions well before that, so it gossips nothing again.
//!
//! Re-gossip alone is a trickle: under overload a pool fills with stuck
//! transactions whose sender's missing nonce it refused, and the PBFT
//! primary proposed blocks of what little stayed ready. So the
//! [`ask_for_gaps`] task, every [`GAP_FILL_EVERY`], asks one live peer
//! (the next in turn) for the nonces missing below each sender's first
//! stuck transaction that has waited [`GAP_FILL_AFTER`]
//! ([`Mempool::gaps`](crate::mempool::Mempool::gaps), at most
//! [`MAX_GAPS_PER_REQUEST`]), with a [`NodeSync::TxsRequest`]. The peer
//! answers ([`fill_gaps`]) with a direct transaction batch of what its pool
//! holds in those gaps, at most [`MAX_GOSSIP_BATCH_TXS`], which the asker
//! ingests like gossip. A peer that holds none of them sends nothing; the
//! next round asks the next peer.

use crate::mempool::Gap;
use crate::net::{Channel, NetError};
use crate::shared::NodeState;
use crate::sync::NodeSync;
use phalanx_chain::Transaction;
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::tx::MAX_TX_BYTES;
use phalanx_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Transactions in one gossiped message, at most (a receiver refuses more).
pub const MAX_GOSSIP_BATCH_TXS: usize = 4_096;
/// Bytes of one gossiped message, at most: [`MAX_GOSSIP_BATCH_TXS`]
/// transactions of the largest size and the count's varint.
pub const MAX_GOSSIP_BATCH_BYTES: usize = MAX_GOSSIP_BATCH_TXS * MAX_TX_BYTES + 8;
/// Transactions this node puts in one message, at most.
pub const GOSSIP_BATCH_TXS: usize = 1_024;
/// How long the publisher waits for more transactions after the first of a
/// batch, unless the batch fills first.
pub const GOSSIP_LINGER: Duration = Duration::from_millis(2);
/// Admissions (each a group of transactions, at most the API's batch
/// limit) queued for gossip, at most; past it they are not gossiped (they
/// stay admitted).
pub const GOSSIP_QUEUE: usize = 1_024;

/// How often [`regossip`] looks for transactions that waited long.
pub const REGOSSIP_EVERY: Duration = Duration::from_secs(1);
/// How long a ready transaction waits before it is gossiped again (and
/// again after as long, while it stays ready and pending).
pub const REGOSSIP_AFTER: Duration = Duration::from_secs(3);
/// Transactions from the start of one sender's run gossiped again per
/// round, at most.
pub const REGOSSIP_PER_SENDER: usize = 4;
/// Transactions gossiped again per round, at most.
pub const REGOSSIP_MAX: usize = 2 * GOSSIP_BATCH_TXS;

/// How often [`ask_for_gaps`] looks for gaps in the pool's nonces.
pub const GAP_FILL_EVERY: Duration = Duration::from_millis(250);
/// How long a sender's first stuck transaction waits for the nonces below
/// it (from gossip) before a peer is asked for them.
pub const GAP_FILL_AFTER: Duration = Duration::from_millis(500);
/// Gaps in one request, at most (a receiver refuses more).
pub const MAX_GAPS_PER_REQUEST: usize = 1_024;

/// The wire form of a batch.
#[derive(Debug, Serialize, Deserialize)]
struct TxBatch(
    #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_GOSSIP_BATCH_TXS>")]
    Vec<Transaction>,
);

/// Why a gossiped batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("an empty batch")]
    Empty,
}

/// The message carrying the already encoded transactions `encoded`, which
/// is what postcard makes of the sequence of those transactions.
pub fn encode_batch(encoded: &[Vec<u8>]) -> Vec<u8> {
    let size = encoded.iter().map(Vec::len).sum::<usize>() + 10;
    let mut bytes = Vec::with_capacity(size);
    encoding::push_varint(&mut bytes, encoded.len() as u64);
    for tx in encoded {
        bytes.extend_from_slice(tx);
    }
    bytes
}

/// Decodes a gossiped batch: canonical, at most [`MAX_GOSSIP_BATCH_TXS`]
/// transactions and [`MAX_GOSSIP_BATCH_BYTES`], not empty.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Transaction>, BatchError> {
    let TxBatch(txs) = encoding::decode(bytes, MAX_GOSSIP_BATCH_BYTES)?;
    if txs.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(txs)
}

/// Where admission paths queue transactions for gossip.
#[derive(Debug, Clone)]
pub struct TxGossip {
    queue: mpsc::Sender<Vec<Vec<u8>>>,
}

impl TxGossip {
    /// The handle, and the queue for [`run`].
    pub fn new() -> (TxGossip, mpsc::Receiver<Vec<Vec<u8>>>) {
        let (queue, receiver) = mpsc::channel(GOSSIP_QUEUE);
        (TxGossip { queue }, receiver)
    }

    /// Queues the encodings of admitted transactions; false if the queue is
    /// full or the publisher is gone (they are then not gossiped).
    pub fn push(&self, encoded: Vec<Vec<u8>>) -> bool {
        encoded.is_empty() || self.queue.try_send(encoded).is_ok()
    }
}

/// Publishes what [`TxGossip::push`] queues, until the node's state is
/// dropped (which drops the last handle and ends the queue).
pub async fn run(state: Weak<NodeState>, mut queue: mpsc::Receiver<Vec<Vec<u8>>>) {
    let mut pending: Vec<Vec<u8>> = Vec::new();
    while let Some(group) = queue.recv().await {
        pending.extend(group);
        let deadline = Instant::now() + GOSSIP_LINGER;
        while pending.len() < GOSSIP_BATCH_TXS {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(group)) => pending.extend(group),
                Ok(None) | Err(_) => break,
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        publish(&state, &pending);
        pending.clear();
    }
}

/// Every [`REGOSSIP_EVERY`], hands the ready transactions that waited
/// [`REGOSSIP_AFTER`] to the gossip queue again; ends when the node's
/// state is dropped.
pub async fn regossip(state: Weak<NodeState>) {
    let mut every = tokio::time::interval(REGOSSIP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let now = std::time::Instant::now();
        let Some(before) = now.checked_sub(REGOSSIP_AFTER) else {
            continue;
        };
        let stale = match state.mempool.lock() {
            Ok(mut pool) if pool.ready() > 0 => {
                pool.take_stale_ready(before, now, REGOSSIP_PER_SENDER, REGOSSIP_MAX)
            }
            _ => continue,
        };
        if stale.is_empty() {
            continue;
        }
        let count = stale.len();
        let encoded: Vec<Vec<u8>> = stale.iter().map(encoding::encode).collect();
        if state.tx_gossip.push(encoded) {
            state.metrics.txs_regossiped(count);
        } else {
            state.metrics.dropped("regossip_queue_full");
        }
    }
}

/// Every [`GAP_FILL_EVERY`], asks the next live peer for the transactions
/// missing below the pool's stuck ones that waited [`GAP_FILL_AFTER`];
/// ends when the node's state is dropped.
pub async fn ask_for_gaps(state: Weak<NodeState>) {
    let mut every = tokio::time::interval(GAP_FILL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0_usize;
    loop {
        every.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let Some(before) = std::time::Instant::now().checked_sub(GAP_FILL_AFTER) else {
            continue;
        };
        let gaps = match state.mempool.lock() {
            Ok(mut pool) if pool.stuck() > 0 => pool.gaps(before, MAX_GAPS_PER_REQUEST),
            _ => continue,
        };
        if gaps.is_empty() {
            continue;
        }
        let peers = crate::net::live_peers(&*state.net);
        let Some(peer) = peers.get(turn % peers.len().max(1)) else {
            continue;
        };
        turn = turn.wrapping_add(1);
        let message = NodeSync::TxsRequest { gaps };
        let bytes = message.encode();
        let size = bytes.len();
        match state.net.send(peer, Channel::Sync, bytes) {
            Ok(()) => state
                .metrics
                .message_out(Channel::Sync.name(), message.kind(), size, false),
            Err(_) => state.metrics.dropped("outbound_full"),
        }
    }
}

/// Answers a peer's [`NodeSync::TxsRequest`]: what the pool holds in
/// `gaps`, at most [`MAX_GOSSIP_BATCH_TXS`], in one direct batch (nothing
/// if it holds none).
pub fn fill_gaps(state: &NodeState, to: &PublicKey, gaps: &[Gap]) {
    let held: Vec<Transaction> = match state.mempool.lock() {
        Ok(pool) => gaps
            .iter()
            .flat_map(|gap| pool.filling(gap))
            .take(MAX_GOSSIP_BATCH_TXS)
            .cloned()
            .collect(),
        Err(_) => return,
    };
    if held.is_empty() {
        return;
    }
    let encoded: Vec<Vec<u8>> = held.iter().map(encoding::encode).collect();
    let bytes = encode_batch(&encoded);
    let size = bytes.len();
    match state.net.send(to, Channel::Transactions, bytes) {
        Ok(()) => {
            state
                .metrics
                .message_out(Channel::Transactions.name(), "tx_batch", size, false);
            state.metrics.txs_gaps_filled(held.len());
        }
        Err(_) => state.metrics.dropped("outbound_full"),
    }
}

/// Publishes `encoded` in messages of at most [`GOSSIP_BATCH_TXS`].
fn publish(state: &NodeState, encoded: &[Vec<u8>]) {
    let mut failed: Option<(usize, NetError)> = None;
    for chunk in encoded.chunks(GOSSIP_BATCH_TXS) {
        let bytes = encode_batch(chunk);
        let size = bytes.len();
        match state.net.publish(Channel::Transactions, bytes) {
            Ok(()) => {
                state
                    .metrics
                    .message_out(Channel::Transactions.name(), "tx_batch", size, false);
                state.metrics.txs_gossiped(chunk.len());
            }
            Err(error) => {
                // The transactions stay admitted: this node can still
                // propose them.
                state.metrics.dropped("tx_gossip_failed");
                match &mut failed {
                    Some((count, _)) => *count += chunk.len(),
                    None => failed = Some((chunk.len(), error)),
                }
            }
        }
    }
    if let Some((count, error)) = failed {
        tracing::warn!(count, %error, "could not gossip admitted transactions");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use phalanx_chain::{Amount, ChainId, Nonce};
    use phalanx_crypto::Keypair;

    fn txs(n: u64) -> Vec<Transaction> {
        let key = Keypair::from_seed(&[3; 32]);
        (0..n)
            .map(|i| {
                Transaction::sign(
                    &key,
                    ChainId::new("gossip-test").unwrap(),
                    Keypair::from_seed(&[9; 32]).public().into(),
                    Amount(i + 1),
                    Amount(1),
                    Nonce(i),
                )
            })
            .collect()
    }

    #[test]
    fn a_batch_is_postcards_sequence_of_transactions() {
        for n in [1, 2, 127, 128, 300] {
            let txs = txs(n);
            let encoded: Vec<Vec<u8>> = txs.iter().map(encoding::encode).collect();
            let bytes = encode_batch(&encoded);
            assert_eq!(bytes, encoding::encode(&txs), "n = {n}");
            assert_eq!(decode_batch(&bytes).unwrap(), txs);
        }
    }

    #[test]
    fn bad_batches_are_refused() {
        assert!(matches!(decode_batch(&[0]), Err(BatchError::Empty)));
        let one = encoding::encode(&txs(1)[0]);
        // A lone transaction is not a batch.
        assert!(decode_batch(&one).is_err());
        let mut bytes = encode_batch(std::slice::from_ref(&one));
        bytes.push(0);
        assert!(decode_batch(&bytes).is_err(), "trailing byte");
        let mut truncated = encode_batch(&[one.clone(), one.clone()]);
        truncated.truncate(truncated.len() - 1);
        assert!(decode_batch(&truncated).is_err());
        // A count above the limit is refused before anything is read.
        let mut claim = Vec::new();
        encoding::push_varint(&mut claim, MAX_GOSSIP_BATCH_TXS as u64 + 1);
        claim.extend_from_slice(&one);
        assert!(decode_batch(&claim).is_err());
        // An overlong count is not canonical.
        let mut overlong = vec![0x81, 0x00];
        overlong.extend_from_slice(&one);
        assert!(decode_batch(&overlong).is_err());
    }
}
