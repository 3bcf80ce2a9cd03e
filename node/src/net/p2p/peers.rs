//! The peer table: which peers are configured, connected, reported and
//! banned, and when to redial each. Pure bookkeeping: time is passed in,
//! nothing here touches the swarm (the network task acts on what it says).

use crate::net::{Channel, PeerInfo};
use libp2p::{Multiaddr, PeerId};
use phalanx_crypto::PublicKey;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// The rules the table applies (from `P2pConfig`).
#[derive(Debug, Clone)]
pub(super) struct PeerPolicy {
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub ban_threshold: u32,
    pub ban_window: Duration,
    pub ban_duration: Duration,
    /// Entries for peers that are not configured (connected strangers,
    /// reported or banned peers) stop here; configured peers always fit.
    pub max_tracked_peers: usize,
}

#[derive(Debug)]
struct PeerEntry {
    peer_id: PeerId,
    /// The address to dial, for peers we keep connected.
    dial_address: Option<Multiaddr>,
    /// The remote address of the latest connection.
    remote_address: Option<Multiaddr>,
    connected_since: Option<Instant>,
    banned_until: Option<Instant>,
    /// Reports within the ban window, oldest first (at most the threshold).
    reports: VecDeque<Instant>,
    backoff: Duration,
    next_dial: Instant,
    /// Broadcast channels the peer told us it subscribes to.
    subscribed: BTreeSet<Channel>,
}

impl PeerEntry {
    fn new(peer_id: PeerId, policy: &PeerPolicy, now: Instant) -> PeerEntry {
        PeerEntry {
            peer_id,
            dial_address: None,
            remote_address: None,
            connected_since: None,
            banned_until: None,
            reports: VecDeque::new(),
            backoff: policy.reconnect_min,
            next_dial: now,
            subscribed: BTreeSet::new(),
        }
    }

    fn is_banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }

    fn is_configured(&self) -> bool {
        self.dial_address.is_some()
    }

    /// Nothing left worth remembering about a stranger.
    fn is_stale(&self, now: Instant, window: Duration) -> bool {
        !self.is_configured()
            && self.connected_since.is_none()
            && self.banned_until.is_none()
            && self.reports.back().is_none_or(|last| *last + window <= now)
    }
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReportOutcome {
    /// Counted; the peer is under the threshold.
    Counted,
    /// This report reached the threshold: the peer is banned from now.
    Banned,
    /// The peer is already banned; nothing more to count.
    AlreadyBanned,
    /// The table is full of other strangers: not tracked.
    Untracked,
}

#[derive(Debug)]
pub(super) struct PeerTable {
    policy: PeerPolicy,
    entries: BTreeMap<PublicKey, PeerEntry>,
}

impl PeerTable {
    pub fn new(policy: PeerPolicy) -> PeerTable {
        PeerTable {
            policy,
            entries: BTreeMap::new(),
        }
    }

    /// The entry for `key`, created if there is room (or if `configured`).
    fn entry(
        &mut self,
        key: PublicKey,
        peer_id: PeerId,
        configured: bool,
        now: Instant,
    ) -> Option<&mut PeerEntry> {
        let full = self.entries.len() >= self.policy.max_tracked_peers;
        if full && !configured && !self.entries.contains_key(&key) {
            return None;
        }
        let policy = &self.policy;
        Some(
            self.entries
                .entry(key)
                .or_insert_with(|| PeerEntry::new(peer_id, policy, now)),
        )
    }

    /// Keeps `key` connected at `address` from now on, dialing it at once.
    pub fn add_configured(
        &mut self,
        key: PublicKey,
        peer_id: PeerId,
        address: Multiaddr,
        now: Instant,
    ) {
        let min = self.policy.reconnect_min;
        if let Some(entry) = self.entry(key, peer_id, true, now) {
            entry.dial_address = Some(address);
            entry.backoff = min;
            entry.next_dial = now;
        }
    }

    /// A first connection to `key` is up. False if the table has no room
    /// for another stranger: the caller should close the connection.
    pub fn connected(
        &mut self,
        key: PublicKey,
        peer_id: PeerId,
        remote: Option<Multiaddr>,
        now: Instant,
    ) -> bool {
        match self.entry(key, peer_id, false, now) {
            Some(entry) => {
                entry.connected_since = Some(now);
                entry.remote_address = remote.or(entry.remote_address.take());
                true
            }
            None => false,
        }
    }

    /// The last connection to `key` closed. A connection that stayed up for
    /// `reconnect_max` or longer resets the back-off; one that dropped
    /// sooner keeps growing it, so a peer that accepts and then hangs up is
    /// not redialed in a tight loop.
    pub fn disconnected(&mut self, key: &PublicKey, now: Instant) {
        let policy = &self.policy;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(since) = entry.connected_since.take()
            && now.saturating_duration_since(since) >= policy.reconnect_max
        {
            entry.backoff = policy.reconnect_min;
        }
        entry.subscribed.clear();
        entry.next_dial = now + entry.backoff;
        if entry.is_stale(now, policy.ban_window) {
            self.entries.remove(key);
        }
    }

    /// Configured or connected: a peer `send` can reach.
    pub fn knows(&self, key: &PublicKey) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.is_configured() || e.connected_since.is_some())
    }

    pub fn is_banned(&self, key: &PublicKey, now: Instant) -> bool {
        self.entries.get(key).is_some_and(|e| e.is_banned(now))
    }

    pub fn dial_address(&self, key: &PublicKey) -> Option<Multiaddr> {
        self.entries.get(key).and_then(|e| e.dial_address.clone())
    }

    /// Counts a report against `key`; `ban_threshold` reports within
    /// `ban_window` ban it for `ban_duration`.
    pub fn report(&mut self, key: PublicKey, peer_id: PeerId, now: Instant) -> ReportOutcome {
        let policy = self.policy.clone();
        let Some(entry) = self.entry(key, peer_id, false, now) else {
            return ReportOutcome::Untracked;
        };
        if entry.is_banned(now) {
            return ReportOutcome::AlreadyBanned;
        }
        while entry
            .reports
            .front()
            .is_some_and(|t| *t + policy.ban_window <= now)
        {
            entry.reports.pop_front();
        }
        entry.reports.push_back(now);
        let threshold = usize::try_from(policy.ban_threshold).unwrap_or(usize::MAX);
        if entry.reports.len() < threshold {
            return ReportOutcome::Counted;
        }
        entry.reports.clear();
        entry.banned_until = Some(now + policy.ban_duration);
        ReportOutcome::Banned
    }

    /// Lifts bans that have run out (their peers are redialed at once, with
    /// the back-off reset) and forgets strangers with nothing to remember.
    /// Returns the peers whose ban was lifted.
    pub fn expire(&mut self, now: Instant) -> Vec<PublicKey> {
        let policy = &self.policy;
        let mut lifted = Vec::new();
        for (key, entry) in &mut self.entries {
            if entry.banned_until.is_some_and(|until| until <= now) {
                entry.banned_until = None;
                entry.backoff = policy.reconnect_min;
                entry.next_dial = now;
                lifted.push(*key);
            }
        }
        self.entries
            .retain(|_, e| !e.is_stale(now, policy.ban_window));
        lifted
    }

    /// Configured peers to dial now: disconnected, not banned, not in
    /// `skip`, and past their back-off. Each one's next attempt moves one
    /// back-off later and the back-off doubles (up to `reconnect_max`).
    pub fn due_dials(
        &mut self,
        now: Instant,
        skip: impl Fn(&PublicKey) -> bool,
    ) -> Vec<(PeerId, Multiaddr)> {
        let max = self.policy.reconnect_max;
        let mut due = Vec::new();
        for (key, entry) in &mut self.entries {
            let Some(address) = &entry.dial_address else {
                continue;
            };
            if entry.connected_since.is_some()
                || entry.is_banned(now)
                || skip(key)
                || entry.next_dial > now
            {
                continue;
            }
            due.push((entry.peer_id, address.clone()));
            entry.next_dial = now + entry.backoff;
            entry.backoff = entry.backoff.saturating_mul(2).min(max);
        }
        due
    }

    /// Dials `key` on the next round with the back-off reset (after a
    /// block is cleared).
    pub fn redial_soon(&mut self, key: &PublicKey, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.backoff = self.policy.reconnect_min;
            entry.next_dial = now;
        }
    }

    pub fn set_subscribed(&mut self, key: &PublicKey, channel: Channel, subscribed: bool) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if subscribed {
            entry.subscribed.insert(channel);
        } else {
            entry.subscribed.remove(&channel);
        }
    }

    /// Connected peers subscribed to `channel`.
    pub fn subscribed(&self, channel: Channel) -> Vec<PublicKey> {
        self.entries
            .iter()
            .filter(|(_, e)| e.connected_since.is_some() && e.subscribed.contains(&channel))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Banned peers with their PeerIds.
    pub fn banned(&self, now: Instant) -> Vec<(PublicKey, PeerId)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.is_banned(now))
            .map(|(key, e)| (*key, e.peer_id))
            .collect()
    }

    /// Configured, connected and banned peers, as `GET /peers` shows them.
    pub fn infos(&self, now: Instant) -> Vec<PeerInfo> {
        self.entries
            .iter()
            .filter(|(_, e)| e.is_configured() || e.connected_since.is_some() || e.is_banned(now))
            .map(|(key, e)| PeerInfo {
                key: *key,
                address: e
                    .dial_address
                    .as_ref()
                    .or(e.remote_address.as_ref())
                    .map(|a| a.to_string()),
                connected: e.connected_since.is_some(),
                banned: e.is_banned(now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;

    fn policy() -> PeerPolicy {
        PeerPolicy {
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(8),
            ban_threshold: 3,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(100),
            max_tracked_peers: 4,
        }
    }

    fn peer(seed: u8) -> (PublicKey, PeerId) {
        let key = Keypair::from_seed(&[seed; 32]).public();
        (key, super::super::peer_id_of(&key).unwrap())
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn dials_back_off_exponentially_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(policy());
        let (key, id) = peer(1);
        table.add_configured(key, id, addr(1), t0);
        let none = |_: &PublicKey| false;
        let mut dial_times = vec![];
        for s in 0..40 {
            let now = t0 + secs(s);
            if !table.due_dials(now, none).is_empty() {
                dial_times.push(s);
            }
        }
        // Gaps 1, 2, 4, 8, 8, ...: doubling, capped at reconnect_max.
        assert_eq!(dial_times, vec![0, 1, 3, 7, 15, 23, 31, 39]);
    }

    #[test]
    fn a_stable_connection_resets_the_back_off_and_a_short_one_does_not() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(policy());
        let (key, id) = peer(1);
        let none = |_: &PublicKey| false;
        table.add_configured(key, id, addr(1), t0);
        for s in [0, 1, 3, 7] {
            assert_eq!(table.due_dials(t0 + secs(s), none).len(), 1);
        }
        // Up for 2 s only: the back-off (8 s) keeps growing.
        assert!(table.connected(key, id, None, t0 + secs(8)));
        assert!(
            table.due_dials(t0 + secs(9), none).is_empty(),
            "connected: no dial"
        );
        table.disconnected(&key, t0 + secs(10));
        assert!(table.due_dials(t0 + secs(17), none).is_empty());
        assert_eq!(table.due_dials(t0 + secs(18), none).len(), 1);
        // Up for reconnect_max: the next dial comes reconnect_min later.
        assert!(table.connected(key, id, None, t0 + secs(20)));
        table.disconnected(&key, t0 + secs(28));
        assert!(table.due_dials(t0 + secs(28), none).is_empty());
        assert_eq!(table.due_dials(t0 + secs(29), none).len(), 1);
    }

    #[test]
    fn reports_within_the_window_ban_and_the_ban_expires() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(policy());
        let (key, id) = peer(2);
        table.add_configured(key, id, addr(2), t0);
        assert_eq!(table.report(key, id, t0), ReportOutcome::Counted);
        assert_eq!(table.report(key, id, t0 + secs(10)), ReportOutcome::Counted);
        // The first report has left the 60 s window by now.
        assert_eq!(table.report(key, id, t0 + secs(61)), ReportOutcome::Counted);
        assert!(!table.is_banned(&key, t0 + secs(61)));
        assert_eq!(table.report(key, id, t0 + secs(62)), ReportOutcome::Banned);
        let banned_at = t0 + secs(62);
        assert!(table.is_banned(&key, banned_at));
        assert_eq!(table.banned(banned_at), vec![(key, id)]);
        assert_eq!(
            table.report(key, id, banned_at),
            ReportOutcome::AlreadyBanned
        );
        let info = &table.infos(banned_at)[0];
        assert!(info.banned && !info.connected);
        // No dial while banned.
        let none = |_: &PublicKey| false;
        assert!(table.due_dials(banned_at + secs(50), none).is_empty());
        // The ban ends after ban_duration, and the peer is dialed at once.
        let end = banned_at + secs(100);
        assert_eq!(table.expire(end), vec![key]);
        assert!(!table.is_banned(&key, end));
        assert_eq!(table.due_dials(end, none).len(), 1);
    }

    #[test]
    fn strangers_are_bounded_and_forgotten() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(policy());
        let (configured, cid) = peer(1);
        table.add_configured(configured, cid, addr(1), t0);
        let strangers: Vec<_> = (10..13).map(peer).collect();
        for (key, id) in &strangers {
            assert!(table.connected(*key, *id, Some(addr(9)), t0));
        }
        // Four entries: a fifth stranger is refused, a configured peer is not.
        let (extra, extra_id) = peer(20);
        assert!(!table.connected(extra, extra_id, None, t0));
        assert_eq!(table.report(extra, extra_id, t0), ReportOutcome::Untracked);
        let (more, more_id) = peer(21);
        table.add_configured(more, more_id, addr(2), t0);
        assert!(table.knows(&more));
        // A stranger that leaves with no reports is forgotten at once; one
        // with a report is kept until the report leaves the window.
        let (a, _) = strangers[0];
        let (b, b_id) = strangers[1];
        table.disconnected(&a, t0 + secs(1));
        assert!(!table.knows(&a));
        assert_eq!(table.report(b, b_id, t0 + secs(1)), ReportOutcome::Counted);
        table.disconnected(&b, t0 + secs(2));
        assert!(!table.knows(&b), "not connected, not configured");
        assert_eq!(table.infos(t0 + secs(2)).len(), 3);
        table.expire(t0 + secs(30));
        assert_eq!(table.report(b, b_id, t0 + secs(30)), ReportOutcome::Counted);
        table.expire(t0 + secs(200));
        assert!(table.connected(extra, extra_id, None, t0 + secs(200)));
    }

    #[test]
    fn skipped_and_connected_peers_are_not_dialed_and_subscriptions_follow_connections() {
        let t0 = Instant::now();
        let mut table = PeerTable::new(policy());
        let (key, id) = peer(3);
        table.add_configured(key, id, addr(3), t0);
        assert!(table.due_dials(t0, |k| *k == key).is_empty());
        assert!(table.connected(key, id, None, t0));
        table.set_subscribed(&key, Channel::Consensus, true);
        assert_eq!(table.subscribed(Channel::Consensus), vec![key]);
        assert!(table.subscribed(Channel::Transactions).is_empty());
        table.disconnected(&key, t0 + secs(1));
        assert!(table.subscribed(Channel::Consensus).is_empty());
        table.redial_soon(&key, t0 + secs(1));
        assert_eq!(table.due_dials(t0 + secs(1), |_| false).len(), 1);
    }
}
