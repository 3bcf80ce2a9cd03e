//! [`P2pConfig`]: every bound and timer of the libp2p network, with its
//! default.

use super::P2pError;
use crate::net::MAX_NETWORK_MESSAGE_BYTES;
use libp2p::Multiaddr;
use phalanx_crypto::{ChainId, Keypair, PublicKey};
use std::time::Duration;

/// How the libp2p network runs. [`P2pConfig::new`] fills in the defaults
/// named on each field; change fields afterwards as needed.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// The node key. The libp2p identity is derived from the same ed25519
    /// secret, so the node's PeerId is [`super::peer_id_of`] its key.
    pub key: Keypair,
    /// Scopes the gossipsub topics and the direct protocol, so nodes of
    /// different chains never exchange messages.
    pub chain_id: ChainId,
    /// Where to listen, e.g. `/ip4/0.0.0.0/tcp/9000` (port 0: any free port;
    /// see [`super::P2p::listen_addrs`]).
    pub listen: Multiaddr,
    /// Peers to dial and keep connected (default: none). More can be added
    /// later with [`super::P2p::add_peer`].
    pub peers: Vec<(PublicKey, Multiaddr)>,
    /// The first wait before redialing a peer after a failed dial or a lost
    /// connection (default 500 ms). It doubles with each failed attempt.
    pub reconnect_min: Duration,
    /// The longest wait between redials (default 30 s). A connection that
    /// stayed up this long resets the wait to `reconnect_min`.
    pub reconnect_max: Duration,
    /// Inbound messages waiting for the node (default 4,096). When full,
    /// new messages are dropped and counted (`dropped_inbound_full`).
    pub inbound_capacity: usize,
    /// Outbound messages waiting for the network task (default 4,096). When
    /// full, `publish` and `send` return `NetError::QueueFull`.
    pub outbound_capacity: usize,
    /// The largest message on any channel (default
    /// [`MAX_NETWORK_MESSAGE_BYTES`], 4 MiB). Bigger outbound messages are
    /// refused with `NetError::TooLarge`; bigger inbound ones are dropped,
    /// counted (`dropped_oversize`) and reported as `Malformed` against the
    /// sender.
    pub max_message_bytes: usize,
    /// Reports (`Gossip::report`, or oversize messages) within `ban_window`
    /// that ban a peer (default 20).
    pub ban_threshold: u32,
    /// The window reports are counted in (default 60 s).
    pub ban_window: Duration,
    /// How long a ban lasts (default 60 s): the peer is disconnected, its
    /// connections refused and its messages (also relayed ones) dropped,
    /// and it is not redialed until the ban ends.
    pub ban_duration: Duration,
    /// Established connections, all peers together (default 128). Each
    /// peer may hold two (one dialed each way).
    pub max_connections: u32,
    /// Peers the network keeps state for besides the configured ones:
    /// connected strangers, and reported or banned peers (default 256).
    pub max_tracked_peers: usize,
    /// How long a direct message may wait for its ack (default 10 s).
    pub direct_timeout: Duration,
    /// Direct messages to one peer awaiting their ack (default 256). More
    /// are dropped and counted (`dropped_outbound`): the peer is not
    /// keeping up.
    pub max_direct_in_flight: usize,
    /// How long gossipsub remembers a message id (BLAKE3 of the topic and
    /// content) to drop duplicates (default 30 s). Publishing the same
    /// bytes again within this time sends nothing: a node that re-sends a
    /// message for liveness should re-send it with `send`, or vary it. At
    /// least [`gossip_window`]: peers offer a message (IHAVE) for that
    /// long, and a node that has forgotten it asks for it (IWANT) and
    /// takes it as new again.
    pub duplicate_cache: Duration,
}

impl P2pConfig {
    /// A config with the defaults documented on each field.
    pub fn new(key: Keypair, chain_id: ChainId, listen: Multiaddr) -> P2pConfig {
        P2pConfig {
            key,
            chain_id,
            listen,
            peers: Vec::new(),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            inbound_capacity: 4_096,
            outbound_capacity: 4_096,
            max_message_bytes: MAX_NETWORK_MESSAGE_BYTES,
            ban_threshold: 20,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(60),
            max_connections: 128,
            max_tracked_peers: 256,
            direct_timeout: Duration::from_secs(10),
            max_direct_in_flight: 256,
            duplicate_cache: Duration::from_secs(30),
        }
    }

    /// Refuses values the network cannot run with.
    pub fn validate(&self) -> Result<(), P2pError> {
        let invalid =
            |field: &'static str, reason: String| P2pError::InvalidConfig { field, reason };
        let positive = [
            ("inbound_capacity", self.inbound_capacity),
            ("outbound_capacity", self.outbound_capacity),
            ("max_message_bytes", self.max_message_bytes),
            ("max_tracked_peers", self.max_tracked_peers),
            ("max_direct_in_flight", self.max_direct_in_flight),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(field, "must be at least 1".into()));
        }
        if u32::try_from(self.max_message_bytes).is_err() {
            let reason = format!(
                "{} does not fit the 32-bit length prefix",
                self.max_message_bytes
            );
            return Err(invalid("max_message_bytes", reason));
        }
        if self.ban_threshold == 0 {
            return Err(invalid("ban_threshold", "must be at least 1".into()));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        let timers = [
            ("reconnect_min", self.reconnect_min),
            ("ban_window", self.ban_window),
            ("direct_timeout", self.direct_timeout),
            ("duplicate_cache", self.duplicate_cache),
        ];
        if let Some((field, _)) = timers.iter().find(|(_, d)| d.is_zero()) {
            return Err(invalid(field, "must be longer than zero".into()));
        }
        if self.duplicate_cache < gossip_window() {
            let reason = format!(
                "{:?} is shorter than the {:?} gossipsub keeps offering a message for",
                self.duplicate_cache,
                gossip_window()
            );
            return Err(invalid("duplicate_cache", reason));
        }
        if self.reconnect_max < self.reconnect_min {
            let reason = format!(
                "{:?} is shorter than reconnect_min ({:?})",
                self.reconnect_max, self.reconnect_min
            );
            return Err(invalid("reconnect_max", reason));
        }
        Ok(())
    }
}

/// Gossipsub's heartbeat, as the node configures it (its default).
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeats gossipsub keeps a message for, as the node configures it
/// (its default).
pub const GOSSIP_HISTORY: u32 = 5;

/// How long gossipsub keeps a message it received or published and
/// offers it to peers (IHAVE): [`GOSSIP_HISTORY`] heartbeats. A node must
/// remember a message id at least this long, or a peer's offer makes it
/// fetch and deliver the message again: with 250 ms (a 500 ms base
/// timeout halved, as the node set it before), each 150 KB transaction
/// batch at 20,000 tx/s offered reached the node about four times, a
/// second apart (docs/BENCH.md).
pub fn gossip_window() -> Duration {
    GOSSIP_HEARTBEAT.saturating_mul(GOSSIP_HISTORY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> P2pConfig {
        P2pConfig::new(
            Keypair::from_seed(&[1; 32]),
            ChainId::new("test").unwrap(),
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn bad_values_name_the_field() {
        let field_of = |c: P2pConfig| match c.validate() {
            Err(P2pError::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut c = config();
        c.inbound_capacity = 0;
        assert_eq!(field_of(c), "inbound_capacity");
        let mut c = config();
        c.reconnect_max = Duration::from_millis(1);
        assert_eq!(field_of(c), "reconnect_max");
        let mut c = config();
        c.ban_threshold = 0;
        assert_eq!(field_of(c), "ban_threshold");
        let mut c = config();
        c.duplicate_cache = Duration::ZERO;
        assert_eq!(field_of(c), "duplicate_cache");
        let mut c = config();
        c.duplicate_cache = gossip_window() - Duration::from_millis(1);
        assert_eq!(field_of(c), "duplicate_cache");
        let mut c = config();
        c.duplicate_cache = gossip_window();
        assert_eq!(c.validate(), Ok(()));
        let mut c = config();
        c.max_message_bytes = usize::MAX;
        assert_eq!(field_of(c), "max_message_bytes");
    }
}
