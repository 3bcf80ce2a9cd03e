//! Unit tests of the replica: message checks, QC and TC formation, the lock
//! and commit rules, persistence order, restarts and evidence.

use super::*;
use crate::test_support::empty_child;
use crate::{Byzantine, Committee, InvalidBlock, Ledger, LedgerError, View};
use phalanx_chain::{
    Address, BftCertificate, Block, ConsensusKind, Hash, Justification, ValidatorIndex,
    ValidatorSignature,
};
use phalanx_crypto::Keypair;
use std::collections::{BTreeMap, VecDeque};

/// Blocks without transactions: the state root carries over.
#[derive(Default)]
struct EmptyLedger {
    refuse: bool,
    /// What `batch_ready` answers (`None`: the default, always).
    ready: Option<bool>,
    /// What `has_pending_transactions` answers (`None`: the default, yes).
    pending: Option<bool>,
}

impl Ledger for EmptyLedger {
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        ts: u64,
        j: Justification,
    ) -> Result<Block, LedgerError> {
        Ok(empty_child(parent, proposer, ts, j))
    }

    fn validate_block(&mut self, parent: &Block, block: &Block) -> Result<(), LedgerError> {
        let valid = !self.refuse
            && block.header().parent == parent.hash()
            && block.header().height.0 == parent.header().height.0 + 1
            && block.transactions.is_empty()
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

    fn batch_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    fn has_pending_transactions(&self) -> bool {
        self.pending.unwrap_or(true)
    }

    fn committed_block(&self, _hash: &Hash) -> Option<Block> {
        None
    }
}

struct Fixture {
    keys: Vec<Keypair>,
    committee: Committee,
    genesis: Block,
}

fn fixture(n: usize) -> Fixture {
    let (keys, committee, genesis) =
        crate::test_support::committee(ConsensusKind::Hotstuff, "hs-test", n, 10);
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

    fn started(&self, i: usize) -> (Replica, Vec<Effect>) {
        let mut r = self.replica(i, Config::default());
        let effects = r.handle(
            Input::Start { recovered: None },
            0,
            &mut EmptyLedger::default(),
        );
        (r, effects)
    }

    fn qc(&self, view: u64, block: Hash, signers: &[usize]) -> BftCertificate {
        let bytes = messages::vote_bytes(&self.committee, View(view), &block);
        BftCertificate {
            view,
            block,
            signatures: signers
                .iter()
                .map(|&i| ValidatorSignature {
                    validator: ValidatorIndex(i as u16),
                    signature: self.keys[i].sign(&bytes),
                })
                .collect(),
        }
    }

    /// A proposal by the leader of `view` extending `parent` under `parent_cert`.
    fn proposal(
        &self,
        view: u64,
        parent: &Block,
        parent_cert: BftCertificate,
        tc: Option<TimeoutCert>,
        ts: u64,
    ) -> SignedMessage {
        let leader = leader::leader(&self.committee, View(view), parent.header());
        let key = &self.keys[usize::from(leader.0)];
        let block = empty_child(
            parent,
            key.public().into(),
            ts,
            Justification::Bft { view, parent_cert },
        );
        sign(
            &self.committee,
            key,
            leader,
            Payload::Proposal(Box::new(Proposal {
                block,
                timeout_cert: tc,
                parent_header: parent.header().clone(),
            })),
        )
    }

    fn vote(&self, voter: usize, view: u64, block: Hash) -> SignedMessage {
        sign(
            &self.committee,
            &self.keys[voter],
            ValidatorIndex(voter as u16),
            Payload::Vote(Vote {
                view: View(view),
                block,
            }),
        )
    }

    fn timeout(&self, who: usize, view: u64, high_qc: BftCertificate) -> SignedMessage {
        sign(
            &self.committee,
            &self.keys[who],
            ValidatorIndex(who as u16),
            Payload::Timeout(Box::new(Timeout {
                view: View(view),
                high_qc,
                high_tc: None,
            })),
        )
    }

    fn verified(&self, m: SignedMessage) -> Input {
        Input::Message(verify_decoded(m, &self.committee).unwrap())
    }
}

fn block_of(m: &SignedMessage) -> Block {
    match &m.payload {
        Payload::Proposal(p) => p.block.clone(),
        other => panic!("not a proposal: {other:?}"),
    }
}

fn votes_sent(effects: &[Effect]) -> Vec<(ValidatorIndex, Vote)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } => match message.payload {
                Payload::Vote(v) => Some((*to, v)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn commits(effects: &[Effect]) -> Vec<Block> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Commit(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn position(effects: &[Effect], pred: impl Fn(&Effect) -> bool) -> Option<usize> {
    effects.iter().position(pred)
}

#[test]
fn the_first_leader_persists_then_proposes_then_votes() {
    let f = fixture(4);
    let (r, effects) = f.started(1);
    assert_eq!(r.view(), View(1));
    let persist = position(
        &effects,
        |e| matches!(e, Effect::PersistSafety(s) if s.last_proposed_view == View(1)),
    )
    .unwrap();
    let proposal = position(
        &effects,
        |e| matches!(e, Effect::Broadcast(m) if matches!(m.payload, Payload::Proposal(_))),
    )
    .unwrap();
    assert!(persist < proposal, "{effects:#?}");
    let vote_persist = position(
        &effects,
        |e| matches!(e, Effect::PersistSafety(s) if s.last_voted_view == View(1)),
    )
    .unwrap();
    let vote = position(&effects, |e| matches!(e, Effect::Send { message, .. } if matches!(message.payload, Payload::Vote(_)))).unwrap();
    assert!(
        proposal < vote_persist && vote_persist < vote,
        "{effects:#?}"
    );
    assert_eq!(
        votes_sent(&effects)[0].0,
        ValidatorIndex(2),
        "votes go to the next leader"
    );
    assert!(matches!(
        effects[0],
        Effect::ArmTimer {
            timer: Timer::View(View(1)),
            at: 1_000
        }
    ));
}

#[test]
fn a_replica_votes_once_per_view_and_reports_an_equivocating_leader() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let genesis_qc = genesis_qc(&f.committee);
    let a = f.proposal(1, &f.genesis, genesis_qc.clone(), None, 5);
    let effects = r.handle(f.verified(a.clone()), 10, &mut EmptyLedger::default());
    let persist = position(&effects, |e| matches!(e, Effect::PersistSafety(_))).unwrap();
    let vote = position(&effects, |e| matches!(e, Effect::Send { .. })).unwrap();
    assert!(persist < vote, "persist before the vote leaves");
    assert_eq!(
        votes_sent(&effects),
        vec![(
            ValidatorIndex(2),
            Vote {
                view: View(1),
                block: block_of(&a).hash()
            }
        )]
    );
    // Forwarded once, then ignored.
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Broadcast(m) if *m == a))
    );
    assert!(
        r.handle(f.verified(a.clone()), 11, &mut EmptyLedger::default())
            .is_empty()
    );
    // A second block for the same view: evidence, and no second vote.
    let b = f.proposal(1, &f.genesis, genesis_qc, None, 6);
    let effects = r.handle(f.verified(b.clone()), 12, &mut EmptyLedger::default());
    assert!(votes_sent(&effects).is_empty());
    assert!(effects.iter().any(|e| matches!(e, Effect::Evidence(Evidence::ConflictingProposals { first, second }) if *first == a && *second == b)));
}

#[test]
fn no_vote_for_a_block_the_ledger_refuses() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let a = f.proposal(1, &f.genesis, genesis_qc(&f.committee), None, 5);
    let effects = r.handle(
        f.verified(a),
        10,
        &mut EmptyLedger {
            refuse: true,
            ..EmptyLedger::default()
        },
    );
    assert!(votes_sent(&effects).is_empty());
    assert_eq!(r.safety().last_voted_view, View(0));
}

#[test]
fn distinct_votes_form_a_qc_and_the_next_leader_proposes_on_it() {
    let f = fixture(4);
    let (mut leader2, _) = f.started(2);
    let a = f.proposal(1, &f.genesis, genesis_qc(&f.committee), None, 5);
    let hash = block_of(&a).hash();
    let mut ledger = EmptyLedger::default();
    let _ = leader2.handle(f.verified(a), 1, &mut ledger); // leader 2 votes itself
    let effects = leader2.handle(f.verified(f.vote(0, 1, hash)), 2, &mut ledger);
    assert_eq!(leader2.view(), View(1), "2 of 3 votes: no QC yet");
    assert!(
        !effects.iter().any(
            |e| matches!(e, Effect::Broadcast(m) if matches!(m.payload, Payload::Proposal(_)))
        )
    );
    // The same vote again (e.g. forwarded) does not count twice.
    let _ = leader2.handle(
        Input::Message(Verified::own(f.vote(0, 1, hash))),
        3,
        &mut ledger,
    );
    assert_eq!(leader2.view(), View(1));
    let effects = leader2.handle(f.verified(f.vote(3, 1, hash)), 4, &mut ledger);
    assert_eq!(leader2.view(), View(2));
    let proposal = effects
        .iter()
        .find_map(|e| match e {
            Effect::Broadcast(m) if matches!(m.payload, Payload::Proposal(_)) => Some(block_of(m)),
            _ => None,
        })
        .expect("leader of view 2 proposes");
    let cert = parent_cert(&proposal).unwrap();
    assert_eq!((cert.view, cert.block, cert.signatures.len()), (1, hash, 3));
    assert!(verify_qc(&f.committee, cert).is_ok());
}

#[test]
fn messages_from_outside_or_badly_signed_or_with_bad_certificates_are_refused() {
    let f = fixture(4);
    let hash = f.genesis.hash();
    let mut stranger = f.vote(0, 1, hash);
    stranger.author = ValidatorIndex(9);
    assert_eq!(
        verify_decoded(stranger, &f.committee),
        Err(MessageError::UnknownAuthor {
            author: ValidatorIndex(9)
        })
    );
    let mut forged = f.vote(0, 1, hash);
    forged.author = ValidatorIndex(1);
    assert_eq!(
        verify_decoded(forged, &f.committee),
        Err(MessageError::BadSignature {
            author: ValidatorIndex(1)
        })
    );
    let bad = |qc: BftCertificate| verify_qc(&f.committee, &qc).unwrap_err();
    let short = f.qc(1, hash, &[0, 1]);
    assert!(matches!(
        bad(short),
        MessageError::BadCertificate {
            reason: CertError::TooFewSigners { got: 2, quorum: 3 },
            ..
        }
    ));
    let mut dup = f.qc(1, hash, &[0, 1, 2]);
    dup.signatures[2] = dup.signatures[0].clone();
    assert!(matches!(
        bad(dup),
        MessageError::BadCertificate {
            reason: CertError::DuplicateSigner(_),
            ..
        }
    ));
    let mut wrong_view = f.qc(1, hash, &[0, 1, 2]);
    wrong_view.view = 2;
    assert!(matches!(
        bad(wrong_view),
        MessageError::BadCertificate {
            reason: CertError::BadSignature(_),
            ..
        }
    ));
    // A proposal from someone who is not the view's leader.
    let mut p = f.proposal(1, &f.genesis, genesis_qc(&f.committee), None, 1);
    p = sign(&f.committee, &f.keys[0], ValidatorIndex(0), p.payload);
    assert!(matches!(
        verify_decoded(p, &f.committee),
        Err(MessageError::NotLeader { .. })
    ));
    // A proposal whose parent header is not its parent's.
    let blocks = chain(&f, &[1, 2, 3]);
    let mut wrong_parent = blocks[2].clone();
    if let Payload::Proposal(p) = &mut wrong_parent.payload {
        p.parent_header = f.genesis.header().clone();
    }
    assert_eq!(
        verify_decoded(wrong_parent, &f.committee),
        Err(MessageError::MalformedBlock)
    );
    // Past the first views, the leader comes from the parent's QC: every
    // other member is refused, the genesis round-robin leader included.
    let b2 = block_of(&blocks[1]);
    let leader_of_3 = leader::leader(&f.committee, View(3), b2.header());
    assert_eq!(blocks[2].author, leader_of_3);
    for other in f.committee.members().filter(|v| *v != leader_of_3) {
        let resigned = sign(
            &f.committee,
            &f.keys[usize::from(other.0)],
            other,
            blocks[2].payload.clone(),
        );
        assert!(matches!(
            verify_decoded(resigned, &f.committee),
            Err(MessageError::NotLeader { .. } | MessageError::MalformedBlock)
        ));
    }
    // Bytes: oversize and garbage.
    assert!(matches!(
        verify_message(&[0xff; 16], &f.committee),
        Err(MessageError::Decode(_))
    ));
}

/// A chain of proposals b1..bk in views `views`, each certified by a quorum.
fn chain(f: &Fixture, views: &[u64]) -> Vec<SignedMessage> {
    let mut out = Vec::new();
    let mut parent = f.genesis.clone();
    let mut cert = genesis_qc(&f.committee);
    let q = f.quorum();
    for &view in views {
        let tc = if cert.view + 1 == view {
            None
        } else {
            Some(f.tc(view - 1, cert.clone(), &q))
        };
        let p = f.proposal(view, &parent, cert.clone(), tc, view * 10);
        parent = block_of(&p);
        cert = f.qc(view, parent.hash(), &q);
        out.push(p);
    }
    out
}

impl Fixture {
    /// The first n - f validators.
    fn quorum(&self) -> Vec<usize> {
        (0..self.committee.quorum()).collect()
    }

    fn tc(&self, view: u64, high_qc: BftCertificate, signers: &[usize]) -> TimeoutCert {
        TimeoutCert {
            view: View(view),
            signatures: signers
                .iter()
                .map(|&i| TimeoutSignature {
                    validator: ValidatorIndex(i as u16),
                    high_qc_view: View(high_qc.view),
                    signature: self.keys[i].sign(&messages::timeout_bytes(
                        &self.committee,
                        View(view),
                        View(high_qc.view),
                    )),
                })
                .collect(),
            high_qc,
        }
    }
}

#[test]
fn a_three_chain_in_consecutive_views_commits_its_head_and_ancestors() {
    // n = 7: replica 0 leads none of views 1 to 6, so only the test proposes.
    let f = fixture(7);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let blocks = chain(&f, &[1, 2, 3, 4]);
    let mut committed = Vec::new();
    for p in &blocks {
        committed.extend(commits(&r.handle(f.verified(p.clone()), 0, &mut ledger)));
    }
    // b4 certifies b3, b3 certifies b2, b2 certifies b1: b1 commits.
    assert_eq!(committed, vec![block_of(&blocks[0])]);
    assert_eq!(r.safety().locked_qc.block, block_of(&blocks[1]).hash());
    let more = chain(&f, &[1, 2, 3, 4, 5, 6]);
    for p in &more[4..] {
        committed.extend(commits(&r.handle(f.verified(p.clone()), 0, &mut ledger)));
    }
    let heights: Vec<u64> = committed.iter().map(|b| b.header().height.0).collect();
    assert_eq!(heights, [1, 2, 3]);
}

#[test]
fn a_gap_in_views_delays_the_commit() {
    let f = fixture(7);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    // b1(v1) ← b3(v3) ← b4(v4) ← b5(v5): when b5 certifies b4, the chain
    // b1 ← b3 ← b4 has direct parents but views 1, 3, 4: no commit.
    let blocks = chain(&f, &[1, 3, 4, 5, 6]);
    let mut committed = Vec::new();
    for p in &blocks[..4] {
        committed.extend(commits(&r.handle(f.verified(p.clone()), 0, &mut ledger)));
    }
    assert!(committed.is_empty(), "{committed:?}");
    // b6 certifies b5 ← b4 ← b3 in views 3, 4, 5: b3 commits, after b1.
    committed.extend(commits(&r.handle(
        f.verified(blocks[4].clone()),
        0,
        &mut ledger,
    )));
    let heights: Vec<u64> = committed.iter().map(|b| b.header().height.0).collect();
    assert_eq!(heights, [1, 2]);
}

#[test]
fn the_lock_refuses_a_conflicting_proposal_on_an_older_qc() {
    let f = fixture(7);
    let q = f.quorum();
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let blocks = chain(&f, &[1, 2, 3]);
    for p in &blocks {
        let _ = r.handle(f.verified(p.clone()), 0, &mut ledger);
    }
    // b3 certifies b2, whose own QC certifies b1: locked on b1 (view 1).
    let b1 = block_of(&blocks[0]);
    assert_eq!(
        (r.safety().locked_qc.view, r.safety().locked_qc.block),
        (1, b1.hash())
    );
    // A fork off genesis in view 4, justified by a TC for view 3 whose
    // highest QC is genesis': it neither extends b1 nor shows a newer QC.
    let g = genesis_qc(&f.committee);
    let fork = f.proposal(4, &f.genesis, g.clone(), Some(f.tc(3, g, &q)), 40);
    let effects = r.handle(f.verified(fork), 50, &mut ledger);
    assert_eq!(r.view(), View(4));
    assert!(votes_sent(&effects).is_empty(), "{effects:#?}");
    // In view 5, a block extending b1 is safe.
    let qc1 = f.qc(1, b1.hash(), &q);
    let ok = f.proposal(5, &b1, qc1.clone(), Some(f.tc(4, qc1, &q)), 60);
    let effects = r.handle(f.verified(ok), 60, &mut ledger);
    assert_eq!(votes_sent(&effects).len(), 1, "{effects:#?}");
}

#[test]
fn the_lock_gives_way_to_a_newer_qc() {
    let f = fixture(7);
    let q = f.quorum();
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    for p in chain(&f, &[1, 2, 3]) {
        let _ = r.handle(f.verified(p), 0, &mut ledger);
    }
    // Locked on b1 (view 1). A fork off genesis in view 4 (after a TC for
    // view 3) gets no vote here, but a QC elsewhere; a proposal on that newer
    // QC is safe to vote for although it does not extend b1.
    let g = genesis_qc(&f.committee);
    let fork = f.proposal(4, &f.genesis, g.clone(), Some(f.tc(3, g, &q)), 40);
    let fork_block = block_of(&fork);
    let effects = r.handle(f.verified(fork), 40, &mut ledger);
    assert!(votes_sent(&effects).is_empty());
    let qc_fork = f.qc(4, fork_block.hash(), &q);
    let p = f.proposal(5, &fork_block, qc_fork, None, 50);
    let effects = r.handle(f.verified(p), 50, &mut ledger);
    assert_eq!(votes_sent(&effects).len(), 1, "{effects:#?}");
}

#[test]
fn timeouts_form_a_tc_that_moves_to_the_next_view() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let g = genesis_qc(&f.committee);
    // The view timer fires: a timeout is persisted and broadcast.
    let effects = r.handle(Input::Timer(Timer::View(View(1))), 1_000, &mut ledger);
    let persist = position(
        &effects,
        |e| matches!(e, Effect::PersistSafety(s) if s.last_timeout.is_some()),
    )
    .unwrap();
    let sent = position(
        &effects,
        |e| matches!(e, Effect::Broadcast(m) if matches!(m.payload, Payload::Timeout(_))),
    )
    .unwrap();
    assert!(persist < sent);
    assert_eq!(
        r.safety().last_voted_view,
        View(1),
        "no votes in a view after timing out"
    );
    // The timer again: the same timeout, not a new one.
    let again = r.handle(Input::Timer(Timer::View(View(1))), 3_000, &mut ledger);
    assert!(!again.iter().any(|e| matches!(e, Effect::PersistSafety(_))));
    let _ = r.handle(f.verified(f.timeout(1, 1, g.clone())), 3_001, &mut ledger);
    assert_eq!(r.view(), View(1));
    let _ = r.handle(f.verified(f.timeout(2, 1, g.clone())), 3_002, &mut ledger);
    assert_eq!(r.view(), View(2), "three timeouts form a TC");
    // f + 1 timeouts for a later view pull a lagging replica along.
    let (mut lagging, _) = f.started(3);
    let _ = lagging.handle(f.verified(f.timeout(0, 6, g.clone())), 10, &mut ledger);
    assert_eq!(lagging.view(), View(1));
    let effects = lagging.handle(f.verified(f.timeout(1, 6, g)), 11, &mut ledger);
    // It joined view 6, timed out there too, and with its own timeout had
    // the three that form a TC: on to view 7.
    assert_eq!(lagging.view(), View(7));
    assert!(effects.iter().any(|e| matches!(e, Effect::Broadcast(m) if m.author == ValidatorIndex(3) && matches!(m.payload, Payload::Timeout(_)))));
}

#[test]
fn after_a_restart_a_replica_never_signs_a_conflicting_vote() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let g = genesis_qc(&f.committee);
    let a = f.proposal(1, &f.genesis, g.clone(), None, 1);
    let effects = r.handle(f.verified(a), 1, &mut ledger);
    let saved = effects
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::PersistSafety(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    // Crash; restart with what was persisted.
    let mut restarted = f.replica(0, Config::default());
    let _ = restarted.handle(
        Input::Start {
            recovered: Some(Box::new(saved)),
        },
        2,
        &mut ledger,
    );
    let b = f.proposal(1, &f.genesis, g, None, 2);
    let effects = restarted.handle(f.verified(b), 3, &mut ledger);
    assert!(votes_sent(&effects).is_empty(), "{effects:#?}");
}

#[test]
fn a_double_voter_is_caught() {
    let f = fixture(4);
    let mut byz = f.replica(
        0,
        Config {
            byzantine: Some(Byzantine::DoubleVote),
            ..Config::default()
        },
    );
    let mut ledger = EmptyLedger::default();
    let _ = byz.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let a = f.proposal(1, &f.genesis, genesis_qc(&f.committee), None, 1);
    let effects = byz.handle(f.verified(a), 1, &mut ledger);
    let votes: Vec<SignedMessage> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { message, .. } if matches!(message.payload, Payload::Vote(_)) => {
                Some(message.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(votes.len(), 2);
    let (mut honest, _) = f.started(2);
    let _ = honest.handle(f.verified(votes[0].clone()), 2, &mut ledger);
    let effects = honest.handle(f.verified(votes[1].clone()), 3, &mut ledger);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Evidence(Evidence::ConflictingVotes { .. })))
    );
}

/// Delivers every message at once, in order, until `steps` run out; fires the
/// earliest timer when nothing is in flight. Returns each replica's commits.
fn run_synchronous(f: &Fixture, mut replicas: Vec<Replica>, steps: usize) -> Vec<Vec<Hash>> {
    let n = replicas.len();
    let mut ledger = EmptyLedger::default();
    let mut queue: VecDeque<(usize, Input)> = (0..n)
        .map(|i| (i, Input::Start { recovered: None }))
        .collect();
    let mut timers: BTreeMap<(u64, usize, Timer), ()> = BTreeMap::new();
    let mut committed = vec![Vec::new(); n];
    let mut now = 0;
    for _ in 0..steps {
        let (i, input) = match queue.pop_front() {
            Some(x) => x,
            None => match timers.pop_first() {
                Some(((at, i, timer), ())) => {
                    now = now.max(at);
                    (i, Input::Timer(timer))
                }
                None => break,
            },
        };
        for effect in replicas[i].handle(input, now, &mut ledger) {
            match effect {
                Effect::Send { to, message } => queue.push_back((
                    usize::from(to.0),
                    Input::Message(verify_decoded(message, &f.committee).unwrap()),
                )),
                Effect::Broadcast(message) => {
                    for j in (0..n).filter(|j| *j != i) {
                        queue.push_back((
                            j,
                            Input::Message(verify_decoded(message.clone(), &f.committee).unwrap()),
                        ));
                    }
                }
                Effect::Relay(relayed) => {
                    for j in (0..n).filter(|j| *j != i) {
                        let m = messages::verify_message(&relayed.bytes, &f.committee).unwrap();
                        queue.push_back((j, Input::Message(m)));
                    }
                }
                Effect::SendSync { to, message } => queue.push_back((
                    usize::from(to.0),
                    Input::Sync {
                        from: ValidatorIndex(i as u16),
                        message,
                    },
                )),
                Effect::Commit(b) => committed[i].push(b.hash()),
                Effect::ArmTimer { timer, at } => {
                    timers.retain(|(_, j, t), ()| !(*j == i && *t == timer));
                    timers.insert((at, i, timer), ());
                }
                Effect::CancelTimer(timer) => {
                    timers.retain(|(_, j, t), ()| !(*j == i && *t == timer));
                }
                Effect::PersistSafety(_) | Effect::Evidence(_) => {}
            }
        }
    }
    committed
}

#[test]
fn four_honest_replicas_agree_and_keep_committing() {
    let f = fixture(4);
    let replicas = (0..4).map(|i| f.replica(i, Config::default())).collect();
    let committed = run_synchronous(&f, replicas, 20_000);
    let shortest = committed.iter().map(Vec::len).min().unwrap();
    assert!(
        shortest >= 10,
        "commits per replica: {:?}",
        committed.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for c in &committed {
        assert_eq!(c[..shortest], committed[0][..shortest]);
    }
}

#[test]
fn a_silent_leader_is_skipped_by_timeouts() {
    let f = fixture(4);
    let replicas = (0..4)
        .map(|i| {
            let byzantine = (i == 1).then_some(Byzantine::Silent);
            f.replica(
                i,
                Config {
                    byzantine,
                    ..Config::default()
                },
            )
        })
        .collect();
    let committed = run_synchronous(&f, replicas, 40_000);
    for (i, c) in committed.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(c.len() >= 5, "replica {i} committed {}", c.len());
    }
    let shortest = [0, 2, 3].iter().map(|&i| committed[i].len()).min().unwrap();
    assert_eq!(committed[0][..shortest], committed[2][..shortest]);
    assert_eq!(committed[0][..shortest], committed[3][..shortest]);
}

#[test]
fn a_timeout_carries_the_tc_that_moved_its_sender_on() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let g = genesis_qc(&f.committee);
    // r formed TC(1) alone (it got the others' timeouts for view 1) and
    // is in view 2; when view 2 times out, its timeout carries TC(1).
    let _ = r.handle(Input::Timer(Timer::View(View(1))), 1_000, &mut ledger);
    let _ = r.handle(f.verified(f.timeout(1, 1, g.clone())), 1_001, &mut ledger);
    let _ = r.handle(f.verified(f.timeout(2, 1, g)), 1_002, &mut ledger);
    assert_eq!(r.view(), View(2));
    let effects = r.handle(Input::Timer(Timer::View(View(2))), 3_000, &mut ledger);
    let timeout = effects
        .iter()
        .find_map(|e| match e {
            Effect::Broadcast(m) if matches!(m.payload, Payload::Timeout(_)) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    let Payload::Timeout(t) = &timeout.payload else {
        unreachable!()
    };
    assert_eq!(t.high_tc.as_ref().map(|tc| tc.view), Some(View(1)));
    // A replica still in view 1 that never saw those timeouts moves to 2.
    let (mut behind, _) = f.started(3);
    let _ = behind.handle(f.verified(timeout), 3_001, &mut ledger);
    assert!(behind.view() >= View(2), "{:?}", behind.view());
}

#[test]
fn timeouts_far_ahead_still_pull_a_lagging_replica_along() {
    let f = fixture(4);
    let (mut r, _) = f.started(3);
    let mut ledger = EmptyLedger::default();
    let g = genesis_qc(&f.committee);
    let _ = r.handle(f.verified(f.timeout(0, 500, g.clone())), 10, &mut ledger);
    assert_eq!(r.view(), View(1));
    let _ = r.handle(f.verified(f.timeout(1, 500, g)), 11, &mut ledger);
    assert!(r.view() >= View(500), "{:?}", r.view());
}

#[test]
fn a_replica_that_missed_blocks_fetches_them_and_votes() {
    let f = fixture(7);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let blocks = chain(&f, &[1, 2, 3]);
    // Only b3 arrives: it is buffered and its parent asked for from b3's author.
    let effects = r.handle(f.verified(blocks[2].clone()), 30, &mut ledger);
    assert!(votes_sent(&effects).is_empty());
    let b2 = block_of(&blocks[1]);
    let asked = effects.iter().find_map(|e| match e {
        Effect::SendSync {
            to,
            message: SyncMessage::Request { hash },
        } => Some((*to, *hash)),
        _ => None,
    });
    let b3_author = blocks[2].author;
    assert_eq!(asked, Some((b3_author, b2.hash())));
    // Unasked-for blocks are ignored; the asked-for chain is accepted.
    let stranger = block_of(&chain(&f, &[1, 2, 4])[2]);
    let _ = r.handle(
        Input::Sync {
            from: b3_author,
            message: SyncMessage::Response {
                blocks: vec![stranger],
            },
        },
        31,
        &mut ledger,
    );
    let response = SyncMessage::Response {
        blocks: vec![b2, block_of(&blocks[0])],
    };
    let effects = r.handle(
        Input::Sync {
            from: b3_author,
            message: response,
        },
        32,
        &mut ledger,
    );
    // The vote goes to the leader of view 4 on b3.
    let b3 = block_of(&blocks[2]);
    let next = leader::leader(&f.committee, View(4), b3.header());
    assert_eq!(
        votes_sent(&effects),
        vec![(
            next,
            Vote {
                view: View(3),
                block: block_of(&blocks[2]).hash()
            }
        )]
    );
    // And it serves what it holds to others.
    let effects = r.handle(
        Input::Sync {
            from: ValidatorIndex(5),
            message: SyncMessage::Request {
                hash: block_of(&blocks[2]).hash(),
            },
        },
        33,
        &mut ledger,
    );
    let served = effects.iter().find_map(|e| match e {
        Effect::SendSync {
            to,
            message: SyncMessage::Response { blocks },
        } => Some((*to, blocks.len())),
        _ => None,
    });
    assert_eq!(
        served,
        Some((ValidatorIndex(5), 4)),
        "b3, b2, b1 and genesis"
    );
}

/// A block asked for and never received (a lost request or answer, or a
/// peer that went down) is asked for again each time the view timer fires,
/// from the other validators in turn.
#[test]
fn a_missing_block_is_asked_for_again_from_the_others_in_turn() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let blocks = chain(&f, &[1, 2, 3]);
    let b2 = block_of(&blocks[1]).hash();
    let asked_for_b2 = |effects: &[Effect]| -> Vec<ValidatorIndex> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::SendSync {
                    to,
                    message: SyncMessage::Request { hash },
                } if *hash == b2 => Some(*to),
                _ => None,
            })
            .collect()
    };
    let effects = r.handle(f.verified(blocks[2].clone()), 30, &mut ledger);
    assert_eq!(asked_for_b2(&effects), [blocks[2].author]);
    assert_eq!(r.view(), View(3));
    let mut asked = Vec::new();
    for (i, at) in [1_030, 2_030, 3_030].into_iter().enumerate() {
        let effects = r.handle(Input::Timer(Timer::View(View(3))), at, &mut ledger);
        let to = asked_for_b2(&effects);
        assert_eq!(to.len(), 1, "timer {i}: {effects:#?}");
        asked.extend(to);
    }
    asked.sort();
    assert_eq!(
        asked,
        [ValidatorIndex(1), ValidatorIndex(2), ValidatorIndex(3)],
        "each other validator once"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    use crate::test_seed;

    /// Everything a replica might be told, built from one fixture.
    fn inputs(f: &Fixture) -> Vec<Input> {
        let q = f.quorum();
        let mut all = Vec::new();
        for views in [&[1u64, 2, 3, 4, 5][..], &[1, 3, 4, 6], &[2, 3, 5, 6]] {
            for p in chain(f, views) {
                let b = block_of(&p);
                let view = block_view(&b).unwrap().0;
                all.push(f.verified(p));
                for voter in 0..f.keys.len() {
                    all.push(f.verified(f.vote(voter, view, b.hash())));
                }
                all.push(f.verified(f.timeout(q[0], view, parent_cert(&b).unwrap().clone())));
                all.push(Input::Sync {
                    from: ValidatorIndex(1),
                    message: SyncMessage::Response {
                        blocks: vec![b.clone()],
                    },
                });
            }
        }
        for view in 1..8 {
            all.push(Input::Timer(Timer::View(View(view))));
            for who in 0..f.keys.len() {
                all.push(f.verified(f.timeout(who, view, genesis_qc(&f.committee))));
            }
        }
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..test_seed::config() })]

        /// Whatever arrives, in whatever order: views and the last voted view
        /// never go back, at most one vote is signed per view, and safety data
        /// is persisted before any message that depends on it.
        #[test]
        fn invariants_hold_under_any_input_order(ops in proptest::collection::vec(0u8..8, 150)) {
            let f = fixture(4);
            let natural = inputs(&f);
            // The natural order, with random drops, duplicates and swaps.
            let mut pool = Vec::new();
            for (i, op) in ops.iter().enumerate().take(natural.len()) {
                match op {
                    0 => {}
                    1 => pool.extend([natural[i].clone(), natural[i].clone()]),
                    2 if i + 1 < natural.len() => pool.extend([natural[i + 1].clone(), natural[i].clone()]),
                    _ => pool.push(natural[i].clone()),
                }
            }
            let order: Vec<usize> = (0..pool.len()).collect();
            let mut r = f.replica(0, Config::default());
            let mut ledger = EmptyLedger::default();
            let _ = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
            let mut my_votes: BTreeMap<View, Hash> = BTreeMap::new();
            let (mut view, mut voted) = (r.view(), r.safety().last_voted_view);
            // What the caller has made durable so far: a message may leave
            // once a persist before it, in this input or an earlier one,
            // covers it (a vote re-sent with a repeated timeout was
            // persisted when it was first signed).
            let mut last_persist: Option<SafetyData> = None;
            for (step, &index) in order.iter().enumerate() {
                let input = pool[index].clone();
                let effects = r.handle(input, step as u64 * 700, &mut ledger);
                let mut persisted = r.safety().clone();
                let mut persisted_now = false;
                for e in &effects {
                    match e {
                        Effect::PersistSafety(s) => {
                            last_persist = Some(s.clone());
                            persisted_now = true;
                        }
                        Effect::Send { message, .. } | Effect::Broadcast(message) if message.author == ValidatorIndex(0) => {
                            let durable = last_persist.as_ref();
                            match &message.payload {
                                Payload::Vote(v) => {
                                    prop_assert!(durable.is_some_and(|s| s.last_voted_view >= v.view), "vote before persisting");
                                    let first = *my_votes.entry(v.view).or_insert(v.block);
                                    prop_assert_eq!(first, v.block, "two votes in view {:?}", v.view);
                                }
                                Payload::Timeout(t) => prop_assert!(durable.is_some_and(|s| s.last_voted_view >= t.view) || r.safety().last_timeout.as_ref() == Some(message)),
                                Payload::Proposal(_) => prop_assert!(durable.is_some_and(|s| s.last_proposed_view >= message.view())),
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(s) = last_persist.as_ref().filter(|_| persisted_now) {
                    persisted = s.clone();
                }
                prop_assert!(r.view() >= view, "view went back");
                prop_assert!(r.safety().last_voted_view >= voted);
                prop_assert!(persisted.last_voted_view <= r.safety().last_voted_view);
                view = r.view();
                voted = r.safety().last_voted_view;
            }
        }

        /// Random bytes, and valid messages with a byte changed, never panic
        /// the decoder: they verify or fail with an error.
        #[test]
        fn message_decoding_never_panics(noise in proptest::collection::vec(any::<u8>(), 0..300), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let f = fixture(4);
            let _ = verify_message(&noise, &f.committee);
            let _ = decode_sync(&noise);
            let p = chain(&f, &[1, 2])[1].clone();
            let mut bytes = p.encode();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(m) = verify_message(&bytes, &f.committee) {
                // A flip that still verifies must be one without meaning
                // (none exist: every byte is covered or structural).
                prop_assert_eq!(m.into_inner(), p);
            }
        }
    }
}

/// A leader configured to wait for batches proposes at once when the
/// ledger is ready, otherwise arms its propose timer and proposes when
/// transactions arrive or the timer fires, once per view.
#[test]
fn a_leader_waits_for_a_batch_at_most_the_batch_delay() {
    let f = fixture(4);
    let proposals = |effects: &[Effect]| {
        effects
            .iter()
            .filter(
                |e| matches!(e, Effect::Broadcast(m) if matches!(m.payload, Payload::Proposal(_))),
            )
            .count()
    };
    let config = Config {
        max_batch_delay_ms: 200,
        ..Config::default()
    };
    // Replica 1 leads view 1.
    let mut r = f.replica(1, config.clone());
    let mut idle = EmptyLedger {
        ready: Some(false),
        ..EmptyLedger::default()
    };
    let effects = r.handle(Input::Start { recovered: None }, 0, &mut idle);
    assert_eq!(proposals(&effects), 0, "nothing to propose yet");
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::ArmTimer {
            timer: Timer::Propose(View(1)),
            at: 200
        }
    )));
    // Still not ready: no proposal, no second timer.
    let effects = r.handle(Input::TransactionsAvailable, 50, &mut idle);
    assert!(effects.is_empty(), "{effects:#?}");
    // Ready: propose now, and only once.
    let mut ready = EmptyLedger::default();
    let effects = r.handle(Input::TransactionsAvailable, 60, &mut ready);
    assert_eq!(proposals(&effects), 1);
    let effects = r.handle(Input::Timer(Timer::Propose(View(1))), 200, &mut ready);
    assert_eq!(proposals(&effects), 0, "one proposal per view");

    // Never ready: the timer makes it propose anyway.
    let mut r = f.replica(1, config);
    let _ = r.handle(Input::Start { recovered: None }, 0, &mut idle);
    let effects = r.handle(Input::Timer(Timer::Propose(View(1))), 200, &mut idle);
    assert_eq!(proposals(&effects), 1);
}

/// With nothing in the pool, a leader waits the longer empty-block delay;
/// a transaction arriving brings the proposal forward to the batch delay
/// counted from when the leader began to wait (at once if that is past).
#[test]
fn an_idle_leader_waits_the_empty_block_delay_until_transactions_come() {
    let f = fixture(4);
    let propose_timers = |effects: &[Effect]| -> Vec<u64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::ArmTimer {
                    timer: Timer::Propose(View(1)),
                    at,
                } => Some(*at),
                _ => None,
            })
            .collect()
    };
    let config = Config {
        max_batch_delay_ms: 200,
        empty_block_delay_ms: 900,
        ..Config::default()
    };
    let mut r = f.replica(1, config.clone());
    let mut idle = EmptyLedger {
        ready: Some(false),
        pending: Some(false),
        ..EmptyLedger::default()
    };
    let proposed = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::Broadcast(m) if matches!(m.payload, Payload::Proposal(_))))
    };
    let effects = r.handle(Input::Start { recovered: None }, 0, &mut idle);
    assert_eq!(propose_timers(&effects), [900]);
    // A transaction at 100: due at the batch delay from the start, 200.
    let mut waiting = EmptyLedger {
        ready: Some(false),
        pending: Some(true),
        ..EmptyLedger::default()
    };
    let effects = r.handle(Input::TransactionsAvailable, 100, &mut waiting);
    assert_eq!(propose_timers(&effects), [200]);
    assert!(!proposed(&effects));
    // More at 150: no new timer.
    let effects = r.handle(Input::TransactionsAvailable, 150, &mut waiting);
    assert!(effects.is_empty(), "{effects:#?}");
    // Its timer proposes.
    let effects = r.handle(Input::Timer(Timer::Propose(View(1))), 200, &mut waiting);
    assert!(proposed(&effects));

    // A transaction after the batch delay has passed: proposed at once.
    let mut r = f.replica(1, config.clone());
    let _ = r.handle(Input::Start { recovered: None }, 0, &mut idle);
    let effects = r.handle(Input::TransactionsAvailable, 500, &mut waiting);
    assert!(proposed(&effects), "{effects:#?}");

    // An empty-block delay at or below the batch delay changes nothing.
    let mut r = f.replica(
        1,
        Config {
            empty_block_delay_ms: 100,
            ..config
        },
    );
    let effects = r.handle(Input::Start { recovered: None }, 0, &mut idle);
    assert_eq!(propose_timers(&effects), [200]);
}

/// A vote the next leader does not answer is re-sent to every validator,
/// and a replica that is not that leader forms the QC from such votes and
/// moves on, without the view timing out.
#[test]
fn an_unanswered_vote_goes_to_everyone_and_any_replica_forms_the_qc() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let g = genesis_qc(&f.committee);
    let proposal = f.proposal(1, &f.genesis, g, None, 5);
    let block = block_of(&proposal).hash();
    let effects = r.handle(f.verified(proposal), 10, &mut ledger);
    assert_eq!(votes_sent(&effects).len(), 1, "the first vote goes to one");
    let leader_of_2 = f.committee.leader(View(2));
    assert_ne!(leader_of_2, ValidatorIndex(0));
    let effects = r.handle(Input::Timer(Timer::ResendVote(View(1))), 510, &mut ledger);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Broadcast(m) if m.author == ValidatorIndex(0)
                && matches!(m.payload, Payload::Vote(v) if v.block == block)
        )),
        "{effects:#?}"
    );
    assert_eq!(r.view(), View(1));
    for voter in [1, 3] {
        let _ = r.handle(f.verified(f.vote(voter, 1, block)), 520, &mut ledger);
    }
    assert_eq!(r.view(), View(2), "three votes are a QC wherever they meet");
}

/// A replica that forms a QC from votes others re-sent, and so moves on
/// before its own re-send, sends its vote once more if the new view stays
/// silent: the others need it to form the same QC. (Without it they timed
/// out the view behind ours, and a crashed leader cost two view timeouts.)
/// If the new view makes progress, nothing more is sent.
#[test]
fn a_replica_that_moves_on_by_a_qc_formed_here_resends_its_vote_once() {
    let f = fixture(4);
    let g = genesis_qc(&f.committee);
    let proposal = f.proposal(1, &f.genesis, g, None, 5);
    let block = block_of(&proposal).hash();
    let own_vote_broadcast = |effects: &[Effect]| {
        effects.iter().any(|e| {
            matches!(
                e,
                Effect::Broadcast(m) if m.author == ValidatorIndex(0)
                    && matches!(m.payload, Payload::Vote(v) if v.view == View(1) && v.block == block)
            )
        })
    };
    for progress in [false, true] {
        let (mut r, _) = f.started(0);
        let mut ledger = EmptyLedger::default();
        let _ = r.handle(f.verified(proposal.clone()), 10, &mut ledger);
        let mut effects = Vec::new();
        for voter in [1, 3] {
            effects = r.handle(f.verified(f.vote(voter, 1, block)), 100, &mut ledger);
        }
        assert_eq!(r.view(), View(2));
        assert!(!own_vote_broadcast(&effects), "{effects:#?}");
        assert!(
            effects.iter().any(|e| matches!(
                e,
                Effect::ArmTimer {
                    timer: Timer::ResendVote(View(1)),
                    ..
                }
            )),
            "{effects:#?}"
        );
        if progress {
            let qc = f.qc(1, block, &[0, 1, 3]);
            let next = f.proposal(2, &block_of(&proposal), qc, None, 6);
            let effects = r.handle(f.verified(next), 150, &mut ledger);
            assert!(
                effects.iter().any(|e| matches!(
                    e,
                    Effect::ArmTimer {
                        timer: Timer::ResendVote(View(2)),
                        ..
                    }
                )),
                "votes in view 2: {effects:#?}"
            );
        }
        let effects = r.handle(Input::Timer(Timer::ResendVote(View(1))), 350, &mut ledger);
        assert_eq!(own_vote_broadcast(&effects), !progress, "{effects:#?}");
        assert!(
            !effects.iter().any(|e| matches!(
                e,
                Effect::ArmTimer {
                    timer: Timer::ResendVote(View(1)),
                    ..
                }
            )),
            "sent once, not re-armed: {effects:#?}"
        );
    }
}

/// Leaving a view cancels its timers (the caller need not keep them).
#[test]
fn a_new_view_cancels_the_old_views_timers() {
    let f = fixture(4);
    let (mut r, _) = f.started(0);
    let mut ledger = EmptyLedger::default();
    let g = genesis_qc(&f.committee);
    let _ = r.handle(Input::Timer(Timer::View(View(1))), 1_000, &mut ledger);
    let _ = r.handle(f.verified(f.timeout(1, 1, g.clone())), 1_001, &mut ledger);
    let effects = r.handle(f.verified(f.timeout(2, 1, g)), 1_002, &mut ledger);
    assert_eq!(r.view(), View(2));
    for timer in [
        Timer::View(View(1)),
        Timer::ResendVote(View(1)),
        Timer::Propose(View(1)),
    ] {
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::CancelTimer(t) if *t == timer)),
            "{timer:?}: {effects:#?}"
        );
    }
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::ArmTimer {
            timer: Timer::View(View(2)),
            ..
        }
    )));
}

/// A committee of one: its own vote is a QC, so each proposal leads to the
/// next view, where it leads again. That must not recurse: the next
/// proposal waits for a propose timer due at once, and blocks commit.
#[test]
fn a_committee_of_one_makes_progress_without_recursing() {
    let f = fixture(1);
    let mut r = f.replica(0, Config::default());
    let mut ledger = EmptyLedger::default();
    let mut effects = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let mut commits = 0;
    for step in 0..20u64 {
        commits += effects
            .iter()
            .filter(|e| matches!(e, Effect::Commit(_)))
            .count();
        let due = effects.iter().find_map(|e| match e {
            Effect::ArmTimer {
                timer: Timer::Propose(v),
                ..
            } => Some(*v),
            _ => None,
        });
        let view = due.expect("a deferred proposal");
        effects = r.handle(Input::Timer(Timer::Propose(view)), step, &mut ledger);
    }
    assert!(commits >= 10, "{commits} commits");
}

/// `chain` has only validators 0, 1 and 2 sign QCs: validator 3 (down, or
/// silent) leads none of views 1 to 30 (round-robin gives views 1 and 2
/// to validators 1 and 2; the QCs give the rest), and a replica's vote
/// for each block goes to the leader that block gives the next view.
#[test]
fn a_validator_in_no_qc_is_not_picked_and_votes_follow_the_rule() {
    let f = fixture(4);
    let views: Vec<u64> = (1..=30).collect();
    let blocks = chain(&f, &views);
    for p in &blocks {
        assert_ne!(p.author, ValidatorIndex(3), "view {:?}", p.view());
    }
    // Replica 3 (as if back from a crash) leads none of these views, so it
    // only votes.
    let mut r = f.replica(3, Config::default());
    let mut ledger = EmptyLedger::default();
    let _ = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
    let mut checked = 0;
    for (i, p) in blocks.iter().enumerate() {
        let effects = r.handle(f.verified(p.clone()), i as u64, &mut ledger);
        let b = block_of(p);
        let next = leader::leader(&f.committee, p.view().next(), b.header());
        for (to, vote) in votes_sent(&effects) {
            if vote.block == b.hash() {
                assert_eq!(to, next, "view {:?}", p.view());
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "only {checked} votes checked");
}

fn view_timer_at(effects: &[Effect], view: u64) -> Option<u64> {
    effects.iter().rev().find_map(|e| match e {
        Effect::ArmTimer {
            timer: Timer::View(v),
            at,
        } if *v == View(view) => Some(*at),
        _ => None,
    })
}

fn own_timeout_broadcast(effects: &[Effect], me: usize, view: u64) -> bool {
    effects.iter().any(|e| {
        matches!(
            e,
            Effect::Broadcast(m) if usize::from(m.author.0) == me
                && matches!(&m.payload, Payload::Timeout(t) if t.view == View(view))
        )
    })
}

/// The view timer follows the committee's pace: QCs 400 ms apart make the
/// first timeout 4 × 400 ms, above the 1 s base (the window's return to
/// the base is tested in `view_timeout`). With factor 0 it stays fixed.
#[test]
fn slow_rounds_lengthen_the_view_timer() {
    // n = 7: replica 0 leads none of views 1 to 6, so only the test proposes.
    let f = fixture(7);
    let blocks = chain(&f, &[1, 2, 3, 4, 5, 6]);
    for factor in [4, 0] {
        let config = Config {
            timeout_factor: factor,
            ..Config::default()
        };
        let mut r = f.replica(0, config);
        let mut ledger = EmptyLedger::default();
        let _ = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
        let mut timers = Vec::new();
        for (i, p) in blocks.iter().enumerate() {
            let now = 400 * (i as u64 + 1);
            let effects = r.handle(f.verified(p.clone()), now, &mut ledger);
            if i > 0 {
                // The proposal's QC ended the view before: a new timer.
                let at = view_timer_at(&effects, i as u64 + 1).expect("a view timer");
                timers.push(at - now);
            }
        }
        // Gaps: start to the first QC (800 ms), then 400 ms each; the
        // second-longest sets the pace.
        let expected = if factor == 4 {
            [1_000, 1_600, 1_600, 1_600, 1_600]
        } else {
            [1_000; 5]
        };
        assert_eq!(timers, expected, "factor {factor}");
        assert_eq!(r.view_timeout_ms(), expected[4]);
    }
}

/// A replica whose vote went to a leader that never formed the QC, and
/// that then got the QC from the votes re-sent on timeout, gives up at
/// once on the view that same leader leads. One that got the QC in time
/// does not.
#[test]
fn a_leader_that_failed_to_gather_a_qc_is_given_up_on_at_once() {
    let f = fixture(4);
    let g = genesis_qc(&f.committee);
    let proposal = f.proposal(1, &f.genesis, g, None, 5);
    let block = block_of(&proposal).hash();
    // The genesis QC has no signers: view 2 goes round-robin, to 2.
    assert_eq!(
        leader::leader(&f.committee, View(2), block_of(&proposal).header()),
        ValidatorIndex(2)
    );
    for timed_out in [true, false] {
        let (mut r, _) = f.started(0);
        let mut ledger = EmptyLedger::default();
        let effects = r.handle(f.verified(proposal.clone()), 10, &mut ledger);
        assert_eq!(votes_sent(&effects)[0].0, ValidatorIndex(2));
        let mut now = 100;
        if timed_out {
            now = 1_010;
            let effects = r.handle(Input::Timer(Timer::View(View(1))), now, &mut ledger);
            assert!(own_timeout_broadcast(&effects, 0, 1), "{effects:#?}");
        }
        let mut effects = Vec::new();
        for voter in [1, 3] {
            effects = r.handle(f.verified(f.vote(voter, 1, block)), now + 10, &mut ledger);
        }
        assert_eq!(r.view(), View(2));
        assert_eq!(
            own_timeout_broadcast(&effects, 0, 2),
            timed_out,
            "{effects:#?}"
        );
        assert_eq!(r.timed_out(), timed_out);
    }
}

/// With no transaction waiting, the leader may be waiting out its
/// empty-block delay: a replica's first view timer then waits that much
/// more, once, before it times out. With transactions waiting it times
/// out at once.
#[test]
fn an_idle_replica_waits_out_the_empty_block_delay_before_timing_out() {
    let f = fixture(4);
    let config = Config {
        max_batch_delay_ms: 100,
        empty_block_delay_ms: 2_000,
        ..Config::default()
    };
    for idle in [true, false] {
        let mut r = f.replica(0, config.clone());
        let mut ledger = EmptyLedger {
            pending: Some(!idle),
            ..EmptyLedger::default()
        };
        let effects = r.handle(Input::Start { recovered: None }, 0, &mut ledger);
        assert_eq!(view_timer_at(&effects, 1), Some(1_000));
        let effects = r.handle(Input::Timer(Timer::View(View(1))), 1_000, &mut ledger);
        assert_eq!(own_timeout_broadcast(&effects, 0, 1), !idle, "{effects:#?}");
        if idle {
            assert_eq!(view_timer_at(&effects, 1), Some(3_000));
            let effects = r.handle(Input::Timer(Timer::View(View(1))), 3_000, &mut ledger);
            assert!(own_timeout_broadcast(&effects, 0, 1), "{effects:#?}");
        }
    }
}

/// A message that arrived as bytes is forwarded as those bytes (not
/// encoded again); one decoded in process, or forwarded by a replica that
/// misbehaves on purpose, goes out as the message.
#[test]
fn a_message_from_the_network_is_forwarded_as_it_arrived() {
    let f = fixture(4);
    let g = genesis_qc(&f.committee);
    let proposal = f.proposal(1, &f.genesis, g, None, 5);
    let bytes = proposal.encode();
    let from_wire = || messages::verify_message(&bytes, &f.committee).unwrap();
    assert_eq!(from_wire().wire().map(|w| w.to_vec()), Some(bytes.clone()));
    let (mut r, _) = f.started(0);
    let effects = r.handle(Input::Message(from_wire()), 10, &mut EmptyLedger::default());
    let relayed: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Relay(relayed) => Some(relayed.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(relayed.len(), 1, "{effects:#?}");
    assert_eq!(relayed[0].bytes.to_vec(), bytes);
    assert_eq!(
        (relayed[0].author, relayed[0].kind),
        (proposal.author, "proposal")
    );
    let forwarded_as_message = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::Broadcast(m) if *m == proposal))
    };
    assert!(!forwarded_as_message(&effects));
    let (mut r, _) = f.started(0);
    let effects = r.handle(
        f.verified(proposal.clone()),
        10,
        &mut EmptyLedger::default(),
    );
    assert!(forwarded_as_message(&effects), "{effects:#?}");
    let byzantine = Config {
        byzantine: Some(Byzantine::DoubleVote),
        ..Config::default()
    };
    let mut r = f.replica(0, byzantine);
    let _ = r.handle(
        Input::Start { recovered: None },
        0,
        &mut EmptyLedger::default(),
    );
    let effects = r.handle(Input::Message(from_wire()), 10, &mut EmptyLedger::default());
    assert!(forwarded_as_message(&effects), "{effects:#?}");
}
