//! The node's network, behind the [`Gossip`] trait.
//!
//! Two implementations: [`p2p::P2p`] (libp2p: TCP + noise + yamux,
//! gossipsub for the broadcast channels, request-response for messages to
//! one peer), which is what `phalanx-node` runs, and [`memory::MemoryNet`],
//! which connects several nodes inside one process for tests.
//!
//! Peers are named by their node key ([`PublicKey`]): a validator's libp2p
//! identity is its validator key, so a peer authenticated by the transport
//! cannot claim to be another validator. The network moves opaque bytes;
//! deciding whether a message is valid (decoding, committee membership,
//! signatures) is the node's job, which tells the network about a
//! misbehaving peer through [`Gossip::report`].

pub mod memory;
pub mod p2p;

use phalanx_crypto::PublicKey;
use serde::Serialize;
use std::fmt;

/// Largest message the network carries, on any channel. Blocks of
/// [`phalanx_chain::MAX_BLOCK_TXS`] transfers and sync responses of a few
/// blocks fit.
pub const MAX_NETWORK_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// What a message is for. Broadcast channels map to gossipsub topics
/// (scoped by chain id); direct messages carry their channel in the
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Signed consensus messages (proposals, votes, timeouts).
    Consensus,
    /// Signed transactions.
    Transactions,
    /// Block sync requests and responses (direct only).
    Sync,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Consensus, Channel::Transactions, Channel::Sync];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Consensus => "consensus",
            Channel::Transactions => "transactions",
            Channel::Sync => "sync",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message that arrived, with the peer it came from: the directly
/// connected peer that delivered it (the sender of a direct message; the
/// author or a relay of a gossiped one), authenticated by the transport.
/// That is the peer to report if the message is invalid: an honest relay
/// forwards only what it found valid ([`Gossip::judge`]).
#[derive(Debug, Clone)]
pub struct Inbound {
    pub from: PublicKey,
    pub channel: Channel,
    pub bytes: Vec<u8>,
    /// Set when the network relays this message once the node has judged
    /// it; the node then owes it a [`Gossip::judge`].
    pub ticket: Option<Ticket>,
}

/// A gossiped message awaiting the node's verdict ([`Gossip::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// What the node made of a gossiped message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Well formed and correctly signed: relay it.
    Valid,
    /// Malformed or badly signed: do not relay it (the node reports the
    /// peer that delivered it).
    Invalid,
    /// Neither checked nor relayed (a duplicate, or the node was too busy).
    Ignored,
}

/// A connected (or known) peer, as `GET /peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// The peer's node key, hex.
    pub key: PublicKey,
    /// Its transport address, if known.
    pub address: Option<String>,
    pub connected: bool,
    /// Set while the peer is banned for misbehaviour.
    pub banned: bool,
}

/// Why a peer is reported to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Misbehaviour {
    /// Bytes that do not decode, or exceed a size limit.
    Malformed,
    /// A signature that does not verify.
    BadSignature,
    /// A consensus message from outside the committee.
    NotAMember,
}

/// Why the network refused to take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("the network's outbound queue is full")]
    QueueFull,
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("unknown peer {0}")]
    UnknownPeer(PublicKey),
    #[error("the network has shut down")]
    Closed,
}

/// A node's view of the network. Every method returns at once: outbound
/// messages go into a bounded queue (a full queue is an error, never
/// unbounded growth), and inbound messages arrive on the bounded receiver
/// handed out when the network is created.
pub trait Gossip: Send + Sync + 'static {
    /// This node's key.
    fn local_key(&self) -> PublicKey;

    /// Sends `bytes` to every peer on a broadcast channel (not
    /// [`Channel::Sync`]). Peers relay what they receive, so it also
    /// reaches peers without a direct link to this node.
    fn publish(&self, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError>;

    /// Sends `bytes` to one peer.
    fn send(&self, to: &PublicKey, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError>;

    /// Known peers and whether they are connected.
    fn peers(&self) -> Vec<PeerInfo>;

    /// Tells the network that `peer` sent something invalid. A peer that
    /// keeps doing so is disconnected and refused for a while.
    fn report(&self, peer: &PublicKey, why: Misbehaviour);

    /// Test networks only: drop all traffic to and from `peers` (empty:
    /// drop none), to partition a network on purpose.
    fn set_blocked(&self, peers: Vec<PublicKey>);

    /// The node's verdict on the inbound message that carried `ticket`:
    /// only a valid one is relayed to other peers. Networks that do not
    /// relay hand out no tickets; the default does nothing.
    fn judge(&self, ticket: Ticket, verdict: Verdict) {
        let _ = (ticket, verdict);
    }

    /// The network's own counters (messages it dropped, bans), for the
    /// node's metrics; `None` from networks that keep none.
    fn stats(&self) -> Option<p2p::NetStats> {
        None
    }
}

/// The peers `net` is connected to and has not banned.
pub fn live_peers(net: &dyn Gossip) -> Vec<PublicKey> {
    net.peers()
        .into_iter()
        .filter(|p| p.connected && !p.banned)
        .map(|p| p.key)
        .collect()
}
