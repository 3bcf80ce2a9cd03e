//! Catch-up between replicas of a committee: a replica that holds a
//! reference to a block it lacks (a certificate names it, a proposal
//! builds on it) asks a peer for it by hash, with some of its ancestors.
//!
//! The traffic is unsigned: a block is asked for by hash and checked
//! against it, so an answer cannot smuggle in anything the asker did not
//! already hold a certified reference to.

use phalanx_chain::block::MAX_BLOCK_BYTES;
use phalanx_chain::encoding::{self, DecodeError};
use phalanx_chain::{Block, Hash, Height};
use serde::{Deserialize, Serialize};

/// Blocks in one catch-up answer, at most.
pub const MAX_SYNC_BLOCKS: usize = 16;
/// The largest encoded catch-up message.
pub const MAX_SYNC_BYTES: usize = MAX_SYNC_BLOCKS * MAX_BLOCK_BYTES + 64;

/// Catch-up traffic between two replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// Send me the block with this hash and up to `MAX_SYNC_BLOCKS - 1` of
    /// its ancestors.
    Request { hash: Hash },
    /// Blocks, each the parent of the one before.
    Response {
        #[serde(deserialize_with = "encoding::bounded_vec::<_, _, MAX_SYNC_BLOCKS>")]
        blocks: Vec<Block>,
    },
}

impl SyncMessage {
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }
}

/// Decodes a catch-up message (size-limited).
pub fn decode_sync(bytes: &[u8]) -> Result<SyncMessage, DecodeError> {
    encoding::decode(bytes, MAX_SYNC_BYTES)
}

/// The answer to a request for `hash`: the block and its ancestors, newest
/// first, as far as `lookup` finds them (at most [`MAX_SYNC_BLOCKS`],
/// stopping at genesis). Empty if the block itself is unknown.
pub fn ancestors(hash: Hash, lookup: impl Fn(&Hash) -> Option<Block>) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut cursor = hash;
    while blocks.len() < MAX_SYNC_BLOCKS {
        let Some(block) = lookup(&cursor) else {
            break;
        };
        let at_genesis = block.header().height == Height(0);
        cursor = block.header().parent;
        blocks.push(block);
        if at_genesis {
            break;
        }
    }
    blocks
}

/// A one-line description of catch-up bytes, for traces.
pub fn describe(bytes: &[u8]) -> String {
    match decode_sync(bytes) {
        Ok(SyncMessage::Request { hash }) => format!("sync request {}", short(&hash)),
        Ok(SyncMessage::Response { blocks }) => {
            let heights: Vec<String> = blocks
                .iter()
                .map(|b| b.header().height.to_string())
                .collect();
            format!("sync response heights [{}]", heights.join(","))
        }
        Err(e) => format!("undecodable sync ({e})"),
    }
}

/// The first eight hex digits of a hash, for traces.
pub fn short(hash: &Hash) -> String {
    hash.to_string().chars().take(8).collect()
}
