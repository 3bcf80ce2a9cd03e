//! The libp2p network: [`P2p`], the [`Gossip`] the node runs on.
//!
//! # Design
//!
//! **Identity.** The node's libp2p identity is derived from its ed25519
//! node key (the same 32-byte secret), so its PeerId is a function of its
//! [`PublicKey`] ([`peer_id_of`]) and back ([`key_of`]: ed25519 PeerIds
//! inline the key). Noise authenticates the PeerId of every connection,
//! so a peer cannot speak under another validator's key; peers whose
//! PeerId is not an ed25519 key are disconnected.
//!
//! **Transport.** TCP (no Nagle delay) + noise + yamux. A connection
//! limiter bounds established connections (`max_connections` in total, two
//! per peer, one dialed each way), and a block list refuses connections
//! from banned and blocked peers.
//!
//! **Broadcast channels.** [`Channel::Consensus`] and
//! [`Channel::Transactions`] are the gossipsub topics
//! `phalanx/<chain_id>/consensus/1` and `phalanx/<chain_id>/transactions/1`.
//! Messages carry no libp2p author or signature
//! (`MessageAuthenticity::Anonymous`): consensus messages and
//! transactions are signed by their authors inside, and the node checks
//! those. The message id is BLAKE3 of the topic and the content, so the
//! same bytes published twice are sent once (within `duplicate_cache`).
//! Gossipsub forwards a message only once it is judged: one whose relay is
//! banned or blocked is ignored here, one over `max_message_bytes` is
//! rejected here, and every other one goes to the node with a [`Ticket`]
//! and is forwarded only if the node's [`Gossip::judge`] finds it valid.
//! [`Inbound::from`] is the peer that delivered it (authenticated by
//! noise): honest peers forward only valid messages, so that is the peer a
//! bad message is reported against. The mesh is sized for committees of
//! 4 to 10 (`mesh_n` 4, `mesh_n_low` 2, `mesh_n_high` 8) and a node's own
//! messages go to every subscribed peer (flood publish), so a publish
//! reaches every connected peer in one hop.
//!
//! **Direct messages** (`send`, and all of [`Channel::Sync`]) use the
//! request-response protocol `/phalanx/<chain_id>/direct/1` (see
//! `codec`): a channel tag, a length-prefixed payload refused before
//! allocation if over `max_message_bytes`, and an empty ack. At most
//! `max_direct_in_flight` messages per peer await their ack.
//!
//! **Queues and bounds.** The [`P2p`] handle and the one task that owns the
//! `Swarm` share two bounded queues: outbound messages (`publish` and
//! `send` return [`NetError::QueueFull`] when it is full) and inbound
//! messages (when the node falls behind, new messages are dropped and
//! counted). Control state (the peer table, bans, the blocked set,
//! counters) lives behind a mutex the handle updates directly, then wakes
//! the task, so `report`, `set_blocked`, `peers` and `stats` never wait
//! for or are lost to a full queue. The peer table keeps the configured
//! peers plus at most `max_tracked_peers` others.
//!
//! **Bans.** `ban_threshold` reports within `ban_window` (from
//! [`Gossip::report`], or oversize messages) ban a peer for
//! `ban_duration`: its connections are closed and refused, gossipsub
//! blacklists it (drops what it sends), and it is not
//! redialed until the ban ends.
//!
//! **Blocking** ([`Gossip::set_blocked`], for test partitions) uses the same
//! machinery: a blocked peer is disconnected and refused, nothing it
//! delivers is taken and nothing is sent to it; clearing the
//! block redials it at once if it is a configured peer (a stranger comes
//! back when it redials). Messages it authored can still reach this node
//! through a third peer: block on both sides, and across the whole cut, to
//! partition a network.
//!
//! **Reconnects.** Configured peers (the genesis validators, or
//! [`P2p::add_peer`]) are dialed at start and redialed after a failed dial
//! or a lost connection, waiting `reconnect_min`, doubling each attempt up
//! to `reconnect_max`; a connection that stayed up `reconnect_max` resets
//! the wait. The task checks for due dials, expired bans and changed blocks
//! every 100 ms and whenever the handle wakes it.
//!
//! **Lifetime.** [`P2p::start`] returns once the listener is up. The task
//! stops when the handle is dropped or [`P2p::shutdown`] is awaited (which
//! also waits until the listener is closed, so the port can be reused).

mod codec;
mod config;
mod peers;
mod task;

pub use self::config::P2pConfig;
pub use libp2p::{Multiaddr, PeerId};

use self::peers::{PeerPolicy, PeerTable, ReportOutcome};
use self::task::{Command, NetTask};
use crate::net::{Channel, Gossip, Inbound, Misbehaviour, NetError, PeerInfo, Ticket, Verdict};
use libp2p::identity;
use phalanx_crypto::{Keypair, PublicKey};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Why the network could not start, or a peer could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P2pError {
    #[error("invalid network config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("peer {key}: {reason}")]
    InvalidPeer {
        key: PublicKey,
        reason: &'static str,
    },
    #[error("the node key cannot be used as a libp2p identity: {0}")]
    Identity(String),
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("the network task stopped")]
    Closed,
}

/// Traffic on one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChannelStats {
    /// Messages delivered to the node.
    pub messages_in: u64,
    pub bytes_in: u64,
    /// Messages handed to libp2p (a publish counts once, whatever the
    /// number of peers).
    pub messages_out: u64,
    pub bytes_out: u64,
}

/// The network's counters, for the node's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    pub consensus: ChannelStats,
    pub transactions: ChannelStats,
    pub sync: ChannelStats,
    /// Inbound messages dropped because the inbound queue was full (or
    /// its receiver was dropped).
    pub dropped_inbound_full: u64,
    /// Inbound messages dropped for exceeding `max_message_bytes`.
    pub dropped_oversize: u64,
    /// Gossip messages the node did not judge in time (the oldest of
    /// more than `inbound_capacity` awaiting a verdict, or a verdict that
    /// found the verdict queue full): not forwarded.
    pub unjudged: u64,
    /// Messages dropped because they came from, or were for, a banned or
    /// blocked peer.
    pub dropped_blocked: u64,
    /// Outbound messages that reached no peer: a publish with no
    /// subscribed peer, a direct message that failed or found too many
    /// in flight, a publish on the direct-only channel.
    pub dropped_outbound: u64,
    /// Bans imposed.
    pub bans: u64,
}

impl NetStats {
    pub fn channel(&self, channel: Channel) -> &ChannelStats {
        match channel {
            Channel::Consensus => &self.consensus,
            Channel::Transactions => &self.transactions,
            Channel::Sync => &self.sync,
        }
    }

    fn channel_mut(&mut self, channel: Channel) -> &mut ChannelStats {
        match channel {
            Channel::Consensus => &mut self.consensus,
            Channel::Transactions => &mut self.transactions,
            Channel::Sync => &mut self.sync,
        }
    }

    fn count_in(&mut self, channel: Channel, bytes: usize) {
        let stats = self.channel_mut(channel);
        stats.messages_in += 1;
        stats.bytes_in += bytes as u64;
    }

    fn count_out(&mut self, channel: Channel, bytes: usize) {
        let stats = self.channel_mut(channel);
        stats.messages_out += 1;
        stats.bytes_out += bytes as u64;
    }
}

/// The PeerId of the node whose key is `key`.
pub fn peer_id_of(key: &PublicKey) -> Result<PeerId, P2pError> {
    let public = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).map_err(|_| {
        P2pError::InvalidPeer {
            key: *key,
            reason: "not a valid ed25519 public key",
        }
    })?;
    Ok(identity::PublicKey::from(public).to_peer_id())
}

/// The node key inside an ed25519 PeerId (which inlines its public key);
/// `None` for any other kind of PeerId.
pub fn key_of(peer: &PeerId) -> Option<PublicKey> {
    const IDENTITY_MULTIHASH: u64 = 0x00;
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let public = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed25519 = public.try_into_ed25519().ok()?;
    Some(PublicKey(ed25519.to_bytes()))
}

/// The libp2p identity made from the node key's secret.
fn identity_of(key: &Keypair) -> Result<identity::Keypair, P2pError> {
    // `ed25519_from_bytes` zeroes the buffer it is given: give it a copy
    // (which `Zeroizing` zeroes again when dropped).
    let mut seed = key.seed();
    identity::Keypair::ed25519_from_bytes(seed.as_mut_slice())
        .map_err(|e| P2pError::Identity(e.to_string()))
}

/// What the handle and the network task share.
#[derive(Debug)]
struct Shared {
    table: PeerTable,
    /// Peers cut off by [`Gossip::set_blocked`], with their PeerIds.
    blocked: BTreeMap<PublicKey, PeerId>,
    listen_addrs: Vec<Multiaddr>,
    stats: NetStats,
}

impl Shared {
    /// Whether traffic from or to `key` is dropped (banned or blocked).
    fn drops(&self, key: &PublicKey, now: Instant) -> bool {
        self.blocked.contains_key(key) || self.table.is_banned(key, now)
    }

    /// Counts a report against `key`. True if it banned the peer (the
    /// caller must wake the task, or act itself, to disconnect it).
    fn report(&mut self, key: PublicKey, why: Misbehaviour, now: Instant) -> bool {
        let Ok(peer_id) = peer_id_of(&key) else {
            return false;
        };
        match self.table.report(key, peer_id, now) {
            ReportOutcome::Banned => {
                self.stats.bans += 1;
                tracing::warn!(peer = %key, ?why, "peer banned for misbehaviour");
                true
            }
            ReportOutcome::Untracked => {
                tracing::debug!(peer = %key, ?why, "report not tracked: peer table full");
                false
            }
            ReportOutcome::Counted | ReportOutcome::AlreadyBanned => false,
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Every update leaves `Shared` consistent, so a panic elsewhere while
    // holding the lock does not make its contents unusable.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle to the libp2p network. See the module documentation.
pub struct P2p {
    local: PublicKey,
    local_peer_id: PeerId,
    max_message_bytes: usize,
    max_tracked_peers: usize,
    commands: mpsc::Sender<Command>,
    verdicts: mpsc::Sender<(Ticket, Verdict)>,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl fmt::Debug for P2p {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P2p")
            .field("local", &self.local)
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl P2p {
    /// Starts the network: builds the swarm, starts listening, and spawns
    /// the task that runs it (so it must be called inside a tokio runtime).
    /// Returns once the listener is up, with the receiver of inbound
    /// messages.
    pub async fn start(config: P2pConfig) -> Result<(P2p, mpsc::Receiver<Inbound>), P2pError> {
        config.validate()?;
        let local = config.key.public();
        let identity = identity_of(&config.key)?;
        let local_peer_id = identity.public().to_peer_id();
        let mut table = PeerTable::new(PeerPolicy {
            reconnect_min: config.reconnect_min,
            reconnect_max: config.reconnect_max,
            ban_threshold: config.ban_threshold,
            ban_window: config.ban_window,
            ban_duration: config.ban_duration,
            max_tracked_peers: config.max_tracked_peers,
        });
        let now = Instant::now();
        for (key, address) in &config.peers {
            if *key == local {
                return Err(P2pError::InvalidPeer {
                    key: *key,
                    reason: "is this node's own key",
                });
            }
            table.add_configured(*key, peer_id_of(key)?, address.clone(), now);
        }
        let shared = Arc::new(Mutex::new(Shared {
            table,
            blocked: BTreeMap::new(),
            listen_addrs: Vec::new(),
            stats: NetStats::default(),
        }));
        let wake = Arc::new(Notify::new());
        let (commands, command_rx) = mpsc::channel(config.outbound_capacity);
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity);
        let (verdicts, verdict_rx) = mpsc::channel(config.inbound_capacity.max(1));
        let (ready_tx, ready_rx) = oneshot::channel();
        let net_task = NetTask::new(
            &config,
            identity,
            Arc::clone(&shared),
            Arc::clone(&wake),
            command_rx,
            inbound_tx,
            verdict_rx,
        )?;
        let task = tokio::spawn(net_task.run(ready_tx));
        ready_rx.await.map_err(|_| P2pError::Closed)??;
        tracing::info!(key = %local, peer_id = %local_peer_id, "p2p network started");
        let p2p = P2p {
            local,
            local_peer_id,
            max_message_bytes: config.max_message_bytes,
            max_tracked_peers: config.max_tracked_peers,
            commands,
            verdicts,
            shared,
            wake,
            task,
        };
        Ok((p2p, inbound_rx))
    }

    /// The addresses the node listens on (with the actual port when the
    /// config asked for port 0).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        lock(&self.shared).listen_addrs.clone()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Keeps `key` connected at `address` from now on (dialing it at once),
    /// like a peer of `P2pConfig::peers`.
    pub fn add_peer(&self, key: PublicKey, address: Multiaddr) -> Result<(), P2pError> {
        if key == self.local {
            return Err(P2pError::InvalidPeer {
                key,
                reason: "is this node's own key",
            });
        }
        let peer_id = peer_id_of(&key)?;
        lock(&self.shared)
            .table
            .add_configured(key, peer_id, address, Instant::now());
        self.wake.notify_one();
        Ok(())
    }

    /// The network's counters.
    pub fn stats(&self) -> NetStats {
        lock(&self.shared).stats
    }

    /// Connected peers that subscribe to a broadcast channel: those a
    /// publish reaches directly. Tests wait on it before publishing.
    pub fn subscribed_peers(&self, channel: Channel) -> Vec<PublicKey> {
        lock(&self.shared).table.subscribed(channel)
    }

    /// Stops the network and waits until its task has ended (connections
    /// and the listener closed). Dropping the handle also stops the task,
    /// without waiting.
    pub async fn shutdown(self) {
        let P2p { commands, task, .. } = self;
        drop(commands);
        if let Err(e) = task.await {
            tracing::error!("the p2p task ended abnormally: {e}");
        }
    }

    fn check_size(&self, bytes: &[u8]) -> Result<(), NetError> {
        if bytes.len() > self.max_message_bytes {
            return Err(NetError::TooLarge {
                size: bytes.len(),
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }

    fn enqueue(&self, command: Command) -> Result<(), NetError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => NetError::Closed,
        })
    }
}

impl Gossip for P2p {
    fn local_key(&self) -> PublicKey {
        self.local
    }

    fn stats(&self) -> Option<NetStats> {
        Some(P2p::stats(self))
    }

    fn publish(&self, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
        self.check_size(&bytes)?;
        if channel == Channel::Sync {
            // NetError has no variant for this caller bug; make it loud.
            tracing::error!("publish on the direct-only sync channel: dropped");
            lock(&self.shared).stats.dropped_outbound += 1;
            return Ok(());
        }
        self.enqueue(Command::Publish { channel, bytes })
    }

    fn send(&self, to: &PublicKey, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
        self.check_size(&bytes)?;
        let peer = match peer_id_of(to) {
            Ok(peer) if *to != self.local => peer,
            _ => return Err(NetError::UnknownPeer(*to)),
        };
        {
            let mut shared = lock(&self.shared);
            if shared.drops(to, Instant::now()) {
                shared.stats.dropped_blocked += 1;
                return Ok(());
            }
            if !shared.table.knows(to) {
                return Err(NetError::UnknownPeer(*to));
            }
        }
        self.enqueue(Command::Send {
            to: *to,
            peer,
            channel,
            bytes,
        })
    }

    fn peers(&self) -> Vec<PeerInfo> {
        lock(&self.shared).table.infos(Instant::now())
    }

    fn report(&self, peer: &PublicKey, why: Misbehaviour) {
        tracing::debug!(%peer, ?why, "peer reported");
        if lock(&self.shared).report(*peer, why, Instant::now()) {
            self.wake.notify_one();
        }
    }

    fn judge(&self, ticket: Ticket, verdict: Verdict) {
        if self.verdicts.try_send((ticket, verdict)).is_err() {
            lock(&self.shared).stats.unjudged += 1;
        }
    }

    fn set_blocked(&self, peers: Vec<PublicKey>) {
        let blocked: BTreeMap<PublicKey, PeerId> = peers
            .iter()
            .filter(|key| **key != self.local)
            .filter_map(|key| Some((*key, peer_id_of(key).ok()?)))
            .take(self.max_tracked_peers)
            .collect();
        if blocked.len() < peers.len() {
            tracing::warn!(
                asked = peers.len(),
                blocked = blocked.len(),
                "set_blocked: own key, invalid keys or keys over max_tracked_peers ignored"
            );
        }
        let now = Instant::now();
        let mut shared = lock(&self.shared);
        let unblocked: Vec<PublicKey> = shared
            .blocked
            .keys()
            .filter(|key| !blocked.contains_key(key))
            .copied()
            .collect();
        for key in &unblocked {
            shared.table.redial_soon(key, now);
        }
        shared.blocked = blocked;
        drop(shared);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_are_bound_to_node_keys() {
        for seed in 0..8u8 {
            let key = Keypair::from_seed(&[seed; 32]);
            let peer = peer_id_of(&key.public()).unwrap();
            assert_eq!(identity_of(&key).unwrap().public().to_peer_id(), peer);
            assert_eq!(key_of(&peer), Some(key.public()));
        }
        // Seeds are not consumed by deriving the identity.
        let key = Keypair::from_seed(&[9; 32]);
        let first = identity_of(&key).unwrap().public().to_peer_id();
        assert_eq!(identity_of(&key).unwrap().public().to_peer_id(), first);
    }

    #[test]
    fn foreign_peer_ids_and_bad_keys() {
        assert_eq!(key_of(&PeerId::random()), None);
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(matches!(
            peer_id_of(&PublicKey(off_curve)),
            Err(P2pError::InvalidPeer { .. })
        ));
    }
}
