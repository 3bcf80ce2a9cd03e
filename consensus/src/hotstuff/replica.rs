//! The HotStuff replica: one state machine per validator.
//!
//! [`Replica`] is the core. It takes each input, asks its components what
//! follows, and emits the effects in order. None of them calls it back:
//!
//! - [`SafetyRules`]: the safety data; whether a vote may be signed.
//! - [`Pacemaker`]: the view, view timers and back-off, timeouts and TCs.
//! - [`BlockTree`]: the blocks held and the three-chain commit walk.
//! - [`VoteCollector`]: first proposals and votes (evidence), QCs.
//! - [`CatchUp`]: proposals waiting for a parent, block requests.
//! - [`Proposer`]: when a leader proposes (batching), and what.
//! - [`Misbehaviour`]: Byzantine behaviours, for simulations.
//!
//! A QC or TC moves the pacemaker to a new view, where the leader proposes
//! and its own proposal comes back as a message it votes for: the core's
//! handlers recurse through one another, and the effects come out in the
//! order the steps are taken.

use super::block_tree::BlockTree;
use super::byzantine::Misbehaviour;
use super::catch_up::CatchUp;
use super::config::Config;
use super::intake::{Admission, Intake, PAST_VIEWS_KEPT};
use super::io::{Effect, Input, Timer};
use super::leader::{self, LeaderRule};
use super::messages::{
    Payload, Proposal, QuorumCert, SignedMessage, TimeoutCert, Verified, Vote, block_view,
    genesis_qc, parent_cert, sign,
};
use super::pacemaker::{Pacemaker, ViewTimerAction};
use super::proposer::{self, Pace, Proposer};
use super::safety::{SafetyData, SafetyRules};
use super::votes::VoteCollector;
use crate::catchup::SyncMessage;
use crate::committee::Committee;
use crate::ledger::{Ledger, LedgerError, LocalFault};
use crate::types::{TimeMs, View};
use phalanx_chain::{Address, Block, Hash, ValidatorIndex};
use phalanx_crypto::Keypair;

/// A HotStuff replica. Feed it inputs with [`Replica::handle`].
#[derive(Debug)]
pub struct Replica {
    committee: Committee,
    me: ValidatorIndex,
    key: Keypair,
    now: TimeMs,
    started: bool,
    rules: SafetyRules,
    pacemaker: Pacemaker,
    tree: BlockTree,
    votes: VoteCollector,
    catch_up: CatchUp,
    proposer: Proposer,
    byzantine: Misbehaviour,
    intake: Intake,
    /// A failure of the node itself met while handling an input: the
    /// replica decides nothing more (see [`Replica::take_fault`]).
    fault: Option<LocalFault>,
    out: Vec<Effect>,
}

impl Replica {
    /// A replica for validator `me`, whose last committed block (genesis on a
    /// new chain) is `committed`.
    pub fn new(
        committee: Committee,
        me: ValidatorIndex,
        key: Keypair,
        config: Config,
        committed: Block,
    ) -> Replica {
        Replica {
            rules: SafetyRules::new(genesis_qc(&committee)),
            pacemaker: Pacemaker::new(&config, &committee),
            tree: BlockTree::new(committed, config.max_pending_blocks),
            votes: VoteCollector::new(committee.quorum()),
            catch_up: CatchUp::new(config.max_buffered_proposals),
            proposer: Proposer::new(&config),
            byzantine: Misbehaviour::new(config.byzantine),
            intake: Intake::new(&config, me),
            committee,
            me,
            key,
            now: 0,
            started: false,
            fault: None,
            out: Vec::new(),
        }
    }

    /// Handles one input at time `now` and returns the effects to carry
    /// out, in order. Callers must make every [`Effect::PersistSafety`]
    /// durable (written and flushed) before carrying out the effects after
    /// it; otherwise a restart may sign a conflicting vote.
    pub fn handle(&mut self, input: Input, now: TimeMs, ledger: &mut dyn Ledger) -> Vec<Effect> {
        if self.fault.is_some() {
            return Vec::new();
        }
        self.now = self.now.max(now);
        let view = self.pacemaker.view();
        match input {
            Input::Start { recovered } => self.start(recovered, ledger),
            Input::Message(message) if self.started => self.on_message(message, ledger),
            Input::Sync { from, message } if self.started => self.on_sync(from, message, ledger),
            Input::Timer(Timer::View(v)) if self.started => self.on_view_timer(v, ledger),
            Input::Timer(Timer::ResendVote(v)) if self.started => self.resend_vote(v),
            Input::Timer(Timer::Propose(v)) if self.started && v == view => {
                self.propose_now(ledger)
            }
            Input::TransactionsAvailable if self.started => self.propose(ledger),
            _ => {}
        }
        let effects = std::mem::take(&mut self.out);
        self.byzantine.filter(effects, &self.committee, self.me)
    }

    pub fn view(&self) -> View {
        self.pacemaker.view()
    }

    /// The current view's timer length.
    pub fn view_timeout_ms(&self) -> u64 {
        self.pacemaker.timeout_ms()
    }

    /// A failure of the node itself (its storage) met while handling the
    /// last input. After one the replica ignores every input: the caller
    /// must stop rather than let it decide from a state it cannot read.
    pub fn take_fault(&mut self) -> Option<LocalFault> {
        self.fault.take()
    }

    /// True once a local fault has stopped the replica.
    pub fn faulted(&self) -> bool {
        self.fault.is_some()
    }

    /// True if the replica signed a timeout for its current view (it gave
    /// up on the view).
    pub fn timed_out(&self) -> bool {
        self.rules.timeout_in(self.pacemaker.view()).is_some()
    }

    pub fn me(&self) -> ValidatorIndex {
        self.me
    }

    pub fn safety(&self) -> &SafetyData {
        self.rules.data()
    }

    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The last committed block's hash.
    pub fn committed(&self) -> Hash {
        self.tree.root()
    }

    /// Takes back the recovered safety data, if any, and enters the view
    /// to resume in (see [`SafetyRules::resume_view`]).
    fn start(&mut self, recovered: Option<Box<SafetyData>>, ledger: &mut dyn Ledger) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(safety) = recovered {
            self.rules.recover(*safety);
        }
        self.enter_view(self.rules.resume_view(), ledger);
    }

    // ----- views -----

    /// Moves to `view` if it is ahead; its leader proposes (or starts
    /// waiting for a batch).
    fn enter_view(&mut self, view: View, ledger: &mut dyn Ledger) {
        let busy = ledger.has_pending_transactions();
        let Some(timers) = self.pacemaker.enter(view, self.now, busy) else {
            return;
        };
        self.out.extend(timers);
        // Per-view bookkeeping far behind the new view is of no more use.
        let keep_from = View(view.0.saturating_sub(PAST_VIEWS_KEPT));
        self.votes.prune_below(keep_from);
        self.intake.prune_below(keep_from);
        self.catch_up.prune_below(keep_from);
        if self.aggregator_failed(view) {
            self.local_timeout(view);
        }
        self.propose(ledger);
    }

    /// True if `view`'s leader is the one that failed to gather the QC
    /// that ended the view before: this replica voted in `view - 1`, sent
    /// the vote to `view`'s leader (the leader of the view after a block's
    /// view gathers its QC), timed out in `view - 1` waiting for it, and
    /// the QC that brought it here certifies that very block (formed by
    /// another replica from the votes re-sent on timeout). That leader is
    /// most likely down: rather than wait out a second timeout for it, the
    /// replica gives up on `view` at once. A live but slow leader loses
    /// one view; nothing about safety changes (a timeout only ends voting
    /// in its view).
    fn aggregator_failed(&self, view: View) -> bool {
        let Some(previous) = view.0.checked_sub(1).map(View) else {
            return false;
        };
        if self.rules.timeout_in(previous).is_none() {
            return false;
        }
        let Some(Payload::Vote(vote)) = self.rules.vote_in(previous).map(|m| &m.payload) else {
            return false;
        };
        let qc = self.rules.high_qc();
        if View(qc.view) != previous || qc.block != vote.block {
            return false;
        }
        self.tree
            .get(&qc.block)
            .is_some_and(|block| leader::leader(&self.committee, view, block.header()) != self.me)
    }

    /// The view's timer: give up on the view (or, already given up, say so
    /// again) and ask again for the blocks buffered proposals wait for.
    fn on_view_timer(&mut self, view: View, ledger: &dyn Ledger) {
        let first = self.rules.timeout_in(view).is_none();
        let idle = !ledger.has_pending_transactions();
        let rearm = match self.pacemaker.on_view_timer(view, first, idle, self.now) {
            None => return,
            Some(ViewTimerAction::Extend(rearm)) => {
                self.out.push(rearm);
                return;
            }
            Some(ViewTimerAction::TimeOut(rearm)) => rearm,
        };
        self.local_timeout(view);
        let requests = self
            .catch_up
            .retry(&self.committee, self.me, view, &self.tree);
        self.out.extend(requests);
        self.out.push(rearm);
    }

    /// Signs (once) and broadcasts a timeout for `view`; no more votes in it.
    fn local_timeout(&mut self, view: View) {
        let high_tc = self.pacemaker.high_tc_before(view);
        let (committee, key, me) = (&self.committee, &self.key, self.me);
        let (message, signed) = self
            .rules
            .timeout(view, high_tc, |p| sign(committee, key, me, p));
        if signed {
            self.persist();
        }
        self.out.push(Effect::Broadcast(message.clone()));
        // Votes in this view went to the next view's leader alone. If it
        // failed, the QC they make would be lost, and with round-robin
        // leaders and one faulty validator in four, no three-chain could
        // ever complete. Re-sending the same signed vote to everyone lets
        // any replica form that QC and carry it past the faulty leader.
        if let Some(vote) = self.rules.vote_in(view).cloned() {
            self.out.push(Effect::Broadcast(vote));
        }
        self.pacemaker.record_timeout(&message);
    }

    /// A QC, formed here or carried by a message: it may raise the highest
    /// QC, and one for the current view or later ends that view. A higher
    /// QC from an earlier view may make this replica the current view's
    /// leader (the leader depends on the block a proposal extends).
    fn process_qc(&mut self, qc: &QuorumCert, ledger: &mut dyn Ledger) {
        let before = self.rules.high_qc().view;
        self.rules.observe_qc(qc);
        // Asked only when the QC ends the current view (a QC carried by
        // every message would otherwise ask the pool each time).
        let busy = View(qc.view) >= self.pacemaker.view() && ledger.has_pending_transactions();
        if let Some(next) = self.pacemaker.on_qc(View(qc.view), self.now, busy) {
            self.enter_view(next, ledger);
        } else if self.rules.high_qc().view > before {
            self.propose(ledger);
        }
    }

    /// A TC for view `v`, formed here or carried by a message: its QC
    /// counts as any other, and it moves everyone to `v + 1`.
    fn process_tc(&mut self, tc: &TimeoutCert, ledger: &mut dyn Ledger) {
        self.pacemaker.observe_tc(tc);
        self.process_qc(&tc.high_qc, ledger);
        self.enter_view(tc.view.next(), ledger);
    }

    // ----- messages -----

    /// A consensus message from the network, or one of our own: admitted
    /// (and forwarded) by the intake, then handled by kind.
    fn on_message(&mut self, message: Verified<SignedMessage>, ledger: &mut dyn Ledger) {
        let m = message.get();
        match self.intake.admit(m, message.id(), self.pacemaker.view()) {
            Admission::Drop => return,
            Admission::FarAhead => {
                // Its certificates may bring this replica up to date, and
                // its timeout counts towards joining a later view.
                self.process_certificates(m, ledger);
                if let Payload::Timeout(t) = &m.payload {
                    self.join_timeouts(m.author, t.view, ledger);
                }
                return;
            }
            Admission::New { forward: true } => {
                let byzantine = self.byzantine.any();
                self.out.push(crate::bft::forward(&message, byzantine));
            }
            Admission::New { forward: false } => {}
        }
        match &m.payload {
            Payload::Proposal(_) => self.on_proposal(message, ledger),
            Payload::Vote(vote) => {
                let vote = *vote;
                self.on_vote(message.into_inner(), vote, ledger);
            }
            Payload::Timeout(_) => self.on_timeout(message.into_inner(), ledger),
        }
    }

    /// Processes the QCs and TCs a message carries.
    fn process_certificates(&mut self, message: &SignedMessage, ledger: &mut dyn Ledger) {
        match &message.payload {
            Payload::Proposal(p) => {
                if let Some(tc) = &p.timeout_cert {
                    self.process_tc(tc, ledger);
                }
                if let Some(cert) = parent_cert(&p.block) {
                    self.process_qc(cert, ledger);
                }
            }
            Payload::Timeout(t) => {
                if let Some(tc) = &t.high_tc {
                    self.process_tc(tc, ledger);
                }
                self.process_qc(&t.high_qc, ledger);
            }
            Payload::Vote(_) => {}
        }
    }

    /// A proposal: evidence if it conflicts with the first one of its
    /// view; otherwise its certificates count, and its block joins the tree
    /// and may get a vote, or waits for its parent to be fetched.
    fn on_proposal(&mut self, message: Verified<SignedMessage>, ledger: &mut dyn Ledger) {
        let Payload::Proposal(proposal) = &message.get().payload else {
            return;
        };
        let Some(view) = block_view(&proposal.block) else {
            return;
        };
        if let Err(evidence) = self.votes.check_proposal(view, message.get()) {
            self.out.push(Effect::Evidence(*evidence));
            return;
        }
        self.process_certificates(message.get(), ledger);
        if !self.tree.contains(&proposal.block.header().parent) {
            let view = self.pacemaker.view();
            let request = self.catch_up.buffer(message, &self.tree, self.me, view);
            self.out.extend(request);
            return;
        }
        self.insert_block(proposal.block.clone(), ledger);
        self.maybe_vote(proposal, ledger);
    }

    /// Votes for `proposal` if the safety rules and the ledger allow it.
    /// The vote is persisted before it is sent: otherwise a restart could
    /// sign a conflicting one.
    fn maybe_vote(&mut self, proposal: &Proposal, ledger: &mut dyn Ledger) {
        let view = self.pacemaker.view();
        let block = &proposal.block;
        if !self.rules.may_vote(proposal, view, &self.tree) {
            return;
        }
        let Some(parent) = self.tree.get(&block.header().parent) else {
            return;
        };
        if let Err(e) = ledger.validate_block(parent, block) {
            self.local_fault(e);
            return;
        }
        let vote = Vote {
            view,
            block: block.hash(),
        };
        // The QC for this block is gathered by the leader of the view after.
        let next_leader = leader::leader(&self.committee, view.next(), block.header());
        let message = self.sign(Payload::Vote(vote));
        self.rules.voted(message.clone());
        self.persist();
        self.send_vote(message.clone(), next_leader);
        let resend = self.pacemaker.vote_resend_timer(view, self.now);
        self.out.push(resend);
        let (committee, key, me) = (&self.committee, &self.key, self.me);
        if let Some(second) = self
            .byzantine
            .second_vote(vote, |p| sign(committee, key, me, p))
        {
            self.send_vote(second, next_leader);
        }
        self.on_vote(message, vote, ledger);
    }

    /// Re-sends the (already signed) vote of `view` while still in it, to
    /// every validator: the next leader may be down, and then whoever
    /// gathers a quorum of votes forms the QC and moves on a quarter of a
    /// base timeout later, instead of timing the view out. (A vote is sent
    /// to the next leader alone the first time, as HotStuff has it.)
    ///
    /// Fired once more in the view after (see [`Replica::on_vote`]), it
    /// sends the vote one last time if that view has seen neither a vote
    /// nor a timeout from us: we moved on by a QC formed here from votes
    /// that others re-sent, before our own re-send went out, and those
    /// others may still lack our vote to form the same QC. Without it they
    /// time out the view behind ours while we time out ours, and the
    /// crashed leader's failure costs two view timeouts instead of one
    /// (found in the simulator: `--crash 3@10s`, seeds 69 and 90).
    fn resend_vote(&mut self, view: View) {
        let current = self.pacemaker.view();
        if current == view.next() {
            if self.rules.vote_in(current).is_none()
                && self.rules.timeout_in(current).is_none()
                && let Some(vote) = self.rules.vote_in(view).cloned()
            {
                self.pacemaker.recovering();
                self.out.push(Effect::Broadcast(vote));
            }
            return;
        }
        if current != view || self.rules.timeout_in(view).is_some() {
            return;
        }
        let Some(vote) = self.rules.vote_in(view).cloned() else {
            return;
        };
        self.pacemaker.recovering();
        self.out.push(Effect::Broadcast(vote));
        let resend = self.pacemaker.vote_resend_timer(view, self.now);
        self.out.push(resend);
    }

    /// Sends a vote to `to`, the leader of the next view if the voted block
    /// is certified, who gathers the QC; nothing to send if that is us (our
    /// vote is counted here).
    fn send_vote(&mut self, message: SignedMessage, to: ValidatorIndex) {
        if to != self.me {
            self.out.push(Effect::Send { to, message });
        }
    }

    /// A vote, ours or another's, for the current view or the one before
    /// (a vote for `v` is gathered in `v + 1`): evidence, or maybe a QC.
    fn on_vote(&mut self, message: SignedMessage, vote: Vote, ledger: &mut dyn Ledger) {
        if vote.view.next() < self.pacemaker.view() {
            return;
        }
        match self.votes.add(message, vote) {
            Err(evidence) => self.out.push(Effect::Evidence(*evidence)),
            Ok(Some(qc)) => {
                let certified = View(qc.view);
                self.process_qc(&qc, ledger);
                // Entering the next view cancelled the re-send of our vote
                // in the certified one: keep one more (see resend_vote).
                if self.pacemaker.view() == certified.next()
                    && self.rules.vote_in(certified).is_some()
                {
                    let resend = self.pacemaker.vote_resend_timer(certified, self.now);
                    self.out.push(resend);
                }
            }
            Ok(None) => {}
        }
    }

    /// A timeout from the network: its certificates count, it is kept
    /// towards a TC of its view, and it may make us join that view.
    fn on_timeout(&mut self, message: SignedMessage, ledger: &mut dyn Ledger) {
        let view = message.view();
        self.process_certificates(&message, ledger);
        if view >= self.pacemaker.view() {
            self.pacemaker.record_timeout(&message);
        }
        self.join_timeouts(message.author, view, ledger);
        self.form_tc(view, ledger);
    }

    /// Times out in the view f + 1 validators have timed out in (or
    /// beyond), if it is not behind ours and we have not already.
    fn join_timeouts(&mut self, author: ValidatorIndex, view: View, ledger: &mut dyn Ledger) {
        let Some(join) = self.pacemaker.note_latest_timeout(author, view) else {
            return;
        };
        if self.rules.timed_out_since(join) {
            return;
        }
        self.enter_view(join, ledger);
        if self.pacemaker.view() == join {
            self.local_timeout(join);
            self.form_tc(join, ledger);
        }
    }

    /// Forms a TC for `view` if n - f timeouts for it are held.
    fn form_tc(&mut self, view: View, ledger: &mut dyn Ledger) {
        if let Some(tc) = self.pacemaker.form_tc(view) {
            self.process_tc(&tc, ledger);
        }
    }

    // ----- proposing -----

    /// True if this replica has not proposed in the current view and may
    /// lead it: it leads it on the QC it would build on, or cannot tell
    /// yet because it lacks that QC's block (which proposing fetches).
    fn may_propose(&self) -> bool {
        let view = self.pacemaker.view();
        if !self.rules.may_propose(view) {
            return false;
        }
        let parent_qc = self.parent_qc();
        match self.tree.get(&parent_qc.block) {
            Some(parent) => leader::leader(&self.committee, view, parent.header()) == self.me,
            None => self.might_lead_without_parent(view),
        }
    }

    /// Whether this replica may lead `view` on `parent_qc` when its block
    /// is not held: round-robin needs no header; reputation does (after
    /// a TC too, the rotation starts from a leader its header decides), so
    /// it cannot tell, and says yes.
    fn might_lead_without_parent(&self, view: View) -> bool {
        match self.committee.leader_rule() {
            LeaderRule::Reputation => true,
            LeaderRule::RoundRobin => self.committee.leader(view) == self.me,
        }
    }

    /// The QC a proposal of this replica builds on: its highest (or
    /// another, when misbehaving on purpose).
    fn parent_qc(&self) -> QuorumCert {
        self.byzantine
            .parent_qc(self.rules.high_qc(), &self.tree, &self.committee)
    }

    /// Proposes now, or waits for a batch (see [`Proposer::pace`]).
    fn propose(&mut self, ledger: &mut dyn Ledger) {
        if !self.may_propose() {
            return;
        }
        let (view, high_qc) = (self.pacemaker.view(), self.rules.high_qc());
        let pace = self
            .proposer
            .pace(view, self.now, ledger, &self.tree, high_qc);
        match pace {
            Pace::Now => self.propose_now(ledger),
            Pace::Wait => {}
            Pace::WaitUntil(at) => self.out.push(Effect::ArmTimer {
                timer: Timer::Propose(view),
                at,
            }),
        }
    }

    /// Proposes for the current view, unless a proposal is being made
    /// already (see [`Proposer::begin`]).
    fn propose_now(&mut self, ledger: &mut dyn Ledger) {
        if !self.may_propose() {
            return;
        }
        if !self.proposer.begin() {
            // Nested in our own proposal (a committee of one): propose
            // from a timer due at once instead.
            self.out.push(Effect::ArmTimer {
                timer: Timer::Propose(self.pacemaker.view()),
                at: self.now,
            });
            return;
        }
        self.propose_in_view(ledger);
        self.proposer.end();
    }

    /// Builds, persists, signs and broadcasts the proposal, then handles
    /// it as a message of its own (and so votes for it). A parent block
    /// not held is asked for from its proposer instead.
    fn propose_in_view(&mut self, ledger: &mut dyn Ledger) {
        let view = self.pacemaker.view();
        let parent_qc = self.parent_qc();
        let Some(parent) = self.tree.get(&parent_qc.block).cloned() else {
            if self.tree.could_extend_root(&parent_qc) {
                let holder = self.holder_of(&parent_qc);
                self.request(parent_qc.block, holder);
            }
            return;
        };
        if leader::leader(&self.committee, view, parent.header()) != self.me {
            return;
        }
        let address = self.address();
        let built = proposer::build(
            view,
            &parent,
            &parent_qc,
            &self.pacemaker,
            ledger,
            address,
            self.now,
        );
        let proposal = match built {
            Ok(proposal) => proposal,
            Err(e) => {
                self.local_fault(e);
                return;
            }
        };
        self.rules.proposed(view);
        self.persist();
        let message = self.sign(Payload::Proposal(Box::new(proposal)));
        let (committee, key, me) = (&self.committee, &self.key, self.me);
        let sign_twin = |p| sign(committee, key, me, p);
        match self
            .byzantine
            .twin_proposal(&parent, &message, ledger, address, sign_twin)
        {
            Ok(()) => self.out.push(Effect::Broadcast(message.clone())),
            Err(e) => self.local_fault(e),
        }
        self.on_message(Verified::own(message), ledger);
    }

    // ----- the block tree -----

    /// Adds a block to the tree, applies chained HotStuff's update to it,
    /// and handles the proposals that waited for it.
    fn insert_block(&mut self, block: Block, ledger: &mut dyn Ledger) {
        let Some(hash) = self.tree.insert(block.clone()) else {
            return;
        };
        self.catch_up.forget_request(&hash);
        self.update(&block);
        for message in self.catch_up.take_waiting(&hash) {
            self.on_proposal(message, ledger);
        }
    }

    /// Chained HotStuff's update on a new block `b*`: raise the highest QC,
    /// move the lock, commit.
    fn update(&mut self, b_star: &Block) {
        let update = self.tree.chain_update(b_star);
        if let Some(qc) = &update.high_qc {
            self.rules.observe_qc(qc);
        }
        if let Some(qc) = &update.lock {
            self.rules.observe_lock(qc);
        }
        if let Some(hash) = update.commit {
            let committed = self.tree.commit(hash);
            self.out.extend(committed.into_iter().map(Effect::Commit));
        }
    }

    // ----- catch-up -----

    /// Catch-up traffic: a request is answered from the tree and the
    /// ledger; an answer's blocks are connected to the tree.
    fn on_sync(&mut self, from: ValidatorIndex, message: SyncMessage, ledger: &mut dyn Ledger) {
        match message {
            SyncMessage::Request { hash } => {
                let blocks = self.tree.ancestors(hash, ledger);
                if !blocks.is_empty() {
                    self.out.push(Effect::SendSync {
                        to: from,
                        message: SyncMessage::Response { blocks },
                    });
                }
            }
            SyncMessage::Response { blocks } => {
                // The replica may adopt these blocks without asking the
                // ledger; the ledger sees them too, so it can execute them
                // when a child needs their state.
                for block in &blocks {
                    ledger.observe_block(block);
                }
                self.on_sync_blocks(from, blocks, ledger)
            }
        }
    }

    /// Connects the blocks of an answer that were asked for to the tree
    /// (see [`CatchUp::accept`]); the first one whose parent is still
    /// missing has that parent asked for from the same peer.
    fn on_sync_blocks(
        &mut self,
        from: ValidatorIndex,
        blocks: Vec<Block>,
        ledger: &mut dyn Ledger,
    ) {
        let accepted = self.catch_up.accept(blocks, &self.tree, &self.committee);
        let mut missing_parent = None;
        for block in accepted {
            let hash = block.hash();
            if self.tree.contains(&block.header().parent) {
                self.insert_block(block, ledger);
            } else if missing_parent.is_none() {
                missing_parent = Some(block.header().parent);
            }
            self.catch_up.forget_request(&hash);
        }
        if let Some(parent) = missing_parent {
            self.catch_up.forget_request(&parent);
            self.request(parent, from);
        }
        self.propose(ledger);
    }

    /// A validator that holds the block `qc` certifies: its first signer
    /// other than this replica (it voted for the block), or else the
    /// view's round-robin leader.
    fn holder_of(&self, qc: &QuorumCert) -> ValidatorIndex {
        qc.signatures
            .iter()
            .map(|s| s.validator)
            .find(|v| *v != self.me)
            .unwrap_or_else(|| self.committee.leader(View(qc.view)))
    }

    /// Asks `from` for a block, unless it was asked for in this view.
    fn request(&mut self, hash: Hash, from: ValidatorIndex) {
        let view = self.pacemaker.view();
        let request = self.catch_up.request(hash, from, self.me, view);
        self.out.extend(request);
    }

    // ----- signing, persistence, faults -----

    fn sign(&self, payload: Payload) -> SignedMessage {
        sign(&self.committee, &self.key, self.me, payload)
    }

    fn address(&self) -> Address {
        self.key.public().into()
    }

    fn persist(&mut self) {
        self.out
            .push(Effect::PersistSafety(self.rules.data().clone()));
    }

    /// Records a failure of the node itself; see [`Replica::take_fault`].
    /// An invalid block or a missing state is not one: the block is just
    /// not voted for or built.
    fn local_fault(&mut self, error: LedgerError) {
        match error {
            LedgerError::Fault(fault) => self.fault = Some(fault),
            LedgerError::Invalid(_) | LedgerError::Unavailable { .. } => {}
        }
    }
}
