//! Block sync's decisions, without a network: [`BlockSync`] over a
//! one-validator HotStuff chain in memory, whose blocks carry real quorum
//! certificates (one signature is a quorum).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use phalanx_chain::genesis::{GenesisAccount, GenesisValidator};
use phalanx_chain::{
    Address, Amount, BftCertificate, BlockBuilder, ChainId, ConsensusKind, Genesis, Justification,
    MemStore, Rules, StateChanges, ValidatorIndex, ValidatorSignature,
};
use phalanx_chain::{Block, Height, Store};
use phalanx_consensus::Protocol;
use phalanx_consensus::hotstuff::HotStuff;
use phalanx_crypto::PublicKey;
use phalanx_crypto::{Domain, Keypair};
use phalanx_node::net::Misbehaviour;
use phalanx_node::sync::{Applied, BlockSync, NodeSync, SYNC_LAG, SyncAction, SyncConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const BATCH: u32 = 64;
const TIMEOUT: Duration = Duration::from_secs(3);

fn validator() -> Keypair {
    Keypair::from_seed(&[1; 32])
}

fn peer(i: u8) -> PublicKey {
    Keypair::from_seed(&[100 + i; 32]).public()
}

/// A chain whose committee is one validator, so one signature is a
/// quorum certificate.
fn genesis() -> Genesis {
    Genesis {
        chain_id: ChainId::new("sync-test").unwrap(),
        consensus: ConsensusKind::Hotstuff,
        genesis_time_ms: 1_000,
        validators: vec![GenesisValidator {
            public_key: validator().public(),
            address: "/memory/0".into(),
        }],
        pow: None,
        accounts: vec![GenesisAccount {
            address: Address::from(validator().public()),
            balance: Amount(1_000),
        }],
    }
}

struct Fixture {
    sync: BlockSync<HotStuff>,
    store: Arc<MemStore>,
    genesis: Genesis,
    now: Instant,
}

fn fixture() -> Fixture {
    let genesis = genesis();
    let store = Arc::new(MemStore::new());
    store.init_genesis(&genesis).unwrap();
    let context = HotStuff::context(&genesis, None).unwrap();
    let config = SyncConfig {
        batch_blocks: BATCH,
        request_timeout: TIMEOUT,
    };
    let sync = BlockSync::new(context, store.clone(), config);
    Fixture {
        sync,
        store,
        genesis,
        now: Instant::now(),
    }
}

impl Fixture {
    /// `n` empty blocks on the store's head in consecutive views, each
    /// carrying a quorum certificate over its parent: every block but
    /// the last three is proved final by the ones after it.
    fn certified_chain(&self, n: usize) -> Vec<(Block, StateChanges)> {
        let key = validator();
        let head = self.store.head().unwrap().unwrap();
        let accumulator = self.store.accumulator().unwrap();
        let mut parent = head.header.clone();
        let mut parent_view = match parent.justification {
            Justification::Bft { view, .. } => view,
            _ => 0,
        };
        let mut chain = Vec::new();
        for _ in 0..n {
            let view = parent_view + 1;
            let signatures = if parent.height == Height(0) {
                Vec::new()
            } else {
                let vote = Domain::HotStuffVote
                    .begin(&self.genesis.chain_id)
                    .u64_le(parent_view)
                    .bytes(parent.hash().as_bytes())
                    .finish();
                vec![ValidatorSignature {
                    validator: ValidatorIndex(0),
                    signature: key.sign(&vote),
                }]
            };
            let justification = Justification::Bft {
                view,
                parent_cert: BftCertificate {
                    view: parent_view,
                    block: parent.hash(),
                    signatures,
                },
            };
            let builder = BlockBuilder::new(
                Rules::of(&self.genesis),
                &parent,
                &*self.store,
                &accumulator,
                Address::from(key.public()),
            );
            let (block, changes) = builder
                .finish(parent.timestamp_ms + 1, justification)
                .unwrap();
            parent = block.header().clone();
            parent_view = view;
            chain.push((block, changes));
        }
        chain
    }

    fn blocks(&self, n: usize) -> Vec<Block> {
        self.certified_chain(n)
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }

    fn commit(&self, n: usize) {
        for (block, changes) in self.certified_chain(n) {
            let height = block.header().height;
            self.store.commit_block(&block, &changes, height).unwrap();
        }
    }

    /// Starts fetching from `from` (a status far ahead of the head).
    fn fetch_from(&mut self, from: PublicKey, peers: &[PublicKey]) {
        let actions = self.status(from, 100, peers);
        assert!(matches!(
            actions.as_slice(),
            [SyncAction::Send(to, NodeSync::BlocksRequest { .. })] if *to == from
        ));
    }

    fn status(&mut self, from: PublicKey, height: u64, peers: &[PublicKey]) -> Vec<SyncAction> {
        let status = NodeSync::Status {
            height: Height(height),
        };
        self.sync.on_message(from, status, self.now, peers)
    }

    fn send_blocks(
        &mut self,
        from: PublicKey,
        blocks: Vec<Block>,
        peers: &[PublicKey],
    ) -> Vec<SyncAction> {
        self.sync
            .on_message(from, NodeSync::Blocks { blocks }, self.now, peers)
    }
}

fn request(from: u64) -> NodeSync {
    NodeSync::BlocksRequest {
        from: Height(from),
        count: BATCH,
    }
}

#[test]
fn a_peer_more_than_the_lag_ahead_starts_a_fetch() {
    let mut f = fixture();
    let (a, b) = (peer(1), peer(2));
    assert_eq!(f.status(a, SYNC_LAG, &[a, b]), vec![]);
    assert!(!f.sync.is_fetching());
    assert_eq!(f.sync.best_seen(), Height(SYNC_LAG));
    assert_eq!(
        f.status(b, SYNC_LAG + 1, &[a, b]),
        vec![SyncAction::Send(b, request(1))]
    );
    assert!(f.sync.is_fetching());
    // One fetch at a time.
    assert_eq!(f.status(a, 50, &[a, b]), vec![]);
    assert_eq!(f.sync.best_seen(), Height(50));
}

#[test]
fn a_fetch_starts_right_above_the_head() {
    let mut f = fixture();
    f.commit(5);
    let a = peer(1);
    assert_eq!(f.status(a, 30, &[a]), vec![SyncAction::Send(a, request(6))]);
}

#[test]
fn a_fetch_starts_right_above_the_finalized_block() {
    // Blocks above the finalized height (proof of work) may lose to the
    // peer's branch: the fetch starts below them, where the peer's final
    // blocks must link.
    let mut f = fixture();
    for (block, changes) in f.certified_chain(5) {
        let finalized = block.header().height.min(Height(2));
        f.store.commit_block(&block, &changes, finalized).unwrap();
    }
    let a = peer(1);
    assert_eq!(f.status(a, 30, &[a]), vec![SyncAction::Send(a, request(3))]);
}

#[test]
fn only_blocks_a_three_chain_proves_final_are_applied() {
    let mut f = fixture();
    let a = peer(1);
    f.fetch_from(a, &[a]);
    let blocks = f.blocks(6);
    let actions = f.send_blocks(a, blocks.clone(), &[a]);
    assert_eq!(
        actions,
        vec![SyncAction::Apply {
            from: a,
            blocks: blocks[..3].to_vec()
        }]
    );
    assert!(f.sync.is_fetching());
}

#[test]
fn a_batch_that_proves_nothing_ends_the_sync() {
    let mut f = fixture();
    let a = peer(1);
    f.fetch_from(a, &[a]);
    let blocks = f.blocks(3);
    assert_eq!(f.send_blocks(a, blocks, &[a]), vec![SyncAction::Rejoin]);
    assert!(!f.sync.is_fetching());
}

#[test]
fn blocks_from_a_peer_not_asked_are_ignored() {
    let mut f = fixture();
    let (a, b) = (peer(1), peer(2));
    assert_eq!(f.send_blocks(a, f.blocks(6), &[a, b]), vec![]);
    f.fetch_from(a, &[a, b]);
    assert_eq!(f.send_blocks(b, f.blocks(6), &[a, b]), vec![]);
    assert!(f.sync.is_fetching());
}

#[test]
fn a_forged_certificate_reports_the_sender_and_the_fetch_moves_on() {
    let mut f = fixture();
    let (a, b) = (peer(1), peer(2));
    f.fetch_from(a, &[a, b]);
    let mut blocks = f.blocks(6);
    if let Justification::Bft { parent_cert, .. } = &mut blocks[2].header_mut().justification {
        let forged = Keypair::from_seed(&[9; 32]).sign(
            &Domain::HotStuffVote
                .begin(&f.genesis.chain_id)
                .bytes(b"forged")
                .finish(),
        );
        parent_cert.signatures[0].signature = forged;
    }
    let actions = f.send_blocks(a, blocks, &[a, b]);
    assert_eq!(
        actions[0],
        SyncAction::Report(a, Misbehaviour::BadSignature)
    );
    assert!(
        matches!(
            &actions[1..],
            [SyncAction::Send(_, NodeSync::BlocksRequest { .. })]
        ),
        "{actions:?}"
    );
    assert!(f.sync.is_fetching());
}

#[test]
fn blocks_that_do_not_link_report_the_sender_and_with_no_peer_left_end_the_sync() {
    let mut f = fixture();
    let a = peer(1);
    f.fetch_from(a, &[a]);
    let mut blocks = f.blocks(6);
    blocks.remove(1);
    assert_eq!(
        f.send_blocks(a, blocks, &[]),
        vec![
            SyncAction::Report(a, Misbehaviour::Malformed),
            SyncAction::Rejoin
        ]
    );
    assert!(!f.sync.is_fetching());
}

#[test]
fn after_applying_the_sync_goes_on_while_behind_then_rejoins() {
    let mut f = fixture();
    let a = peer(1);
    assert_eq!(f.status(a, 20, &[a]), vec![SyncAction::Send(a, request(1))]);
    f.commit(3);
    let applied = Applied {
        count: 3,
        rejected: false,
    };
    assert_eq!(
        f.sync.applied(a, applied, f.now),
        vec![SyncAction::Send(a, request(4))]
    );
    f.commit(9);
    let applied = Applied {
        count: 9,
        rejected: false,
    };
    // 20 is within the lag of 12: the protocol's catch-up does the rest.
    assert_eq!(f.sync.applied(a, applied, f.now), vec![SyncAction::Rejoin]);
    assert!(!f.sync.is_fetching());
    assert_eq!(f.sync.applied(a, applied, f.now), vec![]);
}

#[test]
fn a_block_that_does_not_apply_reports_the_sender() {
    let mut f = fixture();
    let a = peer(1);
    f.fetch_from(a, &[a]);
    let applied = Applied {
        count: 0,
        rejected: true,
    };
    assert_eq!(
        f.sync.applied(a, applied, f.now),
        vec![
            SyncAction::Report(a, Misbehaviour::Malformed),
            SyncAction::Rejoin
        ]
    );
}

#[test]
fn a_stalled_fetch_goes_to_the_next_peer_or_ends() {
    let mut f = fixture();
    let (a, b) = (peer(1), peer(2));
    f.fetch_from(a, &[a, b]);
    let early = f.now + TIMEOUT - Duration::from_millis(1);
    assert_eq!(
        f.sync.on_tick(early, &[a, b]),
        vec![SyncAction::Send(a, NodeSync::StatusRequest)]
    );
    // The cursor moved to b.
    let late = f.now + TIMEOUT;
    assert_eq!(
        f.sync.on_tick(late, &[a, b]),
        vec![
            SyncAction::Send(b, request(1)),
            SyncAction::Send(b, NodeSync::StatusRequest)
        ]
    );
    assert!(f.sync.is_fetching());
    let later = late + TIMEOUT;
    assert_eq!(f.sync.on_tick(later, &[]), vec![SyncAction::Rejoin]);
    assert!(!f.sync.is_fetching());
}

#[test]
fn ticks_ask_the_peers_for_their_height_in_turn() {
    let mut f = fixture();
    let (a, b) = (peer(1), peer(2));
    let asked: Vec<_> = (0..3)
        .flat_map(|_| f.sync.on_tick(f.now, &[a, b]))
        .collect();
    assert_eq!(
        asked,
        vec![
            SyncAction::Send(a, NodeSync::StatusRequest),
            SyncAction::Send(b, NodeSync::StatusRequest),
            SyncAction::Send(a, NodeSync::StatusRequest),
        ]
    );
    assert_eq!(f.sync.on_tick(f.now, &[]), vec![]);
}

#[test]
fn requests_are_answered_from_the_store() {
    let mut f = fixture();
    f.commit(3);
    let a = peer(1);
    assert_eq!(
        f.sync.on_message(a, NodeSync::StatusRequest, f.now, &[a]),
        vec![SyncAction::Send(a, NodeSync::Status { height: Height(3) })]
    );
    let answer = |f: &mut Fixture, from: u64, count: u32| {
        let request = NodeSync::BlocksRequest {
            from: Height(from),
            count,
        };
        match f.sync.on_message(a, request, f.now, &[a]).as_slice() {
            [SyncAction::Send(to, NodeSync::Blocks { blocks })] if *to == a => blocks
                .iter()
                .map(|b| b.header().height.0)
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(answer(&mut f, 1, u32::MAX), vec![1, 2, 3]);
    assert_eq!(answer(&mut f, 2, 1), vec![2]);
    assert_eq!(answer(&mut f, 9, 5), Vec::<u64>::new());
    // Answering is not syncing.
    assert!(!f.sync.is_fetching());
}
