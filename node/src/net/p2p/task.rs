//! The task that owns the `Swarm`: it carries out queued commands, turns
//! swarm events into inbound messages and peer-table updates, and keeps
//! the configured peers connected and the banned and blocked ones out.

use super::codec::{DirectCodec, DirectCodecError, DirectMessage, DirectRequest};
use super::config::{GOSSIP_HEARTBEAT, GOSSIP_HISTORY};
use super::{P2pConfig, P2pError, Shared, key_of, lock};
use crate::net::{Channel, Inbound, Misbehaviour, Ticket, Verdict};
use futures::StreamExt;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identity, noise, tcp, yamux,
};
use phalanx_crypto::{Hash, PublicKey};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};

/// How often the task looks for due dials, expired bans and block changes
/// (it also does so whenever the handle wakes it).
const MAINTENANCE_TICK: Duration = Duration::from_millis(100);

/// What gossipsub adds around a message's data on the wire (protobuf
/// framing and topic), allowed on
/// top of `max_message_bytes` so a message of exactly the limit fits.
const GOSSIP_ENVELOPE_BYTES: usize = 4 * 1024;

/// Message ids in one IHAVE or IWANT, and ids asked of one peer with
/// IWANT per heartbeat, at most. Gossipsub's default (5,000) lets a node
/// send control messages of up to 170 KB while receivers refuse any over
/// [`MAX_CONTROL_BYTES`]; a refused one closes the receiving side of the
/// stream, the sender goes on writing into it, and about 20 s later (the
/// stream's flow-control window spent) every message to that peer stalls
/// for as long as the connection lasts: at 1,000 tx/s, two validators of
/// four could no longer reach each other directly. 400 ids fit 16 KiB.
const MAX_GOSSIP_IDS: usize = 400;

/// Bytes of gossipsub control (IHAVE, IWANT, GRAFT, PRUNE, subscriptions)
/// in one message, at most: gossipsub's default, which older Phalanx nodes
/// and other gossipsub implementations also use.
const MAX_CONTROL_BYTES: usize = 16 * 1024;

/// Bytes one message id takes in an IHAVE or IWANT list: the 32-byte
/// BLAKE3 id, its protobuf tag and its length.
const WIRE_ID_BYTES: usize = 32 + 2;

// The ids alone fit; the test below adds the envelope around them.
const _: () = assert!(MAX_GOSSIP_IDS * WIRE_ID_BYTES < MAX_CONTROL_BYTES);

/// Connections with no open stream and no mesh membership close after
/// this long; configured peers are redialed anyway.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);

/// A message from the handle, through the bounded outbound queue.
#[derive(Debug)]
pub(super) enum Command {
    Publish {
        channel: Channel,
        bytes: Vec<u8>,
    },
    Send {
        to: PublicKey,
        peer: PeerId,
        channel: Channel,
        bytes: Vec<u8>,
    },
}

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    // First, so that refused peers are refused before anything else sees
    // their connection.
    blocked: allow_block_list::Behaviour<BlockedPeers>,
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    direct: request_response::Behaviour<DirectCodec>,
}

/// The two gossipsub topics of a chain.
#[derive(Debug)]
struct Topics {
    consensus: IdentTopic,
    transactions: IdentTopic,
}

impl Topics {
    fn new(chain_id: &str) -> Topics {
        Topics {
            consensus: IdentTopic::new(format!("phalanx/{chain_id}/consensus/1")),
            transactions: IdentTopic::new(format!("phalanx/{chain_id}/transactions/1")),
        }
    }

    fn topic(&self, channel: Channel) -> Option<&IdentTopic> {
        match channel {
            Channel::Consensus => Some(&self.consensus),
            Channel::Transactions => Some(&self.transactions),
            Channel::Sync => None,
        }
    }

    fn channel_of(&self, topic: &TopicHash) -> Option<Channel> {
        if *topic == self.consensus.hash() {
            Some(Channel::Consensus)
        } else if *topic == self.transactions.hash() {
            Some(Channel::Transactions)
        } else {
            None
        }
    }
}

/// Content-addressed message ids: BLAKE3 of the topic (length-prefixed)
/// and the data, so the same bytes on two channels stay two messages.
fn message_id(message: &gossipsub::Message) -> MessageId {
    content_id(&message.topic, &message.data)
}

fn content_id(topic: &TopicHash, data: &[u8]) -> MessageId {
    let topic = topic.as_str().as_bytes();
    let topic_len = (topic.len() as u64).to_le_bytes();
    MessageId::from(Hash::digest_parts(&[&topic_len, topic, data]).0.to_vec())
}

/// Most message ids [`RecentIds`] holds.
const RECENT_IDS: usize = 65_536;

/// Ids of the gossip messages this node received or published lately, for
/// as long as gossipsub's duplicate cache keeps them (and at most
/// [`RECENT_IDS`]). Gossipsub refuses to publish one of those again (it
/// has been relayed already) and logs a warning each time; consensus
/// forwards every message it receives, so the node checks here first and
/// skips the publish quietly.
struct RecentIds {
    ids: HashSet<MessageId>,
    order: VecDeque<(Instant, MessageId)>,
    keep: Duration,
}

impl RecentIds {
    fn new(keep: Duration) -> RecentIds {
        RecentIds {
            ids: HashSet::new(),
            order: VecDeque::new(),
            keep,
        }
    }

    fn insert(&mut self, id: MessageId, now: Instant) {
        self.expire(now);
        if self.ids.insert(id.clone()) {
            self.order.push_back((now, id));
        }
        while self.order.len() > RECENT_IDS {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&mut self, id: &MessageId, now: Instant) -> bool {
        self.expire(now);
        self.ids.contains(id)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= self.keep {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

fn gossip_config(config: &P2pConfig) -> Result<gossipsub::Config, P2pError> {
    gossipsub::ConfigBuilder::default()
        // No author, sequence number or libp2p signature: consensus
        // messages and transactions carry their own signatures, and
        // checking gossipsub's on every copy a node received (duplicates
        // included, before deduplication) took 13 % of a validator's CPU
        // at 1,000 tx/s.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        // Hold each message until the node has judged it (`Gossip::judge`):
        // only what it found valid is forwarded, so a peer that delivers
        // something invalid is the one to blame.
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(
            config
                .max_message_bytes
                .saturating_add(GOSSIP_ENVELOPE_BYTES),
        )
        .duplicate_cache_time(config.duplicate_cache)
        // The window the duplicate cache must cover (`gossip_window`).
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .history_length(GOSSIP_HISTORY as usize)
        .max_control_messages_sent(MAX_GOSSIP_IDS)
        .max_control_message_size(MAX_CONTROL_BYTES)
        // Committees of 4 to 10: the defaults (6, 5, 12, 2) want more
        // peers than there are and keep grafting.
        .mesh_outbound_min(1)
        .mesh_n_low(2)
        .mesh_n(4)
        .mesh_n_high(8)
        .gossip_lazy(4)
        .flood_publish(true)
        .build()
        .map_err(|e| P2pError::InvalidConfig {
            field: "gossipsub",
            reason: e.to_string(),
        })
}

fn build_behaviour(config: &P2pConfig, topics: &Topics) -> Result<Behaviour, P2pError> {
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Anonymous,
        gossip_config(config)?,
    )
    .map_err(|e| P2pError::Transport(format!("gossipsub: {e}")))?;
    for topic in [&topics.consensus, &topics.transactions] {
        gossipsub
            .subscribe(topic)
            .map_err(|e| P2pError::Transport(format!("subscribing to {topic}: {e}")))?;
    }
    let protocol =
        StreamProtocol::try_from_owned(format!("/phalanx/{}/direct/1", config.chain_id.as_str()))
            .map_err(|e| P2pError::Transport(format!("direct protocol name: {e}")))?;
    let direct = request_response::Behaviour::with_codec(
        DirectCodec {
            max_message_bytes: config.max_message_bytes,
        },
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.direct_timeout),
    );
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(2));
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        gossipsub,
        direct,
    })
}

fn build_swarm(
    config: &P2pConfig,
    identity: identity::Keypair,
    topics: &Topics,
) -> Result<Swarm<Behaviour>, P2pError> {
    let behaviour = build_behaviour(config, topics)?;
    let tcp = || {
        libp2p::SwarmBuilder::with_existing_identity(identity.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| P2pError::Transport(e.to_string()))
    };
    // Peers' `/dns` addresses are resolved on every dial with the system's
    // resolver settings (so a peer whose address changes is found again).
    let mut swarm = match tcp()?.with_dns() {
        Ok(dns) => dns
            .with_behaviour(|_| behaviour)
            .map_err(|e| P2pError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build(),
        Err(e) => {
            tracing::warn!("no DNS resolver ({e}): peers named by /dns addresses cannot be dialed");
            tcp()?
                .with_behaviour(|_| behaviour)
                .map_err(|e| P2pError::Transport(e.to_string()))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
                .build()
        }
    };
    probe_port(&config.listen)?;
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| P2pError::Listen {
            address: config.listen.clone(),
            reason: e.to_string(),
        })?;
    Ok(swarm)
}

/// libp2p-tcp listens with `SO_REUSEPORT`, so a second node told to
/// listen on a port already in use would share it (the kernel splitting
/// incoming connections between the two) instead of failing. Binding the
/// port first without that option turns this into a clear error. (A port
/// taken between this check and the real bind still slips through.)
fn probe_port(listen: &Multiaddr) -> Result<(), P2pError> {
    let mut ip = None;
    let mut port = None;
    for protocol in listen.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind((ip, port)) {
        Ok(_probe) => Ok(()),
        Err(e) => Err(P2pError::Listen {
            address: listen.clone(),
            reason: e.to_string(),
        }),
    }
}

pub(super) struct NetTask {
    swarm: Swarm<Behaviour>,
    topics: Topics,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    listen: Multiaddr,
    max_message_bytes: usize,
    max_direct_in_flight: usize,
    /// Direct messages awaiting their ack, per peer (no zero entries).
    in_flight: HashMap<PeerId, usize>,
    /// Peers on the libp2p block list and gossipsub blacklist right now.
    enforced: HashSet<PeerId>,
    /// Told when the listener is up (or failed), then `None`.
    ready: Option<oneshot::Sender<Result<(), P2pError>>>,
    /// Gossip messages seen or published lately (not published again).
    recent: RecentIds,
    /// Verdicts from the handle ([`crate::net::Gossip::judge`]).
    verdicts: mpsc::Receiver<(Ticket, Verdict)>,
    /// Gossip messages delivered to the node and not judged yet, by
    /// ticket (issued in increasing order): the message and the peer that
    /// delivered it. At most `max_pending`; the oldest is dropped first
    /// (gossipsub then lets it expire unforwarded).
    pending: BTreeMap<u64, (MessageId, PeerId)>,
    max_pending: usize,
    next_ticket: u64,
    /// Node keys of PeerIds seen lately (decoding one checks a curve
    /// point), at most [`PEER_KEYS`].
    keys: HashMap<PeerId, PublicKey>,
}

/// Most entries in [`NetTask`]'s PeerId-to-key cache; it starts over when
/// full.
const PEER_KEYS: usize = 1024;

impl NetTask {
    pub fn new(
        config: &P2pConfig,
        identity: identity::Keypair,
        shared: Arc<Mutex<Shared>>,
        wake: Arc<Notify>,
        commands: mpsc::Receiver<Command>,
        inbound: mpsc::Sender<Inbound>,
        verdicts: mpsc::Receiver<(Ticket, Verdict)>,
    ) -> Result<NetTask, P2pError> {
        let topics = Topics::new(config.chain_id.as_str());
        let swarm = build_swarm(config, identity, &topics)?;
        Ok(NetTask {
            swarm,
            topics,
            shared,
            wake,
            commands,
            inbound,
            listen: config.listen.clone(),
            max_message_bytes: config.max_message_bytes,
            max_direct_in_flight: config.max_direct_in_flight,
            in_flight: HashMap::new(),
            enforced: HashSet::new(),
            ready: None,
            recent: RecentIds::new(config.duplicate_cache),
            verdicts,
            pending: BTreeMap::new(),
            max_pending: config.inbound_capacity.max(1),
            next_ticket: 0,
            keys: HashMap::new(),
        })
    }

    /// Runs until the handle is gone (its command sender dropped), or the
    /// listener fails before it is up.
    pub async fn run(mut self, ready: oneshot::Sender<Result<(), P2pError>>) {
        self.ready = Some(ready);
        let mut tick = tokio::time::interval(MAINTENANCE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => {
                    if self.on_swarm_event(event).is_break() {
                        break;
                    }
                }
                Some((ticket, verdict)) = self.verdicts.recv() => self.on_verdict(ticket, verdict),
                () = self.wake.notified() => self.maintain(),
                _ = tick.tick() => self.maintain(),
            }
        }
        tracing::debug!("p2p task stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { channel, bytes } => self.publish(channel, bytes),
            Command::Send {
                to,
                peer,
                channel,
                bytes,
            } => self.send(to, peer, channel, bytes),
        }
    }

    fn publish(&mut self, channel: Channel, bytes: Vec<u8>) {
        let Some(topic) = self.topics.topic(channel) else {
            return;
        };
        let size = bytes.len();
        let topic = topic.hash();
        let id = content_id(&topic, &bytes);
        let now = Instant::now();
        if self.recent.contains(&id, now) {
            // Received (and relayed by gossipsub) or sent already.
            return;
        }
        let result = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes);
        let mut shared = lock(&self.shared);
        match result {
            Ok(_) => {
                self.recent.insert(id, now);
                shared.stats.count_out(channel, size);
            }
            // Already sent (or received) within the duplicate cache: the
            // peers have it.
            Err(gossipsub::PublishError::Duplicate) => {}
            // Nobody to tell; not the caller's problem.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                shared.stats.dropped_outbound += 1;
            }
            Err(e) => {
                tracing::warn!(%channel, "publish failed: {e}");
                shared.stats.dropped_outbound += 1;
            }
        }
    }

    fn send(&mut self, to: PublicKey, peer: PeerId, channel: Channel, bytes: Vec<u8>) {
        let size = bytes.len();
        let mut shared = lock(&self.shared);
        // The peer may have been banned or blocked while this waited.
        if shared.drops(&to, Instant::now()) {
            shared.stats.dropped_blocked += 1;
            return;
        }
        let in_flight = self.in_flight.entry(peer).or_insert(0);
        if *in_flight >= self.max_direct_in_flight {
            tracing::debug!(peer = %to, "too many direct messages in flight: dropped");
            shared.stats.dropped_outbound += 1;
            return;
        }
        *in_flight += 1;
        shared.stats.count_out(channel, size);
        let addresses = shared.table.dial_address(&to).into_iter().collect();
        drop(shared);
        self.swarm
            .behaviour_mut()
            .direct
            .send_request_with_addresses(&peer, Ok(DirectMessage { channel, bytes }), addresses);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> ControlFlow<()> {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Direct(event)) => self.on_direct(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } if num_established.get() == 1 => {
                self.on_connected(peer_id, endpoint.get_remote_address().clone());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                tracing::debug!(%peer_id, ?cause, "disconnected");
                self.in_flight.remove(&peer_id);
                if let Some(key) = key_of(&peer_id) {
                    lock(&self.shared).table.disconnected(&key, Instant::now());
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                lock(&self.shared).listen_addrs.push(address);
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                lock(&self.shared).listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                let reason = match reason {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                return self.listener_failed(reason);
            }
            SwarmEvent::ListenerError { error, .. } => {
                return self.listener_failed(error.to_string());
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// A listener error before the listener is up fails `start`; later
    /// ones are logged (the node keeps its outbound connections).
    fn listener_failed(&mut self, reason: String) -> ControlFlow<()> {
        tracing::warn!(address = %self.listen, "listener stopped: {reason}");
        match self.ready.take() {
            Some(ready) => {
                let address = self.listen.clone();
                let _ = ready.send(Err(P2pError::Listen { address, reason }));
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }

    fn on_connected(&mut self, peer_id: PeerId, remote: Multiaddr) {
        let Some(key) = key_of(&peer_id) else {
            tracing::debug!(%peer_id, "not an ed25519 peer: disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        };
        tracing::debug!(peer = %key, %remote, "connected");
        let admitted =
            lock(&self.shared)
                .table
                .connected(key, peer_id, Some(remote), Instant::now());
        if !admitted {
            tracing::debug!(peer = %key, "peer table full: disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer_id);
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.recent.insert(message_id.clone(), Instant::now());
                let ticket = self.next_ticket;
                match self.on_gossip_message(propagation_source, message, ticket) {
                    Some(verdict) => {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .report_message_validation_result(
                                &message_id,
                                &propagation_source,
                                verdict,
                            );
                    }
                    None => self.await_verdict(ticket, message_id, propagation_source),
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.set_subscribed(&peer_id, &topic, true);
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.set_subscribed(&peer_id, &topic, false);
            }
            _ => {}
        }
    }

    fn set_subscribed(&mut self, peer_id: &PeerId, topic: &TopicHash, subscribed: bool) {
        if let (Some(key), Some(channel)) = (self.key_of(peer_id), self.topics.channel_of(topic)) {
            let mut shared = lock(&self.shared);
            shared.table.set_subscribed(&key, channel, subscribed);
        }
    }

    /// Delivers a gossiped message to the node with `ticket` (`None`: the
    /// node's verdict decides whether gossipsub forwards it), or returns
    /// gossipsub's verdict at once.
    fn on_gossip_message(
        &mut self,
        relay: PeerId,
        message: gossipsub::Message,
        ticket: u64,
    ) -> Option<MessageAcceptance> {
        let (Some(channel), Some(from)) =
            (self.topics.channel_of(&message.topic), self.key_of(&relay))
        else {
            return Some(MessageAcceptance::Reject);
        };
        let now = Instant::now();
        let mut shared = lock(&self.shared);
        if shared.drops(&from, now) {
            shared.stats.dropped_blocked += 1;
            return Some(MessageAcceptance::Ignore);
        }
        if message.data.len() > self.max_message_bytes {
            shared.stats.dropped_oversize += 1;
            if shared.report(from, Misbehaviour::Malformed, now) {
                self.wake.notify_one();
            }
            return Some(MessageAcceptance::Reject);
        }
        if self.deliver(
            &mut shared,
            from,
            channel,
            message.data,
            Some(Ticket(ticket)),
        ) {
            None
        } else {
            Some(MessageAcceptance::Ignore)
        }
    }

    /// Holds a delivered message until the node judges it.
    fn await_verdict(&mut self, ticket: u64, id: MessageId, relay: PeerId) {
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.pending.insert(ticket, (id, relay));
        while self.pending.len() > self.max_pending {
            if self.pending.pop_first().is_some() {
                lock(&self.shared).stats.unjudged += 1;
            }
        }
    }

    fn on_verdict(&mut self, ticket: Ticket, verdict: Verdict) {
        let Some((id, relay)) = self.pending.remove(&ticket.0) else {
            // Dropped as the oldest, or judged twice.
            return;
        };
        let acceptance = match verdict {
            Verdict::Valid => MessageAcceptance::Accept,
            Verdict::Invalid => MessageAcceptance::Reject,
            Verdict::Ignored => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &relay, acceptance);
    }

    /// The node key of `peer`, from the cache when it is there.
    fn key_of(&mut self, peer: &PeerId) -> Option<PublicKey> {
        if let Some(key) = self.keys.get(peer) {
            return Some(*key);
        }
        let key = key_of(peer)?;
        if self.keys.len() >= PEER_KEYS {
            self.keys.clear();
        }
        self.keys.insert(*peer, key);
        Some(key)
    }

    /// Hands a message to the node; false if it was dropped (and counted)
    /// because the node is behind.
    fn deliver(
        &self,
        shared: &mut Shared,
        from: PublicKey,
        channel: Channel,
        bytes: Vec<u8>,
        ticket: Option<Ticket>,
    ) -> bool {
        let size = bytes.len();
        match self.inbound.try_send(Inbound {
            from,
            channel,
            bytes,
            ticket,
        }) {
            Ok(()) => {
                shared.stats.count_in(channel, size);
                true
            }
            Err(_) => {
                shared.stats.dropped_inbound_full += 1;
                false
            }
        }
    }

    fn on_direct(&mut self, event: request_response::Event<DirectRequest, ()>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => match request {
                Ok(message) => {
                    if self.on_direct_message(&peer, message) {
                        let _ = self.swarm.behaviour_mut().direct.send_response(channel, ());
                    }
                }
                // Dropping `channel` resets the stream: no ack.
                Err(refused) => self.on_refused_direct(&peer, &refused),
            },
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { .. },
                ..
            } => self.finish_request(&peer),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "direct message failed: {error}");
                self.finish_request(&peer);
                lock(&self.shared).stats.dropped_outbound += 1;
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound direct message failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Delivers a direct message; false if it was dropped (not acked).
    fn on_direct_message(&mut self, peer: &PeerId, request: DirectMessage) -> bool {
        let Some(from) = self.key_of(peer) else {
            return false;
        };
        let mut shared = lock(&self.shared);
        if shared.drops(&from, Instant::now()) {
            shared.stats.dropped_blocked += 1;
            return false;
        }
        // Acked even if the node was too busy to take it, as a congested
        // link would lose it (counted in `dropped_inbound_full`).
        self.deliver(&mut shared, from, request.channel, request.bytes, None);
        true
    }

    /// A request the codec refused (oversize, unknown channel) is the
    /// sender's fault: count it and report the sender.
    fn on_refused_direct(&mut self, peer: &PeerId, refused: &DirectCodecError) {
        let Some(key) = key_of(peer) else {
            return;
        };
        tracing::debug!(peer = %key, "direct message refused: {refused}");
        let now = Instant::now();
        let mut shared = lock(&self.shared);
        if matches!(refused, DirectCodecError::TooLarge { .. }) {
            shared.stats.dropped_oversize += 1;
        }
        if shared.report(key, Misbehaviour::Malformed, now) {
            self.wake.notify_one();
        }
    }

    fn finish_request(&mut self, peer: &PeerId) {
        if let Some(count) = self.in_flight.get_mut(peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_flight.remove(peer);
            }
        }
    }

    /// Lifts expired bans, brings the block list and gossipsub blacklist in
    /// line with the banned and blocked peers, and dials configured peers
    /// that are due.
    fn maintain(&mut self) {
        let now = Instant::now();
        let (refused, dials) = {
            let mut guard = lock(&self.shared);
            let shared = &mut *guard;
            for key in shared.table.expire(now) {
                tracing::info!(peer = %key, "ban lifted");
            }
            let mut refused: HashSet<PeerId> = shared
                .table
                .banned(now)
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            refused.extend(shared.blocked.values().copied());
            let blocked = &shared.blocked;
            let dials = shared.table.due_dials(now, |key| blocked.contains_key(key));
            (refused, dials)
        };
        let behaviour = self.swarm.behaviour_mut();
        for peer in refused.difference(&self.enforced) {
            // Closes its connections and refuses new ones.
            behaviour.blocked.block_peer(*peer);
            behaviour.gossipsub.blacklist_peer(peer);
        }
        for peer in self.enforced.difference(&refused) {
            behaviour.blocked.unblock_peer(*peer);
            behaviour.gossipsub.remove_blacklisted_peer(peer);
        }
        self.enforced = refused;
        for (peer, address) in dials {
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "dial not started: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> MessageId {
        MessageId::from(n.to_le_bytes().to_vec())
    }

    #[test]
    fn recent_ids_expire_with_the_duplicate_cache_and_stay_bounded() {
        let start = Instant::now();
        let mut recent = RecentIds::new(Duration::from_secs(30));
        recent.insert(id(1), start);
        assert!(recent.contains(&id(1), start + Duration::from_secs(30)));
        assert!(!recent.contains(&id(1), start + Duration::from_secs(31)));
        for n in 0..(RECENT_IDS as u32 + 10) {
            recent.insert(id(n), start);
        }
        assert_eq!(recent.ids.len(), RECENT_IDS);
        assert_eq!(recent.order.len(), RECENT_IDS);
        assert!(!recent.contains(&id(0), start));
        assert!(recent.contains(&id(RECENT_IDS as u32 + 9), start));
    }

    #[test]
    fn the_duplicate_cache_covers_what_gossipsub_keeps_offering() {
        use phalanx_crypto::{ChainId, Keypair};
        let config = P2pConfig::new(
            Keypair::from_seed(&[1; 32]),
            ChainId::new("test").unwrap(),
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        );
        let gossip = gossip_config(&config).unwrap();
        let kept = gossip.heartbeat_interval() * u32::try_from(gossip.history_length()).unwrap();
        assert_eq!(kept, super::super::config::gossip_window());
        assert!(gossip.duplicate_cache_time() >= kept);
    }

    #[test]
    fn the_largest_ihave_or_iwant_fits_what_receivers_accept() {
        use phalanx_crypto::{CHAIN_ID_MAX_LEN, ChainId, Keypair};
        let chain_id = ChainId::new("x".repeat(CHAIN_ID_MAX_LEN)).unwrap();
        let config = P2pConfig::new(
            Keypair::from_seed(&[1; 32]),
            chain_id.clone(),
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        );
        let gossip = gossip_config(&config).unwrap();
        let topics = Topics::new(chain_id.as_str());
        let topic = topics.transactions.hash();
        let id = content_id(&topic, b"m");
        assert_eq!(WIRE_ID_BYTES, id.0.len() + 2, "a one-byte tag and length");
        // The RPC's control field, the IHAVE (or IWANT) inside it: a tag
        // and a length of at most three bytes each; the topic's field.
        let envelope = 2 * (1 + 3) + 1 + 2 + topic.as_str().len();
        let largest = gossip.max_control_messages_sent() * WIRE_ID_BYTES + envelope;
        assert!(
            largest <= gossip.max_control_message_size(),
            "an IHAVE of {largest} bytes exceeds the {} receivers accept",
            gossip.max_control_message_size()
        );
    }

    #[test]
    fn ids_depend_on_the_topic_and_the_bytes() {
        let a = TopicHash::from_raw("phalanx/x/consensus/1");
        let b = TopicHash::from_raw("phalanx/x/transactions/1");
        assert_eq!(content_id(&a, b"m"), content_id(&a, b"m"));
        assert_ne!(content_id(&a, b"m"), content_id(&b, b"m"));
        assert_ne!(content_id(&a, b"m"), content_id(&a, b"n"));
    }
}
