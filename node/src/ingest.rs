//! The transaction ingest task: batches gossiped by peers
//! ([`crate::txgossip`]) are decoded, transactions already pending are
//! skipped, the rest have their signatures verified in batches (outside
//! the mempool lock, on all cores), and are admitted to the mempool; the
//! driver is woken when any were new. A peer whose batches do not decode,
//! or whose transactions do not verify, is reported, and the network is
//! told which batches were valid (only those are relayed).

use crate::mempool::{Mempool, Source};
use crate::net::{Misbehaviour, Ticket, Verdict};
use crate::shared::NodeState;
use crate::txgossip;
use phalanx_chain::{Hash, Transaction};
use phalanx_crypto::PublicKey;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

/// Gossiped messages (each a batch of transactions) handed to the ingest
/// task and not yet taken, at most.
pub const INGEST_QUEUE: usize = 256;
/// Transactions verified in one round, at most (messages are taken whole,
/// so a round may pass it by one message).
const INGEST_BATCH: usize = 4_096;

/// A gossiped batch of transactions: the peer that delivered it, its
/// bytes, and the ticket to judge it by (if the network relays it).
pub type GossipBatch = (PublicKey, Vec<u8>, Option<Ticket>);

/// One message of a round: who delivered it, its ticket, and the verdict
/// on it so far (valid until something in it fails a check).
struct Message {
    from: PublicKey,
    ticket: Option<Ticket>,
    verdict: Verdict,
}

/// Runs until every sender of `queue` is gone.
pub async fn ingest_transactions(
    state: Arc<NodeState>,
    mut queue: mpsc::Receiver<GossipBatch>,
    txs_available: Arc<Notify>,
) {
    while let Some(first) = queue.recv().await {
        let mut messages = Vec::new();
        let mut round = Vec::new();
        let mut count = decode_into(&state, first, &mut messages, &mut round);
        while count < INGEST_BATCH {
            match queue.try_recv() {
                Ok(message) => count += decode_into(&state, message, &mut messages, &mut round),
                Err(_) => break,
            }
        }
        let admitted = admit_round(&state, round, &mut messages).await;
        for message in messages {
            if let Some(ticket) = message.ticket {
                state.net.judge(ticket, message.verdict);
            }
        }
        if admitted > 0 {
            txs_available.notify_one();
        }
    }
}

/// Decodes one gossiped message into `round` (each transaction with the
/// index of its message in `messages`); returns how many transactions it
/// held.
fn decode_into(
    state: &NodeState,
    (from, bytes, ticket): GossipBatch,
    messages: &mut Vec<Message>,
    round: &mut Vec<(usize, Transaction)>,
) -> usize {
    let index = messages.len();
    let decoded = txgossip::decode_batch(&bytes);
    messages.push(Message {
        from,
        ticket,
        verdict: if decoded.is_ok() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
    });
    match decoded {
        Ok(txs) => {
            let count = txs.len();
            round.extend(txs.into_iter().map(|tx| (index, tx)));
            count
        }
        Err(_) => {
            state.metrics.dropped("undecodable");
            state.net.report(&from, Misbehaviour::Malformed);
            0
        }
    }
}

/// Verifies and admits one round, marking the messages that held a bad
/// signature invalid; returns how many were admitted.
async fn admit_round(
    state: &NodeState,
    round: Vec<(usize, Transaction)>,
    messages: &mut [Message],
) -> usize {
    // Skip what is already pending (or repeated in the round) before paying
    // for its signature, and trust what this node has verified before (a
    // block carrying it may have come first).
    let hashes: Vec<Hash> = round.iter().map(|(_, tx)| tx.hash()).collect();
    let known = state.verified.contains_each(&hashes);
    let fresh: Vec<bool> = match state.mempool.lock() {
        Ok(pool) => {
            let mut seen = HashSet::with_capacity(hashes.len());
            hashes
                .iter()
                .map(|h| !pool.contains(h) && seen.insert(*h))
                .collect()
        }
        Err(_) => {
            // Nothing checked: relay nothing.
            for message in messages.iter_mut() {
                message.verdict = Verdict::Ignored;
            }
            return 0;
        }
    };
    let mut to_verify = Vec::new();
    let mut kept = Vec::new();
    for (((index, tx), hash), (fresh, known)) in round
        .into_iter()
        .zip(hashes)
        .zip(fresh.into_iter().zip(known))
    {
        if !fresh {
            continue;
        }
        if !known {
            to_verify.push(tx.clone());
        }
        kept.push((index, tx, hash, known));
    }
    if kept.is_empty() {
        return 0;
    }
    let mut verdicts = verify_parallel(to_verify).await.into_iter();
    // Every signature that verified is recorded, admitted or not: one
    // refused as `mempool_full` comes back (gossiped again, a gap answer,
    // a block) and is not checked twice.
    let mut verified = Vec::new();
    let mut good = Vec::with_capacity(kept.len());
    for (index, tx, hash, known) in kept {
        // verify_parallel answers for each; a missing verdict counts as a
        // bad signature.
        if !known {
            if !verdicts.next().unwrap_or(false) {
                state.metrics.dropped("bad_signature");
                if let Some(message) = messages.get_mut(index) {
                    if message.verdict == Verdict::Valid {
                        state.net.report(&message.from, Misbehaviour::BadSignature);
                    }
                    message.verdict = Verdict::Invalid;
                }
                continue;
            }
            verified.push(hash);
        }
        good.push((tx, hash));
    }
    let mut admitted = 0;
    if let Ok(mut pool) = state.mempool.lock() {
        for (tx, hash) in good {
            match pool.admit_verified(tx, hash, Source::Peer, &*state.store) {
                Ok(_) => admitted += 1,
                // Counted by reason (`gossip_nonce_too_low` is the usual
                // one: the transaction was committed before its gossip
                // arrived).
                Err(e) => state.metrics.dropped(&format!("gossip_{}", e.code())),
            }
        }
        state.metrics.set_mempool(&pool);
    }
    state.verified.insert_all(verified);
    admitted
}

/// [`Mempool::verify_batch_parallel`] on all cores, off the async
/// runtime. `result[i]` says whether `txs[i]` is valid; if the blocking
/// task fails, every one counts as invalid.
pub async fn verify_parallel(txs: Vec<Transaction>) -> Vec<bool> {
    let len = txs.len();
    tokio::task::spawn_blocking(move || {
        Mempool::verify_batch_parallel(&txs, Mempool::verify_threads())
    })
    .await
    .unwrap_or_else(|_| vec![false; len])
}
