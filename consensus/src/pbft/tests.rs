//! Unit tests of the PBFT replica: the normal case and its pipelining,
//! rule C, persistence order and restarts, evidence, checkpoints and the
//! window, view changes (silence, a block committed at one replica only,
//! a forged plan, back-off, joining), catch-up and the Byzantine primaries.

use super::messages::{self, Payload, PrePrepare, SignedMessage, Vote, preprepare_vote, sign};
use super::select::{Plan, select};
use super::*;
use crate::test_support::empty_child;
use crate::{Byzantine, Committee, InvalidBlock, Ledger, LedgerError, View};
use phalanx_chain::{
    Address, Block, ChainId, ConsensusKind, Hash, Height, Justification, ValidatorIndex,
};
use phalanx_crypto::Keypair;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Blocks whose state root carries over. `busy`: the pool always has
/// work, and each block built carries one (unchecked) transfer, so that a
/// primary fills its pipeline; otherwise blocks are empty.
#[derive(Default)]
struct EmptyLedger {
    committed: HashMap<Hash, Block>,
    busy: bool,
    /// What waits is never a full batch.
    partial_batches: bool,
}

fn busy() -> EmptyLedger {
    EmptyLedger {
        busy: true,
        ..EmptyLedger::default()
    }
}

fn a_transfer(nonce: u64) -> phalanx_chain::Transaction {
    let key = Keypair::from_seed(&[7; 32]);
    phalanx_chain::Transaction::sign(
        &key,
        ChainId::new("pbft-test").unwrap(),
        Address::from(key.public()),
        phalanx_chain::Amount(1),
        phalanx_chain::Amount(0),
        phalanx_chain::Nonce(nonce),
    )
}

impl Ledger for EmptyLedger {
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        ts: u64,
        j: Justification,
    ) -> Result<Block, LedgerError> {
        let mut block = empty_child(parent, proposer, ts, j);
        if self.busy {
            block.transactions.push(a_transfer(block.header().height.0));
            block.header_mut().tx_root = block.compute_tx_root();
        }
        Ok(block)
    }

    fn has_pending_transactions(&self) -> bool {
        self.busy
    }

    /// A full batch waits (the default's answer) unless the test holds
    /// batches back.
    fn batch_ready(&self) -> bool {
        !self.partial_batches
    }

    fn build_empty_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        ts: u64,
        j: Justification,
    ) -> Result<Block, LedgerError> {
        Ok(empty_child(parent, proposer, ts, j))
    }

    fn validate_block(&mut self, parent: &Block, block: &Block) -> Result<(), LedgerError> {
        let valid = block.header().parent == parent.hash()
            && block.header().height.0 == parent.header().height.0 + 1
            && block.header().tx_root == block.compute_tx_root()
            && block.header().state_root == parent.header().state_root;
        if valid {
            Ok(())
        } else {
            Err(LedgerError::Invalid(InvalidBlock::Execution(
                phalanx_chain::BlockError::WrongParent {
                    expected: parent.hash(),
                    got: block.header().parent,
                },
            )))
        }
    }

    fn committed_block(&self, hash: &Hash) -> Option<Block> {
        self.committed.get(hash).cloned()
    }
}

struct Fixture {
    keys: Vec<Keypair>,
    committee: Committee,
    genesis: Block,
}

fn fixture(n: usize) -> Fixture {
    let (keys, committee, genesis) =
        crate::test_support::committee(ConsensusKind::Pbft, "pbft-test", n, 40);
    Fixture {
        keys,
        committee,
        genesis,
    }
}

impl Fixture {
    fn replica(&self, i: usize, config: Config) -> Replica {
        Replica::new(
            self.committee.clone(),
            ValidatorIndex(i as u16),
            self.keys[i].clone(),
            config,
            self.genesis.clone(),
        )
    }

    fn sign(&self, who: usize, payload: Payload) -> SignedMessage {
        sign(
            &self.committee,
            &self.keys[who],
            ValidatorIndex(who as u16),
            payload,
        )
    }

    fn verified(&self, m: SignedMessage) -> Input {
        Input::Message(verify_decoded(m, &self.committee).unwrap())
    }

    /// A pre-prepare by the primary of `view` of an empty block on `parent`.
    fn preprepare(&self, view: u64, parent: &Block, ts: u64) -> SignedMessage {
        let primary = self.committee.leader(View(view));
        let key = &self.keys[usize::from(primary.0)];
        let block = empty_child(
            parent,
            key.public().into(),
            ts,
            Justification::Bft {
                view,
                parent_cert: messages::genesis_cert(&self.committee),
            },
        );
        self.sign(
            usize::from(primary.0),
            Payload::PrePrepare(Box::new(PrePrepare {
                view: View(view),
                block,
            })),
        )
    }
}

fn block_of(m: &SignedMessage) -> Block {
    match &m.payload {
        Payload::PrePrepare(p) => p.block.clone(),
        other => panic!("not a pre-prepare: {other:?}"),
    }
}

fn vote_of(m: &SignedMessage) -> Vote {
    match &m.payload {
        Payload::PrePrepare(p) => preprepare_vote(p),
        Payload::Prepare(v) | Payload::Commit(v) => *v,
        other => panic!("not a vote: {other:?}"),
    }
}

fn sent(effects: &[Effect]) -> Vec<SignedMessage> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(m) | Effect::Send { message: m, .. } => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn of_kind(effects: &[Effect], kind: &str, author: usize) -> Vec<SignedMessage> {
    sent(effects)
        .into_iter()
        .filter(|m| m.kind() == kind && usize::from(m.author.0) == author)
        .collect()
}

fn describe(input: &Input) -> String {
    match input {
        Input::Message(m) => {
            let m = m.get();
            let bytes = m.encode();
            <Pbft as crate::Protocol>::describe(crate::Channel::Consensus, &bytes)
        }
        Input::Sync { from, message } => format!("sync from {from}: {message:?}")
            .chars()
            .take(100)
            .collect(),
        other => format!("{other:?}").chars().take(100).collect(),
    }
}

fn quiet() -> Config {
    Config {
        forward: false,
        ..Config::default()
    }
}

/// (from, to, message) -> deliver?
type Link = Box<dyn Fn(usize, usize, &SignedMessage) -> bool>;

/// n replicas wired together synchronously: every message is delivered in
/// order, timers fire when the test advances the clock, and `drop` decides
/// which copies are lost.
struct Net {
    f: Fixture,
    replicas: Vec<Replica>,
    ledgers: Vec<EmptyLedger>,
    up: Vec<bool>,
    queue: VecDeque<(usize, Input)>,
    timers: Vec<BTreeMap<Timer, u64>>,
    persisted: Vec<Option<SafetyData>>,
    committed: Vec<Vec<Block>>,
    evidence: Vec<Evidence>,
    now: u64,
    link: Link,
}

impl Net {
    fn new(n: usize, config: impl Fn(usize) -> Config) -> Net {
        let f = fixture(n);
        let replicas = (0..n).map(|i| f.replica(i, config(i))).collect();
        let mut net = Net {
            replicas,
            ledgers: (0..n).map(|_| busy()).collect(),
            up: vec![true; n],
            queue: VecDeque::new(),
            timers: vec![BTreeMap::new(); n],
            persisted: vec![None; n],
            committed: vec![Vec::new(); n],
            evidence: Vec::new(),
            now: 0,
            link: Box::new(|_, _, _| true),
            f,
        };
        for i in 0..n {
            net.queue.push_back((i, Input::Start { recovered: None }));
        }
        net
    }

    fn n(&self) -> usize {
        self.replicas.len()
    }

    fn apply(&mut self, from: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::PersistSafety(bytes) => self.persisted[from] = Some(decoded_safety(&bytes)),
                Effect::Send { to, message } => self.route(from, usize::from(to.0), message),
                Effect::Broadcast(message) => {
                    for to in (0..self.n()).filter(|t| *t != from) {
                        self.route(from, to, message.clone());
                    }
                }
                Effect::Relay(relayed) => {
                    let message: SignedMessage = phalanx_chain::encoding::decode(
                        &relayed.bytes,
                        messages::MAX_MESSAGE_BYTES,
                    )
                    .unwrap();
                    for to in (0..self.n()).filter(|t| *t != from) {
                        self.route(from, to, message.clone());
                    }
                }
                Effect::SendSync { to, message } => {
                    let from_index = ValidatorIndex(from as u16);
                    self.queue.push_back((
                        usize::from(to.0),
                        Input::Sync {
                            from: from_index,
                            message,
                        },
                    ));
                }
                Effect::Commit(block) => {
                    self.ledgers[from]
                        .committed
                        .insert(block.hash(), block.clone());
                    self.committed[from].push(block);
                }
                Effect::ArmTimer { timer, at } => {
                    self.timers[from].insert(timer, at);
                }
                Effect::CancelTimer(timer) => {
                    self.timers[from].remove(&timer);
                }
                Effect::Evidence(e) => self.evidence.push(e),
            }
        }
    }

    fn route(&mut self, from: usize, to: usize, message: SignedMessage) {
        if (self.link)(from, to, &message) {
            let input = match verify_decoded(message, &self.f.committee) {
                Ok(m) => Input::Message(m),
                Err(_) => return,
            };
            self.queue.push_back((to, input));
        }
    }

    /// Delivers until nothing is left in flight (or `steps` deliveries).
    fn settle(&mut self, steps: usize) {
        for _ in 0..steps {
            let Some((to, input)) = self.queue.pop_front() else {
                return;
            };
            if !self.up[to] {
                continue;
            }
            if std::env::var_os("PBFT_TRACE").is_some() {
                eprintln!("{:>6} -> {to}: {}", self.now, describe(&input));
            }
            let effects = self.replicas[to].handle(input, self.now, &mut self.ledgers[to]);
            self.apply(to, effects);
        }
    }

    /// Moves the clock to the next armed timer and fires every timer due.
    fn tick(&mut self) {
        let next = (0..self.n())
            .filter(|i| self.up[*i])
            .filter_map(|i| self.timers[i].values().min().copied())
            .min();
        let Some(at) = next else {
            return;
        };
        self.now = self.now.max(at);
        for i in 0..self.n() {
            if !self.up[i] {
                continue;
            }
            let due: Vec<Timer> = self.timers[i]
                .iter()
                .filter(|(_, t)| **t <= self.now)
                .map(|(t, _)| *t)
                .collect();
            for timer in due {
                self.timers[i].remove(&timer);
                self.queue.push_back((i, Input::Timer(timer)));
            }
        }
    }

    /// Runs until every live replica committed `height`, or gives up.
    fn run_until(&mut self, height: u64, rounds: usize) -> bool {
        for _ in 0..rounds {
            self.settle(2_000);
            let done = (0..self.n())
                .filter(|i| self.up[*i])
                .all(|i| self.height(i) >= height);
            if done {
                return true;
            }
            self.tick();
        }
        false
    }

    fn height(&self, i: usize) -> u64 {
        self.committed[i].last().map_or(0, |b| b.header().height.0)
    }

    /// No two replicas committed different blocks at one height, and each
    /// committed a chain.
    fn assert_agreement(&self) {
        let mut by_height: BTreeMap<u64, Hash> = BTreeMap::new();
        for (i, log) in self.committed.iter().enumerate() {
            let mut parent = self.f.genesis.hash();
            for b in log {
                assert_eq!(b.header().parent, parent, "replica {i} committed a gap");
                parent = b.hash();
                let h = b.header().height.0;
                let first = *by_height.entry(h).or_insert(b.hash());
                assert_eq!(first, b.hash(), "replicas disagree at height {h}");
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let head = self.committed[i]
            .last()
            .cloned()
            .unwrap_or_else(|| self.f.genesis.clone());
        let config = self.replicas[i].config.clone();
        self.replicas[i] = Replica::new(
            self.f.committee.clone(),
            ValidatorIndex(i as u16),
            self.f.keys[i].clone(),
            config,
            head,
        );
        self.timers[i].clear();
        self.up[i] = true;
        let recovered = self.persisted[i].clone().map(Box::new);
        self.queue.push_back((i, Input::Start { recovered }));
    }
}

#[test]
fn four_replicas_commit_a_chain_with_heights_in_flight() {
    let mut net = Net::new(4, |_| quiet());
    assert!(
        net.run_until(20, 200),
        "heights {:?}",
        (0..4).map(|i| net.height(i)).collect::<Vec<_>>()
    );
    net.assert_agreement();
    assert!(net.evidence.is_empty(), "{:?}", net.evidence);
}

#[test]
fn the_primary_keeps_max_in_flight_heights_proposed() {
    let f = fixture(4);
    let mut primary = f.replica(0, quiet());
    let effects = primary.handle(Input::Start { recovered: None }, 0, &mut busy());
    let proposals = of_kind(&effects, "pre-prepare", 0);
    let heights: Vec<u64> = proposals.iter().map(|m| vote_of(m).height.0).collect();
    assert_eq!(heights, [1, 2, 3, 4]);
    // Each extends the one before.
    for pair in proposals.windows(2) {
        assert_eq!(
            block_of(&pair[1]).header().parent,
            block_of(&pair[0]).hash()
        );
    }
    // The persisted record of what was pre-prepared comes before any of them.
    let persist = effects
        .iter()
        .position(|e| matches!(e, Effect::PersistSafety(_)))
        .unwrap();
    let first_send = effects
        .iter()
        .position(|e| matches!(e, Effect::Broadcast(_)))
        .unwrap();
    assert!(persist < first_send);
}

#[test]
fn a_backup_persists_then_prepares_and_never_prepares_a_conflicting_block() {
    let f = fixture(4);
    let mut ledger = EmptyLedger::default();
    let mut backup = f.replica(1, quiet());
    let _ = backup.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let x = f.preprepare(0, &f.genesis, 10);
    let effects = backup.handle(f.verified(x.clone()), 1, &mut ledger);
    let prepares = of_kind(&effects, "prepare", 1);
    assert_eq!(prepares.len(), 1);
    assert_eq!(vote_of(&prepares[0]).block, block_of(&x).hash());
    let persist = effects
        .iter()
        .position(|e| matches!(e, Effect::PersistSafety(_)))
        .unwrap();
    let send = effects
        .iter()
        .position(|e| matches!(e, Effect::Broadcast(_)))
        .unwrap();
    assert!(persist < send, "persist before the prepare leaves");
    let Some(Effect::PersistSafety(bytes)) = effects.get(persist).cloned() else {
        unreachable!()
    };
    let safety = Box::new(decoded_safety(&bytes));
    // A restart with that safety data, and a conflicting pre-prepare for
    // the same view and height (an equivocating primary): no prepare.
    let mut restarted = f.replica(1, quiet());
    let _ = restarted.handle(
        Input::Start {
            recovered: Some(safety),
        },
        2,
        &mut ledger,
    );
    let y = f.preprepare(0, &f.genesis, 11);
    let effects = restarted.handle(f.verified(y), 3, &mut ledger);
    assert!(of_kind(&effects, "prepare", 1).is_empty());
    // The same block again: its prepare went out already, once.
    let mut again = f.replica(1, quiet());
    let safety = restarted.safety().clone();
    let _ = again.handle(
        Input::Start {
            recovered: Some(Box::new(safety)),
        },
        4,
        &mut ledger,
    );
    let effects = again.handle(f.verified(x), 5, &mut ledger);
    assert!(of_kind(&effects, "prepare", 1).is_empty());
}

#[test]
fn conflicting_pre_prepares_and_votes_are_evidence() {
    let f = fixture(4);
    let mut ledger = EmptyLedger::default();
    let mut backup = f.replica(1, quiet());
    let _ = backup.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let x = f.preprepare(0, &f.genesis, 10);
    let y = f.preprepare(0, &f.genesis, 11);
    let _ = backup.handle(f.verified(x.clone()), 1, &mut ledger);
    let effects = backup.handle(f.verified(y), 2, &mut ledger);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Evidence(Evidence::ConflictingPrePrepares { .. })))
    );
    let vote = preprepare_vote(match &x.payload {
        Payload::PrePrepare(p) => p,
        _ => unreachable!(),
    });
    let a = f.sign(2, Payload::Prepare(vote));
    let b = f.sign(
        2,
        Payload::Prepare(Vote {
            block: Hash::digest(b"other"),
            ..vote
        }),
    );
    let _ = backup.handle(f.verified(a), 3, &mut ledger);
    let effects = backup.handle(f.verified(b), 4, &mut ledger);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Evidence(Evidence::ConflictingVotes { .. })))
    );
}

#[test]
fn a_replica_commits_a_height_only_once_every_height_below_is_prepared() {
    let f = fixture(4);
    let mut ledger = EmptyLedger::default();
    let mut backup = f.replica(1, quiet());
    let _ = backup.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let p1 = f.preprepare(0, &f.genesis, 10);
    let b1 = block_of(&p1);
    let p2 = f.preprepare(0, &b1, 20);
    let _ = backup.handle(f.verified(p1.clone()), 1, &mut ledger);
    let _ = backup.handle(f.verified(p2.clone()), 2, &mut ledger);
    // Height 2 prepared (two other prepares), height 1 not yet.
    let v2 = vote_of(&p2);
    let v1 = vote_of(&p1);
    let mut out = Vec::new();
    for who in [2, 3] {
        out.extend(backup.handle(
            f.verified(f.sign(who, Payload::Prepare(v2))),
            3,
            &mut ledger,
        ));
    }
    assert!(
        of_kind(&out, "commit", 1).is_empty(),
        "no commit for 2 before 1"
    );
    let mut out = Vec::new();
    for who in [2, 3] {
        out.extend(backup.handle(
            f.verified(f.sign(who, Payload::Prepare(v1))),
            4,
            &mut ledger,
        ));
    }
    let commits: Vec<u64> = of_kind(&out, "commit", 1)
        .iter()
        .map(|m| vote_of(m).height.0)
        .collect();
    assert_eq!(commits, [1, 2]);
}

#[test]
fn a_silent_primary_is_replaced_by_a_view_change() {
    let mut net = Net::new(4, |i| Config {
        byzantine: (i == 0).then_some(Byzantine::Silent),
        ..quiet()
    });
    net.up[0] = false;
    assert!(
        net.run_until(5, 400),
        "heights {:?}",
        (1..4).map(|i| net.height(i)).collect::<Vec<_>>()
    );
    net.assert_agreement();
    for i in 1..4 {
        assert!(net.replicas[i].view() >= View(1));
    }
}

/// Block 1 is committed by replica 1 only (the others' commits are lost),
/// then the primary goes silent: the new view must re-propose block 1, and
/// everyone commits that block at height 1.
#[test]
fn a_block_committed_at_one_replica_survives_the_view_change() {
    let mut net = Net::new(4, |_| Config {
        max_in_flight: 1,
        ..quiet()
    });
    net.link = Box::new(|_, to, m| !(m.kind() == "commit" && to != 1));
    net.settle(10_000);
    assert_eq!(net.height(1), 1);
    assert_eq!(net.height(2), 0);
    let block1 = net.committed[1][0].clone();
    // The primary dies; commits flow again.
    net.up[0] = false;
    net.link = Box::new(|_, _, _| true);
    assert!(net.run_until(3, 400));
    net.assert_agreement();
    for i in 1..4 {
        assert_eq!(net.committed[i][0], block1, "replica {i}");
    }
}

#[test]
fn a_new_view_whose_plan_is_not_the_one_its_view_changes_give_is_refused() {
    let mut net = Net::new(4, |_| Config {
        max_in_flight: 1,
        ..quiet()
    });
    // Only prepares and pre-prepares: height 1 prepares, never commits.
    net.link = Box::new(|_, _, m| m.kind() != "commit");
    net.settle(10_000);
    net.up[0] = false;
    // Time out everywhere: view changes to view 1 gather at replica 1.
    // (Every message is dropped from here on; only timers run.)
    let mut view_changes = Vec::new();
    net.link = Box::new(|_, _, _| false);
    while view_changes.len() < 3 {
        net.tick();
        let inputs: Vec<(usize, Input)> = net.queue.drain(..).collect();
        for (to, input) in inputs {
            let effects = net.replicas[to].handle(input, net.now, &mut net.ledgers[to]);
            view_changes.extend(of_kind(&effects, "view-change", to));
            net.apply(to, effects);
        }
    }
    let vcs: Vec<SignedMessage> = view_changes.into_iter().take(3).collect();
    assert_eq!(vcs.len(), 3);
    let real = select(vcs.iter().filter_map(super::collect::as_view_change), false).unwrap();
    assert_eq!(real.reproposals.len(), 1, "height 1 was prepared");
    let forged = Plan {
        reproposals: Vec::new(),
        ..real
    };
    let nv = net.f.sign(
        1,
        Payload::NewView(Box::new(NewView {
            view: View(1),
            view_changes: vcs,
            plan: forged,
        })),
    );
    let mut lone = net.f.replica(2, quiet());
    let mut ledger = EmptyLedger::default();
    let _ = lone.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let _ = lone.handle(net.f.verified(nv), 1, &mut ledger);
    assert_eq!(lone.view(), View(0), "the forged new view was refused");
}

#[test]
fn checkpoints_become_stable_and_move_the_window() {
    let mut net = Net::new(4, |_| Config {
        checkpoint_interval: 4,
        watermark_window: 8,
        ..quiet()
    });
    assert!(net.run_until(30, 400));
    net.assert_agreement();
    for r in &net.replicas {
        let low = r.safety().stable.checkpoint.height.0;
        assert!(low >= 24, "stable checkpoint at {low}");
        assert!(r.safety().sent.keys().all(|h| h.0 > low));
        assert!(r.safety().certified.keys().all(|h| h.0 > low));
        messages::verify_checkpoint(&net.f.committee, &r.safety().stable).unwrap();
    }
}

#[test]
fn view_change_timeouts_double_while_no_view_makes_progress() {
    // Seven replicas, so that replica 0 is the primary of none of views
    // 1 to 5.
    let f = fixture(7);
    let mut ledger = EmptyLedger::default();
    let mut r = f.replica(
        0,
        Config {
            base_timeout_ms: 100,
            max_timeout_ms: 10_000,
            ..quiet()
        },
    );
    let vc = |who: usize, view: u64| {
        f.verified(f.sign(
            who,
            Payload::ViewChange(Box::new(ViewChange {
                view: View(view),
                checkpoint: messages::genesis_checkpoint(&f.committee, &f.genesis),
                certified: vec![],
            })),
        ))
    };
    let effects = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let mut timer = Timer::View(View(0));
    let mut at = armed(&effects, timer).unwrap();
    assert_eq!(at, 100);
    // Each time the replica asks for a view, four others ask for it too (a
    // quorum: the wait starts) and no new view comes; the timer fires as
    // armed (re-sending the view change every base timeout meanwhile)
    // until the replica asks for the next view.
    let mut moves = Vec::new();
    let mut target = 0;
    while moves.len() < 4 {
        let mut effects = r.handle(Input::Timer(timer), at, &mut ledger);
        if r.view().0 > target {
            target = r.view().0;
            moves.push(at);
            for who in [2, 3, 4, 5] {
                effects.extend(r.handle(vc(who, target), at, &mut ledger));
            }
        }
        timer = Timer::ViewChange(View(target));
        at = effects
            .iter()
            .rev()
            .find_map(|e| match e {
                Effect::ArmTimer { timer: t, at } if *t == timer => Some(*at),
                _ => None,
            })
            .unwrap();
    }
    let gaps: Vec<u64> = moves.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [200, 400, 800]);
}

/// The heights replica 0 pre-prepared in `effects`.
fn preprepared(effects: &[Effect]) -> Vec<u64> {
    of_kind(effects, "pre-prepare", 0)
        .iter()
        .map(|m| vote_of(m).height.0)
        .collect()
}

/// With batching on, a primary whose pipeline is idle proposes what waits
/// at once; with a height in flight and no full batch, it waits the batch
/// delay for more.
#[test]
fn with_batching_an_idle_pipeline_proposes_at_once_and_a_busy_one_waits() {
    let f = fixture(4);
    let config = Config {
        max_batch_delay_ms: 250,
        empty_block_delay_ms: 1_000,
        ..quiet()
    };
    let mut primary = f.replica(0, config);
    let mut ledger = EmptyLedger {
        partial_batches: true,
        ..busy()
    };
    let effects = primary.handle(Input::Start { recovered: None }, 0, &mut ledger);
    assert_eq!(preprepared(&effects), [1]);
    assert_eq!(armed(&effects, Timer::Propose(View(0))), Some(250));
    // The wait runs out: the next height goes, and the one after waits.
    let effects = primary.handle(Input::Timer(Timer::Propose(View(0))), 250, &mut ledger);
    assert_eq!(preprepared(&effects), [2]);
    assert_eq!(armed(&effects, Timer::Propose(View(0))), Some(500));
}

fn armed(effects: &[Effect], timer: Timer) -> Option<u64> {
    effects.iter().find_map(|e| match e {
        Effect::ArmTimer { timer: t, at } if *t == timer => Some(*at),
        _ => None,
    })
}

#[test]
fn f_plus_one_view_changes_for_later_views_make_a_replica_join() {
    let f = fixture(4);
    let mut ledger = EmptyLedger::default();
    let mut r = f.replica(3, quiet());
    let _ = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let vc = |who: usize, view: u64| {
        f.sign(
            who,
            Payload::ViewChange(Box::new(ViewChange {
                view: View(view),
                checkpoint: messages::genesis_checkpoint(&f.committee, &f.genesis),
                certified: vec![],
            })),
        )
    };
    let effects = r.handle(f.verified(vc(1, 5)), 1, &mut ledger);
    assert!(
        of_kind(&effects, "view-change", 3).is_empty(),
        "one is not enough"
    );
    let effects = r.handle(f.verified(vc(2, 3)), 2, &mut ledger);
    let mine = of_kind(&effects, "view-change", 3);
    assert_eq!(mine.len(), 1);
    assert_eq!(messages::message_view(&mine[0]), View(3));
}

#[test]
fn normal_case_messages_of_a_later_view_from_f_plus_one_replicas_start_a_view_change() {
    let f = fixture(4);
    let mut ledger = EmptyLedger::default();
    let mut r = f.replica(3, quiet());
    let _ = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let prepare = |who: usize, height: u64| {
        f.sign(
            who,
            Payload::Prepare(Vote {
                view: View(5),
                height: Height(height),
                block: Hash([height as u8; 32]),
                parent: Hash([0; 32]),
            }),
        )
    };
    // One replica (it may be the Byzantine one) moves nobody, however
    // many messages it sends.
    for height in 1..4 {
        let effects = r.handle(f.verified(prepare(1, height)), 1, &mut ledger);
        assert!(of_kind(&effects, "view-change", 3).is_empty());
    }
    assert_eq!(r.view(), View(0));
    // A second one: at least one honest replica is in a later view.
    let effects = r.handle(f.verified(prepare(2, 1)), 2, &mut ledger);
    let mine = of_kind(&effects, "view-change", 3);
    assert_eq!(mine.len(), 1);
    assert_eq!(messages::message_view(&mine[0]), View(1));
}

#[test]
fn a_replica_that_missed_blocks_fetches_and_commits_them() {
    let mut net = Net::new(4, |_| quiet());
    // Replica 3 hears nothing while the others commit 40 blocks (more than
    // two checkpoint intervals: it catches up from a stable checkpoint).
    net.link = Box::new(|_, to, _| to != 3);
    while net.height(0) < 40 {
        net.settle(100);
        if net.queue.is_empty() {
            net.tick();
        }
    }
    assert_eq!(net.height(3), 0);
    net.link = Box::new(|_, _, _| true);
    let target = net.height(0) + 12;
    let ok = net.run_until(target, 400);
    assert!(
        ok,
        "heights {:?}",
        (0..4).map(|i| net.height(i)).collect::<Vec<_>>()
    );
    net.assert_agreement();
}

#[test]
fn byzantine_primaries_do_not_break_agreement_or_stop_progress() {
    for behaviour in [
        Byzantine::Equivocate,
        Byzantine::DoubleVote,
        Byzantine::InvalidSignature,
        Byzantine::SkipHeight,
        Byzantine::Reorder,
        Byzantine::Withhold,
    ] {
        for forward in [true, false] {
            let mut net = Net::new(4, |i| Config {
                byzantine: (i == 0).then_some(behaviour),
                forward,
                ..Config::default()
            });
            let ok = net.run_until(12, 600);
            net.assert_agreement();
            assert!(
                ok,
                "{behaviour} (forward {forward}): heights {:?}",
                (0..4).map(|i| net.height(i)).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn a_restarted_replica_rejoins_and_never_signs_conflicting_votes() {
    let mut net = Net::new(4, |_| quiet());
    assert!(net.run_until(6, 200));
    net.up[2] = false;
    assert!(net.run_until(10, 200));
    net.restart(2);
    assert!(net.run_until(16, 400));
    net.assert_agreement();
}

/// The primary of view 0 is down while the others change to view 1; it
/// comes back in view 0 and catches up on blocks. Messages alone (none of
/// its timers fire) must bring it into the others' view, where it votes
/// again: without that it would sit in view 0 until its view timer ran
/// out, one vote short whenever another replica fails.
#[test]
fn a_replica_back_in_an_old_view_joins_the_others_without_its_timer() {
    let mut net = Net::new(4, |_| quiet());
    assert!(net.run_until(4, 200));
    net.up[0] = false;
    let height = net.height(1);
    assert!(net.run_until(height + 6, 400));
    let their_view = net.replicas[1].view();
    assert!(their_view >= View(1));
    net.restart(0);
    let before = net.height(0);
    net.settle(20_000);
    assert_eq!(net.replicas[0].view(), their_view);
    assert!(!net.replicas[0].changing_view());
    assert!(net.height(0) > before + 4, "replica 0 executes again");
    // It votes in that view: with a backup other than it down too, the
    // other three still commit, without any timer firing.
    let primary = (their_view.0 % 4) as usize;
    let (down, watch) = match primary {
        1 => (2, 3),
        2 => (3, 1),
        _ => (1, 2),
    };
    net.up[down] = false;
    let height = net.height(watch);
    net.settle(20_000);
    assert!(
        net.height(watch) > height + 4,
        "replica 0 and two others form quorums"
    );
    net.assert_agreement();
}

#[test]
fn select_re_proposes_the_linked_prefix_of_the_highest_views() {
    let f = fixture(4);
    let checkpoint = messages::genesis_checkpoint(&f.committee, &f.genesis);
    let g = f.genesis.hash();
    let vote = |view: u64, height: u64, block: &[u8], parent: Hash| Vote {
        view: View(view),
        height: Height(height),
        block: Hash::digest(block),
        parent,
    };
    let a1 = vote(1, 1, b"a1", g);
    let a2 = vote(1, 2, b"a2", a1.block);
    let b2 = vote(2, 2, b"b2", a1.block);
    let c3 = vote(1, 3, b"c3", a2.block);
    let d5 = vote(2, 5, b"d5", Hash::digest(b"d4"));
    let certified = |votes: &[Vote]| {
        votes
            .iter()
            .map(|v| {
                Certified::Committed(CommitCert {
                    vote: *v,
                    commits: vec![],
                })
            })
            .collect()
    };
    let vcs = [
        ViewChange {
            view: View(3),
            checkpoint: checkpoint.clone(),
            certified: certified(&[a1, a2, c3]),
        },
        ViewChange {
            view: View(3),
            checkpoint: checkpoint.clone(),
            certified: certified(&[b2, d5]),
        },
    ];
    let plan = select(vcs.iter(), false).unwrap();
    // Height 2: view 2 beats view 1; height 3 builds on a2, not b2: stop.
    assert_eq!(plan.reproposals, [a1, b2]);
    assert_eq!(plan.fill_to, Height(5));
    assert_eq!(plan.end(), Height(5));
    let ignored = select(vcs.iter(), true).unwrap();
    assert!(ignored.reproposals.is_empty());
    assert_eq!(ignored.end(), Height(0));
}

#[test]
fn a_committee_of_one_commits_without_recursing() {
    let mut net = Net::new(1, |_| quiet());
    assert!(net.run_until(50, 200));
    net.assert_agreement();
}

/// Persisted safety data, decoded; its encoding must be canonical (the
/// replica encodes it piecewise, and checks each piece against
/// `encoding::encode` in debug builds).
fn decoded_safety(bytes: &crate::bft::EncodedSafety) -> SafetyData {
    let safety: SafetyData =
        phalanx_chain::encoding::decode(&bytes.0, usize::MAX).expect("safety data decodes");
    assert_eq!(
        phalanx_chain::encoding::encode(&safety),
        bytes.0,
        "piecewise encoding differs from postcard's"
    );
    safety
}

/// The last time `effects` arm `timer` for.
fn last_armed(effects: &[Effect], timer: Timer) -> Option<u64> {
    effects.iter().rev().find_map(|e| match e {
        Effect::ArmTimer { timer: t, at } if *t == timer => Some(*at),
        _ => None,
    })
}

/// The view timer follows the pace of executions: heights executed 400 ms
/// apart, with transactions waiting, make the first timeout 4 × 400 ms,
/// above the 1 s base (the second-longest recent gap sets it). With factor
/// 0 it stays at the base.
#[test]
fn slow_executions_lengthen_the_view_timer() {
    let f = fixture(4);
    for factor in [4, 0] {
        let mut ledger = busy();
        let config = Config {
            timeout_factor: factor,
            ..quiet()
        };
        let mut backup = f.replica(1, config);
        let _ = backup.handle(Input::Start { recovered: None }, 0, &mut ledger);
        let mut parent = f.genesis.clone();
        let mut timers = Vec::new();
        for height in 1..=4u64 {
            let now = 400 * height;
            let p = f.preprepare(0, &parent, now);
            let vote = vote_of(&p);
            let mut out = backup.handle(f.verified(p.clone()), now, &mut ledger);
            for who in [2, 3] {
                let prepare = f.verified(f.sign(who, Payload::Prepare(vote)));
                out.extend(backup.handle(prepare, now, &mut ledger));
            }
            for who in [0, 2, 3] {
                let commit = f.verified(f.sign(who, Payload::Commit(vote)));
                out.extend(backup.handle(commit, now, &mut ledger));
            }
            assert!(
                out.iter().any(|e| matches!(e, Effect::Commit(_))),
                "height {height} executed: {out:#?}"
            );
            let at = last_armed(&out, Timer::View(View(0))).expect("the view timer re-armed");
            timers.push(at - now);
            parent = block_of(&p);
        }
        let expected = if factor == 4 {
            [1_000, 1_600, 1_600, 1_600]
        } else {
            [1_000; 4]
        };
        assert_eq!(timers, expected, "factor {factor}");
    }
}

/// An idle backup (no transaction waiting, nothing in flight) gives the
/// primary its empty-block delay once more before changing view: the
/// primary may be waiting to send its heartbeat. With transactions
/// waiting it changes view when the timer fires.
#[test]
fn an_idle_backup_waits_out_the_empty_block_delay_before_a_view_change() {
    let f = fixture(4);
    let config = Config {
        max_batch_delay_ms: 100,
        empty_block_delay_ms: 2_000,
        ..quiet()
    };
    for idle in [true, false] {
        let mut ledger = if idle { EmptyLedger::default() } else { busy() };
        let mut backup = f.replica(1, config.clone());
        let effects = backup.handle(Input::Start { recovered: None }, 0, &mut ledger);
        assert_eq!(armed(&effects, Timer::View(View(0))), Some(1_000));
        let effects = backup.handle(Input::Timer(Timer::View(View(0))), 1_000, &mut ledger);
        assert_eq!(backup.changing_view(), !idle, "{effects:#?}");
        if idle {
            assert_eq!(armed(&effects, Timer::View(View(0))), Some(3_000));
            let _ = backup.handle(Input::Timer(Timer::View(View(0))), 3_000, &mut ledger);
            assert!(backup.changing_view());
        }
    }
}
