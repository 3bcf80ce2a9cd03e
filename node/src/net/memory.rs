//! An in-memory network: several nodes in one process, for tests. Each
//! node's inbound queue is bounded like libp2p's; a full queue drops the
//! message (as a congested link would).

use super::{Channel, Gossip, Inbound, Misbehaviour, NetError, PeerInfo};
use phalanx_crypto::PublicKey;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Debug, Default)]
struct Hub {
    nodes: BTreeMap<PublicKey, mpsc::Sender<Inbound>>,
    /// Pairs (a, b) whose traffic is dropped, both ways.
    blocked: BTreeSet<(PublicKey, PublicKey)>,
    reports: Vec<(PublicKey, PublicKey, Misbehaviour)>,
}

/// The shared medium; [`MemoryNet::join`] gives each node its handle.
#[derive(Debug, Clone, Default)]
pub struct MemoryNet {
    hub: Arc<Mutex<Hub>>,
}

/// One node's handle on a [`MemoryNet`].
#[derive(Debug)]
pub struct MemoryGossip {
    me: PublicKey,
    hub: Arc<Mutex<Hub>>,
}

impl MemoryNet {
    pub fn new() -> MemoryNet {
        MemoryNet::default()
    }

    /// Connects the node keyed `me`; its inbound queue holds `capacity`
    /// messages.
    pub fn join(&self, me: PublicKey, capacity: usize) -> (MemoryGossip, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if let Ok(mut hub) = self.hub.lock() {
            hub.nodes.insert(me, tx);
        }
        let gossip = MemoryGossip {
            me,
            hub: Arc::clone(&self.hub),
        };
        (gossip, rx)
    }

    /// Disconnects a node (its handle then reaches nobody).
    pub fn leave(&self, key: &PublicKey) {
        if let Ok(mut hub) = self.hub.lock() {
            hub.nodes.remove(key);
        }
    }

    /// Misbehaviour reports so far: (reporter, culprit, why).
    pub fn reports(&self) -> Vec<(PublicKey, PublicKey, Misbehaviour)> {
        self.hub
            .lock()
            .map(|h| h.reports.clone())
            .unwrap_or_default()
    }
}

impl MemoryGossip {
    fn deliver(&self, to: &PublicKey, channel: Channel, bytes: &[u8]) -> Result<(), NetError> {
        let sender = {
            let hub = self.hub.lock().map_err(|_| NetError::Closed)?;
            if hub.blocked.contains(&(self.me, *to)) || hub.blocked.contains(&(*to, self.me)) {
                return Ok(());
            }
            hub.nodes.get(to).cloned()
        };
        let Some(sender) = sender else {
            return Err(NetError::UnknownPeer(*to));
        };
        // A full or closed queue loses the message, like a congested link.
        let _ = sender.try_send(Inbound {
            from: self.me,
            channel,
            bytes: bytes.to_vec(),
            ticket: None,
        });
        Ok(())
    }

    fn check_size(bytes: &[u8]) -> Result<(), NetError> {
        if bytes.len() > super::MAX_NETWORK_MESSAGE_BYTES {
            return Err(NetError::TooLarge {
                size: bytes.len(),
                limit: super::MAX_NETWORK_MESSAGE_BYTES,
            });
        }
        Ok(())
    }
}

impl Gossip for MemoryGossip {
    fn local_key(&self) -> PublicKey {
        self.me
    }

    fn publish(&self, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
        Self::check_size(&bytes)?;
        let peers: Vec<PublicKey> = {
            let hub = self.hub.lock().map_err(|_| NetError::Closed)?;
            hub.nodes
                .keys()
                .filter(|k| **k != self.me)
                .copied()
                .collect()
        };
        for peer in peers {
            // A peer that left is simply not reached.
            let _ = self.deliver(&peer, channel, &bytes);
        }
        Ok(())
    }

    fn send(&self, to: &PublicKey, channel: Channel, bytes: Vec<u8>) -> Result<(), NetError> {
        Self::check_size(&bytes)?;
        self.deliver(to, channel, &bytes)
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let Ok(hub) = self.hub.lock() else {
            return Vec::new();
        };
        hub.nodes
            .keys()
            .filter(|k| **k != self.me)
            .map(|k| PeerInfo {
                key: *k,
                address: Some(format!("/memory/{k}")),
                connected: !hub.blocked.contains(&(self.me, *k)),
                banned: false,
            })
            .collect()
    }

    fn report(&self, peer: &PublicKey, why: Misbehaviour) {
        if let Ok(mut hub) = self.hub.lock()
            && hub.reports.len() < 10_000
        {
            hub.reports.push((self.me, *peer, why));
        }
    }

    fn set_blocked(&self, peers: Vec<PublicKey>) {
        if let Ok(mut hub) = self.hub.lock() {
            let me = self.me;
            hub.blocked.retain(|(a, _)| *a != me);
            for peer in peers {
                hub.blocked.insert((me, peer));
            }
        }
    }
}
