//! The normal case (PBFT 4.2 and 4.3): pre-prepares accepted, prepares and
//! commits gathered, final blocks executed in height order, checkpoints.

use super::log::{Phase, Recorded};
use super::messages::{
    Certified, CheckpointCert, CommitCert, Payload, SignedMessage, Verified, Vote, is_genesis_cert,
    message_view, preprepare_vote, verify_commit_except,
};
use super::replica::{Effect, Evidence, MAX_HELD_BLOCKS, MAX_WAITING, Mode, Replica, Sent};
use super::select::PlanSlot;
use crate::ledger::Ledger;
use crate::types::View;
use phalanx_chain::{Block, Hash, Height, Justification};

/// How far ahead of ours a view's messages are kept (views further ahead
/// are dropped; their view changes still count towards joining).
pub(super) const FUTURE_VIEWS: u64 = 100;

impl Replica {
    pub(super) fn on_message(&mut self, message: Verified<SignedMessage>, ledger: &mut dyn Ledger) {
        let m = message.get();
        if !self.first_time(message.id()) || !self.relevant(m) {
            return;
        }
        if self.config.forward && m.author != self.me && !self.settled_view_change(m) {
            let byzantine = self.config.byzantine.is_some();
            self.out.push(crate::bft::forward(&message, byzantine));
        }
        self.nudge_if_behind(m);
        match &m.payload {
            Payload::PrePrepare(_) => {
                self.consider_preprepare(message, ledger);
                self.retry_waiting(ledger);
                self.execute(ledger);
            }
            Payload::Prepare(vote) => {
                let vote = *vote;
                self.on_vote(Phase::Prepare, vote, message.into_inner(), ledger);
            }
            Payload::Commit(vote) => {
                let vote = *vote;
                self.on_vote(Phase::Commit, vote, message.into_inner(), ledger);
            }
            Payload::Checkpoint(_) => {
                self.on_checkpoint(message.into_inner());
                self.execute(ledger);
                self.propose(ledger);
            }
            Payload::ViewChange(_) => self.on_view_change(message.into_inner(), ledger),
            Payload::NewView(_) => self.on_new_view(message.into_inner(), ledger),
        }
    }

    /// Messages too old to matter (below the stable checkpoint, executed,
    /// of a past view) or too far ahead are neither handled nor forwarded.
    fn relevant(&self, m: &SignedMessage) -> bool {
        let view = message_view(m);
        let future = view.0 > self.view.0.saturating_add(FUTURE_VIEWS);
        let in_window = |h: Height| h > self.low() && h > self.executed() && h <= self.high();
        match &m.payload {
            // A pre-prepare of an executed height may be a new view's
            // re-proposal that others need our votes for.
            Payload::PrePrepare(p) => {
                let h = p.block.header().height;
                !future && view >= self.view && h > self.low() && h <= self.high()
            }
            Payload::Prepare(v) => !future && view >= self.view && in_window(v.height),
            Payload::Commit(v) => !future && view.next() >= self.view && in_window(v.height),
            // A replica far behind learns where the others are from their
            // checkpoints, and fetches up to a stable one.
            Payload::Checkpoint(c) => {
                c.height > self.low()
                    && c.height.0 <= self.executed().0.saturating_add(MAX_HELD_BLOCKS as u64)
            }
            // Older view changes get our new view in answer (see
            // `on_view_change`), but are not forwarded.
            Payload::ViewChange(_) => !future,
            Payload::NewView(_) => !future && view >= self.view,
        }
    }

    /// A view change for a view we are already in (or past): only its
    /// author needs an answer, nobody else needs it.
    fn settled_view_change(&self, m: &SignedMessage) -> bool {
        let view = message_view(m);
        matches!(m.payload, Payload::ViewChange(_))
            && (view < self.view || (view == self.view && self.mode == Mode::Normal))
    }

    /// While waiting for a new view, a message of that view (or later)
    /// from a replica shows it started there: send that replica our view
    /// change again, once, so it answers with the new view we missed.
    ///
    /// In the normal case of an older view (a replica that was down while
    /// the others changed views comes back in its old view, and catches
    /// up on blocks without ever timing out), normal-case messages of
    /// later views from f + 1 replicas show that at least one honest
    /// replica entered a later view, so its new view exists: ask for the
    /// next view at once instead of sitting out the view timer; whoever
    /// is in a later view answers with its new view. Fewer than f + 1 (the
    /// Byzantine alone) move nobody.
    fn nudge_if_behind(&mut self, m: &SignedMessage) {
        let normal_case = matches!(
            m.payload,
            Payload::PrePrepare(_) | Payload::Prepare(_) | Payload::Commit(_)
        );
        if !normal_case {
            return;
        }
        if self.mode == Mode::Normal {
            if message_view(m) > self.view && m.author != self.me {
                self.seen_ahead.insert(m.author);
                if self.seen_ahead.len() >= self.committee.validity_threshold() {
                    self.view_change_to(self.view.next(), false);
                }
            }
            return;
        }
        if message_view(m) < self.view {
            return;
        }
        let Some(vc) = self.safety.last_view_change.clone() else {
            return;
        };
        if message_view(&vc) == self.view && self.view_change_sent_to.insert(m.author) {
            self.out.push(Effect::Send {
                to: m.author,
                message: vc,
            });
        }
    }

    // ----- pre-prepares -----

    /// Accepts a pre-prepare if it may be (PBFT 4.2: right view, in the
    /// window, the first for its view and height, and here also: as the
    /// new view's plan says, extending the block accepted at the height
    /// below in the same view, carrying a valid certificate of an
    /// ancestor, and valid on its parent's state); keeps it for later if
    /// its view or its parent's pre-prepare has not come yet. True if
    /// accepted.
    pub(super) fn consider_preprepare(
        &mut self,
        message: Verified<SignedMessage>,
        ledger: &mut dyn Ledger,
    ) -> bool {
        let Payload::PrePrepare(p) = &message.get().payload else {
            return false;
        };
        let vote = preprepare_vote(p);
        let height = vote.height;
        if p.view > self.view || (p.view == self.view && self.mode == Mode::ViewChange) {
            self.wait(message);
            return false;
        }
        if p.view < self.view || height > self.high() {
            return false;
        }
        if height <= self.executed() {
            self.vouch_for_executed(vote, ledger);
            return false;
        }
        if let Some((accepted, first)) = self.log.accepted(p.view, height) {
            if accepted.block != vote.block {
                let evidence = Evidence::ConflictingPrePrepares {
                    first: first.clone(),
                    second: message.get().clone(),
                };
                self.out.push(Effect::Evidence(evidence));
            }
            return false;
        }
        if !self.fits_plan(&p.block, p.view) {
            return false;
        }
        let Some(parent) = self.parent_for(p.view, height) else {
            self.wait(message);
            return false;
        };
        if parent.hash() != vote.parent || !self.header_cert_ok(&p.block, ledger) {
            return false;
        }
        if let Err(e) = ledger.validate_block(&parent, &p.block) {
            self.local_fault(e);
            return false;
        }
        let block = p.block.clone();
        self.log.accept(vote, message.get().clone(), block.clone());
        self.learn_header_cert(&block, ledger);
        if self.primary(vote.view) != self.me {
            self.send_vote(Phase::Prepare, vote);
        }
        self.check_prepared(vote.view, height);
        true
    }

    /// A new view re-proposes a block this replica executed already: it
    /// prepares and commits it again in the new view (without executing it
    /// again), for the replicas that have not executed it yet and need n - f
    /// votes. Only the very block it executed at that height.
    fn vouch_for_executed(&mut self, vote: Vote, ledger: &dyn Ledger) {
        let executed = if vote.block == self.head.hash() {
            Some(self.head.header().height)
        } else {
            ledger
                .committed_block(&vote.block)
                .map(|b| b.header().height)
        };
        if executed != Some(vote.height) {
            return;
        }
        if self.primary(vote.view) != self.me {
            self.send_vote(Phase::Prepare, vote);
        }
        self.send_vote(Phase::Commit, vote);
    }

    /// Keeps a pre-prepare that cannot be accepted yet (bounded).
    fn wait(&mut self, message: Verified<SignedMessage>) {
        if self.waiting.len() < MAX_WAITING {
            self.waiting.push(message);
        }
    }

    /// Tries the waiting pre-prepares again until none is accepted.
    pub(super) fn retry_waiting(&mut self, ledger: &mut dyn Ledger) {
        loop {
            let pending = std::mem::take(&mut self.waiting);
            if pending.is_empty() {
                return;
            }
            let before = self.waiting.len();
            let mut accepted = false;
            for message in pending {
                accepted |= self.consider_preprepare(message, ledger);
            }
            if !accepted || self.waiting.len() == before {
                return;
            }
        }
    }

    /// What the current view's plan allows at the block's height: the
    /// block it re-proposes, an empty block, or (above the plan) a block
    /// first proposed in this view.
    fn fits_plan(&self, block: &Block, view: View) -> bool {
        let first_view = match &block.header().justification {
            Justification::Bft { view, .. } => View(*view),
            _ => return false,
        };
        match self.plan_slot(view, block.header().height) {
            PlanSlot::Repropose(vote) => block.hash() == vote.block,
            PlanSlot::Empty => block.transactions.is_empty() && first_view == view,
            PlanSlot::Fresh => first_view == view,
        }
    }

    pub(super) fn plan_slot(&self, view: View, height: Height) -> PlanSlot {
        match &self.safety.plan {
            Some((v, plan)) if *v == view => plan.slot(height),
            _ => PlanSlot::Fresh,
        }
    }

    /// The block a pre-prepare at `height` in `view` must extend: the head
    /// if it is just below, else the block accepted at `height - 1` in the
    /// same view (so a view's accepted blocks form one chain).
    pub(super) fn parent_for(&self, view: View, height: Height) -> Option<Block> {
        let below = Height(height.0.checked_sub(1)?);
        if below == self.executed() {
            return Some(self.head.clone());
        }
        let (vote, _) = self.log.accepted(view, below)?;
        self.log.block(&vote.block).cloned()
    }

    /// The commit certificate a block carries certifies one of its
    /// ancestors (found among the blocks held above the head, the head, or
    /// the executed chain) and verifies against it.
    fn header_cert_ok(&self, block: &Block, ledger: &dyn Ledger) -> bool {
        let Justification::Bft { parent_cert, .. } = &block.header().justification else {
            return false;
        };
        if is_genesis_cert(&self.committee, parent_cert) {
            return true;
        }
        let Some(certified) = self.find_ancestor(block, &parent_cert.block, ledger) else {
            return false;
        };
        let cert = CommitCert {
            vote: Vote {
                view: View(parent_cert.view),
                height: certified.header().height,
                block: parent_cert.block,
                parent: certified.header().parent,
            },
            commits: parent_cert.signatures.clone(),
        };
        // Most of its signatures came in as commit messages, checked then.
        verify_commit_except(&self.committee, &cert, |s| {
            self.log.knows_commit(&cert.vote, s.validator, &s.signature)
        })
        .is_ok()
    }

    /// The ancestor of `block` with hash `target`, if this replica holds
    /// the chain down to it.
    fn find_ancestor(&self, block: &Block, target: &Hash, ledger: &dyn Ledger) -> Option<Block> {
        let mut cursor = block.header().parent;
        loop {
            if cursor == self.head.hash() {
                break;
            }
            let b = self.log.block(&cursor)?;
            if b.header().height <= self.executed() {
                return None;
            }
            if cursor == *target {
                return Some(b.clone());
            }
            cursor = b.header().parent;
        }
        if *target == self.head.hash() {
            return Some(self.head.clone());
        }
        ledger
            .committed_block(target)
            .filter(|b| b.header().height < self.executed())
    }

    /// A block's certificate shows its ancestor final: a replica that has
    /// not executed that far yet can (it needs no prepare of its own).
    fn learn_header_cert(&mut self, block: &Block, ledger: &dyn Ledger) {
        let Justification::Bft { parent_cert, .. } = &block.header().justification else {
            return;
        };
        if is_genesis_cert(&self.committee, parent_cert) {
            return;
        }
        let Some(certified) = self.find_ancestor(block, &parent_cert.block, ledger) else {
            return;
        };
        if certified.header().height <= self.executed() {
            return;
        }
        let cert = CommitCert {
            vote: Vote {
                view: View(parent_cert.view),
                height: certified.header().height,
                block: parent_cert.block,
                parent: certified.header().parent,
            },
            commits: parent_cert.signatures.clone(),
        };
        self.log
            .set_final(cert.vote.height, cert.vote.block, Some(cert));
    }

    // ----- prepares and commits -----

    /// Signs and sends a PREPARE or COMMIT for `vote`, unless this replica
    /// already signed one for its view and height (the same one went out
    /// already; a different one must never), or signed at that height in a
    /// later view: never two conflicting votes, even across a crash (`sent`
    /// is persisted before the vote leaves).
    pub(super) fn send_vote(&mut self, phase: Phase, vote: Vote) {
        let sent = self.safety.sent.entry(vote.height).or_default();
        if sent.view > vote.view {
            return;
        }
        if sent.view < vote.view {
            *sent = Sent {
                view: vote.view,
                ..Sent::default()
            };
        }
        let slot = match phase {
            Phase::Prepare => &mut sent.prepare,
            Phase::Commit => &mut sent.commit,
        };
        if slot.is_some() {
            return;
        }
        *slot = Some(vote.block);
        self.dirty = true;
        let payload = match phase {
            Phase::Prepare => Payload::Prepare(vote),
            Phase::Commit => Payload::Commit(vote),
        };
        let message = self.sign(payload);
        self.first_time(message.id());
        self.send_own(None, message.clone());
        if vote.view == self.view {
            self.keep_for_resend(vote.height, message.clone());
        }
        if self.config.byzantine == Some(crate::Byzantine::DoubleVote) {
            self.double_vote(phase, vote);
        }
        self.log.record(phase, vote, &message);
        if phase == Phase::Commit {
            self.check_commit_cert(&vote);
        }
    }

    fn on_vote(
        &mut self,
        phase: Phase,
        vote: Vote,
        message: SignedMessage,
        ledger: &mut dyn Ledger,
    ) {
        match self.log.record(phase, vote, &message) {
            Recorded::Counted => {}
            Recorded::Duplicate => return,
            Recorded::Conflict(first) => {
                let evidence = Evidence::ConflictingVotes {
                    first: *first,
                    second: message,
                };
                self.out.push(Effect::Evidence(evidence));
                return;
            }
        }
        match phase {
            Phase::Prepare => self.check_prepared(vote.view, vote.height),
            Phase::Commit => self.check_commit_cert(&vote),
        }
        self.execute(ledger);
    }

    /// On becoming prepared at `height` in the current view: keep the
    /// certificate for view changes, and commit what may be committed.
    pub(super) fn check_prepared(&mut self, view: View, height: Height) {
        if view != self.view || self.mode != Mode::Normal {
            return;
        }
        let needed = self.committee.quorum().saturating_sub(1);
        let Some(cert) = self
            .log
            .try_prepare(view, height, self.primary(view), needed)
        else {
            return;
        };
        self.certify(Certified::Prepared(cert));
        self.send_commits();
    }

    /// Keeps `certified` in the P-set if it is of a later view than what
    /// the set holds at its height.
    pub(super) fn certify(&mut self, certified: Certified) {
        let vote = *certified.vote();
        if vote.height <= self.low() {
            return;
        }
        let better = self
            .safety
            .certified
            .get(&vote.height)
            .is_none_or(|c| c.vote().view < vote.view);
        if better {
            self.safety.certified.insert(vote.height, certified);
            self.dirty = true;
        }
    }

    /// Sends COMMIT for each height above the head, in order, as long as
    /// every height up to it is prepared in the current view: a replica
    /// commits a block only when it has prepared the whole chain below it
    /// down to its executed head (see the module docs for why).
    pub(super) fn send_commits(&mut self) {
        let mut height = Height(self.executed().0 + 1);
        while let Some(cert) = self.log.prepared_in(self.view, height) {
            let vote = cert.vote;
            self.send_vote(Phase::Commit, vote);
            height = Height(height.0 + 1);
        }
    }

    /// A commit certificate forms from n - f matching commits (of any view:
    /// the certificate alone proves the block final).
    fn check_commit_cert(&mut self, vote: &Vote) {
        let Some(cert) = self.log.try_commit_cert(vote, self.committee.quorum()) else {
            return;
        };
        self.certify(Certified::Committed(cert));
    }

    // ----- execution -----

    /// Executes final blocks in height order, from the head up, fetching
    /// any block of the chain not held yet.
    pub(super) fn execute(&mut self, ledger: &mut dyn Ledger) {
        if self.executing {
            return;
        }
        self.executing = true;
        loop {
            let before = self.executed();
            while let Some((height, hash)) = self.log.lowest_final_above(self.executed()) {
                let depth = height.0 - self.executed().0;
                match self.log.chain_to(hash, self.head.hash(), depth) {
                    Ok(chain) => {
                        for block in chain {
                            self.execute_block(block);
                        }
                    }
                    Err(missing) => {
                        self.request(missing, None);
                        break;
                    }
                }
            }
            if self.executed() == before {
                break;
            }
            self.after_progress(ledger);
        }
        self.executing = false;
    }

    fn execute_block(&mut self, block: Block) {
        let height = block.header().height;
        if let Some(cert) = self.log.commit_cert(height) {
            self.last_commit = cert.to_bft();
        }
        self.requested.remove(&block.hash());
        self.out.push(Effect::Commit(block.clone()));
        self.head = block;
        self.log.prune_to(height);
        self.make_checkpoint();
    }

    /// After executing: the view made progress, so its timer restarts and
    /// the back-off resets; waiting pre-prepares may now link to the head;
    /// a primary may propose again.
    fn after_progress(&mut self, ledger: &mut dyn Ledger) {
        if self.mode == Mode::Normal {
            let busy = ledger.has_pending_transactions();
            self.view_timeout.progress(self.now, busy);
            self.arm_view_timer();
        }
        self.send_commits();
        self.retry_waiting(ledger);
        self.propose(ledger);
    }

    // ----- checkpoints (PBFT 4.3) -----

    pub(super) fn on_checkpoint(&mut self, message: SignedMessage) {
        let Payload::Checkpoint(checkpoint) = message.payload else {
            return;
        };
        let quorum = self.committee.quorum();
        if let Some(cert) =
            self.checkpoints
                .record(message.author, checkpoint, message.signature, quorum)
        {
            self.on_stable(cert);
        }
    }

    /// A stable checkpoint: the low watermark moves up and what is below
    /// it is forgotten. A replica that has not executed that far fetches
    /// the blocks up to it (the certificate proves them final).
    pub(super) fn on_stable(&mut self, cert: CheckpointCert) {
        let c = cert.checkpoint;
        if c.height <= self.low() {
            return;
        }
        self.safety.stable = cert;
        self.safety.sent = self.safety.sent.split_off(&Height(c.height.0 + 1));
        self.safety.certified = self.safety.certified.split_off(&Height(c.height.0 + 1));
        self.dirty = true;
        self.checkpoints.prune_to(c.height);
        if c.height > self.executed() {
            self.log.set_final(c.height, c.block, None);
        } else {
            self.log.prune_to(c.height);
        }
        if self
            .own_checkpoint
            .as_ref()
            .is_some_and(|m| matches!(&m.payload, Payload::Checkpoint(o) if o.height <= c.height))
        {
            self.own_checkpoint = None;
        }
    }
}
