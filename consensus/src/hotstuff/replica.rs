//! The HotStuff replica: one state machine per validator.

use super::block_tree::BlockTree;
use super::catch_up::CatchUp;
use super::config::Config;
use super::io::{Effect, Evidence, Input, Timer};
use super::messages::{
    Payload, Proposal, QuorumCert, SignedMessage, Timeout, TimeoutCert, TimeoutSignature, Verified,
    Vote, block_view, genesis_qc, parent_cert, sign,
};
use super::safety::SafetyData;
use crate::catchup::SyncMessage;
use crate::committee::Committee;
use crate::ledger::{Ledger, LedgerError, LocalFault};
use crate::types::{Byzantine, TimeMs, View};
use phalanx_chain::ValidatorSignature;
use phalanx_chain::{Address, BftCertificate, Block, Hash, Justification, ValidatorIndex};
use phalanx_crypto::{Keypair, Signature};
use std::collections::{BTreeMap, HashSet};

/// A HotStuff replica. Feed it inputs with [`Replica::handle`].
#[derive(Debug)]
pub struct Replica {
    committee: Committee,
    me: ValidatorIndex,
    key: Keypair,
    config: Config,
    now: TimeMs,
    started: bool,
    view: View,
    safety: SafetyData,
    /// Views in a row that ended without a QC (for back-off).
    timeouts_in_row: u32,
    high_tc: Option<TimeoutCert>,
    tree: BlockTree,
    /// Each view's first proposal, to catch equivocation.
    proposals: BTreeMap<View, SignedMessage>,
    /// Each validator's first vote in each view, to catch double votes.
    first_votes: BTreeMap<(View, ValidatorIndex), SignedMessage>,
    votes: BTreeMap<(View, Hash), BTreeMap<ValidatorIndex, Signature>>,
    timeouts: BTreeMap<View, BTreeMap<ValidatorIndex, (QuorumCert, Signature)>>,
    /// Each validator's highest timeout view.
    latest_timeouts: BTreeMap<ValidatorIndex, View>,
    /// Content ids of messages already handled, by view.
    seen: BTreeMap<View, HashSet<Hash>>,
    catch_up: CatchUp,
    /// The last view whose propose timer was armed, when the leader began
    /// to wait in it, and when the timer is due.
    propose_timer_armed: View,
    propose_wait_from: TimeMs,
    propose_timer_at: TimeMs,
    /// Set while a proposal is being made (see `propose_now`).
    proposing: bool,
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
        let genesis = genesis_qc(&committee);
        Replica {
            tree: BlockTree::new(committed, config.max_pending_blocks),
            catch_up: CatchUp::new(config.max_buffered_proposals),
            committee,
            me,
            key,
            config,
            now: 0,
            started: false,
            view: View(0),
            safety: SafetyData {
                last_voted_view: View(0),
                locked_qc: genesis.clone(),
                high_qc: genesis,
                last_proposed_view: View(0),
                last_vote: None,
                last_timeout: None,
            },
            timeouts_in_row: 0,
            high_tc: None,
            proposals: BTreeMap::new(),
            first_votes: BTreeMap::new(),
            votes: BTreeMap::new(),
            timeouts: BTreeMap::new(),
            latest_timeouts: BTreeMap::new(),
            seen: BTreeMap::new(),
            propose_timer_armed: View(0),
            propose_wait_from: 0,
            propose_timer_at: 0,
            proposing: false,
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
        match input {
            Input::Start { recovered } => self.start(recovered, ledger),
            Input::Message(message) if self.started => self.on_message(message, ledger),
            Input::Sync { from, message } if self.started => self.on_sync(from, message, ledger),
            Input::Timer(Timer::View(view)) if self.started => self.on_view_timer(view),
            Input::Timer(Timer::ResendVote(view)) if self.started => self.resend_vote(view),
            Input::Timer(Timer::Propose(view)) if self.started && view == self.view => {
                self.propose_now(ledger)
            }
            Input::TransactionsAvailable if self.started => self.propose(ledger),
            _ => {}
        }
        let effects = std::mem::take(&mut self.out);
        self.misbehave(effects)
    }

    pub fn view(&self) -> View {
        self.view
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

    /// True if the timed-out view's timeout was signed (the replica gave
    /// up on its current view).
    pub fn timed_out(&self) -> bool {
        self.safety
            .last_timeout
            .as_ref()
            .is_some_and(|t| t.view() == self.view)
    }

    /// Records a failure of the node itself; see [`Replica::take_fault`].
    fn local_fault(&mut self, error: LedgerError) -> bool {
        match error {
            LedgerError::Fault(fault) => {
                self.fault = Some(fault);
                true
            }
            LedgerError::Invalid(_) | LedgerError::Unavailable { .. } => false,
        }
    }

    pub fn me(&self) -> ValidatorIndex {
        self.me
    }

    pub fn safety(&self) -> &SafetyData {
        &self.safety
    }

    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The last committed block's hash.
    pub fn committed(&self) -> Hash {
        self.tree.root()
    }

    fn start(&mut self, recovered: Option<Box<SafetyData>>, ledger: &mut dyn Ledger) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(safety) = recovered {
            self.safety = *safety;
        }
        let resume = View(self.safety.high_qc.view)
            .next()
            .max(self.safety.last_voted_view)
            .max(View(1));
        self.enter_view(resume, ledger);
    }

    // ----- views and the pacemaker -----

    fn timeout_ms(&self) -> u64 {
        let factor = 1u64 << self.timeouts_in_row.min(20);
        self.config
            .base_timeout_ms
            .saturating_mul(factor)
            .min(self.config.max_timeout_ms)
    }

    fn enter_view(&mut self, view: View, ledger: &mut dyn Ledger) {
        if view <= self.view {
            return;
        }
        let old = self.view;
        if old > View(0) {
            for timer in [
                Timer::View(old),
                Timer::ResendVote(old),
                Timer::Propose(old),
            ] {
                self.out.push(Effect::CancelTimer(timer));
            }
        }
        self.view = view;
        self.out.push(Effect::ArmTimer {
            timer: Timer::View(view),
            at: self.now.saturating_add(self.timeout_ms()),
        });
        self.prune_below(view);
        if self.committee.leader(view) == self.me {
            self.propose(ledger);
        }
    }

    /// The view's timer: the first time, give up on the view (and wait
    /// longer for the next one); after that, re-send the timeout every base
    /// period, so that a heal is noticed within one base period however long
    /// the back-off has grown.
    fn on_view_timer(&mut self, view: View) {
        if view != self.view {
            return;
        }
        let first = self
            .safety
            .last_timeout
            .as_ref()
            .is_none_or(|t| t.view() != view);
        if first {
            self.timeouts_in_row = self.timeouts_in_row.saturating_add(1);
        }
        self.local_timeout(view);
        let requests = self
            .catch_up
            .retry(&self.committee, self.me, view, &self.tree);
        self.out.extend(requests);
        self.out.push(Effect::ArmTimer {
            timer: Timer::View(view),
            at: self.now.saturating_add(self.config.base_timeout_ms),
        });
    }

    /// Signs (once) and broadcasts a timeout for `view`; no more votes in it.
    fn local_timeout(&mut self, view: View) {
        let high_tc = self.high_tc.clone().filter(|tc| tc.view < view);
        let message = match &self.safety.last_timeout {
            Some(m) if m.view() == view => with_high_tc(m.clone(), high_tc),
            _ => {
                let timeout = Timeout {
                    view,
                    high_qc: self.safety.high_qc.clone(),
                    high_tc,
                };
                let message = self.sign(Payload::Timeout(Box::new(timeout)));
                self.safety.last_voted_view = self.safety.last_voted_view.max(view);
                self.safety.last_timeout = Some(message.clone());
                self.persist();
                message
            }
        };
        self.out.push(Effect::Broadcast(message.clone()));
        // Votes in this view went to the next view's leader alone. If it
        // failed, the QC they make would be lost, and with round-robin
        // leaders and one faulty validator in four, no three-chain could
        // ever complete. Re-sending the same signed vote to everyone lets
        // any replica form that QC and carry it past the faulty leader.
        if let Some(vote) = self.safety.last_vote.clone().filter(|v| v.view() == view) {
            self.out.push(Effect::Broadcast(vote));
        }
        self.record_timeout(&message);
    }

    fn process_qc(&mut self, qc: &QuorumCert, ledger: &mut dyn Ledger) {
        if qc.view > self.safety.high_qc.view {
            self.safety.high_qc = qc.clone();
        }
        if View(qc.view) >= self.view {
            self.timeouts_in_row = 0;
            self.enter_view(View(qc.view).next(), ledger);
        }
    }

    fn process_tc(&mut self, tc: &TimeoutCert, ledger: &mut dyn Ledger) {
        if self.high_tc.as_ref().is_none_or(|h| tc.view > h.view) {
            self.high_tc = Some(tc.clone());
        }
        self.process_qc(&tc.high_qc, ledger);
        self.enter_view(tc.view.next(), ledger);
    }

    // ----- messages -----

    fn on_message(&mut self, message: Verified<SignedMessage>, ledger: &mut dyn Ledger) {
        let m = message.get();
        let view = m.view();
        if view.0.saturating_add(2) < self.view.0 {
            return;
        }
        if view.0 > self.view.0.saturating_add(self.config.future_view_window) {
            // Too far ahead to keep: learn from its certificates (which may
            // bring this replica up to date) and who timed out where.
            self.process_certificates(m, ledger);
            if let Payload::Timeout(t) = &m.payload {
                self.note_latest_timeout(m.author, t.view, ledger);
            }
            return;
        }
        if !self.seen.entry(view).or_default().insert(m.id()) {
            return;
        }
        if self.config.forward && m.author != self.me {
            self.out.push(Effect::Broadcast(m.clone()));
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

    fn on_proposal(&mut self, message: Verified<SignedMessage>, ledger: &mut dyn Ledger) {
        let Payload::Proposal(proposal) = &message.get().payload else {
            return;
        };
        let block = &proposal.block;
        let Some(view) = block_view(block) else {
            return;
        };
        let hash = block.hash();
        match self.proposals.get(&view) {
            Some(first) if proposal_hash(first) != Some(hash) => {
                let evidence = Evidence::ConflictingProposals {
                    first: first.clone(),
                    second: message.get().clone(),
                };
                self.out.push(Effect::Evidence(evidence));
                return;
            }
            Some(_) => {}
            None => {
                self.proposals.insert(view, message.get().clone());
            }
        }
        let signed = message.get().clone();
        self.process_certificates(&signed, ledger);
        if !self.tree.contains(&block.header.parent) {
            let request = self
                .catch_up
                .buffer(message, &self.tree, self.me, self.view);
            self.out.extend(request);
            return;
        }
        self.insert_block(block.clone(), ledger);
        self.maybe_vote(proposal, ledger);
    }

    /// Asks `from` for a block, unless it was asked for in this view.
    fn request(&mut self, hash: Hash, from: ValidatorIndex) {
        let request = self.catch_up.request(hash, from, self.me, self.view);
        self.out.extend(request);
    }

    fn maybe_vote(&mut self, proposal: &Proposal, ledger: &mut dyn Ledger) {
        let block = &proposal.block;
        let (Some(view), Some(cert)) = (block_view(block), parent_cert(block)) else {
            return;
        };
        if view != self.view || view <= self.safety.last_voted_view {
            return;
        }
        let justified = View(cert.view).next() == view
            || proposal
                .timeout_cert
                .as_ref()
                .is_some_and(|tc| tc.view.next() == view && cert.view >= tc.high_qc.view);
        // HotStuff's safety rule: extend the lock, or show a newer QC.
        let safe = self.tree.extends(block, &self.safety.locked_qc.block)
            || cert.view > self.safety.locked_qc.view;
        if !(justified && safe) {
            return;
        }
        let Some(parent) = self.tree.get(&block.header.parent) else {
            return;
        };
        if let Err(e) = ledger.validate_block(parent, block) {
            self.local_fault(e);
            return;
        }
        let hash = block.hash();
        let vote = Vote { view, block: hash };
        let message = self.sign(Payload::Vote(vote));
        self.safety.last_voted_view = view;
        self.safety.last_vote = Some(message.clone());
        self.persist();
        self.send_vote(message.clone(), view);
        self.arm_vote_resend(view);
        if self.config.byzantine == Some(Byzantine::DoubleVote) {
            let other = self.sign(Payload::Vote(Vote {
                view,
                block: Hash::digest(hash.as_bytes()),
            }));
            self.send_vote(other, view);
        }
        self.on_vote(message, vote, ledger);
    }

    fn arm_vote_resend(&mut self, view: View) {
        let period = (self.config.base_timeout_ms / 4).max(1);
        self.out.push(Effect::ArmTimer {
            timer: Timer::ResendVote(view),
            at: self.now.saturating_add(period),
        });
    }

    /// Re-sends the (already signed) vote of `view` while still in it, to
    /// every validator: the next leader may be down, and then whoever
    /// gathers a quorum of votes forms the QC and moves on a quarter of a
    /// base timeout later, instead of timing the view out. (A vote is sent
    /// to the next leader alone the first time, as HotStuff has it.)
    fn resend_vote(&mut self, view: View) {
        let timed_out = self
            .safety
            .last_timeout
            .as_ref()
            .is_some_and(|t| t.view() == view);
        let vote = self.safety.last_vote.clone().filter(|v| v.view() == view);
        if let (Some(vote), true, false) = (vote, self.view == view, timed_out) {
            self.out.push(Effect::Broadcast(vote));
            self.arm_vote_resend(view);
        }
    }

    fn send_vote(&mut self, message: SignedMessage, view: View) {
        let to = self.committee.leader(view.next());
        if to != self.me {
            self.out.push(Effect::Send { to, message });
        }
    }

    fn on_vote(&mut self, message: SignedMessage, vote: Vote, ledger: &mut dyn Ledger) {
        if vote.view.next() < self.view {
            return;
        }
        match self.first_votes.get(&(vote.view, message.author)) {
            Some(first) if first.payload != message.payload => {
                let evidence = Evidence::ConflictingVotes {
                    first: first.clone(),
                    second: message,
                };
                self.out.push(Effect::Evidence(evidence));
                return;
            }
            Some(_) => {}
            None => {
                self.first_votes
                    .insert((vote.view, message.author), message.clone());
            }
        }
        let signers = self.votes.entry((vote.view, vote.block)).or_default();
        signers.insert(message.author, message.signature);
        if signers.len() != self.committee.quorum() {
            return;
        }
        let qc = BftCertificate {
            view: vote.view.0,
            block: vote.block,
            signatures: signers
                .iter()
                .map(|(v, s)| ValidatorSignature {
                    validator: *v,
                    signature: *s,
                })
                .collect(),
        };
        self.process_qc(&qc, ledger);
    }

    fn on_timeout(&mut self, message: SignedMessage, ledger: &mut dyn Ledger) {
        let Payload::Timeout(timeout) = &message.payload else {
            return;
        };
        let view = timeout.view;
        self.process_certificates(&message, ledger);
        if view >= self.view {
            self.record_timeout(&message);
        }
        self.note_latest_timeout(message.author, view, ledger);
        self.maybe_form_tc(view, ledger);
    }

    /// Tracks each validator's highest timeout. When f + 1 validators (so
    /// at least one honest) have timed out in view `v` or later, with `v` at
    /// or beyond ours, this replica times out in `v` too: views
    /// resynchronize after a partition heals, and a TC forms as soon as
    /// n - f replicas are there.
    fn note_latest_timeout(&mut self, author: ValidatorIndex, view: View, ledger: &mut dyn Ledger) {
        let latest = self.latest_timeouts.entry(author).or_default();
        *latest = (*latest).max(view);
        let mut views: Vec<View> = self.latest_timeouts.values().copied().collect();
        views.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&join) = views.get(self.committee.validity_threshold() - 1) else {
            return;
        };
        let timed_out = self
            .safety
            .last_timeout
            .as_ref()
            .is_some_and(|t| t.view() >= join);
        if join >= self.view && !timed_out {
            self.enter_view(join, ledger);
            if self.view == join {
                self.local_timeout(join);
                self.maybe_form_tc(join, ledger);
            }
        }
    }

    /// Keeps a timeout's signature and high QC for a TC of its view.
    fn record_timeout(&mut self, message: &SignedMessage) {
        let Payload::Timeout(timeout) = &message.payload else {
            return;
        };
        self.timeouts
            .entry(timeout.view)
            .or_default()
            .entry(message.author)
            .or_insert_with(|| (timeout.high_qc.clone(), message.signature));
    }

    fn maybe_form_tc(&mut self, view: View, ledger: &mut dyn Ledger) {
        let Some(entry) = self.timeouts.get(&view) else {
            return;
        };
        if entry.len() < self.committee.quorum() || view < self.view {
            return;
        }
        let Some(high_qc) = entry
            .values()
            .map(|(qc, _)| qc)
            .max_by_key(|qc| qc.view)
            .cloned()
        else {
            return;
        };
        let tc = TimeoutCert {
            view,
            high_qc,
            signatures: entry
                .iter()
                .map(|(validator, (qc, signature))| TimeoutSignature {
                    validator: *validator,
                    high_qc_view: View(qc.view),
                    signature: *signature,
                })
                .collect(),
        };
        self.process_tc(&tc, ledger);
    }

    // ----- proposing -----

    /// Proposes if the ledger is ready, or there is no delay to wait, or
    /// the leader has waited it out already; otherwise arms the view's
    /// propose timer (the batch delay, or the empty-block delay when no
    /// transaction waits, counted from when the leader began to wait), or
    /// brings it forward if it is due later than that.
    fn propose(&mut self, ledger: &mut dyn Ledger) {
        let view = self.view;
        if self.committee.leader(view) != self.me || self.safety.last_proposed_view >= view {
            return;
        }
        let batch = self.config.max_batch_delay_ms;
        let empty = self.config.empty_block_delay_ms;
        let delay = if empty > batch && !ledger.has_pending_transactions() {
            empty
        } else {
            batch
        };
        if delay > 0 {
            let parent = self.tree.get(&self.safety.high_qc.block);
            let ready = parent
                .is_some_and(|p| ledger.batch_ready() || self.tree.uncommitted_transactions(p));
            if !ready {
                if self.propose_timer_armed < view {
                    self.propose_timer_armed = view;
                    self.propose_wait_from = self.now;
                    self.propose_timer_at = TimeMs::MAX;
                }
                // Delays count from when the leader began to wait.
                let at = self.propose_wait_from.saturating_add(delay);
                if at > self.now {
                    if at < self.propose_timer_at {
                        self.propose_timer_at = at;
                        self.out.push(Effect::ArmTimer {
                            timer: Timer::Propose(view),
                            at,
                        });
                    }
                    return;
                }
            }
        }
        self.propose_now(ledger);
    }

    /// Proposes for the current view. A proposal that leads straight to the
    /// next view in which we lead again (a committee of one: our own vote is
    /// a QC) would recurse without end; such a nested proposal is deferred
    /// to a propose timer due at once instead.
    fn propose_now(&mut self, ledger: &mut dyn Ledger) {
        let view = self.view;
        if self.committee.leader(view) != self.me || self.safety.last_proposed_view >= view {
            return;
        }
        if self.proposing {
            self.out.push(Effect::ArmTimer {
                timer: Timer::Propose(view),
                at: self.now,
            });
            return;
        }
        self.proposing = true;
        self.propose_in_view(ledger);
        self.proposing = false;
    }

    fn propose_in_view(&mut self, ledger: &mut dyn Ledger) {
        let view = self.view;
        let parent_qc = match self.config.byzantine {
            Some(Byzantine::StaleQc) => self.stale_qc(),
            _ => self.safety.high_qc.clone(),
        };
        let Some(parent) = self.tree.get(&parent_qc.block).cloned() else {
            if self.tree.could_extend_root(&parent_qc) {
                let proposer = self.committee.leader(View(parent_qc.view));
                self.request(parent_qc.block, proposer);
            }
            return;
        };
        let justification = Justification::Bft {
            view: view.0,
            parent_cert: parent_qc.clone(),
        };
        let block = match ledger.build_block(&parent, self.address(), self.now, justification) {
            Ok(block) => block,
            Err(e) => {
                self.local_fault(e);
                return;
            }
        };
        let timeout_cert = if View(parent_qc.view).next() == view {
            None
        } else {
            self.high_tc.clone().filter(|tc| tc.view.next() == view)
        };
        self.safety.last_proposed_view = view;
        self.persist();
        let proposal = Proposal {
            block,
            timeout_cert,
        };
        let message = self.sign(Payload::Proposal(Box::new(proposal.clone())));
        if self.config.byzantine == Some(Byzantine::Equivocate) {
            self.equivocate(&parent, &message, proposal, ledger);
        } else {
            self.out.push(Effect::Broadcast(message.clone()));
        }
        self.on_message(Verified::own(message), ledger);
    }

    /// Byzantine: a second block for the same view (another timestamp), one
    /// version to each half of the committee.
    fn equivocate(
        &mut self,
        parent: &Block,
        first: &SignedMessage,
        proposal: Proposal,
        ledger: &mut dyn Ledger,
    ) {
        let justification = proposal.block.header.justification.clone();
        let timestamp = proposal.block.header.timestamp_ms.saturating_add(1);
        let block = match ledger.build_block(parent, self.address(), timestamp, justification) {
            Ok(block) => block,
            Err(e) => {
                self.local_fault(e);
                return;
            }
        };
        let second = self.sign(Payload::Proposal(Box::new(Proposal {
            block,
            timeout_cert: proposal.timeout_cert,
        })));
        let members: Vec<ValidatorIndex> =
            self.committee.members().filter(|v| *v != self.me).collect();
        let half = members.len() / 2;
        for (i, to) in members.into_iter().enumerate() {
            let message = if i < half {
                first.clone()
            } else {
                second.clone()
            };
            self.out.push(Effect::Send { to, message });
        }
    }

    fn address(&self) -> Address {
        self.key.public().into()
    }

    /// The QC the highest QC's block was built on: old but valid.
    fn stale_qc(&self) -> QuorumCert {
        self.tree
            .get(&self.safety.high_qc.block)
            .and_then(parent_cert)
            .cloned()
            .unwrap_or_else(|| genesis_qc(&self.committee))
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
        if let Some(qc) = update.high_qc
            && qc.view > self.safety.high_qc.view
        {
            self.safety.high_qc = qc;
        }
        if let Some(qc) = update.lock
            && qc.view > self.safety.locked_qc.view
        {
            self.safety.locked_qc = qc;
        }
        if let Some(hash) = update.commit {
            let committed = self.tree.commit(hash);
            self.out.extend(committed.into_iter().map(Effect::Commit));
        }
    }

    /// Forgets per-view bookkeeping far behind the current view.
    fn prune_below(&mut self, view: View) {
        let keep_from = View(view.0.saturating_sub(2));
        self.proposals = self.proposals.split_off(&keep_from);
        self.first_votes = self.first_votes.split_off(&(keep_from, ValidatorIndex(0)));
        self.votes = self.votes.split_off(&(keep_from, Hash::ZERO));
        self.timeouts = self.timeouts.split_off(&keep_from);
        self.seen = self.seen.split_off(&keep_from);
        self.catch_up.prune_below(keep_from);
    }

    // ----- catch-up -----

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
            if self.tree.contains(&block.header.parent) {
                self.insert_block(block, ledger);
            } else if missing_parent.is_none() {
                missing_parent = Some(block.header.parent);
            }
            self.catch_up.forget_request(&hash);
        }
        if let Some(parent) = missing_parent {
            self.catch_up.forget_request(&parent);
            self.request(parent, from);
        }
        if self.committee.leader(self.view) == self.me {
            self.propose(ledger);
        }
    }

    // ----- signing, persistence, misbehaviour -----

    fn sign(&self, payload: Payload) -> SignedMessage {
        sign(&self.committee, &self.key, self.me, payload)
    }

    fn persist(&mut self) {
        self.out.push(Effect::PersistSafety(self.safety.clone()));
    }

    /// Applies a Byzantine behaviour to the outgoing effects.
    fn misbehave(&self, effects: Vec<Effect>) -> Vec<Effect> {
        match self.config.byzantine {
            Some(Byzantine::Silent) => effects
                .into_iter()
                .filter(|e| {
                    !matches!(
                        e,
                        Effect::Send { .. } | Effect::Broadcast(_) | Effect::SendSync { .. }
                    )
                })
                .collect(),
            Some(Byzantine::InvalidSignature) => effects
                .into_iter()
                .map(|e| match e {
                    Effect::Send { to, message } if message.author == self.me => Effect::Send {
                        to,
                        message: corrupt(message),
                    },
                    Effect::Broadcast(message) if message.author == self.me => {
                        Effect::Broadcast(corrupt(message))
                    }
                    other => other,
                })
                .collect(),
            _ => effects,
        }
    }
}

/// Attaches (or refreshes) the unsigned highest-TC field of a timeout; the
/// signature covers only the view and the high QC's view, so it still holds.
fn with_high_tc(mut message: SignedMessage, high_tc: Option<TimeoutCert>) -> SignedMessage {
    if let Payload::Timeout(timeout) = &mut message.payload {
        timeout.high_tc = high_tc;
    }
    message
}

fn corrupt(mut message: SignedMessage) -> SignedMessage {
    message.signature.0[0] ^= 0x01;
    message
}

fn proposal_hash(message: &SignedMessage) -> Option<Hash> {
    match &message.payload {
        Payload::Proposal(p) => Some(p.block.hash()),
        _ => None,
    }
}
