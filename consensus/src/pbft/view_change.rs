//! View changes (PBFT 4.4, with signatures as in the TOCS 2002 paper).
//!
//! A replica whose view makes no progress for its timeout asks for the
//! next view with a signed VIEW-CHANGE carrying its stable checkpoint
//! certificate and its P-set (the certificate of the highest view at each
//! height above the checkpoint). It waits for that view's NEW-VIEW for the
//! timeout, doubled for each view change in a row without progress, then
//! asks for the one after. f + 1 view changes for later views make a
//! replica join the smallest of them (PBFT 4.5.2). The new view's primary
//! gathers n - f view changes (its own first) into a NEW-VIEW whose plan
//! ([`super::select`]) every replica recomputes before entering the view.

use super::collect::as_view_change;
use super::messages::{NewView, Payload, SignedMessage, ViewChange, message_view};
use super::normal::FUTURE_VIEWS;
use super::replica::{Effect, Mode, ProposeWait, Replica, Timer};
use super::select::{highest_checkpoint, select};
use crate::ledger::Ledger;
use crate::types::View;

impl Replica {
    /// Gives up on the current view and asks for `target` (or, with
    /// `again`, re-sends the view change already signed for it, after a
    /// restart).
    pub(super) fn view_change_to(&mut self, target: View, again: bool) {
        let same = self.mode == Mode::ViewChange && target == self.view;
        if !same && target <= self.view {
            return;
        }
        if !same {
            for timer in [
                Timer::View(self.view),
                Timer::ViewChange(self.view),
                Timer::Propose(self.view),
                Timer::Resend(self.view),
            ] {
                self.out.push(Effect::CancelTimer(timer));
            }
            self.forget_own_messages();
            self.view_timeout.failed();
            self.mode = Mode::ViewChange;
            self.view = target;
            self.safety.view = target;
            self.safety.view_changing = true;
            self.dirty = true;
            self.view_change_sent_to.clear();
            self.seen_ahead.clear();
            self.view_change_quorum_at = None;
        } else if !again {
            return;
        }
        let message = match &self.safety.last_view_change {
            Some(m) if message_view(m) == target => m.clone(),
            _ => {
                let m = self.sign(Payload::ViewChange(Box::new(self.view_change_for(target))));
                self.safety.last_view_change = Some(m.clone());
                self.dirty = true;
                m
            }
        };
        self.first_time(message.id());
        self.view_changes.record(target, message.clone());
        self.send_own(None, message);
        self.arm_view_change_timer();
    }

    /// PBFT 4.5.2: the wait for a new view starts only once n - f replicas
    /// (this one among them) asked for it or a later one, so that a
    /// replica that gave up on a view early does not give up on the next
    /// one before the others even ask for it. Meanwhile the timer re-sends
    /// our view change every base timeout: a lost copy, or a new primary
    /// that restarted and forgot the ones it had, would keep the new view
    /// from ever forming.
    pub(super) fn arm_view_change_timer(&mut self) {
        let target = self.view;
        if self.view_change_quorum_at.is_none()
            && self.view_changes.support(target) >= self.committee.quorum()
        {
            self.view_change_quorum_at = Some(self.now);
        }
        let resend = self.now.saturating_add(self.view_timeout.base_ms().max(1));
        let at = match self.view_change_quorum_at {
            Some(since) => since.saturating_add(self.timeout_ms()).min(resend),
            None => resend,
        };
        self.out.push(Effect::ArmTimer {
            timer: Timer::ViewChange(target),
            at,
        });
    }

    /// The view change timer: give up on the target view if the new view
    /// has not come a timeout after n - f asked for it; otherwise send our
    /// view change again and wait on.
    pub(super) fn on_view_change_timer(&mut self) {
        let target = self.view;
        let expired = self
            .view_change_quorum_at
            .is_some_and(|since| self.now >= since.saturating_add(self.timeout_ms()));
        if expired {
            self.view_change_to(target.next(), false);
            return;
        }
        if let Some(message) = self.safety.last_view_change.clone()
            && message_view(&message) == target
        {
            self.send_to_others(&message);
        }
        self.arm_view_change_timer();
    }

    /// Our view change for `target`: the stable checkpoint and the P-set
    /// above it.
    fn view_change_for(&self, target: View) -> ViewChange {
        let low = self.low();
        ViewChange {
            view: target,
            checkpoint: self.safety.stable.clone(),
            certified: self
                .safety
                .certified
                .values()
                .filter(|c| c.vote().height > low && c.vote().view < target)
                .cloned()
                .collect(),
        }
    }

    pub(super) fn on_view_change(&mut self, message: SignedMessage, ledger: &mut dyn Ledger) {
        let Some(vc) = as_view_change(&message) else {
            return;
        };
        let target = vc.view;
        let author = message.author;
        if self.mode == Mode::Normal && target <= self.view {
            // A replica behind us: it missed the new view we are in.
            self.resend_new_view(author);
            return;
        }
        if target < self.view {
            return;
        }
        if target.0 > self.view.0.saturating_add(FUTURE_VIEWS) {
            return;
        }
        self.view_changes.record(target, message);
        if self.mode == Mode::ViewChange
            && target >= self.view
            && self.view_change_quorum_at.is_none()
        {
            self.arm_view_change_timer();
        }
        let join = self
            .view_changes
            .join_view(self.committee.validity_threshold());
        if let Some(join) = join.filter(|j| *j > self.view) {
            self.view_change_to(join, false);
        }
        self.try_new_view(ledger);
    }

    /// Sends the new view that started our view to a replica that asked
    /// for it (once per replica and view).
    fn resend_new_view(&mut self, to: phalanx_chain::ValidatorIndex) {
        let Some(nv) = self.new_view.clone() else {
            return;
        };
        if to != self.me && self.new_view_sent_to.insert(to) {
            self.out.push(Effect::Send { to, message: nv });
        }
    }

    /// As the primary of the view we are changing to, with n - f view
    /// changes for it: the new view.
    fn try_new_view(&mut self, ledger: &mut dyn Ledger) {
        let target = self.view;
        if self.mode != Mode::ViewChange
            || self.primary(target) != self.me
            || self.safety.new_view_sent.is_some_and(|v| v >= target)
        {
            return;
        }
        let quorum = self.committee.quorum();
        let Some(view_changes) = self.view_changes.quorum_for(target, self.me, quorum) else {
            return;
        };
        let ignore = self.config.unsafe_view_change;
        let Some(plan) = select(view_changes.iter().filter_map(as_view_change), ignore) else {
            return;
        };
        let nv = NewView {
            view: target,
            view_changes,
            plan,
        };
        let message = self.sign(Payload::NewView(Box::new(nv)));
        self.safety.new_view_sent = Some(target);
        self.dirty = true;
        self.first_time(message.id());
        self.send_own(None, message.clone());
        self.install_new_view(message, ledger);
    }

    pub(super) fn on_new_view(&mut self, message: SignedMessage, ledger: &mut dyn Ledger) {
        let Payload::NewView(nv) = &message.payload else {
            return;
        };
        if nv.view < self.view || (nv.view == self.view && self.mode == Mode::Normal) {
            return;
        }
        if !self.config.unsafe_view_change {
            let expected = select(nv.view_changes.iter().filter_map(as_view_change), false);
            if expected.as_ref() != Some(&nv.plan) {
                return;
            }
        }
        self.install_new_view(message, ledger);
    }

    /// Enters the view a (checked) new view starts: its plan fixes what is
    /// re-proposed; its highest checkpoint becomes stable here too.
    fn install_new_view(&mut self, message: SignedMessage, ledger: &mut dyn Ledger) {
        let Payload::NewView(nv) = &message.payload else {
            return;
        };
        let view = nv.view;
        for timer in [
            Timer::View(self.view),
            Timer::ViewChange(self.view),
            Timer::Propose(self.view),
            Timer::Resend(self.view),
        ] {
            self.out.push(Effect::CancelTimer(timer));
        }
        self.forget_own_messages();
        self.view = view;
        self.mode = Mode::Normal;
        self.safety.view = view;
        self.safety.view_changing = false;
        self.safety.plan = Some((view, nv.plan.clone()));
        self.dirty = true;
        let checkpoint =
            highest_checkpoint(nv.view_changes.iter().filter_map(as_view_change)).cloned();
        self.new_view = Some(message.clone());
        self.new_view_sent_to.clear();
        self.seen_ahead.clear();
        self.view_changes.prune_below(view);
        self.log.prune_views_below(View(view.0.saturating_sub(1)));
        self.propose_wait = ProposeWait::default();
        if let Some(cert) = checkpoint {
            self.on_stable(cert);
        }
        self.view_timeout
            .resume(self.now, ledger.has_pending_transactions());
        self.arm_view_timer();
        self.retry_waiting(ledger);
        self.propose(ledger);
        self.execute(ledger);
    }
}
