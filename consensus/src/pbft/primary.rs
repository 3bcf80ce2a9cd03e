//! The primary's side: re-proposing what a new view's plan fixes, then
//! proposing new blocks, several heights in flight, within the window.

use super::messages::{Payload, PrePrepare, preprepare_vote};
use super::replica::{Effect, Mode, ProposeWait, Replica, Timer};
use super::select::{Plan, PlanSlot};
use crate::ledger::Ledger;
use crate::types::Byzantine;
use phalanx_chain::{Block, Height, Justification, ValidatorIndex};

impl Replica {
    /// As the current view's primary, proposes whatever may be proposed
    /// now: first the plan's heights, then new blocks while fewer than
    /// `max_in_flight` heights are proposed and not executed, below the
    /// high watermark, and (with batching) when a batch is ready or the
    /// wait is over.
    pub(super) fn propose(&mut self, ledger: &mut dyn Ledger) {
        if self.mode != Mode::Normal
            || self.primary(self.view) != self.me
            || self.fault.is_some()
            || self.restarted_mid_view()
        {
            return;
        }
        if !self.propose_plan(ledger) {
            return;
        }
        while self.fault.is_none() && self.propose_fresh(ledger) {}
        self.execute(ledger);
    }

    /// True if this primary signed pre-prepares in its view that it no
    /// longer holds (it restarted): proposing past them would need their
    /// blocks, and proposing anything else at their heights would
    /// equivocate. It waits for the view to change.
    fn restarted_mid_view(&self) -> bool {
        let above = Height(self.executed().0 + 1);
        self.safety.sent.range(above..).any(|(height, sent)| {
            sent.view == self.view
                && sent.preprepare.is_some()
                && self.log.accepted(self.view, *height).is_none()
        })
    }

    fn current_plan(&self) -> Option<Plan> {
        match &self.safety.plan {
            Some((view, plan)) if *view == self.view => Some(plan.clone()),
            _ => None,
        }
    }

    /// Sends the pre-prepares the plan fixes, in height order; false while
    /// a block it re-proposes is still being fetched.
    fn propose_plan(&mut self, ledger: &mut dyn Ledger) -> bool {
        let Some(plan) = self.current_plan() else {
            return true;
        };
        let mut height = Height(plan.checkpoint.height.0 + 1);
        while height <= plan.end() {
            if self
                .safety
                .sent
                .get(&height)
                .is_some_and(|s| s.view == self.view && s.preprepare.is_some())
            {
                height = Height(height.0 + 1);
                continue;
            }
            let block = match plan.slot(height) {
                PlanSlot::Repropose(vote) => {
                    let held = self
                        .log
                        .block(&vote.block)
                        .cloned()
                        .or_else(|| ledger.committed_block(&vote.block));
                    match held {
                        Some(block) => block,
                        None => {
                            self.request(vote.block, None);
                            return false;
                        }
                    }
                }
                PlanSlot::Empty => match self.build(height, ledger, true) {
                    Some(block) => block,
                    None => return false,
                },
                PlanSlot::Fresh => return true,
            };
            self.preprepare(block, false);
            height = Height(height.0 + 1);
        }
        true
    }

    /// Proposes one new block if it may; true if it did.
    fn propose_fresh(&mut self, ledger: &mut dyn Ledger) -> bool {
        let plan_end = self.current_plan().map_or(Height(0), |p| p.end());
        let highest = self.log.highest_accepted(self.view).unwrap_or_default();
        let next = Height(self.executed().max(plan_end).max(highest).0 + 1);
        let in_flight = next.0 - 1 - self.executed().0;
        if next > self.high() || in_flight >= self.config.max_in_flight.max(1) {
            return false;
        }
        if self.proposed_now >= self.config.max_in_flight.max(1) {
            self.out.push(Effect::ArmTimer {
                timer: Timer::Propose(self.view),
                at: self.now,
            });
            return false;
        }
        if !self.ready_to_propose(next, in_flight, ledger) {
            return false;
        }
        let Some(block) = self.build(next, ledger, false) else {
            return false;
        };
        // The pool's transactions are all in blocks in flight already: an
        // empty block would order nothing.
        if block.transactions.is_empty() && in_flight > 0 {
            return false;
        }
        self.preprepare(block, true);
        self.proposed_now += 1;
        true
    }

    /// An empty pool and a block in flight: nothing to propose (an empty
    /// block only serves as the heartbeat of an idle primary). Otherwise,
    /// with batching on, propose at once if a batch is ready or if
    /// transactions wait and nothing is in flight (an idle pipeline gains
    /// nothing by waiting: the transactions that come meanwhile make the
    /// next block, as in PBFT, where the primary batches only while its
    /// window is busy), else wait the batch delay (with an empty pool, the
    /// empty-block delay), counted from when the wait began.
    fn ready_to_propose(&mut self, next: Height, in_flight: u64, ledger: &dyn Ledger) -> bool {
        let batch = self.config.max_batch_delay_ms;
        let empty = self.config.empty_block_delay_ms;
        let idle = !ledger.has_pending_transactions();
        if idle && in_flight > 0 {
            return false;
        }
        if batch == 0 && empty == 0 {
            return true;
        }
        if ledger.batch_ready() || (in_flight == 0 && !idle) {
            return true;
        }
        let delay = if idle && empty > batch { empty } else { batch };
        if self.propose_wait.height != next {
            self.propose_wait = ProposeWait {
                height: next,
                since: self.now,
                timer_at: None,
            };
        }
        let at = self.propose_wait.since.saturating_add(delay);
        if at <= self.now {
            return true;
        }
        if self.propose_wait.timer_at.is_none_or(|t| at < t) {
            self.propose_wait.timer_at = Some(at);
            self.out.push(Effect::ArmTimer {
                timer: Timer::Propose(self.view),
                at,
            });
        }
        false
    }

    /// A block at `height` on the block below it in this view, carrying
    /// the newest commit certificate this replica knows; `empty` for the
    /// plan's empty blocks.
    fn build(&mut self, height: Height, ledger: &mut dyn Ledger, empty: bool) -> Option<Block> {
        let parent = self.parent_for(self.view, height)?;
        let justification = Justification::Bft {
            view: self.view.0,
            parent_cert: self.last_commit.clone(),
        };
        let built = if empty {
            ledger.build_empty_block(&parent, self.address(), self.now, justification)
        } else {
            ledger.build_block(&parent, self.address(), self.now, justification)
        };
        match built {
            Ok(block) => Some(block),
            Err(e) => {
                self.local_fault(e);
                None
            }
        }
    }

    /// Signs, records and sends a pre-prepare of `block` in this view.
    fn preprepare(&mut self, block: Block, fresh: bool) {
        let view = self.view;
        let height = block.header().height;
        let hash = block.hash();
        let sent = self.safety.sent.entry(height).or_default();
        if sent.view == view && sent.preprepare.is_some_and(|b| b != hash) {
            return;
        }
        if sent.view < view {
            *sent = super::replica::Sent {
                view,
                ..Default::default()
            };
        }
        sent.preprepare = Some(hash);
        self.dirty = true;
        let p = PrePrepare { view, block };
        let vote = preprepare_vote(&p);
        let equivocate = fresh && self.config.byzantine == Some(Byzantine::Equivocate);
        let second = if equivocate {
            self.second_block(&p.block)
        } else {
            None
        };
        let message = self.sign(Payload::PrePrepare(Box::new(p.clone())));
        self.first_time(message.id());
        self.keep_for_resend(height, message.clone());
        match second {
            Some(other) => self.equivocate(message.clone(), other),
            None => self.send_own(None, message.clone()),
        }
        if height > self.executed() {
            self.log.accept(vote, message, p.block);
            self.check_prepared(view, height);
        }
    }

    /// Byzantine `equivocate`: the same height with another timestamp.
    fn second_block(&self, block: &Block) -> Option<Block> {
        let mut other = block.clone();
        other.header_mut().timestamp_ms = other.header().timestamp_ms.saturating_add(1);
        Some(other)
    }

    /// Byzantine `equivocate`: one pre-prepare to half of the others, a
    /// conflicting one to the other half.
    fn equivocate(&mut self, first: super::messages::SignedMessage, other: Block) {
        let second = self.sign(Payload::PrePrepare(Box::new(PrePrepare {
            view: self.view,
            block: other,
        })));
        if self.dirty {
            self.persist();
        }
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
}
