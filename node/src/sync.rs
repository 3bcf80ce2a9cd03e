//! Block sync: keeps a node that fell behind in step with its peers by
//! fetching final blocks by height, whatever protocol the chain runs.
//!
//! Every `sync.status_interval_ms` the driver ticks [`BlockSync`], which
//! asks the next peer (round robin) for its height. If a peer is more than
//! [`SYNC_LAG`] blocks ahead, the node stops feeding consensus and fetches
//! blocks from it by height, in batches of `sync.batch_blocks`, from just
//! above its finalized block: on BFT chains that is the head (every block
//! is final as it is committed); with proof of work the blocks above it
//! may lose to the peer's branch, and the driver reverts them when a block
//! proved final conflicts. A batch is
//! applied only as far as the protocol proves it final by the blocks
//! themselves ([`Protocol::prove_final`]: for HotStuff a three-chain of
//! quorum certificates); the few blocks at the tip that nothing in the
//! batch proves are left to the protocol's own catch-up. A batch that
//! proves nothing new ends the sync: the driver restarts its protocol
//! instance on the new head (with its persisted safety data) and rejoins
//! consensus. A request that goes unanswered for `sync.request_timeout_ms`
//! goes to another peer; a batch that does not link or whose certificates
//! do not verify gets its sender reported, and the fetch moves on too.
//!
//! [`BlockSync`] is a component the driver calls one way: it reads the
//! store, and answers every call with [`SyncAction`]s for the driver to
//! carry out (send, apply, report, rejoin). It never touches the network
//! or the protocol instance.
//!
//! # Framing
//! The [`Channel::Sync`](crate::net::Channel::Sync) wire carries two kinds
//! of traffic, told apart by a first byte: the protocol's own catch-up
//! messages ([`SYNC_TAG_PROTOCOL`]) and this module's [`NodeSync`]
//! ([`SYNC_TAG_NODE`]).

use crate::mempool::Gap;
use crate::net::Misbehaviour;
use crate::txgossip::MAX_GAPS_PER_REQUEST;
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::{Block, Height, Store, StoreError};
use phalanx_consensus::{ProofError, Protocol};
use phalanx_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Most blocks one sync request may ask for.
pub const MAX_SYNC_BATCH: u32 = 256;
/// A peer this many blocks ahead makes the node sync instead of relying on
/// the protocol's catch-up.
pub const SYNC_LAG: u64 = 8;
/// Bytes of blocks in one sync response, at most (under a network message).
const MAX_SYNC_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// The first byte of a sync-channel message from the protocol's catch-up.
pub const SYNC_TAG_PROTOCOL: u8 = 0;
/// The first byte of a sync-channel message of block sync ([`NodeSync`]).
pub const SYNC_TAG_NODE: u8 = 1;

/// `body` behind its one-byte `tag`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 1);
    bytes.push(tag);
    bytes.extend_from_slice(body);
    bytes
}

/// Whose traffic a sync-channel message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The protocol's catch-up, for [`Protocol::verify`].
    Protocol(&'a [u8]),
    /// Block sync, for [`NodeSync::decode`].
    Node(&'a [u8]),
}

/// Splits a sync-channel message by its tag (`None`: empty, or an unknown
/// tag).
pub fn unframe(bytes: &[u8]) -> Option<Frame<'_>> {
    match bytes.split_first()? {
        (&SYNC_TAG_PROTOCOL, body) => Some(Frame::Protocol(body)),
        (&SYNC_TAG_NODE, body) => Some(Frame::Node(body)),
        _ => None,
    }
}

/// Block sync messages (final blocks by height).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeSync {
    /// What is your height?
    StatusRequest,
    Status {
        height: Height,
    },
    /// Blocks from `from`, at most `count`.
    BlocksRequest {
        from: Height,
        count: u32,
    },
    Blocks {
        #[serde(deserialize_with = "encoding::bounded_vec::<_, _, 256>")]
        blocks: Vec<Block>,
    },
    /// The transactions you hold in these nonce gaps, please: answered
    /// with a direct transaction batch, not by block sync (see
    /// [`crate::txgossip`]).
    TxsRequest {
        #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_GAPS_PER_REQUEST>")]
        gaps: Vec<Gap>,
    },
}

impl NodeSync {
    /// The message as it travels: framed with [`SYNC_TAG_NODE`].
    pub fn encode(&self) -> Vec<u8> {
        frame(SYNC_TAG_NODE, &encoding::encode(self))
    }

    /// Decodes a message's body (after its tag).
    pub fn decode(body: &[u8]) -> Result<NodeSync, DecodeError> {
        encoding::decode(body, crate::net::MAX_NETWORK_MESSAGE_BYTES)
    }

    /// Its kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeSync::TxsRequest { .. } => "txs_request",
            _ => "blocks",
        }
    }
}

/// How block sync is set up (`[sync]` in the node's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// Blocks asked for per request (at most [`MAX_SYNC_BATCH`]).
    pub batch_blocks: u32,
    /// An unanswered request goes to another peer after this long.
    pub request_timeout: Duration,
}

/// What the driver is to do, in order.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum SyncAction {
    /// Send a block sync message to a peer.
    Send(PublicKey, NodeSync),
    /// Store these blocks, each proved final, in order (the first extends
    /// the finalized block; a stored block above it that conflicts is
    /// reverted), then tell [`BlockSync::applied`] how many were stored.
    Apply { from: PublicKey, blocks: Vec<Block> },
    /// Tell the network that a peer sent something invalid.
    Report(PublicKey, Misbehaviour),
    /// The sync is over: restart the protocol on the new head and feed it
    /// again.
    Rejoin,
}

/// What happened to the blocks of a [`SyncAction::Apply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Blocks stored, from the first.
    pub count: usize,
    /// True if a block did not apply (the rest were not tried).
    pub rejected: bool,
}

/// Block sync for a chain run by protocol `P`.
pub struct BlockSync<P: Protocol> {
    context: P::Context,
    store: Arc<dyn Store>,
    config: SyncConfig,
    /// Fetching blocks from this peer, until this deadline.
    fetching: Option<(PublicKey, Instant)>,
    /// The highest height a peer reported (or a message showed final).
    best_seen: Height,
    /// Round-robin cursor over peers.
    next_peer: usize,
}

impl<P: Protocol> std::fmt::Debug for BlockSync<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSync")
            .field("fetching", &self.fetching.map(|(peer, _)| peer))
            .field("best_seen", &self.best_seen)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> BlockSync<P> {
    pub fn new(context: P::Context, store: Arc<dyn Store>, config: SyncConfig) -> BlockSync<P> {
        BlockSync {
            context,
            store,
            config,
            fetching: None,
            best_seen: Height(0),
            next_peer: 0,
        }
    }

    /// True while fetching blocks (the driver does not feed consensus).
    pub fn is_fetching(&self) -> bool {
        self.fetching.is_some()
    }

    /// The highest height a peer has shown.
    pub fn best_seen(&self) -> Height {
        self.best_seen
    }

    /// A message showed that the network has finalized `height`, at least.
    pub fn saw_final(&mut self, height: Height) {
        self.best_seen = self.best_seen.max(height);
    }

    fn head_height(&self) -> Height {
        self.store
            .head()
            .ok()
            .flatten()
            .map_or(Height(0), |h| h.height())
    }

    /// The finalized height (the head's on BFT chains).
    fn final_height(&self) -> Height {
        self.store
            .finalized_height()
            .ok()
            .flatten()
            .unwrap_or(Height(0))
    }

    /// The finalized block, which fetched blocks must extend.
    fn final_block(&self) -> Result<Block, StoreError> {
        let height = self.store.finalized_height()?.unwrap_or(Height(0));
        self.store.block_at(height)?.ok_or(StoreError::NoHead)
    }

    /// Gives up on a stalled fetch, then asks the next of `peers` for its
    /// height.
    pub fn on_tick(&mut self, now: Instant, peers: &[PublicKey]) -> Vec<SyncAction> {
        let mut actions = Vec::new();
        if let Some((peer, deadline)) = self.fetching
            && now >= deadline
        {
            tracing::info!("sync request to {peer} timed out");
            actions.extend(self.start_fetch(now, peers));
        }
        if peers.is_empty() {
            return actions;
        }
        let i = self.next_peer % peers.len();
        self.next_peer = self.next_peer.wrapping_add(1);
        if let Some(peer) = peers.get(i) {
            actions.push(SyncAction::Send(*peer, NodeSync::StatusRequest));
        }
        actions
    }

    /// A block sync message from `from`; `peers` are the live peers.
    pub fn on_message(
        &mut self,
        from: PublicKey,
        message: NodeSync,
        now: Instant,
        peers: &[PublicKey],
    ) -> Vec<SyncAction> {
        match message {
            NodeSync::StatusRequest => {
                let height = self.head_height();
                vec![SyncAction::Send(from, NodeSync::Status { height })]
            }
            NodeSync::Status { height } => {
                self.saw_final(height);
                if self.fetching.is_none() && height.0 > self.head_height().0 + SYNC_LAG {
                    self.fetch_from(from, now)
                } else {
                    Vec::new()
                }
            }
            NodeSync::BlocksRequest { from: start, count } => {
                let blocks = self.stored_blocks(start, count.min(MAX_SYNC_BATCH));
                vec![SyncAction::Send(from, NodeSync::Blocks { blocks })]
            }
            NodeSync::Blocks { blocks } => {
                if self.fetching.map(|(peer, _)| peer) != Some(from) {
                    return Vec::new();
                }
                self.on_blocks(from, blocks, now, peers)
            }
            // The driver answers these from the mempool.
            NodeSync::TxsRequest { .. } => Vec::new(),
        }
    }

    /// Applies what the blocks prove final; an invalid batch gets its
    /// sender reported and the fetch moves on.
    fn on_blocks(
        &mut self,
        from: PublicKey,
        mut blocks: Vec<Block>,
        now: Instant,
        peers: &[PublicKey],
    ) -> Vec<SyncAction> {
        let base = match self.final_block() {
            Ok(base) => base,
            Err(e) => {
                // Our own storage, not the peer: stop syncing.
                tracing::error!("reading the finalized block for block sync failed: {e}");
                return self.finish();
            }
        };
        match P::prove_final(&self.context, &base, &blocks) {
            Ok(0) => self.applied(from, Applied::default(), now),
            Ok(proved) => {
                blocks.truncate(proved);
                vec![SyncAction::Apply { from, blocks }]
            }
            Err(e) => {
                tracing::warn!("invalid sync response from {from}: {e}");
                let mut actions = vec![SyncAction::Report(from, misbehaviour_of(&e))];
                actions.extend(self.start_fetch(now, peers));
                actions
            }
        }
    }

    /// The driver stored `applied` of the blocks `from` sent: fetch more
    /// while still behind, else rejoin consensus.
    pub fn applied(&mut self, from: PublicKey, applied: Applied, now: Instant) -> Vec<SyncAction> {
        let mut actions = Vec::new();
        if applied.rejected {
            actions.push(SyncAction::Report(from, Misbehaviour::Malformed));
        }
        let head = self.head_height();
        tracing::info!(
            applied = applied.count, head = %head, target = %self.best_seen, "sync progress"
        );
        if applied.count > 0 && self.best_seen.0 > head.0 + SYNC_LAG {
            actions.extend(self.fetch_from(from, now));
        } else {
            actions.extend(self.finish());
        }
        actions
    }

    /// Stored blocks from `start`, up to `count` and the response's byte
    /// budget.
    fn stored_blocks(&self, start: Height, count: u32) -> Vec<Block> {
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        for i in 0..u64::from(count) {
            let height = Height(start.0.saturating_add(i));
            let Ok(Some(block)) = self.store.block_at(height) else {
                break;
            };
            bytes = bytes.saturating_add(encoding::encode(&block).len());
            if bytes > MAX_SYNC_RESPONSE_BYTES && !blocks.is_empty() {
                break;
            }
            blocks.push(block);
        }
        blocks
    }

    /// Fetches from the peer under the cursor, or ends the sync if there
    /// is none.
    fn start_fetch(&mut self, now: Instant, peers: &[PublicKey]) -> Vec<SyncAction> {
        let i = self.next_peer % peers.len().max(1);
        match peers.get(i).copied() {
            Some(peer) => self.fetch_from(peer, now),
            None => self.finish(),
        }
    }

    fn fetch_from(&mut self, peer: PublicKey, now: Instant) -> Vec<SyncAction> {
        let from = Height(self.final_height().0.saturating_add(1));
        if self.fetching.is_none() {
            tracing::info!(
                from = %from, target = %self.best_seen, "behind peers: syncing committed blocks"
            );
        }
        self.fetching = Some((peer, now + self.config.request_timeout));
        vec![SyncAction::Send(
            peer,
            NodeSync::BlocksRequest {
                from,
                count: self.config.batch_blocks,
            },
        )]
    }

    fn finish(&mut self) -> Vec<SyncAction> {
        if self.fetching.take().is_none() {
            return Vec::new();
        }
        tracing::info!(head = %self.head_height(), "sync done; rejoining consensus");
        vec![SyncAction::Rejoin]
    }
}

/// What a batch that proves nothing says about its sender.
fn misbehaviour_of(error: &ProofError) -> Misbehaviour {
    match error {
        ProofError::BadCertificate { .. } => Misbehaviour::BadSignature,
        ProofError::NotLinked { .. }
        | ProofError::WrongJustification { .. }
        | ProofError::CertifiesAnotherBlock { .. } => Misbehaviour::Malformed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sync_traffic_is_told_apart_by_its_first_byte() {
        assert_eq!(
            unframe(&frame(SYNC_TAG_PROTOCOL, b"abc")),
            Some(Frame::Protocol(&b"abc"[..]))
        );
        assert_eq!(
            unframe(&frame(SYNC_TAG_NODE, b"")),
            Some(Frame::Node(&[][..]))
        );
        assert_eq!(unframe(&[9, 1]), None);
        assert_eq!(unframe(&[]), None);
        let message = NodeSync::BlocksRequest {
            from: Height(7),
            count: 3,
        };
        let bytes = message.encode();
        let Some(Frame::Node(body)) = unframe(&bytes) else {
            panic!("not framed as block sync");
        };
        assert_eq!(NodeSync::decode(body).unwrap(), message);
    }
}
