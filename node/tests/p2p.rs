//! The libp2p network end to end: several `P2p` nodes on 127.0.0.1 in one
//! process. Deadlines only stop a test from hanging; nothing asserts how
//! long anything took. "Did not arrive" is checked against a marker sent
//! afterwards on a path that does work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use phalanx_crypto::{ChainId, Keypair, PublicKey};
use phalanx_node::net::p2p::{Multiaddr, P2p, P2pConfig, P2pError};
use phalanx_node::net::{Channel, Gossip, Inbound, Misbehaviour, NetError, PeerInfo, Verdict};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

const DEADLINE: Duration = Duration::from_secs(30);
const BROADCAST: [Channel; 2] = [Channel::Consensus, Channel::Transactions];

struct Node {
    name: String,
    key: PublicKey,
    p2p: P2p,
    rx: Receiver<Inbound>,
}

impl Node {
    fn addr(&self) -> Multiaddr {
        self.p2p.listen_addrs()[0].clone()
    }

    fn peer(&self, key: &PublicKey) -> Option<PeerInfo> {
        self.p2p.peers().into_iter().find(|p| p.key == *key)
    }

    fn connected_to(&self, key: &PublicKey) -> bool {
        self.peer(key).is_some_and(|p| p.connected)
    }

    /// Connected and subscribed to both broadcast channels.
    fn hears(&self, other: &Node) -> bool {
        BROADCAST
            .iter()
            .all(|c| self.p2p.subscribed_peers(*c).contains(&other.key))
    }

    /// The next inbound message, judged valid (so relayed) if it was
    /// gossiped.
    async fn next(&mut self, what: &str) -> Inbound {
        match tokio::time::timeout(DEADLINE, self.rx.recv()).await {
            Ok(Some(message)) => {
                if let Some(ticket) = message.ticket {
                    self.p2p.judge(ticket, Verdict::Valid);
                }
                message
            }
            Ok(None) => panic!("{}: inbound channel closed waiting for {what}", self.name),
            Err(_) => panic!("{}: nothing arrived in 30 s waiting for {what}", self.name),
        }
    }

    /// Everything that arrives up to and including the first message with
    /// these bytes.
    async fn until(&mut self, bytes: &[u8]) -> Vec<Inbound> {
        let what = String::from_utf8_lossy(bytes).into_owned();
        let mut seen = Vec::new();
        loop {
            let message = self.next(&what).await;
            let done = message.bytes == bytes;
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

fn localhost() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

fn config(seed: u8, peers: &[&Node]) -> P2pConfig {
    let mut config = P2pConfig::new(
        keypair(seed),
        ChainId::new("p2p-test").unwrap(),
        localhost(),
    );
    config.peers = peers.iter().map(|n| (n.key, n.addr())).collect();
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_secs(1);
    config
}

async fn start(name: &str, config: P2pConfig) -> Node {
    let key = config.key.public();
    let (p2p, rx) = P2p::start(config)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Node {
        name: name.to_string(),
        key,
        p2p,
        rx,
    }
}

/// Polls `condition` until it holds, failing after the deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 30 s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node hears every other on both broadcast channels.
async fn wait_for_mesh(nodes: &[&Node]) {
    for a in nodes {
        for b in nodes {
            if a.key != b.key {
                let what = format!("{} hears {}", a.name, b.name);
                wait_until(&what, || a.hears(b)).await;
            }
        }
    }
}

/// n0, then n1..n(count-1), each configured with all earlier nodes: a full
/// mesh of dialed links.
async fn full_mesh(count: u8, tweak: impl Fn(u8, &mut P2pConfig)) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..count {
        let earlier: Vec<&Node> = nodes.iter().collect();
        let mut config = config(i, &earlier);
        tweak(i, &mut config);
        nodes.push(start(&format!("n{i}"), config).await);
    }
    wait_for_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_reaches_every_other_node_relayed_once_judged_valid() {
    init_logs();
    // A star: n1..n3 know only n0, so what n1 publishes reaches n2 and n3
    // through n0 once n0 judges it valid, and comes from n0 (the peer that
    // delivered it).
    let hub = start("n0", config(0, &[])).await;
    assert_eq!(
        hub.p2p
            .publish(Channel::Consensus, b"nobody hears".to_vec()),
        Ok(())
    );
    let mut nodes = vec![hub];
    for i in 1..4u8 {
        let config = config(i, &[&nodes[0]]);
        nodes.push(start(&format!("n{i}"), config).await);
    }
    for leaf in &nodes[1..] {
        wait_until("the hub hears every leaf", || nodes[0].hears(leaf)).await;
        wait_until("every leaf hears the hub", || leaf.hears(&nodes[0])).await;
    }
    let hub_peers = nodes[0].p2p.peers();
    assert_eq!(
        hub_peers.len(),
        3,
        "connected strangers are listed: {hub_peers:?}"
    );
    assert!(hub_peers.iter().all(|p| p.connected && !p.banned));

    for node in &nodes {
        for channel in BROADCAST {
            let bytes = format!("{channel} from {}", node.name).into_bytes();
            assert_eq!(node.p2p.publish(channel, bytes.clone()), Ok(()));
            // The same bytes again: already sent, not an error.
            assert_eq!(node.p2p.publish(channel, bytes), Ok(()));
        }
    }
    let names: Vec<(String, PublicKey)> = nodes.iter().map(|n| (n.name.clone(), n.key)).collect();
    let hub = nodes[0].key;
    // The hub goes first: it relays what it reads (`Node::next`).
    for node in &mut nodes {
        let mut expected: Vec<(PublicKey, Channel, Vec<u8>)> = names
            .iter()
            .filter(|(_, key)| *key != node.key)
            .flat_map(|(name, key)| {
                let from = if node.key == hub { *key } else { hub };
                BROADCAST.map(|c| (from, c, format!("{c} from {name}").into_bytes()))
            })
            .collect();
        while !expected.is_empty() {
            let got = node.next("the other nodes' broadcasts").await;
            let position = expected
                .iter()
                .position(|(from, channel, bytes)| {
                    *from == got.from && *channel == got.channel && *bytes == got.bytes
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} got an unexpected or duplicate message {:?} on {} from {}",
                        node.name,
                        String::from_utf8_lossy(&got.bytes),
                        got.channel,
                        got.from
                    )
                });
            expected.remove(position);
        }
        let stats = node.p2p.stats();
        for channel in BROADCAST {
            assert_eq!(
                stats.channel(channel).messages_in,
                3,
                "{}: {stats:?}",
                node.name
            );
            assert_eq!(
                stats.channel(channel).messages_out,
                1,
                "{}: {stats:?}",
                node.name
            );
        }
    }

    // What the hub judges invalid (or ignores) goes no further.
    for (bytes, verdict) in [
        (&b"forged"[..], Verdict::Invalid),
        (b"stale", Verdict::Ignored),
    ] {
        assert_eq!(
            nodes[1].p2p.publish(Channel::Consensus, bytes.to_vec()),
            Ok(())
        );
        let got = tokio::time::timeout(DEADLINE, nodes[0].rx.recv())
            .await
            .expect("the hub hears n1")
            .expect("the hub's inbound channel is open");
        assert_eq!((got.from, &got.bytes[..]), (nodes[1].key, bytes));
        nodes[0]
            .p2p
            .judge(got.ticket.expect("gossip comes with a ticket"), verdict);
    }
    assert_eq!(
        nodes[1].p2p.publish(Channel::Consensus, b"marker".to_vec()),
        Ok(())
    );
    nodes[0].until(b"marker").await;
    let seen = nodes[2].until(b"marker").await;
    assert_eq!(seen.len(), 1, "n2 got what the hub did not pass: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_only_its_target_and_size_limits_hold() {
    init_logs();
    // n2 takes at most 1 KiB and bans after two reports.
    let mut nodes = full_mesh(3, |i, config| {
        if i == 2 {
            config.max_message_bytes = 1024;
            config.ban_threshold = 2;
        }
    })
    .await;
    let [n0, n1, n2] = &mut nodes[..] else {
        unreachable!()
    };

    assert_eq!(
        n1.p2p.send(&n2.key, Channel::Sync, b"to n2".to_vec()),
        Ok(())
    );
    let got = n2.next("the direct message").await;
    assert_eq!(
        (got.from, got.channel, &got.bytes[..]),
        (n1.key, Channel::Sync, &b"to n2"[..])
    );
    assert_eq!(
        n1.p2p.send(&n0.key, Channel::Consensus, b"marker".to_vec()),
        Ok(())
    );
    let seen = n0.until(b"marker").await;
    assert_eq!(seen.len(), 1, "n0 got more than the marker: {seen:?}");
    assert_eq!(seen[0].channel, Channel::Consensus);

    // Refused by the sender.
    let limit = phalanx_node::net::MAX_NETWORK_MESSAGE_BYTES;
    let big = vec![0u8; limit + 1];
    let too_large = Err(NetError::TooLarge {
        size: limit + 1,
        limit,
    });
    assert_eq!(n1.p2p.send(&n2.key, Channel::Sync, big.clone()), too_large);
    assert_eq!(n1.p2p.publish(Channel::Consensus, big), too_large);
    let stranger = keypair(99).public();
    assert_eq!(
        n1.p2p.send(&stranger, Channel::Sync, vec![1]),
        Err(NetError::UnknownPeer(stranger))
    );
    assert_eq!(
        n1.p2p.send(&n1.key, Channel::Sync, vec![1]),
        Err(NetError::UnknownPeer(n1.key))
    );

    // Refused by the receiver: n1 allows 2 KiB, n2 does not. Dropped,
    // counted, reported against n1; the second report bans n1.
    assert_eq!(n1.p2p.send(&n2.key, Channel::Sync, vec![7; 2048]), Ok(()));
    wait_until("n2 counts an oversize message", || {
        n2.p2p.stats().dropped_oversize == 1
    })
    .await;
    assert!(!n2.peer(&n1.key).unwrap().banned);
    assert_eq!(
        n0.p2p.send(&n2.key, Channel::Sync, b"after".to_vec()),
        Ok(())
    );
    let seen = n2.until(b"after").await;
    assert!(
        seen.iter().all(|m| m.bytes.len() < 1024),
        "delivered: {seen:?}"
    );
    assert_eq!(n1.p2p.send(&n2.key, Channel::Sync, vec![7; 2048]), Ok(()));
    wait_until("n2 bans n1", || n2.peer(&n1.key).unwrap().banned).await;
    assert_eq!(n2.p2p.stats().dropped_oversize, 2);
    assert_eq!(n2.p2p.stats().bans, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_redialed_and_hears_again() {
    init_logs();
    let n0 = start("n0", config(0, &[])).await;
    let n1 = start("n1", config(1, &[&n0])).await;
    let n2 = start("n2", config(2, &[&n0, &n1])).await;
    let n2_addr = n2.addr();
    // n0 and n1 keep n2 connected too: they are the ones that redial it.
    n0.p2p.add_peer(n2.key, n2_addr.clone()).unwrap();
    n1.p2p.add_peer(n2.key, n2_addr.clone()).unwrap();
    wait_for_mesh(&[&n0, &n1, &n2]).await;

    let n2_key = n2.key;
    n2.p2p.shutdown().await;
    wait_until("n0 and n1 see n2 leave", || {
        !n0.connected_to(&n2_key) && !n1.connected_to(&n2_key)
    })
    .await;
    // Same key and port; it dials nobody, so only redials bring it back.
    let mut config = config(2, &[]);
    config.listen = n2_addr.clone();
    let mut n2 = start("n2'", config).await;
    assert_eq!(n2.addr(), n2_addr);
    let (mut n0, mut n1) = (n0, n1);
    wait_for_mesh(&[&n0, &n1, &n2]).await;

    assert_eq!(
        n0.p2p.publish(Channel::Consensus, b"welcome back".to_vec()),
        Ok(())
    );
    let got = n2.next("n0's broadcast").await;
    assert_eq!((got.from, &got.bytes[..]), (n0.key, &b"welcome back"[..]));
    assert_eq!(
        n2.p2p.publish(Channel::Transactions, b"I am back".to_vec()),
        Ok(())
    );
    // n0 relays it once read, so n1 may have n0's copy first.
    let (k0, k1) = (n0.key, n1.key);
    for (node, other) in [(&mut n0, k1), (&mut n1, k0)] {
        let got = node.until(b"I am back").await.pop().unwrap();
        assert_eq!(got.channel, Channel::Transactions);
        assert!(got.from == n2.key || got.from == other, "{got:?}");
    }
    assert_eq!(
        n1.p2p.send(&n2.key, Channel::Sync, b"direct".to_vec()),
        Ok(())
    );
    let got = n2.next("n1's direct message").await;
    assert_eq!((got.from, &got.bytes[..]), (n1.key, &b"direct"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reports_ban_a_peer() {
    init_logs();
    let mut nodes = full_mesh(3, |i, config| {
        if i == 0 {
            config.ban_threshold = 3;
            config.ban_duration = Duration::from_secs(600);
        }
    })
    .await;
    let [n0, n1, n2] = &mut nodes[..] else {
        unreachable!()
    };

    for _ in 0..2 {
        n0.p2p.report(&n1.key, Misbehaviour::BadSignature);
    }
    assert!(!n0.peer(&n1.key).unwrap().banned, "under the threshold");
    n0.p2p.report(&n1.key, Misbehaviour::Malformed);
    assert!(n0.peer(&n1.key).unwrap().banned);
    assert_eq!(n0.p2p.stats().bans, 1);
    wait_until("n0 disconnects n1", || !n0.connected_to(&n1.key)).await;

    // n1 keeps trying (n0 is one of its configured peers) and keeps
    // talking: nothing it delivers reaches n0 (its broadcast may, relayed
    // by n2, as n2's).
    assert_eq!(
        n1.p2p.publish(Channel::Consensus, b"from banned".to_vec()),
        Ok(())
    );
    assert_eq!(
        n1.p2p
            .send(&n0.key, Channel::Sync, b"direct from banned".to_vec()),
        Ok(())
    );
    n2.until(b"from banned").await;
    assert_eq!(
        n2.p2p.publish(Channel::Consensus, b"marker".to_vec()),
        Ok(())
    );
    let seen = n0.until(b"marker").await;
    assert!(
        seen.iter().all(|m| m.from != n1.key),
        "n0 heard n1: {seen:?}"
    );
    assert_eq!(
        n0.p2p.send(&n1.key, Channel::Sync, b"to banned".to_vec()),
        Ok(())
    );
    assert!(n0.p2p.stats().dropped_blocked >= 1);
    let info = n0.peer(&n1.key).unwrap();
    assert!(info.banned && !info.connected, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_ends_and_the_peer_is_redialed() {
    init_logs();
    // n1 keeps n0 connected (n0 is in its config) and bans it briefly.
    let mut nodes = full_mesh(2, |i, config| {
        if i == 1 {
            config.ban_threshold = 1;
            config.ban_duration = Duration::from_secs(2);
        }
    })
    .await;
    let [n0, n1] = &mut nodes[..] else {
        unreachable!()
    };
    n1.p2p.report(&n0.key, Misbehaviour::NotAMember);
    assert!(n1.peer(&n0.key).unwrap().banned);
    assert_eq!(n1.p2p.stats().bans, 1);
    wait_until("n1 lifts the ban", || !n1.peer(&n0.key).unwrap().banned).await;
    wait_for_mesh(&[&*n0, &*n1]).await;
    assert_eq!(
        n0.p2p.publish(Channel::Consensus, b"forgiven".to_vec()),
        Ok(())
    );
    let seen = n1.until(b"forgiven").await;
    assert_eq!(seen.last().unwrap().from, n0.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_drops_traffic_and_clearing_restores_it() {
    init_logs();
    let mut nodes = full_mesh(3, |_, _| {}).await;
    let [n0, n1, n2] = &mut nodes[..] else {
        unreachable!()
    };

    n0.p2p.set_blocked(vec![n1.key]);
    wait_until("n0 drops its link to n1", || !n0.connected_to(&n1.key)).await;
    // n1 is a stranger to n0 (n1 dialed n0): forgotten once disconnected.
    assert_eq!(n0.peer(&n1.key), None, "blocked is not banned");

    // Nothing n1 delivers reaches n0 (its broadcast may, relayed by n2,
    // as n2's).
    assert_eq!(
        n1.p2p.publish(Channel::Transactions, b"cut off".to_vec()),
        Ok(())
    );
    n2.until(b"cut off").await;
    assert_eq!(
        n2.p2p.publish(Channel::Transactions, b"marker 1".to_vec()),
        Ok(())
    );
    let seen = n0.until(b"marker 1").await;
    assert!(
        seen.iter().all(|m| m.from != n1.key),
        "n0 heard n1: {seen:?}"
    );
    // Nothing from n0 reaches n1.
    assert_eq!(
        n0.p2p.send(&n1.key, Channel::Sync, b"not sent".to_vec()),
        Ok(())
    );
    assert_eq!(
        n2.p2p.send(&n1.key, Channel::Sync, b"marker 2".to_vec()),
        Ok(())
    );
    let seen = n1.until(b"marker 2").await;
    assert!(
        seen.iter().all(|m| m.from != n0.key),
        "n1 heard n0: {seen:?}"
    );

    n0.p2p.set_blocked(vec![]);
    wait_for_mesh(&[&*n0, &*n1]).await;
    assert_eq!(
        n1.p2p.publish(Channel::Consensus, b"reunited".to_vec()),
        Ok(())
    );
    let seen = n0.until(b"reunited").await;
    assert_eq!(seen.last().unwrap().from, n1.key);
    assert_eq!(
        n0.p2p.send(&n1.key, Channel::Sync, b"hello again".to_vec()),
        Ok(())
    );
    let seen = n1.until(b"hello again").await;
    assert_eq!(seen.last().unwrap().from, n0.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reports_listen_failures_and_dropping_the_handle_frees_the_port() {
    init_logs();
    let n0 = start("n0", config(0, &[])).await;
    let taken = n0.addr();
    let mut clash = config(1, &[]);
    clash.listen = taken.clone();
    match P2p::start(clash).await {
        Err(P2pError::Listen { address, .. }) => assert_eq!(address, taken),
        other => panic!("listening on a taken port: {other:?}"),
    }
    let mut udp = config(1, &[]);
    udp.listen = "/ip4/127.0.0.1/udp/0".parse().unwrap();
    assert!(matches!(
        P2p::start(udp).await,
        Err(P2pError::Listen { .. })
    ));
    let mut own = config(1, &[]);
    own.peers = vec![(keypair(1).public(), taken.clone())];
    assert!(matches!(
        P2p::start(own).await,
        Err(P2pError::InvalidPeer { .. })
    ));

    // Dropping the handle stops the task, which closes the listener.
    drop(n0);
    let mut reuse = config(0, &[]);
    reuse.listen = taken.clone();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match P2p::start(reuse.clone()).await {
            Ok((p2p, _rx)) => {
                assert_eq!(p2p.listen_addrs(), vec![taken]);
                p2p.shutdown().await;
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the port stayed taken 30 s after the handle was dropped: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
